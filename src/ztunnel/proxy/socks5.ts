/**
 * The SOCKS5 listener (local mode): an application speaks SOCKS to reach the mesh as one workload.
 * Unlike ztunnel, the reply is sent after the upstream is up, so a refusal reaches the client as a
 * SOCKS error code ("connection not allowed by ruleset") instead of a reset after "succeeded".
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { describeError } from '../../core/errors.ts';
import type { ProxyContext } from './context.ts';
import { openOutbound, runOutbound } from './outbound.ts';
import {
  formatReply,
  methodSelection,
  parseGreeting,
  parseRequest,
  SocksReply,
  type SocksTarget,
} from './socks5-protocol.ts';

export interface Socks5Options {
  readonly host: string;
  readonly port: number;
  /** The uid (or `namespace/name`) of the workload this listener speaks for. */
  readonly workload: string;
  /** A client that has not finished the SOCKS handshake by then is dropped. */
  readonly handshakeTimeoutMs: number;
}

export class Socks5Server {
  private readonly server: Server;
  private readonly clients = new Set<Socket>();

  private constructor(server: Server) {
    this.server = server;
  }

  static async start(ctx: ProxyContext, opts: Socks5Options): Promise<Socks5Server> {
    const server = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: false });
    const s = new Socks5Server(server);
    server.on('connection', (socket) => {
      s.clients.add(socket);
      socket.once('close', () => s.clients.delete(socket));
      handshake(ctx, opts, socket);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: opts.host, port: opts.port, exclusive: true }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => ctx.log.error({ error: describeError(err) }, 'socks5 server error'));
    return s;
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /**
   * Stops accepting. Does not wait: `net.Server.close` calls back only after every connection is
   * gone, and tunnelled connections are drained (and cut at the deadline) by the agent.
   */
  stopAccepting(): void {
    this.server.close();
  }

  /** Drops clients still in the SOCKS handshake (tunnelled ones are tracked elsewhere). */
  get clientCount(): number {
    return this.clients.size;
  }
}

function handshake(ctx: ProxyContext, opts: Socks5Options, socket: Socket): void {
  let buf: Buffer = Buffer.alloc(0);
  let stage: 'greeting' | 'request' | 'done' = 'greeting';
  const client = { ip: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
  socket.setTimeout(opts.handshakeTimeoutMs, () => {
    ctx.log.debug({ src: client.ip }, 'socks5 handshake timed out');
    socket.destroy();
  });
  socket.on('error', (err) =>
    ctx.log.debug({ src: client.ip, error: describeError(err) }, 'socks5 client error'),
  );
  const bail = (reason: string, reply?: Buffer) => {
    stage = 'done';
    socket.off('data', onData);
    ctx.log.info({ src: `${client.ip}:${client.port}`, error: reason }, 'socks5 request refused');
    if (reply) socket.end(reply);
    else socket.destroy();
    // A client that never reads the reply must not hold the socket open.
    socket.setTimeout(opts.handshakeTimeoutMs, () => socket.destroy());
  };
  const onData = (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    if (buf.length > 600) return bail('socks5 handshake too long');
    if (stage === 'greeting') {
      const g = parseGreeting(buf);
      if (g.kind === 'more') return;
      if (g.kind === 'error') return bail(g.reason);
      if (!g.noAuthOffered)
        return bail('client offers no "no authentication" method', methodSelection(false));
      socket.write(methodSelection(true));
      buf = buf.subarray(g.consumed);
      stage = 'request';
    }
    if (stage === 'request') {
      const r = parseRequest(buf);
      if (r.kind === 'more') return;
      if (r.kind === 'error') return bail(r.reason, r.reply === undefined ? undefined : formatReply(r.reply));
      stage = 'done';
      socket.off('data', onData);
      socket.pause();
      const rest = buf.subarray(r.consumed);
      if (rest.length > 0) socket.unshift(rest);
      void connect(ctx, opts, socket, client, r.target, bail);
    }
  };
  socket.on('data', onData);
}

async function connect(
  ctx: ProxyContext,
  opts: Socks5Options,
  socket: Socket,
  client: { ip: string; port: number },
  target: SocksTarget,
  bail: (reason: string, reply?: Buffer) => void,
): Promise<void> {
  const state = ctx.state();
  const source =
    state.workloadByUid(opts.workload) ??
    state.config.workloads.find((w) => `${w.namespace}/${w.name}` === opts.workload);
  if (!source)
    return bail(
      `workload ${opts.workload} of this SOCKS listener is not known`,
      formatReply(SocksReply.GeneralFailure),
    );
  const open = await openOutbound(ctx, source, client, target);
  if (!open.ok) return bail(open.reason, formatReply(open.reply));
  if (socket.destroyed) {
    open.upstream.destroy();
    open.record.finish({ flag: '-', bytesReceived: 0, bytesSent: 0, error: 'client went away' });
    return;
  }
  socket.setTimeout(0);
  socket.write(formatReply(SocksReply.Succeeded));
  // Count only tunnelled bytes, not the SOCKS handshake.
  const base = { read: socket.bytesRead - socket.readableLength, written: socket.bytesWritten };
  socket.resume();
  await runOutbound(ctx, socket, open, base);
}
