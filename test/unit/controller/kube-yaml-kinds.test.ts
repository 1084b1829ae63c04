/**
 * YAML decoding of EndpointSlice, ServiceEntry, PeerAuthentication, Gateway and GatewayClass; Istio's own sample
 * files; and the file source end to end on a directory holding all of them.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { loadKubeDir } from '../../../src/controller/files/file-source.ts';
import { decodeKubeSnapshot } from '../../../src/controller/files/kube-yaml.ts';
import type { KubeSnapshot } from '../../../src/controller/translate/kube-types.ts';
import { translate } from '../../../src/controller/translate/workloads.ts';
import { evaluateL4 } from '../../../src/core/policy/l4.ts';
import { MeshState } from '../../../src/core/state/mesh-state.ts';
import { OPTIONS } from './objects.ts';

const doc = (...lines: string[]): string => lines.join('\n') + '\n';

function decodeOk(text: string): KubeSnapshot {
  const r = decodeKubeSnapshot(text, 'x.yaml');
  assert.deepEqual(r.problems, []);
  return r.snapshot;
}

function problems(text: string): string[] {
  return decodeKubeSnapshot(text, 'x.yaml').problems.map(
    (p) => `${p.severity} ${p.line} ${p.kind} ${p.namespace}/${p.name} ${p.path}: ${p.message}`,
  );
}

test('an EndpointSlice with everything the controller reads', () => {
  const s = decodeOk(
    doc(
      'apiVersion: discovery.k8s.io/v1',
      'kind: EndpointSlice',
      'metadata:',
      '  name: legacy-x7k2p',
      '  namespace: shop',
      '  labels: {kubernetes.io/service-name: legacy}',
      'addressType: IPv4',
      'ports:',
      '- {name: http, port: 8080, protocol: TCP, appProtocol: http}',
      '- {name: all}',
      'endpoints:',
      '- addresses: [10.1.0.5]',
      '  conditions: {ready: true, serving: true, terminating: false}',
      '  targetRef: {kind: Pod, namespace: shop, name: cart-1, uid: u1}',
      '  nodeName: node-1',
      '  zone: z1',
      '- addresses: [192.0.2.40]',
      '  conditions: {ready: false}',
      '- addresses: [192.0.2.41]',
    ),
  );
  assert.deepEqual(s.endpointSlices, [
    {
      namespace: 'shop',
      name: 'legacy-x7k2p',
      labels: { 'kubernetes.io/service-name': 'legacy' },
      addressType: 'IPv4',
      ports: [
        { name: 'http', port: 8080, protocol: 'TCP', appProtocol: 'http' },
        { name: 'all', port: undefined, protocol: 'TCP', appProtocol: '' },
      ],
      endpoints: [
        {
          addresses: ['10.1.0.5'],
          ready: true,
          targetRef: { kind: 'Pod', namespace: 'shop', name: 'cart-1', uid: 'u1' },
          nodeName: 'node-1',
        },
        { addresses: ['192.0.2.40'], ready: false, targetRef: undefined, nodeName: '' },
        { addresses: ['192.0.2.41'], ready: undefined, targetRef: undefined, nodeName: '' },
      ],
    },
  ]);
});

test('a ServiceEntry in every accepted version, with everything the controller reads', () => {
  for (const version of ['v1', 'v1beta1', 'v1alpha3']) {
    const s = decodeOk(
      doc(
        `apiVersion: networking.istio.io/${version}`,
        'kind: ServiceEntry',
        'metadata:',
        '  name: db',
        '  labels: {app: db}',
        '  annotations: {ambient.istio.io/redirection: enabled}',
        'spec:',
        '  hosts: [db.example.com]',
        '  addresses: [240.0.0.10]',
        '  ports:',
        '  - {number: 5432, name: pg, protocol: TCP, targetPort: 15432}',
        '  location: MESH_INTERNAL',
        '  resolution: STATIC',
        '  exportTo: ["."]',
        '  subjectAltNames: [spiffe://cluster.local/ns/db/sa/pg]',
        '  endpoints:',
        '  - address: 192.0.2.10',
        '    ports: {pg: "6432"}',
        '    labels: {zone: a}',
        '    network: vm',
        '    locality: eu/west',
        '    weight: 3',
        '    serviceAccount: pg',
      ),
    );
    assert.deepEqual(
      s.serviceEntries,
      [
        {
          namespace: 'default',
          name: 'db',
          labels: { app: 'db' },
          annotations: { 'ambient.istio.io/redirection': 'enabled' },
          hosts: ['db.example.com'],
          addresses: ['240.0.0.10'],
          ports: [{ number: 5432, name: 'pg', protocol: 'TCP', targetPort: 15432 }],
          location: 'MESH_INTERNAL',
          resolution: 'STATIC',
          endpoints: [
            {
              address: '192.0.2.10',
              ports: { pg: 6432 },
              labels: { zone: 'a' },
              network: 'vm',
              locality: 'eu/west',
              weight: 3,
              serviceAccount: 'pg',
            },
          ],
          workloadSelector: undefined,
          subjectAltNames: ['spiffe://cluster.local/ns/db/sa/pg'],
        },
      ],
      version,
    );
  }
  const selected = decodeOk(
    doc(
      'apiVersion: networking.istio.io/v1',
      'kind: ServiceEntry',
      'metadata: {name: s}',
      'spec: {hosts: [s.internal], workloadSelector: {labels: {app: s}}}',
    ),
  );
  assert.deepEqual(selected.serviceEntries[0]!.workloadSelector, { app: 's' });
});

test('a PeerAuthentication: selector, mode, port-level modes keyed by number or digit string', () => {
  const s = decodeOk(
    doc(
      'apiVersion: security.istio.io/v1beta1',
      'kind: PeerAuthentication',
      'metadata: {name: p, namespace: shop, creationTimestamp: "2024-05-01T00:00:00Z"}',
      'spec:',
      '  selector: {matchLabels: {app: cart}}',
      '  mtls: {mode: STRICT}',
      '  portLevelMtls:',
      '    9901: {mode: PERMISSIVE}',
      '    "8080": {mode: DISABLE}',
      '    7070: {}',
    ),
  );
  assert.deepEqual(s.peerAuthentications, [
    {
      namespace: 'shop',
      name: 'p',
      creationTimestamp: '2024-05-01T00:00:00Z',
      selector: { app: 'cart' },
      mode: 'STRICT',
      portLevelMtls: [
        { port: 9901, mode: 'PERMISSIVE' },
        { port: 8080, mode: 'DISABLE' },
        { port: 7070, mode: '' },
      ],
    },
  ]);
  const bare = decodeOk(
    doc('apiVersion: security.istio.io/v1', 'kind: PeerAuthentication', 'metadata: {name: d}'),
  );
  assert.deepEqual(bare.peerAuthentications, [
    {
      namespace: 'default',
      name: 'd',
      creationTimestamp: '',
      selector: undefined,
      mode: '',
      portLevelMtls: [],
    },
  ]);
});

test('a Gateway: class, labels, listeners, requested and assigned addresses', () => {
  const s = decodeOk(
    doc(
      'apiVersion: gateway.networking.k8s.io/v1',
      'kind: Gateway',
      'metadata:',
      '  name: waypoint',
      '  namespace: shop',
      '  labels: {istio.io/waypoint-for: workload}',
      'spec:',
      '  gatewayClassName: istio-waypoint',
      '  listeners:',
      '  - {name: mesh, port: 15008, protocol: HBONE, allowedRoutes: {namespaces: {from: All}}}',
      '  addresses: [{type: IPAddress, value: 10.96.1.30}]',
      'status:',
      '  addresses: [{type: IPAddress, value: 10.96.1.30}, {value: "fd00::30"}]',
      '  conditions: [{type: Programmed, status: "True"}]',
    ),
  );
  assert.deepEqual(s.gateways, [
    {
      namespace: 'shop',
      name: 'waypoint',
      labels: { 'istio.io/waypoint-for': 'workload' },
      annotations: {},
      gatewayClassName: 'istio-waypoint',
      listeners: [
        {
          name: 'mesh',
          hostname: '',
          port: 15008,
          protocol: 'HBONE',
          allowedRoutes: { from: 'All', selector: undefined, kinds: [] },
        },
      ],
      addresses: [{ type: 'IPAddress', value: '10.96.1.30' }],
      statusAddresses: [
        { type: 'IPAddress', value: '10.96.1.30' },
        { type: '', value: 'fd00::30' },
      ],
    },
  ]);
});

test('a GatewayClass: cluster-scoped, its labels read; a bad one is a problem without a namespace', () => {
  const cls = (name: string, labels: string) =>
    doc(
      '---',
      'apiVersion: gateway.networking.k8s.io/v1',
      'kind: GatewayClass',
      'metadata:',
      `  name: ${name}`,
      `  labels: ${labels}`,
      'spec: {controllerName: istio.io/mesh-controller}',
    );
  const r = decodeKubeSnapshot(
    cls('istio-waypoint', '{istio.io/waypoint-for: workload}') +
      cls('istio-waypoint', '{istio.io/waypoint-for: all}') +
      cls('broken', '[workload]'),
    'x.yaml',
  );
  assert.deepEqual(r.snapshot.gatewayClasses, [
    { name: 'istio-waypoint', labels: { 'istio.io/waypoint-for': 'workload' } },
  ]);
  assert.deepEqual(
    r.problems.map(
      (p) => `${p.severity} ${p.line} ${p.kind} ${p.namespace}/${p.name} ${p.path}: ${p.message}`,
    ),
    [
      'error 20 GatewayClass /broken metadata.labels: must be a mapping',
      'error 9 GatewayClass /istio-waypoint : already defined at x.yaml:2; this definition is ignored',
    ],
  );
});

test('from YAML, a waypoint takes the traffic its GatewayClass labels when it has no label of its own', () => {
  const s = decodeOk(
    doc(
      'apiVersion: v1',
      'kind: Namespace',
      'metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}}',
      '---',
      'apiVersion: gateway.networking.k8s.io/v1',
      'kind: GatewayClass',
      'metadata: {name: istio-waypoint, labels: {istio.io/waypoint-for: workload}}',
      'spec: {controllerName: istio.io/mesh-controller}',
      '---',
      'apiVersion: gateway.networking.k8s.io/v1',
      'kind: Gateway',
      'metadata: {name: waypoint, namespace: shop}',
      'spec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}',
      '---',
      'apiVersion: v1',
      'kind: Pod',
      'metadata: {name: app-1, namespace: shop, labels: {app: app}}',
      'spec: {nodeName: node-1, containers: [{name: app, ports: [{containerPort: 8080}]}]}',
      'status: {phase: Running, podIP: 10.0.9.1}',
      '---',
      'apiVersion: v1',
      'kind: Service',
      'metadata: {name: app, namespace: shop}',
      'spec: {selector: {app: app}, clusterIP: 10.96.9.1, ports: [{port: 8080}]}',
    ),
  );
  const r = translate(s, OPTIONS);
  assert.deepEqual(r.problems, []);
  assert.equal(r.config.services.find((x) => x.name === 'app')?.waypoint, undefined);
  assert.deepEqual(r.config.workloads.find((x) => x.name === 'app-1')?.waypoint, {
    destination: { kind: 'hostname', namespace: 'shop', hostname: 'waypoint.shop.svc.cluster.local' },
    hboneMtlsPort: 15008,
  });
});

test('malformed objects of the new kinds are problems with line and path; the rest are kept', () => {
  const good = doc('---', 'apiVersion: v1', 'kind: ServiceAccount', 'metadata: {name: ok}');
  const cases: [string, string[]][] = [
    [
      doc(
        'apiVersion: networking.istio.io/v1',
        'kind: ServiceEntry',
        'metadata: {name: se}',
        'spec:',
        '  hosts: [a.example.com]',
        '  endpoint: [{address: 1.2.3.4}]',
      ),
      [
        'error 6 ServiceEntry default/se spec.endpoint: unknown field (known: hosts, addresses, ports, location, resolution, endpoints, workloadSelector, exportTo, subjectAltNames)',
      ],
    ],
    [
      doc(
        'apiVersion: networking.istio.io/v1',
        'kind: ServiceEntry',
        'metadata: {name: se}',
        'spec:',
        '  hosts: [a.example.com]',
        '  ports: [{number: http, name: http}]',
        '  endpoints: [{address: 1.2.3.4, ports: {http: -1}}]',
      ),
      [
        'error 6 ServiceEntry default/se spec.ports[0].number: must be an integer from -2147483648 to 2147483647',
        'error 7 ServiceEntry default/se spec.endpoints[0].ports.http: must be an integer from 0 to 4294967295',
      ],
    ],
    [
      doc(
        'apiVersion: security.istio.io/v1',
        'kind: PeerAuthentication',
        'metadata: {name: pa}',
        'spec:',
        '  mtls: {mod: STRICT}',
        '  portLevelMtls: {http: {mode: STRICT}}',
      ),
      [
        'error 5 PeerAuthentication default/pa spec.mtls.mod: unknown field (known: mode)',
        'error 6 PeerAuthentication default/pa spec.portLevelMtls.http: the key must be a port number',
      ],
    ],
    [
      doc(
        'apiVersion: discovery.k8s.io/v1',
        'kind: EndpointSlice',
        'metadata: {name: es}',
        'endpoints: {addresses: [1.2.3.4]}',
        'ports: [{port: eighty}]',
      ),
      [
        'error 4 EndpointSlice default/es endpoints: must be a list',
        'error 5 EndpointSlice default/es ports[0].port: must be an integer from -2147483648 to 4294967295',
      ],
    ],
    [
      doc(
        'apiVersion: gateway.networking.k8s.io/v1',
        'kind: Gateway',
        'metadata: {name: gw}',
        'spec: {gatewayClassName: 7, listeners: [{name: mesh, port: [15008]}]}',
      ),
      [
        'error 4 Gateway default/gw spec.gatewayClassName: must be a string',
        'error 4 Gateway default/gw spec.listeners[0].port: must be an integer from -2147483648 to 4294967295',
      ],
    ],
  ];
  for (const [text, want] of cases) {
    assert.deepEqual(problems(text + good), want);
    assert.deepEqual(
      decodeKubeSnapshot(text + good, 'x.yaml').snapshot.serviceAccounts.map((s) => s.name),
      ['ok'],
    );
  }
});

/** Copies of Istio's samples (formatted); the originals, beside the repository, when present. */
const SAMPLES = new URL('../../fixtures/kube/istio-samples/', import.meta.url);
const ORIGINALS = new URL('../../../../shared/istio-samples/', import.meta.url);
const sample = async (file: string) => {
  const r = decodeKubeSnapshot(await readFile(new URL(file, SAMPLES), 'utf8'), file);
  assert.deepEqual(r.problems, [], file);
  const original = await readFile(new URL(file, ORIGINALS), 'utf8').catch(() => undefined);
  if (original !== undefined) {
    const o = decodeKubeSnapshot(original, file);
    assert.deepEqual(o.problems, [], `original ${file}`);
    assert.deepEqual(o.snapshot, r.snapshot, `the copy of ${file} reads as the original`);
  }
  return r.snapshot;
};

test("Istio's sample 19 (waypoint Gateway) decodes and validates without problems", async () => {
  const s = await sample('19-waypoint-gateway.yaml');
  assert.deepEqual(
    s.gateways.map((g) => [
      g.namespace,
      g.name,
      g.gatewayClassName,
      g.labels['istio.io/waypoint-for'],
      g.listeners,
    ]),
    [
      [
        'default',
        'waypoint',
        'istio-waypoint',
        'service',
        [{ name: 'mesh', hostname: '', port: 15008, protocol: 'HBONE' }],
      ],
    ],
  );
  assert.deepEqual(translate(s, OPTIONS).problems, []);
});

test("Istio's sample 24 (PeerAuthentication STRICT) denies plaintext into namespace foo only", async () => {
  const s = await sample('24-peerauthentication-strict.yaml');
  assert.deepEqual(s.peerAuthentications, [
    {
      namespace: 'foo',
      name: 'default',
      creationTimestamp: '',
      selector: undefined,
      mode: 'STRICT',
      portLevelMtls: [],
    },
  ]);
  const pod = (namespace: string, ip: string) => ({
    namespace,
    name: 'app',
    uid: '',
    labels: {},
    annotations: {},
    nodeName: 'n',
    serviceAccountName: '',
    podIPs: [ip],
    phase: 'Running',
    ready: true,
    ownerReferences: [],
    hostNetwork: false,
    containerPorts: [],
  });
  const r = translate({ ...s, pods: [pod('foo', '10.0.0.1'), pod('bar', '10.0.0.2')] }, OPTIONS);
  assert.deepEqual(r.problems, []);
  const state = new MeshState(r.config);
  const plaintext = (ip: string) =>
    evaluateL4(state.policiesFor(state.workloadByIp(ip)!), {
      srcIp: '10.9.9.9',
      dstIp: ip,
      dstPort: 80,
      srcIdentity: undefined,
    }).allowed;
  assert.equal(plaintext('10.0.0.1'), false);
  assert.equal(plaintext('10.0.0.2'), true);
});

test("Istio's sample 25 (egress ServiceEntry) decodes; the entry is a Service with a DNS endpoint", async () => {
  const s = await sample('25-serviceentry-egress-waypoint.yaml');
  const r = translate(s, OPTIONS);
  assert.deepEqual(r.problems, []);
  assert.deepEqual(
    r.config.services.map((x) => [x.namespace, x.hostname, x.vips, Object.fromEntries(x.ports)]),
    [['istio-egress', 'httpbin.org', [], { 80: 80 }]],
  );
  assert.deepEqual(
    r.config.workloads.map((w) => [w.uid, w.hostname, w.tunnelProtocol]),
    [
      [
        'Kubernetes/networking.istio.io/ServiceEntry/istio-egress/httpbin-org/httpbin.org',
        'httpbin.org',
        'NONE',
      ],
    ],
  );
  // The targetRefs policy is the waypoint's, not ztunnel's.
  assert.deepEqual(r.config.policies, []);
  assert.equal(s.gateways.length, 1);
});

const MESH_KINDS = new URL('../../fixtures/kube/mesh-kinds/', import.meta.url).pathname;

test('the file source end to end: a directory with every kind, loaded and translated', async () => {
  const { snapshot, problems: readProblems } = await loadKubeDir(MESH_KINDS);
  assert.deepEqual(readProblems, []);
  assert.deepEqual(
    [
      snapshot.endpointSlices.length,
      snapshot.serviceEntries.length,
      snapshot.peerAuthentications.length,
      snapshot.gateways.length,
    ],
    [1, 2, 1, 1],
  );
  const r = translate(snapshot, OPTIONS);
  assert.deepEqual(r.problems, []);
  const byUid = new Map(r.config.workloads.map((w) => [w.uid, w]));
  assert.deepEqual(
    [...byUid.keys()],
    [
      'Kubernetes//Pod/shop/cart-1',
      'Kubernetes/discovery.k8s.io/EndpointSlice/shop/legacy-x7k2p/192.0.2.40',
      'Kubernetes/networking.istio.io/ServiceEntry/shop/api/api.example.com',
      'Kubernetes/networking.istio.io/ServiceEntry/shop/payments/192.0.2.50',
    ],
  );
  const cart = byUid.get('Kubernetes//Pod/shop/cart-1')!;
  assert.deepEqual(Object.fromEntries(cart.services), {
    'shop/legacy.shop.svc.cluster.local': new Map([[80, 8080]]),
  });
  assert.deepEqual(cart.authorizationPolicies, ['shop/converted_peer_authentication_cart']);
  assert.equal(
    byUid.get('Kubernetes/discovery.k8s.io/EndpointSlice/shop/legacy-x7k2p/192.0.2.40')!.healthy,
    false,
  );
  assert.deepEqual(
    Object.fromEntries(
      byUid.get('Kubernetes/networking.istio.io/ServiceEntry/shop/payments/192.0.2.50')!.services,
    ),
    { 'shop/payments.example.com': new Map([[443, 9443]]) },
  );
  assert.deepEqual(
    r.config.services.map((s) => s.hostname),
    ['api.example.com', 'legacy.shop.svc.cluster.local', 'payments.example.com'],
  );
  // Plaintext reaches cart only on its PERMISSIVE admin port.
  const state = new MeshState(r.config);
  const plaintext = (dstPort: number) =>
    evaluateL4(state.policiesFor(cart), {
      srcIp: '10.9.9.9',
      dstIp: '10.1.0.5',
      dstPort,
      srcIdentity: undefined,
    }).allowed;
  assert.deepEqual([plaintext(8080), plaintext(9901)], [false, true]);
});
