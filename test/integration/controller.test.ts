/**
 * The controller in-process: Kubernetes YAML from a directory → Delta ADS to our agent-side client,
 * the L7 resources of VirtualServices and DestinationRules to a waypoint-side client, the tokenless
 * proxyless port (L7 types only), and the CA service's authorization (own-node pod allowed,
 * other-node pod refused, bad token refused).
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Metadata, type ClientDuplexStream } from '@grpc/grpc-js';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startController, type ControllerBound } from '../../src/controller/app.ts';
import type { ControllerConfig } from '../../src/controller/config.ts';
import { CertificateAuthority } from '../../src/core/identity/ca.ts';
import { GrpcCaProvider } from '../../src/core/identity/ca-client.ts';
import { silentLogger } from '../../src/core/log.ts';
import { TypeUrl } from '../../src/core/proto/load.ts';
import { AdsClient } from '../../src/core/xds/ads-client.ts';
import type { SotwRequest, SotwResponse } from '../../src/core/xds/ads-server.ts';
import { adsDefinitions, type DeltaRequest, type DeltaResponse } from '../../src/core/xds/envoy-protos.ts';
import { EnvoyTypeUrl } from '../../src/core/xds/l7-names.ts';
import type { RouteAction, RouteConfiguration } from '../../src/core/xds/l7-model.ts';
import {
  decodeClusterBytes,
  decodeClusterLoadAssignmentBytes,
  decodeListenerBytes,
  decodeRouteConfigurationBytes,
} from '../../src/core/xds/l7-wire.ts';
import {
  decodeAddress,
  decodeAuthorization,
  type AddressResource,
} from '../../src/core/xds/workload-proto.ts';
import { FakeKubeApiServer } from '../fakes/kube-api-server.ts';
import { waitFor } from '../fakes/mesh.ts';

const fixtures = fileURLToPath(new URL('../fixtures/kube/', import.meta.url));
const meshKinds = fileURLToPath(new URL('../fixtures/kube/mesh-kinds/mesh-kinds.yaml', import.meta.url));
let dir: string;
let controller: ControllerBound;
let target: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ambit-controller-'));
  await cp(fixtures, join(dir, 'kube'), { recursive: true });
  const ca = await CertificateAuthority.createSelfSigned('cluster.local');
  await writeFile(join(dir, 'ca-cert.pem'), ca.rootCertPem);
  await writeFile(join(dir, 'ca-key.pem'), ca.rootKeyPem);
  await writeFile(join(dir, 'tokens'), 'token-one node-1\ntoken-two node-2\ntoken-wp sa:default/waypoint\n');
  controller = await startController(
    controllerConfig({
      configDir: join(dir, 'kube'),
      tokensPath: join(dir, 'tokens'),
      proxylessXdsAddr: { host: '127.0.0.1', port: 0 },
    }),
    {
      log: silentLogger(),
    },
  );
  await controller.ready;
  target = `127.0.0.1:${controller.grpc.port}`;
});
after(async () => {
  await controller.close();
  await rm(dir, { recursive: true, force: true });
});

/** A controller config on port 0 with this test's CA; a source and token settings come from `over`. */
function controllerConfig(over: Partial<ControllerConfig>): ControllerConfig {
  return {
    configDir: '',
    kubeconfigPath: '',
    inCluster: false,
    grpcAddr: { host: '127.0.0.1', port: 0 },
    grpcTlsAddr: undefined,
    proxylessXdsAddr: undefined,
    servingDnsNames: ['istiod.istio-system.svc'],
    adminAddr: { host: '127.0.0.1', port: 0 },
    caCertPath: join(dir, 'ca-cert.pem'),
    caKeyPath: join(dir, 'ca-key.pem'),
    tokensPath: '',
    agentServiceAccounts: ['istio-system/ztunnel'],
    tokenAudiences: [],
    trustDomain: 'cluster.local',
    clusterId: 'Kubernetes',
    clusterDomain: 'cluster.local',
    rootNamespace: 'istio-system',
    debounceMs: 50,
    defaultCertTtlMs: 3600_000,
    maxCertTtlMs: 7200_000,
    logLevel: 'silent',
    ...over,
  };
}

const ca = (token: string) =>
  new GrpcCaProvider({
    target,
    credentials: credentials.createInsecure(),
    token: () => token,
    clusterId: 'Kubernetes',
    ttlMs: 3600_000,
    timeoutMs: 3000,
  });
const id = (sa: string) => ({ trustDomain: 'cluster.local', namespace: 'default', serviceAccount: sa });

test('a node agent gets a certificate for a pod on its own node', async () => {
  const p = ca('token-one');
  try {
    const cert = await p.fetch(id('curl'));
    assert.equal(cert.identity.serviceAccount, 'curl');
    assert.ok(cert.notAfterMs - cert.notBeforeMs <= 3600_000 + 60_000);
  } finally {
    p.close();
  }
});

test('a node agent is refused a pod identity that runs only on another node', async () => {
  const p = ca('token-two');
  try {
    await assert.rejects(
      p.fetch(id('curl')),
      /no pod with identity spiffe:\/\/cluster.local\/ns\/default\/sa\/curl is scheduled on node node-2/,
    );
  } finally {
    p.close();
  }
});

test("a workload's token (a waypoint's) gets its own identity only", async () => {
  const p = ca('token-wp');
  try {
    assert.equal((await p.fetch(id('waypoint'))).identity.serviceAccount, 'waypoint');
    await assert.rejects(
      p.fetch(id('curl')),
      /service account default\/waypoint may not impersonate spiffe:\/\/cluster.local\/ns\/default\/sa\/curl/,
    );
  } finally {
    p.close();
  }
});

test('an unknown token is refused', async () => {
  const p = ca('stolen');
  try {
    await assert.rejects(p.fetch(id('curl')), /the bearer token is not valid/);
  } finally {
    p.close();
  }
});

test('agents receive the translated workloads over Delta ADS, and changes to the directory', async () => {
  let addresses: ReadonlyMap<string, unknown> = new Map();
  let policies: ReadonlyMap<string, unknown> = new Map();
  const client = new AdsClient({
    target,
    credentials: credentials.createInsecure(),
    node: { id: 'test-agent' },
    headers: () => ({ authorization: 'Bearer token-one' }),
    types: [
      { typeUrl: TypeUrl.Address, decode: decodeAddress },
      { typeUrl: TypeUrl.Authorization, decode: decodeAuthorization },
    ],
    onResources: (t, m) => (t === TypeUrl.Address ? (addresses = m) : (policies = m)),
    log: silentLogger(),
  });
  client.start();
  try {
    await waitFor(() => client.isSynced(), 3000);
    const expected = controller.mesh();
    const workloads = [...addresses.values()].filter((a) => (a as AddressResource).kind === 'workload');
    assert.equal(workloads.length, expected.workloads.length);
    assert.ok(workloads.length >= 3);
    assert.equal(policies.size, expected.policies.length);
    // A new pod appears in the directory: it arrives, with HBONE because the namespace is enrolled.
    await writeFile(
      join(dir, 'kube', 'extra.yaml'),
      'apiVersion: v1\nkind: Pod\nmetadata: {name: extra, namespace: default}\nspec: {nodeName: node-2}\nstatus: {phase: Running, podIP: 127.0.2.77}\n',
    );
    await waitFor(() => addresses.has('Kubernetes//Pod/default/extra'), 3000);
    const extra = addresses.get('Kubernetes//Pod/default/extra') as AddressResource;
    assert.equal(extra.kind === 'workload' && extra.workload.tunnelProtocol, 'HBONE');
  } finally {
    client.close();
  }
});

test('ServiceEntries, EndpointSlices and PeerAuthentications in the directory reach the agents, decoded', async () => {
  let addresses: ReadonlyMap<string, unknown> = new Map();
  let policies: ReadonlyMap<string, unknown> = new Map();
  const client = new AdsClient({
    target,
    credentials: credentials.createInsecure(),
    node: { id: 'test-agent-kinds' },
    headers: () => ({ authorization: 'Bearer token-one' }),
    types: [
      { typeUrl: TypeUrl.Address, decode: decodeAddress },
      { typeUrl: TypeUrl.Authorization, decode: decodeAuthorization },
    ],
    onResources: (t, m) => (t === TypeUrl.Address ? (addresses = m) : (policies = m)),
    log: silentLogger(),
  });
  client.start();
  const file = join(dir, 'kube', 'mesh-kinds.yaml');
  try {
    await waitFor(() => client.isSynced(), 3000);
    await cp(meshKinds, file);
    const payments = 'Kubernetes/networking.istio.io/ServiceEntry/shop/payments/192.0.2.50';
    const api = 'Kubernetes/networking.istio.io/ServiceEntry/shop/api/api.example.com';
    const slice = 'Kubernetes/discovery.k8s.io/EndpointSlice/shop/legacy-x7k2p/192.0.2.40';
    const converted = 'shop/converted_peer_authentication_cart';
    await waitFor(
      () => [payments, api, slice].every((k) => addresses.has(k)) && policies.has(converted),
      3000,
      () => `${[...addresses.keys()].join(', ')} | ${[...policies.keys()].join(', ')}`,
    );
    const workload = (k: string) => {
      const a = addresses.get(k) as AddressResource;
      assert.equal(a.kind, 'workload');
      return a.kind === 'workload' ? a.workload : undefined;
    };
    // What the agent decoded is what the controller translated.
    const mesh = controller.mesh();
    for (const k of [payments, api, slice])
      assert.deepEqual(
        workload(k),
        mesh.workloads.find((w) => w.uid === k),
      );
    assert.deepEqual([workload(api)!.hostname, workload(api)!.addresses], ['api.example.com', []]);
    assert.equal(workload(slice)!.healthy, false);
    const service = addresses.get('shop/payments.example.com') as AddressResource;
    assert.equal(service.kind === 'service' && service.service.vips[0]!.address, '240.0.0.20');
    assert.deepEqual(
      policies.get(converted),
      mesh.policies.find((p) => `${p.namespace}/${p.name}` === converted),
    );
    assert.ok(policies.has('istio-system/istio_converted_static_strict'));
    // Removing the file removes them from every agent.
    await unlink(file);
    await waitFor(() => !addresses.has(payments) && !policies.has(converted), 3000);
  } finally {
    client.close();
    await rm(file, { force: true });
  }
});

test('the controller watches an API server through client-node informers, serves what it holds, and checks agent tokens with TokenReview', async () => {
  const api = await FakeKubeApiServer.start();
  const kubeconfig = await api.writeKubeconfig(join(dir, 'kubeconfig'));
  api.add('Namespace', {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient' } },
  });
  api.add('Pod', {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'cart-1', namespace: 'shop', labels: { app: 'cart' } },
    spec: { nodeName: 'node-1', serviceAccountName: 'cart', containers: [{ name: 'c', image: 'i' }] },
    status: { phase: 'Running', podIP: '10.1.0.5' },
  });
  // The agent's own pod, which a pod-bound token names.
  api.add('Pod', {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'ztunnel-node-1', namespace: 'istio-system', labels: { app: 'ztunnel' } },
    spec: { nodeName: 'node-1', serviceAccountName: 'ztunnel', containers: [{ name: 'c', image: 'i' }] },
    status: { phase: 'Running', podIP: '10.1.0.2' },
  });
  // Agent tokens are checked with TokenReview: bound to a node, or to a pod whose node we know.
  const agent = 'system:serviceaccount:istio-system:ztunnel';
  api.tokenReviews.set('node-1-agent', {
    username: agent,
    groups: [],
    extra: { 'authentication.kubernetes.io/node-name': ['node-1'] },
  });
  api.tokenReviews.set('pod-bound-agent', {
    username: agent,
    groups: [],
    extra: { 'authentication.kubernetes.io/pod-name': ['ztunnel-node-1'] },
  });
  api.tokenReviews.set('node-2-agent', {
    username: agent,
    groups: [],
    extra: { 'authentication.kubernetes.io/node-name': ['node-2'] },
  });
  api.tokenReviews.set('some-app', { username: 'system:serviceaccount:shop:cart', groups: [] });
  const kubeController = await startController(controllerConfig({ kubeconfigPath: kubeconfig }), {
    log: silentLogger(),
  });
  const addresses = new Map<string, unknown>();
  const client = new AdsClient({
    target: `127.0.0.1:${kubeController.grpc.port}`,
    credentials: credentials.createInsecure(),
    node: { id: 'kube-agent' },
    headers: () => ({ authorization: 'Bearer node-1-agent' }),
    types: [{ typeUrl: TypeUrl.Address, decode: decodeAddress }],
    onResources: (_t, m) => {
      addresses.clear();
      for (const [k, v] of m) addresses.set(k, v);
    },
    log: silentLogger(),
  });
  try {
    await kubeController.ready;
    client.start();
    await waitFor(() => addresses.has('Kubernetes//Pod/shop/cart-1'), 5000);
    const cartPod = addresses.get('Kubernetes//Pod/shop/cart-1') as AddressResource;
    assert.equal(cartPod.kind === 'workload' && cartPod.workload.tunnelProtocol, 'HBONE');
    // The CA: the node-1 agent may have cart's identity, node-2's agent may not; an app's own token
    // gets only its own identity (as a waypoint gets its certificate).
    const cart = { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'cart' };
    const caAt = (token: string) =>
      new GrpcCaProvider({
        target: `127.0.0.1:${kubeController.grpc.port}`,
        credentials: credentials.createInsecure(),
        token: () => token,
        clusterId: 'Kubernetes',
        ttlMs: 3600_000,
        timeoutMs: 3000,
      });
    for (const token of ['node-1-agent', 'pod-bound-agent']) {
      const p = caAt(token);
      assert.equal((await p.fetch(cart)).identity.serviceAccount, 'cart');
      p.close();
    }
    const other = caAt('node-2-agent');
    await assert.rejects(other.fetch(cart), /is scheduled on node node-2/);
    other.close();
    const app = caAt('some-app');
    // some-app runs as shop/cart: it may have that identity and no other.
    await assert.rejects(
      app.fetch({ ...cart, serviceAccount: 'payments' }),
      /service account shop\/cart may not impersonate spiffe:\/\/cluster.local\/ns\/shop\/sa\/payments/,
    );
    assert.equal((await app.fetch(cart)).identity.serviceAccount, 'cart');
    app.close();
    // A pod deleted in the cluster disappears from every agent.
    api.delete('Pod', { metadata: { name: 'cart-1', namespace: 'shop' } });
    await waitFor(() => !addresses.has('Kubernetes//Pod/shop/cart-1'), 5000);
  } finally {
    client.close();
    await kubeController.close();
    await api.stop();
  }
});

test('xDS is only for node agents: a stream without a valid token is refused with UNAUTHENTICATED', async () => {
  for (const headers of [{}, { authorization: 'Bearer stolen' }] as Record<string, string>[]) {
    const client = new (adsDefinitions().client)(
      `127.0.0.1:${controller.grpc.port}`,
      credentials.createInsecure(),
    );
    const md = new Metadata();
    for (const [k, v] of Object.entries(headers)) md.set(k, v);
    const call = (
      client as unknown as {
        DeltaAggregatedResources(md: Metadata): ClientDuplexStream<DeltaRequest, DeltaResponse>;
      }
    ).DeltaAggregatedResources(md);
    const got: DeltaResponse[] = [];
    call.on('data', (r: DeltaResponse) => got.push(r));
    const err = new Promise<{ code: number; details: string }>((r) => call.on('error', r));
    call.write({ node: { id: 'intruder' }, type_url: TypeUrl.Address });
    const e = await err;
    assert.equal(e.code, 16);
    assert.match(e.details, /bearer token|authorization/);
    assert.equal(got.length, 0);
    client.close();
  }
});

const REVIEWS = 'reviews.default.svc.cluster.local';
const REVIEWS_ROUTE = `${REVIEWS}:9080`;
const L7_DECODERS = [
  { typeUrl: EnvoyTypeUrl.Listener, decode: decodeListenerBytes },
  { typeUrl: EnvoyTypeUrl.RouteConfiguration, decode: decodeRouteConfigurationBytes },
  { typeUrl: EnvoyTypeUrl.Cluster, decode: decodeClusterBytes },
  { typeUrl: EnvoyTypeUrl.ClusterLoadAssignment, decode: decodeClusterLoadAssignmentBytes },
];

/** The metric's value for one label set, from the admin port. */
async function metric(name: string, label: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${controller.admin.port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(label));
  return Number(line?.split(' ').at(-1) ?? 0);
}

test('waypoints receive the L7 resources over Delta ADS; a VirtualService in the directory changes them, an invalid one is skipped and counted', async () => {
  const held = new Map<string, ReadonlyMap<string, unknown>>();
  const client = new AdsClient({
    target,
    credentials: credentials.createInsecure(),
    node: { id: 'test-waypoint' },
    headers: () => ({ authorization: 'Bearer token-wp' }),
    types: L7_DECODERS,
    onResources: (t, m) => held.set(t, new Map(m)),
    log: silentLogger(),
  });
  const routes = () => {
    const rc = held.get(EnvoyTypeUrl.RouteConfiguration)?.get(REVIEWS_ROUTE) as
      RouteConfiguration | undefined;
    const action = rc?.virtualHosts[0]?.routes.at(-1)?.action as RouteAction | undefined;
    return JSON.stringify(action?.clusters.map((c) => [c.name, c.weight]));
  };
  const l7File = join(dir, 'kube', 'reviews-l7.yaml');
  const badFile = join(dir, 'kube', 'reviews-bad.yaml');
  client.start();
  try {
    await waitFor(() => client.isSynced(), 3000);
    // No VirtualService: one route to the whole service, and its cluster and endpoints.
    assert.ok(held.get(EnvoyTypeUrl.Listener)?.has(REVIEWS_ROUTE));
    assert.equal(routes(), JSON.stringify([[`outbound|9080||${REVIEWS}`, 1]]));
    assert.ok(held.get(EnvoyTypeUrl.ClusterLoadAssignment)?.has(`outbound|9080||${REVIEWS}`));
    await writeFile(
      l7File,
      `apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: { name: reviews, namespace: default }
spec:
  host: reviews
  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews, namespace: default }
spec:
  hosts: [reviews]
  http:
    - route:
        - { destination: { host: reviews, subset: v1 }, weight: 70 }
        - { destination: { host: reviews, subset: v2 }, weight: 30 }
`,
    );
    const split = JSON.stringify([
      [`outbound|9080|v1|${REVIEWS}`, 70],
      [`outbound|9080|v2|${REVIEWS}`, 30],
    ]);
    await waitFor(() => routes() === split, 3000, routes);
    assert.ok(held.get(EnvoyTypeUrl.Cluster)?.has(`outbound|9080|v2|${REVIEWS}`));
    assert.deepEqual(
      controller.l7Names().get(EnvoyTypeUrl.RouteConfiguration),
      [...held.get(EnvoyTypeUrl.RouteConfiguration)!.keys()].sort(),
    );
    // An invalid VirtualService is skipped (counted, by kind) and the rest keeps flowing: the pod
    // written beside it arrives, and the routes stay as they were.
    const rejected = await metric('ambit_config_rejected_total', 'kind="VirtualService"');
    await writeFile(
      badFile,
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews-bad, namespace: default }
spec:
  hosts: [reviews]
  http: [{ route: [{ destination: { host: reviews, subset: v1 }, weight: 150 }] }]
---
apiVersion: v1
kind: Pod
metadata: { name: beside-bad, namespace: default }
spec: { nodeName: node-1 }
status: { phase: Running, podIP: 127.0.2.78 }
`,
    );
    await waitFor(() => controller.mesh().workloads.some((w) => w.name === 'beside-bad'), 3000);
    assert.ok((await metric('ambit_config_rejected_total', 'kind="VirtualService"')) > rejected);
    assert.equal(routes(), split);
    // Removing the files brings the default route back.
    await unlink(l7File);
    await unlink(badFile);
    await waitFor(() => routes() === JSON.stringify([[`outbound|9080||${REVIEWS}`, 1]]), 3000, routes);
    await waitFor(() => !held.get(EnvoyTypeUrl.Cluster)?.has(`outbound|9080|v2|${REVIEWS}`), 3000);
  } finally {
    client.close();
    await rm(l7File, { force: true });
    await rm(badFile, { force: true });
  }
});

/** A raw state-of-the-world stream with optional headers; resolves its first response or error. */
async function sotwFirst(
  to: string,
  typeUrl: string,
  names: string[],
  headers: Record<string, string> = {},
): Promise<{ response?: SotwResponse; error?: { code: number; details: string } }> {
  const client = new (adsDefinitions().client)(to, credentials.createInsecure());
  const md = new Metadata();
  for (const [k, v] of Object.entries(headers)) md.set(k, v);
  const call = (
    client as unknown as {
      StreamAggregatedResources(md: Metadata): ClientDuplexStream<SotwRequest, SotwResponse>;
    }
  ).StreamAggregatedResources(md);
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no answer')), 3000);
      call.on('data', (response: SotwResponse) => (clearTimeout(timer), resolve({ response })));
      call.on(
        'error',
        (error: { code: number; details: string }) => (clearTimeout(timer), resolve({ error })),
      );
      call.write({ node: { id: 'sotw-client' }, type_url: typeUrl, resource_names: names });
    });
  } finally {
    call.cancel();
    client.close();
  }
}

test('the proxyless port serves the L7 types in state of the world without a token, and nothing else', async () => {
  const proxyless = `127.0.0.1:${controller.proxylessXds!.port}`;
  const lds = await sotwFirst(proxyless, EnvoyTypeUrl.Listener, [REVIEWS_ROUTE]);
  assert.deepEqual(
    lds.response?.resources?.map((r) => decodeListenerBytes(r.value).ok),
    [true],
  );
  // Workload identities and policies are for node agents only.
  for (const typeUrl of [TypeUrl.Address, TypeUrl.Authorization]) {
    const r = await sotwFirst(proxyless, typeUrl, []);
    assert.equal(r.error?.code, 7, typeUrl); // PERMISSION_DENIED
  }
  // On the agents' port, state of the world needs the token like Delta does.
  assert.equal((await sotwFirst(target, EnvoyTypeUrl.Listener, [REVIEWS_ROUTE])).error?.code, 16);
  const withToken = await sotwFirst(target, EnvoyTypeUrl.Listener, [REVIEWS_ROUTE], {
    authorization: 'Bearer token-one',
  });
  assert.equal(withToken.response?.resources?.length, 1);
});
