/**
 * Which VirtualServices and DestinationRules apply to a service, and the traffic policy that results
 * for one of its ports and subsets (istio-api.md §0, §1.1, §2). Pure.
 *
 * - VirtualServices: those whose `hosts` match the service hostname (a short name resolved in the
 *   rule's namespace, `*.` wildcards by suffix), bound to the mesh (`gateways` empty or containing
 *   `mesh`), and living in the service's namespace or its waypoint's; in creation order
 *   (creationTimestamp, then name, then namespace, as istiod sorts them). The routes are merged in
 *   that order by the caller, up to the first catch-all.
 * - DestinationRule: a waypoint (or proxyless client) has no client namespace of its own, so the
 *   service's namespace is searched, then the root namespace. Within a namespace the most specific
 *   host wins (exact, then the longest wildcard); rules for that same host are merged as istiod merges
 *   them: subsets are concatenated (a later duplicate name is dropped), and the first rule that has a
 *   top-level traffic policy supplies it. Rules with a workloadSelector select sidecar clients and are
 *   left out.
 * - Policy for (port, subset): the rule's port-level entry for that port replaces the four sections
 *   (load balancer, pool, outlier, TLS) wholesale, omitted ones falling back to Istio's defaults; a
 *   subset's policy then overrides one whole section at a time, and its own port-level entry replaces
 *   all four (istiod's MergeSubsetTrafficPolicy).
 */
import { compare } from '../common.ts';
import type {
  DestinationRule,
  L7Problem,
  PolicySections,
  RetryBudget,
  Subset,
  TrafficPolicy,
  VirtualService,
} from './types.ts';
import { hostMatches, isWildcardHost, resolveHost } from './values.ts';

export interface ServiceRef {
  readonly namespace: string;
  readonly hostname: string;
}

/** istiod's sortConfigByCreationTime. */
export function byCreation(
  a: { readonly creationTimestamp: string; readonly name: string; readonly namespace: string },
  b: { readonly creationTimestamp: string; readonly name: string; readonly namespace: string },
): number {
  return (
    compare(a.creationTimestamp, b.creationTimestamp) ||
    compare(a.name, b.name) ||
    compare(a.namespace, b.namespace)
  );
}

/** `gateways` empty, or naming `mesh`: the rules apply to mesh traffic (sidecars, waypoints, gRPC). */
export function appliesToMesh(gateways: readonly string[]): boolean {
  return gateways.length === 0 || gateways.includes('mesh');
}

/** The VirtualServices that apply to `service`, in creation order. */
export function selectVirtualServices(
  service: ServiceRef,
  waypointNamespace: string,
  virtualServices: readonly VirtualService[],
  clusterDomain: string,
): VirtualService[] {
  return virtualServices
    .filter(
      (vs) =>
        (vs.namespace === service.namespace || vs.namespace === waypointNamespace) &&
        appliesToMesh(vs.gateways) &&
        vs.hosts.some((h) => hostMatches(resolveHost(h, vs.namespace, clusterDomain), service.hostname)),
    )
    .sort(byCreation);
}

/** A subset with the rule (and index within it) that defined it, for problem paths. */
export interface SubsetSource {
  readonly subset: Subset;
  readonly rule: DestinationRule;
  readonly index: number;
}

/** One or more DestinationRules for the same host, merged. */
export interface MergedDestinationRule {
  /** Every rule merged, oldest first. */
  readonly rules: readonly DestinationRule[];
  readonly trafficPolicy: TrafficPolicy | undefined;
  readonly subsets: readonly SubsetSource[];
}

/**
 * The merged DestinationRule for a service; problems (a subset name defined twice) are appended to
 * `problems`.
 */
export function selectDestinationRule(
  service: ServiceRef,
  destinationRules: readonly DestinationRule[],
  rootNamespace: string,
  clusterDomain: string,
  problems: L7Problem[],
): MergedDestinationRule | undefined {
  const namespaces =
    service.namespace === rootNamespace ? [rootNamespace] : [service.namespace, rootNamespace];
  for (const ns of namespaces) {
    const candidates = destinationRules
      .filter((dr) => dr.namespace === ns && dr.workloadSelector === undefined)
      .map((dr) => ({ dr, host: resolveHost(dr.host, dr.namespace, clusterDomain) }))
      .filter((c) => hostMatches(c.host, service.hostname));
    if (candidates.length === 0) continue;
    const best = mostSpecific(
      candidates.map((c) => c.host),
      service.hostname,
    );
    const rules = candidates
      .filter((c) => c.host === best)
      .map((c) => c.dr)
      .sort(byCreation);
    return merge(rules, problems);
  }
  return undefined;
}

/**
 * The subsets that DestinationRules in other namespaces define for a service, each with the merged
 * rule of its namespace, leaving out names the service's own rule (`own`) defines. istiod looks a
 * DestinationRule up in the calling proxy's namespace first (PushContext.destinationRule), so a
 * rule in the client's namespace gives subsets to a Service elsewhere — Istio's egress-gateway task
 * defines subset `cnn` of `istio-egressgateway.istio-system` in the client's namespace. Clusters
 * are named by subset, so such a subset gets its own cluster; where two namespaces define one name,
 * the first namespace in order keeps it.
 */
export function otherNamespaceSubsets(
  service: ServiceRef,
  destinationRules: readonly DestinationRule[],
  own: MergedDestinationRule | undefined,
  rootNamespace: string,
  clusterDomain: string,
): { subset: SubsetSource; rule: MergedDestinationRule }[] {
  const taken = new Set((own?.subsets ?? []).map((s) => s.subset.name));
  const namespaces = [...new Set(destinationRules.map((d) => d.namespace))]
    .filter((ns) => ns !== service.namespace && ns !== rootNamespace)
    .sort(compare);
  const out: { subset: SubsetSource; rule: MergedDestinationRule }[] = [];
  for (const ns of namespaces) {
    const rule = selectDestinationRule(
      { ...service, namespace: ns },
      destinationRules.filter((d) => d.namespace === ns),
      rootNamespace,
      clusterDomain,
      [],
    );
    for (const subset of rule?.subsets ?? []) {
      if (taken.has(subset.subset.name)) continue;
      taken.add(subset.subset.name);
      out.push({ subset, rule: rule! });
    }
  }
  return out;
}

/** istiod's MostSpecificHostMatch: the exact host, else the longest wildcard. */
function mostSpecific(hosts: readonly string[], hostname: string): string {
  if (hosts.includes(hostname)) return hostname;
  return (
    [...hosts].filter(isWildcardHost).sort((a, b) => b.length - a.length || compare(a, b))[0] ?? hostname
  );
}

function merge(rules: readonly DestinationRule[], problems: L7Problem[]): MergedDestinationRule {
  const subsets: SubsetSource[] = [];
  const seen = new Map<string, DestinationRule>();
  let trafficPolicy: TrafficPolicy | undefined;
  for (const rule of rules) {
    trafficPolicy ??= rule.trafficPolicy;
    rule.subsets.forEach((subset, index) => {
      const first = seen.get(subset.name);
      if (first === undefined) {
        seen.set(subset.name, rule);
        subsets.push({ subset, rule, index });
      } else if (first !== rule)
        problems.push({
          severity: 'warning',
          kind: 'DestinationRule',
          namespace: rule.namespace,
          name: rule.name,
          path: `spec.subsets[${index}].name`,
          message: `subset "${subset.name}" is already defined by DestinationRule ${first.namespace}/${first.name} for the same host; this one is ignored`,
        });
    });
  }
  return { rules, trafficPolicy, subsets };
}

/** What applies to one cluster: the four sections, and the retry budget. */
export interface EffectivePolicy extends PolicySections {
  readonly retryBudget: RetryBudget | undefined;
}

export const NO_POLICY: EffectivePolicy = {
  loadBalancer: undefined,
  connectionPool: undefined,
  outlierDetection: undefined,
  tls: undefined,
  retryBudget: undefined,
};

/** A policy's port-level entry for `port`, as a whole policy (the top-level-only sections dropped). */
function forPort(
  policy: TrafficPolicy | undefined,
  port: number,
): { policy: EffectivePolicy | undefined; portLevel: boolean } {
  if (policy === undefined) return { policy: undefined, portLevel: false };
  const entry = policy.portLevelSettings.find((p) => p.port === port);
  const { loadBalancer, connectionPool, outlierDetection, tls } = entry ?? policy;
  const retryBudget = entry ? undefined : policy.retryBudget;
  return { policy: { loadBalancer, connectionPool, outlierDetection, tls, retryBudget }, portLevel: !!entry };
}

/** The effective policy of the cluster for `port` and `subset` ('' for the whole service). */
export function effectivePolicy(
  dr: MergedDestinationRule | undefined,
  port: number,
  subset: string,
): EffectivePolicy {
  const base = forPort(dr?.trafficPolicy, port).policy;
  const subsetPolicy = subset
    ? dr?.subsets.find((s) => s.subset.name === subset)?.subset.trafficPolicy
    : undefined;
  const own = forPort(subsetPolicy, port);
  if (own.policy === undefined) return base ?? NO_POLICY;
  if (base === undefined) return own.policy;
  const o = own.policy;
  const replace = own.portLevel;
  return {
    loadBalancer: o.loadBalancer !== undefined || replace ? o.loadBalancer : base.loadBalancer,
    connectionPool: o.connectionPool !== undefined || replace ? o.connectionPool : base.connectionPool,
    outlierDetection:
      o.outlierDetection !== undefined || replace ? o.outlierDetection : base.outlierDetection,
    tls: o.tls !== undefined || replace ? o.tls : base.tls,
    retryBudget: o.retryBudget ?? base.retryBudget,
  };
}
