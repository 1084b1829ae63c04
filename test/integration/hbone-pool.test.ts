/**
 * The HBONE client pool and keepalive against a real HBONE server, without agents.
 */
import assert from 'node:assert/strict';
import { createServer as createH2Server, connect as h2connect } from 'node:http2';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { HbonePool } from '../../src/core/hbone/pool.ts';
import { startKeepalive } from '../../src/core/hbone/keepalive.ts';
import { HboneServer } from '../../src/core/hbone/server.ts';
import { CertificateAuthority } from '../../src/core/identity/ca.ts';
import { LocalCaProvider } from '../../src/core/identity/secret-manager.ts';
import { silentLogger } from '../../src/core/log.ts';
import { connectTcp, hostDialer } from '../../src/ztunnel/proxy/upstream.ts';

const id = (sa: string) => ({ trustDomain: 'cluster.local', namespace: 'default', serviceAccount: sa });
let provider: LocalCaProvider;
let server: HboneServer;
let echo: Server;
let echoPort: number;
const seen: { peer: string; baggage?: string; forwarded?: string; traceparent?: string }[] = [];

before(async () => {
  provider = new LocalCaProvider(await CertificateAuthority.createSelfSigned('cluster.local'), 3600_000);
  echo = createServer({ allowHalfOpen: true }, (s: Socket) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  echoPort = (echo.address() as AddressInfo).port;
  server = await HboneServer.start({
    host: '127.0.0.1',
    port: 0,
    certificate: await provider.fetch(id('server')),
    trustDomain: 'cluster.local',
    log: silentLogger(),
    onRequest: (req) => {
      seen.push({
        peer: req.peerIdentity.serviceAccount,
        baggage: req.baggage,
        forwarded: req.forwarded,
        traceparent: req.traceparent,
      });
      void connectTcp(hostDialer, '127.0.0.1', echoPort, {}, 1000).then(
        (up) => req.accept(up),
        () => req.reject(503),
      );
    },
  });
});
after(async () => {
  await server.close(100);
  echo.close();
});

function newPool(maxStreams = 100, idleTimeoutMs = 60_000): HbonePool {
  return new HbonePool({
    getCertificate: (i) => provider.fetch(i),
    log: silentLogger(),
    connectTimeoutMs: 2000,
    idleTimeoutMs,
    maxStreamsPerConnection: maxStreams,
  });
}

const target = (sa = 'client') => ({
  srcIdentity: id(sa),
  srcIp: undefined,
  dstIp: '127.0.0.1',
  dstPort: server.address().port,
  expectedIdentities: ['spiffe://cluster.local/ns/default/sa/server'],
});
/** A CONNECT that must succeed. */
async function open(pool: HbonePool, t: ReturnType<typeof target>, r: ReturnType<typeof req>) {
  const result = await pool.connect(t, r);
  assert.ok(result.ok, result.ok ? '' : result.reason);
  return result.stream;
}
const req = (headers: Record<string, string> = {}) => ({ authority: `127.0.0.1:${echoPort}`, headers });

test('50 concurrent CONNECTs for a new key dial exactly one connection', async () => {
  const pool = newPool();
  try {
    const streams = await Promise.all(Array.from({ length: 50 }, () => open(pool, target(), req())));
    assert.equal(pool.connectionCount, 1);
    for (const s of streams) s.destroy();
  } finally {
    pool.destroy();
  }
});

test('different source identities never share a connection', async () => {
  const pool = newPool();
  try {
    const a = await open(pool, target('a'), req());
    const b = await open(pool, target('b'), req());
    assert.equal(pool.connectionCount, 2);
    a.destroy();
    b.destroy();
  } finally {
    pool.destroy();
  }
});

test('a connection takes at most the stream limit; the next stream dials a new one', async () => {
  const pool = newPool(3);
  try {
    const streams = [];
    for (let i = 0; i < 6; i++) streams.push(await open(pool, target(), req()));
    assert.equal(pool.connectionCount, 2);
    streams.push(await open(pool, target(), req()));
    assert.equal(pool.connectionCount, 3);
    for (const s of streams) s.destroy();
  } finally {
    pool.destroy();
  }
});

test('an idle connection is released after the idle timeout', async () => {
  const pool = newPool(100, 150);
  try {
    const s = await open(pool, target(), req());
    s.end();
    s.resume();
    await new Promise((r) => s.once('close', r));
    assert.equal(pool.connectionCount, 1);
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(pool.connectionCount, 0);
  } finally {
    pool.destroy();
  }
});

test('the server sees the client identity and the baggage, forwarded and traceparent headers', async () => {
  const pool = newPool();
  try {
    const s = await open(
      pool,
      target('hdrs'),
      req({
        baggage: 'k8s.namespace.name=default',
        forwarded: 'for="1.2.3.4:5"',
        traceparent: '00-0123456789abcdef0123456789abcdef-0123456789abcdef-00',
      }),
    );
    s.destroy();
    const last = seen.at(-1)!;
    assert.equal(last.peer, 'hdrs');
    assert.equal(last.baggage, 'k8s.namespace.name=default');
    assert.equal(last.forwarded, 'for="1.2.3.4:5"');
    assert.equal(last.traceparent, '00-0123456789abcdef0123456789abcdef-0123456789abcdef-00');
  } finally {
    pool.destroy();
  }
});

test('keepalive: an unanswered PING closes the session; an answered one does not', async () => {
  const h2 = createH2Server();
  await new Promise<void>((r) => h2.listen(0, '127.0.0.1', r));
  // A relay between client and server that can drop the link silently, like a dead peer would.
  let stalled = false;
  const relays: Socket[] = [];
  const relay = createServer((down) => {
    const up = connect({ host: '127.0.0.1', port: (h2.address() as AddressInfo).port });
    relays.push(down, up);
    down.on('data', (c: Buffer) => stalled || up.write(c));
    up.on('data', (c: Buffer) => stalled || down.write(c));
    down.on('error', () => up.destroy());
    up.on('error', () => down.destroy());
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  try {
    const session = h2connect(`http://127.0.0.1:${(relay.address() as AddressInfo).port}`);
    session.on('error', () => undefined);
    await new Promise((r) => session.once('connect', r));
    let timedOut = false;
    startKeepalive(session, () => (timedOut = true), 50, 200);
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(timedOut, false, 'answered pings must not time out');
    stalled = true;
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(timedOut, true);
    session.destroy();
  } finally {
    for (const s of relays) s.destroy();
    relay.close();
    h2.close();
  }
});

test('callers waiting on a dial share its failure: a dead peer costs one timeout, not one each', async () => {
  // Accepts TCP, never speaks TLS: every dial runs into the connect timeout.
  const blackhole = createServer(() => undefined);
  await new Promise<void>((r) => blackhole.listen(0, '127.0.0.1', r));
  const pool = new HbonePool({
    getCertificate: (i) => provider.fetch(i),
    log: silentLogger(),
    connectTimeoutMs: 300,
    idleTimeoutMs: 60_000,
    maxStreamsPerConnection: 100,
  });
  try {
    const started = Date.now();
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, () =>
        pool.connect({ ...target(), dstPort: (blackhole.address() as AddressInfo).port }, req()),
      ),
    );
    const took = Date.now() - started;
    assert.ok(results.every((r) => r.status === 'rejected'));
    assert.match(
      String((results[0] as PromiseRejectedResult).reason),
      /timed out.*NetworkPolicy blocking HBONE port 15008/,
    );
    assert.ok(took < 1500, `10 waiters took ${took} ms`);
  } finally {
    pool.destroy();
    blackhole.close();
  }
});
