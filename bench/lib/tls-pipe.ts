/**
 * The "plain Node TLS pipe" baseline: what a team would write without a mesh. A client-side proxy
 * takes plain TCP and opens one mutual-TLS connection per client connection to a server-side proxy
 * in another process, which opens plain TCP to the backend. Same TLS profile and certificates as
 * HBONE (TLS 1.3, AES-128-GCM first, P-256), same TCP_NODELAY everywhere, but no HTTP/2 and no pooling.
 */
import { connect as netConnect, createServer as createNetServer, type Server, type Socket } from 'node:net';
import {
  connect as tlsConnect,
  createSecureContext,
  createServer as createTlsServer,
  type TLSSocket,
} from 'node:tls';
import { checkServerIdentities, HBONE_TLS } from '../../src/core/identity/tls.ts';

export interface TlsCredentials {
  readonly keyPem: string;
  readonly certPem: string;
  readonly caPem: string;
}

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** Copies both ways; either side closing or failing tears the other down. */
function pipePair(a: Socket, b: Socket): void {
  const destroyBoth = () => {
    a.destroy();
    b.destroy();
  };
  a.on('error', destroyBoth);
  b.on('error', destroyBoth);
  a.once('close', destroyBoth);
  b.once('close', destroyBoth);
  a.pipe(b);
  b.pipe(a);
}

function listen(server: Server, at: HostPort): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: at.host, port: at.port, backlog: 4096 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** TLS in, plain TCP out to `upstream`. */
export async function startTlsPipeServer(
  at: HostPort,
  upstream: HostPort,
  creds: TlsCredentials,
): Promise<void> {
  const server = createTlsServer({
    key: creds.keyPem,
    cert: creds.certPem,
    ca: creds.caPem,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: HBONE_TLS.minVersion,
    maxVersion: HBONE_TLS.maxVersion,
    ciphers: HBONE_TLS.ciphers,
  });
  server.on('connection', (socket: Socket) => socket.setNoDelay(true));
  server.on('tlsClientError', () => undefined);
  server.on('secureConnection', (tls: TLSSocket) => {
    pipePair(tls, netConnect({ host: upstream.host, port: upstream.port, noDelay: true }));
  });
  await listen(server, at);
}

/** Plain TCP in, one TLS connection per client connection out to `upstream`. */
export async function startTlsPipeClient(
  at: HostPort,
  upstream: HostPort,
  creds: TlsCredentials,
  expectedServerSan: string,
): Promise<void> {
  const secureContext = createSecureContext({
    key: creds.keyPem,
    cert: creds.certPem,
    ca: creds.caPem,
    minVersion: HBONE_TLS.minVersion,
    maxVersion: HBONE_TLS.maxVersion,
    ciphers: HBONE_TLS.ciphers,
  });
  const server = createNetServer({ noDelay: true }, (client) => {
    const tcp = netConnect({ host: upstream.host, port: upstream.port, noDelay: true });
    const tls = tlsConnect({
      socket: tcp,
      secureContext,
      servername: '',
      rejectUnauthorized: true,
      checkServerIdentity: (_host, peer) => checkServerIdentities([expectedServerSan], peer),
    });
    tcp.on('error', () => tls.destroy());
    pipePair(client, tls);
  });
  await listen(server, at);
}
