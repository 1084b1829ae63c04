/**
 * Per-cluster upstream choice for the waypoint (issue 5): load balancing over the cluster's
 * endpoints, circuit breakers and passive outlier detection, following Envoy's semantics for the
 * Cluster fields the controller sets (l7-model.ts). No I/O: time comes from the injected clock,
 * randomness from the injected source; outlier-detection interval ticks are processed lazily, on
 * the next call after they fall due, exactly as a timer at each interval would have.
 *
 * - Hosts: EDS UNKNOWN/HEALTHY are healthy, DEGRADED degraded, UNHEALTHY/TIMEOUT unhealthy,
 *   DRAINING excluded; an ejected host is unhealthy. Healthy hosts take the load, degraded ones the
 *   rest by Envoy's overprovisioning factor; when healthy + degraded fall below
 *   `healthy_panic_threshold` (default 50 %) the picker balances over every non-excluded host.
 * - ROUND_ROBIN (smooth weighted when weights differ), LEAST_REQUEST (power of `choice_count`
 *   choices over active requests; weighted: smooth weighted round robin over weight ÷ (active + 1)),
 *   RANDOM (uniform), RING_HASH, MAGLEV (Envoy's table population with xxHash offsets/skips).
 * - RING_HASH: each host contributes `weight × minimum_ring_size` points (fewer, uniformly, only if
 *   the ring would exceed `min(maximum_ring_size, 2^20)`), derived from its address alone. So a key
 *   keeps its host while the host set is stable, and removing, ejecting or failing a host moves only
 *   the keys that host had. (Envoy instead scales per-host points so the whole ring is about
 *   `minimum_ring_size`, which remaps some keys between surviving hosts.)
 * - Circuit breakers are cluster-wide counters; an overflow is a value, and for pending requests
 *   and requests the caller answers 503 with `x-envoy-overloaded: true`, as Envoy does.
 * - Outlier detection: consecutive 5xx, consecutive gateway failures (502/503/504) and, when split,
 *   consecutive local-origin failures; ejection for min(base × backoff, max) (+ jitter), with
 *   max_ejection_percent (or always_eject_one_host), enforcement percentages, un-ejection and
 *   backoff decay at interval ticks.
 * - Endpoint updates keep the state (active requests, counters, ejection) of hosts that remain.
 */
import type { Clock } from '../core/clock.ts';
import {
  endpointKey,
  type Cluster,
  type ClusterLoadAssignment,
  type HealthStatus,
  type LbEndpoint,
  type OutlierDetection,
} from '../core/xds/l7-model.ts';
import type { Random } from './router.ts';
import { xxHash64 } from './xxhash64.ts';

export interface PickerDeps {
  /** Time for ejections and interval ticks. */
  readonly clock: Pick<Clock, 'nowMs'>;
  /** Randomness for choices, enforcement percentages and jitter. */
  readonly random: Random;
}

/** What the caller may see of a host. */
export interface HostView {
  /** `ip:port` (IPv6 in brackets). */
  readonly key: string;
  /** IP address to connect to (over HBONE). */
  readonly address: string;
  /** Target port. */
  readonly port: number;
  /** Load-balancing weight from EDS. */
  readonly weight: number;
  /** Health status from EDS. */
  readonly health: HealthStatus;
  /** Ejected by outlier detection right now. */
  readonly ejected: boolean;
  /** Requests in flight (as counted by startRequest). */
  readonly activeRequests: number;
  /** Times outlier detection has ejected this host. */
  readonly ejections: number;
}

export interface PickOptions {
  /** Consistent-hash key (RING_HASH, MAGLEV); without one those policies pick at random. */
  readonly hashKey?: bigint;
  /** Retry attempt number (0 first try): hash policies then look past the first choice. */
  readonly attempt?: number;
  /** Hosts a retry should avoid (`previous_hosts`), and how many picks to spend avoiding them. */
  readonly avoid?: ReadonlySet<string>;
  /** Picks to spend avoiding `avoid` (the retry policy's host_selection_retry_max_attempts). */
  readonly maxSelectionAttempts?: number;
}

export type PickResult =
  | { readonly ok: true; readonly host: HostView; readonly panic: boolean }
  /** Envoy answers 503 `no healthy upstream`. */
  | { readonly ok: false; readonly reason: 'no-healthy-upstream' };

export const Resource = {
  Connections: 'connections',
  PendingRequests: 'pending-requests',
  Requests: 'requests',
  Retries: 'retries',
} as const;
export type Resource = (typeof Resource)[keyof typeof Resource];

/**
 * A circuit-breaker slot, or the limit that overflowed. An overflow of pending requests or
 * requests is answered 503 with OVERLOADED_HEADER; of retries, by not retrying; of connections, by
 * queueing the request as pending.
 */
export type Acquired =
  { readonly ok: true; readonly release: () => void } | { readonly ok: false; readonly overflow: Resource };

export const OVERLOADED_HEADER = ['x-envoy-overloaded', 'true'] as const;

/** What happened to one upstream request, for outlier detection. */
export type UpstreamOutcome =
  | { readonly kind: 'http'; readonly status: number }
  | { readonly kind: 'connect-failed' }
  /** The stream or connection was reset before a response. */
  | { readonly kind: 'reset' }
  | { readonly kind: 'timeout' }
  /** The connection was established (counts only with split local-origin errors). */
  | { readonly kind: 'connect-success' };

interface HostState {
  endpoint: LbEndpoint;
  readonly key: string;
  active: number;
  consecutive5xx: number;
  consecutiveGatewayFailure: number;
  consecutiveLocalOriginFailure: number;
  ejected: boolean;
  ejections: number;
  ejectTimeBackoff: number;
  lastEjectionMs: number;
  lastUnejectionMs: number | undefined;
  jitterMs: number;
  /** 32-bit hash of the key, seed for ring points. */
  readonly seed: number;
  ringPoints: Uint32Array | undefined;
  maglev: { readonly size: number; readonly offset: number; readonly skip: number } | undefined;
}

type SetKind = 'healthy' | 'degraded' | 'all';

interface HostSet {
  readonly hosts: readonly HostState[];
  rrIndex: number;
  readonly smooth: Map<HostState, number>;
  ring: { readonly packed: Float64Array } | undefined;
  maglev: Int32Array | undefined;
}

/** Ring points are packed as `position × 2^20 + host index` in one double, sorted natively. */
const HOST_INDEX_BITS = 2 ** 20;
const RING_POINT_CAP = 2 ** 20;

export interface ClusterPicker {
  /** The cluster configuration changed: new limits and policy; per-host state is kept. */
  updateCluster(cluster: Cluster): void;
  /** New endpoints (EDS); hosts that remain keep their state. */
  updateEndpoints(assignment: ClusterLoadAssignment): void;
  /** Chooses a host for one request (or retry). */
  pick(options?: PickOptions): PickResult;
  /** Counts an active request on a host (LEAST_REQUEST reads it); call the result when it ends. */
  startRequest(hostKey: string): () => void;
  /** Takes a circuit-breaker slot, or reports the overflow. */
  tryAcquire(resource: Resource): Acquired;
  /** Feeds outlier detection with the result of a request to a host. */
  recordOutcome(hostKey: string, outcome: UpstreamOutcome): void;
  /** Every host and its state (for the admin page and tests). */
  hosts(): readonly HostView[];
  /** Circuit-breaker occupancy. */
  usage(): Readonly<Record<Resource, number>>;
}

export function createClusterPicker(cluster: Cluster, deps: PickerDeps): ClusterPicker {
  return new Picker(cluster, deps);
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (!done) {
      done = true;
      fn();
    }
  };
}

class Picker implements ClusterPicker {
  private cluster: Cluster;
  private readonly deps: PickerDeps;
  private readonly states = new Map<string, HostState>();
  private overprovisioningFactor = 140;
  private sets: Map<SetKind, HostSet> | undefined;
  private nextTickMs: number;
  private readonly inUse: Record<Resource, number> = {
    connections: 0,
    'pending-requests': 0,
    requests: 0,
    retries: 0,
  };

  constructor(cluster: Cluster, deps: PickerDeps) {
    this.cluster = cluster;
    this.deps = deps;
    this.nextTickMs = deps.clock.nowMs() + (cluster.outlierDetection?.intervalMs ?? 0);
  }

  updateCluster(cluster: Cluster): void {
    this.advance();
    const hadOutlier = this.cluster.outlierDetection;
    this.cluster = cluster;
    const od = cluster.outlierDetection;
    if (!od) {
      for (const h of this.states.values()) this.resetOutlier(h);
    } else if (!hadOutlier || hadOutlier.intervalMs !== od.intervalMs) {
      this.nextTickMs = this.deps.clock.nowMs() + od.intervalMs;
    }
    for (const h of this.states.values()) {
      h.ringPoints = undefined;
      h.maglev = undefined;
    }
    this.sets = undefined;
  }

  updateEndpoints(assignment: ClusterLoadAssignment): void {
    this.advance();
    this.overprovisioningFactor = assignment.overprovisioningFactor;
    const next = new Map<string, HostState>();
    for (const e of assignment.endpoints) {
      const key = endpointKey(e);
      const old = this.states.get(key);
      if (old) {
        if (old.endpoint.weight !== e.weight) old.ringPoints = undefined;
        old.endpoint = e;
        next.set(key, old);
      } else next.set(key, newHost(e, key));
    }
    this.states.clear();
    for (const [k, v] of next) this.states.set(k, v);
    this.sets = undefined;
  }

  pick(options: PickOptions = {}): PickResult {
    this.advance();
    const sets = this.hostSets();
    const all = sets.get('all')!;
    if (all.hosts.length === 0) return { ok: false, reason: 'no-healthy-upstream' };
    const healthy = sets.get('healthy')!;
    const degraded = sets.get('degraded')!;
    const total = all.hosts.length;
    const panic =
      (100 * (healthy.hosts.length + degraded.hosts.length)) / total <
      this.cluster.healthyPanicThresholdPercent;
    let set: HostSet;
    if (panic) set = all;
    else if (degraded.hosts.length === 0) set = healthy;
    else if (healthy.hosts.length === 0) set = degraded;
    else {
      // Envoy's priority load: each set's availability scaled by the overprovisioning factor.
      const of = this.overprovisioningFactor / 100;
      const h = Math.min(100, (of * 100 * healthy.hosts.length) / total);
      const d = Math.min(100, (of * 100 * degraded.hosts.length) / total);
      const healthyLoad = Math.min(100, Math.round((h * 100) / Math.min(100, h + d)));
      const draw =
        options.hashKey !== undefined ? Number(options.hashKey % 100n) : Math.floor(this.deps.random() * 100);
      set = draw < healthyLoad ? healthy : degraded;
    }
    if (set.hosts.length === 0) return { ok: false, reason: 'no-healthy-upstream' };
    const tries = Math.max(1, options.avoid ? (options.maxSelectionAttempts ?? 1) : 1);
    let host = this.choose(set, options.hashKey, options.attempt ?? 0);
    for (let i = 1; i < tries && options.avoid?.has(host.key); i++) {
      host = this.choose(set, options.hashKey, (options.attempt ?? 0) + i);
    }
    return { ok: true, host: view(host), panic };
  }

  startRequest(hostKey: string): () => void {
    const h = this.states.get(hostKey);
    if (!h) return () => undefined;
    h.active++;
    return once(() => {
      h.active--;
    });
  }

  tryAcquire(resource: Resource): Acquired {
    const cb = this.cluster.circuitBreakers;
    const limit = {
      connections: cb.maxConnections,
      'pending-requests': cb.maxPendingRequests,
      requests: cb.maxRequests,
      retries: cb.maxRetries,
    }[resource];
    if (this.inUse[resource] >= limit) return { ok: false, overflow: resource };
    this.inUse[resource]++;
    return {
      ok: true,
      release: once(() => {
        this.inUse[resource]--;
      }),
    };
  }

  recordOutcome(hostKey: string, outcome: UpstreamOutcome): void {
    this.advance();
    const od = this.cluster.outlierDetection;
    const h = this.states.get(hostKey);
    if (!od || !h) return;
    if (od.splitExternalLocalOriginErrors) {
      if (outcome.kind === 'http') this.putHttpStatus(h, od, outcome.status);
      else if (outcome.kind === 'connect-success') h.consecutiveLocalOriginFailure = 0;
      else if (++h.consecutiveLocalOriginFailure === od.consecutiveLocalOriginFailure) {
        this.onConsecutiveError(h, od, 'local-origin');
      }
      return;
    }
    const status =
      outcome.kind === 'http'
        ? outcome.status
        : outcome.kind === 'timeout'
          ? 504
          : outcome.kind === 'connect-success'
            ? undefined
            : 503;
    if (status !== undefined) this.putHttpStatus(h, od, status);
  }

  hosts(): readonly HostView[] {
    this.advance();
    return [...this.states.values()].map(view);
  }

  usage(): Readonly<Record<Resource, number>> {
    return { ...this.inUse };
  }

  // ---------- outlier detection ----------

  private putHttpStatus(h: HostState, od: OutlierDetection, status: number): void {
    if (status >= 500 && status <= 599) {
      if (status === 502 || status === 503 || status === 504) {
        if (++h.consecutiveGatewayFailure === od.consecutiveGatewayFailure) {
          this.onConsecutiveError(h, od, 'gateway');
        }
      } else h.consecutiveGatewayFailure = 0;
      if (++h.consecutive5xx === od.consecutive5xx) this.onConsecutiveError(h, od, '5xx');
    } else {
      h.consecutive5xx = 0;
      h.consecutiveGatewayFailure = 0;
    }
  }

  private onConsecutiveError(
    h: HostState,
    od: OutlierDetection,
    type: '5xx' | 'gateway' | 'local-origin',
  ): void {
    if (h.ejected) return;
    const enforcing =
      type === '5xx'
        ? od.enforcingConsecutive5xxPercent
        : type === 'gateway'
          ? od.enforcingConsecutiveGatewayFailurePercent
          : od.enforcingConsecutiveLocalOriginFailurePercent;
    const active = [...this.states.values()].filter((x) => x.ejected).length;
    const percent = (100 * (active + 1)) / this.states.size;
    const allowed = percent <= od.maxEjectionPercent || (od.alwaysEjectOneHost && active === 0);
    if (allowed && Math.floor(this.deps.random() * 100) < enforcing) this.eject(h, od);
    // Reset the counter that fired, so a new run of errors can be detected.
    if (type === '5xx') h.consecutive5xx = 0;
    else if (type === 'gateway') h.consecutiveGatewayFailure = 0;
    else h.consecutiveLocalOriginFailure = 0;
  }

  private eject(h: HostState, od: OutlierDetection): void {
    h.ejected = true;
    h.ejections++;
    h.lastEjectionMs = this.deps.clock.nowMs();
    if (h.ejectTimeBackoff * od.baseEjectionTimeMs < od.maxEjectionTimeMs + od.baseEjectionTimeMs) {
      h.ejectTimeBackoff++;
    }
    h.jitterMs =
      od.maxEjectionTimeJitterMs > 0 ? Math.floor(this.deps.random() * (od.maxEjectionTimeJitterMs + 1)) : 0;
    this.sets = undefined;
  }

  private resetOutlier(h: HostState): void {
    if (h.ejected) this.sets = undefined;
    h.ejected = false;
    h.ejectTimeBackoff = 0;
    h.consecutive5xx = 0;
    h.consecutiveGatewayFailure = 0;
    h.consecutiveLocalOriginFailure = 0;
  }

  /** Runs every interval tick that is due. */
  private advance(): void {
    const od = this.cluster.outlierDetection;
    if (!od) return;
    const now = this.deps.clock.nowMs();
    while (now >= this.nextTickMs) {
      const quiet = [...this.states.values()].every((h) => !h.ejected && h.ejectTimeBackoff === 0);
      if (quiet) {
        // Nothing for the remaining ticks to do: jump to the first one after now.
        this.nextTickMs += Math.ceil((now - this.nextTickMs + 1) / od.intervalMs) * od.intervalMs;
        return;
      }
      this.tick(this.nextTickMs, od);
      this.nextTickMs += od.intervalMs;
    }
  }

  private tick(t: number, od: OutlierDetection): void {
    for (const h of this.states.values()) {
      if (!h.ejected) {
        if (
          h.lastUnejectionMs !== undefined &&
          t - h.lastUnejectionMs >= od.intervalMs &&
          h.ejectTimeBackoff > 0
        ) {
          h.ejectTimeBackoff--;
        }
        continue;
      }
      const ejectFor =
        Math.min(od.baseEjectionTimeMs * h.ejectTimeBackoff, od.maxEjectionTimeMs) + h.jitterMs;
      if (ejectFor <= t - h.lastEjectionMs) {
        h.ejected = false;
        h.consecutive5xx = 0;
        h.consecutiveGatewayFailure = 0;
        h.consecutiveLocalOriginFailure = 0;
        h.lastUnejectionMs = t;
        this.sets = undefined;
      }
    }
  }

  // ---------- host sets and load balancing ----------

  private hostSets(): Map<SetKind, HostSet> {
    if (!this.sets) {
      const sorted = [...this.states.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      const make = (hosts: HostState[]): HostSet => ({
        hosts,
        rrIndex: hosts.length ? Math.floor(this.deps.random() * hosts.length) : 0,
        smooth: new Map(),
        ring: undefined,
        maglev: undefined,
      });
      const usable = sorted.filter((h) => h.endpoint.health !== 'DRAINING');
      this.sets = new Map([
        ['all', make(usable)],
        ['healthy', make(usable.filter((h) => !h.ejected && isHealthy(h.endpoint.health)))],
        ['degraded', make(usable.filter((h) => !h.ejected && h.endpoint.health === 'DEGRADED'))],
      ]);
    }
    return this.sets;
  }

  private choose(set: HostSet, hashKey: bigint | undefined, attempt: number): HostState {
    const hosts = set.hosts;
    const random = this.deps.random;
    switch (this.cluster.lbPolicy) {
      case 'RANDOM':
        return hosts[Math.floor(random() * hosts.length)]!;
      case 'ROUND_ROBIN':
        if (allEqualWeights(hosts)) return hosts[set.rrIndex++ % hosts.length]!;
        return smoothWeighted(set, (h) => h.endpoint.weight);
      case 'LEAST_REQUEST': {
        if (!allEqualWeights(hosts)) return smoothWeighted(set, (h) => h.endpoint.weight / (h.active + 1));
        let best: HostState | undefined;
        for (let i = 0; i < this.cluster.leastRequestChoiceCount; i++) {
          const candidate = hosts[Math.floor(random() * hosts.length)]!;
          if (!best || candidate.active < best.active) best = candidate;
        }
        return best!;
      }
      case 'RING_HASH':
        return this.ringChoose(set, hashKey ?? this.randomHash(), attempt);
      case 'MAGLEV': {
        let hash = hashKey ?? this.randomHash();
        if (attempt > 0) hash = xxHash64(`${hash}:${attempt}`);
        return this.maglevChoose(set, hash);
      }
    }
  }

  private randomHash(): bigint {
    const r = this.deps.random;
    return (BigInt(Math.floor(r() * 2 ** 32)) << 32n) | BigInt(Math.floor(r() * 2 ** 32));
  }

  private ringChoose(set: HostSet, hash: bigint, attempt: number): HostState {
    if (!set.ring) set.ring = this.buildRing(set.hosts);
    const packed = set.ring.packed;
    const target = Number(hash >> 32n) * HOST_INDEX_BITS;
    // First point at or after the key's position, wrapping around (ketama).
    let lo = 0;
    let hi = packed.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (packed[mid]! < target) lo = mid + 1;
      else hi = mid;
    }
    const index = (lo + attempt) % packed.length;
    return set.hosts[packed[index]! % HOST_INDEX_BITS]!;
  }

  private buildRing(hosts: readonly HostState[]): { packed: Float64Array } {
    const { minimumRingSize, maximumRingSize } = this.cluster.ringHash;
    const totalWeight = hosts.reduce((s, h) => s + h.endpoint.weight, 0);
    const cap = Math.min(maximumRingSize, RING_POINT_CAP);
    const perWeight =
      totalWeight * minimumRingSize <= cap ? minimumRingSize : Math.max(1, Math.floor(cap / totalWeight));
    let size = 0;
    for (const h of hosts) {
      const n = h.endpoint.weight * perWeight;
      if (!h.ringPoints || h.ringPoints.length !== n) {
        const points = new Uint32Array(n);
        for (let j = 0; j < n; j++) points[j] = fmix32((h.seed + Math.imul(j, 0x9e3779b9)) | 0);
        h.ringPoints = points;
      }
      size += n;
    }
    const packed = new Float64Array(size);
    let k = 0;
    hosts.forEach((h, i) => {
      for (const p of h.ringPoints!) packed[k++] = p * HOST_INDEX_BITS + i;
    });
    packed.sort();
    return { packed };
  }

  private maglevChoose(set: HostSet, hash: bigint): HostState {
    const size = this.cluster.maglevTableSize;
    if (!set.maglev) set.maglev = this.buildMaglev(set.hosts, size);
    return set.hosts[set.maglev[Number(hash % BigInt(size))]!]!;
  }

  /** Envoy's weighted Maglev table population. */
  private buildMaglev(hosts: readonly HostState[], size: number): Int32Array {
    const table = new Int32Array(size).fill(-1);
    const maxWeight = Math.max(...hosts.map((h) => h.endpoint.weight));
    const entries = hosts.map((h, i) => {
      if (!h.maglev || h.maglev.size !== size) {
        h.maglev = {
          size,
          offset: Number(xxHash64(h.key) % BigInt(size)),
          skip: Number(xxHash64(h.key, 1n) % BigInt(size - 1)) + 1,
        };
      }
      return { index: i, ...h.maglev, weight: h.endpoint.weight / maxWeight, target: 0, next: 0 };
    });
    let filled = 0;
    for (let iteration = 1; filled < size; iteration++) {
      for (const e of entries) {
        if (filled >= size) break;
        if (iteration * e.weight < e.target) continue;
        e.target += 1;
        let c = (e.offset + e.skip * e.next) % size;
        while (table[c] !== -1) {
          e.next++;
          c = (e.offset + e.skip * e.next) % size;
        }
        table[c] = e.index;
        e.next++;
        filled++;
      }
    }
    return table;
  }
}

function newHost(endpoint: LbEndpoint, key: string): HostState {
  return {
    endpoint,
    key,
    active: 0,
    consecutive5xx: 0,
    consecutiveGatewayFailure: 0,
    consecutiveLocalOriginFailure: 0,
    ejected: false,
    ejections: 0,
    ejectTimeBackoff: 0,
    lastEjectionMs: 0,
    lastUnejectionMs: undefined,
    jitterMs: 0,
    seed: Number(xxHash64(key) & 0xffffffffn),
    ringPoints: undefined,
    maglev: undefined,
  };
}

function isHealthy(h: HealthStatus): boolean {
  return h === 'UNKNOWN' || h === 'HEALTHY';
}

function allEqualWeights(hosts: readonly HostState[]): boolean {
  return hosts.every((h) => h.endpoint.weight === hosts[0]!.endpoint.weight);
}

/** nginx's smooth weighted round robin (what Envoy's EDF scheduler approximates). */
function smoothWeighted(set: HostSet, weightOf: (h: HostState) => number): HostState {
  let total = 0;
  let best: HostState | undefined;
  let bestCurrent = -Infinity;
  for (const h of set.hosts) {
    const w = weightOf(h);
    total += w;
    const current = (set.smooth.get(h) ?? 0) + w;
    set.smooth.set(h, current);
    if (current > bestCurrent) {
      best = h;
      bestCurrent = current;
    }
  }
  set.smooth.set(best!, bestCurrent - total);
  return best!;
}

function view(h: HostState): HostView {
  return {
    key: h.key,
    address: h.endpoint.address,
    port: h.endpoint.port,
    weight: h.endpoint.weight,
    health: h.endpoint.health,
    ejected: h.ejected,
    activeRequests: h.active,
    ejections: h.ejections,
  };
}
