/**
 * Kubernetes objects → the workload API (Workload, Service, Authorization) that node agents consume,
 * as istiod's ambient index builds it (pilot/pkg/serviceregistry/kube/controller/ambient). Pure: a
 * snapshot in, a MeshConfig and problems out; no I/O, no clock.
 *
 * Pods, Services and AuthorizationPolicies are translated here; EndpointSlices, ServiceEntries,
 * PeerAuthentications and Gateways in their own files, joined here (pods gain the services of the
 * ServiceEntries and slices that pick them; every workload lists its PeerAuthentication keys).
 *
 * An invalid object is skipped with a problem naming it, the field path and the reason; everything
 * else is kept (DESIGN.md §4). Output is sorted so that equal snapshots give equal configs.
 */
import { WaypointBinder } from './waypoint-binding.ts';
import { ipFamily, parseCidr } from '../../core/ip.ts';
import {
  PolicyAction,
  PolicyScope,
  serviceKey,
  TunnelProtocol,
  EMPTY_MATCH,
  WorkloadType,
  type Authorization,
  type Cidr,
  type Clause,
  type Match,
  type MeshConfig,
  type PortMap,
  type Rule,
  type Service,
  type ServiceAccountMatch,
  type StringMatch,
  type Workload,
} from '../../core/xds/model.ts';
import {
  canonicalService,
  compare,
  isTcp,
  push,
  serviceHostname,
  sortedPorts,
  validPort,
  type TranslateOptions,
  type TranslateProblem,
} from './common.ts';
import { translateEndpointSlices, type PodIndex } from './endpoint-slices.ts';
import { validateGatewayClasses, validateGateways } from './gateways.ts';
import {
  lookup,
  selects,
  type AuthorizationPolicy,
  type AuthzCondition,
  type AuthzOperation,
  type AuthzSource,
  type KubeSnapshot,
  type Namespace,
  type Pod,
  type Service as KubeService,
  type StringMap,
} from './kube-types.ts';
import { translatePeerAuthentications } from './peer-authentication.ts';
import {
  serviceEntryWorkloads,
  translateServiceEntry,
  type TranslatedServiceEntry,
} from './service-entries.ts';

export type { ProblemKind, TranslateOptions, TranslateProblem } from './common.ts';

export interface TranslateResult {
  readonly config: MeshConfig;
  readonly problems: readonly TranslateProblem[];
}

export const DATAPLANE_MODE_LABEL = 'istio.io/dataplane-mode';
const SIDECAR_STATUS_ANNOTATION = 'sidecar.istio.io/status';
const DRY_RUN_ANNOTATION = 'istio.io/dry-run';

export function translate(snapshot: KubeSnapshot, options: TranslateOptions): TranslateResult {
  const problems: TranslateProblem[] = [];
  const policies: Authorization[] = [];
  // Selector-scoped policies that translated, by namespace, for workloads to reference by key.
  const selectorPolicies = new Map<string, AuthorizationPolicy[]>();
  for (const p of snapshot.authorizationPolicies) {
    const a = authorization(p, options, problems);
    if (a === undefined) continue;
    policies.push(a);
    if (p.selector !== undefined) push(selectorPolicies, p.namespace, p);
  }
  const peer = translatePeerAuthentications(snapshot.peerAuthentications, options, problems);
  policies.push(...peer.policies);
  const rootPolicies = selectorPolicies.get(options.rootNamespace) ?? [];
  /**
   * What a workload with these labels lists in `authorization_policies`: the selector policies of its
   * namespace and (as istiod attaches them) of the root namespace, then its PeerAuthentication keys.
   */
  const policyKeys = (namespace: string, labels: StringMap): string[] => {
    const candidates =
      namespace === options.rootNamespace
        ? rootPolicies
        : [...(selectorPolicies.get(namespace) ?? []), ...rootPolicies];
    return [
      ...candidates
        .filter((p) => selects(p.selector ?? {}, labels))
        .map((p) => `${p.namespace}/${p.name}`)
        .sort(compare),
      ...peer.keysFor(namespace, labels),
    ];
  };

  const services: Service[] = [];
  // Services that translated, by namespace and by one of their selector's labels: a pod can only be
  // selected by a service whose every selector label it carries, so its own labels find the
  // candidates (10k pods × 1k services no longer means 10M selector checks).
  const selecting = new Map<string, Map<string, KubeService[]>>();
  // Services without a selector, whose endpoints come from EndpointSlices.
  const selectorless = new Map<string, KubeService>();
  const taken = new Set<string>();
  const classes = snapshot.gatewayClasses ?? [];
  const binder = new WaypointBinder(snapshot.gateways, classes, snapshot.namespaces, options, problems);
  for (const s of snapshot.services) {
    const translated = service(s, options, problems);
    if (translated === undefined) continue;
    const waypoint = binder.bind({ kind: 'Service', ...s }, 'service');
    const svc = waypoint ? { ...translated, waypoint } : translated;
    services.push(svc);
    taken.add(serviceKey(svc));
    const first = Object.entries(s.selector)[0];
    if (first === undefined) {
      selectorless.set(`${s.namespace}/${s.name}`, s);
      continue;
    }
    let byLabel = selecting.get(s.namespace);
    if (!byLabel) selecting.set(s.namespace, (byLabel = new Map<string, KubeService[]>()));
    push(byLabel, labelKey(first[0], first[1]), s);
  }
  const entries: TranslatedServiceEntry[] = [];
  // Entries with a workloadSelector, by namespace: they add their services to the pods they select.
  const entriesSelecting = new Map<string, TranslatedServiceEntry[]>();
  for (const se of snapshot.serviceEntries) {
    const t = translateServiceEntry(se, options, problems, taken);
    if (t === undefined) continue;
    const waypoint = binder.bind({ kind: 'ServiceEntry', ...se }, 'service');
    services.push(...(waypoint ? t.services.map((x) => ({ ...x, waypoint })) : t.services));
    entries.push(t);
    if (t.selector !== undefined) push(entriesSelecting, se.namespace, t);
  }
  const slices = translateEndpointSlices(
    snapshot.endpointSlices,
    selectorless,
    indexPods(snapshot.pods),
    options,
    problems,
  );

  const namespaces = new Map(snapshot.namespaces.map((n) => [n.name, n]));
  const workloads: Workload[] = [];
  for (const pod of snapshot.pods) {
    const extra = new Map<string, PortMap>();
    for (const t of entriesSelecting.get(pod.namespace) ?? []) {
      if (selects(t.selector ?? {}, pod.labels)) for (const [k, v] of t.podServices) extra.set(k, v);
    }
    for (const [k, v] of slices.podServices.get(`${pod.namespace}/${pod.name}`) ?? []) extra.set(k, v);
    const w = workload(pod, {
      namespace: namespaces.get(pod.namespace),
      services: candidateServices(selecting.get(pod.namespace), pod),
      extraServices: extra,
      policies: policyKeys(pod.namespace, pod.labels),
      options,
      problems,
    });
    if (w === undefined) continue;
    const waypoint = binder.bind({ kind: 'Pod', ...pod }, 'workload');
    workloads.push(waypoint ? { ...w, waypoint } : w);
  }
  workloads.push(...slices.workloads);
  for (const t of entries) {
    workloads.push(...serviceEntryWorkloads(t, options, policyKeys(t.entry.namespace, t.entry.labels)));
  }
  validateGateways(snapshot.gateways, problems);
  validateGatewayClasses(classes, problems);
  workloads.sort((a, b) => compare(a.uid, b.uid));
  services.sort((a, b) => compare(a.namespace, b.namespace) || compare(a.hostname, b.hostname));
  policies.sort((a, b) => compare(a.namespace, b.namespace) || compare(a.name, b.name));
  return { config: { workloads, services, policies }, problems };
}

function labelKey(k: string, v: string): string {
  return `${k}\u0000${v}`;
}

/** Services whose indexed selector label the pod carries (the full selector is checked later). */
function candidateServices(byLabel: Map<string, KubeService[]> | undefined, pod: Pod): KubeService[] {
  if (!byLabel) return [];
  const out: KubeService[] = [];
  for (const [k, v] of Object.entries(pod.labels)) {
    const list = byLabel.get(labelKey(k, v));
    if (list) out.push(...list);
  }
  return out;
}

/** Pods that become workloads (what workload() accepts), for EndpointSlice endpoints to find. */
function indexPods(pods: readonly Pod[]): PodIndex {
  const byIp = new Map<string, Pod>();
  const byName = new Map<string, Pod>();
  for (const pod of pods) {
    if (pod.hostNetwork || pod.phase === 'Succeeded' || pod.phase === 'Failed') continue;
    if (pod.podIPs.length === 0 ? !pod.nodeName : pod.podIPs.some((ip) => ipFamily(ip) === 0)) continue;
    byName.set(`${pod.namespace}/${pod.name}`, pod);
    for (const ip of pod.podIPs) if (!byIp.has(ip)) byIp.set(ip, pod);
  }
  return { byIp, byName };
}

// ---- Pods → Workloads ----

interface PodContext {
  readonly namespace: Namespace | undefined;
  /** Valid Services with a selector in the pod's namespace that may select it. */
  readonly services: readonly KubeService[];
  /**
   * Services the pod is an endpoint of otherwise (a ServiceEntry's workloadSelector, an
   * EndpointSlice of a Service without a selector), by service key; a selecting Service wins.
   */
  readonly extraServices: ReadonlyMap<string, PortMap>;
  /** Its `authorization_policies` keys. */
  readonly policies: readonly string[];
  readonly options: TranslateOptions;
  readonly problems: TranslateProblem[];
}

function workload(pod: Pod, ctx: PodContext): Workload | undefined {
  const { namespace, options, problems } = ctx;
  const report = (severity: TranslateProblem['severity'], path: string, message: string) =>
    problems.push({ severity, kind: 'Pod', namespace: pod.namespace, name: pod.name, path, message });
  // Host-network pods share the node's address: they cannot be told apart by IP, and ztunnel does
  // not index them (reference/ztunnel.md §3.1). Nothing for the user to fix.
  if (pod.hostNetwork) return undefined;
  // Finished pods are gone as far as traffic goes; their IPs may already belong to new pods.
  if (pod.phase === 'Succeeded' || pod.phase === 'Failed') return undefined;
  if (pod.podIPs.length === 0) {
    // A pending pod normally has no address yet; anything else without one is worth a word.
    if (pod.phase !== 'Pending')
      report(
        'warning',
        'status.podIP',
        pod.nodeName
          ? 'has no IP address, so nothing can reach it yet; set status.podIP'
          : 'has no IP address, so it is not part of the mesh yet; set status.podIP',
      );
    // A scheduled pod is sent without addresses, as istiod does: its node agent captures it at its
    // CNI ADD, which comes before the pod has an IP here (inpod/manager.ts in the agent).
    if (!pod.nodeName) return undefined;
  }
  const bad = pod.podIPs.findIndex((ip) => ipFamily(ip) === 0);
  if (bad >= 0) {
    report('error', `status.podIPs[${bad}]`, `"${pod.podIPs[bad]!}" is not an IP address`);
    return undefined;
  }
  const { workloadType, workloadName } = owner(pod);
  const servicePorts = new Map<string, PortMap>();
  for (const svc of ctx.services) {
    if (!selects(svc.selector, pod.labels)) continue;
    const ports = endpointPorts(pod, svc, report);
    if (ports !== undefined) servicePorts.set(`${svc.namespace}/${serviceHostname(svc, options)}`, ports);
  }
  for (const [k, v] of ctx.extraServices) if (!servicePorts.has(k)) servicePorts.set(k, v);
  return {
    uid: `${options.clusterId}//Pod/${pod.namespace}/${pod.name}`,
    name: pod.name,
    namespace: pod.namespace,
    addresses: pod.podIPs,
    hostname: '',
    network: '',
    tunnelProtocol: enrolled(pod, namespace) ? TunnelProtocol.Hbone : TunnelProtocol.None,
    trustDomain: options.trustDomain,
    serviceAccount: pod.serviceAccountName || 'default',
    waypoint: undefined,
    node: pod.nodeName,
    ...canonicalService(pod.labels, workloadName),
    workloadType,
    workloadName,
    services: new Map([...servicePorts].sort(([a], [b]) => compare(a, b))),
    authorizationPolicies: ctx.policies,
    healthy: healthy(pod),
    clusterId: options.clusterId,
    capacity: 1,
    labels: pod.labels,
  };
}

/**
 * The pod label `istio.io/dataplane-mode` wins over the namespace's (`none` opts out, `ambient` in).
 * Sidecar-injected pods are left to their sidecar (istio-api.md §3.1).
 */
function enrolled(pod: Pod, namespace: Namespace | undefined): boolean {
  if (lookup(pod.annotations, SIDECAR_STATUS_ANNOTATION) !== undefined) return false;
  const podMode = lookup(pod.labels, DATAPLANE_MODE_LABEL);
  if (podMode === 'ambient') return true;
  if (podMode === 'none') return false;
  return namespace !== undefined && lookup(namespace.labels, DATAPLANE_MODE_LABEL) === 'ambient';
}

/**
 * Running and Ready. Pods written by hand for local mode usually carry no status at all: a missing
 * phase counts as Running and a missing Ready condition as ready, so sample YAML needs no status
 * noise. A pod the API server reports has both, and is judged by them.
 */
function healthy(pod: Pod): boolean {
  return (pod.phase === undefined || pod.phase === 'Running') && pod.ready !== false;
}

/** Matches istiod's kube.GetDeployMetaFromPod: a CronJob's Job is named `<cronjob>-<8..11 digits>`. */
const CRONJOB_JOB = /^(.+)-\d{8,11}$/;

function owner(pod: Pod): { workloadType: WorkloadType; workloadName: string } {
  const ref = pod.ownerReferences.find((r) => r.controller) ?? pod.ownerReferences[0];
  if (ref === undefined) return { workloadType: WorkloadType.Pod, workloadName: pod.name };
  switch (ref.kind) {
    case 'ReplicaSet': {
      // A Deployment names its ReplicaSets `<deployment>-<pod-template-hash>`.
      const hash = lookup(pod.labels, 'pod-template-hash');
      const name =
        hash && ref.name.endsWith(`-${hash}`)
          ? ref.name.slice(0, -hash.length - 1)
          : ref.name.includes('-')
            ? ref.name.slice(0, ref.name.lastIndexOf('-'))
            : ref.name;
      return { workloadType: WorkloadType.Deployment, workloadName: name };
    }
    case 'Job': {
      const m = CRONJOB_JOB.exec(ref.name);
      return m
        ? { workloadType: WorkloadType.CronJob, workloadName: m[1]! }
        : { workloadType: WorkloadType.Job, workloadName: ref.name };
    }
    default:
      // StatefulSet, DaemonSet, …: the workload API has no type for them; istiod says POD.
      return { workloadType: WorkloadType.Pod, workloadName: ref.name };
  }
}

/**
 * service port → this pod's target port. A named targetPort is looked up among the pod's container
 * ports; a pod without that name does not serve that port. A pod that serves none of a Service's
 * ports is not its endpoint at all (an empty map would read as "every port").
 */
function endpointPorts(
  pod: Pod,
  svc: KubeService,
  report: (severity: TranslateProblem['severity'], path: string, message: string) => void,
): PortMap | undefined {
  const out = new Map<number, number>();
  const tcp = svc.ports.filter((p) => isTcp(p.protocol) && validPort(p.port));
  for (const p of tcp) {
    const t = p.targetPort;
    if (t === undefined) out.set(p.port, p.port);
    else if (typeof t === 'number') {
      if (validPort(t)) out.set(p.port, t);
    } else {
      const c = pod.containerPorts.find((cp) => cp.name === t && isTcp(cp.protocol));
      if (c && validPort(c.containerPort)) out.set(p.port, c.containerPort);
      else
        report(
          'warning',
          'spec.containers[*].ports',
          `has no TCP port named "${t}", which Service ${svc.namespace}/${svc.name} port ${p.port} targets; that port does not reach this pod`,
        );
    }
  }
  if (out.size === 0 && svc.ports.length > 0) return undefined;
  return sortedPorts(out);
}

// ---- Services ----

const PORT_NAME = /^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/;

function service(
  svc: KubeService,
  options: TranslateOptions,
  problems: TranslateProblem[],
): Service | undefined {
  const errors: TranslateProblem[] = [];
  const error = (path: string, message: string) =>
    errors.push({
      severity: 'error',
      kind: 'Service',
      namespace: svc.namespace,
      name: svc.name,
      path,
      message,
    });
  // An ExternalName Service is a DNS alias (a CNAME), with neither VIP nor endpoints to proxy.
  if (svc.type === 'ExternalName') return undefined;
  const headless = svc.clusterIPs.length === 0 || svc.clusterIPs[0] === 'None';
  if (!headless) {
    svc.clusterIPs.forEach((ip, i) => {
      if (ipFamily(ip) === 0) error(`spec.clusterIPs[${i}]`, `"${ip}" is not an IP address`);
    });
  }
  const ports = new Map<number, number>();
  svc.ports.forEach((p, i) => {
    const path = `spec.ports[${i}]`;
    if (!validPort(p.port)) error(`${path}.port`, `${p.port} is not a port number (1-65535)`);
    const t = p.targetPort;
    if (typeof t === 'number' && !validPort(t))
      error(`${path}.targetPort`, `${t} is not a port number (1-65535)`);
    if (typeof t === 'string' && !(PORT_NAME.test(t) && /[a-z]/.test(t)))
      error(
        `${path}.targetPort`,
        `"${t}" is not a port name (lower-case letters, digits and "-", at most 15)`,
      );
    if (!['', 'TCP', 'UDP', 'SCTP'].includes(p.protocol))
      error(`${path}.protocol`, `"${p.protocol}" must be TCP, UDP or SCTP`);
    // A named targetPort differs per pod; each endpoint's own port map carries the real number.
    if (isTcp(p.protocol)) ports.set(p.port, typeof t === 'number' ? t : p.port);
  });
  if (errors.length > 0) {
    problems.push(...errors);
    return undefined;
  }
  return {
    name: svc.name,
    namespace: svc.namespace,
    hostname: serviceHostname(svc, options),
    vips: headless ? [] : svc.clusterIPs.map((address) => ({ network: '', address })),
    ports: sortedPorts(ports),
    subjectAltNames: [],
    waypoint: undefined,
  };
}

// ---- AuthorizationPolicies → Authorizations ----

/** `when` keys ztunnel can evaluate (istiod's l4WhenAttributes); every other key needs HTTP. */
const L4_WHEN_KEYS = [
  'source.ip',
  'source.namespace',
  'source.principal',
  'destination.ip',
  'destination.port',
];
const L7_SOURCE_FIELDS = [
  'requestPrincipals',
  'notRequestPrincipals',
  'remoteIpBlocks',
  'notRemoteIpBlocks',
] as const;
const L7_OPERATION_FIELDS = ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'] as const;
const WAYPOINT_HINT =
  'ztunnel enforces L4 only: to enforce HTTP attributes, deploy a waypoint and attach the policy to it with targetRefs';

/**
 * Follows istiod's convertAuthorizationPolicy (ambient/authorization.go):
 * - targetRefs: the policy is for a waypoint; ztunnel never sees it (no problem);
 * - scope: WorkloadSelector with a selector (even an empty one), else Namespace, or Global in the root
 *   namespace;
 * - one Istio rule → one Rule whose clauses are ANDed: `to` (one Match per operation), `from` (one
 *   Match per source), and one clause per `when` condition. A rule with none of them is a Rule with no
 *   clauses, which matches everything; a policy with no rules matches nothing (so an ALLOW with no
 *   rules allows nothing), as in l4.ts;
 * - L7 attributes: an ALLOW rule that uses any is dropped (it could never match: fail closed); in a
 *   DENY rule they are removed and the rest enforced. A source, operation or condition that was only
 *   L7 becomes an empty Match, which ztunnel never matches; when a clause has nothing else, the whole
 *   DENY rule has no effect at L4. istiod and ztunnel behave exactly so (istio/istio#61126), and the
 *   warning says which case applies.
 */
function authorization(
  pol: AuthorizationPolicy,
  options: TranslateOptions,
  problems: TranslateProblem[],
): Authorization | undefined {
  const errors: TranslateProblem[] = [];
  const warnings: TranslateProblem[] = [];
  const at = (severity: TranslateProblem['severity'], path: string, message: string) =>
    (severity === 'error' ? errors : warnings).push({
      severity,
      kind: 'AuthorizationPolicy',
      namespace: pol.namespace,
      name: pol.name,
      path,
      message,
    });
  const error = (path: string, message: string) => at('error', path, message);

  if (pol.targetRefs.length > 0) {
    if (pol.selector !== undefined) error('spec', 'selector and targetRefs cannot be used together');
    problems.push(...errors);
    return undefined;
  }
  const action = pol.action || 'ALLOW';
  if (action === 'AUDIT' || action === 'CUSTOM') {
    problems.push({
      severity: 'warning',
      kind: 'AuthorizationPolicy',
      namespace: pol.namespace,
      name: pol.name,
      path: 'spec.action',
      message: `${action} is not enforced at L4 by ztunnel; the policy is ignored (attach it to a waypoint with targetRefs)`,
    });
    return undefined;
  }
  if (action !== 'ALLOW' && action !== 'DENY')
    error('spec.action', `"${action}" must be ALLOW, DENY, AUDIT or CUSTOM`);
  const deny = action === 'DENY';

  const rules: Rule[] = [];
  pol.rules.forEach((rule, r) => {
    const rp = `spec.rules[${r}]`;
    const l7: string[] = [];
    const hollow: string[] = [];
    const clauses: Clause[] = [];

    const to = rule.to.map((op, i) => {
      const p = `${rp}.to[${i}].operation`;
      if (op === undefined || isEmptyOperation(op)) {
        error(p, 'must not be empty');
        return EMPTY_MATCH;
      }
      const found = L7_OPERATION_FIELDS.filter((f) => op[f].length > 0);
      l7.push(...found.map((f) => `${p}.${f}`));
      const m: Match = {
        ...EMPTY_MATCH,
        destinationPorts: ports(op.ports, `${p}.ports`, error),
        notDestinationPorts: ports(op.notPorts, `${p}.notPorts`, error),
      };
      if (found.length > 0 && isEmptyMatch(m)) hollow.push(p);
      return m;
    });
    if (to.length > 0) clauses.push(to);

    const from = rule.from.map((src, i) => {
      const p = `${rp}.from[${i}].source`;
      if (src === undefined || isEmptySource(src)) {
        error(p, 'must not be empty');
        return EMPTY_MATCH;
      }
      const found = L7_SOURCE_FIELDS.filter((f) => src[f].length > 0);
      l7.push(...found.map((f) => `${p}.${f}`));
      const m: Match = {
        ...EMPTY_MATCH,
        principals: src.principals.map(stringMatch),
        notPrincipals: src.notPrincipals.map(stringMatch),
        namespaces: src.namespaces.map(stringMatch),
        notNamespaces: src.notNamespaces.map(stringMatch),
        serviceAccounts: src.serviceAccounts.map((v) => serviceAccount(v, pol.namespace)),
        notServiceAccounts: src.notServiceAccounts.map((v) => serviceAccount(v, pol.namespace)),
        sourceIps: cidrs(src.ipBlocks, `${p}.ipBlocks`, error),
        notSourceIps: cidrs(src.notIpBlocks, `${p}.notIpBlocks`, error),
      };
      if (found.length > 0 && isEmptyMatch(m)) hollow.push(p);
      return m;
    });
    if (from.length > 0) clauses.push(from);

    rule.when.forEach((cond, i) => {
      const p = `${rp}.when[${i}]`;
      const m = condition(cond, p, error);
      if (m === undefined) {
        l7.push(`${p} (key "${cond.key}")`);
        hollow.push(p);
        clauses.push([EMPTY_MATCH]);
      } else clauses.push([m]);
    });

    if (l7.length > 0 && !deny) {
      at(
        'warning',
        rp,
        `uses HTTP attributes (${l7.join(', ')}), so in this ALLOW policy the rule never matches; ${WAYPOINT_HINT}`,
      );
      return;
    }
    if (l7.length > 0) {
      // A clause of nothing but empty matches never matches, and then neither does the rule.
      const dead = clauses.some((c) => c.length > 0 && c.every(isEmptyMatch));
      const effect = dead
        ? 'without them this DENY rule has nothing left to match and has no effect at L4'
        : hollow.length > 0
          ? `without them ${hollow.join(', ')} never ${hollow.length > 1 ? 'match' : 'matches'} and the rest of the rule is enforced`
          : 'this DENY rule is enforced without them, which denies more than requested';
      at('warning', rp, `uses HTTP attributes (${l7.join(', ')}); ${effect}; ${WAYPOINT_HINT}`);
    }
    rules.push(clauses);
  });

  if (errors.length > 0) {
    problems.push(...errors);
    return undefined;
  }
  problems.push(...warnings);
  const scope =
    pol.selector !== undefined
      ? PolicyScope.WorkloadSelector
      : pol.namespace === options.rootNamespace
        ? PolicyScope.Global
        : PolicyScope.Namespace;
  return {
    name: pol.name,
    namespace: pol.namespace,
    scope,
    action: deny ? PolicyAction.Deny : PolicyAction.Allow,
    rules,
    dryRun: lookup(pol.annotations, DRY_RUN_ANNOTATION) === 'true',
  };
}

/** One `when` condition as a Match, or undefined for a key ztunnel cannot evaluate. */
function condition(
  cond: AuthzCondition,
  path: string,
  error: (path: string, message: string) => void,
): Match | undefined {
  if (!cond.key) error(`${path}.key`, 'is required');
  if (cond.values.length === 0 && cond.notValues.length === 0) error(path, 'needs values or notValues');
  if (!L4_WHEN_KEYS.includes(cond.key)) return undefined;
  const v = `${path}.values`;
  const nv = `${path}.notValues`;
  switch (cond.key) {
    case 'source.namespace':
      return {
        ...EMPTY_MATCH,
        namespaces: cond.values.map(stringMatch),
        notNamespaces: cond.notValues.map(stringMatch),
      };
    case 'source.principal':
      return {
        ...EMPTY_MATCH,
        principals: cond.values.map(stringMatch),
        notPrincipals: cond.notValues.map(stringMatch),
      };
    case 'source.ip':
      return {
        ...EMPTY_MATCH,
        sourceIps: cidrs(cond.values, v, error),
        notSourceIps: cidrs(cond.notValues, nv, error),
      };
    case 'destination.ip':
      return {
        ...EMPTY_MATCH,
        destinationIps: cidrs(cond.values, v, error),
        notDestinationIps: cidrs(cond.notValues, nv, error),
      };
    default: // destination.port
      return {
        ...EMPTY_MATCH,
        destinationPorts: ports(cond.values, v, error),
        notDestinationPorts: ports(cond.notValues, nv, error),
      };
  }
}

function isEmptyMatch(m: Match): boolean {
  return Object.values(m).every((v: readonly unknown[]) => v.length === 0);
}

function isEmptySource(s: AuthzSource): boolean {
  return Object.values(s).every((v: readonly string[]) => v.length === 0);
}

function isEmptyOperation(o: AuthzOperation): boolean {
  return Object.values(o).every((v: readonly string[]) => v.length === 0);
}

/** Istio's wildcards: `*` is presence, `*x` a suffix, `x*` a prefix; anything else is exact. */
export function stringMatch(v: string): StringMatch {
  if (v === '*') return { kind: 'presence' };
  if (v.startsWith('*')) return { kind: 'suffix', value: v.slice(1) };
  if (v.endsWith('*')) return { kind: 'prefix', value: v.slice(0, -1) };
  return { kind: 'exact', value: v };
}

/** `ns/sa`, or a bare `sa` meaning the policy's own namespace (as istiod reads serviceAccounts). */
function serviceAccount(v: string, policyNamespace: string): ServiceAccountMatch {
  const slash = v.indexOf('/');
  return slash >= 0
    ? { namespace: v.slice(0, slash), serviceAccount: v.slice(slash + 1) }
    : { namespace: policyNamespace, serviceAccount: v };
}

function ports(
  values: readonly string[],
  path: string,
  error: (path: string, message: string) => void,
): number[] {
  const out: number[] = [];
  values.forEach((v, i) => {
    const n = /^\d{1,5}$/.test(v) ? Number(v) : NaN;
    if (!validPort(n)) error(`${path}[${i}]`, `"${v}" is not a port number (1-65535)`);
    else out.push(n);
  });
  return out;
}

function cidrs(
  values: readonly string[],
  path: string,
  error: (path: string, message: string) => void,
): Cidr[] {
  const out: Cidr[] = [];
  values.forEach((v, i) => {
    const c = parseCidr(v);
    if (c === undefined) error(`${path}[${i}]`, `"${v}" is not an IP address or CIDR`);
    else out.push(c);
  });
  return out;
}
