/**
 * The waypoint's internal L7 model: what the Envoy v3 Listener, RouteConfiguration, Cluster and
 * ClusterLoadAssignment resources (DESIGN.md §3 "L7 xDS", names in l7-names.ts) mean once
 * l7-decode.ts has validated them. Plain readonly data with Envoy's defaults already applied, so
 * the router and the cluster picker never look at a proto. Durations are milliseconds, regexes
 * are RE2 source text (l7-regex.ts compiles them).
 */

// ---------- shared ----------

/** A probability as Envoy writes it: `numerator / denominator`. */
export interface Fraction {
  readonly numerator: number;
  readonly denominator: 100 | 10_000 | 1_000_000;
}

export const ALWAYS: Fraction = { numerator: 100, denominator: 100 };

/** `envoy.type.matcher.v3.StringMatcher`; `regex` must match the whole value (RE2 full match). */
export type StringMatcher =
  | {
      readonly kind: 'exact' | 'prefix' | 'suffix' | 'contains';
      readonly value: string;
      /** ASCII case-insensitive comparison. */
      readonly ignoreCase: boolean;
    }
  | { readonly kind: 'regex'; readonly regex: string };

/** Envoy's HeaderValueOption append actions. */
export const HeaderAppendAction = {
  /** Add another value (the header may end up with several). Envoy's default. */
  AppendIfExistsOrAdd: 'append-if-exists-or-add',
  /** Add only if the header is absent before this stage runs. */
  AddIfAbsent: 'add-if-absent',
  /** Replace every value, or add. */
  OverwriteIfExistsOrAdd: 'overwrite-if-exists-or-add',
  /** Replace every value only if the header is present. */
  OverwriteIfExists: 'overwrite-if-exists',
} as const;
export type HeaderAppendAction = (typeof HeaderAppendAction)[keyof typeof HeaderAppendAction];

export interface HeaderToAdd {
  /** Lower-case; never a pseudo-header or `host` (Envoy refuses to modify those). */
  readonly name: string;
  /** Literal value (Envoy's `%%` escape already resolved). */
  readonly value: string;
  readonly action: HeaderAppendAction;
  /** Envoy drops an added header whose value is empty unless this is set. */
  readonly keepEmptyValue: boolean;
}

/**
 * One level's header mutation (weighted cluster, route, virtual host or route configuration).
 * Envoy applies a level as: remove, then every overwrite, then every append; `add-if-absent` and
 * `overwrite-if-exists` look at the headers as they were before the level started.
 */
export interface HeaderMutations {
  readonly add: readonly HeaderToAdd[];
  readonly remove: readonly string[];
}

export const NO_HEADER_MUTATIONS: HeaderMutations = { add: [], remove: [] };

/** Per-route (or per-virtual-host) setting of an HTTP filter, from `typed_per_filter_config`. */
export type FilterSetting<T> =
  | { readonly kind: 'config'; readonly config: T }
  /** `FilterConfig{disabled: true}`: the filter does nothing for this route. */
  | { readonly kind: 'disabled' }
  | undefined;

// ---------- listener ----------

export const HttpFilterKind = { Fault: 'fault', Cors: 'cors', Rbac: 'rbac', Router: 'router' } as const;
export type HttpFilterKind = (typeof HttpFilterKind)[keyof typeof HttpFilterKind];

export interface HttpFilter {
  /** The name route configurations use as the `typed_per_filter_config` key. */
  readonly name: string;
  readonly kind: HttpFilterKind;
  /** The RBAC filter's configuration; set exactly when `kind` is `rbac`. */
  readonly rbac?: RbacConfig;
}

// ---------- RBAC (envoy.extensions.filters.http.rbac.v3.RBAC) ----------

/** What a matching policy does: ALLOW and DENY enforce, LOG only marks the request (Istio's AUDIT). */
export const RbacAction = { Allow: 'ALLOW', Deny: 'DENY', Log: 'LOG' } as const;
export type RbacAction = (typeof RbacAction)[keyof typeof RbacAction];

/** `envoy.config.core.v3.CidrRange`: the address as written (IPv4 or IPv6) and its prefix length. */
export interface CidrRange {
  readonly address: string;
  readonly prefixLength: number;
}

/** `envoy.config.rbac.v3.Permission`: what the request does (the parts the waypoint evaluates). */
export type RbacPermission =
  | { readonly kind: 'any' }
  | { readonly kind: 'and' | 'or'; readonly rules: readonly RbacPermission[] }
  | { readonly kind: 'not'; readonly rule: RbacPermission }
  /** Request headers, pseudo-headers (`:method`, `:path`, `:authority`) included. */
  | { readonly kind: 'header'; readonly header: HeaderMatcher }
  /** The path without query or fragment. */
  | { readonly kind: 'url-path'; readonly matcher: StringMatcher }
  | { readonly kind: 'destination-ip'; readonly cidr: CidrRange }
  | { readonly kind: 'destination-port'; readonly port: number }
  /** Half-open `[start, end)`. */
  | { readonly kind: 'destination-port-range'; readonly start: number; readonly end: number }
  | { readonly kind: 'requested-server-name'; readonly matcher: StringMatcher };

/** `envoy.config.rbac.v3.Principal`: who sends the request (the parts the waypoint evaluates). */
export type RbacPrincipal =
  | { readonly kind: 'any' }
  | { readonly kind: 'and' | 'or'; readonly ids: readonly RbacPrincipal[] }
  | { readonly kind: 'not'; readonly id: RbacPrincipal }
  /**
   * The peer's certificate: without a matcher, any mTLS peer; with one, its URI SAN (the SPIFFE
   * identity, `spiffe://…`) must match.
   */
  | { readonly kind: 'authenticated'; readonly principalName: StringMatcher | undefined }
  /** The client's own address (`direct_remote_ip`, and the deprecated `source_ip`). */
  | { readonly kind: 'direct-remote-ip'; readonly cidr: CidrRange }
  /** The original client's address as x-forwarded-for tells it (else the direct one). */
  | { readonly kind: 'remote-ip'; readonly cidr: CidrRange }
  | { readonly kind: 'header'; readonly header: HeaderMatcher }
  | { readonly kind: 'url-path'; readonly matcher: StringMatcher };

/** One named policy: it matches when any permission and any principal match. */
export interface RbacPolicy {
  /** Istio's `ns[<namespace>]-policy[<name>]-rule[<index>]`. */
  readonly name: string;
  readonly permissions: readonly RbacPermission[];
  readonly principals: readonly RbacPrincipal[];
}

/** `envoy.config.rbac.v3.RBAC`: policies in name order (Envoy's map order does not matter). */
export interface RbacRules {
  readonly action: RbacAction;
  readonly policies: readonly RbacPolicy[];
}

export interface RbacConfig {
  /** Enforced; undefined: the filter lets everything through. */
  readonly rules: RbacRules | undefined;
  /** Evaluated and logged, never enforced (Istio's `istio.io/dry-run`). */
  readonly shadowRules: RbacRules | undefined;
  readonly shadowRulesStatPrefix: string;
}

/** An API listener: HttpConnectionManager with RDS over ADS. */
export interface L7Listener {
  readonly name: string;
  /** '' for a TCP listener. */
  readonly routeConfigName: string;
  /** In order; the last one is always the router. Empty for a TCP listener. */
  readonly httpFilters: readonly HttpFilter[];
  /**
   * A TCP port (a filter chain with one `tcp_proxy` filter): where connections go, by weight (a
   * VirtualService `tcp` route such as an 80/20 split). Undefined for an HTTP (API) listener.
   */
  readonly tcp?: readonly TcpTarget[];
  /** The `tcp_proxy` filter's own settings; set exactly when `tcp` is. */
  readonly tcpProxy?: TcpProxySettings;
  /**
   * A TCP listener's network RBAC filters (`envoy.filters.network.rbac`: AuthorizationPolicies
   * attached to the service or the waypoint), in their order before the tcp_proxy; undefined or
   * empty when no policy applies.
   */
  readonly networkRbac?: readonly NetworkRbacFilter[];
}

/** `envoy.extensions.filters.network.rbac.v3.RBAC`: the rules as the HTTP filter has them. */
export interface NetworkRbacFilter {
  readonly name: string;
  readonly rbac: RbacConfig;
}

/** `envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy`, the parts the waypoint honours. */
export interface TcpProxySettings {
  /**
   * `idle_timeout` when the filter sets it (0 disables); undefined: the chosen cluster's idle
   * timeout applies, whose default is Envoy's tcp_proxy default too (1 h).
   */
  readonly idleTimeoutMs: number | undefined;
  /** Hosts tried before the connection fails (`max_connect_attempts`, Envoy default 1). */
  readonly maxConnectAttempts: number;
  /** `hash_policy: [{source_ip: {}}]`: RING_HASH and MAGLEV hash the client's address. */
  readonly hashSourceIp: boolean;
}

/** One cluster a TCP listener sends connections to, and its share. */
export interface TcpTarget {
  readonly cluster: string;
  readonly weight: number;
}

// ---------- routes ----------

export type PathMatch =
  | { readonly kind: 'prefix' | 'exact'; readonly value: string }
  | { readonly kind: 'regex'; readonly regex: string };

export type HeaderMatch =
  | { readonly kind: 'string'; readonly matcher: StringMatcher }
  | { readonly kind: 'present'; readonly present: boolean }
  /** Half-open `[start, end)` over the header parsed as an integer. */
  | { readonly kind: 'range'; readonly start: number; readonly end: number };

export interface HeaderMatcher {
  /**
   * Lower-case header name; `:method`, `:scheme`, `:authority` and `:path` read the request line.
   * Several values of one header are matched as their comma-joined string, as Envoy does.
   */
  readonly name: string;
  readonly match: HeaderMatch;
  readonly invert: boolean;
  readonly treatMissingAsEmpty: boolean;
}

export interface QueryParameterMatcher {
  readonly name: string;
  /** Matched against the first value (percent-decoded); undefined: presence is enough. */
  readonly matcher: StringMatcher | undefined;
}

/** A fact about the real client from the `ambit.source` dynamic metadata (l7-names.ts). */
export type SourceField = { readonly kind: 'namespace' } | { readonly kind: 'label'; readonly label: string };

export interface SourceMatcher {
  readonly field: SourceField;
  readonly matcher: StringMatcher;
  /** A missing value never matches, so an inverted matcher matches it. */
  readonly invert: boolean;
}

export interface RouteMatch {
  readonly path: PathMatch;
  /** Applies to prefix and exact path matches only (Envoy's `case_sensitive`, default true). */
  readonly caseSensitive: boolean;
  readonly headers: readonly HeaderMatcher[];
  readonly queryParameters: readonly QueryParameterMatcher[];
  readonly source: readonly SourceMatcher[];
  /** `grpc: {}`: only requests whose content-type starts with `application/grpc`. */
  readonly grpcOnly: boolean;
  /** `runtime_fraction`: the route matches only this share of otherwise matching requests. */
  readonly fraction: Fraction | undefined;
}

export const RetryOn = [
  '5xx',
  'gateway-error',
  'reset',
  'reset-before-request',
  'connect-failure',
  'envoy-ratelimited',
  'retriable-4xx',
  'refused-stream',
  'retriable-status-codes',
  'retriable-headers',
  'http3-post-connect-failure',
  'cancelled',
  'deadline-exceeded',
  'internal',
  'resource-exhausted',
  'unavailable',
] as const;
export type RetryOn = (typeof RetryOn)[number];

export interface RetryPolicy {
  readonly retryOn: readonly RetryOn[];
  /** Retries after the first try (Envoy's default when a policy exists: 1). */
  readonly numRetries: number;
  /** 0: each try may use the whole route timeout. */
  readonly perTryTimeoutMs: number;
  readonly retriableStatusCodes: readonly number[];
  /** `retry_host_predicate: previous_hosts`: a retry avoids the hosts already tried. */
  readonly retryPreviousHosts: boolean;
  /** How many times host selection may re-pick to avoid a previous host (Envoy default 1). */
  readonly hostSelectionRetryMaxAttempts: number;
  /** Exponential back-off with full jitter; Envoy's defaults are 25 ms and 10 × base. */
  readonly backOff: { readonly baseIntervalMs: number; readonly maxIntervalMs: number };
}

export type HashPolicy = (
  | { readonly kind: 'header'; readonly name: string }
  | {
      readonly kind: 'cookie';
      readonly name: string;
      /** Set: when the cookie is missing the waypoint generates one (0 = session cookie). */
      readonly ttlMs: number | undefined;
      readonly path: string;
    }
  | { readonly kind: 'source-ip' }
  | { readonly kind: 'query-parameter'; readonly name: string }
) & { readonly terminal: boolean };

export interface MirrorPolicy {
  readonly cluster: string;
  /** Undefined: every request is mirrored. */
  readonly fraction: Fraction | undefined;
  /** Otherwise the mirror's authority gets `-shadow` appended to its host part. */
  readonly disableShadowHostSuffix: boolean;
}

export interface ClusterWeight {
  readonly name: string;
  readonly weight: number;
  /** Applied before the route's own mutations (Envoy's order). */
  readonly requestHeaders: HeaderMutations;
  readonly responseHeaders: HeaderMutations;
  readonly hostRewrite: string | undefined;
}

export interface RegexRewrite {
  readonly regex: string;
  /** RE2 substitution: `\1`…`\9` are capture groups, `\0` the whole match, `\\` a backslash. */
  readonly substitution: string;
}

export interface RouteAction {
  readonly kind: 'route';
  /** One entry of weight 1 for a plain `cluster`; `weighted` tells the two apart. */
  readonly clusters: readonly ClusterWeight[];
  readonly weighted: boolean;
  /** 0: no timeout. Envoy's default when the field is absent: 15 s. */
  readonly timeoutMs: number;
  readonly maxStreamDurationMs: number | undefined;
  /** Set: honour the client's `grpc-timeout` header, capped at this (0 = uncapped). */
  readonly grpcTimeoutHeaderMaxMs: number | undefined;
  readonly retryPolicy: RetryPolicy | undefined;
  /** Replaces the matched prefix (or the whole path of an exact or regex match). */
  readonly prefixRewrite: string | undefined;
  readonly regexRewrite: RegexRewrite | undefined;
  readonly hostRewrite: string | undefined;
  readonly mirrors: readonly MirrorPolicy[];
  readonly hashPolicies: readonly HashPolicy[];
  /** Enabled upgrade types (e.g. `websocket`). */
  readonly upgrades: readonly string[];
  /** Status when the chosen cluster does not exist (Envoy default 503). */
  readonly clusterNotFoundStatus: 503 | 404 | 500;
}

export type RedirectPath =
  | { readonly kind: 'path'; readonly value: string }
  | { readonly kind: 'prefix'; readonly value: string }
  | { readonly kind: 'regex'; readonly rewrite: RegexRewrite };

export interface RedirectAction {
  readonly kind: 'redirect';
  /** `https_redirect` is `https`; undefined keeps the request's scheme. */
  readonly scheme: string | undefined;
  readonly host: string | undefined;
  readonly port: number | undefined;
  readonly path: RedirectPath | undefined;
  readonly status: 301 | 302 | 303 | 307 | 308;
  readonly stripQuery: boolean;
}

export interface DirectResponseAction {
  readonly kind: 'direct-response';
  readonly status: number;
  readonly body: Uint8Array | undefined;
}

export type Action = RouteAction | RedirectAction | DirectResponseAction;

/** `envoy.extensions.filters.http.fault.v3.HTTPFault`, the parts the waypoint honours. */
export interface FaultPolicy {
  readonly delay: { readonly fixedDelayMs: number; readonly percentage: Fraction } | undefined;
  readonly abort:
    | (({ readonly httpStatus: number } | { readonly grpcStatus: number }) & {
        readonly percentage: Fraction;
      })
    | undefined;
}

/**
 * The per-route CORS policy (either proto of the shipped API). Envoy merges the policies of the
 * route, its virtual host and the route configuration field by field, the most specific set value
 * winning, so unset fields stay undefined (or empty) here.
 */
export interface CorsPolicy {
  readonly allowOrigins: readonly StringMatcher[];
  readonly allowMethods: string;
  readonly allowHeaders: string;
  readonly exposeHeaders: string;
  readonly maxAge: string;
  readonly allowCredentials: boolean | undefined;
  readonly allowPrivateNetworkAccess: boolean | undefined;
  /** Preflights from origins that are not allowed go to the upstream (Envoy default true). */
  readonly forwardNotMatchingPreflights: boolean | undefined;
  /** `filter_enabled`; undefined: always. */
  readonly enabled: Fraction | undefined;
}

export interface Route {
  readonly name: string;
  readonly match: RouteMatch;
  readonly action: Action;
  readonly fault: FilterSetting<FaultPolicy>;
  readonly cors: FilterSetting<CorsPolicy>;
  readonly requestHeaders: HeaderMutations;
  readonly responseHeaders: HeaderMutations;
}

export interface VirtualHost {
  readonly name: string;
  /** Lower-case: exact names (with or without port), `*.suffix`/`*suffix`, `prefix*`, or `*`. */
  readonly domains: readonly string[];
  readonly routes: readonly Route[];
  readonly requestHeaders: HeaderMutations;
  readonly responseHeaders: HeaderMutations;
  /** Used by routes that have none of their own. */
  readonly retryPolicy: RetryPolicy | undefined;
  readonly fault: FilterSetting<FaultPolicy>;
  readonly cors: FilterSetting<CorsPolicy>;
}

export interface RouteConfiguration {
  readonly name: string;
  readonly virtualHosts: readonly VirtualHost[];
  readonly requestHeaders: HeaderMutations;
  readonly responseHeaders: HeaderMutations;
  /** Envoy's `most_specific_header_mutations_wins` (default: the least specific level wins). */
  readonly mostSpecificHeaderMutationsWins: boolean;
  readonly ignorePortInHostMatching: boolean;
  readonly fault: FilterSetting<FaultPolicy>;
  readonly cors: FilterSetting<CorsPolicy>;
}

// ---------- clusters ----------

export const LbPolicy = {
  RoundRobin: 'ROUND_ROBIN',
  LeastRequest: 'LEAST_REQUEST',
  Random: 'RANDOM',
  RingHash: 'RING_HASH',
  Maglev: 'MAGLEV',
} as const;
export type LbPolicy = (typeof LbPolicy)[keyof typeof LbPolicy];

/** Cluster-wide limits (Envoy's DEFAULT-priority thresholds; defaults 1024/1024/1024/3). */
export interface CircuitBreakers {
  readonly maxConnections: number;
  readonly maxPendingRequests: number;
  readonly maxRequests: number;
  readonly maxRetries: number;
}

export interface OutlierDetection {
  readonly consecutive5xx: number;
  readonly consecutiveGatewayFailure: number;
  readonly enforcingConsecutive5xxPercent: number;
  readonly enforcingConsecutiveGatewayFailurePercent: number;
  /** Set: connect failures and timeouts count apart from HTTP statuses. */
  readonly splitExternalLocalOriginErrors: boolean;
  readonly consecutiveLocalOriginFailure: number;
  readonly enforcingConsecutiveLocalOriginFailurePercent: number;
  readonly intervalMs: number;
  readonly baseEjectionTimeMs: number;
  readonly maxEjectionTimeMs: number;
  readonly maxEjectionTimeJitterMs: number;
  readonly maxEjectionPercent: number;
  readonly alwaysEjectOneHost: boolean;
}

export const UpstreamProtocol = { Http1: 'http1', Http2: 'http2', Downstream: 'downstream' } as const;
export type UpstreamProtocol = (typeof UpstreamProtocol)[keyof typeof UpstreamProtocol];

export interface Cluster {
  readonly name: string;
  /** The ClusterLoadAssignment to use (EDS service name, defaults to the cluster name). */
  readonly edsServiceName: string;
  /**
   * A STRICT_DNS / LOGICAL_DNS cluster's endpoints, given inline instead of over EDS; their addresses
   * may be host names, resolved when a connection opens.
   */
  readonly dnsAssignment?: ClusterLoadAssignment;
  /**
   * Set for an ORIGINAL_DST cluster (a workload waypoint's `encap`): it has no endpoints, and each
   * connection or request goes to the original destination of the tunnel it came in on.
   */
  readonly originalDst?: OriginalDstSettings | undefined;
  readonly lbPolicy: LbPolicy;
  /** LEAST_REQUEST: hosts sampled per pick (default 2). */
  readonly leastRequestChoiceCount: number;
  readonly ringHash: { readonly minimumRingSize: number; readonly maximumRingSize: number };
  /** MAGLEV: a prime (default 65537). */
  readonly maglevTableSize: number;
  readonly connectTimeoutMs: number;
  readonly circuitBreakers: CircuitBreakers;
  /** 0: unlimited. */
  readonly maxRequestsPerConnection: number;
  /** Idle upstream connections close after this (Envoy default 1 h; 0 disables). */
  readonly idleTimeoutMs: number;
  readonly upstreamProtocol: UpstreamProtocol;
  /** Below this share of healthy hosts the picker balances over all of them (default 50). */
  readonly healthyPanicThresholdPercent: number;
  readonly outlierDetection: OutlierDetection | undefined;
  /** TLS originated to the endpoints (inside HBONE for mesh endpoints); absent: none. */
  readonly tls?: UpstreamTls | undefined;
}

/** PEM text from a file on the waypoint (read when a connection opens) or given inline. */
export type PemSource =
  { readonly kind: 'file'; readonly path: string } | { readonly kind: 'inline'; readonly pem: string };

export type TlsVersion = 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';

/** A SAN the server's certificate must carry: of `type`, or of any type when undefined. */
export interface SanMatcher {
  readonly type: 'EMAIL' | 'DNS' | 'URI' | 'IP_ADDRESS' | undefined;
  readonly matcher: StringMatcher;
}

/** Envoy's UpstreamTlsContext (plus the cluster's auto_sni / auto_san_validation), as the waypoint applies it. */
export interface UpstreamTls {
  /** Sent as SNI ('' none), unless autoSni finds a host. */
  readonly sni: string;
  /** The SNI is the upstream request's host, without its port (HttpProtocolOptions auto_sni). */
  readonly autoSni: boolean;
  /** With no SAN matchers, the certificate must be valid for that host (auto_san_validation). */
  readonly autoSanValidation: boolean;
  /** undefined: the server's certificate is not verified (Envoy: no trusted CA configured). */
  readonly verify:
    | {
        /** undefined: the system's roots. */
        readonly trustedCa: PemSource | undefined;
        readonly crl: PemSource | undefined;
        /** Empty: any name (unless autoSanValidation). */
        readonly subjectAltNames: readonly SanMatcher[];
      }
    | undefined;
  readonly clientCertificate:
    { readonly certificateChain: PemSource; readonly privateKey: PemSource } | undefined;
  /** Empty: the waypoint offers the protocol it will speak. */
  readonly alpnProtocols: readonly string[];
  readonly minVersion: TlsVersion | undefined;
  readonly maxVersion: TlsVersion | undefined;
  readonly cipherSuites: readonly string[];
  readonly ecdhCurves: readonly string[];
}

/** An ORIGINAL_DST cluster's own settings (Envoy's `cleanup_interval`; lb_policy is CLUSTER_PROVIDED). */
export interface OriginalDstSettings {
  /** A destination host no connection has used for this long is forgotten (Envoy default 5 s). */
  readonly cleanupIntervalMs: number;
}

export const HealthStatus = {
  Unknown: 'UNKNOWN',
  Healthy: 'HEALTHY',
  Unhealthy: 'UNHEALTHY',
  Draining: 'DRAINING',
  Timeout: 'TIMEOUT',
  Degraded: 'DEGRADED',
} as const;
export type HealthStatus = (typeof HealthStatus)[keyof typeof HealthStatus];

export interface LbEndpoint {
  /** An IPv4 or IPv6 address. */
  readonly address: string;
  readonly port: number;
  readonly health: HealthStatus;
  /** ≥ 1 (default 1). */
  readonly weight: number;
  readonly hostname: string;
}

export interface ClusterLoadAssignment {
  readonly clusterName: string;
  readonly endpoints: readonly LbEndpoint[];
  /** Percent (default 140): how much a degraded set's healthy hosts are trusted to absorb. */
  readonly overprovisioningFactor: number;
}

/** The key a host is known by: `ip:port`, IPv6 in brackets (Envoy's address string). */
export function endpointKey(e: { readonly address: string; readonly port: number }): string {
  return e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}
