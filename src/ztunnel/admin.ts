/**
 * The agent's HTTP endpoints: admin (15000, localhost), Prometheus metrics (15020) and readiness
 * (15021), as in reference/ztunnel.md §5.
 */
import type { Registry } from 'prom-client';
import { metricsHandler, send, type Handler } from '../core/http-endpoint.ts';
import { isLogLevel, type Logger } from '../core/log.ts';

export interface AdminHooks {
  configDump(): unknown;
  quit(): void;
}

export interface Readiness {
  /** Names of what is still missing; empty when ready. */
  pending(): string[];
}

export function adminRoutes(hooks: AdminHooks, log: Logger): Record<string, Handler> {
  return {
    '/': (_req, _url, res) =>
      send(
        res,
        200,
        '<html><body><h1>ambit ztunnel admin</h1><ul>' +
          '<li><a href="/config_dump">/config_dump</a></li>' +
          '<li>POST /logging?level=debug</li><li>POST /quitquitquit</li></ul></body></html>\n',
        'text/html; charset=utf-8',
      ),
    '/config_dump': (_req, _url, res) =>
      send(res, 200, JSON.stringify(hooks.configDump(), null, 2) + '\n', 'application/json'),
    '/logging': (req, url, res) => {
      const level = url.searchParams.get('level');
      const reset = url.searchParams.has('reset');
      if (level === null && !reset) return send(res, 200, `current log level is ${log.level}\n`);
      if (req.method !== 'POST') return send(res, 405, 'use POST to change the log level\n');
      const next = reset ? 'info' : level!;
      if (!isLogLevel(next))
        return send(res, 400, `"${next}" is not a log level (trace, debug, info, warn, error, silent)\n`);
      log.level = next;
      return send(res, 200, `current log level is ${log.level}\n`);
    },
    '/quitquitquit': (req, _url, res) => {
      if (req.method !== 'POST') return send(res, 405, 'use POST\n');
      send(res, 200, 'shutting down\n');
      hooks.quit();
    },
  };
}

export function metricsRoutes(registry: Registry): Record<string, Handler> {
  const handler = metricsHandler(registry);
  return { '/metrics': handler, '/stats/prometheus': handler };
}

export function readinessRoutes(readiness: Readiness): Record<string, Handler> {
  return {
    '/healthz/ready': (_req, _url, res) => {
      const pending = readiness.pending();
      if (pending.length === 0) return send(res, 200, 'ready\n');
      send(res, 500, `not ready, pending: ${pending.join(', ')}\n`);
    },
  };
}
