/**
 * The Envoy v3 messages the L7 translation emits, as plain objects in the protobufjs / proto-loader
 * shape of the protos that ship in `@grpc/grpc-js-xds` (deps/envoy-api): field names as in the .proto
 * (snake_case), enums by name, a oneof as whichever of its fields is set, `google.protobuf.Duration`
 * as `{seconds, nanos}`, wrappers as `{value}`, and every typed config as a `google.protobuf.Any`
 * whose `value` is already encoded. Only the fields the translation sets are declared; encode.ts
 * turns any of these into bytes with `Type.fromObject` + `Type.encode`.
 */

/** `google.protobuf.Any`: `type_url` is `type.googleapis.com/<full message name>`. */
export interface Any {
  readonly type_url: string;
  readonly value: Uint8Array;
}

/** `google.protobuf.Duration`. */
export interface Duration {
  readonly seconds: number;
  readonly nanos: number;
}

export interface UInt32Value {
  readonly value: number;
}

export interface BoolValue {
  readonly value: boolean;
}

// ---- envoy.config.core.v3 ----

export interface SocketAddress {
  readonly address: string;
  readonly port_value: number;
}

export interface Address {
  readonly socket_address: SocketAddress;
}

/** `ConfigSource` with `ads: {}` and V3 resources: the resource comes over the same ADS stream. */
export interface AdsConfigSource {
  readonly ads: Record<string, never>;
  readonly resource_api_version: 'V3';
}

export type HeaderAppendAction = 'APPEND_IF_EXISTS_OR_ADD' | 'OVERWRITE_IF_EXISTS_OR_ADD';

export interface HeaderValueOption {
  readonly header: { readonly key: string; readonly value: string };
  readonly append_action: HeaderAppendAction;
}

export type FractionalDenominator = 'HUNDRED' | 'TEN_THOUSAND' | 'MILLION';

/** `envoy.type.v3.FractionalPercent`. */
export interface FractionalPercent {
  readonly numerator: number;
  readonly denominator: FractionalDenominator;
}

export interface RuntimeFractionalPercent {
  readonly default_value: FractionalPercent;
}

// ---- envoy.type.matcher.v3 ----

export interface RegexMatcher {
  readonly regex: string;
}

/** `StringMatcher`: exactly one of exact, prefix, suffix, contains, safe_regex. */
export interface StringMatcher {
  readonly exact?: string;
  readonly prefix?: string;
  readonly suffix?: string;
  readonly contains?: string;
  readonly safe_regex?: RegexMatcher;
  readonly ignore_case?: boolean;
}

export interface MetadataMatcher {
  readonly filter: string;
  readonly path: readonly { readonly key: string }[];
  readonly value: { readonly string_match: StringMatcher };
  readonly invert?: boolean;
}

// ---- envoy.config.route.v3 ----

export interface HeaderMatcher {
  readonly name: string;
  readonly string_match?: StringMatcher;
  readonly present_match?: boolean;
  readonly invert_match?: boolean;
  readonly treat_missing_header_as_empty?: boolean;
}

export interface QueryParameterMatcher {
  readonly name: string;
  readonly string_match?: StringMatcher;
  readonly present_match?: boolean;
}

/** `RouteMatch`: exactly one of prefix, path, safe_regex. */
export interface RouteMatch {
  readonly prefix?: string;
  readonly path?: string;
  readonly safe_regex?: RegexMatcher;
  readonly case_sensitive?: BoolValue;
  readonly headers?: readonly HeaderMatcher[];
  readonly query_parameters?: readonly QueryParameterMatcher[];
  readonly dynamic_metadata?: readonly MetadataMatcher[];
}

export interface ClusterWeight {
  readonly name: string;
  readonly weight: UInt32Value;
  readonly request_headers_to_add?: readonly HeaderValueOption[];
  readonly request_headers_to_remove?: readonly string[];
  readonly response_headers_to_add?: readonly HeaderValueOption[];
  readonly response_headers_to_remove?: readonly string[];
  readonly host_rewrite_literal?: string;
}

export interface RetryPolicy {
  readonly retry_on: string;
  readonly num_retries: UInt32Value;
  readonly per_try_timeout?: Duration;
  readonly retriable_status_codes?: readonly number[];
  readonly retry_host_predicate?: readonly { readonly name: string; readonly typed_config: Any }[];
  readonly host_selection_retry_max_attempts: number;
  readonly retry_back_off: { readonly base_interval: Duration };
}

/** `RouteAction.HashPolicy`: exactly one of header, cookie, connection_properties, query_parameter. */
export interface HashPolicy {
  readonly header?: { readonly header_name: string };
  readonly cookie?: {
    readonly name: string;
    readonly ttl?: Duration;
    readonly path?: string;
    readonly attributes?: readonly { readonly name: string; readonly value: string }[];
  };
  readonly connection_properties?: { readonly source_ip: boolean };
  readonly query_parameter?: { readonly name: string };
}

export interface RequestMirrorPolicy {
  readonly cluster: string;
  readonly runtime_fraction: RuntimeFractionalPercent;
  readonly trace_sampled: BoolValue;
}

/** `RouteAction`: exactly one of cluster, weighted_clusters. */
export interface RouteAction {
  readonly cluster?: string;
  readonly weighted_clusters?: { readonly clusters: readonly ClusterWeight[] };
  readonly prefix_rewrite?: string;
  readonly regex_rewrite?: { readonly pattern: RegexMatcher; readonly substitution: string };
  readonly host_rewrite_literal?: string;
  /** 0s disables Envoy's 15 s default (Istio's default: no timeout). */
  readonly timeout: Duration;
  /** The same value, which gRPC clients read as the call deadline (gRFC A31). */
  readonly max_stream_duration: { readonly max_stream_duration: Duration };
  readonly retry_policy?: RetryPolicy;
  readonly request_mirror_policies?: readonly RequestMirrorPolicy[];
  readonly hash_policy?: readonly HashPolicy[];
  /** What a request gets when the chosen cluster does not exist (Envoy's default: 503). */
  readonly cluster_not_found_response_code?: 'SERVICE_UNAVAILABLE' | 'NOT_FOUND' | 'INTERNAL_SERVER_ERROR';
}

export type RedirectResponseCode =
  'MOVED_PERMANENTLY' | 'FOUND' | 'SEE_OTHER' | 'TEMPORARY_REDIRECT' | 'PERMANENT_REDIRECT';

export interface RedirectAction {
  readonly scheme_redirect?: string;
  readonly host_redirect?: string;
  readonly port_redirect?: number;
  readonly path_redirect?: string;
  readonly prefix_rewrite?: string;
  readonly response_code: RedirectResponseCode;
}

export interface DirectResponseAction {
  readonly status: number;
  readonly body?: { readonly inline_string: string } | { readonly inline_bytes: Uint8Array };
}

/** `Route`: exactly one of route, redirect, direct_response. */
export interface Route {
  readonly name?: string;
  readonly match: RouteMatch;
  readonly route?: RouteAction;
  readonly redirect?: RedirectAction;
  readonly direct_response?: DirectResponseAction;
  readonly decorator?: { readonly operation: string };
  /** Keyed by HTTP filter name; values are Any (HTTPFault, or a FilterConfig wrapping CorsPolicy). */
  readonly typed_per_filter_config?: Readonly<Record<string, Any>>;
  readonly request_headers_to_add?: readonly HeaderValueOption[];
  readonly request_headers_to_remove?: readonly string[];
  readonly response_headers_to_add?: readonly HeaderValueOption[];
  readonly response_headers_to_remove?: readonly string[];
}

export interface VirtualHost {
  readonly name: string;
  readonly domains: readonly string[];
  readonly routes: readonly Route[];
}

export interface RouteConfiguration {
  readonly name: string;
  readonly virtual_hosts: readonly VirtualHost[];
}

// ---- envoy.config.rbac.v3 (the RBAC HTTP filter's rules) ----

/** `envoy.config.core.v3.CidrRange`. */
export interface CidrRange {
  readonly address_prefix: string;
  readonly prefix_len: UInt32Value;
}

/** `Permission`: exactly one field. */
export interface RbacPermission {
  readonly any?: boolean;
  readonly and_rules?: { readonly rules: readonly RbacPermission[] };
  readonly or_rules?: { readonly rules: readonly RbacPermission[] };
  readonly not_rule?: RbacPermission;
  readonly header?: HeaderMatcher;
  readonly url_path?: { readonly path: StringMatcher };
  readonly destination_ip?: CidrRange;
  readonly destination_port?: number;
  readonly requested_server_name?: StringMatcher;
}

/** `Principal`: exactly one field. */
export interface RbacPrincipal {
  readonly any?: boolean;
  readonly and_ids?: { readonly ids: readonly RbacPrincipal[] };
  readonly or_ids?: { readonly ids: readonly RbacPrincipal[] };
  readonly not_id?: RbacPrincipal;
  readonly authenticated?: { readonly principal_name: StringMatcher };
  readonly direct_remote_ip?: CidrRange;
  readonly remote_ip?: CidrRange;
  readonly header?: HeaderMatcher;
}

export interface RbacPolicy {
  readonly permissions: readonly RbacPermission[];
  readonly principals: readonly RbacPrincipal[];
}

export type RbacAction = 'ALLOW' | 'DENY' | 'LOG';

/** `envoy.config.rbac.v3.RBAC`: policies by name. */
export interface RbacRules {
  readonly action: RbacAction;
  readonly policies: Readonly<Record<string, RbacPolicy>>;
}

/** `envoy.extensions.filters.http.rbac.v3.RBAC`. */
export interface RbacFilterConfig {
  readonly rules?: RbacRules;
  readonly shadow_rules?: RbacRules;
  readonly shadow_rules_stat_prefix?: string;
}

/** `envoy.extensions.filters.network.rbac.v3.RBAC`: the same rules; `stat_prefix` is required. */
export interface NetworkRbacFilterConfig extends RbacFilterConfig {
  readonly stat_prefix: string;
}

// ---- envoy.config.listener.v3 ----

export interface HttpFilter {
  readonly name: string;
  readonly typed_config: Any;
  readonly is_optional?: boolean;
}

/** `envoy.config.listener.v3.Filter`: a network filter of a filter chain. */
export interface NetworkFilter {
  readonly name: string;
  readonly typed_config: Any;
}

export interface Listener {
  readonly name: string;
  /** HTTP ports: an API listener holding an HttpConnectionManager (gRFC A27). */
  readonly api_listener?: { readonly api_listener: Any };
  /** TCP ports: where the service is reached, and a tcp_proxy filter chain. */
  readonly address?: Address;
  readonly additional_addresses?: readonly { readonly address: Address }[];
  readonly filter_chains?: readonly { readonly filters: readonly NetworkFilter[] }[];
}

// ---- envoy.config.cluster.v3 ----

export type LbPolicy = 'ROUND_ROBIN' | 'LEAST_REQUEST' | 'RANDOM' | 'RING_HASH' | 'MAGLEV';

export interface CircuitBreakerThresholds {
  readonly max_connections: UInt32Value;
  readonly max_pending_requests: UInt32Value;
  readonly max_requests: UInt32Value;
  readonly max_retries: UInt32Value;
  readonly retry_budget?: {
    readonly budget_percent: { readonly value: number };
    readonly min_retry_concurrency: UInt32Value;
    readonly budget_interval?: Duration;
  };
}

export interface OutlierDetection {
  readonly consecutive_5xx?: UInt32Value;
  readonly enforcing_consecutive_5xx?: UInt32Value;
  readonly consecutive_gateway_failure?: UInt32Value;
  readonly enforcing_consecutive_gateway_failure?: UInt32Value;
  readonly interval?: Duration;
  readonly base_ejection_time?: Duration;
  readonly max_ejection_percent?: UInt32Value;
  readonly enforcing_success_rate: UInt32Value;
  readonly split_external_local_origin_errors?: boolean;
  readonly consecutive_local_origin_failure?: UInt32Value;
  readonly enforcing_consecutive_local_origin_failure?: UInt32Value;
  readonly enforcing_local_origin_success_rate?: UInt32Value;
}

export interface Cluster {
  readonly name: string;
  /**
   * EDS; (a ServiceEntry resolved by DNS) STRICT_DNS / LOGICAL_DNS with `load_assignment`; or
   * ORIGINAL_DST, a workload waypoint's encap cluster (direct.ts), with neither.
   */
  readonly type: 'EDS' | 'STRICT_DNS' | 'LOGICAL_DNS' | 'ORIGINAL_DST';
  readonly eds_cluster_config?: { readonly eds_config: AdsConfigSource; readonly service_name: string };
  /** A DNS cluster's endpoints, host names the proxy resolves when it connects. */
  readonly load_assignment?: ClusterLoadAssignment;
  readonly connect_timeout: Duration;
  /** What Envoy and Ambit's waypoint apply; CLUSTER_PROVIDED for ORIGINAL_DST only. */
  readonly lb_policy: LbPolicy | 'CLUSTER_PROVIDED';
  /** ORIGINAL_DST: how long an unused destination host is kept. */
  readonly cleanup_interval?: Duration;
  readonly ring_hash_lb_config?: { readonly minimum_ring_size: { readonly value: number } };
  readonly maglev_lb_config?: { readonly table_size: { readonly value: number } };
  /**
   * The same policy as typed extensions, then a fallback every gRPC client has: grpc-js rejects a
   * Cluster whose lb_policy is LEAST_REQUEST, RANDOM or MAGLEV unless this field offers a policy it
   * knows (gRFC A52). Envoy takes the first entry, which is always the lb_policy above.
   */
  readonly load_balancing_policy?: {
    readonly policies: readonly {
      readonly typed_extension_config: { readonly name: string; readonly typed_config: Any };
    }[];
  };
  readonly circuit_breakers: { readonly thresholds: readonly CircuitBreakerThresholds[] };
  readonly outlier_detection?: OutlierDetection;
  readonly common_lb_config?: { readonly healthy_panic_threshold: { readonly value: number } };
  readonly upstream_connection_options?: {
    readonly tcp_keepalive: {
      readonly keepalive_probes?: UInt32Value;
      readonly keepalive_time?: UInt32Value;
      readonly keepalive_interval?: UInt32Value;
    };
  };
  /** `envoy.extensions.upstreams.http.v3.HttpProtocolOptions` (HTTP ports only). */
  readonly typed_extension_protocol_options?: Readonly<Record<string, Any>>;
  /** `envoy.transport_sockets.tls` with an UpstreamTlsContext: TLS origination (DestinationRule tls). */
  readonly transport_socket?: { readonly name: string; readonly typed_config: Any };
}

// ---- envoy.extensions.transport_sockets.tls.v3 ----

/** A file on the proxy (config.core.v3.DataSource `filename`). */
export interface FileSource {
  readonly filename: string;
}

export interface UpstreamTlsContext {
  readonly common_tls_context: {
    readonly tls_certificates?: readonly {
      readonly certificate_chain: FileSource;
      readonly private_key: FileSource;
    }[];
    /** Absent: the server's certificate is not verified (Envoy's rule). */
    readonly validation_context?: {
      readonly trusted_ca?: FileSource;
      /** The proxy's system roots, when no trusted_ca is given. */
      readonly system_root_certs?: Record<string, never>;
      readonly crl?: FileSource;
      /** Any SAN of any type equal to one of these. */
      readonly match_subject_alt_names?: readonly { readonly exact: string }[];
    };
    readonly alpn_protocols?: readonly string[];
  };
  readonly sni?: string;
}

// ---- envoy.config.endpoint.v3 ----

export type HealthStatus = 'HEALTHY' | 'UNHEALTHY';

export interface LbEndpoint {
  readonly endpoint: {
    readonly address: Address;
    readonly additional_addresses?: readonly { readonly address: Address }[];
  };
  readonly health_status: HealthStatus;
  readonly load_balancing_weight: UInt32Value;
}

export interface ClusterLoadAssignment {
  readonly cluster_name: string;
  readonly endpoints: readonly {
    /** Empty, but present: gRPC clients reject a locality that is not set. */
    readonly locality: Record<string, never>;
    readonly lb_endpoints: readonly LbEndpoint[];
    /** The sum of the endpoint weights: gRPC clients ignore a locality without a weight. */
    readonly load_balancing_weight: UInt32Value;
  }[];
}
