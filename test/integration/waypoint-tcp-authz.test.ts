/**
 * AuthorizationPolicy on TCP through a real waypoint, in process: the controller's translation of
 * YAML (RBAC network filters before tcp_proxy) served over a real Delta ADS stream, and clients of
 * three identities tunnelling to the waypoint over HBONE as their agents would.
 *
 * - `db` (TCP 5432), an ALLOW for sa/client only: client's bytes are echoed by the pod; sa/other's
 *   CONNECT is refused with 401 before any upstream tunnel is opened, and the refusal is logged
 *   with the filter and Envoy's details, and counted in Istio's TCP metrics.
 * - `legacy` (TCP 7000), a DENY with only `paths`: istiod leaves the HTTP-only field out for TCP,
 *   so every connection is denied (the controller warns about it).
 * - the pod's own IP (the waypoint takes workload traffic too): sniffed as TCP, the direct-tcp
 *   listener follows the waypoint Gateway's policy (DENY sa/intruder), not the Service's ALLOW;
 *   a denied tunnel, already answered 200 for sniffing, is reset.
 */
import assert from 'node:assert/strict';
import { constants as h2, type ClientHttp2Stream } from 'node:http2';
import { createServer as createTcpServer } from 'node:net';
import type { Duplex } from 'node:stream';
import { after, before, test } from 'node:test';
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
// Octets apart from the other waypoint tests'.
const IP = {
  client: `${P}.71.2`,
  other: `${P}.71.3`,
  intruder: `${P}.71.4`,
  db: `${P}.72.2`,
  waypoint: `${P}.75.1`,
};
const VIP = { db: `${P}.170.1`, legacy: `${P}.170.2` };
const DB_PORT = 5432;
const LEGACY_PORT = 7000;

const pod = (name: string, serviceAccount: string, ip: string, labels: string) =>
  podYaml({ name, serviceAccount, ip, labels });

const YAML =
  `apiVersion: v1
kind: Namespace
metadata: { name: default, labels: { istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint } }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: waypoint, namespace: default, labels: { istio.io/waypoint-for: all } }
spec: { gatewayClassName: istio-waypoint, listeners: [{ name: mesh, port: 15008, protocol: HBONE }] }
---
apiVersion: v1
kind: Service
metadata: { name: db, namespace: default }
spec: { selector: { app: db }, clusterIP: ${VIP.db}, ports: [{ name: tcp-db, port: ${DB_PORT} }] }
---
apiVersion: v1
kind: Service
metadata: { name: legacy, namespace: default }
spec: { selector: { app: db }, clusterIP: ${VIP.legacy}, ports: [{ name: tcp-legacy, port: ${LEGACY_PORT} }] }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-client, namespace: default }
spec:
  targetRefs: [{ kind: Service, group: "", name: db }]
  rules: [{ from: [{ source: { principals: ["cluster.local/ns/default/sa/client"] } }] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-admin-path, namespace: default }
spec:
  targetRefs: [{ kind: Service, group: "", name: legacy }]
  action: DENY
  rules: [{ to: [{ operation: { paths: [/admin] } }] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-intruder, namespace: default }
spec:
  targetRefs: [{ kind: Gateway, group: gateway.networking.k8s.io, name: waypoint }]
  action: DENY
  rules: [{ from: [{ source: { principals: ["cluster.local/ns/default/sa/intruder"] } }] }]` +
  pod('db-0', 'db', IP.db, 'app: db') +
  pod('client', 'client', IP.client, 'app: client') +
  pod('other', 'other', IP.other, 'app: other') +
  pod('intruder', 'intruder', IP.intruder, 'app: intruder') +
  // The waypoint's own pod carries the gateway-name label, so it is never bound to itself.
  pod('waypoint', 'waypoint', IP.waypoint, 'gateway.networking.k8s.io/gateway-name: waypoint') +
  '\n';

type Who = 'client' | 'other' | 'intruder';

let mesh: TestWaypoint;
const logs = captureLogger('info');
/** The authorities of the tunnels the db pod's agent was asked for (what reached upstream). */
const upstream: string[] = [];
const closers: (() => Promise<void>)[] = [];

before(async () => {
  const tca = await startTestCa();
  for (const port of [DB_PORT, LEGACY_PORT]) {
    const echo = createTcpServer({ allowHalfOpen: true }, (s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen({ host: IP.db, port }, r));
    closers.push(() => new Promise((r) => echo.close(() => r())));
  }
  closers.push(await startPodAgent(tca, IP.db, 'db', (req) => upstream.push(req.rawAuthority)));
  mesh = await startTestWaypoint(
    tca,
    YAML,
    IP.waypoint,
    { protocolDetectionTimeoutMs: 300, logLevel: 'info' },
    logs.log,
  );
  // Ready once the waypoint has the config: client's bytes to db come back.
  await mesh.untilServing('db', async () => (await echo('client', VIP.db, DB_PORT, 'ping')).data === 'ping');
});

after(async () => {
  await mesh?.close();
  for (const c of closers) await c();
});

/** A tunnel to the waypoint for `<ip>:<port>`, as `who`'s agent opens it. */
async function tunnel(
  who: Who,
  ip: string,
  port: number,
): Promise<{ ok: true; stream: Duplex } | { ok: false; status: number; reason: string }> {
  const r = await mesh.tunnel(who, IP[who], `${ip}:${port}`);
  return r.ok ? { ok: true, stream: r.stream } : { ok: false, status: r.status, reason: r.reason };
}

/**
 * Sends `send`, and half-closes once it has come back (not before: Node reports a reset that
 * arrives after the client's own END_STREAM as a clean close); what came back, and how the stream
 * ended once closed: `end` (no error code) or `reset` (RST_STREAM with an error code, as the
 * waypoint resets a tunnel it can no longer refuse), or the CONNECT's refusal status.
 */
async function echo(
  who: Who,
  ip: string,
  port: number,
  send: string,
): Promise<{ refused?: number; data: string; ended: 'end' | 'reset' | 'refused' }> {
  const t = await tunnel(who, ip, port);
  if (!t.ok) return { refused: t.status, data: '', ended: 'refused' };
  const stream = t.stream as ClientHttp2Stream;
  return new Promise((resolve) => {
    let data = '';
    stream.on('data', (d: Buffer) => {
      data += d.toString();
      if (data === send) stream.end();
    });
    stream.on('error', () => undefined);
    stream.once('close', () =>
      resolve({ data, ended: (stream.rstCode ?? 0) === h2.NGHTTP2_NO_ERROR ? 'end' : 'reset' }),
    );
    stream.write(send);
  });
}

const metrics = async () => (await fetch(`http://127.0.0.1:${mesh.wp.metrics.port}/metrics`)).text();

test('the controller warns that a paths-only DENY denies all TCP, and nothing is NACKed', () => {
  assert.deepEqual(
    mesh.ads.l7.authzProblems.map((p) => [p.name, p.path]),
    [['deny-admin-path', 'spec.rules[0].to[0].operation.paths']],
  );
  assert.match(mesh.ads.l7.authzProblems[0]!.message, /HTTP-only.*matches every connection/);
  assert.deepEqual(mesh.ads.nacks, []);
});

test('an ALLOW for one principal on a TCP service admits it: its bytes are echoed by the pod', async () => {
  assert.deepEqual(await echo('client', VIP.db, DB_PORT, 'hello db\n'), { data: 'hello db\n', ended: 'end' });
});

test('another principal is refused with 401 before any upstream tunnel; logged and counted', async () => {
  const before = upstream.length;
  const r = await echo('other', VIP.db, DB_PORT, 'let me in');
  assert.deepEqual(r, { refused: 401, data: '', ended: 'refused' });
  assert.equal(upstream.length, before, 'no tunnel was opened to the pod');
  const denied = logs.lines.find((l) => l.msg === 'connection denied by policy');
  assert.ok(denied, 'a denial log line');
  assert.equal(denied.srcIdentity, 'spiffe://cluster.local/ns/default/sa/other');
  assert.equal(denied.filter, 'istio.authorization.allow');
  assert.equal(denied.policy, 'none');
  const access = logs.lines.find(
    (l) => l.scope === 'access' && l.status === 401 && l.srcIdentity === denied.srcIdentity,
  );
  assert.ok(access, 'an access-log line for the refused connection');
  assert.equal(access.details, 'rbac_access_denied_matched_policy[none]');
  assert.equal(access.dstService, 'db.default.svc.cluster.local');
  assert.match(
    await metrics(),
    /istio_tcp_connections_opened_total\{reporter="waypoint",source_workload="other",[^}]*destination_service="db\.default\.svc\.cluster\.local"[^}]*\} 1/,
  );
});

test('a DENY with only a path denies every TCP connection to its service (istiod: HTTP-only fields left out)', async () => {
  const before = upstream.length;
  for (const who of ['client', 'other'] as const) {
    const r = await echo(who, VIP.legacy, LEGACY_PORT, 'GET /admin');
    assert.deepEqual(r, { refused: 401, data: '', ended: 'refused' }, who);
  }
  assert.equal(upstream.length, before);
  const denied = logs.lines.filter(
    (l) => l.msg === 'connection denied by policy' && l.dstService === 'legacy.default.svc.cluster.local',
  );
  assert.deepEqual(
    denied.map((l) => l.policy),
    ['ns[default]-policy[deny-admin-path]-rule[0]', 'ns[default]-policy[deny-admin-path]-rule[0]'],
  );
});

test('direct-tcp to the pod IP follows the waypoint Gateway’s policy: the Service ALLOW does not apply', async () => {
  // sa/other is refused by db's ALLOW through the service, but the pod IP has only the Gateway's DENY.
  assert.deepEqual(await echo('other', IP.db, DB_PORT, 'direct hello\n'), {
    data: 'direct hello\n',
    ended: 'end',
  });
  assert.ok(upstream.includes(`${IP.db}:${DB_PORT}`));
});

test('direct-tcp: the Gateway’s DENY resets sa/intruder’s tunnel, with nothing sent upstream', async () => {
  const before = upstream.length;
  const r = await echo('intruder', IP.db, DB_PORT, 'direct hello\n');
  assert.deepEqual(r, { data: '', ended: 'reset' });
  assert.equal(upstream.length, before);
  const denied = logs.lines.find(
    (l) =>
      l.msg === 'connection denied by policy' &&
      l.srcIdentity === 'spiffe://cluster.local/ns/default/sa/intruder',
  );
  assert.ok(denied);
  assert.equal(denied.filter, 'istio.authorization.deny');
  assert.equal(denied.policy, 'ns[default]-policy[deny-intruder]-rule[0]');
  assert.equal(denied.dst, `${IP.db}:${DB_PORT}`);
  // The Gateway's DENY covers the services bound to it too.
  assert.deepEqual(await echo('intruder', VIP.db, DB_PORT, 'x'), {
    refused: 401,
    data: '',
    ended: 'refused',
  });
});
