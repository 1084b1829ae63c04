/**
 * Small pure checks and conversions for Istio networking values, with Istio's rules
 * (pkg/config/validation): durations in Go syntax, RE2 regexes, host names, header names and values,
 * retryOn conditions, gRPC status names.
 */
import { translateRe2 } from '../../../core/xds/l7-regex.ts';
import type { Duration } from './types.ts';

const NANOS_PER_SECOND = 1_000_000_000n;
const UNIT_NANOS: Readonly<Record<string, bigint>> = {
  ns: 1n,
  us: 1_000n,
  µs: 1_000n,
  μs: 1_000n,
  ms: 1_000_000n,
  s: NANOS_PER_SECOND,
  m: 60n * NANOS_PER_SECOND,
  h: 3600n * NANOS_PER_SECOND,
};
const DURATION_PART = /(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)/y;

/**
 * A duration as Istio reads it (Go's time.ParseDuration: `1h30m`, `0.5s`, `300ms`, also protobuf
 * JSON's `1.5s`), in nanoseconds; a string (the reason) when it is not one.
 */
export function parseDurationNanos(text: string): bigint | string {
  let s = text.trim();
  let negative = false;
  if (s.startsWith('-') || s.startsWith('+')) {
    negative = s.startsWith('-');
    s = s.slice(1);
  }
  if (s === '0') return 0n;
  if (s === '') return `"${text}" is not a duration (e.g. 500ms, 2s, 1h30m)`;
  let total = 0n;
  DURATION_PART.lastIndex = 0;
  while (DURATION_PART.lastIndex < s.length) {
    const m = DURATION_PART.exec(s);
    const whole = m?.[1] ?? '';
    const frac = m?.[2] ?? '';
    if (!m || (whole === '' && frac === '')) return `"${text}" is not a duration (e.g. 500ms, 2s, 1h30m)`;
    const unit = UNIT_NANOS[m[3]!]!;
    total += BigInt(whole || '0') * unit;
    if (frac !== '') total += (BigInt(frac) * unit) / 10n ** BigInt(frac.length);
  }
  return negative ? -total : total;
}

export function nanosToDuration(nanos: bigint): Duration {
  return { seconds: Number(nanos / NANOS_PER_SECOND), nanos: Number(nanos % NANOS_PER_SECOND) };
}

export function durationNanos(d: Duration): bigint {
  return BigInt(d.seconds) * NANOS_PER_SECOND + BigInt(d.nanos);
}

export const ZERO_DURATION: Duration = { seconds: 0, nanos: 0 };

export function millisToDuration(ms: number): Duration {
  return nanosToDuration(BigInt(ms) * 1_000_000n);
}

/** Istio's ValidateDuration: at least 1ms, in whole milliseconds. undefined when valid. */
export function checkDuration(nanos: bigint): string | undefined {
  if (nanos < 1_000_000n) return 'must be at least 1ms';
  if (nanos % 1_000_000n !== 0n) return 'only whole milliseconds are supported';
  return undefined;
}

/** Istio approximates Envoy's RE2 program-size limit by the pattern's length. */
const MAX_REGEX_LENGTH = 1024;

/**
 * Whether a pattern is a valid RE2 regex, as far as a JavaScript engine can tell: RE2 features that
 * JavaScript lacks are translated (`(?i)` flags, `(?P<name>`, `\A`, `\z`) and JavaScript features that
 * RE2 lacks are refused (backreferences, lookaround), then the pattern is compiled. undefined when
 * valid, else the reason.
 */
export function checkRe2(pattern: string): string | undefined {
  if (pattern === '') return 'must not be empty';
  if (pattern.length > MAX_REGEX_LENGTH) return `is too long (at most ${MAX_REGEX_LENGTH} characters)`;
  let flags = '';
  let body = pattern;
  const leading = /^\(\?([imsU]+)\)/.exec(body);
  if (leading) {
    if (leading[1]!.includes('U')) return 'the U (ungreedy) flag is not supported';
    flags = [...new Set(leading[1])].join('');
    body = body.slice(leading[0].length);
  }
  // Scan outside character classes for what RE2 refuses.
  let inClass = false;
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c === '\\') {
      const next = body[i + 1] ?? '';
      if (!inClass && /[1-9]/.test(next)) return 'backreferences (\\1…) are not supported by RE2';
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      continue;
    }
    if (c === '[') inClass = true;
    else if (c === '(' && /^\(\?(=|!|<=|<!)/.test(body.slice(i)))
      return 'lookaround ((?=…), (?!…), (?<=…), (?<!…)) is not supported by RE2';
  }
  const js = body
    .replace(/\(\?P</g, '(?<')
    .replace(/\\A/g, '^')
    .replace(/\\z/g, '$');
  try {
    new RegExp(js, flags);
  } catch (err) {
    return `is not a valid RE2 regex: ${(err as Error).message.replace(/^Invalid regular expression: /, '')}`;
  }
  // What the waypoint's engine will refuse (it NACKs the route), the user hears about here, at the
  // object: notably nested unbounded repetition, which a backtracking engine can take exponential
  // time on.
  const waypoint = translateRe2(pattern);
  if (!waypoint.ok) return `cannot be run by the waypoint: ${waypoint.message}`;
  return undefined;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const WILDCARD_LABEL = /^(\*|(\*|\*-)?[a-z0-9]([-a-z0-9]*[a-z0-9])?)$/;

export function isDns1123Label(v: string): boolean {
  return v.length <= 63 && DNS1123_LABEL.test(v);
}

/** Istio's ValidateDNS1123Labels (a trailing dot allowed, the top-level label not all digits). */
function checkDnsLabels(domain: string): string | undefined {
  const parts = domain.split('.');
  if (/^\d+$/.test(parts[parts.length - 1]!)) return `"${domain}": the top-level label cannot be all digits`;
  for (let i = 0; i < parts.length; i++) {
    const label = parts[i]!;
    if (i === parts.length - 1 && label === '' && i > 0) return undefined;
    if (!isDns1123Label(label))
      return `"${domain}" is not a valid host name (label "${label}": lower-case letters, digits and "-")`;
  }
  return undefined;
}

/** Istio's ValidateWildcardDomain: a DNS name whose first label may be a wildcard (`*`, `*.x`, `*x`). */
export function checkWildcardDomain(domain: string): string | undefined {
  if (domain.length === 0) return 'must not be empty';
  if (domain.length > 255) return `"${domain}" is too long (at most 255 characters)`;
  const dot = domain.indexOf('.');
  const first = dot < 0 ? domain : domain.slice(0, dot);
  if (first.length > 63 || !WILDCARD_LABEL.test(first))
    return `"${domain}" is not a valid host name (label "${first}": lower-case letters, digits and "-"; a wildcard only at the start)`;
  return dot < 0 ? undefined : checkDnsLabels(domain.slice(dot + 1));
}

/** Istio's ValidateFQDN. */
export function checkFqdn(domain: string): string | undefined {
  if (domain.length === 0) return 'must not be empty';
  if (domain.length > 255) return `"${domain}" is too long (at most 255 characters)`;
  return checkDnsLabels(domain);
}

export function isWildcardHost(host: string): boolean {
  return host.startsWith('*');
}

/**
 * Istio's host.Name.Matches for a rule host against a service hostname: a wildcard matches by
 * suffix (`*` everything, `*.example.com` every name under example.com), anything else exactly.
 */
export function hostMatches(pattern: string, hostname: string): boolean {
  if (isWildcardHost(pattern)) {
    const suffix = pattern.slice(1);
    if (isWildcardHost(hostname)) {
      const other = hostname.slice(1);
      return suffix.length < other.length ? other.endsWith(suffix) : suffix.endsWith(other);
    }
    return hostname.endsWith(suffix);
  }
  if (isWildcardHost(hostname)) return pattern.endsWith(hostname.slice(1));
  return pattern === hostname;
}

/**
 * Istio's ResolveShortnameToFQDN: a name without a dot is a Kubernetes Service in the rule's
 * namespace; anything with a dot (and `*`, and IP addresses) is taken as written.
 */
export function resolveHost(host: string, namespace: string, clusterDomain: string): string {
  if (host === '' || host === '*' || host.includes('.') || host.includes(':')) return host;
  return `${host}.${namespace}.svc.${clusterDomain}`;
}

const HEADER_NAME = /^[-_A-Za-z0-9]+$/;
const PSEUDO_HEADERS = [':method', ':scheme', ':authority', ':path', ':status'];

/** A header name in a match (pseudo headers allowed). */
export function checkMatchHeaderName(name: string): string | undefined {
  if (name === '') return 'header name must not be empty';
  if (PSEUDO_HEADERS.includes(name) || HEADER_NAME.test(name)) return undefined;
  if (name.startsWith('@request.auth.claims'))
    return `"${name}": routing on JWT claims is only supported on ingress gateways`;
  return `"${name}" is not a valid header name (letters, digits, "-" and "_")`;
}

export function isAuthorityHeader(name: string): boolean {
  const n = name.toLowerCase();
  return n === ':authority' || n === 'host';
}

/** `:`-prefixed headers and Host cannot be modified as headers (Host becomes the authority rewrite). */
export function isInternalHeader(name: string): boolean {
  return name.startsWith(':') || name.toLowerCase() === 'host';
}

/**
 * A header value Envoy accepts in headers_to_add: no control characters but tab, and every `%` either
 * doubled (`%%`, a literal percent) or opening a `%VARIABLE%` that is closed.
 */
export function checkHeaderValue(value: string): string | undefined {
  if (/[\u0000-\u0008\u000A-\u001F\u007F]/.test(value)) return 'must not contain control characters';
  for (let i = 0; i < value.length; i++) {
    if (value[i] !== '%') continue;
    if (value[i + 1] === '%') {
      i++;
      continue;
    }
    const end = value.indexOf('%', i + 1);
    if (end < 0)
      return `"${value}": a "%" starts an Envoy variable (%NAME%) that is not closed; write "%%" for a literal percent sign`;
    i = end;
  }
  return undefined;
}

/** Envoy's `x-envoy-retry-on` and `x-envoy-retry-grpc-on` conditions (Istio's supportedRetryOnPolicies). */
export const RETRY_ON_CONDITIONS = [
  '5xx',
  'gateway-error',
  'reset',
  'reset-before-request',
  'connect-failure',
  'retriable-4xx',
  'refused-stream',
  'retriable-status-codes',
  'retriable-headers',
  'envoy-ratelimited',
  'http3-post-connect-failure',
  'cancelled',
  'deadline-exceeded',
  'internal',
  'resource-exhausted',
  'unavailable',
] as const;

/** The HTTP status codes Go's net/http names (Istio accepts exactly these as bare retryOn codes). */
const KNOWN_STATUS_CODES = new Set([
  100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307,
  308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 418, 421,
  422, 423, 424, 425, 426, 428, 429, 431, 451, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
]);

export function isKnownStatusCode(code: number): boolean {
  return KNOWN_STATUS_CODES.has(code);
}

/** Istio's SupportedGRPCStatus: status names → codes. */
export const GRPC_STATUS: Readonly<Record<string, number>> = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
};

/** Methods a CORS policy may allow (Istio's supportedCORSMethods). */
export const CORS_METHODS = [
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'PATCH',
  'DELETE',
  'CONNECT',
  'OPTIONS',
  'TRACE',
  '*',
];

/** Istio's validatePercentage: 0, or 0.0001..100. */
export function checkPercentage(value: number): string | undefined {
  if (!Number.isFinite(value) || value < 0 || value > 100 || (value > 0 && value < 0.0001))
    return `${value} must be 0 or between 0.0001 and 100`;
  return undefined;
}
