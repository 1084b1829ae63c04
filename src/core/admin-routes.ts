/**
 * The HTTP endpoints every data-plane program serves (the node agent and the waypoint): admin
 * (15000, localhost), Prometheus metrics (15020) and readiness (15021), as in reference/ztunnel.md §5.
 */
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { HostPort } from './config/env.ts';
import { HttpEndpoint, metricsHandler, send, type Handler } from './http-endpoint.ts';
import { isLogLevel, type Logger } from './log.ts';

export interface AdminHooks {
  /** Shown in the admin page's title, e.g. `ztunnel`. */
  readonly program: string;
  /** Everything `/config_dump` shows (Maps, Sets, bigints and byte arrays are rendered readably). */
  configDump(): unknown;
  /** The connections open now, served as JSON on `/connections` (only where the program has any). */
  connections?(): unknown;
  quit(): void;
}

export interface Readiness {
  /** Names of what is still missing; empty when ready. */
  pending(): string[];
  /**
   * What does not work while the program still serves (a gateway server whose certificate is
   * missing, beside others that serve): reported in the ready answer, which stays 200, so one broken
   * part does not take the whole pod out of its Service.
   */
  degraded?(): string[];
}

/** JSON for dumps: byte arrays as text, bigints as decimal strings, Maps and Sets as objects and lists. */
export function toJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, v: unknown) => {
      if (typeof v === 'bigint') return v.toString();
      if (v instanceof Uint8Array) return Buffer.from(v).toString('utf8');
      if (v instanceof Map) return Object.fromEntries(v as Map<unknown, unknown>) as unknown;
      if (v instanceof Set) return [...(v as Set<unknown>)];
      return v;
    },
    2,
  );
}

export function adminRoutes(hooks: AdminHooks, log: Logger): Record<string, Handler> {
  return {
    '/': (_req, _url, res) =>
      send(
        res,
        200,
        `<html><body><h1>ambit ${hooks.program} admin</h1><ul>` +
          '<li><a href="/config_dump">/config_dump</a></li>' +
          (hooks.connections ? '<li><a href="/connections">/connections</a></li>' : '') +
          '<li>POST /logging?level=debug</li><li>POST /quitquitquit</li></ul></body></html>\n',
        'text/html; charset=utf-8',
      ),
    '/config_dump': (_req, _url, res) =>
      send(res, 200, toJson(hooks.configDump()) + '\n', 'application/json'),
    ...(hooks.connections && {
      '/connections': (_req, _url, res) =>
        send(res, 200, toJson(hooks.connections?.()) + '\n', 'application/json'),
    }),
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
      if (pending.length === 0) {
        const degraded = readiness.degraded?.() ?? [];
        return send(
          res,
          200,
          degraded.length === 0 ? 'ready\n' : `ready, degraded: ${degraded.join(', ')}\n`,
        );
      }
      send(res, 500, `not ready, pending: ${pending.join(', ')}\n`);
    },
  };
}

/**
 * Starts the admin, metrics and readiness endpoints, in that order, adding each to `started` as soon
 * as it is up (so the caller's shutdown closes whatever did start when a later one fails to bind).
 */
export async function startStatusEndpoints(
  addresses: { readonly admin: HostPort; readonly metrics: HostPort; readonly readiness: HostPort },
  hooks: { readonly admin: AdminHooks; readonly registry: Registry; readonly readiness: Readiness },
  log: Logger,
  started: HttpEndpoint[],
): Promise<{ admin: AddressInfo; metrics: AddressInfo; readiness: AddressInfo }> {
  const admin = await HttpEndpoint.start(addresses.admin, adminRoutes(hooks.admin, log), log);
  started.push(admin);
  const metrics = await HttpEndpoint.start(addresses.metrics, metricsRoutes(hooks.registry), log);
  started.push(metrics);
  const readiness = await HttpEndpoint.start(addresses.readiness, readinessRoutes(hooks.readiness), log);
  started.push(readiness);
  return { admin: admin.address(), metrics: metrics.address(), readiness: readiness.address() };
}
