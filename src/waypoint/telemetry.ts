/**
 * Istio's request metrics as a waypoint reports them (`reporter="waypoint"`): the request counter and
 * the duration, request-size and response-size histograms with Istio's standard labels, plus one
 * access-log line per request. TCP services' connections get Istio's TCP metrics (core/metrics.ts)
 * with the same peer labels, `request_protocol="tcp"`, and one access-log line per connection.
 *
 * The series live in plain objects per label set and are handed to prom-client only when scraped
 * (as core/metrics.ts does for TCP): prom-client hashes every label on every `inc`/`observe`, which
 * would cost more than the routing decision itself.
 */
import type { Registry } from 'prom-client';
import { formatSpiffe, type Identity } from '../core/identity/spiffe.ts';
import { peerLabelValues, UNKNOWN_LABEL } from '../core/peer-labels.ts';
import type { Logger } from '../core/log.ts';
import type { L7Decision } from '../core/policy/l7.ts';
import { TCP_LABELS, type TcpLabels } from '../core/metrics.ts';
import type { Service, Workload } from '../core/xds/model.ts';

export const REQUEST_LABELS = [...TCP_LABELS, 'response_code', 'grpc_response_status'] as const;
export type RequestLabelName = (typeof REQUEST_LABELS)[number];
export type RequestLabels = Record<RequestLabelName, string>;

/** Istio's buckets for `istio_request_duration_milliseconds`. */
export const DURATION_BUCKETS_MS = [
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000,
  3600000,
] as const;
/** Istio's buckets for `istio_request_bytes` and `istio_response_bytes`. */
export const SIZE_BUCKETS_BYTES = [
  1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000,
] as const;

/** Envoy's response flags the waypoint sets (Istio's `response_flags` label). */
export const ResponseFlags = {
  None: '-',
  NoRoute: 'NR',
  NoClusterFound: 'NC',
  NoHealthyUpstream: 'UH',
  UpstreamOverflow: 'UO',
  UpstreamConnectionFailure: 'UF',
  UpstreamConnectionTermination: 'UC',
  UpstreamRemoteReset: 'UR',
  UpstreamRequestTimeout: 'UT',
  UpstreamRetryLimitExceeded: 'URX',
  DownstreamConnectionTermination: 'DC',
  DelayInjected: 'DI',
  FaultInjected: 'FI',
} as const;
export type ResponseFlag = (typeof ResponseFlags)[keyof typeof ResponseFlags];

interface Histogram {
  readonly counts: Float64Array;
  sum: number;
}

interface Series {
  readonly labels: RequestLabels;
  count: number;
  readonly duration: Histogram;
  readonly requestBytes: Histogram;
  readonly responseBytes: Histogram;
}

const newHistogram = (buckets: readonly number[]): Histogram => ({
  counts: new Float64Array(buckets.length),
  sum: 0,
});

function observe(h: Histogram, buckets: readonly number[], value: number): void {
  h.sum += value;
  for (let i = 0; i < buckets.length; i++) {
    if (value <= buckets[i]!) {
      h.counts[i]!++;
      return;
    }
  }
}

/** One finished request, as the metrics see it. */
export interface RequestSample {
  readonly labels: RequestLabels;
  readonly durationMs: number;
  readonly requestBytes: number;
  readonly responseBytes: number;
}

export interface RequestMetrics {
  record(sample: RequestSample): void;
}

interface MetricValue {
  readonly labels: Record<string, string | number>;
  readonly value: number;
  readonly metricName?: string;
}

export function createRequestMetrics(registry: Registry): RequestMetrics {
  const all = new Map<string, Series>();
  const metric = (name: string, help: string, type: 'counter' | 'histogram', values: () => MetricValue[]) => {
    const m = {
      name,
      help,
      type,
      aggregator: 'sum',
      get: async () => ({ name, help, type, values: values(), aggregator: 'sum' }),
      reset: () => undefined,
    };
    registry.registerMetric(m as unknown as Parameters<Registry['registerMetric']>[0]);
  };
  const histogram = (
    name: string,
    help: string,
    pick: (s: Series) => Histogram,
    buckets: readonly number[],
  ) =>
    metric(name, help, 'histogram', () => {
      const out: MetricValue[] = [];
      for (const s of all.values()) {
        const h = pick(s);
        let cumulative = 0;
        buckets.forEach((le, i) => {
          cumulative += h.counts[i]!;
          out.push({ labels: { ...s.labels, le }, value: cumulative, metricName: `${name}_bucket` });
        });
        out.push({ labels: { ...s.labels, le: '+Inf' }, value: s.count, metricName: `${name}_bucket` });
        out.push({ labels: s.labels, value: h.sum, metricName: `${name}_sum` });
        out.push({ labels: s.labels, value: s.count, metricName: `${name}_count` });
      }
      return out;
    });
  metric('istio_requests_total', 'Total number of requests', 'counter', () =>
    [...all.values()].map((s) => ({ labels: s.labels, value: s.count })),
  );
  histogram(
    'istio_request_duration_milliseconds',
    'Duration of requests in milliseconds',
    (s) => s.duration,
    DURATION_BUCKETS_MS,
  );
  histogram(
    'istio_request_bytes',
    'Sizes of request bodies in bytes',
    (s) => s.requestBytes,
    SIZE_BUCKETS_BYTES,
  );
  histogram(
    'istio_response_bytes',
    'Sizes of response bodies in bytes',
    (s) => s.responseBytes,
    SIZE_BUCKETS_BYTES,
  );
  return {
    record(sample) {
      let key = '';
      for (const name of REQUEST_LABELS) key += sample.labels[name] + '\u0000';
      let s = all.get(key);
      if (!s) {
        s = {
          labels: { ...sample.labels },
          count: 0,
          duration: newHistogram(DURATION_BUCKETS_MS),
          requestBytes: newHistogram(SIZE_BUCKETS_BYTES),
          responseBytes: newHistogram(SIZE_BUCKETS_BYTES),
        };
        all.set(key, s);
      }
      s.count++;
      observe(s.duration, DURATION_BUCKETS_MS, sample.durationMs);
      observe(s.requestBytes, SIZE_BUCKETS_BYTES, sample.requestBytes);
      observe(s.responseBytes, SIZE_BUCKETS_BYTES, sample.responseBytes);
    },
  };
}

const UNKNOWN = UNKNOWN_LABEL;

/** Istio's `reporter`: a waypoint, or (at an ingress gateway, as Istio's gateways report) the source. */
export type Reporter = 'waypoint' | 'source';

/** The two peers and the service of one request or connection. */
export interface PeerFacts {
  readonly srcWorkload: Workload | undefined;
  readonly srcIdentity: Identity;
  /** Undefined when no route chose a destination (a gateway's 404). */
  readonly service: Service | undefined;
  /** `waypoint` when unset. */
  readonly reporter?: Reporter;
  /** The endpoint's workload, when a request or connection went upstream. */
  readonly dstWorkload: Workload | undefined;
  readonly dstIdentity: string | undefined;
}

/** What the waypoint knows about one request when it is finished. */
export interface RequestFacts extends PeerFacts {
  readonly protocol: 'http' | 'grpc';
  readonly status: number;
  /** gRPC status (response trailers or headers); undefined for plain HTTP. */
  readonly grpcStatus: string | undefined;
  readonly flags: readonly ResponseFlag[];
}

/** `-` or the flags comma-joined, in the order they happened (Envoy joins them with commas). */
export function formatFlags(flags: readonly ResponseFlag[]): string {
  return flags.length ? flags.join(',') : ResponseFlags.None;
}

type PeerLabels = Omit<TcpLabels, 'request_protocol' | 'response_flags' | 'connection_security_policy'>;

function peerLabels(f: PeerFacts): PeerLabels {
  const src = peerLabelValues(f.srcWorkload);
  const dst = peerLabelValues(f.dstWorkload);
  return {
    reporter: f.reporter ?? 'waypoint',
    source_workload: src.workload,
    source_canonical_service: src.canonicalService,
    source_canonical_revision: src.canonicalRevision,
    source_workload_namespace: f.srcWorkload?.namespace ?? f.srcIdentity.namespace,
    source_principal: formatSpiffe(f.srcIdentity),
    source_app: src.app,
    source_version: src.version,
    source_cluster: src.cluster,
    destination_service: f.service?.hostname ?? UNKNOWN,
    destination_service_namespace: f.service?.namespace ?? UNKNOWN,
    destination_service_name: f.service?.name ?? UNKNOWN,
    destination_workload: dst.workload,
    destination_canonical_service: dst.canonicalService,
    destination_canonical_revision: dst.canonicalRevision,
    destination_workload_namespace: f.dstWorkload?.namespace ?? UNKNOWN,
    destination_principal: f.dstIdentity ?? UNKNOWN,
    destination_app: dst.app,
    destination_version: dst.version,
    destination_cluster: dst.cluster,
  };
}

/** The client reached us over HBONE: always mutual TLS. */
const CONNECTION_SECURITY = 'mutual_tls';

export function requestLabels(f: RequestFacts): RequestLabels {
  return {
    ...peerLabels(f),
    request_protocol: f.protocol,
    response_code: String(f.status),
    grpc_response_status: f.grpcStatus ?? '',
    response_flags: formatFlags(f.flags),
    // A source reporter (a gateway) labels its outbound requests `unknown`, as Istio's proxies do.
    connection_security_policy: f.reporter === 'source' ? UNKNOWN : CONNECTION_SECURITY,
  };
}

/** The labels of one TCP connection's `istio_tcp_*` series. */
export function tcpConnectionLabels(f: PeerFacts, flags: readonly ResponseFlag[]): TcpLabels {
  return {
    ...peerLabels(f),
    request_protocol: 'tcp',
    response_flags: formatFlags(flags),
    connection_security_policy: CONNECTION_SECURITY,
  };
}

/** The access-log line of one request (STYLE.md §8 field names). */
export interface AccessLogLine {
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  readonly protocol: string;
  readonly status: number;
  readonly responseFlags: string;
  readonly durationMs: number;
  readonly bytesReceived: number;
  readonly bytesSent: number;
  readonly src: string;
  readonly srcIdentity: string;
  readonly dstService: string;
  readonly route: string | undefined;
  readonly cluster: string | undefined;
  readonly upstreamHost: string | undefined;
  readonly dstIdentity: string | undefined;
  readonly attempts: number;
  readonly requestId: string | undefined;
  readonly details: string | undefined;
  readonly error: string | undefined;
}

/** Writes the line at info (warn for 5xx answered by the waypoint itself). */
/**
 * The log lines of one authorization decision (`what` is a request or a connection): each policy
 * that audited it, each dry-run policy with what it would have done, and a denial with the policy
 * that denied. Returns whether it was allowed.
 */
export function logAuthzDecision(
  log: Logger,
  who: Record<string, unknown>,
  d: L7Decision,
  what: 'request' | 'connection',
): d is Extract<L7Decision, { allowed: true }> {
  for (const policy of d.audited) log.info({ ...who, policy }, `${what} audited by policy`);
  for (const s of d.shadow)
    log.info(
      { ...who, policy: s.policy ?? 'none', filter: s.filter, shadowAllowed: s.allowed },
      'dry-run policy evaluated',
    );
  if (d.allowed) return true;
  log.info({ ...who, policy: d.policy ?? 'none', filter: d.filter }, `${what} denied by policy`);
  return false;
}

export function writeAccessLog(log: Logger, line: AccessLogLine): void {
  logLine(log, line.status >= 500 && line.responseFlags !== ResponseFlags.None, line, 'request complete');
}

/** The access-log line of one TCP connection (STYLE.md §8 field names). */
export interface TcpAccessLogLine {
  readonly src: string;
  readonly srcIdentity: string;
  /** The `VIP:port` (or `hostname:port`) the client asked for. */
  readonly dst: string;
  readonly dstService: string;
  readonly cluster: string | undefined;
  readonly upstreamHost: string | undefined;
  readonly dstIdentity: string | undefined;
  /** The HBONE status the CONNECT got: 200, or the refusal. */
  readonly status: number;
  readonly responseFlags: string;
  readonly durationMs: number;
  /** Client → server bytes. */
  readonly bytesReceived: number;
  /** Server → client bytes. */
  readonly bytesSent: number;
  readonly connectAttempts: number;
  readonly details: string | undefined;
  readonly error: string | undefined;
}

/** Writes the line at info (warn for a connection the waypoint refused or could not connect). */
export function writeTcpAccessLog(log: Logger, line: TcpAccessLogLine): void {
  logLine(log, line.responseFlags !== ResponseFlags.None, line, 'connection complete');
}

function logLine(log: Logger, warn: boolean, line: object, message: string): void {
  if (!log.isLevelEnabled(warn ? 'warn' : 'info')) return;
  if (warn) log.warn(line, message);
  else log.info(line, message);
}
