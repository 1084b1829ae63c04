/**
 * TCP services through the waypoint in-process: a client speaking HBONE → the waypoint (TCP
 * listeners with one tcp_proxy filter, Envoy resources encoded with core/xds/l7-wire.ts and fed as
 * a Delta ADS response would) → pods behind their own HBONE servers → a plain TCP app that names its
 * pod, echoes what it gets and, once the client has finished sending, answers with the byte count
 * and SHA-256 of everything it received.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { ClientHttp2Stream } from 'node:http2';
import { connect as netConnect, createServer as createNetServer, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { systemClock } from '../../src/core/clock.ts';
import type { HbonePool } from '../../src/core/hbone/pool.ts';
import { HboneServer } from '../../src/core/hbone/server.ts';
import { CertificateAuthority } from '../../src/core/identity/ca.ts';
import { LocalCaProvider, SecretManager } from '../../src/core/identity/secret-manager.ts';
import { formatSpiffe, type Identity } from '../../src/core/identity/spiffe.ts';
import { silentLogger } from '../../src/core/log.ts';
import { clusterName, EnvoyTypeUrl, listenerName } from '../../src/core/xds/l7-names.ts';
import { anyOf, encodeEnvoy } from '../../src/core/xds/l7-wire.ts';
import { startWaypoint, type WaypointBound } from '../../src/waypoint/app.ts';
import { captureLogger } from '../fakes/capture-log.ts';
import { testPrefix, waitFor } from '../fakes/mesh.ts';
import { service, waypointByHost, workload } from '../fixtures/mesh-config.ts';
import { seeded } from '../unit/waypoint/l7-builders.ts';
import { clientPool, waypointTestConfig } from '../fakes/waypoint-harness.ts';

// ---------- topology ----------

const P = testPrefix();
// Octets apart from the other waypoint tests', so concurrent test processes never collide.
const IP = {
  client: `${P}.41.2`,
  v1: `${P}.42.2`,
  v2: `${P}.42.3`,
  dead: `${P}.42.9`,
  legacy: `${P}.42.8`,
  waypoint: `${P}.45.1`,
};
const VIP = {
  echo: `${P}.140.3`,
  plain: `${P}.140.4`,
  dead: `${P}.140.5`,
  limited: `${P}.140.6`,
  idle: `${P}.140.7`,
  retry: `${P}.140.8`,
  legacy: `${P}.140.9`,
};
const TD = 'cluster.local';
const PORT = 9000;
const host = (name: keyof typeof VIP) => `tcp-${name}.default.svc.cluster.local`;
const C = {
  v1: clusterName(PORT, 'v1', host('echo')),
  v2: clusterName(PORT, 'v2', host('echo')),
  plain: clusterName(PORT, '', host('plain')),
  dead: clusterName(PORT, '', host('dead')),
  limited: clusterName(PORT, '', host('limited')),
  idle: clusterName(PORT, '', host('idle')),
  retry: clusterName(PORT, '', host('retry')),
  legacy: clusterName(PORT, '', host('legacy')),
};
const CLIENT: Identity = { trustDomain: TD, namespace: 'default', serviceAccount: 'client' };
const ECHO: Identity = { trustDomain: TD, namespace: 'default', serviceAccount: 'tcp-echo' };

const WORKLOADS = [
  workload({ name: 'client', addresses: [IP.client], serviceAccount: 'client', canonicalName: 'client' }),
  ...(['v1', 'v2'] as const).map((v) =>
    workload({
      name: `tcp-echo-${v}`,
      workloadName: `tcp-echo-${v}`,
      addresses: [IP[v]],
      serviceAccount: 'tcp-echo',
      canonicalName: 'tcp-echo',
      canonicalRevision: v,
    }),
  ),
  // In the mesh, but its agent is down: nothing listens on its HBONE port.
  workload({ name: 'tcp-echo-dead', addresses: [IP.dead], serviceAccount: 'tcp-echo' }),
  // Outside the mesh: the waypoint reaches it over plain TCP.
  workload({ name: 'tcp-legacy', addresses: [IP.legacy], tunnelProtocol: 'NONE' }),
  workload({ name: 'waypoint', addresses: [IP.waypoint], serviceAccount: 'waypoint' }),
];
const SERVICES = (Object.keys(VIP) as (keyof typeof VIP)[]).map((name) =>
  service({
    name: `tcp-${name}`,
    vips: [VIP[name]],
    ports: { [PORT]: PORT },
    waypoint: waypointByHost('default', 'waypoint.default.svc.cluster.local'),
  }),
);

// ---------- Envoy resources, as the controller encodes them ----------

const T = {
  Listener: 'envoy.config.listener.v3.Listener',
  Cluster: 'envoy.config.cluster.v3.Cluster',
  Cla: 'envoy.config.endpoint.v3.ClusterLoadAssignment',
  TcpProxy: 'envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
};
const ADS = { ads: {}, resource_api_version: 'V3' };

function tcpListener(name: keyof typeof VIP, proxy: object): { name: string; bytes: Uint8Array } {
  const n = listenerName(host(name), PORT);
  return {
    name: n,
    bytes: encodeEnvoy(T.Listener, {
      name: n,
      address: { socket_address: { address: VIP[name], port_value: PORT } },
      filter_chains: [
        {
          filters: [
            {
              name: 'envoy.filters.network.tcp_proxy',
              typed_config: anyOf(T.TcpProxy, { stat_prefix: n, ...proxy }),
            },
          ],
        },
      ],
    }),
  };
}

function cluster(name: string, extra: object = {}): { name: string; bytes: Uint8Array } {
  return {
    name,
    bytes: encodeEnvoy(T.Cluster, {
      name,
      type: 'EDS',
      eds_cluster_config: { eds_config: ADS, service_name: name },
      connect_timeout: { seconds: 2 },
      lb_policy: 'ROUND_ROBIN',
      ...extra,
    }),
  };
}

function endpoints(name: string, ips: readonly string[]): { name: string; bytes: Uint8Array } {
  return {
    name,
    bytes: encodeEnvoy(T.Cla, {
      cluster_name: name,
      endpoints: [
        {
          lb_endpoints: ips.map((ip) => ({
            endpoint: { address: { socket_address: { address: ip, port_value: PORT } } },
          })),
        },
      ],
    }),
  };
}

const LISTENERS = [
  // Sample 17 on the mesh: the VirtualService's 80/20 split by subset.
  tcpListener('echo', {
    weighted_clusters: {
      clusters: [
        { name: C.v1, weight: 80 },
        { name: C.v2, weight: 20 },
      ],
    },
  }),
  // No VirtualService: the service port's own cluster.
  tcpListener('plain', { cluster: C.plain }),
  tcpListener('dead', { cluster: C.dead }),
  tcpListener('limited', { cluster: C.limited }),
  tcpListener('idle', { cluster: C.idle, idle_timeout: { nanos: 300_000_000 } }),
  tcpListener('retry', { cluster: C.retry, max_connect_attempts: { value: 2 } }),
  tcpListener('legacy', { cluster: C.legacy }),
];
const CLUSTERS = [
  cluster(C.v1),
  cluster(C.v2),
  cluster(C.plain),
  cluster(C.dead, {
    outlier_detection: {
      consecutive_5xx: { value: 2 },
      enforcing_consecutive_5xx: { value: 100 },
      max_ejection_percent: { value: 100 },
    },
  }),
  cluster(C.limited, { circuit_breakers: { thresholds: [{ max_connections: { value: 1 } }] } }),
  cluster(C.idle),
  cluster(C.retry),
  cluster(C.legacy),
];
const ASSIGNMENTS = [
  endpoints(C.v1, [IP.v1]),
  endpoints(C.v2, [IP.v2]),
  endpoints(C.plain, [IP.v1, IP.v2]),
  endpoints(C.dead, [IP.dead]),
  endpoints(C.limited, [IP.v1]),
  endpoints(C.idle, [IP.v1]),
  endpoints(C.retry, [IP.dead, IP.v1]),
  endpoints(C.legacy, [IP.legacy]),
];

// ---------- pods ----------

const closers: (() => Promise<void>)[] = [];
/** What the app read after it had closed its own side first (`close-first`). */
const readAfterOwnClose: string[] = [];
/** Peers the pods' agents saw. */
const peers = new Set<string>();

/**
 * The app: says its pod name, echoes, and when the client has finished sending answers
 * `done <bytes> <sha256>` and closes. `close-first` makes it close its side at once and keep reading.
 */
function startApp(name: string, ip: string): Promise<void> {
  const server = createNetServer({ allowHalfOpen: true }, (s: Socket) => {
    s.on('error', () => undefined);
    s.write(`${name}\n`);
    const hash = createHash('sha256');
    let bytes = 0;
    let closedFirst = false;
    let after = '';
    s.on('data', (chunk: Buffer) => {
      if (closedFirst) {
        after += chunk.toString();
        return;
      }
      hash.update(chunk);
      bytes += chunk.length;
      if (chunk.toString().startsWith('close-first')) {
        closedFirst = true;
        s.end('closing\n');
        return;
      }
      s.write(chunk);
    });
    s.on('end', () => {
      if (closedFirst) readAfterOwnClose.push(after);
      else s.end(`done ${bytes} ${hash.digest('hex')}\n`);
    });
  });
  closers.push(() => new Promise((r) => server.close(() => r())));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: ip, port: PORT }, () => resolve());
  });
}

async function startAgent(ip: string, ca: CertificateAuthority): Promise<void> {
  const secrets = new SecretManager({
    provider: new LocalCaProvider(ca, 3600_000),
    clock: systemClock,
    log: silentLogger(),
  });
  const server = await HboneServer.start({
    host: ip,
    port: 15008,
    certificate: await secrets.get(ECHO),
    trustDomain: TD,
    log: silentLogger(),
    onRequest: (req) => {
      peers.add(formatSpiffe(req.peerIdentity));
      if (req.authority.kind !== 'ip' || req.authority.ip !== ip) return req.reject(400);
      const socket = netConnect({ host: ip, port: req.authority.port, allowHalfOpen: true });
      socket.once('connect', () => void req.accept(socket));
      socket.once('error', () => req.reject(503));
    },
  });
  closers.push(() => server.close(0));
}

// ---------- the waypoint and the client ----------

let wp: WaypointBound;
let pool: HbonePool;
const logs = captureLogger('info');
const DRAIN_DEADLINE_MS = 1000;

before(async () => {
  const ca = await CertificateAuthority.createSelfSigned(TD);
  await startApp('tcp-echo-v1', IP.v1);
  await startApp('tcp-echo-v2', IP.v2);
  await startApp('tcp-legacy', IP.legacy);
  await startAgent(IP.v1, ca);
  await startAgent(IP.v2, ca);
  const config = waypointTestConfig(IP.waypoint, { drainDeadlineMs: DRAIN_DEADLINE_MS });
  wp = await startWaypoint(config, {
    certificates: new LocalCaProvider(ca, 3600_000),
    log: logs.log,
    random: seeded(17),
  });
  wp.applyMesh(WORKLOADS, SERVICES);
  for (const [url, list] of [
    [EnvoyTypeUrl.Cluster, CLUSTERS],
    [EnvoyTypeUrl.ClusterLoadAssignment, ASSIGNMENTS],
    [EnvoyTypeUrl.Listener, LISTENERS],
  ] as const) {
    assert.deepEqual(wp.applyXds(url, list).rejected, []);
  }
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

/** A CONNECT through the waypoint to `vip:9000`; a refusal rejects with its HBONE status. */
async function connect(vip: string): Promise<ClientHttp2Stream> {
  const r = await pool.connect(
    {
      srcIdentity: CLIENT,
      srcIp: IP.client,
      dstIp: IP.waypoint,
      dstPort: wp.hbone()!.port,
      expectedIdentities: [wp.identity],
    },
    { authority: `${vip}:${PORT}`, headers: {} },
  );
  if (!r.ok) throw Object.assign(new Error(r.reason), { status: r.status });
  return r.stream;
}

/** Everything the server sends until it ends its side. */
function readAll(s: ClientHttp2Stream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('error', reject);
  });
}

/** The first line the server sends (its pod name). */
function firstLine(s: ClientHttp2Stream): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (c: Buffer) => {
      text += c.toString();
      const nl = text.indexOf('\n');
      if (nl < 0) return;
      s.off('data', onData);
      s.pause();
      resolve(text.slice(0, nl));
    };
    s.on('data', onData);
    s.once('error', reject);
    s.once('close', () => reject(new Error(`closed after ${JSON.stringify(text)}`)));
  });
}

const statusOf = (e: unknown) => (e as { status?: number }).status;

async function metricsText(): Promise<string> {
  return (await fetch(`http://127.0.0.1:${wp.metrics.port}/metrics`)).text();
}

/** Lines of `name` whose labels include every one of `labels`. */
function series(text: string, name: string, labels: Record<string, string>): number[] {
  return text
    .split('\n')
    .filter(
      (l) => l.startsWith(`${name}{`) && Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)),
    )
    .map((l) => Number(l.slice(l.lastIndexOf(' ') + 1)));
}

// ---------- tests ----------

test('an 80/20 weighted TCP route splits 1200 connections within 4 sigma of 80 %', async () => {
  const N = 1200;
  const counts = new Map<string, number>();
  let next = 0;
  const worker = async () => {
    while (next < N) {
      next++;
      const s = await connect(VIP.echo);
      const done = readAll(s);
      s.end();
      const pod = (await done).toString().split('\n')[0]!;
      counts.set(pod, (counts.get(pod) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: 40 }, worker));
  const v1 = counts.get('tcp-echo-v1') ?? 0;
  const v2 = counts.get('tcp-echo-v2') ?? 0;
  assert.equal(v1 + v2, N, JSON.stringify([...counts]));
  const sigma = Math.sqrt(N * 0.8 * 0.2);
  assert.ok(Math.abs(v1 - N * 0.8) <= 4 * sigma, `v1 got ${v1} of ${N} (expected ${N * 0.8} ± ${4 * sigma})`);
  // The pods' agents saw the waypoint, not the client.
  assert.deepEqual([...peers], [wp.identity]);
});

test('a TCP service with no VirtualService goes to its own cluster; 8 MiB each way arrive intact', async () => {
  const data = randomBytes(8 * 1024 * 1024);
  const s = await connect(VIP.plain);
  const received = readAll(s);
  for (let off = 0; off < data.length; off += 64 * 1024) {
    if (!s.write(data.subarray(off, off + 64 * 1024))) await new Promise((r) => s.once('drain', r));
  }
  s.end();
  const out = await received;
  const nl = out.indexOf('\n');
  const pod = out.subarray(0, nl).toString();
  assert.match(pod, /^tcp-echo-v[12]$/);
  const echoed = out.subarray(nl + 1, nl + 1 + data.length);
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  assert.equal(sha(echoed), sha(data), 'the echo came back intact');
  assert.equal(
    out.subarray(nl + 1 + data.length).toString(),
    `done ${data.length} ${sha(data)}\n`,
    'the server received every byte',
  );
});

test('half-close: the server answers after the client ended, and reads after it ended first', async () => {
  const s = await connect(VIP.plain);
  const all = readAll(s);
  s.end('ping');
  const text = (await all).toString();
  const sha = createHash('sha256').update('ping').digest('hex');
  assert.match(text, new RegExp(`^tcp-echo-v[12]\\npingdone 4 ${sha}\\n$`));

  const t = await connect(VIP.plain);
  const closing = readAll(t);
  t.write('close-first');
  assert.match((await closing).toString(), /closing\n$/);
  // Its side is closed; ours is still open and still carries bytes to it.
  t.end('still talking');
  await waitFor(() => readAfterOwnClose.includes('still talking'), 3000);
});

test('an endpoint outside the mesh is reached over plain TCP, half-close kept both ways', async () => {
  const s = await connect(VIP.legacy);
  const all = readAll(s);
  s.end('ping');
  const sha = createHash('sha256').update('ping').digest('hex');
  assert.equal((await all).toString(), `tcp-legacy\npingdone 4 ${sha}\n`);

  const t = await connect(VIP.legacy);
  const closing = readAll(t);
  t.write('close-first');
  assert.match((await closing).toString(), /closing\n$/);
  t.end('legacy still talking');
  await waitFor(() => readAfterOwnClose.includes('legacy still talking'), 3000);
});

test('a connect failure to a dead endpoint refuses the CONNECT with 503 and feeds outlier detection', async () => {
  for (let i = 0; i < 2; i++) {
    await assert.rejects(connect(VIP.dead), (e) => statusOf(e) === 503);
  }
  const [h] = wp.l7().picker(C.dead)!.hosts();
  assert.equal(h?.ejected, true, 'two consecutive connect failures eject the host');
  // With max_connect_attempts 2, a failed host is skipped for another one.
  for (let i = 0; i < 4; i++) {
    const s = await connect(VIP.retry);
    const all = readAll(s);
    s.end();
    assert.match((await all).toString(), /^tcp-echo-v1\n/);
  }
});

test('max_connections 1: a second connection is refused with 503 while the first is open', async () => {
  const first = await connect(VIP.limited);
  assert.equal(await firstLine(first), 'tcp-echo-v1');
  await assert.rejects(connect(VIP.limited), (e) => statusOf(e) === 503);
  const rest = readAll(first);
  first.resume();
  first.end();
  await rest;
  await waitFor(() => wp.l7().picker(C.limited)!.usage().connections === 0, 3000);
  const again = await connect(VIP.limited);
  const all = readAll(again);
  again.end();
  assert.match((await all).toString(), /^tcp-echo-v1\n/);
});

test('the idle timeout closes a connection nothing moves on', async () => {
  const s = await connect(VIP.idle);
  const started = Date.now();
  assert.equal(await firstLine(s), 'tcp-echo-v1');
  await new Promise((r) => s.once('close', r));
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 250 && elapsed < 3000, `closed after ${elapsed} ms`);
});

test("Istio's TCP metrics with the waypoint's labels, and one access-log line per connection", async () => {
  const text = await metricsText();
  const common = {
    reporter: 'waypoint',
    source_workload: 'client',
    source_principal: formatSpiffe(CLIENT),
    destination_service_namespace: 'default',
    destination_principal: formatSpiffe(ECHO),
    request_protocol: 'tcp',
    response_flags: '-',
    connection_security_policy: 'mutual_tls',
  };
  const ok = {
    ...common,
    destination_service: host('echo'),
    destination_service_name: 'tcp-echo',
    destination_workload: 'tcp-echo-v1',
    destination_version: 'v1',
  };
  const opened = series(text, 'istio_tcp_connections_opened_total', ok);
  const closed = series(text, 'istio_tcp_connections_closed_total', ok);
  assert.equal(opened.length, 1, text);
  assert.ok(opened[0]! > 800, `opened ${opened[0]}`);
  assert.deepEqual(closed, opened);
  const plain = { ...common, destination_service: host('plain'), destination_service_name: 'tcp-plain' };
  const received = series(text, 'istio_tcp_received_bytes_total', plain).reduce((a, b) => a + b, 0);
  const sent = series(text, 'istio_tcp_sent_bytes_total', plain).reduce((a, b) => a + b, 0);
  assert.ok(received >= 8 * 1024 * 1024, `received ${received}`);
  assert.ok(sent >= 8 * 1024 * 1024, `sent ${sent}`);
  const failed = series(text, 'istio_tcp_connections_closed_total', {
    reporter: 'waypoint',
    destination_service: host('dead'),
    response_flags: 'UF',
  });
  assert.deepEqual(failed, [2]);
  assert.deepEqual(
    series(text, 'istio_tcp_connections_closed_total', {
      destination_service: host('limited'),
      response_flags: 'UO',
    }),
    [1],
  );

  const lines = logs.lines.filter((l) => l.msg === 'connection complete' && l.scope === 'access');
  const big = lines.find((l) => Number(l.bytesReceived) === 8 * 1024 * 1024);
  assert.ok(big, 'the 8 MiB connection has its line');
  assert.equal(big.dst, `${VIP.plain}:${PORT}`);
  assert.equal(big.dstService, host('plain'));
  assert.equal(big.cluster, C.plain);
  assert.equal(big.srcIdentity, formatSpiffe(CLIENT));
  assert.equal(big.responseFlags, '-');
  assert.ok(Number(big.bytesSent) > 8 * 1024 * 1024);
  const refused = lines.filter((l) => l.dstService === host('dead'));
  assert.equal(refused.length, 2);
  assert.equal(refused[0]!.status, 503);
  assert.equal(refused[0]!.responseFlags, 'UF');
  assert.equal(refused[0]!.level, 40);
});

test('draining: an open TCP connection keeps working until the drain deadline, then ends', async () => {
  const s = await connect(VIP.plain);
  assert.match(await firstLine(s), /^tcp-echo-v[12]$/);
  const closed = new Promise((r) => s.once('close', r));
  const started = Date.now();
  const closing = wp.close();
  const echo = new Promise<string>((resolve) => s.once('data', (c: Buffer) => resolve(c.toString())));
  s.resume();
  s.write('during drain');
  assert.equal(await echo, 'during drain');
  await closed;
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= DRAIN_DEADLINE_MS - 100, `ended after ${elapsed} ms`);
  await closing;
  assert.equal(wp.openTunnels(), 0);
});
