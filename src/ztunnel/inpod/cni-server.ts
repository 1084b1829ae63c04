/**
 * The agent's end of the CNI socket: one request per connection (the plugin writes, half-closes and
 * reads the answer). Only root on the node (the container runtime running the plugin) may tell the
 * agent about pods: the socket is created mode 0600 (under a umask, so there is no moment when it is
 * open to others) in a directory the agent creates 0700.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, rename, rm, stat } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { describeError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import {
  cniError,
  CniErrorCode,
  formatCniResponse,
  MAX_REQUEST_BYTES,
  parseCniRequest,
  type CniRequest,
  type CniResponse,
} from './cni-protocol.ts';

/**
 * A plugin that has not finished sending its request after this long is cut off. It applies only
 * while reading: answering an ADD may take longer (it waits for the pod to appear in the mesh config,
 * AMBIT_CNI_ADD_TIMEOUT), and the plugin waits for that.
 */
const READ_TIMEOUT_MS = 10_000;

export class CniServer {
  private readonly server: Server;
  private readonly open = new Set<Socket>();
  private readonly readTimeoutMs: number;
  readonly path: string;
  /** The socket file this agent created, so that it never removes a successor's. */
  private file: { dev: number; ino: number } | undefined;

  private constructor(path: string, server: Server, readTimeoutMs: number) {
    this.path = path;
    this.server = server;
    this.readTimeoutMs = readTimeoutMs;
  }

  /** Listens on `path` (a stale socket from an earlier agent is replaced). */
  static async start(
    path: string,
    handle: (req: CniRequest) => Promise<CniResponse>,
    log: Logger,
    opts: { readonly readTimeoutMs?: number } = {},
  ): Promise<CniServer> {
    // Only a directory made here is made private: an existing one (/tmp in a test) is left alone.
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    // Bound under a private name, then renamed over `path`: the swap replaces an earlier agent's
    // socket atomically, and libuv, which unlinks the name it bound when the server closes, then
    // removes only that private name and never the socket a successor has put at `path`.
    const bound = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`;
    const server = createServer({ allowHalfOpen: true });
    const s = new CniServer(path, server, opts.readTimeoutMs ?? READ_TIMEOUT_MS);
    server.on('connection', (socket) => s.serve(socket, handle, log));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // bind() creates the socket file synchronously inside listen(): under this umask it is born
      // 0600 rather than world-connectable until the chmod below.
      const umask = process.umask(0o177);
      try {
        server.listen(bound, () => {
          server.off('error', reject);
          resolve();
        });
      } finally {
        process.umask(umask);
      }
    });
    try {
      await chmod(bound, 0o600);
      await rename(bound, path);
      const st = await stat(path);
      s.file = { dev: st.dev, ino: st.ino };
    } catch (err) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      throw err;
    }
    server.on('error', (err) => log.error({ error: describeError(err) }, 'cni socket error'));
    return s;
  }

  private serve(socket: Socket, handle: (req: CniRequest) => Promise<CniResponse>, log: Logger): void {
    this.open.add(socket);
    socket.once('close', () => this.open.delete(socket));
    socket.on('error', (err) => log.debug({ error: describeError(err) }, 'cni connection error'));
    socket.setTimeout(this.readTimeoutMs, () => socket.destroy());
    const chunks: Buffer[] = [];
    let size = 0;
    const answer = (r: CniResponse) => {
      if (!socket.destroyed) socket.end(formatCniResponse(r));
    };
    socket.on('data', (b: Buffer) => {
      size += b.length;
      if (size > MAX_REQUEST_BYTES) {
        socket.removeAllListeners('data');
        answer(cniError(CniErrorCode.DecodingFailure, `request larger than ${MAX_REQUEST_BYTES} bytes`));
        return;
      }
      chunks.push(b);
    });
    socket.once('end', () => {
      // The request is in: the handler bounds its own time from here.
      socket.setTimeout(0);
      if (size > MAX_REQUEST_BYTES) return;
      const req = parseCniRequest(Buffer.concat(chunks));
      if (!req.ok) {
        log.warn({ error: req.error }, 'cni request rejected');
        return answer(cniError(CniErrorCode.DecodingFailure, req.error));
      }
      handle(req.value).then(answer, (err: unknown) =>
        answer(cniError(CniErrorCode.CaptureFailed, 'the node agent failed', describeError(err))),
      );
    });
  }

  /**
   * Stops taking requests and cuts any plugin still talking (it applies its fail policy). The socket
   * file goes only if it is still the one this agent made: a new agent may already have replaced it.
   */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.open) s.destroy();
    await closed;
    const st = await stat(this.path).catch(() => undefined);
    if (st && this.file && st.dev === this.file.dev && st.ino === this.file.ino)
      await rm(this.path, { force: true });
  }
}
