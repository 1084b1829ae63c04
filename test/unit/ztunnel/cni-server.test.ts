/**
 * The agent's CNI socket (src/ztunnel/inpod/cni-server.ts) over real unix sockets: who may reach it,
 * that an exiting agent never removes its successor's socket (must-fix 8), and that only reading the
 * request is timed, not answering it (should-fix 6).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { silentLogger } from '../../../src/core/log.ts';
import {
  EMPTY_SUCCESS,
  formatCniRequest,
  parseCniResponse,
  type CniResponse,
} from '../../../src/ztunnel/inpod/cni-protocol.ts';
import { CniServer } from '../../../src/ztunnel/inpod/cni-server.ts';

const VERSION_REQ = formatCniRequest({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}');

/** Sends `req` (or nothing, if undefined) and half-closes; resolves with everything read back. */
function ask(path: string, req: Buffer | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let out = '';
    s.on('data', (b: Buffer) => (out += b.toString()));
    s.on('error', reject);
    s.on('close', () => resolve(out));
    if (req) s.end(req);
  });
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-cni-server-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('must-fix 8: an exiting agent leaves the socket its successor has bound', async () => {
  await withDir(async (dir) => {
    const path = join(dir, 'cni.sock');
    const old = await CniServer.start(path, () => Promise.resolve(EMPTY_SUCCESS), silentLogger());
    const next = await CniServer.start(path, () => Promise.resolve(EMPTY_SUCCESS), silentLogger());
    await old.close();
    assert.ok(existsSync(path), 'the successor socket was removed');
    assert.match(await ask(path, VERSION_REQ), /^0\n/);
    await next.close();
    assert.equal(existsSync(path), false, 'an agent removes its own socket');
  });
});

test('the socket is 0600, in a directory the agent creates 0700', async () => {
  await withDir(async (dir) => {
    const path = join(dir, 'run', 'ambit', 'cni.sock');
    const s = await CniServer.start(path, () => Promise.resolve(EMPTY_SUCCESS), silentLogger());
    try {
      assert.equal((await stat(path)).mode & 0o777, 0o600);
      assert.equal((await stat(join(dir, 'run', 'ambit'))).mode & 0o777, 0o700);
    } finally {
      await s.close();
    }
  });
});

test('should-fix 6: an answer may take longer than the read timeout; a silent plugin is still cut off', async () => {
  await withDir(async (dir) => {
    const path = join(dir, 'cni.sock');
    const slow = (): Promise<CniResponse> =>
      new Promise((r) => setTimeout(() => r({ exitCode: 0, stdout: 'late' }), 300));
    const s = await CniServer.start(path, slow, silentLogger(), { readTimeoutMs: 100 });
    try {
      const started = Date.now();
      const answer = parseCniResponse(Buffer.from(await ask(path, VERSION_REQ)));
      assert.ok(answer.ok);
      assert.deepEqual(answer.value, { exitCode: 0, stdout: 'late' });
      assert.ok(Date.now() - started >= 250);
      // Connected but sending nothing: cut after the read timeout, with no answer.
      assert.equal(await ask(path, undefined), '');
    } finally {
      await s.close();
    }
  });
});
