import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { readAll, socksConnect } from '../fakes/socks-client.ts';
import {
  CLOSER_PORT,
  closerReceived,
  ECHO_PORT,
  SHA_PORT,
  startTestMesh,
  waitFor,
  type TestMesh,
} from '../fakes/mesh.ts';

let mesh: TestMesh;
before(async () => {
  mesh = await startTestMesh();
});
after(async () => {
  await mesh.close();
});

test('one byte crosses client agent → HBONE → server agent → app and back', async () => {
  const s = await socksConnect(mesh.socks, mesh.ip.server, ECHO_PORT);
  s.end(Buffer.from([0x42]));
  assert.deepEqual(await readAll(s), Buffer.from([0x42]));
});

test('10 MiB arrive intact (sha256 computed by the server)', async () => {
  const payload = randomBytes(10 * 1024 * 1024);
  const s = await socksConnect(mesh.socks, mesh.ip.server, SHA_PORT);
  s.end(payload);
  const got = (await readAll(s)).toString();
  assert.equal(got, createHash('sha256').update(payload).digest('hex'));
});

test('service hostname and VIP both reach the service endpoints, round robin', async () => {
  const peers = new Set<string>();
  for (let i = 0; i < 4; i++) {
    const target = i % 2 === 0 ? 'echo.default.svc.cluster.local' : mesh.ip.vip;
    const s = await socksConnect(mesh.socks, target, 80);
    s.end('x');
    assert.equal((await readAll(s)).toString(), 'x');
  }
  // The inbound side logged which pod served; the metric records destination workloads.
  const metrics = await (
    await fetch(`http://${mesh.b.metrics.address}:${mesh.b.metrics.port}/metrics`)
  ).text();
  for (const w of ['server', 'server2']) {
    if (new RegExp(`istio_tcp_connections_opened_total\\{[^}]*destination_workload="${w}"`).test(metrics))
      peers.add(w);
  }
  assert.deepEqual([...peers].sort(), ['server', 'server2']);
});

test('half-close: the client FIN reaches the app while the response keeps flowing', async () => {
  const s = await socksConnect(mesh.socks, mesh.ip.server, SHA_PORT);
  // The sha server answers only after it saw EOF: the answer proves the FIN crossed the tunnel and
  // the reverse direction stayed open after it.
  s.end('hello');
  assert.equal((await readAll(s)).toString(), createHash('sha256').update('hello').digest('hex'));
});

test('half-close the other way: the app closes first, the client can still send', async () => {
  const s = await socksConnect(mesh.socks, mesh.ip.server, CLOSER_PORT);
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.resume();
  await new Promise((r) => s.once('end', r));
  assert.equal(Buffer.concat(chunks).toString(), 'bye');
  const before = closerReceived.length;
  s.end('still sending after your FIN');
  await waitFor(() => closerReceived.length > before, 3000);
  assert.equal(closerReceived.at(-1), 'still sending after your FIN');
});

test('200 concurrent connections each get their own bytes back', async () => {
  const results = await Promise.all(
    Array.from({ length: 200 }, async (_, i) => {
      const s = await socksConnect(mesh.socks, 'echo.default.svc.cluster.local', 80);
      const msg = `conn-${i}-${'x'.repeat(i)}`;
      s.end(msg);
      return (await readAll(s)).toString() === msg;
    }),
  );
  assert.equal(results.filter(Boolean).length, 200);
});

test('a TCP (out-of-mesh) workload is reached with plain TCP, not HBONE', async () => {
  const s = await socksConnect(mesh.socks, mesh.ip.plain, ECHO_PORT);
  s.end('plain');
  assert.equal((await readAll(s)).toString(), 'plain');
  const metrics = await (
    await fetch(`http://${mesh.a.metrics.address}:${mesh.a.metrics.port}/metrics`)
  ).text();
  assert.match(
    metrics,
    /istio_tcp_connections_opened_total\{[^}]*destination_workload="plain"[^}]*connection_security_policy="unknown"/,
  );
});

test('metrics carry Istio labels and byte counts from both reporters', async () => {
  const s = await socksConnect(mesh.socks, mesh.ip.server, ECHO_PORT);
  s.end('0123456789');
  await readAll(s);
  await new Promise((r) => setTimeout(r, 50));
  const src = await (await fetch(`http://${mesh.a.metrics.address}:${mesh.a.metrics.port}/metrics`)).text();
  const dst = await (await fetch(`http://${mesh.b.metrics.address}:${mesh.b.metrics.port}/metrics`)).text();
  assert.match(
    src,
    /istio_tcp_connections_closed_total\{reporter="source",source_workload="client",[^}]*source_principal="spiffe:\/\/cluster.local\/ns\/default\/sa\/client"[^}]*destination_workload="server"[^}]*destination_principal="spiffe:\/\/cluster.local\/ns\/default\/sa\/server"[^}]*request_protocol="tcp",response_flags="-",connection_security_policy="mutual_tls"\} \d+/,
  );
  assert.match(
    dst,
    /istio_tcp_connections_closed_total\{reporter="destination",source_workload="client"[^}]*destination_workload="server"/,
  );
  assert.match(dst, /istio_tcp_received_bytes_total\{reporter="destination"[^}]*\} \d+/);
  assert.match(src, /istio_tcp_sent_bytes_total\{reporter="source"[^}]*\} \d+/);
});

test('the HBONE connection is pooled: many streams, one TLS connection per key', async () => {
  for (let i = 0; i < 5; i++) {
    const s = await socksConnect(mesh.socks, mesh.ip.server, ECHO_PORT);
    s.end('p');
    await readAll(s);
  }
  const dump = (await (
    await fetch(
      `http://127.0.0.1:${mesh.a.admin.port}/config_dump`.replace('127.0.0.1', mesh.a.admin.address),
    )
  ).json()) as {
    connections: { pooled: number };
  };
  // Keys: client → server and client → server2 (round robin earlier): never one per connection.
  assert.ok(
    dump.connections.pooled >= 1 && dump.connections.pooled <= 3,
    `pooled=${dump.connections.pooled}`,
  );
});
