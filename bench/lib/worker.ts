/**
 * Entry of every helper process the benchmark forks: `node worker.ts <role> <json config>`. The role
 * decides what runs here; the process exits when the benchmark goes away (its IPC channel closes).
 */
import { startBackend } from './backend.ts';
import type { CallMessage, WorkerMessage, WorkerRoles } from './children.ts';
import { LOAD_OPS } from './load.ts';
import { startTlsPipeClient, startTlsPipeServer } from './tls-pipe.ts';

const send = (m: WorkerMessage) => process.send?.(m);
const message = (err: unknown) => (err instanceof Error ? (err.stack ?? err.message) : String(err));

async function start(role: string, raw: string): Promise<void> {
  switch (role) {
    case 'backend': {
      const c = JSON.parse(raw) as WorkerRoles['backend'];
      await startBackend(c.host, c.port);
      return;
    }
    case 'tls-pipe-server': {
      const c = JSON.parse(raw) as WorkerRoles['tls-pipe-server'];
      await startTlsPipeServer(c.listen, c.upstream, c.creds);
      return;
    }
    case 'tls-pipe-client': {
      const c = JSON.parse(raw) as WorkerRoles['tls-pipe-client'];
      await startTlsPipeClient(c.listen, c.upstream, c.creds, c.expectedServerSan);
      return;
    }
    case 'loadgen':
      process.on('message', (m: CallMessage) => {
        if (m.kind !== 'call') return;
        const op = LOAD_OPS[m.op] as (...args: unknown[]) => unknown;
        void Promise.resolve()
          .then(() => op(...m.args))
          .then(
            (value) => send({ kind: 'result', id: m.id, ok: true, value }),
            (err: unknown) => send({ kind: 'result', id: m.id, ok: false, error: message(err) }),
          );
      });
      return;
    default:
      throw new Error(`unknown role ${role}`);
  }
}

process.on('disconnect', () => process.exit());
void start(process.argv[2] ?? '', process.argv[3] ?? '{}').then(
  () => send({ kind: 'ready' }),
  (err: unknown) => {
    send({ kind: 'fatal', error: message(err) });
    process.exitCode = 1;
    process.disconnect?.();
  },
);
