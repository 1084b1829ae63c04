/**
 * The "minimal Node reverse proxy" baseline of `npm run bench:waypoint`: node:http in, node:http out
 * over a keep-alive pool, one process, no routing, no TLS — what the waypoint's HTTP path costs with
 * everything mesh-specific taken away. Hop-by-hop headers are dropped both ways (RFC 9110 §7.6.1).
 */
import { Agent, createServer, request, type IncomingHttpHeaders } from 'node:http';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

function endToEnd(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) if (!HOP_BY_HOP.has(name)) out[name] = value;
  return out;
}

/** Listens on `listen` and forwards every request to `upstream`; resolves once listening. */
export async function startNodeHttpProxy(
  listen: { host: string; port: number },
  upstream: { host: string; port: number },
): Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const server = createServer({ noDelay: true, keepAliveTimeout: 60_000 }, (req, res) => {
    const up = request(
      {
        host: upstream.host,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: endToEnd(req.headers),
        agent,
      },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, endToEnd(upRes.headers));
        upRes.pipe(res);
      },
    );
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: listen.host, port: listen.port, backlog: 4096 }, () => resolve());
  });
}
