/**
 * The gateway's front: one real listener per Gateway server port (where the waypoint has HBONE
 * tunnels). A plaintext HTTP port serves HTTP/1.1 and h2c; an HTTPS port offers ALPN `h2,http/1.1`
 * (as Istio's gateways do), serves HTTP/2 (gRPC too) to clients that pick h2, and terminates TLS and picks
 * the server (its certificate, its client-certificate check and its routes) by SNI as Envoy picks a
 * filter chain: the exact host, else the longest `*.` wildcard, else `*`; a connection without SNI
 * gets the `*` server; no match ends the handshake.
 *
 * TCP servers (plaintext) and TLS servers hand their connections to the TCP proxy (onTcp): a TLS
 * server that terminates does so first, like HTTPS; a PASSTHROUGH port reads the SNI from the
 * ClientHello (sni.ts) without terminating, picks the server by it as above, and hands over the
 * socket with the bytes read so far.
 *
 * A server whose certificate cannot be loaded (a missing or malformed file, a credentialName whose
 * Secret has not come over SDS) is not ready, with the reason: its hosts fail their handshakes while
 * the other servers of the port, and the other ports, keep serving. A port that cannot bind is tried
 * again on the next update or after PORT_RETRY_MS.
 *
 * Certificates from Secrets (sds.ts) are loaded again whenever the controller pushes a new version,
 * so a rotated Secret is served from the next handshake on, without a restart; files are read when
 * the configuration changes.
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttp2Server, type Http2Session } from 'node:http2';
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import {
  createSecureContext,
  createServer as createTlsServer,
  type SecureContext,
  type SecureContextOptions,
  type SecureVersion,
  type Server as TlsServer,
  type TLSSocket,
} from 'node:tls';
import { describeError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import { SDS_CA_SUFFIX, sdsSecretName, type GatewayListenerFacts } from '../../core/xds/l7-names.ts';
import { readClientHello } from './sni.ts';
import {
  serveHttp,
  type IngressHandler,
  type IngressOptions,
  type IngressRequest,
  type IngressResponse,
} from '../http-ingress.ts';
import type { WorkloadCertificate } from '../../core/identity/certificate.ts';
import type { GatewaySecret } from './sds.ts';

/** One gateway listener (an HTTP port, or one TLS server of an HTTPS port). */
export interface GatewayChain {
  /** The listener's name: its route configuration has the same name. */
  readonly listenerName: string;
  readonly facts: GatewayListenerFacts;
}

/** The client connection a request came on. */
export interface ConnectionInfo {
  readonly chain: GatewayChain;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly tls: boolean;
}

export type GatewayRequestHandler = (
  conn: ConnectionInfo,
  req: IngressRequest,
  res: IngressResponse,
  protocol: 'http/1.1' | 'h2c',
) => void;

export interface GatewayServersDeps {
  /** The address every port listens on. */
  readonly host: string;
  readonly log: Logger;
  readonly http: IngressOptions;
  readonly onRequest: GatewayRequestHandler;
  /** The Secrets received over SDS, for servers with a credentialName. */
  readonly secrets?: SecretLookup;
  /** The gateway's own mesh certificate (ISTIO_MUTUAL servers); undefined until issued. */
  readonly meshCertificate?: () => WorkloadCertificate | undefined;
  /**
   * A connection of a TCP or TLS server, to proxy: the socket (TLS already terminated, or not at all
   * for PASSTHROUGH) and the bytes already read from it, which go first.
   */
  readonly onTcp?: (conn: ConnectionInfo, socket: Socket, prefix: Buffer | undefined) => void;
}

/** The Secrets a gateway has received, by SDS resource name; `namespace` is the proxy's own. */
export interface SecretLookup {
  readonly namespace: string;
  get(resourceName: string): GatewaySecret | undefined;
}

/** A port that failed to bind is tried again after this. */
const PORT_RETRY_MS = 5000;
/** A PASSTHROUGH client must send its ClientHello within this (Envoy's tls_inspector waits 15 s). */
const CLIENT_HELLO_TIMEOUT_MS = 15_000;
/** Reads a ClientHello may take (a real one comes in one or two). */
const MAX_CLIENT_HELLO_READS = 64;

interface ChainState {
  readonly chain: GatewayChain;
  readonly context: SecureContext | undefined;
  /** What the context was made of (a TLS server's default context is set from options). */
  readonly options: SecureContextOptions | undefined;
  /** Why the chain cannot serve ('' when it can). */
  readonly error: string;
}

interface PortState {
  readonly port: number;
  /**
   * `http` or `tcp` (plaintext), `passthrough` (TLS read for its SNI only), or `https` /
   * `https+client-cert` (terminated; the server asks for client certificates).
   */
  readonly kind: string;
  chains: ChainState[];
  server: Server | undefined;
  address: AddressInfo | undefined;
  error: string;
}

const TLS_VERSIONS: Readonly<Record<string, SecureVersion>> = {
  TLSV1_0: 'TLSv1',
  TLSV1_1: 'TLSv1.1',
  TLSV1_2: 'TLSv1.2',
  TLSV1_3: 'TLSv1.3',
};

/** Loads a TLS server's certificate, key and client CA; the reason when it cannot. */
export function loadTlsContext(
  facts: GatewayListenerFacts,
  secrets?: SecretLookup,
  meshCertificate?: () => WorkloadCertificate | undefined,
): {
  context?: SecureContext;
  options?: SecureContextOptions;
  error: string;
} {
  const tls = facts.tls;
  if (!tls) return { error: 'no TLS settings' };
  if (tls.mode === 'ISTIO_MUTUAL') {
    // The gateway's own SPIFFE certificate; clients must present one the mesh CA signed.
    const own = meshCertificate?.();
    if (!own) return { error: 'ISTIO_MUTUAL: the gateway has no mesh certificate yet' };
    return contextOf(
      tls,
      Buffer.from(own.chainPem.join('')),
      Buffer.from(own.keyPem),
      Buffer.from(own.rootsPem),
    );
  }
  if (tls.credentialName) return secretContext(tls, secrets);
  const read = (what: string, path: string) => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new Error(`${what} ${path}: ${describeError(err)}`, { cause: err });
    }
  };
  try {
    const cert = read('serverCertificate', tls.serverCertificate);
    const key = read('privateKey', tls.privateKey);
    const ca = tls.mode === 'MUTUAL' ? read('caCertificates', tls.caCertificates) : undefined;
    return contextOf(tls, cert, key, ca);
  } catch (err) {
    return { error: describeError(err) };
  }
}

function contextOf(
  tls: NonNullable<GatewayListenerFacts['tls']>,
  cert: Buffer,
  key: Buffer,
  ca: Buffer | undefined,
): { context?: SecureContext; options?: SecureContextOptions; error: string } {
  const options: SecureContextOptions = {
    cert,
    key,
    ...(ca ? { ca } : {}),
    ...(TLS_VERSIONS[tls.minProtocolVersion] ? { minVersion: TLS_VERSIONS[tls.minProtocolVersion] } : {}),
    ...(TLS_VERSIONS[tls.maxProtocolVersion] ? { maxVersion: TLS_VERSIONS[tls.maxProtocolVersion] } : {}),
  };
  try {
    return { context: createSecureContext(options), options, error: '' };
  } catch (err) {
    return { error: describeError(err) };
  }
}

/** A credentialName server's context from the Secrets received over SDS; the reason when it cannot. */
function secretContext(
  tls: NonNullable<GatewayListenerFacts['tls']>,
  secrets: SecretLookup | undefined,
): { context?: SecureContext; options?: SecureContextOptions; error: string } {
  if (!secrets) return { error: `credentialName "${tls.credentialName}": this gateway has no SDS source` };
  const name = sdsSecretName(tls.credentialName, secrets.namespace);
  const missing = (resource: string) =>
    `${resource} not received over SDS: is the Secret missing, malformed (the controller logs why) or in another namespace than this gateway's (${secrets.namespace})?`;
  const pair = secrets.get(name);
  if (pair?.kind !== 'certificate') return { error: missing(name) };
  let ca: Buffer | undefined;
  if (tls.mode === 'MUTUAL') {
    const caSecret = secrets.get(`${name}${SDS_CA_SUFFIX}`);
    if (caSecret?.kind !== 'ca') return { error: missing(`${name}${SDS_CA_SUFFIX}`) };
    ca = caSecret.trustedCa;
  }
  const out = contextOf(tls, pair.certificateChain, pair.privateKey, ca);
  return out.error ? { error: `${name}: ${out.error}` } : out;
}

/** The chain for an SNI name (undefined: none), as Envoy matches server_names. */
export function pickChain<T extends { readonly chain: GatewayChain }>(
  chains: readonly T[],
  servername: string | undefined,
): T | undefined {
  const name = (servername ?? '').toLowerCase();
  if (name) {
    const exact = chains.find((c) => c.chain.facts.hosts.includes(name));
    if (exact) return exact;
    let best: T | undefined;
    let bestLength = -1;
    for (const c of chains)
      for (const h of c.chain.facts.hosts)
        if (h.startsWith('*.') && name.endsWith(h.slice(1)) && h.length > bestLength) {
          best = c;
          bestLength = h.length;
        }
    if (best) return best;
  }
  return chains.find((c) => c.chain.facts.hosts.includes('*'));
}

export class GatewayServers {
  private readonly deps: GatewayServersDeps;
  private readonly ports = new Map<number, PortState>();
  private readonly connections = new Map<Socket, () => void>();
  private retry: NodeJS.Timeout | undefined;
  private closed = false;
  private last: readonly GatewayChain[] = [];
  private updating: Promise<void> = Promise.resolve();

  constructor(deps: GatewayServersDeps) {
    this.deps = deps;
  }

  /** Brings the listeners in line with `chains` (every gateway listener this proxy serves). */
  update(chains: readonly GatewayChain[]): Promise<void> {
    this.last = chains;
    // One update at a time (a listener push and a Secret push a moment later would otherwise bind
    // a port twice); the one that runs takes the latest chains.
    this.updating = this.updating
      .then(() => this.apply(this.last))
      .catch((err: unknown) => this.deps.log.error({ error: describeError(err) }, 'gateway update failed'));
    return this.updating;
  }

  private async apply(chains: readonly GatewayChain[]): Promise<void> {
    if (this.closed) return;
    const byPort = new Map<number, GatewayChain[]>();
    for (const c of chains) {
      const list = byPort.get(c.facts.port);
      if (list) list.push(c);
      else byPort.set(c.facts.port, [c]);
    }
    for (const [port, state] of [...this.ports])
      if (!byPort.has(port)) {
        this.ports.delete(port);
        await this.stopPort(state);
      }
    for (const [port, list] of byPort) {
      const kind = portKind(list);
      const https = kind.startsWith('https');
      const states: ChainState[] = list.map((chain) => {
        if (!https) return { chain, context: undefined, options: undefined, error: '' };
        const loaded = loadTlsContext(chain.facts, this.deps.secrets, this.deps.meshCertificate);
        return { chain, context: loaded.context, options: loaded.options, error: loaded.error };
      });
      let state = this.ports.get(port);
      if (state && state.kind !== kind) {
        this.ports.delete(port);
        await this.stopPort(state);
        state = undefined;
      }
      if (!state) {
        state = { port, kind, chains: states, server: undefined, address: undefined, error: '' };
        this.ports.set(port, state);
      }
      state.chains = states;
      for (const c of states)
        if (c.error)
          this.deps.log.warn(
            { listener: c.chain.listenerName, servers: c.chain.facts.servers, error: c.error },
            'gateway server not ready',
          );
      if (https && state.server) setDefaultContext(state.server as TlsServer, states);
      if (!state.server) await this.startPort(state);
    }
    this.scheduleRetry();
  }

  /** Where each port listens. */
  addresses(): Map<number, AddressInfo> {
    const out = new Map<number, AddressInfo>();
    for (const [port, s] of this.ports) if (s.address) out.set(port, s.address);
    return out;
  }

  /** What is not serving, and why (readiness). */
  problems(): string[] {
    const out: string[] = [];
    for (const s of this.ports.values()) {
      if (!s.server) out.push(`port ${s.port} not listening${s.error ? ` (${s.error})` : ''}`);
      for (const c of s.chains)
        if (c.error)
          out.push(
            `server ${c.chain.facts.servers.join(', ') || c.chain.listenerName} on port ${s.port}: ${c.error}`,
          );
    }
    return out;
  }

  /** Whether any server can take a connection now (a port listening with a server that loaded). */
  serving(): boolean {
    return [...this.ports.values()].some((s) => s.server && s.chains.some((c) => !c.error));
  }

  /** Client connections open now. */
  openConnections(): number {
    return this.connections.size;
  }

  /** Stops listening and asks every connection to finish (HTTP/2 GOAWAY, HTTP/1.1 after the response). */
  async drain(): Promise<void> {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    await Promise.all([...this.ports.values()].map((s) => this.stopListening(s)));
    for (const stop of this.connections.values()) stop();
  }

  /** Destroys what is left. */
  destroyAll(): void {
    for (const socket of this.connections.keys()) socket.destroy();
    this.connections.clear();
  }

  private scheduleRetry(): void {
    if (this.retry || this.closed) return;
    if (![...this.ports.values()].some((s) => !s.server)) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      void this.update(this.last);
    }, PORT_RETRY_MS);
    this.retry.unref();
  }

  private async startPort(state: PortState): Promise<void> {
    // TCP connections keep half-close (a client that has sent everything still reads the answer):
    // Node would end the socket at the client's FIN otherwise. HTTP ends its sockets itself.
    const server =
      state.kind === 'http'
        ? createNetServer((s) => this.serve(state, s, false))
        : state.kind === 'tcp'
          ? createNetServer({ allowHalfOpen: true }, (s) => this.serve(state, s, false))
          : state.kind === 'passthrough'
            ? createNetServer({ allowHalfOpen: true }, (s) => this.passthrough(state, s))
            : this.tlsServer(state);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: this.deps.host, port: state.port }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      server.on('error', (err) =>
        this.deps.log.error({ port: state.port, error: describeError(err) }, 'listener error'),
      );
      state.server = server;
      state.address = server.address() as AddressInfo;
      state.error = '';
      this.deps.log.info(
        { port: state.port, address: state.address, kind: state.kind },
        'gateway port listening',
      );
    } catch (err) {
      state.error = describeError(err);
      this.deps.log.error(
        { port: state.port, host: this.deps.host, error: state.error, retryInMs: PORT_RETRY_MS },
        'gateway port cannot listen',
      );
    }
  }

  private tlsServer(state: PortState): Server {
    const server = createTlsServer({
      allowHalfOpen: true,
      // Client certificates are asked for on a port with a MUTUAL server and checked per server
      // below: SIMPLE servers on the same port take connections without one.
      requestCert: state.kind === 'https+client-cert',
      rejectUnauthorized: false,
      // h2 first, as Envoy offers it; a client that offers neither gets http/1.1 (no ALPN).
      ALPNProtocols: ['h2', 'http/1.1'],
      SNICallback: (servername, cb) => {
        const c = pickChain(state.chains, servername);
        if (!c) return cb(new Error(`no server on port ${state.port} for SNI "${servername}"`), undefined);
        if (!c.context) return cb(new Error(c.error), undefined);
        cb(null, c.context);
      },
    });
    setDefaultContext(server, state.chains);
    server.on('secureConnection', (socket: TLSSocket) => this.serve(state, socket, true));
    server.on('tlsClientError', (err, socket) =>
      this.deps.log.debug(
        { port: state.port, src: socket.remoteAddress, error: describeError(err) },
        'tls handshake failed',
      ),
    );
    return server;
  }

  private serve(state: PortState, socket: Socket, tls: boolean): void {
    socket.setNoDelay(true);
    const servername = tls ? (socket as TLSSocket).servername || undefined : undefined;
    const c = pickChain(state.chains, servername) ?? (tls ? undefined : state.chains[0]);
    if (!c || (tls && !c.context)) return void socket.destroy();
    const mode = c.chain.facts.tls?.mode;
    if (tls && (mode === 'MUTUAL' || mode === 'ISTIO_MUTUAL')) {
      const refusal = clientCertRefusal(socket as TLSSocket, c.chain.facts.tls?.subjectAltNames ?? []);
      if (refusal) {
        this.deps.log.info(
          { port: state.port, src: socket.remoteAddress, error: refusal },
          'client certificate refused',
        );
        return void socket.destroy();
      }
    }
    const info: ConnectionInfo = {
      chain: c.chain,
      remoteAddress: socket.remoteAddress ?? '',
      remotePort: socket.remotePort ?? 0,
      tls,
    };
    if (c.chain.facts.protocol === 'TCP' || c.chain.facts.protocol === 'TLS') return this.proxy(socket, info);
    const handler: IngressHandler = (req, res, protocol) => this.deps.onRequest(info, req, res, protocol);
    const stop =
      tls && (socket as TLSSocket).alpnProtocol === 'h2'
        ? serveH2(socket, handler)
        : serveHttp(socket, handler, this.deps.http);
    this.connections.set(socket, stop);
    socket.once('close', () => this.connections.delete(socket));
    socket.on('error', () => undefined);
  }

  /** Hands a connection to the TCP proxy; it is tracked until it closes. */
  private proxy(socket: Socket, info: ConnectionInfo, prefix?: Buffer): void {
    if (!this.deps.onTcp) return void socket.destroy();
    this.connections.set(socket, () => undefined);
    socket.once('close', () => this.connections.delete(socket));
    socket.on('error', () => undefined);
    this.deps.onTcp(info, socket, prefix);
  }

  /** PASSTHROUGH: the SNI of the ClientHello picks the server; nothing is terminated. */
  private passthrough(state: PortState, socket: Socket): void {
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    let seen = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), CLIENT_HELLO_TIMEOUT_MS);
    socket.once('close', () => clearTimeout(timer));
    const refuse = (error: string) => {
      this.deps.log.debug({ port: state.port, src: socket.remoteAddress, error }, 'passthrough refused');
      socket.destroy();
    };
    let reads = 0;
    const onData = (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]);
      const hello = readClientHello(seen);
      // Each read parses what came so far again: a hello dribbled out in tiny pieces is refused.
      if (hello.kind === 'more' && ++reads < MAX_CLIENT_HELLO_READS) return;
      if (hello.kind === 'more') return refuse('the ClientHello came in too many pieces');
      socket.off('data', onData);
      socket.pause();
      clearTimeout(timer);
      if (hello.kind === 'invalid') return refuse(hello.reason);
      const c = pickChain(state.chains, hello.serverName || undefined);
      if (!c) return refuse(`no server on port ${state.port} for SNI "${hello.serverName}"`);
      const info: ConnectionInfo = {
        chain: c.chain,
        remoteAddress: socket.remoteAddress ?? '',
        remotePort: socket.remotePort ?? 0,
        tls: false,
      };
      this.proxy(socket, info, seen);
    };
    socket.on('data', onData);
  }

  private async stopListening(state: PortState): Promise<void> {
    const server = state.server;
    state.server = undefined;
    state.address = undefined;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  private async stopPort(state: PortState): Promise<void> {
    await this.stopListening(state);
    this.deps.log.info({ port: state.port }, 'gateway port closed');
  }
}

/**
 * HTTP/2 on a TLS connection whose ALPN chose h2. No byte may be read first: the HTTP/2 session
 * reads the TLS socket natively, so it gets the socket before anything flows (serveHttp's sniffing
 * would lose what it read). Returns what ends it: GOAWAY, requests in flight finish.
 */
function serveH2(socket: Socket, handler: IngressHandler): () => void {
  const server = createHttp2Server({ maxSessionMemory: 64 }, (req, res) => handler(req, res, 'h2c'));
  let session: Http2Session | undefined;
  server.on('session', (s) => (session = s));
  server.emit('connection', socket);
  return () => (session ? session.close() : socket.end());
}

/** What a port's servers (all of one kind: the translation rejects mixes) make of it. */
function portKind(list: readonly GatewayChain[]): string {
  const first = list[0]!.facts;
  if (first.protocol === 'HTTP' || first.protocol === 'TCP') return first.protocol.toLowerCase();
  if (first.tls?.mode === 'PASSTHROUGH') return 'passthrough';
  return list.some((c) => c.facts.tls?.mode === 'MUTUAL' || c.facts.tls?.mode === 'ISTIO_MUTUAL')
    ? 'https+client-cert'
    : 'https';
}

/** A connection without SNI gets the `*` server's certificate, as Envoy's chain without server_names. */
function setDefaultContext(server: TlsServer, chains: readonly ChainState[]): void {
  const def = pickChain(chains, undefined);
  if (def?.options) server.setSecureContext(def.options);
}

/**
 * Why a MUTUAL server refuses the client: no certificate, one its CA did not sign, or (with
 * subjectAltNames) one naming none of them. Undefined when it is accepted.
 */
function clientCertRefusal(socket: TLSSocket, subjectAltNames: readonly string[]): string | undefined {
  const peer = socket.getPeerX509Certificate();
  if (!peer) return 'no client certificate';
  if (!socket.authorized) return `client certificate not trusted: ${String(socket.authorizationError)}`;
  if (subjectAltNames.length === 0) return undefined;
  const sans = (peer.subjectAltName ?? '').split(', ').map((s) => s.replace(/^[A-Za-z ]+:/, ''));
  return subjectAltNames.some((n) => sans.includes(n))
    ? undefined
    : `client certificate names none of ${subjectAltNames.join(', ')}`;
}
