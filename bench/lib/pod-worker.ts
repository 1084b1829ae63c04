/**
 * Helper processes of `npm run bench:e2e` that run inside a pod's network namespace: the servers in
 * the server pod and the load generator in the client pod. Each is `pod-worker-main.ts` started with
 * `ip netns exec`, which switches namespace and execs Node in place, so the IPC channel (an inherited
 * file descriptor) and the ProcessGroup's parent-death signal carry over. The benchmark process only
 * orchestrates; no load runs in it or in the agents.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker, type ProcessGroup, type WorkerMessage } from './children.ts';
import type { E2eLoadOps } from './e2e-load.ts';

const MAIN = fileURLToPath(new URL('./pod-worker-main.ts', import.meta.url));
const READY_TIMEOUT_MS = 15_000;

/** The roles `pod-worker-main.ts` can play, with their start-up configuration. */
export interface PodWorkerRoles {
  /** backend.ts: echo and sink on one port. */
  backend: { host: string; port: number };
  /** A minimal HTTP/1.1 server (keep-alive, a 2-byte body) for wrk. */
  http: { host: string; port: number };
  /** A minimal Node `http` reverse proxy (waypoint-node-proxy.ts), for `npm run bench:waypoint`. */
  'http-proxy': { listen: { host: string; port: number }; upstream: { host: string; port: number } };
  loadgen: Record<string, never>;
}

/**
 * Starts a worker in `netns` and resolves once it says it is ready. With `cpu`, it runs pinned to that
 * CPU (`taskset`, which execs in place as `ip netns exec` does).
 */
export async function forkInPod<R extends keyof PodWorkerRoles>(
  group: ProcessGroup,
  name: string,
  netns: string,
  role: R,
  config: PodWorkerRoles[R],
  cpu?: number,
): Promise<PodWorker> {
  const [cmd, argv] = inPod(netns, process.execPath, [MAIN, role, JSON.stringify(config)], cpu);
  const child = group.spawn(name, cmd, argv, { ipc: true });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => done(new Error(`${name} not ready after ${READY_TIMEOUT_MS} ms:\n${group.logTail(name)}`)),
      READY_TIMEOUT_MS,
    );
    const onMessage = (m: WorkerMessage) => {
      if (m.kind === 'ready') done();
      else if (m.kind === 'fatal') done(new Error(`${name}: ${m.error}`));
    };
    const onExit = (code: number | null) =>
      done(new Error(`${name} exited (${code}) while starting:\n${group.logTail(name)}`));
    function done(err?: Error) {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve();
    }
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
  return new Worker<E2eLoadOps>(name, child, group);
}

/**
 * The command line that runs `cmd args` inside `netns`, pinned to `cpu` if given. Both `taskset` and
 * `ip netns exec` exec in place, so the child's pid is the program's own (its CPU and RSS are read
 * from /proc by that pid).
 */
export function inPod(netns: string, cmd: string, args: readonly string[], cpu?: number): [string, string[]] {
  const argv = ['netns', 'exec', netns, cmd, ...args];
  return cpu === undefined ? ['ip', argv] : ['taskset', ['-c', String(cpu), 'ip', ...argv]];
}

/** Pins every thread of a running process to one CPU. */
export function pinProcess(pid: number, cpu: number): void {
  const r = spawnSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], {
    encoding: 'utf8',
    timeout: 5_000,
  });
  if (r.error || r.status !== 0)
    throw new Error(`taskset -a -p -c ${cpu} ${pid} failed: ${r.error?.message ?? r.stderr.trim()}`);
}

/**
 * Throws unless the process started as `ip netns exec … <program>` has become the program (it execs
 * in place): otherwise /proc/<pid> would describe `ip`, and CPU and memory would be misread.
 */
export function assertExecedInPlace(pid: number): void {
  const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  if (comm === 'ip' || comm === 'taskset')
    throw new Error(`pid ${pid} is still \`${comm}\`, not the program: CPU would be misread`);
}

/** A worker in a pod; `call` runs a load-generator operation in it. */
export type PodWorker = Worker<E2eLoadOps>;
