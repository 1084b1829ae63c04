/**
 * The waypoint's L7 configuration in force: the decoded Listeners, RouteConfigurations, Clusters and
 * ClusterLoadAssignments (l7-model.ts), turned into what the data path reads — one compiled route
 * table per HTTP listener (a TCP listener carries its weighted clusters itself) and one cluster
 * picker per cluster.
 *
 * - A route table is compiled again only when its listener or its route configuration changed (a
 *   listener whose route configuration has not arrived has no table: requests get 404, as Envoy's
 *   RDS-warming listener would answer).
 * - A cluster's picker lives as long as the cluster does: a changed Cluster is `updateCluster`, a
 *   changed ClusterLoadAssignment `updateEndpoints`, so hosts that remain keep their active-request
 *   counts, outlier state and circuit-breaker occupancy.
 *
 * Updates replace one resource type's whole set (as the Delta ADS client hands them over) or
 * upsert and remove single resources (the Bound's test hook). No I/O.
 */
import type { L7RbacFilter } from '../core/policy/l7.ts';
import type { Cluster, ClusterLoadAssignment, L7Listener, RouteConfiguration } from '../core/xds/l7-model.ts';
import { createClusterPicker, type ClusterPicker, type PickerDeps } from './cluster-picker.ts';
import { OriginalDstPicker, type OriginalDestination } from './original-dst.ts';
import { compileRouteTable, type RouteTable } from './router.ts';

/** The four resource kinds, by what they hold. */
export interface L7Values {
  readonly listener: L7Listener;
  readonly 'route-configuration': RouteConfiguration;
  readonly cluster: Cluster;
  readonly 'cluster-load-assignment': ClusterLoadAssignment;
}
export type L7Kind = keyof L7Values;

interface TableEntry {
  readonly listener: L7Listener;
  readonly routes: RouteConfiguration;
  readonly table: RouteTable;
}

interface ClusterEntry {
  cluster: Cluster;
  assignment: ClusterLoadAssignment | undefined;
  readonly picker: ClusterPicker;
}

export class L7State {
  private readonly deps: PickerDeps;
  private readonly listeners = new Map<string, L7Listener>();
  private readonly routeConfigurations = new Map<string, RouteConfiguration>();
  private readonly clusterDefs = new Map<string, Cluster>();
  private readonly assignments = new Map<string, ClusterLoadAssignment>();
  private readonly tables = new Map<string, TableEntry>();
  private readonly clusters = new Map<string, ClusterEntry>();
  private generation = 0;

  constructor(deps: PickerDeps) {
    this.deps = deps;
  }

  /** Replaces every resource of a kind (the Delta ADS client's whole current set). */
  replace<K extends L7Kind>(kind: K, values: ReadonlyMap<string, L7Values[K]>): void {
    const target = this.store(kind);
    target.clear();
    for (const [name, v] of values) target.set(name, v);
    this.rebuild(kind);
  }

  /** Adds or replaces some resources of a kind and removes others by name. */
  update<K extends L7Kind>(
    kind: K,
    upserts: ReadonlyMap<string, L7Values[K]>,
    removed: readonly string[] = [],
  ): void {
    const target = this.store(kind);
    for (const name of removed) target.delete(name);
    for (const [name, v] of upserts) target.set(name, v);
    this.rebuild(kind);
  }

  /** The current value of one resource (to keep it when its update is rejected). */
  get<K extends L7Kind>(kind: K, name: string): L7Values[K] | undefined {
    return this.store(kind).get(name);
  }

  /** The compiled routes of a listener (`<hostname>:<port>`); undefined while it has none. */
  routeTable(listenerName: string): RouteTable | undefined {
    return this.tables.get(listenerName)?.table;
  }

  hasListener(name: string): boolean {
    return this.listeners.has(name);
  }

  /** A listener by name (`<hostname>:<port>`): an HTTP one, or a TCP one with its `tcp` targets. */
  listener(name: string): L7Listener | undefined {
    return this.listeners.get(name);
  }

  /**
   * The RBAC filters of a listener, in its order: an HTTP listener's RBAC HTTP filters, a TCP
   * listener's network RBAC filters; empty when no policy applies to it.
   */
  rbacFilters(listenerName: string): readonly L7RbacFilter[] {
    const listener = this.listeners.get(listenerName);
    return listener ? listenerRbac(listener) : [];
  }

  /**
   * The picker of a cluster; undefined if the cluster does not exist. For an ORIGINAL_DST cluster
   * (a workload waypoint's encap), `originalDst` is the tunnel's destination, which its picks go to.
   */
  picker(clusterName: string, originalDst?: OriginalDestination): ClusterPicker | undefined {
    const p = this.clusters.get(clusterName)?.picker;
    return p instanceof OriginalDstPicker && originalDst ? p.forDestination(originalDst) : p;
  }

  cluster(clusterName: string): Cluster | undefined {
    return this.clusters.get(clusterName)?.cluster;
  }

  /** `ip:port` of every endpoint some cluster may pick. */
  endpointKeys(): Set<string> {
    const out = new Set<string>();
    for (const c of this.clusters.values()) for (const h of c.picker.hosts()) out.add(h.key);
    return out;
  }

  /** Changes so far (readers that cache per configuration compare it). */
  version(): number {
    return this.generation;
  }

  /** How many resources of each kind are in force. */
  counts(): Record<L7Kind, number> {
    return {
      listener: this.listeners.size,
      'route-configuration': this.routeConfigurations.size,
      cluster: this.clusterDefs.size,
      'cluster-load-assignment': this.assignments.size,
    };
  }

  /** Route tables, clusters and endpoints (with outlier state) for the admin port. */
  dump(): Record<string, unknown> {
    return {
      listeners: [...this.listeners.values()].map((l) => ({
        ...l,
        state:
          l.tcp || this.tables.has(l.name)
            ? 'active'
            : `warming: no route configuration ${l.routeConfigName}`,
      })),
      routeConfigurations: [...this.routeConfigurations.values()],
      clusters: [...this.clusters.entries()].map(([name, c]) => ({
        name,
        cluster: c.cluster,
        loadAssignment: c.cluster.originalDst
          ? '(none: each tunnel goes to its original destination)'
          : (c.assignment?.clusterName ?? `(none yet: ${c.cluster.edsServiceName})`),
        circuitBreakers: { limits: c.cluster.circuitBreakers, inUse: c.picker.usage() },
        endpoints: c.picker.hosts(),
      })),
    };
  }

  private store<K extends L7Kind>(kind: K): Map<string, L7Values[K]> {
    const stores: { [P in L7Kind]: Map<string, L7Values[P]> } = {
      listener: this.listeners,
      'route-configuration': this.routeConfigurations,
      cluster: this.clusterDefs,
      'cluster-load-assignment': this.assignments,
    };
    return stores[kind];
  }

  private rebuild(kind: L7Kind): void {
    this.generation++;
    if (kind === 'listener' || kind === 'route-configuration') this.rebuildTables();
    else this.rebuildClusters();
  }

  private rebuildTables(): void {
    for (const name of [...this.tables.keys()]) if (!this.listeners.has(name)) this.tables.delete(name);
    for (const [name, listener] of this.listeners) {
      const routes = this.routeConfigurations.get(listener.routeConfigName);
      const old = this.tables.get(name);
      if (!routes) {
        this.tables.delete(name);
        continue;
      }
      if (old && old.listener === listener && old.routes === routes) continue;
      this.tables.set(name, { listener, routes, table: compileRouteTable(routes, listener.httpFilters) });
    }
  }

  private rebuildClusters(): void {
    for (const name of [...this.clusters.keys()]) if (!this.clusterDefs.has(name)) this.clusters.delete(name);
    for (const [name, cluster] of this.clusterDefs) {
      const assignment = cluster.dnsAssignment ?? this.assignments.get(cluster.edsServiceName);
      let entry = this.clusters.get(name);
      // A cluster that changed between EDS and ORIGINAL_DST starts over.
      if (entry && entry.picker instanceof OriginalDstPicker !== (cluster.originalDst !== undefined))
        entry = undefined;
      if (!entry) {
        const picker = cluster.originalDst
          ? new OriginalDstPicker(cluster, this.deps)
          : createClusterPicker(cluster, this.deps);
        entry = { cluster, assignment: undefined, picker };
        this.clusters.set(name, entry);
        entry.picker.updateEndpoints(assignment ?? noEndpoints(cluster.edsServiceName));
        entry.assignment = assignment;
        continue;
      }
      if (entry.cluster !== cluster) {
        entry.picker.updateCluster(cluster);
        entry.cluster = cluster;
      }
      if (entry.assignment !== assignment) {
        entry.picker.updateEndpoints(assignment ?? noEndpoints(cluster.edsServiceName));
        entry.assignment = assignment;
      }
    }
  }
}

/** Per decoded listener (a changed listener is a new object). */
const rbacOf = new WeakMap<L7Listener, readonly L7RbacFilter[]>();

/** A listener's RBAC filters as the evaluator takes them (core/policy/l7.ts), once per listener. */
export function listenerRbac(listener: L7Listener): readonly L7RbacFilter[] {
  let filters = rbacOf.get(listener);
  if (!filters) {
    filters = [
      ...listener.httpFilters.flatMap((f) => (f.rbac ? [{ name: f.name, config: f.rbac }] : [])),
      ...(listener.networkRbac ?? []).map((f) => ({ name: f.name, config: f.rbac })),
    ];
    rbacOf.set(listener, filters);
  }
  return filters;
}

function noEndpoints(name: string): ClusterLoadAssignment {
  return { clusterName: name, endpoints: [], overprovisioningFactor: 140 };
}
