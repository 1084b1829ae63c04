/**
 * `networking.istio.io/v1` VirtualService and DestinationRule as the L7 translation reads them:
 * decoded and validated once by decode.ts (istio-api.md §1–2), plain readonly data. Absent optional
 * messages are `undefined`; absent lists and maps are empty; maps keep the order written.
 */
import type { StringMap, TranslateProblem } from '../plain.ts';

/** `google.protobuf.Duration`, exact (never a float of seconds). */
export interface Duration {
  readonly seconds: number;
  readonly nanos: number;
}

/**
 * Istio's StringMatch. `present` stands for an empty match (`{}`) and for the regex `*`, which Istio
 * reads as "present" rather than as RE2 (a header or query parameter that exists, whatever its value).
 */
export type StringMatch =
  | { readonly kind: 'exact'; readonly value: string }
  | { readonly kind: 'prefix'; readonly value: string }
  | { readonly kind: 'regex'; readonly value: string }
  | { readonly kind: 'present' };

export interface Destination {
  /** As written: a short name is resolved against the rule's namespace when translated. */
  readonly host: string;
  /** Empty: the whole service. */
  readonly subset: string;
  /** undefined: the service's only port, else the port being routed (as Istio). */
  readonly port: number | undefined;
}

export interface HeaderOperations {
  readonly set: readonly (readonly [string, string])[];
  readonly add: readonly (readonly [string, string])[];
  readonly remove: readonly string[];
}

export interface Headers {
  readonly request: HeaderOperations;
  readonly response: HeaderOperations;
}

export interface HttpMatch {
  readonly name: string;
  readonly uri: StringMatch | undefined;
  readonly scheme: StringMatch | undefined;
  readonly method: StringMatch | undefined;
  readonly authority: StringMatch | undefined;
  readonly headers: readonly (readonly [string, StringMatch])[];
  readonly withoutHeaders: readonly (readonly [string, StringMatch])[];
  readonly queryParams: readonly (readonly [string, StringMatch])[];
  readonly ignoreUriCase: boolean;
  /** undefined: any port. */
  readonly port: number | undefined;
  /** Evaluated against the real client workload (Ambit's extension; Istio's waypoints drop such blocks). */
  readonly sourceLabels: StringMap;
  /** Empty: any namespace. Evaluated against the real client, unlike Istio's waypoints. */
  readonly sourceNamespace: string;
  /** Overrides the VirtualService's gateways for this block. */
  readonly gateways: readonly string[];
  readonly statPrefix: string;
}

export interface HttpRouteDestination {
  readonly destination: Destination;
  /** 0..100; 0 with other destinations means no traffic. */
  readonly weight: number;
  readonly headers: Headers | undefined;
}

export type RedirectPortSelection = 'FROM_PROTOCOL_DEFAULT' | 'FROM_REQUEST_PORT';

export interface HttpRedirect {
  readonly uri: string;
  readonly authority: string;
  /** The `redirect_port` oneof: a port, or how to derive it; undefined when not set. */
  readonly port: number | undefined;
  readonly derivePort: RedirectPortSelection | undefined;
  readonly scheme: string;
  /** 0: the default, 301. */
  readonly redirectCode: number;
  readonly prefixRewrite: string;
}

export interface HttpDirectResponse {
  readonly status: number;
  readonly body:
    | { readonly kind: 'string'; readonly value: string }
    | { readonly kind: 'bytes'; readonly value: Uint8Array }
    | undefined;
}

export interface HttpRewrite {
  readonly uri: string;
  readonly authority: string;
  readonly uriRegexRewrite: { readonly match: string; readonly rewrite: string } | undefined;
}

export interface HttpRetry {
  /** 0 disables retries. */
  readonly attempts: number;
  readonly perTryTimeout: Duration | undefined;
  /** As written (trimmed); empty: the mesh default conditions. */
  readonly retryOn: string;
  readonly retryRemoteLocalities: boolean | undefined;
  readonly retryIgnorePreviousHosts: boolean | undefined;
  readonly backoff: Duration | undefined;
}

/** Percentages are 0..100; undefined when the VirtualService gives none (then nothing is faulted). */
export interface FaultInjection {
  readonly delay: { readonly fixedDelay: Duration; readonly percentage: number | undefined } | undefined;
  readonly abort:
    | {
        readonly httpStatus: number | undefined;
        /** A gRPC status code, from Istio's status name (`UNAVAILABLE` → 14). */
        readonly grpcStatus: number | undefined;
        readonly percentage: number | undefined;
      }
    | undefined;
}

export interface MirrorPolicy {
  /** Where it was written, relative to the rule: `mirror`, or `mirrors[<i>].destination`. */
  readonly field: string;
  readonly destination: Destination;
  /** 0..100; undefined means 100. */
  readonly percentage: number | undefined;
}

export type UnmatchedPreflights = 'UNSPECIFIED' | 'FORWARD' | 'IGNORE';

export interface CorsPolicy {
  /** `allowOrigins`, or the deprecated `allowOrigin` as exact matches. */
  readonly allowOrigins: readonly StringMatch[];
  readonly allowMethods: readonly string[];
  readonly allowHeaders: readonly string[];
  readonly exposeHeaders: readonly string[];
  readonly maxAge: Duration | undefined;
  readonly allowCredentials: boolean | undefined;
  readonly unmatchedPreflights: UnmatchedPreflights;
}

export interface HttpRoute {
  readonly name: string;
  readonly match: readonly HttpMatch[];
  readonly route: readonly HttpRouteDestination[];
  readonly redirect: HttpRedirect | undefined;
  readonly directResponse: HttpDirectResponse | undefined;
  readonly delegate: { readonly name: string; readonly namespace: string } | undefined;
  readonly rewrite: HttpRewrite | undefined;
  readonly timeout: Duration | undefined;
  readonly retries: HttpRetry | undefined;
  readonly fault: FaultInjection | undefined;
  /** `mirror` (with `mirrorPercentage` or the deprecated `mirrorPercent`) and `mirrors`, in that order. */
  readonly mirrors: readonly MirrorPolicy[];
  readonly corsPolicy: CorsPolicy | undefined;
  readonly headers: Headers | undefined;
}

export interface RouteDestination {
  readonly destination: Destination;
  readonly weight: number;
}

export interface L4Match {
  readonly destinationSubnets: readonly string[];
  readonly port: number | undefined;
  readonly sourceLabels: StringMap;
  readonly sourceNamespace: string;
  readonly gateways: readonly string[];
}

export interface TlsMatch extends L4Match {
  readonly sniHosts: readonly string[];
}

export interface TcpRoute {
  readonly match: readonly L4Match[];
  readonly route: readonly RouteDestination[];
}

export interface TlsRoute {
  readonly match: readonly TlsMatch[];
  readonly route: readonly RouteDestination[];
}

export interface VirtualService {
  readonly namespace: string;
  readonly name: string;
  /** metadata.creationTimestamp (RFC 3339, sorts as text); empty when not set. */
  readonly creationTimestamp: string;
  readonly hosts: readonly string[];
  /** Empty means `mesh`. */
  readonly gateways: readonly string[];
  readonly http: readonly HttpRoute[];
  readonly tls: readonly TlsRoute[];
  readonly tcp: readonly TcpRoute[];
  readonly exportTo: readonly string[];
}

// ---- DestinationRule ----

export type SimpleLb =
  'UNSPECIFIED' | 'LEAST_CONN' | 'RANDOM' | 'PASSTHROUGH' | 'ROUND_ROBIN' | 'LEAST_REQUEST';

export type HashKey =
  | { readonly kind: 'header'; readonly name: string }
  | {
      readonly kind: 'cookie';
      readonly name: string;
      readonly path: string;
      readonly ttl: Duration | undefined;
      readonly attributes: readonly { readonly name: string; readonly value: string }[];
    }
  | { readonly kind: 'sourceIp' }
  | { readonly kind: 'queryParameter'; readonly name: string };

export interface ConsistentHash {
  readonly key: HashKey;
  /** `ringHash` (the default algorithm); 0 means Envoy's default size. */
  readonly ringHash: { readonly minimumRingSize: number } | undefined;
  readonly maglev: { readonly tableSize: number } | undefined;
  /** Deprecated top-level minimumRingSize; 0 when not set. */
  readonly minimumRingSize: number;
}

export interface LoadBalancer {
  readonly simple: SimpleLb | undefined;
  readonly consistentHash: ConsistentHash | undefined;
}

export interface TcpSettings {
  readonly maxConnections: number | undefined;
  readonly connectTimeout: Duration | undefined;
  readonly tcpKeepalive:
    | {
        readonly probes: number | undefined;
        readonly time: Duration | undefined;
        readonly interval: Duration | undefined;
      }
    | undefined;
  readonly maxConnectionDuration: Duration | undefined;
  readonly idleTimeout: Duration | undefined;
}

export type H2UpgradePolicy = 'DEFAULT' | 'DO_NOT_UPGRADE' | 'UPGRADE';

export interface HttpSettings {
  readonly http1MaxPendingRequests: number | undefined;
  readonly http2MaxRequests: number | undefined;
  readonly maxRequestsPerConnection: number | undefined;
  readonly maxRetries: number | undefined;
  readonly idleTimeout: Duration | undefined;
  readonly h2UpgradePolicy: H2UpgradePolicy;
  readonly useClientProtocol: boolean;
  readonly maxConcurrentStreams: number | undefined;
  readonly http2KeepAlive: { readonly interval: Duration; readonly timeout: Duration } | undefined;
}

export interface ConnectionPool {
  readonly tcp: TcpSettings | undefined;
  readonly http: HttpSettings | undefined;
}

export interface OutlierDetection {
  readonly consecutive5xxErrors: number | undefined;
  readonly consecutiveGatewayErrors: number | undefined;
  readonly splitExternalLocalOriginErrors: boolean;
  readonly consecutiveLocalOriginFailures: number | undefined;
  readonly interval: Duration | undefined;
  readonly baseEjectionTime: Duration | undefined;
  /** 0: Envoy's default (10). */
  readonly maxEjectionPercent: number;
  readonly minHealthPercent: number;
}

export type TlsMode = 'DISABLE' | 'SIMPLE' | 'MUTUAL' | 'ISTIO_MUTUAL';

/** DestinationRule `tls`: how the waypoint speaks to the backend (SIMPLE and MUTUAL originate TLS). */
export interface ClientTls {
  readonly mode: TlsMode;
  /** MUTUAL: file paths on the waypoint of its client certificate chain and key (PEM). */
  readonly clientCertificate: string | undefined;
  readonly privateKey: string | undefined;
  /** PEM roots to verify the server with; undefined: the system's roots (Istio's "system"). */
  readonly caCertificates: string | undefined;
  readonly caCrl: string | undefined;
  /** The server certificate must carry one of these SANs; empty: checked against the SNI if auto. */
  readonly subjectAltNames: readonly string[];
  /** undefined: the request's host (Envoy's auto_sni, as istiod sets it). */
  readonly sni: string | undefined;
  readonly insecureSkipVerify: boolean;
}

export interface RetryBudget {
  /** undefined: 20. */
  readonly percent: number | undefined;
  /** 0: 3. */
  readonly minRetryConcurrency: number;
  readonly budgetInterval: Duration | undefined;
}

/** The four sections a port-level entry replaces, plus the ones only the top level has. */
export interface PolicySections {
  readonly loadBalancer: LoadBalancer | undefined;
  readonly connectionPool: ConnectionPool | undefined;
  readonly outlierDetection: OutlierDetection | undefined;
  readonly tls: ClientTls | undefined;
}

export interface PortTrafficPolicy extends PolicySections {
  readonly port: number;
}

export interface TrafficPolicy extends PolicySections {
  readonly portLevelSettings: readonly PortTrafficPolicy[];
  readonly retryBudget: RetryBudget | undefined;
}

export interface Subset {
  readonly name: string;
  readonly labels: StringMap;
  readonly trafficPolicy: TrafficPolicy | undefined;
}

export interface DestinationRule {
  readonly namespace: string;
  readonly name: string;
  readonly creationTimestamp: string;
  /** As written: a short name is resolved against the rule's namespace. */
  readonly host: string;
  readonly trafficPolicy: TrafficPolicy | undefined;
  readonly subsets: readonly Subset[];
  readonly exportTo: readonly string[];
  /** spec.workloadSelector.matchLabels; undefined when the rule has none. */
  readonly workloadSelector: StringMap | undefined;
}

// ---- problems ----

/**
 * A problem of a VirtualService, DestinationRule or (Gateway API) HTTPRoute: the translation's
 * problem, of one of these kinds. `error`: the object (or the named part) is not applied; `warning`:
 * it is applied, with a consequence the user must know about.
 */
export type L7Problem = Omit<TranslateProblem, 'kind'> & {
  readonly kind: 'VirtualService' | 'DestinationRule' | 'HTTPRoute' | 'Gateway';
};
