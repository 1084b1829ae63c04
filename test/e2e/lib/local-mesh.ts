/**
 * `ambit local` (`npm start`) as a child process on a loopback range of the test's own, for e2e tests
 * that drive it with the real curl through its SOCKS5 port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('../../../src/cli/main.ts', import.meta.url));
const UP_TIMEOUT_MS = 30_000;

export interface LocalMesh {
  /** The state directory (`--dir`): CA, `kube/`, tokens, logs, `apps.log`. */
  readonly dir: string;
  /** `127.0.0.1:<port>` of the SOCKS5 listener that speaks for default/curl. */
  readonly socks: string;
  readonly prefix: string;
  readonly child: ChildProcess;
  /** Everything the mesh printed so far (stdout and stderr). */
  output(): string;
  /** SIGTERM, wait for the exit, remove the directory. */
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Starts `ambit local --prefix <prefix>` in a new temp dir; resolves once it printed its guide. */
export async function startLocalMesh(prefix: string): Promise<LocalMesh> {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-e2e-'));
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [MAIN, 'local', '--dir', dir, '--prefix', prefix, '--socks-port', String(port)],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  child.stdout.on('data', (b: Buffer) => (output += b.toString()));
  child.stderr.on('data', (b: Buffer) => (output += b.toString()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`mesh did not come up:\n${output}`)), UP_TIMEOUT_MS);
      child.stdout.on('data', () => {
        if (output.includes('Press Ctrl-C to stop.')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`mesh exited with ${code}:\n${output}`));
      });
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return { dir, socks: `127.0.0.1:${port}`, prefix, child, output: () => output, stop };
}
