/**
 * DestinationRule TLS origination on a waypoint (issue 5), in process: the controller's translation
 * served over a real Delta ADS stream to a real waypoint; a client tunnels plain HTTP to ServiceEntry
 * hosts outside the mesh and the waypoint originates TLS to real HTTPS servers whose certificates a
 * test CA made with openssl. SIMPLE verified against caCertificates (auto SNI from the request's
 * host), a SAN that does not match and a host the certificate does not cover (auto SAN validation)
 * get Envoy's 503 with the TLS transport failure reason, MUTUAL presents a client certificate the
 * server checks, insecureSkipVerify accepts a server no configured root signed, and without
 * caCertificates the system roots refuse it.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createSecureServer } from 'node:http2';
import { createServer as createHttpsServer } from 'node:https';
import type { Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { after, before, test } from 'node:test';
import { asHttpSocket } from '../../src/waypoint/stream-socket.ts';
import { testPrefix } from '../fakes/mesh.ts';
import { startTestCa, startTestWaypoint, type TestWaypoint } from '../fakes/waypoint-harness.ts';

const P = testPrefix();
const IP = {
  curl: `${P}.61.2`,
  waypoint: `${P}.65.1`,
  /** HTTPS with the test CA's certificate for api/wrongsan/mutual.tls.test. */
  server: `${P}.66.1`,
  /** HTTPS that requires a client certificate from the test CA. */
  mtls: `${P}.66.2`,
  /** HTTPS with a certificate from a CA nothing trusts. */
  rogue: `${P}.66.3`,
};
const HTTPS_PORT = 8443;

const dir = mkdtempSync(join(tmpdir(), 'ambit-tls-origination-'));
const file = (name: string) => join(dir, name);

/** A CA (`<ca>.pem`, `<ca>.key`) and leaves it signs, made by openssl. */
function makePki(): void {
  const openssl = (...args: string[]) =>
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  for (const ca of ['ca', 'rogue-ca'])
    openssl(
      'req',
      '-x509',
      ...ec,
      '-days',
      '2',
      '-subj',
      `/O=${ca}`,
      '-keyout',
      `${ca}.key`,
      '-out',
      `${ca}.pem`,
    );
  const leaves: [string, string, string, string][] = [
    [
      'server',
      'ca',
      'DNS:api.tls.test, DNS:wrongsan.tls.test, DNS:mutual.tls.test, DNS:nocert.tls.test, DNS:h2.tls.test',
      'serverAuth',
    ],
    ['client', 'ca', 'URI:spiffe://cluster.local/ns/default/sa/waypoint', 'clientAuth'],
    ['rogue', 'rogue-ca', 'DNS:rogue.tls.test, DNS:rogue-verified.tls.test', 'serverAuth'],
  ];
  for (const [name, ca, san, usage] of leaves) {
    openssl('req', ...ec, '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
    writeFileSync(file(`${name}.ext`), `subjectAltName=${san}\nextendedKeyUsage=${usage}\n`);
    openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${ca}.pem`,
      '-CAkey',
      `${ca}.key`,
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
      '-out',
      `${name}.pem`,
    );
  }
}

/** A ServiceEntry for `host` (VIP `vip`, port 80 → the HTTPS server's 8443) and its DestinationRule. */
function entry(
  name: string,
  host: string,
  vip: string,
  endpoint: string,
  tls: string,
  protocol = 'HTTP',
  subjectAltNames: readonly string[] = [],
): string {
  return `
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name}, namespace: default }
spec:
  hosts: [${host}]
  addresses: [${vip}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{ number: 80, name: http, protocol: ${protocol} }]
  subjectAltNames: [${subjectAltNames.join(', ')}]
  endpoints: [{ address: ${endpoint}, ports: { http: ${HTTPS_PORT} } }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ${name}, namespace: default }
spec:
  host: ${host}
  trafficPolicy:
    tls: ${tls}`;
}

const HOSTS = {
  api: { host: 'api.tls.test', vip: `${P}.160.1` },
  wrongSan: { host: 'wrongsan.tls.test', vip: `${P}.160.2` },
  noSan: { host: 'nosan.tls.test', vip: `${P}.160.3` },
  mutual: { host: 'mutual.tls.test', vip: `${P}.160.4` },
  noClientCert: { host: 'nocert.tls.test', vip: `${P}.160.5` },
  h2: { host: 'h2.tls.test', vip: `${P}.160.8` },
  insecure: { host: 'rogue.tls.test', vip: `${P}.160.6` },
  systemRoots: { host: 'rogue-verified.tls.test', vip: `${P}.160.7` },
  /** Hosts the server's certificate does not cover, with ServiceEntry subjectAltNames it does / does not. */
  entrySan: { host: 'entrysan.tls.test', vip: `${P}.160.9` },
  entryWrongSan: { host: 'entrywrong.tls.test', vip: `${P}.160.10` },
};

function yaml(): string {
  const ca = file('ca.pem');
  return (
    `apiVersion: v1
kind: Namespace
metadata: { name: default, labels: { istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint } }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: waypoint, namespace: default }
spec: { gatewayClassName: istio-waypoint, listeners: [{ name: mesh, port: 15008, protocol: HBONE }] }
---
apiVersion: v1
kind: Pod
metadata: { name: curl, namespace: default, labels: { app: curl } }
spec: { nodeName: node-1, serviceAccountName: curl }
status: { phase: Running, podIP: ${IP.curl} }
---
apiVersion: v1
kind: Pod
metadata: { name: waypoint, namespace: default, labels: { app: waypoint } }
spec: { nodeName: node-1, serviceAccountName: waypoint }
status: { phase: Running, podIP: ${IP.waypoint} }` +
    entry('api', HOSTS.api.host, HOSTS.api.vip, IP.server, `{ mode: SIMPLE, caCertificates: ${ca} }`) +
    entry(
      'wrongsan',
      HOSTS.wrongSan.host,
      HOSTS.wrongSan.vip,
      IP.server,
      `{ mode: SIMPLE, caCertificates: ${ca}, subjectAltNames: [other.tls.test] }`,
    ) +
    entry('nosan', HOSTS.noSan.host, HOSTS.noSan.vip, IP.server, `{ mode: SIMPLE, caCertificates: ${ca} }`) +
    entry(
      'mutual',
      HOSTS.mutual.host,
      HOSTS.mutual.vip,
      IP.mtls,
      `{ mode: MUTUAL, caCertificates: ${ca}, clientCertificate: ${file('client.pem')}, privateKey: ${file('client.key')} }`,
    ) +
    entry(
      'insecure',
      HOSTS.insecure.host,
      HOSTS.insecure.vip,
      IP.rogue,
      '{ mode: SIMPLE, insecureSkipVerify: true }',
    ) +
    entry(
      'nocert',
      HOSTS.noClientCert.host,
      HOSTS.noClientCert.vip,
      IP.mtls,
      `{ mode: SIMPLE, caCertificates: ${ca} }`,
    ) +
    entry('h2', HOSTS.h2.host, HOSTS.h2.vip, IP.server, `{ mode: SIMPLE, caCertificates: ${ca} }`, 'HTTP2') +
    entry('systemroots', HOSTS.systemRoots.host, HOSTS.systemRoots.vip, IP.rogue, '{ mode: SIMPLE }') +
    entry(
      'entrysan',
      HOSTS.entrySan.host,
      HOSTS.entrySan.vip,
      IP.server,
      `{ mode: SIMPLE, caCertificates: ${ca} }`,
      'HTTP',
      ['api.tls.test'],
    ) +
    entry(
      'entrywrong',
      HOSTS.entryWrongSan.host,
      HOSTS.entryWrongSan.vip,
      IP.server,
      `{ mode: SIMPLE, caCertificates: ${ca} }`,
      'HTTP',
      ['other.tls.test'],
    )
  );
}

let mesh: TestWaypoint;
const servers: NetServer[] = [];

/** Answers with what the TLS server saw: the SNI, the ALPN, the client certificate's SAN. */
async function httpsServer(ip: string, cert: string, extra: object, h2 = false): Promise<void> {
  const options = {
    cert: readFileSync(file(`${cert}.pem`)),
    key: readFileSync(file(`${cert}.key`)),
    ...extra,
  };
  // The fields both servers' requests and responses have.
  const handler = (
    req: { socket: unknown; resume(): unknown; headers: Record<string, unknown>; url?: string },
    res: { setHeader(name: string, value: string): unknown; end(body: string): unknown },
  ) => {
    const socket = req.socket as TLSSocket;
    const peer = socket.getPeerCertificate();
    req.resume();
    res.setHeader('content-type', 'application/json');
    res.end(
      JSON.stringify({
        servername: (socket as TLSSocket & { servername?: string | false }).servername,
        alpn: socket.alpnProtocol,
        client: peer && 'subjectaltname' in peer ? peer.subjectaltname : null,
        host: req.headers.host ?? req.headers[':authority'],
        path: req.url,
      }),
    );
  };
  const s: NetServer = h2
    ? createSecureServer({ ...options, allowHTTP1: true }, handler)
    : createHttpsServer(options, handler);
  await new Promise<void>((r) => s.listen({ host: ip, port: HTTPS_PORT }, r));
  servers.push(s);
}

before(async () => {
  makePki();
  // Offers h2 and HTTP/1.1: the client's ALPN decides.
  await httpsServer(IP.server, 'server', {}, true);
  await httpsServer(IP.mtls, 'server', {
    requestCert: true,
    rejectUnauthorized: true,
    ca: readFileSync(file('ca.pem')),
  });
  await httpsServer(IP.rogue, 'rogue', {});

  mesh = await startTestWaypoint(await startTestCa(), yaml(), IP.waypoint, { logLevel: 'silent' });
  assert.deepEqual(mesh.ads.l7.problems, []);
  await mesh.untilServing(HOSTS.api.host, async () => (await get(HOSTS.api)).status === 200);
});

after(async () => {
  await mesh?.close();
  for (const s of servers) {
    (s as NetServer & { closeAllConnections?: () => void }).closeAllConnections?.();
    await new Promise((r) => s.close(r));
  }
  rmSync(dir, { recursive: true, force: true });
});

/** A plain HTTP GET from sa/curl through the waypoint to `to`, as the app would send it. */
async function get(to: { host: string; vip: string }): Promise<{ status: number; body: string }> {
  const r = await mesh.tunnel('curl', IP.curl, `${to.vip}:80`);
  if (!r.ok) throw new Error(r.reason);
  const stream = asHttpSocket(r.stream);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { createConnection: () => stream, path: '/get', headers: { host: to.host } },
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

test('SIMPLE: verified against caCertificates, SNI from the request host, ALPN http/1.1', async () => {
  const r = await get(HOSTS.api);
  assert.equal(r.status, 200, r.body);
  assert.deepEqual(JSON.parse(r.body), {
    servername: 'api.tls.test',
    alpn: 'http/1.1',
    client: null,
    host: 'api.tls.test',
    path: '/get',
  });
  assert.deepEqual(mesh.ads.nacks, []);
});

test('SIMPLE: a certificate without the configured SAN is refused with a 503 naming the TLS failure', async () => {
  const r = await get(HOSTS.wrongSan);
  assert.equal(r.status, 503);
  assert.match(
    r.body,
    /^upstream connect error or disconnect\/reset before headers\. reset reason: connection failure, transport failure reason: TLS_error:\|CERTIFICATE_VERIFY_FAILED: .*other\.tls\.test.*:TLS_error_end$/,
  );
});

test('SIMPLE: a host the certificate does not cover fails auto SAN validation', async () => {
  const r = await get(HOSTS.noSan);
  assert.equal(r.status, 503);
  assert.match(r.body, /transport failure reason: TLS_error:\|CERTIFICATE_VERIFY_FAILED: .*nosan\.tls\.test/);
});

test('MUTUAL: the server checks the client certificate the DestinationRule names', async () => {
  const r = await get(HOSTS.mutual);
  assert.equal(r.status, 200, r.body);
  const seen = JSON.parse(r.body) as { client: string; servername: string };
  assert.equal(seen.client, 'URI:spiffe://cluster.local/ns/default/sa/waypoint');
  assert.equal(seen.servername, 'mutual.tls.test');
});

test('insecureSkipVerify: a server no configured root signed is accepted', async () => {
  const r = await get(HOSTS.insecure);
  assert.equal(r.status, 200, r.body);
  assert.equal((JSON.parse(r.body) as { servername: string }).servername, 'rogue.tls.test');
});

test('SIMPLE without caCertificates: the system roots refuse a test CA', async () => {
  const r = await get(HOSTS.systemRoots);
  assert.equal(r.status, 503);
  assert.match(
    r.body,
    /transport failure reason: TLS_error:\|CERTIFICATE_VERIFY_FAILED: UNABLE_TO_VERIFY_LEAF_SIGNATURE/,
  );
});

test('MUTUAL enforced by the server: without a client certificate the request fails', async () => {
  const r = await get(HOSTS.noClientCert);
  assert.equal(r.status, 503, r.body);
});

test('an HTTP2 port: ALPN h2 offered and chosen, the request goes as HTTP/2 over TLS', async () => {
  const r = await get(HOSTS.h2);
  assert.equal(r.status, 200, r.body);
  const seen = JSON.parse(r.body) as { alpn: string; servername: string; host: string };
  assert.deepEqual([seen.alpn, seen.servername, seen.host], ['h2', 'h2.tls.test', 'h2.tls.test']);
});

test("SIMPLE without SANs: the ServiceEntry's subjectAltNames are verified instead of the host", async () => {
  // The certificate does not cover entrysan.tls.test (auto SAN validation would refuse it) but does
  // carry the entry's api.tls.test.
  const ok = await get(HOSTS.entrySan);
  assert.equal(ok.status, 200, ok.body);
  assert.equal((JSON.parse(ok.body) as { servername: string }).servername, 'entrysan.tls.test');
  const wrong = await get(HOSTS.entryWrongSan);
  assert.equal(wrong.status, 503);
  assert.match(
    wrong.body,
    /transport failure reason: TLS_error:\|CERTIFICATE_VERIFY_FAILED: .*other\.tls\.test/,
  );
});
