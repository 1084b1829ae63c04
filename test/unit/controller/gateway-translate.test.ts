/**
 * Istio Gateways (issue 8): decoding with field paths, and the translation of sample 18 and of
 * conflicting servers into gateway listeners and route configurations.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { buildSnapshot, decodeKubeYaml } from '../../../src/controller/files/kube-yaml.ts';
import { decodeIstioGateway } from '../../../src/controller/translate/l7/gateway-decode.ts';
import { intersect } from '../../../src/controller/translate/l7/gateway-translate.ts';
import { encodeListener } from '../../../src/controller/translate/l7/encode.ts';
import { translateL7 } from '../../../src/controller/translate/l7/translate.ts';
import { decodeGatewayListenerBytes } from '../../../src/waypoint/gateway/listener-facts.ts';
import { fixtureMesh, OPTIONS } from './l7/helpers.ts';

const SAMPLE_18 = readFileSync(
  new URL('../../fixtures/kube/istio-samples/18-gateway-bookinfo-ingress.yaml', import.meta.url),
  'utf8',
);

function translateYaml(text: string) {
  const decoded = decodeKubeYaml(text, 'gw.yaml');
  const b = buildSnapshot(decoded.objects).snapshot;
  const { snapshot, mesh } = fixtureMesh();
  const r = translateL7(
    {
      snapshot: { ...snapshot, istioGateways: b.istioGateways },
      mesh,
      virtualServices: b.virtualServices,
      destinationRules: [],
    },
    OPTIONS,
  );
  return { decodeProblems: decoded.problems, result: r };
}

test('sample 18: one HTTP listener and route configuration http.8080 for istio=ingressgateway', () => {
  const { decodeProblems, result } = translateYaml(SAMPLE_18);
  assert.deepEqual(decodeProblems, []);
  const gw = result.resources.routeConfigurations.filter((r) => r.name.startsWith('gateway/'));
  assert.deepEqual(
    gw.map((r) => r.name),
    ['gateway/istio=ingressgateway/http.8080'],
  );
  const vh = gw[0]!.virtual_hosts;
  assert.deepEqual(
    vh.map((v) => [v.name, v.domains]),
    [['*:8080', ['*']]],
  );
  assert.deepEqual(
    vh[0]!.routes.map((r) => [r.match.path ?? r.match.prefix, r.route?.cluster]),
    [
      ['/productpage', 'outbound|9080||productpage.default.svc.cluster.local'],
      ['/static', 'outbound|9080||productpage.default.svc.cluster.local'],
      ['/login', 'outbound|9080||productpage.default.svc.cluster.local'],
      ['/logout', 'outbound|9080||productpage.default.svc.cluster.local'],
      ['/api/v1/products', 'outbound|9080||productpage.default.svc.cluster.local'],
    ],
  );
  // Bound to the gateway only: the mesh's productpage routes are the default ones.
  const mesh = result.resources.routeConfigurations.find(
    (r) => r.name === 'productpage.default.svc.cluster.local:9080',
  );
  assert.deepEqual(
    mesh?.virtual_hosts[0]?.routes.map((r) => r.name),
    ['default'],
  );
  assert.ok(result.resources.listeners.some((l) => l.name === 'gateway/istio=ingressgateway/http.8080'));
});

const gateway = (servers: string) => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'Gateway',
  metadata: { name: 'g', namespace: 'default' },
  spec: { selector: { istio: 'ingressgateway' }, servers: JSON.parse(servers) as unknown },
});

test('decode: each problem with its field path', () => {
  const cases: [string, string, RegExp][] = [
    ['[]', 'spec.servers', /at least one server/],
    [
      '[{"port":{"number":70000,"name":"h","protocol":"HTTP"},"hosts":["*"]}]',
      'spec.servers[0].port.number',
      /port/,
    ],
    ['[{"port":{"number":80,"protocol":"HTTP"},"hosts":["*"]}]', 'spec.servers[0].port.name', /required/],
    [
      '[{"port":{"number":80,"name":"h","protocol":"FTP"},"hosts":["*"]}]',
      'spec.servers[0].port.protocol',
      /must be one of/,
    ],
    [
      '[{"port":{"number":80,"name":"h","protocol":"HTTP"},"hosts":[]}]',
      'spec.servers[0].hosts',
      /at least one host/,
    ],
    [
      '[{"port":{"number":80,"name":"h","protocol":"HTTP"},"hosts":["a/b/c"]}]',
      'spec.servers[0].hosts[0]',
      /namespace/,
    ],
    [
      '[{"port":{"number":443,"name":"s","protocol":"HTTPS"},"hosts":["*"]}]',
      'spec.servers[0].tls',
      /TLS settings/,
    ],
    [
      '[{"port":{"number":443,"name":"s","protocol":"HTTPS"},"hosts":["*"],"tls":{"mode":"SIMPLE"}}]',
      'spec.servers[0].tls.serverCertificate',
      /required/,
    ],
    [
      '[{"port":{"number":443,"name":"s","protocol":"HTTPS"},"hosts":["*"],"tls":{"mode":"MUTUAL","serverCertificate":"c","privateKey":"k"}}]',
      'spec.servers[0].tls.caCertificates',
      /required/,
    ],
    [
      '[{"port":{"number":443,"name":"s","protocol":"HTTPS"},"hosts":["*"],"tls":{"mode":"PASSTHROUGH"}}]',
      'spec.servers[0].tls.mode',
      /needs protocol TLS/,
    ],
    [
      '[{"port":{"number":80,"name":"h","protocol":"HTTP"},"hosts":["*"],"tls":{"mod":"x"}}]',
      'spec.servers[0].tls.mod',
      /unknown field/,
    ],
  ];
  for (const [servers, path, message] of cases) {
    const d = decodeIstioGateway(gateway(servers));
    assert.equal(d.value, undefined, path);
    const p = d.problems.find((x) => x.path === path);
    assert.ok(p, `${path}: ${JSON.stringify(d.problems)}`);
    assert.match(p.message, message);
    assert.equal(p.kind, 'Gateway');
  }
});

test('conflicting servers on one port are rejected naming both; the first keeps serving', () => {
  const { result } = translateYaml(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: a, namespace: default, creationTimestamp: "2020-01-01T00:00:00Z" }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: 8443, name: https, protocol: HTTPS }
    hosts: [a.example.com]
    tls: { mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem }
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: b, namespace: default, creationTimestamp: "2021-01-01T00:00:00Z" }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: 8443, name: http, protocol: HTTP }
    hosts: ["*"]
  - port: { number: 8443, name: https-b, protocol: HTTPS }
    hosts: [a.example.com]
    tls: { mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem }
`);
  const errors = result.problems.filter((p) => p.kind === 'Gateway' && p.severity === 'error');
  assert.deepEqual(
    errors.map((e) => [e.name, e.path]),
    [
      ['b', 'spec.servers[0].port.number'],
      ['b', 'spec.servers[1].hosts[0]'],
    ],
  );
  assert.match(
    errors[0]!.message,
    /Gateway default\/a spec.servers\[0\].*Gateway default\/b spec.servers\[0\]/,
  );
  assert.match(
    errors[1]!.message,
    /Gateway default\/a spec.servers\[0\].*Gateway default\/b spec.servers\[1\]/,
  );
  assert.deepEqual(
    result.resources.listeners.filter((l) => l.name.startsWith('gateway/')).map((l) => l.name),
    ['gateway/istio=ingressgateway/https.8443.https.a.default'],
  );
});

/** Gateway listeners of a translation, decoded as the gateway decodes them (facts and tcp targets). */
function gatewayListeners(result: ReturnType<typeof translateYaml>['result']) {
  return result.resources.listeners
    .filter((l) => l.name.startsWith('gateway/'))
    .map((l) => {
      const d = decodeGatewayListenerBytes(encodeListener(l).bytes);
      assert.ok(d.ok, JSON.stringify(d));
      return d.value;
    });
}

const TCP_AND_TLS = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: edge, namespace: default }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: 31400, name: tcp, protocol: TCP }
    hosts: ["*"]
  - port: { number: 15443, name: tls-pass, protocol: TLS }
    hosts: ["*.example.com"]
    tls: { mode: PASSTHROUGH }
  - port: { number: 15444, name: tls-term, protocol: TLS }
    hosts: [term.example.com]
    tls: { mode: SIMPLE, credentialName: term-cert }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: tcp, namespace: default, creationTimestamp: "2020-01-01T00:00:00Z" }
spec:
  hosts: ["*"]
  gateways: [edge]
  tcp:
  - match: [{ port: 9999 }]
    route: [{ destination: { host: httpbin, port: { number: 8000 } } }]
  - match: [{ port: 31400 }, { port: 15444 }]
    route:
    - { destination: { host: tcp-echo, port: { number: 9000 } }, weight: 80 }
    - { destination: { host: httpbin, port: { number: 8000 } }, weight: 20 }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: pass, namespace: default, creationTimestamp: "2020-01-02T00:00:00Z" }
spec:
  hosts: [a.example.com, b.example.com]
  gateways: [edge]
  tls:
  - match: [{ port: 15443, sniHosts: [a.example.com] }]
    route: [{ destination: { host: httpbin, port: { number: 8000 } } }]
  - match: [{ port: 15443, sniHosts: [a.example.com, b.example.com, other.org] }]
    route: [{ destination: { host: tcp-echo, port: { number: 9000 } } }]
`;

test('TCP, TLS PASSTHROUGH and TLS SIMPLE servers: tcp_proxy listeners routed by the bound tcp and tls rules, their facts readable by the gateway', () => {
  const { decodeProblems, result } = translateYaml(TCP_AND_TLS);
  assert.deepEqual(decodeProblems, []);
  assert.deepEqual(
    result.problems.filter((p) => p.kind === 'Gateway'),
    [],
  );
  const got = gatewayListeners(result).map((l) => [
    l.name,
    l.gateway?.protocol,
    l.gateway?.tls?.mode,
    l.gateway?.hosts,
    l.tcp?.map((t) => `${t.cluster} ${t.weight}`),
  ]);
  assert.deepEqual(got, [
    [
      'gateway/istio=ingressgateway/tcp.31400.tcp.edge.default',
      'TCP',
      undefined,
      ['*'],
      [
        'outbound|9000||tcp-echo.default.svc.cluster.local 80',
        'outbound|8000||httpbin.default.svc.cluster.local 20',
      ],
    ],
    // The first rule takes a.example.com; the second gets b only (other.org is not a server host).
    [
      'gateway/istio=ingressgateway/tls.15443.default.pass.0',
      'TLS',
      'PASSTHROUGH',
      ['a.example.com'],
      ['outbound|8000||httpbin.default.svc.cluster.local 1'],
    ],
    [
      'gateway/istio=ingressgateway/tls.15443.default.pass.1',
      'TLS',
      'PASSTHROUGH',
      ['b.example.com'],
      ['outbound|9000||tcp-echo.default.svc.cluster.local 1'],
    ],
    [
      'gateway/istio=ingressgateway/tls.15444.tls-term.edge.default',
      'TLS',
      'SIMPLE',
      ['term.example.com'],
      [
        'outbound|9000||tcp-echo.default.svc.cluster.local 80',
        'outbound|8000||httpbin.default.svc.cluster.local 20',
      ],
    ],
  ]);
  const term = gatewayListeners(result).find((l) => l.gateway?.tls?.mode === 'SIMPLE');
  assert.equal(term?.gateway?.tls?.credentialName, 'term-cert');
  assert.ok(
    result.resources.clusters.some((c) => c.name === 'outbound|9000||tcp-echo.default.svc.cluster.local'),
  );
});

test('TCP and TLS servers: kinds that cannot share a port conflict naming both; a server without a route and modes not served are reported', () => {
  const { result } = translateYaml(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: a, namespace: default, creationTimestamp: "2020-01-01T00:00:00Z" }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: 15443, name: pass, protocol: TLS }
    hosts: [a.example.com]
    tls: { mode: PASSTHROUGH }
  - port: { number: 15443, name: https, protocol: HTTPS }
    hosts: [b.example.com]
    tls: { mode: SIMPLE, credentialName: b }
  - port: { number: 31400, name: tcp, protocol: TCP }
    hosts: ["*"]
  - port: { number: 31401, name: auto, protocol: TLS }
    hosts: ["*"]
    tls: { mode: AUTO_PASSTHROUGH }
`);
  const problems = result.problems
    .filter((p) => p.kind === 'Gateway')
    .map((p) => [p.severity, p.path, p.message]);
  assert.equal(problems.length, 3, JSON.stringify(problems));
  assert.deepEqual(problems[0]!.slice(0, 2), ['error', 'spec.servers[1].port.number']);
  assert.match(
    problems[0]![2]!,
    /port 15443 is already served as TLS PASSTHROUGH by Gateway default\/a spec.servers\[0\]; Gateway default\/a spec.servers\[1\] \(HTTPS\) conflicts/,
  );
  assert.deepEqual(problems[1]!.slice(0, 2), ['warning', 'spec.servers[3].tls.mode']);
  assert.match(problems[1]![2]!, /AUTO_PASSTHROUGH is not served/);
  assert.deepEqual(problems[2]!.slice(0, 2), ['warning', 'spec.servers[2]']);
  assert.match(problems[2]![2]!, /no VirtualService bound to .* has a tcp route for port 31400/);
});

test('intersect: the more specific of two hosts that meet', () => {
  const table: [string, string, string | undefined][] = [
    ['a.example.com', '*.example.com', 'a.example.com'],
    ['*.example.com', 'a.example.com', 'a.example.com'],
    ['*', 'a.example.com', 'a.example.com'],
    ['*.a.example.com', '*.example.com', '*.a.example.com'],
    ['*.example.com', '*.a.example.com', '*.a.example.com'],
    ['a.example.com', 'a.example.com', 'a.example.com'],
    ['a.example.com', 'b.example.com', undefined],
    ['*.example.org', 'a.example.com', undefined],
  ];
  for (const [a, b, want] of table) assert.equal(intersect(a, b), want, `${a} ∩ ${b}`);
});

test('ISTIO_MUTUAL servers (HTTPS, and TLS with tcp routes) terminate: listeners whose facts say ISTIO_MUTUAL, no certificate files asked', () => {
  const { result } = translateYaml(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: m, namespace: default }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: 15443, name: https-mesh, protocol: HTTPS }
    hosts: [mesh.example.com]
    tls: { mode: ISTIO_MUTUAL }
`);
  assert.deepEqual(
    result.problems.filter((p) => p.kind === 'Gateway'),
    [],
  );
  assert.deepEqual(
    gatewayListeners(result).map((l) => [l.name, l.gateway?.protocol, l.gateway?.tls?.mode]),
    [['gateway/istio=ingressgateway/https.15443.https-mesh.m.default', 'HTTPS', 'ISTIO_MUTUAL']],
  );
});
