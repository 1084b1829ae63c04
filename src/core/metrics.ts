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

export interface TcpMetrics {
  readonly opened: Counter<TcpLabelName>;
  readonly closed: Counter<TcpLabelName>;
  readonly failed: Counter<TcpLabelName>;
  readonly sentBytes: Counter<TcpLabelName>;
  readonly receivedBytes: Counter<TcpLabelName>;
  readonly socketsOpen: Gauge<'reporter'>;
}

/** One registry per program instance, so that two agents in one process (tests) do not collide. */
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

export function createTcpMetrics(registry: Registry): TcpMetrics {
  const counter = (name: string, help: string) =>
    new Counter({ name, help, labelNames: TCP_LABELS, registers: [registry] });
  return {
    opened: counter('istio_tcp_connections_opened_total', 'The total number of TCP connections opened'),
    closed: counter('istio_tcp_connections_closed_total', 'The total number of TCP connections closed'),
    failed: counter('istio_tcp_connections_failed_total', 'The total number of TCP connections that failed'),
    sentBytes: counter('istio_tcp_sent_bytes_total', 'The size of total bytes sent during response'),
    receivedBytes: counter(
      'istio_tcp_received_bytes_total',
      'The size of total bytes received during request',
    ),
    socketsOpen: new Gauge({
      name: 'istio_tcp_sockets_open',
      help: 'The number of open TCP sockets',
      labelNames: ['reporter'],
      registers: [registry],
    }),
  };
}
