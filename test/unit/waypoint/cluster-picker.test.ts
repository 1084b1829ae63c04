import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Cluster, LbEndpoint, OutlierDetection } from '../../../src/core/xds/l7-model.ts';
import {
  createClusterPicker,
  OVERLOADED_HEADER,
  type ClusterPicker,
} from '../../../src/waypoint/cluster-picker.ts';
import { xxHash64 } from '../../../src/waypoint/xxhash64.ts';
import { assignment, cluster, endpoint, fakeClock, seeded } from './l7-builders.ts';

const IPS = ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5'];

function picker(
  c: Partial<Cluster>,
  endpoints: readonly LbEndpoint[],
  seed = 1,
  clock = fakeClock(),
): ClusterPicker {
  const p = createClusterPicker(cluster(c), { clock, random: seeded(seed) });
  p.updateEndpoints(assignment(endpoints));
  return p;
}

function pickKey(p: ClusterPicker, hashKey?: bigint): string {
  const r = p.pick(hashKey === undefined ? {} : { hashKey });
  if (!r.ok) assert.fail(`no host: ${r.reason}`);
  return r.host.key;
}

function counts(p: ClusterPicker, n: number, key?: (i: number) => bigint): Map<string, number> {
  const out = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const k = pickKey(p, key?.(i));
    out.set(k, (out.get(k) ?? 0) + 1);
  }
  return out;
}

const keyOf = (ip: string) => `${ip}:9080`;

describe('load-balancing policies', () => {
  test('ROUND_ROBIN cycles through equal hosts', () => {
    const p = picker(
      { lbPolicy: 'ROUND_ROBIN' },
      IPS.slice(0, 3).map((ip) => endpoint(ip)),
    );
    const seq = Array.from({ length: 6 }, () => pickKey(p));
    assert.deepEqual(new Set(seq.slice(0, 3)).size, 3);
    assert.deepEqual(seq.slice(0, 3), seq.slice(3));
  });

  test('ROUND_ROBIN with weights 1:3 is exact and smooth', () => {
    const p = picker({ lbPolicy: 'ROUND_ROBIN' }, [
      endpoint('10.0.0.1', { weight: 1 }),
      endpoint('10.0.0.2', { weight: 3 }),
    ]);
    const c = counts(p, 400);
    assert.equal(c.get(keyOf('10.0.0.1')), 100);
    assert.equal(c.get(keyOf('10.0.0.2')), 300);
    // Smooth: never two picks of the light host in a row.
    const seq = Array.from({ length: 8 }, () => pickKey(p));
    for (let i = 1; i < seq.length; i++) assert.ok(!(seq[i] === keyOf('10.0.0.1') && seq[i - 1] === seq[i]));
  });

  test('RANDOM is uniform within 2 % over 30,000 picks', () => {
    const p = picker(
      { lbPolicy: 'RANDOM' },
      IPS.slice(0, 3).map((ip) => endpoint(ip)),
    );
    for (const n of counts(p, 30_000).values()) assert.ok(Math.abs(n / 30_000 - 1 / 3) < 0.02, `${n}`);
  });

  test('LEAST_REQUEST prefers idle hosts (power of two choices)', () => {
    const p = picker(
      { lbPolicy: 'LEAST_REQUEST' },
      IPS.slice(0, 3).map((ip) => endpoint(ip)),
    );
    const releases = Array.from({ length: 10 }, () => p.startRequest(keyOf('10.0.0.1')));
    const c = counts(p, 9000);
    // The busy host wins only when both samples are it: 1/9.
    assert.ok(Math.abs((c.get(keyOf('10.0.0.1')) ?? 0) / 9000 - 1 / 9) < 0.02, JSON.stringify([...c]));
    for (const r of releases) r();
    assert.equal(p.hosts().find((h) => h.key === keyOf('10.0.0.1'))?.activeRequests, 0);
    const even = counts(p, 9000);
    assert.ok(Math.abs((even.get(keyOf('10.0.0.1')) ?? 0) / 9000 - 1 / 3) < 0.03);
  });

  test('LEAST_REQUEST with more choices avoids busy hosts harder', () => {
    const p = picker(
      { lbPolicy: 'LEAST_REQUEST', leastRequestChoiceCount: 4 },
      IPS.slice(0, 2).map((ip) => endpoint(ip)),
    );
    p.startRequest(keyOf('10.0.0.1'));
    const c = counts(p, 8000);
    assert.ok(Math.abs((c.get(keyOf('10.0.0.1')) ?? 0) / 8000 - 1 / 16) < 0.015);
  });

  test('weighted LEAST_REQUEST divides each weight by active requests + 1', () => {
    const p = picker({ lbPolicy: 'LEAST_REQUEST' }, [
      endpoint('10.0.0.1', { weight: 2 }),
      endpoint('10.0.0.2', { weight: 1 }),
    ]);
    const idle = counts(p, 300);
    assert.equal(idle.get(keyOf('10.0.0.1')), 200);
    p.startRequest(keyOf('10.0.0.1'));
    p.startRequest(keyOf('10.0.0.1'));
    const busy = counts(p, 300);
    // 2/3 vs 1/1: the lighter host now gets 60 %.
    assert.ok(Math.abs((busy.get(keyOf('10.0.0.2')) ?? 0) / 300 - 0.6) < 0.02, JSON.stringify([...busy]));
  });
});

describe('RING_HASH', () => {
  const ring = (ips: readonly string[], p: Partial<Cluster> = {}) =>
    picker(
      { lbPolicy: 'RING_HASH', ...p },
      ips.map((ip) => endpoint(ip)),
    );
  const keys = Array.from({ length: 5000 }, (_, i) => xxHash64(`user-${i}`));

  test('the same key always goes to the same host', () => {
    const p = ring(IPS);
    for (const k of keys.slice(0, 200)) assert.equal(pickKey(p, k), pickKey(p, k));
  });

  test('keys spread evenly (each host within 25 % of its share)', () => {
    const c = counts(ring(IPS), keys.length, (i) => keys[i]!);
    for (const n of c.values()) assert.ok(Math.abs(n / keys.length - 0.2) < 0.05, JSON.stringify([...c]));
  });

  test('removing a host moves only the keys it had', () => {
    const before = ring(IPS);
    const after = ring(IPS.filter((ip) => ip !== '10.0.0.3'));
    let moved = 0;
    for (const k of keys) {
      const a = pickKey(before, k);
      const b = pickKey(after, k);
      if (a === keyOf('10.0.0.3')) moved++;
      else assert.equal(b, a);
    }
    assert.ok(moved > 0);
  });

  test('an endpoint update with one host fewer keeps every other key in place', () => {
    const p = ring(IPS);
    const before = keys.map((k) => pickKey(p, k));
    p.updateEndpoints(assignment(IPS.slice(0, 4).map((ip) => endpoint(ip))));
    keys.forEach((k, i) => {
      if (before[i] !== keyOf('10.0.0.5')) assert.equal(pickKey(p, k), before[i]);
    });
  });

  test('a host’s weight is its share of the ring', () => {
    const p = picker({ lbPolicy: 'RING_HASH' }, [
      endpoint('10.0.0.1', { weight: 3 }),
      endpoint('10.0.0.2', { weight: 1 }),
    ]);
    const c = counts(p, keys.length, (i) => keys[i]!);
    assert.ok(Math.abs((c.get(keyOf('10.0.0.1')) ?? 0) / keys.length - 0.75) < 0.05);
  });

  test('a retry attempt walks to the next point of the ring', () => {
    const p = ring(IPS);
    const k = keys[0]!;
    const first = pickKey(p, k);
    const avoided = p.pick({ hashKey: k, avoid: new Set([first]), maxSelectionAttempts: 20 });
    assert.ok(avoided.ok);
    assert.notEqual(avoided.host.key, first);
  });

  test('without a key a host is picked at random', () => {
    const c = counts(ring(IPS), 5000);
    assert.equal(c.size, 5);
  });
});

describe('MAGLEV', () => {
  const keys = Array.from({ length: 5000 }, (_, i) => xxHash64(`session-${i}`));
  const maglev = (ips: readonly string[]) =>
    picker(
      { lbPolicy: 'MAGLEV', maglevTableSize: 5003 },
      ips.map((ip) => endpoint(ip)),
    );

  test('sticky and even', () => {
    const p = maglev(IPS);
    const c = counts(p, keys.length, (i) => keys[i]!);
    for (const n of c.values()) assert.ok(Math.abs(n / keys.length - 0.2) < 0.03, JSON.stringify([...c]));
    for (const k of keys.slice(0, 100)) assert.equal(pickKey(p, k), pickKey(p, k));
  });

  test('removing a host disturbs few other keys', () => {
    const before = maglev(IPS);
    const after = maglev(IPS.slice(0, 4));
    let disturbed = 0;
    for (const k of keys) {
      const a = pickKey(before, k);
      if (a !== keyOf('10.0.0.5') && pickKey(after, k) !== a) disturbed++;
    }
    assert.ok(disturbed / keys.length < 0.05, `${disturbed}`);
  });
});

describe('circuit breakers', () => {
  test('requests overflow at max_requests and are released', () => {
    const p = picker(
      { circuitBreakers: { maxConnections: 1, maxPendingRequests: 1, maxRequests: 2, maxRetries: 0 } },
      [endpoint('10.0.0.1')],
    );
    const a = p.tryAcquire('requests');
    const b = p.tryAcquire('requests');
    assert.ok(a.ok && b.ok);
    assert.deepEqual(p.tryAcquire('requests'), { ok: false, overflow: 'requests' });
    a.release();
    a.release(); // idempotent
    assert.equal(p.usage().requests, 1);
    assert.ok(p.tryAcquire('requests').ok);
    assert.deepEqual(p.tryAcquire('retries'), { ok: false, overflow: 'retries' });
    assert.ok(p.tryAcquire('pending-requests').ok);
    assert.deepEqual(p.tryAcquire('pending-requests'), { ok: false, overflow: 'pending-requests' });
    assert.ok(p.tryAcquire('connections').ok);
    assert.deepEqual(p.tryAcquire('connections'), { ok: false, overflow: 'connections' });
    assert.deepEqual(OVERLOADED_HEADER, ['x-envoy-overloaded', 'true']);
  });

  test('Envoy’s defaults: 1024 requests, 3 retries', () => {
    const p = picker({}, [endpoint('10.0.0.1')]);
    for (let i = 0; i < 3; i++) assert.ok(p.tryAcquire('retries').ok);
    assert.equal(p.tryAcquire('retries').ok, false);
    for (let i = 0; i < 1024; i++) assert.ok(p.tryAcquire('requests').ok);
    assert.equal(p.tryAcquire('requests').ok, false);
  });

  test('new limits apply to the slots in use', () => {
    const p = picker({}, [endpoint('10.0.0.1')]);
    const held = [p.tryAcquire('requests'), p.tryAcquire('requests')];
    p.updateCluster(
      cluster({
        circuitBreakers: { maxConnections: 1, maxPendingRequests: 1, maxRequests: 2, maxRetries: 1 },
      }),
    );
    assert.equal(p.tryAcquire('requests').ok, false);
    for (const h of held) if (h.ok) h.release();
    assert.ok(p.tryAcquire('requests').ok);
  });
});

const OD: OutlierDetection = {
  consecutive5xx: 3,
  consecutiveGatewayFailure: 5,
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
};

describe('outlier detection', () => {
  const A = keyOf('10.0.0.1');
  const setup = (od: Partial<OutlierDetection> = {}, n = 4) => {
    const clock = fakeClock(0);
    const p = picker(
      { outlierDetection: { ...OD, ...od } },
      IPS.slice(0, n).map((ip) => endpoint(ip)),
      1,
      clock,
    );
    const ejected = () => p.hosts().find((h) => h.key === A)!.ejected;
    const fail = (k = 1, status = 500) => {
      for (let i = 0; i < k; i++) p.recordOutcome(A, { kind: 'http', status });
    };
    return { clock, p, ejected, fail };
  };

  test('consecutive 5xx eject the host; a success in between resets the count', () => {
    const { p, ejected, fail } = setup();
    fail(2);
    p.recordOutcome(A, { kind: 'http', status: 200 });
    fail(2);
    assert.equal(ejected(), false);
    fail(1);
    assert.equal(ejected(), true);
    const c = counts(p, 300);
    assert.equal(c.get(A), undefined);
  });

  test('ejected for base_ejection_time, un-ejected at the next interval tick', () => {
    const { clock, p, ejected, fail } = setup();
    clock.advance(1000);
    fail(3); // ejected at t=1s
    clock.advance(28_999); // t=29.999s: the tick at 20s was too early
    assert.equal(ejected(), true);
    clock.advance(1); // t=30s: tick, but only 29 s since the ejection
    assert.equal(ejected(), true);
    clock.advance(9_999); // t=39.999s
    assert.equal(ejected(), true);
    clock.advance(1); // t=40s: tick, 39 s ≥ 30 s
    assert.equal(ejected(), false);
    assert.equal(p.hosts().find((h) => h.key === A)!.ejections, 1);
  });

  test('a second ejection lasts twice as long; healthy intervals decay the backoff', () => {
    const { clock, ejected, fail } = setup();
    fail(3); // t=0, backoff 1
    clock.advance(30_000); // tick at 30s un-ejects
    assert.equal(ejected(), false);
    fail(3); // t=30s, backoff 2 → 60 s
    clock.advance(50_000); // t=80s
    assert.equal(ejected(), true);
    clock.advance(10_000); // t=90s: 60 s elapsed
    assert.equal(ejected(), false);
    // Ten healthy intervals bring the backoff back down: the next ejection is base again.
    clock.advance(100_000);
    fail(3); // t=190s
    clock.advance(30_000);
    assert.equal(ejected(), false);
  });

  test('max_ejection_time caps the backoff', () => {
    const { clock, ejected, fail } = setup({ maxEjectionTimeMs: 40_000 });
    fail(3);
    clock.advance(30_000);
    fail(3); // would be 60 s, capped at 40 s
    clock.advance(40_000);
    assert.equal(ejected(), false);
  });

  test('jitter (drawn at ejection from the injected random) is added to the ejection time', () => {
    const clock = fakeClock(0);
    // 0.99 → enforcement draw (< 100 %), then jitter = floor(0.99 × 10001) = 9900 ms.
    const p = createClusterPicker(cluster({ outlierDetection: { ...OD, maxEjectionTimeJitterMs: 10_000 } }), {
      clock,
      random: () => 0.99,
    });
    p.updateEndpoints(assignment(IPS.slice(0, 2).map((ip) => endpoint(ip))));
    for (let i = 0; i < 3; i++) p.recordOutcome(A, { kind: 'http', status: 500 });
    const ejected = () => p.hosts().find((h) => h.key === A)!.ejected;
    clock.advance(30_000);
    assert.equal(ejected(), true); // 30 s < 39.9 s
    clock.advance(10_000);
    assert.equal(ejected(), false); // tick at 40 s
  });

  test('max_ejection_percent limits how many hosts may be out', () => {
    const { p } = setup({ maxEjectionPercent: 50 }, 4);
    for (const ip of IPS.slice(0, 4))
      for (let i = 0; i < 3; i++) p.recordOutcome(keyOf(ip), { kind: 'http', status: 503 });
    assert.equal(p.hosts().filter((h) => h.ejected).length, 2);
  });

  test('with Envoy’s default 10 % a small cluster ejects nothing, unless always_eject_one_host', () => {
    const small = setup({ maxEjectionPercent: 10 }, 4);
    small.fail(3);
    assert.equal(small.ejected(), false);
    const one = setup({ maxEjectionPercent: 10, alwaysEjectOneHost: true }, 4);
    one.fail(3);
    assert.equal(one.ejected(), true);
    for (let i = 0; i < 3; i++) one.p.recordOutcome(keyOf('10.0.0.2'), { kind: 'http', status: 500 });
    assert.equal(one.p.hosts().filter((h) => h.ejected).length, 1);
  });

  test('gateway failures count only with enforcement; connect failures are 503s', () => {
    const off = setup({ consecutive5xx: 0, consecutiveGatewayFailure: 2 });
    off.fail(2, 502);
    assert.equal(off.ejected(), false);
    const on = setup({
      consecutive5xx: 0,
      consecutiveGatewayFailure: 2,
      enforcingConsecutiveGatewayFailurePercent: 100,
    });
    on.p.recordOutcome(A, { kind: 'connect-failed' });
    on.p.recordOutcome(A, { kind: 'timeout' });
    assert.equal(on.ejected(), true);
  });

  test('a 500 breaks a run of gateway failures', () => {
    const s = setup({
      consecutive5xx: 0,
      consecutiveGatewayFailure: 2,
      enforcingConsecutiveGatewayFailurePercent: 100,
    });
    s.fail(1, 503);
    s.fail(1, 500);
    s.fail(1, 503);
    assert.equal(s.ejected(), false);
  });

  test('split local-origin errors count apart from HTTP statuses', () => {
    const s = setup({ splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailure: 2 });
    s.p.recordOutcome(A, { kind: 'connect-failed' });
    s.p.recordOutcome(A, { kind: 'connect-success' });
    s.p.recordOutcome(A, { kind: 'connect-failed' });
    assert.equal(s.ejected(), false);
    s.p.recordOutcome(A, { kind: 'reset' });
    assert.equal(s.ejected(), true);
  });

  test('enforcing 0 % detects but never ejects', () => {
    const s = setup({ enforcingConsecutive5xxPercent: 0 });
    s.fail(30);
    assert.equal(s.ejected(), false);
  });

  test('removing outlier detection from the cluster returns ejected hosts', () => {
    const s = setup();
    s.fail(3);
    s.p.updateCluster(cluster({ outlierDetection: undefined }));
    assert.equal(s.ejected(), false);
  });
});

describe('health and panic', () => {
  test('unhealthy hosts get no traffic while enough are healthy', () => {
    const p = picker({}, [
      endpoint('10.0.0.1'),
      endpoint('10.0.0.2'),
      endpoint('10.0.0.3', { health: 'UNHEALTHY' }),
    ]);
    const c = counts(p, 300);
    assert.equal(c.get(keyOf('10.0.0.3')), undefined);
    const r = p.pick();
    assert.ok(r.ok);
    assert.equal(r.panic, false);
  });

  test('below 50 % healthy the picker balances over all hosts (panic)', () => {
    const p = picker({}, [
      endpoint('10.0.0.1'),
      endpoint('10.0.0.2', { health: 'UNHEALTHY' }),
      endpoint('10.0.0.3', { health: 'TIMEOUT' }),
    ]);
    const r = p.pick();
    assert.ok(r.ok && r.panic);
    assert.equal(counts(p, 300).size, 3);
  });

  test('all hosts ejected: panic, everyone is used', () => {
    const clock = fakeClock(0);
    const p = picker(
      { outlierDetection: { ...OD, consecutive5xx: 1 } },
      IPS.slice(0, 2).map((ip) => endpoint(ip)),
      1,
      clock,
    );
    for (const ip of IPS.slice(0, 2)) p.recordOutcome(keyOf(ip), { kind: 'http', status: 500 });
    assert.equal(p.hosts().filter((h) => h.ejected).length, 2);
    const r = p.pick();
    assert.ok(r.ok && r.panic);
  });

  test('healthy_panic_threshold 0 disables panic: no healthy upstream', () => {
    const p = picker({ healthyPanicThresholdPercent: 0 }, [endpoint('10.0.0.1', { health: 'UNHEALTHY' })]);
    assert.deepEqual(p.pick(), { ok: false, reason: 'no-healthy-upstream' });
  });

  test('no endpoints: no healthy upstream', () => {
    assert.deepEqual(picker({}, []).pick(), { ok: false, reason: 'no-healthy-upstream' });
  });

  test('DRAINING hosts are never picked, even in panic', () => {
    const p = picker({}, [
      endpoint('10.0.0.1', { health: 'DRAINING' }),
      endpoint('10.0.0.2', { health: 'UNHEALTHY' }),
    ]);
    const c = counts(p, 100);
    assert.deepEqual([...c.keys()], [keyOf('10.0.0.2')]);
  });

  test('degraded hosts take the load the healthy ones cannot (overprovisioning 1.4)', () => {
    const p = picker({}, [endpoint('10.0.0.1'), endpoint('10.0.0.2', { health: 'DEGRADED' })]);
    const c = counts(p, 10_000);
    // healthy 50 % × 1.4 = 70 % of the load.
    assert.ok(Math.abs((c.get(keyOf('10.0.0.1')) ?? 0) / 10_000 - 0.7) < 0.02, JSON.stringify([...c]));
    const onlyDegraded = picker({}, [endpoint('10.0.0.2', { health: 'DEGRADED' })]);
    assert.equal(pickKey(onlyDegraded), keyOf('10.0.0.2'));
  });
});

describe('endpoint updates', () => {
  test('hosts that remain keep active requests and ejection; new hosts start fresh', () => {
    const clock = fakeClock(0);
    const p = picker(
      { outlierDetection: { ...OD, consecutive5xx: 1 } },
      IPS.slice(0, 3).map((ip) => endpoint(ip)),
      1,
      clock,
    );
    p.startRequest(keyOf('10.0.0.2'));
    p.recordOutcome(keyOf('10.0.0.1'), { kind: 'http', status: 500 });
    p.updateEndpoints(
      assignment([endpoint('10.0.0.1'), endpoint('10.0.0.2', { weight: 2 }), endpoint('10.0.0.9')]),
    );
    const byKey = new Map(p.hosts().map((h) => [h.key, h]));
    assert.equal(byKey.get(keyOf('10.0.0.1'))?.ejected, true);
    assert.equal(byKey.get(keyOf('10.0.0.2'))?.activeRequests, 1);
    assert.equal(byKey.get(keyOf('10.0.0.2'))?.weight, 2);
    assert.equal(byKey.get(keyOf('10.0.0.9'))?.ejected, false);
    assert.equal(byKey.has(keyOf('10.0.0.3')), false);
  });

  test('a retry avoids the hosts already tried', () => {
    const p = picker(
      { lbPolicy: 'RANDOM' },
      IPS.slice(0, 3).map((ip) => endpoint(ip)),
    );
    const avoid = new Set([keyOf('10.0.0.1'), keyOf('10.0.0.2')]);
    for (let i = 0; i < 50; i++) {
      const r = p.pick({ avoid, maxSelectionAttempts: 50 });
      assert.ok(r.ok);
      assert.equal(r.host.key, keyOf('10.0.0.3'));
    }
  });

  test('IPv6 hosts are keyed with brackets', () => {
    const p = picker({}, [endpoint('fd00::1')]);
    assert.equal(pickKey(p), '[fd00::1]:9080');
  });
});
