/**
 * The waypoint program in-process (issue 5): a client speaking HBONE with its own identity → the
 * waypoint (HBONE server, HTTP/1.1 or h2c on the tunnel, routes and clusters fed through the Bound)
 * → pods behind their own HBONE servers (the waypoint's identity, not the client's, is what they
 * see) → plain HTTP/1.1 and h2c servers on the pods' loopback addresses.
 */
import assert from 'node:assert/strict';
import { Agent, createServer as createHttpServer, request as httpRequest, type Server } from 'node:http';
import {
  connect as h2connect,
  createServer as createH2Server,
  type ClientHttp2Stream,
  type Http2Server,
} from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import type { HbonePool } from '../../src/core/hbone/pool.ts';
import { HboneServer } from '../../src/core/hbone/server.ts';
import { CertificateAuthority } from '../../src/core/identity/ca.ts';
import { LocalCaProvider, SecretManager } from '../../src/core/identity/secret-manager.ts';
import { formatSpiffe, type Identity } from '../../src/core/identity/spiffe.ts';
import { silentLogger } from '../../src/core/log.ts';
import { systemClock } from '../../src/core/clock.ts';
import {
  ALWAYS,
  type Cluster,
  type L7Listener,
  type Route,
  type RetryPolicy,
} from '../../src/core/xds/l7-model.ts';
import { clusterName, EnvoyTypeUrl } from '../../src/core/xds/l7-names.ts';
import { encodeEnvoy } from '../../src/core/xds/l7-wire.ts';
import type { Service, Workload } from '../../src/core/xds/model.ts';
import { startWaypoint, type WaypointBound } from '../../src/waypoint/app.ts';
import { asHttpSocket } from '../../src/waypoint/stream-socket.ts';
import { captureLogger } from '../fakes/capture-log.ts';
import { testPrefix, waitFor } from '../fakes/mesh.ts';
import {
  action,
  assignment,
  cluster,
  config as routeConfig,
  endpoint,
  match,
  route,
  vhost,
  weighted,
} from '../unit/waypoint/l7-builders.ts';
import { clientPool, waypointTestConfig } from '../fakes/waypoint-harness.ts';

// ---------- topology ----------

const P = testPrefix();
// Octets apart from test/fakes/mesh.ts's, so a concurrent test process with the same prefix never collides.
const IP = {
  client: `${P}.21.2`,
  v1: `${P}.22.2`,
  v2: `${P}.22.3`,
  v3: `${P}.22.4`,
  legacy: `${P}.22.8`,
  shadow: `${P}.22.9`,
  waypoint: `${P}.25.1`,
  vip: `${P}.120.3`,
  grpcVip: `${P}.120.5`,
  elsewhereVip: `${P}.120.6`,
};
const TD = 'cluster.local';
const HOST = 'reviews.default.svc.cluster.local';
const SHADOW_HOST = 'reviews-shadow.default.svc.cluster.local';
const GRPC_HOST = 'echo-grpc.default.svc.cluster.local';
const ROUTES = `${HOST}:9080`;
const GRPC_ROUTES = `${GRPC_HOST}:9090`;
const HTTP_PORT = 9080;
const H2C_PORT = 9090;
const C = {
  all: clusterName(9080, '', HOST),
  v1: clusterName(9080, 'v1', HOST),
  v2: clusterName(9080, 'v2', HOST),
  v3: clusterName(9080, 'v3', HOST),
  shadow: clusterName(9080, '', SHADOW_HOST),
  legacy: clusterName(9080, 'legacy', HOST),
  grpc: clusterName(9090, '', GRPC_HOST),
};
const CLIENT: Identity = { trustDomain: TD, namespace: 'default', serviceAccount: 'client' };
const REVIEWS: Identity = { trustDomain: TD, namespace: 'default', serviceAccount: 'reviews' };

function workload(name: string, ip: string, sa: string, p: Partial<Workload> = {}): Workload {
  return {
    uid: `Kubernetes//Pod/default/${name}`,
    name,
    namespace: 'default',
    addresses: [ip],
    hostname: '',
    network: '',
    tunnelProtocol: 'HBONE',
    trustDomain: TD,
    serviceAccount: sa,
    waypoint: undefined,
    node: 'node-a',
    canonicalName: '',
    canonicalRevision: '',
    workloadType: 'deployment',
    workloadName: name,
    services: new Map(),
    authorizationPolicies: [],
    healthy: true,
    clusterId: 'Kubernetes',
    capacity: 1,
    ...p,
  };
}

const WAYPOINT_REF = {
  destination: { kind: 'hostname', namespace: 'default', hostname: 'waypoint.default.svc.cluster.local' },
  hboneMtlsPort: 15008,
} as const;

function service(name: string, vip: string, port: number, p: Partial<Service> = {}): Service {
  return {
    name,
    namespace: 'default',
    hostname: `${name}.default.svc.cluster.local`,
    vips: [{ network: '', address: vip }],
    ports: new Map([[port, port]]),
    subjectAltNames: [],
    waypoint: WAYPOINT_REF,
    ...p,
  };
}

const reviewsPorts = new Map([[`default/${HOST}`, new Map([[9080, 9080]])]]);
const WORKLOADS: Workload[] = [
  workload('client', IP.client, 'client', { canonicalName: 'client', canonicalRevision: 'v1' }),
  ...(['v1', 'v2', 'v3'] as const).map((v) =>
    workload(`reviews-${v}`, IP[v], 'reviews', {
      canonicalName: 'reviews',
      canonicalRevision: v,
      services: new Map([...reviewsPorts, [`default/${GRPC_HOST}`, new Map([[9090, 9090]])]]),
    }),
  ),
  workload('reviews-shadow', IP.shadow, 'reviews', {
    canonicalName: 'reviews-shadow',
    canonicalRevision: 'v1',
  }),
  workload('legacy', IP.legacy, 'default', { tunnelProtocol: 'NONE', canonicalName: 'legacy' }),
  workload('waypoint', IP.waypoint, 'waypoint', {
    services: new Map([['default/waypoint.default.svc.cluster.local', new Map([[15008, 15008]])]]),
  }),
];
const SERVICES: Service[] = [
  service('reviews', IP.vip, 9080),
  service('echo-grpc', IP.grpcVip, 9090),
  service('elsewhere', IP.elsewhereVip, 9080, {
    waypoint: {
      destination: { kind: 'hostname', namespace: 'other', hostname: 'waypoint.other.svc.cluster.local' },
      hboneMtlsPort: 15008,
    },
  }),
  service('waypoint', `${P}.120.9`, 15008, { waypoint: undefined }),
];

// ---------- pods ----------

interface Hit {
  readonly pod: string;
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

interface Pod {
  readonly name: string;
  readonly ip: string;
  /** Identities of the HBONE clients that reached this pod. */
  readonly peers: string[];
  failing: boolean;
}

const hits: Hit[] = [];
const failOnce = new Map<string, number>();
const blocked = new Map<string, (() => void)[]>();
const closers: (() => Promise<void>)[] = [];

function release(key: string): void {
  for (const r of blocked.get(key) ?? []) r();
  blocked.delete(key);
}

async function listen(server: Server | Http2Server, host: string, port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => resolve());
  });
  closers.push(
    () =>
      new Promise((r) => {
        server.close(() => r());
        if ('closeAllConnections' in server) server.closeAllConnections();
      }),
  );
}

/** A pod: an HTTP/1.1 app on :9080, an h2c app on :9090, and (unless plain) its agent's HBONE on :15008. */
async function startPod(name: string, ip: string, ca: CertificateAuthority, hbone: boolean): Promise<Pod> {
  const pod: Pod = { name, ip, peers: [], failing: false };
  const http1 = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '/';
      hits.push({
        pod: name,
        method: req.method ?? '',
        path,
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      });
      const reply = (status: number, body = `${name} ${path}`) => {
        res.writeHead(status, { 'x-pod': name, 'content-type': 'text/plain' });
        res.end(body);
      };
      if (pod.failing) return reply(500, 'failing');
      const m = /^\/(status|fail-once|slow-once|slow|block)\/([^/?]+)/.exec(path);
      if (!m) return reply(200);
      if (m[1] === 'status') return reply(Number(m[2]));
      if (m[1] === 'fail-once') {
        const n = (failOnce.get(m[2]!) ?? 0) + 1;
        failOnce.set(m[2]!, n);
        return n === 1 ? reply(503, 'first try fails') : reply(200);
      }
      if (m[1] === 'slow') return void setTimeout(() => reply(200), Number(m[2]));
      if (m[1] === 'slow-once') {
        const n = (failOnce.get(m[2]!) ?? 0) + 1;
        failOnce.set(m[2]!, n);
        return n === 1 ? void setTimeout(() => reply(200, 'too late'), 2000) : reply(200);
      }
      const list = blocked.get(m[2]!) ?? [];
      list.push(() => reply(200));
      blocked.set(m[2]!, list);
    });
  });
  // Apps close idle kept-alive connections quickly, so the waypoint meets connections that went away.
  http1.keepAliveTimeout = 300;
  await listen(http1, ip, HTTP_PORT);
  const h2c = createH2Server();
  h2c.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      hits.push({
        pod: name,
        method: String(headers[':method']),
        path: String(headers[':path']),
        headers,
        body: Buffer.concat(chunks).toString(),
      });
      stream.respond(
        { ':status': 200, 'content-type': 'application/grpc', 'x-pod': name },
        { waitForTrailers: true },
      );
      stream.once('wantTrailers', () =>
        stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': `from ${name}` }),
      );
      stream.end(Buffer.concat(chunks));
    });
  });
  await listen(h2c, ip, H2C_PORT);
  if (hbone) {
    const secrets = new SecretManager({
      provider: new LocalCaProvider(ca, 3600_000),
      clock: systemClock,
      log: silentLogger(),
    });
    const server = await HboneServer.start({
      host: ip,
      port: 15008,
      certificate: await secrets.get(REVIEWS),
      trustDomain: TD,
      log: silentLogger(),
      onRequest: (req) => {
        pod.peers.push(formatSpiffe(req.peerIdentity));
        if (req.authority.kind !== 'ip' || req.authority.ip !== ip) return req.reject(400);
        const socket: Socket = netConnect({ host: ip, port: req.authority.port, allowHalfOpen: true });
        socket.once('connect', () => void req.accept(socket));
        socket.once('error', () => req.reject(503));
      },
    });
    closers.push(() => server.close(0));
  }
  return pod;
}

// ---------- the waypoint and the client ----------

let wp: WaypointBound;
let pool: HbonePool;
let pods: Record<'v1' | 'v2' | 'v3' | 'shadow' | 'legacy', Pod>;
const logs = captureLogger('info');

const LISTENERS: L7Listener[] = [ROUTES, GRPC_ROUTES].map((name) => ({
  name,
  routeConfigName: name,
  httpFilters: [
    { name: 'envoy.filters.http.fault', kind: 'fault' },
    { name: 'envoy.filters.http.cors', kind: 'cors' },
    { name: 'envoy.filters.http.router', kind: 'router' },
  ],
}));

/** Every cluster the tests use, with its endpoints; `extra` adds or overrides clusters. */
function applyClusters(extra: readonly Cluster[] = [], extraEndpoints: Record<string, string[]> = {}): void {
  const eps: Record<string, string[]> = {
    [C.all]: [IP.v1, IP.v2, IP.v3],
    [C.v1]: [IP.v1],
    [C.v2]: [IP.v2],
    [C.v3]: [IP.v3],
    [C.shadow]: [IP.shadow],
    [C.legacy]: [IP.legacy],
    [C.grpc]: [IP.v1],
    ...extraEndpoints,
  };
  const base = Object.keys(eps)
    .filter((n) => !extra.some((c) => c.name === n))
    .map((n) => cluster({ name: n, edsServiceName: n, upstreamProtocol: n === C.grpc ? 'http2' : 'http1' }));
  const all = [...base, ...extra];
  wp.applyL7({
    clusters: all,
    loadAssignments: all.map((c) => ({
      ...assignment(
        (eps[c.name] ?? []).map((ip) => endpoint(ip, { port: c.name === C.grpc ? H2C_PORT : HTTP_PORT })),
      ),
      clusterName: c.edsServiceName,
    })),
  });
}

/** The route configuration of reviews:9080: one virtual host for every name, these routes. */
function applyRoutes(...routes: Route[]): void {
  wp.applyL7({
    routeConfigurations: [
      routeConfig([vhost(routes, { name: ROUTES, domains: ['*'] })], { name: ROUTES }),
      routeConfig(
        [vhost([route({ action: action({ cluster: C.grpc }) })], { name: GRPC_ROUTES, domains: ['*'] })],
        {
          name: GRPC_ROUTES,
        },
      ),
    ],
  });
}

const toAll = () => route({ name: 'default', action: action({ cluster: C.all }) });

before(async () => {
  const ca = await CertificateAuthority.createSelfSigned(TD);
  pods = {
    v1: await startPod('reviews-v1', IP.v1, ca, true),
    v2: await startPod('reviews-v2', IP.v2, ca, true),
    v3: await startPod('reviews-v3', IP.v3, ca, true),
    shadow: await startPod('reviews-shadow', IP.shadow, ca, true),
    legacy: await startPod('legacy', IP.legacy, ca, false),
  };
  const config = waypointTestConfig(IP.waypoint);
  wp = await startWaypoint(config, { certificates: new LocalCaProvider(ca, 3600_000), log: logs.log });
  wp.applyMesh(WORKLOADS, SERVICES);
  wp.applyL7({ listeners: LISTENERS });
  applyClusters();
  applyRoutes(toAll());
  const clientSecrets = new SecretManager({
    provider: new LocalCaProvider(ca, 3600_000),
    clock: systemClock,
    log: silentLogger(),
  });
  pool = clientPool((id) => clientSecrets.get(id));
  await waitFor(
    () => wp.pending().length === 0,
    5000,
    () => wp.pending().join(', '),
  );
});

after(async () => {
  pool.destroy();
  await wp.close();
  for (const c of closers.reverse()) await c();
});

/** An HBONE tunnel from the client to the waypoint, for `authority`. */
async function tunnel(authority = `${IP.vip}:9080`): Promise<ClientHttp2Stream> {
  const r = await pool.connect(
    {
      srcIdentity: CLIENT,
      srcIp: IP.client,
      dstIp: IP.waypoint,
      dstPort: wp.hbone()!.port,
      expectedIdentities: [wp.identity],
    },
    { authority, headers: {} },
  );
  if (!r.ok) throw Object.assign(new Error(r.reason), { status: r.status });
  return asHttpSocket(r.stream);
}

interface Reply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
  readonly ms: number;
}

/** One HTTP/1.1 request on its own tunnel. */
async function call(
  path: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string; host?: string } = {},
): Promise<Reply> {
  const stream = await tunnel();
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        createConnection: () => stream,
        method: opts.method ?? 'GET',
        path,
        headers: { host: opts.host ?? `${HOST}:9080`, ...opts.headers },
      },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, ms: Date.now() - start }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

const podOf = (r: Reply) => String(r.headers['x-pod']);

async function metricsText(): Promise<string> {
  return (await fetch(`http://127.0.0.1:${wp.metrics.port}/metrics`)).text();
}

// ---------- tests ----------

test('default route: the request reaches one of the service endpoints, with forwarding headers', async () => {
  applyRoutes(toAll());
  const seen = new Set<string>();
  for (let i = 0; i < 6; i++) {
    const r = await call(`/hello?i=${i}`);
    assert.equal(r.status, 200);
    assert.match(String(r.headers['x-envoy-upstream-service-time']), /^\d+$/);
    seen.add(podOf(r));
  }
  assert.ok(seen.size >= 2, `expected round robin over the endpoints, saw ${[...seen].join(',')}`);
  const hit = hits.findLast((h) => h.path.startsWith('/hello'))!;
  assert.equal(hit.headers['x-forwarded-for'], IP.client);
  assert.equal(hit.headers['x-forwarded-proto'], 'http');
  assert.match(String(hit.headers['x-request-id']), /^[0-9a-f-]{36}$/);
  assert.equal(hit.headers.host, `${HOST}:9080`);
});

test('the pods see the waypoint as their HBONE peer, never the client', async () => {
  await call('/who');
  const peers = new Set([...pods.v1.peers, ...pods.v2.peers, ...pods.v3.peers]);
  assert.deepEqual([...peers], [wp.identity]);
  assert.equal(wp.identity, 'spiffe://cluster.local/ns/default/sa/waypoint');
  assert.ok(!peers.has(formatSpiffe(CLIENT)));
});

test('a kept-alive upstream connection the app closed while idle is not reused', async () => {
  applyRoutes(route({ name: 'idle', action: action({ cluster: C.v1 }) }));
  assert.equal((await call('/before-idle')).status, 200);
  await new Promise((r) => setTimeout(r, 600));
  // A body and no retry policy: nothing could replay the request had it gone out on the dead connection.
  assert.equal((await call('/after-idle', { method: 'POST', body: 'x' })).status, 200);
  await new Promise((r) => setTimeout(r, 600));
  assert.equal((await call('/after-idle')).status, 200);
});

test('90/10 weighted subsets (500 requests)', async () => {
  applyRoutes(
    route({
      name: 'split',
      action: action({ clusters: [weighted(C.v1, 90), weighted(C.v2, 10)], weighted: true }),
    }),
  );
  const counts = new Map<string, number>();
  const batch = async (n: number) => {
    const rs = await Promise.all(Array.from({ length: n }, () => call('/split')));
    for (const r of rs) counts.set(podOf(r), (counts.get(podOf(r)) ?? 0) + 1);
  };
  for (let i = 0; i < 25; i++) await batch(20);
  const v2 = counts.get('reviews-v2') ?? 0;
  assert.equal((counts.get('reviews-v1') ?? 0) + v2, 500);
  // Binomial(500, 0.1): mean 50, sd 6.7; ±4 sd.
  assert.ok(v2 >= 23 && v2 <= 77, `v2 got ${v2} of 500`);
});

test('header match routes to a subset; other requests take the next route', async () => {
  applyRoutes(
    route({
      name: 'jason',
      match: match({
        headers: [
          {
            name: 'end-user',
            match: { kind: 'string', matcher: { kind: 'exact', value: 'jason', ignoreCase: false } },
            invert: false,
            treatMissingAsEmpty: false,
          },
        ],
      }),
      action: action({ cluster: C.v2 }),
    }),
    route({ name: 'rest', action: action({ cluster: C.v1 }) }),
  );
  for (let i = 0; i < 3; i++) {
    assert.equal(podOf(await call('/', { headers: { 'end-user': 'jason' } })), 'reviews-v2');
    assert.equal(podOf(await call('/')), 'reviews-v1');
  }
});

test('404 when a VirtualService exists and no route matches (response flag NR)', async () => {
  applyRoutes(
    route({
      name: 'only-api',
      match: match({ path: { kind: 'prefix', value: '/api' } }),
      action: action({ cluster: C.v1 }),
    }),
  );
  const before = hits.length;
  const r = await call('/other');
  assert.equal(r.status, 404);
  assert.equal(r.body, '');
  assert.equal(hits.length, before);
  assert.equal((await call('/api/x')).status, 200);
  const line = logs.lines.findLast((l) => l.msg === 'request complete' && l.path === '/other');
  assert.equal(line?.responseFlags, 'NR');
  assert.equal(line?.status, 404);
});

test('redirect and direct response are answered by the waypoint', async () => {
  applyRoutes(
    route({
      name: 'moved',
      match: match({ path: { kind: 'prefix', value: '/old' } }),
      action: {
        kind: 'redirect',
        scheme: undefined,
        host: 'ratings.default.svc.cluster.local',
        port: undefined,
        path: { kind: 'path', value: '/new' },
        status: 301,
        stripQuery: false,
      },
    }),
    route({
      name: 'maintenance',
      action: {
        kind: 'direct-response',
        status: 503,
        body: new TextEncoder().encode('down for maintenance'),
      },
    }),
  );
  const before = hits.length;
  const moved = await call('/old?x=1');
  assert.equal(moved.status, 301);
  assert.equal(moved.headers.location, 'http://ratings.default.svc.cluster.local/new?x=1');
  const direct = await call('/anything');
  assert.equal(direct.status, 503);
  assert.equal(direct.body, 'down for maintenance');
  assert.equal(direct.headers['content-type'], 'text/plain');
  assert.equal(hits.length, before);
});

test('fault abort (100%) and fault delay', async () => {
  applyRoutes(
    route({
      name: 'abort',
      match: match({ path: { kind: 'prefix', value: '/abort' } }),
      action: action({ cluster: C.v1 }),
      fault: { kind: 'config', config: { delay: undefined, abort: { httpStatus: 418, percentage: ALWAYS } } },
    }),
    route({
      name: 'delay',
      action: action({ cluster: C.v1 }),
      fault: {
        kind: 'config',
        config: { delay: { fixedDelayMs: 300, percentage: ALWAYS }, abort: undefined },
      },
    }),
  );
  const before = hits.length;
  for (let i = 0; i < 5; i++) {
    const r = await call('/abort');
    assert.equal(r.status, 418);
    assert.equal(r.body, 'fault filter abort');
  }
  assert.equal(hits.length, before);
  const delayed = await call('/delayed');
  assert.equal(delayed.status, 200);
  assert.ok(delayed.ms >= 290, `delay was ${delayed.ms} ms`);
  const line = logs.lines.findLast((l) => l.msg === 'request complete' && l.path === '/abort');
  assert.equal(line?.responseFlags, 'FI');
});

test('route timeout: 504 upstream request timeout (UT)', async () => {
  applyRoutes(route({ name: 'slow', action: action({ cluster: C.v1, timeoutMs: 150 }) }));
  const r = await call('/slow/1000');
  assert.equal(r.status, 504);
  assert.equal(r.body, 'upstream request timeout');
  assert.ok(r.ms < 900, `took ${r.ms} ms`);
  const line = logs.lines.findLast((l) => l.msg === 'request complete' && l.path === '/slow/1000');
  assert.equal(line?.responseFlags, 'UT');
});

const RETRY: RetryPolicy = {
  retryOn: ['5xx'],
  numRetries: 2,
  perTryTimeoutMs: 0,
  retriableStatusCodes: [],
  retryPreviousHosts: false,
  hostSelectionRetryMaxAttempts: 1,
  backOff: { baseIntervalMs: 5, maxIntervalMs: 50 },
};

test('retries on 503: the first try fails at the backend, the retry succeeds', async () => {
  applyRoutes(route({ name: 'retry', action: action({ cluster: C.all, retryPolicy: RETRY }) }));
  const r = await call('/fail-once/a', { method: 'POST', body: 'payload' });
  assert.equal(r.status, 200);
  const tries = hits.filter((h) => h.path === '/fail-once/a');
  assert.equal(tries.length, 2);
  assert.deepEqual(
    tries.map((t) => t.body),
    ['payload', 'payload'],
  );
  // Without a retry policy the 503 goes back to the client.
  applyRoutes(route({ name: 'no-retry', action: action({ cluster: C.all }) }));
  assert.equal((await call('/fail-once/b')).status, 503);
});

test('per-try timeout: a slow first try is abandoned and retried', async () => {
  applyRoutes(
    route({
      name: 'per-try',
      action: action({ cluster: C.all, retryPolicy: { ...RETRY, numRetries: 1, perTryTimeoutMs: 150 } }),
    }),
  );
  const r = await call('/slow-once/p');
  assert.equal(r.status, 200);
  assert.notEqual(r.body, 'too late');
  assert.ok(r.ms < 1500, `took ${r.ms} ms`);
  assert.equal(hits.filter((h) => h.path === '/slow-once/p').length, 2);
  // Both tries too slow: 504 once the retries are spent.
  applyRoutes(
    route({
      name: 'per-try',
      action: action({ cluster: C.all, retryPolicy: { ...RETRY, numRetries: 1, perTryTimeoutMs: 100 } }),
    }),
  );
  const slow = await call('/slow/1000');
  assert.equal(slow.status, 504);
  const line = logs.lines.findLast((l) => l.msg === 'request complete' && l.path === '/slow/1000')!;
  assert.equal(line.attempts, 2);
  assert.match(String(line.responseFlags), /UT/);
});

test('a body larger than the retry buffer streams through (and turns retries off)', async () => {
  applyRoutes(route({ name: 'big', action: action({ cluster: C.v1, retryPolicy: RETRY }) }));
  const big = 'x'.repeat(3 * 1024 * 1024);
  const r = await call('/upload', { method: 'POST', body: big });
  assert.equal(r.status, 200);
  assert.equal(hits.findLast((h) => h.path === '/upload')!.body.length, big.length);
  const line = logs.lines.findLast((l) => l.msg === 'request complete' && l.path === '/upload')!;
  assert.equal(line.bytesReceived, big.length);
});

test('a client that goes away mid-request is logged DC; the waypoint carries on', async () => {
  applyRoutes(route({ name: 'gone', action: action({ cluster: C.v1 }) }));
  const stream = await tunnel();
  const req = httpRequest({
    createConnection: () => stream,
    path: '/slow/300',
    headers: { host: `${HOST}:9080` },
  });
  req.on('error', () => undefined);
  req.end();
  await waitFor(() => wp.inFlight() === 1, 2000);
  stream.destroy();
  await waitFor(() => logs.lines.some((l) => l.msg === 'request complete' && l.path === '/slow/300'), 3000);
  const line = logs.lines.findLast((l) => l.msg === 'request complete' && l.path === '/slow/300')!;
  assert.equal(line.responseFlags, 'DC');
  assert.equal((await call('/after-dc')).status, 200);
});

test('circuit breaker: overflow is answered 503 with x-envoy-overloaded', async () => {
  const cb = cluster({
    name: C.v1,
    edsServiceName: C.v1,
    circuitBreakers: { maxConnections: 1, maxPendingRequests: 1, maxRequests: 1024, maxRetries: 3 },
  });
  applyClusters([cb]);
  applyRoutes(route({ name: 'cb', action: action({ cluster: C.v1 }) }));
  try {
    const inflight = Array.from({ length: 5 }, () => call('/block/cb'));
    await waitFor(() => (blocked.get('cb')?.length ?? 0) >= 1, 3000);
    // One request holds the connection, one waits for it, the other three overflow at once.
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(blocked.get('cb')?.length, 1);
    const releaser = setInterval(() => release('cb'), 20);
    const results = await Promise.all(inflight).finally(() => clearInterval(releaser));
    const overflowed = results.filter((r) => r.status === 503);
    assert.equal(overflowed.length, 3);
    for (const r of overflowed) assert.equal(r.headers['x-envoy-overloaded'], 'true');
    assert.equal(results.filter((r) => r.status === 200).length, 2);
  } finally {
    applyClusters();
  }
});

test('outlier detection ejects a failing host; traffic then goes to the healthy one', async () => {
  const od = cluster({
    name: C.all,
    edsServiceName: C.all,
    healthyPanicThresholdPercent: 0,
    outlierDetection: {
      consecutive5xx: 3,
      consecutiveGatewayFailure: 0,
      enforcingConsecutive5xxPercent: 100,
      enforcingConsecutiveGatewayFailurePercent: 0,
      splitExternalLocalOriginErrors: false,
      consecutiveLocalOriginFailure: 5,
      enforcingConsecutiveLocalOriginFailurePercent: 100,
      intervalMs: 10_000,
      baseEjectionTimeMs: 30_000,
      maxEjectionTimeMs: 300_000,
      maxEjectionTimeJitterMs: 0,
      maxEjectionPercent: 100,
      alwaysEjectOneHost: false,
    },
  });
  applyClusters([od], { [C.all]: [IP.v1, IP.v3] });
  applyRoutes(route({ name: 'od', action: action({ cluster: C.all }) }));
  pods.v3.failing = true;
  try {
    let failures = 0;
    for (let i = 0; i < 10; i++) if ((await call('/od')).status === 500) failures++;
    assert.equal(failures, 3);
    const v3 = wp
      .l7()
      .picker(C.all)!
      .hosts()
      .find((h) => h.address === IP.v3)!;
    assert.equal(v3.ejected, true);
    for (let i = 0; i < 10; i++) assert.equal(podOf(await call('/od')), 'reviews-v1');
    const dump = (await (await fetch(`http://127.0.0.1:${wp.admin.port}/config_dump`)).json()) as {
      clusters: { name: string; endpoints: { address: string; ejected: boolean }[] }[];
    };
    const dumped = dump.clusters.find((c) => c.name === C.all)!;
    assert.equal(dumped.endpoints.find((e) => e.address === IP.v3)?.ejected, true);
  } finally {
    pods.v3.failing = false;
    applyClusters();
  }
});

test('mirror: a copy reaches the shadow cluster with the -shadow host', async () => {
  applyRoutes(
    route({
      name: 'mirror',
      action: action({
        cluster: C.v1,
        mirrors: [{ cluster: C.shadow, fraction: undefined, disableShadowHostSuffix: false }],
      }),
    }),
  );
  const r = await call('/mirrored', { method: 'POST', body: 'copy me' });
  assert.equal(r.status, 200);
  assert.equal(podOf(r), 'reviews-v1');
  await waitFor(() => hits.some((h) => h.pod === 'reviews-shadow' && h.path === '/mirrored'), 3000);
  const copy = hits.find((h) => h.pod === 'reviews-shadow' && h.path === '/mirrored')!;
  assert.equal(copy.headers.host, `${HOST}-shadow:9080`);
  assert.equal(copy.body, 'copy me');
});

test('CORS preflight is answered by the waypoint; simple requests get allow-origin', async () => {
  applyRoutes(
    route({
      name: 'cors',
      action: action({ cluster: C.v1 }),
      cors: {
        kind: 'config',
        config: {
          allowOrigins: [{ kind: 'exact', value: 'https://example.com', ignoreCase: false }],
          allowMethods: 'GET,POST',
          allowHeaders: 'content-type',
          exposeHeaders: '',
          maxAge: '600',
          allowCredentials: undefined,
          allowPrivateNetworkAccess: undefined,
          forwardNotMatchingPreflights: undefined,
          enabled: undefined,
        },
      },
    }),
  );
  const before = hits.length;
  const pre = await call('/cors', {
    method: 'OPTIONS',
    headers: { origin: 'https://example.com', 'access-control-request-method': 'POST' },
  });
  assert.equal(pre.status, 200);
  assert.equal(pre.headers['access-control-allow-origin'], 'https://example.com');
  assert.equal(pre.headers['access-control-allow-methods'], 'GET,POST');
  assert.equal(pre.headers['access-control-max-age'], '600');
  assert.equal(hits.length, before);
  const simple = await call('/cors', { headers: { origin: 'https://example.com' } });
  assert.equal(simple.status, 200);
  assert.equal(simple.headers['access-control-allow-origin'], 'https://example.com');
});

test('a plain (tunnel NONE) endpoint is reached over TCP', async () => {
  applyRoutes(route({ name: 'legacy', action: action({ cluster: C.legacy }) }));
  const r = await call('/legacy');
  assert.equal(r.status, 200);
  assert.equal(podOf(r), 'legacy');
});

test('h2c with gRPC framing: data and trailers pass through', async () => {
  const stream = await tunnel(`${IP.grpcVip}:9090`);
  const session = h2connect(`http://${GRPC_HOST}:9090`, {
    createConnection: () => stream,
  });
  try {
    const req = session.request({
      ':method': 'POST',
      ':path': '/echo.Echo/Say',
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    const message = Buffer.concat([Buffer.from([0, 0, 0, 0, 5]), Buffer.from('hello')]);
    let status = 0;
    let pod = '';
    let trailers: Record<string, string | string[] | undefined> = {};
    const chunks: Buffer[] = [];
    req.on('response', (h) => {
      status = Number(h[':status']);
      pod = String(h['x-pod']);
    });
    req.on('trailers', (t: Record<string, string | string[] | undefined>) => (trailers = t));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.end(message);
    await new Promise<void>((resolve, reject) => {
      req.on('end', resolve);
      req.on('error', reject);
    });
    assert.equal(status, 200);
    assert.equal(pod, 'reviews-v1');
    assert.deepEqual(Buffer.concat(chunks), message);
    assert.equal(trailers['grpc-status'], '0');
    assert.equal(trailers['grpc-message'], 'from reviews-v1');
    const hit = hits.findLast((h) => h.path === '/echo.Echo/Say')!;
    assert.equal(hit.headers[':authority'], `${GRPC_HOST}:9090`);
  } finally {
    session.close();
  }
  const text = await metricsText();
  assert.match(
    text,
    /istio_requests_total\{[^}]*request_protocol="grpc"[^}]*grpc_response_status="0"[^}]*\} \d+/,
  );
});

test('a gRPC fault abort is answered in gRPC: HTTP 200, grpc-status in a trailers-only reply', async () => {
  wp.applyL7({
    routeConfigurations: [
      routeConfig([vhost([toAll()], { name: ROUTES, domains: ['*'] })], { name: ROUTES }),
      routeConfig(
        [
          vhost(
            [
              route({
                name: 'grpc-abort',
                action: action({ cluster: C.grpc }),
                fault: {
                  kind: 'config',
                  config: { delay: undefined, abort: { grpcStatus: 14, percentage: ALWAYS } },
                },
              }),
            ],
            { name: GRPC_ROUTES, domains: ['*'] },
          ),
        ],
        { name: GRPC_ROUTES },
      ),
    ],
  });
  const stream = await tunnel(`${IP.grpcVip}:9090`);
  const session = h2connect(`http://${GRPC_HOST}:9090`, {
    createConnection: () => stream,
  });
  try {
    const req = session.request({
      ':method': 'POST',
      ':path': '/echo.Echo/Say',
      'content-type': 'application/grpc',
    });
    let head: Record<string, unknown> = {};
    let endStream = false;
    req.on('response', (h, flags) => {
      head = h;
      endStream = (flags & 0x1) !== 0;
    });
    req.resume();
    req.end(Buffer.from([0, 0, 0, 0, 0]));
    await new Promise<void>((resolve, reject) => {
      req.on('end', resolve);
      req.on('error', reject);
    });
    assert.equal(head[':status'], 200);
    assert.equal(head['grpc-status'], '14');
    assert.equal(head['grpc-message'], 'fault filter abort');
    assert.equal(endStream, true);
  } finally {
    session.close();
    applyRoutes(toAll());
  }
});

test('request metrics carry Istio labels (reporter=waypoint, source and destination)', async () => {
  applyRoutes(route({ name: 'metrics', action: action({ cluster: C.v2 }) }));
  await call('/metrics-check');
  const text = await metricsText();
  const line = text
    .split('\n')
    .find(
      (l) =>
        l.startsWith('istio_requests_total{') &&
        l.includes('destination_workload="reviews-v2"') &&
        l.includes('response_code="200"'),
    );
  assert.ok(line, 'a request series for reviews-v2');
  for (const label of [
    'reporter="waypoint"',
    'source_workload="client"',
    'source_workload_namespace="default"',
    'source_principal="spiffe://cluster.local/ns/default/sa/client"',
    'source_app="client"',
    'destination_service="reviews.default.svc.cluster.local"',
    'destination_service_name="reviews"',
    'destination_service_namespace="default"',
    'destination_principal="spiffe://cluster.local/ns/default/sa/reviews"',
    'destination_app="reviews"',
    'destination_version="v2"',
    'request_protocol="http"',
    'response_flags="-"',
    'connection_security_policy="mutual_tls"',
  ])
    assert.ok(line.includes(label), `${label} in ${line}`);
  assert.match(
    text,
    /istio_request_duration_milliseconds_bucket\{[^}]*destination_workload="reviews-v2"[^}]*le="\+Inf"\} \d+/,
  );
  assert.match(text, /istio_response_bytes_sum\{[^}]*destination_workload="reviews-v2"/);
  assert.match(text, /istio_request_bytes_count\{/);
  assert.match(text, /istio_requests_total\{[^}]*response_code="404"[^}]*response_flags="NR"/);
  const log = logs.lines.findLast((l) => l.msg === 'request complete' && l.path === '/metrics-check')!;
  assert.equal(log.srcIdentity, 'spiffe://cluster.local/ns/default/sa/client');
  assert.equal(log.route, 'metrics');
  assert.equal(log.upstreamHost, `${IP.v2}:9080`);
  assert.equal(log.status, 200);
  assert.equal(typeof log.durationMs, 'number');
});

test('malformed HTTP on a tunnel gets 400 and ends that stream only; the connection and other tunnels carry on', async () => {
  applyRoutes(toAll());
  const readReply = (stream: ClientHttp2Stream, bytes: string) =>
    new Promise<string>((resolve, reject) => {
      let got = '';
      stream.on('data', (d: Buffer) => (got += d.toString()));
      stream.on('end', () => resolve(got));
      stream.on('close', () => resolve(got));
      stream.on('error', reject);
      stream.end(bytes);
    });
  const open = await tunnel();
  const garbage = await readReply(await tunnel(), 'THIS IS NOT HTTP\r\n\r\n');
  assert.match(garbage, /^HTTP\/1\.1 400 Bad Request\r\n/);
  const tooLarge = await readReply(
    await tunnel(),
    `GET / HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(200_000)}\r\n\r\n`,
  );
  assert.match(tooLarge, /^HTTP\/1\.1 431 /);
  // A tunnel opened before, on the same pooled HBONE connection, still works; so do new ones.
  const ok = await new Promise<number>((resolve, reject) => {
    const req = httpRequest(
      { createConnection: () => open, path: '/after-garbage', headers: { host: `${HOST}:9080` } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end();
  });
  assert.equal(ok, 200);
  assert.equal((await call('/after-garbage-2')).status, 200);
});

test('tunnels for unknown services or services of another waypoint are refused', async () => {
  await assert.rejects(tunnel(`${P}.120.77:9080`), (e: { status?: number }) => e.status === 503);
  await assert.rejects(tunnel(`${IP.elsewhereVip}:9080`), (e: { status?: number }) => e.status === 400);
  await assert.rejects(tunnel(`${IP.vip}:9999`), (e: { status?: number }) => e.status === 503);
  // The hostname form of the authority is served too.
  const s = await tunnel(`${HOST}:9080`);
  s.close();
});

test('a route configuration that does not decode is NACKed and the last good one stays', async () => {
  const rc = (regex?: string) =>
    encodeEnvoy('envoy.config.route.v3.RouteConfiguration', {
      name: ROUTES,
      virtual_hosts: [
        {
          name: 'reviews',
          domains: ['*'],
          routes: [
            {
              name: 'from-bytes',
              match: regex === undefined ? { prefix: '/' } : { safe_regex: { regex } },
              route: { cluster: C.v2, timeout: { seconds: 0 } },
            },
          ],
        },
      ],
    });
  const good = wp.applyXds(EnvoyTypeUrl.RouteConfiguration, [{ name: ROUTES, bytes: rc() }]);
  assert.deepEqual(good, { accepted: [ROUTES], rejected: [] });
  assert.equal(podOf(await call('/x')), 'reviews-v2');
  const bad = wp.applyXds(EnvoyTypeUrl.RouteConfiguration, [{ name: ROUTES, bytes: rc('(unclosed') }]);
  assert.deepEqual(bad.accepted, []);
  assert.equal(bad.rejected.length, 1);
  assert.match(bad.rejected[0]!, /virtual_hosts\[0\]\.routes\[0\]\.match/);
  assert.equal(podOf(await call('/x')), 'reviews-v2');
  assert.match(
    await metricsText(),
    /ambit_config_rejected_total\{type_url="type.googleapis.com\/envoy.config.route.v3.RouteConfiguration"\} 1/,
  );
});

test('drain on close: requests in flight finish (HTTP/1.1 told to close, h2c GOAWAY), then tunnels are refused', async () => {
  applyRoutes(route({ name: 'drain', action: action({ cluster: C.v1 }) }));
  // A kept-alive HTTP/1.1 connection…
  const h1stream = await tunnel();
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  agent.createConnection = () => h1stream;
  const h1ended = new Promise<void>((r) => h1stream.once('close', () => r()));
  const h1 = new Promise<{ status: number; connection: string | undefined; body: string }>(
    (resolve, reject) => {
      const req = httpRequest({ agent, path: '/slow/300', headers: { host: `${HOST}:9080` } }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body }),
        );
      });
      req.on('error', reject);
      req.end();
    },
  );
  // …and an h2c session, each with a request in flight.
  const h2stream = await tunnel();
  const session = h2connect(`http://${HOST}:9080`, { createConnection: () => h2stream });
  let goaway = false;
  session.on('goaway', () => (goaway = true));
  session.on('error', () => undefined);
  const h2 = new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = session.request({ ':path': '/slow/300' });
    let status = 0;
    let body = '';
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => resolve({ status, body }));
    req.on('error', reject);
    req.end();
  });
  await waitFor(
    () => wp.inFlight() === 2,
    2000,
    () => `in flight: ${wp.inFlight()}`,
  );
  const closed = wp.close();
  const [r1, r2] = await Promise.all([h1, h2]);
  assert.deepEqual(r1, { status: 200, connection: 'close', body: 'reviews-v1 /slow/300' });
  assert.deepEqual(r2, { status: 200, body: 'reviews-v1 /slow/300' });
  assert.equal(goaway, true);
  await h1ended;
  await closed;
  agent.destroy();
  session.destroy();
  await assert.rejects(tunnel());
});
