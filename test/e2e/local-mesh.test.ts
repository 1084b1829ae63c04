/**
 * `npm start`'s mesh, end to end, driven by the real curl binary through SOCKS5.
 */
import assert from 'node:assert/strict';
import { execFile, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startLocalMesh, type LocalMesh } from './lib/local-mesh.ts';

// A loopback range of our own, so a developer's `npm start` (127.10) keeps running.
const prefix = `127.${230 + (process.pid % 20)}`;
let dir: string;
let socks: string;
let mesh: ChildProcess;
let local: LocalMesh;
let output = '';

function curl(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      'curl',
      ['-sS', '--max-time', '10', '--socks5-hostname', socks, ...args],
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

before(async () => {
  local = await startLocalMesh(prefix);
  ({ dir, socks, child: mesh } = local);
  output = local.output();
});

after(() => local.stop());

test('the printed guide names the SOCKS address, the services and the agents', () => {
  assert.match(
    output,
    new RegExp(
      `curl --socks5-hostname ${socks.replace(/\./g, '\\.')} http://reviews\\.default\\.svc\\.cluster\\.local:9080/`,
    ),
  );
  assert.match(
    output,
    new RegExp(`reviews\\.default\\.svc\\.cluster\\.local\\s+${prefix.replace('.', '\\.')}\\.100\\.3:9080`),
  );
  assert.match(output, /node-1 +agent +admin http:\/\//);
});

test('curl through SOCKS5 reaches every reviews version across both nodes', async () => {
  const versions = new Set<string>();
  for (let i = 0; i < 3; i++) {
    const r = await curl('http://reviews.default.svc.cluster.local:9080/');
    assert.equal(r.code, 0, r.stderr);
    const body = JSON.parse(r.stdout) as { app: string; version: string; node: string };
    assert.equal(body.app, 'reviews');
    versions.add(`${body.version}@${body.node}`);
  }
  assert.deepEqual([...versions].sort(), ['v1@node-1', 'v2@node-2', 'v3@node-2']);
});

test('the request really crossed HBONE: the server-side agent logged the client SPIFFE identity', async () => {
  const r = await curl('http://ratings:9080/hello');
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { path: string }).path, '/hello');
  // Log lines reach the file in batches, at most 100 ms after they are written: poll for a while.
  let inbound: Record<string, unknown> | undefined;
  for (let i = 0; i < 50 && !inbound; i++) {
    await new Promise((res) => setTimeout(res, 100));
    inbound = (await readFile(join(dir, 'node-2.log'), 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find(
        (l) => l.msg === 'connection complete' && l.direction === 'inbound' && l.dstWorkload === 'ratings-v1',
      );
  }
  assert.ok(inbound, 'no inbound access log line on node-2');
  assert.equal(inbound.srcIdentity, 'spiffe://cluster.local/ns/default/sa/curl');
  assert.equal(inbound.dstIdentity, 'spiffe://cluster.local/ns/default/sa/bookinfo-ratings');
  assert.ok(Number(inbound.bytesReceived) > 0 && Number(inbound.bytesSent) > 0);
});

test('an unknown name is refused with SOCKS "host unreachable"', async () => {
  const r = await curl('http://nope.default.svc.cluster.local:9080/');
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /unreachable|\(4\)/i);
});

test('editing the Kubernetes YAML changes the mesh within a second: a policy change denies ratings', async () => {
  const file = join(dir, 'kube', 'mesh.yaml');
  const yaml = await readFile(file, 'utf8');
  assert.ok(yaml.includes('namespaces: [default]'));
  await writeFile(file, yaml.replace('namespaces: [default]', 'namespaces: [nobody]'));
  // Until the change reaches ratings' agent, requests pass; one in flight when it lands is cut (the
  // agent closes connections the new policy denies: curl then says "Empty reply"); after it, the
  // tunnel is refused and the SOCKS reply says "not allowed".
  const refused = (x: { code: number; stderr: string }) =>
    x.code !== 0 && /not allowed|\(2\)/i.test(x.stderr);
  let r = await curl('http://ratings:9080/');
  for (let i = 0; i < 30 && !refused(r); i++) {
    await new Promise((res) => setTimeout(res, 100));
    r = await curl('http://ratings:9080/');
  }
  assert.notEqual(r.code, 0, 'ratings still reachable after the policy change');
  assert.match(r.stderr, /not allowed|\(2\)/i);
  // Other services are unaffected.
  assert.equal((await curl('http://details:9080/')).code, 0);
  await writeFile(file, yaml);
  for (let i = 0; i < 30 && r.code !== 0; i++) {
    await new Promise((res) => setTimeout(res, 100));
    r = await curl('http://ratings:9080/');
  }
  assert.equal(r.code, 0, 'ratings not reachable again after the policy was restored');
});

test('with the controller down, traffic keeps flowing; when it is back, a new pod becomes reachable', async () => {
  const pid = Number((await readFile(join(dir, 'controller.pid'), 'utf8')).trim());
  process.kill(pid, 'SIGKILL');
  // The agents keep serving with their last config.
  for (let i = 0; i < 5; i++) assert.equal((await curl('http://reviews:9080/')).code, 0);
  // The launcher restarts the controller, as a Deployment would.
  await waitUntil(async () => {
    const now = Number((await readFile(join(dir, 'controller.pid'), 'utf8')).trim());
    return (
      now !== pid &&
      (await fetch(`http://${prefix}.0.100:15014/ready`).then(
        (x) => x.ok,
        () => false,
      ))
    );
  }, 15_000);
  // A new pod, its server and its Service appear: reachable through the mesh by name.
  const ip = `${prefix}.2.9`;
  const server = createHttpServer((_req, res) => res.end('hello from newapp\n'));
  await new Promise<void>((r) => server.listen(9080, ip, r));
  try {
    await writeFile(
      join(dir, 'kube', 'newapp.yaml'),
      `apiVersion: v1
kind: Pod
metadata: {name: newapp-1, namespace: default, labels: {app: newapp}}
spec: {nodeName: node-2, serviceAccountName: newapp, containers: [{name: newapp, image: newapp}]}
status: {phase: Running, podIP: ${ip}}
---
apiVersion: v1
kind: Service
metadata: {name: newapp, namespace: default}
spec: {selector: {app: newapp}, clusterIP: ${prefix}.100.9, ports: [{name: http, port: 9080}]}
`,
    );
    let r = await curl('http://newapp:9080/');
    for (let i = 0; i < 50 && r.code !== 0; i++) {
      await new Promise((res) => setTimeout(res, 100));
      r = await curl('http://newapp:9080/');
    }
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello from newapp\n');
  } finally {
    server.close();
  }
});

async function waitUntil(cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('SIGTERM drains and stops the whole mesh', async () => {
  const controllerPid = Number((await readFile(join(dir, 'controller.pid'), 'utf8')).trim());
  mesh.kill('SIGTERM');
  const code = await new Promise((r) => mesh.once('exit', r));
  assert.equal(code, 0);
  // Nothing is left running: signal 0 to the controller's pid finds no process.
  assert.throws(() => process.kill(controllerPid, 0), /ESRCH/);
  const r = await curl('http://reviews:9080/');
  assert.notEqual(r.code, 0);
});
