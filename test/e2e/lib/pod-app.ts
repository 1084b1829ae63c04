/**
 * The applications of the capture e2e tests, run inside pod network namespaces as ordinary programs
 * with ordinary sockets (no proxy settings): whatever reaches the mesh got there by capture.
 *
 *   serve                          whoami on 8080 (writes the peer address, closes), echo on 8081,
 *                                  sha256 on 8082 (answers the digest of everything received at EOF)
 *   whoami <host> <port>           prints what the server wrote
 *   echo-many <host> <port> <n> <concurrency>
 *                                  n short connections, each echoing 32 random bytes; prints
 *                                  {"ok":n,"failed":m,"firstError":...}
 *   sha <host> <port> <bytes>      sends that many random bytes; prints {"sent":hex,"got":hex}
 *
 * Every client operation has a deadline so a broken mesh fails the test instead of hanging it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { connect, createServer, type Socket } from 'node:net';

const PORTS = { whoami: 8080, echo: 8081, sha: 8082 } as const;
const DEADLINE_MS = 20_000;

function serve(): void {
  createServer((s) => {
    s.on('error', () => undefined);
    s.end(JSON.stringify({ peer: s.remoteAddress, local: s.localAddress }));
  }).listen(PORTS.whoami, '0.0.0.0');
  createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  }).listen(PORTS.echo, '0.0.0.0');
  createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    const h = createHash('sha256');
    s.on('data', (b: Buffer) => h.update(b));
    s.on('end', () => s.end(h.digest('hex')));
  }).listen(PORTS.sha, '0.0.0.0', () => process.stdout.write('serving\n'));
}

function open(host: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port, allowHalfOpen: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`connect to ${host}:${port} timed out`));
    }, DEADLINE_MS);
    s.once('connect', () => {
      clearTimeout(timer);
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

function readAll(s: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('read timed out'));
    }, DEADLINE_MS);
    s.on('data', (b: Buffer) => chunks.push(b));
    s.once('end', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

async function whoami(host: string, port: number): Promise<void> {
  const s = await open(host, port);
  process.stdout.write((await readAll(s)).toString());
}

async function echoOnce(host: string, port: number): Promise<void> {
  const s = await open(host, port);
  const payload = randomBytes(32);
  s.end(payload);
  const got = await readAll(s);
  if (!got.equals(payload)) throw new Error(`echo returned ${got.length} different bytes`);
}

async function echoMany(host: string, port: number, n: number, concurrency: number): Promise<void> {
  let next = 0;
  let ok = 0;
  let failed = 0;
  let firstError: string | undefined;
  const worker = async () => {
    while (next < n) {
      next++;
      try {
        await echoOnce(host, port);
        ok++;
      } catch (err) {
        failed++;
        firstError ??= (err as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  process.stdout.write(JSON.stringify({ ok, failed, firstError }));
}

async function sha(host: string, port: number, bytes: number): Promise<void> {
  const s = await open(host, port);
  const h = createHash('sha256');
  const chunk = 1 << 16;
  const reply = readAll(s);
  for (let sent = 0; sent < bytes; sent += chunk) {
    const b = randomBytes(Math.min(chunk, bytes - sent));
    h.update(b);
    if (!s.write(b)) await new Promise((r) => s.once('drain', r));
  }
  s.end();
  process.stdout.write(JSON.stringify({ sent: h.digest('hex'), got: (await reply).toString() }));
}

const [mode, host = '', port = '0', a = '0', b = '1'] = process.argv.slice(2);
const run = async () => {
  if (mode === 'serve') return serve();
  if (mode === 'whoami') return whoami(host, Number(port));
  if (mode === 'echo-many') return echoMany(host, Number(port), Number(a), Number(b));
  if (mode === 'sha') return sha(host, Number(port), Number(a));
  throw new Error(`unknown mode ${mode}`);
};
run().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(1);
});
