/**
 * The `ambit-cni` plugin binary (cni/ambit-cni.cc), run as a container runtime runs it, against a
 * fake agent on a unix socket (no root needed): where it finds the agent (the network configuration's
 * `socket`, AMBIT_CNI_SOCKET overriding it for tests), what its `failPolicy` does when the agent is
 * not there (should-fix 6), and that an agent hanging up early cannot kill it with SIGPIPE.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { CniErrorCode } from '../../../src/ztunnel/inpod/cni-protocol.ts';

const PLUGIN = fileURLToPath(new URL('../../../build/Release/ambit-cni', import.meta.url));
const skip = existsSync(PLUGIN) ? false : `the plugin is not built (${PLUGIN}): run npm ci`;
const PREV = { cniVersion: '1.0.0', ips: [{ address: '10.0.0.5/32' }] };

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ambit-cni-plugin-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Run {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly out: string;
}

function run(command: string, conf: Record<string, unknown>, env: Record<string, string> = {}): Promise<Run> {
  const child = spawn(PLUGIN, [], {
    env: {
      CNI_COMMAND: command,
      CNI_CONTAINERID: 'ctr-1',
      CNI_NETNS: '/var/run/netns/x',
      CNI_IFNAME: 'eth0',
      CNI_ARGS: 'K8S_POD_NAMESPACE=demo;K8S_POD_NAME=p',
      ...env,
    },
    stdio: ['pipe', 'pipe', 'ignore'],
  });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stdin.on('error', () => undefined);
  child.stdin.end(JSON.stringify({ cniVersion: '1.0.0', name: 'k8s', type: 'ambit-cni', ...conf }));
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, out })));
}

/** A fake agent: records each request and answers with `answer`, or does what `onConnection` says. */
async function agent(
  path: string,
  onConnection?: (s: Socket) => void,
): Promise<{ server: Server; requests: string[] }> {
  const requests: string[] = [];
  const server = createServer({ allowHalfOpen: true }, (s) => {
    if (onConnection) return onConnection(s);
    let req = '';
    s.on('data', (b: Buffer) => (req += b.toString()));
    s.on('end', () => {
      requests.push(req);
      s.end('0\n{"answered":true}');
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  return { server, requests };
}

test('should-fix 6: the socket comes from the network configuration', { skip }, async () => {
  const path = join(dir, 'conf.sock');
  const a = await agent(path);
  try {
    const r = await run('ADD', { socket: path, prevResult: PREV });
    assert.deepEqual([r.code, r.out], [0, '{"answered":true}']);
    assert.match(a.requests[0]!, /^AMBIT-CNI 1\nCNI_COMMAND=ADD\n/);
    assert.match(a.requests[0]!, /"socket":/);
  } finally {
    a.server.close();
  }
});

test('should-fix 6: AMBIT_CNI_SOCKET overrides the configuration (tests)', { skip }, async () => {
  const path = join(dir, 'env.sock');
  const a = await agent(path);
  try {
    const r = await run(
      'ADD',
      { socket: join(dir, 'nowhere.sock'), prevResult: PREV },
      { AMBIT_CNI_SOCKET: path },
    );
    assert.deepEqual([r.code, r.out], [0, '{"answered":true}']);
  } finally {
    a.server.close();
  }
});

test(
  'should-fix 6: failPolicy open (the default) lets the pod start uncaptured when the agent is not there',
  { skip },
  async () => {
    for (const conf of [{}, { failPolicy: 'open' }]) {
      const r = await run('ADD', { socket: join(dir, 'absent.sock'), prevResult: PREV, ...conf });
      assert.equal(r.code, 0);
      assert.deepEqual(JSON.parse(r.out), PREV);
    }
  },
);

test(
  'should-fix 6: failPolicy closed fails ADD with CNI error 11 so the kubelet retries; DEL still succeeds',
  { skip },
  async () => {
    const conf = { socket: join(dir, 'absent.sock'), prevResult: PREV, failPolicy: 'closed' };
    const add = await run('ADD', conf);
    assert.equal(add.code, 1);
    const err = JSON.parse(add.out) as { code: number; msg: string };
    assert.equal(err.code, CniErrorCode.TryAgainLater);
    assert.match(err.msg, /not reachable .*failPolicy is closed/);
    const del = await run('DEL', conf);
    assert.deepEqual([del.code, del.out], [0, '']);
  },
);

test('should-fix 6: a failPolicy other than open or closed is a configuration error', { skip }, async () => {
  const r = await run('ADD', { socket: join(dir, 'absent.sock'), prevResult: PREV, failPolicy: 'maybe' });
  assert.equal(r.code, 1);
  assert.equal((JSON.parse(r.out) as { code: number }).code, 7);
});

test(
  'should-fix 6: an agent that hangs up before reading does not kill the plugin with SIGPIPE',
  { skip },
  async () => {
    const path = join(dir, 'rude.sock');
    const a = await agent(path, (s) => s.destroy());
    try {
      // Far more than a socket buffer, so the plugin is still writing when the agent has gone.
      const big = 'x'.repeat(4 << 20);
      for (const failPolicy of ['open', 'closed']) {
        const r = await run('ADD', { socket: path, prevResult: PREV, failPolicy, padding: big });
        assert.equal(r.signal, null, `killed by ${r.signal}`);
        assert.equal(r.code, failPolicy === 'open' ? 0 : 1);
      }
    } finally {
      a.server.close();
    }
  },
);
