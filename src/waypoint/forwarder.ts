/**
 * One HTTP request through the waypoint, as Envoy's HTTP connection manager and router filter
 * handle it: the route decision (router.ts), the replies the waypoint answers itself (404 no route,
 * redirects, direct responses, fault aborts, CORS preflights, overflow, no healthy upstream,
 * timeouts), and for a forward decision the tries upstream — host choice, circuit breakers, per-try
 * and overall timeouts, retries with back-off, outlier outcomes — mirrors, and the response streamed
 * back with its header mutations and trailers. Every request ends in one metrics sample and one
 * access-log line.
 *
 * Request bodies are streamed to the first try as they arrive; they are also kept (up to
 * `retryBufferBytes`) when a retry or a mirror may need them again. A body larger than that turns
 * retries and mirrors off for that request, as Envoy's buffer limit does. Responses are never
 * buffered.
 */
import { randomUUID } from 'node:crypto';
import { constants as h2constants, type Http2ServerResponse } from 'node:http2';
import type { ServerResponse } from 'node:http';
import type { Readable, Writable } from 'node:stream';
import type { Clock } from '../core/clock.ts';
import { describeError } from '../core/errors.ts';
import { formatSpiffe, type Identity } from '../core/identity/spiffe.ts';
import { evaluateL7, RBAC_DENIED_BODY } from '../core/policy/l7.ts';
import type { Logger } from '../core/log.ts';
import type { MeshState } from '../core/state/mesh-state.ts';
import type { Cluster, HeaderMutations } from '../core/xds/l7-model.ts';
import { parseClusterName } from '../core/xds/l7-names.ts';
import type { Service, Workload } from '../core/xds/model.ts';
import { OVERLOADED_HEADER, type ClusterPicker, type HostView } from './cluster-picker.ts';
import { applyHeaderMutations } from './header-mutations.ts';
import type { IngressRequest, IngressResponse } from './http-ingress.ts';
import type { L7State } from './l7-state.ts';
import type { OriginalDestination } from './original-dst.ts';
import {
  backoffMs,
  effectiveTimeoutMs,
  encodeGrpcMessage,
  httpToGrpcStatus,
  isGrpcContentType,
  isRetriable,
  LocalReplyBody,
  type TryOutcome,
} from './resilience.ts';
import {
  route,
  type ForwardDecision,
  type Random,
  type RequestSource,
  type RouteDecision,
} from './router.ts';
import {
  ResponseFlags,
  formatFlags,
  logAuthzDecision,
  requestLabels,
  writeAccessLog,
  type Reporter,
  type RequestMetrics,
  type ResponseFlag,
} from './telemetry.ts';
import {
  endpointTarget,
  fromRawHeaders,
  toOutgoing,
  type Attempt,
  type AttemptResult,
  type ConnectionSettings,
  type HeaderList,
  type RequestHead,
  type Upstream,
  type UpstreamTarget,
} from './upstream.ts';

/** What the waypoint knows about one tunnel (one client connection): who and which service. */
export interface TunnelContext {
  readonly service: Service;
  /** The service port the client connected to. */
  readonly port: number;
  /** `<hostname>:<port>`: the listener (and route configuration) that serves the tunnel. */
  readonly listenerName: string;
  /** The client as route matching sees it. */
  readonly source: RequestSource;
  readonly srcWorkload: Workload | undefined;
  readonly srcIdentity: Identity;
  /** The client's address, for x-forwarded-for and the access log. */
  readonly clientAddress: string;
  readonly clientPort: number;
  /** A workload-addressed tunnel's `<podIP>:<port>`: where its ORIGINAL_DST cluster sends it. */
  readonly originalDestination?: OriginalDestination;
}

/**
 * What the forwarder needs of a request's connection: a waypoint tunnel's context, or an ingress
 * gateway's connection, whose destination service is known only once a route has picked a cluster.
 */
export interface RequestContext extends Omit<TunnelContext, 'service'> {
  readonly service: Service | undefined;
  /** `https` when the client's connection was TLS (a gateway's HTTPS server); `http` when unset. */
  readonly scheme?: 'http' | 'https';
}

export interface ForwarderDeps {
  readonly l7: L7State;
  readonly mesh: () => MeshState;
  readonly upstream: Upstream;
  readonly metrics: RequestMetrics;
  readonly log: Logger;
  readonly accessLog: Logger;
  readonly clock: Clock;
  readonly random: Random;
  /** The waypoint's connect timeout; a cluster's shorter connect_timeout wins. */
  readonly connectTimeoutMs: number;
  /** Request bodies kept for retries and mirrors at most this big. */
  readonly retryBufferBytes: number;
  /** Istio's `reporter` label: `waypoint` (the default), `source` at an ingress gateway. */
  readonly reporter?: Reporter;
}

/** Envoy's buffer limit for a request body it may have to send again (retries, mirrors). */
export const DEFAULT_RETRY_BUFFER_BYTES = 1024 * 1024;

/** Headers that belong to one hop (RFC 9110 §7.6.1) and never pass a proxy. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
  'http2-settings',
]);

function withoutHopByHop(headers: HeaderList): HeaderList {
  const out: HeaderList = new Map();
  const named = new Set(
    (headers.get('connection') ?? []).flatMap((v) => v.split(',').map((x) => x.trim().toLowerCase())),
  );
  for (const [k, v] of headers) if (!HOP_BY_HOP.has(k) && !named.has(k)) out.set(k, [...v]);
  return out;
}

function first(headers: HeaderList, name: string): string | undefined {
  return headers.get(name)?.[0];
}

function cancellableSleep(clock: Clock, ms: number): { done: Promise<void>; cancel: () => void } {
  let cancel: () => void = () => undefined;
  const done = new Promise<void>((resolve) => {
    const stop = clock.setTimer(resolve, ms);
    cancel = () => {
      stop();
      resolve();
    };
  });
  return { done, cancel };
}

// ---------- request bodies ----------

/** Body bytes read ahead of the first try (e.g. while it waits for a connection) before reading pauses. */
const READ_AHEAD_BYTES = 64 * 1024;

/**
 * The client's request body, read once and handed to each try (and mirror). Reading starts at once,
 * so the end of a small body — where Envoy's route timeout starts — is seen even while the first try
 * waits for a connection; at most READ_AHEAD_BYTES are held for it. With a limit, every chunk is
 * also kept, so a retry can replay the body, until the body outgrows the limit.
 */
class RequestBody {
  bytes = 0;
  ended = false;
  /** Read before the first try attached. */
  private readonly early: Buffer[] = [];
  private earlyBytes = 0;
  private attachedOnce = false;
  /** Kept for replays (retries, mirrors). */
  private readonly kept: Buffer[] = [];
  private overflowed = false;
  private abandoned = false;
  private consumer: { readonly w: Writable; readonly end: () => void } | undefined;
  private readonly endWaiters: (() => void)[] = [];
  private readonly src: Readable;
  private readonly limit: number;

  constructor(src: Readable, limit: number) {
    this.src = src;
    this.limit = limit;
    src.on('data', (chunk: Buffer) => this.onData(chunk));
    src.once('end', () => {
      this.ended = true;
      this.consumer?.end();
      for (const w of this.endWaiters.splice(0)) w();
    });
  }

  /** Whether another try (or a mirror) can have the whole body (an empty one always can). */
  replayable(): boolean {
    return (this.limit > 0 && !this.overflowed) || (this.ended && this.bytes === 0);
  }

  /** Sends the body to `w`: what has arrived so far, then the rest as it comes. */
  attach(w: Writable, end: () => void): void {
    this.consumer = { w, end };
    const backlog = this.attachedOnce ? this.kept : this.early;
    this.attachedOnce = true;
    for (const c of backlog) w.write(c);
    this.early.length = 0;
    this.earlyBytes = 0;
    if (this.ended) end();
    else if (this.src.isPaused()) this.src.resume();
  }

  /** The try that had the body is gone; the body keeps arriving (and is kept) for the next. */
  detach(): void {
    this.consumer = undefined;
    if (this.src.isPaused()) this.src.resume();
  }

  /**
   * Resolves with the whole body once it has arrived, if it was kept; undefined if it was too big
   * or the request ended without it.
   */
  async whole(): Promise<Buffer | undefined> {
    if (!this.ended && !this.abandoned) await new Promise<void>((r) => this.endWaiters.push(r));
    return this.ended && this.replayable() ? Buffer.concat(this.kept) : undefined;
  }

  /** Resolves when the body has arrived (or the request is over without it). */
  endedPromise(): Promise<void> {
    if (this.ended || this.abandoned) return Promise.resolve();
    return new Promise((r) => this.endWaiters.push(r));
  }

  /** The request is over: nobody waits for its body any more. */
  abandon(): void {
    this.abandoned = true;
    for (const w of this.endWaiters.splice(0)) w();
  }

  private onData(chunk: Buffer): void {
    this.bytes += chunk.length;
    if (this.limit > 0 && !this.overflowed) {
      if (this.bytes > this.limit) {
        this.overflowed = true;
        this.kept.length = 0;
      } else this.kept.push(chunk);
    }
    const c = this.consumer;
    if (!this.attachedOnce) {
      this.early.push(chunk);
      this.earlyBytes += chunk.length;
      if (this.earlyBytes >= READ_AHEAD_BYTES) this.src.pause();
      return;
    }
    if (c && !c.w.destroyed && !c.w.write(chunk)) {
      this.src.pause();
      c.w.once('drain', () => {
        if (this.consumer === c) this.src.resume();
      });
    }
  }
}

// ---------- the forwarder ----------

/** Slots of one HTTP/1.1 try: a connection (or a queued wait for one) under the cluster's limits. */
interface Waiter {
  readonly resolve: (release: (() => void) | undefined) => void;
  readonly releasePending: () => void;
}

export class Forwarder {
  readonly deps: ForwarderDeps;
  private active = 0;
  private idleWaiters: (() => void)[] = [];
  private readonly queues = new Map<ClusterPicker, Waiter[]>();

  constructor(deps: ForwarderDeps) {
    this.deps = deps;
  }

  /** Requests being handled now. */
  inFlight(): number {
    return this.active;
  }

  /** Resolves when no request is in flight, or after `timeoutMs`. */
  waitIdle(timeoutMs: number): Promise<void> {
    if (this.active === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const stop = this.deps.clock.setTimer(resolve, timeoutMs);
      this.idleWaiters.push(() => {
        stop();
        resolve();
      });
    });
  }

  handle(ctx: RequestContext, req: IngressRequest, res: IngressResponse, protocol: 'http/1.1' | 'h2c'): void {
    this.active++;
    const ex = new Exchange(this, ctx, req, res, protocol);
    ex.run()
      .catch((err: unknown) => ex.internalError(err))
      .finally(() => {
        if (--this.active === 0) for (const w of this.idleWaiters.splice(0)) w();
      });
  }

  /**
   * A connection slot for an HTTP/1.1 try (Envoy's max_connections, one request per connection at a
   * time): at once if one is free, else a place in the cluster's queue under max_pending_requests.
   * Resolves with the release function, or undefined on overflow or when `cancelled` fires first.
   */
  acquireConnection(picker: ClusterPicker, cancelled: Promise<unknown>): Promise<(() => void) | undefined> {
    const slot = picker.tryAcquire('connections');
    if (slot.ok) return Promise.resolve(this.wrapRelease(picker, slot.release));
    const pending = picker.tryAcquire('pending-requests');
    if (!pending.ok) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const waiter: Waiter = { resolve, releasePending: pending.release };
      const queue = this.queues.get(picker) ?? [];
      queue.push(waiter);
      this.queues.set(picker, queue);
      void cancelled.then(() => {
        const q = this.queues.get(picker);
        const i = q?.indexOf(waiter) ?? -1;
        if (i < 0) return;
        q!.splice(i, 1);
        waiter.releasePending();
        resolve(undefined);
      });
    });
  }

  private wrapRelease(picker: ClusterPicker, release: () => void): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      release();
      const queue = this.queues.get(picker);
      while (queue && queue.length > 0) {
        const slot = picker.tryAcquire('connections');
        if (!slot.ok) break;
        const w = queue.shift()!;
        w.releasePending();
        w.resolve(this.wrapRelease(picker, slot.release));
      }
      if (queue && queue.length === 0) this.queues.delete(picker);
    };
  }
}

type Interrupt = 'timeout' | 'downstream-closed' | 'max-duration';

/** A try that ended without a response. */
type FailedTry = Exclude<TryOutcome, { kind: 'response' }>;

/** One request from decision to the last byte of its response. */
class Exchange {
  private readonly f: Forwarder;
  private readonly deps: ForwarderDeps;
  private readonly ctx: RequestContext;
  /** The destination service: the tunnel's, else the one the chosen cluster belongs to. */
  private service: Service | undefined;
  private readonly req: IngressRequest;
  private readonly res: IngressResponse;
  private readonly protocol: 'http/1.1' | 'h2c';
  private readonly startMs: number;
  private readonly method: string;
  private readonly path: string;
  private readonly authority: string;
  private readonly headers: HeaderList;
  private readonly grpc: boolean;
  private readonly flags: ResponseFlag[] = [];
  private status = 0;
  private grpcStatus: string | undefined;
  private responseBytes = 0;
  private body: RequestBody | undefined;
  private attempts = 0;
  private routeName: string | undefined;
  private clusterName: string | undefined;
  private host: HostView | undefined;
  private dstWorkload: Workload | undefined;
  private dstIdentity: string | undefined;
  private details: string | undefined;
  private error: string | undefined;
  /** Envoy's transport failure reason of the last failed connect (a TLS handshake). */
  private transportFailureReason: string | undefined;
  private requestId: string | undefined;
  private finished = false;
  private interrupt: Interrupt | undefined;
  private readonly interrupted: Promise<Interrupt>;
  private fireInterrupt!: (i: Interrupt) => void;
  private readonly timers: (() => void)[] = [];

  constructor(
    f: Forwarder,
    ctx: RequestContext,
    req: IngressRequest,
    res: IngressResponse,
    protocol: 'http/1.1' | 'h2c',
  ) {
    this.f = f;
    this.deps = f.deps;
    this.ctx = ctx;
    this.service = ctx.service;
    this.req = req;
    this.res = res;
    this.protocol = protocol;
    this.startMs = f.deps.clock.nowMs();
    this.method = req.method ?? 'GET';
    const headers = fromRawHeaders(req.rawHeaders);
    let path = req.url ?? '/';
    const h2Authority = protocol === 'h2c' ? req.headers[':authority'] : undefined;
    let authority =
      (typeof h2Authority === 'string' ? h2Authority : undefined) ?? first(headers, 'host') ?? '';
    // An absolute-form request target (`GET http://host/path`) names the authority itself.
    const absolute = /^https?:\/\/([^/?#]*)([^#]*)/i.exec(path);
    if (absolute) {
      authority = absolute[1]!;
      path = absolute[2] || '/';
    }
    headers.delete('host');
    this.path = path;
    this.authority = authority;
    this.headers = headers;
    this.grpc = isGrpcContentType(first(headers, 'content-type'));
    this.interrupted = new Promise((resolve) => (this.fireInterrupt = resolve));
    res.once('close', () => {
      if (!this.finished && !res.writableFinished) this.raise('downstream-closed');
    });
    // A client that went away shows as 'close' above; writes racing it must not throw.
    res.on('error', () => undefined);
  }

  async run(): Promise<void> {
    const { l7, random } = this.deps;
    if (this.denied()) return;
    const table = l7.routeTable(this.ctx.listenerName);
    const decision: RouteDecision = table
      ? route(
          table,
          {
            method: this.method,
            scheme: this.ctx.scheme ?? 'http',
            authority: this.authority,
            path: this.path,
            headers: this.headers,
            source: this.ctx.source,
            port: this.ctx.port,
          },
          random,
        )
      : {
          kind: 'not-found',
          virtualHost: undefined,
          route: undefined,
          delayMs: 0,
          status: 404,
          grpcStatus: undefined,
          body: undefined,
          responseHeaders: [],
          details: 'route_not_found',
        };
    this.routeName = decision.route;
    if (decision.delayMs > 0) {
      this.flags.push(ResponseFlags.DelayInjected);
      const sleep = cancellableSleep(this.deps.clock, decision.delayMs);
      void this.interrupted.then(sleep.cancel);
      await sleep.done;
      if (this.interrupt === 'downstream-closed') return this.finishGone();
    }
    if (decision.kind !== 'forward') {
      const flag = decision.kind === 'not-found' ? ResponseFlags.NoRoute : undefined;
      if (flag) this.flags.push(flag);
      if (decision.kind === 'fault-abort') this.flags.push(ResponseFlags.FaultInjected);
      this.details = decision.details;
      const body = decision.kind === 'fault-abort' ? 'fault filter abort' : decision.body;
      return this.localReply(decision.status, body, decision.responseHeaders, decision.grpcStatus);
    }
    return this.forward(decision);
  }

  // ---------- authorization ----------

  /**
   * The listener's RBAC filters (AuthorizationPolicies attached to the service or this waypoint),
   * before routing as in Envoy's filter chain. A denial is Envoy's: 403 `RBAC: access denied`, no
   * response flag, and the matched policy in the response details and in a log line.
   */
  private denied(): boolean {
    const filters = this.deps.l7.rbacFilters(this.ctx.listenerName);
    if (filters.length === 0) return false;
    const d = evaluateL7(filters, {
      method: this.method,
      path: this.path,
      authority: this.authority,
      headers: this.headers,
      // Every client reaches the waypoint over HBONE, so it always has a verified identity.
      peerPrincipal: formatSpiffe(this.ctx.srcIdentity),
      directRemoteIp: this.ctx.clientAddress,
      destinationIp: this.service?.vips[0]?.address,
      destinationPort: this.ctx.port,
      requestedServerName: '',
    });
    const who = {
      srcIdentity: formatSpiffe(this.ctx.srcIdentity),
      src: this.ctx.clientAddress,
      dstService: this.service?.hostname,
      method: this.method,
      path: this.path,
    };
    if (logAuthzDecision(this.deps.log, who, d, 'request')) return false;
    this.details = d.details;
    this.localReply(403, RBAC_DENIED_BODY);
    return true;
  }

  // ---------- local replies ----------

  private localReply(
    status: number,
    body: Uint8Array | string | undefined,
    stages: readonly HeaderMutations[] = [],
    grpcStatus?: number,
    extra: readonly (readonly [string, string])[] = [],
  ): void {
    if (this.finished) return;
    const bytes = typeof body === 'string' ? Buffer.from(body) : body ? Buffer.from(body) : Buffer.alloc(0);
    let headers: HeaderList = new Map();
    let httpStatus = status;
    const grpcReply = this.grpc || grpcStatus !== undefined;
    if (grpcReply) {
      // Envoy answers a gRPC request in gRPC: HTTP 200 with the status in grpc-status.
      const code = grpcStatus ?? httpToGrpcStatus(status);
      httpStatus = 200;
      headers.set('content-type', ['application/grpc']);
      headers.set('grpc-status', [String(code)]);
      if (bytes.length) headers.set('grpc-message', [encodeGrpcMessage(bytes.toString())]);
      this.grpcStatus = String(code);
    } else if (bytes.length) headers.set('content-type', ['text/plain']);
    for (const [k, v] of extra) headers.set(k, [v]);
    headers = applyHeaderMutations(headers, stages);
    const sendBody = grpcReply ? Buffer.alloc(0) : bytes;
    this.status = httpStatus;
    if (!this.res.headersSent) {
      try {
        headers.set('content-length', [String(sendBody.length)]);
        if (sendBody.length === 0 && this.respondHeadOnly(httpStatus, headers)) return this.finish();
        this.res.statusCode = httpStatus;
        for (const [k, v] of headers) this.res.setHeader(k, v.length === 1 ? v[0]! : v);
        if (sendBody.length) this.res.end(sendBody);
        else this.res.end();
        this.responseBytes = sendBody.length;
      } catch (err) {
        this.error = describeError(err);
        this.destroyDownstream();
      }
    } else this.destroyDownstream();
    this.finish();
  }

  /**
   * Over h2c, a response that is only a head goes out as one HEADERS frame with END_STREAM (what a
   * gRPC trailers-only reply must be; the compatibility API would add an empty DATA frame). False
   * when the client speaks HTTP/1.1, which needs no such care.
   */
  private respondHeadOnly(status: number, headers: HeaderList): boolean {
    const stream = (this.res as Http2ServerResponse).stream;
    if (this.protocol !== 'h2c' || !stream || stream.headersSent || stream.destroyed) return false;
    stream.respond({ ':status': status, ...toOutgoing(headers) }, { endStream: true });
    return true;
  }

  /** A reply the router gives by itself while forwarding (overflow, no host, timeouts, failures). */
  private fail(status: number, flag: ResponseFlag, body: string, overloaded = false): void {
    this.flags.push(flag);
    this.localReply(status, body, [], undefined, overloaded ? [OVERLOADED_HEADER] : []);
  }

  internalError(err: unknown): void {
    this.deps.log.error({ error: describeError(err), path: this.path }, 'request handling failed');
    this.error = describeError(err);
    if (this.finished) return;
    if (!this.res.headersSent) this.localReply(500, 'internal error');
    else {
      this.destroyDownstream();
      this.finish();
    }
  }

  private finishGone(): void {
    if (!this.flags.includes(ResponseFlags.DownstreamConnectionTermination))
      this.flags.push(ResponseFlags.DownstreamConnectionTermination);
    this.finish();
  }

  private destroyDownstream(): void {
    const h2 = (this.res as Http2ServerResponse).stream;
    if (this.protocol === 'h2c' && h2) {
      if (!h2.destroyed) h2.close(h2constants.NGHTTP2_INTERNAL_ERROR);
    } else (this.res as ServerResponse).destroy();
  }

  private raise(i: Interrupt): void {
    if (this.interrupt) return;
    this.interrupt = i;
    this.fireInterrupt(i);
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    for (const stop of this.timers) stop();
    this.body?.abandon();
    const durationMs = this.deps.clock.nowMs() - this.startMs;
    const labels = requestLabels({
      srcWorkload: this.ctx.srcWorkload,
      srcIdentity: this.ctx.srcIdentity,
      service: this.service,
      reporter: this.deps.reporter,
      dstWorkload: this.dstWorkload,
      dstIdentity: this.dstIdentity,
      protocol: this.grpc ? 'grpc' : 'http',
      status: this.status,
      grpcStatus: this.grpcStatus,
      flags: this.flags,
    });
    this.deps.metrics.record({
      labels,
      durationMs,
      requestBytes: this.body?.bytes ?? 0,
      responseBytes: this.responseBytes,
    });
    writeAccessLog(this.deps.accessLog, {
      method: this.method,
      path: this.path,
      authority: this.authority,
      protocol: this.protocol,
      status: this.status,
      responseFlags: formatFlags(this.flags),
      durationMs,
      bytesReceived: this.body?.bytes ?? 0,
      bytesSent: this.responseBytes,
      src: `${this.ctx.clientAddress}:${this.ctx.clientPort}`,
      srcIdentity: labels.source_principal,
      dstService: labels.destination_service,
      route: this.routeName,
      cluster: this.clusterName,
      upstreamHost: this.host?.key,
      dstIdentity: this.dstIdentity,
      attempts: this.attempts,
      requestId: this.requestId,
      details: this.details,
      error: this.error,
    });
  }

  // ---------- forwarding ----------

  private upstreamHead(d: ForwardDecision, h2Upstream: boolean): RequestHead {
    const h = withoutHopByHop(this.headers);
    // The client already had its `100 Continue` from our server.
    h.delete('expect');
    if (h2Upstream && first(this.headers, 'te')?.toLowerCase() === 'trailers') h.set('te', ['trailers']);
    const xff = h.get('x-forwarded-for');
    h.set('x-forwarded-for', [
      xff?.length ? `${xff.join(',')},${this.ctx.clientAddress}` : this.ctx.clientAddress,
    ]);
    if (!h.has('x-forwarded-proto')) h.set('x-forwarded-proto', [this.ctx.scheme ?? 'http']);
    if (!first(h, 'x-request-id')) h.set('x-request-id', [randomUUID()]);
    const headers = applyHeaderMutations(h, d.requestHeaders);
    this.requestId = first(headers, 'x-request-id');
    return { method: this.method, path: d.path, authority: d.authority, headers };
  }

  private settingsFor(cluster: Cluster): ConnectionSettings {
    const protocol =
      cluster.upstreamProtocol === 'http2'
        ? 'h2c'
        : cluster.upstreamProtocol === 'downstream'
          ? this.protocol
          : 'http/1.1';
    return {
      protocol,
      connectTimeoutMs:
        cluster.connectTimeoutMs > 0
          ? Math.min(cluster.connectTimeoutMs, this.deps.connectTimeoutMs)
          : this.deps.connectTimeoutMs,
      maxRequestsPerConnection: cluster.maxRequestsPerConnection,
      idleTimeoutMs: cluster.idleTimeoutMs,
      tls: cluster.tls,
    };
  }

  /** Where a host is reached: over HBONE as its workload, or plain TCP outside the mesh. */
  private targetFor(host: HostView): { target: UpstreamTarget; workload: Workload | undefined } {
    return endpointTarget(this.deps.mesh(), host);
  }

  private async forward(d: ForwardDecision): Promise<void> {
    const { l7, clock, random } = this.deps;
    this.clusterName = d.cluster;
    if (!this.service) {
      const parsed = parseClusterName(d.cluster);
      if (parsed)
        this.service = this.deps.mesh().serviceByHostname(parsed.hostname, this.ctx.source.namespace);
    }
    const picker = l7.picker(d.cluster, this.ctx.originalDestination);
    const cluster = l7.cluster(d.cluster);
    if (!picker || !cluster) {
      this.flags.push(ResponseFlags.NoClusterFound);
      this.details = 'cluster_not_found';
      return this.localReply(d.clusterNotFoundStatus, undefined);
    }
    const policy = d.retryPolicy;
    const retries = policy?.numRetries ?? 0;
    const keep = retries > 0 || d.mirrors.length > 0;
    const body = new RequestBody(this.req, keep ? this.deps.retryBufferBytes : 0);
    this.body = body;
    const settings = this.settingsFor(cluster);
    const head = this.upstreamHead(d, settings.protocol === 'h2c');

    for (const m of d.mirrors) void this.mirror(m.cluster, m.authority, head, body, d);

    const timeoutMs = effectiveTimeoutMs(
      d.timeoutMs,
      d.grpcTimeoutHeaderMaxMs,
      first(this.headers, 'grpc-timeout'),
    );
    if (timeoutMs > 0) {
      // Envoy's route timeout runs from the end of the request to the end of the response.
      void body.endedPromise().then(() => {
        if (!this.finished) this.timers.push(clock.setTimer(() => this.raise('timeout'), timeoutMs));
      });
    }
    if (d.maxStreamDurationMs !== undefined && d.maxStreamDurationMs > 0)
      this.timers.push(clock.setTimer(() => this.raise('max-duration'), d.maxStreamDurationMs));

    const previous = new Set<string>();
    let retry = 0;
    let staleRetried = false;
    // The retry circuit-breaker slot of the try under way (Envoy's max_retries counts retries in flight).
    let retrySlot: (() => void) | undefined;
    for (;;) {
      if (this.interrupt) {
        retrySlot?.();
        return this.onInterruptBeforeResponse();
      }
      const pick = picker.pick({
        hashKey: d.hashKey,
        attempt: retry,
        ...(policy?.retryPreviousHosts && previous.size
          ? { avoid: previous, maxSelectionAttempts: policy.hostSelectionRetryMaxAttempts }
          : {}),
      });
      if (!pick.ok) {
        retrySlot?.();
        this.details = 'no_healthy_upstream';
        return this.fail(503, ResponseFlags.NoHealthyUpstream, LocalReplyBody.NoHealthyUpstream);
      }
      const host = pick.host;
      const slot = picker.tryAcquire('requests');
      if (!slot.ok) {
        retrySlot?.();
        this.details = 'overflow';
        return this.fail(503, ResponseFlags.UpstreamOverflow, LocalReplyBody.Overflow, true);
      }
      let releaseConnection: (() => void) | undefined;
      if (settings.protocol === 'http/1.1') {
        releaseConnection = await this.f.acquireConnection(picker, this.interrupted);
        if (!releaseConnection) {
          slot.release();
          retrySlot?.();
          if (this.interrupt) return this.onInterruptBeforeResponse();
          this.details = 'overflow';
          return this.fail(503, ResponseFlags.UpstreamOverflow, LocalReplyBody.Overflow, true);
        }
      }
      const { target, workload } = this.targetFor(host);
      this.host = host;
      this.dstWorkload = workload;
      this.dstIdentity = target.identity;
      this.attempts++;
      const endActive = picker.startRequest(host.key);
      const heldRetrySlot = retrySlot;
      retrySlot = undefined;
      const release = () => {
        endActive();
        slot.release();
        releaseConnection?.();
        heldRetrySlot?.();
      };
      const tryStartMs = clock.nowMs();
      const outcome = await this.tryOnce(target, settings, head, body, policy?.perTryTimeoutMs ?? 0);

      if (outcome.kind === 'interrupted') {
        outcome.attempt?.abort();
        release();
        body.detach();
        return this.onInterruptBeforeResponse();
      }
      let tried: TryOutcome;
      let response: Extract<AttemptResult, { kind: 'response' }> | undefined;
      if (outcome.kind === 'per-try-timeout') {
        picker.recordOutcome(host.key, { kind: 'timeout' });
        tried = { kind: 'per-try-timeout' };
      } else if (outcome.result.kind === 'failure') {
        const r = outcome.result;
        if (r.staleConnection && !staleRetried && body.replayable()) {
          // A kept-alive connection the endpoint had already closed: not the endpoint's fault,
          // nor a try of the retry policy.
          staleRetried = true;
          outcome.attempt.abort();
          release();
          body.detach();
          this.attempts--;
          continue;
        }
        picker.recordOutcome(
          host.key,
          r.failure === 'connect-failure' ? { kind: 'connect-failed' } : { kind: 'reset' },
        );
        this.error = r.error;
        this.transportFailureReason = r.transportFailureReason;
        tried = { kind: r.failure };
      } else {
        response = outcome.result;
        picker.recordOutcome(host.key, { kind: 'connect-success' });
        picker.recordOutcome(host.key, { kind: 'http', status: response.status });
        const grpc = first(response.headers, 'grpc-status');
        tried = {
          kind: 'response',
          status: response.status,
          grpcStatus: grpc === undefined ? undefined : Number(grpc),
        };
      }
      // Retry, if the policy, the tries left, the body and the retry budget allow it.
      const retriable = policy !== undefined && isRetriable(policy, tried);
      const budget =
        retriable && retry < retries && body.replayable() ? picker.tryAcquire('retries') : undefined;
      const retrying = budget?.ok === true;
      if (!retrying && retriable && retries > 0 && retry >= retries)
        this.flags.push(ResponseFlags.UpstreamRetryLimitExceeded);
      if (response && !retrying) {
        // What went wrong with earlier tries is not this response's error.
        this.error = undefined;
        return this.stream(response, outcome.attempt!, release, d, clock.nowMs() - tryStartMs);
      }
      outcome.attempt?.abort();
      release();
      body.detach();
      previous.add(host.key);
      // A response that is not retried was streamed above: without a retry this was a failed try.
      if (!budget?.ok) return this.failTry(tried as FailedTry);
      retrySlot = budget.release;
      retry++;
      const wait = cancellableSleep(clock, backoffMs(policy!, retry, random));
      void this.interrupted.then(wait.cancel);
      await wait.done;
    }
  }

  /** The reply for a try that failed and is not retried. */
  private failTry(tried: FailedTry): void {
    switch (tried.kind) {
      case 'per-try-timeout':
        this.details = 'upstream_per_try_timeout';
        return this.fail(504, ResponseFlags.UpstreamRequestTimeout, LocalReplyBody.Timeout);
      case 'connect-failure':
        this.details = 'upstream_connect_failure';
        return this.fail(
          503,
          ResponseFlags.UpstreamConnectionFailure,
          this.transportFailureReason
            ? `${LocalReplyBody.ConnectFailure}, transport failure reason: ${this.transportFailureReason}`
            : LocalReplyBody.ConnectFailure,
        );
      case 'refused-stream':
        this.details = 'upstream_refused_stream';
        return this.fail(503, ResponseFlags.UpstreamRemoteReset, LocalReplyBody.Reset);
      case 'reset':
        this.details = 'upstream_reset_before_response_started';
        return this.fail(
          503,
          ResponseFlags.UpstreamConnectionTermination,
          LocalReplyBody.ConnectionTermination,
        );
    }
  }

  private onInterruptBeforeResponse(): void {
    switch (this.interrupt) {
      case 'downstream-closed':
        return this.finishGone();
      case 'timeout':
      case 'max-duration':
      default:
        this.details = 'upstream_response_timeout';
        return this.fail(504, ResponseFlags.UpstreamRequestTimeout, LocalReplyBody.Timeout);
    }
  }

  /** One try: start it, send the body, wait for the response head, a timeout or an interruption. */
  private async tryOnce(
    target: UpstreamTarget,
    settings: ConnectionSettings,
    head: RequestHead,
    body: RequestBody,
    perTryTimeoutMs: number,
  ): Promise<
    | { kind: 'try'; attempt: Attempt; result: AttemptResult }
    | { kind: 'per-try-timeout'; attempt: Attempt | undefined }
    | { kind: 'interrupted'; attempt: Attempt | undefined }
  > {
    let stopTimer: () => void = () => undefined;
    const perTry =
      perTryTimeoutMs > 0
        ? new Promise<'per-try-timeout'>((resolve) => {
            stopTimer = this.deps.clock.setTimer(() => resolve('per-try-timeout'), perTryTimeoutMs);
          })
        : new Promise<never>(() => undefined);
    const interrupted = this.interrupted.then(() => 'interrupted' as const);
    try {
      const starting = this.deps.upstream.start(target, settings, head);
      const started = await Promise.race([starting, perTry, interrupted]);
      if (started === 'per-try-timeout' || started === 'interrupted') {
        // The try may still be starting (opening its tunnel): abandon it once it has.
        void starting.then((a) => a.abort());
        return { kind: started, attempt: undefined };
      }
      const attempt = started;
      if (attempt.requestBody) body.attach(attempt.requestBody, () => attempt.end());
      const r = await Promise.race([attempt.result, perTry, interrupted]);
      if (r === 'per-try-timeout' || r === 'interrupted') return { kind: r, attempt };
      return { kind: 'try', attempt, result: r };
    } finally {
      stopTimer();
    }
  }

  /** Streams a response to the client: status, mutated headers, body, trailers. */
  private stream(
    r: Extract<AttemptResult, { kind: 'response' }>,
    attempt: Attempt,
    release: () => void,
    d: ForwardDecision,
    serviceTimeMs: number,
  ): Promise<void> {
    const headers = withoutHopByHop(r.headers);
    headers.set('x-envoy-upstream-service-time', [String(Math.round(serviceTimeMs))]);
    const out = applyHeaderMutations(headers, d.responseHeaders);
    this.status = r.status;
    const grpcHead = first(r.headers, 'grpc-status');
    if (grpcHead !== undefined) this.grpcStatus = grpcHead;
    return new Promise<void>((resolve) => {
      let settled = false;
      const done = () => {
        if (settled) return;
        settled = true;
        release();
        this.finish();
        resolve();
      };
      const upstreamBody = r.body;
      const res = this.res as ServerResponse;
      const bodyless =
        r.endStream ||
        this.method === 'HEAD' ||
        r.status === 204 ||
        r.status === 304 ||
        first(r.headers, 'content-length') === '0';
      try {
        if (r.endStream && this.respondHeadOnly(r.status, out)) return done();
        res.statusCode = r.status;
        for (const [k, v] of out) res.setHeader(k, v.length === 1 ? v[0]! : v);
        // Headers go now, unless the response is only a head: then `end` sends them with
        // END_STREAM (over h2c a gRPC trailers-only reply stays one).
        if (!bodyless && r.body.readableLength === 0) res.flushHeaders();
      } catch (err) {
        attempt.abort();
        this.error = `invalid response headers from upstream: ${describeError(err)}`;
        this.flags.push(ResponseFlags.UpstreamConnectionTermination);
        release();
        for (const name of res.getHeaderNames()) res.removeHeader(name);
        this.localReply(502, 'upstream sent an invalid response');
        return resolve();
      }
      upstreamBody.on('data', (chunk: Buffer) => {
        this.responseBytes += chunk.length;
        if (!res.write(chunk)) {
          upstreamBody.pause();
          res.once('drain', () => upstreamBody.resume());
        }
      });
      upstreamBody.once('end', () => {
        const trailers = r.trailers();
        if (trailers && trailers.size) {
          const t = withoutHopByHop(trailers);
          const gs = first(t, 'grpc-status');
          if (gs !== undefined) this.grpcStatus = gs;
          try {
            res.addTrailers(toOutgoing(t));
          } catch (err) {
            this.error = `invalid trailers from upstream: ${describeError(err)}`;
          }
        }
        res.end(() => done());
        // An HTTP/1.1 response whose client went away never calls back.
        res.once('close', done);
      });
      upstreamBody.once('close', () => {
        if (upstreamBody.readableEnded || settled) return;
        // The upstream went away in the middle of the response: the client must not take it as whole.
        if (!this.interrupt) {
          this.flags.push(ResponseFlags.UpstreamRemoteReset);
          this.error ??= 'upstream reset the response';
        }
        this.destroyDownstream();
        done();
      });
      upstreamBody.on('error', (err) => (this.error ??= describeError(err)));
      void this.interrupted.then((i) => {
        if (settled) return;
        if (i === 'downstream-closed') this.flags.push(ResponseFlags.DownstreamConnectionTermination);
        else {
          this.flags.push(ResponseFlags.UpstreamRequestTimeout);
          this.destroyDownstream();
        }
        attempt.abort();
        done();
      });
    });
  }

  // ---------- mirrors ----------

  /** Sends a copy to a mirror cluster once the body has arrived; the answer is read and dropped. */
  private async mirror(
    clusterName: string,
    authority: string,
    head: RequestHead,
    body: RequestBody,
    d: ForwardDecision,
  ): Promise<void> {
    const { l7, log } = this.deps;
    const whole = await body.whole();
    const picker = l7.picker(clusterName);
    const cluster = l7.cluster(clusterName);
    if (whole === undefined || !picker || !cluster) return;
    const pick = picker.pick({ hashKey: d.hashKey });
    if (!pick.ok) return;
    const slot = picker.tryAcquire('requests');
    if (!slot.ok) return;
    const endActive = picker.startRequest(pick.host.key);
    const { target } = this.targetFor(pick.host);
    const settings = this.settingsFor(cluster);
    let stop: () => void = () => undefined;
    try {
      const attempt = await this.deps.upstream.start(target, settings, { ...head, authority });
      if (d.timeoutMs > 0) stop = this.deps.clock.setTimer(() => attempt.abort(), d.timeoutMs);
      attempt.requestBody?.end(whole);
      const r = await attempt.result;
      if (r.kind === 'response') {
        picker.recordOutcome(pick.host.key, { kind: 'http', status: r.status });
        r.body.on('error', () => undefined);
        r.body.resume();
        await new Promise<void>((resolve) => {
          r.body.once('end', resolve);
          r.body.once('close', resolve);
        });
      }
    } catch (err) {
      log.debug({ cluster: clusterName, error: describeError(err) }, 'mirror failed');
    } finally {
      stop();
      endActive();
      slot.release();
    }
  }
}
