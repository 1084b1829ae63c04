/**
 * AuthorizationPolicies attached to waypoints (`targetRefs`) → Envoy RBAC filters for the listeners
 * of the services they target (istio-api.md §3.4), as istiod builds them
 * (pilot/pkg/security/authz/builder and model). Pure.
 *
 * Attachment: `targetRefs` (and the older `targetRef`) of kind Service (core group) — that
 * service's listeners; Gateway (gateway.networking.k8s.io, a waypoint class) — every service bound
 * to that waypoint, and its direct-http and direct-tcp listeners (workload traffic); GatewayClass
 * (a waypoint class, root namespace only) — the same for every waypoint of that class; ServiceEntry
 * (networking.istio.io) — each host of the entry. A reference to another namespace, to another kind
 * or to nothing that exists attaches nowhere, with a warning. Policies with a `selector` (or
 * neither) are the node agent's (workloads.ts).
 *
 * HTTP listeners get RBAC HTTP filters; TCP listeners (a TCP service port, direct-tcp) get RBAC
 * network filters (`envoy.filters.network.rbac`, stat_prefix `tcp.`) built from the same rules in
 * istiod's TCP mode (BuildTCP, `forTCP`): the HTTP-only fields — hosts, methods, paths,
 * requestPrincipals, the `request.headers[…]` and `request.auth.*` conditions — cannot be generated
 * for a connection, so in an ALLOW policy a rule that uses one is dropped (fail closed), and in a
 * DENY or AUDIT policy that field is left out (a DENY rule with only `paths` denies every TCP
 * connection). Those cases are reported as warnings at the field's path.
 *
 * Filters: one per action, in istiod's order — AUDIT (RBAC action LOG), DENY, ALLOW — named
 * `istio.authorization.audit|deny|allow` (istiod's per-action names; gRPC clients refuse two filters
 * of one name; istiod names its network filters all `envoy.filters.network.rbac`, which only Envoy's
 * stats see), placed before every other filter; the HTTP ones `is_optional`: a gRPC client cannot
 * enforce server-side authorization and must not reject the listener for it (Ambit's waypoint
 * enforces them all the same). A policy with `istio.io/dry-run: "true"` goes in `shadow_rules`.
 * CUSTOM has no external authorizer here: its rules deny, as istiod's do when the provider is
 * missing, with a warning.
 *
 * Rules → policies named `ns[<ns>]-policy[<name>]-rule[<i>]`: one permission per `to` operation (or
 * `any`), one principal per `from` source (or `any`), each the AND of its fields, the `when`
 * conditions ANDed into every one; a field's values are ORed, its not-values negated. A policy with
 * no rules gets a policy that never matches (so an ALLOW with no rules allows nothing), and an empty
 * rule `{}` matches everything.
 *
 * What cannot be honoured (requestPrincipals and the `request.auth.*` keys: no JWT authentication
 * yet; `experimental.envoy.filters.*`; path templates) and invalid values are treated as istiod
 * treats a field it cannot generate: in an ALLOW policy the rule is dropped (fail closed), in a DENY
 * or AUDIT policy that value is left out (the rule matches more). An unknown `when` key drops the
 * rule whatever the action, as istiod does. Each case is reported at its field path.
 */
import type { Service } from '../../../core/xds/model.ts';
import { ipFamily, parseCidr } from '../../../core/ip.ts';
import type { TranslateOptions, TranslateProblem } from '../common.ts';
import { WAYPOINT_CLASSES } from '../gateways.ts';
import type {
  AuthorizationPolicy,
  AuthzCondition,
  AuthzOperation,
  AuthzSource,
  Gateway,
  PolicyTargetRef,
} from '../kube-types.ts';
import type {
  CidrRange,
  HeaderMatcher,
  HttpFilter,
  NetworkFilter,
  NetworkRbacFilterConfig,
  RbacAction,
  RbacFilterConfig,
  RbacPermission,
  RbacPolicy,
  RbacPrincipal,
  RbacRules,
  StringMatcher,
} from './envoy-types.ts';
import { EnvoyType, packAny } from './protos.ts';

export const RBAC_FILTER = {
  audit: 'istio.authorization.audit',
  deny: 'istio.authorization.deny',
  allow: 'istio.authorization.allow',
} as const;

/** istiod's stat_prefix of every RBAC network filter (authz/model RBACTCPFilterStatPrefix). */
export const RBAC_TCP_STAT_PREFIX = 'tcp.';

const DRY_RUN_ANNOTATION = 'istio.io/dry-run';
const SPIFFE_PREFIX = 'spiffe://';
const GATEWAY_GROUP = 'gateway.networking.k8s.io';
const NETWORKING_GROUP = 'networking.istio.io';

export type AuthzProblem = Omit<TranslateProblem, 'kind'> & { readonly kind: 'AuthorizationPolicy' };

/** A service the L7 translation serves, as attachment needs it. */
export interface AuthzService {
  readonly service: Service;
  /** The object it comes from: a Kubernetes Service, a ServiceEntry (one of its hosts), or unknown. */
  readonly source: { readonly kind: 'Service' | 'ServiceEntry'; readonly name: string } | undefined;
  /** Listener names of its HTTP ports. */
  readonly httpListeners: readonly string[];
  /** Listener names of its TCP ports. */
  readonly tcpListeners: readonly string[];
}

/** A workload waypoint's listeners for pod-addressed traffic (direct.ts). */
export interface AuthzDirectListeners {
  readonly http: string;
  readonly tcp: string;
}

export interface AuthzInput {
  readonly policies: readonly AuthorizationPolicy[];
  readonly gateways: readonly Gateway[];
  readonly services: readonly AuthzService[];
  /**
   * The `direct-http` and `direct-tcp` listeners of each waypoint that takes workload traffic, by
   * `<ns>/<gateway>` (direct.ts): a policy that targets the Gateway, or its class, applies there too.
   */
  readonly directListeners?: ReadonlyMap<string, AuthzDirectListeners>;
}

export interface AuthzResult {
  /** RBAC HTTP filters by HTTP listener name, in order; listeners without policies are absent. */
  readonly filters: ReadonlyMap<string, readonly HttpFilter[]>;
  /** RBAC network filters by TCP listener name, in order; listeners without policies are absent. */
  readonly networkFilters: ReadonlyMap<string, readonly NetworkFilter[]>;
  readonly problems: readonly AuthzProblem[];
}

type Action = 'ALLOW' | 'DENY' | 'AUDIT';

interface Translated {
  readonly action: Action;
  readonly dryRun: boolean;
  readonly policies: ReadonlyMap<string, RbacPolicy>;
}

export function translateAuthz(input: AuthzInput, options: TranslateOptions): AuthzResult {
  const problems: AuthzProblem[] = [];
  const byListener = new Map<string, Translated[]>();
  const byTcpListener = new Map<string, Translated[]>();
  const add = (to: Map<string, Translated[]>, listeners: Iterable<string>, t: Translated) => {
    for (const listener of listeners) {
      const list = to.get(listener) ?? [];
      list.push(t);
      to.set(listener, list);
    }
  };
  const policies = [...input.policies]
    .filter((p) => (p.targetRefs.length > 0 ? p.selector === undefined : false))
    .sort((a, b) => cmp(a.namespace, b.namespace) || cmp(a.name, b.name));
  for (const pol of policies) {
    const report = (severity: AuthzProblem['severity'], path: string, message: string) =>
      problems.push({
        severity,
        kind: 'AuthorizationPolicy',
        namespace: pol.namespace,
        name: pol.name,
        path,
        message,
      });
    const targets = attach(pol, input, options, report);
    // Translated for HTTP always (its problems are reported once, there), and for TCP when the
    // policy reaches a TCP listener (only what TCP adds is reported then).
    const http = translatePolicy(pol, report, 'http');
    if (!http) continue;
    add(byListener, targets.http, http);
    if (targets.tcp.size === 0) continue;
    const tcp = translatePolicy(pol, report, 'tcp', [...targets.tcp].sort());
    if (tcp) add(byTcpListener, targets.tcp, tcp);
  }
  const filters = new Map<string, HttpFilter[]>();
  for (const [listener, list] of byListener) filters.set(listener, buildFilters(list, httpFilter));
  const networkFilters = new Map<string, NetworkFilter[]>();
  for (const [listener, list] of byTcpListener)
    networkFilters.set(listener, buildFilters(list, networkFilter));
  return { filters, networkFilters, problems };
}

// ---- attachment ----

type Report = (severity: AuthzProblem['severity'], path: string, message: string) => void;

/** The listener names the policy's targets cover, HTTP and TCP. */
function attach(
  pol: AuthorizationPolicy,
  input: AuthzInput,
  options: TranslateOptions,
  report: Report,
): { readonly http: Set<string>; readonly tcp: Set<string> } {
  const out = { http: new Set<string>(), tcp: new Set<string>() };
  const waypoints = input.gateways.filter((g) => WAYPOINT_CLASSES.includes(g.gatewayClassName));
  pol.targetRefs.forEach((ref, i) => {
    // The singular targetRef is the first entry when given (kube-yaml.ts builds the list so).
    const at = `spec.targetRefs[${i}]`;
    if (ref.namespace && ref.namespace !== pol.namespace) {
      report(
        'warning',
        `${at}.namespace`,
        `"${ref.namespace}" is not the policy's namespace; a policy attaches only to objects in its own namespace, so this reference is ignored`,
      );
      return;
    }
    const found = resolveRef(pol, ref, at, waypoints, input.services, options, report);
    if (found === undefined) return;
    const direct = directTargets(pol, ref, waypoints, input.directListeners, options);
    for (const d of direct) {
      out.http.add(d.http);
      out.tcp.add(d.tcp);
    }
    if (found.length === 0 && direct.length === 0) {
      report(
        'warning',
        at,
        `${ref.kind} ${pol.namespace}/${ref.name} serves no port through a waypoint; the policy has no effect there`,
      );
      return;
    }
    for (const s of found) {
      for (const l of s.httpListeners) out.http.add(l);
      for (const l of s.tcpListeners) out.tcp.add(l);
      if (ref.kind === 'Service' || ref.kind === 'ServiceEntry') {
        if (s.service.waypoint === undefined)
          report(
            'warning',
            at,
            `${s.service.hostname} is not bound to a waypoint (label istio.io/use-waypoint), so no waypoint enforces this policy`,
          );
      }
    }
  });
  return out;
}

function resolveRef(
  pol: AuthorizationPolicy,
  ref: PolicyTargetRef,
  at: string,
  waypoints: readonly Gateway[],
  services: readonly AuthzService[],
  options: TranslateOptions,
  report: Report,
): AuthzService[] | undefined {
  const group = ref.group;
  if (ref.kind === 'Service' && (group === '' || group === 'core')) {
    const found = services.filter(
      (s) =>
        s.source?.kind === 'Service' && s.source.name === ref.name && s.service.namespace === pol.namespace,
    );
    if (found.length > 0) return found;
    report(
      'warning',
      `${at}.name`,
      `Service ${pol.namespace}/${ref.name} is not in the mesh; the reference attaches nowhere`,
    );
    return undefined;
  }
  if (ref.kind === 'ServiceEntry' && group === NETWORKING_GROUP) {
    const found = services.filter(
      (s) =>
        s.source?.kind === 'ServiceEntry' &&
        s.source.name === ref.name &&
        s.service.namespace === pol.namespace,
    );
    if (found.length > 0) return found;
    report(
      'warning',
      `${at}.name`,
      `ServiceEntry ${pol.namespace}/${ref.name} does not exist; the reference attaches nowhere`,
    );
    return undefined;
  }
  if (ref.kind === 'Gateway' && group === GATEWAY_GROUP) {
    const gw = waypoints.find((g) => g.namespace === pol.namespace && g.name === ref.name);
    if (!gw) {
      report(
        'warning',
        `${at}.name`,
        `${pol.namespace}/${ref.name} is not a waypoint Gateway (class ${WAYPOINT_CLASSES.join(' or ')}); Ambit enforces targetRefs policies only in waypoints, so the reference attaches nowhere`,
      );
      return undefined;
    }
    return services.filter((s) => boundTo(s.service, gw, options));
  }
  if (ref.kind === 'GatewayClass' && group === GATEWAY_GROUP) {
    if (pol.namespace !== options.rootNamespace) {
      report(
        'warning',
        at,
        `a GatewayClass can be targeted only from the root namespace (${options.rootNamespace}); the reference is ignored`,
      );
      return undefined;
    }
    if (!WAYPOINT_CLASSES.includes(ref.name)) {
      report(
        'warning',
        `${at}.name`,
        `${ref.name} is not a waypoint class (${WAYPOINT_CLASSES.join(', ')}); the reference attaches nowhere`,
      );
      return undefined;
    }
    const gws = waypoints.filter((g) => g.gatewayClassName === ref.name);
    return services.filter((s) => gws.some((g) => boundTo(s.service, g, options)));
  }
  report(
    'warning',
    at,
    `${group ? `${group}/` : ''}${ref.kind} is not a target Ambit supports (Service, ServiceEntry (${NETWORKING_GROUP}), Gateway or GatewayClass (${GATEWAY_GROUP})); the reference is ignored`,
  );
  return undefined;
}

/** The direct listeners of the workload waypoints a (valid) Gateway or GatewayClass reference names. */
function directTargets(
  pol: AuthorizationPolicy,
  ref: PolicyTargetRef,
  waypoints: readonly Gateway[],
  direct: ReadonlyMap<string, AuthzDirectListeners> | undefined,
  options: TranslateOptions,
): AuthzDirectListeners[] {
  if (!direct || ref.group !== GATEWAY_GROUP) return [];
  const of = (gws: readonly Gateway[]) => gws.flatMap((g) => direct.get(`${g.namespace}/${g.name}`) ?? []);
  if (ref.kind === 'Gateway')
    return of(waypoints.filter((g) => g.namespace === pol.namespace && g.name === ref.name));
  if (ref.kind === 'GatewayClass' && pol.namespace === options.rootNamespace)
    return of(waypoints.filter((g) => g.gatewayClassName === ref.name));
  return [];
}

/** Whether the service's waypoint reference (waypoint-binding.ts) names this Gateway. */
function boundTo(service: Service, gw: Gateway, options: TranslateOptions): boolean {
  const d = service.waypoint?.destination;
  if (!d) return false;
  if (d.kind === 'hostname') {
    const names = [
      `${gw.name}.${gw.namespace}.svc.${options.clusterDomain}`,
      ...[...gw.statusAddresses, ...gw.addresses].filter((a) => a.type === 'Hostname').map((a) => a.value),
    ];
    return d.namespace === gw.namespace && names.includes(d.hostname);
  }
  return [...gw.statusAddresses, ...gw.addresses].some(
    (a) => (a.type || 'IPAddress') === 'IPAddress' && a.value === d.address,
  );
}

// ---- one policy ----

/** istiod's two builds of one policy: for HTTP filter chains, or for TCP ones (`forTCP`). */
type Mode = 'http' | 'tcp';

/**
 * One policy's rules in one mode. In `tcp` mode only what TCP adds is reported (the HTTP-only
 * fields, naming `tcpListeners`); everything else was reported by the `http` build.
 */
function translatePolicy(
  pol: AuthorizationPolicy,
  reportAll: Report,
  mode: Mode,
  tcpListeners: readonly string[] = [],
): Translated | undefined {
  const report: Report = mode === 'http' ? reportAll : () => undefined;
  let action: Action;
  const written = pol.action || 'ALLOW';
  if (written === 'ALLOW' || written === 'DENY' || written === 'AUDIT') action = written;
  else if (written === 'CUSTOM') {
    report(
      'warning',
      'spec.action',
      'CUSTOM needs an external authorizer, which Ambit does not have: requests this policy matches are denied (as istiod does when the provider is missing)',
    );
    action = 'DENY';
  } else {
    report(
      'error',
      'spec.action',
      `"${written}" must be ALLOW, DENY, AUDIT or CUSTOM; the policy is not applied`,
    );
    return undefined;
  }
  const dryRunValue = pol.annotations[DRY_RUN_ANNOTATION];
  if (dryRunValue !== undefined && dryRunValue !== 'true' && dryRunValue !== 'false')
    report(
      'warning',
      `metadata.annotations["${DRY_RUN_ANNOTATION}"]`,
      `"${dryRunValue}" is not true or false; the policy is enforced`,
    );
  const policies = new Map<string, RbacPolicy>();
  const name = (i: number) => `ns[${pol.namespace}]-policy[${pol.name}]-rule[${i}]`;
  const tcp = mode === 'tcp' ? { listeners: tcpListeners, report: reportAll } : undefined;
  pol.rules.forEach((rule, i) => {
    const p = ruleToPolicy(rule, `spec.rules[${i}]`, action, pol.namespace, report, tcp);
    if (p) policies.set(name(i), p);
  });
  if (pol.rules.length === 0) policies.set(name(0), NEVER_POLICY);
  return { action, dryRun: dryRunValue === 'true', policies };
}

/** istiod's rbacPolicyMatchNever. */
const NEVER_POLICY: RbacPolicy = {
  permissions: [{ not_rule: { any: true } }],
  principals: [{ not_id: { any: true } }],
};

/** A value that could not be turned into a matcher: why, and where. */
interface Failure {
  readonly path: string;
  readonly message: string;
  /** Reported as an error (invalid) rather than a warning (valid, but not supported). */
  readonly invalid: boolean;
  /** A field a TCP connection does not have (istiod's "is HTTP only"); only in tcp mode. */
  readonly httpOnly?: boolean;
}

/** Builds the matchers of one field; collects what could not be built. */
class FieldBuilder<T> {
  readonly failures: Failure[] = [];
  private readonly and: T[] = [];
  private readonly or: (items: T[]) => T;
  private readonly not: (item: T) => T;

  constructor(or: (items: T[]) => T, not: (item: T) => T) {
    this.or = or;
    this.not = not;
  }

  /** `values` ORed, `notValues` ORed and negated; `make` returns a matcher or a failure message. */
  field(
    values: readonly string[],
    notValues: readonly string[],
    path: string,
    notPath: string,
    make: (v: string) => T | Failure,
  ): void {
    for (const [list, at, negate] of [
      [values, path, false],
      [notValues, notPath, true],
    ] as const) {
      const items: T[] = [];
      list.forEach((v, i) => {
        const r = make(v);
        // An HTTP-only field fails as a whole, once, at the field's path.
        if (isFailure(r)) this.failures.push({ ...r, path: r.path || (r.httpOnly ? at : `${at}[${i}]`) });
        else items.push(r);
      });
      if (items.length > 0) this.and.push(negate ? this.not(this.or(items)) : this.or(items));
    }
  }

  fail(f: Failure): void {
    this.failures.push(f);
  }

  matchers(): T[] {
    return this.and;
  }
}

function isFailure(x: unknown): x is Failure {
  return typeof x === 'object' && x !== null && 'message' in x && 'invalid' in x;
}

const unsupported = (message: string): Failure => ({ path: '', message, invalid: false });
const invalid = (message: string): Failure => ({ path: '', message, invalid: true });
const httpOnly = (what: string, path = ''): Failure => ({
  path,
  message: `${what} ${what.endsWith('s') ? 'are' : 'is'} HTTP-only: a TCP connection has none`,
  invalid: false,
  httpOnly: true,
});

/** The tcp-mode build of a rule: the TCP listeners it is for, and where its TCP problems go. */
interface TcpBuild {
  readonly listeners: readonly string[];
  readonly report: Report;
}

function ruleToPolicy(
  rule: AuthorizationPolicy['rules'][number],
  rp: string,
  action: Action,
  namespace: string,
  report: Report,
  tcp: TcpBuild | undefined,
): RbacPolicy | undefined {
  const failures: Failure[] = [];
  // `when` conditions go into every permission or principal (istiod's base lists).
  const basePermission: ((b: FieldBuilder<RbacPermission>) => void)[] = [];
  const basePrincipal: ((b: FieldBuilder<RbacPrincipal>) => void)[] = [];
  for (const [i, cond] of rule.when.entries()) {
    const at = `${rp}.when[${i}]`;
    const c = condition(cond, at, tcp !== undefined);
    if (c === 'unknown') {
      report(
        'warning',
        `${at}.key`,
        `"${cond.key}" is not a condition key Istio knows; the rule is skipped (as istiod skips it)`,
      );
      return undefined;
    }
    if (cond.values.length === 0 && cond.notValues.length === 0)
      failures.push({ path: at, message: 'needs values or notValues', invalid: true });
    if (c.kind === 'permission') basePermission.push(c.add);
    else basePrincipal.push(c.add);
  }

  const permissions: RbacPermission[] = [];
  const ops = rule.to.length > 0 ? rule.to : [undefined];
  ops.forEach((op, i) => {
    const b = permissionBuilder();
    if (rule.to.length > 0) {
      const at = `${rp}.to[${i}].operation`;
      if (op === undefined || Object.values(op).every((v: readonly string[]) => v.length === 0))
        b.fail({ path: at, message: 'must not be empty', invalid: true });
      else operation(op, at, b, tcp !== undefined);
    }
    for (const add of basePermission) add(b);
    failures.push(...b.failures);
    const m = b.matchers();
    permissions.push({ and_rules: { rules: m.length > 0 ? m : [{ any: true }] } });
  });

  const principals: RbacPrincipal[] = [];
  const srcs = rule.from.length > 0 ? rule.from : [undefined];
  srcs.forEach((src, i) => {
    const b = principalBuilder();
    if (rule.from.length > 0) {
      const at = `${rp}.from[${i}].source`;
      if (src === undefined || Object.values(src).every((v: readonly string[]) => v.length === 0))
        b.fail({ path: at, message: 'must not be empty', invalid: true });
      else source(src, at, namespace, b, tcp !== undefined);
    }
    for (const add of basePrincipal) add(b);
    failures.push(...b.failures);
    const m = b.matchers();
    principals.push({ and_ids: { ids: m.length > 0 ? m : [{ any: true }] } });
  });

  // Each failure once (a `when` condition is built into every permission or principal).
  const seen = new Set<string>();
  const unique = failures.filter((f) => {
    const k = `${f.path}\u0000${f.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  const consequence =
    action === 'ALLOW'
      ? 'so in this ALLOW policy the rule never matches (fail closed)'
      : `so it is left out and this ${action} rule matches more requests`;
  const policy = { permissions, principals };
  if (tcp) {
    // Everything but the HTTP-only fields was reported by the HTTP build.
    const ports = `on TCP listener${tcp.listeners.length > 1 ? 's' : ''} ${tcp.listeners.join(', ')}`;
    const tcpConsequence =
      action === 'ALLOW'
        ? `so ${ports} this ALLOW rule never matches (fail closed)`
        : matchesEverything(policy)
          ? `so ${ports} it is left out and this ${action} rule matches every connection`
          : `so ${ports} it is left out and this ${action} rule matches more connections`;
    for (const f of unique) if (f.httpOnly) tcp.report('warning', f.path, `${f.message}; ${tcpConsequence}`);
  } else
    for (const f of unique) report(f.invalid ? 'error' : 'warning', f.path, `${f.message}; ${consequence}`);
  if (unique.length > 0 && action === 'ALLOW') return undefined;
  return policy;
}

/** Every permission and every principal is `any`: the policy matches whatever comes. */
function matchesEverything(p: RbacPolicy): boolean {
  const anyOnly = (list: readonly { readonly any?: boolean }[]) => list.length === 1 && list[0]!.any === true;
  return (
    p.permissions.every((x) => x.and_rules !== undefined && anyOnly(x.and_rules.rules)) &&
    p.principals.every((x) => x.and_ids !== undefined && anyOnly(x.and_ids.ids))
  );
}

function permissionBuilder(): FieldBuilder<RbacPermission> {
  return new FieldBuilder<RbacPermission>(
    (rules) => ({ or_rules: { rules } }),
    (rule) => ({ not_rule: rule }),
  );
}

function principalBuilder(): FieldBuilder<RbacPrincipal> {
  return new FieldBuilder<RbacPrincipal>(
    (ids) => ({ or_ids: { ids } }),
    (id) => ({ not_id: id }),
  );
}

function operation(op: AuthzOperation, at: string, b: FieldBuilder<RbacPermission>, tcp: boolean): void {
  const f = (
    name: keyof AuthzOperation,
    not: keyof AuthzOperation,
    make: (v: string) => RbacPermission | Failure,
  ) => b.field(op[name], op[not], `${at}.${name}`, `${at}.${not}`, make);
  const http =
    (name: string, make: (v: string) => RbacPermission | Failure) =>
    (v: string): RbacPermission | Failure =>
      tcp ? httpOnly(name) : make(v);
  f(
    'hosts',
    'notHosts',
    http('hosts', (v) => ({ header: hostMatcher(v) })),
  );
  f(
    'methods',
    'notMethods',
    http('methods', (v) => ({ header: headerMatcher(':method', v) })),
  );
  f(
    'paths',
    'notPaths',
    http('paths', (v) =>
      v.includes('{')
        ? unsupported(`path template "${v}" is not supported yet`)
        : { url_path: { path: istioString(v) } },
    ),
  );
  f('ports', 'notPorts', (v) => {
    const port = portOf(v);
    return port === undefined ? invalid(`"${v}" is not a port number (1-65535)`) : { destination_port: port };
  });
}

function source(
  src: AuthzSource,
  at: string,
  namespace: string,
  b: FieldBuilder<RbacPrincipal>,
  tcp: boolean,
): void {
  const f = (name: keyof AuthzSource, not: keyof AuthzSource, make: (v: string) => RbacPrincipal | Failure) =>
    b.field(src[name], src[not], `${at}.${name}`, `${at}.${not}`, make);
  f('principals', 'notPrincipals', principalOf);
  f('serviceAccounts', 'notServiceAccounts', (v) => serviceAccountOf(v, namespace));
  f('requestPrincipals', 'notRequestPrincipals', () =>
    tcp ? httpOnly('requestPrincipals') : unsupported(JWT_UNSUPPORTED),
  );
  f('namespaces', 'notNamespaces', namespaceOf);
  f('remoteIpBlocks', 'notRemoteIpBlocks', (v) => cidrOr(v, (cidr) => ({ remote_ip: cidr })));
  f('ipBlocks', 'notIpBlocks', (v) => cidrOr(v, (cidr) => ({ direct_remote_ip: cidr })));
}

const JWT_UNSUPPORTED =
  'request principals need JWT authentication (RequestAuthentication), which Ambit does not support yet';

type ConditionResult =
  | { readonly kind: 'permission'; readonly add: (b: FieldBuilder<RbacPermission>) => void }
  | { readonly kind: 'principal'; readonly add: (b: FieldBuilder<RbacPrincipal>) => void }
  | 'unknown';

/** istiod's `when` keys: each to a permission or a principal matcher; in tcp mode, the HTTP-only ones fail. */
function condition(cond: AuthzCondition, at: string, tcp: boolean): ConditionResult {
  const k = cond.key;
  const tcpOnlyKey = () => httpOnly(`"${k}"`, `${at}.key`);
  const perm = (make: (v: string) => RbacPermission | Failure): ConditionResult => ({
    kind: 'permission',
    add: (b) => b.field(cond.values, cond.notValues, `${at}.values`, `${at}.notValues`, make),
  });
  const prin = (make: (v: string) => RbacPrincipal | Failure): ConditionResult => ({
    kind: 'principal',
    add: (b) => b.field(cond.values, cond.notValues, `${at}.values`, `${at}.notValues`, make),
  });
  switch (k) {
    case 'destination.ip':
      return perm((v) => cidrOr(v, (cidr) => ({ destination_ip: cidr })));
    case 'destination.port':
      return perm((v) => {
        const port = portOf(v);
        return port === undefined
          ? invalid(`"${v}" is not a port number (1-65535)`)
          : { destination_port: port };
      });
    case 'connection.sni':
      return perm((v) => ({ requested_server_name: istioString(v) }));
    case 'source.ip':
      return prin((v) => cidrOr(v, (cidr) => ({ direct_remote_ip: cidr })));
    case 'remote.ip':
      return prin((v) => cidrOr(v, (cidr) => ({ remote_ip: cidr })));
    case 'source.namespace':
      return prin(namespaceOf);
    case 'source.principal':
      return prin(principalOf);
    case 'request.auth.principal':
    case 'request.auth.audiences':
    case 'request.auth.presenter':
      return prin(() => (tcp ? tcpOnlyKey() : unsupported(JWT_UNSUPPORTED)));
    case 'any':
      return perm(() => ({ any: true }));
  }
  if (k.startsWith('request.headers')) {
    const name = /^request\.headers\[([^\]]+)\]$/.exec(k)?.[1];
    return prin((v) =>
      tcp
        ? tcpOnlyKey()
        : name === undefined
          ? invalid(`"${k}" must name the header in brackets, as request.headers[User-Agent]`)
          : { header: headerMatcher(name.toLowerCase(), v) },
    );
  }
  if (k.startsWith('request.auth.claims'))
    return prin(() => (tcp ? tcpOnlyKey() : unsupported(JWT_UNSUPPORTED)));
  if (k.startsWith('experimental.envoy.filters.'))
    return perm(() => unsupported(`"${k}" (Envoy metadata) is not supported`));
  return 'unknown';
}

// ---- matchers, as istiod's matcher package writes them ----

/** `*` → present (`.+`), `*x` suffix, `x*` prefix, else exact; `prefix` goes before the value. */
function istioString(v: string, prefix = ''): StringMatcher {
  if (v === '*') return { safe_regex: { regex: '.+' } };
  if (v.startsWith('*')) return { suffix: prefix + v.slice(1) };
  if (v.endsWith('*')) return { prefix: prefix + v.slice(0, -1) };
  return { exact: prefix + v };
}

function headerMatcher(name: string, v: string): HeaderMatcher {
  if (v === '*') return { name, present_match: true };
  if (v.startsWith('*')) return { name, string_match: { suffix: v.slice(1) } };
  if (v.endsWith('*')) return { name, string_match: { prefix: v.slice(0, -1) } };
  return { name, string_match: { exact: v } };
}

/** Hosts compare case-insensitively. */
function hostMatcher(v: string): HeaderMatcher {
  const m = headerMatcher(':authority', v);
  return m.string_match ? { ...m, string_match: { ...m.string_match, ignore_case: true } } : m;
}

function principalOf(v: string): RbacPrincipal {
  return { authenticated: { principal_name: istioString(v, SPIFFE_PREFIX) } };
}

function namespaceOf(v: string): RbacPrincipal {
  return {
    authenticated: { principal_name: { safe_regex: { regex: `.*/ns/${v.replaceAll('*', '.*')}/.*` } } },
  };
}

/** `ns/sa`, or a bare `sa` in the policy's namespace (istiod's serviceAccountRegex). */
function serviceAccountOf(v: string, namespace: string): RbacPrincipal {
  const slash = v.indexOf('/');
  const [ns, sa] = slash >= 0 ? [v.slice(0, slash), v.slice(slash + 1)] : [namespace, v];
  const q = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return {
    authenticated: {
      principal_name: { safe_regex: { regex: `spiffe://.+/ns/${q(ns)}/(.+/|)sa/${q(sa)}(/.+)?` } },
    },
  };
}

function cidrOr<T>(v: string, make: (cidr: CidrRange) => T): T | Failure {
  const c = parseCidr(v);
  if (c === undefined || ipFamily(c.address) === 0) return invalid(`"${v}" is not an IP address or CIDR`);
  return make({ address_prefix: c.address, prefix_len: { value: c.prefixLength } });
}

function portOf(v: string): number | undefined {
  const n = /^\d{1,5}$/.test(v) ? Number(v) : NaN;
  return n >= 1 && n <= 65535 ? n : undefined;
}

// ---- filters ----

const STAT_PREFIX: Readonly<Record<Action, string>> = {
  ALLOW: 'istio_dry_run_allow_',
  DENY: 'istio_dry_run_deny_',
  AUDIT: '',
};
const ENVOY_ACTION: Readonly<Record<Action, RbacAction>> = { ALLOW: 'ALLOW', DENY: 'DENY', AUDIT: 'LOG' };

/** The HTTP filter of one action: optional, so gRPC clients (which cannot enforce it) accept it. */
function httpFilter(name: string, config: RbacFilterConfig): HttpFilter {
  return { name, typed_config: packAny(EnvoyType.Rbac, config), is_optional: true };
}

/** The network filter of one action, with istiod's stat prefix. */
function networkFilter(name: string, config: RbacFilterConfig): NetworkFilter {
  const network: NetworkRbacFilterConfig = { ...config, stat_prefix: RBAC_TCP_STAT_PREFIX };
  return { name, typed_config: packAny(EnvoyType.NetworkRbac, network) };
}

/** AUDIT, DENY, ALLOW: one filter each for the actions present. */
function buildFilters<F>(
  list: readonly Translated[],
  make: (name: string, config: RbacFilterConfig) => F,
): F[] {
  const out: F[] = [];
  for (const [action, name] of [
    ['AUDIT', RBAC_FILTER.audit],
    ['DENY', RBAC_FILTER.deny],
    ['ALLOW', RBAC_FILTER.allow],
  ] as const) {
    const mine = list.filter((t) => t.action === action);
    if (mine.length === 0) continue;
    const rules = (dryRun: boolean): RbacRules | undefined => {
      const chosen = mine.filter((t) => t.dryRun === dryRun);
      if (chosen.length === 0) return undefined;
      const policies: Record<string, RbacPolicy> = {};
      for (const t of chosen)
        for (const [k, v] of [...t.policies].sort(([a], [b]) => cmp(a, b))) policies[k] = v;
      return { action: ENVOY_ACTION[action], policies };
    };
    const enforced = rules(false);
    const shadow = rules(true);
    const config: RbacFilterConfig = {
      ...(enforced ? { rules: enforced } : {}),
      ...(shadow ? { shadow_rules: shadow, shadow_rules_stat_prefix: STAT_PREFIX[action] } : {}),
    };
    out.push(make(name, config));
  }
  return out;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
