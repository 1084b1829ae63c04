/**
 * `envoy.extensions.filters.http.rbac.v3.RBAC` and `envoy.extensions.filters.network.rbac.v3.RBAC`
 * (as protobufjs decodes them) → the waypoint's RBAC model (l7-model.ts), every problem with its
 * field path. What the waypoint cannot evaluate the way Envoy would — CEL conditions, the matcher
 * tree, metadata and filter-state principals, URI templates — is an error, so the listener is
 * NACKed rather than enforced differently. Only stats settings are ignored. Pure.
 *
 * Both filters carry the same `envoy.config.rbac.v3.RBAC` rules. The network filter's header and
 * url_path matchers are accepted as Envoy accepts them: it evaluates them against an empty header
 * map, so they never see a request (core/policy/l7.ts evaluateConnection does the same).
 */
import {
  RbacAction,
  type CidrRange,
  type RbacConfig,
  type RbacPermission,
  type RbacPolicy,
  type RbacPrincipal,
  type RbacRules,
  type StringMatcher,
} from './l7-model.ts';
import {
  decodeHeaderMatcher,
  isIpAddress,
  join,
  stringMatcher,
  type Collector,
  type WireHeaderMatcher,
  type WireStringMatcher,
  type WireUInt,
} from './l7-decode-common.ts';

interface WireCidr {
  address_prefix?: string;
  prefix_len?: WireUInt;
}
interface WirePathMatcher {
  path?: WireStringMatcher;
}
interface WirePermission {
  and_rules?: { rules?: WirePermission[] };
  or_rules?: { rules?: WirePermission[] };
  any?: boolean;
  header?: WireHeaderMatcher;
  url_path?: WirePathMatcher;
  destination_ip?: WireCidr;
  destination_port?: number;
  destination_port_range?: { start?: number; end?: number };
  metadata?: object;
  not_rule?: WirePermission;
  requested_server_name?: WireStringMatcher;
  matcher?: object;
  uri_template?: object;
}
interface WirePrincipal {
  and_ids?: { ids?: WirePrincipal[] };
  or_ids?: { ids?: WirePrincipal[] };
  any?: boolean;
  authenticated?: { principal_name?: WireStringMatcher };
  source_ip?: WireCidr;
  direct_remote_ip?: WireCidr;
  remote_ip?: WireCidr;
  header?: WireHeaderMatcher;
  url_path?: WirePathMatcher;
  metadata?: object;
  filter_state?: object;
  not_id?: WirePrincipal;
  sourced_metadata?: object;
  custom?: object;
}
interface WirePolicy {
  permissions?: WirePermission[];
  principals?: WirePrincipal[];
  condition?: object;
  checked_condition?: object;
}
export interface WireRbacRules {
  action?: string | number;
  policies?: Record<string, WirePolicy>;
  audit_logging_options?: object;
}
export interface WireRbac {
  rules?: WireRbacRules;
  matcher?: object;
  shadow_rules?: WireRbacRules;
  shadow_matcher?: object;
  shadow_rules_stat_prefix?: string;
}

const ACTIONS: Readonly<Record<string, RbacAction>> = {
  ALLOW: RbacAction.Allow,
  DENY: RbacAction.Deny,
  LOG: RbacAction.Log,
};

/** `envoy.extensions.filters.network.rbac.v3.RBAC` (field numbers in the .proto). */
export interface WireNetworkRbac extends WireRbac {
  /** Required by Envoy (`min_len: 1`); the filter's stats live under `<stat_prefix>rbac.`. */
  stat_prefix?: string;
  enforcement_type?: string | number;
}

/**
 * The RBAC network filter's configuration (`at` is its typed_config's path). Both enforcement
 * types are accepted: the facts the rules can look at (peer, addresses, ports) do not change during
 * a connection, so checking once (ONE_TIME_ON_FIRST_BYTE) and on every read (CONTINUOUS) decide the
 * same. The waypoint checks before it connects upstream.
 */
export function decodeNetworkRbac(w: WireNetworkRbac, at: string, c: Collector): RbacConfig {
  if (!w.stat_prefix) c.err(join(at, 'stat_prefix'), 'is required (Envoy: at least 1 character)');
  const enforcement = String(w.enforcement_type ?? 'ONE_TIME_ON_FIRST_BYTE');
  if (!['ONE_TIME_ON_FIRST_BYTE', 'CONTINUOUS', '0', '1'].includes(enforcement))
    c.err(join(at, 'enforcement_type'), `unknown value ${enforcement}`);
  return decodeRbac(w, at, c);
}

/** The RBAC HTTP filter's configuration (`at` is its typed_config's path). */
export function decodeRbac(w: WireRbac, at: string, c: Collector): RbacConfig {
  c.unsupported(w, ['matcher', 'shadow_matcher'], at, 'is not supported; use rules');
  return {
    rules: w.rules ? decodeRules(w.rules, join(at, 'rules'), c) : undefined,
    shadowRules: w.shadow_rules ? decodeRules(w.shadow_rules, join(at, 'shadow_rules'), c) : undefined,
    shadowRulesStatPrefix: w.shadow_rules_stat_prefix ?? '',
  };
}

function decodeRules(w: WireRbacRules, at: string, c: Collector): RbacRules {
  const action = ACTIONS[String(w.action ?? 'ALLOW')];
  if (!action) c.err(join(at, 'action'), `unknown value ${w.action}`);
  c.unsupported(w, ['audit_logging_options'], at);
  const policies = Object.entries(w.policies ?? {})
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, p]) => decodePolicy(name, p, `${join(at, 'policies')}[${JSON.stringify(name)}]`, c));
  return { action: action ?? RbacAction.Allow, policies };
}

function decodePolicy(name: string, p: WirePolicy, at: string, c: Collector): RbacPolicy {
  c.unsupported(p, ['condition', 'checked_condition'], at, 'CEL conditions are not supported');
  const permissions = (p.permissions ?? []).map((x, i) =>
    permission(x, `${join(at, 'permissions')}[${i}]`, c),
  );
  const principals = (p.principals ?? []).map((x, i) => principal(x, `${join(at, 'principals')}[${i}]`, c));
  if (permissions.length === 0) c.err(join(at, 'permissions'), 'needs at least one permission');
  if (principals.length === 0) c.err(join(at, 'principals'), 'needs at least one principal');
  return { name, permissions, principals };
}

/** Exactly one field of a oneof is set; reports none or several. */
function oneOf(obj: object, fields: readonly string[], at: string, c: Collector): string | undefined {
  const o = obj as Record<string, unknown>;
  const set = fields.filter((f) => o[f] !== undefined && o[f] !== null && o[f] !== false);
  if (set.length === 0) c.err(at, `needs one of ${fields.join(', ')}`);
  else if (set.length > 1) c.err(at, `sets ${set.join(' and ')}; only one may be set`);
  return set[0];
}

const PERMISSION_FIELDS = [
  'and_rules',
  'or_rules',
  'any',
  'header',
  'url_path',
  'destination_ip',
  'destination_port',
  'destination_port_range',
  'metadata',
  'not_rule',
  'requested_server_name',
  'matcher',
  'uri_template',
] as const;

const NEVER: RbacPermission = { kind: 'not', rule: { kind: 'any' } };

function permission(p: WirePermission, at: string, c: Collector): RbacPermission {
  const field = oneOf(p, PERMISSION_FIELDS, at, c);
  const here = (f: string) => join(at, f);
  switch (field) {
    case 'and_rules':
    case 'or_rules': {
      const rules = p[field]?.rules ?? [];
      if (rules.length === 0) c.err(join(here(field), 'rules'), 'needs at least one rule');
      return {
        kind: field === 'and_rules' ? 'and' : 'or',
        rules: rules.map((r, i) => permission(r, `${here(field)}.rules[${i}]`, c)),
      };
    }
    case 'any':
      return { kind: 'any' };
    case 'header':
      return { kind: 'header', header: decodeHeaderMatcher(p.header!, here('header'), c) };
    case 'url_path':
      return { kind: 'url-path', matcher: pathMatcher(p.url_path!, here('url_path'), c) };
    case 'destination_ip':
      return { kind: 'destination-ip', cidr: cidr(p.destination_ip!, here('destination_ip'), c) };
    case 'destination_port': {
      const port = Number(p.destination_port);
      if (!(port >= 0 && port <= 65535)) c.err(here('destination_port'), 'must be 0..65535');
      return { kind: 'destination-port', port };
    }
    case 'destination_port_range': {
      const start = Number(p.destination_port_range!.start ?? 0);
      const end = Number(p.destination_port_range!.end ?? 0);
      if (!(start <= end)) c.err(here('destination_port_range'), 'start must not exceed end');
      return { kind: 'destination-port-range', start, end };
    }
    case 'not_rule':
      return { kind: 'not', rule: permission(p.not_rule!, here('not_rule'), c) };
    case 'requested_server_name':
      return {
        kind: 'requested-server-name',
        matcher: stringMatcher(p.requested_server_name, here('requested_server_name'), c),
      };
    case 'metadata':
    case 'matcher':
    case 'uri_template':
      c.err(here(field), 'is not supported');
      return NEVER;
    default:
      return NEVER;
  }
}

const PRINCIPAL_FIELDS = [
  'and_ids',
  'or_ids',
  'any',
  'authenticated',
  'source_ip',
  'direct_remote_ip',
  'remote_ip',
  'header',
  'url_path',
  'metadata',
  'filter_state',
  'not_id',
  'sourced_metadata',
  'custom',
] as const;

const NOBODY: RbacPrincipal = { kind: 'not', id: { kind: 'any' } };

function principal(p: WirePrincipal, at: string, c: Collector): RbacPrincipal {
  const field = oneOf(p, PRINCIPAL_FIELDS, at, c);
  const here = (f: string) => join(at, f);
  switch (field) {
    case 'and_ids':
    case 'or_ids': {
      const ids = p[field]?.ids ?? [];
      if (ids.length === 0) c.err(join(here(field), 'ids'), 'needs at least one principal');
      return {
        kind: field === 'and_ids' ? 'and' : 'or',
        ids: ids.map((x, i) => principal(x, `${here(field)}.ids[${i}]`, c)),
      };
    }
    case 'any':
      return { kind: 'any' };
    case 'authenticated': {
      const m = p.authenticated!.principal_name;
      return {
        kind: 'authenticated',
        principalName: m ? stringMatcher(m, join(here('authenticated'), 'principal_name'), c) : undefined,
      };
    }
    case 'source_ip':
    case 'direct_remote_ip':
      return { kind: 'direct-remote-ip', cidr: cidr(p[field]!, here(field), c) };
    case 'remote_ip':
      return { kind: 'remote-ip', cidr: cidr(p.remote_ip!, here('remote_ip'), c) };
    case 'header':
      return { kind: 'header', header: decodeHeaderMatcher(p.header!, here('header'), c) };
    case 'url_path':
      return { kind: 'url-path', matcher: pathMatcher(p.url_path!, here('url_path'), c) };
    case 'not_id':
      return { kind: 'not', id: principal(p.not_id!, here('not_id'), c) };
    case 'metadata':
    case 'filter_state':
    case 'sourced_metadata':
    case 'custom':
      c.err(here(field), 'is not supported');
      return NOBODY;
    default:
      return NOBODY;
  }
}

function pathMatcher(p: WirePathMatcher, at: string, c: Collector): StringMatcher {
  return stringMatcher(p.path, join(at, 'path'), c);
}

function cidr(w: WireCidr, at: string, c: Collector): CidrRange {
  const address = w.address_prefix ?? '';
  if (!isIpAddress(address)) c.err(join(at, 'address_prefix'), `"${address}" is not an IP address`);
  const max = address.includes(':') ? 128 : 32;
  // Envoy reads an unset prefix_len as 0 (the whole address space).
  const prefixLength = w.prefix_len?.value ?? 0;
  if (!(prefixLength >= 0 && prefixLength <= max))
    c.err(join(at, 'prefix_len'), `must be 0..${max} for this address`);
  return { address, prefixLength };
}
