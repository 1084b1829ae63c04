import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Clock } from '../../../src/core/clock.ts';
import { ErrorCode } from '../../../src/core/errors.ts';
import type { WorkloadCertificate } from '../../../src/core/identity/certificate.ts';
import {
  backoffMs,
  RENEW_BACKOFF,
  SecretManager,
  type CertificateProvider,
} from '../../../src/core/identity/secret-manager.ts';
import { formatSpiffe, type Identity } from '../../../src/core/identity/spiffe.ts';
import { silentLogger } from '../../../src/core/log.ts';

/** Manual time: timers run only when the test advances the clock. */
class FakeClock implements Clock {
  private now: number;
  private timers: { atMs: number; seq: number; fn: () => void }[] = [];
  private seq = 0;

  constructor(startMs = 0) {
    this.now = startMs;
  }

  nowMs(): number {
    return this.now;
  }

  setTimer(fn: () => void, delayMs: number): () => void {
    const t = { atMs: this.now + delayMs, seq: this.seq++, fn };
    this.timers.push(t);
    return () => {
      this.timers = this.timers.filter((x) => x !== t);
    };
  }

  /** Timers still scheduled. */
  get pending(): number {
    return this.timers.length;
  }

  /** Moves time forward, running each due timer at its own time and letting promises settle. */
  async advance(ms: number): Promise<void> {
    const target = this.now + ms;
    for (;;) {
      const due = this.timers
        .filter((t) => t.atMs <= target)
        .sort((a, b) => a.atMs - b.atMs || a.seq - b.seq)[0];
      if (!due) break;
      this.timers = this.timers.filter((t) => t !== due);
      this.now = due.atMs;
      due.fn();
      await settle();
    }
    this.now = target;
    await settle();
  }
}

/** Lets every promise chain that can make progress do so. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

interface PendingFetch {
  readonly identity: Identity;
  readonly atMs: number;
  resolve(c: WorkloadCertificate): void;
  reject(e: Error): void;
}

/** A provider the test answers by hand: each fetch waits until `succeed` or `fail`. */
class FakeProvider implements CertificateProvider {
  readonly calls: PendingFetch[] = [];
  private readonly clock: FakeClock;
  private serial = 0;

  constructor(clock: FakeClock) {
    this.clock = clock;
  }

  fetch(identity: Identity): Promise<WorkloadCertificate> {
    return new Promise((resolve, reject) => {
      this.calls.push({ identity, atMs: this.clock.nowMs(), resolve, reject });
    });
  }

  /** Answers the latest fetch with a certificate valid for [notBeforeMs, notAfterMs). */
  async succeed(lifetime: { notBeforeMs: number; notAfterMs: number }): Promise<WorkloadCertificate> {
    const call = this.calls.at(-1);
    assert.ok(call, 'no fetch to answer');
    const cert = fakeCert(call.identity, lifetime.notBeforeMs, lifetime.notAfterMs, String(++this.serial));
    call.resolve(cert);
    await settle();
    return cert;
  }

  async fail(message: string): Promise<void> {
    const call = this.calls.at(-1);
    assert.ok(call, 'no fetch to answer');
    call.reject(new Error(message));
    await settle();
  }
}

function fakeCert(
  identity: Identity,
  notBeforeMs: number,
  notAfterMs: number,
  serial: string,
): WorkloadCertificate {
  return {
    identity,
    keyPem: 'not a key',
    chainPem: ['not a cert'],
    rootsPem: 'not a root',
    notBeforeMs,
    notAfterMs,
    serialNumber: serial,
  };
}

const curl: Identity = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'curl' };
const reviews: Identity = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'reviews' };

function setup(random = () => 0.5) {
  const clock = new FakeClock(0);
  const provider = new FakeProvider(clock);
  const secrets = new SecretManager({ provider, clock, log: silentLogger(), random });
  return { clock, provider, secrets };
}

/** Tracks whether a promise has settled, without letting a rejection go unhandled. */
function track<T>(p: Promise<T>) {
  const s: { state: 'pending' | 'resolved' | 'rejected'; value?: T; error?: unknown } = { state: 'pending' };
  p.then(
    (value) => Object.assign(s, { state: 'resolved', value }),
    (error: unknown) => Object.assign(s, { state: 'rejected', error }),
  );
  return s;
}

test('concurrent get() calls share one fetch and all get its certificate', async () => {
  const { provider, secrets } = setup();
  const waiters = [secrets.get(curl), secrets.get(curl), secrets.get(curl)];
  secrets.prefetch(curl);
  await settle();
  assert.equal(provider.calls.length, 1);
  const cert = await provider.succeed({ notBeforeMs: 0, notAfterMs: 100_000 });
  for (const got of await Promise.all(waiters)) assert.equal(got, cert);
});

test('get() returns the held certificate without fetching again', async () => {
  const { clock, provider, secrets } = setup();
  const first = secrets.get(curl);
  const cert = await provider.succeed({ notBeforeMs: 0, notAfterMs: 100_000 });
  assert.equal(await first, cert);
  await clock.advance(10_000);
  assert.equal(await secrets.get(curl), cert);
  assert.equal(secrets.current(curl), cert);
  assert.equal(provider.calls.length, 1);
});

test('identities are fetched independently', async () => {
  const { provider, secrets } = setup();
  secrets.prefetch(curl);
  secrets.prefetch(reviews);
  await settle();
  assert.deepEqual(
    provider.calls.map((c) => formatSpiffe(c.identity)),
    [formatSpiffe(curl), formatSpiffe(reviews)],
  );
});

const halfLifeCases: {
  name: string;
  startMs: number;
  notBeforeMs: number;
  notAfterMs: number;
  renewAtMs: number;
}[] = [
  { name: 'fresh certificate', startMs: 0, notBeforeMs: 0, notAfterMs: 100_000, renewAtMs: 50_000 },
  { name: 'backdated certificate', startMs: 0, notBeforeMs: -60_000, notAfterMs: 100_000, renewAtMs: 20_000 },
  {
    name: 'issued past its half life: renewed after the 1 s floor, not in a hot loop',
    startMs: 80_000,
    notBeforeMs: 0,
    notAfterMs: 100_000,
    renewAtMs: 81_000,
  },
];

for (const c of halfLifeCases) {
  test(`renews at half life: ${c.name}`, async () => {
    const { clock, provider, secrets } = setup();
    await clock.advance(c.startMs);
    secrets.prefetch(curl);
    await settle();
    await provider.succeed({ notBeforeMs: c.notBeforeMs, notAfterMs: c.notAfterMs });
    const delayMs = c.renewAtMs - c.startMs;
    if (delayMs > 0) {
      await clock.advance(delayMs - 1);
      assert.equal(provider.calls.length, 1, 'renewed too early');
    }
    await clock.advance(delayMs > 0 ? 1 : 0);
    assert.equal(provider.calls.length, 2, 'not renewed at half life');
    assert.equal(provider.calls[1]?.atMs, c.renewAtMs);
  });
}

test('a renewed certificate replaces the old one, notifies listeners and schedules the next renewal', async () => {
  const { clock, provider, secrets } = setup();
  const heard: string[] = [];
  const unsubscribe = secrets.onCertificate((c) => heard.push(c.serialNumber));
  secrets.prefetch(curl);
  await settle();
  const first = await provider.succeed({ notBeforeMs: 0, notAfterMs: 100_000 });
  await clock.advance(50_000);
  const second = await provider.succeed({ notBeforeMs: 50_000, notAfterMs: 150_000 });
  assert.notEqual(first, second);
  assert.equal(secrets.current(curl), second);
  assert.equal(await secrets.get(curl), second);
  assert.deepEqual(heard, ['1', '2']);
  unsubscribe();
  await clock.advance(49_999);
  assert.equal(provider.calls.length, 2);
  await clock.advance(1);
  assert.equal(provider.calls.length, 3);
  await provider.succeed({ notBeforeMs: 100_000, notAfterMs: 200_000 });
  assert.deepEqual(heard, ['1', '2'], 'an unsubscribed listener is not called');
});

test('a failed renewal keeps the old certificate and retries with backoff', async () => {
  const { clock, provider, secrets } = setup(() => 0.5);
  secrets.prefetch(curl);
  await settle();
  const old = await provider.succeed({ notBeforeMs: 0, notAfterMs: 100_000 });
  await clock.advance(50_000);
  await provider.fail('CA unavailable');
  assert.equal(secrets.current(curl), old);
  assert.equal(await secrets.get(curl), old);
  assert.deepEqual(
    secrets.states().map((s) => s.state),
    ['Available'],
  );
  // Retries at +1 s, then +2 s, then +4 s (random() = 0.5 means no jitter).
  for (const waitMs of [1000, 2000, 4000]) {
    const before = provider.calls.length;
    await clock.advance(waitMs - 1);
    assert.equal(provider.calls.length, before, `retried before ${waitMs} ms`);
    await clock.advance(1);
    assert.equal(provider.calls.length, before + 1, `no retry after ${waitMs} ms`);
    if (waitMs < 4000) await provider.fail('CA unavailable');
  }
  const renewed = await provider.succeed({ notBeforeMs: 57_000, notAfterMs: 157_000 });
  assert.equal(secrets.current(curl), renewed);
  // Success resets the backoff: the next failure retries after 1 s again.
  await clock.advance(50_000);
  await provider.fail('CA unavailable');
  const before = provider.calls.length;
  await clock.advance(1000);
  assert.equal(provider.calls.length, before + 1);
});

test('a first-fetch failure rejects every waiter with the provider error', async () => {
  const { provider, secrets } = setup();
  const waiters = [track(secrets.get(curl)), track(secrets.get(curl))];
  await settle();
  assert.equal(provider.calls.length, 1);
  await provider.fail('CA refused');
  for (const w of waiters) {
    assert.equal(w.state, 'rejected');
    assert.match(String(w.error), /CA refused/);
  }
  assert.equal(secrets.current(curl), undefined);
});

test('after a first-fetch failure it retries on its own after the backoff', async () => {
  const { clock, provider, secrets } = setup(() => 0);
  secrets.prefetch(curl);
  await settle();
  await provider.fail('boom');
  await clock.advance(799);
  assert.equal(provider.calls.length, 1);
  await clock.advance(1);
  assert.equal(provider.calls.length, 2);
  const cert = await provider.succeed({ notBeforeMs: 800, notAfterMs: 100_800 });
  assert.equal(await secrets.get(curl), cert);
});

test('get() during the backoff wait fetches at once, and the cancelled retry does not fire', async () => {
  const { clock, provider, secrets } = setup();
  secrets.prefetch(curl);
  await settle();
  await provider.fail('boom');
  const waiter = secrets.get(curl);
  await settle();
  assert.equal(provider.calls.length, 2);
  const cert = await provider.succeed({ notBeforeMs: 0, notAfterMs: 100_000 });
  assert.equal(await waiter, cert);
  await clock.advance(10_000);
  assert.equal(provider.calls.length, 2);
});

test('get() with an expired certificate waits for a fresh one', async () => {
  const { clock, provider, secrets } = setup();
  secrets.prefetch(curl);
  await settle();
  const old = await provider.succeed({ notBeforeMs: 0, notAfterMs: 10_000 });
  await clock.advance(5_000);
  await provider.fail('down');
  await clock.advance(5_000);
  const waiter = track(secrets.get(curl));
  await settle();
  assert.equal(waiter.state, 'pending', 'an expired certificate must not be handed out');
  const fresh = await provider.succeed({ notBeforeMs: 10_000, notAfterMs: 20_000 });
  assert.equal(waiter.state, 'resolved');
  assert.equal(waiter.value, fresh);
  assert.notEqual(fresh, old);
});

test('states() reports Initializing, Available and Unavailable', async () => {
  const { provider, secrets } = setup();
  assert.deepEqual(secrets.states(), []);
  secrets.prefetch(curl);
  secrets.prefetch(reviews);
  await settle();
  assert.deepEqual(
    secrets.states().map((s) => [formatSpiffe(s.identity), s.state, s.cert]),
    [
      [formatSpiffe(curl), 'Initializing', undefined],
      [formatSpiffe(reviews), 'Initializing', undefined],
    ],
  );
  provider.calls[0]!.reject(new Error('CA unreachable'));
  const cert = await provider.succeed({ notBeforeMs: 0, notAfterMs: 100_000 });
  assert.deepEqual(
    secrets.states().map((s) => [formatSpiffe(s.identity), s.state, s.cert]),
    [
      [formatSpiffe(curl), 'Unavailable: CA unreachable', undefined],
      [formatSpiffe(reviews), 'Available', cert],
    ],
  );
});

test('forget() stops renewal and drops the certificate', async () => {
  const { clock, provider, secrets } = setup();
  secrets.prefetch(curl);
  await settle();
  await provider.succeed({ notBeforeMs: 0, notAfterMs: 100_000 });
  assert.equal(clock.pending, 1);
  secrets.forget(curl);
  assert.equal(clock.pending, 0);
  await clock.advance(1_000_000);
  assert.equal(provider.calls.length, 1);
  assert.equal(secrets.current(curl), undefined);
  assert.deepEqual(secrets.states(), []);
});

test('forget() stops retries after a failure', async () => {
  const { clock, provider, secrets } = setup();
  secrets.prefetch(curl);
  await settle();
  await provider.fail('boom');
  secrets.forget(curl);
  await clock.advance(1_000_000);
  assert.equal(provider.calls.length, 1);
});

test('forget() of an unknown identity is a no-op', () => {
  const { secrets } = setup();
  secrets.forget(curl);
  assert.deepEqual(secrets.states(), []);
});

test('a fetch that completes after forget() does not resurrect the identity', async () => {
  const { clock, provider, secrets } = setup();
  secrets.prefetch(curl);
  await settle();
  secrets.forget(curl);
  await provider.succeed({ notBeforeMs: 0, notAfterMs: 100_000 });
  assert.deepEqual(secrets.states(), []);
  assert.equal(clock.pending, 0);
});

test('close() rejects waiters with a Shutdown error and cancels timers', async () => {
  const { clock, provider, secrets } = setup();
  secrets.prefetch(reviews);
  await settle();
  await provider.succeed({ notBeforeMs: 0, notAfterMs: 100_000 });
  const waiter = track(secrets.get(curl));
  await settle();
  secrets.close();
  await settle();
  assert.equal(waiter.state, 'rejected');
  assert.equal((waiter.error as { code?: string }).code, ErrorCode.Shutdown);
  assert.equal(clock.pending, 0);
  await provider.succeed({ notBeforeMs: 0, notAfterMs: 100_000 });
  assert.equal(clock.pending, 0, 'a fetch finishing after close() schedules nothing');
});

// Bug: forget() (src/core/identity/secret-manager.ts, forget) deletes the entry while a fetch is in
// flight; when that fetch settles, fetch() sees `this.entries.get(id) !== entry` and returns without
// resolving or rejecting entry.waiters, so every get() waiting on it hangs forever.
test('regression: secret-manager forget(): a get() waiting on the in-flight fetch settles instead of hanging', async () => {
  const { provider, secrets } = setup();
  const waiter = track(secrets.get(curl));
  await settle();
  secrets.forget(curl);
  await provider.succeed({ notBeforeMs: 0, notAfterMs: 100_000 });
  await settle();
  assert.notEqual(waiter.state, 'pending');
});

// Bug: on a failed renewal fetch() says "retry no later than its expiry" but calls
// this.schedule(entry, delayMs) with the plain backoff, so a retry can land after the old certificate
// expired (here: failures at 5 s, 6 s and 8 s of a 10 s certificate, next retry at 12 s).
test('regression: secret-manager backoff: a failing renewal retries no later than the old certificate expires', async () => {
  const { clock, provider, secrets } = setup(() => 0.5);
  secrets.prefetch(curl);
  await settle();
  await provider.succeed({ notBeforeMs: 0, notAfterMs: 10_000 });
  await clock.advance(5_000);
  await provider.fail('down');
  await clock.advance(1_000);
  await provider.fail('down');
  await clock.advance(2_000);
  await provider.fail('down');
  assert.deepEqual(
    provider.calls.map((c) => c.atMs),
    [0, 5_000, 6_000, 8_000],
  );
  await clock.advance(2_000);
  assert.equal(provider.calls.length, 5, 'no retry by the time the old certificate expired (10 s)');
});

const backoffCases: { failures: number; random: number; wantMs: number }[] = [
  { failures: 1, random: 0, wantMs: 800 },
  { failures: 1, random: 0.5, wantMs: 1000 },
  { failures: 1, random: 0.999, wantMs: 1200 },
  { failures: 2, random: 0, wantMs: 1600 },
  { failures: 2, random: 0.5, wantMs: 2000 },
  { failures: 2, random: 0.999, wantMs: 2399 },
  { failures: 3, random: 0.5, wantMs: 4000 },
  { failures: 8, random: 0, wantMs: 102_400 },
  { failures: 8, random: 0.5, wantMs: 128_000 },
  { failures: 8, random: 0.999, wantMs: 150_000 },
  { failures: 9, random: 0, wantMs: 120_000 },
  { failures: 9, random: 0.5, wantMs: 150_000 },
  { failures: 9, random: 0.999, wantMs: 150_000 },
  { failures: 50, random: 0, wantMs: 120_000 },
  { failures: 5000, random: 0.5, wantMs: 150_000 },
];

for (const c of backoffCases) {
  test(`backoffMs(${c.failures}, random=${c.random}) is ${c.wantMs}`, () => {
    assert.equal(
      backoffMs(c.failures, () => c.random),
      c.wantMs,
    );
  });
}

test('backoff constants: 1 s, ×2, ±20 %, at most 150 s', () => {
  assert.deepEqual(RENEW_BACKOFF, { initialMs: 1000, multiplier: 2, jitter: 0.2, maxMs: 150_000 });
});
