/**
 * The HTTP proxy baselines of `npm run bench:waypoint`, each one process in the proxy pod's network
 * namespace: nginx (Debian `nginx` / `nginx-light`) and HAProxy in HTTP mode, both on one core with
 * kept-alive upstream connections, as someone would set them up to front a service. (The Node
 * reverse proxy is a pod worker: waypoint-node-proxy.ts.)
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ProcessGroup } from './children.ts';
import { haproxyConfig, HAPROXY_BIN, type HostPort } from './haproxy.ts';
import { inPod } from './pod-worker.ts';

/** Debian's nginx; BENCH_NGINX points elsewhere. */
export const NGINX_BIN = process.env.BENCH_NGINX ?? '/usr/sbin/nginx';
const READY_TIMEOUT_MS = 10_000;
const READY_POLL_MS = 100;

/** `nginx/1.22.1`, or undefined when nginx is not installed. */
export function nginxVersion(): string | undefined {
  if (!existsSync(NGINX_BIN)) return undefined;
  // nginx -v writes to stderr.
  const r = spawnSync(NGINX_BIN, ['-v'], { encoding: 'utf8', timeout: 5_000 });
  if (r.error || r.status !== 0) return undefined;
  return /nginx\/\S+/.exec(`${r.stdout}${r.stderr}`)?.[0] ?? 'nginx';
}

/**
 * One process (`master_process off`: the master would only supervise, and one pid makes its CPU and
 * RSS readable), an upstream keep-alive pool, no access log; everything it writes stays in `dir`.
 */
export function nginxConfig(dir: string, listen: HostPort, upstream: HostPort): string {
  return `daemon off;
master_process off;
worker_processes 1;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'nginx-error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${join(dir, 'nginx-body')};
  proxy_temp_path ${join(dir, 'nginx-proxy')};
  upstream backend {
    server ${upstream.host}:${upstream.port};
    keepalive 64;
  }
  server {
    listen ${listen.host}:${listen.port} backlog=4096;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`;
}

/** Where a proxy runs and how to tell it is serving. */
export interface ProxyPlacement {
  readonly group: ProcessGroup;
  /** Config files and logs. */
  readonly dir: string;
  readonly netns: string;
  readonly cpu: number | undefined;
  /** True once a request through the proxy succeeds. */
  readonly ready: () => Promise<boolean>;
}

export async function startNginx(
  at: ProxyPlacement,
  listen: HostPort,
  upstream: HostPort,
): Promise<ChildProcess> {
  const dir = join(at.dir, 'nginx');
  await mkdir(dir, { recursive: true });
  const cfg = join(dir, 'nginx.conf');
  await writeFile(cfg, nginxConfig(dir, listen, upstream));
  return startProxy(at, 'nginx', NGINX_BIN, ['-p', `${dir}/`, '-e', join(dir, 'nginx-error.log'), '-c', cfg]);
}

export async function startHaproxyHttp(
  at: ProxyPlacement,
  listen: HostPort,
  upstream: HostPort,
): Promise<ChildProcess> {
  const cfg = join(at.dir, 'haproxy-http.cfg');
  await writeFile(cfg, haproxyConfig(listen, upstream, 'http'));
  return startProxy(at, 'haproxy', HAPROXY_BIN, ['-f', cfg, '-db']);
}

/** Starts `cmd` in the pod and resolves once `ready()`; throws if it exits or is not ready in time. */
async function startProxy(
  at: ProxyPlacement,
  name: string,
  cmd: string,
  args: readonly string[],
): Promise<ChildProcess> {
  const [bin, argv] = inPod(at.netns, cmd, args, at.cpu);
  const child = at.group.spawn(name, bin, argv);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}):\n${at.group.logTail(name)}`);
    if (await at.ready()) return child;
    if (Date.now() > deadline)
      throw new Error(`${name} did not serve within ${READY_TIMEOUT_MS} ms:\n${at.group.logTail(name)}`);
    await new Promise((r) => setTimeout(r, READY_POLL_MS));
  }
}
