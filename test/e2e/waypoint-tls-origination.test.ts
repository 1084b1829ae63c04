/**
 * Egress TLS origination through `npm start`'s mesh with the real curl (issue 5): sample 25's egress
 * waypoint for httpbin.org, whose entry here points at an HTTPS server on loopback outside the mesh
 * (a certificate for httpbin.org from a test CA made by openssl), plus a DestinationRule with
 * `tls.mode: SIMPLE` and that CA — Istio's "egress TLS origination" shape. The app sends plain HTTP
 * to port 80; the waypoint opens TLS to the server (SNI httpbin.org, verified), and the entry's
 * AuthorizationPolicy still answers POST with 403. Without the CA (system roots) the waypoint refuses
 * the server: 503 with the TLS failure reason.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { after, before, test } from 'node:test';
import { startLocalMesh, type LocalMesh } from './lib/local-mesh.ts';

const KUBE_SAMPLES = new URL('../fixtures/kube/istio-samples/', import.meta.url);
// A loopback range of our own (others: 127.160–179, 180–194, 200–219, 230–249).
const prefix = `127.${220 + (process.pid % 10)}`;
const pki = mkdtempSync(join(tmpdir(), 'ambit-e2e-tls-'));

let mesh: LocalMesh;
let kube: string;
let outside: ReturnType<typeof createServer>;
let port = 0;
const address = `${prefix}.6.1`;

/** One curl through the SOCKS5 port: status and body. */
function curl(url: string, ...args: string[]): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    execFile(
      'curl',
      ['-s', '--max-time', '10', '--socks5-hostname', mesh.socks, '-w', '\n@@%{http_code}', ...args, url],
      (_err, stdout) => {
        const at = stdout.lastIndexOf('\n@@');
        resolve({ status: Number(stdout.slice(at + 3)), body: stdout.slice(0, at) });
      },
    );
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}\n${mesh.output().slice(-3000)}`);
    await sleep(100);
  }
}

/** Sample 25 with a static endpoint (the HTTPS server) and a DestinationRule with `tls`. */
async function egressYaml(tls: string): Promise<string> {
  const text = (
    await readFile(new URL('25-serviceentry-egress-waypoint.yaml', KUBE_SAMPLES), 'utf8')
  ).replace(
    /  resolution: DNS\n/,
    `  resolution: STATIC\n  endpoints:\n    - address: ${address}\n      ports:\n        http: ${port}\n`,
  );
  assert.match(text, /resolution: STATIC/);
  return `${text}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: httpbin-org-tls, namespace: istio-egress }
spec:
  host: httpbin.org
  trafficPolicy:
    tls: ${tls}
`;
}

before(async () => {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: pki, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ec, '-days', '2', '-subj', '/O=test-ca', '-keyout', 'ca.key', '-out', 'ca.pem');
  openssl('req', ...ec, '-subj', '/CN=httpbin', '-keyout', 'server.key', '-out', 'server.csr');
  writeFileSync(join(pki, 'server.ext'), 'subjectAltName=DNS:httpbin.org\n');
  openssl(
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    'server.ext',
    '-out',
    'server.pem',
  );
  outside = createServer(
    { cert: readFileSync(join(pki, 'server.pem')), key: readFileSync(join(pki, 'server.key')) },
    (req, res) => {
      const socket = req.socket as TLSSocket & { servername?: string | false };
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          tls: socket.encrypted === true,
          servername: socket.servername,
          method: req.method,
          path: req.url,
          host: req.headers.host,
        }),
      );
    },
  );
  await new Promise<void>((r) => outside.listen(0, address, () => r()));
  port = (outside.address() as AddressInfo).port;
  mesh = await startLocalMesh(prefix);
  kube = join(mesh.dir, 'kube');
});

after(async () => {
  await mesh?.stop();
  outside?.closeAllConnections();
  await new Promise((r) => outside?.close(r));
  rmSync(pki, { recursive: true, force: true });
});

test('25 + DestinationRule SIMPLE: plain HTTP from the app leaves the egress waypoint as verified TLS', async () => {
  await writeFile(
    join(kube, '25-egress.yaml'),
    await egressYaml(`{ mode: SIMPLE, caCertificates: ${join(pki, 'ca.pem')} }`),
  );
  const allowed = await until('GET /get through the egress waypoint over TLS', async () => {
    const r = await curl('http://httpbin.org/get');
    return r.status === 200 ? r : undefined;
  });
  assert.deepEqual(JSON.parse(allowed.body), {
    tls: true,
    servername: 'httpbin.org',
    method: 'GET',
    path: '/get',
    host: 'httpbin.org',
  });
  const denied = await curl('http://httpbin.org/post', '-X', 'POST');
  assert.deepEqual([denied.status, denied.body], [403, 'RBAC: access denied']);
});

test('without caCertificates the system roots refuse the test CA: 503 with the TLS failure reason', async () => {
  await writeFile(join(kube, '25-egress.yaml'), await egressYaml('{ mode: SIMPLE }'));
  const refused = await until('the DestinationRule without a CA in force', async () => {
    const r = await curl('http://httpbin.org/get');
    return r.status === 503 ? r : undefined;
  });
  assert.match(refused.body, /transport failure reason: TLS_error:\|CERTIFICATE_VERIFY_FAILED/);
});
