/**
 * The waypoint's HTTP ingress on a tunnelled stream (src/waypoint/http-ingress.ts), with Node's own
 * HTTP/1.1 and HTTP/2 clients on the other end of an in-memory stream pair.
 */
import assert from 'node:assert/strict';
import { request, Agent } from 'node:http';
import { connect as h2connect } from 'node:http2';
import { Duplex, PassThrough } from 'node:stream';
import { test } from 'node:test';
import { serveHttp, type IngressHandler } from '../../src/waypoint/http-ingress.ts';

const OPTS = { keepAliveTimeoutMs: 5000, headersTimeoutMs: 5000, maxHeaderBytes: 16384 };

/** Two connected duplex ends, like the two sides of one HBONE stream. */
function pair(): [Duplex, Duplex] {
  const a2b = new PassThrough();
  const b2a = new PassThrough();
  return [Duplex.from({ readable: b2a, writable: a2b }), Duplex.from({ readable: a2b, writable: b2a })];
}

const echoHandler: IngressHandler = (req, res, protocol) => {
  let body = '';
  req.on('data', (d: Buffer) => (body += d.toString()));
  req.on('end', () => {
    res.setHeader('x-protocol', protocol);
    res.end(`${req.method} ${req.url} ${String(req.headers['x-test'] ?? '')} ${body}`);
  });
};

/** A keep-alive agent whose one connection is `client` (with the socket methods the agent calls). */
function agentOver(client: Duplex): { agent: Agent; created: () => number } {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  let n = 0;
  const self = () => client;
  Object.assign(client, { setKeepAlive: self, setNoDelay: self, setTimeout: self, ref: self, unref: self });
  agent.createConnection = () => {
    n++;
    return client;
  };
  return { agent, created: () => n };
}

function h1Get(
  agent: Agent,
  path: string,
  body = '',
): Promise<{ status: number; protocol: string; body: string }> {
  return new Promise((resolve, reject) => {
    const r = request(
      { agent, path, method: body ? 'POST' : 'GET', headers: { host: 'reviews:9080', 'x-test': 't' } },
      (res) => {
        let b = '';
        res.on('data', (d: Buffer) => (b += d.toString()));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, protocol: String(res.headers['x-protocol']), body: b }),
        );
      },
    );
    r.on('error', reject);
    r.end(body);
  });
}

test('HTTP/1.1 on a tunnel: two requests on one kept-alive connection', async () => {
  const [client, server] = pair();
  serveHttp(server, echoHandler, OPTS);
  const { agent, created } = agentOver(client);
  assert.deepEqual(await h1Get(agent, '/a?x=1'), {
    status: 200,
    protocol: 'http/1.1',
    body: 'GET /a?x=1 t ',
  });
  assert.deepEqual(await h1Get(agent, '/b', 'hello'), {
    status: 200,
    protocol: 'http/1.1',
    body: 'POST /b t hello',
  });
  assert.equal(created(), 1);
  agent.destroy();
});

test('h2c on a tunnel: concurrent streams, and a preface that arrives one byte at a time', async () => {
  const [client, server] = pair();
  serveHttp(server, echoHandler, OPTS);
  // Dribble the first bytes so the sniffer has to wait for more than one chunk.
  const dribbled = new PassThrough();
  let first = true;
  dribbled.on('data', (b: Buffer) => {
    if (first) {
      first = false;
      for (const byte of b) client.write(Buffer.from([byte]));
    } else client.write(b);
  });
  const clientSide = Duplex.from({ readable: client, writable: dribbled });
  const session = h2connect('http://reviews:9080', { createConnection: () => clientSide });
  const get = (path: string) =>
    new Promise<{ status: number; protocol: string; body: string }>((resolve, reject) => {
      const st = session.request({ ':path': path, 'x-test': 'h' });
      let status = 0;
      let protocol = '';
      let body = '';
      st.on('response', (h) => {
        status = Number(h[':status']);
        protocol = String(h['x-protocol']);
      });
      st.on('data', (d: Buffer) => (body += d.toString()));
      st.on('end', () => resolve({ status, protocol, body }));
      st.on('error', reject);
      st.end();
    });
  const results = await Promise.all([get('/one'), get('/two'), get('/three')]);
  assert.deepEqual(
    results.map((r) => [r.status, r.protocol, r.body]),
    [
      [200, 'h2c', 'GET /one h '],
      [200, 'h2c', 'GET /two h '],
      [200, 'h2c', 'GET /three h '],
    ],
  );
  session.close();
});

test('stop() lets the HTTP/1.1 response in flight finish, then ends the tunnel', async () => {
  const [client, server] = pair();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const stop = serveHttp(
    server,
    (req, res) => {
      req.resume();
      void gate.then(() => res.end('late answer'));
    },
    OPTS,
  );
  const { agent } = agentOver(client);
  const pending = h1Get(agent, '/slow');
  await new Promise((r) => setTimeout(r, 50));
  stop();
  const ended = new Promise<void>((r) => client.once('end', () => r()));
  release();
  assert.equal((await pending).body, 'late answer');
  await ended;
  agent.destroy();
});
