/**
 * Leader election over a `coordination.k8s.io/v1` Lease, decided as client-go's leaderelection does.
 * Pure: the Lease as read, what this candidate saw before and the time in; what to write out.
 *
 * - No Lease: create it, holding it. Held by us: renew (`renewTime`). Released (no holder): take it.
 * - Held by another: take it over only once it has not changed for its `leaseDurationSeconds`, as
 *   measured on our own clock from when we first saw that version of it — never by comparing its
 *   `renewTime` with our clock, so clock skew between nodes cannot hand the lease over early.
 * - Taking it (from another or after a release) counts a transition (`leaseTransitions`) and sets
 *   `acquireTime`. A write refused with 409 Conflict means someone else wrote first: give up this
 *   round (the I/O side does that).
 * - The holder leads only while its last successful renewal is younger than the lease duration
 *   less one renewal interval: it stops acting before any other candidate may take over.
 */

/** `spec` of a Lease. Times are MicroTime (RFC 3339 with microseconds). */
export interface LeaseSpec {
  readonly holderIdentity?: string;
  readonly leaseDurationSeconds?: number;
  readonly acquireTime?: string;
  readonly renewTime?: string;
  readonly leaseTransitions?: number;
}

export interface LeaseCandidate {
  /** Unique among the candidates: the pod's name. */
  readonly identity: string;
  readonly leaseDurationMs: number;
  /** How often the holder renews, and others retry. */
  readonly renewIntervalMs: number;
}

/** The version of the Lease a candidate saw last and when it first saw it (its own clock). */
export interface LeaseObservation {
  readonly record: string;
  readonly sinceMs: number;
}

export type LeaseDecision =
  | { readonly kind: 'create'; readonly spec: LeaseSpec }
  | { readonly kind: 'acquire'; readonly spec: LeaseSpec }
  | { readonly kind: 'renew'; readonly spec: LeaseSpec }
  | { readonly kind: 'wait'; readonly holder: string; readonly expiresAtMs: number };

/**
 * What to do now. `current`: the Lease's spec, or undefined when there is no Lease. Returns the
 * observation to pass next time.
 */
export function decideLease(
  current: LeaseSpec | undefined,
  candidate: LeaseCandidate,
  observed: LeaseObservation | undefined,
  nowMs: number,
): { decision: LeaseDecision; observed: LeaseObservation | undefined } {
  const now = microTime(nowMs);
  const durationSeconds = Math.max(1, Math.ceil(candidate.leaseDurationMs / 1000));
  const taken: LeaseSpec = {
    holderIdentity: candidate.identity,
    leaseDurationSeconds: durationSeconds,
    acquireTime: now,
    renewTime: now,
  };
  if (current === undefined) {
    return { decision: { kind: 'create', spec: { ...taken, leaseTransitions: 0 } }, observed: undefined };
  }
  const holder = current.holderIdentity ?? '';
  const transitions = current.leaseTransitions ?? 0;
  if (holder === candidate.identity) {
    return {
      decision: {
        kind: 'renew',
        spec: {
          ...current,
          leaseDurationSeconds: durationSeconds,
          renewTime: now,
          leaseTransitions: transitions,
        },
      },
      observed: undefined,
    };
  }
  if (holder === '') {
    return {
      decision: { kind: 'acquire', spec: { ...taken, leaseTransitions: transitions + 1 } },
      observed: undefined,
    };
  }
  const record = JSON.stringify([holder, current.renewTime ?? '', current.acquireTime ?? '', transitions]);
  const seen = observed?.record === record ? observed : { record, sinceMs: nowMs };
  const heldForMs = (current.leaseDurationSeconds ?? durationSeconds) * 1000;
  const expiresAtMs = seen.sinceMs + heldForMs;
  if (nowMs < expiresAtMs) return { decision: { kind: 'wait', holder, expiresAtMs }, observed: seen };
  return {
    decision: { kind: 'acquire', spec: { ...taken, leaseTransitions: transitions + 1 } },
    observed: undefined,
  };
}

/** The spec that gives the Lease up at shutdown, so another candidate takes it at once; undefined if not ours. */
export function releasedLease(
  current: LeaseSpec | undefined,
  candidate: LeaseCandidate,
  nowMs: number,
): LeaseSpec | undefined {
  if (current?.holderIdentity !== candidate.identity) return undefined;
  // As client-go's ReleaseOnCancel: no holder, the shortest duration.
  return { ...current, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime(nowMs) };
}

/** Until when a holder whose last renewal succeeded at `renewedAtMs` may act as the leader. */
export function leadingUntilMs(renewedAtMs: number, candidate: LeaseCandidate): number {
  return renewedAtMs + candidate.leaseDurationMs - candidate.renewIntervalMs;
}

/** A MicroTime: RFC 3339 in UTC with six fractional digits, as the API server writes it. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}
