/**
 * The waypoint's HTTP/1.1 client (http1-upstream.ts) against a raw TCP server that writes its
 * answers byte for byte: framing of the request (content-length, chunked, content-length: 0),
 * responses by content-length, chunked with trailers, until close, HEAD, a 100 Continue before the
 * answer; keep-alive reuse and its limits; malformed answers and a kept-alive connection the server
 * had closed (stale) as failures.
 */
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { formatRequestHead, Http1Pool } from '../../../src/waypoint/http1-upstream.ts';
import type { AttemptResult, RequestHead } from '../../../src/waypoint/upstream-types.ts';

/** What the server received on each connection, and how it answers the next request. */
const received: string[] = [];
let connections = 0;
let answer: (request: string, socket: Socket) => void = () => undefined;
let server: Server;
let port = 0;

before(async () => {
  server = createServer((socket) => {
    connections++;
    let buf = '';
    socket.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      // One request at a time: a head, and a body by content-length or up to the last chunk.
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.slice(0, end);
      const length = /content-length: (\d+)/i.exec(head);
      const chunked = /transfer-encoding: chunked/i.test(head);
      const bodyStart = end + 4;
      if (length && buf.length < bodyStart + Number(length[1])) return;
      if (chunked && !buf.endsWith('0\r\n\r\n')) return;
      const request = length ? buf.slice(0, bodyStart + Number(length[1])) : buf;
      buf = buf.slice(request.length);
      received.push(request);
      answer(request, socket);
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as { port: number }).port;
});

after(() => new Promise<void>((r) => server.close(() => r())));

function pool(maxRequestsPerConnection = 0): Http1Pool {
  return new Http1Pool({
    connect: () =>
      new Promise((resolve, reject) => {
        const s = connect({ host: '127.0.0.1', port }, () => resolve(s));
        s.once('error', reject);
      }),
    maxRequestsPerConnection,
    idleTimeoutMs: 0,
  });
}

const head = (over: Partial<RequestHead> = {}): RequestHead => ({
  method: 'GET',
  path: '/p?q=1',
  authority: 'svc:80',
  headers: new Map([['x-a', ['1', '2']]]),
  ...over,
});

/** One exchange: the body written, then the response read whole. */
async function exchange(
  p: Http1Pool,
  h: RequestHead,
  body: string[] = [],
): Promise<{ result: AttemptResult; body: string; trailers: unknown }> {
  const a = p.start(h);
  for (const c of body) a.requestBody!.write(Buffer.from(c));
  a.end();
  const result = await a.result;
  if (result.kind !== 'response') return { result, body: '', trailers: undefined };
  let text = '';
  result.body.on('data', (d: Buffer) => (text += d.toString()));
  await new Promise((r) => result.body.once('end', r));
  return { result, body: text, trailers: result.trailers() };
}

test('the head is one block: request line, host, every value; bad names and values are refused', () => {
  const ok = formatRequestHead(head());
  assert.deepEqual(ok, {
    ok: true,
    text: 'GET /p?q=1 HTTP/1.1\r\nhost: svc:80\r\nx-a: 1\r\nx-a: 2\r\n',
    contentLength: false,
  });
  assert.equal(formatRequestHead(head({ headers: new Map([['x', ['a\r\nb']]]) })).ok, false);
  assert.equal(formatRequestHead(head({ headers: new Map([['x y', ['a']]]) })).ok, false);
  assert.equal(formatRequestHead(head({ path: '/a b' })).ok, false);
  assert.equal(formatRequestHead(head({ method: 'GE T' })).ok, false);
});

test('framing: content-length as given, chunked without one, content-length: 0 for a bodyless POST', async () => {
  answer = (_r, s) => s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
  const p = pool();
  received.length = 0;
  await exchange(p, head({ method: 'PUT', headers: new Map([['content-length', ['5']]]) }), ['ab', 'cde']);
  await exchange(p, head({ method: 'POST', headers: new Map() }), ['ab', 'cde']);
  await exchange(p, head({ method: 'POST', headers: new Map() }));
  await exchange(p, head({ method: 'GET', headers: new Map() }));
  assert.deepEqual(received, [
    'PUT /p?q=1 HTTP/1.1\r\nhost: svc:80\r\ncontent-length: 5\r\n\r\nabcde',
    'POST /p?q=1 HTTP/1.1\r\nhost: svc:80\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n',
    'POST /p?q=1 HTTP/1.1\r\nhost: svc:80\r\ncontent-length: 0\r\n\r\n',
    'GET /p?q=1 HTTP/1.1\r\nhost: svc:80\r\n\r\n',
  ]);
  p.destroy();
});

test('responses: chunked with trailers, HEAD, 100 Continue first, until close; keep-alive reuse', async () => {
  const p = pool();
  const before = connections;
  answer = (_r, s) =>
    s.write(
      'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-B: 1\r\nX-B: 2\r\n\r\n' +
        '3\r\nabc\r\n2\r\nde\r\n0\r\nGrpc-Status: 0\r\n\r\n',
    );
  const chunked = await exchange(p, head());
  assert.equal(chunked.result.kind, 'response');
  if (chunked.result.kind !== 'response') return;
  assert.equal(chunked.result.status, 201);
  assert.deepEqual(chunked.result.headers.get('x-b'), ['1', '2']);
  assert.equal(chunked.body, 'abcde');
  assert.deepEqual(chunked.trailers, new Map([['grpc-status', ['0']]]));
  answer = (_r, s) => s.write('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n');
  const h = await exchange(p, head({ method: 'HEAD' }));
  assert.equal(h.body, '');
  assert.equal(connections - before, 1, 'both exchanges on one connection');
  answer = (_r, s) => s.end('HTTP/1.1 200 OK\r\n\r\nuntil close');
  assert.equal((await exchange(p, head())).body, 'until close');
  answer = (_r, s) => s.write('HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nx');
  await exchange(p, head());
  assert.equal(connections - before, 2, 'a connection the server closed is not reused');
  p.destroy();
});

test('maxRequestsPerConnection closes a connection after its share', async () => {
  answer = (_r, s) => s.write('HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nx');
  const p = pool(2);
  const before = connections;
  for (let i = 0; i < 4; i++) await exchange(p, head());
  assert.equal(connections - before, 2);
  p.destroy();
});

test('failures: a malformed answer is a reset; a kept-alive connection closed by the server is stale', async () => {
  const p = pool();
  answer = (_r, s) => s.write('HTTP/1.1 abc\r\n\r\n');
  const bad = await exchange(p, head());
  assert.equal(bad.result.kind, 'failure');
  assert.match(bad.result.kind === 'failure' ? bad.result.error : '', /malformed HTTP/);
  answer = (_r, s) => s.write('HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nx');
  await exchange(p, head());
  // The next request goes out on the kept-alive connection; the server closes instead of answering.
  answer = (_r, s) => s.destroy();
  const stale = await exchange(p, head());
  assert.deepEqual(
    stale.result.kind === 'failure' ? [stale.result.failure, stale.result.staleConnection] : [],
    ['reset', true],
  );
  const refused = new Http1Pool({
    connect: () => Promise.reject(new Error('nobody there')),
    maxRequestsPerConnection: 0,
    idleTimeoutMs: 0,
  });
  const c = await exchange(refused, head());
  assert.deepEqual(c.result.kind === 'failure' ? [c.result.failure, c.result.error] : [], [
    'connect-failure',
    'nobody there',
  ]);
  p.destroy();
});
