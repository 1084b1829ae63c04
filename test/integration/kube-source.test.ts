/**
 * The cluster source against a fake API server that speaks the real list/watch protocol, so the
 * real `@kubernetes/client-node` informers do the listing, watching, resuming and relisting:
 * initial list, adds, updates, deletes, 410 Expired after compaction, a server crash and restart,
 * a malformed object (and an invalid VirtualService), a kind that is not served, and the translation
 * of what it reads (workloads and L7, and waypoint binding through a GatewayClass's label).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { silentLogger } from '../../src/core/log.ts';
import { TunnelProtocol } from '../../src/core/xds/model.ts';
import { loadKubeDir } from '../../src/controller/files/file-source.ts';
import { watchKube, type KubeProblem, type KubeWatch } from '../../src/controller/kube/source.ts';
import type { KubeSnapshot } from '../../src/controller/translate/kube-types.ts';
import { encodeL7Resources, translateL7 } from '../../src/controller/translate/l7/index.ts';
import { translate } from '../../src/controller/translate/workloads.ts';
import { captureLogger } from '../fakes/capture-log.ts';
import {
  FAKE_RESOURCES,
  FakeKubeApiServer,
  type FakeKind,
  type RecordedRequest,
} from '../fakes/kube-api-server.ts';
import { waitFor } from '../fakes/mesh.ts';

const fixtures = fileURLToPath(new URL('../fixtures/kube/', import.meta.url));
const TOKEN = 'controller-token';
const WAIT_MS = 15_000;
const KINDS = Object.keys(FAKE_RESOURCES) as readonly FakeKind[];
const meshKinds = fileURLToPath(new URL('../fixtures/kube/mesh-kinds/', import.meta.url));

let dir: string;
let fake: FakeKubeApiServer;
let kubeconfig: string;
let source: KubeWatch;
const seen: { snapshot: KubeSnapshot; problems: readonly KubeProblem[] }[] = [];
const capture = captureLogger('debug');

const latest = () => seen.at(-1)!;
const podNames = () => latest().snapshot.pods.map((p) => `${p.namespace}/${p.name}`);

/** Seeds the fake with the fixture YAML the file-source tests use, `kind: List` expanded. */
async function seedFromFixtures(server: FakeKubeApiServer, from = fixtures): Promise<void> {
  const files = (await readdir(from, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
  for (const file of files.sort()) {
    for (const doc of parseAllDocuments(await readFile(join(from, file), 'utf8'))) {
      const obj = doc.toJS() as Record<string, unknown> | null;
      if (!obj) continue;
      const items = obj.kind === 'List' ? (obj.items as Record<string, unknown>[]) : [obj];
      for (const item of items) server.add(item.kind as FakeKind, item);
    }
  }
}

function sortedByName<T extends { namespace?: string; name: string }>(xs: readonly T[]): T[] {
  return [...xs].sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
}

function pod(namespace: string, name: string, ip: string, extra: Record<string, unknown> = {}) {
  return {
    metadata: { name, namespace, labels: { app: name } },
    spec: { nodeName: 'node-1', containers: [{ name: 'app', ports: [{ containerPort: 8080 }] }] },
    status: { phase: 'Running', podIP: ip },
    ...extra,
  };
}

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Requests after index `from` of one verb and kind. */
function requestsAfter(from: number, verb: RecordedRequest['verb'], kind: FakeKind): RecordedRequest[] {
  return fake.requests.slice(from).filter((r) => r.verb === verb && r.kind === kind);
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ambit-kube-source-'));
  fake = await FakeKubeApiServer.start({ token: TOKEN });
  kubeconfig = await fake.writeKubeconfig(join(dir, 'kubeconfig'));
  await seedFromFixtures(fake);
  source = watchKube(
    { path: kubeconfig },
    {
      debounceMs: 20,
      log: capture.log,
      onSnapshot: (snapshot, problems) => seen.push({ snapshot, problems }),
    },
  );
  await within(source.ready, WAIT_MS, 'the first snapshot');
});

after(async () => {
  source.close();
  await fake.close();
  await rm(dir, { recursive: true, force: true });
});

test('the initial list gives the snapshot the same objects give from YAML', async () => {
  assert.equal(seen.length, 1, 'one snapshot once every kind has listed');
  const fromFiles = (await loadKubeDir(fixtures)).snapshot;
  const { snapshot, problems } = latest();
  assert.deepEqual(problems, []);
  // The API server assigns uids; the YAML has none.
  assert.ok(snapshot.pods.every((p) => p.uid.startsWith('uid-')));
  const sorted = <T extends { namespace?: string; name: string }>(xs: readonly T[]) =>
    [...xs].sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
  assert.deepEqual(
    { ...snapshot, pods: sorted(snapshot.pods.map((p) => ({ ...p, uid: '' }))) },
    {
      namespaces: sorted(fromFiles.namespaces),
      pods: sorted(fromFiles.pods),
      services: sorted(fromFiles.services),
      endpointSlices: [],
      serviceAccounts: sorted(fromFiles.serviceAccounts),
      serviceEntries: [],
      authorizationPolicies: sorted(fromFiles.authorizationPolicies),
      peerAuthentications: [],
      gateways: [],
      gatewayClasses: [],
      virtualServices: [],
      destinationRules: [],
      httpRoutes: [],
      istioGateways: [],
      referenceGrants: [],
    },
  );
  // One cluster-wide LIST and WATCH per kind, through the real client with the kubeconfig's token.
  for (const kind of KINDS) {
    assert.equal(requestsAfter(0, 'list', kind).length, 1, `${kind} listed once`);
    assert.ok(requestsAfter(0, 'watch', kind).length >= 1, `${kind} watched`);
  }
});

test('pods in an ambient namespace translate to HBONE workloads, others to plain ones', async () => {
  fake.add('Namespace', { metadata: { name: 'legacy' } });
  fake.add('Pod', pod('legacy', 'old-app', '10.9.0.1'));
  await waitFor(
    () => podNames().includes('legacy/old-app'),
    WAIT_MS,
    () => podNames().join(', '),
  );
  const { config, problems } = translate(latest().snapshot, {
    clusterId: 'Kubernetes',
    trustDomain: 'cluster.local',
    clusterDomain: 'cluster.local',
    rootNamespace: 'istio-system',
  });
  assert.deepEqual(
    problems.filter((p) => p.severity === 'error'),
    [],
  );
  const byName = new Map(config.workloads.map((w) => [`${w.namespace}/${w.name}`, w]));
  assert.equal(byName.get('default/reviews-v1-7f99cc4496-gdxfn')?.tunnelProtocol, TunnelProtocol.Hbone);
  assert.equal(byName.get('default/curl-6d9c7b7b5d-x2x7k')?.tunnelProtocol, TunnelProtocol.Hbone);
  assert.equal(byName.get('legacy/old-app')?.tunnelProtocol, TunnelProtocol.None);
  assert.ok(config.policies.some((p) => p.name === 'reviews-from-curl'));
});

test('an added pod, a labelled namespace and a deleted service show up in the next snapshots', async () => {
  fake.add('Pod', pod('default', 'ratings', '127.0.3.1'));
  await waitFor(
    () => podNames().includes('default/ratings'),
    WAIT_MS,
    () => podNames().join(', '),
  );

  const ns = fake.get('Namespace', 'legacy')!;
  fake.update('Namespace', {
    ...ns,
    metadata: { name: 'legacy', labels: { 'istio.io/dataplane-mode': 'ambient' } },
  });
  const legacyLabels = () => latest().snapshot.namespaces.find((n) => n.name === 'legacy')?.labels;
  await waitFor(
    () => legacyLabels()?.['istio.io/dataplane-mode'] === 'ambient',
    WAIT_MS,
    () => JSON.stringify(legacyLabels()),
  );

  const before = latest().snapshot.services.length;
  fake.delete('Service', { metadata: { name: 'reviews', namespace: 'default' } });
  await waitFor(() => !latest().snapshot.services.some((s) => s.name === 'reviews'), WAIT_MS);
  assert.equal(latest().snapshot.services.length, before - 1);
});

test('EndpointSlices, ServiceEntries, PeerAuthentications and Gateways: added, changed and deleted', async () => {
  const snap = () => latest().snapshot;
  const cases: {
    kind: FakeKind;
    object: Record<string, unknown>;
    changed: Record<string, unknown>;
    /** What the snapshot shows of the object, or undefined when it is absent. */
    read: (s: KubeSnapshot) => unknown;
    first: unknown;
    second: unknown;
  }[] = [
    {
      kind: 'EndpointSlice',
      object: {
        metadata: { name: 'ext-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'ext' } },
        addressType: 'IPv4',
        endpoints: [{ addresses: ['10.9.1.1'], conditions: { ready: true } }],
        ports: [{ name: 'http', port: 80, protocol: 'TCP' }],
      },
      changed: {
        metadata: { name: 'ext-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'ext' } },
        addressType: 'IPv4',
        endpoints: [{ addresses: ['10.9.1.2'], conditions: { ready: false } }],
        ports: [{ name: 'http', port: 80, protocol: 'TCP' }],
      },
      read: (s) =>
        s.endpointSlices.find((x) => x.name === 'ext-1')?.endpoints.map((e) => [e.addresses, e.ready]),
      first: [[['10.9.1.1'], true]],
      second: [[['10.9.1.2'], false]],
    },
    {
      kind: 'ServiceEntry',
      object: {
        metadata: { name: 'api', namespace: 'default' },
        spec: {
          hosts: ['a.example.com'],
          ports: [{ number: 443, name: 'tls', protocol: 'TLS' }],
          resolution: 'DNS',
        },
      },
      changed: {
        metadata: { name: 'api', namespace: 'default' },
        spec: {
          hosts: ['b.example.com'],
          ports: [{ number: 443, name: 'tls', protocol: 'TLS' }],
          resolution: 'DNS',
        },
      },
      read: (s) => s.serviceEntries.find((x) => x.name === 'api')?.hosts,
      first: ['a.example.com'],
      second: ['b.example.com'],
    },
    {
      kind: 'PeerAuthentication',
      object: { metadata: { name: 'default', namespace: 'default' }, spec: { mtls: { mode: 'STRICT' } } },
      changed: {
        metadata: { name: 'default', namespace: 'default' },
        spec: { mtls: { mode: 'PERMISSIVE' }, selector: { matchLabels: { app: 'reviews' } } },
      },
      read: (s) => {
        const p = s.peerAuthentications.find((x) => x.name === 'default');
        return p && [p.mode, p.selector];
      },
      first: ['STRICT', undefined],
      second: ['PERMISSIVE', { app: 'reviews' }],
    },
    {
      kind: 'Gateway',
      object: {
        metadata: { name: 'waypoint', namespace: 'default', labels: { 'istio.io/waypoint-for': 'service' } },
        spec: {
          gatewayClassName: 'istio-waypoint',
          listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }],
        },
      },
      changed: {
        metadata: { name: 'waypoint', namespace: 'default', labels: { 'istio.io/waypoint-for': 'all' } },
        spec: {
          gatewayClassName: 'istio-waypoint',
          listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }],
        },
        status: { addresses: [{ type: 'IPAddress', value: '10.96.0.40' }] },
      },
      read: (s) => {
        const g = s.gateways.find((x) => x.name === 'waypoint');
        return g && [g.labels['istio.io/waypoint-for'], g.statusAddresses.map((a) => a.value)];
      },
      first: ['service', []],
      second: ['all', ['10.96.0.40']],
    },
  ];
  for (const c of cases) {
    const now = () => JSON.stringify(c.read(snap()));
    fake.add(c.kind, c.object);
    await waitFor(
      () => now() === JSON.stringify(c.first),
      WAIT_MS,
      () => `${c.kind} added: ${now()}`,
    );
    fake.update(c.kind, c.changed);
    await waitFor(
      () => now() === JSON.stringify(c.second),
      WAIT_MS,
      () => `${c.kind} changed: ${now()}`,
    );
  }
  // While they exist, the PeerAuthentication (now PERMISSIVE for reviews) still brings the static
  // policy, and the problems stay empty.
  assert.deepEqual(latest().problems, []);
  const { config } = translate(snap(), {
    clusterId: 'Kubernetes',
    trustDomain: 'cluster.local',
    clusterDomain: 'cluster.local',
    rootNamespace: 'istio-system',
  });
  assert.ok(config.policies.some((p) => p.name === 'istio_converted_static_strict'));
  for (const c of cases) {
    const metadata = c.object.metadata as { name: string; namespace: string };
    fake.delete(c.kind, { metadata });
    await waitFor(
      () => c.read(snap()) === undefined,
      WAIT_MS,
      () => `${c.kind} deleted`,
    );
  }
});

test("a GatewayClass's waypoint-for label binds its Gateway's traffic; a change to it re-binds", async () => {
  const options = {
    clusterId: 'Kubernetes',
    trustDomain: 'cluster.local',
    clusterDomain: 'cluster.local',
    rootNamespace: 'istio-system',
  };
  const classLabels = (labels: Record<string, string>) => ({
    metadata: { name: 'istio-waypoint', labels },
    spec: { controllerName: 'istio.io/mesh-controller' },
  });
  const via = {
    destination: { kind: 'hostname', namespace: 'wpclass', hostname: 'waypoint.wpclass.svc.cluster.local' },
    hboneMtlsPort: 15008,
  };
  /** Whether the Service and the pod of namespace wpclass go through the waypoint, and the problems. */
  const binding = () => {
    const { config, problems } = translate(latest().snapshot, options);
    const svc = config.services.find((x) => x.namespace === 'wpclass' && x.name === 'app');
    const wl = config.workloads.find((x) => x.namespace === 'wpclass' && x.name === 'app-1');
    return {
      service: svc && (svc.waypoint ? 'waypoint' : 'direct'),
      pod: wl && (wl.waypoint ? 'waypoint' : 'direct'),
      waypoints: [svc?.waypoint, wl?.waypoint].filter((w) => w !== undefined),
      problems: problems.map(
        (p) => `${p.severity} ${p.kind} ${p.namespace}/${p.name} ${p.path}: ${p.message}`,
      ),
    };
  };
  const expectBinding = async (service: string, podBinding: string) => {
    const now = () => JSON.stringify([binding().service, binding().pod]);
    await waitFor(() => now() === JSON.stringify([service, podBinding]), WAIT_MS, now);
  };

  const AMBIENT = { 'istio.io/dataplane-mode': 'ambient' };
  const gatewayWith = (labels: Record<string, string>) => ({
    metadata: { name: 'waypoint', namespace: 'wpclass', labels },
    spec: {
      gatewayClassName: 'istio-waypoint',
      listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }],
    },
  });
  const added: [FakeKind, Record<string, unknown>][] = [
    ['GatewayClass', classLabels({ 'istio.io/waypoint-for': 'workload' })],
    [
      'Namespace',
      { metadata: { name: 'wpclass', labels: { ...AMBIENT, 'istio.io/use-waypoint': 'waypoint' } } },
    ],
    ['Gateway', gatewayWith({})],
    [
      'Service',
      {
        metadata: { name: 'app', namespace: 'wpclass' },
        spec: { selector: { app: 'app-1' }, clusterIP: '10.96.7.1', ports: [{ port: 8080 }] },
      },
    ],
    ['Pod', pod('wpclass', 'app-1', '10.9.7.1')],
  ];
  for (const [kind, object] of added) fake.add(kind, object);
  // The Gateway has no label of its own: the class's `workload` takes the pod, not the Service.
  await expectBinding('direct', 'waypoint');
  assert.deepEqual(latest().snapshot.gatewayClasses, [
    { name: 'istio-waypoint', labels: { 'istio.io/waypoint-for': 'workload' } },
  ]);
  assert.deepEqual(binding().waypoints, [via]);
  assert.deepEqual(binding().problems, []);

  // Relabelling the class re-binds: now the Service, not the pod.
  fake.update('GatewayClass', classLabels({ 'istio.io/waypoint-for': 'service' }));
  await expectBinding('waypoint', 'direct');

  // An invalid value on the class is reported with its path and ignored: the default (service).
  fake.update('GatewayClass', classLabels({ 'istio.io/waypoint-for': 'all' }));
  await expectBinding('waypoint', 'waypoint');
  fake.update('GatewayClass', classLabels({ 'istio.io/waypoint-for': 'everything' }));
  await expectBinding('waypoint', 'direct');
  assert.deepEqual(binding().problems, [
    `error GatewayClass /istio-waypoint metadata.labels["istio.io/waypoint-for"]: "everything" must be one of service, workload, all, none; ignored: the class's Gateways without the label take service traffic`,
  ]);

  // The Gateway's own label wins over the class's.
  fake.update('GatewayClass', classLabels({ 'istio.io/waypoint-for': 'service' }));
  fake.update('Gateway', gatewayWith({ 'istio.io/waypoint-for': 'workload' }));
  await expectBinding('direct', 'waypoint');

  // Deleted, the class no longer shows in the snapshot.
  fake.delete('GatewayClass', { metadata: { name: 'istio-waypoint' } });
  await waitFor(() => latest().snapshot.gatewayClasses?.length === 0, WAIT_MS);
  for (const [kind, object] of added.slice(1).reverse())
    fake.delete(kind, { metadata: object.metadata as { name: string; namespace?: string } });
  await waitFor(() => !latest().snapshot.namespaces.some((n) => n.name === 'wpclass'), WAIT_MS);
});

test('VirtualServices and DestinationRules: decoded, changed, an invalid one skipped with its field path, deleted', async () => {
  const snap = () => latest().snapshot;
  const vs = (weights: [number, number]) => ({
    metadata: { name: 'reviews', namespace: 'default' },
    spec: {
      hosts: ['reviews'],
      http: [
        {
          route: [
            { destination: { host: 'reviews', subset: 'v1' }, weight: weights[0] },
            { destination: { host: 'reviews', subset: 'v2' }, weight: weights[1] },
          ],
        },
      ],
    },
  });
  const weights = () =>
    snap()
      .virtualServices.find((v) => v.name === 'reviews')
      ?.http[0]?.route.map((r) => r.weight);
  fake.add('DestinationRule', {
    metadata: { name: 'reviews', namespace: 'default' },
    spec: {
      host: 'reviews',
      subsets: [
        { name: 'v1', labels: { version: 'v1' } },
        { name: 'v2', labels: { version: 'v2' } },
      ],
    },
  });
  fake.add('VirtualService', vs([90, 10]));
  await waitFor(
    () => JSON.stringify(weights()) === '[90,10]' && snap().destinationRules.length === 1,
    WAIT_MS,
    () => `${JSON.stringify(weights())} ${snap().destinationRules.length}`,
  );
  assert.deepEqual(
    snap().destinationRules[0]!.subsets.map((s) => [s.name, s.labels]),
    [
      ['v1', { version: 'v1' }],
      ['v2', { version: 'v2' }],
    ],
  );
  fake.update('VirtualService', vs([50, 50]));
  await waitFor(
    () => JSON.stringify(weights()) === '[50,50]',
    WAIT_MS,
    () => JSON.stringify(weights()),
  );
  // An invalid one is skipped with every error's field path; the others stay.
  fake.add('VirtualService', {
    metadata: { name: 'bad', namespace: 'default' },
    spec: { hosts: ['ratings'], http: [{ route: [{ destination: { host: 'ratings' }, weight: 150 }] }] },
  });
  const problem = () => latest().problems.find((p) => p.name === 'bad');
  await waitFor(() => problem() !== undefined, WAIT_MS);
  assert.deepEqual(
    { ...problem()!, message: '' },
    {
      severity: 'error',
      kind: 'VirtualService',
      namespace: 'default',
      name: 'bad',
      path: 'spec.http[0].route[0].weight',
      message: '',
    },
  );
  assert.match(problem()!.message, /150/);
  assert.deepEqual(
    snap().virtualServices.map((v) => v.name),
    ['reviews'],
  );
  for (const [kind, name] of [
    ['VirtualService', 'reviews'],
    ['VirtualService', 'bad'],
    ['DestinationRule', 'reviews'],
  ] as const)
    fake.delete(kind, { metadata: { name, namespace: 'default' } });
  await waitFor(
    () =>
      snap().virtualServices.length + snap().destinationRules.length === 0 &&
      !latest().problems.some((p) => p.name === 'bad'),
    WAIT_MS,
  );
});

test('HTTPRoutes: decoded, changed, an invalid one skipped with its field path, deleted', async () => {
  const snap = () => latest().snapshot;
  const route = (weights: [number, number]) => ({
    metadata: { name: 'reviews', namespace: 'default' },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'reviews', port: 9080 }],
      rules: [
        {
          backendRefs: [
            { name: 'reviews-v1', port: 9080, weight: weights[0] },
            { name: 'reviews-v2', port: 9080, weight: weights[1] },
          ],
        },
      ],
    },
  });
  const weights = () =>
    snap()
      .httpRoutes.find((r) => r.name === 'reviews')
      ?.rules[0]?.backendRefs.map((b) => b.weight);
  fake.add('HTTPRoute', route([90, 10]));
  await waitFor(
    () => JSON.stringify(weights()) === '[90,10]',
    WAIT_MS,
    () => JSON.stringify(weights()),
  );
  // The API server stamps the creation time, which orders routes of equal precedence.
  assert.ok(snap().httpRoutes[0]!.creationTimestamp !== '');
  fake.update('HTTPRoute', route([50, 50]));
  await waitFor(
    () => JSON.stringify(weights()) === '[50,50]',
    WAIT_MS,
    () => JSON.stringify(weights()),
  );
  fake.add('HTTPRoute', {
    metadata: { name: 'bad', namespace: 'default' },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'ratings' }],
      rules: [
        {
          matches: [{ path: { type: 'Prefix', value: '/' } }],
          backendRefs: [{ name: 'ratings', port: 9080 }],
        },
      ],
    },
  });
  const problem = () => latest().problems.find((p) => p.name === 'bad');
  await waitFor(() => problem() !== undefined, WAIT_MS);
  assert.deepEqual(
    { ...problem()!, message: '' },
    {
      severity: 'error',
      kind: 'HTTPRoute',
      namespace: 'default',
      name: 'bad',
      path: 'spec.rules[0].matches[0].path.type',
      message: '',
    },
  );
  assert.deepEqual(
    snap().httpRoutes.map((r) => r.name),
    ['reviews'],
  );
  for (const name of ['reviews', 'bad'])
    fake.delete('HTTPRoute', { metadata: { name, namespace: 'default' } });
  await waitFor(
    () => snap().httpRoutes.length === 0 && !latest().problems.some((p) => p.name === 'bad'),
    WAIT_MS,
  );
});

test('the new kinds give the same snapshot from the API server as from the same YAML', async () => {
  const api = await FakeKubeApiServer.start();
  await seedFromFixtures(api, meshKinds);
  const got: KubeSnapshot[] = [];
  const w = watchKube(
    { path: await api.writeKubeconfig(join(dir, 'mesh-kinds-kubeconfig')) },
    {
      debounceMs: 10,
      log: silentLogger(),
      onSnapshot: (s, problems) => (assert.deepEqual(problems, []), got.push(s)),
    },
  );
  try {
    await within(w.ready, WAIT_MS, 'the first snapshot');
    const fromFiles = await loadKubeDir(meshKinds);
    assert.deepEqual(fromFiles.problems, []);
    // The API server stamps uids and creation times, which the YAML has none of, and lists in
    // namespace/name order where the files keep theirs.
    const fromApi = got.at(-1)!;
    const normal = (s: KubeSnapshot) =>
      Object.fromEntries(
        Object.entries({
          ...s,
          pods: s.pods.map((p) => ({ ...p, uid: '' })),
          peerAuthentications: s.peerAuthentications.map((p) => ({ ...p, creationTimestamp: '' })),
          virtualServices: s.virtualServices.map((v) => ({ ...v, creationTimestamp: '' })),
          httpRoutes: s.httpRoutes.map((r) => ({ ...r, creationTimestamp: '' })),
          destinationRules: s.destinationRules.map((d) => ({ ...d, creationTimestamp: '' })),
          gateways: s.gateways.map((g) => ({ ...g, creationTimestamp: '' })),
        }).map(([k, list]) => [k, sortedByName(list as readonly { namespace?: string; name: string }[])]),
      );
    assert.deepEqual(normal(fromApi), normal(fromFiles.snapshot));
    assert.equal(fromApi.endpointSlices.length + fromApi.serviceEntries.length + fromApi.gateways.length, 4);
    assert.ok(fromApi.peerAuthentications.every((p) => p.creationTimestamp !== ''));
    const options = {
      clusterId: 'c',
      trustDomain: 'td',
      clusterDomain: 'cluster.local',
      rootNamespace: 'istio-system',
    };
    assert.deepEqual(translate(fromApi, options).config, translate(fromFiles.snapshot, options).config);
    // The L7 resources too, byte for byte (the VirtualService and DestinationRule are the fixture's).
    assert.deepEqual([fromApi.virtualServices.length, fromApi.destinationRules.length], [1, 1]);
    const l7 = (s: KubeSnapshot) =>
      encodeL7Resources(
        translateL7(
          {
            snapshot: s,
            mesh: translate(s, options).config,
            virtualServices: s.virtualServices,
            destinationRules: s.destinationRules,
          },
          options,
        ).resources,
      );
    const fromApiL7 = l7(fromApi);
    assert.deepEqual(fromApiL7, l7(fromFiles.snapshot));
    assert.ok([...fromApiL7.values()].every((list) => list.length > 0));
  } finally {
    w.close();
    await api.close();
  }
});

test('after history is compacted, a dropped watch gets 410 Expired and the informer relists', async () => {
  const mark = fake.requests.length;
  const snapshots = seen.length;
  fake.compactHistory();
  fake.dropWatches();
  // Written while no watch is open: only the relist can deliver it.
  fake.add('Pod', pod('default', 'after-compaction', '127.0.3.2'));
  await waitFor(
    () => podNames().includes('default/after-compaction'),
    WAIT_MS,
    () => podNames().join(', '),
  );
  for (const kind of KINDS) {
    // Every kind: a resumed watch refused with 410, then a LIST, then a watch from the new version.
    await waitFor(
      () => {
        const expired = fake.requests.findIndex((r, i) => i >= mark && r.kind === kind && r.expired);
        return expired >= 0 && requestsAfter(expired, 'list', kind).length === 1;
      },
      WAIT_MS,
      () => `${kind}: ${JSON.stringify(fake.requests.slice(mark).filter((r) => r.kind === kind))}`,
    );
  }
  // Relists of unchanged kinds produce no snapshot of their own.
  await waitFor(
    () => fake.openWatches() === KINDS.length,
    WAIT_MS,
    () => `${fake.openWatches()} watches`,
  );
  assert.equal(seen.length, snapshots + 1, 'one new snapshot, for the new pod');
  assert.ok(podNames().includes('default/ratings'));
});

test('after the API server crashes and restarts, the informers resume and see later changes', async () => {
  const logMark = capture.lines.length;
  const failures = () =>
    new Set(
      capture.lines
        .slice(logMark)
        .filter((l) => l.msg === 'list/watch failed; retrying')
        .map((l) => l.kind),
    );
  const mark = fake.requests.length;
  await fake.stop();
  // Every informer must have noticed before the server comes back.
  await waitFor(
    () => failures().size === KINDS.length,
    WAIT_MS,
    () => [...failures()].join(', '),
  );
  fake.add('Pod', pod('default', 'during-outage', '127.0.3.3'));
  await fake.restart();
  fake.add('Pod', pod('default', 'after-restart', '127.0.3.4'));
  await waitFor(
    () => podNames().includes('default/during-outage') && podNames().includes('default/after-restart'),
    WAIT_MS,
    () => podNames().join(', '),
  );
  // Resumed from the last resourceVersion: the history covered the outage, so no relist.
  assert.deepEqual(requestsAfter(mark, 'list', 'Pod'), []);
  assert.ok(requestsAfter(mark, 'watch', 'Pod').every((r) => Number(r.query.resourceVersion) > 0));
  assert.ok(podNames().includes('default/ratings'));
});

test('a malformed object is a problem naming it and its field; the rest are kept, relist or not', async () => {
  const bad = pod('default', 'bad-ports', '127.0.3.5');
  fake.add('Pod', { ...bad, spec: { containers: [{ name: 'app', ports: { http: 8080 } }] } });
  const problem = () => latest().problems.find((p) => p.name === 'bad-ports');
  await waitFor(() => problem() !== undefined, WAIT_MS);
  assert.deepEqual(problem(), {
    severity: 'error',
    kind: 'Pod',
    namespace: 'default',
    name: 'bad-ports',
    path: 'spec.containers[0].ports',
    message: 'must be a list',
  });
  assert.ok(!podNames().includes('default/bad-ports'));
  assert.ok(podNames().includes('default/after-restart'));

  // The same object in a LIST (not a watch event) must not fail the whole list either.
  const mark = fake.requests.length;
  fake.compactHistory();
  fake.dropWatches();
  fake.add('Pod', pod('default', 'after-second-compaction', '127.0.3.6'));
  await waitFor(
    () => podNames().includes('default/after-second-compaction'),
    WAIT_MS,
    () => podNames().join(', '),
  );
  assert.equal(requestsAfter(mark, 'list', 'Pod').length, 1);
  assert.ok(problem() !== undefined);
  assert.ok(podNames().includes('default/reviews-v1-7f99cc4496-gdxfn'));
});

test('a kind the API server does not serve (no CRD) counts as empty; the rest still arrive', async () => {
  const bare = await FakeKubeApiServer.start({ unserved: ['AuthorizationPolicy'] });
  const { log, lines } = captureLogger('debug');
  const got: KubeSnapshot[] = [];
  const w = watchKube(
    { path: await bare.writeKubeconfig(join(dir, 'bare-kubeconfig')) },
    { debounceMs: 10, log, onSnapshot: (s) => got.push(s) },
  );
  try {
    bare.add('Namespace', { metadata: { name: 'default' } });
    await within(w.ready, WAIT_MS, 'the first snapshot');
    await waitFor(() => got.at(-1)?.namespaces.length === 1, WAIT_MS);
    assert.deepEqual(got.at(-1)!.authorizationPolicies, []);
    assert.ok(lines.some((l) => l.kind === 'AuthorizationPolicy' && String(l.msg).includes('CRD')));
  } finally {
    w.close();
    await bare.close();
  }
});

test('a refused token is logged with a hint and never snapshots; close() rejects ready', async () => {
  const { log, lines } = captureLogger('debug');
  let calls = 0;
  const w = watchKube(
    { path: await fake.writeKubeconfig(join(dir, 'bad-kubeconfig'), 'wrong-token') },
    { debounceMs: 10, log, onSnapshot: () => calls++ },
  );
  try {
    const refused = () => lines.filter((l) => l.msg === 'list/watch failed; retrying');
    // Every resource the source watches is refused: each kind the fake serves, and Istio's own
    // Gateway, which it does not serve (the token is checked first).
    const refusedPaths = () => new Set(refused().map((l) => l.path));
    await waitFor(() => refusedPaths().size === KINDS.length + 1, WAIT_MS);
    assert.ok(refusedPaths().has('/apis/networking.istio.io/v1/gateways'));
    assert.match(String(refused()[0]!.error), /HTTP 401.*RBAC/);
  } finally {
    w.close();
  }
  await assert.rejects(w.ready, { code: 'AMBIT_SHUTDOWN' });
  assert.equal(calls, 0);
});

test('an unusable kubeconfig is refused up front, saying what to check', async () => {
  const options = { log: silentLogger(), onSnapshot: () => undefined };
  assert.throws(() => watchKube({ path: join(dir, 'missing') }, options), {
    code: 'AMBIT_CONFIG_READ',
    message: /readable kubeconfig/,
  });
  const plain = join(dir, 'plain-http-kubeconfig');
  await writeFile(
    plain,
    JSON.stringify({
      clusters: [{ name: 'c', cluster: { server: fake.url } }],
      users: [{ name: 'u', user: { token: TOKEN } }],
      contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'x',
    }),
  );
  assert.throws(() => watchKube({ path: plain }, options), {
    code: 'AMBIT_CONFIG_INVALID',
    message: /plain HTTP.*insecure-skip-tls-verify/,
  });
});

test('close() ends every watch and no snapshot follows', async () => {
  let calls = 0;
  const w = watchKube(
    { path: kubeconfig },
    { debounceMs: 10, log: silentLogger(), onSnapshot: () => calls++ },
  );
  try {
    await within(w.ready, WAIT_MS, 'the first snapshot');
    const watches = () => `${fake.openWatches()} watches`;
    await waitFor(() => fake.openWatches() === 2 * KINDS.length, WAIT_MS, watches);
    w.close();
    await waitFor(() => fake.openWatches() === KINDS.length, WAIT_MS, watches);
    fake.add('Pod', pod('default', 'after-close', '127.0.3.7'));
    await waitFor(() => podNames().includes('default/after-close'), WAIT_MS);
    assert.equal(calls, 1);
  } finally {
    w.close();
  }
});

test('the fake sends bookmarks when asked and answers TokenReviews', async () => {
  fake.tokenReviews.set('pod-token', {
    username: 'system:serviceaccount:default:curl',
    groups: ['system:serviceaccounts'],
  });
  const review = async (token: string) => {
    const rsp = await fetch(`${fake.url}/apis/authentication.k8s.io/v1/tokenreviews`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } }),
    });
    assert.equal(rsp.status, 201);
    return ((await rsp.json()) as { status: { authenticated: boolean; user: { username?: string } } }).status;
  };
  assert.deepEqual(await review('pod-token'), {
    authenticated: true,
    user: { username: 'system:serviceaccount:default:curl', groups: ['system:serviceaccounts'] },
    audiences: [],
  });
  assert.equal((await review('nope')).authenticated, false);

  const abort = new AbortController();
  const rsp = await fetch(
    `${fake.url}/api/v1/namespaces?watch=true&allowWatchBookmarks=true&resourceVersion=${fake.resourceVersion}`,
    { headers: { authorization: `Bearer ${TOKEN}` }, signal: abort.signal },
  );
  const reader = (rsp.body as ReadableStream<Uint8Array>).getReader();
  fake.sendBookmarks();
  const { value } = await reader.read();
  abort.abort();
  const event = JSON.parse(new TextDecoder().decode(value).split('\n')[0]!) as {
    type: string;
    object: { metadata: { resourceVersion: string } };
  };
  assert.equal(event.type, 'BOOKMARK');
  assert.equal(event.object.metadata.resourceVersion, fake.resourceVersion);
});
