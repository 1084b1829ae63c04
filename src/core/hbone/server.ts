import {
  constants,
  createSecureServer,
  type Http2SecureServer,
  type Http2Session,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
} from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { describeError } from '../errors.ts';
import type { WorkloadCertificate } from '../identity/certificate.ts';
import type { Identity } from '../identity/spiffe.ts';
import { checkClientIdentity, HBONE_TLS, hboneTlsOptions } from '../identity/tls.ts';
import type { Logger } from '../log.ts';
import { spliceTunnel, type SpliceResult } from './copy.ts';
import { startKeepalive } from './keepalive.ts';
import { H2, HboneStatus, parseAuthority, TCP_KEEPALIVE_MS, type Authority } from './protocol.ts';

/** One CONNECT stream that passed the protocol checks, handed to the program to decide. */
export interface HboneRequest {
  readonly authority: Authority;
  /** The raw `:authority` header. */
  readonly rawAuthority: string;
  /** The client's SPIFFE identity from its verified certificate. */
  readonly peerIdentity: Identity;
  /** The address the client connected to (the pod IP, in-pod and local mode). */
  readonly localAddress: string;
  /** The TCP peer: the client's pod IP. */
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly baggage: string | undefined;
  readonly forwarded: string | undefined;
  readonly traceparent: string | undefined;
  /** Refuses the tunnel with a status and reason (the reason is logged, not sent). */
  reject(status: (typeof HboneStatus)[keyof typeof HboneStatus]): void;
  /**
   * Answers 200 (the upstream connection has already succeeded) and copies bytes until both
   * directions are done. `headers` may carry a `baggage` for the destination.
   */
  accept(upstream: Socket, headers?: Record<string, string>): Promise<SpliceResult>;
  /**
   * Answers 200 and hands the tunnel itself to the program (a waypoint terminates it and reads HTTP
   * from it). The stream's end is the client's FIN; ending it sends ours.
   */
  acceptStream(headers?: Record<string, string>): ServerHttp2Stream | undefined;
}

export interface HboneServerOptions {
  readonly host: string;
  /** 0 picks a free port; read the bound one from `address()`. */
  readonly port: number;
  /**
   * A listening socket to adopt instead of binding `host:port` (in-pod mode: the socket was made
   * inside the pod's network namespace).
   */
  readonly fd?: number;
  readonly certificate: WorkloadCertificate;
  /** Clients must be in this trust domain (reference/ztunnel.md §2.1). */
  readonly trustDomain: string;
  readonly log: Logger;
  /** Called for every CONNECT that passed the protocol checks; must answer it exactly once. */
  readonly onRequest: (req: HboneRequest) => void;
}

/** Settings advertised by the HBONE server (reference/ztunnel.md §2.2). */
const SERVER_SETTINGS = {
  initialWindowSize: H2.streamWindowBytes,
  maxFrameSize: H2.maxFrameBytes,
  maxConcurrentStreams: H2.serverMaxConcurrentStreams,
  maxHeaderListSize: H2.serverMaxHeaderListBytes,
  enablePush: false,
} as const;

/** The HBONE listener: mutual TLS 1.3, HTTP/2, one CONNECT stream per tunnelled connection. */
export class HboneServer {
  private readonly server: Http2SecureServer;
  private readonly sessions = new Set<Http2Session>();
  /** Every accepted TCP socket, handshaking or not, so a drain can end them all at its deadline. */
  private readonly sockets = new Set<Socket>();
  private closing = false;
  private readonly peers = new WeakMap<Http2Session, Identity>();
  private readonly opts: HboneServerOptions;

  private constructor(opts: HboneServerOptions) {
    this.opts = opts;
    this.server = createSecureServer({
      ...hboneTlsOptions(opts.certificate),
      requestCert: true,
      // The chain is still verified by OpenSSL against our roots; the verdict is enforced in
      // track() before any stream is read, so a refusal can be logged with its reason (OpenSSL's
      // own rejection reaches us only as "socket hang up").
      rejectUnauthorized: false,
      ALPNProtocols: [HBONE_TLS.alpn],
      allowHTTP1: false,
      settings: SERVER_SETTINGS,
      maxSessionMemory: H2.maxSessionMemoryMb,
      maxSendHeaderBlockLength: H2.serverMaxHeaderListBytes,
    });
    this.server.on('connection', (socket: Socket) => {
      socket.setNoDelay(true);
      socket.setKeepAlive(true, TCP_KEEPALIVE_MS);
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    this.server.on('tlsClientError', (err, socket) => {
      opts.log.debug(
        { src: (socket as TLSSocket).remoteAddress, error: describeError(err) },
        'hbone handshake failed',
      );
    });
    this.server.on('session', (session) => this.track(session));
    this.server.on('stream', (stream, headers) => this.handle(stream, headers));
  }

  static async start(opts: HboneServerOptions): Promise<HboneServer> {
    const s = new HboneServer(opts);
    await new Promise<void>((resolve, reject) => {
      s.server.once('error', reject);
      const where = opts.fd === undefined ? { host: opts.host, port: opts.port } : { fd: opts.fd };
      s.server.listen({ ...where, exclusive: true }, () => {
        s.server.off('error', reject);
        resolve();
      });
    });
    s.server.on('error', (err) => opts.log.error({ error: describeError(err) }, 'hbone server error'));
    return s;
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /** Presents a renewed certificate to new connections; open ones keep theirs. */
  setCertificate(cert: WorkloadCertificate): void {
    this.server.setSecureContext(hboneTlsOptions(cert));
  }

  /**
   * Stops accepting, sends GOAWAY so clients open no new streams here, waits for open streams up to
   * `deadlineMs`, then closes whatever is left.
   */
  async close(deadlineMs: number): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sessions) s.close();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, deadlineMs)));
    const drained = Promise.all([...this.sessions].map((s) => new Promise((r) => s.once('close', r))));
    await Promise.race([drained, deadline]);
    clearTimeout(timer);
    // Sessions and sockets still here (including handshakes in progress) end now.
    for (const s of this.sessions) s.destroy();
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  private track(session: Http2Session): void {
    if (this.closing) {
      // The handshake finished after the drain began: no new sessions now.
      session.destroy();
      return;
    }
    // The session's socket is a proxy of the TLS socket: identity is checked and kept per session.
    const socket = session.socket as TLSSocket;
    const peer = checkClientIdentity(socket, this.opts.trustDomain);
    if (!peer.ok) {
      this.opts.log.warn(
        { src: `${socket.remoteAddress}:${socket.remotePort}`, error: peer.reason },
        'hbone peer rejected',
      );
      session.destroy();
      return;
    }
    this.peers.set(session, peer.identity);
    this.sessions.add(session);
    session.once('close', () => this.sessions.delete(session));
    session.on('error', (err) => this.opts.log.debug({ error: describeError(err) }, 'hbone session error'));
    session.once('connect', () => {
      if (!session.destroyed) session.setLocalWindowSize(H2.connectionWindowBytes);
    });
    startKeepalive(session, () => {
      this.opts.log.info({ src: session.socket?.remoteAddress }, 'hbone ping timeout, closing session');
      session.goaway(constants.NGHTTP2_NO_ERROR);
      session.destroy();
    });
  }

  private handle(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on('error', (err) => this.opts.log.debug({ error: describeError(err) }, 'hbone stream error'));
    const session = stream.session;
    const socket = session?.socket as TLSSocket | undefined;
    const peerIdentity = session ? this.peers.get(session) : undefined;
    const refuse = (status: number, reason: string) => {
      this.opts.log.info({ src: socket?.remoteAddress, status, error: reason }, 'hbone request refused');
      respond(stream, status);
    };
    if (!socket || !peerIdentity) return refuse(HboneStatus.Unauthorized, 'peer identity unknown');
    if (headers[':method'] !== 'CONNECT')
      return refuse(HboneStatus.BadRequest, `method ${headers[':method']} is not CONNECT`);
    const rawAuthority = headers[':authority'];
    const parsed = parseAuthority(rawAuthority);
    if (!parsed.ok) return refuse(HboneStatus.BadRequest, parsed.error);
    const header = (name: string) => {
      const v = headers[name];
      return Array.isArray(v) ? v.join(',') : v;
    };
    let answered = false;
    this.opts.onRequest({
      authority: parsed.authority,
      rawAuthority: rawAuthority!,
      peerIdentity,
      localAddress: socket.localAddress ?? '',
      remoteAddress: socket.remoteAddress ?? '',
      remotePort: socket.remotePort ?? 0,
      baggage: header('baggage'),
      forwarded: header('forwarded'),
      traceparent: header('traceparent'),
      reject: (status) => {
        if (answered) return;
        answered = true;
        respond(stream, status);
      },
      accept: (upstream, extra) => {
        if (answered) throw new Error('hbone request answered twice');
        answered = true;
        if (stream.destroyed || stream.closed) {
          upstream.destroy();
          return Promise.resolve({ error: new Error('client went away before the tunnel was up') });
        }
        stream.respond({ ':status': HboneStatus.Ok, ...extra }, { endStream: false });
        return spliceTunnel(upstream, stream);
      },
      acceptStream: (extra) => {
        if (answered) throw new Error('hbone request answered twice');
        answered = true;
        if (stream.destroyed || stream.closed) return undefined;
        stream.respond({ ':status': HboneStatus.Ok, ...extra }, { endStream: false });
        return stream;
      },
    });
  }
}

function respond(stream: ServerHttp2Stream, status: number): void {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  stream.respond({ ':status': status }, { endStream: true });
}
