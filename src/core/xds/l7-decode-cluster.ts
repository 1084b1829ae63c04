/**
 * Envoy v3 Cluster and ClusterLoadAssignment → the waypoint's model (see l7-decode.ts for the
 * conventions: all errors with their paths, behaviour-changing fields the waypoint cannot honour
 * are errors, tuning and stats fields are ignored). Pure.
 */
import type { Decoded } from './workload-proto.ts';
import {
  endpointKey,
  type CircuitBreakers,
  type Cluster,
  type ClusterLoadAssignment,
  type HealthStatus,
  type LbEndpoint,
  type LbPolicy,
  type OutlierDetection,
  type UpstreamProtocol,
} from './l7-model.ts';
import {
  Collector,
  bool,
  durationMs,
  isIpAddress,
  join,
  positiveMs,
  uint,
  type AnyUnpacker,
  type WireAny,
  type WireBool,
  type WireDuration,
  type WireUInt,
} from './l7-decode-common.ts';
import { decodeTransportSocket, type WireTransportSocket } from './l7-decode-tls.ts';
import { decodeOriginalDst, type WireOriginalDstLbConfig } from './l7-decode-original-dst.ts';

const HTTP_PROTOCOL_OPTIONS_KEY = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const HTTP_PROTOCOL_OPTIONS_TYPE = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

/** Envoy's defaults (cluster.proto, circuit_breaker.proto, outlier_detection.proto). */
export const ClusterDefaults = {
  connectTimeoutMs: 5000,
  idleTimeoutMs: 3_600_000,
  minimumRingSize: 1024,
  maximumRingSize: 8 * 1024 * 1024,
  maglevTableSize: 65537,
  leastRequestChoiceCount: 2,
  healthyPanicThresholdPercent: 50,
  circuitBreakers: { maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 1024, maxRetries: 3 },
  outlier: {
    consecutive5xx: 5,
    consecutiveGatewayFailure: 5,
    consecutiveLocalOriginFailure: 5,
    enforcingConsecutive5xxPercent: 100,
    enforcingConsecutiveGatewayFailurePercent: 0,
    enforcingConsecutiveLocalOriginFailurePercent: 100,
    intervalMs: 10_000,
    baseEjectionTimeMs: 30_000,
    maxEjectionTimeMs: 300_000,
    maxEjectionPercent: 10,
  },
  overprovisioningFactor: 140,
} as const;

interface WireThresholds {
  priority?: string | number;
  max_connections?: WireUInt;
  max_pending_requests?: WireUInt;
  max_requests?: WireUInt;
  max_retries?: WireUInt;
  retry_budget?: object;
  track_remaining?: boolean;
  max_connection_pools?: WireUInt;
}
interface WireCoreHttpProtocolOptions {
  idle_timeout?: WireDuration;
  max_connection_duration?: WireDuration;
  max_headers_count?: WireUInt;
  max_stream_duration?: WireDuration;
  headers_with_underscores_action?: string | number;
  max_requests_per_connection?: WireUInt;
}
interface WireHttpProtocolOptions {
  common_http_protocol_options?: WireCoreHttpProtocolOptions;
  upstream_http_protocol_options?: {
    auto_sni?: boolean;
    auto_san_validation?: boolean;
    override_auto_sni_header?: string;
  };
  explicit_http_config?: {
    http_protocol_options?: object;
    http2_protocol_options?: object;
    http3_protocol_options?: object;
  };
  use_downstream_protocol_config?: object;
  auto_config?: object;
  http_filters?: object[];
  header_validation_config?: object;
}
interface WireOutlierDetection {
  consecutive_5xx?: WireUInt;
  interval?: WireDuration;
  base_ejection_time?: WireDuration;
  max_ejection_percent?: WireUInt;
  enforcing_consecutive_5xx?: WireUInt;
  enforcing_success_rate?: WireUInt;
  consecutive_gateway_failure?: WireUInt;
  enforcing_consecutive_gateway_failure?: WireUInt;
  split_external_local_origin_errors?: boolean;
  consecutive_local_origin_failure?: WireUInt;
  enforcing_consecutive_local_origin_failure?: WireUInt;
  enforcing_local_origin_success_rate?: WireUInt;
  enforcing_failure_percentage?: WireUInt;
  enforcing_failure_percentage_local_origin?: WireUInt;
  max_ejection_time?: WireDuration;
  max_ejection_time_jitter?: WireDuration;
  monitors?: object[];
  always_eject_one_host?: WireBool;
}
export interface WireCluster {
  name?: string;
  type?: string | number;
  cluster_type?: object;
  eds_cluster_config?: { eds_config?: { ads?: object; self?: object; path?: string }; service_name?: string };
  connect_timeout?: WireDuration;
  lb_policy?: string | number;
  load_assignment?: object;
  health_checks?: object[];
  max_requests_per_connection?: WireUInt;
  circuit_breakers?: { thresholds?: WireThresholds[]; per_host_thresholds?: object[] };
  common_http_protocol_options?: WireCoreHttpProtocolOptions;
  http_protocol_options?: object;
  http2_protocol_options?: object;
  protocol_selection?: string | number;
  typed_extension_protocol_options?: Record<string, WireAny>;
  outlier_detection?: WireOutlierDetection;
  lb_subset_config?: object;
  ring_hash_lb_config?: {
    minimum_ring_size?: WireUInt;
    hash_function?: string | number;
    maximum_ring_size?: WireUInt;
  };
  maglev_lb_config?: { table_size?: WireUInt };
  original_dst_lb_config?: WireOriginalDstLbConfig;
  cleanup_interval?: WireDuration;
  least_request_lb_config?: {
    choice_count?: WireUInt;
    active_request_bias?: object;
    slow_start_config?: object;
  };
  round_robin_lb_config?: { slow_start_config?: object };
  common_lb_config?: {
    healthy_panic_threshold?: { value?: number };
    consistent_hashing_lb_config?: { use_hostname_for_hashing?: boolean; hash_balance_factor?: WireUInt };
  };
  transport_socket?: WireTransportSocket;
  transport_socket_matches?: object[];
  filters?: object[];
  load_balancing_policy?: object;
  upstream_config?: object;
}

const LB_POLICIES: readonly string[] = ['ROUND_ROBIN', 'LEAST_REQUEST', 'RANDOM', 'RING_HASH', 'MAGLEV'];

export function decodeCluster(w: WireCluster, unpack: AnyUnpacker): Decoded<Cluster> {
  const c = new Collector(unpack);
  if (!w.name) c.err('name', 'is required');
  // A DNS cluster (a ServiceEntry resolved by DNS) names its endpoints inline, by host name or address.
  const dns = w.type === 'STRICT_DNS' || w.type === 'LOGICAL_DNS';
  const originalDst = w.type === 'ORIGINAL_DST' ? decodeOriginalDst(w, c) : undefined;
  if (w.cluster_type !== undefined) c.err('cluster_type', 'custom cluster types are not supported; use EDS');
  else if (w.type !== 'EDS' && !dns && !originalDst)
    c.err('type', `must be EDS, STRICT_DNS, LOGICAL_DNS or ORIGINAL_DST, not ${w.type ?? 'STATIC'}`);
  const eds = w.eds_cluster_config?.eds_config;
  if (eds && eds.ads === undefined && eds.self === undefined) {
    c.err('eds_cluster_config.eds_config', 'endpoints must come over ADS (ads or self)');
  }
  const dnsAssignment = dns ? decodeInlineAssignment(w, c) : undefined;
  c.unsupported(
    w,
    [
      ...(dns ? [] : ['load_assignment']),
      'health_checks',
      'lb_subset_config',
      ...(originalDst ? [] : ['original_dst_lb_config']),
      'transport_socket_matches',
      'filters',
      'upstream_config',
    ],
    '',
  );
  if (w.circuit_breakers?.per_host_thresholds?.length) {
    c.err('circuit_breakers.per_host_thresholds', 'is not supported');
  }

  // `load_balancing_policy` is the policy list gRPC clients read (the controller puts lb_policy's
  // policy first, then one gRPC knows); Envoy and the waypoint follow `lb_policy`.
  const policy = String(w.lb_policy ?? 'ROUND_ROBIN');
  if (!LB_POLICIES.includes(policy) && !originalDst) c.err('lb_policy', `${policy} is not supported`);
  const lbPolicy = (LB_POLICIES.includes(policy) ? policy : 'ROUND_ROBIN') as LbPolicy;

  const lr = w.least_request_lb_config;
  if (lr) c.unsupported(lr, ['active_request_bias', 'slow_start_config'], 'least_request_lb_config');
  if (w.round_robin_lb_config?.slow_start_config)
    c.err('round_robin_lb_config.slow_start_config', 'is not supported');
  const choiceCount = uint(lr?.choice_count, 2);
  if (choiceCount < 2) c.err('least_request_lb_config.choice_count', 'must be at least 2');

  const rh = w.ring_hash_lb_config;
  if (rh?.hash_function !== undefined && rh.hash_function !== 'XX_HASH' && rh.hash_function !== 0) {
    c.err('ring_hash_lb_config.hash_function', 'only XX_HASH is supported');
  }
  const minimumRingSize = uint(rh?.minimum_ring_size, ClusterDefaults.minimumRingSize);
  const maximumRingSize = uint(rh?.maximum_ring_size, ClusterDefaults.maximumRingSize);
  if (minimumRingSize > 8_388_608) c.err('ring_hash_lb_config.minimum_ring_size', 'must be at most 8388608');
  if (maximumRingSize > 8_388_608) c.err('ring_hash_lb_config.maximum_ring_size', 'must be at most 8388608');
  if (minimumRingSize > maximumRingSize) {
    c.err('ring_hash_lb_config.minimum_ring_size', 'must not be greater than maximum_ring_size');
  }
  const tableSize = uint(w.maglev_lb_config?.table_size, ClusterDefaults.maglevTableSize);
  if (tableSize > 5_000_011 || !isPrime(tableSize))
    c.err('maglev_lb_config.table_size', 'must be a prime of at most 5000011');

  const clb = w.common_lb_config;
  const panic =
    clb?.healthy_panic_threshold === undefined
      ? ClusterDefaults.healthyPanicThresholdPercent
      : (clb.healthy_panic_threshold.value ?? 0);
  if (!(panic >= 0 && panic <= 100))
    c.err('common_lb_config.healthy_panic_threshold.value', 'must be 0..100');
  const ch = clb?.consistent_hashing_lb_config;
  if (ch?.use_hostname_for_hashing)
    c.err('common_lb_config.consistent_hashing_lb_config.use_hostname_for_hashing', 'is not supported');
  if (ch?.hash_balance_factor !== undefined)
    c.err('common_lb_config.consistent_hashing_lb_config.hash_balance_factor', 'is not supported');

  const connectTimeoutMs =
    positiveMs(w.connect_timeout, 'connect_timeout', c) ?? ClusterDefaults.connectTimeoutMs;

  let circuitBreakers: CircuitBreakers = ClusterDefaults.circuitBreakers;
  let sawDefault = false;
  (w.circuit_breakers?.thresholds ?? []).forEach((t, i) => {
    const at = `circuit_breakers.thresholds[${i}]`;
    if (t.priority !== undefined && t.priority !== 'DEFAULT' && t.priority !== 0) return; // HIGH: never used
    if (sawDefault) c.err(at, 'a second DEFAULT-priority threshold');
    sawDefault = true;
    c.unsupported(t, ['retry_budget', 'max_connection_pools'], at);
    const d = ClusterDefaults.circuitBreakers;
    circuitBreakers = {
      maxConnections: uint(t.max_connections, d.maxConnections),
      maxPendingRequests: uint(t.max_pending_requests, d.maxPendingRequests),
      maxRequests: uint(t.max_requests, d.maxRequests),
      maxRetries: uint(t.max_retries, d.maxRetries),
    };
  });

  let upstreamProtocol: UpstreamProtocol = 'http1';
  if (w.http2_protocol_options !== undefined) upstreamProtocol = 'http2';
  if (w.protocol_selection === 'USE_DOWNSTREAM_PROTOCOL' || w.protocol_selection === 1)
    upstreamProtocol = 'downstream';
  let common = w.common_http_protocol_options;
  let autoSni = false;
  let autoSanValidation = false;
  for (const [key, any] of Object.entries(w.typed_extension_protocol_options ?? {})) {
    const at = `typed_extension_protocol_options[${JSON.stringify(key)}]`;
    if (key !== HTTP_PROTOCOL_OPTIONS_KEY) {
      c.err(at, 'only envoy.extensions.upstreams.http.v3.HttpProtocolOptions is supported');
      continue;
    }
    const o = c.any<WireHttpProtocolOptions>(any, [HTTP_PROTOCOL_OPTIONS_TYPE], at);
    if (!o) continue;
    c.unsupported(o, ['auto_config', 'http_filters', 'header_validation_config'], at);
    if (o.explicit_http_config) {
      const e = o.explicit_http_config;
      if (e.http3_protocol_options !== undefined)
        c.err(join(at, 'explicit_http_config.http3_protocol_options'), 'HTTP/3 is not supported');
      upstreamProtocol = e.http2_protocol_options !== undefined ? 'http2' : 'http1';
    } else if (o.use_downstream_protocol_config) upstreamProtocol = 'downstream';
    if (o.common_http_protocol_options) common = o.common_http_protocol_options;
    const u = o.upstream_http_protocol_options;
    if (u?.override_auto_sni_header)
      c.err(join(at, 'upstream_http_protocol_options.override_auto_sni_header'), 'is not supported');
    autoSni = u?.auto_sni ?? false;
    autoSanValidation = u?.auto_san_validation ?? false;
  }
  const tls = decodeTransportSocket(w.transport_socket, 'transport_socket', c);
  const commonAt = w.typed_extension_protocol_options
    ? `typed_extension_protocol_options[${JSON.stringify(HTTP_PROTOCOL_OPTIONS_KEY)}].common_http_protocol_options`
    : 'common_http_protocol_options';
  if (common) {
    c.unsupported(common, ['max_connection_duration', 'max_headers_count', 'max_stream_duration'], commonAt);
    const u = common.headers_with_underscores_action;
    if (u !== undefined && u !== 'ALLOW' && u !== 0)
      c.err(join(commonAt, 'headers_with_underscores_action'), 'is not supported');
  }
  const idleTimeoutMs =
    durationMs(common?.idle_timeout, join(commonAt, 'idle_timeout'), c) ?? ClusterDefaults.idleTimeoutMs;
  const maxRequestsPerConnection = uint(
    common?.max_requests_per_connection ?? w.max_requests_per_connection,
    0,
  );

  const value: Cluster = {
    name: w.name ?? '',
    edsServiceName: w.eds_cluster_config?.service_name || w.name || '',
    ...(dnsAssignment ? { dnsAssignment } : {}),
    ...(originalDst ? { originalDst } : {}),
    lbPolicy,
    leastRequestChoiceCount: choiceCount,
    ringHash: { minimumRingSize, maximumRingSize },
    maglevTableSize: tableSize,
    connectTimeoutMs,
    circuitBreakers,
    maxRequestsPerConnection,
    idleTimeoutMs,
    upstreamProtocol,
    healthyPanicThresholdPercent: panic,
    outlierDetection: w.outlier_detection
      ? decodeOutlier(w.outlier_detection, 'outlier_detection', c)
      : undefined,
    ...(tls ? { tls: { ...tls, autoSni, autoSanValidation } } : {}),
  };
  return c.errors.length ? { ok: false, errors: c.errors } : { ok: true, value };
}

function decodeOutlier(o: WireOutlierDetection, at: string, c: Collector): OutlierDetection {
  const d = ClusterDefaults.outlier;
  // Success-rate and failure-percentage ejection are not implemented: an explicit request for
  // them is refused. (Envoy enforces success rate by default; Istio always sends 0.)
  for (const f of [
    'enforcing_success_rate',
    'enforcing_local_origin_success_rate',
    'enforcing_failure_percentage',
    'enforcing_failure_percentage_local_origin',
  ] as const) {
    if (uint(o[f], 0) > 0)
      c.err(join(at, f), 'success-rate and failure-percentage ejection are not supported; set 0');
  }
  if (o.monitors?.length) c.err(join(at, 'monitors'), 'is not supported');
  const percent = (v: WireUInt | undefined, f: string, dflt: number) => {
    const n = uint(v, dflt);
    if (n > 100) c.err(join(at, f), 'must be 0..100');
    return Math.min(n, 100);
  };
  const baseEjectionTimeMs =
    positiveMs(o.base_ejection_time, join(at, 'base_ejection_time'), c) ?? d.baseEjectionTimeMs;
  const maxSet = positiveMs(o.max_ejection_time, join(at, 'max_ejection_time'), c);
  if (maxSet !== undefined && maxSet < baseEjectionTimeMs) {
    c.err(join(at, 'max_ejection_time'), 'must not be less than base_ejection_time');
  }
  return {
    consecutive5xx: uint(o.consecutive_5xx, d.consecutive5xx),
    consecutiveGatewayFailure: uint(o.consecutive_gateway_failure, d.consecutiveGatewayFailure),
    enforcingConsecutive5xxPercent: percent(
      o.enforcing_consecutive_5xx,
      'enforcing_consecutive_5xx',
      d.enforcingConsecutive5xxPercent,
    ),
    enforcingConsecutiveGatewayFailurePercent: percent(
      o.enforcing_consecutive_gateway_failure,
      'enforcing_consecutive_gateway_failure',
      d.enforcingConsecutiveGatewayFailurePercent,
    ),
    splitExternalLocalOriginErrors: o.split_external_local_origin_errors ?? false,
    consecutiveLocalOriginFailure: uint(o.consecutive_local_origin_failure, d.consecutiveLocalOriginFailure),
    enforcingConsecutiveLocalOriginFailurePercent: percent(
      o.enforcing_consecutive_local_origin_failure,
      'enforcing_consecutive_local_origin_failure',
      d.enforcingConsecutiveLocalOriginFailurePercent,
    ),
    intervalMs: positiveMs(o.interval, join(at, 'interval'), c) ?? d.intervalMs,
    baseEjectionTimeMs,
    maxEjectionTimeMs: maxSet ?? Math.max(d.maxEjectionTimeMs, baseEjectionTimeMs),
    maxEjectionTimeJitterMs:
      durationMs(o.max_ejection_time_jitter, join(at, 'max_ejection_time_jitter'), c) ?? 0,
    maxEjectionPercent: percent(o.max_ejection_percent, 'max_ejection_percent', d.maxEjectionPercent),
    alwaysEjectOneHost: bool(o.always_eject_one_host, false),
  };
}

function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

// ---------- ClusterLoadAssignment ----------

interface WireLbEndpoint {
  endpoint?: {
    address?: {
      socket_address?: {
        protocol?: string | number;
        address?: string;
        port_value?: number;
        named_port?: string;
        resolver_name?: string;
      };
      pipe?: object;
      envoy_internal_address?: object;
    };
    hostname?: string;
  };
  endpoint_name?: string;
  health_status?: string | number;
  load_balancing_weight?: WireUInt;
}
export interface WireClusterLoadAssignment {
  cluster_name?: string;
  endpoints?: {
    lb_endpoints?: WireLbEndpoint[];
    load_balancer_endpoints?: object;
    leds_cluster_locality_config?: object;
    priority?: number;
  }[];
  named_endpoints?: Record<string, object>;
  policy?: { drop_overloads?: object[]; overprovisioning_factor?: WireUInt };
}

const HEALTH: readonly HealthStatus[] = [
  'UNKNOWN',
  'HEALTHY',
  'UNHEALTHY',
  'DRAINING',
  'TIMEOUT',
  'DEGRADED',
];

/** A DNS cluster's `load_assignment` (required), its errors under that path. */
function decodeInlineAssignment(w: WireCluster, c: Collector): ClusterLoadAssignment | undefined {
  if (!w.load_assignment) {
    c.err('load_assignment', `is required for a ${String(w.type)} cluster`);
    return undefined;
  }
  const r = decodeAssignment(
    { cluster_name: w.name, ...(w.load_assignment as WireClusterLoadAssignment) },
    true,
  );
  if (r.ok) return r.value;
  for (const e of r.errors) c.err(join('load_assignment', e.path), e.message);
  return undefined;
}

/** RFC 1123 host name, as a DNS cluster's endpoint may be. */
const HOST_NAME =
  /^(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*\.?$/;

export function decodeClusterLoadAssignment(w: WireClusterLoadAssignment): Decoded<ClusterLoadAssignment> {
  return decodeAssignment(w, false);
}

/**
 * `byName`: the assignment of a DNS cluster, whose endpoint addresses may be host names (resolved
 * when a connection opens).
 */
function decodeAssignment(w: WireClusterLoadAssignment, byName: boolean): Decoded<ClusterLoadAssignment> {
  const c = new Collector(() => ({ ok: false, message: 'no Anys here' }));
  if (!w.cluster_name) c.err('cluster_name', 'is required');
  if (w.named_endpoints && Object.keys(w.named_endpoints).length)
    c.err('named_endpoints', 'is not supported');
  if (w.policy?.drop_overloads?.length) c.err('policy.drop_overloads', 'is not supported');
  const overprovisioningFactor = uint(
    w.policy?.overprovisioning_factor,
    ClusterDefaults.overprovisioningFactor,
  );
  if (overprovisioningFactor === 0) c.err('policy.overprovisioning_factor', 'must be greater than 0');
  const endpoints: LbEndpoint[] = [];
  const seen = new Set<string>();
  (w.endpoints ?? []).forEach((locality, i) => {
    const at = `endpoints[${i}]`;
    c.unsupported(locality, ['load_balancer_endpoints', 'leds_cluster_locality_config'], at);
    if (locality.priority) c.err(join(at, 'priority'), 'endpoint priorities are not supported');
    (locality.lb_endpoints ?? []).forEach((e, j) => {
      const p = `${at}.lb_endpoints[${j}]`;
      if (e.endpoint_name !== undefined) {
        c.err(join(p, 'endpoint_name'), 'is not supported');
        return;
      }
      const addr = e.endpoint?.address;
      const sa = addr?.socket_address;
      if (!sa) {
        c.err(
          join(p, 'endpoint.address.socket_address'),
          addr?.pipe || addr?.envoy_internal_address ? 'only socket addresses are supported' : 'is required',
        );
        return;
      }
      const sp = join(p, 'endpoint.address.socket_address');
      if (sa.protocol !== undefined && sa.protocol !== 'TCP' && sa.protocol !== 0)
        c.err(join(sp, 'protocol'), 'must be TCP');
      if (sa.named_port !== undefined) c.err(join(sp, 'named_port'), 'is not supported');
      if (sa.resolver_name) c.err(join(sp, 'resolver_name'), 'is not supported');
      const address = sa.address ?? '';
      if (!isIpAddress(address) && !(byName && HOST_NAME.test(address)))
        c.err(
          join(sp, 'address'),
          `${JSON.stringify(address)} is not an IP address${byName ? ' or host name' : ''}`,
        );
      const port = sa.port_value ?? 0;
      if (!(port >= 1 && port <= 65535)) c.err(join(sp, 'port_value'), 'must be 1..65535');
      const health =
        typeof e.health_status === 'number' ? HEALTH[e.health_status] : (e.health_status ?? 'UNKNOWN');
      if (!health || !HEALTH.includes(health as HealthStatus))
        c.err(join(p, 'health_status'), `unknown value ${e.health_status}`);
      const weight = uint(e.load_balancing_weight, 1);
      if (weight < 1) c.err(join(p, 'load_balancing_weight'), 'must be at least 1');
      const key = endpointKey({ address, port });
      if (seen.has(key)) c.err(p, `duplicate endpoint ${key}`);
      seen.add(key);
      endpoints.push({
        address,
        port,
        health: (health ?? 'UNKNOWN') as HealthStatus,
        weight,
        hostname: e.endpoint?.hostname ?? '',
      });
    });
  });
  if (c.errors.length) return { ok: false, errors: c.errors };
  return { ok: true, value: { clusterName: w.cluster_name ?? '', endpoints, overprovisioningFactor } };
}
