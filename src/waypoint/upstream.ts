/**
 * The waypoint's connections to endpoints (DESIGN.md §2 "With a waypoint"): HTTP/1.1 or h2c carried
 * over HBONE with the waypoint's own identity — a CONNECT to `<podIP>:15008` with `:authority`
 * `<podIP>:<port>`, the server checked against the endpoint workload's SPIFFE identity — or over plain
 * TCP for an endpoint outside the mesh (tunnel protocol NONE).
 *
 * - HTTP/1.1: one keep-alive `http.Agent` per endpoint (and connection settings), whose
 *   `createConnection` opens a tunnel asynchronously; each kept-alive connection is one CONNECT
 *   stream, and the HBONE pool multiplexes them over one mTLS connection per endpoint.
 * - h2c: one HTTP/2 session per endpoint over one CONNECT stream, shared by all requests.
 *
 * Each request is an Attempt: the writable its body goes to, and a promise of the response head or
 * of the failure (connect failure, reset, refused stream) that the retry logic classifies.
 */
import {
  Agent,
  request as http1Request,
  type ClientRequest,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type RequestOptions,
} from 'node:http';
import {
  connect as h2connect,
  constants as h2constants,
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type IncomingHttpHeaders,
  type IncomingHttpStatusHeader,
} from 'node:http2';
import { isIP, connect as netConnect, type Socket } from 'node:net';
import type { Duplex, Readable, Writable } from 'node:stream';
import { AmbitError, describeError, ErrorCode } from '../core/errors.ts';
import type { HbonePool } from '../core/hbone/pool.ts';
import { formatHostPort, HBONE_PORT } from '../core/hbone/protocol.ts';
import type { Identity } from '../core/identity/spiffe.ts';
import type { Logger } from '../core/log.ts';
import type { MeshState } from '../core/state/mesh-state.ts';
import type { UpstreamTls } from '../core/xds/l7-model.ts';
import { workloadSpiffe, type Workload } from '../core/xds/model.ts';
import { asHttpSocket } from './stream-socket.ts';
import {
  alpnFor,
  originateTls,
  serverNameFor,
  TlsContexts,
  TlsOriginationError,
  type TlsOrigination,
} from './upstream-tls.ts';

/** Header names (lower-case) with their values in order. */
export type HeaderList = Map<string, string[]>;

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

export interface RequestHead {
  readonly method: string;
  /** Path with query. */
  readonly path: string;
  readonly authority: string;
  /** Without pseudo-headers, `host` and hop-by-hop headers. */
  readonly headers: HeaderList;
}

export type FailureKind = 'connect-failure' | 'reset' | 'refused-stream';

export type AttemptResult =
  | {
      readonly kind: 'response';
      readonly status: number;
      readonly headers: HeaderList;
      /** The head ended the stream (h2c): no body, no trailers, e.g. a gRPC trailers-only reply. */
      readonly endStream: boolean;
      /** The response body; ends (or closes early on a reset) when the upstream is done. */
      readonly body: Readable;
      /** The response trailers, once `body` has ended. */
      trailers(): HeaderList | undefined;
    }
  | {
      readonly kind: 'failure';
      readonly failure: FailureKind;
      readonly error: string;
      /** HTTP/1.1: the request went out on a kept-alive connection the peer had already closed. */
      readonly staleConnection: boolean;
      /** Envoy's transport failure reason (a TLS handshake that failed), for the 503 body. */
      readonly transportFailureReason?: string | undefined;
    };

export interface Attempt {
  /** Where the request body goes; undefined if the attempt already failed. */
  readonly requestBody: Writable | undefined;
  readonly result: Promise<AttemptResult>;
  /** Ends the request body (request trailers are not forwarded). */
  end(): void;
  /** Abandons the attempt: the upstream request or stream is reset. */
  abort(): void;
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

/** Option passed through `http.request` to the agent's `createConnection`. */
const CONNECT_TIMEOUT_OPTION = 'ambitConnectTimeoutMs';

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

/** Lower-cased headers from Node's `[name, value, name, value…]`, skipping pseudo-headers. */
export function fromRawHeaders(raw: readonly string[]): HeaderList {
  const out: HeaderList = new Map();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (name.startsWith(':')) continue;
    const list = out.get(name);
    if (list) list.push(raw[i + 1]!);
    else out.set(name, [raw[i + 1]!]);
  }
  return out;
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
  private readonly agents = new Map<string, { agent: Agent; endpoint: string }>();
  private readonly sessions = new Map<string, { session: Promise<ClientHttp2Session>; endpoint: string }>();
  private readonly tlsContexts = new TlsContexts();
  private readonly tlsKeys = new WeakMap<UpstreamTls, string>();
  private closed = false;

  constructor(opts: UpstreamOptions) {
    this.opts = opts;
  }

  /** Starts one request to `target`; h2c waits for the session first. */
  async start(target: UpstreamTarget, settings: ConnectionSettings, head: RequestHead): Promise<Attempt> {
    if (this.closed) return failed('connect-failure', 'waypoint is shutting down');
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
    for (const [key, a] of this.agents) {
      if (endpoints.has(a.endpoint)) continue;
      const busy = Object.values(a.agent.sockets).some((list) => (list?.length ?? 0) > 0);
      if (busy) continue;
      a.agent.destroy();
      this.agents.delete(key);
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
    return { http1Agents: this.agents.size, h2Sessions: this.sessions.size };
  }

  /** Closes every upstream connection now (after the drain). */
  close(): void {
    this.closed = true;
    for (const a of this.agents.values()) a.agent.destroy();
    this.agents.clear();
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

  private agentFor(target: UpstreamTarget, s: ConnectionSettings, authority: string): Agent {
    const endpoint = formatHostPort(target.address, target.port);
    const { origination, key: tlsKey } = this.origination(s, authority, 'http/1.1');
    const key = `${endpoint}|${target.identity ?? 'tcp'}|${s.maxRequestsPerConnection}|${s.idleTimeoutMs}${tlsKey}`;
    const existing = this.agents.get(key);
    if (existing) return existing.agent;
    const agent = new Agent({
      keepAlive: s.maxRequestsPerConnection !== 1,
      ...(s.idleTimeoutMs > 0 ? { timeout: s.idleTimeoutMs } : {}),
      scheduling: 'lifo',
    });
    const defaultTimeoutMs = s.connectTimeoutMs;
    agent.createConnection = ((
      options: Record<string, unknown>,
      cb: (err: Error | null, socket?: Socket) => void,
    ) => {
      const timeoutMs =
        typeof options[CONNECT_TIMEOUT_OPTION] === 'number'
          ? options[CONNECT_TIMEOUT_OPTION]
          : defaultTimeoutMs;
      this.openTunnel(target, timeoutMs, false, origination).then(
        (stream) => cb(null, origination ? (stream as Socket) : asSocket(stream)),
        (err: Error) => cb(err),
      );
      return undefined;
    }) as unknown as Agent['createConnection'];
    if (s.maxRequestsPerConnection > 1) {
      const served = new WeakMap<object, number>();
      // Runs before the agent's own handler: a connection that has served its share is closed,
      // and the agent opens a new one for whoever waits.
      agent.prependListener('free', (socket: Socket) => {
        const n = (served.get(socket) ?? 0) + 1;
        served.set(socket, n);
        if (n >= s.maxRequestsPerConnection) socket.destroy();
      });
    }
    this.agents.set(key, { agent, endpoint });
    return agent;
  }

  private startH1(target: UpstreamTarget, s: ConnectionSettings, head: RequestHead): Attempt {
    const headers = toOutgoing(head.headers);
    headers.host = head.authority;
    let req: ClientRequest;
    try {
      req = http1Request({
        agent: this.agentFor(target, s, head.authority),
        method: head.method,
        path: head.path,
        headers,
        setHost: false,
        [CONNECT_TIMEOUT_OPTION]: s.connectTimeoutMs,
      } as RequestOptions);
    } catch (err) {
      return failed('reset', `invalid upstream request: ${describeError(err)}`);
    }
    const result = new Promise<AttemptResult>((resolve) => {
      req.once('response', (res: IncomingMessage) => {
        // A response cut short ends in 'close' before 'end'; the reader handles that, and an
        // abandoned one (a retried 5xx) must not throw.
        res.on('error', () => undefined);
        resolve({
          kind: 'response',
          status: res.statusCode ?? 502,
          headers: fromRawHeaders(res.rawHeaders),
          endStream: false,
          body: res,
          trailers: () => (res.rawTrailers.length ? fromRawHeaders(res.rawTrailers) : undefined),
        });
      });
      req.on('error', (err) => {
        resolve({
          kind: 'failure',
          failure: isConnectError(err) ? 'connect-failure' : 'reset',
          error: describeError(err),
          staleConnection: req.reusedSocket && !isConnectError(err),
          transportFailureReason: transportFailureReason(err),
        });
      });
      req.once('close', () =>
        resolve({ kind: 'failure', failure: 'reset', error: 'upstream closed', staleConnection: false }),
      );
    });
    return {
      requestBody: req,
      result,
      end: () => req.end(),
      abort: () => req.destroy(),
    };
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
      return failed('connect-failure', describeError(err), transportFailureReason(err));
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
      return failed('refused-stream', describeError(err));
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

function failed(failure: FailureKind, error: string, reason?: string): Attempt {
  return {
    requestBody: undefined,
    result: Promise.resolve({
      kind: 'failure',
      failure,
      error,
      staleConnection: false,
      transportFailureReason: reason,
    }),
    end: () => undefined,
    abort: () => undefined,
  };
}
