/**
 * The decisions of one TCP connection through the waypoint (tcp-proxy.ts does the I/O), as Envoy's
 * tcp_proxy filter makes them: the cluster, sampled per connection by weight (a VirtualService `tcp`
 * route such as sample 17's 80/20 split); the connect timeout, idle timeout and connect attempts;
 * the consistent-hash key; how a refusal is answered; what a successful connect tells outlier
 * detection. Pure: randomness is injected.
 */
import type { Cluster, TcpProxySettings, TcpTarget } from '../core/xds/l7-model.ts';
import type { UpstreamOutcome } from './cluster-picker.ts';
import { pickWeighted, type Random } from './router.ts';
import { ResponseFlags, type ResponseFlag } from './telemetry.ts';
import { xxHash64 } from './xxhash64.ts';

/** The tcp_proxy settings of a listener that carries none (Envoy's defaults). */
export const DEFAULT_TCP_PROXY: TcpProxySettings = {
  idleTimeoutMs: undefined,
  maxConnectAttempts: 1,
  hashSourceIp: false,
};

/** The cluster one connection goes to: weighted clusters are sampled once per connection. */
export function chooseTcpCluster(targets: readonly TcpTarget[], random: Random): string {
  return pickWeighted(targets, random).cluster;
}

/** How one connection to a cluster's endpoint is made and kept. */
export interface TcpConnectionSettings {
  /** Opening the upstream tunnel must finish within this. */
  readonly connectTimeoutMs: number;
  /** No byte either way for this long closes both sides; 0 never. */
  readonly idleTimeoutMs: number;
  /** Hosts tried (each a fresh pick) before the connection fails. */
  readonly maxConnectAttempts: number;
}

/**
 * The cluster's connect_timeout, capped by the waypoint's own (as for HTTP tries); the tcp_proxy's
 * idle_timeout when set, else the cluster's idle timeout (where a DestinationRule's idleTimeout
 * lands; its default, 1 h, is also Envoy's tcp_proxy default).
 */
export function tcpConnectionSettings(
  proxy: TcpProxySettings,
  cluster: Pick<Cluster, 'connectTimeoutMs' | 'idleTimeoutMs'>,
  waypointConnectTimeoutMs: number,
): TcpConnectionSettings {
  return {
    connectTimeoutMs:
      cluster.connectTimeoutMs > 0
        ? Math.min(cluster.connectTimeoutMs, waypointConnectTimeoutMs)
        : waypointConnectTimeoutMs,
    idleTimeoutMs: proxy.idleTimeoutMs ?? cluster.idleTimeoutMs,
    maxConnectAttempts: Math.max(1, proxy.maxConnectAttempts),
  };
}

/** RING_HASH / MAGLEV key: the client's address under `hash_policy: source_ip` (as HTTP routes hash it). */
export function tcpHashKey(proxy: TcpProxySettings, clientAddress: string): bigint | undefined {
  return proxy.hashSourceIp && clientAddress ? xxHash64(clientAddress) : undefined;
}

/** Why the waypoint closed a connection before any byte moved. */
export const TcpRefusal = {
  ClusterNotFound: 'cluster-not-found',
  Overflow: 'overflow',
  NoHealthyUpstream: 'no-healthy-upstream',
  ConnectFailure: 'connect-failure',
  /** The client reset its CONNECT (or the waypoint's drain ended it) while the upstream was opening. */
  DownstreamGone: 'downstream-gone',
} as const;
export type TcpRefusal = (typeof TcpRefusal)[keyof typeof TcpRefusal];

/** How a refusal is answered and reported. */
export interface RefusalAnswer {
  /** The HBONE status of the CONNECT (503: the upstream could not be had). */
  readonly status: 503;
  /** Envoy's response flag, for the metrics and the access log. */
  readonly flag: ResponseFlag;
  /** Envoy's response code details, for the access log. */
  readonly details: string;
}

const REFUSALS: Readonly<Record<TcpRefusal, RefusalAnswer>> = {
  'cluster-not-found': { status: 503, flag: ResponseFlags.NoClusterFound, details: 'cluster_not_found' },
  overflow: { status: 503, flag: ResponseFlags.UpstreamOverflow, details: 'upstream_max_connections' },
  'no-healthy-upstream': {
    status: 503,
    flag: ResponseFlags.NoHealthyUpstream,
    details: 'no_healthy_upstream',
  },
  'connect-failure': {
    status: 503,
    flag: ResponseFlags.UpstreamConnectionFailure,
    details: 'upstream_connect_failure',
  },
  'downstream-gone': {
    status: 503,
    flag: ResponseFlags.DownstreamConnectionTermination,
    details: 'downstream_closed_before_connect',
  },
};

export function refusalAnswer(why: TcpRefusal): RefusalAnswer {
  return REFUSALS[why];
}

/**
 * What a successful connect tells outlier detection. For a TCP connection it is the final outcome
 * (Envoy's LocalOriginConnectSuccessFinal): with split local-origin errors it resets the
 * local-origin count, otherwise it counts as a success that resets the consecutive-error counts.
 */
export function connectSuccessOutcome(cluster: Pick<Cluster, 'outlierDetection'>): UpstreamOutcome {
  return cluster.outlierDetection?.splitExternalLocalOriginErrors
    ? { kind: 'connect-success' }
    : { kind: 'http', status: 200 };
}

/** The idle check at `nowMs`: expired, or when to look again. */
export function idleCheck(
  lastActivityMs: number,
  idleTimeoutMs: number,
  nowMs: number,
): { readonly expired: true } | { readonly expired: false; readonly recheckInMs: number } {
  const quiet = nowMs - lastActivityMs;
  return quiet >= idleTimeoutMs ? { expired: true } : { expired: false, recheckInMs: idleTimeoutMs - quiet };
}
