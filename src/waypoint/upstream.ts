/**
 * The waypoint's connections to endpoints (DESIGN.md §2 "With a waypoint"): HTTP/1.1 or h2c carried
 * over HBONE with the waypoint's own identity — a CONNECT to `<podIP>:15008` with `:authority`
 * `<podIP>:<port>`, the server checked against the endpoint workload's SPIFFE identity — or over plain
 * TCP for an endpoint outside the mesh (tunnel protocol NONE).
 *
 * - HTTP/1.1: one pool of kept-alive connections per endpoint (and connection settings), each
 *   with its own parser (http1-upstream.ts); each connection is one CONNECT stream, and the HBONE
 *   pool multiplexes them over one mTLS connection per endpoint.
 * - h2c: one HTTP/2 session per endpoint over one CONNECT stream, shared by all requests.
 *
 * Each request is an Attempt: the writable its body goes to, and a promise of the response head or
 * of the failure (connect failure, reset, refused stream) that the retry logic classifies.
 */
import type { OutgoingHttpHeaders } from 'node:http';
import {
  connect as h2connect,
  constants as h2constants,
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type IncomingHttpHeaders,
  type IncomingHttpStatusHeader,
} from 'node:http2';
import { isIP, connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { AmbitError, describeError, ErrorCode } from '../core/errors.ts';
import type { HbonePool } from '../core/hbone/pool.ts';
import { formatHostPort, HBONE_PORT } from '../core/hbone/protocol.ts';
import type { Identity } from '../core/identity/spiffe.ts';
import type { Logger } from '../core/log.ts';
import type { MeshState } from '../core/state/mesh-state.ts';
import type { UpstreamTls } from '../core/xds/l7-model.ts';
import { workloadSpiffe, type Workload } from '../core/xds/model.ts';
import { failedAttempt, Http1Pool } from './http1-upstream.ts';
import type { Attempt, AttemptResult, HeaderList, RequestHead } from './upstream-types.ts';
import { asHttpSocket } from './stream-socket.ts';
import {
  alpnFor,
  originateTls,
  serverNameFor,
  TlsContexts,
  TlsOriginationError,
  type TlsOrigination,
} from './upstream-tls.ts';

export type { Attempt, AttemptResult, FailureKind, HeaderList, RequestHead } from './upstream-types.ts';
export { fromRawHeaders } from './upstream-types.ts';

/** Where one request goes. */
export interface UpstreamTarget {
  /** The endpoint's IP. */
  readonly address: string;
  /** The endpoint's (target) port. */
  readonly port: number;
  /** The SPIFFE identity the endpoint must present over HBONE; undefined: plain TCP. */
  readonly identity: string | undefined;
}

/** Where a cluster's host is reached: over HBONE as its workload, or plain TCP outside the mesh. */
export function endpointTarget(
  mesh: MeshState,
  host: { readonly address: string; readonly port: number },
): { target: UpstreamTarget; workload: Workload | undefined } {
  const w = mesh.workloadByIp(host.address);
  const hbone = w !== undefined && w.tunnelProtocol === 'HBONE';
  return {
    target: { address: host.address, port: host.port, identity: hbone ? workloadSpiffe(w) : undefined },
    workload: w,
  };
}

/** How to speak to the endpoint, and the cluster's connection settings. */
export interface ConnectionSettings {
  readonly protocol: 'http/1.1' | 'h2c';
  /** Opening the tunnel (or TCP connection) must finish within this. */
  readonly connectTimeoutMs: number;
  /** HTTP/1.1: requests per connection (0 unlimited; 1 turns keep-alive off). */
  readonly maxRequestsPerConnection: number;
  /** An idle kept-alive connection (or h2c session) is closed after this; 0 never. */
  readonly idleTimeoutMs: number;
  /** TLS originated to the endpoint (inside the tunnel for a mesh endpoint); undefined: none. */
  readonly tls?: UpstreamTls | undefined;
}

export interface UpstreamOptions {
  readonly pool: HbonePool;
  /** The waypoint's own identity: every upstream tunnel presents it. */
  readonly identity: Identity;
  /** Source address for upstream tunnels (the waypoint pod's IP); undefined lets the kernel pick. */
  readonly sourceIp: string | undefined;
  readonly log: Logger;
  /** HBONE port of the endpoints' agents (15008; tests may differ). */
  readonly hbonePort?: number;
}

/** The tunnel as the socket Node's HTTP clients expect (stream-socket.ts). */
function asSocket(stream: Duplex): Socket {
  return asHttpSocket(stream) as unknown as Socket;
}

function connectError(message: string, cause?: unknown): AmbitError {
  return new AmbitError(ErrorCode.UpstreamConnectFailed, message, { cause });
}

function isConnectError(err: unknown): boolean {
  return err instanceof AmbitError && err.code === ErrorCode.UpstreamConnectFailed;
}

function fromHttp2Headers(h: IncomingHttpHeaders): HeaderList {
  const out: HeaderList = new Map();
  for (const [k, v] of Object.entries(h)) {
    if (k.startsWith(':') || v === undefined) continue;
    out.set(k, Array.isArray(v) ? [...v] : [String(v)]);
  }
  return out;
}

/** One value per header, several as an array (Node writes each as its own line or field). */
export function toOutgoing(headers: HeaderList): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of headers) if (v.length) out[k] = v.length === 1 ? v[0] : v;
  return out;
}

export class Upstream {
  private readonly opts: UpstreamOptions;
  private readonly http1 = new Map<string, { pool: Http1Pool; endpoint: string }>();
  private readonly sessions = new Map<string, { session: Promise<ClientHttp2Session>; endpoint: string }>();
  private readonly tlsContexts = new TlsContexts();
  private readonly tlsKeys = new WeakMap<UpstreamTls, string>();
  private closed = false;

  constructor(opts: UpstreamOptions) {
    this.opts = opts;
  }

  /** Starts one request to `target`; h2c waits for the session first. */
  async start(target: UpstreamTarget, settings: ConnectionSettings, head: RequestHead): Promise<Attempt> {
    if (this.closed) return failedAttempt('connect-failure', 'waypoint is shutting down');
    return settings.protocol === 'h2c'
      ? this.startH2(target, settings, head)
      : this.startH1(target, settings, head);
  }

  /**
   * A byte stream to the endpoint for a TCP service's connection, with half-close: the HBONE CONNECT
   * stream once the endpoint's agent answered 200, or a TCP connection for an endpoint outside the
   * mesh. Rejects with an UpstreamConnectFailed AmbitError.
   */
  async openStream(target: UpstreamTarget, connectTimeoutMs: number, tls?: UpstreamTls): Promise<Duplex> {
    if (this.closed) throw connectError('waypoint is shutting down');
    const origination = tls
      ? { tls, serverName: serverNameFor(tls, undefined), alpn: tls.alpnProtocols }
      : undefined;
    return this.openTunnel(target, connectTimeoutMs, true, origination);
  }

  /** Closes connections to endpoints no cluster has any more (those with requests in flight stay). */
  prune(endpoints: ReadonlySet<string>): void {
    for (const [key, a] of this.http1) {
      if (endpoints.has(a.endpoint)) continue;
      // Idle connections close now, busy ones when their exchange ends.
      a.pool.retire();
      this.http1.delete(key);
    }
    for (const [key, s] of this.sessions) {
      if (endpoints.has(s.endpoint)) continue;
      this.sessions.delete(key);
      // GOAWAY: streams in flight finish, then the session closes.
      s.session.then((x) => x.close()).catch(() => undefined);
    }
  }

  /** Numbers for the admin page. */
  describe(): { http1Agents: number; h2Sessions: number } {
    return { http1Agents: this.http1.size, h2Sessions: this.sessions.size };
  }

  /** Closes every upstream connection now (after the drain). */
  close(): void {
    this.closed = true;
    for (const a of this.http1.values()) a.pool.destroy();
    this.http1.clear();
    for (const s of this.sessions.values()) s.session.then((x) => x.destroy()).catch(() => undefined);
    this.sessions.clear();
  }

  // ---------- tunnels ----------

  /**
   * A byte stream to the endpoint: an HBONE CONNECT stream, or a TCP connection for a plain one,
   * with TLS on top when the cluster originates it (`requireAlpn`: the protocol the server must pick).
   */
  private async openTunnel(
    target: UpstreamTarget,
    timeoutMs: number,
    allowHalfOpen = false,
    tls?: TlsOrigination,
    requireAlpn?: string,
  ): Promise<Duplex> {
    if (!tls) return this.openPlainTunnel(target, timeoutMs, allowHalfOpen);
    const startedMs = Date.now();
    const stream = await this.openPlainTunnel(target, timeoutMs, allowHalfOpen);
    const where = formatHostPort(target.address, target.port);
    const leftMs = Math.max(1, timeoutMs - (Date.now() - startedMs));
    return originateTls(stream, tls, this.tlsContexts, where, leftMs, requireAlpn);
  }

  /** A byte stream to the endpoint: an HBONE CONNECT stream, or a TCP connection for a plain one. */
  private async openPlainTunnel(
    target: UpstreamTarget,
    timeoutMs: number,
    allowHalfOpen: boolean,
  ): Promise<Duplex> {
    const where = formatHostPort(target.address, target.port);
    if (target.identity === undefined) {
      return new Promise((resolve, reject) => {
        // From the pod's own address, as a pod's connection would be; a host name (a DNS cluster's
        // endpoint) is resolved now, in that address's family.
        const src = this.opts.sourceIp;
        const bind =
          src && [0, isIP(src)].includes(isIP(target.address))
            ? { localAddress: src, family: isIP(src) }
            : {};
        const socket = netConnect({
          host: target.address,
          port: target.port,
          noDelay: true,
          allowHalfOpen,
          ...bind,
        });
        const timer = setTimeout(() => {
          socket.destroy();
          reject(connectError(`connection to ${where} timed out after ${timeoutMs} ms`));
        }, timeoutMs);
        socket.once('connect', () => {
          clearTimeout(timer);
          socket.off('error', onError);
          resolve(socket);
        });
        const onError = (err: Error) => {
          clearTimeout(timer);
          reject(connectError(`connection to ${where} failed: ${describeError(err)}`, err));
        };
        socket.once('error', onError);
      });
    }
    const connecting = this.opts.pool.connect(
      {
        srcIdentity: this.opts.identity,
        srcIp: this.opts.sourceIp,
        dstIp: target.address,
        dstPort: this.opts.hbonePort ?? HBONE_PORT,
        expectedIdentities: [target.identity],
      },
      { authority: where, headers: {} },
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        // A tunnel that comes up after all is closed at once.
        connecting.then((r) => r.ok && r.stream.close(h2constants.NGHTTP2_CANCEL)).catch(() => undefined);
        reject(connectError(`hbone tunnel to ${where} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
    });
    try {
      const r = await Promise.race([connecting, timeout]);
      if (!r.ok) throw connectError(r.reason);
      return r.stream;
    } catch (err) {
      if (isConnectError(err)) throw err;
      throw connectError(`hbone tunnel to ${where} failed: ${describeError(err)}`, err);
    } finally {
      clearTimeout(timer);
    }
  }

  // ---------- HTTP/1.1 ----------

  /** The TLS a connection for `authority` originates (its SNI, ALPN), and the pool key part for it. */
  private origination(
    s: ConnectionSettings,
    authority: string | undefined,
    speaks: 'http/1.1' | 'h2',
  ): { origination: TlsOrigination | undefined; key: string } {
    const tls = s.tls;
    if (!tls) return { origination: undefined, key: '' };
    let key = this.tlsKeys.get(tls);
    if (key === undefined) this.tlsKeys.set(tls, (key = JSON.stringify(tls)));
    const serverName = serverNameFor(tls, authority);
    return {
      origination: { tls, serverName, alpn: alpnFor(tls, speaks) },
      // Envoy keys connection pools by SNI too: a connection serves only requests for its name.
      key: `|tls:${key}|sni:${serverName ?? ''}`,
    };
  }

  private poolFor(target: UpstreamTarget, s: ConnectionSettings, authority: string): Http1Pool {
    const endpoint = formatHostPort(target.address, target.port);
    const { origination, key: tlsKey } = this.origination(s, authority, 'http/1.1');
    const key = `${endpoint}|${target.identity ?? 'tcp'}|${s.maxRequestsPerConnection}|${s.idleTimeoutMs}|${s.connectTimeoutMs}${tlsKey}`;
    const existing = this.http1.get(key);
    if (existing) return existing.pool;
    const pool = new Http1Pool({
      connect: async () => {
        const stream = await this.openTunnel(target, s.connectTimeoutMs, false, origination);
        return origination ? stream : asHttpSocket(stream);
      },
      maxRequestsPerConnection: s.maxRequestsPerConnection,
      idleTimeoutMs: s.idleTimeoutMs,
    });
    this.http1.set(key, { pool, endpoint });
    return pool;
  }

  private startH1(target: UpstreamTarget, s: ConnectionSettings, head: RequestHead): Attempt {
    return this.poolFor(target, s, head.authority).start(head);
  }

  // ---------- h2c ----------

  private sessionFor(
    target: UpstreamTarget,
    s: ConnectionSettings,
    authority: string,
  ): Promise<ClientHttp2Session> {
    const endpoint = formatHostPort(target.address, target.port);
    const { origination, key: tlsKey } = this.origination(s, authority, 'h2');
    const key = `${endpoint}|${target.identity ?? 'tcp'}${tlsKey}`;
    const existing = this.sessions.get(key);
    if (existing) return existing.session;
    const forget = () => {
      if (this.sessions.get(key) === entry) this.sessions.delete(key);
    };
    const session = this.openTunnel(target, s.connectTimeoutMs, false, origination, 'h2').then((stream) => {
      const h2 = h2connect(`${origination ? 'https' : 'http'}://${endpoint}`, {
        createConnection: () => (origination ? stream : asSocket(stream)),
        settings: { enablePush: false, initialWindowSize: 1024 * 1024 },
      });
      h2.on('error', (err) =>
        this.opts.log.debug({ dst: endpoint, error: describeError(err) }, 'h2c session error'),
      );
      h2.once('close', forget);
      h2.once('goaway', forget);
      if (s.idleTimeoutMs > 0) h2.setTimeout(s.idleTimeoutMs, () => h2.close());
      return h2;
    });
    const entry = { session, endpoint };
    this.sessions.set(key, entry);
    session.catch(forget);
    return session;
  }

  private async startH2(target: UpstreamTarget, s: ConnectionSettings, head: RequestHead): Promise<Attempt> {
    let session: ClientHttp2Session;
    try {
      session = await this.sessionFor(target, s, head.authority);
    } catch (err) {
      return failedAttempt('connect-failure', describeError(err), transportFailureReason(err));
    }
    let stream: ClientHttp2Stream;
    try {
      stream = session.request(
        {
          ':method': head.method,
          ':path': head.path,
          ':authority': head.authority,
          ':scheme': s.tls ? 'https' : 'http',
          ...toOutgoing(head.headers),
        },
        { endStream: false },
      );
    } catch (err) {
      // The session went away under us (GOAWAY): nothing was sent, like a refused stream.
      return failedAttempt('refused-stream', describeError(err));
    }
    let trailers: HeaderList | undefined;
    stream.once('trailers', (t: IncomingHttpHeaders) => (trailers = fromHttp2Headers(t)));
    const result = new Promise<AttemptResult>((resolve) => {
      stream.once('response', (h: IncomingHttpHeaders & IncomingHttpStatusHeader, flags: number) => {
        resolve({
          kind: 'response',
          status: Number(h[':status'] ?? 502),
          headers: fromHttp2Headers(h),
          endStream: (flags & h2constants.NGHTTP2_FLAG_END_STREAM) !== 0,
          body: stream,
          trailers: () => trailers,
        });
      });
      const fail = (why: string) => {
        const refused = stream.rstCode === h2constants.NGHTTP2_REFUSED_STREAM;
        resolve({
          kind: 'failure',
          failure: refused ? 'refused-stream' : 'reset',
          error: why,
          staleConnection: false,
        });
      };
      stream.on('error', (err) => fail(describeError(err)));
      stream.once('close', () => fail(`upstream stream closed (code ${stream.rstCode ?? 0})`));
    });
    return {
      requestBody: stream,
      result,
      end: () => stream.end(),
      abort: () => {
        if (!stream.destroyed) stream.close(h2constants.NGHTTP2_CANCEL);
      },
    };
  }
}

/** Envoy's `transport failure reason` of a failed TLS handshake, if that is what `err` is. */
function transportFailureReason(err: unknown): string | undefined {
  return err instanceof TlsOriginationError ? err.transportFailureReason : undefined;
}
