/**
 * Entry of every helper process the benchmark forks: `node worker.ts <role> <json config>`. The role
 * decides what runs here; the process exits when the benchmark goes away (its IPC channel closes).
 */
import { startBackend } from './backend.ts';
import type { WorkerRoles } from './children.ts';
import { LOAD_OPS } from './load.ts';
import { startTlsPipeClient, startTlsPipeServer } from './tls-pipe.ts';
import { runWorker, serveCalls } from './worker-runtime.ts';

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
      serveCalls(LOAD_OPS);
      return;
    default:
      throw new Error(`unknown role ${role}`);
  }
}

runWorker(start);
