/**
 * Issue 8 part 3: Gateway API ingress in a cluster, against the fake API server with the real
 * `@kubernetes/client-node` HTTP stack and watches. A Gateway of class `ambit` gets its gateway
 * objects (waypoint/gateway-template.yaml: a Deployment of `ambit gateway` serving it, a Service of
 * type LoadBalancer on its listener ports), a status with its listeners' conditions, attached routes
 * and the LoadBalancer's address, and its HTTPRoutes a `parents` entry saying whether they attached.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  DEFAULT_LEASE_NAME,
  startWaypointReconciler,
  type WaypointReconciler,
} from '../../src/controller/kube/waypoint-reconciler.ts';
import type { KubeJson } from '../../src/controller/reconcile/objects.ts';
import { captureLogger } from '../fakes/capture-log.ts';
import { FakeKubeApiServer } from '../fakes/kube-api-server.ts';
import { waitFor } from '../fakes/mesh.ts';

const WAIT_MS = 10_000;
const IMAGE = 'registry.example.com/ambit:0.1.0';
const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

let dir: string;
let fake: FakeKubeApiServer;
let reconciler: WaypointReconciler;
const capture = captureLogger('info');

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ambit-gateway-api-reconciler-'));
  fake = await FakeKubeApiServer.start({ token: 'controller-token' });
  const kubeconfig = await fake.writeKubeconfig(join(dir, 'kubeconfig'));
  const read = (f: string) => readFile(new URL(`../../waypoint/${f}`, import.meta.url), 'utf8');
  fake.add('Namespace', { metadata: { name: 'default' } });
  fake.add('GatewayClass', {
    metadata: { name: 'ambit' },
    spec: { controllerName: 'ambit.dev/gateway-controller' },
  });
  fake.add('GatewayClass', {
    metadata: { name: 'istio' },
    spec: { controllerName: 'istio.io/gateway-controller' },
  });
  fake.add('Service', {
    metadata: { name: 'productpage', namespace: 'default' },
    spec: { selector: { app: 'productpage' }, ports: [{ name: 'http', port: 9080 }] },
  });
  reconciler = startWaypointReconciler({
    kubeConfig: { path: kubeconfig },
    template: await read('template.yaml'),
    gatewayTemplate: await read('gateway-template.yaml'),
    render: { image: IMAGE, caRootCertPem: PEM, blockOwnerDeletion: false },
    clusterDomain: 'cluster.local',
    lease: {
      namespace: 'ambit-system',
      name: DEFAULT_LEASE_NAME,
      identity: 'controller-a',
      leaseDurationMs: 1000,
      renewIntervalMs: 200,
    },
    debounceMs: 20,
    resyncMs: 5000,
    log: capture.log,
  });
});
after(async () => {
  await reconciler?.close();
  await fake?.close();
  await rm(dir, { recursive: true, force: true });
});

const get = (kind: Parameters<FakeKubeApiServer['get']>[0], name: string) => fake.get(kind, name, 'default');
const status = (o: KubeJson | undefined) => (o?.status ?? {}) as KubeJson;
const conds = (o: KubeJson | undefined): Record<string, string> =>
  Object.fromEntries(
    ((o?.conditions ?? []) as KubeJson[]).map((c): [string, string] => [
      String(c.type),
      `${String(c.status)} ${String(c.reason)}`,
    ]),
  );

test('a class-ambit Gateway gets a gateway Deployment and a LoadBalancer Service on its listener ports', async () => {
  fake.add('Gateway', {
    metadata: { name: 'web', namespace: 'default' },
    spec: {
      gatewayClassName: 'ambit',
      listeners: [
        { name: 'http', port: 8080, protocol: 'HTTP', hostname: '*.example.com' },
        {
          name: 'https',
          port: 8443,
          protocol: 'HTTPS',
          tls: { certificateRefs: [{ name: 'cert', namespace: 'certs' }] },
        },
      ],
    },
  });
  // A waypoint-class Gateway in the same pass keeps its own objects.
  fake.add('Gateway', {
    metadata: { name: 'waypoint', namespace: 'default' },
    spec: {
      gatewayClassName: 'istio-waypoint',
      listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }],
    },
  });
  await waitFor(
    () => ['ServiceAccount', 'Deployment', 'Service'].every((k) => get(k as 'Service', 'web-ambit')),
    WAIT_MS,
    () => JSON.stringify(capture.lines.slice(-5)),
  );
  assert.ok(get('Deployment', 'waypoint'), 'the waypoint is deployed too');
  const service = get('Service', 'web-ambit')!.spec as KubeJson;
  assert.equal(service.type, 'LoadBalancer');
  assert.deepEqual(
    (service.ports as KubeJson[]).map((p) => [p.name, p.port, p.targetPort]),
    [
      ['http-8080', 8080, 8080],
      ['https-8443', 8443, 8443],
      ['status-port', 15021, 15021],
    ],
  );
  const labels = {
    'gateway.networking.k8s.io/gateway-name': 'web',
    'ambit.dev/gateway-namespace': 'default',
  };
  assert.deepEqual(service.selector, labels);
  const template = (get('Deployment', 'web-ambit')!.spec as KubeJson).template as KubeJson;
  const podLabels = (template.metadata as KubeJson).labels as Record<string, string>;
  for (const [k, v] of Object.entries(labels)) assert.equal(podLabels[k], v);
  const pod = template.spec as {
    serviceAccountName: string;
    containers: {
      args: string[];
      image: string;
      env: { name: string; value?: string }[];
      ports: { containerPort: number }[];
    }[];
  };
  const c = pod.containers[0]!;
  assert.equal(pod.serviceAccountName, 'web-ambit');
  assert.deepEqual(c.args, ['gateway']);
  assert.equal(c.image, IMAGE);
  assert.equal(
    c.env.find((e) => e.name === 'GATEWAY_LABELS')?.value,
    'gateway.networking.k8s.io/gateway-name=web,ambit.dev/gateway-namespace=default',
  );
  assert.deepEqual(
    c.ports.map((p) => p.containerPort),
    [8080, 8443, 15020, 15021],
  );
});

test('Gateway status: listeners with their conditions and routes, Programmed with the LoadBalancer address', async () => {
  fake.add('HTTPRoute', {
    metadata: { name: 'bookinfo', namespace: 'default' },
    spec: {
      parentRefs: [{ name: 'web' }],
      hostnames: ['bookinfo.example.com'],
      rules: [
        { backendRefs: [{ name: 'productpage', port: 9080 }] },
        {
          matches: [{ path: { type: 'PathPrefix', value: '/gone' } }],
          backendRefs: [{ name: 'nope', port: 80 }],
        },
      ],
    },
  });
  fake.add('HTTPRoute', {
    metadata: { name: 'shop', namespace: 'default' },
    spec: {
      parentRefs: [{ name: 'web', sectionName: 'http' }],
      hostnames: ['shop.example.org'],
      rules: [{ backendRefs: [{ name: 'productpage', port: 9080 }] }],
    },
  });
  await waitFor(
    () => (status(get('Gateway', 'web')).listeners as KubeJson[] | undefined)?.[0]?.attachedRoutes === 1,
    WAIT_MS,
    () => JSON.stringify(status(get('Gateway', 'web'))),
  );
  let gw = status(get('Gateway', 'web'));
  assert.deepEqual(conds(gw), { Accepted: 'True Accepted', Programmed: 'False NoResources' });
  const listeners = gw.listeners as KubeJson[];
  assert.deepEqual(
    listeners.map((l) => [l.name, l.attachedRoutes, conds(l).ResolvedRefs, conds(l).Programmed]),
    [
      ['http', 1, 'True ResolvedRefs', 'True Programmed'],
      ['https', 0, 'False RefNotPermitted', 'False Invalid'],
    ],
  );
  assert.deepEqual(listeners[0]!.supportedKinds, [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute' }]);
  assert.equal(((listeners[0]!.conditions as KubeJson[])[0] as KubeJson).observedGeneration, 1);
  assert.deepEqual(gw.addresses, [{ type: 'Hostname', value: 'web-ambit.default.svc.cluster.local' }]);

  // HTTPRoute parents, with Ambit's controller name.
  await waitFor(() => status(get('HTTPRoute', 'shop')).parents !== undefined, WAIT_MS);
  const parent = (route: string) => (status(get('HTTPRoute', route)).parents as KubeJson[])[0]!;
  assert.equal(parent('bookinfo').controllerName, 'ambit.dev/gateway-controller');
  assert.deepEqual(parent('bookinfo').parentRef, {
    group: 'gateway.networking.k8s.io',
    kind: 'Gateway',
    namespace: 'default',
    name: 'web',
  });
  assert.deepEqual(conds(parent('bookinfo')), {
    Accepted: 'True Accepted',
    ResolvedRefs: 'False BackendNotFound',
  });
  assert.match(
    String(((parent('bookinfo').conditions as KubeJson[])[1] as KubeJson).message),
    /spec\.rules\[1\]\.backendRefs\[0\]: Service default\/nope does not exist/,
  );
  assert.deepEqual(conds(parent('shop')), {
    Accepted: 'False NoMatchingListenerHostname',
    ResolvedRefs: 'True ResolvedRefs',
  });

  // The load balancer gets an address and the Deployment a ready replica.
  const svc = get('Service', 'web-ambit')!;
  fake.update('Service', { ...svc, status: { loadBalancer: { ingress: [{ ip: '203.0.113.10' }] } } });
  const deployment = get('Deployment', 'web-ambit')!;
  fake.update('Deployment', { ...deployment, status: { replicas: 1, readyReplicas: 1 } });
  await waitFor(() => conds(status(get('Gateway', 'web'))).Programmed === 'True Programmed', WAIT_MS);
  gw = status(get('Gateway', 'web'));
  assert.deepEqual(gw.addresses, [{ type: 'IPAddress', value: '203.0.113.10' }]);
  // Only the status subresource was written.
  assert.ok(fake.requests.some((q) => q.verb === 'update' && q.path.endsWith('/httproutes/shop/status')));
});

test('a listener whose certificate Secret is missing says so, until the Secret exists', async () => {
  fake.add('Gateway', {
    metadata: { name: 'secure', namespace: 'default' },
    spec: {
      gatewayClassName: 'ambit',
      listeners: [
        { name: 'https', port: 443, protocol: 'HTTPS', tls: { certificateRefs: [{ name: 'secure-cert' }] } },
      ],
    },
  });
  const resolved = () =>
    conds(((status(get('Gateway', 'secure')).listeners ?? []) as KubeJson[])[0]).ResolvedRefs;
  await waitFor(() => resolved() !== undefined, WAIT_MS);
  assert.equal(resolved(), 'False InvalidCertificateRef');
  const listener = (status(get('Gateway', 'secure')).listeners as KubeJson[])[0]!;
  assert.match(
    String((listener.conditions as KubeJson[]).find((c) => c.type === 'ResolvedRefs')!.message),
    /Secret default\/secure-cert does not exist/,
  );
  // The next pass (a resync: Secrets are not watched by the reconciler) sees it.
  fake.add('Secret', {
    metadata: { name: 'secure-cert', namespace: 'default' },
    type: 'kubernetes.io/tls',
    data: { 'tls.crt': '', 'tls.key': '' },
  });
  await waitFor(() => resolved() === 'True ResolvedRefs', WAIT_MS);
  fake.delete('Gateway', { metadata: { name: 'secure', namespace: 'default' } });
});

test('the GatewayClass ambit is Accepted; a class of another controller is left alone', async () => {
  const cls = (name: string) => fake.get('GatewayClass', name);
  await waitFor(() => conds(status(cls('ambit'))).Accepted === 'True Accepted', WAIT_MS);
  assert.equal(status(cls('istio')).conditions, undefined);
  assert.ok(
    fake.requests.some((q) => q.verb === 'update' && q.path.endsWith('/gatewayclasses/ambit/status')),
  );
});

test('a fixed route is accepted; the Gateway deleted takes its objects with it', async () => {
  const shop = get('HTTPRoute', 'shop')!;
  fake.update('HTTPRoute', {
    ...shop,
    spec: { ...(shop.spec as KubeJson), hostnames: ['shop.example.com'] },
  });
  await waitFor(
    () => conds((status(get('HTTPRoute', 'shop')).parents as KubeJson[])[0]).Accepted === 'True Accepted',
    WAIT_MS,
  );
  fake.delete('Gateway', { metadata: { name: 'web', namespace: 'default' } });
  await waitFor(
    () =>
      !get('Deployment', 'web-ambit') && !get('Service', 'web-ambit') && !get('ServiceAccount', 'web-ambit'),
    WAIT_MS,
  );
  // The waypoint stays.
  assert.ok(get('Deployment', 'waypoint'));
});
