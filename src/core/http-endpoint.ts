/**
 * A small HTTP listener for admin, metrics and readiness endpoints: exact-path routes, errors logged
 * and answered 500, bound before the program reports itself started.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { HostPort } from './config/env.ts';
import { describeError } from './errors.ts';
import type { Logger } from './log.ts';

export type Handler = (req: IncomingMessage, url: URL, res: ServerResponse) => void | Promise<void>;

export class HttpEndpoint {
  private readonly server: Server;

  private constructor(server: Server) {
    this.server = server;
  }

  static async start(addr: HostPort, routes: Record<string, Handler>, log: Logger): Promise<HttpEndpoint> {
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://admin');
      const handler = routes[url.pathname];
      if (!handler) return send(res, 404, 'not found\n');
      Promise.resolve(handler(req, url, res)).catch((err: unknown) => {
        log.error({ error: describeError(err), path: url.pathname }, 'admin handler failed');
        if (!res.headersSent) send(res, 500, 'internal error\n');
      });
    });
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: addr.host, port: addr.port, exclusive: true }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new HttpEndpoint(server);
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

export function send(
  res: ServerResponse,
  status: number,
  body: string,
  type = 'text/plain; charset=utf-8',
): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Prometheus text from a registry. */
export function metricsHandler(registry: Registry): Handler {
  return async (_req, _url, res) => send(res, 200, await registry.metrics(), registry.contentType);
}
