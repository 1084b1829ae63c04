/**
 * Issue 7 part 2: leader election decisions over a coordination.k8s.io/v1 Lease, as client-go makes
 * them: create, renew, take a released Lease, wait out another holder's Lease on our own clock, and
 * stop acting before anyone else may take over.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  decideLease,
  leadingUntilMs,
  microTime,
  releasedLease,
  type LeaseCandidate,
  type LeaseObservation,
  type LeaseSpec,
} from '../../../src/controller/reconcile/lease.ts';

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const ME: LeaseCandidate = {
  identity: 'ambit-controller-a',
  leaseDurationMs: 15_000,
  renewIntervalMs: 5_000,
};
const held = (holder: string, extra: LeaseSpec = {}): LeaseSpec => ({
  holderIdentity: holder,
  leaseDurationSeconds: 15,
  acquireTime: '2025-12-31T23:00:00.000000Z',
  renewTime: '2025-12-31T23:59:59.000000Z',
  leaseTransitions: 4,
  ...extra,
});

test('microTime: six fractional digits, UTC', () => {
  assert.equal(microTime(T0 + 123), '2026-01-01T00:00:00.123000Z');
});

test('decisions by the Lease as read', () => {
  const cases: { name: string; current: LeaseSpec | undefined; want: { kind: string; spec?: LeaseSpec } }[] =
    [
      {
        name: 'no Lease: create it, holding it',
        current: undefined,
        want: {
          kind: 'create',
          spec: {
            holderIdentity: ME.identity,
            leaseDurationSeconds: 15,
            acquireTime: microTime(T0),
            renewTime: microTime(T0),
            leaseTransitions: 0,
          },
        },
      },
      {
        name: 'ours: renew, keeping acquireTime and the transitions',
        current: held(ME.identity),
        want: { kind: 'renew', spec: { ...held(ME.identity), renewTime: microTime(T0) } },
      },
      {
        name: 'released (no holder): take it at once, one more transition',
        current: held(''),
        want: {
          kind: 'acquire',
          spec: {
            holderIdentity: ME.identity,
            leaseDurationSeconds: 15,
            acquireTime: microTime(T0),
            renewTime: microTime(T0),
            leaseTransitions: 5,
          },
        },
      },
      {
        name: "another's, first seen now: wait, however old its renewTime (our clock, not theirs)",
        current: held('ambit-controller-b'),
        want: { kind: 'wait' },
      },
    ];
  for (const c of cases) {
    const { decision } = decideLease(c.current, ME, undefined, T0);
    assert.equal(decision.kind, c.want.kind, c.name);
    if (c.want.spec) assert.deepEqual('spec' in decision && decision.spec, c.want.spec, c.name);
  }
});

test("another's Lease is taken only after it has not changed for its whole duration", () => {
  const theirs = held('ambit-controller-b', { leaseDurationSeconds: 10 });
  let observed: LeaseObservation | undefined;
  const at = (ms: number, lease = theirs) => {
    const r = decideLease(lease, ME, observed, T0 + ms);
    observed = r.observed;
    return r.decision;
  };
  const first = at(0);
  assert.deepEqual(first, { kind: 'wait', holder: 'ambit-controller-b', expiresAtMs: T0 + 10_000 });
  assert.equal(at(9_999).kind, 'wait');
  // The holder renews: the wait starts again from when we see the new version.
  const renewed = { ...theirs, renewTime: '2026-01-01T00:00:09.000000Z' };
  assert.deepEqual(at(9_999, renewed), {
    kind: 'wait',
    holder: 'ambit-controller-b',
    expiresAtMs: T0 + 19_999,
  });
  assert.equal(at(19_998, renewed).kind, 'wait');
  const taken = at(19_999, renewed);
  assert.equal(taken.kind, 'acquire');
  assert.deepEqual('spec' in taken && taken.spec, {
    holderIdentity: ME.identity,
    leaseDurationSeconds: 15,
    acquireTime: microTime(T0 + 19_999),
    renewTime: microTime(T0 + 19_999),
    leaseTransitions: 5,
  });
});

test('a lease duration under a second still counts a whole second', () => {
  const { decision } = decideLease(undefined, { ...ME, leaseDurationMs: 400 }, undefined, T0);
  assert.equal('spec' in decision && decision.spec.leaseDurationSeconds, 1);
});

test('release: only our own Lease, with no holder and the shortest duration', () => {
  assert.equal(releasedLease(held('someone-else'), ME, T0), undefined);
  assert.equal(releasedLease(undefined, ME, T0), undefined);
  assert.deepEqual(releasedLease(held(ME.identity), ME, T0), {
    ...held(ME.identity),
    holderIdentity: '',
    leaseDurationSeconds: 1,
    renewTime: microTime(T0),
  });
  // Another candidate takes a released Lease at once.
  assert.equal(
    decideLease(releasedLease(held(ME.identity), ME, T0), { ...ME, identity: 'b' }, undefined, T0).decision
      .kind,
    'acquire',
  );
});

test('the holder stops acting a renewal interval before the others may take over', () => {
  assert.equal(leadingUntilMs(T0, ME), T0 + 10_000);
  assert.ok(leadingUntilMs(T0, ME) < T0 + ME.leaseDurationMs);
});
