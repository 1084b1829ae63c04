/**
 * Every process the benchmark starts goes through one ProcessGroup, so that all of them are stopped
 * on every way out: normal end, a thrown error, Ctrl-C. Where util-linux's `setpriv` exists, children
 * also get a parent-death signal, so even a SIGKILLed benchmark leaves nothing behind.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LoadOps } from './load.ts';

const SETPRIV = '/usr/bin/setpriv';
const READY_TIMEOUT_MS = 15_000;
const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url));

/** The roles `worker.ts` can play, with their start-up configuration. */
export interface WorkerRoles {
  backend: { host: string; port: number };
  'tls-pipe-server': {
    listen: { host: string; port: number };
    upstream: { host: string; port: number };
    creds: { keyPem: string; certPem: string; caPem: string };
  };
  'tls-pipe-client': {
    listen: { host: string; port: number };
    upstream: { host: string; port: number };
    creds: { keyPem: string; certPem: string; caPem: string };
    expectedServerSan: string;
  };
  loadgen: Record<string, never>;
}

/** Messages from a worker to the benchmark. */
export type WorkerMessage =
  | { kind: 'ready' }
  | { kind: 'fatal'; error: string }
  | { kind: 'result'; id: number; ok: true; value: unknown }
  | { kind: 'result'; id: number; ok: false; error: string };

/** A call from the benchmark to the load generator. */
export interface CallMessage<Ops extends object = LoadOps> {
  kind: 'call';
  id: number;
  op: keyof Ops;
  args: unknown[];
}

const hasPdeathsig = (() => {
  if (!existsSync(SETPRIV)) return false;
  const help = spawnSync(SETPRIV, ['--help'], { encoding: 'utf8' });
  return help.stdout?.includes('--pdeathsig') ?? false;
})();

export class ProcessGroup {
  private readonly logDir: string;
  private readonly children = new Map<string, ChildProcess>();

  constructor(logDir: string) {
    this.logDir = logDir;
  }

  logPath(name: string): string {
    return join(this.logDir, `${name}.log`);
  }

  /** The last lines a child wrote, for error messages. */
  logTail(name: string, lines = 15): string {
    try {
      return readFileSync(this.logPath(name), 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Starts a program; its stdout and stderr go to `<logDir>/<name>.log`. */
  spawn(
    name: string,
    command: string,
    args: readonly string[],
    opts: { env?: NodeJS.ProcessEnv; ipc?: boolean } = {},
  ): ChildProcess {
    if (this.children.has(name)) throw new Error(`child ${name} already started`);
    const [cmd, argv] = hasPdeathsig
      ? [SETPRIV, ['--pdeathsig', 'KILL', '--', command, ...args]]
      : [command, [...args]];
    const child = spawn(cmd, argv, {
      env: opts.env ?? process.env,
      stdio: opts.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
    });
    const log = createWriteStream(this.logPath(name), { flags: 'a' });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    child.on('error', (err) => log.write(`spawn failed: ${err.message}\n`));
    this.children.set(name, child);
    return child;
  }

  /** Starts `worker.ts` in a role and waits until it says it is ready. */
  async fork<R extends keyof WorkerRoles>(name: string, role: R, config: WorkerRoles[R]): Promise<Worker> {
    const child = this.spawn(name, process.execPath, [WORKER, role, JSON.stringify(config)], { ipc: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => done(new Error(`${name} not ready after ${READY_TIMEOUT_MS} ms`)),
        READY_TIMEOUT_MS,
      );
      const onMessage = (m: WorkerMessage) => {
        if (m.kind === 'ready') done();
        else if (m.kind === 'fatal') done(new Error(`${name}: ${m.error}`));
      };
      const onExit = (code: number | null) =>
        done(new Error(`${name} exited (${code}) while starting:\n${this.logTail(name)}`));
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
    return new Worker(name, child, this);
  }

  /** SIGTERM to every live child, SIGKILL to any still there after `graceMs`. */
  async stopAll(graceMs: number): Promise<void> {
    const live = [...this.children.values()].filter((c) => c.exitCode === null && c.signalCode === null);
    await Promise.all(
      live.map(
        (c) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => {
              c.kill('SIGKILL');
              resolve();
            }, graceMs);
            c.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            c.kill('SIGTERM');
          }),
      ),
    );
  }

  /** Last resort from a synchronous 'exit' handler. */
  killAllNow(): void {
    for (const c of this.children.values())
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }
}

/**
 * A worker child (`worker.ts`, or `pod-worker-main.ts` inside a pod); `call` runs one of its
 * load-generator operations (`Ops`) in it.
 */
export class Worker<Ops extends Record<keyof Ops, (...args: never[]) => unknown> = LoadOps> {
  readonly name: string;
  readonly child: ChildProcess;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextId = 1;

  constructor(name: string, child: ChildProcess, group: ProcessGroup) {
    this.name = name;
    this.child = child;
    child.on('message', (m: WorkerMessage) => {
      if (m.kind !== 'result') return;
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.value);
      else p.reject(new Error(`${name}: ${m.error}`));
    });
    child.once('exit', (code) => {
      for (const p of this.pending.values())
        p.reject(new Error(`${name} exited (${code}):\n${group.logTail(name)}`));
      this.pending.clear();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  call<K extends keyof Ops>(op: K, ...args: Parameters<Ops[K]>): Promise<Awaited<ReturnType<Ops[K]>>> {
    const id = this.nextId++;
    const message: CallMessage<Ops> = { kind: 'call', id, op, args };
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send(message);
    });
  }
}

/** How {@link runBenchProgram} runs and tears down. */
export interface BenchProgramOptions {
  /** Prefix of messages on stderr, e.g. `bench:waypoint`. */
  readonly label: string;
  /** Keep the temp dir (configs, every child's log). */
  readonly keep: boolean;
  /** SIGTERM → SIGKILL grace for the children. */
  readonly stopGraceMs: number;
  /** More to tear down after the children stop (a test bed); runs once. */
  readonly cleanup?: () => Promise<void>;
}

/** What {@link runBenchProgram} hands the benchmark. */
export interface BenchContext {
  readonly group: ProcessGroup;
  /** A temp dir for configs and the children's logs. */
  readonly dir: string;
  /** The 1-minute load average when the benchmark started. */
  readonly loadAtStart: number;
}

/** Above this 1-minute load average the benchmark warns that other work adds noise. */
const BUSY_LOAD_AVERAGE = 0.5;

/**
 * A benchmark's main: a temp dir and a ProcessGroup for `body`, and everything torn down on every way
 * out (normal end, a thrown error, SIGINT/SIGTERM/SIGHUP, process exit). The exit code is 1 when
 * `body` throws or returns false (a measurement could not be made).
 */
export async function runBenchProgram(
  o: BenchProgramOptions,
  body: (ctx: BenchContext) => Promise<boolean>,
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), `ambit-${o.label.replace(/\W+/g, '-')}-`));
  const group = new ProcessGroup(dir);
  const log = (msg: string) => process.stderr.write(`${o.label}: ${msg}\n`);
  const loadAtStart = loadavg()[0]!;
  if (loadAtStart > BUSY_LOAD_AVERAGE)
    log(`warning: 1-minute load average is ${loadAtStart.toFixed(2)}; other work on this machine adds noise`);
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      await group.stopAll(o.stopGraceMs);
      await o.cleanup?.();
      if (o.keep) log(`kept ${dir}`);
      else await rm(dir, { recursive: true, force: true });
    })());
  process.once('exit', () => {
    group.killAllNow();
    if (!o.keep) rmSync(dir, { recursive: true, force: true });
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      log(`${signal}: stopping`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  try {
    if (!(await body({ group, dir, loadAtStart }))) process.exitCode = 1;
  } catch (err) {
    log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exitCode = 1;
  } finally {
    await cleanup();
  }
}
