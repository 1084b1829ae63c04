/**
 * Abuse of the agents' listeners leaves no handle behind. A file (and mesh) of its own, so that
 * connections earlier tests opened (HTTP keep-alive to the admin ports lingers 5 s) cannot move the
 * baseline.
 */
import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { after, before, test } from 'node:test';
import { ECHO_PORT, startTestMesh, waitFor, type TestMesh } from '../fakes/mesh.ts';
import { socksConnect } from '../fakes/socks-client.ts';

let mesh: TestMesh;
before(async () => {
  mesh = await startTestMesh();
});
after(async () => {
  await mesh.close();
});

/** The resource count once it has stopped changing (earlier tests' sockets finish closing). */
async function settledResources(): Promise<number> {
  let last = -1;
  let same = 0;
  // Stable for a full second: on a loaded machine a closing connection's second half can take
  // longer than a few event-loop turns to go.
  for (let i = 0; i < 100 && same < 10; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const n = resources();
    same = n === last ? same + 1 : 0;
    last = n;
  }
  return last;
}

/**
 * Open handles that a leak would leave: sockets, servers, TLS and HTTP/2 wraps. Timers and file
 * system requests (the config watcher re-reading a file) come and go on their own.
 */
function handleList(): string {
  return process
    .getActiveResourcesInfo()
    .filter((r) => r !== 'Timeout' && r !== 'Immediate' && !r.startsWith('FSReq') && r !== 'FileHandle')
    .sort()
    .join(',');
}

function resources(): number {
  return process
    .getActiveResourcesInfo()
    .filter((r) => r !== 'Timeout' && r !== 'Immediate' && !r.startsWith('FSReq') && r !== 'FileHandle')
    .length;
}

test('a few hundred abusive connections crash nothing and leak no handles', async () => {
  // Warm up the pool so the baseline includes the long-lived HBONE connection.
  const warm = await socksConnect(mesh.socks, mesh.ip.server, ECHO_PORT);
  warm.end('w');
  warm.resume();
  await new Promise((r) => warm.once('close', r));
  const baseline = await settledResources();
  const baselineList = handleList();

  const jobs: Promise<unknown>[] = [];
  const rawConnect = (host: string, port: number, payload: Buffer | null, destroyAfterMs: number) =>
    new Promise<void>((resolve) => {
      const s = netConnect({ host, port });
      s.on('error', () => undefined);
      s.once('connect', () => {
        if (payload) s.write(payload);
        setTimeout(() => s.destroy(), destroyAfterMs);
      });
      s.once('close', () => resolve());
    });
  for (let i = 0; i < 80; i++) {
    jobs.push(rawConnect(mesh.socks.host, mesh.socks.port, Buffer.from([4, 1, 0, 80, 1, 2, 3, 4, 0]), 20)); // SOCKS4
    jobs.push(rawConnect(mesh.socks.host, mesh.socks.port, Buffer.from([5, 1, 0, 5, 9, 0, 3]), 20)); // bad command
    jobs.push(rawConnect(mesh.socks.host, mesh.socks.port, null, 50)); // silent client
    jobs.push(rawConnect(mesh.ip.server, 15008, Buffer.from('GET / HTTP/1.1\r\n\r\n'), 20)); // not TLS
    jobs.push(rawConnect(mesh.ip.server, 15008, Buffer.from([0x16, 3, 1, 0, 5, 1, 2, 3]), 20)); // broken ClientHello
  }
  for (let i = 0; i < 40; i++) {
    // TLS without a client certificate.
    jobs.push(
      new Promise<void>((resolve) => {
        const s = tlsConnect({
          host: mesh.ip.server,
          port: 15008,
          rejectUnauthorized: false,
          ALPNProtocols: ['h2'],
        });
        s.on('error', () => undefined);
        s.once('close', () => resolve());
        setTimeout(() => s.destroy(), 200);
      }),
    );
  }
  await Promise.all(jobs);
  await waitFor(
    () => resources() <= baseline && mesh.a.openConnections() === 0 && mesh.b.openConnections() === 0,
    5000,
    () => `${resources()} resources, baseline ${baseline}: ${process.getActiveResourcesInfo().join(',')}`,
  );
  assert.equal(await settledResources(), baseline, `before: ${baselineList}\nafter:  ${handleList()}`);
  // And the mesh still works.
  const s = await socksConnect(mesh.socks, mesh.ip.server, ECHO_PORT);
  s.end('alive');
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.resume();
  await new Promise((r) => s.once('end', r));
  assert.equal(Buffer.concat(chunks).toString(), 'alive');
});
