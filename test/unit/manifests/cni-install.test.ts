/**
 * daemonset/cni-install.sh, the node agent's init step, run against scratch copies of a node's CNI
 * directories: a mistake in it would break pod networking on every node, so each of its promises is
 * tested. Needs sh and jq (Debian: jq), as the image has them.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ROOT } from './manifests.ts';

const SCRIPT = join(ROOT, 'daemonset/cni-install.sh');
const scratch = mkdtempSync(join(tmpdir(), 'ambit-cni-install-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

let n = 0;
/** A node: an empty bin dir, a config dir with `files`, and a plugin binary to install. */
function node(files: Record<string, string>) {
  const dir = join(scratch, String(n++));
  const bin = join(dir, 'bin');
  const net = join(dir, 'net');
  mkdirSync(bin, { recursive: true });
  mkdirSync(net, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(net, name), text);
  const plugin = join(dir, 'ambit-cni');
  writeFileSync(plugin, '#!/bin/sh\necho plugin\n');
  const run = (extra: Record<string, string> = {}) => {
    const r = spawnSync('sh', [SCRIPT], {
      encoding: 'utf8',
      timeout: 30_000,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        CNI_BIN_DIR: bin,
        CNI_NET_DIR: net,
        AMBIT_CNI_BINARY: plugin,
        AMBIT_CNI_WAIT_SECONDS: '0',
        ...extra,
      },
    });
    assert.ifError(r.error);
    return r;
  };
  const json = (name: string): unknown => JSON.parse(readFileSync(join(net, name), 'utf8'));
  return { bin, net, run, json, files: () => readdirSync(net).sort() };
}

const ENTRY = { type: 'ambit-cni', socket: '/var/run/ambit/cni.sock', failPolicy: 'open' };
const CALICO = {
  name: 'k8s-pod-network',
  cniVersion: '0.3.1',
  plugins: [
    { type: 'calico', ipam: { type: 'calico-ipam' } },
    { type: 'portmap', capabilities: { portMappings: true } },
  ],
};

test('jq is installed (the installer needs it, and the image has it)', () => {
  const r = spawnSync('jq', ['--version'], { encoding: 'utf8' });
  assert.ok(!r.error, 'jq is not installed: apt-get install jq');
});

test('installs the plugin binary, executable, and appends ambit-cni to the primary config list', () => {
  const nd = node({ '10-calico.conflist': JSON.stringify(CALICO) });
  const r = nd.run();
  assert.equal(r.status, 0, r.stderr);
  assert.equal(readFileSync(join(nd.bin, 'ambit-cni'), 'utf8'), '#!/bin/sh\necho plugin\n');
  assert.equal(statSync(join(nd.bin, 'ambit-cni')).mode & 0o777, 0o755);
  assert.deepEqual(readdirSync(nd.bin), ['ambit-cni'], 'no temporary file left');
  assert.deepEqual(nd.json('10-calico.conflist'), { ...CALICO, plugins: [...CALICO.plugins, ENTRY] });
  assert.deepEqual(nd.files(), ['10-calico.conflist']);
});

test('running again changes nothing and does not rewrite the file', () => {
  const nd = node({ '10-calico.conflist': JSON.stringify(CALICO) });
  assert.equal(nd.run().status, 0);
  const before = statSync(join(nd.net, '10-calico.conflist'));
  const again = nd.run();
  assert.equal(again.status, 0, again.stderr);
  const after = statSync(join(nd.net, '10-calico.conflist'));
  assert.equal(after.ino, before.ino);
  assert.equal(after.mtimeMs, before.mtimeMs);
  assert.match(again.stderr, /already chains ambit-cni/);
});

test('an existing ambit-cni entry is replaced (new socket, new fail policy), not added twice', () => {
  const nd = node({ '10-calico.conflist': JSON.stringify(CALICO) });
  assert.equal(nd.run().status, 0);
  const r = nd.run({ AMBIT_CNI_FAIL_POLICY: 'closed', AMBIT_CNI_SOCKET: '/run/ambit/x.sock' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(nd.json('10-calico.conflist'), {
    ...CALICO,
    plugins: [...CALICO.plugins, { type: 'ambit-cni', socket: '/run/ambit/x.sock', failPolicy: 'closed' }],
  });
});

test('a single-plugin .conf becomes a .conflist (the old file goes, so the runtime reads the list)', () => {
  const flannel = { cniVersion: '0.3.1', name: 'cbr0', type: 'flannel', delegate: { hairpinMode: true } };
  const nd = node({ '10-flannel.conf': JSON.stringify(flannel) });
  const r = nd.run();
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(nd.files(), ['10-flannel.conflist']);
  assert.deepEqual(nd.json('10-flannel.conflist'), {
    cniVersion: '0.3.1',
    name: 'cbr0',
    plugins: [{ type: 'flannel', delegate: { hairpinMode: true } }, ENTRY],
  });
});

test('only the primary config (first by name) is changed; other files are left alone', () => {
  const other = JSON.stringify({ name: 'other', cniVersion: '1.0.0', plugins: [{ type: 'bridge' }] });
  const nd = node({ '20-other.conflist': other, '05-kindnet.conflist': JSON.stringify(CALICO), README: 'x' });
  assert.equal(nd.run().status, 0);
  assert.deepEqual(nd.json('05-kindnet.conflist'), { ...CALICO, plugins: [...CALICO.plugins, ENTRY] });
  assert.equal(readFileSync(join(nd.net, '20-other.conflist'), 'utf8'), other);
});

test('refusals: a bad fail policy, no config to chain into, a config that is not CNI JSON', () => {
  const cases: [string, Record<string, string>, Record<string, string>, RegExp][] = [
    [
      'bad policy',
      { '10-calico.conflist': JSON.stringify(CALICO) },
      { AMBIT_CNI_FAIL_POLICY: 'maybe' },
      /use open or closed/,
    ],
    [
      'relative socket',
      { '10-calico.conflist': JSON.stringify(CALICO) },
      { AMBIT_CNI_SOCKET: 'cni.sock' },
      /absolute path/,
    ],
    ['no config', {}, {}, /no CNI config .* after 0s: is the cluster's network plugin installed\?/],
    ['not JSON', { '10-x.conflist': '{not json' }, {}, /cannot chain ambit-cni into .*10-x\.conflist/],
    ['no plugins list', { '10-x.conflist': '{"name":"x"}' }, {}, /cannot chain ambit-cni/],
  ];
  for (const [name, files, env, message] of cases) {
    const nd = node(files);
    const before = nd.files().map((f) => readFileSync(join(nd.net, f), 'utf8'));
    const r = nd.run(env);
    assert.notEqual(r.status, 0, name);
    assert.match(r.stderr, message, name);
    assert.deepEqual(
      nd.files().map((f) => readFileSync(join(nd.net, f), 'utf8')),
      before,
      `${name}: the config dir must be left as it was`,
    );
  }
});
