/**
 * `ambit config workloads|services|certificates|policies|connections`, the real CLI (a child
 * process) against two node agents with a known LocalConfig, and its error when no agent is there.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { parse } from 'yaml';
import { CertificateAuthority } from '../../src/core/identity/ca.ts';
import { LocalCaProvider } from '../../src/core/identity/secret-manager.ts';
import { silentLogger } from '../../src/core/log.ts';
import { startZtunnel, type ZtunnelBound } from '../../src/ztunnel/app.ts';
import { addressOf, agentConfig, ECHO_PORT, meshYaml, waitFor } from '../fakes/mesh.ts';
import { socksConnect } from '../fakes/socks-client.ts';
import { ambit, tableRows } from '../fakes/ambit-cli.ts';

// A loopback range of our own (127.180-189), apart from the other integration tests' ranges.
const prefix = `127.${180 + (process.pid % 10)}`;

const policy = `policies:
- name: deny-plain
  namespace: default
  scope: Namespace
  action: Deny
  rules: [[[{principals: [{Exact: cluster.local/ns/default/sa/plain}]}]]]
`;

let dir: string;
let a: ZtunnelBound;
let b: ZtunnelBound;
let echo: Server;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ambit-cli-config-'));
  const ca = await CertificateAuthority.createSelfSigned('cluster.local');
  await writeFile(join(dir, 'ca-cert.pem'), ca.rootCertPem);
  await writeFile(join(dir, 'ca-key.pem'), ca.rootKeyPem);
  await writeFile(join(dir, 'mesh.yaml'), meshYaml(prefix, policy));
  echo = createServer((s) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  await new Promise<void>((r) => echo.listen(ECHO_PORT, `${prefix}.2.2`, r));
  const deps = { log: silentLogger(), certificates: new LocalCaProvider(ca, 3600_000) };
  b = await startZtunnel(agentConfig(prefix, 'node-b', dir, false), deps);
  a = await startZtunnel(agentConfig(prefix, 'node-a', dir, true), deps);
  await waitFor(() => a.pending().length === 0 && b.pending().length === 0, 5000);
});

after(async () => {
  await Promise.all([a?.close(), b?.close()]);
  await new Promise((r) => echo?.close(r));
  await rm(dir, { recursive: true, force: true });
});

test('workloads: one aligned row per workload with its IP, node, protocol and waypoint', async () => {
  const r = await ambit('config', 'workloads', '--admin', addressOf(b.admin));
  assert.equal(r.code, 0, r.stderr);
  const [head, ...body] = tableRows(r.stdout);
  assert.deepEqual(head, ['NAMESPACE', 'NAME', 'IP', 'NODE', 'PROTOCOL', 'WAYPOINT']);
  assert.deepEqual(
    body.sort((x, y) => x[1]!.localeCompare(y[1]!)),
    [
      ['default', 'client', `${prefix}.1.2`, 'node-a', 'HBONE', 'None'],
      ['default', 'plain', `${prefix}.2.9`, 'node-b', 'TCP', 'None'],
      ['default', 'server', `${prefix}.2.2`, 'node-b', 'HBONE', 'None'],
      ['default', 'server2', `${prefix}.2.3`, 'node-b', 'HBONE', 'None'],
    ],
  );
  // Columns line up: every row's second column starts where the header's does.
  const lines = r.stdout.trimEnd().split('\n');
  const col = lines[0]!.indexOf('NAME');
  for (const l of lines.slice(1)) assert.match(l.slice(col), /^\S/);
});

test('services: VIP, service→target ports and healthy/all endpoints; -n filters', async () => {
  const r = await ambit('config', 'services', '--admin', addressOf(a.admin), '-n', 'default');
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(tableRows(r.stdout), [
    ['NAMESPACE', 'NAME', 'VIP', 'PORTS', 'ENDPOINTS', 'WAYPOINT'],
    ['default', 'echo.default.svc.cluster.local', `${prefix}.100.1`, `80->${ECHO_PORT}`, '2/2', 'None'],
  ]);
  const other = await ambit('config', 'services', '--admin', addressOf(a.admin), '-n', 'prod');
  assert.deepEqual(tableRows(other.stdout), [['NAMESPACE', 'NAME', 'VIP', 'PORTS', 'ENDPOINTS', 'WAYPOINT']]);
});

test('certificates: each identity the agent holds, its state and expiry', async () => {
  const r = await ambit('config', 'certificates', '--admin', addressOf(b.admin));
  assert.equal(r.code, 0, r.stderr);
  const [head, ...body] = tableRows(r.stdout);
  assert.deepEqual(head, ['IDENTITY', 'STATE', 'NOT-AFTER']);
  const server = body.find((row) => row[0] === 'spiffe://cluster.local/ns/default/sa/server');
  assert.ok(server, r.stdout);
  assert.equal(server[1], 'Available');
  const notAfter = Date.parse(server[2]!);
  assert.ok(notAfter > Date.now() + 3000_000 && notAfter <= Date.now() + 3600_000, server[2]);
});

test('policies: table, and the same policies as JSON and YAML', async () => {
  const table = await ambit('config', 'policies', '--admin', addressOf(b.admin));
  assert.equal(table.code, 0, table.stderr);
  assert.deepEqual(tableRows(table.stdout), [
    ['NAMESPACE', 'NAME', 'ACTION', 'SCOPE', 'RULES'],
    ['default', 'deny-plain', 'Deny', 'Namespace', '1'],
  ]);
  const json = await ambit('config', 'policies', '--admin', addressOf(b.admin), '-o', 'json');
  const fromJson = JSON.parse(json.stdout) as { name: string; action: string }[];
  assert.deepEqual(
    fromJson.map((p) => [p.name, p.action]),
    [['deny-plain', 'Deny']],
  );
  const yaml = await ambit('config', 'policies', '--admin', addressOf(b.admin), '-o', 'yaml');
  assert.deepEqual(parse(yaml.stdout), fromJson);
});

test('connections: an open tunnel shows on both agents; inbound with its peer identities', async () => {
  const conn = await socksConnect(
    { host: a.socks5[0]!.address, port: a.socks5[0]!.port },
    `${prefix}.2.2`,
    ECHO_PORT,
  );
  try {
    const echoed = new Promise((r) => conn.once('data', r));
    conn.resume();
    conn.write('hi');
    await echoed;
    const inbound = await ambit('config', 'connections', '--admin', addressOf(b.admin));
    assert.equal(inbound.code, 0, inbound.stderr);
    const [head, ...body] = tableRows(inbound.stdout);
    assert.deepEqual(head, ['DIRECTION', 'SRC', 'DST', 'IDENTITIES', 'BYTES SENT/RECEIVED', 'AGE']);
    assert.equal(body.length, 1, inbound.stdout);
    const [direction, src, dst, ids, bytes, age] = body[0]!;
    assert.equal(direction, 'inbound');
    assert.match(src!, new RegExp(`^${prefix.replaceAll('.', '\\.')}\\.1\\.2:\\d+$`));
    assert.equal(dst, `${prefix}.2.2:${ECHO_PORT}`);
    assert.equal(ids, 'cluster.local/ns/default/sa/client -> cluster.local/ns/default/sa/server');
    assert.equal(bytes, '2/2');
    assert.match(age!, /^\d+s$/);
    // The client's agent: the same connection outbound, as the client sees it.
    const outbound = await ambit('config', 'connections', '--admin', addressOf(a.admin), '-o', 'json');
    const [out] = JSON.parse(outbound.stdout) as Record<string, unknown>[];
    assert.deepEqual(
      [out!.direction, out!.dst, out!.srcIdentity, out!.dstIdentity, out!.bytesSent, out!.bytesReceived],
      [
        'outbound',
        `${prefix}.2.2:${ECHO_PORT}`,
        'spiffe://cluster.local/ns/default/sa/client',
        'spiffe://cluster.local/ns/default/sa/server',
        2,
        2,
      ],
    );
  } finally {
    conn.destroy();
  }
});

test('no agent on the admin port: an error that says what to check, exit code 1', async () => {
  const r = await ambit('config', 'workloads', '--admin', `${prefix}.0.9:15000`);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.match(
    r.stderr,
    new RegExp(
      `^error: cannot reach the agent's admin port ${prefix.replace('.', '\\.')}\\.0\\.9:15000: connection refused — is \`ambit ztunnel\` running\\? use --admin`,
    ),
  );
});

test('bad arguments are refused before anything is fetched', async () => {
  const badAddr = await ambit('config', 'workloads', '--admin', 'nowhere');
  assert.equal(badAddr.code, 1);
  assert.match(
    badAddr.stderr,
    /option '--admin <host:port>' argument 'nowhere' is invalid\. "nowhere" is not host:port/,
  );
  const badFormat = await ambit('config', 'services', '-o', 'xml');
  assert.match(badFormat.stderr, /must be one of table, json, yaml/);
});
