/**
 * Gateway API HTTPRoute rules attached to one service port (a Service parentRef: GAMMA "producer"
 * routes, istio-api.md §1.5) → Envoy `Route`s, with Gateway API semantics. Pure.
 *
 * - Precedence (HTTPRouteRule's spec): every match of every rule is one Route, ordered by: exact path
 *   before path prefix, a longer path before a shorter; then a match with a method; then more header
 *   matches; then more query parameter matches; ties go to the oldest HTTPRoute (creationTimestamp),
 *   then by `<namespace>/<name>`, then by rule and match order. A RegularExpression path ranks below
 *   every prefix (the spec leaves it to the implementation; this is istiod's getURIRank). A request
 *   no match accepts gets Envoy's 404: nothing is appended after the routes.
 * - PathPrefix matches whole path elements (`/foo` matches `/foo` and `/foo/bar`, not `/foobar`; a
 *   trailing `/` is ignored): two Routes, the exact path `/foo` and the prefix `/foo/`, which every
 *   consumer (Envoy, the waypoint, gRPC clients) matches natively; `/` stays a single prefix.
 * - A rule without a usable backend (none written, all weigh 0, or all invalid) answers 500. An
 *   invalid backend (not a Service in the mesh, a port it lacks, another namespace without a
 *   ReferenceGrant, a kind other than Service) keeps its weight in the split but names a cluster that
 *   is never served, with `cluster_not_found_response_code` 500: its share of requests gets 500, as
 *   the spec asks (and as istiod does).
 * - Filters: header modifiers (rule and backend level), RequestRedirect (port derived as the spec
 *   says: the scheme's well-known port, else the port being routed; omitted when it is the scheme's
 *   default), URLRewrite (host, full path, or prefix replacement), RequestMirror.
 * - Timeouts: `request` is the route timeout, `backendRequest` each try's; the mesh default retry
 *   policy applies, as for VirtualServices.
 */
import type {
  ClusterWeight,
  HashPolicy,
  HeaderValueOption,
  RedirectAction,
  RedirectResponseCode,
  RequestMirrorPolicy,
  Route,
  RouteAction,
  RouteMatch,
} from './envoy-types.ts';
import {
  CORE_GROUP,
  type GatewayBackendRef,
  type GatewayHeaderModifier,
  type GatewayHttpRoute,
  type GatewayObjectRef,
  type GatewayRouteMatch,
  type GatewayRouteRule,
} from './http-route-types.ts';
import { fraction, nonEmpty, operation, retryPolicy, type ResolvedCluster } from './routes.ts';
import type { L7Problem } from './types.ts';
import { ZERO_DURATION } from './values.ts';

/**
 * The cluster an invalid backend's share of requests is sent to: never served, so the request gets
 * the route's cluster_not_found_response_code (500). Not an `outbound|…` name, so no service's
 * cluster can ever take it.
 */
export const INVALID_BACKEND_CLUSTER = 'ambit-invalid-backend';

/** One rule of an HTTPRoute that applies to the port being translated. */
export interface AttachedRule {
  readonly route: GatewayHttpRoute;
  /** The rule's index in `spec.rules`. */
  readonly index: number;
  readonly rule: GatewayRouteRule;
}

/** What HTTPRoute translation needs from the rest of the translation. */
export interface HttpRouteEnv {
  /**
   * The cluster of a Service backend (`ref.port` set) in the mesh, or why there is none (a sentence
   * naming the Service, for a problem).
   */
  service(
    ref: GatewayObjectRef,
  ): ResolvedCluster | { readonly problem: string; readonly field: 'name' | 'port' };
  report(route: GatewayHttpRoute, severity: L7Problem['severity'], path: string, message: string): void;
  /**
   * Whether a ReferenceGrant in the backend's namespace lets the route refer to it (ingress routes,
   * gateway-api-translate.ts); absent: a backend in another namespace is never used.
   */
  referencePermitted?(route: GatewayHttpRoute, ref: GatewayObjectRef): boolean;
}

/** The oldest first, then by namespace/name (the spec's tie-break between HTTPRoutes). */
function byAge(a: GatewayHttpRoute, b: GatewayHttpRoute): number {
  const text = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);
  return (
    text(a.creationTimestamp, b.creationTimestamp) ||
    text(`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`)
  );
}

interface Entry extends AttachedRule {
  readonly match: GatewayRouteMatch;
  readonly matchIndex: number;
}

/** The Routes of the rules attached to one service port, in precedence order. */
export function buildGatewayRoutes(
  attached: readonly AttachedRule[],
  port: number,
  env: HttpRouteEnv,
): Route[] {
  const entries: Entry[] = [...attached]
    .sort((a, b) => byAge(a.route, b.route) || a.index - b.index)
    .flatMap((a) => a.rule.matches.map((match, matchIndex) => ({ ...a, match, matchIndex })));
  // Array.prototype.sort is stable: equal precedence keeps the age/rule/match order above.
  entries.sort((a, b) => comparePrecedence(a.match, b.match));
  const actions = new Map<AttachedRule['rule'], RuleAction>();
  const routes: Route[] = [];
  for (const e of entries) {
    let action = actions.get(e.rule);
    if (action === undefined) {
      action = ruleAction(e, port, env);
      actions.set(e.rule, action);
    }
    for (const { match, prefixRewrite } of pathVariants(e.match)) {
      const routeMatch: RouteMatch = { ...match, ...headerAndQuery(e.match) };
      const name = `${e.route.namespace}.${e.route.name}.${e.index}.${e.matchIndex}`;
      const route = withPrefixRewrite(action.route, prefixRewrite);
      routes.push({
        name,
        match: routeMatch,
        ...route,
        decorator: { operation: operation(routeMatch, route.route?.cluster, e.route.name, port) },
        ...action.headers,
      });
    }
  }
  return routes;
}

const PATH_RANK = { Exact: 3, PathPrefix: 2, RegularExpression: 1 } as const;

/** A prefix's length without its trailing `/`, which does not change what it matches. */
function pathLength(m: GatewayRouteMatch): number {
  return m.path.type === 'PathPrefix' ? m.path.value.replace(/\/+$/, '').length : m.path.value.length;
}

function comparePrecedence(a: GatewayRouteMatch, b: GatewayRouteMatch): number {
  return (
    PATH_RANK[b.path.type] - PATH_RANK[a.path.type] ||
    pathLength(b) - pathLength(a) ||
    Number(b.method !== undefined) - Number(a.method !== undefined) ||
    b.headers.length - a.headers.length ||
    b.queryParams.length - a.queryParams.length
  );
}

/**
 * The Envoy path matches of one Gateway API path match, each with what a ReplacePrefixMatch of `R`
 * becomes there: on the exact `/foo`, the whole path is `R`; on the prefix `/foo/`, that prefix is
 * `R/` (a trailing `/` of R dropped first, so `/foo/bar` becomes `R/bar`, and `/bar` when R is `/`).
 */
function pathVariants(
  m: GatewayRouteMatch,
): { match: Pick<RouteMatch, 'path' | 'prefix' | 'safe_regex'>; prefixRewrite: (r: string) => string }[] {
  const trimmed = (r: string) => r.replace(/\/+$/, '');
  switch (m.path.type) {
    case 'Exact':
      return [{ match: { path: m.path.value }, prefixRewrite: (r) => r }];
    case 'RegularExpression':
      return [{ match: { safe_regex: { regex: m.path.value } }, prefixRewrite: (r) => r }];
    case 'PathPrefix': {
      const p = trimmed(m.path.value);
      const under = { match: { prefix: `${p}/` }, prefixRewrite: (r: string) => `${trimmed(r)}/` };
      if (p === '') return [under];
      return [{ match: { path: p }, prefixRewrite: (r) => trimmed(r) || '/' }, under];
    }
  }
}

function headerAndQuery(m: GatewayRouteMatch): Pick<RouteMatch, 'headers' | 'query_parameters'> {
  const headers = m.headers.map((h) => ({
    name: h.name.toLowerCase(),
    string_match: h.type === 'Exact' ? { exact: h.value } : { safe_regex: { regex: h.value } },
  }));
  if (m.method) headers.push({ name: ':method', string_match: { exact: m.method } });
  const query = m.queryParams.map((q) => ({
    name: q.name,
    string_match: q.type === 'Exact' ? { exact: q.value } : { safe_regex: { regex: q.value } },
  }));
  return { ...nonEmpty('headers', headers), ...nonEmpty('query_parameters', query) };
}

/** A rule's action, with ReplacePrefixMatch left for each path variant to fill in. */
interface RuleAction {
  readonly route: {
    readonly route?: RouteAction;
    readonly redirect?: RedirectAction;
    readonly direct_response?: { readonly status: number };
    /** Set when the rule replaces the matched prefix (of the rewrite or the redirect). */
    readonly replacePrefix?: string;
  };
  readonly headers: Pick<
    Route,
    | 'request_headers_to_add'
    | 'request_headers_to_remove'
    | 'response_headers_to_add'
    | 'response_headers_to_remove'
  >;
}

function withPrefixRewrite(
  action: RuleAction['route'],
  rewrite: (r: string) => string,
): Pick<Route, 'route' | 'redirect' | 'direct_response'> {
  const { replacePrefix, ...rest } = action;
  if (replacePrefix === undefined) return rest;
  if (rest.redirect) return { redirect: { ...rest.redirect, prefix_rewrite: rewrite(replacePrefix) } };
  return { route: { ...rest.route!, prefix_rewrite: rewrite(replacePrefix) } };
}

const REDIRECT_CODES: Readonly<Record<number, RedirectResponseCode>> = {
  301: 'MOVED_PERMANENTLY',
  302: 'FOUND',
  303: 'SEE_OTHER',
  307: 'TEMPORARY_REDIRECT',
  308: 'PERMANENT_REDIRECT',
};

function ruleAction(a: AttachedRule, port: number, env: HttpRouteEnv): RuleAction {
  const { rule, route } = a;
  const path = `spec.rules[${a.index}]`;
  const request = modifier(rule.requestHeaders);
  const response = modifier(rule.responseHeaders);
  const headers = {
    ...nonEmpty('request_headers_to_add', request.add),
    ...nonEmpty('request_headers_to_remove', request.remove),
    ...nonEmpty('response_headers_to_add', response.add),
    ...nonEmpty('response_headers_to_remove', response.remove),
  };

  if (rule.redirect) {
    const r = rule.redirect;
    const scheme = r.scheme || 'http';
    let redirectPort = r.port ?? (r.scheme ? (r.scheme === 'https' ? 443 : 80) : port);
    // No explicit :80 for http or :443 for https (the spec's SHOULD).
    if ((redirectPort === 80 && scheme === 'http') || (redirectPort === 443 && scheme === 'https'))
      redirectPort = 0;
    const redirect: RedirectAction = {
      ...(r.scheme ? { scheme_redirect: r.scheme } : {}),
      ...(r.hostname ? { host_redirect: r.hostname } : {}),
      ...(redirectPort ? { port_redirect: redirectPort } : {}),
      ...(r.path?.type === 'ReplaceFullPath' ? { path_redirect: r.path.value } : {}),
      response_code: REDIRECT_CODES[r.statusCode] ?? 'FOUND',
    };
    return {
      route: {
        redirect,
        ...(r.path?.type === 'ReplacePrefixMatch' ? { replacePrefix: r.path.value } : {}),
      },
      headers,
    };
  }

  const hashes: HashPolicy[] = [];
  const addHash = (h: HashPolicy | undefined) => {
    if (h && !hashes.some((x) => JSON.stringify(x) === JSON.stringify(h))) hashes.push(h);
  };
  const valid: { cluster: ResolvedCluster; backend: GatewayBackendRef }[] = [];
  let invalidWeight = 0;
  rule.backendRefs.forEach((b, k) => {
    const resolved = resolveRef(
      route,
      b,
      `${path}.backendRefs[${k}]`,
      env,
      'requests it would get are answered 500',
    );
    if (b.weight === 0) return;
    if (resolved === undefined) invalidWeight += b.weight;
    else {
      addHash(resolved.hashPolicy);
      valid.push({ cluster: resolved, backend: b });
    }
  });
  if (valid.length === 0) return { route: { direct_response: { status: 500 } }, headers };

  let target: Pick<RouteAction, 'cluster' | 'weighted_clusters'>;
  let backendHost = '';
  const routeHeaders = { ...headers };
  if (valid.length === 1 && invalidWeight === 0) {
    const only = valid[0]!;
    const own = backendHeaders(only.backend);
    Object.assign(routeHeaders, {
      ...nonEmpty('request_headers_to_add', [...request.add, ...own.requestAdd]),
      ...nonEmpty('request_headers_to_remove', [...request.remove, ...own.requestRemove]),
      ...nonEmpty('response_headers_to_add', [...response.add, ...own.responseAdd]),
      ...nonEmpty('response_headers_to_remove', [...response.remove, ...own.responseRemove]),
    });
    backendHost = own.host;
    target = { cluster: only.cluster.name };
  } else {
    const clusters: ClusterWeight[] = valid.map(({ cluster, backend }) => {
      const own = backendHeaders(backend);
      return {
        name: cluster.name,
        weight: { value: backend.weight },
        ...nonEmpty('request_headers_to_add', own.requestAdd),
        ...nonEmpty('request_headers_to_remove', own.requestRemove),
        ...nonEmpty('response_headers_to_add', own.responseAdd),
        ...nonEmpty('response_headers_to_remove', own.responseRemove),
        ...(own.host ? { host_rewrite_literal: own.host } : {}),
      };
    });
    if (invalidWeight > 0) clusters.push({ name: INVALID_BACKEND_CLUSTER, weight: { value: invalidWeight } });
    target = { weighted_clusters: { clusters } };
  }

  const mirrors: RequestMirrorPolicy[] = [];
  for (const m of rule.mirrors) {
    const percent = m.percent ?? 100;
    const resolved = resolveRef(
      route,
      m.backendRef,
      `${m.path}.backendRef`,
      env,
      'nothing is mirrored there',
    );
    if (resolved === undefined || percent <= 0) continue;
    mirrors.push({
      cluster: resolved.name,
      runtime_fraction: { default_value: fraction(percent) },
      trace_sampled: { value: false },
    });
  }

  const timeout = rule.requestTimeout ?? rule.backendRequestTimeout ?? ZERO_DURATION;
  const retry = retryPolicy(undefined, hashes.length > 0);
  const perTry = rule.backendRequestTimeout;
  const rewrite = rule.rewrite;
  // The rule's own rewrite wins over a header modifier's Host, which wins over a backend's.
  const hostRewrite = rewrite?.hostname || request.host || backendHost;
  const routeAction: RouteAction = {
    ...target,
    ...(rewrite?.path?.type === 'ReplaceFullPath'
      ? {
          regex_rewrite: {
            pattern: { regex: '^/.*$' },
            substitution: rewrite.path.value.replace(/\\/g, '\\\\'),
          },
        }
      : {}),
    ...(hostRewrite ? { host_rewrite_literal: hostRewrite } : {}),
    timeout,
    max_stream_duration: { max_stream_duration: timeout },
    ...(retry
      ? {
          retry_policy:
            perTry && (perTry.seconds > 0 || perTry.nanos > 0)
              ? { ...retry, per_try_timeout: perTry }
              : retry,
        }
      : {}),
    ...(mirrors.length > 0 ? { request_mirror_policies: mirrors } : {}),
    ...(hashes.length > 0 ? { hash_policy: hashes } : {}),
    cluster_not_found_response_code: 'INTERNAL_SERVER_ERROR',
  };
  return {
    route: {
      route: routeAction,
      ...(rewrite?.path?.type === 'ReplacePrefixMatch' ? { replacePrefix: rewrite.path.value } : {}),
    },
    headers: routeHeaders,
  };
}

/**
 * The cluster of a backend (or mirror) reference, or undefined after reporting why it cannot be
 * used: another namespace (Ambit does not read ReferenceGrant yet, and Istio needs one), a kind
 * other than a core Service, or a Service (port) the mesh does not have.
 */
function resolveRef(
  route: GatewayHttpRoute,
  ref: GatewayObjectRef,
  path: string,
  env: HttpRouteEnv,
  consequence: string,
): ResolvedCluster | undefined {
  if (ref.group !== CORE_GROUP || ref.kind !== 'Service') {
    env.report(
      route,
      'error',
      ref.group !== CORE_GROUP ? `${path}.group` : `${path}.kind`,
      `${ref.group ? `${ref.group}/` : ''}${ref.kind} backends are not supported (only core Services, group ""); ${consequence}`,
    );
    return undefined;
  }
  if (ref.namespace !== route.namespace && !env.referencePermitted?.(route, ref)) {
    env.report(
      route,
      'error',
      `${path}.namespace`,
      env.referencePermitted
        ? `a backend in another namespace (${ref.namespace}) needs a ReferenceGrant there that lets HTTPRoutes of ${route.namespace} refer to Service ${ref.name}; ${consequence}`
        : `a backend in another namespace (${ref.namespace}) is not used for a Service parent (Istio needs a ReferenceGrant, which Ambit reads only for Gateway parents); ${consequence}`,
    );
    return undefined;
  }
  const resolved = env.service(ref);
  if ('problem' in resolved) {
    env.report(route, 'warning', `${path}.${resolved.field}`, `${resolved.problem}; ${consequence}`);
    return undefined;
  }
  return resolved;
}

interface Modifier {
  readonly add: HeaderValueOption[];
  readonly remove: string[];
  /** The value `host` is set (or added) to: the request's authority, rewritten. */
  readonly host: string;
}

function modifier(m: GatewayHeaderModifier | undefined): Modifier {
  if (m === undefined) return { add: [], remove: [], host: '' };
  const isHost = (k: string) => k.toLowerCase() === 'host';
  const option =
    (append_action: HeaderValueOption['append_action']) =>
    ([key, value]: readonly [string, string]): HeaderValueOption => ({
      header: { key: key.toLowerCase(), value },
      append_action,
    });
  return {
    add: [
      ...m.set.filter(([k]) => !isHost(k)).map(option('OVERWRITE_IF_EXISTS_OR_ADD')),
      ...m.add.filter(([k]) => !isHost(k)).map(option('APPEND_IF_EXISTS_OR_ADD')),
    ],
    remove: m.remove.map((k) => k.toLowerCase()),
    host: [...m.set, ...m.add].find(([k]) => isHost(k))?.[1] ?? '',
  };
}

function backendHeaders(b: GatewayBackendRef): {
  requestAdd: HeaderValueOption[];
  requestRemove: string[];
  responseAdd: HeaderValueOption[];
  responseRemove: string[];
  host: string;
} {
  const request = modifier(b.requestHeaders);
  const response = modifier(b.responseHeaders);
  return {
    requestAdd: request.add,
    requestRemove: request.remove,
    responseAdd: response.add,
    responseRemove: response.remove,
    host: request.host,
  };
}
