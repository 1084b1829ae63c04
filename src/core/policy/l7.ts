/**
 * Authorization as Envoy's RBAC filters evaluate it, for the waypoint (issue 6 part 2). Pure: the
 * listener's RBAC filters (decoded, l7-model.ts) and one request's or connection's facts in, a
 * decision out.
 *
 * - `evaluateL7`: the HTTP filter, per request.
 * - `evaluateConnection`: the network filter, per TCP connection (a TCP service port, a workload's
 *   traffic sniffed as TCP). The same rules and matchers; as in Envoy, whose network filter hands
 *   the engine an empty header map, a header matcher sees every header missing, a url_path never
 *   matches and `remote_ip` is the direct peer.
 *
 * - The filters run in the listener's order; the controller emits them as istiod does: AUDIT (action
 *   LOG), then DENY, then ALLOW, so a matching DENY denies before any ALLOW is looked at.
 * - A filter with `rules`: ALLOW lets the request through if some policy matches and denies it
 *   otherwise (so an ALLOW filter with no policies denies everything); DENY denies it if some policy
 *   matches; LOG never denies and only records the matching policy. A filter without `rules`
 *   enforces nothing.
 * - `shadow_rules` (Istio's dry run) are evaluated like rules and reported, never enforced.
 * - A policy matches when any of its permissions and any of its principals match. Policies are
 *   tried in name order, as Envoy's engine keeps them, so the policy named in a denial is the first
 *   by name.
 */
import { ipFamily } from '../ip.ts';
import { compileFullMatch } from '../xds/l7-regex.ts';
import type {
  CidrRange,
  HeaderMatcher,
  RbacAction,
  RbacConfig,
  RbacPermission,
  RbacPrincipal,
  RbacRules,
  StringMatcher,
} from '../xds/l7-model.ts';
import { inCidr } from './l4.ts';

/** One RBAC filter of a listener, by its name in the HTTP connection manager. */
export interface L7RbacFilter {
  readonly name: string;
  readonly config: RbacConfig;
}

/** The facts about one connection that RBAC rules can look at. */
export interface L7Connection {
  /** The peer's SPIFFE identity (`spiffe://…`); undefined for a plaintext peer. */
  readonly peerPrincipal: string | undefined;
  /** The address of the client workload (the tunnel's source). */
  readonly directRemoteIp: string;
  /** The destination the client asked for (a service VIP); undefined when it was a host name. */
  readonly destinationIp: string | undefined;
  readonly destinationPort: number;
  /** SNI of the connection; empty when none (plaintext HTTP inside HBONE has none). */
  readonly requestedServerName: string;
}

/** The facts about one request that RBAC rules can look at: its connection's, and its own. */
export interface L7Request extends L7Connection {
  readonly method: string;
  /** The request target's path, query included (`:path`). */
  readonly path: string;
  readonly authority: string;
  /** Request headers by lower-case name (no pseudo-headers: those are the fields above). */
  readonly headers: ReadonlyMap<string, readonly string[]>;
}

/** A dry-run (shadow) evaluation: what the rules would have done. */
export interface ShadowResult {
  readonly filter: string;
  readonly statPrefix: string;
  readonly allowed: boolean;
  /** The policy that decided, or undefined when none matched. */
  readonly policy: string | undefined;
}

interface Trail {
  /** Policies of LOG filters that matched (Istio AUDIT). */
  readonly audited: readonly string[];
  readonly shadow: readonly ShadowResult[];
}

export type L7Decision =
  | (Trail & { readonly allowed: true })
  | (Trail & {
      readonly allowed: false;
      /** The filter that denied. */
      readonly filter: string;
      /** The DENY policy that matched; undefined when no ALLOW policy matched. */
      readonly policy: string | undefined;
      /** Envoy's response code details: `rbac_access_denied_matched_policy[<policy>|none]`. */
      readonly details: string;
    });

/** Envoy's local reply for a denial: 403 with this body (text/plain). */
export const RBAC_DENIED_BODY = 'RBAC: access denied';

/** The HTTP RBAC filters of a listener, for one request. */
export function evaluateL7(filters: readonly L7RbacFilter[], req: L7Request): L7Decision {
  return evaluate(filters, new Facts(req, req));
}

/** The network RBAC filters of a TCP listener, for one connection (no request: no headers, no path). */
export function evaluateConnection(filters: readonly L7RbacFilter[], conn: L7Connection): L7Decision {
  return evaluate(filters, new Facts(conn, undefined));
}

function evaluate(filters: readonly L7RbacFilter[], facts: Facts): L7Decision {
  const audited: string[] = [];
  const shadow: ShadowResult[] = [];
  for (const f of filters) {
    const { rules, shadowRules } = f.config;
    if (shadowRules) {
      const r = apply(shadowRules, facts);
      shadow.push({
        filter: f.name,
        statPrefix: f.config.shadowRulesStatPrefix,
        allowed: r.allowed,
        policy: r.policy,
      });
    }
    if (!rules) continue;
    const r = apply(rules, facts);
    if (rules.action === 'LOG') {
      if (r.policy !== undefined) audited.push(r.policy);
    } else if (!r.allowed) {
      return {
        allowed: false,
        filter: f.name,
        policy: r.policy,
        details: `rbac_access_denied_matched_policy[${r.policy ?? 'none'}]`,
        audited,
        shadow,
      };
    }
  }
  return { allowed: true, audited, shadow };
}

/** One rule set: the first matching policy by name, and what the action makes of it. */
function apply(rules: RbacRules, facts: Facts): { allowed: boolean; policy: string | undefined } {
  const hit = rules.policies.find(
    (p) => p.permissions.some((x) => permits(x, facts)) && p.principals.some((x) => identifies(x, facts)),
  );
  const action: RbacAction = rules.action;
  const allowed = action === 'ALLOW' ? hit !== undefined : action === 'DENY' ? hit === undefined : true;
  return { allowed, policy: hit?.name };
}

function permits(p: RbacPermission, f: Facts): boolean {
  switch (p.kind) {
    case 'any':
      return true;
    case 'and':
      return p.rules.every((r) => permits(r, f));
    case 'or':
      return p.rules.some((r) => permits(r, f));
    case 'not':
      return !permits(p.rule, f);
    case 'header':
      return headerMatches(p.header, f);
    case 'url-path':
      return f.urlPath !== undefined && stringMatches(p.matcher, f.urlPath);
    case 'destination-ip':
      return f.req.destinationIp !== undefined && cidrContains(p.cidr, f.req.destinationIp);
    case 'destination-port':
      return f.req.destinationPort === p.port;
    case 'destination-port-range':
      return f.req.destinationPort >= p.start && f.req.destinationPort < p.end;
    case 'requested-server-name':
      return stringMatches(p.matcher, f.req.requestedServerName);
  }
}

function identifies(p: RbacPrincipal, f: Facts): boolean {
  switch (p.kind) {
    case 'any':
      return true;
    case 'and':
      return p.ids.every((x) => identifies(x, f));
    case 'or':
      return p.ids.some((x) => identifies(x, f));
    case 'not':
      return !identifies(p.id, f);
    case 'authenticated':
      // Envoy: no principal_name matches any TLS peer; a name is matched against the URI SAN.
      if (f.req.peerPrincipal === undefined) return false;
      return p.principalName === undefined || stringMatches(p.principalName, f.req.peerPrincipal);
    case 'direct-remote-ip':
      return cidrContains(p.cidr, f.req.directRemoteIp);
    case 'remote-ip':
      return cidrContains(p.cidr, f.remoteIp);
    case 'header':
      return headerMatches(p.header, f);
    case 'url-path':
      return f.urlPath !== undefined && stringMatches(p.matcher, f.urlPath);
  }
}

/** Facts derived from the request once, when first asked for. */
class Facts {
  readonly req: L7Connection;
  /** The request; undefined for a connection (the network filter). */
  readonly http: L7Request | undefined;
  private path: string | undefined;
  private remote: string | undefined;

  constructor(req: L7Connection, http: L7Request | undefined) {
    this.req = req;
    this.http = http;
  }

  /** The path without query or fragment, as Envoy's url_path matcher sees it; undefined without one. */
  get urlPath(): string | undefined {
    if (this.http === undefined) return undefined;
    this.path ??= this.http.path.replace(/[?#].*$/s, '');
    return this.path;
  }

  /**
   * The original client: the last valid address of x-forwarded-for (Envoy's reading with no trusted
   * hops), else the direct peer.
   */
  get remoteIp(): string {
    if (this.remote === undefined) {
      const xff = (this.http?.headers.get('x-forwarded-for') ?? []).join(',').split(',');
      const last = xff.at(-1)?.trim() ?? '';
      this.remote = ipFamily(last) !== 0 ? last : this.req.directRemoteIp;
    }
    return this.remote;
  }
}

function headerValue(f: Facts, name: string): string | undefined {
  const http = f.http;
  // A connection has no headers at all (Envoy's network filter: an empty header map).
  if (http === undefined) return undefined;
  switch (name) {
    case ':method':
      return http.method;
    case ':path':
      return http.path;
    case ':authority':
    case 'host':
      return http.authority;
    case ':scheme':
      return 'http';
  }
  const v = http.headers.get(name);
  // Several values of one header are matched as their comma-joined string, as Envoy does.
  return v && v.length > 0 ? v.join(',') : undefined;
}

function headerMatches(h: HeaderMatcher, f: Facts): boolean {
  const m = h.match;
  let value = headerValue(f, h.name);
  if (value === undefined) {
    if (!h.treatMissingAsEmpty) {
      // Envoy: a missing header matches only `present_match: false`, or an inverted `true`.
      const present = m.kind === 'present' ? m.present : undefined;
      return h.invert ? present === true : present === false;
    }
    value = '';
  }
  const ok =
    m.kind === 'string'
      ? stringMatches(m.matcher, value)
      : m.kind === 'present'
        ? m.present
        : /^[+-]?\d+$/.test(value) && Number(value) >= m.start && Number(value) < m.end;
  return ok !== h.invert;
}

/** Compiled once per decoded matcher (the config's objects live as long as the config). */
const regexes = new WeakMap<StringMatcher, RegExp>();

/** Envoy's StringMatcher (regexes compiled once per matcher); also the waypoint's SAN matchers. */
export function stringMatches(m: StringMatcher, value: string): boolean {
  if (m.kind === 'regex') {
    let re = regexes.get(m);
    if (!re) {
      const r = compileFullMatch(m.regex);
      // The decoder validated every pattern; an invalid one here matches nothing.
      if (!r.ok) return false;
      re = r.regex;
      regexes.set(m, re);
    }
    return re.test(value);
  }
  const lower = (s: string) => s.replace(/[A-Z]+/g, (x) => x.toLowerCase());
  const v = m.ignoreCase ? lower(value) : value;
  const want = m.ignoreCase ? lower(m.value) : m.value;
  switch (m.kind) {
    case 'exact':
      return v === want;
    case 'prefix':
      return v.startsWith(want);
    case 'suffix':
      return v.endsWith(want);
    case 'contains':
      return v.includes(want);
  }
}

/** IPv4 and IPv6; an address of the other family never matches (as in Envoy). */
function cidrContains(cidr: CidrRange, ip: string): boolean {
  return inCidr(ip, cidr);
}
