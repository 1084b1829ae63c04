/**
 * The "what users would pick" baseline: HAProxy in TCP mode (HTTP mode for `bench:waypoint`), one
 * thread, one frontend, one backend.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { ProcessGroup } from './children.ts';

/** Debian's `haproxy` package; BENCH_HAPROXY points elsewhere. */
export const HAPROXY_BIN = process.env.BENCH_HAPROXY ?? '/usr/sbin/haproxy';
const READY_TIMEOUT_MS = 10_000;

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** The installed version line, or undefined when HAProxy is not installed. */
export function haproxyVersion(): string | undefined {
  if (!existsSync(HAPROXY_BIN)) return undefined;
  try {
    return execFileSync(HAPROXY_BIN, ['-v'], { encoding: 'utf8' }).split('\n')[0]?.trim();
  } catch {
    return undefined;
  }
}

/** In `http` mode both sides are kept alive (HAProxy's default `option http-keep-alive`). */
export function haproxyConfig(listen: HostPort, upstream: HostPort, mode: 'tcp' | 'http' = 'tcp'): string {
  return [
    'global',
    '  nbthread 1',
    '  maxconn 8000',
    'defaults',
    `  mode ${mode}`,
    '  timeout connect 5s',
    '  timeout client 120s',
    '  timeout server 120s',
    'frontend bench',
    `  bind ${listen.host}:${listen.port}`,
    '  default_backend backend',
    'backend backend',
    `  server s1 ${upstream.host}:${upstream.port}`,
    '',
  ].join('\n');
}

/** Starts `haproxy -db` and resolves once its frontend accepts connections. */
export async function startHaproxy(
  group: ProcessGroup,
  dir: string,
  listen: HostPort,
  upstream: HostPort,
): Promise<ChildProcess> {
  const cfg = join(dir, 'haproxy.cfg');
  await writeFile(cfg, haproxyConfig(listen, upstream));
  const child = group.spawn('haproxy', HAPROXY_BIN, ['-f', cfg, '-db']);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`haproxy exited (${child.exitCode ?? child.signalCode}):\n${group.logTail('haproxy')}`);
    }
    const up = await new Promise<boolean>((resolve) => {
      const s = connect(listen);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (up) return child;
    if (Date.now() > deadline) throw new Error(`haproxy not listening on ${listen.host}:${listen.port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
