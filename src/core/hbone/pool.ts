import {
  connect as h2connect,
  constants,
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type IncomingHttpHeaders,
} from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { AmbitError, describeError, ErrorCode } from '../errors.ts';
import type { WorkloadCertificate } from '../identity/certificate.ts';
import { formatSpiffe, type Identity } from '../identity/spiffe.ts';
import { checkServerIdentities, HBONE_TLS, secureContextFor } from '../identity/tls.ts';
import type { Logger } from '../log.ts';
import { startKeepalive } from './keepalive.ts';
import { formatHostPort, H2, poolKey, TCP_KEEPALIVE_MS } from './protocol.ts';

/** Where and as whom to open a tunnel. */
export interface HboneTarget {
  /** The identity we present (the source workload's). */
  readonly srcIdentity: Identity;
  /** Source IP to bind, so the peer sees the source pod's address; undefined lets the kernel pick. */
  readonly srcIp: string | undefined;
  /** The TCP destination: a pod's or a waypoint's HBONE address. */
  readonly dstIp: string;
  /** The TCP destination port: 15008, or the waypoint's `hbone_mtls_port`. */
  readonly dstPort: number;
  /** The server must present one of these SPIFFE IDs. */
  readonly expectedIdentities: readonly string[];
}

export interface HboneConnectRequest {
  /** `:authority`: the target `IP:port` (or `hostname:port`) the server should connect to. */
  readonly authority: string;
  /** Extra headers: `baggage`, `forwarded`, `traceparent`. */
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * The outcome of a CONNECT: the open stream, or the server's refusal with its status and what to
 * check. Transport failures (refused, timed out, TLS) are thrown as AmbitErrors with their code.
 */
export type HboneConnectResult =
  | { readonly ok: true; readonly stream: ClientHttp2Stream }
  | { readonly ok: false; readonly status: number; readonly reason: string };

/** What a refusal status means to the operator of the client side. */
export const HBONE_STATUS_HINTS: Readonly<Record<number, string>> = {
  400: 'the destination agent does not host that address',
  401: 'an AuthorizationPolicy at the destination denied it',
  503: 'the destination workload is unknown there or did not accept the connection',
};

export interface HbonePoolOptions {
  /** The certificate to present for a source identity (the secret manager's). */
  readonly getCertificate: (identity: Identity) => Promise<WorkloadCertificate>;
  readonly log: Logger;
  /** TCP connect plus TLS handshake must finish within this. */
  readonly connectTimeoutMs: number;
  /** A connection with no streams for this long is closed. */
  readonly idleTimeoutMs: number;
  /** Streams one HTTP/2 connection carries at most (capped by the peer's setting). */
  readonly maxStreamsPerConnection: number;
  /**
   * Starts the TCP connection under a tunnel (in-pod mode: from inside the source pod's network
   * namespace); by default a plain connect bound to `srcIp`. Must set no-delay and keepalive.
   */
  readonly openTcp?: (target: HboneTarget) => Socket;
}

interface PooledSession {
  readonly session: ClientHttp2Session;
  readonly key: string;
  /** The source address it was dialled from ('' when the kernel picked it). */
  readonly srcIp: string;
  active: number;
  idleTimer: NodeJS.Timeout | undefined;
}

/** Settings the client advertises (reference/ztunnel.md §2.2). */
const CLIENT_SETTINGS = {
  initialWindowSize: H2.streamWindowBytes,
  maxFrameSize: H2.maxFrameBytes,
  maxHeaderListSize: H2.clientMaxHeaderListBytes,
  enablePush: false,
} as const;

/**
 * HBONE client with pooled HTTP/2 connections. Streams share a connection only when the pool key
 * matches; concurrent requests for a key with no connection wait for a single dial.
 */
export class HbonePool {
  private readonly opts: HbonePoolOptions;
  private readonly sessions = new Map<string, PooledSession[]>();
  private readonly dialing = new Map<string, Promise<PooledSession>>();
  private closed = false;

  constructor(opts: HbonePoolOptions) {
    this.opts = opts;
  }

  /** Opens a CONNECT stream; resolves once the server answered (200, or its refusal). */
  async connect(target: HboneTarget, req: HboneConnectRequest): Promise<HboneConnectResult> {
    const pooled = await this.checkout(target);
    return this.request(pooled, req);
  }

  /** Number of open pooled connections, for metrics and tests. */
  get connectionCount(): number {
    let n = 0;
    for (const list of this.sessions.values()) n += list.length;
    return n;
  }

  /** Sends GOAWAY on every connection; open streams finish, then the connections close. */
  close(): void {
    this.closed = true;
    for (const list of this.sessions.values()) for (const p of list) p.session.close();
  }

  /**
   * Sends GOAWAY on every connection dialled from `srcIp` and takes them out of the pool (in-pod
   * mode: a pod that was released, whose namespace they would otherwise keep alive for up to the
   * idle timeout). Open streams finish; the connections close after them. Returns how many.
   */
  closeFrom(srcIp: string): number {
    let n = 0;
    for (const list of [...this.sessions.values()]) {
      for (const p of [...list]) {
        if (p.srcIp !== srcIp) continue;
        this.remove(p);
        p.session.close();
        n++;
      }
    }
    return n;
  }

  /** Closes every connection now. */
  destroy(): void {
    this.closed = true;
    for (const list of this.sessions.values()) for (const p of list) p.session.destroy();
  }

  /**
   * A session with a free stream slot, the slot already taken (so concurrent callers cannot overfill
   * it). Callers that find a dial under way for their key wait for it and share its outcome, failure
   * included: a thundering herd opens one connection, and a dead peer costs one timeout, not N.
   */
  private async checkout(target: HboneTarget): Promise<PooledSession> {
    const key = poolKey(
      formatSpiffe(target.srcIdentity),
      target.srcIp ?? '',
      target.expectedIdentities,
      formatHostPort(target.dstIp, target.dstPort),
    );
    for (;;) {
      if (this.closed) throw new AmbitError(ErrorCode.Shutdown, 'hbone pool is closed');
      const ready = this.sessions.get(key)?.find((p) => this.usable(p));
      if (ready) return this.reserve(ready);
      let dial = this.dialing.get(key);
      if (!dial) {
        dial = this.dial(key, target).finally(() => this.dialing.delete(key));
        this.dialing.set(key, dial);
      }
      const pooled = await dial;
      if (this.usable(pooled)) return this.reserve(pooled);
      // Full already (others took its slots): look again, dialing another if need be.
    }
  }

  private reserve(p: PooledSession): PooledSession {
    p.active++;
    this.disarmIdle(p);
    return p;
  }

  private release(p: PooledSession): void {
    p.active--;
    if (p.active === 0) this.armIdle(p);
  }

  private usable(p: PooledSession): boolean {
    const s = p.session;
    if (s.destroyed || s.closed || !s.socket) return false;
    const peerMax = s.remoteSettings.maxConcurrentStreams ?? Infinity;
    return p.active < Math.min(this.opts.maxStreamsPerConnection, peerMax);
  }

  private async dial(key: string, target: HboneTarget): Promise<PooledSession> {
    const cert = await this.opts.getCertificate(target.srcIdentity);
    const where = formatHostPort(target.dstIp, target.dstPort);
    const socket = await new Promise<TLSSocket>((resolve, reject) => {
      // The TCP socket is made first so it can be bound to the source pod's address.
      const tcp = this.opts.openTcp
        ? this.opts.openTcp(target)
        : netConnect({
            host: target.dstIp,
            port: target.dstPort,
            localAddress: target.srcIp,
            noDelay: true,
            keepAlive: true,
            keepAliveInitialDelay: TCP_KEEPALIVE_MS,
          });
      let tcpConnected = false;
      tcp.once('connect', () => (tcpConnected = true));
      const s = tlsConnect({
        socket: tcp,
        secureContext: secureContextFor(cert),
        ALPNProtocols: [HBONE_TLS.alpn],
        // No SNI (reference/ztunnel.md §2.1): the peer is chosen by address and checked by SAN.
        servername: '',
        rejectUnauthorized: true,
        checkServerIdentity: (_host, peer) => checkServerIdentities(target.expectedIdentities, peer),
      });
      const timer = setTimeout(() => {
        s.destroy();
        reject(
          new AmbitError(ErrorCode.HboneTimeout, `connection to ${where} timed out`, {
            hint: 'is a NetworkPolicy blocking HBONE port 15008?',
          }),
        );
      }, this.opts.connectTimeoutMs);
      s.once('secureConnect', () => {
        clearTimeout(timer);
        if (s.alpnProtocol !== HBONE_TLS.alpn) {
          s.destroy();
          reject(new AmbitError(ErrorCode.HboneConnectFailed, `${where} did not negotiate ALPN h2`));
          return;
        }
        resolve(s);
      });
      s.once('error', (err) => {
        clearTimeout(timer);
        // Which phase failed tells the operator where to look: the network or the certificates.
        reject(
          tcpConnected
            ? new AmbitError(
                ErrorCode.HboneTlsFailed,
                `hbone handshake with ${where} failed: ${describeError(err)}`,
                {
                  cause: err,
                  hint: 'do both sides trust the same root, and is the peer the identity we expect?',
                },
              )
            : new AmbitError(
                ErrorCode.HboneConnectFailed,
                `hbone connection to ${where} failed: ${describeError(err)}`,
                {
                  cause: err,
                  hint: 'is the destination agent listening on its HBONE port?',
                },
              ),
        );
      });
    });
    if (this.closed) {
      // Shut down while we dialed: nobody will close this connection later.
      socket.destroy();
      throw new AmbitError(ErrorCode.Shutdown, 'hbone pool is closed');
    }
    const session = h2connect(`https://${where}`, {
      createConnection: () => socket,
      settings: CLIENT_SETTINGS,
      maxSessionMemory: H2.maxSessionMemoryMb,
      peerMaxConcurrentStreams: H2.poolMaxStreamsPerConnection,
    });
    session.setLocalWindowSize(H2.connectionWindowBytes);
    const pooled: PooledSession = {
      session,
      key,
      srcIp: target.srcIp ?? '',
      active: 0,
      idleTimer: undefined,
    };
    const list = this.sessions.get(key) ?? [];
    list.push(pooled);
    this.sessions.set(key, list);
    session.on('error', (err) =>
      this.opts.log.debug({ dst: where, error: describeError(err) }, 'hbone session error'),
    );
    session.once('close', () => this.remove(pooled));
    session.once('goaway', () => this.remove(pooled));
    startKeepalive(session, () => {
      this.opts.log.warn({ dst: where }, 'HBONE ping timeout');
      session.destroy();
    });
    this.armIdle(pooled);
    return pooled;
  }

  /** Sends the CONNECT on a session whose slot `checkout` reserved; the slot is freed on close. */
  private request(pooled: PooledSession, req: HboneConnectRequest): Promise<HboneConnectResult> {
    let stream: ClientHttp2Stream;
    try {
      stream = pooled.session.request(
        { ':method': 'CONNECT', ':authority': req.authority, ...req.headers },
        { endStream: false },
      );
    } catch (err) {
      this.release(pooled);
      return Promise.reject(
        new AmbitError(ErrorCode.HboneConnectFailed, `hbone session closed under CONNECT ${req.authority}`, {
          cause: err,
        }),
      );
    }
    stream.once('close', () => this.release(pooled));
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => {
        stream.off('response', onResponse);
        stream.off('close', onClose);
        reject(
          new AmbitError(
            ErrorCode.HboneConnectFailed,
            `hbone CONNECT ${req.authority} failed: ${describeError(err)}`,
            { cause: err },
          ),
        );
      };
      const onClose = () => {
        stream.off('response', onResponse);
        stream.off('error', onError);
        reject(
          new AmbitError(
            ErrorCode.HboneConnectFailed,
            `hbone stream for ${req.authority} closed before a response`,
          ),
        );
      };
      const onResponse = (headers: IncomingHttpHeaders) => {
        stream.off('error', onError);
        stream.off('close', onClose);
        const status = Number(headers[':status']);
        if (status === 200) return resolve({ ok: true, stream });
        stream.close(constants.NGHTTP2_CANCEL);
        const hint = HBONE_STATUS_HINTS[status] ?? 'see the destination agent log';
        resolve({
          ok: false,
          status,
          reason: `hbone CONNECT ${req.authority} refused with ${status}: ${hint}`,
        });
      };
      stream.once('response', onResponse);
      stream.once('error', onError);
      stream.once('close', onClose);
    });
  }

  private remove(p: PooledSession): void {
    this.disarmIdle(p);
    const list = this.sessions.get(p.key);
    if (!list) return;
    const i = list.indexOf(p);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.sessions.delete(p.key);
  }

  private armIdle(p: PooledSession): void {
    this.disarmIdle(p);
    p.idleTimer = setTimeout(() => {
      this.remove(p);
      p.session.close();
    }, this.opts.idleTimeoutMs);
    p.idleTimer.unref();
  }

  private disarmIdle(p: PooledSession): void {
    if (p.idleTimer) clearTimeout(p.idleTimer);
    p.idleTimer = undefined;
  }
}
