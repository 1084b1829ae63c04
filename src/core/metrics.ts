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

/** Istio's TCP traffic counters, fed per connection. */
export interface TcpMetrics {
  /** A connection's route was decided (`istio_tcp_connections_opened_total`). */
  opened(labels: TcpLabels): void;
  /**
   * A connection ended: `closed` when its response flag is `-`, else `failed`; bytes client → server
   * (`received`) and server → client (`sent`) are added.
   */
  finished(labels: TcpLabels, bytesReceived: number, bytesSent: number): void;
  readonly socketsOpen: Gauge<'reporter'>;
}

interface Series {
  readonly labels: TcpLabels;
  opened: number;
  closed: number;
  failed: number;
  received: number;
  sent: number;
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
 * The counters are aggregated here per label set and handed to prom-client only when scraped:
 * prom-client hashes all 23 labels on every `inc`, which cost about 11 % of an agent's CPU per
 * short connection (bench/, cpu profile).
 */
export function createTcpMetrics(registry: Registry): TcpMetrics {
  const series = new Map<string, Series>();
  const seriesFor = (labels: TcpLabels): Series => {
    let key = '';
    for (const name of TCP_LABELS) key += labels[name] + '\u0000';
    let s = series.get(key);
    if (!s) {
      s = { labels: { ...labels }, opened: 0, closed: 0, failed: 0, received: 0, sent: 0 };
      series.set(key, s);
    }
    return s;
  };
  const counter = (name: string, help: string, field: Exclude<keyof Series, 'labels'>) =>
    new Counter({
      name,
      help,
      labelNames: TCP_LABELS,
      registers: [registry],
      collect() {
        this.reset();
        for (const s of series.values()) if (s[field] > 0) this.inc(s.labels, s[field]);
      },
    });
  counter('istio_tcp_connections_opened_total', 'The total number of TCP connections opened', 'opened');
  counter('istio_tcp_connections_closed_total', 'The total number of TCP connections closed', 'closed');
  counter('istio_tcp_connections_failed_total', 'The total number of TCP connections that failed', 'failed');
  counter('istio_tcp_sent_bytes_total', 'The size of total bytes sent during response', 'sent');
  counter('istio_tcp_received_bytes_total', 'The size of total bytes received during request', 'received');
  return {
    opened: (labels) => void seriesFor(labels).opened++,
    finished: (labels, bytesReceived, bytesSent) => {
      const s = seriesFor(labels);
      if (labels.response_flags === ResponseFlag.None) s.closed++;
      else s.failed++;
      s.received += bytesReceived;
      s.sent += bytesSent;
    },
    socketsOpen: new Gauge({
      name: 'istio_tcp_sockets_open',
      help: 'The number of open TCP sockets',
      labelNames: ['reporter'],
      registers: [registry],
    }),
  };
}
