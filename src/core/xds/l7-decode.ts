/**
 * Envoy v3 L7 resources (as protobufjs decodes them from the protos shipped in
 * `@grpc/grpc-js-xds`) → the waypoint's model (l7-model.ts). Every problem is collected with its
 * field path (`virtual_hosts[0].routes[3].route.weighted_clusters.clusters[1].weight: …`); a
 * resource with any error is NACKed with all of them. Fields that would change behaviour but that
 * the waypoint cannot honour are errors; fields that only affect stats, tracing or tuning are
 * ignored. Pure: the Anys inside are unpacked through an injected AnyUnpacker (l7-wire.ts).
 *
 * Listener and RouteConfiguration live here; Cluster and ClusterLoadAssignment in
 * l7-decode-cluster.ts.
 */
import type { Decoded } from './workload-proto.ts';
import {
  ALWAYS,
  type Action,
  type ClusterWeight,
  type CorsPolicy,
  type FaultPolicy,
  type FilterSetting,
  type HashPolicy,
  type HttpFilter,
  type L7Listener,
  type MirrorPolicy,
  type NetworkRbacFilter,
  type PathMatch,
  type QueryParameterMatcher,
  type RedirectAction,
  type RegexRewrite,
  type RetryOn,
  type RetryPolicy,
  type Route,
  type RouteConfiguration,
  type RouteMatch,
  type SourceMatcher,
  type TcpProxySettings,
  type VirtualHost,
  RetryOn as RETRY_ON,
} from './l7-model.ts';
import { SOURCE_METADATA_FILTER } from './l7-names.ts';
import { decodeNetworkRbac, decodeRbac, type WireNetworkRbac, type WireRbac } from './l7-decode-rbac.ts';
import { compileSearch, parseSubstitution } from './l7-regex.ts';
import {
  Collector,
  anyTypeName,
  bool,
  durationMs,
  fraction,
  headerMutations,
  isSet,
  join,
  positiveMs,
  regex,
  stringMatcher,
  uint,
  decodeHeaderMatcher,
  type AnyUnpacker,
  type WireAny,
  type WireBool,
  type WireDuration,
  type WireFractionalPercent,
  type WireHeaderMatcher,
  type WireHeaderValueOption,
  type WireRegexMatcher,
  type WireRuntimeFractionalPercent,
  type WireStringMatcher,
  type WireUInt,
} from './l7-decode-common.ts';

export { decodeCluster, decodeClusterLoadAssignment } from './l7-decode-cluster.ts';
export type { AnyUnpacker, WireAny } from './l7-decode-common.ts';

/** Type names of the messages the decoders unpack from Anys. */
export const L7AnyType = {
  HttpConnectionManager: 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
  HttpFault: 'envoy.extensions.filters.http.fault.v3.HTTPFault',
  Cors: 'envoy.extensions.filters.http.cors.v3.Cors',
  CorsPolicy: 'envoy.extensions.filters.http.cors.v3.CorsPolicy',
  RouteCorsPolicy: 'envoy.config.route.v3.CorsPolicy',
  Router: 'envoy.extensions.filters.http.router.v3.Router',
  FilterConfig: 'envoy.config.route.v3.FilterConfig',
  HttpProtocolOptions: 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
  PreviousHostsPredicate: 'envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate',
  TcpProxy: 'envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
  Rbac: 'envoy.extensions.filters.http.rbac.v3.RBAC',
  NetworkRbac: 'envoy.extensions.filters.network.rbac.v3.RBAC',
} as const;

/** Envoy's limit on a direct response body unless the route configuration raises it. */
const DEFAULT_MAX_DIRECT_RESPONSE_BODY_BYTES = 4096;
/** Envoy's route timeout when `timeout` is absent. */
const DEFAULT_ROUTE_TIMEOUT_MS = 15_000;
const DEFAULT_RETRY_BASE_INTERVAL_MS = 25;
const PREVIOUS_HOSTS = 'envoy.retry_host_predicates.previous_hosts';

// ---------- Listener ----------

interface WireHttpFilter {
  name?: string;
  typed_config?: WireAny;
  config_discovery?: object;
  is_optional?: boolean;
  disabled?: boolean;
}
interface WireHcm {
  rds?: { route_config_name?: string; config_source?: { ads?: object; self?: object; path?: string } };
  route_config?: object;
  scoped_routes?: object;
  http_filters?: WireHttpFilter[];
}
export interface WireListener {
  name?: string;
  address?: object;
  filter_chains?: object[];
  api_listener?: { api_listener?: WireAny };
}

/** A Listener that is an API listener: HttpConnectionManager with RDS over ADS. */
export function decodeListener(w: WireListener, unpack: AnyUnpacker): Decoded<L7Listener> {
  const c = new Collector(unpack);
  if (!w.name) c.err('name', 'is required');
  if (isSet(w.filter_chains) && w.api_listener === undefined) return decodeTcpListener(w, c);
  if (isSet(w.filter_chains)) c.err('filter_chains', 'a listener is either an API listener or a TCP one');
  const hcm = c.any<WireHcm>(
    w.api_listener?.api_listener,
    [L7AnyType.HttpConnectionManager],
    'api_listener.api_listener',
  );
  let routeConfigName = '';
  const filters: HttpFilter[] = [];
  if (hcm) {
    const at = 'api_listener.api_listener';
    if (hcm.route_config !== undefined)
      c.err(join(at, 'route_config'), 'inline route configurations are not supported; use rds');
    if (hcm.scoped_routes !== undefined) c.err(join(at, 'scoped_routes'), 'is not supported; use rds');
    if (!hcm.rds) {
      if (hcm.route_config === undefined && hcm.scoped_routes === undefined)
        c.err(join(at, 'rds'), 'is required');
    } else {
      routeConfigName = hcm.rds.route_config_name ?? '';
      if (!routeConfigName) c.err(join(at, 'rds.route_config_name'), 'is required');
      const src = hcm.rds.config_source;
      if (src && src.ads === undefined && src.self === undefined) {
        c.err(join(at, 'rds.config_source'), 'routes must come over ADS (ads or self)');
      }
    }
    decodeHttpFilters(hcm.http_filters ?? [], join(at, 'http_filters'), c, filters);
  }
  if (c.errors.length) return { ok: false, errors: c.errors };
  return { ok: true, value: { name: w.name ?? '', routeConfigName, httpFilters: filters } };
}

interface WireTcpProxy {
  cluster?: string;
  weighted_clusters?: { clusters?: { name?: string; weight?: number; metadata_match?: object }[] };
  stat_prefix?: string;
  idle_timeout?: WireDuration;
  max_connect_attempts?: WireUInt;
  hash_policy?: { source_ip?: object; filter_state?: object }[];
  metadata_match?: object;
  tunneling_config?: object;
  on_demand?: object;
  max_downstream_connection_duration?: WireDuration;
}

/** Envoy's tcp_proxy `max_connect_attempts` default. */
const DEFAULT_MAX_CONNECT_ATTEMPTS = 1;

/**
 * A TCP port's listener: one filter chain whose last filter is a `tcp_proxy` naming a cluster or
 * weighted ones; before it only network RBAC filters (AuthorizationPolicies, as istiod puts them
 * first in a TCP chain), which the waypoint evaluates before it connects upstream.
 */
function decodeTcpListener(w: WireListener, c: Collector): Decoded<L7Listener> {
  const chains = w.filter_chains as { filters?: { name?: string; typed_config?: WireAny }[] }[];
  if (chains.length !== 1) c.err('filter_chains', 'a TCP listener has exactly one filter chain');
  const filters = chains[0]?.filters ?? [];
  if (filters.length === 0)
    c.err(
      'filter_chains[0].filters',
      'a TCP listener has exactly one filter (tcp_proxy), after any network RBAC filters',
    );
  const networkRbac: NetworkRbacFilter[] = [];
  filters.slice(0, -1).forEach((f, i) => {
    const at = `filter_chains[0].filters[${i}].typed_config`;
    const type = f.typed_config ? anyTypeName(f.typed_config) : '';
    if (type !== L7AnyType.NetworkRbac) {
      c.err(
        at,
        type === L7AnyType.TcpProxy
          ? 'tcp_proxy must be the last filter of the chain'
          : type
            ? `${type} may not come before tcp_proxy (only ${L7AnyType.NetworkRbac} may)`
            : 'is required',
      );
      return;
    }
    const rbac = c.any<WireNetworkRbac>(f.typed_config, [L7AnyType.NetworkRbac], at);
    if (rbac) networkRbac.push({ name: f.name ?? '', rbac: decodeNetworkRbac(rbac, at, c) });
  });
  const last = filters.at(-1);
  const at = `filter_chains[0].filters[${Math.max(0, filters.length - 1)}].typed_config`;
  const proxy = last ? c.any<WireTcpProxy>(last.typed_config, [L7AnyType.TcpProxy], at) : undefined;
  const tcp: { cluster: string; weight: number }[] = [];
  if (proxy) {
    if (proxy.cluster) tcp.push({ cluster: proxy.cluster, weight: 1 });
    else
      (proxy.weighted_clusters?.clusters ?? []).forEach((wc, i) => {
        if (!wc.name) c.err(`${at}.weighted_clusters.clusters[${i}].name`, 'is required');
        else if ((wc.weight ?? 0) > 0) tcp.push({ cluster: wc.name, weight: wc.weight ?? 0 });
      });
    if (tcp.length === 0) c.err(at, 'names no cluster with a weight above 0');
  }
  const settings = proxy ? decodeTcpProxySettings(proxy, at, c) : undefined;
  if (c.errors.length || !settings) return { ok: false, errors: c.errors };
  return {
    ok: true,
    value: {
      name: w.name ?? '',
      routeConfigName: '',
      httpFilters: [],
      tcp,
      tcpProxy: settings,
      ...(networkRbac.length > 0 && { networkRbac }),
    },
  };
}

/** The tcp_proxy fields beyond its clusters; the ones that would change where bytes go are errors. */
function decodeTcpProxySettings(p: WireTcpProxy, at: string, c: Collector): TcpProxySettings {
  for (const field of [
    'metadata_match',
    'tunneling_config',
    'on_demand',
    'max_downstream_connection_duration',
  ] as const) {
    if (isSet(p[field])) c.err(join(at, field), 'is not supported');
  }
  (p.weighted_clusters?.clusters ?? []).forEach((wc, i) => {
    if (isSet(wc.metadata_match))
      c.err(join(at, `weighted_clusters.clusters[${i}].metadata_match`), 'is not supported');
  });
  const attempts = uint(p.max_connect_attempts, DEFAULT_MAX_CONNECT_ATTEMPTS);
  if (attempts < 1) c.err(join(at, 'max_connect_attempts'), 'must be at least 1');
  const hashes = p.hash_policy ?? [];
  if (hashes.length > 1) c.err(join(at, 'hash_policy'), 'takes at most one policy');
  hashes.forEach((h, i) => {
    if (h.source_ip === undefined) c.err(join(at, `hash_policy[${i}]`), 'only source_ip is supported');
  });
  return {
    idleTimeoutMs: durationMs(p.idle_timeout, join(at, 'idle_timeout'), c),
    maxConnectAttempts: attempts,
    hashSourceIp: hashes.some((h) => h.source_ip !== undefined),
  };
}

function decodeHttpFilters(list: WireHttpFilter[], at: string, c: Collector, out: HttpFilter[]): void {
  const names = new Set<string>();
  list.forEach((f, i) => {
    const p = `${at}[${i}]`;
    const name = f.name ?? '';
    if (!name) c.err(join(p, 'name'), 'is required');
    else if (names.has(name)) c.err(join(p, 'name'), `duplicate filter name ${name}`);
    names.add(name);
    if (f.config_discovery !== undefined) c.err(join(p, 'config_discovery'), 'is not supported');
    if (f.disabled) c.err(join(p, 'disabled'), 'filters disabled by default are not supported');
    const type = f.typed_config ? anyTypeName(f.typed_config) : '';
    if (type === L7AnyType.HttpFault) {
      const fault = c.any<WireHttpFault>(f.typed_config, [L7AnyType.HttpFault], join(p, 'typed_config'));
      if (fault && (fault.delay !== undefined || fault.abort !== undefined)) {
        c.err(join(p, 'typed_config'), 'listener-wide faults are not supported; set them per route');
      }
      if (fault) decodeFault(fault, join(p, 'typed_config'), c);
      out.push({ name, kind: 'fault' });
    } else if (type === L7AnyType.Cors) {
      out.push({ name, kind: 'cors' });
    } else if (type === L7AnyType.Rbac) {
      // Enforced even when marked optional: optional only lets clients that cannot run it (gRPC
      // clients) skip it.
      const at = join(p, 'typed_config');
      const rbac = c.any<WireRbac>(f.typed_config, [L7AnyType.Rbac], at);
      if (rbac) out.push({ name, kind: 'rbac', rbac: decodeRbac(rbac, at, c) });
    } else if (type === L7AnyType.Router) {
      out.push({ name, kind: 'router' });
    } else if (!f.is_optional) {
      c.err(join(p, 'typed_config'), type ? `unsupported HTTP filter ${type}` : 'is required');
    }
  });
  const routers = out.filter((f) => f.kind === 'router').length;
  if (routers !== 1 || out[out.length - 1]?.kind !== 'router') {
    c.err(at, 'must end with exactly one envoy.filters.http.router');
  }
  for (const kind of ['fault', 'cors'] as const) {
    if (out.filter((f) => f.kind === kind).length > 1) c.err(at, `more than one ${kind} filter`);
  }
}

// ---------- RouteConfiguration ----------

interface WireFilterConfig {
  config?: WireAny;
  is_optional?: boolean;
  disabled?: boolean;
}
type WirePerFilter = Record<string, WireAny>;

interface WireMetadataMatcher {
  filter?: string;
  path?: { key?: string }[];
  value?: { string_match?: WireStringMatcher; present_match?: boolean; match_pattern?: string };
  invert?: boolean;
}
interface WireRouteMatch {
  prefix?: string;
  path?: string;
  safe_regex?: WireRegexMatcher;
  connect_matcher?: object;
  path_separated_prefix?: string;
  path_match_policy?: object;
  path_specifier?: string;
  case_sensitive?: WireBool;
  runtime_fraction?: WireRuntimeFractionalPercent;
  headers?: WireHeaderMatcher[];
  query_parameters?: { name?: string; string_match?: WireStringMatcher; present_match?: boolean }[];
  grpc?: object;
  tls_context?: object;
  dynamic_metadata?: WireMetadataMatcher[];
}
interface WireRetryPolicy {
  retry_on?: string;
  num_retries?: WireUInt;
  per_try_timeout?: WireDuration;
  per_try_idle_timeout?: WireDuration;
  retry_priority?: object;
  retry_host_predicate?: { name?: string; typed_config?: WireAny }[];
  retry_options_predicates?: object[];
  host_selection_retry_max_attempts?: number;
  retriable_status_codes?: number[];
  retry_back_off?: { base_interval?: WireDuration; max_interval?: WireDuration };
  rate_limited_retry_back_off?: object;
  retriable_headers?: object[];
  retriable_request_headers?: object[];
}
interface WireRegexRewrite {
  pattern?: WireRegexMatcher;
  substitution?: string;
}
interface WireClusterWeight {
  name?: string;
  cluster_header?: string;
  weight?: WireUInt;
  metadata_match?: object;
  request_headers_to_add?: WireHeaderValueOption[];
  request_headers_to_remove?: string[];
  response_headers_to_add?: WireHeaderValueOption[];
  response_headers_to_remove?: string[];
  typed_per_filter_config?: WirePerFilter;
  host_rewrite_literal?: string;
}
interface WireRouteAction {
  cluster?: string;
  cluster_header?: string;
  weighted_clusters?: {
    clusters?: WireClusterWeight[];
    total_weight?: WireUInt;
    runtime_key_prefix?: string;
    header_name?: string;
  };
  cluster_specifier_plugin?: string;
  inline_cluster_specifier_plugin?: object;
  cluster_not_found_response_code?: string | number;
  metadata_match?: object;
  prefix_rewrite?: string;
  regex_rewrite?: WireRegexRewrite;
  path_rewrite_policy?: object;
  host_rewrite_literal?: string;
  auto_host_rewrite?: WireBool;
  host_rewrite_header?: string;
  host_rewrite_path_regex?: object;
  append_x_forwarded_host?: boolean;
  timeout?: WireDuration;
  idle_timeout?: WireDuration;
  early_data_policy?: object;
  retry_policy?: WireRetryPolicy;
  retry_policy_typed_config?: WireAny;
  request_mirror_policies?: {
    cluster?: string;
    cluster_header?: string;
    runtime_fraction?: WireRuntimeFractionalPercent;
    disable_shadow_host_suffix_append?: boolean;
  }[];
  priority?: string | number;
  rate_limits?: object[];
  hash_policy?: {
    header?: { header_name?: string; regex_rewrite?: object };
    cookie?: { name?: string; ttl?: WireDuration; path?: string; attributes?: object[] };
    connection_properties?: { source_ip?: boolean };
    query_parameter?: { name?: string };
    filter_state?: object;
    terminal?: boolean;
  }[];
  cors?: object;
  max_grpc_timeout?: WireDuration;
  grpc_timeout_offset?: WireDuration;
  upgrade_configs?: { upgrade_type?: string; enabled?: WireBool; connect_config?: object }[];
  internal_redirect_policy?: object;
  internal_redirect_action?: string | number;
  max_internal_redirects?: WireUInt;
  hedge_policy?: object;
  max_stream_duration?: {
    max_stream_duration?: WireDuration;
    grpc_timeout_header_max?: WireDuration;
    grpc_timeout_header_offset?: WireDuration;
  };
}
interface WireRedirect {
  https_redirect?: boolean;
  scheme_redirect?: string;
  host_redirect?: string;
  port_redirect?: number;
  path_redirect?: string;
  prefix_rewrite?: string;
  regex_rewrite?: WireRegexRewrite;
  response_code?: string | number;
  strip_query?: boolean;
}
interface WireRoute {
  name?: string;
  match?: WireRouteMatch;
  route?: WireRouteAction;
  redirect?: WireRedirect;
  direct_response?: {
    status?: number;
    body?: {
      inline_string?: string;
      inline_bytes?: Uint8Array;
      filename?: string;
      environment_variable?: string;
    };
  };
  filter_action?: object;
  non_forwarding_action?: object;
  typed_per_filter_config?: WirePerFilter;
  request_headers_to_add?: WireHeaderValueOption[];
  request_headers_to_remove?: string[];
  response_headers_to_add?: WireHeaderValueOption[];
  response_headers_to_remove?: string[];
}
interface WireVirtualHost {
  name?: string;
  domains?: string[];
  routes?: WireRoute[];
  matcher?: object;
  require_tls?: string | number;
  rate_limits?: object[];
  request_headers_to_add?: WireHeaderValueOption[];
  request_headers_to_remove?: string[];
  response_headers_to_add?: WireHeaderValueOption[];
  response_headers_to_remove?: string[];
  cors?: object;
  typed_per_filter_config?: WirePerFilter;
  retry_policy?: WireRetryPolicy;
  retry_policy_typed_config?: WireAny;
  hedge_policy?: object;
  request_mirror_policies?: object[];
}
export interface WireRouteConfiguration {
  name?: string;
  virtual_hosts?: WireVirtualHost[];
  vhds?: object;
  internal_only_headers?: string[];
  request_headers_to_add?: WireHeaderValueOption[];
  request_headers_to_remove?: string[];
  response_headers_to_add?: WireHeaderValueOption[];
  response_headers_to_remove?: string[];
  most_specific_header_mutations_wins?: boolean;
  max_direct_response_body_size_bytes?: WireUInt;
  cluster_specifier_plugins?: object[];
  request_mirror_policies?: object[];
  ignore_port_in_host_matching?: boolean;
  ignore_path_parameters_in_path_matching?: boolean;
  typed_per_filter_config?: WirePerFilter;
}

export function decodeRouteConfiguration(
  w: WireRouteConfiguration,
  unpack: AnyUnpacker,
): Decoded<RouteConfiguration> {
  const c = new Collector(unpack);
  if (!w.name) c.err('name', 'is required');
  c.unsupported(
    w,
    ['vhds', 'cluster_specifier_plugins', 'request_mirror_policies', 'internal_only_headers'],
    '',
  );
  if (w.ignore_path_parameters_in_path_matching)
    c.err('ignore_path_parameters_in_path_matching', 'is not supported');
  const maxBody = uint(w.max_direct_response_body_size_bytes, DEFAULT_MAX_DIRECT_RESPONSE_BODY_BYTES);
  const perFilter = decodePerFilter(w.typed_per_filter_config, 'typed_per_filter_config', c);
  const seenDomains = new Map<string, string>();
  const virtualHosts = (w.virtual_hosts ?? []).map((vh, i) =>
    decodeVirtualHost(vh, `virtual_hosts[${i}]`, c, maxBody, seenDomains),
  );
  const value: RouteConfiguration = {
    name: w.name ?? '',
    virtualHosts,
    requestHeaders: headerMutations(w.request_headers_to_add, w.request_headers_to_remove, '', 'request', c),
    responseHeaders: headerMutations(
      w.response_headers_to_add,
      w.response_headers_to_remove,
      '',
      'response',
      c,
    ),
    mostSpecificHeaderMutationsWins: w.most_specific_header_mutations_wins ?? false,
    ignorePortInHostMatching: w.ignore_port_in_host_matching ?? false,
    fault: perFilter.fault,
    cors: perFilter.cors,
  };
  return c.errors.length ? { ok: false, errors: c.errors } : { ok: true, value };
}

function decodeVirtualHost(
  vh: WireVirtualHost,
  at: string,
  c: Collector,
  maxBody: number,
  seenDomains: Map<string, string>,
): VirtualHost {
  if (!vh.name) c.err(join(at, 'name'), 'is required');
  c.unsupported(
    vh,
    [
      'matcher',
      'rate_limits',
      'cors',
      'retry_policy_typed_config',
      'hedge_policy',
      'request_mirror_policies',
    ],
    at,
  );
  if (vh.require_tls !== undefined && vh.require_tls !== 'NONE' && vh.require_tls !== 0) {
    c.err(join(at, 'require_tls'), 'is not supported');
  }
  const domains = (vh.domains ?? []).map((d, i) => {
    const p = `${at}.domains[${i}]`;
    const domain = d.toLowerCase();
    if (!domain) c.err(p, 'must not be empty');
    else if (domain !== '*' && domain.slice(1, -1).includes('*')) {
      c.err(p, 'a wildcard must be the first or the last character');
    } else if (domain.startsWith('*') && domain.endsWith('*') && domain !== '*') {
      c.err(p, 'a domain may have only one wildcard');
    }
    const other = seenDomains.get(domain);
    if (other !== undefined) c.err(p, `duplicate domain ${domain} (also in ${other})`);
    seenDomains.set(domain, at);
    return domain;
  });
  if (domains.length === 0) c.err(join(at, 'domains'), 'needs at least one domain');
  const perFilter = decodePerFilter(vh.typed_per_filter_config, join(at, 'typed_per_filter_config'), c);
  return {
    name: vh.name ?? '',
    domains,
    routes: (vh.routes ?? []).map((r, i) => decodeRoute(r, `${at}.routes[${i}]`, c, maxBody)),
    requestHeaders: headerMutations(
      vh.request_headers_to_add,
      vh.request_headers_to_remove,
      at,
      'request',
      c,
    ),
    responseHeaders: headerMutations(
      vh.response_headers_to_add,
      vh.response_headers_to_remove,
      at,
      'response',
      c,
    ),
    retryPolicy: vh.retry_policy
      ? decodeRetryPolicy(vh.retry_policy, join(at, 'retry_policy'), c)
      : undefined,
    fault: perFilter.fault,
    cors: perFilter.cors,
  };
}

function decodeRoute(r: WireRoute, at: string, c: Collector, maxBody: number): Route {
  c.unsupported(r, ['filter_action', 'non_forwarding_action'], at);
  if (!r.match) c.err(join(at, 'match'), 'is required');
  const match = decodeRouteMatch(r.match ?? { prefix: '' }, join(at, 'match'), c);
  let action: Action;
  if (r.route) action = decodeRouteAction(r.route, join(at, 'route'), c);
  else if (r.redirect) action = decodeRedirect(r.redirect, join(at, 'redirect'), c);
  else if (r.direct_response) {
    const d = r.direct_response;
    const status = d.status ?? 0;
    if (status < 200 || status > 599) c.err(join(at, 'direct_response.status'), 'must be 200..599');
    let body: Uint8Array | undefined;
    const b = d.body;
    if (b?.inline_string !== undefined) body = new TextEncoder().encode(b.inline_string);
    else if (b?.inline_bytes !== undefined) body = new Uint8Array(b.inline_bytes);
    else if (b !== undefined)
      c.err(join(at, 'direct_response.body'), 'only inline_string and inline_bytes are supported');
    if (body && body.length > maxBody) {
      c.err(join(at, 'direct_response.body'), `is ${body.length} bytes; the limit is ${maxBody}`);
    }
    action = { kind: 'direct-response', status, body };
  } else {
    if (r.filter_action === undefined && r.non_forwarding_action === undefined) {
      c.err(at, 'needs route, redirect or direct_response');
    }
    action = { kind: 'direct-response', status: 404, body: undefined };
  }
  const perFilter = decodePerFilter(r.typed_per_filter_config, join(at, 'typed_per_filter_config'), c);
  return {
    name: r.name ?? '',
    match,
    action,
    fault: perFilter.fault,
    cors: perFilter.cors,
    requestHeaders: headerMutations(r.request_headers_to_add, r.request_headers_to_remove, at, 'request', c),
    responseHeaders: headerMutations(
      r.response_headers_to_add,
      r.response_headers_to_remove,
      at,
      'response',
      c,
    ),
  };
}

function decodeRouteMatch(m: WireRouteMatch, at: string, c: Collector): RouteMatch {
  let path: PathMatch;
  if (m.prefix !== undefined) path = { kind: 'prefix', value: m.prefix };
  else if (m.path !== undefined) path = { kind: 'exact', value: m.path };
  else if (m.safe_regex !== undefined)
    path = { kind: 'regex', regex: regex(m.safe_regex, join(at, 'safe_regex'), c) };
  else {
    c.unsupported(m, ['connect_matcher', 'path_separated_prefix', 'path_match_policy'], at);
    if (
      m.connect_matcher === undefined &&
      m.path_separated_prefix === undefined &&
      m.path_match_policy === undefined
    ) {
      c.err(at, 'needs prefix, path or safe_regex');
    }
    path = { kind: 'prefix', value: '' };
  }
  c.unsupported(m, ['tls_context'], at);
  const headers = (m.headers ?? []).map((h, i) => decodeHeaderMatcher(h, `${at}.headers[${i}]`, c));
  const queryParameters = (m.query_parameters ?? []).map((q, i): QueryParameterMatcher => {
    const p = `${at}.query_parameters[${i}]`;
    if (!q.name) c.err(join(p, 'name'), 'is required');
    return {
      name: q.name ?? '',
      matcher:
        q.string_match !== undefined ? stringMatcher(q.string_match, join(p, 'string_match'), c) : undefined,
    };
  });
  const source = (m.dynamic_metadata ?? []).map((d, i) =>
    decodeSourceMatcher(d, `${at}.dynamic_metadata[${i}]`, c),
  );
  return {
    path,
    caseSensitive: bool(m.case_sensitive, true),
    headers,
    queryParameters,
    source,
    grpcOnly: m.grpc !== undefined,
    fraction: m.runtime_fraction
      ? fraction(m.runtime_fraction.default_value, join(at, 'runtime_fraction.default_value'), c, ALWAYS)
      : undefined,
  };
}

function decodeSourceMatcher(d: WireMetadataMatcher, at: string, c: Collector): SourceMatcher {
  if (d.filter !== SOURCE_METADATA_FILTER) {
    c.err(join(at, 'filter'), `only ${SOURCE_METADATA_FILTER} metadata can be matched`);
  }
  const keys = (d.path ?? []).map((s) => s.key ?? '');
  let field: SourceMatcher['field'] = { kind: 'namespace' };
  if (keys.length === 2 && keys[0] === 'labels' && keys[1]) field = { kind: 'label', label: keys[1] };
  else if (!(keys.length === 1 && keys[0] === 'namespace')) {
    c.err(join(at, 'path'), 'must be [namespace] or [labels, <label>]');
  }
  let matcher = { kind: 'exact', value: '', ignoreCase: false } as SourceMatcher['matcher'];
  if (d.value?.string_match !== undefined)
    matcher = stringMatcher(d.value.string_match, join(at, 'value.string_match'), c);
  else c.err(join(at, 'value'), 'only string_match is supported');
  return { field, matcher, invert: d.invert ?? false };
}

const CLUSTER_NOT_FOUND: Record<string, 503 | 404 | 500> = {
  SERVICE_UNAVAILABLE: 503,
  NOT_FOUND: 404,
  INTERNAL_SERVER_ERROR: 500,
};

function decodeRouteAction(a: WireRouteAction, at: string, c: Collector): Action {
  c.unsupported(
    a,
    [
      'cluster_header',
      'cluster_specifier_plugin',
      'inline_cluster_specifier_plugin',
      'metadata_match',
      'path_rewrite_policy',
      'host_rewrite_header',
      'host_rewrite_path_regex',
      'append_x_forwarded_host',
      'idle_timeout',
      'early_data_policy',
      'retry_policy_typed_config',
      'rate_limits',
      'cors',
      'max_grpc_timeout',
      'grpc_timeout_offset',
      'internal_redirect_policy',
      'max_internal_redirects',
      'hedge_policy',
    ],
    at,
  );
  if (a.auto_host_rewrite?.value) c.err(join(at, 'auto_host_rewrite'), 'is not supported');
  if (
    a.internal_redirect_action !== undefined &&
    a.internal_redirect_action !== 'PASS_THROUGH_INTERNAL_REDIRECT' &&
    a.internal_redirect_action !== 0
  ) {
    c.err(join(at, 'internal_redirect_action'), 'is not supported');
  }
  if (a.priority !== undefined && a.priority !== 'DEFAULT' && a.priority !== 0) {
    c.err(join(at, 'priority'), 'only the DEFAULT priority is supported');
  }

  let clusters: ClusterWeight[] = [];
  let weighted = false;
  const none = { add: [], remove: [] };
  if (a.cluster !== undefined) {
    if (!a.cluster) c.err(join(at, 'cluster'), 'must not be empty');
    clusters = [
      { name: a.cluster, weight: 1, requestHeaders: none, responseHeaders: none, hostRewrite: undefined },
    ];
  } else if (a.weighted_clusters !== undefined) {
    weighted = true;
    const wc = a.weighted_clusters;
    const wat = join(at, 'weighted_clusters');
    if (wc.header_name) c.err(join(wat, 'header_name'), 'is not supported');
    clusters = (wc.clusters ?? []).map((cw, i) => {
      const p = `${wat}.clusters[${i}]`;
      c.unsupported(cw, ['cluster_header', 'metadata_match', 'typed_per_filter_config'], p);
      if (!cw.name) c.err(join(p, 'name'), 'is required');
      const weight = uint(cw.weight, 0);
      if (!Number.isInteger(weight) || weight < 0 || weight > 0xffffffff)
        c.err(join(p, 'weight'), 'must be a uint32');
      return {
        name: cw.name ?? '',
        weight,
        requestHeaders: headerMutations(
          cw.request_headers_to_add,
          cw.request_headers_to_remove,
          p,
          'request',
          c,
        ),
        responseHeaders: headerMutations(
          cw.response_headers_to_add,
          cw.response_headers_to_remove,
          p,
          'response',
          c,
        ),
        hostRewrite: cw.host_rewrite_literal || undefined,
      };
    });
    if (clusters.length === 0) c.err(join(wat, 'clusters'), 'needs at least one cluster');
    const sum = clusters.reduce((s, x) => s + x.weight, 0);
    if (clusters.length && sum === 0)
      c.err(join(wat, 'clusters'), 'the sum of the weights must be greater than 0');
    if (sum > 0xffffffff) c.err(join(wat, 'clusters'), 'the sum of the weights must fit in a uint32');
    if (wc.total_weight !== undefined && uint(wc.total_weight, 0) !== sum) {
      c.err(join(wat, 'total_weight'), `is ${uint(wc.total_weight, 0)} but the weights sum to ${sum}`);
    }
  } else if (
    a.cluster_header === undefined &&
    a.cluster_specifier_plugin === undefined &&
    a.inline_cluster_specifier_plugin === undefined
  ) {
    c.err(at, 'needs cluster or weighted_clusters');
  }

  if (a.prefix_rewrite && a.regex_rewrite) c.err(at, 'cannot have both prefix_rewrite and regex_rewrite');
  const notFound =
    a.cluster_not_found_response_code === undefined
      ? 503
      : CLUSTER_NOT_FOUND[String(a.cluster_not_found_response_code)];
  if (notFound === undefined)
    c.err(join(at, 'cluster_not_found_response_code'), `unknown value ${a.cluster_not_found_response_code}`);

  const msd = a.max_stream_duration;
  if (msd?.grpc_timeout_header_offset !== undefined) {
    c.err(join(at, 'max_stream_duration.grpc_timeout_header_offset'), 'is not supported');
  }
  const mirrors = (a.request_mirror_policies ?? []).map((m, i): MirrorPolicy => {
    const p = `${at}.request_mirror_policies[${i}]`;
    if (m.cluster_header) c.err(join(p, 'cluster_header'), 'is not supported');
    if (!m.cluster) c.err(join(p, 'cluster'), 'is required');
    return {
      cluster: m.cluster ?? '',
      fraction: m.runtime_fraction
        ? fraction(m.runtime_fraction.default_value, join(p, 'runtime_fraction.default_value'), c, ALWAYS)
        : undefined,
      disableShadowHostSuffix: m.disable_shadow_host_suffix_append ?? false,
    };
  });
  const hashPolicies: HashPolicy[] = [];
  (a.hash_policy ?? []).forEach((h, i) => {
    const p = `${at}.hash_policy[${i}]`;
    const terminal = h.terminal ?? false;
    if (h.header) {
      if (h.header.regex_rewrite) c.err(join(p, 'header.regex_rewrite'), 'is not supported');
      if (!h.header.header_name) c.err(join(p, 'header.header_name'), 'is required');
      hashPolicies.push({ kind: 'header', name: (h.header.header_name ?? '').toLowerCase(), terminal });
    } else if (h.cookie) {
      if (isSet(h.cookie.attributes)) c.err(join(p, 'cookie.attributes'), 'is not supported');
      if (!h.cookie.name) c.err(join(p, 'cookie.name'), 'is required');
      hashPolicies.push({
        kind: 'cookie',
        name: h.cookie.name ?? '',
        ttlMs: durationMs(h.cookie.ttl, join(p, 'cookie.ttl'), c),
        path: h.cookie.path ?? '',
        terminal,
      });
    } else if (h.connection_properties) {
      if (h.connection_properties.source_ip) hashPolicies.push({ kind: 'source-ip', terminal });
    } else if (h.query_parameter) {
      if (!h.query_parameter.name) c.err(join(p, 'query_parameter.name'), 'is required');
      hashPolicies.push({ kind: 'query-parameter', name: h.query_parameter.name ?? '', terminal });
    } else if (h.filter_state) c.err(join(p, 'filter_state'), 'is not supported');
    else c.err(p, 'needs header, cookie, connection_properties or query_parameter');
  });
  const upgrades: string[] = [];
  (a.upgrade_configs ?? []).forEach((u, i) => {
    const p = `${at}.upgrade_configs[${i}]`;
    if (u.connect_config) c.err(join(p, 'connect_config'), 'is not supported');
    if (!u.upgrade_type) c.err(join(p, 'upgrade_type'), 'is required');
    else if (bool(u.enabled, true)) upgrades.push(u.upgrade_type.toLowerCase());
  });
  return {
    kind: 'route',
    clusters,
    weighted,
    timeoutMs: durationMs(a.timeout, join(at, 'timeout'), c) ?? DEFAULT_ROUTE_TIMEOUT_MS,
    maxStreamDurationMs: durationMs(
      msd?.max_stream_duration,
      join(at, 'max_stream_duration.max_stream_duration'),
      c,
    ),
    grpcTimeoutHeaderMaxMs: durationMs(
      msd?.grpc_timeout_header_max,
      join(at, 'max_stream_duration.grpc_timeout_header_max'),
      c,
    ),
    retryPolicy: a.retry_policy ? decodeRetryPolicy(a.retry_policy, join(at, 'retry_policy'), c) : undefined,
    prefixRewrite: a.prefix_rewrite || undefined,
    regexRewrite: a.regex_rewrite
      ? decodeRegexRewrite(a.regex_rewrite, join(at, 'regex_rewrite'), c)
      : undefined,
    hostRewrite: a.host_rewrite_literal || undefined,
    mirrors,
    hashPolicies,
    upgrades,
    clusterNotFoundStatus: notFound ?? 503,
  };
}

function decodeRegexRewrite(r: WireRegexRewrite, at: string, c: Collector): RegexRewrite {
  const pattern = r.pattern?.regex ?? '';
  const substitution = r.substitution ?? '';
  const compiled = compileSearch(pattern);
  if (!compiled.ok) c.err(join(at, 'pattern.regex'), `invalid RE2 pattern: ${compiled.message}`);
  else {
    const s = parseSubstitution(substitution, compiled.groups);
    if (!s.ok) c.err(join(at, 'substitution'), s.message);
  }
  return { regex: pattern, substitution };
}

function decodeRetryPolicy(r: WireRetryPolicy, at: string, c: Collector): RetryPolicy {
  c.unsupported(
    r,
    [
      'per_try_idle_timeout',
      'retry_priority',
      'retry_options_predicates',
      'rate_limited_retry_back_off',
      'retriable_headers',
      'retriable_request_headers',
    ],
    at,
  );
  const retryOn: RetryOn[] = [];
  for (const raw of (r.retry_on ?? '').split(',')) {
    const token = raw.trim();
    if (!token) continue;
    if ((RETRY_ON as readonly string[]).includes(token)) {
      if (!retryOn.includes(token as RetryOn)) retryOn.push(token as RetryOn);
    } else c.err(join(at, 'retry_on'), `unknown retry condition ${JSON.stringify(token)}`);
  }
  let retryPreviousHosts = false;
  (r.retry_host_predicate ?? []).forEach((p, i) => {
    const typed = p.typed_config ? anyTypeName(p.typed_config) : '';
    if (p.name === PREVIOUS_HOSTS || typed === L7AnyType.PreviousHostsPredicate) retryPreviousHosts = true;
    else c.err(`${at}.retry_host_predicate[${i}]`, `unsupported retry host predicate ${p.name ?? typed}`);
  });
  (r.retriable_status_codes ?? []).forEach((code, i) => {
    if (code < 100 || code > 599) c.err(`${at}.retriable_status_codes[${i}]`, 'must be an HTTP status');
  });
  const bo = r.retry_back_off;
  let baseIntervalMs = DEFAULT_RETRY_BASE_INTERVAL_MS;
  let maxIntervalMs = DEFAULT_RETRY_BASE_INTERVAL_MS * 10;
  if (bo) {
    if (bo.base_interval === undefined) c.err(join(at, 'retry_back_off.base_interval'), 'is required');
    baseIntervalMs =
      positiveMs(bo.base_interval, join(at, 'retry_back_off.base_interval'), c) ?? baseIntervalMs;
    maxIntervalMs =
      positiveMs(bo.max_interval, join(at, 'retry_back_off.max_interval'), c) ?? baseIntervalMs * 10;
    if (maxIntervalMs < baseIntervalMs) {
      c.err(join(at, 'retry_back_off.max_interval'), 'must not be less than base_interval');
    }
  }
  const attempts = Number(r.host_selection_retry_max_attempts ?? 1);
  return {
    retryOn,
    numRetries: uint(r.num_retries, 1),
    perTryTimeoutMs: durationMs(r.per_try_timeout, join(at, 'per_try_timeout'), c) ?? 0,
    retriableStatusCodes: r.retriable_status_codes ?? [],
    retryPreviousHosts,
    hostSelectionRetryMaxAttempts: attempts > 0 ? attempts : 1,
    backOff: { baseIntervalMs, maxIntervalMs },
  };
}

const REDIRECT_CODES: Record<string, RedirectAction['status']> = {
  MOVED_PERMANENTLY: 301,
  FOUND: 302,
  SEE_OTHER: 303,
  TEMPORARY_REDIRECT: 307,
  PERMANENT_REDIRECT: 308,
};

function decodeRedirect(r: WireRedirect, at: string, c: Collector): RedirectAction {
  const status = REDIRECT_CODES[String(r.response_code ?? 'MOVED_PERMANENTLY')];
  if (!status) c.err(join(at, 'response_code'), `unknown value ${r.response_code}`);
  const port = r.port_redirect ?? 0;
  if (port > 65535) c.err(join(at, 'port_redirect'), 'is not a port');
  let path: RedirectAction['path'];
  if (r.path_redirect !== undefined) path = { kind: 'path', value: r.path_redirect };
  else if (r.prefix_rewrite !== undefined) path = { kind: 'prefix', value: r.prefix_rewrite };
  else if (r.regex_rewrite !== undefined)
    path = { kind: 'regex', rewrite: decodeRegexRewrite(r.regex_rewrite, join(at, 'regex_rewrite'), c) };
  const scheme =
    r.scheme_redirect !== undefined
      ? r.scheme_redirect.toLowerCase()
      : r.https_redirect
        ? 'https'
        : undefined;
  return {
    kind: 'redirect',
    scheme: scheme || undefined,
    host: r.host_redirect || undefined,
    port: port || undefined,
    path,
    status: status ?? 301,
    stripQuery: r.strip_query ?? false,
  };
}

// ---------- per-filter configuration: fault and CORS ----------

interface WireHttpFault {
  delay?: { fixed_delay?: WireDuration; header_delay?: object; percentage?: WireFractionalPercent };
  abort?: {
    http_status?: number;
    grpc_status?: number;
    header_abort?: object;
    percentage?: WireFractionalPercent;
  };
  upstream_cluster?: string;
  headers?: object[];
  downstream_nodes?: string[];
  max_active_faults?: WireUInt;
  response_rate_limit?: object;
}
interface WireCorsPolicy {
  allow_origin_string_match?: WireStringMatcher[];
  allow_methods?: string;
  allow_headers?: string;
  expose_headers?: string;
  max_age?: string;
  allow_credentials?: WireBool;
  filter_enabled?: WireRuntimeFractionalPercent;
  shadow_enabled?: WireRuntimeFractionalPercent;
  allow_private_network_access?: WireBool;
  forward_not_matching_preflights?: WireBool;
}

const NEVER = { numerator: 0, denominator: 100 } as const;

function decodeFault(f: WireHttpFault, at: string, c: Collector): FaultPolicy {
  c.unsupported(
    f,
    ['upstream_cluster', 'headers', 'downstream_nodes', 'max_active_faults', 'response_rate_limit'],
    at,
  );
  let delay: FaultPolicy['delay'];
  if (f.delay) {
    const p = join(at, 'delay');
    if (f.delay.header_delay !== undefined) c.err(join(p, 'header_delay'), 'is not supported');
    else if (f.delay.fixed_delay === undefined) c.err(join(p, 'fixed_delay'), 'is required');
    const ms = positiveMs(f.delay.fixed_delay, join(p, 'fixed_delay'), c) ?? 0;
    delay = { fixedDelayMs: ms, percentage: fraction(f.delay.percentage, join(p, 'percentage'), c, NEVER) };
  }
  let abort: FaultPolicy['abort'];
  if (f.abort) {
    const p = join(at, 'abort');
    const percentage = fraction(f.abort.percentage, join(p, 'percentage'), c, NEVER);
    if (f.abort.http_status !== undefined) {
      if (f.abort.http_status < 200 || f.abort.http_status > 599)
        c.err(join(p, 'http_status'), 'must be 200..599');
      abort = { httpStatus: f.abort.http_status, percentage };
    } else if (f.abort.grpc_status !== undefined) {
      abort = { grpcStatus: f.abort.grpc_status, percentage };
    } else if (f.abort.header_abort !== undefined) c.err(join(p, 'header_abort'), 'is not supported');
    else c.err(p, 'needs http_status or grpc_status');
  }
  return { delay, abort };
}

function optionalBool(v: WireBool | undefined): boolean | undefined {
  return v === undefined ? undefined : (v.value ?? false);
}

function decodeCors(p: WireCorsPolicy, at: string, c: Collector): CorsPolicy {
  return {
    allowOrigins: (p.allow_origin_string_match ?? []).map((m, i) =>
      stringMatcher(m, `${at}.allow_origin_string_match[${i}]`, c),
    ),
    allowMethods: p.allow_methods ?? '',
    allowHeaders: p.allow_headers ?? '',
    exposeHeaders: p.expose_headers ?? '',
    maxAge: p.max_age ?? '',
    allowCredentials: optionalBool(p.allow_credentials),
    allowPrivateNetworkAccess: optionalBool(p.allow_private_network_access),
    forwardNotMatchingPreflights: optionalBool(p.forward_not_matching_preflights),
    enabled: p.filter_enabled
      ? fraction(p.filter_enabled.default_value, join(at, 'filter_enabled.default_value'), c, ALWAYS)
      : undefined,
  };
}

/**
 * `typed_per_filter_config`: recognised by the type of each Any (a FilterConfig wrapper is
 * unwrapped), so the keys may be whatever names the listener gave its filters.
 */
function decodePerFilter(
  map: WirePerFilter | undefined,
  at: string,
  c: Collector,
): { fault: FilterSetting<FaultPolicy>; cors: FilterSetting<CorsPolicy> } {
  let fault: FilterSetting<FaultPolicy>;
  let cors: FilterSetting<CorsPolicy>;
  for (const [key, raw] of Object.entries(map ?? {})) {
    const p = `${at}[${JSON.stringify(key)}]`;
    let any: WireAny | undefined = raw;
    let optional = false;
    let disabled = false;
    let anyAt = p;
    if (anyTypeName(raw) === L7AnyType.FilterConfig) {
      const fc = c.any<WireFilterConfig>(raw, [L7AnyType.FilterConfig], p);
      optional = fc?.is_optional ?? false;
      disabled = fc?.disabled ?? false;
      any = fc?.config;
      anyAt = join(p, 'config');
    }
    const type = any ? anyTypeName(any) : '';
    const set = <T>(prev: FilterSetting<T>, value: () => T): FilterSetting<T> => {
      if (prev !== undefined) c.err(p, 'a second configuration for the same filter');
      return disabled ? { kind: 'disabled' } : { kind: 'config', config: value() };
    };
    if (type === L7AnyType.HttpFault || (disabled && key === 'envoy.filters.http.fault')) {
      fault = set(fault, () =>
        decodeFault(c.any<WireHttpFault>(any, [L7AnyType.HttpFault], anyAt) ?? {}, anyAt, c),
      );
    } else if (
      type === L7AnyType.CorsPolicy ||
      type === L7AnyType.RouteCorsPolicy ||
      (disabled && key === 'envoy.filters.http.cors')
    ) {
      cors = set(cors, () =>
        decodeCors(
          c.any<WireCorsPolicy>(any, [L7AnyType.CorsPolicy, L7AnyType.RouteCorsPolicy], anyAt) ?? {},
          anyAt,
          c,
        ),
      );
    } else if (!optional) {
      c.err(p, type ? `unsupported per-route filter configuration ${type}` : 'has no configuration');
    }
  }
  return { fault, cors };
}
