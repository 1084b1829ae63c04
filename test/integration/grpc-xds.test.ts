/**
 * The controller's L7 resources through an independent consumer: `@grpc/grpc-js-xds`, a proxyless
 * gRPC client, speaking state-of-the-world ADS to the controller's tokenless proxyless port (it
 * cannot send a token: see the README). The controller reads a YAML directory whose Service has two
 * pods; the pods' addresses are real gRPC servers on loopback, which the client dials directly (no
 * waypoint, no agent). What DESIGN.md §3 asks of it: the same splits, header routes, faults and
 * timeouts as the waypoint, and changes to the YAML applied within seconds.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  Client,
  credentials,
  Metadata,
  Server,
  ServerCredentials,
  status,
  type ServerUnaryCall,
  type sendUnaryData,
  type ServiceError,
} from '@grpc/grpc-js';
import { startController, type ControllerBound } from '../../src/controller/app.ts';
import { CertificateAuthority } from '../../src/core/identity/ca.ts';
import { silentLogger } from '../../src/core/log.ts';
import { EnvoyTypeUrl } from '../../src/core/xds/l7-names.ts';

const require = createRequire(import.meta.url);

const NAMESPACE = 'grpc-test';
const SERVICE_PORT = 9080;
const TARGET = `xds:///echo.${NAMESPACE}.svc.cluster.local:${SERVICE_PORT}`;
const POD_IPS = { v1: '127.0.70.1', v2: '127.0.70.2' } as const;
type Version = keyof typeof POD_IPS;
const METHOD = '/ambit.test.Echo/Echo';
/** Every test ends well within this, or fails. */
const TEST_TIMEOUT_MS = 60_000;
/** A change to the YAML must reach the client within this. */
const APPLY_MS = 5_000;

let dir: string;
let kubeDir: string;
let controller: ControllerBound;
let targetPort: number;
const backends: { server: Server; version: Version; calls: number }[] = [];

/** An echo server that answers with its version, after `x-delay-ms` if the caller asks. */
async function startBackend(version: Version, port: number): Promise<number> {
  const server = new Server();
  const entry = { server, version, calls: 0 };
  const identity = (b: Buffer) => b;
  server.register(
    METHOD,
    (call: ServerUnaryCall<Buffer, Buffer>, done: sendUnaryData<Buffer>) => {
      entry.calls++;
      const delayMs = Number(call.metadata.get('x-delay-ms')[0] ?? 0);
      const timer = setTimeout(() => done(null, Buffer.from(version)), delayMs);
      call.on('cancelled', () => clearTimeout(timer));
    },
    identity,
    identity,
    'unary',
  );
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${POD_IPS[version]}:${port}`, ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  backends.push(entry);
  return bound;
}

const baseYaml = (port: number) => `apiVersion: v1
kind: Namespace
metadata: { name: ${NAMESPACE} }
---
apiVersion: v1
kind: Service
metadata: { name: echo, namespace: ${NAMESPACE} }
spec:
  selector: { app: echo }
  clusterIP: 10.96.70.1
  ports: [{ name: grpc, port: ${SERVICE_PORT}, targetPort: ${port}, appProtocol: grpc }]
---
apiVersion: v1
kind: Pod
metadata: { name: echo-v1, namespace: ${NAMESPACE}, labels: { app: echo, version: v1 } }
spec: { nodeName: node-1, containers: [{ name: echo }] }
status: { phase: Running, podIP: ${POD_IPS.v1} }
---
apiVersion: v1
kind: Pod
metadata: { name: echo-v2, namespace: ${NAMESPACE}, labels: { app: echo, version: v2 } }
spec: { nodeName: node-1, containers: [{ name: echo }] }
status: { phase: Running, podIP: ${POD_IPS.v2} }
`;

/**
 * Subsets by version, and routes: by header, a fault, a timeout, and a weighted split. `marker`
 * tells versions of the file apart: a call with `x-config: <marker>` is aborted with
 * FAILED_PRECONDITION only once that version is in force at the client (a split can look applied by
 * chance; this cannot).
 */
const l7Yaml = (
  marker: string,
  weights: { v1: number; v2: number },
  extraRoute = '',
) => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: echo, namespace: ${NAMESPACE} }
spec:
  host: echo
  subsets:
    - { name: v1, labels: { version: v1 } }
    - { name: v2, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: echo, namespace: ${NAMESPACE} }
spec:
  hosts: [echo]
  http:${extraRoute}
    - match: [{ headers: { x-config: { exact: ${marker} } } }]
      fault: { abort: { grpcStatus: FAILED_PRECONDITION, percentage: { value: 100 } } }
      route: [{ destination: { host: echo, subset: v1 } }]
    - match: [{ headers: { x-route: { exact: v2 } } }]
      route: [{ destination: { host: echo, subset: v2 } }]
    - match: [{ headers: { x-fault: { exact: abort } } }]
      fault: { abort: { grpcStatus: PERMISSION_DENIED, percentage: { value: 100 } } }
      route: [{ destination: { host: echo, subset: v1 } }]
    - match: [{ headers: { x-fault: { exact: delay } } }]
      fault: { delay: { fixedDelay: 700ms, percentage: { value: 100 } } }
      route: [{ destination: { host: echo, subset: v2 } }]
    - match: [{ headers: { x-slow: { exact: "yes" } } }]
      timeout: 300ms
      route: [{ destination: { host: echo, subset: v1 } }]
    - route:
        - { destination: { host: echo, subset: v1 }, weight: ${weights.v1} }
        - { destination: { host: echo, subset: v2 }, weight: ${weights.v2} }
`;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ambit-grpc-xds-'));
  kubeDir = join(dir, 'kube');
  await mkdir(kubeDir);
  // Both pods serve the Service's target port, each on its own loopback address.
  for (let attempt = 0; ; attempt++) {
    const port = await startBackend('v1', 0);
    try {
      await startBackend('v2', port);
      targetPort = port;
      break;
    } catch (err) {
      backends.pop()?.server.forceShutdown();
      if (attempt >= 5) throw err;
    }
  }
  await writeFile(join(kubeDir, 'base.yaml'), baseYaml(targetPort));
  const ca = await CertificateAuthority.createSelfSigned('cluster.local');
  await writeFile(join(dir, 'ca-cert.pem'), ca.rootCertPem);
  await writeFile(join(dir, 'ca-key.pem'), ca.rootKeyPem);
  await writeFile(join(dir, 'tokens'), 'token-one node-1\n');
  controller = await startController(
    {
      configDir: kubeDir,
      kubeconfigPath: '',
      inCluster: false,
      grpcAddr: { host: '127.0.0.1', port: 0 },
      grpcTlsAddr: undefined,
      proxylessXdsAddr: { host: '127.0.0.1', port: 0 },
      servingDnsNames: [],
      adminAddr: { host: '127.0.0.1', port: 0 },
      caCertPath: join(dir, 'ca-cert.pem'),
      caKeyPath: join(dir, 'ca-key.pem'),
      tokensPath: join(dir, 'tokens'),
      agentServiceAccounts: [],
      tokenAudiences: [],
      trustDomain: 'cluster.local',
      clusterId: 'Kubernetes',
      clusterDomain: 'cluster.local',
      rootNamespace: 'istio-system',
      debounceMs: 50,
      defaultCertTtlMs: 3600_000,
      maxCertTtlMs: 7200_000,
      logLevel: 'silent',
    },
    { log: silentLogger() },
  );
  await controller.ready;
  // What a user writes: a bootstrap file naming the controller's proxyless port, in GRPC_XDS_BOOTSTRAP.
  const bootstrap = join(dir, 'bootstrap.json');
  await writeFile(
    bootstrap,
    JSON.stringify({
      xds_servers: [
        {
          server_uri: `127.0.0.1:${controller.proxylessXds!.port}`,
          channel_creds: [{ type: 'insecure' }],
          server_features: ['xds_v3'],
        },
      ],
      node: { id: 'grpc-xds-test', locality: {} },
    }),
  );
  process.env.GRPC_XDS_BOOTSTRAP = bootstrap;
  (require('@grpc/grpc-js-xds') as { register(): void }).register();
});

after(async () => {
  for (const b of backends) b.server.forceShutdown();
  await controller?.close();
  await rm(dir, { recursive: true, force: true });
});

type Outcome = { ok: true; version: Version } | { ok: false; code: status; details: string };

/** One proxyless channel to the service. */
function channel() {
  const client = new Client(TARGET, credentials.createInsecure());
  const identity = (b: Buffer) => b;
  const call = (headers: Record<string, string> = {}, deadlineMs = 10_000): Promise<Outcome> => {
    const md = new Metadata();
    for (const [k, v] of Object.entries(headers)) md.set(k, v);
    return new Promise((resolve) =>
      client.makeUnaryRequest(
        METHOD,
        identity,
        identity,
        Buffer.alloc(0),
        md,
        { deadline: Date.now() + deadlineMs },
        (err: ServiceError | null, value?: Buffer) =>
          resolve(
            err
              ? { ok: false, code: err.code, details: err.details }
              : { ok: true, version: value!.toString() as Version },
          ),
      ),
    );
  };
  /** `n` calls, `concurrency` at a time, counted by where they went. */
  const many = async (n: number, headers: Record<string, string> = {}, concurrency = 25) => {
    const counts = { v1: 0, v2: 0, failed: [] as string[] };
    for (let done = 0; done < n; done += concurrency) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(concurrency, n - done) }, () => call(headers)),
      );
      for (const o of batch) {
        if (o.ok) counts[o.version]++;
        else counts.failed.push(`${status[o.code]}: ${o.details}`);
      }
    }
    return counts;
  };
  return { call, many, close: () => client.close() };
}

/** Waits until the client applies the version of l7.yaml with this marker. */
async function applied(c: ReturnType<typeof channel>, marker: string): Promise<number> {
  const { elapsedMs } = await until(
    `the routes of version ${marker}`,
    () => c.call({ 'x-config': marker }),
    (o) => !o.ok && o.code === status.FAILED_PRECONDITION,
  );
  return elapsedMs;
}

/** Polls until `check` holds, or fails saying what was last seen. */
async function until<T>(
  what: string,
  probe: () => Promise<T>,
  check: (v: T) => boolean,
  timeoutMs = APPLY_MS,
): Promise<{ value: T; elapsedMs: number }> {
  const start = Date.now();
  let last: T | undefined;
  while (Date.now() - start < timeoutMs) {
    last = await probe();
    if (check(last)) return { value: last, elapsedMs: Date.now() - start };
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms; last seen ${JSON.stringify(last)}`);
}

test(
  'without a VirtualService, calls are spread over both endpoints',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const c = channel();
    try {
      const counts = await c.many(60);
      assert.deepEqual(counts.failed, []);
      // Round robin over the two pods of the default cluster.
      assert.ok(counts.v1 >= 15 && counts.v2 >= 15, JSON.stringify(counts));
    } finally {
      c.close();
    }
  },
);

test(
  'with a VirtualService: a 90/10 split over subsets, a header route, a fault abort, a fault delay and a timeout',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    await writeFile(join(kubeDir, 'l7.yaml'), l7Yaml('a', { v1: 90, v2: 10 }));
    const c = channel();
    try {
      await applied(c, 'a');
      // (b) The split: 1,000 calls, 90/10 by weight. The v2 count is binomial(1000, 0.1): mean
      // 100, σ ≈ 9.5; 55..145 is more than 4.5σ either side.
      const split = await c.many(1000);
      assert.deepEqual(split.failed, []);
      assert.equal(split.v1 + split.v2, 1000);
      assert.ok(split.v2 >= 55 && split.v2 <= 145, `v2 got ${split.v2} of 1000: ${JSON.stringify(split)}`);

      // (c) A header match routes to its subset, every time.
      const routed = await c.many(40, { 'x-route': 'v2' });
      assert.deepEqual(routed, { v1: 0, v2: 40, failed: [] });

      // (d) The fault abort: the configured status, and the backend never sees the call.
      const before = backends.reduce((n, b) => n + b.calls, 0);
      for (let i = 0; i < 10; i++) {
        const o = await c.call({ 'x-fault': 'abort' });
        assert.ok(!o.ok && o.code === status.PERMISSION_DENIED, JSON.stringify(o));
      }
      assert.equal(
        backends.reduce((n, b) => n + b.calls, 0),
        before,
      );

      // (d') The fault delay: the call waits the configured 700 ms in the client, then succeeds.
      const delayed = Date.now();
      assert.deepEqual(await c.call({ 'x-fault': 'delay' }), { ok: true, version: 'v2' });
      const delayMs = Date.now() - delayed;
      assert.ok(delayMs >= 680 && delayMs < 2500, `the delayed call took ${delayMs} ms`);
      const prompt = Date.now();
      assert.deepEqual(await c.call({ 'x-route': 'v2' }), { ok: true, version: 'v2' });
      assert.ok(Date.now() - prompt < 600, 'an undelayed call was slow');

      // (e) The route's timeout (max_stream_duration) ends a slow call with DEADLINE_EXCEEDED, long
      // before the client's own 10 s deadline and the backend's 3 s delay.
      const start = Date.now();
      const slow = await c.call({ 'x-slow': 'yes', 'x-delay-ms': '3000' });
      const elapsedMs = Date.now() - start;
      assert.ok(!slow.ok && slow.code === status.DEADLINE_EXCEEDED, JSON.stringify(slow));
      assert.ok(elapsedMs >= 250 && elapsedMs < 2000, `ended after ${elapsedMs} ms`);
      // The same delay without the timeout route completes.
      assert.deepEqual(await c.call({ 'x-delay-ms': '400', 'x-route': 'v2' }), { ok: true, version: 'v2' });
    } finally {
      c.close();
    }
  },
);

test('editing the YAML changes the split within seconds', { timeout: TEST_TIMEOUT_MS }, async () => {
  await writeFile(join(kubeDir, 'l7.yaml'), l7Yaml('b', { v1: 90, v2: 10 }));
  const c = channel();
  try {
    await applied(c, 'b');
    const before = await c.many(100);
    assert.ok(before.v1 >= 70, JSON.stringify(before));
    await writeFile(join(kubeDir, 'l7.yaml'), l7Yaml('c', { v1: 10, v2: 90 }));
    const elapsedMs = await applied(c, 'c');
    assert.ok(elapsedMs < APPLY_MS, `applied after ${elapsedMs} ms`);
    const split = await c.many(300);
    assert.deepEqual(split.failed, []);
    // v1 is binomial(300, 0.1): mean 30, σ ≈ 5.2.
    assert.ok(split.v1 >= 9 && split.v1 <= 55, JSON.stringify(split));
  } finally {
    c.close();
  }
});

test(
  'a route configuration gRPC cannot apply is NACKed and counted; calls keep the last good routes',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    await writeFile(join(kubeDir, 'l7.yaml'), l7Yaml('d', { v1: 0, v2: 100 }));
    const c = channel();
    const nacks = async () => {
      const text = await (await fetch(`http://127.0.0.1:${controller.admin.port}/metrics`)).text();
      const line = text
        .split('\n')
        .find((l) => l.startsWith('ambit_xds_nacks_total') && l.includes(EnvoyTypeUrl.RouteConfiguration));
      return Number(line?.split(' ').at(-1) ?? 0);
    };
    try {
      await applied(c, 'd');
      assert.deepEqual(await c.many(20), { v1: 0, v2: 20, failed: [] });
      const before = await nacks();
      // A redirect: the waypoint can follow it, a gRPC client cannot, and rejects the whole
      // RouteConfiguration (its NACK), keeping the one it had.
      await writeFile(
        join(kubeDir, 'l7.yaml'),
        l7Yaml(
          'e',
          { v1: 100, v2: 0 },
          `
    - match: [{ headers: { x-moved: { exact: "yes" } } }]
      redirect: { authority: elsewhere.example }`,
        ),
      );
      await until('a NACK counted', nacks, (n) => n > before);
      // Still version d: its marker route, its split; e's marker is not routed.
      const d = await c.call({ 'x-config': 'd' });
      assert.ok(!d.ok && d.code === status.FAILED_PRECONDITION, JSON.stringify(d));
      assert.deepEqual(await c.call({ 'x-config': 'e' }), { ok: true, version: 'v2' });
      assert.deepEqual(await c.many(20), { v1: 0, v2: 20, failed: [] });
      // Fixed: the next version is accepted.
      await writeFile(join(kubeDir, 'l7.yaml'), l7Yaml('f', { v1: 100, v2: 0 }));
      await applied(c, 'f');
      assert.deepEqual(await c.many(20), { v1: 20, v2: 0, failed: [] });
    } finally {
      c.close();
    }
  },
);

test(
  'removing the VirtualService brings back the default route over both endpoints',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    await rm(join(kubeDir, 'l7.yaml'));
    const c = channel();
    try {
      await until(
        'both endpoints again',
        () => c.many(40),
        (n) => n.v1 >= 10 && n.v2 >= 10 && n.failed.length === 0,
      );
    } finally {
      c.close();
    }
  },
);

test(
  'a ServiceEntry resolved by DNS_ROUND_ROBIN is a LOGICAL_DNS cluster gRPC accepts: the client resolves localhost itself',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const server = new Server();
    server.register(
      METHOD,
      (_call: ServerUnaryCall<Buffer, Buffer>, done: sendUnaryData<Buffer>) => done(null, Buffer.from('dns')),
      (b: Buffer) => b,
      (b: Buffer) => b,
      'unary',
    );
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    await writeFile(
      join(kubeDir, 'dns-entry.yaml'),
      `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: echo-dns, namespace: ${NAMESPACE} }
spec:
  hosts: [echo-dns.example.com]
  location: MESH_EXTERNAL
  ports: [{ number: ${SERVICE_PORT}, name: grpc, protocol: GRPC }]
  resolution: DNS_ROUND_ROBIN
  endpoints: [{ address: localhost, ports: { grpc: ${port} } }]
`,
    );
    const client = new Client(`xds:///echo-dns.example.com:${SERVICE_PORT}`, credentials.createInsecure());
    const call = () =>
      new Promise<string>((resolve) =>
        client.makeUnaryRequest(
          METHOD,
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.alloc(0),
          new Metadata(),
          { deadline: Date.now() + 2_000 },
          (err: ServiceError | null, value?: Buffer) =>
            resolve(err ? `${status[err.code]}: ${err.details}` : value!.toString()),
        ),
      );
    try {
      await until('a call answered through the LOGICAL_DNS cluster', call, (v) => v === 'dns', 15_000);
    } finally {
      client.close();
      server.forceShutdown();
      await rm(join(kubeDir, 'dns-entry.yaml'));
    }
  },
);
