/**
 * The applications of the capture e2e tests, run inside pod network namespaces as ordinary programs
 * with ordinary sockets (no proxy settings): whatever reaches the mesh got there by capture.
 *
 *   serve                          whoami on 8080 (writes the peer address, closes), echo on 8081,
 *                                  sha256 on 8082 (answers the digest of everything received at EOF),
 *                                  HTTP/1.1 on 8083 (answers JSON: its own address, the peer's, the
 *                                  method, path and request headers; keep-alive)
 *   whoami <host> <port>           prints what the server wrote
 *   echo-many <host> <port> <n> <concurrency>
 *                                  n short connections, each echoing 32 random bytes; prints
 *                                  {"ok":n,"failed":m,"firstError":...}
 *   sha <host> <port> <bytes>      sends that many random bytes; prints {"sent":hex,"got":hex}
 *   http-many <url> <n> <concurrency>
 *                                  n GETs over `concurrency` kept-alive connections; prints
 *                                  {"status":{code:count},"byPod":{ip:count},"failed":m,"firstError":...}
 *                                  (byPod from the 8083 server's answer)
 *
 * Every client operation has a deadline so a broken mesh fails the test instead of hanging it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Agent, createServer as createHttpServer, get } from 'node:http';
import { connect, createServer, type Socket } from 'node:net';

const PORTS = { whoami: 8080, echo: 8081, sha: 8082, http: 8083 } as const;
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
  createHttpServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    const body = JSON.stringify({
      pod: req.socket.localAddress,
      peer: req.socket.remoteAddress,
      method: req.method,
      path: req.url,
      headers: req.headers,
    });
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }).listen(PORTS.http, '0.0.0.0');
}

/** One GET; resolves with the status and the body. */
function httpGet(url: string, agent: Agent): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = get(url, { agent, timeout: DEADLINE_MS }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.once('error', reject);
    });
    req.once('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.once('error', reject);
  });
}

async function httpMany(url: string, n: number, concurrency: number): Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const status: Record<string, number> = {};
  const byPod: Record<string, number> = {};
  const r = await inParallel(n, concurrency, async () => {
    const res = await httpGet(url, agent);
    status[res.status] = (status[res.status] ?? 0) + 1;
    if (res.status !== 200) return;
    const pod = (JSON.parse(res.body) as { pod?: string }).pod ?? '?';
    byPod[pod] = (byPod[pod] ?? 0) + 1;
  });
  agent.destroy();
  process.stdout.write(JSON.stringify({ status, byPod, failed: r.failed, firstError: r.firstError }));
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

/** Runs `task` n times over `concurrency` loops; resolves with how many failed and the first error. */
async function inParallel(
  n: number,
  concurrency: number,
  task: () => Promise<void>,
): Promise<{ failed: number; firstError: string | undefined }> {
  let next = 0;
  let failed = 0;
  let firstError: string | undefined;
  const loop = async () => {
    while (next < n) {
      next++;
      try {
        await task();
      } catch (err) {
        failed++;
        firstError ??= (err as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  return { failed, firstError };
}

async function echoMany(host: string, port: number, n: number, concurrency: number): Promise<void> {
  const r = await inParallel(n, concurrency, () => echoOnce(host, port));
  process.stdout.write(JSON.stringify({ ok: n - r.failed, failed: r.failed, firstError: r.firstError }));
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
  // `host` is the URL here; `port` the request count, `a` the concurrency.
  if (mode === 'http-many') return httpMany(host, Number(port), Number(a));
  throw new Error(`unknown mode ${mode}`);
};
run().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(1);
});
