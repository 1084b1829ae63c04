import assert from 'node:assert/strict';
import { connect, createServer } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { LocalCaProvider } from '../../src/core/identity/secret-manager.ts';
import { secureContextFor } from '../../src/core/identity/tls.ts';
import { test } from 'node:test';
import { ECHO_PORT, SHA_PORT, startTestMesh, testPrefix, waitFor } from '../fakes/mesh.ts';
import { readAll, socksConnect } from '../fakes/socks-client.ts';

const url = (a: { address: string; port: number }, path: string) => `http://${a.address}:${a.port}${path}`;

test('admin, metrics and readiness endpoints', async (t) => {
  const mesh = await startTestMesh();
  t.after(() => mesh.close());

  await t.test('/healthz/ready says ready once certificates and listeners are up', async () => {
    const res = await fetch(url(mesh.b.readiness, '/healthz/ready'));
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'ready\n');
  });

  await t.test('/config_dump shows workloads, services and certificates, never a private key', async () => {
    const res = await fetch(url(mesh.b.admin, '/config_dump'));
    const text = await res.text();
    assert.equal(res.status, 200);
    assert.doesNotMatch(text, /PRIVATE KEY|keyPem/);
    const dump = JSON.parse(text) as {
      workloads: { name: string }[];
      services: { hostname: string; ports: Record<string, number> }[];
      certificates: { identity: string; state: string; certChain: { expirationTime: string }[] }[];
      config: { caKeyPath: string };
    };
    assert.deepEqual(dump.workloads.map((w) => w.name).sort(), ['client', 'plain', 'server', 'server2']);
    assert.deepEqual(dump.services[0]!.ports, { '80': ECHO_PORT });
    assert.equal(dump.config.caKeyPath, '<redacted>');
    const cert = dump.certificates.find((c) => c.identity === 'spiffe://cluster.local/ns/default/sa/server');
    assert.equal(cert?.state, 'Available');
    assert.ok(Date.parse(cert.certChain[0]!.expirationTime) > Date.now());
  });

  await t.test('/logging reads and changes the level; bad input is refused', async () => {
    assert.equal(await (await fetch(url(mesh.b.admin, '/logging'))).text(), 'current log level is silent\n');
    const bad = await fetch(url(mesh.b.admin, '/logging?level=loud'), { method: 'POST' });
    assert.equal(bad.status, 400);
    assert.equal((await fetch(url(mesh.b.admin, '/logging?level=debug'))).status, 405);
    const ok = await fetch(url(mesh.b.admin, '/logging?level=debug'), { method: 'POST' });
    assert.equal(await ok.text(), 'current log level is debug\n');
    await fetch(url(mesh.b.admin, '/logging?level=silent'), { method: 'POST' });
  });

  await t.test('/metrics and /stats/prometheus serve Prometheus text', async () => {
    for (const path of ['/metrics', '/stats/prometheus']) {
      const res = await fetch(url(mesh.a.metrics, path));
      assert.equal(res.status, 200);
      assert.match(await res.text(), /istio_build\{component="ztunnel",tag="ambit-0\.1\.0"\} 1/);
    }
  });

  await t.test('an unknown admin path is 404', async () => {
    assert.equal((await fetch(url(mesh.a.admin, '/nope'))).status, 404);
  });
});

test('graceful drain: open connections finish, new ones are refused, stragglers are cut at the deadline', async () => {
  const mesh = await startTestMesh();
  try {
    // A connection in the middle of a transfer when the drain starts.
    const busy = await socksConnect(mesh.socks, mesh.ip.server, SHA_PORT);
    busy.write('part one;');
    // A connection that never ends on its own.
    const idle = await socksConnect(mesh.socks, mesh.ip.server, ECHO_PORT);
    idle.resume();
    idle.once('end', () => idle.end());
    const idleClosed = new Promise((r) => idle.once('close', r));

    const started = Date.now();
    const closing = mesh.a.close();
    await new Promise((r) => setTimeout(r, 100));
    // New clients are refused while draining.
    await assert.rejects(
      new Promise((resolve, reject) => {
        const s = connect(mesh.socks.port, mesh.socks.host);
        s.once('connect', () => resolve(s));
        s.once('error', reject);
      }),
      /ECONNREFUSED/,
    );
    // The open transfer completes.
    busy.end('part two');
    const digest = (await readAll(busy)).toString();
    assert.match(digest, /^[0-9a-f]{64}$/);
    // The idle one is closed at the 2 s deadline, then close() resolves.
    await idleClosed;
    await closing;
    const took = Date.now() - started;
    assert.ok(took >= 1900 && took < 4000, `drain took ${took} ms`);
    assert.equal(mesh.a.openConnections(), 0);
  } finally {
    await mesh.close();
  }
});

test('POST /quitquitquit shuts the agent down', async () => {
  const mesh = await startTestMesh();
  try {
    const res = await fetch(url(mesh.b.admin, '/quitquitquit'), { method: 'POST' });
    assert.equal(res.status, 200);
    await mesh.b.done;
    await assert.rejects(fetch(url(mesh.b.readiness, '/healthz/ready')));
  } finally {
    await mesh.close();
  }
});

test('readiness names a listener that cannot bind, and the agent retries until it can', async () => {
  // Something else holds server2's HBONE port when the agent starts.
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(15008, `${testPrefix()}.2.3`, r));
  const mesh = await startTestMesh({ waitReady: false });
  try {
    await waitFor(
      () => mesh.b.pending().some((p) => p.includes('EADDRINUSE')),
      3000,
      () => mesh.b.pending().join(),
    );
    const res = await fetch(url(mesh.b.readiness, '/healthz/ready'));
    assert.equal(res.status, 500);
    assert.match(
      await res.text(),
      new RegExp(
        `not ready, pending: inbound listener ${testPrefix().replace('.', '\\.')}\\.2\\.3:15008 \\(.*EADDRINUSE`,
      ),
    );
    await new Promise((r) => blocker.close(r));
    await waitFor(
      () => mesh.b.pending().length === 0,
      8000,
      () => mesh.b.pending().join(),
    );
    assert.equal((await fetch(url(mesh.b.readiness, '/healthz/ready'))).status, 200);
  } finally {
    blocker.close();
    await mesh.close();
  }
});

test('certificates renew at half life: new handshakes get the new one, open tunnels keep working', async () => {
  const mesh = await startTestMesh({ certTtlMs: 4000 });
  try {
    const serial = async () => {
      const dump = (await (await fetch(url(mesh.b.admin, '/config_dump'))).json()) as {
        certificates: { identity: string; certChain: { serialNumber: string }[] }[];
      };
      return dump.certificates.find((c) => c.identity.endsWith('/sa/server'))!.certChain[0]!.serialNumber;
    };
    const first = await serial();
    const open = await socksConnect(mesh.socks, mesh.ip.server, ECHO_PORT);
    let now = first;
    const deadline = Date.now() + 6000;
    while (now === first && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      now = await serial();
    }
    assert.notEqual(now, first, 'the certificate was not renewed');
    open.end('old tunnel');
    assert.equal((await readAll(open)).toString(), 'old tunnel');
    const fresh = await socksConnect(mesh.socks, mesh.ip.server, ECHO_PORT);
    fresh.end('new tunnel');
    assert.equal((await readAll(fresh)).toString(), 'new tunnel');
    // A new TLS handshake with the server's HBONE listener sees the renewed certificate.
    const client = await new LocalCaProvider(mesh.ca, 60_000).fetch({
      trustDomain: 'cluster.local',
      namespace: 'default',
      serviceAccount: 'probe',
    });
    const tlsSocket = tlsConnect({
      host: mesh.ip.server,
      port: 15008,
      secureContext: secureContextFor(client),
      ALPNProtocols: ['h2'],
      rejectUnauthorized: false,
    });
    await new Promise((r, j) => tlsSocket.once('secureConnect', r).once('error', j));
    const presented = tlsSocket.getPeerCertificate().serialNumber;
    tlsSocket.destroy();
    assert.equal(presented.toUpperCase(), (await serial()).toUpperCase());
    assert.notEqual(presented.toUpperCase(), first.toUpperCase());
  } finally {
    await mesh.close();
  }
});
