import assert from 'node:assert/strict';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { connect as tlsConnect } from 'node:tls';
import { after, before, test } from 'node:test';
import { writeFile } from 'node:fs/promises';
import { HbonePool } from '../../src/core/hbone/pool.ts';
import { CertificateAuthority } from '../../src/core/identity/ca.ts';
import type { WorkloadCertificate } from '../../src/core/identity/certificate.ts';
import { LocalCaProvider } from '../../src/core/identity/secret-manager.ts';
import { secureContextFor } from '../../src/core/identity/tls.ts';
import { silentLogger } from '../../src/core/log.ts';
import { startZtunnel } from '../../src/ztunnel/app.ts';
import { captureLogger } from '../fakes/capture-log.ts';
import { agentConfig, ECHO_PORT, meshYaml, startTestMesh, waitFor, type TestMesh } from '../fakes/mesh.ts';
import type { SocksError } from '../fakes/socks-client.ts';
import { socksConnect } from '../fakes/socks-client.ts';

const captured = captureLogger('info');
let mesh: TestMesh;
let provider: LocalCaProvider;
const id = (sa: string, trustDomain = 'cluster.local') => ({
  trustDomain,
  namespace: 'default',
  serviceAccount: sa,
});
const spiffe = (sa: string) => `spiffe://cluster.local/ns/default/sa/${sa}`;

before(async () => {
  mesh = await startTestMesh({ log: captured.log });
  provider = new LocalCaProvider(mesh.ca, 3600_000);
});
after(async () => {
  await mesh.close();
});

function pool(getCertificate: () => Promise<WorkloadCertificate>): HbonePool {
  return new HbonePool({
    getCertificate,
    log: silentLogger(),
    connectTimeoutMs: 2000,
    idleTimeoutMs: 10_000,
    maxStreamsPerConnection: 100,
  });
}

async function connectStatus(authority: string, expected = spiffe('server')): Promise<number | Error> {
  const p = pool(() => provider.fetch(id('client')));
  try {
    const r = await p.connect(
      {
        srcIdentity: id('client'),
        srcIp: undefined,
        dstIp: mesh.ip.server,
        dstPort: 15008,
        expectedIdentities: [expected],
      },
      { authority, headers: {} },
    );
    if (!r.ok) return r.status;
    r.stream.destroy();
    return 200;
  } catch (err) {
    return err as Error;
  } finally {
    p.destroy();
  }
}

test('CONNECT to an unknown service hostname → 503', async () => {
  assert.equal(await connectStatus('nothere.default.svc.cluster.local:80'), 503);
});

test('CONNECT to a port nobody listens on → 503 (200 only after the upstream connect succeeds)', async () => {
  assert.equal(await connectStatus(`${mesh.ip.server}:1`), 503);
});

test('CONNECT for another pod IP than the one the tunnel reached → 400', async () => {
  assert.equal(await connectStatus(`${mesh.ip.server2}:${ECHO_PORT}`), 400);
});

test('CONNECT to an illegal (mesh) port → 503', async () => {
  assert.equal(await connectStatus(`${mesh.ip.server}:15008`), 503);
});

test('a valid CONNECT → 200', async () => {
  assert.equal(await connectStatus(`${mesh.ip.server}:${ECHO_PORT}`), 200);
});

async function h2Session(cert: WorkloadCertificate): Promise<ClientHttp2Session> {
  const socket = tlsConnect({
    host: mesh.ip.server,
    port: 15008,
    secureContext: secureContextFor(cert),
    ALPNProtocols: ['h2'],
    rejectUnauthorized: false,
  });
  await new Promise((r, j) => socket.once('secureConnect', r).once('error', j));
  return h2connect(`https://${mesh.ip.server}:15008`, { createConnection: () => socket });
}

async function statusOf(session: ClientHttp2Session, headers: Record<string, string>): Promise<number> {
  const req = session.request(headers, { endStream: headers[':method'] !== 'CONNECT' });
  return new Promise((resolve, reject) => {
    req.once('response', (h) => resolve(Number(h[':status'])));
    req.once('error', reject);
  });
}

test('not a CONNECT → 400; bad authority → 400', async () => {
  const session = await h2Session(await provider.fetch(id('client')));
  try {
    assert.equal(
      await statusOf(session, {
        ':method': 'GET',
        ':path': '/',
        ':authority': `${mesh.ip.server}:${ECHO_PORT}`,
      }),
      400,
    );
    assert.equal(await statusOf(session, { ':method': 'CONNECT', ':authority': 'no-port-here' }), 400);
    assert.equal(
      await statusOf(session, { ':method': 'CONNECT', ':authority': `${mesh.ip.server}:99999` }),
      400,
    );
  } finally {
    session.destroy();
  }
});

test('malformed HTTP/2 after the handshake: the agent sends GOAWAY and closes the connection at once', async () => {
  const cases: [string, Buffer][] = [
    ['not the HTTP/2 preface', Buffer.from('GET / HTTP/1.1\r\nhost: x\r\n\r\n')],
    [
      'a frame that breaks the protocol (DATA on stream 0)',
      Buffer.concat([
        Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
        Buffer.from([0, 0, 4, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
      ]),
    ],
  ];
  for (const [what, bytes] of cases) {
    const socket = tlsConnect({
      host: mesh.ip.server,
      port: 15008,
      secureContext: secureContextFor(await provider.fetch(id('client'))),
      ALPNProtocols: ['h2'],
      rejectUnauthorized: false,
    });
    socket.on('error', () => undefined);
    // Read what the agent sends (its SETTINGS and GOAWAY), so its end of the stream is seen.
    socket.resume();
    await new Promise((r) => socket.once('secureConnect', r));
    const started = Date.now();
    const closed = new Promise<number>((resolve) =>
      socket.once('close', () => resolve(Date.now() - started)),
    );
    socket.write(bytes);
    const ms = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 2000))]);
    socket.destroy();
    assert.ok(ms >= 0 && ms < 1000, `${what}: the connection was not closed (${ms} ms)`);
  }
  // The agent carries on.
  const s = await socksConnect(mesh.socks, mesh.ip.server, ECHO_PORT);
  s.destroy();
});

async function handshakeFails(cert: WorkloadCertificate): Promise<string> {
  const p = pool(async () => cert);
  try {
    const r = await p.connect(
      {
        srcIdentity: cert.identity,
        srcIp: undefined,
        dstIp: mesh.ip.server,
        dstPort: 15008,
        expectedIdentities: [spiffe('server')],
      },
      { authority: `${mesh.ip.server}:${ECHO_PORT}`, headers: {} },
    );
    if (!r.ok) return r.reason;
    r.stream.destroy();
    return 'connected';
  } catch (err) {
    return (err as Error).message;
  } finally {
    p.destroy();
  }
}

test('a client certificate from another CA is refused in the handshake, and the reason logged', async () => {
  const other = await CertificateAuthority.createSelfSigned('cluster.local');
  const foreign = await new LocalCaProvider(other, 3600_000).fetch(id('client'));
  // The client trusts our roots (so it accepts the server) but presents a leaf from the other CA.
  const cert = { ...foreign, rootsPem: mesh.ca.trustBundlePem };
  const msg = await handshakeFails(cert);
  assert.notEqual(msg, 'connected');
  await waitFor(
    () =>
      captured.lines.some(
        (l) =>
          l.msg === 'hbone peer rejected' && /client certificate rejected: UNABLE_TO/.test(String(l.error)),
      ),
    2000,
  );
});

test('a client certificate in another trust domain is refused, and the reason logged', async () => {
  // Same root key, but a CA that issues in another trust domain: the chain verifies, the domain must not.
  const evil = await CertificateAuthority.fromPem(mesh.ca.rootCertPem, mesh.ca.rootKeyPem, {
    trustDomain: 'evil.example',
  });
  const cert = await new LocalCaProvider(evil, 3600_000).fetch(id('client', 'evil.example'));
  const msg = await handshakeFails(cert);
  assert.notEqual(msg, 'connected');
  await waitFor(
    () =>
      captured.lines.some(
        (l) =>
          l.msg === 'hbone peer rejected' && String(l.error).includes('not in trust domain cluster.local'),
      ),
    2000,
  );
});

test('an expired client certificate is refused in the handshake', async () => {
  const past = Date.now() - 48 * 3600_000;
  const oldCa = await CertificateAuthority.fromPem(mesh.ca.rootCertPem, mesh.ca.rootKeyPem, {
    nowMs: () => past,
  });
  const cert = await new LocalCaProvider(oldCa, 3600_000).fetch(id('client'));
  assert.ok(cert.notAfterMs < Date.now());
  const msg = await handshakeFails(cert);
  assert.notEqual(msg, 'connected');
  await waitFor(
    () =>
      captured.lines.some((l) => l.msg === 'hbone peer rejected' && /CERT_HAS_EXPIRED/.test(String(l.error))),
    2000,
  );
});

test('a server with the wrong identity is refused by the client', async () => {
  const r = await connectStatus(`${mesh.ip.server}:${ECHO_PORT}`, spiffe('someone-else'));
  assert.ok(r instanceof Error);
  assert.match(
    r.message,
    /server identity spiffe:\/\/cluster.local\/ns\/default\/sa\/server is not the expected/,
  );
});

test('SOCKS5 request for an unknown name → "host unreachable" (4)', async () => {
  await assert.rejects(
    socksConnect(mesh.socks, 'nope.default.svc.cluster.local', 80),
    (e: unknown) => (e as SocksError).reply === 4,
  );
});

test('SOCKS5 request for a service port the service does not have → host unreachable', async () => {
  await assert.rejects(
    socksConnect(mesh.socks, 'echo.default.svc.cluster.local', 81),
    (e: unknown) => (e as SocksError).reply === 4,
  );
});

test('a broken config file stops the agent from starting, naming file, line, field and reason', async () => {
  const path = `${mesh.dir}/broken.yaml`;
  await writeFile(path, 'workloads:\n- name: x\n  namespace: default\n  workloadIps: [not-an-ip]\n');
  await assert.rejects(
    startZtunnel(
      { ...agentConfig(mesh.prefix, 'node-x', mesh.dir, false), localConfigPath: path },
      { log: silentLogger() },
    ),
    (err: Error) =>
      err.message.includes(`${path}:4: workloads[0].workloadIps[0]: "not-an-ip" is not an IP address`),
  );
});

test('a broken config edit is rejected and the last good config stays in force', async () => {
  const before = mesh.a.state();
  await writeFile(mesh.configPath, meshYaml(mesh.prefix) + '\nbogusField: 1\n');
  await waitFor(
    () => captured.lines.some((l) => l.msg === 'config rejected, keeping the last good config'),
    3000,
  );
  assert.equal(mesh.a.state(), before);
  const metrics = await (
    await fetch(`http://${mesh.a.metrics.address}:${mesh.a.metrics.port}/metrics`)
  ).text();
  assert.match(metrics, /ambit_config_rejected_total\{source="file"\} [1-9]/);
  // Traffic still flows with the old config.
  const s = await socksConnect(mesh.socks, 'echo.default.svc.cluster.local', 80);
  s.end('still');
  s.resume();
  await new Promise((r) => s.once('end', r));
  await writeFile(mesh.configPath, meshYaml(mesh.prefix));
});
