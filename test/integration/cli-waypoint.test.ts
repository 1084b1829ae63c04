/**
 * `ambit waypoint apply|list|status|delete`, the real CLI: against the fake Kubernetes API server
 * (cluster mode), and against a running `ambit local` (local mode, `--local-dir`), where the
 * waypoint the Gateway asks for really starts.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FakeKubeApiServer } from '../fakes/kube-api-server.ts';
import { ambit, AMBIT_MAIN, tableRows } from '../fakes/ambit-cli.ts';

const expectedSpec = {
  gatewayClassName: 'istio-waypoint',
  listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }],
};

describe('cluster mode (fake API server)', () => {
  let fake: FakeKubeApiServer;
  let dir: string;
  let kubeconfig: string;
  const k = () => ['--kubeconfig', kubeconfig];

  before(async () => {
    fake = await FakeKubeApiServer.start({ token: 'admin-token' });
    dir = await mkdtemp(join(tmpdir(), 'ambit-cli-waypoint-'));
    kubeconfig = await fake.writeKubeconfig(join(dir, 'kubeconfig'));
    fake.add('Namespace', {
      metadata: { name: 'default', labels: { 'istio.io/dataplane-mode': 'ambient' } },
    });
  });

  after(async () => {
    await fake.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('apply creates the Gateway and enrols the namespace', async () => {
    const r = await ambit('waypoint', 'apply', '-n', 'default', '--enroll-namespace', ...k());
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      'waypoint default/waypoint applied\nnamespace default labeled with "istio.io/use-waypoint: waypoint"\n',
    );
    const gw = fake.get('Gateway', 'waypoint', 'default')!;
    assert.deepEqual(gw.spec, expectedSpec);
    assert.deepEqual((gw.metadata as { labels: unknown }).labels, { 'istio.io/waypoint-for': 'service' });
    assert.deepEqual((fake.get('Namespace', 'default')!.metadata as { labels: unknown }).labels, {
      'istio.io/dataplane-mode': 'ambient',
      'istio.io/use-waypoint': 'waypoint',
    });
    const writes = fake.requests.filter((q) => q.method !== 'GET').map((q) => `${q.verb} ${q.kind}`);
    assert.deepEqual(writes, ['create Gateway', 'patch Namespace']);
  });

  test('apply again replaces it (--for all), keeping labels others set', async () => {
    const gw = fake.get('Gateway', 'waypoint', 'default')!;
    (gw.metadata as { labels: Record<string, string> }).labels.team = 'mesh';
    fake.update('Gateway', gw);
    const r = await ambit('waypoint', 'apply', '-n', 'default', '--for', 'all', ...k());
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((fake.get('Gateway', 'waypoint', 'default')!.metadata as { labels: unknown }).labels, {
      'istio.io/waypoint-for': 'all',
      team: 'mesh',
    });
    assert.equal(fake.requests.filter((q) => q.verb === 'update').length, 1);
  });

  test('list and status show what the reconciler reported', async () => {
    const before = await ambit('waypoint', 'list', ...k());
    assert.deepEqual(tableRows(before.stdout), [
      ['NAMESPACE', 'NAME', 'FOR', 'ADDRESS', 'PROGRAMMED'],
      ['default', 'waypoint', 'all', '-', 'Unknown'],
    ]);
    // What the controller's reconciler writes once the waypoint Deployment is up.
    const gw = fake.get('Gateway', 'waypoint', 'default')!;
    fake.update('Gateway', {
      ...gw,
      status: {
        addresses: [{ type: 'IPAddress', value: '10.96.0.50' }],
        conditions: [
          { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'Resource accepted' },
          { type: 'Programmed', status: 'True', reason: 'Programmed', message: 'Resource programmed' },
        ],
      },
    });
    const list = await ambit('waypoint', 'list', '-n', 'default', ...k());
    assert.deepEqual(tableRows(list.stdout)[1], ['default', 'waypoint', 'all', '10.96.0.50', 'True']);
    const status = await ambit('waypoint', 'status', '-n', 'default', ...k());
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^Gateway default\/waypoint: class istio-waypoint, for all\n/);
    assert.match(status.stdout, /^address: 10\.96\.0\.50$/m);
    assert.match(status.stdout, /^used by: namespace default$/m);
    assert.deepEqual(tableRows(status.stdout.split('\n\n')[1]!), [
      ['TYPE', 'STATUS', 'REASON', 'MESSAGE'],
      ['Accepted', 'True', 'Accepted', 'Resource accepted'],
      ['Programmed', 'True', 'Programmed', 'Resource programmed'],
    ]);
    const json = await ambit('waypoint', 'status', '-n', 'default', '-o', 'json', ...k());
    assert.equal((JSON.parse(json.stdout) as { addresses: string[] }).addresses[0], '10.96.0.50');
    const wait = await ambit('waypoint', 'apply', '-n', 'default', '--for', 'all', '--wait', ...k());
    assert.match(wait.stdout, /waypoint default\/waypoint is programmed\n$/);
  });

  test("list and status show the traffic its GatewayClass's istio.io/waypoint-for gives a Gateway without the label", async () => {
    fake.add('Gateway', {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { name: 'by-class', namespace: 'default' },
      spec: { ...expectedSpec, gatewayClassName: 'ambit-waypoint' },
    });
    fake.add('GatewayClass', {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'GatewayClass',
      metadata: { name: 'ambit-waypoint', labels: { 'istio.io/waypoint-for': 'workload' } },
      spec: { controllerName: 'istio.io/waypoint-controller' },
    });
    const row = async () =>
      tableRows((await ambit('waypoint', 'list', '-n', 'default', ...k())).stdout).find(
        (r) => r[1] === 'by-class',
      );
    assert.deepEqual((await row())?.slice(0, 3), ['default', 'by-class', 'workload']);
    const status = await ambit('waypoint', 'status', '-n', 'default', '--name', 'by-class', ...k());
    assert.match(status.stdout, /^Gateway default\/by-class: class ambit-waypoint, for workload\n/);
    // An invalid class value is ignored, as the controller ignores it: the default applies.
    const cls = fake.get('GatewayClass', 'ambit-waypoint')!;
    fake.update('GatewayClass', {
      ...cls,
      metadata: { ...(cls.metadata as object), labels: { 'istio.io/waypoint-for': 'pods' } },
    });
    assert.deepEqual((await row())?.slice(0, 3), ['default', 'by-class', 'service']);
    fake.delete('Gateway', { metadata: { name: 'by-class', namespace: 'default' } });
    fake.delete('GatewayClass', { metadata: { name: 'ambit-waypoint' } });
  });

  test('delete removes it and says the namespace still points at it; a second delete fails', async () => {
    const r = await ambit('waypoint', 'delete', '-n', 'default', ...k());
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      'waypoint default/waypoint deleted\n' +
        'note: namespace default still has istio.io/use-waypoint=waypoint: kubectl label namespace default istio.io/use-waypoint-\n',
    );
    assert.equal(fake.get('Gateway', 'waypoint', 'default'), undefined);
    const again = await ambit('waypoint', 'delete', '-n', 'default', ...k());
    assert.equal(again.code, 1);
    assert.match(again.stderr, /^error: no waypoint Gateway default\/waypoint in the cluster/);
  });

  test('errors say what to check: a missing namespace, an unreachable API server', async () => {
    const missing = await ambit('waypoint', 'apply', '-n', 'nope', '--enroll-namespace', ...k());
    assert.equal(missing.code, 1);
    assert.match(
      missing.stderr,
      /namespace nope does not exist: create it first \(kubectl create namespace nope\)/,
    );
    assert.equal(fake.get('Gateway', 'waypoint', 'nope'), undefined);
    await fake.stop();
    try {
      const down = await ambit('waypoint', 'list', ...k());
      assert.equal(down.code, 1);
      assert.match(
        down.stderr,
        /^error: cannot reach the API server http:\/\/127\.0\.0\.1:\d+: .*--kubeconfig/,
      );
    } finally {
      await fake.restart();
    }
    const bad = await ambit('waypoint', 'apply', '--name', 'Bad_Name', ...k());
    assert.match(bad.stderr, /"Bad_Name" is not a valid name/);
  });
});

describe('local mode (a running ambit local)', () => {
  // A loopback range of our own (127.190-199), apart from the other tests' meshes.
  const prefix = `127.${190 + (process.pid % 10)}`;
  let dir: string;
  let kubeDir: string;
  let mesh: ChildProcess;
  let output = '';
  const l = () => ['--local-dir', kubeDir];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ambit-cli-waypoint-local-'));
    kubeDir = join(dir, 'kube');
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address() as { port: number };
        s.close(() => resolve(port));
      });
    });
    mesh = spawn(
      process.execPath,
      [AMBIT_MAIN, 'local', '--dir', dir, '--prefix', prefix, '--socks-port', String(port)],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    mesh.stdout!.on('data', (b: Buffer) => (output += b.toString()));
    mesh.stderr!.on('data', (b: Buffer) => (output += b.toString()));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`mesh did not come up:\n${output}`)), 60_000);
      mesh.stdout!.on('data', () => {
        if (!output.includes('Press Ctrl-C to stop.')) return;
        clearTimeout(timer);
        resolve();
      });
      mesh.once('exit', (code) => reject(new Error(`mesh exited with ${code}:\n${output}`)));
    });
  });

  after(async () => {
    if (mesh && mesh.exitCode === null) {
      mesh.kill('SIGTERM');
      await new Promise((r) => mesh.once('exit', r));
    }
    await rm(dir, { recursive: true, force: true });
  });

  test('list: none yet', async () => {
    const r = await ambit('waypoint', 'list', ...l());
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'no waypoints found\n');
  });

  test('apply --enroll-namespace --wait: a file for the Gateway, one label line in mesh.yaml, a running waypoint', async () => {
    const meshFile = join(kubeDir, 'mesh.yaml');
    const before = await readFile(meshFile, 'utf8');
    const r = await ambit('waypoint', 'apply', '-n', 'default', '--enroll-namespace', '--wait', ...l());
    assert.equal(r.code, 0, r.stderr + output);
    const file = join(kubeDir, 'waypoint-default-waypoint.yaml');
    assert.equal(
      r.stdout,
      `waypoint default/waypoint applied (${file})\n` +
        `namespace default labeled with "istio.io/use-waypoint: waypoint" (${meshFile})\n` +
        'waypoint default/waypoint is ready\n',
    );
    assert.match(await readFile(file, 'utf8'), /gatewayClassName: istio-waypoint/);
    // Only the label was added: every other line (and comment) of mesh.yaml is as it was.
    const added = (await readFile(meshFile, 'utf8')).split('\n');
    const removedAt = added.indexOf('    istio.io/use-waypoint: waypoint');
    assert.ok(removedAt > 0);
    added.splice(removedAt, 1);
    assert.equal(added.join('\n'), before);
  });

  test('status: accepted, programmed (the waypoint answers ready), its address and who uses it', async () => {
    const r = await ambit('waypoint', 'status', '-n', 'default', ...l());
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^address: ${prefix.replace('.', '\\.')}\\.3\\.1:15008$`, 'm'));
    assert.match(r.stdout, /^used by: namespace default$/m);
    const table = tableRows(r.stdout.split('\n\n')[1]!);
    assert.deepEqual(table[1]!.slice(0, 3), ['Accepted', 'True', 'Accepted']);
    assert.deepEqual(table[2]!.slice(0, 3), ['Programmed', 'True', 'Programmed']);
    const list = await ambit('waypoint', 'list', '-n', 'default', ...l());
    assert.deepEqual(tableRows(list.stdout)[1], [
      'default',
      'waypoint',
      'service',
      `${prefix}.3.1:15008`,
      'True',
    ]);
  });

  test("the agents bind default's services to it (ambit config services)", async () => {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const r = await ambit('config', 'services', '-n', 'default', '--admin', `${prefix}.0.1:15000`);
      assert.equal(r.code, 0, r.stderr);
      const reviews = tableRows(r.stdout).find((x) => x[1] === 'reviews.default.svc.cluster.local');
      if (reviews && reviews[5] !== 'None') break;
      assert.ok(Date.now() < deadline, `no waypoint on reviews:\n${r.stdout}`);
      await new Promise((res) => setTimeout(res, 300));
    }
  });

  test('apply refuses a Gateway that another file defines', async () => {
    await writeFile(
      join(kubeDir, '00-other.yaml'),
      '# mine\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: other, namespace: default}\n' +
        'spec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}\n',
    );
    const r = await ambit('waypoint', 'apply', '-n', 'default', '--name', 'other', ...l());
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Gateway default\/other is already defined in .*00-other\.yaml: edit it there/);
    const del = await ambit('waypoint', 'delete', '-n', 'default', '--name', 'other', ...l());
    assert.match(del.stderr, /is defined in .*00-other\.yaml, not written by `ambit waypoint apply`/);
    await rm(join(kubeDir, '00-other.yaml'));
  });

  test('delete removes the file (and the waypoint stops); the namespace label is pointed out', async () => {
    const r = await ambit('waypoint', 'delete', '-n', 'default', ...l());
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^waypoint default\/waypoint deleted \(.*waypoint-default-waypoint\.yaml\)\n/);
    assert.match(r.stdout, /note: namespace default still has istio\.io\/use-waypoint=waypoint/);
    assert.ok(!existsSync(join(kubeDir, 'waypoint-default-waypoint.yaml')));
    const status = await ambit('waypoint', 'status', '-n', 'default', ...l());
    assert.equal(status.code, 1);
    assert.match(status.stderr, /no waypoint Gateway default\/waypoint in /);
  });
});
