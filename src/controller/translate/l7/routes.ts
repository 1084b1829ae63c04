/**
 * VirtualService `http[]` rules → Envoy `Route`s for one service port, as istiod's TranslateRoute
 * (pilot/pkg/networking/core/route/route.go) builds them for waypoints. Pure.
 *
 * - Each match block of a rule becomes one Route (the blocks are ORed: consecutive routes with the
 *   same action); a rule without a match is one catch-all Route. A block for another `port`, or bound
 *   by its own `gateways` to gateways only, yields nothing on this port.
 * - Rules of all the VirtualServices that apply are concatenated in creation order; the first
 *   catch-all ends the list (nothing after it could match).
 * - `sourceNamespace` / `sourceLabels` become dynamic-metadata matchers on SOURCE_METADATA_FILTER,
 *   which the waypoint fills from the real client workload. Istio's waypoints drop such blocks; Ambit
 *   evaluates them (issue 5). gRPC clients ignore dynamic metadata, as they ignore query parameters.
 * - Per-route CORS is a CorsPolicy wrapped in an optional FilterConfig: gRPC clients have no CORS
 *   filter and would otherwise reject the whole RouteConfiguration; Envoy unwraps it.
 */
import { parseClusterName, SOURCE_METADATA_FILTER } from '../../../core/xds/l7-names.ts';
import type {
  Any,
  ClusterWeight,
  DirectResponseAction,
  FractionalPercent,
  HashPolicy,
  HeaderMatcher,
  HeaderValueOption,
  MetadataMatcher,
  QueryParameterMatcher,
  RedirectAction,
  RedirectResponseCode,
  RequestMirrorPolicy,
  RetryPolicy,
  Route,
  RouteAction,
  RouteMatch,
  StringMatcher,
} from './envoy-types.ts';
import { emptyAny, EnvoyType, packAny } from './protos.ts';
import { appliesToMesh } from './select.ts';
import type {
  CorsPolicy,
  Destination,
  Duration,
  FaultInjection,
  HeaderOperations,
  Headers,
  HttpMatch,
  HttpRedirect,
  HttpRetry,
  HttpRoute,
  L7Problem,
  StringMatch,
  VirtualService,
} from './types.ts';
import { isAuthorityHeader, isInternalHeader, millisToDuration, ZERO_DURATION } from './values.ts';

export const FAULT_FILTER = 'envoy.filters.http.fault';
export const CORS_FILTER = 'envoy.filters.http.cors';
export const ROUTER_FILTER = 'envoy.filters.http.router';
const PREVIOUS_HOSTS = 'envoy.retry_host_predicates.previous_hosts';

/**
 * Istio's mesh default retry policy (MeshConfig defaultHttpRetryPolicy, unset): two retries on
 * connection failures, refused streams, gRPC UNAVAILABLE/CANCELLED and 503, on another host.
 */
export const DEFAULT_RETRY_ON = 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes';
export const DEFAULT_RETRY_ATTEMPTS = 2;
export const DEFAULT_RETRIABLE_STATUS_CODES: readonly number[] = [503];
/** Envoy's default base interval, written out so every consumer backs off alike. */
export const DEFAULT_RETRY_BACKOFF: Duration = millisToDuration(25);
const HOST_SELECTION_RETRY_MAX_ATTEMPTS = 5;

/** A destination resolved to a cluster name, with the hash policy its DestinationRule asks for. */
export interface ResolvedCluster {
  readonly name: string;
  readonly hashPolicy: HashPolicy | undefined;
}

/** What route translation needs from the rest of the translation. */
export interface RouteEnv {
  /**
   * The cluster a destination of `vs` names when a request arrives on `listenerPort` (`path` is the
   * destination's field path, for problems about it).
   */
  resolve(vs: VirtualService, destination: Destination, listenerPort: number, path: string): ResolvedCluster;
  report(vs: VirtualService, severity: L7Problem['severity'], path: string, message: string): void;
}

/**
 * The routes of the merged VirtualServices for `port`; empty when none yields a route on this port
 * (the caller then uses the default route, as istiod does). `boundHere` says whether a match block's
 * own `gateways` include the proxy being configured: the mesh by default, an ingress gateway's name
 * for gateway routes (gateway-translate.ts).
 */
export function buildHttpRoutes(
  virtualServices: readonly VirtualService[],
  port: number,
  env: RouteEnv,
  boundHere: (gateways: readonly string[], vs: VirtualService) => boolean = appliesToMesh,
): Route[] {
  const routes: Route[] = [];
  for (const vs of virtualServices) {
    for (let i = 0; i < vs.http.length; i++) {
      const rule = vs.http[i]!;
      if (rule.delegate) continue; // reported when decoded: delegation is not supported on waypoints
      if (rule.match.length === 0) {
        routes.push(translateRule(vs, i, rule, undefined, port, env));
        return routes;
      }
      for (const match of rule.match) {
        if (match.port !== undefined && match.port !== port) continue;
        if (match.gateways.length > 0 && !boundHere(match.gateways, vs)) continue;
        const route = translateRule(vs, i, rule, match, port, env);
        routes.push(route);
        if (isCatchAll(route.match)) return routes;
      }
    }
  }
  return routes;
}

/** The route of a port no VirtualService routes: everything to the service, with Istio's defaults. */
export function defaultRoute(cluster: ResolvedCluster, hostname: string, port: number): Route {
  return {
    name: 'default',
    match: { prefix: '/' },
    route: {
      cluster: cluster.name,
      timeout: ZERO_DURATION,
      max_stream_duration: { max_stream_duration: ZERO_DURATION },
      retry_policy: retryPolicy(undefined, cluster.hashPolicy !== undefined),
      ...(cluster.hashPolicy ? { hash_policy: [cluster.hashPolicy] } : {}),
    },
    decorator: { operation: `${hostname}:${port}/*` },
  };
}

/** A match with no conditions but the path prefix `/` (or the regex `.*`): nothing after it matches. */
export function isCatchAll(m: RouteMatch): boolean {
  const path = m.prefix === '/' || m.safe_regex?.regex === '.*';
  return (
    path &&
    (m.headers?.length ?? 0) === 0 &&
    (m.query_parameters?.length ?? 0) === 0 &&
    (m.dynamic_metadata?.length ?? 0) === 0
  );
}

/** Whether any route carries a CORS policy (the listener then needs the CORS filter). */
export function usesCors(routes: readonly Route[]): boolean {
  return routes.some((r) => r.typed_per_filter_config?.[CORS_FILTER] !== undefined);
}

function translateRule(
  vs: VirtualService,
  index: number,
  rule: HttpRoute,
  match: HttpMatch | undefined,
  port: number,
  env: RouteEnv,
): Route {
  const path = `spec.http[${index}]`;
  const name = match?.name ? `${rule.name}.${match.name}` : rule.name;
  const routeMatch = translateMatch(match);
  const ops = headerOperations(rule.headers);
  const requestAdd = [...ops.requestAdd];
  const requestRemove = [...ops.requestRemove];
  const responseAdd = [...ops.responseAdd];
  const responseRemove = [...ops.responseRemove];

  let action: Pick<Route, 'route' | 'redirect' | 'direct_response'>;
  if (rule.redirect) action = { redirect: redirectAction(rule.redirect, port) };
  else if (rule.directResponse) action = { direct_response: directResponse(rule) };
  else {
    let hostRewrite = rule.rewrite?.authority || ops.authority;
    const hashes: HashPolicy[] = [];
    const addHash = (h: HashPolicy | undefined) => {
      if (h && !hashes.some((x) => JSON.stringify(x) === JSON.stringify(h))) hashes.push(h);
    };
    let target: Pick<RouteAction, 'cluster' | 'weighted_clusters'>;
    if (rule.route.length === 1) {
      const dst = rule.route[0]!;
      const resolved = env.resolve(vs, dst.destination, port, `${path}.route[0].destination`);
      addHash(resolved.hashPolicy);
      const own = headerOperations(dst.headers);
      requestAdd.push(...own.requestAdd);
      requestRemove.push(...own.requestRemove);
      responseAdd.push(...own.responseAdd);
      responseRemove.push(...own.responseRemove);
      // The rule's own authority rewrite wins over a destination's (istiod's processDestination).
      hostRewrite ||= own.authority;
      target = { cluster: resolved.name };
    } else {
      const clusters: ClusterWeight[] = [];
      rule.route.forEach((dst, j) => {
        // A zero weight beside other destinations means no traffic.
        if (dst.weight === 0) return;
        const resolved = env.resolve(vs, dst.destination, port, `${path}.route[${j}].destination`);
        addHash(resolved.hashPolicy);
        const own = headerOperations(dst.headers);
        clusters.push({
          name: resolved.name,
          weight: { value: dst.weight },
          ...nonEmpty('request_headers_to_add', own.requestAdd),
          ...nonEmpty('request_headers_to_remove', own.requestRemove),
          ...nonEmpty('response_headers_to_add', own.responseAdd),
          ...nonEmpty('response_headers_to_remove', own.responseRemove),
          ...(own.authority ? { host_rewrite_literal: own.authority } : {}),
        });
      });
      target = { weighted_clusters: { clusters } };
    }
    const timeout = rule.timeout ?? ZERO_DURATION;
    const mirrors: RequestMirrorPolicy[] = [];
    rule.mirrors.forEach((m) => {
      const percentage = m.percentage ?? 100;
      if (percentage <= 0) return; // an explicit 0% mirrors nothing
      mirrors.push({
        cluster: env.resolve(vs, m.destination, port, `${path}.${m.field}`).name,
        runtime_fraction: { default_value: fraction(percentage) },
        trace_sampled: { value: false },
      });
    });
    const retry = retryPolicy(rule.retries, hashes.length > 0);
    const routeAction: RouteAction = {
      ...target,
      ...(rule.rewrite?.uriRegexRewrite
        ? {
            regex_rewrite: {
              pattern: { regex: rule.rewrite.uriRegexRewrite.match },
              substitution: rule.rewrite.uriRegexRewrite.rewrite,
            },
          }
        : rule.rewrite?.uri
          ? { prefix_rewrite: rule.rewrite.uri }
          : {}),
      ...(hostRewrite ? { host_rewrite_literal: hostRewrite } : {}),
      timeout,
      max_stream_duration: { max_stream_duration: timeout },
      ...(retry ? { retry_policy: retry } : {}),
      ...(mirrors.length > 0 ? { request_mirror_policies: mirrors } : {}),
      ...(hashes.length > 0 ? { hash_policy: hashes } : {}),
    };
    action = { route: routeAction };
  }

  const perFilter: Record<string, Any> = {};
  const fault = rule.fault && faultConfig(rule.fault);
  if (fault) perFilter[FAULT_FILTER] = packAny(EnvoyType.HTTPFault, fault);
  if (rule.corsPolicy)
    perFilter[CORS_FILTER] = packAny(EnvoyType.FilterConfig, {
      config: packAny(EnvoyType.CorsPolicy, corsPolicy(rule.corsPolicy)),
      is_optional: true,
    });

  return {
    ...(name ? { name } : {}),
    match: routeMatch,
    ...action,
    decorator: { operation: operation(routeMatch, action.route?.cluster, vs.name, port) },
    ...(Object.keys(perFilter).length > 0 ? { typed_per_filter_config: perFilter } : {}),
    ...nonEmpty('request_headers_to_add', requestAdd),
    ...nonEmpty('request_headers_to_remove', requestRemove),
    ...nonEmpty('response_headers_to_add', responseAdd),
    ...nonEmpty('response_headers_to_remove', responseRemove),
  };
}

/** `{ [key]: list }` when the list has entries, else nothing (Envoy's repeated fields left unset). */
export function nonEmpty<K extends string, T>(key: K, list: readonly T[]): { [P in K]?: readonly T[] } {
  return (list.length > 0 ? { [key]: list } : {}) as { [P in K]?: readonly T[] };
}

// ---- match ----

function translateMatch(m: HttpMatch | undefined): RouteMatch {
  if (m === undefined) return { prefix: '/' };
  const path: Pick<RouteMatch, 'prefix' | 'path' | 'safe_regex'> =
    m.uri?.kind === 'exact'
      ? { path: m.uri.value }
      : m.uri?.kind === 'prefix'
        ? { prefix: m.uri.value }
        : m.uri?.kind === 'regex'
          ? { safe_regex: { regex: m.uri.value } }
          : { prefix: '/' };
  const headers: HeaderMatcher[] = [
    ...m.headers.map(([name, sm]) => headerMatcher(name, sm, false)),
    ...m.withoutHeaders.map(([name, sm]) => headerMatcher(name, sm, true)),
  ].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  if (m.method) headers.push(headerMatcher(':method', m.method, false));
  if (m.authority) headers.push(headerMatcher(':authority', m.authority, false));
  if (m.scheme) headers.push(headerMatcher(':scheme', m.scheme, false));
  const query: QueryParameterMatcher[] = [...m.queryParams]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, sm]) =>
      sm.kind === 'present' ? { name, present_match: true } : { name, string_match: stringMatcher(sm) },
    );
  const metadata: MetadataMatcher[] = [];
  if (m.sourceNamespace) metadata.push(sourceMatcher(['namespace'], m.sourceNamespace));
  for (const [k, v] of Object.entries(m.sourceLabels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    metadata.push(sourceMatcher(['labels', k], v));
  return {
    ...path,
    ...(m.ignoreUriCase ? { case_sensitive: { value: false } } : {}),
    ...nonEmpty('headers', headers),
    ...nonEmpty('query_parameters', query),
    ...nonEmpty('dynamic_metadata', metadata),
  };
}

function stringMatcher(sm: Exclude<StringMatch, { kind: 'present' }>): StringMatcher {
  switch (sm.kind) {
    case 'exact':
      return { exact: sm.value };
    case 'prefix':
      return { prefix: sm.value };
    default:
      return { safe_regex: { regex: sm.value } };
  }
}

/**
 * istiod's translateHeaderMatch. A negated (withoutHeaders) value match treats a missing header as
 * empty, so "header is not x" also holds when the header is absent.
 */
function headerMatcher(name: string, sm: StringMatch, invert: boolean): HeaderMatcher {
  if (sm.kind === 'present') return { name, present_match: true, ...(invert ? { invert_match: true } : {}) };
  return {
    name,
    string_match: stringMatcher(sm),
    ...(invert ? { invert_match: true, treat_missing_header_as_empty: true } : {}),
  };
}

function sourceMatcher(keys: readonly string[], value: string): MetadataMatcher {
  return {
    filter: SOURCE_METADATA_FILTER,
    path: keys.map((key) => ({ key })),
    value: { string_match: { exact: value } },
  };
}

// ---- actions ----

const REDIRECT_CODES: Readonly<Record<number, RedirectResponseCode>> = {
  0: 'MOVED_PERMANENTLY',
  301: 'MOVED_PERMANENTLY',
  302: 'FOUND',
  303: 'SEE_OTHER',
  307: 'TEMPORARY_REDIRECT',
  308: 'PERMANENT_REDIRECT',
};

/** istiod's ApplyRedirect. FROM_REQUEST_PORT is the port being routed (Envoy cannot derive it). */
function redirectAction(r: HttpRedirect, port: number): RedirectAction {
  let portRedirect = 0;
  if (r.port !== undefined || r.derivePort !== undefined) {
    portRedirect = r.derivePort === 'FROM_REQUEST_PORT' ? port : (r.port ?? 0);
    const scheme = r.scheme || 'http';
    // No explicit :80 for http or :443 for https.
    if ((portRedirect === 80 && scheme === 'http') || (portRedirect === 443 && scheme === 'https'))
      portRedirect = 0;
  }
  return {
    ...(r.scheme ? { scheme_redirect: r.scheme } : {}),
    ...(r.authority ? { host_redirect: r.authority } : {}),
    ...(portRedirect ? { port_redirect: portRedirect } : {}),
    ...(r.prefixRewrite ? { prefix_rewrite: r.prefixRewrite } : r.uri ? { path_redirect: r.uri } : {}),
    response_code: REDIRECT_CODES[r.redirectCode] ?? 'MOVED_PERMANENTLY',
  };
}

function directResponse(rule: HttpRoute): DirectResponseAction {
  const d = rule.directResponse!;
  if (d.body === undefined) return { status: d.status };
  return {
    status: d.status,
    body: d.body.kind === 'string' ? { inline_string: d.body.value } : { inline_bytes: d.body.value },
  };
}

/**
 * istiod's retry.ConvertPolicy with the mesh default. Attempts 0 disables retries. With consistent
 * hashing the default does not move to another host (that would defeat the hash).
 */
export function retryPolicy(
  retries: HttpRetry | undefined,
  consistentHash: boolean,
): RetryPolicy | undefined {
  if (retries !== undefined && retries.attempts <= 0) return undefined;
  let retryOn = DEFAULT_RETRY_ON;
  let codes: readonly number[] = DEFAULT_RETRIABLE_STATUS_CODES;
  if (retries?.retryOn) {
    const parts = retries.retryOn.split(',');
    codes = parts.filter((p) => /^\d+$/.test(p)).map(Number);
    retryOn = parts.filter((p) => !/^\d+$/.test(p)).join(',');
    if (codes.length > 0 && !retryOn.split(',').includes('retriable-status-codes'))
      retryOn = retryOn ? `${retryOn},retriable-status-codes` : 'retriable-status-codes';
  }
  const previousHosts = retries?.retryIgnorePreviousHosts ?? !consistentHash;
  return {
    retry_on: retryOn,
    num_retries: { value: retries?.attempts ?? DEFAULT_RETRY_ATTEMPTS },
    ...(retries?.perTryTimeout ? { per_try_timeout: retries.perTryTimeout } : {}),
    ...(codes.length > 0 ? { retriable_status_codes: codes } : {}),
    ...(previousHosts
      ? {
          retry_host_predicate: [
            { name: PREVIOUS_HOSTS, typed_config: emptyAny(EnvoyType.PreviousHostsPredicate) },
          ],
        }
      : {}),
    host_selection_retry_max_attempts: HOST_SELECTION_RETRY_MAX_ATTEMPTS,
    retry_back_off: { base_interval: retries?.backoff ?? DEFAULT_RETRY_BACKOFF },
  };
}

/** An Istio percentage (0..100) as Envoy's fraction per million, as istiod converts it. */
export function fraction(percentage: number): FractionalPercent {
  return { numerator: Math.round(percentage * 10_000), denominator: 'MILLION' };
}

/**
 * istiod's TranslateFault, except that a delay or abort without a percentage is left out instead of
 * being sent as 0%: it never fires either way, and gRPC clients reject a fault without a percentage.
 */
function faultConfig(f: FaultInjection): object | undefined {
  const delay =
    f.delay && f.delay.percentage !== undefined
      ? { fixed_delay: f.delay.fixedDelay, percentage: fraction(f.delay.percentage) }
      : undefined;
  const abort =
    f.abort && f.abort.percentage !== undefined
      ? {
          ...(f.abort.grpcStatus !== undefined
            ? { grpc_status: f.abort.grpcStatus }
            : { http_status: f.abort.httpStatus }),
          percentage: fraction(f.abort.percentage),
        }
      : undefined;
  if (!delay && !abort) return undefined;
  return { ...(delay ? { delay } : {}), ...(abort ? { abort } : {}) };
}

/** istiod's TranslateCORSPolicy (CORS filter enabled for the route, preflights forwarded unless IGNORE). */
function corsPolicy(c: CorsPolicy): object {
  return {
    allow_origin_string_match: c.allowOrigins.flatMap((o) =>
      o.kind === 'present' ? [] : [stringMatcher(o)],
    ),
    ...(c.allowMethods.length > 0 ? { allow_methods: c.allowMethods.join(',') } : {}),
    ...(c.allowHeaders.length > 0 ? { allow_headers: c.allowHeaders.join(',') } : {}),
    ...(c.exposeHeaders.length > 0 ? { expose_headers: c.exposeHeaders.join(',') } : {}),
    ...(c.maxAge ? { max_age: String(c.maxAge.seconds) } : {}),
    ...(c.allowCredentials !== undefined ? { allow_credentials: { value: c.allowCredentials } } : {}),
    filter_enabled: { default_value: { numerator: 100, denominator: 'HUNDRED' } },
    forward_not_matching_preflights: { value: c.unmatchedPreflights !== 'IGNORE' },
  };
}

interface TranslatedHeaders {
  readonly requestAdd: readonly HeaderValueOption[];
  readonly requestRemove: readonly string[];
  readonly responseAdd: readonly HeaderValueOption[];
  readonly responseRemove: readonly string[];
  /** `:authority` / `Host` set (or added) on the request: a host rewrite, not a header. */
  readonly authority: string;
}

/**
 * istiod's TranslateHeadersOperations: `set` overwrites, `add` appends, each sorted by name; the
 * authority is taken out (set wins over add) and other `:` headers are dropped.
 */
function headerOperations(h: Headers | undefined): TranslatedHeaders {
  if (h === undefined)
    return { requestAdd: [], requestRemove: [], responseAdd: [], responseRemove: [], authority: '' };
  const options = (ops: HeaderOperations): HeaderValueOption[] => [
    ...valueOptions(ops.set, 'OVERWRITE_IF_EXISTS_OR_ADD'),
    ...valueOptions(ops.add, 'APPEND_IF_EXISTS_OR_ADD'),
  ];
  const authorityOf = (pairs: HeaderOperations['set']) =>
    pairs.filter(([k]) => isAuthorityHeader(k)).at(-1)?.[1] ?? '';
  return {
    requestAdd: options(h.request),
    requestRemove: h.request.remove.filter((k) => !isInternalHeader(k)),
    responseAdd: options(h.response),
    responseRemove: h.response.remove.filter((k) => !isInternalHeader(k)),
    authority: authorityOf(h.request.set) || authorityOf(h.request.add),
  };
}

function valueOptions(
  pairs: HeaderOperations['set'],
  append_action: HeaderValueOption['append_action'],
): HeaderValueOption[] {
  return pairs
    .filter(([k]) => !isInternalHeader(k))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, value]) => ({ header: { key, value }, append_action }));
}

/** istiod's GetRouteOperation: `host:port/path` for one cluster, else `<route name>:<port>/path`. */
export function operation(m: RouteMatch, cluster: string | undefined, vsName: string, port: number): string {
  const path =
    m.prefix !== undefined ? `${m.prefix}*` : m.path !== undefined ? m.path : (m.safe_regex?.regex ?? '/*');
  const parsed = cluster === undefined ? undefined : parseClusterName(cluster);
  return parsed ? `${parsed.hostname}:${parsed.port}${path}` : `${vsName}:${port}${path}`;
}
