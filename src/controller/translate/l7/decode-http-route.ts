/**
 * Raw Kubernetes objects (parsed YAML or the API server's JSON) → Gateway API HTTPRoute
 * (http-route-types.ts), validated as the API server would (the CRD's schema and CEL rules of
 * gateway-api v1.x) for the fields in istio-api.md §1.5, with its defaults applied. Pure.
 *
 * As for VirtualService (decode.ts): every problem carries its field path, an object with any error
 * is not returned, and unknown fields inside `spec` are errors. References are checked here only
 * for their shape: whether a parent or backend exists, lives in an allowed namespace, or is of a
 * supported kind is the translation's to say (a bad backend costs only its share of the traffic).
 */
import { decodeObject, type Decoded, type Meta, type Reader } from './decode.ts';
import {
  CORE_GROUP,
  GATEWAY_GROUP,
  type GatewayBackendRef,
  type GatewayHeaderModifier,
  type GatewayHttpRoute,
  type GatewayMirror,
  type GatewayObjectRef,
  type GatewayParentRef,
  type GatewayPathModifier,
  type GatewayRedirect,
  type GatewayRouteMatch,
  type GatewayRouteRule,
  type GatewayUrlRewrite,
  type GatewayValueMatch,
  type PathMatchType,
} from './http-route-types.ts';
import type { Duration } from './types.ts';
import { checkHeaderValue, checkRe2, nanosToDuration, parseDurationNanos } from './values.ts';

/** The API versions HTTPRoute is served under. */
export const GATEWAY_API_VERSIONS = ['gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1'];

/** True for an object this module decodes (by apiVersion and kind). */
export function isHttpRouteObject(obj: unknown): boolean {
  if (typeof obj !== 'object' || obj === null) return false;
  const o = obj as { apiVersion?: unknown; kind?: unknown };
  return (
    typeof o.apiVersion === 'string' && GATEWAY_API_VERSIONS.includes(o.apiVersion) && o.kind === 'HTTPRoute'
  );
}

export function decodeHttpRoute(obj: unknown): Decoded<GatewayHttpRoute> {
  return decodeObject(obj, 'HTTPRoute', (r, spec, meta) => httpRoute(r, spec, meta), GATEWAY_API_VERSIONS);
}

// The CRD's limits (maxItems), so a route the API server would refuse is refused here too.
const MAX_PARENT_REFS = 32;
const MAX_HOSTNAMES = 16;
const MAX_RULES = 16;
const MAX_MATCHES = 64;
const MAX_FILTERS = 16;
const MAX_BACKEND_REFS = 16;
const MAX_HEADER_MATCHES = 16;
const MAX_HEADER_OPERATIONS = 16;
const MAX_WEIGHT = 1_000_000;
const MAX_HEADER_VALUE_LENGTH = 4096;

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];
const REDIRECT_CODES = [301, 302, 303, 307, 308];
const DEFAULT_REDIRECT_CODE = 302;
/** Gateway API's HTTPHeaderName (also used for query parameter names). */
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;
/** Gateway API's Duration: up to four `<number><unit>` parts (`1h30m`, `500ms`). */
const GATEWAY_DURATION = /^([0-9]{1,5}(h|m|s|ms)){1,4}$/;
const PRECISE_HOSTNAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const HOSTNAME = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const OBJECT_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const SECTION_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

const SPEC_FIELDS = ['parentRefs', 'hostnames', 'rules'];
const RULE_FIELDS = ['name', 'matches', 'filters', 'backendRefs', 'timeouts', 'retry', 'sessionPersistence'];
const FILTER_TYPES = {
  RequestHeaderModifier: 'requestHeaderModifier',
  ResponseHeaderModifier: 'responseHeaderModifier',
  RequestRedirect: 'requestRedirect',
  URLRewrite: 'urlRewrite',
  RequestMirror: 'requestMirror',
  ExtensionRef: 'extensionRef',
  CORS: 'cors',
  ExternalAuth: 'externalAuth',
} as const;
type FilterType = keyof typeof FILTER_TYPES;
const FILTER_FIELDS = ['type', ...Object.values(FILTER_TYPES)];

function httpRoute(r: Reader, specValue: unknown, meta: Meta): GatewayHttpRoute {
  const spec = r.object(specValue, 'spec', SPEC_FIELDS);
  if (spec === undefined) r.error('spec', 'is required');
  const parentRefs = limited(r, spec?.parentRefs, 'spec.parentRefs', MAX_PARENT_REFS, (v, p) =>
    parentRef(r, v, p, meta.namespace),
  );
  const hostnames = limited(r, spec?.hostnames, 'spec.hostnames', MAX_HOSTNAMES, (v, p) => {
    const h = r.string(v, p);
    if (h.length > 253 || !HOSTNAME.test(h))
      r.error(p, `"${h}" is not a host name (lower-case DNS labels; "*." only as the first label)`);
    return h;
  });
  let rules = limited(r, spec?.rules, 'spec.rules', MAX_RULES, (v, p) => routeRule(r, v, p, meta.namespace));
  // The CRD's default: one rule matching every path, with no backend (so answered 500).
  if (spec !== undefined && spec.rules === undefined) rules = [defaultRule()];
  const names = new Map<string, number>();
  rules.forEach((rule, i) => {
    if (!rule.name) return;
    const first = names.get(rule.name);
    if (first !== undefined)
      r.error(`spec.rules[${i}].name`, `"${rule.name}" is already the name of spec.rules[${first}]`);
    else names.set(rule.name, i);
  });
  return { ...meta, parentRefs, hostnames, rules };
}

function defaultRule(): GatewayRouteRule {
  return {
    name: '',
    matches: [DEFAULT_MATCH],
    requestHeaders: undefined,
    responseHeaders: undefined,
    redirect: undefined,
    rewrite: undefined,
    mirrors: [],
    backendRefs: [],
    requestTimeout: undefined,
    backendRequestTimeout: undefined,
  };
}

const DEFAULT_MATCH: GatewayRouteMatch = {
  path: { type: 'PathPrefix', value: '/' },
  headers: [],
  queryParams: [],
  method: undefined,
};

function limited<T>(
  r: Reader,
  v: unknown,
  p: string,
  max: number,
  each: (item: unknown, path: string, index: number) => T | undefined,
): T[] {
  if (Array.isArray(v) && v.length > max) r.error(p, `has ${v.length} entries; at most ${max} are allowed`);
  let index = -1;
  return r.list(v, p, (item, ip) => {
    index++;
    if (item === null || item === undefined) {
      r.error(ip, 'must not be null');
      return undefined;
    }
    return each(item, ip, index);
  });
}

function parentRef(r: Reader, v: unknown, p: string, routeNamespace: string): GatewayParentRef | undefined {
  const f = r.object(v, p, ['group', 'kind', 'namespace', 'name', 'sectionName', 'port']);
  if (f === undefined) return undefined;
  const name = objectName(r, f.name, `${p}.name`);
  const sectionName = r.string(f.sectionName, `${p}.sectionName`);
  if (sectionName && (sectionName.length > 253 || !SECTION_NAME.test(sectionName)))
    r.error(`${p}.sectionName`, `"${sectionName}" is not a section name (a DNS label)`);
  return {
    group: f.group === undefined ? GATEWAY_GROUP : group(r, f.group, `${p}.group`),
    kind: f.kind === undefined ? 'Gateway' : kind(r, f.kind, `${p}.kind`),
    namespace: namespaceOf(r, f.namespace, `${p}.namespace`, routeNamespace),
    name,
    sectionName,
    port: r.optionalInteger(f.port, `${p}.port`, 1, 65535),
  };
}

function group(r: Reader, v: unknown, p: string): string {
  const g = r.string(v, p);
  if (g.length > 253 || !(g === '' || PRECISE_HOSTNAME.test(g))) r.error(p, `"${g}" is not an API group`);
  return g;
}

function kind(r: Reader, v: unknown, p: string): string {
  const k = r.string(v, p);
  if (!/^[a-zA-Z]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?$/.test(k)) r.error(p, `"${k}" is not a kind`);
  return k;
}

function objectName(r: Reader, v: unknown, p: string): string {
  const name = r.string(v, p);
  if (name === '') r.error(p, 'is required');
  else if (name.length > 253 || !OBJECT_NAME.test(name))
    r.error(p, `"${name}" is not an object name (lower-case letters, digits, "-" and ".")`);
  return name;
}

function namespaceOf(r: Reader, v: unknown, p: string, routeNamespace: string): string {
  if (v === undefined || v === null) return routeNamespace;
  const ns = r.string(v, p);
  if (ns.length > 63 || !SECTION_NAME.test(ns)) r.error(p, `"${ns}" is not a namespace name`);
  return ns;
}

function routeRule(r: Reader, v: unknown, p: string, routeNamespace: string): GatewayRouteRule | undefined {
  const f = r.object(v, p, RULE_FIELDS);
  if (f === undefined) return undefined;
  const name = r.string(f.name, `${p}.name`);
  if (name && (name.length > 253 || !SECTION_NAME.test(name)))
    r.error(`${p}.name`, `"${name}" is not a rule name (a DNS label)`);
  let matches = limited(r, f.matches, `${p}.matches`, MAX_MATCHES, (m, mp) => routeMatch(r, m, mp));
  if (f.matches === undefined) matches = [DEFAULT_MATCH];

  const filters = readFilters(r, f.filters, `${p}.filters`, routeNamespace, 'rule');
  const backendRefs = limited(r, f.backendRefs, `${p}.backendRefs`, MAX_BACKEND_REFS, (b, bp) =>
    backendRef(r, b, bp, routeNamespace),
  );
  if (filters.redirect && backendRefs.length > 0)
    r.error(`${p}.backendRefs`, 'a rule with a RequestRedirect filter must not have backendRefs');
  if (filters.redirect && filters.rewrite)
    r.error(`${p}.filters`, 'RequestRedirect and URLRewrite cannot be used together');
  for (const [modifier, at] of [
    [filters.redirect?.path, filters.redirectPath],
    [filters.rewrite?.path, filters.rewritePath],
  ] as const) {
    if (modifier?.type !== 'ReplacePrefixMatch') continue;
    if (matches.length !== 1 || matches[0]!.path.type !== 'PathPrefix')
      r.error(at, 'ReplacePrefixMatch needs exactly one match, and that of path type PathPrefix');
  }

  const timeouts = r.object(f.timeouts, `${p}.timeouts`, ['request', 'backendRequest']);
  const requestTimeout = gatewayDuration(r, timeouts?.request, `${p}.timeouts.request`);
  const backendRequestTimeout = gatewayDuration(r, timeouts?.backendRequest, `${p}.timeouts.backendRequest`);
  if (
    requestTimeout &&
    backendRequestTimeout &&
    !isZero(requestTimeout) &&
    (isZero(backendRequestTimeout) || longer(backendRequestTimeout, requestTimeout))
  )
    r.error(`${p}.timeouts.backendRequest`, 'must not be longer than timeouts.request');
  if (f.retry !== undefined)
    r.warn(`${p}.retry`, 'is not applied by Ambit yet; the mesh default retry policy applies');
  if (f.sessionPersistence !== undefined)
    r.warn(`${p}.sessionPersistence`, 'is not applied by Ambit yet; requests are balanced as usual');

  return {
    name,
    matches,
    requestHeaders: filters.requestHeaders,
    responseHeaders: filters.responseHeaders,
    redirect: filters.redirect,
    rewrite: filters.rewrite,
    mirrors: filters.mirrors,
    backendRefs,
    requestTimeout,
    backendRequestTimeout,
  };
}

function isZero(d: Duration): boolean {
  return d.seconds === 0 && d.nanos === 0;
}

function longer(a: Duration, b: Duration): boolean {
  return a.seconds > b.seconds || (a.seconds === b.seconds && a.nanos > b.nanos);
}

function gatewayDuration(r: Reader, v: unknown, p: string): Duration | undefined {
  if (v === undefined || v === null) return undefined;
  const text = r.string(v, p);
  if (!GATEWAY_DURATION.test(text)) {
    r.error(p, `"${text}" is not a Gateway API duration (e.g. 500ms, 10s, 1h30m; no fractions)`);
    return undefined;
  }
  const nanos = parseDurationNanos(text);
  return typeof nanos === 'bigint' ? nanosToDuration(nanos) : undefined;
}

function routeMatch(r: Reader, v: unknown, p: string): GatewayRouteMatch | undefined {
  const f = r.object(v, p, ['path', 'headers', 'queryParams', 'method']);
  if (f === undefined) return undefined;
  const path = pathMatch(r, f.path, `${p}.path`);
  const headers = valueMatches(r, f.headers, `${p}.headers`, false);
  const queryParams = valueMatches(r, f.queryParams, `${p}.queryParams`, true);
  const method = f.method === undefined || f.method === null ? undefined : r.string(f.method, `${p}.method`);
  if (method !== undefined && !METHODS.includes(method))
    r.error(`${p}.method`, `"${method}" must be one of ${METHODS.join(', ')}`);
  return { path, headers, queryParams, method };
}

/** The CRD's path validation: absolute, no `//`, `/./`, `/../`, `%2f`, `#`, no trailing `/.` or `/..`. */
function pathMatch(r: Reader, v: unknown, p: string): GatewayRouteMatch['path'] {
  const f = r.object(v, p, ['type', 'value']);
  const type =
    r.enumValue<PathMatchType>(f?.type, `${p}.type`, ['Exact', 'PathPrefix', 'RegularExpression']) ??
    'PathPrefix';
  const value = f?.value === undefined || f.value === null ? '/' : r.string(f.value, `${p}.value`);
  const vp = `${p}.value`;
  if (value.length > 1024) r.error(vp, 'is too long (at most 1024 characters)');
  if (type === 'RegularExpression') {
    const err = checkRe2(value);
    if (err) r.error(vp, err);
  } else {
    if (!value.startsWith('/')) r.error(vp, `"${value}" must be an absolute path (start with "/")`);
    for (const bad of ['//', '/./', '/../', '%2f', '%2F', '#'])
      if (value.includes(bad)) r.error(vp, `"${value}" must not contain "${bad}"`);
    if (value.endsWith('/..') || value.endsWith('/.'))
      r.error(vp, `"${value}" must not end with "/." or "/.."`);
  }
  return { type, value };
}

function valueMatches(r: Reader, v: unknown, p: string, query: boolean): GatewayValueMatch[] {
  const seen = new Map<string, number>();
  return limited(r, v, p, MAX_HEADER_MATCHES, (item, ip, index): GatewayValueMatch | undefined => {
    const f = r.object(item, ip, ['type', 'name', 'value']);
    if (f === undefined) return undefined;
    const type = r.enumValue(f.type, `${ip}.type`, ['Exact', 'RegularExpression'] as const) ?? 'Exact';
    const name = r.string(f.name, `${ip}.name`);
    if (name === '') r.error(`${ip}.name`, 'is required');
    else if (name.length > 256 || !HEADER_NAME.test(name))
      r.error(`${ip}.name`, `"${name}" is not a valid ${query ? 'query parameter' : 'header'} name`);
    const value = r.string(f.value, `${ip}.value`);
    if (f.value === undefined) r.error(`${ip}.value`, 'is required');
    else if (value.length > MAX_HEADER_VALUE_LENGTH)
      r.error(`${ip}.value`, `is too long (at most ${MAX_HEADER_VALUE_LENGTH} characters)`);
    if (type === 'RegularExpression') {
      const err = checkRe2(value);
      if (err) r.error(`${ip}.value`, err);
    }
    // The list is a map keyed by name: header names compare case-insensitively, query names exactly.
    const key = query ? name : name.toLowerCase();
    const first = seen.get(key);
    if (first !== undefined) r.error(`${ip}.name`, `"${name}" is already matched by ${p}[${first}]`);
    else seen.set(key, index);
    return { type, name, value };
  });
}

// ---- filters ----

interface Filters {
  readonly requestHeaders: GatewayHeaderModifier | undefined;
  readonly responseHeaders: GatewayHeaderModifier | undefined;
  readonly redirect: GatewayRedirect | undefined;
  /** Path of the redirect's `path`, for problems about it. */
  readonly redirectPath: string;
  readonly rewrite: GatewayUrlRewrite | undefined;
  readonly rewritePath: string;
  readonly mirrors: readonly GatewayMirror[];
}

/**
 * A rule's (or, with `where: 'backend'`, a backend's) filters. Each type but RequestMirror may appear
 * once; a backend may only modify headers.
 */
function readFilters(
  r: Reader,
  v: unknown,
  p: string,
  routeNamespace: string,
  where: 'rule' | 'backend',
): Filters {
  let requestHeaders: GatewayHeaderModifier | undefined;
  let responseHeaders: GatewayHeaderModifier | undefined;
  let redirect: GatewayRedirect | undefined;
  let rewrite: GatewayUrlRewrite | undefined;
  let redirectPath = '';
  let rewritePath = '';
  const mirrors: GatewayMirror[] = [];
  const seen = new Map<FilterType, string>();
  limited(r, v, p, MAX_FILTERS, (item, fp) => {
    const f = r.object(item, fp, FILTER_FIELDS);
    if (f === undefined) return undefined;
    const type = r.enumValue(f.type, `${fp}.type`, Object.keys(FILTER_TYPES) as FilterType[]);
    if (f.type === undefined) r.error(`${fp}.type`, 'is required');
    if (type === undefined) return undefined;
    const field = FILTER_TYPES[type];
    for (const other of Object.values(FILTER_TYPES))
      if (other !== field && f[other] !== undefined)
        r.error(`${fp}.${other}`, `must not be set when type is ${type}`);
    const cp = `${fp}.${field}`;
    if (f[field] === undefined || f[field] === null) {
      r.error(cp, `is required when type is ${type}`);
      return undefined;
    }
    const first = seen.get(type);
    if (first !== undefined && type !== 'RequestMirror') r.error(`${fp}.type`, `${type} is already ${first}`);
    else seen.set(type, fp);
    if (where === 'backend' && type !== 'RequestHeaderModifier' && type !== 'ResponseHeaderModifier') {
      r.error(`${fp}.type`, `${type} is not supported on a backendRef (only header modifiers are)`);
      return undefined;
    }
    switch (type) {
      case 'RequestHeaderModifier':
        requestHeaders = headerModifier(r, f[field], cp, true);
        break;
      case 'ResponseHeaderModifier':
        responseHeaders = headerModifier(r, f[field], cp, false);
        break;
      case 'RequestRedirect':
        redirect = requestRedirect(r, f[field], cp);
        redirectPath = `${cp}.path`;
        break;
      case 'URLRewrite':
        rewrite = urlRewrite(r, f[field], cp);
        rewritePath = `${cp}.path`;
        break;
      case 'RequestMirror': {
        const m = requestMirror(r, f[field], cp, routeNamespace);
        if (m) mirrors.push(m);
        break;
      }
      default:
        r.error(`${fp}.type`, `${type} filters are not supported by Ambit`);
    }
    return undefined;
  });
  return { requestHeaders, responseHeaders, redirect, redirectPath, rewrite, rewritePath, mirrors };
}

function headerModifier(r: Reader, v: unknown, p: string, request: boolean): GatewayHeaderModifier {
  const f = r.object(v, p, ['set', 'add', 'remove']) ?? {};
  const named = new Map<string, string>();
  const checkName = (name: string, np: string, mayBeHost: boolean) => {
    if (name === '') r.error(np, 'is required');
    else if (name.length > 256 || !HEADER_NAME.test(name))
      r.error(np, `"${name}" is not a valid header name`);
    else if (name.toLowerCase() === 'host' && !mayBeHost)
      r.error(np, request ? 'the Host header cannot be removed' : 'the Host header cannot be changed here');
    const key = name.toLowerCase();
    const first = named.get(key);
    if (first !== undefined) r.error(np, `"${name}" is already changed by ${first}`);
    else named.set(key, np);
  };
  const pairs = (key: 'set' | 'add') =>
    limited(r, f[key], `${p}.${key}`, MAX_HEADER_OPERATIONS, (item, ip) => {
      const h = r.object(item, ip, ['name', 'value']);
      if (h === undefined) return undefined;
      const name = r.string(h.name, `${ip}.name`);
      checkName(name, `${ip}.name`, request);
      const value = r.string(h.value, `${ip}.value`);
      if (h.value === undefined) r.error(`${ip}.value`, 'is required');
      else if (value.length > MAX_HEADER_VALUE_LENGTH)
        r.error(`${ip}.value`, `is too long (at most ${MAX_HEADER_VALUE_LENGTH} characters)`);
      const err = checkHeaderValue(value);
      if (err) r.error(`${ip}.value`, err);
      return [name, value] as const;
    });
  const set = pairs('set');
  const add = pairs('add');
  const remove = limited(r, f.remove, `${p}.remove`, MAX_HEADER_OPERATIONS, (item, ip) => {
    const name = r.string(item, ip);
    checkName(name, ip, false);
    return name;
  });
  return { set, add, remove };
}

function pathModifier(r: Reader, v: unknown, p: string): GatewayPathModifier | undefined {
  const f = r.object(v, p, ['type', 'replaceFullPath', 'replacePrefixMatch']);
  if (f === undefined) return undefined;
  const type = r.enumValue(f.type, `${p}.type`, ['ReplaceFullPath', 'ReplacePrefixMatch'] as const);
  if (f.type === undefined) r.error(`${p}.type`, 'is required');
  if (type === undefined) return undefined;
  const field = type === 'ReplaceFullPath' ? 'replaceFullPath' : 'replacePrefixMatch';
  const other = type === 'ReplaceFullPath' ? 'replacePrefixMatch' : 'replaceFullPath';
  if (f[other] !== undefined) r.error(`${p}.${other}`, `must not be set when type is ${type}`);
  if (f[field] === undefined) r.error(`${p}.${field}`, `is required when type is ${type}`);
  const value = r.string(f[field], `${p}.${field}`);
  if (value.length > 1024) r.error(`${p}.${field}`, 'is too long (at most 1024 characters)');
  if (f[field] !== undefined && !value.startsWith('/'))
    r.error(`${p}.${field}`, `"${value}" must be an absolute path (start with "/")`);
  return { type, value };
}

function preciseHostname(r: Reader, v: unknown, p: string): string {
  const h = r.string(v, p);
  if (h !== '' && (h.length > 253 || !PRECISE_HOSTNAME.test(h)))
    r.error(p, `"${h}" is not a host name (lower-case DNS labels, no wildcard)`);
  return h;
}

function requestRedirect(r: Reader, v: unknown, p: string): GatewayRedirect {
  const f = r.object(v, p, ['scheme', 'hostname', 'path', 'port', 'statusCode']) ?? {};
  const scheme = r.string(f.scheme, `${p}.scheme`);
  if (scheme !== '' && scheme !== 'http' && scheme !== 'https')
    r.error(`${p}.scheme`, `"${scheme}" must be http or https`);
  const statusCode = r.optionalInteger(f.statusCode, `${p}.statusCode`, 0, 999) ?? DEFAULT_REDIRECT_CODE;
  if (!REDIRECT_CODES.includes(statusCode))
    r.error(`${p}.statusCode`, `${statusCode} must be one of ${REDIRECT_CODES.join(', ')}`);
  return {
    scheme,
    hostname: preciseHostname(r, f.hostname, `${p}.hostname`),
    path: pathModifier(r, f.path, `${p}.path`),
    port: r.optionalInteger(f.port, `${p}.port`, 1, 65535),
    statusCode,
  };
}

function urlRewrite(r: Reader, v: unknown, p: string): GatewayUrlRewrite {
  const f = r.object(v, p, ['hostname', 'path']) ?? {};
  return {
    hostname: preciseHostname(r, f.hostname, `${p}.hostname`),
    path: pathModifier(r, f.path, `${p}.path`),
  };
}

function requestMirror(r: Reader, v: unknown, p: string, routeNamespace: string): GatewayMirror | undefined {
  const f = r.object(v, p, ['backendRef', 'percent', 'fraction']) ?? {};
  if (f.backendRef === undefined) r.error(`${p}.backendRef`, 'is required');
  const ref = objectRef(r, f.backendRef, `${p}.backendRef`, routeNamespace);
  if (f.percent !== undefined && f.fraction !== undefined)
    r.error(p, 'percent and fraction cannot be used together');
  let percent = r.optionalInteger(f.percent, `${p}.percent`, 0, 100);
  const fraction = r.object(f.fraction, `${p}.fraction`, ['numerator', 'denominator']);
  if (fraction !== undefined) {
    const numerator = r.optionalInteger(fraction.numerator, `${p}.fraction.numerator`, 0, 2 ** 31 - 1);
    if (fraction.numerator === undefined) r.error(`${p}.fraction.numerator`, 'is required');
    const denominator =
      r.optionalInteger(fraction.denominator, `${p}.fraction.denominator`, 1, 2 ** 31 - 1) ?? 100;
    if (numerator !== undefined) {
      if (numerator > denominator) r.error(`${p}.fraction`, 'numerator must not be greater than denominator');
      else percent = (numerator / denominator) * 100;
    }
  }
  return ref && { path: p, backendRef: ref, percent };
}

function objectRef(r: Reader, v: unknown, p: string, routeNamespace: string): GatewayObjectRef | undefined {
  const f = r.object(v, p, ['group', 'kind', 'name', 'namespace', 'port']);
  if (f === undefined) return undefined;
  return refOf(r, f, p, routeNamespace);
}

function refOf(r: Reader, f: Record<string, unknown>, p: string, routeNamespace: string): GatewayObjectRef {
  const g = f.group === undefined ? CORE_GROUP : group(r, f.group, `${p}.group`);
  const k = f.kind === undefined ? 'Service' : kind(r, f.kind, `${p}.kind`);
  const port = r.optionalInteger(f.port, `${p}.port`, 1, 65535);
  // The CRD's CEL rule: "Must have port for Service reference".
  if (g === CORE_GROUP && k === 'Service' && f.port === undefined)
    r.error(`${p}.port`, 'is required for a Service');
  return {
    group: g,
    kind: k,
    name: objectName(r, f.name, `${p}.name`),
    namespace: namespaceOf(r, f.namespace, `${p}.namespace`, routeNamespace),
    port,
  };
}

function backendRef(r: Reader, v: unknown, p: string, routeNamespace: string): GatewayBackendRef | undefined {
  const f = r.object(v, p, ['group', 'kind', 'name', 'namespace', 'port', 'weight', 'filters']);
  if (f === undefined) return undefined;
  const ref = refOf(r, f, p, routeNamespace);
  const weight = r.optionalInteger(f.weight, `${p}.weight`, 0, MAX_WEIGHT) ?? 1;
  const filters = readFilters(r, f.filters, `${p}.filters`, routeNamespace, 'backend');
  return {
    ...ref,
    weight,
    requestHeaders: filters.requestHeaders,
    responseHeaders: filters.responseHeaders,
  };
}
