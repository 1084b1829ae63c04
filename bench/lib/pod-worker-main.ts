/**
 * Entry of every process `npm run bench:e2e` and `bench:waypoint` start inside a pod (pod-worker.ts):
 * `node pod-worker-main.ts <role> <json config>`. It exits when the benchmark goes away (its IPC
 * channel closes).
 */
import { createServer } from 'node:http';
import { startBackend } from './backend.ts';
import { E2E_LOAD_OPS } from './e2e-load.ts';
import type { PodWorkerRoles } from './pod-worker.ts';
import { startNodeHttpProxy } from './waypoint-node-proxy.ts';
import { runWorker, serveCalls } from './worker-runtime.ts';

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
    case 'http-proxy': {
      const c = JSON.parse(raw) as PodWorkerRoles['http-proxy'];
      await startNodeHttpProxy(c.listen, c.upstream);
      return;
    }
    case 'loadgen':
      serveCalls(E2E_LOAD_OPS);
      return;
    default:
      throw new Error(`unknown role ${role}`);
  }
}

runWorker(start);
