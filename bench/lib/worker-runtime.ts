/**
 * The child side of the benchmark's worker protocol (children.ts), shared by every worker entry
 * (worker.ts on loopback, pod-worker-main.ts inside pod namespaces): answer the benchmark's calls to
 * load-generator operations, and report ready or fatal once the role has started.
 */
import type { CallMessage, WorkerMessage } from './children.ts';

const send = (m: WorkerMessage) => process.send?.(m);
const message = (err: unknown) => (err instanceof Error ? (err.stack ?? err.message) : String(err));

/** Runs each `call` the benchmark sends against `ops` and sends back its result. */
export function serveCalls<Ops extends object>(ops: Ops): void {
  process.on('message', (m: CallMessage<Ops>) => {
    if (m.kind !== 'call') return;
    const op = ops[m.op] as (...args: unknown[]) => unknown;
    void Promise.resolve()
      .then(() => op(...m.args))
      .then(
        (value) => send({ kind: 'result', id: m.id, ok: true, value }),
        (err: unknown) => send({ kind: 'result', id: m.id, ok: false, error: message(err) }),
      );
  });
}

/**
 * Starts the role named on the command line (`<entry> <role> <json config>`), tells the benchmark
 * when it is ready (or why it failed), and exits when the benchmark goes away (its IPC channel closes).
 */
export function runWorker(start: (role: string, raw: string) => Promise<void>): void {
  process.on('disconnect', () => process.exit());
  void start(process.argv[2] ?? '', process.argv[3] ?? '{}').then(
    () => send({ kind: 'ready' }),
    (err: unknown) => {
      send({ kind: 'fatal', error: message(err) });
      process.exitCode = 1;
      process.disconnect?.();
    },
  );
}
