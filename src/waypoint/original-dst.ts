/**
 * The picker of an ORIGINAL_DST cluster (issue 5: a workload waypoint's `encap`), as Envoy's
 * original-destination load balancer behaves: the cluster has no endpoints of its own; each
 * connection or request goes to the original destination of the tunnel it came in on (the CONNECT
 * authority `<podIP>:<port>`), which becomes a host of the cluster on first use. Hosts share the
 * cluster's circuit breakers and keep their own state (active requests) like any other; a host no
 * connection has used for `cleanup_interval` and with nothing in flight is forgotten at the next
 * sweep. Pure: time from the injected clock.
 */
import type { Cluster, ClusterLoadAssignment, LbEndpoint } from '../core/xds/l7-model.ts';
import { endpointKey, HealthStatus } from '../core/xds/l7-model.ts';
import {
  createClusterPicker,
  type Acquired,
  type ClusterPicker,
  type HostView,
  type PickResult,
  type PickerDeps,
  type Resource,
  type UpstreamOutcome,
} from './cluster-picker.ts';

/** Where a tunnel was going: its CONNECT authority. */
export interface OriginalDestination {
  readonly address: string;
  readonly port: number;
}

export class OriginalDstPicker implements ClusterPicker {
  private readonly inner: ClusterPicker;
  private readonly deps: PickerDeps;
  private cluster: Cluster;
  private readonly lastUsedMs = new Map<string, number>();
  private readonly endpoints = new Map<string, LbEndpoint>();
  private lastSweepMs: number;

  constructor(cluster: Cluster, deps: PickerDeps) {
    this.cluster = cluster;
    this.deps = deps;
    this.inner = createClusterPicker(cluster, deps);
    this.inner.updateEndpoints(this.assignment());
    this.lastSweepMs = deps.clock.nowMs();
  }

  /** The view one connection uses: its pick is always its own original destination. */
  forDestination(dst: OriginalDestination): ClusterPicker {
    this.sweep();
    const key = endpointKey(dst);
    this.lastUsedMs.set(key, this.deps.clock.nowMs());
    if (!this.endpoints.has(key)) {
      this.endpoints.set(key, {
        address: dst.address,
        port: dst.port,
        health: HealthStatus.Healthy,
        weight: 1,
        hostname: '',
      });
      this.inner.updateEndpoints(this.assignment());
    }
    const pick = (): PickResult => {
      const host = this.inner.hosts().find((h) => h.key === key);
      return host ? { ok: true, host, panic: false } : { ok: false, reason: 'no-healthy-upstream' };
    };
    return {
      updateCluster: (c) => this.updateCluster(c),
      updateEndpoints: () => undefined,
      pick,
      startRequest: (k) => this.startRequest(k),
      tryAcquire: (r) => this.tryAcquire(r),
      recordOutcome: (k, o) => this.recordOutcome(k, o),
      hosts: () => this.hosts(),
      usage: () => this.usage(),
    };
  }

  updateCluster(cluster: Cluster): void {
    this.cluster = cluster;
    this.inner.updateCluster(cluster);
  }

  /** Endpoints come from connections, never from EDS. */
  updateEndpoints(_assignment: ClusterLoadAssignment): void {}

  /** Without a destination there is nothing to pick (a route to this cluster from a service). */
  pick(): PickResult {
    return { ok: false, reason: 'no-healthy-upstream' };
  }

  startRequest(hostKey: string): () => void {
    const end = this.inner.startRequest(hostKey);
    return () => {
      // In use until the last request ends: the cleanup interval counts from then.
      if (this.lastUsedMs.has(hostKey)) this.lastUsedMs.set(hostKey, this.deps.clock.nowMs());
      end();
    };
  }

  tryAcquire(resource: Resource): Acquired {
    return this.inner.tryAcquire(resource);
  }

  recordOutcome(hostKey: string, outcome: UpstreamOutcome): void {
    this.inner.recordOutcome(hostKey, outcome);
  }

  hosts(): readonly HostView[] {
    return this.inner.hosts();
  }

  usage(): Readonly<Record<Resource, number>> {
    return this.inner.usage();
  }

  /** Forgets hosts idle for a whole cleanup interval, at most once per interval. */
  private sweep(): void {
    const now = this.deps.clock.nowMs();
    const interval = this.cluster.originalDst?.cleanupIntervalMs ?? 0;
    if (interval <= 0 || now - this.lastSweepMs < interval) return;
    this.lastSweepMs = now;
    const active = new Map(this.inner.hosts().map((h) => [h.key, h.activeRequests]));
    let changed = false;
    for (const [key, used] of this.lastUsedMs) {
      if (now - used < interval || (active.get(key) ?? 0) > 0) continue;
      this.lastUsedMs.delete(key);
      this.endpoints.delete(key);
      changed = true;
    }
    if (changed) this.inner.updateEndpoints(this.assignment());
  }

  private assignment(): ClusterLoadAssignment {
    return {
      clusterName: this.cluster.name,
      endpoints: [...this.endpoints.values()],
      overprovisioningFactor: 140,
    };
  }
}
