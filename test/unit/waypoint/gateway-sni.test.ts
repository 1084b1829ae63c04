/**
 * The SNI of a ClientHello read without terminating TLS (PASSTHROUGH servers, issue 8): real
 * ClientHellos from Node's TLS client (TLS 1.2 and 1.3 offers), byte by byte and split across
 * records; no SNI; not TLS; and fast-check fuzzing — any bytes end in an answer, never a throw, and
 * a prefix of a real hello asks for more.
 */
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { connect } from 'node:tls';
import { test } from 'node:test';
import fc from 'fast-check';
import { readClientHello } from '../../../src/waypoint/gateway/sni.ts';

/** The first flight a TLS client sends for `servername` (captured by a plain TCP server). */
async function clientHello(servername: string | undefined): Promise<Buffer> {
  const server = createServer();
  const got = new Promise<Buffer>((resolve) =>
    server.once('connection', (s) => {
      s.once('data', (b: Buffer) => {
        resolve(b);
        s.destroy();
      });
    }),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const c = connect({
    host: '127.0.0.1',
    port,
    ...(servername ? { servername } : {}),
    rejectUnauthorized: false,
  });
  c.on('error', () => undefined);
  const bytes = await got;
  c.destroy();
  server.close();
  return bytes;
}

test('a real ClientHello: its SNI, at any split; a prefix asks for more', async () => {
  const hello = await clientHello('Passthrough.Example.com');
  assert.deepEqual(readClientHello(hello), { kind: 'hello', serverName: 'passthrough.example.com' });
  for (let n = 0; n < hello.length; n++)
    assert.equal(readClientHello(hello.subarray(0, n)).kind, 'more', `prefix ${n}`);
  // The same handshake split into two records (RFC 8446 §5.1 allows it).
  const body = hello.subarray(5);
  const cut = 40;
  const record = (b: Buffer) => Buffer.concat([Buffer.from([22, 3, 1, b.length >> 8, b.length & 255]), b]);
  const split = Buffer.concat([record(body.subarray(0, cut)), record(body.subarray(cut))]);
  assert.deepEqual(readClientHello(split), { kind: 'hello', serverName: 'passthrough.example.com' });
});

test('a ClientHello without SNI, and bytes that are not one', async () => {
  assert.deepEqual(readClientHello(await clientHello(undefined)), { kind: 'hello', serverName: '' });
  assert.equal(readClientHello(Buffer.from('GET / HTTP/1.1\r\n\r\n')).kind, 'invalid');
  assert.equal(readClientHello(Buffer.from([22, 3, 1, 0, 0])).kind, 'invalid');
  // A handshake that is not a ClientHello (a ServerHello, type 2).
  assert.equal(readClientHello(Buffer.from([22, 3, 3, 0, 4, 2, 0, 0, 0])).kind, 'invalid');
  // A declared ClientHello larger than the limit.
  assert.equal(readClientHello(Buffer.from([22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff])).kind, 'invalid');
});

test('fuzz: any bytes, and any corruption of a real hello, end in an answer without throwing', async () => {
  const hello = await clientHello('fuzz.example.com');
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => {
      const r = readClientHello(bytes);
      assert.ok(['more', 'hello', 'invalid'].includes(r.kind));
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(hello.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
      fc.nat(hello.length),
      (edits, length) => {
        const b = Buffer.from(hello.subarray(0, length));
        for (const [at, v] of edits) if (at < b.length) b[at] = v;
        const r = readClientHello(b);
        if (r.kind === 'hello') assert.match(r.serverName, /^[a-z0-9.*_-]*$/);
      },
    ),
    { numRuns: 2000 },
  );
});
