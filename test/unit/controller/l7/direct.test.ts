/**
 * Workload waypoints (issue 5), the controller's side: per waypoint Gateway that takes workload
 * traffic, the direct-http listener (with the RBAC filters of the policies that target that Gateway
 * or its class), its route configuration, the direct-tcp listener and the ORIGINAL_DST encap
 * cluster (direct.ts), and how the waypoint's decoders read them back — with Envoy's enum numbers
 * on the wire and every refusal of an ORIGINAL_DST cluster named by its field path.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { encodeL7Resources, encodeCluster } from '../../../../src/controller/translate/l7/encode.ts';
import { translateL7, type L7Result } from '../../../../src/controller/translate/l7/translate.ts';
import { evaluateL7, type L7Request } from '../../../../src/core/policy/l7.ts';
import type { Cluster, L7Listener, RouteConfiguration } from '../../../../src/core/xds/l7-model.ts';
import { directResourceName, parseDirectResourceName } from '../../../../src/core/xds/l7-names.ts';
import {
  decodeClusterBytes,
  decodeL7Resource,
  encodeEnvoy,
  envoyL7Protos,
} from '../../../../src/core/xds/l7-wire.ts';
import { meshFrom, OPTIONS } from './helpers.ts';

const gateway = (
  name: string,
  namespace: string,
  waypointFor: string | undefined,
  cls = 'istio-waypoint',
) => `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: ${name}
  namespace: ${namespace}
  ${waypointFor ? `labels: { istio.io/waypoint-for: ${waypointFor} }` : ''}
spec: { gatewayClassName: ${cls}, listeners: [{ name: mesh, port: 15008, protocol: HBONE }] }
---
`;

const gatewayClass = (name: string, waypointFor: string | undefined) => `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: ${name}
  ${waypointFor ? `labels: { istio.io/waypoint-for: ${waypointFor} }` : ''}
spec: { controllerName: istio.io/mesh-controller }
---
`;

const BASE = `
apiVersion: v1
kind: Namespace
metadata: { name: default, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Namespace
metadata: { name: istio-system }
---
apiVersion: v1
kind: Service
metadata: { name: productpage, namespace: default }
spec: { selector: { app: productpage }, clusterIP: 10.96.0.9, ports: [{ name: http, port: 9080 }] }
---
`;

function run(extra: string): L7Result {
  const m = meshFrom(BASE + extra);
  return translateL7(
    { snapshot: m.snapshot, mesh: m.mesh, virtualServices: [], destinationRules: [] },
    OPTIONS,
  );
}

const HTTP = directResourceName('default', 'waypoint', 'direct-http');
const TCP = directResourceName('default', 'waypoint', 'direct-tcp');
const ENCAP = directResourceName('default', 'waypoint', 'encap');

/** Every resource the controller serves, decoded by the waypoint, by name. */
function decodedAll(r: L7Result) {
  const out = {
    listeners: new Map<string, L7Listener>(),
    routes: new Map<string, RouteConfiguration>(),
    clusters: new Map<string, Cluster>(),
  };
  for (const [typeUrl, list] of encodeL7Resources(r.resources))
    for (const res of list) {
      const d = decodeL7Resource(typeUrl, res.bytes);
      assert.ok(
        d.ok,
        `${res.name}: ${d.ok ? '' : d.errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`,
      );
      const v = d.value;
      if (v.kind === 'listener') out.listeners.set(res.name, v.listener);
      if (v.kind === 'route-configuration') out.routes.set(res.name, v.routeConfiguration);
      if (v.kind === 'cluster') out.clusters.set(res.name, v.cluster);
    }
  return out;
}

describe('which waypoints get direct resources', () => {
  const cases: [string, string, boolean][] = [
    ['waypoint-for: workload', gateway('waypoint', 'default', 'workload'), true],
    ['waypoint-for: all', gateway('waypoint', 'default', 'all'), true],
    ['waypoint-for: service', gateway('waypoint', 'default', 'service'), false],
    ['no waypoint-for label (service)', gateway('waypoint', 'default', undefined), false],
    ['waypoint-for: none', gateway('waypoint', 'default', 'none'), false],
    ['the ambit-waypoint class', gateway('waypoint', 'default', 'workload', 'ambit-waypoint'), true],
    ['another class', gateway('waypoint', 'default', 'workload', 'istio'), false],
    [
      "no label on the Gateway: its GatewayClass's (workload)",
      gatewayClass('istio-waypoint', 'workload') + gateway('waypoint', 'default', undefined),
      true,
    ],
    [
      "the Gateway's label (service) wins over its GatewayClass's (all)",
      gatewayClass('istio-waypoint', 'all') + gateway('waypoint', 'default', 'service'),
      false,
    ],
    [
      "the Gateway's label (workload) wins over its GatewayClass's (none)",
      gatewayClass('istio-waypoint', 'none') + gateway('waypoint', 'default', 'workload'),
      true,
    ],
    [
      "another GatewayClass's label does not apply",
      gatewayClass('ambit-waypoint', 'workload') + gateway('waypoint', 'default', undefined),
      false,
    ],
  ];
  for (const [name, yaml, expected] of cases)
    test(name, () => {
      const r = run(yaml);
      const names = [
        ...r.resources.listeners.map((l) => l.name),
        ...r.resources.routeConfigurations.map((x) => x.name),
        ...r.resources.clusters.map((c) => c.name),
      ].filter((n) => n.startsWith('waypoint/'));
      assert.deepEqual(names.sort(), expected ? [HTTP, TCP, HTTP, ENCAP].sort() : []);
    });
});

test('names say which waypoint they are for and cannot collide with service resources', () => {
  const r = run(gateway('waypoint', 'default', 'workload') + gateway('w2', 'default', 'all'));
  for (const n of [HTTP, TCP, ENCAP]) {
    assert.ok(n.includes('/'), 'a hostname or an outbound|… cluster name never has a /');
    assert.deepEqual(parseDirectResourceName(n)?.gateway, 'waypoint');
  }
  assert.deepEqual(parseDirectResourceName('productpage.default.svc.cluster.local:9080'), undefined);
  assert.deepEqual(parseDirectResourceName('waypoint/default/w2/encap'), {
    namespace: 'default',
    gateway: 'w2',
    what: 'encap',
  });
  const clusters = r.resources.clusters.map((c) => c.name);
  assert.ok(clusters.includes(ENCAP) && clusters.includes('waypoint/default/w2/encap'));
  // The service's own resources are still there, and unchanged in name.
  assert.ok(r.resources.listeners.some((l) => l.name === 'productpage.default.svc.cluster.local:9080'));
});

test('the waypoint decodes the direct resources: HTTP to encap with no retries, TCP to encap, ORIGINAL_DST', () => {
  const d = decodedAll(run(gateway('waypoint', 'default', 'workload')));
  const http = d.listeners.get(HTTP)!;
  assert.equal(http.routeConfigName, HTTP);
  assert.equal(http.tcp, undefined);
  assert.deepEqual(
    http.httpFilters.map((f) => f.name),
    ['envoy.filters.http.fault', 'envoy.filters.http.router'],
  );
  const tcp = d.listeners.get(TCP)!;
  assert.deepEqual(tcp.tcp, [{ cluster: ENCAP, weight: 1 }]);
  const rc = d.routes.get(HTTP)!;
  assert.equal(rc.virtualHosts.length, 1);
  assert.deepEqual(rc.virtualHosts[0]!.domains, ['*']);
  const route = rc.virtualHosts[0]!.routes[0]!;
  assert.equal(route.name, 'default');
  assert.equal(route.action.kind, 'route');
  if (route.action.kind === 'route') {
    assert.deepEqual(
      route.action.clusters.map((c) => c.name),
      [ENCAP],
    );
    assert.equal(route.action.retryPolicy, undefined);
    assert.equal(route.action.timeoutMs, 0);
  }
  const encap = d.clusters.get(ENCAP)!;
  assert.deepEqual(encap.originalDst, { cleanupIntervalMs: 60_000 });
  assert.equal(encap.connectTimeoutMs, 2000);
  assert.equal(encap.upstreamProtocol, 'downstream');
});

test('the encap cluster carries Envoy enum numbers: type ORIGINAL_DST = 4, lb_policy CLUSTER_PROVIDED = 6', () => {
  const r = run(gateway('waypoint', 'default', 'workload'));
  const c = r.resources.clusters.find((x) => x.name === ENCAP)!;
  const bytes = encodeCluster(c).bytes;
  const type = envoyL7Protos().lookupType('envoy.config.cluster.v3.Cluster');
  const raw = type.toObject(type.decode(bytes), { enums: Number }) as { type: number; lb_policy: number };
  assert.equal(raw.type, 4);
  assert.equal(raw.lb_policy, 6);
});

describe('policies on the direct-http listener', () => {
  const deny = (target: string, ns = 'default') => `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-admin, namespace: ${ns} }
spec:
  targetRefs: [${target}]
  action: DENY
  rules: [{ to: [{ operation: { paths: [/admin*] } }] }]
---
`;
  const REQ = (path: string): L7Request => ({
    method: 'GET',
    path,
    authority: '10.0.0.7:8080',
    headers: new Map(),
    peerPrincipal: 'spiffe://cluster.local/ns/default/sa/curl',
    directRemoteIp: '10.0.0.1',
    destinationIp: '10.0.0.7',
    destinationPort: 8080,
    requestedServerName: '',
  });
  const cases: [string, string, boolean][] = [
    ['a Gateway target', deny('{ group: gateway.networking.k8s.io, kind: Gateway, name: waypoint }'), true],
    [
      'its GatewayClass, from the root namespace',
      deny('{ group: gateway.networking.k8s.io, kind: GatewayClass, name: istio-waypoint }', 'istio-system'),
      true,
    ],
    [
      'its GatewayClass, from another namespace (ignored)',
      deny('{ group: gateway.networking.k8s.io, kind: GatewayClass, name: istio-waypoint }'),
      false,
    ],
    [
      'another Gateway',
      deny('{ group: gateway.networking.k8s.io, kind: Gateway, name: other }') +
        gateway('other', 'default', 'workload'),
      false,
    ],
    ['a Service target (not the waypoint)', deny('{ kind: Service, group: "", name: productpage }'), false],
  ];
  for (const [name, yaml, applies] of cases)
    test(name, () => {
      const r = run(gateway('waypoint', 'default', 'workload') + yaml);
      const http = decodedAll(r).listeners.get(HTTP)!;
      const rbac = http.httpFilters.flatMap((f) => (f.rbac ? [{ name: f.name, config: f.rbac }] : []));
      assert.equal(rbac.length > 0, applies);
      assert.equal(evaluateL7(rbac, REQ('/admin/x')).allowed, !applies);
      assert.equal(evaluateL7(rbac, REQ('/productpage')).allowed, true);
      // A Gateway target with only a workload waypoint is not "no effect".
      if (applies)
        assert.deepEqual(
          r.authzProblems.filter((p) => /has no effect/.test(p.message)),
          [],
        );
    });
});

describe('an ORIGINAL_DST cluster the waypoint cannot honour is refused with its field path', () => {
  const base = (): Record<string, unknown> => ({
    name: 'c',
    type: 'ORIGINAL_DST',
    lb_policy: 'CLUSTER_PROVIDED',
    connect_timeout: { seconds: 1 },
  });
  test('the minimal one decodes, with Envoy’s default cleanup interval (5 s)', () => {
    const d = decodeClusterBytes(encodeEnvoy('envoy.config.cluster.v3.Cluster', base()));
    assert.ok(d.ok, JSON.stringify(!d.ok && d.errors));
    assert.deepEqual(d.value.originalDst, { cleanupIntervalMs: 5000 });
  });
  const cases: [string, (w: Record<string, unknown>) => void, string, RegExp][] = [
    ['ROUND_ROBIN', (w) => void (w.lb_policy = 'ROUND_ROBIN'), 'lb_policy', /CLUSTER_PROVIDED/],
    [
      'an EDS config',
      (w) => void (w.eds_cluster_config = { eds_config: { ads: {} } }),
      'eds_cluster_config',
      /no EDS/,
    ],
    [
      'a header naming the destination',
      (w) => void (w.original_dst_lb_config = { use_http_header: true }),
      'original_dst_lb_config.use_http_header',
      /original destination/,
    ],
    [
      'a port override',
      (w) => void (w.original_dst_lb_config = { upstream_port_override: { value: 15008 } }),
      'original_dst_lb_config.upstream_port_override',
      /not supported/,
    ],
    ['a zero cleanup interval', (w) => void (w.cleanup_interval = {}), 'cleanup_interval', /greater than 0/],
    ['a STATIC cluster', (w) => void (w.type = 'STATIC'), 'type', /ORIGINAL_DST/],
  ];
  for (const [name, mutate, path, message] of cases)
    test(name, () => {
      const w = base();
      mutate(w);
      const d = decodeClusterBytes(encodeEnvoy('envoy.config.cluster.v3.Cluster', w));
      assert.equal(d.ok, false);
      const e = !d.ok ? d.errors.find((x) => x.path === path) : undefined;
      assert.ok(e, `an error at ${path}: ${JSON.stringify(!d.ok && d.errors)}`);
      assert.match(e.message, message);
    });
  test('CLUSTER_PROVIDED stays refused for an EDS cluster', () => {
    const d = decodeClusterBytes(
      encodeEnvoy('envoy.config.cluster.v3.Cluster', {
        name: 'c',
        type: 'EDS',
        lb_policy: 'CLUSTER_PROVIDED',
      }),
    );
    assert.equal(d.ok, false);
    assert.ok(!d.ok && d.errors.some((e) => e.path === 'lb_policy'));
  });
});
