/**
 * Entry of every process `npm run bench:e2e` starts inside a pod (pod-worker.ts):
 * `node pod-worker-main.ts <role> <json config>`. It exits when the benchmark goes away (its IPC
 * channel closes).
 */
import { createServer } from 'node:http';
import { startBackend } from './backend.ts';
import type { WorkerMessage } from './children.ts';
import { E2E_LOAD_OPS } from './e2e-load.ts';
import type { PodCallMessage, PodWorkerRoles } from './pod-worker.ts';

const send = (m: WorkerMessage) => process.send?.(m);
const message = (err: unknown) => (err instanceof Error ? (err.stack ?? err.message) : String(err));
const BODY = Buffer.from('ok');

async function start(role: string, raw: string): Promise<void> {
  switch (role) {
    case 'backend': {
      const c = JSON.parse(raw) as PodWorkerRoles['backend'];
      await startBackend(c.host, c.port);
      return;
    }
    case 'http': {
      const c = JSON.parse(raw) as PodWorkerRoles['http'];
      const server = createServer({ noDelay: true, keepAliveTimeout: 60_000 }, (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length });
        res.end(BODY);
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: c.host, port: c.port, backlog: 4096 }, () => resolve());
      });
      return;
    }
    case 'loadgen':
      process.on('message', (m: PodCallMessage) => {
        if (m.kind !== 'call') return;
        const op = E2E_LOAD_OPS[m.op] as (...args: unknown[]) => unknown;
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
