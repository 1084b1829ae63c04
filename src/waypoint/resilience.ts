/**
 * The waypoint's retry and local-reply rules, pure: which attempt outcomes a retry policy retries
 * (Envoy's `x-envoy-retry-on` vocabulary, istio-api.md §1.2), the back-off between tries, the
 * `grpc-timeout` header, and the replies Envoy answers by itself (status, body, and their gRPC form).
 */
import type { RetryPolicy } from '../core/xds/l7-model.ts';
import type { Random } from './router.ts';

/** What one try came to, as the retry policy sees it. */
export type TryOutcome =
  | { readonly kind: 'response'; readonly status: number; readonly grpcStatus: number | undefined }
  | { readonly kind: 'connect-failure' }
  /** The upstream reset the stream (or closed the connection) before a response. */
  | { readonly kind: 'reset' }
  | { readonly kind: 'refused-stream' }
  | { readonly kind: 'per-try-timeout' };

const GRPC_CONDITIONS = {
  cancelled: 1,
  'deadline-exceeded': 4,
  'resource-exhausted': 8,
  internal: 13,
  unavailable: 14,
} as const;

/** Whether `policy` retries after `outcome` (Envoy's RetryStateImpl). */
export function isRetriable(policy: RetryPolicy, outcome: TryOutcome): boolean {
  const on = new Set<string>(policy.retryOn);
  switch (outcome.kind) {
    case 'response': {
      const s = outcome.status;
      if (on.has('5xx') && s >= 500 && s <= 599) return true;
      if (on.has('gateway-error') && (s === 502 || s === 503 || s === 504)) return true;
      if (on.has('retriable-4xx') && s === 409) return true;
      if (on.has('retriable-status-codes') && policy.retriableStatusCodes.includes(s)) return true;
      if (outcome.grpcStatus !== undefined) {
        for (const [name, code] of Object.entries(GRPC_CONDITIONS)) {
          if (on.has(name) && outcome.grpcStatus === code) return true;
        }
      }
      return false;
    }
    case 'per-try-timeout':
      // Envoy retries a per-try timeout like a 504 (or a read timeout).
      return on.has('5xx') || on.has('gateway-error') || on.has('reset');
    case 'connect-failure':
      return (
        on.has('5xx') ||
        on.has('gateway-error') ||
        on.has('reset') ||
        on.has('connect-failure') ||
        on.has('reset-before-request')
      );
    case 'refused-stream':
      return (
        on.has('5xx') ||
        on.has('gateway-error') ||
        on.has('reset') ||
        on.has('refused-stream') ||
        on.has('reset-before-request')
      );
    case 'reset':
      return on.has('5xx') || on.has('gateway-error') || on.has('reset');
  }
}

/**
 * Envoy's jittered exponential back-off before retry number `retry` (1-based): a uniform value below
 * (2^retry − 1) × base, at most the maximum interval.
 */
export function backoffMs(policy: RetryPolicy, retry: number, random: Random): number {
  const { baseIntervalMs, maxIntervalMs } = policy.backOff;
  const window = Math.min((2 ** retry - 1) * baseIntervalMs, Number.MAX_SAFE_INTEGER);
  return Math.min(Math.floor(random() * window), maxIntervalMs);
}

const GRPC_TIMEOUT_UNITS_MS: Readonly<Record<string, number>> = {
  H: 3_600_000,
  M: 60_000,
  S: 1000,
  m: 1,
  u: 0.001,
  n: 0.000001,
};

/** The `grpc-timeout` header (`<1–8 digits><H|M|S|m|u|n>`) in milliseconds; undefined if malformed. */
export function parseGrpcTimeoutMs(value: string | undefined): number | undefined {
  const m = value === undefined ? null : /^(\d{1,8})([HMSmun])$/.exec(value);
  if (!m) return undefined;
  return Math.ceil(Number(m[1]) * GRPC_TIMEOUT_UNITS_MS[m[2]!]!);
}

/** The timeout a forwarded request gets: the route's, or the client's gRPC deadline if allowed. */
export function effectiveTimeoutMs(
  routeTimeoutMs: number,
  grpcTimeoutHeaderMaxMs: number | undefined,
  grpcTimeoutHeader: string | undefined,
): number {
  if (grpcTimeoutHeaderMaxMs === undefined) return routeTimeoutMs;
  const asked = parseGrpcTimeoutMs(grpcTimeoutHeader);
  if (asked === undefined) return routeTimeoutMs;
  return grpcTimeoutHeaderMaxMs > 0 ? Math.min(asked, grpcTimeoutHeaderMaxMs) : asked;
}

/** Envoy's HTTP → gRPC status mapping for local replies to gRPC requests. */
export function httpToGrpcStatus(status: number): number {
  switch (status) {
    case 400:
      return 13;
    case 401:
      return 16;
    case 403:
      return 7;
    case 404:
      return 12;
    case 429:
    case 502:
    case 503:
    case 504:
      return 14;
    default:
      return 2;
  }
}

/** Bodies of the replies Envoy's router answers by itself. */
export const LocalReplyBody = {
  NoHealthyUpstream: 'no healthy upstream',
  Overflow: 'upstream connect error or disconnect/reset before headers. reset reason: overflow',
  ConnectFailure:
    'upstream connect error or disconnect/reset before headers. reset reason: connection failure',
  Reset: 'upstream connect error or disconnect/reset before headers. reset reason: remote reset',
  ConnectionTermination:
    'upstream connect error or disconnect/reset before headers. reset reason: connection termination',
  Timeout: 'upstream request timeout',
} as const;

/** A gRPC message as it goes in `grpc-message` (percent-encoded outside printable ASCII). */
export function encodeGrpcMessage(message: string): string {
  return Array.from(new TextEncoder().encode(message), (b) =>
    b >= 0x20 && b <= 0x7e && b !== 0x25
      ? String.fromCharCode(b)
      : `%${b.toString(16).toUpperCase().padStart(2, '0')}`,
  ).join('');
}

/** Whether a content type is gRPC's (Envoy's Grpc::Common::isGrpcRequestHeaders). */
export function isGrpcContentType(ct: string | undefined): boolean {
  if (!ct) return false;
  return (
    ct === 'application/grpc' || ct.startsWith('application/grpc+') || ct.startsWith('application/grpc;')
  );
}
