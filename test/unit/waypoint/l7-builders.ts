/** Small builders of l7-model values and requests for the router and picker tables. */
import type {
  Cluster,
  ClusterLoadAssignment,
  ClusterWeight,
  HeaderMutations,
  LbEndpoint,
  Route,
  RouteAction,
  RouteConfiguration,
  RouteMatch,
  VirtualHost,
} from '../../../src/core/xds/l7-model.ts';
import type { Random, RouteRequest } from '../../../src/waypoint/router.ts';

export const NONE: HeaderMutations = { add: [], remove: [] };

export function match(p: Partial<RouteMatch> = {}): RouteMatch {
  return {
    path: { kind: 'prefix', value: '/' },
    caseSensitive: true,
    headers: [],
    queryParameters: [],
    source: [],
    grpcOnly: false,
    fraction: undefined,
    ...p,
  };
}

export function weighted(name: string, weight: number, p: Partial<ClusterWeight> = {}): ClusterWeight {
  return { name, weight, requestHeaders: NONE, responseHeaders: NONE, hostRewrite: undefined, ...p };
}

export function action(p: Partial<RouteAction> & { cluster?: string } = {}): RouteAction {
  const { cluster, ...rest } = p;
  return {
    kind: 'route',
    clusters: [weighted(cluster ?? 'outbound|80||svc.ns.svc.cluster.local', 1)],
    weighted: false,
    timeoutMs: 0,
    maxStreamDurationMs: undefined,
    grpcTimeoutHeaderMaxMs: undefined,
    retryPolicy: undefined,
    prefixRewrite: undefined,
    regexRewrite: undefined,
    hostRewrite: undefined,
    mirrors: [],
    hashPolicies: [],
    upgrades: [],
    clusterNotFoundStatus: 503,
    ...rest,
  };
}

export function route(p: Partial<Route> = {}): Route {
  return {
    name: p.name ?? 'r',
    match: match(),
    action: action(),
    fault: undefined,
    cors: undefined,
    requestHeaders: NONE,
    responseHeaders: NONE,
    ...p,
  };
}

export function vhost(routes: readonly Route[], p: Partial<VirtualHost> = {}): VirtualHost {
  return {
    name: 'vh',
    domains: ['*'],
    routes,
    requestHeaders: NONE,
    responseHeaders: NONE,
    retryPolicy: undefined,
    fault: undefined,
    cors: undefined,
    ...p,
  };
}

export function config(
  virtualHosts: readonly VirtualHost[],
  p: Partial<RouteConfiguration> = {},
): RouteConfiguration {
  return {
    name: 'svc.ns.svc.cluster.local:80',
    virtualHosts,
    requestHeaders: NONE,
    responseHeaders: NONE,
    mostSpecificHeaderMutationsWins: false,
    ignorePortInHostMatching: false,
    fault: undefined,
    cors: undefined,
    ...p,
  };
}

/** Request fields for `request()`: headers as a plain record. */
export type RequestSpec = Partial<Omit<RouteRequest, 'headers'>> & {
  headers?: Record<string, string | string[]>;
};

export function request(p: RequestSpec = {}): RouteRequest {
  const headers = new Map<string, string[]>();
  for (const [k, v] of Object.entries(p.headers ?? {})) headers.set(k, Array.isArray(v) ? v : [v]);
  return {
    method: 'GET',
    scheme: 'http',
    authority: 'svc.ns.svc.cluster.local:80',
    path: '/',
    source: { namespace: 'ns', labels: {}, principal: '' },
    port: 80,
    ...p,
    headers,
  };
}

/** A seeded PRNG (mulberry32) in [0, 1). */
export function seeded(seed: number): Random {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Returns the given values in turn, forever. */
export function sequence(...values: number[]): Random {
  let i = 0;
  return () => values[i++ % values.length]!;
}

export function cluster(p: Partial<Cluster> = {}): Cluster {
  return {
    name: 'outbound|80||svc.ns.svc.cluster.local',
    edsServiceName: 'outbound|80||svc.ns.svc.cluster.local',
    lbPolicy: 'ROUND_ROBIN',
    leastRequestChoiceCount: 2,
    ringHash: { minimumRingSize: 1024, maximumRingSize: 8 * 1024 * 1024 },
    maglevTableSize: 65537,
    connectTimeoutMs: 5000,
    circuitBreakers: { maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 1024, maxRetries: 3 },
    maxRequestsPerConnection: 0,
    idleTimeoutMs: 3_600_000,
    upstreamProtocol: 'http1',
    healthyPanicThresholdPercent: 50,
    outlierDetection: undefined,
    ...p,
  };
}

export function endpoint(address: string, p: Partial<LbEndpoint> = {}): LbEndpoint {
  return { address, port: 9080, health: 'HEALTHY', weight: 1, hostname: '', ...p };
}

export function assignment(endpoints: readonly LbEndpoint[]): ClusterLoadAssignment {
  return { clusterName: 'outbound|80||svc.ns.svc.cluster.local', endpoints, overprovisioningFactor: 140 };
}

/** A clock the test moves by hand. */
export function fakeClock(start = 1_000_000): { nowMs(): number; advance(ms: number): void } {
  let now = start;
  return {
    nowMs: () => now,
    advance: (ms) => {
      now += ms;
    },
  };
}
