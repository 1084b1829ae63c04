/**
 * The SOCKS5 listener (local mode): an application speaks SOCKS to reach the mesh as one workload.
 * Unlike ztunnel, the reply is sent after the upstream is up, so a refusal reaches the client as a
 * SOCKS error code ("connection not allowed by ruleset") instead of a reset after "succeeded".
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { describeError } from '../../core/errors.ts';
import type { ProxyContext } from './context.ts';
import { abandonOutbound, openOutbound, runOutbound } from './outbound.ts';
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

/** SOCKS handshakes longer than this are abuse: a greeting plus a request fit in 2 + 255 + 262 bytes. */
const MAX_HANDSHAKE_BYTES = 600;

export class Socks5Server {
  private readonly server: Server;
  /** Clients still in the SOCKS handshake; tunnelled ones are tracked (and drained) by the agent. */
  private readonly handshaking = new Set<Socket>();

  private constructor(server: Server) {
    this.server = server;
  }

  static async start(ctx: ProxyContext, opts: Socks5Options): Promise<Socks5Server> {
    const server = createServer({ allowHalfOpen: true, noDelay: true });
    const s = new Socks5Server(server);
    server.on('connection', (socket) => {
      s.handshaking.add(socket);
      socket.once('close', () => s.handshaking.delete(socket));
      handshake(ctx, opts, socket, () => s.handshaking.delete(socket));
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
   * Stops accepting and drops clients still in the handshake. Does not wait: `net.Server.close` calls
   * back only after every connection is gone, and tunnelled connections are drained (and cut at the
   * deadline) by the agent.
   */
  stopAccepting(): void {
    this.server.close();
    for (const s of this.handshaking) s.destroy();
  }
}

function handshake(ctx: ProxyContext, opts: Socks5Options, socket: Socket, handedOff: () => void): void {
  let buf: Buffer = Buffer.alloc(0);
  let stage: 'greeting' | 'request' | 'done' = 'greeting';
  // When the client pipelined its request behind the greeting, the method selection waits and goes
  // out in one write with the reply: one syscall less per connection.
  let preface: Buffer | undefined;
  const send = (reply: Buffer, end: boolean) => {
    const bytes = preface ? Buffer.concat([preface, reply]) : reply;
    preface = undefined;
    if (end) socket.end(bytes);
    else socket.write(bytes);
  };
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
    if (reply) send(reply, true);
    else socket.destroy();
    // A client that never reads the reply must not hold the socket open.
    socket.setTimeout(opts.handshakeTimeoutMs, () => socket.destroy());
  };
  const onData = (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    if (buf.length > MAX_HANDSHAKE_BYTES) return bail('socks5 handshake too long');
    if (stage === 'greeting') {
      const g = parseGreeting(buf);
      if (g.kind === 'more') return;
      if (g.kind === 'error') return bail(g.reason);
      if (!g.noAuthOffered)
        return bail('client offers no "no authentication" method', methodSelection(false));
      buf = buf.subarray(g.consumed);
      if (buf.length > 0) preface = methodSelection(true);
      else socket.write(methodSelection(true));
      stage = 'request';
    }
    if (stage === 'request') {
      const r = parseRequest(buf);
      if (r.kind === 'more') return;
      if (r.kind === 'error') return bail(r.reason, r.reply === undefined ? undefined : formatReply(r.reply));
      stage = 'done';
      socket.off('data', onData);
      socket.pause();
      // The handshake is over; connecting upstream has its own deadlines.
      socket.setTimeout(0);
      const rest = buf.subarray(r.consumed);
      if (rest.length > 0) socket.unshift(rest);
      void connect(ctx, opts, socket, client, r.target, { bail, send, handedOff });
    }
  };
  socket.on('data', onData);
  // A client that ends its side mid-handshake can never finish it: close now, not at the timeout
  // (found by test/integration/fuzz-hbone-socks.test.ts).
  socket.once('end', () => {
    if (stage !== 'done') bail('client closed during the socks5 handshake');
  });
}

async function connect(
  ctx: ProxyContext,
  opts: Socks5Options,
  socket: Socket,
  client: { ip: string; port: number },
  target: SocksTarget,
  io: {
    bail: (reason: string, reply?: Buffer) => void;
    send: (reply: Buffer, end: boolean) => void;
    handedOff: () => void;
  },
): Promise<void> {
  const source = ctx.state().workloadByRef(opts.workload);
  if (!source) {
    return io.bail(
      `workload ${opts.workload} of this SOCKS listener is not known`,
      formatReply(SocksReply.GeneralFailure),
    );
  }
  const open = await openOutbound(ctx, source, client, target);
  if (!open.ok) return io.bail(open.reason, formatReply(open.reply));
  if (socket.destroyed) return abandonOutbound(open);
  io.handedOff();
  io.send(formatReply(SocksReply.Succeeded), false);
  // Count only tunnelled bytes, not the SOCKS handshake.
  const base = { read: socket.bytesRead - socket.readableLength, written: socket.bytesWritten };
  socket.resume();
  await runOutbound(ctx, socket, open, base);
}
