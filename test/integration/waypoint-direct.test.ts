/**
 * Workload waypoints (issue 5) from YAML to the pod, in process: the controller's translation of a
 * namespace whose waypoint Gateway says `istio.io/waypoint-for: workload` (and a DENY on /admin* of
 * its HTTP ports that targets the Gateway), served over a real Delta ADS stream to a real waypoint;
 * a client tunnels to the waypoint over HBONE with `:authority` `<podIP>:<port>` as its agent
 * would. HTTP/1.1 and h2c are sniffed and served with the waypoint's policy, metrics (the destination workload's
 * labels) and access log, and go on over HBONE with the waypoint's identity to the pod; a
 * client-first TCP protocol is sniffed as TCP at its first byte, a server-first one after the
 * detection timeout; a pod bound to no waypoint, or a reserved port, is refused.
 */
import assert from 'node:assert/strict';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { connect as h2connect, createServer as createH2Server } from 'node:http2';
import { createServer as createTcpServer } from 'node:net';
import type { Duplex } from 'node:stream';
import { after, before, test } from 'node:test';
import { formatSpiffe } from '../../src/core/identity/spiffe.ts';
import { asHttpSocket } from '../../src/waypoint/stream-socket.ts';
import { captureLogger } from '../fakes/capture-log.ts';
import { testPrefix } from '../fakes/mesh.ts';
import {
  podYaml,
  startPodAgent,
  startTestCa,
  startTestWaypoint,
  type TestWaypoint,
} from '../fakes/waypoint-harness.ts';

const P = testPrefix();
const IP = {
  curl: `${P}.51.2`,
  pod: `${P}.52.2`,
  other: `${P}.52.3`,
  waypoint: `${P}.55.1`,
  vip: `${P}.150.9`,
};
const HTTP_PORT = 9080;
const ECHO_PORT = 9000;
const GREETER_PORT = 9100;
const H2C_PORT = 9090;

const pod = (name: string, namespace: string, serviceAccount: string, ip: string, app: string) =>
  podYaml({ name, namespace, serviceAccount, ip, labels: `app: ${app}, version: v1` });

const YAML =
  `apiVersion: v1
kind: Namespace
metadata: { name: default, labels: { istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint } }
---
apiVersion: v1
kind: Namespace
metadata: { name: other, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: waypoint, namespace: default, labels: { istio.io/waypoint-for: workload } }
spec: { gatewayClassName: istio-waypoint, listeners: [{ name: mesh, port: 15008, protocol: HBONE }] }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-admin, namespace: default }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: waypoint }]
  action: DENY
  # The HTTP ports only: for TCP (direct-tcp) istiod leaves the HTTP-only paths out, so without
  # ports this rule would deny every TCP connection to the pod.
  rules: [{ to: [{ operation: { paths: [/admin*], ports: ["${HTTP_PORT}", "${H2C_PORT}"] } }] }]
---
apiVersion: v1
kind: Service
metadata: { name: productpage, namespace: default }
spec: { selector: { app: productpage }, clusterIP: ${IP.vip}, ports: [{ name: http, port: 9080 }] }` +
  pod('productpage-v1', 'default', 'bookinfo-productpage', IP.pod, 'productpage') +
  pod('other', 'other', 'other', IP.other, 'other') +
  pod('curl', 'default', 'curl', IP.curl, 'curl') +
  // The waypoint's own pod carries the gateway-name label, so it is never bound to itself.
  `
---
apiVersion: v1
kind: Pod
metadata: { name: waypoint, namespace: default, labels: { gateway.networking.k8s.io/gateway-name: waypoint } }
spec: { nodeName: node-1, serviceAccountName: waypoint }
status: { phase: Running, podIP: ${IP.waypoint} }
`;

let mesh: TestWaypoint;
const access = captureLogger('info');
/** What the pods' agents saw: the tunnel's peer identity and authority. */
const tunnels: { peer: string; authority: string }[] = [];
const closers: (() => Promise<void>)[] = [];

before(async () => {
  const tca = await startTestCa();
  const app = createHttpServer((req, res) => {
    req.resume();
    req.on('end', () => res.end(`productpage ${req.method} ${req.url} ${req.httpVersion}`));
  });
  const echo = createTcpServer({ allowHalfOpen: true }, (s) => s.pipe(s));
  const greeter = createTcpServer((s) => {
    s.write('220 greeter ready\r\n');
    s.on('data', (d: Buffer) => s.end(`250 got ${d.toString().trim()}\r\n`));
  });
  const h2app = createH2Server((req, res) =>
    res.end(`productpage-h2 ${req.method} ${req.url} ${req.httpVersion}`),
  );
  for (const [server, port] of [
    [app, HTTP_PORT],
    [h2app, H2C_PORT],
    [echo, ECHO_PORT],
    [greeter, GREETER_PORT],
  ] as const) {
    await new Promise<void>((r) => server.listen({ host: IP.pod, port }, r));
    closers.push(() => new Promise((r) => server.close(() => r())));
  }
  closers.push(
    await startPodAgent(tca, IP.pod, 'bookinfo-productpage', (req) =>
      tunnels.push({ peer: formatSpiffe(req.peerIdentity), authority: req.rawAuthority }),
    ),
  );

  // What the controller serves for this YAML, and the waypoint it serves.
  mesh = await startTestWaypoint(
    tca,
    YAML,
    IP.waypoint,
    { protocolDetectionTimeoutMs: 300, logLevel: 'info' },
    access.log,
  );
  // The one thing the controller says: on direct-tcp the paths are left out (the ports decide).
  assert.deepEqual(
    mesh.ads.l7.authzProblems.map((p) => [p.severity, p.path]),
    [['warning', 'spec.rules[0].to[0].operation.paths']],
  );
  assert.match(mesh.ads.l7.authzProblems[0]!.message, /direct-tcp .*matches more connections/);
  await mesh.untilServing('the pod', async () => (await http1('GET', '/productpage')).status === 200);
});

after(async () => {
  await mesh?.close();
  for (const c of closers) await c();
});

/** A tunnel to the waypoint for `<ip>:<port>`, as default/curl's agent opens it. */
async function tunnel(
  ip: string,
  port: number,
): Promise<{ ok: true; stream: Duplex } | { ok: false; reason: string }> {
  const r = await mesh.tunnel('curl', IP.curl, `${ip}:${port}`);
  return r.ok ? { ok: true, stream: r.stream } : { ok: false, reason: r.reason };
}

async function http1(method: string, path: string): Promise<{ status: number; body: string }> {
  const t = await tunnel(IP.pod, HTTP_PORT);
  if (!t.ok) throw new Error(t.reason);
  const stream = asHttpSocket(t.stream);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { createConnection: () => stream, method, path, headers: { host: `${IP.pod}:${HTTP_PORT}` } },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Writes `send` (if any) and reads until the other side ends. */
async function tcp(port: number, send: string | undefined): Promise<string> {
  const t = await tunnel(IP.pod, port);
  if (!t.ok) throw new Error(t.reason);
  return new Promise((resolve, reject) => {
    let got = '';
    let replied = false;
    t.stream.on('data', (d: Buffer) => {
      got += d.toString();
      // The greeter speaks first; reply once it has greeted.
      if (send === undefined && !replied && got.includes('ready\r\n')) {
        replied = true;
        t.stream.end('HELO\r\n');
      }
    });
    t.stream.once('end', () => resolve(got));
    t.stream.once('error', reject);
    if (send !== undefined) t.stream.end(send);
  });
}

const metrics = async () => (await fetch(`http://127.0.0.1:${mesh.wp.metrics.port}/metrics`)).text();

test('HTTP/1.1 to a pod IP goes through the waypoint, on to the pod with the waypoint identity', async () => {
  const r = await http1('GET', '/productpage');
  assert.deepEqual(r, { status: 200, body: 'productpage GET /productpage 1.1' });
  // Upstream connections are kept alive, so the pod's agent may have seen this one's tunnel earlier.
  assert.ok(tunnels.length > 0);
  for (const seen of tunnels)
    assert.equal(seen.peer, mesh.wp.identity, 'the pod sees the waypoint, not curl');
  assert.ok(tunnels.some((x) => x.authority === `${IP.pod}:${HTTP_PORT}`));
  assert.match(
    await metrics(),
    /istio_requests_total\{reporter="waypoint",source_workload="curl",[^}]*destination_workload="productpage-v1"[^}]*destination_principal="spiffe:\/\/cluster\.local\/ns\/default\/sa\/bookinfo-productpage"[^}]*response_code="200"[^}]*\} [1-9]/,
  );
  const line = access.lines.find((l) => l.scope === 'access' && l.path === '/productpage');
  assert.ok(line, 'an access-log line');
  assert.equal(line.upstreamHost, `${IP.pod}:${HTTP_PORT}`);
  assert.equal(line.cluster, 'waypoint/default/waypoint/encap');
  assert.deepEqual(mesh.ads.nacks, []);
});

test('the waypoint Gateway’s DENY on /admin* answers 403 "RBAC: access denied"; other paths pass', async () => {
  assert.deepEqual(await http1('GET', '/admin/users'), { status: 403, body: 'RBAC: access denied' });
  assert.equal((await http1('POST', '/productpage')).status, 200);
});

test('h2c (the HTTP/2 preface) is sniffed as HTTP and goes upstream as HTTP/2, the client’s protocol', async () => {
  const t = await tunnel(IP.pod, H2C_PORT);
  assert.ok(t.ok);
  const session = h2connect(`http://${IP.pod}:${H2C_PORT}`, {
    createConnection: () => asHttpSocket(t.stream),
  });
  try {
    const denied = await new Promise<number>((resolve, reject) => {
      const s = session.request({ ':path': '/admin' });
      s.on('response', (h) => resolve(Number(h[':status'])));
      s.on('error', reject);
      s.resume();
    });
    assert.equal(denied, 403);
    const body = await new Promise<string>((resolve, reject) => {
      const s = session.request({ ':path': '/h2' });
      let b = '';
      s.on('data', (d: Buffer) => (b += d.toString()));
      s.on('end', () => resolve(b));
      s.on('error', reject);
    });
    assert.equal(body, 'productpage-h2 GET /h2 2.0');
  } finally {
    session.destroy();
  }
});

test('a client-first TCP protocol is sniffed as TCP at its first byte and echoed by the pod', async () => {
  assert.equal(await tcp(ECHO_PORT, 'hello over tcp\n'), 'hello over tcp\n');
  const line = access.lines.find((l) => l.scope === 'access' && l.dst === `${IP.pod}:${ECHO_PORT}`);
  assert.ok(line, 'a TCP access-log line');
  assert.equal(line.upstreamHost, `${IP.pod}:${ECHO_PORT}`);
  assert.match(
    await metrics(),
    /istio_tcp_connections_opened_total\{reporter="waypoint",source_workload="curl",[^}]*destination_workload="productpage-v1"/,
  );
});

test('bytes that could still begin HTTP, then the client’s half-close: TCP, and none is lost', async () => {
  // "GET" alone is a method still arriving; the half-close decides it.
  assert.equal(await tcp(ECHO_PORT, 'GET'), 'GET');
});

test('a server-first protocol gets its greeting once the detection timeout has passed', async () => {
  assert.equal(await tcp(GREETER_PORT, undefined), '220 greeter ready\r\n250 got HELO\r\n');
});

test('a pod bound to no waypoint gets 400; a reserved port 503', async () => {
  const other = await tunnel(IP.other, HTTP_PORT);
  assert.equal(other.ok, false);
  assert.match(!other.ok ? other.reason : '', /400/);
  const reserved = await tunnel(IP.pod, 15008);
  assert.equal(reserved.ok, false);
  assert.match(!reserved.ok ? reserved.reason : '', /503/);
  assert.ok(
    access.lines.some(
      (l) =>
        l.msg === 'tunnel refused' && /workload other\/other is bound to no waypoint/.test(String(l.error)),
    ),
  );
});
