/**
 * The agent's end of the CNI socket: one request per connection (the plugin writes, half-closes and
 * reads the answer). The socket is created with mode 0600: only root on the node (the container
 * runtime running the plugin) may tell the agent about pods.
 */
import { chmod, mkdir, rm } from 'node:fs/promises';
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

/** A plugin that sends nothing for this long is cut off (the runtime's own CNI timeout is minutes). */
const REQUEST_TIMEOUT_MS = 10_000;

export class CniServer {
  private readonly server: Server;
  private readonly open = new Set<Socket>();
  readonly path: string;

  private constructor(path: string, server: Server) {
    this.path = path;
    this.server = server;
  }

  /** Listens on `path` (a stale socket from an earlier agent is replaced). */
  static async start(
    path: string,
    handle: (req: CniRequest) => Promise<CniResponse>,
    log: Logger,
  ): Promise<CniServer> {
    await mkdir(dirname(path), { recursive: true });
    await rm(path, { force: true });
    const server = createServer({ allowHalfOpen: true });
    const s = new CniServer(path, server);
    server.on('connection', (socket) => s.serve(socket, handle, log));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    await chmod(path, 0o600);
    server.on('error', (err) => log.error({ error: describeError(err) }, 'cni socket error'));
    return s;
  }

  private serve(socket: Socket, handle: (req: CniRequest) => Promise<CniResponse>, log: Logger): void {
    this.open.add(socket);
    socket.once('close', () => this.open.delete(socket));
    socket.on('error', (err) => log.debug({ error: describeError(err) }, 'cni connection error'));
    socket.setTimeout(REQUEST_TIMEOUT_MS, () => socket.destroy());
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

  /** Stops taking requests and cuts any plugin still talking (it falls back to passing the pod through). */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.open) s.destroy();
    await closed;
    await rm(this.path, { force: true });
  }
}
