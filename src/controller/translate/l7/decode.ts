/**
 * Raw Kubernetes objects (parsed YAML or the API server's JSON) → VirtualService and
 * DestinationRule (types.ts), validated as istiod validates them (pkg/config/validation:
 * ValidateVirtualService, ValidateDestinationRule) for the fields in istio-api.md §1–2. Pure.
 *
 * Every problem carries the field path (`spec.http[2].route[0].weight`). An object with any error is
 * not returned (it must not be applied); warnings (deprecated fields, fields Ambit does not apply)
 * come with the object. Unknown fields inside `spec` are errors, as the API server's strict field
 * validation would make them: a misspelt `timout` silently ignored is worse than a rejection.
 *
 * Where this is stricter than istiod, it says why: weights are 0..100 (the contract; Istio
 * now allows any non-negative weight), and redirect codes are the five Envoy can send (istiod accepts
 * any 3xx and then emits a route without an action).
 */
import type { StringMap } from '../kube-types.ts';
import type {
  ClientTls,
  ConnectionPool,
  ConsistentHash,
  CorsPolicy,
  Destination,
  DestinationRule,
  Duration,
  FaultInjection,
  HashKey,
  HeaderOperations,
  Headers,
  HttpDirectResponse,
  HttpMatch,
  HttpRedirect,
  HttpRetry,
  HttpRewrite,
  HttpRoute,
  HttpRouteDestination,
  HttpSettings,
  L4Match,
  L7Problem,
  LoadBalancer,
  MirrorPolicy,
  OutlierDetection,
  PortTrafficPolicy,
  RetryBudget,
  RouteDestination,
  SimpleLb,
  StringMatch,
  Subset,
  TcpRoute,
  TcpSettings,
  TlsMatch,
  TlsRoute,
  TrafficPolicy,
  VirtualService,
} from './types.ts';
import {
  checkDuration,
  checkFqdn,
  checkHeaderValue,
  checkMatchHeaderName,
  checkPercentage,
  checkRe2,
  checkWildcardDomain,
  CORS_METHODS,
  GRPC_STATUS,
  hostMatches,
  isAuthorityHeader,
  isDns1123Label,
  isInternalHeader,
  isKnownStatusCode,
  nanosToDuration,
  parseDurationNanos,
  RETRY_ON_CONDITIONS,
} from './values.ts';

/** The API versions Istio serves VirtualService and DestinationRule under. */
export const ISTIO_NETWORKING_VERSIONS = [
  'networking.istio.io/v1',
  'networking.istio.io/v1beta1',
  'networking.istio.io/v1alpha3',
];
const DEFAULT_NAMESPACE = 'default';

export interface Decoded<T> {
  /** undefined when the object has an error (it must not be applied). */
  readonly value: T | undefined;
  /** Every error and warning found, each with its field path. */
  readonly problems: readonly L7Problem[];
}

export type DecodedL7Object =
  | { readonly kind: 'VirtualService'; readonly value: VirtualService }
  | { readonly kind: 'DestinationRule'; readonly value: DestinationRule };

/** True for an object this module decodes (by apiVersion and kind). */
export function isL7Object(obj: unknown): boolean {
  if (!isRecord(obj)) return false;
  return (
    typeof obj.apiVersion === 'string' &&
    ISTIO_NETWORKING_VERSIONS.includes(obj.apiVersion) &&
    (obj.kind === 'VirtualService' || obj.kind === 'DestinationRule')
  );
}

/** Decodes a VirtualService or DestinationRule, whichever `kind` says. */
export function decodeL7Object(obj: unknown): Decoded<DecodedL7Object> {
  const kind = isRecord(obj) ? obj.kind : undefined;
  if (kind === 'DestinationRule') {
    const d = decodeDestinationRule(obj);
    return { value: d.value && { kind, value: d.value }, problems: d.problems };
  }
  const d = decodeVirtualService(obj);
  return { value: d.value && { kind: 'VirtualService', value: d.value }, problems: d.problems };
}

export function decodeVirtualService(obj: unknown): Decoded<VirtualService> {
  return decodeObject(obj, 'VirtualService', (r, spec, meta) => virtualService(r, spec, meta));
}

export function decodeDestinationRule(obj: unknown): Decoded<DestinationRule> {
  return decodeObject(obj, 'DestinationRule', (r, spec, meta) => destinationRule(r, spec, meta));
}

/** An object's identity and age, read from its metadata. */
export interface Meta {
  readonly namespace: string;
  readonly name: string;
  readonly creationTimestamp: string;
}

/**
 * Reads the envelope (apiVersion, kind, metadata) of an object of `kind`, then its spec with
 * `decodeSpec`; the value is undefined when any error was found. `versions`: the API versions the
 * kind is served under.
 */
export function decodeObject<T>(
  obj: unknown,
  kind: L7Problem['kind'],
  decodeSpec: (r: Reader, spec: unknown, meta: Meta) => T,
  versions: readonly string[] = ISTIO_NETWORKING_VERSIONS,
): Decoded<T> {
  const r = new Reader();
  const top = r.object(obj, '', undefined);
  const meta = r.object(top?.metadata, 'metadata', undefined);
  const name = r.string(meta?.name, 'metadata.name');
  const namespace = r.string(meta?.namespace, 'metadata.namespace') || DEFAULT_NAMESPACE;
  const apiVersion = r.string(top?.apiVersion, 'apiVersion');
  const problems = (): L7Problem[] => r.problems.map((p) => ({ ...p, kind, namespace, name }));
  if (top === undefined) return { value: undefined, problems: problems() };
  if (top.kind !== kind) r.error('kind', `must be ${kind}`);
  if (!versions.includes(apiVersion)) r.error('apiVersion', `must be one of ${versions.join(', ')}`);
  if (!name) r.error('metadata.name', 'is required');
  const value = decodeSpec(r, top.spec, {
    namespace,
    name,
    creationTimestamp: timestamp(r, meta?.creationTimestamp),
  });
  return { value: r.hasErrors() ? undefined : value, problems: problems() };
}

function timestamp(r: Reader, v: unknown): string {
  if (v instanceof Date) return v.toISOString().replace(/\.000Z$/, 'Z');
  return r.string(v, 'metadata.creationTimestamp');
}

// ---------- VirtualService ----------

const VS_FIELDS = ['hosts', 'gateways', 'http', 'tls', 'tcp', 'exportTo'];
const HTTP_ROUTE_FIELDS = [
  'name',
  'match',
  'route',
  'redirect',
  'directResponse',
  'delegate',
  'rewrite',
  'timeout',
  'retries',
  'fault',
  'mirror',
  'mirrors',
  'mirrorPercent',
  'mirrorPercentage',
  'corsPolicy',
  'headers',
];
const HTTP_MATCH_FIELDS = [
  'name',
  'uri',
  'scheme',
  'method',
  'authority',
  'headers',
  'port',
  'sourceLabels',
  'gateways',
  'queryParams',
  'ignoreUriCase',
  'withoutHeaders',
  'sourceNamespace',
  'statPrefix',
];
const MESH = 'mesh';

function virtualService(r: Reader, specValue: unknown, meta: Meta): VirtualService {
  const spec = r.object(specValue, 'spec', VS_FIELDS);
  if (spec === undefined) r.error('spec', 'is required');
  const hosts = r.stringList(spec?.hosts, 'spec.hosts');
  const gateways = r.stringList(spec?.gateways, 'spec.gateways');
  gateways.forEach((g, i) => checkGatewayName(r, g, `spec.gateways[${i}]`));
  const appliesToMesh = gateways.length === 0 || gateways.includes(MESH);
  if (hosts.length === 0)
    r.error('spec.hosts', 'at least one host is required (delegate VirtualServices are not supported)');
  let hostsValid = true;
  hosts.forEach((h, i) => {
    const p = `spec.hosts[${i}]`;
    if (isIpAddress(h)) return; // allowed (and only meaningful) on gateways
    const err = checkWildcardDomain(h);
    if (err) {
      r.error(p, err);
      hostsValid = false;
    } else if (h === '*' && appliesToMesh) {
      r.error(p, 'the wildcard host * is not allowed for VirtualServices bound to the mesh');
      hostsValid = false;
    }
  });
  if (hostsValid) {
    for (let i = 0; i < hosts.length; i++)
      for (let j = i + 1; j < hosts.length; j++)
        if (hostMatches(hosts[i]!, hosts[j]!))
          r.error(`spec.hosts[${j}]`, `duplicates spec.hosts[${i}] ("${hosts[i]!}" matches "${hosts[j]!}")`);
  }
  const http = r.list(spec?.http, 'spec.http', (v, p) => httpRoute(r, v, p));
  const tls = r.list(spec?.tls, 'spec.tls', (v, p) => tlsRoute(r, v, p));
  const tcp = r.list(spec?.tcp, 'spec.tcp', (v, p) => tcpRoute(r, v, p));
  if (spec !== undefined && http.length === 0 && tls.length === 0 && tcp.length === 0)
    r.error('spec', 'http, tcp or tls must be provided');
  const exportTo = r.stringList(spec?.exportTo, 'spec.exportTo');
  return { ...meta, hosts, gateways, http, tls, tcp, exportTo };
}

function checkGatewayName(r: Reader, g: string, path: string): void {
  const slash = g.indexOf('/');
  if (slash < 0) {
    const err = checkFqdn(g);
    if (err) r.error(path, err);
    return;
  }
  const ns = g.slice(0, slash);
  const name = g.slice(slash + 1);
  if (!isDns1123Label(ns) || !isDns1123Label(name))
    r.error(path, `"${g}" must be <namespace>/<name> with DNS labels, or "mesh"`);
}

function httpRoute(r: Reader, v: unknown, p: string): HttpRoute | undefined {
  const f = r.object(v, p, HTTP_ROUTE_FIELDS);
  if (f === undefined) {
    r.error(p, 'must not be null');
    return undefined;
  }
  const match = r.list(f.match, `${p}.match`, (m, mp) => httpMatch(r, m, mp));
  const route = r.list(f.route, `${p}.route`, (d, dp) => httpRouteDestination(r, d, dp));
  const redirect = f.redirect === undefined ? undefined : httpRedirect(r, f.redirect, `${p}.redirect`, match);
  const directResponse =
    f.directResponse === undefined
      ? undefined
      : httpDirectResponse(r, f.directResponse, `${p}.directResponse`);
  const delegateFields = r.object(f.delegate, `${p}.delegate`, ['name', 'namespace']);
  const delegate = delegateFields && {
    name: r.string(delegateFields.name, `${p}.delegate.name`),
    namespace: r.string(delegateFields.namespace, `${p}.delegate.namespace`),
  };
  const rewrite = f.rewrite === undefined ? undefined : httpRewrite(r, f.rewrite, `${p}.rewrite`);
  const timeout = r.duration(f.timeout, `${p}.timeout`, true);
  const retries = f.retries === undefined ? undefined : httpRetry(r, f.retries, `${p}.retries`);
  const fault = f.fault === undefined ? undefined : faultInjection(r, f.fault, `${p}.fault`);
  const corsPolicy = f.corsPolicy === undefined ? undefined : cors(r, f.corsPolicy, `${p}.corsPolicy`);
  const headers = f.headers === undefined ? undefined : headerOps(r, f.headers, `${p}.headers`);
  const mirrors = mirrorPolicies(r, f, p);

  // Conflicts (validateHTTPRouteConflict).
  if (delegate) {
    if (redirect) r.error(`${p}.redirect`, 'a rule with a delegate must not specify redirect');
    if (route.length > 0) r.error(`${p}.route`, 'a rule with a delegate must not specify route');
  } else if (redirect) {
    if (route.length > 0) r.error(p, 'route and redirect cannot be used together');
    if (fault) r.error(p, 'fault and redirect cannot be used together');
    if (rewrite) r.error(p, 'rewrite and redirect cannot be used together');
    if (directResponse) r.error(p, 'directResponse and redirect cannot be used together');
  } else if (directResponse) {
    if (route.length > 0) r.error(p, 'route and directResponse cannot be used together');
    if (fault) r.error(p, 'fault and directResponse cannot be used together');
    if (rewrite) r.error(p, 'rewrite and directResponse cannot be used together');
  } else if (route.length === 0) {
    r.error(p, 'one of route, redirect or directResponse is required');
  }
  if (f.mirror !== undefined && f.mirrors !== undefined)
    r.error(p, 'mirror and mirrors cannot be used together');
  if (delegate)
    r.warn(
      `${p}.delegate`,
      'delegation is not supported on waypoints (as in Istio ambient); this rule is not applied',
    );

  // The authority may be rewritten in one place only (validateAuthorityRewrite).
  const authorities = [
    ...(rewrite?.authority ? [`${p}.rewrite.authority`] : []),
    ...(['set', 'add'] as const).flatMap((op) =>
      (headers?.request[op] ?? [])
        .filter(([k]) => isAuthorityHeader(k))
        .map(([k]) => joinKey(`${p}.headers.request.${op}`, k)),
    ),
  ];
  if (authorities.length > 1)
    r.error(
      authorities[1]!,
      `the authority is already rewritten by ${authorities[0]!}; it can be set in one place only`,
    );

  // Weights (validateHTTPRouteDestinations).
  if (route.length > 1 && route.every((d) => d.weight === 0))
    r.error(`${p}.route`, 'the total weight of the destinations is 0');

  return {
    name: r.string(f.name, `${p}.name`),
    match,
    route,
    redirect,
    directResponse,
    delegate,
    rewrite,
    timeout,
    retries,
    fault,
    mirrors,
    corsPolicy,
    headers,
  };
}

function httpMatch(r: Reader, v: unknown, p: string): HttpMatch | undefined {
  const f = r.object(v, p, HTTP_MATCH_FIELDS);
  if (f === undefined) {
    r.error(p, 'must not be null');
    return undefined;
  }
  const matchMap = (key: 'headers' | 'withoutHeaders' | 'queryParams') =>
    r.entries(f[key], `${p}.${key}`, (value, kp, name) => {
      if (key !== 'queryParams') {
        const err = checkMatchHeaderName(name);
        if (err) r.error(kp, err);
      }
      if (value === null || value === undefined) {
        if (key === 'headers') r.error(kp, 'must not be null');
        return { kind: 'present' } as const;
      }
      return stringMatch(r, value, kp, false);
    });
  const port = r.optionalInteger(f.port, `${p}.port`, 1, 65535);
  const sourceNamespace = r.string(f.sourceNamespace, `${p}.sourceNamespace`);
  if (sourceNamespace && !isDns1123Label(sourceNamespace))
    r.error(`${p}.sourceNamespace`, `"${sourceNamespace}" is not a namespace name`);
  const gateways = r.stringList(f.gateways, `${p}.gateways`);
  gateways.forEach((g, i) => checkGatewayName(r, g, `${p}.gateways[${i}]`));
  return {
    name: r.string(f.name, `${p}.name`),
    uri: optionalStringMatch(r, f.uri, `${p}.uri`, true),
    scheme: optionalStringMatch(r, f.scheme, `${p}.scheme`, false),
    method: optionalStringMatch(r, f.method, `${p}.method`, false),
    authority: optionalStringMatch(r, f.authority, `${p}.authority`, false),
    headers: matchMap('headers'),
    withoutHeaders: matchMap('withoutHeaders'),
    queryParams: matchMap('queryParams'),
    ignoreUriCase: r.boolean(f.ignoreUriCase, `${p}.ignoreUriCase`) ?? false,
    port,
    sourceLabels: labels(r, f.sourceLabels, `${p}.sourceLabels`),
    sourceNamespace,
    gateways,
    statPrefix: r.string(f.statPrefix, `${p}.statPrefix`),
  };
}

function optionalStringMatch(r: Reader, v: unknown, p: string, isUri: boolean): StringMatch | undefined {
  if (v === undefined || v === null) return undefined;
  return stringMatch(r, v, p, isUri);
}

/**
 * Istio's StringMatch. An empty prefix is allowed for the URI only (Envoy's rules); `{}` and the
 * regex `*` mean "present".
 */
function stringMatch(r: Reader, v: unknown, p: string, allowEmptyPrefix: boolean): StringMatch {
  const f = r.object(v, p, ['exact', 'prefix', 'regex']) ?? {};
  const set = (['exact', 'prefix', 'regex'] as const).filter((k) => f[k] !== undefined && f[k] !== null);
  if (set.length > 1) {
    r.error(p, `only one of exact, prefix and regex may be set (found ${set.join(', ')})`);
    return { kind: 'present' };
  }
  const kind = set[0];
  if (kind === undefined) return { kind: 'present' };
  const value = r.string(f[kind], `${p}.${kind}`);
  if (kind === 'prefix' && value === '' && !allowEmptyPrefix) r.error(`${p}.prefix`, 'must not be empty');
  if (kind === 'regex') {
    if (value === '*') return { kind: 'present' };
    const err = checkRe2(value);
    if (err) r.error(`${p}.regex`, err);
  }
  return { kind, value };
}

function labels(r: Reader, v: unknown, p: string): StringMap {
  const out: Record<string, string> = {};
  for (const [k, value] of r.entries(v, p, (x, kp) => r.string(x, kp))) {
    if (
      !/^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/.test(
        k,
      )
    )
      r.error(joinKey(p, k), `"${k}" is not a valid label key`);
    else if (value !== '' && !/^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/.test(value))
      r.error(joinKey(p, k), `"${value}" is not a valid label value`);
    out[k] = value;
  }
  return out;
}

function destination(r: Reader, v: unknown, p: string): Destination | undefined {
  const f = r.object(v, p, ['host', 'subset', 'port']);
  if (f === undefined) {
    r.error(p, 'is required');
    return undefined;
  }
  const host = r.string(f.host, `${p}.host`);
  if (host === '') r.error(`${p}.host`, 'is required');
  else if (host === '*') r.error(`${p}.host`, '"*" is not a destination');
  else {
    const err = checkWildcardDomain(host);
    if (err) r.error(`${p}.host`, err);
  }
  const subset = r.string(f.subset, `${p}.subset`);
  if (subset !== '' && !isDns1123Label(subset))
    r.error(`${p}.subset`, `"${subset}" is not a valid subset name (a DNS label)`);
  const portFields = r.object(f.port, `${p}.port`, ['number']);
  const port = portFields && r.optionalInteger(portFields.number, `${p}.port.number`, 1, 65535);
  if (portFields && port === undefined && portFields.number === undefined)
    r.error(`${p}.port.number`, 'is required');
  return { host, subset, port };
}

function httpRouteDestination(r: Reader, v: unknown, p: string): HttpRouteDestination | undefined {
  const f = r.object(v, p, ['destination', 'weight', 'headers']);
  if (f === undefined) {
    r.error(p, 'must not be null');
    return undefined;
  }
  const dest = destination(r, f.destination, `${p}.destination`);
  const weight = weightOf(r, f.weight, `${p}.weight`);
  const headers = f.headers === undefined ? undefined : headerOps(r, f.headers, `${p}.headers`);
  if (dest === undefined) return undefined;
  return { destination: dest, weight, headers };
}

function weightOf(r: Reader, v: unknown, p: string): number {
  const w = r.optionalInteger(v, p, -(2 ** 31), 2 ** 31 - 1);
  if (w !== undefined && (w < 0 || w > 100)) r.error(p, `${w} must be between 0 and 100`);
  return w ?? 0;
}

function headerOps(r: Reader, v: unknown, p: string): Headers {
  const f = r.object(v, p, ['request', 'response']);
  const ops = (which: 'request' | 'response'): HeaderOperations => {
    const op = r.object(f?.[which], `${p}.${which}`, ['set', 'add', 'remove']);
    const base = `${p}.${which}`;
    const pairs = (key: 'set' | 'add') =>
      r.entries(op?.[key], `${base}.${key}`, (x, kp, name) => {
        const value = r.string(x, kp);
        checkHeaderOperation(r, name, kp, which === 'request');
        const err = checkHeaderValue(value);
        if (err) r.error(kp, err);
        return value;
      });
    const remove = r.stringList(op?.remove, `${base}.remove`);
    remove.forEach((name, i) => checkHeaderOperation(r, name, `${base}.remove[${i}]`, false));
    return { set: pairs('set'), add: pairs('add'), remove };
  };
  return { request: ops('request'), response: ops('response') };
}

/** Istio's ValidateHTTPHeader(WithAuthority)OperationName. */
function checkHeaderOperation(r: Reader, name: string, p: string, authorityAllowed: boolean): void {
  if (name === '') r.error(p, 'header name must not be empty');
  else if (authorityAllowed && isAuthorityHeader(name)) return;
  else if (name.toLowerCase() === 'host') r.error(p, 'the Host header cannot be changed here');
  else if (isInternalHeader(name)) r.error(p, `"${name}": headers starting with ":" cannot be changed`);
}

function httpRedirect(r: Reader, v: unknown, p: string, matches: readonly HttpMatch[]): HttpRedirect {
  const f =
    r.object(v, p, ['uri', 'authority', 'port', 'derivePort', 'scheme', 'redirectCode', 'prefixRewrite']) ??
    {};
  const uri = r.string(f.uri, `${p}.uri`);
  const prefixRewrite = r.string(f.prefixRewrite, `${p}.prefixRewrite`);
  const authority = r.string(f.authority, `${p}.authority`);
  const scheme = r.string(f.scheme, `${p}.scheme`);
  const port = r.optionalInteger(f.port, `${p}.port`, 1, 65535);
  const derivePort = r.enumValue(f.derivePort, `${p}.derivePort`, [
    'FROM_PROTOCOL_DEFAULT',
    'FROM_REQUEST_PORT',
  ] as const);
  if (port !== undefined && derivePort !== undefined)
    r.error(p, 'port and derivePort cannot be used together');
  const redirectCode = r.optionalInteger(f.redirectCode, `${p}.redirectCode`, 0, 999) ?? 0;
  if (uri && prefixRewrite) r.error(p, 'uri and prefixRewrite cannot be used together');
  if (prefixRewrite && matches.some((m) => m.uri !== undefined && m.uri.kind !== 'prefix'))
    r.error(`${p}.prefixRewrite`, 'requires every URI match of the rule to be a prefix match');
  if (!uri && !prefixRewrite && !authority && port === undefined && derivePort === undefined && !scheme)
    r.error(p, 'must specify uri, prefixRewrite, authority, scheme or port');
  if (redirectCode !== 0 && ![301, 302, 303, 307, 308].includes(redirectCode))
    r.error(`${p}.redirectCode`, `${redirectCode} must be 301, 302, 303, 307 or 308`);
  if (scheme && scheme !== 'http' && scheme !== 'https') r.error(`${p}.scheme`, 'must be "http" or "https"');
  return { uri, authority, port, derivePort, scheme, redirectCode, prefixRewrite };
}

const MAX_DIRECT_RESPONSE_BYTES = 1024 * 1024;

function httpDirectResponse(r: Reader, v: unknown, p: string): HttpDirectResponse {
  const f = r.object(v, p, ['status', 'body']) ?? {};
  if (f.status === undefined) r.error(`${p}.status`, 'is required');
  const status = r.optionalInteger(f.status, `${p}.status`, 0, 2 ** 32 - 1) ?? 0;
  if (f.status !== undefined && (status < 200 || status > 599))
    r.error(`${p}.status`, `${status} must be between 200 and 599`);
  const body = r.object(f.body, `${p}.body`, ['string', 'bytes']);
  let out: HttpDirectResponse['body'];
  if (body !== undefined) {
    if (body.string !== undefined && body.bytes !== undefined)
      r.error(`${p}.body`, 'string and bytes cannot be used together');
    if (body.bytes !== undefined) {
      const text = r.string(body.bytes, `${p}.body.bytes`);
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text.replace(/\s/g, '')))
        r.error(`${p}.body.bytes`, 'must be base64');
      out = { kind: 'bytes', value: new Uint8Array(Buffer.from(text, 'base64')) };
    } else if (body.string !== undefined) {
      out = { kind: 'string', value: r.string(body.string, `${p}.body.string`) };
    }
    const size =
      out === undefined ? 0 : out.kind === 'bytes' ? out.value.length : Buffer.byteLength(out.value);
    if (size > MAX_DIRECT_RESPONSE_BYTES) r.error(`${p}.body`, 'must be smaller than 1 MiB');
  }
  return { status, body: out };
}

function httpRewrite(r: Reader, v: unknown, p: string): HttpRewrite {
  const f = r.object(v, p, ['uri', 'authority', 'uriRegexRewrite']) ?? {};
  const uri = r.string(f.uri, `${p}.uri`);
  const authority = r.string(f.authority, `${p}.authority`);
  const rx = r.object(f.uriRegexRewrite, `${p}.uriRegexRewrite`, ['match', 'rewrite']);
  let uriRegexRewrite: HttpRewrite['uriRegexRewrite'];
  if (rx !== undefined) {
    const match = r.string(rx.match, `${p}.uriRegexRewrite.match`);
    const rewrite = r.string(rx.rewrite, `${p}.uriRegexRewrite.rewrite`);
    if (!match || !rewrite) r.error(`${p}.uriRegexRewrite`, 'needs both match and rewrite');
    else {
      const err = checkRe2(match);
      if (err) r.error(`${p}.uriRegexRewrite.match`, err);
    }
    uriRegexRewrite = { match, rewrite };
  }
  if (uri && uriRegexRewrite) r.error(p, 'uri and uriRegexRewrite cannot be used together');
  if (!uri && !uriRegexRewrite && !authority) r.error(p, 'must specify uri, uriRegexRewrite or authority');
  return { uri, authority, uriRegexRewrite };
}

function httpRetry(r: Reader, v: unknown, p: string): HttpRetry {
  const f =
    r.object(v, p, [
      'attempts',
      'perTryTimeout',
      'retryOn',
      'retryRemoteLocalities',
      'retryIgnorePreviousHosts',
      'backoff',
    ]) ?? {};
  const attempts = r.optionalInteger(f.attempts, `${p}.attempts`, -(2 ** 31), 2 ** 31 - 1) ?? 0;
  if (attempts < 0) r.error(`${p}.attempts`, 'must not be negative');
  const perTryTimeout = r.duration(f.perTryTimeout, `${p}.perTryTimeout`, true);
  const retryOn = r
    .string(f.retryOn, `${p}.retryOn`)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  retryOn.forEach((cond) => {
    const code = /^\d+$/.test(cond) ? Number(cond) : NaN;
    if (!(isKnownStatusCode(code) || (RETRY_ON_CONDITIONS as readonly string[]).includes(cond)))
      r.error(
        `${p}.retryOn`,
        `"${cond}" is not a retry condition (${RETRY_ON_CONDITIONS.join(', ')}, or an HTTP status code)`,
      );
  });
  const retryRemoteLocalities = r.boolean(f.retryRemoteLocalities, `${p}.retryRemoteLocalities`);
  if (
    attempts === 0 &&
    (perTryTimeout !== undefined || retryOn.length > 0 || retryRemoteLocalities !== undefined)
  )
    r.error(p, 'attempts is 0 (retries disabled), so nothing else may be set');
  return {
    attempts,
    perTryTimeout,
    retryOn: retryOn.join(','),
    retryRemoteLocalities,
    retryIgnorePreviousHosts: r.boolean(f.retryIgnorePreviousHosts, `${p}.retryIgnorePreviousHosts`),
    backoff: r.duration(f.backoff, `${p}.backoff`, true),
  };
}

function percent(r: Reader, v: unknown, p: string): number | undefined {
  const f = r.object(v, p, ['value']);
  if (f === undefined) return undefined;
  const value = r.number(f.value, `${p}.value`) ?? 0;
  const err = checkPercentage(value);
  if (err) r.error(`${p}.value`, err);
  return value;
}

function faultInjection(r: Reader, v: unknown, p: string): FaultInjection {
  const f = r.object(v, p, ['delay', 'abort']) ?? {};
  if (f.delay === undefined && f.abort === undefined) r.error(p, 'needs an abort, a delay, or both');
  let delay: FaultInjection['delay'];
  const d = r.object(f.delay, `${p}.delay`, ['percent', 'fixedDelay', 'exponentialDelay', 'percentage']);
  if (d !== undefined) {
    const dp = `${p}.delay`;
    let percentage = percent(r, d.percentage, `${dp}.percentage`);
    if (d.percent !== undefined) {
      const old = r.optionalInteger(d.percent, `${dp}.percent`, 0, 100);
      r.warn(`${dp}.percent`, 'is deprecated; use percentage.value');
      if (percentage === undefined) percentage = old;
    }
    if (d.exponentialDelay !== undefined) r.error(`${dp}.exponentialDelay`, 'is not supported (as in Istio)');
    const fixedDelay = r.duration(d.fixedDelay, `${dp}.fixedDelay`, true);
    if (d.fixedDelay === undefined && d.exponentialDelay === undefined)
      r.error(`${dp}.fixedDelay`, 'is required');
    if (percentage === undefined)
      r.warn(dp, 'has no percentage, so no request is delayed (set percentage.value, e.g. 100)');
    if (fixedDelay) delay = { fixedDelay, percentage };
  }
  let abort: FaultInjection['abort'];
  const a = r.object(f.abort, `${p}.abort`, ['httpStatus', 'grpcStatus', 'http2Error', 'percentage']);
  if (a !== undefined) {
    const ap = `${p}.abort`;
    const percentage = percent(r, a.percentage, `${ap}.percentage`);
    const set = (['httpStatus', 'grpcStatus', 'http2Error'] as const).filter((k) => a[k] !== undefined);
    if (set.length > 1) r.error(ap, `only one of httpStatus, grpcStatus and http2Error may be set`);
    let httpStatus: number | undefined;
    let grpcStatus: number | undefined;
    if (a.httpStatus !== undefined) {
      httpStatus = r.optionalInteger(a.httpStatus, `${ap}.httpStatus`, -(2 ** 31), 2 ** 31 - 1);
      if (httpStatus !== undefined && (httpStatus < 200 || httpStatus > 599))
        r.error(`${ap}.httpStatus`, `${httpStatus} must be between 200 and 599`);
    } else if (a.grpcStatus !== undefined) {
      const name = r.string(a.grpcStatus, `${ap}.grpcStatus`);
      grpcStatus = GRPC_STATUS[name];
      if (!Object.hasOwn(GRPC_STATUS, name))
        r.error(`${ap}.grpcStatus`, `"${name}" is not a gRPC status name (e.g. UNAVAILABLE, NOT_FOUND)`);
    } else if (a.http2Error !== undefined) {
      r.error(`${ap}.http2Error`, 'is not supported (as in Istio)');
    } else r.warn(ap, 'has no httpStatus or grpcStatus, so nothing is aborted');
    if (percentage === undefined)
      r.warn(ap, 'has no percentage, so no request is aborted (set percentage.value, e.g. 100)');
    if (httpStatus !== undefined || grpcStatus !== undefined) abort = { httpStatus, grpcStatus, percentage };
  }
  return { delay, abort };
}

function mirrorPolicies(r: Reader, f: Record<string, unknown>, p: string): MirrorPolicy[] {
  const out: MirrorPolicy[] = [];
  let single = percent(r, f.mirrorPercentage, `${p}.mirrorPercentage`);
  if (f.mirrorPercent !== undefined) {
    const old = r.optionalInteger(f.mirrorPercent, `${p}.mirrorPercent`, 0, 100);
    r.warn(`${p}.mirrorPercent`, 'is deprecated; use mirrorPercentage.value');
    if (single === undefined) single = old;
  }
  if (f.mirror !== undefined) {
    const d = destination(r, f.mirror, `${p}.mirror`);
    if (d) out.push({ field: 'mirror', destination: d, percentage: single });
  } else if (f.mirrorPercentage !== undefined || f.mirrorPercent !== undefined) {
    r.warn(`${p}.mirrorPercentage`, 'has no effect without mirror');
  }
  out.push(
    ...r.list(f.mirrors, `${p}.mirrors`, (v, mp): MirrorPolicy | undefined => {
      const m = r.object(v, mp, ['destination', 'percentage']);
      if (m === undefined) {
        r.error(mp, 'must not be null');
        return undefined;
      }
      const d = destination(r, m.destination, `${mp}.destination`);
      const percentage = percent(r, m.percentage, `${mp}.percentage`);
      return d && { field: `${mp.slice(p.length + 1)}.destination`, destination: d, percentage };
    }),
  );
  return out;
}

function cors(r: Reader, v: unknown, p: string): CorsPolicy {
  const f =
    r.object(v, p, [
      'allowOrigin',
      'allowOrigins',
      'allowMethods',
      'allowHeaders',
      'exposeHeaders',
      'maxAge',
      'allowCredentials',
      'unmatchedPreflights',
    ]) ?? {};
  const allowOrigins = r.list(f.allowOrigins, `${p}.allowOrigins`, (o, op) => {
    const m = stringMatch(r, o, op, false);
    if (m.kind === 'present' || m.value === '') r.error(op, 'must be an exact, prefix or regex match');
    return m;
  });
  const legacy = r.stringList(f.allowOrigin, `${p}.allowOrigin`);
  if (legacy.length > 0) r.warn(`${p}.allowOrigin`, 'is deprecated; use allowOrigins');
  const allowMethods = r.stringList(f.allowMethods, `${p}.allowMethods`);
  allowMethods.forEach((m, i) => {
    if (!CORS_METHODS.includes(m)) r.error(`${p}.allowMethods[${i}]`, `"${m}" is not an HTTP method`);
  });
  const headerNames = (key: 'allowHeaders' | 'exposeHeaders') => {
    const names = r.stringList(f[key], `${p}.${key}`);
    names.forEach((n, i) => {
      if (n !== '*' && !/^[-_A-Za-z0-9]+$/.test(n))
        r.error(`${p}.${key}[${i}]`, `"${n}" is not a header name`);
    });
    return names;
  };
  const maxAge = r.duration(f.maxAge, `${p}.maxAge`, true);
  if (maxAge && maxAge.nanos !== 0) r.error(`${p}.maxAge`, 'must be whole seconds');
  return {
    allowOrigins: allowOrigins.length > 0 ? allowOrigins : legacy.map((value) => ({ kind: 'exact', value })),
    allowMethods,
    allowHeaders: headerNames('allowHeaders'),
    exposeHeaders: headerNames('exposeHeaders'),
    maxAge,
    allowCredentials: r.boolean(f.allowCredentials, `${p}.allowCredentials`),
    unmatchedPreflights:
      r.enumValue(f.unmatchedPreflights, `${p}.unmatchedPreflights`, [
        'UNSPECIFIED',
        'FORWARD',
        'IGNORE',
      ] as const) ?? 'UNSPECIFIED',
  };
}

function routeDestination(r: Reader, v: unknown, p: string): RouteDestination | undefined {
  const f = r.object(v, p, ['destination', 'weight']);
  if (f === undefined) {
    r.error(p, 'must not be null');
    return undefined;
  }
  const d = destination(r, f.destination, `${p}.destination`);
  const weight = weightOf(r, f.weight, `${p}.weight`);
  return d && { destination: d, weight };
}

function routeDestinations(r: Reader, v: unknown, p: string): RouteDestination[] {
  const route = r.list(v, p, (d, dp) => routeDestination(r, d, dp));
  if (route.length === 0) r.error(p, 'at least one destination is required');
  if (route.length > 1 && route.every((d) => d.weight === 0))
    r.error(p, 'the total weight of the destinations is 0');
  return route;
}

function l4Match(r: Reader, f: Record<string, unknown>, p: string): L4Match {
  const destinationSubnets = r.stringList(f.destinationSubnets, `${p}.destinationSubnets`);
  destinationSubnets.forEach((s, i) => {
    if (!isCidr(s)) r.error(`${p}.destinationSubnets[${i}]`, `"${s}" is not an IP address or CIDR`);
  });
  const gateways = r.stringList(f.gateways, `${p}.gateways`);
  gateways.forEach((g, i) => checkGatewayName(r, g, `${p}.gateways[${i}]`));
  return {
    destinationSubnets,
    port: r.optionalInteger(f.port, `${p}.port`, 1, 65535),
    sourceLabels: labels(r, f.sourceLabels, `${p}.sourceLabels`),
    sourceNamespace: r.string(f.sourceNamespace, `${p}.sourceNamespace`),
    gateways,
  };
}

function tcpRoute(r: Reader, v: unknown, p: string): TcpRoute | undefined {
  const f = r.object(v, p, ['match', 'route']);
  if (f === undefined) return undefined;
  const match = r.list(f.match, `${p}.match`, (m, mp) => {
    const mf = r.object(m, mp, [
      'destinationSubnets',
      'port',
      'sourceSubnet',
      'sourceLabels',
      'gateways',
      'sourceNamespace',
    ]);
    if (mf === undefined) {
      r.error(mp, 'must not be null');
      return undefined;
    }
    r.string(mf.sourceSubnet, `${mp}.sourceSubnet`);
    return l4Match(r, mf, mp);
  });
  return { match, route: routeDestinations(r, f.route, `${p}.route`) };
}

function tlsRoute(r: Reader, v: unknown, p: string): TlsRoute | undefined {
  const f = r.object(v, p, ['match', 'route']);
  if (f === undefined) return undefined;
  const match = r.list(f.match, `${p}.match`, (m, mp): TlsMatch | undefined => {
    const mf = r.object(m, mp, [
      'sniHosts',
      'destinationSubnets',
      'port',
      'sourceLabels',
      'gateways',
      'sourceNamespace',
    ]);
    if (mf === undefined) {
      r.error(mp, 'must not be null');
      return undefined;
    }
    const sniHosts = r.stringList(mf.sniHosts, `${mp}.sniHosts`);
    if (sniHosts.length === 0) r.error(`${mp}.sniHosts`, 'at least one SNI host is required');
    sniHosts.forEach((h, i) => {
      const err = checkWildcardDomain(h);
      if (err) r.error(`${mp}.sniHosts[${i}]`, err);
    });
    return { ...l4Match(r, mf, mp), sniHosts };
  });
  if (match.length === 0) r.error(`${p}.match`, 'is required for a TLS route');
  return { match, route: routeDestinations(r, f.route, `${p}.route`) };
}

// ---------- DestinationRule ----------

const DR_FIELDS = ['host', 'trafficPolicy', 'subsets', 'exportTo', 'workloadSelector'];
const POLICY_SECTIONS = ['loadBalancer', 'connectionPool', 'outlierDetection', 'tls'];
const TRAFFIC_POLICY_FIELDS = [
  ...POLICY_SECTIONS,
  'portLevelSettings',
  'tunnel',
  'proxyProtocol',
  'retryBudget',
];

function destinationRule(r: Reader, specValue: unknown, meta: Meta): DestinationRule {
  const spec = r.object(specValue, 'spec', DR_FIELDS);
  if (spec === undefined) r.error('spec', 'is required');
  const host = r.string(spec?.host, 'spec.host');
  if (host === '') r.error('spec.host', 'is required');
  else {
    const err = checkWildcardDomain(host);
    if (err) r.error('spec.host', err);
  }
  const trafficPolicy = policy(r, spec?.trafficPolicy, 'spec.trafficPolicy');
  const names = new Set<string>();
  const subsets = r.list(spec?.subsets, 'spec.subsets', (v, p): Subset | undefined => {
    const f = r.object(v, p, ['name', 'labels', 'trafficPolicy']);
    if (f === undefined) {
      r.error(p, 'must not be null');
      return undefined;
    }
    const name = r.string(f.name, `${p}.name`);
    if (name === '') r.error(`${p}.name`, 'is required');
    else if (!isDns1123Label(name))
      r.error(`${p}.name`, `"${name}" is not a valid subset name (a DNS label)`);
    else if (names.has(name)) r.error(`${p}.name`, `"${name}" is used by another subset`);
    names.add(name);
    return {
      name,
      labels: labels(r, f.labels, `${p}.labels`),
      trafficPolicy: policy(r, f.trafficPolicy, `${p}.trafficPolicy`),
    };
  });
  const ws = r.object(spec?.workloadSelector, 'spec.workloadSelector', ['matchLabels']);
  const workloadSelector = ws && labels(r, ws.matchLabels, 'spec.workloadSelector.matchLabels');
  if (workloadSelector !== undefined)
    r.warn(
      'spec.workloadSelector',
      'selects sidecar clients; waypoints and proxyless gRPC clients do not apply this DestinationRule',
    );
  return {
    ...meta,
    host,
    trafficPolicy,
    subsets,
    exportTo: r.stringList(spec?.exportTo, 'spec.exportTo'),
    workloadSelector,
  };
}

function policy(r: Reader, v: unknown, p: string): TrafficPolicy | undefined {
  const f = r.object(v, p, TRAFFIC_POLICY_FIELDS);
  if (f === undefined) return undefined;
  if (TRAFFIC_POLICY_FIELDS.every((k) => f[k] === undefined)) r.error(p, 'must set at least one field');
  if (f.tunnel !== undefined && f.proxyProtocol !== undefined)
    r.error(p, 'tunnel and proxyProtocol cannot be used together');
  const sections = policySections(r, f, p);
  const seen = new Set<number>();
  const portLevelSettings = r.list(f.portLevelSettings, `${p}.portLevelSettings`, (pv, pp) => {
    const pf = r.object(pv, pp, ['port', ...POLICY_SECTIONS]);
    if (pf === undefined) {
      r.error(pp, 'must not be null');
      return undefined;
    }
    const portFields = r.object(pf.port, `${pp}.port`, ['number']);
    const port = portFields && r.optionalInteger(portFields.number, `${pp}.port.number`, 1, 65535);
    if (port === undefined) {
      r.error(`${pp}.port`, 'a port number is required');
      return undefined;
    }
    if (seen.has(port)) r.warn(`${pp}.port`, `port ${port} is listed twice; the first entry applies`);
    seen.add(port);
    if (POLICY_SECTIONS.every((k) => pf[k] === undefined)) r.error(pp, 'must set at least one field');
    return { port, ...policySections(r, pf, pp) } satisfies PortTrafficPolicy;
  });
  if (f.tunnel !== undefined) {
    r.object(f.tunnel, `${p}.tunnel`, ['protocol', 'targetHost', 'targetPort']);
    r.warn(`${p}.tunnel`, 'is not applied by Ambit yet');
  }
  if (f.proxyProtocol !== undefined) {
    r.object(f.proxyProtocol, `${p}.proxyProtocol`, ['version']);
    r.warn(`${p}.proxyProtocol`, 'is not applied by Ambit yet');
  }
  return { ...sections, portLevelSettings, retryBudget: retryBudget(r, f.retryBudget, `${p}.retryBudget`) };
}

function policySections(r: Reader, f: Record<string, unknown>, p: string) {
  return {
    loadBalancer: loadBalancer(r, f.loadBalancer, `${p}.loadBalancer`, f.outlierDetection !== undefined),
    connectionPool: connectionPool(r, f.connectionPool, `${p}.connectionPool`),
    outlierDetection: outlierDetection(r, f.outlierDetection, `${p}.outlierDetection`),
    tls: clientTls(r, f.tls, `${p}.tls`),
  };
}

const SIMPLE_LB = [
  'UNSPECIFIED',
  'LEAST_CONN',
  'RANDOM',
  'PASSTHROUGH',
  'ROUND_ROBIN',
  'LEAST_REQUEST',
] as const;

function loadBalancer(r: Reader, v: unknown, p: string, hasOutlier: boolean): LoadBalancer | undefined {
  const f = r.object(v, p, [
    'simple',
    'consistentHash',
    'localityLbSetting',
    'zoneAwareLbSetting',
    'warmupDurationSecs',
    'warmup',
  ]);
  if (f === undefined) return undefined;
  if (f.simple !== undefined && f.consistentHash !== undefined)
    r.error(p, 'simple and consistentHash cannot be used together');
  let simple: SimpleLb | undefined = r.enumValue(f.simple, `${p}.simple`, SIMPLE_LB);
  if (simple === 'LEAST_CONN') r.warn(`${p}.simple`, 'LEAST_CONN is deprecated; use LEAST_REQUEST');
  if (simple === 'PASSTHROUGH') {
    r.warn(`${p}.simple`, 'PASSTHROUGH is not supported by Ambit; the default (LEAST_REQUEST) applies');
    simple = 'UNSPECIFIED';
  }
  const consistentHash =
    f.consistentHash === undefined ? undefined : consistentHashOf(r, f.consistentHash, `${p}.consistentHash`);
  if (f.localityLbSetting !== undefined && f.zoneAwareLbSetting !== undefined)
    r.error(p, 'localityLbSetting and zoneAwareLbSetting cannot be used together');
  if (f.localityLbSetting !== undefined) {
    r.object(f.localityLbSetting, `${p}.localityLbSetting`, [
      'distribute',
      'failover',
      'failoverPriority',
      'enabled',
    ]);
    if (!hasOutlier)
      r.warn(`${p}.localityLbSetting`, 'locality failover only works together with outlierDetection');
    r.warn(`${p}.localityLbSetting`, 'is not applied by Ambit yet (endpoints carry no locality)');
  }
  if (f.zoneAwareLbSetting !== undefined)
    r.warn(`${p}.zoneAwareLbSetting`, 'is not supported in ambient mode');
  if (f.warmupDurationSecs !== undefined && f.warmup !== undefined)
    r.error(p, 'warmupDurationSecs and warmup cannot be used together');
  if (f.warmupDurationSecs !== undefined) r.duration(f.warmupDurationSecs, `${p}.warmupDurationSecs`, true);
  const warm = r.object(f.warmup, `${p}.warmup`, ['duration', 'minimumPercent', 'aggression']);
  if (warm !== undefined) {
    if (warm.duration === undefined) r.error(`${p}.warmup.duration`, 'is required');
    r.duration(warm.duration, `${p}.warmup.duration`, true);
    const min = r.number(warm.minimumPercent, `${p}.warmup.minimumPercent`);
    if (min !== undefined && (min < 0 || min > 100)) r.error(`${p}.warmup.minimumPercent`, 'must be 0..100');
    const aggression = r.number(warm.aggression, `${p}.warmup.aggression`);
    if (aggression !== undefined && aggression <= 0)
      r.error(`${p}.warmup.aggression`, 'must be greater than 0');
  }
  if (f.warmup !== undefined || f.warmupDurationSecs !== undefined)
    r.warn(p, 'warmup (slow start) is not applied by Ambit yet');
  return { simple, consistentHash };
}

function consistentHashOf(r: Reader, v: unknown, p: string): ConsistentHash | undefined {
  const f =
    r.object(v, p, [
      'httpHeaderName',
      'httpCookie',
      'useSourceIp',
      'httpQueryParameterName',
      'ringHash',
      'maglev',
      'minimumRingSize',
    ]) ?? {};
  const keys = (['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName'] as const).filter(
    (k) => f[k] !== undefined && f[k] !== false,
  );
  if (keys.length !== 1) {
    r.error(
      p,
      keys.length === 0
        ? 'exactly one hash key is required: httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName'
        : `exactly one hash key may be set (found ${keys.join(', ')})`,
    );
    return undefined;
  }
  let key: HashKey | undefined;
  switch (keys[0]) {
    case 'httpHeaderName': {
      const name = r.string(f.httpHeaderName, `${p}.httpHeaderName`);
      if (name === '') r.error(`${p}.httpHeaderName`, 'must not be empty');
      key = { kind: 'header', name };
      break;
    }
    case 'httpCookie': {
      const c = r.object(f.httpCookie, `${p}.httpCookie`, ['name', 'path', 'ttl', 'attributes']) ?? {};
      const name = r.string(c.name, `${p}.httpCookie.name`);
      if (name === '') r.error(`${p}.httpCookie.name`, 'is required');
      const seen = new Set<string>();
      const attributes = r.list(c.attributes, `${p}.httpCookie.attributes`, (a, ap) => {
        const af = r.object(a, ap, ['name', 'value']) ?? {};
        const an = r.string(af.name, `${ap}.name`);
        if (an === '') r.error(`${ap}.name`, 'is required');
        else if (seen.has(an)) r.error(`${ap}.name`, `"${an}" is listed twice`);
        seen.add(an);
        return { name: an, value: r.string(af.value, `${ap}.value`) };
      });
      key = {
        kind: 'cookie',
        name,
        path: r.string(c.path, `${p}.httpCookie.path`),
        ttl: r.duration(c.ttl, `${p}.httpCookie.ttl`, false),
        attributes,
      };
      break;
    }
    case 'useSourceIp':
      r.boolean(f.useSourceIp, `${p}.useSourceIp`);
      key = { kind: 'sourceIp' };
      break;
    default: {
      const name = r.string(f.httpQueryParameterName, `${p}.httpQueryParameterName`);
      if (name === '') r.error(`${p}.httpQueryParameterName`, 'must not be empty');
      key = { kind: 'queryParameter', name };
    }
  }
  if (f.ringHash !== undefined && f.maglev !== undefined)
    r.error(p, 'ringHash and maglev cannot be used together');
  const ring = r.object(f.ringHash, `${p}.ringHash`, ['minimumRingSize']);
  const ringHash = ring && {
    minimumRingSize: r.uint64(ring.minimumRingSize, `${p}.ringHash.minimumRingSize`),
  };
  const mag = r.object(f.maglev, `${p}.maglev`, ['tableSize']);
  const maglev = mag && { tableSize: r.uint64(mag.tableSize, `${p}.maglev.tableSize`) };
  if (maglev) {
    if (maglev.tableSize === 0) r.error(`${p}.maglev.tableSize`, 'is required for maglev');
    else if (maglev.tableSize >= 5000011) r.error(`${p}.maglev.tableSize`, 'must be less than 5000011');
    else if (!isPrime(maglev.tableSize)) r.error(`${p}.maglev.tableSize`, 'must be a prime number');
  }
  const minimumRingSize = r.uint64(f.minimumRingSize, `${p}.minimumRingSize`);
  if (minimumRingSize !== 0) {
    r.warn(`${p}.minimumRingSize`, 'is deprecated; use ringHash.minimumRingSize');
    if (ringHash || maglev) r.error(p, 'minimumRingSize cannot be used with ringHash or maglev');
  }
  return { key, ringHash, maglev, minimumRingSize };
}

/** Envoy's (and Istio's) primality test for Maglev table sizes. */
function isPrime(x: number): boolean {
  if (x !== 0 && x < 4) return true;
  if (x % 2 === 0) return false;
  for (let f = 3; f * f <= x; f += 2) if (x % f === 0) return false;
  return true;
}

function connectionPool(r: Reader, v: unknown, p: string): ConnectionPool | undefined {
  const f = r.object(v, p, ['tcp', 'http']);
  if (f === undefined) return undefined;
  if (f.tcp === undefined && f.http === undefined) r.error(p, 'must set tcp or http');
  const nonNegative = (x: unknown, xp: string) =>
    r.optionalInteger(x, xp, 0, 2 ** 31 - 1, 'must not be negative');
  let tcp: TcpSettings | undefined;
  const t = r.object(f.tcp, `${p}.tcp`, [
    'maxConnections',
    'connectTimeout',
    'tcpKeepalive',
    'maxConnectionDuration',
    'idleTimeout',
  ]);
  if (t !== undefined) {
    const tp = `${p}.tcp`;
    const ka = r.object(t.tcpKeepalive, `${tp}.tcpKeepalive`, ['probes', 'time', 'interval']);
    tcp = {
      maxConnections: nonNegative(t.maxConnections, `${tp}.maxConnections`),
      connectTimeout: r.duration(t.connectTimeout, `${tp}.connectTimeout`, true),
      tcpKeepalive: ka && {
        probes: r.optionalInteger(ka.probes, `${tp}.tcpKeepalive.probes`, 0, 2 ** 32 - 1),
        time: r.duration(ka.time, `${tp}.tcpKeepalive.time`, true),
        interval: r.duration(ka.interval, `${tp}.tcpKeepalive.interval`, true),
      },
      maxConnectionDuration: r.duration(t.maxConnectionDuration, `${tp}.maxConnectionDuration`, true),
      // 0s disables the idle timeout, so it is allowed here (Istio's exception).
      idleTimeout: r.duration(t.idleTimeout, `${tp}.idleTimeout`, 'zero-allowed'),
    };
  }
  let http: HttpSettings | undefined;
  const h = r.object(f.http, `${p}.http`, [
    'http1MaxPendingRequests',
    'http2MaxRequests',
    'maxRequestsPerConnection',
    'maxRetries',
    'idleTimeout',
    'h2UpgradePolicy',
    'useClientProtocol',
    'maxConcurrentStreams',
    'http2KeepAlive',
  ]);
  if (h !== undefined) {
    const hp = `${p}.http`;
    const ka = r.object(h.http2KeepAlive, `${hp}.http2KeepAlive`, ['interval', 'timeout']);
    let http2KeepAlive: HttpSettings['http2KeepAlive'];
    if (ka !== undefined) {
      const interval = r.duration(ka.interval, `${hp}.http2KeepAlive.interval`, true);
      const timeout = r.duration(ka.timeout, `${hp}.http2KeepAlive.timeout`, true);
      if (ka.interval === undefined) r.error(`${hp}.http2KeepAlive.interval`, 'is required');
      if (ka.timeout === undefined) r.error(`${hp}.http2KeepAlive.timeout`, 'is required');
      if (interval && timeout) http2KeepAlive = { interval, timeout };
    }
    const h2UpgradePolicy =
      r.enumValue(h.h2UpgradePolicy, `${hp}.h2UpgradePolicy`, [
        'DEFAULT',
        'DO_NOT_UPGRADE',
        'UPGRADE',
      ] as const) ?? 'DEFAULT';
    const useClientProtocol = r.boolean(h.useClientProtocol, `${hp}.useClientProtocol`) ?? false;
    if (h2UpgradePolicy === 'UPGRADE' && useClientProtocol)
      r.error(hp, 'useClientProtocol cannot be true when h2UpgradePolicy is UPGRADE');
    http = {
      http1MaxPendingRequests: nonNegative(h.http1MaxPendingRequests, `${hp}.http1MaxPendingRequests`),
      http2MaxRequests: nonNegative(h.http2MaxRequests, `${hp}.http2MaxRequests`),
      maxRequestsPerConnection: nonNegative(h.maxRequestsPerConnection, `${hp}.maxRequestsPerConnection`),
      maxRetries: nonNegative(h.maxRetries, `${hp}.maxRetries`),
      idleTimeout: r.duration(h.idleTimeout, `${hp}.idleTimeout`, true),
      h2UpgradePolicy,
      useClientProtocol,
      maxConcurrentStreams: nonNegative(h.maxConcurrentStreams, `${hp}.maxConcurrentStreams`),
      http2KeepAlive,
    };
  }
  return { tcp, http };
}

function outlierDetection(r: Reader, v: unknown, p: string): OutlierDetection | undefined {
  const f = r.object(v, p, [
    'consecutiveErrors',
    'splitExternalLocalOriginErrors',
    'consecutiveLocalOriginFailures',
    'consecutiveGatewayErrors',
    'consecutive5xxErrors',
    'interval',
    'baseEjectionTime',
    'maxEjectionPercent',
    'minHealthPercent',
    'outlierDetectionHttpErrorCodes',
  ]);
  if (f === undefined) return undefined;
  const u32 = (x: unknown, xp: string) => r.optionalInteger(x, xp, 0, 2 ** 32 - 1, 'must not be negative');
  if (f.consecutiveErrors !== undefined) {
    u32(f.consecutiveErrors, `${p}.consecutiveErrors`);
    r.warn(
      `${p}.consecutiveErrors`,
      'is deprecated and ignored; use consecutive5xxErrors or consecutiveGatewayErrors',
    );
  }
  const split = r.boolean(f.splitExternalLocalOriginErrors, `${p}.splitExternalLocalOriginErrors`) ?? false;
  const localOrigin = u32(f.consecutiveLocalOriginFailures, `${p}.consecutiveLocalOriginFailures`);
  if (!split && (localOrigin ?? 0) > 0)
    r.error(`${p}.consecutiveLocalOriginFailures`, 'needs splitExternalLocalOriginErrors: true');
  const pct = (x: unknown, xp: string) => r.optionalInteger(x, xp, 0, 100, 'must be 0..100') ?? 0;
  const codes = r.list(f.outlierDetectionHttpErrorCodes, `${p}.outlierDetectionHttpErrorCodes`, (c, cp) =>
    r.optionalInteger(c, cp, 100, 599, 'must be an HTTP status code (100..599)'),
  );
  if (codes.length > 0) r.warn(`${p}.outlierDetectionHttpErrorCodes`, 'is not applied by Ambit yet');
  return {
    consecutive5xxErrors: u32(f.consecutive5xxErrors, `${p}.consecutive5xxErrors`),
    consecutiveGatewayErrors: u32(f.consecutiveGatewayErrors, `${p}.consecutiveGatewayErrors`),
    splitExternalLocalOriginErrors: split,
    consecutiveLocalOriginFailures: localOrigin,
    interval: r.duration(f.interval, `${p}.interval`, true),
    baseEjectionTime: r.duration(f.baseEjectionTime, `${p}.baseEjectionTime`, true),
    maxEjectionPercent: pct(f.maxEjectionPercent, `${p}.maxEjectionPercent`),
    minHealthPercent: pct(f.minHealthPercent, `${p}.minHealthPercent`),
  };
}

const TLS_FIELDS = [
  'mode',
  'clientCertificate',
  'privateKey',
  'caCertificates',
  'credentialName',
  'subjectAltNames',
  'sni',
  'insecureSkipVerify',
  'caCrl',
];

/**
 * DestinationRule `tls` (istio/api destination_rule.proto ClientTLSSettings; istiod's validation and
 * cluster_tls.go). SIMPLE and MUTUAL originate TLS from the waypoint; ISTIO_MUTUAL is what HBONE
 * already does between mesh workloads; DISABLE sends what the client sent.
 */
function clientTls(r: Reader, v: unknown, p: string): ClientTls | undefined {
  const f = r.object(v, p, TLS_FIELDS);
  if (f === undefined) return undefined;
  const mode =
    r.enumValue(f.mode, `${p}.mode`, ['DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL'] as const) ?? 'DISABLE';
  const others = TLS_FIELDS.filter((k) => k !== 'mode' && f[k] !== undefined);
  if (mode === 'ISTIO_MUTUAL' && others.length > 0)
    r.error(p, `ISTIO_MUTUAL takes no other fields (found ${others.join(', ')})`);
  const text = (k: string) => r.string(f[k], `${p}.${k}`) || undefined;
  const tls: ClientTls = {
    mode,
    clientCertificate: text('clientCertificate'),
    privateKey: text('privateKey'),
    caCertificates: text('caCertificates'),
    caCrl: text('caCrl'),
    subjectAltNames: r.stringList(f.subjectAltNames, `${p}.subjectAltNames`),
    sni: text('sni'),
    insecureSkipVerify: r.boolean(f.insecureSkipVerify, `${p}.insecureSkipVerify`) ?? false,
  };
  const credentialName = text('credentialName');
  if (credentialName && (tls.clientCertificate || tls.privateKey || tls.caCertificates))
    r.error(p, 'credentialName cannot be used with clientCertificate, privateKey or caCertificates');
  if (mode === 'MUTUAL' && !credentialName && (!tls.clientCertificate || !tls.privateKey))
    r.error(p, 'MUTUAL needs credentialName, or clientCertificate and privateKey');
  if (credentialName && mode === 'MUTUAL')
    r.error(
      `${p}.credentialName`,
      "is not supported on Ambit's waypoints (Istio's read the Secret over SDS); mount the certificate and give clientCertificate and privateKey",
    );
  else if (credentialName && mode === 'SIMPLE')
    r.warn(
      `${p}.credentialName`,
      "is not read by Ambit's waypoints (Istio's read the Secret over SDS); the server is verified against the system roots",
    );
  if (tls.sni !== undefined && tls.sni.length > 255) r.error(`${p}.sni`, 'must be at most 255 bytes');
  return tls;
}

function retryBudget(r: Reader, v: unknown, p: string): RetryBudget | undefined {
  const f = r.object(v, p, ['percent', 'minRetryConcurrency', 'budgetInterval']);
  if (f === undefined) return undefined;
  const percentValue = r.number(f.percent, `${p}.percent`);
  if (percentValue !== undefined && (percentValue < 0 || percentValue > 100))
    r.error(`${p}.percent`, 'must be 0..100');
  return {
    percent: percentValue,
    minRetryConcurrency:
      r.optionalInteger(f.minRetryConcurrency, `${p}.minRetryConcurrency`, 0, 2 ** 32 - 1) ?? 0,
    budgetInterval: r.duration(f.budgetInterval, `${p}.budgetInterval`, true),
  };
}

// ---------- the reader ----------

/** A plain object (not a list, date or byte array). */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return (
    typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date) && !ArrayBuffer.isView(v)
  );
}

function isIpAddress(v: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(v) || (v.includes(':') && /^[0-9a-fA-F:.]+$/.test(v));
}

function isCidr(v: string): boolean {
  const [ip, len, ...rest] = v.split('/');
  if (rest.length > 0 || ip === undefined || !isIpAddress(ip)) return false;
  if (len === undefined) return true;
  const n = /^\d+$/.test(len) ? Number(len) : NaN;
  return n >= 0 && n <= (ip.includes(':') ? 128 : 32);
}

/** `path.key`, or `path["key"]` for a key that is not a plain identifier (`x-user`, `a.b/c`). */
export function joinKey(path: string, key: string): string {
  return /^[A-Za-z_][A-Za-z0-9_-]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

type Severity = L7Problem['severity'];

/** Reads plain data, collecting every problem with its path instead of stopping at the first. */
export class Reader {
  /** Every problem found so far, in the order found. */
  readonly problems: { severity: Severity; path: string; message: string }[] = [];

  /** Records an error: the object will not be applied. */
  error(path: string, message: string): void {
    this.problems.push({ severity: 'error', path, message });
  }

  /** Records a warning: the object is applied, with a consequence the user must know about. */
  warn(path: string, message: string): void {
    this.problems.push({ severity: 'warning', path, message });
  }

  /** Whether any error was recorded. */
  hasErrors(): boolean {
    return this.problems.some((p) => p.severity === 'error');
  }

  /** An object (absent or null: undefined); `known` lists its fields, any other is an error. */
  object(
    v: unknown,
    path: string,
    known: readonly string[] | undefined,
  ): Record<string, unknown> | undefined {
    if (v === undefined || v === null) return undefined;
    if (!isRecord(v)) {
      this.error(path || '(object)', 'must be an object');
      return undefined;
    }
    if (known) {
      for (const k of Object.keys(v))
        if (!known.includes(k)) this.error(joinKey(path, k), `unknown field (known: ${known.join(', ')})`);
    }
    return v;
  }

  /** A string; absent or null is ''. */
  string(v: unknown, path: string): string {
    if (v === undefined || v === null) return '';
    if (typeof v !== 'string') {
      this.error(path, 'must be a string');
      return '';
    }
    return v;
  }

  /** A boolean; absent or null is undefined. */
  boolean(v: unknown, path: string): boolean | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'boolean') {
      this.error(path, 'must be true or false');
      return undefined;
    }
    return v;
  }

  /** A finite number (or a numeric string); absent or null is undefined. */
  number(v: unknown, path: string): number | undefined {
    if (v === undefined || v === null) return undefined;
    const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isFinite(n)) {
      this.error(path, 'must be a number');
      return undefined;
    }
    return n;
  }

  /** An integer in [min, max]; a string of digits is accepted (protobuf JSON writes 64-bit ints so). */
  optionalInteger(
    v: unknown,
    path: string,
    min: number,
    max: number,
    outOfRange?: string,
  ): number | undefined {
    if (v === undefined || v === null) return undefined;
    const n = typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n)) {
      this.error(path, 'must be an integer');
      return undefined;
    }
    if (n < min || n > max) {
      this.error(path, outOfRange ? `${n} ${outOfRange}` : `${n} must be between ${min} and ${max}`);
      return undefined;
    }
    return n;
  }

  /** A uint64 that fits a JavaScript number exactly; 0 when absent. */
  uint64(v: unknown, path: string): number {
    return this.optionalInteger(v, path, 0, Number.MAX_SAFE_INTEGER, 'must not be negative') ?? 0;
  }

  /** One of `values`; absent or null is undefined. */
  enumValue<T extends string>(v: unknown, path: string, values: readonly T[]): T | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
      this.error(path, `${JSON.stringify(v)} must be one of ${values.join(', ')}`);
      return undefined;
    }
    return v as T;
  }

  /**
   * A duration string. `check`: true applies Istio's ValidateDuration (at least 1ms, whole ms);
   * 'zero-allowed' the same but also accepts 0; false only refuses negative durations.
   */
  duration(v: unknown, path: string, check: boolean | 'zero-allowed'): Duration | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') {
      this.error(path, 'must be a duration string (e.g. 500ms, 2s, 1h30m)');
      return undefined;
    }
    const nanos = parseDurationNanos(v);
    if (typeof nanos === 'string') {
      this.error(path, nanos);
      return undefined;
    }
    if (nanos < 0n) {
      this.error(path, `"${v}" must not be negative`);
      return undefined;
    }
    if (check !== false && !(check === 'zero-allowed' && nanos === 0n)) {
      const err = checkDuration(nanos);
      if (err) {
        this.error(path, `"${v}" ${err}`);
        return undefined;
      }
    }
    return nanosToDuration(nanos);
  }

  /** A list, each item read by `each` (an undefined result is left out); absent or null is []. */
  list<T>(v: unknown, path: string, each: (item: unknown, path: string) => T | undefined): T[] {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) {
      this.error(path, 'must be a list');
      return [];
    }
    const out: T[] = [];
    v.forEach((item, i) => {
      const x = each(item, `${path}[${i}]`);
      if (x !== undefined) out.push(x);
    });
    return out;
  }

  /** A list of strings; absent or null is []. */
  stringList(v: unknown, path: string): string[] {
    return this.list(v, path, (item, p) => this.string(item, p));
  }

  /** A map's entries in the order written, each value read by `each`. */
  entries<T>(
    v: unknown,
    path: string,
    each: (value: unknown, path: string, key: string) => T,
  ): [string, T][] {
    const obj = this.object(v, path, undefined);
    if (obj === undefined) return [];
    return Object.entries(obj).map(([k, value]) => [k, each(value, joinKey(path, k), k)]);
  }
}
