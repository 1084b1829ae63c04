/**
 * Helper processes of `npm run bench:e2e` that run inside a pod's network namespace: the servers in
 * the server pod and the load generator in the client pod. Each is `pod-worker-main.ts` started with
 * `ip netns exec`, which switches namespace and execs Node in place, so the IPC channel (an inherited
 * file descriptor) and the ProcessGroup's parent-death signal carry over. The benchmark process only
 * orchestrates; no load runs in it or in the agents.
 */
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
  const argv = ['netns', 'exec', netns, process.execPath, MAIN, role, JSON.stringify(config)];
  const child =
    cpu === undefined
      ? group.spawn(name, 'ip', argv, { ipc: true })
      : group.spawn(name, 'taskset', ['-c', String(cpu), 'ip', ...argv], { ipc: true });
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

/** A worker in a pod; `call` runs a load-generator operation in it. */
export type PodWorker = Worker<E2eLoadOps>;
