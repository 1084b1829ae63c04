import {
  connect as h2connect,
  constants,
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type IncomingHttpHeaders,
} from 'node:http2';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { AmbitError, describeError, ErrorCode } from '../errors.ts';
import type { WorkloadCertificate } from '../identity/certificate.ts';
import { formatSpiffe, type Identity } from '../identity/spiffe.ts';
import { checkServerIdentities, HBONE_TLS, secureContextFor } from '../identity/tls.ts';
import type { Logger } from '../log.ts';
import { startKeepalive } from './keepalive.ts';
import { formatHostPort, H2, poolKey } from './protocol.ts';

/** Where and as whom to open a tunnel. */
export interface HboneTarget {
  /** The identity we present (the source workload's). */
  readonly srcIdentity: Identity;
  /** Source IP to bind, so the peer sees the source pod's address; undefined lets the kernel pick. */
  readonly srcIp: string | undefined;
  /** The TCP destination: a pod's or a waypoint's HBONE address. */
  readonly dstIp: string;
  readonly dstPort: number;
  /** The server must present one of these SPIFFE IDs. */
  readonly expectedIdentities: readonly string[];
}

export interface HboneConnectRequest {
  readonly authority: string;
  readonly headers: Readonly<Record<string, string>>;
}

/** A CONNECT the server answered with something other than 200. */
export class HboneRejectedError extends AmbitError {
  readonly status: number;
  constructor(status: number, authority: string) {
    super(ErrorCode.HboneRejected, `hbone CONNECT ${authority} refused with ${status}`, {
      hint: HINTS[status] ?? 'see the destination agent log',
    });
    this.status = status;
  }
}

const HINTS: Record<number, string> = {
  400: 'the destination agent does not host that address',
  401: 'an AuthorizationPolicy at the destination denied it',
  503: 'the destination workload is unknown there or did not accept the connection',
};

export interface HbonePoolOptions {
  readonly getCertificate: (identity: Identity) => Promise<WorkloadCertificate>;
  readonly log: Logger;
  readonly connectTimeoutMs: number;
  /** A connection with no streams for this long is closed. */
  readonly idleTimeoutMs: number;
  readonly maxStreamsPerConnection: number;
}

interface PooledSession {
  readonly session: ClientHttp2Session;
  readonly key: string;
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

  /** Opens a CONNECT stream; resolves once the server answered 200. */
  async connect(target: HboneTarget, req: HboneConnectRequest): Promise<ClientHttp2Stream> {
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

  /** Closes every connection now. */
  destroy(): void {
    this.closed = true;
    for (const list of this.sessions.values()) for (const p of list) p.session.destroy();
  }

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
      if (ready) return ready;
      const inflight = this.dialing.get(key);
      if (!inflight) break;
      // Wait for the one dial under way, then look again: a thundering herd opens one connection.
      await inflight.catch(() => undefined);
      if (!this.dialing.has(key) && !this.sessions.get(key)?.some((p) => this.usable(p))) break;
    }
    const dial = this.dial(key, target);
    this.dialing.set(key, dial);
    try {
      return await dial;
    } finally {
      this.dialing.delete(key);
    }
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
      const tcp = netConnect({ host: target.dstIp, port: target.dstPort, localAddress: target.srcIp });
      tcp.setNoDelay(true);
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
        reject(
          new AmbitError(
            ErrorCode.HboneConnectFailed,
            `hbone connection to ${where} failed: ${describeError(err)}`,
            { cause: err },
          ),
        );
      });
    });
    const session = h2connect(`https://${where}`, {
      createConnection: () => socket,
      settings: CLIENT_SETTINGS,
      maxSessionMemory: 64,
      peerMaxConcurrentStreams: H2.poolMaxStreamsPerConnection,
    });
    session.setLocalWindowSize(H2.connectionWindowBytes);
    const pooled: PooledSession = { session, key, active: 0, idleTimer: undefined };
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

  private request(pooled: PooledSession, req: HboneConnectRequest): Promise<ClientHttp2Stream> {
    const stream = pooled.session.request(
      { ':method': 'CONNECT', ':authority': req.authority, ...req.headers },
      { endStream: false },
    );
    pooled.active++;
    this.disarmIdle(pooled);
    stream.once('close', () => {
      pooled.active--;
      if (pooled.active === 0) this.armIdle(pooled);
    });
    return new Promise((resolve, reject) => {
      const fail = (err: Error) => {
        stream.off('response', onResponse);
        reject(err);
      };
      const onResponse = (headers: IncomingHttpHeaders) => {
        stream.off('error', fail);
        stream.off('close', onClose);
        const status = Number(headers[':status']);
        if (status === 200) return resolve(stream);
        stream.close(constants.NGHTTP2_CANCEL);
        reject(new HboneRejectedError(status, req.authority));
      };
      const onClose = () =>
        fail(
          new AmbitError(
            ErrorCode.HboneConnectFailed,
            `hbone stream for ${req.authority} closed before a response`,
          ),
        );
      stream.once('response', onResponse);
      stream.once('error', fail);
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
