/**
 * TCP services through the waypoint, as Envoy's tcp_proxy filter serves a waypoint's TCP listener:
 * for each tunnel whose service port is TCP, the cluster is sampled by weight (tcp-plan.ts), a
 * host is picked by the cluster's load balancer under its max_connections circuit breaker, and the
 * waypoint opens its own HBONE tunnel to it with its own identity (upstream.ts). The client's
 * CONNECT is answered only then — 200 once the upstream is up, 503 when there is no cluster, the
 * breaker overflowed, no host is healthy or every connect attempt failed — so the client learns
 * the outcome as it would from a destination agent. Bytes are then copied both ways with
 * half-close kept (tcp-splice.ts) until both sides are done or nothing moved for the idle timeout.
 *
 * Authorization comes first, as Envoy's RBAC network filter sits before tcp_proxy in the chain: the
 * listener's network RBAC filters (AuthorizationPolicies attached to the service, the waypoint or
 * its class) are evaluated for the connection — peer identity, source and destination address and
 * port — before a cluster is chosen or an upstream opened. A denied tunnel is refused with 401, the
 * HBONE answer ztunnel gives a policy denial (Envoy would accept and close it; refusing tells the
 * client's agent why, and no upstream connection is made), and logged with the policy that decided.
 * A listener without such filters (every listener of an ingress gateway) is not evaluated at all.
 *
 * The ingress gateway's TCP and TLS servers use the same proxy with a plain socket as the client
 * (TcpDownstream): accepting starts the copy, refusing closes the socket.
 *
 * Every connection ends in Istio's TCP metrics (`reporter="waypoint"`, or `source` for a gateway;
 * bytes counted as they move) and one access-log line. Connect failures and successes feed outlier
 * detection; each connection counts as an active request of its host (LEAST_REQUEST balances open
 * connections).
 */
import type { Duplex } from 'node:stream';
import type { Clock } from '../core/clock.ts';
import { describeError } from '../core/errors.ts';
import { HboneStatus, type Authority } from '../core/hbone/protocol.ts';
import { formatSpiffe } from '../core/identity/spiffe.ts';
import type { Logger } from '../core/log.ts';
import type { Registry } from 'prom-client';
import { createTcpMetrics, type TcpMetrics, type TcpSeries } from '../core/metrics.ts';
import { evaluateConnection } from '../core/policy/l7.ts';
import type { MeshState } from '../core/state/mesh-state.ts';
import type { L7Listener } from '../core/xds/l7-model.ts';
import { parseClusterName } from '../core/xds/l7-names.ts';
import type { Service, Workload } from '../core/xds/model.ts';
import type { TunnelContext } from './forwarder.ts';
import { listenerRbac, type L7State } from './l7-state.ts';
import type { Random } from './router.ts';
import {
  chooseTcpCluster,
  connectSuccessOutcome,
  DEFAULT_TCP_PROXY,
  idleCheck,
  refusalAnswer,
  tcpConnectionSettings,
  tcpHashKey,
  TcpRefusal,
} from './tcp-plan.ts';
import { abortDuplex, spliceToUpstream } from './tcp-splice.ts';
import {
  formatFlags,
  logAuthzDecision,
  tcpConnectionLabels,
  writeTcpAccessLog,
  type ResponseFlag,
} from './telemetry.ts';
import { endpointTarget, type Upstream } from './upstream.ts';

export interface TcpProxyDeps {
  readonly l7: L7State;
  readonly mesh: () => MeshState;
  readonly upstream: Upstream;
  /** Istio's TCP metrics (core/metrics.ts), in the waypoint's registry. */
  readonly metrics: TcpMetrics;
  readonly log: Logger;
  readonly accessLog: Logger;
  readonly clock: Clock;
  /** Weighted clusters and load balancing. */
  readonly random: Random;
  /** The waypoint's connect timeout; a cluster's shorter connect_timeout wins. */
  readonly connectTimeoutMs: number;
  /** `waypoint` (default), or `source` for an ingress gateway. */
  readonly reporter?: 'waypoint' | 'source';
}

/**
 * The client side of one connection: an HBONE CONNECT (core/hbone/server.ts HboneRequest), or a
 * gateway's accepted socket.
 */
export interface TcpDownstream {
  /** Accepts the connection (HBONE: answers 200); the client's byte stream, or undefined if it is gone. */
  acceptStream(): Duplex | undefined;
  /**
   * Refuses it (HBONE: answers the status — 401 denied by policy, 503 no upstream; a socket is
   * closed).
   */
  reject(status: 401 | 503): void;
  /** What the client asked for, for logs: the CONNECT authority, or the gateway's port. */
  readonly rawAuthority: string;
  /** The CONNECT authority, parsed: its IP is the destination address policies match. */
  readonly authority?: Authority;
}

/** A tunnel's context; a gateway connection's service is the one its cluster names. */
export type TcpContext = Omit<TunnelContext, 'service'> & { readonly service: Service | undefined };

/**
 * The TCP proxy of an L7 engine (engine.ts), its metrics in the engine's registry; `source` for a
 * gateway.
 */
export function engineTcpProxy(
  engine: Pick<TcpProxyDeps, 'l7' | 'upstream' | 'clock' | 'random'> & { readonly registry: Registry },
  mesh: () => MeshState,
  log: Logger,
  connectTimeoutMs: number,
  reporter?: 'source',
): TcpProxy {
  const { l7, upstream, clock, random, registry } = engine;
  return new TcpProxy({
    ...{ l7, upstream, clock, random, mesh, connectTimeoutMs },
    metrics: createTcpMetrics(registry),
    log: log.child({ scope: 'tcp' }),
    accessLog: log.child({ scope: 'access' }),
    ...(reporter && { reporter }),
  });
}

/** The open TCP connections of the waypoint. */
export class TcpProxy {
  private readonly deps: TcpProxyDeps;
  private readonly connections = new Set<TcpConnection>();
  private idleWaiters: (() => void)[] = [];

  constructor(deps: TcpProxyDeps) {
    this.deps = deps;
  }

  /** Serves one tunnel admitted for a TCP listener; answers its CONNECT once the upstream is known. */
  handle(req: TcpDownstream, ctx: TcpContext, listener: L7Listener): void {
    const c = new TcpConnection(this.deps, req, ctx, listener);
    this.connections.add(c);
    c.run()
      .catch((err: unknown) => c.internalError(err))
      .finally(() => {
        this.connections.delete(c);
        if (this.connections.size === 0) for (const w of this.idleWaiters.splice(0)) w();
      });
  }

  /** Connections being opened or copying now. */
  open(): number {
    return this.connections.size;
  }

  /** Resolves when no connection is open, or after `timeoutMs` (the drain deadline). */
  waitIdle(timeoutMs: number): Promise<void> {
    if (this.connections.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const stop = this.deps.clock.setTimer(resolve, timeoutMs);
      this.idleWaiters.push(() => {
        stop();
        resolve();
      });
    });
  }

  /** Ends every connection still open (after the drain deadline). */
  closeAll(): void {
    for (const c of this.connections) c.abort('drain deadline');
  }
}

/** One client connection from its CONNECT to the last byte either way. */
class TcpConnection {
  private readonly deps: TcpProxyDeps;
  private readonly req: TcpDownstream;
  private readonly ctx: TcpContext;
  private readonly listener: L7Listener;
  private readonly startMs: number;
  private readonly releases: (() => void)[] = [];
  private cluster: string | undefined;
  private host: string | undefined;
  private dstWorkload: Workload | undefined;
  private dstIdentity: string | undefined;
  private attempts = 0;
  private status = 200;
  private flags: ResponseFlag[] = [];
  private details: string | undefined;
  private error: string | undefined;
  private series: TcpSeries | undefined;
  private bytesReceived = 0;
  private bytesSent = 0;
  private lastActivityMs: number;
  private streams: Duplex[] = [];
  private stopIdleTimer: (() => void) | undefined;
  private aborted: string | undefined;
  private finished = false;

  constructor(deps: TcpProxyDeps, req: TcpDownstream, ctx: TcpContext, listener: L7Listener) {
    this.deps = deps;
    this.req = req;
    this.ctx = ctx;
    this.listener = listener;
    this.startMs = deps.clock.nowMs();
    this.lastActivityMs = this.startMs;
  }

  async run(): Promise<void> {
    const { l7, random } = this.deps;
    if (this.denied()) return;
    const proxy = this.listener.tcpProxy ?? DEFAULT_TCP_PROXY;
    this.cluster = chooseTcpCluster(this.listener.tcp ?? [], random);
    const picker = l7.picker(this.cluster, this.ctx.originalDestination);
    const cluster = l7.cluster(this.cluster);
    if (!picker || !cluster) return this.refuse(TcpRefusal.ClusterNotFound);
    const slot = picker.tryAcquire('connections');
    if (!slot.ok) return this.refuse(TcpRefusal.Overflow);
    this.releases.push(slot.release);
    const settings = tcpConnectionSettings(proxy, cluster, this.deps.connectTimeoutMs);
    const hashKey = tcpHashKey(proxy, this.ctx.clientAddress);
    const tried = new Set<string>();
    let upstream: Duplex | undefined;
    while (!upstream && this.attempts < settings.maxConnectAttempts && !this.aborted) {
      const pick = picker.pick({ hashKey, attempt: this.attempts, avoid: tried });
      if (!pick.ok) break;
      const key = pick.host.key;
      const { target, workload } = endpointTarget(this.deps.mesh(), pick.host);
      this.attempts++;
      this.host = key;
      this.dstWorkload = workload;
      this.dstIdentity = target.identity;
      tried.add(key);
      const endActive = picker.startRequest(key);
      try {
        // DestinationRule tls (SIMPLE/MUTUAL): the TCP stream is TLS to the endpoint too.
        upstream = await this.deps.upstream.openStream(target, settings.connectTimeoutMs, cluster.tls);
        picker.recordOutcome(key, connectSuccessOutcome(cluster));
        this.releases.push(endActive);
        // An earlier attempt's failure shows in connectAttempts; the connection itself is fine.
        this.error = undefined;
      } catch (err) {
        endActive();
        picker.recordOutcome(key, { kind: 'connect-failed' });
        this.error = describeError(err);
        this.deps.log.debug({ dst: key, error: this.error }, 'tcp upstream connect failed');
      }
    }
    if (!upstream) {
      return this.refuse(this.attempts === 0 ? TcpRefusal.NoHealthyUpstream : TcpRefusal.ConnectFailure);
    }
    const downstream = this.aborted ? undefined : this.req.acceptStream();
    if (!downstream) {
      upstream.on('error', () => undefined);
      abortDuplex(upstream);
      return this.refuse(TcpRefusal.DownstreamGone);
    }
    await this.copy(downstream, upstream, settings.idleTimeoutMs);
  }

  /**
   * The listener's network RBAC filters for this connection. Audits and dry runs are logged; a
   * denial refuses the tunnel with 401 and Envoy's termination details, naming the policy.
   */
  private denied(): boolean {
    const filters = listenerRbac(this.listener);
    if (filters.length === 0) return false;
    const { ctx, req } = this;
    const d = evaluateConnection(filters, {
      // Every client reaches the waypoint over HBONE, so it always has a verified identity.
      peerPrincipal: formatSpiffe(ctx.srcIdentity),
      directRemoteIp: ctx.clientAddress,
      destinationIp:
        ctx.originalDestination?.address ??
        (req.authority?.kind === 'ip' ? req.authority.ip : ctx.service?.vips[0]?.address),
      destinationPort: ctx.port,
      // The tunnel's bytes are not read before the decision, so no TLS SNI is known.
      requestedServerName: '',
    });
    const log = this.deps.log;
    const who = {
      src: this.src(),
      srcIdentity: formatSpiffe(ctx.srcIdentity),
      dst: req.rawAuthority,
      dstService: ctx.service?.hostname,
    };
    if (logAuthzDecision(log, who, d, 'connection')) return false;
    this.status = HboneStatus.Unauthorized;
    this.details = d.details;
    this.req.reject(HboneStatus.Unauthorized);
    this.finish();
    return true;
  }

  /** Ends the connection now: before the CONNECT is answered it is refused, after it both sides reset. */
  abort(why: string): void {
    if (this.aborted) return;
    this.aborted = why;
    this.details = why;
    for (const s of this.streams) abortDuplex(s);
  }

  internalError(err: unknown): void {
    this.error = describeError(err);
    this.deps.log.error({ dst: this.req.rawAuthority, error: this.error }, 'tcp connection failed');
    for (const s of this.streams) abortDuplex(s);
    this.req.reject(503);
    this.finish();
  }

  private refuse(why: TcpRefusal): void {
    const answer = refusalAnswer(why);
    this.status = answer.status;
    this.flags.push(answer.flag);
    this.details ??= answer.details;
    this.req.reject(answer.status);
    this.finish();
  }

  private async copy(downstream: Duplex, upstream: Duplex, idleTimeoutMs: number): Promise<void> {
    const { clock, metrics } = this.deps;
    const series = metrics.series(tcpConnectionLabels(this.peers(), []));
    this.series = series;
    series.opened++;
    metrics.socketsOpen(this.deps.reporter ?? 'waypoint', 1);
    this.streams = [downstream, upstream];
    downstream.on('data', (chunk: Buffer) => {
      this.bytesReceived += chunk.length;
      series.received += chunk.length;
      this.lastActivityMs = clock.nowMs();
    });
    upstream.on('data', (chunk: Buffer) => {
      this.bytesSent += chunk.length;
      series.sent += chunk.length;
      this.lastActivityMs = clock.nowMs();
    });
    if (idleTimeoutMs > 0) this.armIdleTimer(idleTimeoutMs, idleTimeoutMs);
    this.deps.log.debug(
      { src: this.src(), dst: this.req.rawAuthority, cluster: this.cluster, upstreamHost: this.host },
      'tcp connection opened',
    );
    const result = await spliceToUpstream(downstream, upstream);
    if (result.error && !this.aborted) this.error = describeError(result.error);
    this.finish();
  }

  private armIdleTimer(idleTimeoutMs: number, delayMs: number): void {
    this.stopIdleTimer = this.deps.clock.setTimer(() => {
      const check = idleCheck(this.lastActivityMs, idleTimeoutMs, this.deps.clock.nowMs());
      if (check.expired) this.abort('idle_timeout');
      else this.armIdleTimer(idleTimeoutMs, check.recheckInMs);
    }, delayMs);
  }

  /** The tunnel's service; for a gateway, the one the chosen cluster names. */
  private service(): Service | undefined {
    if (this.ctx.service) return this.ctx.service;
    const hostname = this.cluster ? parseClusterName(this.cluster)?.hostname : undefined;
    return hostname ? this.deps.mesh().serviceByHostname(hostname, this.ctx.source.namespace) : undefined;
  }

  private peers() {
    return {
      srcWorkload: this.ctx.srcWorkload,
      srcIdentity: this.ctx.srcIdentity,
      service: this.service(),
      ...(this.deps.reporter && { reporter: this.deps.reporter }),
      dstWorkload: this.dstWorkload,
      dstIdentity: this.dstIdentity,
    };
  }

  private src(): string {
    return `${this.ctx.clientAddress}:${this.ctx.clientPort}`;
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.stopIdleTimer?.();
    for (const release of this.releases.splice(0)) release();
    const { metrics } = this.deps;
    if (this.series) {
      this.series.closed++;
      metrics.socketsOpen(this.deps.reporter ?? 'waypoint', -1);
    } else {
      // Refused before it opened: Envoy reports such a connection opened and closed, with its flags.
      const series = metrics.series(tcpConnectionLabels(this.peers(), this.flags));
      series.opened++;
      series.closed++;
    }
    writeTcpAccessLog(this.deps.accessLog, {
      src: this.src(),
      srcIdentity: formatSpiffe(this.ctx.srcIdentity),
      dst: this.req.rawAuthority,
      dstService: this.service()?.hostname ?? '',
      cluster: this.cluster,
      upstreamHost: this.host,
      dstIdentity: this.dstIdentity,
      status: this.status,
      responseFlags: formatFlags(this.flags),
      durationMs: this.deps.clock.nowMs() - this.startMs,
      bytesReceived: this.bytesReceived,
      bytesSent: this.bytesSent,
      connectAttempts: this.attempts,
      details: this.details,
      error: this.error,
    });
  }
}
