/**
 * Issue 7 part 2: the waypoint reconciler against the fake API server with the real
 * `@kubernetes/client-node` HTTP stack and watches — create, status, update, repair, delete, leader
 * election and handover, Gateways of other classes left alone — and the controller as a whole: the
 * address it reports on the Gateway is the one the node agents are sent.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startController, type ControllerBound } from '../../src/controller/app.ts';
import { buildControllerConfig } from '../../src/controller/config.ts';
import {
  DEFAULT_LEASE_NAME,
  startWaypointReconciler,
  type WaypointReconciler,
} from '../../src/controller/kube/waypoint-reconciler.ts';
import { MANAGED_BY, MANAGED_BY_LABEL, type KubeJson } from '../../src/controller/reconcile/objects.ts';
import { CertificateAuthority } from '../../src/core/identity/ca.ts';
import { silentLogger } from '../../src/core/log.ts';
import { captureLogger } from '../fakes/capture-log.ts';
import { FakeKubeApiServer, type FakeKind } from '../fakes/kube-api-server.ts';
import { waitFor } from '../fakes/mesh.ts';

const WAIT_MS = 10_000;
const LEASE_MS = 1000;
const RENEW_MS = 200;
const IMAGE = 'registry.example.com/ambit:0.1.0';
const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

let dir: string;
let fake: FakeKubeApiServer;
let kubeconfig: string;
let template: string;
const capture = captureLogger('info');
const running = new Set<WaypointReconciler>();

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ambit-waypoint-reconciler-'));
  fake = await FakeKubeApiServer.start({ token: 'controller-token' });
  kubeconfig = await fake.writeKubeconfig(join(dir, 'kubeconfig'));
  template = await readFile(new URL('../../waypoint/template.yaml', import.meta.url), 'utf8');
});
after(async () => {
  for (const r of running) await r.close();
  await fake.close();
  await rm(dir, { recursive: true, force: true });
});

function start(identity: string, image = IMAGE): WaypointReconciler {
  const r = startWaypointReconciler({
    kubeConfig: { path: kubeconfig },
    template,
    render: { image, caRootCertPem: PEM, blockOwnerDeletion: false },
    clusterDomain: 'cluster.local',
    lease: {
      namespace: 'ambit-system',
      name: DEFAULT_LEASE_NAME,
      identity,
      leaseDurationMs: LEASE_MS,
      renewIntervalMs: RENEW_MS,
    },
    debounceMs: 20,
    resyncMs: 5000,
    log: capture.log.child({ identity }),
  });
  running.add(r);
  return r;
}

async function stop(r: WaypointReconciler, release = true): Promise<void> {
  await r.close({ release });
  running.delete(r);
}

function gateway(name: string, namespace = 'default', className = 'istio-waypoint', labels = {}): KubeJson {
  return {
    metadata: { name, namespace, labels: { 'istio.io/waypoint-for': 'service', ...labels } },
    spec: { gatewayClassName: className, listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
  };
}

const get = (kind: FakeKind, name: string, ns = 'default') => fake.get(kind, name, ns);
const meta = (o: KubeJson | undefined) =>
  (o?.metadata ?? {}) as KubeJson & {
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: KubeJson[];
    uid?: string;
  };
const objectsOf = (gw: string, ns = 'default') =>
  [
    get('ServiceAccount', gw, ns),
    get('ConfigMap', `${gw}-ca-root-cert`, ns),
    get('Deployment', gw, ns),
    get('Service', gw, ns),
  ] as const;
const condition = (gw: KubeJson | undefined, type: string) =>
  ((gw?.status as KubeJson | undefined)?.conditions as KubeJson[] | undefined)?.find((c) => c.type === type);
const addresses = (gw: KubeJson | undefined) => (gw?.status as KubeJson | undefined)?.addresses as KubeJson[];
const leaders = () => [...running].filter((r) => r.isLeader());
const leaseHolder = () =>
  (fake.get('Lease', DEFAULT_LEASE_NAME, 'ambit-system')?.spec as KubeJson | undefined)?.holderIdentity;

let first: WaypointReconciler;

test('a waypoint Gateway gets its ServiceAccount, ConfigMap, Deployment and Service, owned by it', async () => {
  first = start('controller-a');
  const gw = fake.add('Gateway', gateway('waypoint'));
  await waitFor(
    () => objectsOf('waypoint').every(Boolean),
    WAIT_MS,
    () => JSON.stringify(capture.lines.slice(-5)),
  );
  const uid = meta(gw).uid;
  for (const o of objectsOf('waypoint')) {
    assert.deepEqual(meta(o).ownerReferences, [
      {
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'Gateway',
        name: 'waypoint',
        uid,
        controller: true,
      },
    ]);
    assert.equal(meta(o).labels?.['gateway.networking.k8s.io/gateway-name'], 'waypoint');
    assert.equal(meta(o).labels?.[MANAGED_BY_LABEL], MANAGED_BY);
  }
  const [sa, cm, deployment, service] = objectsOf('waypoint');
  assert.equal(sa!.automountServiceAccountToken, false);
  assert.equal(
    Buffer.from((cm!.binaryData as Record<string, string>)['root-cert.pem']!, 'base64').toString(),
    PEM,
  );
  const pod = ((deployment!.spec as KubeJson).template as KubeJson).spec as {
    serviceAccountName: string;
    containers: { image: string; args: string[] }[];
  };
  assert.equal(pod.serviceAccountName, 'waypoint');
  assert.equal(pod.containers[0]!.image, IMAGE);
  assert.deepEqual(pod.containers[0]!.args, ['waypoint']);
  assert.ok(((service!.spec as KubeJson).ports as KubeJson[]).some((p) => p.port === 15008));
  assert.ok(first.isLeader());
  assert.equal(leaseHolder(), 'controller-a');
  // Each action is logged.
  assert.ok(
    capture.lines.some(
      (l) => l.msg === 'waypoint object created' && l.object === 'Deployment default/waypoint',
    ),
  );
});

test('status: Accepted, not Programmed until a replica is ready, then Programmed with the Service IP', async () => {
  await waitFor(() => condition(get('Gateway', 'waypoint'), 'Accepted')?.status === 'True', WAIT_MS);
  let gw = get('Gateway', 'waypoint')!;
  assert.deepEqual(
    ['Accepted', 'Programmed'].map((t) => [condition(gw, t)?.status, condition(gw, t)?.reason]),
    [
      ['True', 'Accepted'],
      ['False', 'NoResources'],
    ],
  );
  assert.equal(condition(gw, 'Accepted')?.observedGeneration, 1);
  const ip = (get('Service', 'waypoint')!.spec as KubeJson).clusterIP as string;
  assert.deepEqual(addresses(gw), [{ type: 'IPAddress', value: ip }]);
  // The status was written through the status subresource, not the Gateway itself.
  assert.ok(fake.requests.some((q) => q.verb === 'update' && q.path.endsWith('/gateways/waypoint/status')));
  assert.ok(
    !fake.requests.some((q) => q.kind === 'Gateway' && q.verb === 'update' && !q.path.endsWith('/status')),
  );

  const deployment = get('Deployment', 'waypoint')!;
  fake.update('Deployment', { ...deployment, status: { replicas: 1, readyReplicas: 1 } });
  await waitFor(() => condition(get('Gateway', 'waypoint'), 'Programmed')?.status === 'True', WAIT_MS);
  gw = get('Gateway', 'waypoint')!;
  assert.equal(condition(gw, 'Programmed')?.reason, 'Programmed');
  assert.deepEqual(addresses(gw), [{ type: 'IPAddress', value: ip }]);
});

test('a Gateway label change replaces every object; the Deployment keeps its status', async () => {
  const before = objectsOf('waypoint').map((o) => meta(o).resourceVersion);
  const gw = get('Gateway', 'waypoint')!;
  fake.update('Gateway', {
    ...gw,
    metadata: { ...meta(gw), labels: { ...meta(gw).labels, team: 'reviews' } },
  });
  await waitFor(() => objectsOf('waypoint').every((o) => meta(o).labels?.team === 'reviews'), WAIT_MS);
  const after = objectsOf('waypoint');
  after.forEach((o, i) => assert.notEqual(meta(o).resourceVersion, before[i]));
  const podLabels = (((after[2]!.spec as KubeJson).template as KubeJson).metadata as KubeJson)
    .labels as Record<string, string>;
  assert.equal(podLabels.team, 'reviews');
  // The replace kept the Service's cluster IP and the Deployment's (server-owned) status.
  assert.deepEqual(addresses(get('Gateway', 'waypoint')), [
    { type: 'IPAddress', value: (after[3]!.spec as KubeJson).clusterIP },
  ]);
  assert.equal((after[2]!.status as KubeJson).readyReplicas, 1);
  assert.equal(condition(get('Gateway', 'waypoint'), 'Programmed')?.status, 'True');
});

test('an object someone else deleted is recreated', async () => {
  fake.delete('ConfigMap', { metadata: { name: 'waypoint-ca-root-cert', namespace: 'default' } });
  await waitFor(() => get('ConfigMap', 'waypoint-ca-root-cert') !== undefined, WAIT_MS);
});

test('a Gateway of another class is ignored: no objects, no status', async () => {
  fake.add('Gateway', gateway('ingress', 'default', 'istio'));
  fake.add('Gateway', gateway('waypoint', 'prod'));
  await waitFor(() => get('Deployment', 'waypoint', 'prod') !== undefined, WAIT_MS);
  await waitFor(() => condition(get('Gateway', 'waypoint', 'prod'), 'Accepted') !== undefined, WAIT_MS);
  assert.ok(objectsOf('ingress').every((o) => o === undefined));
  assert.equal(get('Gateway', 'ingress')!.status, undefined);
  assert.ok(
    !fake.requests.some((q) => q.verb !== 'list' && q.verb !== 'watch' && q.path.includes('/ingress')),
  );
});

test('another image (a new controller version) replaces the Deployment only', async () => {
  const before = objectsOf('waypoint').map((o) => meta(o).resourceVersion);
  await stop(first);
  first = start('controller-a', 'registry.example.com/ambit:0.2.0');
  const image = () =>
    (
      ((get('Deployment', 'waypoint')!.spec as KubeJson).template as KubeJson).spec as {
        containers: { image: string }[];
      }
    ).containers[0]!.image;
  await waitFor(() => image() === 'registry.example.com/ambit:0.2.0', WAIT_MS);
  const after = objectsOf('waypoint').map((o) => meta(o).resourceVersion);
  assert.deepEqual(
    after.map((rv, i) => rv !== before[i]),
    [false, false, true, false],
  );
});

test('a deleted Gateway takes its objects with it', async () => {
  fake.delete('Gateway', { metadata: { name: 'waypoint', namespace: 'prod' } });
  await waitFor(() => objectsOf('waypoint', 'prod').every((o) => o === undefined), WAIT_MS);
  assert.ok(objectsOf('waypoint').every(Boolean), "the other namespace's waypoint stays");
  assert.ok(
    capture.lines.some((l) => l.msg === 'waypoint object deleted' && l.object === 'Deployment prod/waypoint'),
  );
});

test('two replicas: exactly one acts; the other takes over once the stopped leader’s Lease expires', async () => {
  const second = start('controller-b');
  // The second replica waits: the Lease is held and renewed.
  await new Promise((r) => setTimeout(r, 3 * LEASE_MS));
  assert.deepEqual(leaders(), [first]);
  assert.equal(second.writes(), 0);
  assert.equal(leaseHolder(), 'controller-a');

  // A crash: no release. The other waits out the Lease, then carries on.
  const stoppedAt = Date.now();
  await stop(first, false);
  await waitFor(() => second.isLeader(), WAIT_MS);
  const tookMs = Date.now() - stoppedAt;
  assert.ok(tookMs >= LEASE_MS - 2 * RENEW_MS, `took over after ${tookMs} ms, before the Lease could expire`);
  assert.equal(leaseHolder(), 'controller-b');
  const lease = fake.get('Lease', DEFAULT_LEASE_NAME, 'ambit-system')!.spec as KubeJson;
  assert.ok((lease.leaseTransitions as number) >= 1);
  fake.add('Gateway', gateway('after-handover', 'prod'));
  await waitFor(() => objectsOf('after-handover', 'prod').every(Boolean), WAIT_MS);
  assert.ok(second.writes() > 0);

  // A graceful stop releases the Lease: a new replica takes it at once, not after expiry.
  const third = start('controller-c');
  await new Promise((r) => setTimeout(r, 2 * RENEW_MS));
  assert.equal(third.isLeader(), false);
  const releasedAt = Date.now();
  await stop(second);
  await waitFor(() => third.isLeader(), WAIT_MS);
  assert.ok(Date.now() - releasedAt < LEASE_MS, 'a released Lease is taken without waiting for expiry');
  assert.equal(leaders().length, 1);
  first = third;
});

test('more candidates at once: the Lease writes race (409 for all but one) and exactly one leads', async () => {
  const many = ['d', 'e', 'f'].map((id) => start(`controller-${id}`));
  await new Promise((r) => setTimeout(r, 3 * LEASE_MS));
  assert.equal(leaders().length, 1);
  for (const r of many) await stop(r);
  // No pass ever failed, and the status was written only when it changed.
  assert.deepEqual(
    capture.lines.filter((l) => l.msg === 'waypoint reconcile failed; retrying'),
    [],
  );
  const statusWrites = fake.requests.filter((q) => q.verb === 'update' && q.path.endsWith('/status'));
  assert.ok(statusWrites.length <= 12, `${statusWrites.length} status writes`);
});

test('the controller reconciles with an API server, and the agents are sent the address it reported', async () => {
  for (const r of [...running]) await stop(r);
  const ca = await CertificateAuthority.createSelfSigned('cluster.local');
  await writeFile(join(dir, 'ca-cert.pem'), ca.rootCertPem);
  await writeFile(join(dir, 'ca-key.pem'), ca.rootKeyPem);
  fake.add('Namespace', {
    metadata: {
      name: 'shop',
      labels: { 'istio.io/dataplane-mode': 'ambient', 'istio.io/use-waypoint': 'waypoint' },
    },
  });
  fake.add('Service', {
    metadata: { name: 'reviews', namespace: 'shop' },
    spec: { clusterIP: '10.96.7.7', selector: { app: 'reviews' }, ports: [{ name: 'http', port: 9080 }] },
  });
  fake.add('Gateway', gateway('waypoint', 'shop'));
  const built = buildControllerConfig({
    KUBECONFIG: kubeconfig,
    AMBIT_CA_CERT_FILE: join(dir, 'ca-cert.pem'),
    AMBIT_CA_KEY_FILE: join(dir, 'ca-key.pem'),
    AMBIT_GRPC_ADDR: '127.0.0.1:0',
    AMBIT_CONTROLLER_ADMIN_ADDR: '127.0.0.1:0',
    AMBIT_WAYPOINT_IMAGE: IMAGE,
    POD_NAME: 'ambit-controller-0',
    AMBIT_LEASE_DURATION: '1s',
    AMBIT_LEASE_RENEW: '200ms',
    AMBIT_PUSH_DEBOUNCE: '20ms',
    LOG_LEVEL: 'silent',
  });
  assert.ok(built.ok, JSON.stringify(built));
  let controller: ControllerBound | undefined;
  try {
    controller = await startController(built.config, { log: silentLogger() });
    await controller.ready;
    const waypointOf = () =>
      controller!.mesh().services.find((s) => s.name === 'reviews')?.waypoint?.destination;
    await waitFor(() => get('Service', 'waypoint', 'shop') !== undefined, WAIT_MS);
    const ip = (get('Service', 'waypoint', 'shop')!.spec as KubeJson).clusterIP as string;
    await waitFor(
      () => JSON.stringify(waypointOf()) === JSON.stringify({ kind: 'address', network: '', address: ip }),
      WAIT_MS,
      () => JSON.stringify(waypointOf()),
    );
    assert.deepEqual(addresses(get('Gateway', 'waypoint', 'shop')), [{ type: 'IPAddress', value: ip }]);
  } finally {
    await controller?.close();
  }
  // The controller released its Lease at close.
  assert.equal(leaseHolder(), '');
});
