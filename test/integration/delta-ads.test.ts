/**
 * ADS conversations: a hand-driven raw gRPC client against our server (initial, update, removal,
 * ACK/NACK by nonce, reconnect with versions, bad requests), and our client against it; then the
 * same server in state of the world (full-state and per-name types, wildcard and named, NACKs, the
 * shared entries, per-listener access).
 */
import assert from 'node:assert/strict';
import { connect } from 'node:http2';
import { credentials, Metadata, Server, ServerCredentials, type ClientDuplexStream } from '@grpc/grpc-js';
import { after, before, test } from 'node:test';
import { AdsClient } from '../../src/core/xds/ads-client.ts';
import {
  AdsServer,
  DeltaAdsServer,
  type AdsAccess,
  type ServedResource,
  type SotwRequest,
  type SotwResponse,
} from '../../src/core/xds/ads-server.ts';
import { EnvoyTypeUrl } from '../../src/core/xds/l7-names.ts';
import { adsDefinitions, type DeltaRequest, type DeltaResponse } from '../../src/core/xds/envoy-protos.ts';
import { TypeUrl } from '../../src/core/proto/load.ts';
import { decodeAddress, encodeWorkload } from '../../src/core/xds/workload-proto.ts';
import { silentLogger } from '../../src/core/log.ts';
import { workload } from '../fixtures/mesh-config.ts';
import { waitFor } from '../fakes/mesh.ts';

const W = TypeUrl.Address;
const nacks: string[] = [];
let grpcServer: Server;
let ads: DeltaAdsServer;
let target: string;

const res = (version: string, bytes: Uint8Array | string): ServedResource => ({
  version,
  bytes: typeof bytes === 'string' ? Buffer.from(bytes) : bytes,
});
const wl = (name: string, ip: string) => workload({ name, addresses: [ip] });

before(async () => {
  ads = new DeltaAdsServer({
    log: silentLogger(),
    types: [W, TypeUrl.Authorization],
    onNack: (id, _t, m) => nacks.push(`${id}: ${m}`),
  });
  grpcServer = new Server();
  grpcServer.addService(ads.definition(), ads.handlers());
  const port = await new Promise<number>((resolve, reject) =>
    grpcServer.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  target = `127.0.0.1:${port}`;
});
after(() => {
  ads.close();
  grpcServer.forceShutdown();
});

/** A raw stream: we write requests by hand and read responses one by one. */
function rawStream(to = target) {
  const client = new (adsDefinitions().client)(to, credentials.createInsecure());
  const call = (
    client as unknown as {
      DeltaAggregatedResources(md: Metadata): ClientDuplexStream<DeltaRequest, DeltaResponse>;
    }
  ).DeltaAggregatedResources(new Metadata());
  const queue: DeltaResponse[] = [];
  const waiters: ((r: DeltaResponse) => void)[] = [];
  call.on('data', (r: DeltaResponse) => (waiters.length ? waiters.shift()!(r) : queue.push(r)));
  const errors: Error[] = [];
  call.on('error', (e: Error) => errors.push(e));
  return {
    call,
    errors,
    next: (ms = 2000) =>
      new Promise<DeltaResponse>((resolve, reject) => {
        if (queue.length) return resolve(queue.shift()!);
        const waiter = (r: DeltaResponse) => {
          clearTimeout(t);
          resolve(r);
        };
        // A waiter that timed out leaves the list, so a later response is not lost to it.
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error('no response'));
        }, ms);
        waiters.push(waiter);
      }),
    pending: () => queue.length,
    close: () => {
      call.cancel();
      client.close();
    },
  };
}

const names = (r: DeltaResponse) => (r.resources ?? []).map((x) => `${x.name}@${x.version}`).sort();

test('initial wildcard request gets everything; an update only what changed; a removal by name', async () => {
  ads.set(
    W,
    new Map([
      ['a', res('1', 'A1')],
      ['b', res('1', 'B1')],
    ]),
  );
  const s = rawStream();
  try {
    s.call.write({ node: { id: 'agent-1' }, type_url: W, resource_names_subscribe: [] });
    const first = await s.next();
    assert.deepEqual(names(first), ['a@1', 'b@1']);
    assert.equal(first.resources![0]!.resource!.type_url, W);
    s.call.write({ type_url: W, response_nonce: first.nonce });

    ads.set(
      W,
      new Map([
        ['a', res('2', 'A2')],
        ['b', res('1', 'B1')],
      ]),
    );
    const second = await s.next();
    assert.deepEqual(names(second), ['a@2']);
    assert.deepEqual(second.removed_resources ?? [], []);
    s.call.write({ type_url: W, response_nonce: second.nonce });

    ads.set(W, new Map([['a', res('2', 'A2')]]));
    const third = await s.next();
    assert.deepEqual(names(third), []);
    assert.deepEqual(third.removed_resources, ['b']);
    s.call.write({ type_url: W, response_nonce: third.nonce });

    // No change: nothing is sent.
    ads.set(W, new Map([['a', res('2', 'A2')]]));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(s.pending(), 0);
    await waitFor(() => ads.subscriberInfo().some((i) => i.id === 'agent-1' && i.pending[W] === 0), 1000);
  } finally {
    s.close();
  }
});

test('a NACK is reported with the subscriber id and its message', async () => {
  ads.set(W, new Map([['x', res('1', 'X')]]));
  const s = rawStream();
  try {
    s.call.write({ node: { id: 'agent-nack' }, type_url: W });
    const r = await s.next();
    s.call.write({
      type_url: W,
      response_nonce: r.nonce,
      error_detail: { code: 3, message: 'x: bad address' },
    });
    await waitFor(() => nacks.includes('agent-nack: x: bad address'), 1000);
  } finally {
    s.close();
  }
});

test('reconnecting with initial_resource_versions resends only what changed or is gone', async () => {
  ads.set(
    W,
    new Map([
      ['a', res('5', 'A5')],
      ['b', res('1', 'B1')],
      ['c', res('1', 'C1')],
    ]),
  );
  const s = rawStream();
  try {
    s.call.write({
      node: { id: 'agent-2' },
      type_url: W,
      initial_resource_versions: { a: '4', b: '1', gone: '1' },
    });
    const r = await s.next();
    assert.deepEqual(names(r), ['a@5', 'c@1']);
    assert.deepEqual(r.removed_resources, ['gone']);
  } finally {
    s.close();
  }
});

test('explicit subscriptions get only the names asked for', async () => {
  ads.set(
    W,
    new Map([
      ['a', res('1', 'A')],
      ['b', res('1', 'B')],
    ]),
  );
  const s = rawStream();
  try {
    s.call.write({ node: { id: 'agent-3' }, type_url: W, resource_names_subscribe: ['b'] });
    assert.deepEqual(names(await s.next()), ['b@1']);
  } finally {
    s.close();
  }
});

test('a request for an unknown type closes that stream with INVALID_ARGUMENT, not the server', async () => {
  const s = rawStream();
  s.call.write({ node: { id: 'bad' }, type_url: 'type.googleapis.com/nope' });
  await waitFor(() => s.errors.length > 0, 2000);
  assert.equal((s.errors[0] as Error & { code: number }).code, 3);
  s.close();
  // The server still serves others.
  const ok = rawStream();
  try {
    ok.call.write({ node: { id: 'after-bad' }, type_url: W });
    assert.ok((await ok.next()).nonce);
  } finally {
    ok.close();
  }
});

test('our client: applies resources, NACKs a bad one keeping the last good, and reconnects', async () => {
  const good = wl('good', '10.0.0.1');
  ads.set(W, new Map([[good.uid, res('1', encodeWorkload(good))]]));
  const seen: ReadonlyMap<string, unknown>[] = [];
  const client = new AdsClient({
    target,
    credentials: credentials.createInsecure(),
    node: { id: 'our-agent' },
    types: [{ typeUrl: W, decode: decodeAddress }],
    onResources: (_t, m) => seen.push(m),
    log: silentLogger(),
  });
  client.start();
  try {
    await waitFor(() => client.isSynced(), 3000);
    assert.deepEqual([...seen.at(-1)!.keys()], [good.uid]);
    // A broken update of the same resource: NACKed, the last good value stays.
    ads.set(W, new Map([[good.uid, res('2', Buffer.from([0xff, 0xff, 0xff]))]]));
    await waitFor(() => nacks.some((n) => n.startsWith(`our-agent: ${good.uid}: `)), 3000);
    assert.deepEqual((seen.at(-1)!.get(good.uid) as { kind: string }).kind, 'workload');
    // The server restarts its streams: the client reconnects and is served the current set.
    const other = wl('other', '10.0.0.2');
    ads.close();
    ads.set(
      W,
      new Map([
        [good.uid, res('3', encodeWorkload(good))],
        [other.uid, res('1', encodeWorkload(other))],
      ]),
    );
    await waitFor(() => seen.at(-1)!.has(other.uid), 5000);
  } finally {
    client.close();
  }
});

test('after a full push, updates carry only the changes, for wildcard and named subscribers alike', async () => {
  ads.set(
    W,
    new Map([
      ['a', res('1', 'A')],
      ['b', res('1', 'B')],
      ['c', res('1', 'C')],
    ]),
  );
  const wild = rawStream();
  const named = rawStream();
  try {
    wild.call.write({ node: { id: 'wild' }, type_url: W, initial_resource_versions: { a: '1' } });
    named.call.write({ node: { id: 'named' }, type_url: W, resource_names_subscribe: ['c'] });
    assert.deepEqual(names(await wild.next()), ['b@1', 'c@1']);
    assert.deepEqual(names(await named.next()), ['c@1']);
    ads.set(
      W,
      new Map([
        ['a', res('2', 'A2')],
        ['c', res('2', 'C2')],
        ['d', res('1', 'D')],
      ]),
    );
    const w = await wild.next();
    assert.deepEqual(names(w), ['a@2', 'c@2', 'd@1']);
    assert.deepEqual(w.removed_resources, ['b']);
    const n = await named.next();
    assert.deepEqual(names(n), ['c@2']);
    assert.deepEqual(n.removed_resources ?? [], []);
  } finally {
    wild.close();
    named.close();
  }
});

test('a wildcard subscriber that also names a resource stays wildcard; dropping * keeps only its names', async () => {
  ads.set(
    W,
    new Map([
      ['a', res('1', 'A')],
      ['b', res('1', 'B')],
    ]),
  );
  const s = rawStream();
  try {
    s.call.write({ node: { id: 'both' }, type_url: W });
    const first = await s.next();
    assert.deepEqual(names(first), ['a@1', 'b@1']);
    s.call.write({ type_url: W, response_nonce: first.nonce, resource_names_subscribe: ['a'] });
    // Still wildcard: a change to b arrives.
    ads.set(
      W,
      new Map([
        ['a', res('1', 'A')],
        ['b', res('2', 'B2')],
      ]),
    );
    let r = await s.next();
    while ((r.resources ?? []).length === 0 && (r.removed_resources ?? []).length === 0) r = await s.next();
    assert.deepEqual(names(r), ['b@2']);
    // Dropping the wildcard: only a is followed from now on.
    s.call.write({ type_url: W, response_nonce: r.nonce, resource_names_unsubscribe: ['*'] });
    // A subscription change with nothing to send gets no response: wait until the server has read it.
    await waitFor(() => ads.subscriberInfo().some((i) => i.id === 'both' && i.pending[W] === 0), 2000);
    ads.set(
      W,
      new Map([
        ['a', res('2', 'A2')],
        ['b', res('3', 'B3')],
      ]),
    );
    r = await s.next();
    while ((r.resources ?? []).length === 0 && (r.removed_resources ?? []).length === 0) r = await s.next();
    assert.deepEqual(names(r), ['a@2']);
  } finally {
    s.close();
  }
});

/** A server of its own, with the send budget and stall time under test. */
async function pacedServer(opts: { sendBudgetBytes: number; writeStallMs: number }) {
  const server = new DeltaAdsServer({ log: silentLogger(), types: [W], ...opts });
  const grpc = new Server();
  grpc.addService(server.definition(), server.handlers());
  const port = await new Promise<number>((resolve, reject) =>
    grpc.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return {
    ads: server,
    target: `127.0.0.1:${port}`,
    close: () => {
      server.close();
      grpc.forceShutdown();
    },
  };
}

/** `count` resources of about 1 KiB each, named r0…, all at `version`. */
const bulk = (count: number, version: string) =>
  new Map<string, ServedResource>(
    Array.from({ length: count }, (_, i) => [`r${i}`, res(version, 'x'.repeat(1024))] as const),
  );

/**
 * A subscriber over bare HTTP/2 that reads nothing until `resume()`: its flow-control window runs
 * out and the server's write of a large response cannot complete (a stuck or very slow agent).
 */
function stalledStream(to: string, id: string) {
  const ads = adsDefinitions().service.DeltaAggregatedResources!;
  const session = connect(`http://${to}`);
  const stream = session.request({
    ':method': 'POST',
    ':path': ads.path,
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  const frame = (req: DeltaRequest) => {
    const msg = ads.requestSerialize(req);
    const out = Buffer.alloc(5 + msg.length);
    out.writeUInt32BE(msg.length, 1);
    msg.copy(out, 5);
    return out;
  };
  stream.write(frame({ node: { id }, type_url: W }));
  stream.pause();
  const held = new Map<string, string>();
  let responses = 0;
  let buffered = Buffer.alloc(0);
  return {
    held,
    responses: () => responses,
    /** Reads from now on, applying and ACKing every response. */
    resume() {
      stream.on('data', (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        while (buffered.length >= 5 && buffered.length >= 5 + buffered.readUInt32BE(1)) {
          const length = buffered.readUInt32BE(1);
          const r = ads.responseDeserialize(buffered.subarray(5, 5 + length)) as DeltaResponse;
          buffered = buffered.subarray(5 + length);
          for (const x of r.resources ?? []) held.set(x.name, x.version);
          for (const name of r.removed_resources ?? []) held.delete(name);
          responses++;
          stream.write(frame({ type_url: W, response_nonce: r.nonce }));
        }
      });
      stream.resume();
    },
    close: () => {
      stream.close();
      session.destroy();
    },
  };
}

const versions = (m: ReadonlyMap<string, ServedResource>) =>
  new Map([...m].map(([name, r]) => [name, r.version]));

test('large responses wait for the send budget, small ones do not, and a closed stream gives its share back', async () => {
  // A budget of one byte: one large response at a time; no stall release within the test.
  const paced = await pacedServer({ sendBudgetBytes: 1, writeStallMs: 60_000 });
  paced.ads.set(W, bulk(400, '1'));
  const stalled = stalledStream(paced.target, 'stalled');
  const next = rawStream(paced.target);
  const small = rawStream(paced.target);
  try {
    await waitFor(
      () => paced.ads.subscriberInfo().some((i) => i.id === 'stalled' && i.pending[W] === 1),
      2000,
    );
    next.call.write({ node: { id: 'next' }, type_url: W });
    // A named subscription of one resource is a small response: it goes out at once.
    small.call.write({ node: { id: 'small' }, type_url: W, resource_names_subscribe: ['r7'] });
    assert.deepEqual(names(await small.next()), ['r7@1']);
    // The full snapshot waits while the stalled stream's write holds the budget…
    await assert.rejects(next.next(300), /no response/);
    // …and goes out once that stream is gone.
    stalled.close();
    const full = await next.next(3000);
    assert.equal(full.resources?.length, 400);
  } finally {
    stalled.close();
    next.close();
    small.close();
    paced.close();
  }
});

test('a subscriber that stops reading does not hold up the others, and converges once it reads', async () => {
  const paced = await pacedServer({ sendBudgetBytes: 1, writeStallMs: 200 });
  paced.ads.set(W, bulk(400, '1'));
  const stalled = stalledStream(paced.target, 'slow');
  const fast = [rawStream(paced.target), rawStream(paced.target), rawStream(paced.target)];
  try {
    await waitFor(() => paced.ads.subscriberInfo().some((i) => i.id === 'slow' && i.pending[W] === 1), 2000);
    fast.forEach((s, i) => s.call.write({ node: { id: `fast-${i}` }, type_url: W }));
    // The stalled write stops counting after 200 ms; the others are served one after another.
    for (const s of fast) {
      const r = await s.next(3000);
      assert.equal(r.resources?.length, 400);
      s.call.write({ type_url: W, response_nonce: r.nonce });
    }
    // Changes keep flowing to them while the slow one still has not read its first response.
    const changed = bulk(399, '1');
    changed.set('r0', res('2', 'changed'));
    changed.set('new', res('1', 'new'));
    paced.ads.set(W, changed);
    for (const s of fast) {
      const r = await s.next(2000);
      assert.deepEqual(names(r), ['new@1', 'r0@2']);
      assert.deepEqual(r.removed_resources, ['r399']);
    }
    // The slow one reads at last: its first response, then everything that changed meanwhile.
    stalled.resume();
    await waitFor(
      () => stalled.held.size === changed.size && stalled.held.get('r0') === '2',
      3000,
      () => `slow holds ${stalled.held.size} after ${stalled.responses()} responses`,
    );
    assert.deepEqual(stalled.held, versions(changed));
    assert.equal(stalled.responses(), 2);
  } finally {
    stalled.close();
    for (const s of fast) s.close();
    paced.close();
  }
});

// ---------- state of the world ----------

const LDS = EnvoyTypeUrl.Listener;
const RDS = EnvoyTypeUrl.RouteConfiguration;
const sotwNacks: string[] = [];
const sotwAcks: string[] = [];

/** A server of its own for state-of-the-world tests, with LDS (full state) and RDS (per name). */
async function sotwServer(access?: AdsAccess) {
  const server = new AdsServer({
    log: silentLogger(),
    types: [LDS, RDS, W],
    onNack: (id, t, m) => sotwNacks.push(`${id} ${t}: ${m}`),
    onAck: (id, t, n) => sotwAcks.push(`${id} ${t} ${n}`),
  });
  const grpc = new Server();
  grpc.addService(server.definition(), server.handlers(access));
  const port = await new Promise<number>((resolve, reject) =>
    grpc.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return {
    ads: server,
    target: `127.0.0.1:${port}`,
    close: () => {
      server.close();
      grpc.forceShutdown();
    },
  };
}

/** A raw state-of-the-world stream. */
function sotwStream(to: string, md = new Metadata()) {
  const client = new (adsDefinitions().client)(to, credentials.createInsecure());
  const call = (
    client as unknown as {
      StreamAggregatedResources(md: Metadata): ClientDuplexStream<SotwRequest, SotwResponse>;
    }
  ).StreamAggregatedResources(md);
  const queue: SotwResponse[] = [];
  const waiters: ((r: SotwResponse) => void)[] = [];
  call.on('data', (r: SotwResponse) => (waiters.length ? waiters.shift()!(r) : queue.push(r)));
  const errors: (Error & { code?: number })[] = [];
  call.on('error', (e: Error) => errors.push(e));
  return {
    call,
    errors,
    next: (ms = 2000) =>
      new Promise<SotwResponse>((resolve, reject) => {
        if (queue.length) return resolve(queue.shift()!);
        const waiter = (r: SotwResponse) => {
          clearTimeout(t);
          resolve(r);
        };
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error('no response'));
        }, ms);
        waiters.push(waiter);
      }),
    /** Resolves true when no response comes within `ms`. */
    quiet: async (ms = 150) => {
      await new Promise((r) => setTimeout(r, ms));
      return queue.length === 0;
    },
    close: () => {
      call.cancel();
      client.close();
    },
  };
}

/** The resources of a response as `name=content`: the Any's bytes are what was set. */
const held = (r: SotwResponse, typeUrl: string) =>
  (r.resources ?? [])
    .map((a) => {
      assert.equal(a.type_url, typeUrl);
      return a.value.toString();
    })
    .sort();

/** Resources whose bytes name them, so a response shows which were sent. */
const named = (entries: Record<string, string>) =>
  new Map(Object.entries(entries).map(([name, v]) => [name, res(v, `${name}=${v}`)]));

test('state of the world, full-state type: a wildcard client gets every resource in every response, and removals by absence', async () => {
  const srv = await sotwServer();
  const s = sotwStream(srv.target);
  try {
    srv.ads.set(LDS, named({ a: '1', b: '1' }));
    s.call.write({ node: { id: 'grpc-1' }, type_url: LDS, resource_names: [] });
    const first = await s.next();
    assert.equal(first.type_url, LDS);
    assert.ok(first.version_info);
    assert.deepEqual(held(first, LDS), ['a=1', 'b=1']);
    s.call.write({ type_url: LDS, version_info: first.version_info, response_nonce: first.nonce });
    // One changes: both are sent again (the full state), with a new nonce.
    srv.ads.set(LDS, named({ a: '2', b: '1' }));
    const second = await s.next();
    assert.deepEqual(held(second, LDS), ['a=2', 'b=1']);
    assert.notEqual(second.nonce, first.nonce);
    s.call.write({ type_url: LDS, version_info: second.version_info, response_nonce: second.nonce });
    // One goes: the response leaves it out, which is how the client learns it is gone.
    srv.ads.set(LDS, named({ a: '2' }));
    const third = await s.next();
    assert.deepEqual(held(third, LDS), ['a=2']);
    s.call.write({ type_url: LDS, version_info: third.version_info, response_nonce: third.nonce });
    // Nothing changed: nothing is sent.
    srv.ads.set(LDS, named({ a: '2' }));
    assert.ok(await s.quiet());
    await waitFor(() => sotwAcks.includes(`grpc-1 ${LDS} ${third.nonce}`), 2000);
    assert.deepEqual(
      srv.ads.subscriberInfo().map((i) => [i.id, i.protocol, i.pending[LDS]]),
      [['grpc-1', 'sotw', 0]],
    );
  } finally {
    s.close();
    srv.close();
  }
});

test('state of the world, named: a client gets what it names; per-name types carry only what changed', async () => {
  const srv = await sotwServer();
  const s = sotwStream(srv.target);
  try {
    srv.ads.set(RDS, named({ r1: '1', r2: '1', other: '1' }));
    srv.ads.set(LDS, named({ l1: '1', l2: '1' }));
    s.call.write({ node: { id: 'grpc-2' }, type_url: LDS, resource_names: ['l1', 'missing'] });
    let r = await s.next();
    assert.deepEqual(held(r, LDS), ['l1=1']);
    s.call.write({ type_url: LDS, resource_names: ['l1', 'missing'], response_nonce: r.nonce });
    s.call.write({ type_url: RDS, resource_names: ['r1'] });
    r = await s.next();
    assert.deepEqual(held(r, RDS), ['r1=1']);
    let rdsNonce = r.nonce;
    s.call.write({ type_url: RDS, resource_names: ['r1'], response_nonce: rdsNonce });
    // A change to a resource nobody here names: no push at all.
    srv.ads.set(RDS, named({ r1: '1', r2: '1', other: '2' }));
    srv.ads.set(LDS, named({ l1: '1', l2: '2' }));
    assert.ok(await s.quiet());
    // Naming one more: only the new one comes (RDS is not a full-state type).
    s.call.write({ type_url: RDS, resource_names: ['r1', 'r2'], response_nonce: rdsNonce });
    r = await s.next();
    assert.deepEqual(held(r, RDS), ['r2=1']);
    rdsNonce = r.nonce;
    s.call.write({ type_url: RDS, resource_names: ['r1', 'r2'], response_nonce: rdsNonce });
    // A change to a named one: just that one.
    srv.ads.set(RDS, named({ r1: '2', r2: '1', other: '2' }));
    r = await s.next();
    assert.deepEqual(held(r, RDS), ['r1=2']);
    s.call.write({ type_url: RDS, resource_names: ['r1', 'r2'], response_nonce: r.nonce });
    // The missing listener appears: the full state of what is named (LDS is a full-state type).
    srv.ads.set(LDS, named({ l1: '1', l2: '2', missing: '1' }));
    r = await s.next();
    assert.deepEqual(held(r, LDS), ['l1=1', 'missing=1']);
    s.call.write({ type_url: LDS, resource_names: ['l1', 'missing'], response_nonce: r.nonce });
    // Dropped, then named again: sent again (the client forgot it).
    s.call.write({ type_url: RDS, resource_names: ['r2'], response_nonce: r.nonce });
    assert.ok(await s.quiet());
    s.call.write({ type_url: RDS, resource_names: ['r1', 'r2'] });
    assert.deepEqual(held(await s.next(), RDS), ['r1=2']);
  } finally {
    s.close();
    srv.close();
  }
});

test('state of the world: a NACK is counted once by its nonce, though the client repeats it on later requests', async () => {
  const srv = await sotwServer();
  const s = sotwStream(srv.target);
  try {
    srv.ads.set(RDS, named({ r1: '1', r2: '1' }));
    s.call.write({ node: { id: 'grpc-nack' }, type_url: RDS, resource_names: ['r1'] });
    const r = await s.next();
    const nack = { code: 14, message: 'r1: unsupported action: redirect' };
    s.call.write({ type_url: RDS, resource_names: ['r1'], response_nonce: r.nonce, error_detail: nack });
    // grpc-js-xds sends its last nonce and error again with every subscription change.
    s.call.write({
      type_url: RDS,
      resource_names: ['r1', 'r2'],
      response_nonce: r.nonce,
      error_detail: nack,
    });
    assert.deepEqual(held(await s.next(), RDS), ['r2=1']);
    await waitFor(() => sotwNacks.some((n) => n.startsWith('grpc-nack')), 2000);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(
      sotwNacks.filter((n) => n.startsWith('grpc-nack')),
      [`grpc-nack ${RDS}: r1: unsupported action: redirect`],
    );
    // The rejected version is not pushed again; the next change is.
    assert.ok(await s.quiet());
    srv.ads.set(RDS, named({ r1: '2', r2: '1' }));
    assert.deepEqual(held(await s.next(), RDS), ['r1=2']);
  } finally {
    s.close();
    srv.close();
  }
});

test("both protocols share the encoded entries: a state-of-the-world resource is the Delta entry's Any", async () => {
  const srv = await sotwServer();
  const sotw = sotwStream(srv.target);
  const delta = rawStream(srv.target);
  try {
    // Content long enough for multi-byte lengths, and a long name and version around it.
    const big = Buffer.alloc(70_000, 7);
    srv.ads.set(W, new Map([['n'.repeat(300), res('v'.repeat(200), big)]]));
    sotw.call.write({ node: { id: 'sotw' }, type_url: W, resource_names: [] });
    delta.call.write({ node: { id: 'delta' }, type_url: W });
    const [s, d] = await Promise.all([sotw.next(), delta.next()]);
    assert.equal(s.resources?.length, 1);
    const [entry] = s.resources ?? [];
    assert.equal(entry?.type_url, W);
    assert.ok(entry?.value.equals(big));
    assert.ok(d.resources![0]!.resource!.value.equals(big));
    assert.equal(d.resources![0]!.name, 'n'.repeat(300));
  } finally {
    sotw.close();
    delta.close();
    srv.close();
  }
});

test('per-listener access: a listener limited to some types refuses others; a refused token ends the stream', async () => {
  const limited = await sotwServer({ types: [LDS, RDS] });
  const guarded = await sotwServer({
    authorize: async (md) => (md.get('authorization')[0] === 'Bearer ok' ? undefined : 'no token'),
  });
  try {
    const s = sotwStream(limited.target);
    s.call.write({ node: { id: 'x' }, type_url: W, resource_names: [] });
    await waitFor(() => s.errors.length > 0, 2000);
    assert.equal(s.errors[0]!.code, 7); // PERMISSION_DENIED
    s.close();
    const ok = sotwStream(limited.target);
    ok.call.write({ node: { id: 'y' }, type_url: LDS, resource_names: [] });
    assert.deepEqual(held(await ok.next(), LDS), []);
    ok.close();
    for (const token of [undefined, 'Bearer no']) {
      const md = new Metadata();
      if (token) md.set('authorization', token);
      const g = sotwStream(guarded.target, md);
      g.call.write({ node: { id: 'z' }, type_url: LDS, resource_names: [] });
      await waitFor(() => g.errors.length > 0, 2000);
      assert.equal(g.errors[0]!.code, 16); // UNAUTHENTICATED
      g.close();
    }
    const md = new Metadata();
    md.set('authorization', 'Bearer ok');
    const g = sotwStream(guarded.target, md);
    g.call.write({ node: { id: 'z' }, type_url: LDS, resource_names: [] });
    assert.ok((await g.next()).nonce);
    g.close();
  } finally {
    limited.close();
    guarded.close();
  }
});

test('the server keeps its earlier name', () => {
  assert.equal(DeltaAdsServer, AdsServer);
});
