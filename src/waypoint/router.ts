/**
 * The waypoint's route decision (issue 5): a pure function from a compiled route table and one
 * request to what to do with it, following Envoy's RDS semantics so that the waypoint and Envoy
 * (or a proxyless gRPC client) agree on the same RouteConfiguration.
 *
 * - Virtual host: exact domain, then the longest `*suffix`, then the longest `prefix*`, then `*`
 *   (the authority compared lower-case and with its port, unless `ignore_port_in_host_matching`).
 * - Route: the first whose match holds (path prefix/exact/regex, case sensitivity, headers incl.
 *   pseudo-headers, query parameters, the `ambit.source` facts, gRPC, runtime fraction).
 * - The HTTP filters run in the listener's order: fault (delay, abort), CORS (preflight answer or
 *   response headers), router (forward with everything resolved, redirect, direct response).
 * - No virtual host or no route: 404 `route_not_found`.
 *
 * Randomness (weights, fault and mirror percentages, fractions) comes from the injected `random`.
 * Regexes are compiled once, in compileRouteTable.
 */
import {
  HeaderAppendAction,
  type HttpFilterKind,
  type CorsPolicy,
  type FaultPolicy,
  type FilterSetting,
  type Fraction,
  type HashPolicy,
  type HeaderMatcher,
  type HeaderMutations,
  type HttpFilter,
  type RedirectAction,
  type RetryPolicy,
  type Route,
  type RouteAction,
  type RouteConfiguration,
  type StringMatcher,
  type VirtualHost,
} from '../core/xds/l7-model.ts';
import {
  compileFullMatch,
  compileSearch,
  parseSubstitution,
  replaceAll,
  type Substitution,
} from '../core/xds/l7-regex.ts';
import { overwriteStage, type HeaderValues } from './header-mutations.ts';
import { combineHashes, xxHash64 } from './xxhash64.ts';

/** A uniform random number in [0, 1), like Math.random. */
export type Random = () => number;

export interface RequestSource {
  /** The client workload's namespace ('' when unknown). */
  readonly namespace: string;
  /** The client workload's labels. */
  readonly labels: Readonly<Record<string, string>>;
  /** SPIFFE identity of the client ('' when unknown). */
  readonly principal: string;
  /** The client's IP address, for `connection_properties.source_ip` hashing. */
  readonly address?: string;
}

export interface RouteRequest {
  /** `:method`, upper-case as sent. */
  readonly method: string;
  /** `http` or `https`. */
  readonly scheme: string;
  /** The `:authority` / Host, as sent (with its port if it had one). */
  readonly authority: string;
  /** Path with its query string. */
  readonly path: string;
  /** Lower-case names; a header sent several times has several values. */
  readonly headers: HeaderValues;
  /** Who the client is (from the HBONE tunnel), for `ambit.source` matches and hashing. */
  readonly source: RequestSource;
  /**
   * The service port the request arrived for. Routing does not read it (each route configuration
   * already belongs to one port, as Istio's VirtualService `port` match is compiled by the
   * controller); it is carried for the access log.
   */
  readonly port: number;
}

interface DecisionBase {
  /** Name of the virtual host chosen (undefined: none matched the authority). */
  readonly virtualHost: string | undefined;
  /** Name of the route taken (undefined: none matched). */
  readonly route: string | undefined;
  /** Fault-injected delay to wait before acting on the decision (0: none). */
  readonly delayMs: number;
}

export interface ForwardDecision extends DecisionBase {
  readonly kind: 'forward';
  /** The cluster picked (weighted clusters sampled with the injected random). */
  readonly cluster: string;
  /** Path (with query) to send upstream, after prefix or regex rewriting. */
  readonly path: string;
  /** Authority to send upstream, after host rewriting. */
  readonly authority: string;
  /** Request header stages, in order (weighted cluster, then route, virtual host, configuration). */
  readonly requestHeaders: readonly HeaderMutations[];
  /** Response header stages, in order: as for requests, then a generated hash cookie, then CORS. */
  readonly responseHeaders: readonly HeaderMutations[];
  /** 0: no timeout. */
  readonly timeoutMs: number;
  /** Caps the whole stream (route `max_stream_duration`). */
  readonly maxStreamDurationMs: number | undefined;
  /** Set: honour the client's `grpc-timeout`, capped at this (0 = uncapped). */
  readonly grpcTimeoutHeaderMaxMs: number | undefined;
  /** The route's retry policy, else its virtual host's. */
  readonly retryPolicy: RetryPolicy | undefined;
  /** Mirror copies chosen for this request (fire and forget). */
  readonly mirrors: readonly { readonly cluster: string; readonly authority: string }[];
  /** The consistent-hash key (Envoy's combination of the hash policies); undefined: none applied. */
  readonly hashKey: bigint | undefined;
  /** Upgrades (e.g. `websocket`) the route allows. */
  readonly upgrades: readonly string[];
  /** Status to answer if `cluster` does not exist. */
  readonly clusterNotFoundStatus: number;
}

export interface LocalReplyDecision extends DecisionBase {
  readonly kind: 'redirect' | 'direct-response' | 'fault-abort' | 'cors-preflight' | 'not-found';
  /** HTTP status of the reply. */
  readonly status: number;
  /** For gRPC fault aborts: the grpc-status to answer with (HTTP status 200). */
  readonly grpcStatus: number | undefined;
  /** Reply body (direct responses; `fault filter abort` for aborts). */
  readonly body: Uint8Array | undefined;
  /** Stages to apply to the reply's headers (a redirect's stages set `location`). */
  readonly responseHeaders: readonly HeaderMutations[];
  /** Envoy's response code details. */
  readonly details: string;
}

export type RouteDecision = ForwardDecision | LocalReplyDecision;

// ---------- compiled table ----------

type Test = (value: string) => boolean;

interface CompiledRoute {
  readonly route: Route;
  /** Length of the path matched (for prefix rewrites), or -1. */
  readonly matchPath: (pathOnly: string) => number;
  readonly headers: readonly ((req: RouteRequest) => boolean)[];
  readonly query: readonly { readonly name: string; readonly test: Test | undefined }[];
  readonly source: readonly ((src: RequestSource) => boolean)[];
  readonly rewrite: { readonly regex: RegExp; readonly parts: Substitution } | undefined;
}

interface CompiledVirtualHost {
  readonly vh: VirtualHost;
  readonly routes: readonly CompiledRoute[];
}

/** A RouteConfiguration prepared for routing: domains indexed and every regex compiled once. */
export interface RouteTable {
  /** The decoded configuration the table was compiled from. */
  readonly config: RouteConfiguration;
  /** The filters that run before the router, in order (from the listener). */
  readonly filters: readonly HttpFilterKind[];
  /** Virtual hosts by exact (lower-case) domain. */
  readonly exact: ReadonlyMap<string, CompiledVirtualHost>;
  /** `*suffix` domains, longest first. */
  readonly suffixes: readonly (readonly [string, CompiledVirtualHost])[];
  /** `prefix*` domains, longest first. */
  readonly prefixes: readonly (readonly [string, CompiledVirtualHost])[];
  /** The virtual host with domain `*`. */
  readonly fallback: CompiledVirtualHost | undefined;
}

/** The filter chain the controller's contract gives every listener. */
const DEFAULT_FILTERS: readonly HttpFilter[] = [
  { name: 'envoy.filters.http.fault', kind: 'fault' },
  { name: 'envoy.filters.http.cors', kind: 'cors' },
  { name: 'envoy.filters.http.router', kind: 'router' },
];

/**
 * Compiles a decoded (so valid) route configuration. `httpFilters` are the listener's; a fault or
 * CORS setting in the routes does nothing unless its filter is in the chain, as in Envoy.
 */
export function compileRouteTable(
  config: RouteConfiguration,
  httpFilters: readonly HttpFilter[] = DEFAULT_FILTERS,
): RouteTable {
  const exact = new Map<string, CompiledVirtualHost>();
  const suffixes: [string, CompiledVirtualHost][] = [];
  const prefixes: [string, CompiledVirtualHost][] = [];
  let fallback: CompiledVirtualHost | undefined;
  for (const vh of config.virtualHosts) {
    const compiled = { vh, routes: vh.routes.map(compileRoute) };
    for (const d of vh.domains) {
      if (d === '*') fallback = compiled;
      else if (d.startsWith('*')) suffixes.push([d.slice(1), compiled]);
      else if (d.endsWith('*')) prefixes.push([d.slice(0, -1), compiled]);
      else exact.set(d, compiled);
    }
  }
  const longestFirst = (a: readonly [string, unknown], b: readonly [string, unknown]) =>
    b[0].length - a[0].length;
  return {
    config,
    filters: httpFilters.filter((f) => f.kind !== 'router').map((f) => f.kind),
    exact,
    suffixes: suffixes.sort(longestFirst),
    prefixes: prefixes.sort(longestFirst),
    fallback,
  };
}

function mustCompile(pattern: string): RegExp {
  const r = compileFullMatch(pattern);
  // The decoder has validated every pattern; reaching this is a bug in the caller.
  if (!r.ok)
    throw new TypeError(`invalid regex ${JSON.stringify(pattern)} in a decoded route table: ${r.message}`);
  return r.regex;
}

function compileRewrite(rw: { regex: string; substitution: string } | undefined) {
  if (!rw) return undefined;
  const r = compileSearch(rw.regex);
  if (!r.ok) throw new TypeError(`invalid regex ${JSON.stringify(rw.regex)}: ${r.message}`);
  const s = parseSubstitution(rw.substitution, r.groups);
  if (!s.ok) throw new TypeError(`invalid substitution ${JSON.stringify(rw.substitution)}: ${s.message}`);
  return { regex: r.regex, parts: s.parts };
}

/** ASCII-only lower-casing, as absl's case-insensitive comparisons (lengths never change). */
function lowerAscii(s: string): string {
  return s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

function compileStringMatcher(m: StringMatcher): Test {
  if (m.kind === 'regex') {
    const re = mustCompile(m.regex);
    return (v) => re.test(v);
  }
  const want = m.ignoreCase ? lowerAscii(m.value) : m.value;
  const norm = m.ignoreCase ? lowerAscii : (v: string) => v;
  switch (m.kind) {
    case 'exact':
      return (v) => norm(v) === want;
    case 'prefix':
      return (v) => norm(v).startsWith(want);
    case 'suffix':
      return (v) => norm(v).endsWith(want);
    case 'contains':
      return (v) => norm(v).includes(want);
  }
}

function compileHeaderMatcher(h: HeaderMatcher): (req: RouteRequest) => boolean {
  const m = h.match;
  const test: Test =
    m.kind === 'string'
      ? compileStringMatcher(m.matcher)
      : m.kind === 'present'
        ? () => m.present
        : (v) => /^[+-]?\d+$/.test(v) && Number(v) >= m.start && Number(v) < m.end;
  return (req) => {
    let value = requestHeader(req, h.name);
    if (value === undefined) {
      if (!h.treatMissingAsEmpty) {
        // Envoy: a missing header matches only `present_match: false`, or an inverted `true`.
        const presentMatch = m.kind === 'present' ? m.present : undefined;
        return h.invert ? presentMatch === true : presentMatch === false;
      }
      value = '';
    }
    return test(value) !== h.invert;
  };
}

function compileRoute(route: Route): CompiledRoute {
  const m = route.match;
  let matchPath: (p: string) => number;
  const p = m.path;
  if (p.kind === 'regex') {
    const re = mustCompile(p.regex);
    matchPath = (path) => (re.test(path) ? path.length : -1);
  } else if (m.caseSensitive) {
    matchPath =
      p.kind === 'prefix'
        ? (path) => (path.startsWith(p.value) ? p.value.length : -1)
        : (path) => (path === p.value ? path.length : -1);
  } else {
    const want = lowerAscii(p.value);
    matchPath =
      p.kind === 'prefix'
        ? (path) => (lowerAscii(path).startsWith(want) ? want.length : -1)
        : (path) => (lowerAscii(path) === want ? path.length : -1);
  }
  const a = route.action;
  return {
    route,
    matchPath,
    headers: m.headers.map(compileHeaderMatcher),
    query: m.queryParameters.map((q) => ({
      name: q.name,
      test: q.matcher && compileStringMatcher(q.matcher),
    })),
    source: m.source.map((s) => {
      const test = compileStringMatcher(s.matcher);
      return (src: RequestSource) => {
        const v =
          s.field.kind === 'namespace'
            ? src.namespace || undefined
            : Object.hasOwn(src.labels, s.field.label)
              ? src.labels[s.field.label]
              : undefined;
        return (v !== undefined && test(v)) !== s.invert;
      };
    }),
    rewrite:
      a.kind === 'route'
        ? compileRewrite(a.regexRewrite)
        : a.kind === 'redirect' && a.path?.kind === 'regex'
          ? compileRewrite(a.path.rewrite)
          : undefined,
  };
}

// ---------- request helpers ----------

/**
 * A header's value as Envoy's matchers see it: several values comma-joined. `:method`, `:scheme`,
 * `:authority` and `:path` come from the request line; `host` is read as `:authority` too (Envoy's
 * HTTP/1 codec turns Host into `:authority`, and Node's parser leaves it a header).
 */
function requestHeader(req: RouteRequest, name: string): string | undefined {
  switch (name) {
    case ':method':
      return req.method;
    case ':scheme':
      return req.scheme;
    case ':authority':
    case 'host':
      return req.authority;
    case ':path':
      return req.path;
  }
  const v = req.headers.get(name);
  return v && v.length ? v.join(',') : undefined;
}

function splitPath(path: string): { pathOnly: string; query: string } {
  const q = path.search(/[?#]/);
  if (q < 0) return { pathOnly: path, query: '' };
  const hash = path.indexOf('#');
  return { pathOnly: path.slice(0, q), query: path.slice(q, hash > q ? hash : undefined) };
}

function percentDecode(s: string): string {
  return s.replace(/(%[0-9A-Fa-f]{2})+/g, (m) => {
    try {
      return decodeURIComponent(m);
    } catch {
      return m;
    }
  });
}

/** First value of each query parameter; `decode` percent-decodes names and values (never `+`). */
function queryParams(query: string, decode: boolean): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of query.replace(/^\?/, '').split('&')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    let key = eq < 0 ? part : part.slice(0, eq);
    let value = eq < 0 ? '' : part.slice(eq + 1);
    if (decode) {
      key = percentDecode(key);
      value = percentDecode(value);
    }
    if (!out.has(key)) out.set(key, value);
  }
  return out;
}

function sample(f: Fraction, random: Random): boolean {
  return Math.floor(random() * f.denominator) < f.numerator;
}

function isGrpc(req: RouteRequest): boolean {
  const ct = req.headers.get('content-type')?.[0] ?? '';
  return (
    ct === 'application/grpc' || ct.startsWith('application/grpc+') || ct.startsWith('application/grpc;')
  );
}

/** Index of the port's colon in an authority, or -1 (IPv6 literals are bracketed). */
function portStart(host: string): number {
  const colon = host.lastIndexOf(':');
  if (colon < 0) return -1;
  const bracket = host.lastIndexOf(']');
  return bracket < 0 || bracket < colon ? colon : -1;
}

// ---------- route selection ----------

function findVirtualHost(table: RouteTable, authority: string): CompiledVirtualHost | undefined {
  let host = lowerAscii(authority);
  if (table.config.ignorePortInHostMatching) {
    const p = portStart(host);
    if (p >= 0) host = host.slice(0, p);
  }
  const exact = table.exact.get(host);
  if (exact) return exact;
  // A wildcard stands for at least one character.
  for (const [suffix, vh] of table.suffixes) {
    if (host.length > suffix.length && host.endsWith(suffix)) return vh;
  }
  for (const [prefix, vh] of table.prefixes) {
    if (host.length > prefix.length && host.startsWith(prefix)) return vh;
  }
  return table.fallback;
}

function findRoute(
  vh: CompiledVirtualHost,
  req: RouteRequest,
  random: Random,
): { route: CompiledRoute; matchedLength: number } | undefined {
  const { pathOnly, query } = splitPath(req.path);
  let params: Map<string, string> | undefined;
  // One draw per request for every runtime fraction, as Envoy does.
  let draw: number | undefined;
  for (const r of vh.routes) {
    const m = r.route.match;
    if (m.fraction) {
      draw ??= random();
      if (!(Math.floor(draw * m.fraction.denominator) < m.fraction.numerator)) continue;
    }
    if (!r.headers.every((h) => h(req))) continue;
    if (r.query.length) {
      params ??= queryParams(query, true);
      const ok = r.query.every((q) => {
        const v = params!.get(q.name);
        return v !== undefined && (q.test === undefined || q.test(v));
      });
      if (!ok) continue;
    }
    if (!r.source.every((s) => s(req.source))) continue;
    if (m.grpcOnly && !isGrpc(req)) continue;
    const matchedLength = r.matchPath(pathOnly);
    if (matchedLength >= 0) return { route: r, matchedLength };
  }
  return undefined;
}

/** The most specific setting of a filter (route, then virtual host, then configuration). */
function settingsOf<T>(...levels: FilterSetting<T>[]): T[] | undefined {
  const out: T[] = [];
  for (const s of levels) {
    if (s === undefined) continue;
    if (s.kind === 'disabled') return out.length ? out : undefined;
    out.push(s.config);
  }
  return out.length ? out : undefined;
}

// ---------- the decision ----------

/** Decides what to do with `request`. */
export function route(table: RouteTable, request: RouteRequest, random: Random): RouteDecision {
  const vh = findVirtualHost(table, request.authority);
  const found = vh && findRoute(vh, request, random);
  if (!vh || !found) {
    return localReply('not-found', vh?.vh.name, undefined, 0, 404, undefined, [], 'route_not_found');
  }
  const { route: compiled, matchedLength } = found;
  const r = compiled.route;
  const cfg = table.config;
  const vhost = vh.vh;
  // Route, virtual host and configuration response stages in Envoy's order (later wins).
  const levels: Levels = (pick) => {
    const l = [pick(r), pick(vhost), pick(cfg)];
    return (cfg.mostSpecificHeaderMutationsWins ? l.reverse() : l).filter(nonEmpty);
  };
  const routeResponseStages = levels((x) => x.responseHeaders);

  let delayMs = 0;
  let cors: CorsOutcome | undefined;
  for (const filter of table.filters) {
    if (filter === 'fault') {
      const fault = settingsOf<FaultPolicy>(r.fault, vhost.fault, cfg.fault)?.[0];
      if (!fault) continue;
      if (fault.delay && sample(fault.delay.percentage, random)) delayMs = fault.delay.fixedDelayMs;
      const abort = fault.abort;
      if (abort && sample(abort.percentage, random)) {
        const grpc = 'grpcStatus' in abort ? abort.grpcStatus : undefined;
        const status = 'httpStatus' in abort ? abort.httpStatus : 200;
        const stages = cors?.responseStage
          ? [...routeResponseStages, cors.responseStage]
          : routeResponseStages;
        return localReply(
          'fault-abort',
          vhost.name,
          r.name,
          delayMs,
          status,
          grpc,
          stages,
          'fault_filter_abort',
          'fault filter abort',
        );
      }
    } else if (filter === 'cors') {
      const policies = settingsOf<CorsPolicy>(r.cors, vhost.cors, cfg.cors);
      if (!policies) continue;
      cors = evaluateCors(policies, request, random);
      if (cors.preflight) {
        return localReply(
          'cors-preflight',
          vhost.name,
          r.name,
          delayMs,
          200,
          undefined,
          [cors.preflight],
          'cors_response',
        );
      }
    }
  }
  const corsStages = cors?.responseStage ? [cors.responseStage] : [];
  const a = r.action;
  if (a.kind === 'direct-response') {
    return localReply(
      'direct-response',
      vhost.name,
      r.name,
      delayMs,
      a.status,
      undefined,
      [...routeResponseStages, ...corsStages],
      'direct_response',
      a.body,
    );
  }
  if (a.kind === 'redirect') {
    const location = redirectLocation(a, request, matchedLength, compiled.rewrite);
    const stages = [...routeResponseStages, overwriteStage([['location', location]]), ...corsStages];
    return localReply(
      'redirect',
      vhost.name,
      r.name,
      delayMs,
      a.status,
      undefined,
      stages,
      'direct_response',
    );
  }
  return forward(a, r, vhost, compiled, matchedLength, request, random, delayMs, levels, corsStages);
}

/** Header stages of the route, virtual host and configuration levels, in the order Envoy applies them. */
type Levels = (
  pick: (level: { requestHeaders: HeaderMutations; responseHeaders: HeaderMutations }) => HeaderMutations,
) => HeaderMutations[];

function nonEmpty(m: HeaderMutations): boolean {
  return m.add.length > 0 || m.remove.length > 0;
}

function localReply(
  kind: LocalReplyDecision['kind'],
  virtualHost: string | undefined,
  routeName: string | undefined,
  delayMs: number,
  status: number,
  grpcStatus: number | undefined,
  responseHeaders: readonly HeaderMutations[],
  details: string,
  body?: Uint8Array | string,
): LocalReplyDecision {
  return {
    kind,
    virtualHost,
    route: routeName,
    delayMs,
    status,
    grpcStatus,
    body: typeof body === 'string' ? new TextEncoder().encode(body) : body,
    responseHeaders,
    details,
  };
}

function forward(
  a: RouteAction,
  r: Route,
  vhost: VirtualHost,
  compiled: CompiledRoute,
  matchedLength: number,
  req: RouteRequest,
  random: Random,
  delayMs: number,
  levels: Levels,
  corsStages: HeaderMutations[],
): ForwardDecision {
  const chosen = pickWeighted(a.clusters, random);
  let path = req.path;
  if (a.prefixRewrite !== undefined) path = a.prefixRewrite + req.path.slice(matchedLength);
  else if (compiled.rewrite) {
    const { pathOnly } = splitPath(req.path);
    path =
      replaceAll(pathOnly, compiled.rewrite.regex, compiled.rewrite.parts) + req.path.slice(pathOnly.length);
  }
  const authority = a.hostRewrite ?? chosen.hostRewrite ?? req.authority;
  const hash = hashKey(a.hashPolicies, req);
  const cookieStage = hash.setCookie ? [appendStage('set-cookie', hash.setCookie)] : [];
  return {
    kind: 'forward',
    virtualHost: vhost.name,
    route: r.name,
    delayMs,
    cluster: chosen.name,
    path,
    authority,
    requestHeaders: [chosen.requestHeaders, ...levels((x) => x.requestHeaders)].filter(nonEmpty),
    responseHeaders: [
      chosen.responseHeaders,
      ...levels((x) => x.responseHeaders),
      ...cookieStage,
      ...corsStages,
    ].filter(nonEmpty),
    timeoutMs: a.timeoutMs,
    maxStreamDurationMs: a.maxStreamDurationMs,
    grpcTimeoutHeaderMaxMs: a.grpcTimeoutHeaderMaxMs,
    retryPolicy: a.retryPolicy ?? vhost.retryPolicy,
    mirrors: a.mirrors
      .filter((m) => m.fraction === undefined || sample(m.fraction, random))
      .map((m) => ({
        cluster: m.cluster,
        authority: m.disableShadowHostSuffix ? authority : shadowHost(authority),
      })),
    hashKey: hash.key,
    upgrades: a.upgrades,
    clusterNotFoundStatus: a.clusterNotFoundStatus,
  };
}

/** Envoy's weighted choice: a uniform value below the total, walked through the cumulative weights. */
export function pickWeighted<T extends { readonly weight: number }>(items: readonly T[], random: Random): T {
  const total = items.reduce((s, c) => s + c.weight, 0);
  const target = Math.floor(random() * total);
  let end = 0;
  for (const item of items) {
    end += item.weight;
    if (target < end) return item;
  }
  // Only reachable with a zero total, which the decoder refuses; fall back to the first.
  return items.find((i) => i.weight > 0) ?? items[0]!;
}

/** `host-shadow[:port]`, the authority Envoy gives a mirrored request. */
function shadowHost(authority: string): string {
  const p = portStart(authority);
  return p < 0 ? `${authority}-shadow` : `${authority.slice(0, p)}-shadow${authority.slice(p)}`;
}

function appendStage(name: string, value: string): HeaderMutations {
  return {
    remove: [],
    add: [{ name, value, action: HeaderAppendAction.AppendIfExistsOrAdd, keepEmptyValue: false }],
  };
}

// ---------- redirects ----------

/** The Location of a redirect, computed as Envoy's RouteEntryImplBase::newUri does. */
function redirectLocation(
  a: RedirectAction,
  req: RouteRequest,
  matchedLength: number,
  rewrite: CompiledRoute['rewrite'],
): string {
  const requestScheme = req.scheme;
  const scheme = a.scheme ?? requestScheme;
  const port = a.port !== undefined ? `:${a.port}` : '';
  let host = a.host;
  if (host === undefined) {
    host = req.authority;
    const p = portStart(host);
    if (p >= 0) {
      const requestPort = host.slice(p);
      let removePort = port !== '';
      if (scheme !== requestScheme) {
        removePort ||=
          (requestScheme === 'https' && requestPort === ':443') ||
          (requestScheme === 'http' && requestPort === ':80');
      }
      if (removePort) host = host.slice(0, p);
    }
  }
  const { pathOnly, query } = splitPath(req.path);
  let path: string;
  let keepsOwnQuery = false;
  const rp = a.path;
  if (rp?.kind === 'path') {
    path = rp.value;
    if (path.includes('?')) keepsOwnQuery = true;
    else path += query;
  } else if (rp?.kind === 'prefix') {
    path = rp.value + pathOnly.slice(matchedLength) + query;
  } else if (rp?.kind === 'regex' && rewrite) {
    path = replaceAll(pathOnly, rewrite.regex, rewrite.parts) + query;
  } else {
    path = pathOnly + query;
  }
  if (a.stripQuery && !keepsOwnQuery) {
    const q = path.indexOf('?');
    if (q >= 0) path = path.slice(0, q);
  }
  if (!path.startsWith('/')) path = `/${path}`;
  return `${scheme}://${host}${port}${path}`;
}

// ---------- hashing ----------

function hashKey(
  policies: readonly HashPolicy[],
  req: RouteRequest,
): { key: bigint | undefined; setCookie: string | undefined } {
  let key: bigint | undefined;
  let setCookie: string | undefined;
  for (const p of policies) {
    let h: bigint | undefined;
    if (p.kind === 'header') {
      const values =
        p.name.startsWith(':') || p.name === 'host' ? [requestHeader(req, p.name)] : req.headers.get(p.name);
      const present = (values ?? []).filter((v): v is string => v !== undefined);
      // Sorted so that the order of repeated headers does not matter; hashed as one byte string.
      if (present.length) h = xxHash64(present.sort().join(''));
    } else if (p.kind === 'cookie') {
      const value = cookieValue(req, p.name);
      if (value !== undefined) h = xxHash64(value);
      else if (p.ttlMs !== undefined && req.source.address) {
        // Envoy derives a new cookie from the connection; the client's address is what we have.
        const generated = xxHash64(req.source.address).toString(16).padStart(16, '0');
        setCookie = setCookieValue(p.name, generated, p.path, p.ttlMs);
        h = xxHash64(generated);
      }
    } else if (p.kind === 'source-ip') {
      if (req.source.address) h = xxHash64(req.source.address);
    } else {
      const v = queryParams(splitPath(req.path).query, false).get(p.name);
      if (v !== undefined) h = xxHash64(v);
    }
    if (h !== undefined) key = combineHashes(key, h);
    if (p.terminal && key !== undefined) break;
  }
  return { key, setCookie };
}

function cookieValue(req: RouteRequest, name: string): string | undefined {
  for (const header of req.headers.get('cookie') ?? []) {
    for (const part of header.split(';')) {
      const eq = part.indexOf('=');
      if (eq < 0 || part.slice(0, eq).trim() !== name) continue;
      let v = part.slice(eq + 1).trim();
      if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
      return v;
    }
  }
  return undefined;
}

function setCookieValue(name: string, value: string, path: string, ttlMs: number): string {
  let s = `${name}="${value}"`;
  const seconds = Math.floor(ttlMs / 1000);
  if (seconds > 0) s += `; Max-Age=${seconds}`;
  if (path) s += `; Path=${path}`;
  return `${s}; HttpOnly`;
}

// ---------- CORS ----------

interface CorsOutcome {
  /** A preflight answered here (a stage holding the whole reply's headers). */
  readonly preflight: HeaderMutations | undefined;
  /** Headers to set on the eventual response. */
  readonly responseStage: HeaderMutations | undefined;
}

const compiledOrigins = new WeakMap<readonly StringMatcher[], readonly Test[]>();

function originTests(list: readonly StringMatcher[]): readonly Test[] {
  let t = compiledOrigins.get(list);
  if (!t) {
    t = list.map(compileStringMatcher);
    compiledOrigins.set(list, t);
  }
  return t;
}

/** Envoy's CORS filter; `policies` most specific first, merged field by field. */
function evaluateCors(policies: readonly CorsPolicy[], req: RouteRequest, random: Random): CorsOutcome {
  const none = { preflight: undefined, responseStage: undefined };
  const first = <T>(
    f: (p: CorsPolicy) => T | undefined,
    empty: (v: T) => boolean = () => false,
  ): T | undefined => {
    for (const p of policies) {
      const v = f(p);
      if (v !== undefined && !empty(v)) return v;
    }
    return undefined;
  };
  const enabled = policies[0]!.enabled;
  if (enabled && !sample(enabled, random)) return none;
  const origin = req.headers.get('origin')?.[0];
  if (!origin) return none;
  const origins =
    first(
      (p) => p.allowOrigins,
      (v) => v.length === 0,
    ) ?? [];
  const allowed = originTests(origins).some((t) => t(origin) || t('*'));
  const credentials = first((p) => p.allowCredentials) ?? false;
  const isPreflight = req.method === 'OPTIONS' && !!req.headers.get('access-control-request-method')?.[0];
  if (!isPreflight) {
    if (!allowed) return none;
    const headers: [string, string][] = [['access-control-allow-origin', origin]];
    if (credentials) headers.push(['access-control-allow-credentials', 'true']);
    const expose = first(
      (p) => p.exposeHeaders,
      (v) => v === '',
    );
    if (expose) headers.push(['access-control-expose-headers', expose]);
    return { preflight: undefined, responseStage: overwriteStage(headers) };
  }
  if (!allowed) {
    if (first((p) => p.forwardNotMatchingPreflights) ?? true) return none;
    return { preflight: overwriteStage([]), responseStage: undefined };
  }
  const headers: [string, string][] = [['access-control-allow-origin', origin]];
  if (credentials) headers.push(['access-control-allow-credentials', 'true']);
  const methods = first(
    (p) => p.allowMethods,
    (v) => v === '',
  );
  if (methods) headers.push(['access-control-allow-methods', methods]);
  const allowHeaders = first(
    (p) => p.allowHeaders,
    (v) => v === '',
  );
  if (allowHeaders) headers.push(['access-control-allow-headers', allowHeaders]);
  const maxAge = first(
    (p) => p.maxAge,
    (v) => v === '',
  );
  if (maxAge) headers.push(['access-control-max-age', maxAge]);
  if (
    first((p) => p.allowPrivateNetworkAccess) &&
    req.headers.get('access-control-request-private-network')?.[0] === 'true'
  ) {
    headers.push(['access-control-allow-private-network', 'true']);
  }
  return { preflight: overwriteStage(headers), responseStage: undefined };
}
