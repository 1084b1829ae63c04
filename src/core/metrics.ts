import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The labels Istio puts on its TCP traffic metrics (reference/ztunnel.md §5). Missing values are
 * rendered as `unknown`, as Istio does.
 */
export const TCP_LABELS = [
  'reporter',
  'source_workload',
  'source_canonical_service',
  'source_canonical_revision',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_cluster',
  'destination_service',
  'destination_service_namespace',
  'destination_service_name',
  'destination_workload',
  'destination_canonical_service',
  'destination_canonical_revision',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_cluster',
  'request_protocol',
  'response_flags',
  'connection_security_policy',
] as const;
export type TcpLabelName = (typeof TCP_LABELS)[number];
export type TcpLabels = Record<TcpLabelName, string>;

/** Istio's response flags for TCP connections. */
export const ResponseFlag = {
  None: '-',
  Deny: 'DENY',
  Connect: 'CONNECT',
  TlsFailure: 'TLS_FAILURE',
  H2HandshakeFailure: 'H2_HANDSHAKE_FAILURE',
  NetworkPolicy: 'NETWORK_POLICY',
  IdentityError: 'IDENTITY_ERROR',
} as const;
export type ResponseFlag = (typeof ResponseFlag)[keyof typeof ResponseFlag];

/** The counters of one TCP label set, bumped directly by the connection that holds it. */
export interface TcpSeries {
  /** `istio_tcp_connections_opened_total` */
  opened: number;
  /** `istio_tcp_connections_closed_total` (response flag `-`) */
  closed: number;
  /** `istio_tcp_connections_failed_total` (any other response flag) */
  failed: number;
  /** `istio_tcp_received_bytes_total`: client → server bytes */
  received: number;
  /** `istio_tcp_sent_bytes_total`: server → client bytes */
  sent: number;
}

/** Istio's TCP traffic metrics. */
export interface TcpMetrics {
  /** The series for a label set, created on first use; hold on to it for the connection's life. */
  series(labels: TcpLabels): TcpSeries;
  /** `istio_tcp_sockets_open{reporter}`: add 1 when a connection opens, −1 when it ends. */
  socketsOpen(reporter: string, delta: 1 | -1): void;
}

export function createRegistry(component: string, withProcessMetrics: boolean): Registry {
  const registry = new Registry();
  new Gauge({
    name: 'istio_build',
    help: 'Istio component build info',
    labelNames: ['component', 'tag'],
    registers: [registry],
  }).set({ component, tag: 'ambit-0.1.0' }, 1);
  if (withProcessMetrics) collectDefaultMetrics({ register: registry });
  return registry;
}

/**
 * The counters live in plain objects per label set and are handed to prom-client only when scraped:
 * prom-client hashes all 23 labels on every `inc`, which cost about 11 % of an agent's CPU per
 * short connection (bench/, cpu profile).
 */
export function createTcpMetrics(registry: Registry): TcpMetrics {
  const all = new Map<string, { labels: TcpLabels; series: TcpSeries }>();
  const open = new Map<string, number>();
  const counter = (name: string, help: string, field: keyof TcpSeries) =>
    new Counter({
      name,
      help,
      labelNames: TCP_LABELS,
      registers: [registry],
      collect() {
        this.reset();
        for (const { labels, series } of all.values()) if (series[field] > 0) this.inc(labels, series[field]);
      },
    });
  counter('istio_tcp_connections_opened_total', 'The total number of TCP connections opened', 'opened');
  counter('istio_tcp_connections_closed_total', 'The total number of TCP connections closed', 'closed');
  counter('istio_tcp_connections_failed_total', 'The total number of TCP connections that failed', 'failed');
  counter('istio_tcp_sent_bytes_total', 'The size of total bytes sent during response', 'sent');
  counter('istio_tcp_received_bytes_total', 'The size of total bytes received during request', 'received');
  new Gauge({
    name: 'istio_tcp_sockets_open',
    help: 'The number of open TCP sockets',
    labelNames: ['reporter'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [reporter, n] of open) this.set({ reporter }, n);
    },
  });
  return {
    series(labels) {
      let key = '';
      for (const name of TCP_LABELS) key += labels[name] + '\u0000';
      let entry = all.get(key);
      if (!entry) {
        entry = { labels: { ...labels }, series: { opened: 0, closed: 0, failed: 0, received: 0, sent: 0 } };
        all.set(key, entry);
      }
      return entry.series;
    },
    socketsOpen(reporter, delta) {
      open.set(reporter, (open.get(reporter) ?? 0) + delta);
    },
  };
}
