/**
 * One cluster (`outbound|<port>|<subset>|<host>`) and its ClusterLoadAssignment, from the effective
 * DestinationRule policy, as istiod's cluster builder applies it (cluster_traffic_policy.go). Pure.
 *
 * Defaults are Istio's: LEAST_REQUEST, connect timeout 10 s, circuit-breaker thresholds 2^32-1, no
 * outlier detection unless configured (and then only the fields set, success-rate ejection off, the
 * panic threshold at minHealthPercent), HTTP options only when set.
 */
import type {
  AdsConfigSource,
  Any,
  CircuitBreakerThresholds,
  Cluster,
  ClusterLoadAssignment,
  LbEndpoint,
  LbPolicy,
  OutlierDetection as EnvoyOutlierDetection,
  UpstreamTlsContext,
} from './envoy-types.ts';
import { emptyAny, EnvoyType, packAny } from './protos.ts';
import type { EffectivePolicy } from './select.ts';
import type { ClientTls, ConnectionPool, Duration, LoadBalancer, OutlierDetection } from './types.ts';

export const ADS: AdsConfigSource = { ads: {}, resource_api_version: 'V3' };
export const DEFAULT_CONNECT_TIMEOUT: Duration = { seconds: 10, nanos: 0 };
const MAX_UINT32 = 2 ** 32 - 1;
const HTTP_PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const TLS_TRANSPORT_SOCKET = 'envoy.transport_sockets.tls';

/**
 * How the cluster speaks to its endpoints: HTTP/1.1 or HTTP/2 (a port declared HTTP2, gRPC or
 * gRPC-Web, or upgraded by h2UpgradePolicy), the client's protocol (a port whose protocol is sniffed,
 * or useClientProtocol), or plain TCP (no HTTP options at all).
 */
export type UpstreamProtocol = 'http1' | 'http2' | 'downstream' | 'tcp';

export interface ClusterSpec {
  readonly name: string;
  readonly policy: EffectivePolicy;
  /** undefined for a cluster a route names but no service defines (it has no endpoints). */
  readonly protocol: UpstreamProtocol | undefined;
}

export function buildCluster(spec: ClusterSpec): Cluster {
  const { policy } = spec;
  const pool = policy.connectionPool;
  const lb = loadBalancing(policy.loadBalancer);
  const outlier = policy.outlierDetection;
  const keepalive = pool?.tcp?.tcpKeepalive;
  const originate = originatesTls(policy.tls) ? policy.tls : undefined;
  const httpOptions =
    spec.protocol && spec.protocol !== 'tcp'
      ? httpProtocolOptions(spec.protocol, pool, originate)
      : undefined;
  return {
    name: spec.name,
    type: 'EDS',
    eds_cluster_config: { eds_config: ADS, service_name: spec.name },
    connect_timeout: pool?.tcp?.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT,
    ...lb,
    circuit_breakers: { thresholds: [thresholds(policy)] },
    ...(outlier
      ? {
          outlier_detection: outlierDetection(outlier),
          // Istio turns Envoy's panic mode (50% by default) off unless minHealthPercent says otherwise:
          // with few pods per service it would send traffic to ejected hosts.
          common_lb_config: { healthy_panic_threshold: { value: outlier.minHealthPercent } },
        }
      : {}),
    ...(keepalive
      ? {
          upstream_connection_options: {
            tcp_keepalive: {
              ...(keepalive.probes ? { keepalive_probes: { value: keepalive.probes } } : {}),
              ...(keepalive.time ? { keepalive_time: { value: keepalive.time.seconds } } : {}),
              ...(keepalive.interval ? { keepalive_interval: { value: keepalive.interval.seconds } } : {}),
            },
          },
        }
      : {}),
    ...(httpOptions ? { typed_extension_protocol_options: { [HTTP_PROTOCOL_OPTIONS]: httpOptions } } : {}),
    ...(originate
      ? {
          transport_socket: {
            name: TLS_TRANSPORT_SOCKET,
            typed_config: packAny(EnvoyType.UpstreamTlsContext, upstreamTlsContext(originate, spec.protocol)),
          },
        }
      : {}),
  };
}

/**
 * istiod's default SANs for a ServiceEntry host (cluster_builder.go): a SIMPLE or MUTUAL rule that names
 * no subjectAltNames verifies the ServiceEntry's spec.subjectAltNames instead; the rule's own win, and
 * without either the certificate is checked against the host (auto SAN validation).
 */
export function withDefaultSans(policy: EffectivePolicy, sans: readonly string[]): EffectivePolicy {
  const tls = policy.tls;
  if (!originatesTls(tls) || tls.subjectAltNames.length > 0 || sans.length === 0) return policy;
  return { ...policy, tls: { ...tls, subjectAltNames: sans } };
}

/**
 * SIMPLE and MUTUAL originate TLS. DISABLE sends what the client sent; ISTIO_MUTUAL is what HBONE
 * already does to every mesh endpoint (istiod puts it behind the HBONE transport socket match).
 */
function originatesTls(tls: ClientTls | undefined): tls is ClientTls {
  return tls?.mode === 'SIMPLE' || tls?.mode === 'MUTUAL';
}

/**
 * istiod's constructUpstreamTLS (cluster_tls.go), with the files as Envoy DataSources rather than
 * istio-agent SDS names: the roots are caCertificates, else the system's ("system"), and none at
 * all with insecureSkipVerify; SANs match exactly; an HTTP/2 cluster offers ALPN h2 only.
 */
function upstreamTlsContext(tls: ClientTls, protocol: UpstreamProtocol | undefined): UpstreamTlsContext {
  const verify = !tls.insecureSkipVerify;
  return {
    common_tls_context: {
      ...(tls.mode === 'MUTUAL' && tls.clientCertificate && tls.privateKey
        ? {
            tls_certificates: [
              {
                certificate_chain: { filename: tls.clientCertificate },
                private_key: { filename: tls.privateKey },
              },
            ],
          }
        : {}),
      ...(verify
        ? {
            validation_context: {
              ...(tls.caCertificates
                ? { trusted_ca: { filename: tls.caCertificates } }
                : { system_root_certs: {} }),
              ...(tls.caCrl ? { crl: { filename: tls.caCrl } } : {}),
              ...(tls.subjectAltNames.length
                ? { match_subject_alt_names: tls.subjectAltNames.map((exact) => ({ exact })) }
                : {}),
            },
          }
        : {}),
      ...(protocol === 'http2' ? { alpn_protocols: ['h2'] } : {}),
    },
    ...(tls.sni ? { sni: tls.sni } : {}),
  };
}

type LbFields = Pick<
  Cluster,
  'lb_policy' | 'ring_hash_lb_config' | 'maglev_lb_config' | 'load_balancing_policy'
>;

/** istiod's applyLoadBalancer / ApplyRingHashLoadBalancer, plus the same policy as typed extensions. */
function loadBalancing(lb: LoadBalancer | undefined): LbFields {
  const hash = lb?.consistentHash;
  let policy: LbPolicy;
  let ring: number | undefined;
  let table: number | undefined;
  if (hash?.maglev) {
    policy = 'MAGLEV';
    table = hash.maglev.tableSize || undefined;
  } else if (hash?.ringHash) {
    policy = 'RING_HASH';
    ring = hash.ringHash.minimumRingSize || undefined;
  } else if (hash) {
    policy = 'RING_HASH';
    ring = hash.minimumRingSize || 1024;
  } else if (lb?.simple === 'ROUND_ROBIN') policy = 'ROUND_ROBIN';
  else if (lb?.simple === 'RANDOM') policy = 'RANDOM';
  else policy = 'LEAST_REQUEST'; // LEAST_REQUEST, LEAST_CONN, UNSPECIFIED: Istio's default
  const ext = (name: string, type: EnvoyType, value: object) => ({
    typed_extension_config: {
      name: `envoy.load_balancing_policies.${name}`,
      typed_config: Object.keys(value).length === 0 ? emptyAny(type) : packAny(type, value),
    },
  });
  const roundRobin = ext('round_robin', EnvoyType.RoundRobin, {});
  const ringHash = ext('ring_hash', EnvoyType.RingHash, {
    hash_function: 'XX_HASH',
    ...(ring ? { minimum_ring_size: { value: ring } } : {}),
  });
  const policies = {
    ROUND_ROBIN: [roundRobin],
    LEAST_REQUEST: [ext('least_request', EnvoyType.LeastRequest, {}), roundRobin],
    RANDOM: [ext('random', EnvoyType.Random, {}), roundRobin],
    RING_HASH: [ringHash],
    // gRPC has no Maglev; a ring hash keeps its clients consistent-hashing too.
    MAGLEV: [ext('maglev', EnvoyType.Maglev, table ? { table_size: { value: table } } : {}), ringHash],
  }[policy];
  return {
    lb_policy: policy,
    ...(ring ? { ring_hash_lb_config: { minimum_ring_size: { value: ring } } } : {}),
    ...(table ? { maglev_lb_config: { table_size: { value: table } } } : {}),
    load_balancing_policy: { policies },
  };
}

/** istiod's applyConnectionPool thresholds: 2^32-1 unless the pool sets a positive limit. */
function thresholds(policy: EffectivePolicy): CircuitBreakerThresholds {
  const http = policy.connectionPool?.http;
  const tcp = policy.connectionPool?.tcp;
  const limit = (v: number | undefined) => ({ value: v !== undefined && v > 0 ? v : MAX_UINT32 });
  const budget = policy.retryBudget;
  return {
    max_connections: limit(tcp?.maxConnections),
    max_pending_requests: limit(http?.http1MaxPendingRequests),
    max_requests: limit(http?.http2MaxRequests),
    max_retries: limit(http?.maxRetries),
    ...(budget
      ? {
          retry_budget: {
            budget_percent: { value: budget.percent ?? 20 },
            min_retry_concurrency: { value: budget.minRetryConcurrency > 0 ? budget.minRetryConcurrency : 3 },
            ...(budget.budgetInterval ? { budget_interval: budget.budgetInterval } : {}),
          },
        }
      : {}),
  };
}

/** istiod's applyOutlierDetection: only what is set; 0 errors disables that check. */
function outlierDetection(o: OutlierDetection): EnvoyOutlierDetection {
  const enforcing = (v: number) => ({ value: v > 0 ? 100 : 0 });
  return {
    ...(o.consecutive5xxErrors !== undefined
      ? {
          consecutive_5xx: { value: o.consecutive5xxErrors },
          enforcing_consecutive_5xx: enforcing(o.consecutive5xxErrors),
        }
      : {}),
    ...(o.consecutiveGatewayErrors !== undefined
      ? {
          consecutive_gateway_failure: { value: o.consecutiveGatewayErrors },
          enforcing_consecutive_gateway_failure: enforcing(o.consecutiveGatewayErrors),
        }
      : {}),
    ...(o.interval ? { interval: o.interval } : {}),
    ...(o.baseEjectionTime ? { base_ejection_time: o.baseEjectionTime } : {}),
    ...(o.maxEjectionPercent > 0 ? { max_ejection_percent: { value: o.maxEjectionPercent } } : {}),
    enforcing_success_rate: { value: 0 },
    ...(o.splitExternalLocalOriginErrors
      ? {
          split_external_local_origin_errors: true,
          ...((o.consecutiveLocalOriginFailures ?? 0) > 0
            ? {
                consecutive_local_origin_failure: { value: o.consecutiveLocalOriginFailures! },
                enforcing_consecutive_local_origin_failure: { value: 100 },
              }
            : {}),
          enforcing_local_origin_success_rate: { value: 0 },
        }
      : {}),
  };
}

/**
 * `HttpProtocolOptions` for an HTTP port: the upstream protocol (Envoy requires one) and the pool's
 * idle timeout (HTTP's, else TCP's), requests per connection and connection lifetime.
 */
function httpProtocolOptions(
  protocol: Exclude<UpstreamProtocol, 'tcp'>,
  pool: ConnectionPool | undefined,
  tls: ClientTls | undefined,
): Any {
  const http = pool?.http;
  const idle = http?.idleTimeout ?? pool?.tcp?.idleTimeout;
  const perConnection = http?.maxRequestsPerConnection ?? 0;
  const lifetime = pool?.tcp?.maxConnectionDuration;
  let upstream = protocol;
  if (http?.useClientProtocol) upstream = 'downstream';
  else if (http?.h2UpgradePolicy === 'UPGRADE') upstream = 'http2';
  const http2 = {
    ...(http?.maxConcurrentStreams ? { max_concurrent_streams: { value: http.maxConcurrentStreams } } : {}),
    ...(http?.http2KeepAlive
      ? {
          connection_keepalive: {
            interval: http.http2KeepAlive.interval,
            timeout: http.http2KeepAlive.timeout,
          },
        }
      : {}),
  };
  const common = {
    ...(idle ? { idle_timeout: idle } : {}),
    ...(perConnection > 0 ? { max_requests_per_connection: { value: perConnection } } : {}),
    ...(lifetime ? { max_connection_duration: lifetime } : {}),
  };
  // istiod's setAutoSniAndAutoSanValidation: without an explicit sni the request's host is the SNI,
  // and without SANs (and unless insecureSkipVerify) the certificate is checked against it.
  const autoSni = tls !== undefined && !tls.sni;
  const autoSan = autoSni && tls.subjectAltNames.length === 0 && !tls.insecureSkipVerify;
  return packAny(EnvoyType.HttpProtocolOptions, {
    ...(Object.keys(common).length > 0 ? { common_http_protocol_options: common } : {}),
    ...(autoSni
      ? {
          upstream_http_protocol_options: {
            auto_sni: true,
            ...(autoSan ? { auto_san_validation: true } : {}),
          },
        }
      : {}),
    ...(upstream === 'downstream'
      ? { use_downstream_protocol_config: {} }
      : {
          explicit_http_config:
            upstream === 'http2' ? { http2_protocol_options: http2 } : { http_protocol_options: {} },
        }),
  });
}

/** One endpoint of a cluster. */
export interface EndpointSpec {
  /** The first is the address; the others (dual stack) go in additional_addresses. */
  readonly addresses: readonly string[];
  readonly port: number;
  readonly healthy: boolean;
  readonly weight: number;
}

/**
 * The endpoints in one locality (Ambit has no localities yet). gRPC clients need the locality set and
 * weighted, so it is present (empty) and weighs the sum of its endpoints.
 */
export function buildLoadAssignment(name: string, endpoints: readonly EndpointSpec[]): ClusterLoadAssignment {
  if (endpoints.length === 0) return { cluster_name: name, endpoints: [] };
  const lbEndpoints = endpoints.map((e): LbEndpoint => {
    const [first, ...rest] = e.addresses;
    return {
      endpoint: {
        address: { socket_address: { address: first!, port_value: e.port } },
        ...(rest.length > 0
          ? {
              additional_addresses: rest.map((a) => ({
                address: { socket_address: { address: a, port_value: e.port } },
              })),
            }
          : {}),
      },
      health_status: e.healthy ? 'HEALTHY' : 'UNHEALTHY',
      load_balancing_weight: { value: Math.max(1, e.weight) },
    };
  });
  const total = lbEndpoints.reduce((sum, e) => sum + e.load_balancing_weight.value, 0);
  return {
    cluster_name: name,
    endpoints: [{ locality: {}, lb_endpoints: lbEndpoints, load_balancing_weight: { value: total } }],
  };
}
