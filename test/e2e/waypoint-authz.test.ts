/**
 * Istio's authorization samples through `npm start`'s mesh with the real curl (SOCKS5 speaks for
 * default/curl): sample 22's targetRefs policy enforced by the default namespace's waypoint (GET
 * passes, DELETE gets Envoy's 403 `RBAC: access denied`, counted with response_code 403 and logged
 * with the policy's name), and sample 23's waypoint-bypass DENY enforced by the destination agent at
 * L4 (a connection straight to a reviews pod is refused, traffic through the waypoint passes), and
 * sample 25's egress waypoint for a ServiceEntry host (GET /get passes, POST /post gets 403). A
 * request from another identity is in test/integration/waypoint-authz.test.ts: `ambit local` offers
 * one SOCKS5 identity only.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startLocalMesh, type LocalMesh } from './lib/local-mesh.ts';

const KUBE_SAMPLES = new URL('../fixtures/kube/istio-samples/', import.meta.url);
// A loopback range of our own (waypoint-samples takes 127.200–219, local-mesh 127.230–249).
const prefix = `127.${160 + (process.pid % 20)}`;
const WAYPOINT = `${prefix}.3.1`;
/** reviews-v1's pod address (`ambit local`'s sample apps: node-1, pod .5). */
const REVIEWS_V1_POD = `${prefix}.1.5`;

let mesh: LocalMesh;
let kube: string;

interface Reply {
  readonly code: number;
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
}

/** One curl through the SOCKS5 port; `code` is curl's exit code (0, or 52/56 for a refused stream). */
function curl(url: string, ...args: string[]): Promise<Reply> {
  return new Promise((resolve) => {
    execFile(
      'curl',
      [
        '-s',
        '--max-time',
        '10',
        '--socks5-hostname',
        mesh.socks,
        '-w',
        '\n@@%{http_code} %{content_type}',
        ...args,
        url,
      ],
      (err, stdout) => {
        const at = stdout.lastIndexOf('\n@@');
        const [status, contentType] = stdout.slice(at + 3).split(' ');
        resolve({
          code: err ? Number((err as { code?: number }).code ?? 1) : 0,
          status: Number(status),
          contentType: contentType ?? '',
          body: stdout.slice(0, at),
        });
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

const sample = (file: string) => readFile(new URL(file, KUBE_SAMPLES), 'utf8');

before(async () => {
  mesh = await startLocalMesh(prefix);
  kube = join(mesh.dir, 'kube');
  await writeFile(join(kube, '19-waypoint-gateway.yaml'), await sample('19-waypoint-gateway.yaml'));
  await until('the waypoint to be ready', async () =>
    (await fetch(`http://${WAYPOINT}:15021/healthz/ready`)).ok ? true : undefined,
  );
  // Traffic passes the waypoint once the agents know the binding: the waypoint adds x-request-id.
  await until('productpage through the waypoint', async () => {
    const r = await curl('http://productpage:9080/');
    return r.status === 200 && r.body.includes('x-request-id') ? true : undefined;
  });
});

after(() => mesh.stop());

test('22: the waypoint allows GET from sa/curl and answers DELETE with 403 "RBAC: access denied"', async () => {
  await writeFile(join(kube, '22-authz.yaml'), await sample('22-authz-l7-productpage-waypoint.yaml'));
  const denied = await until('the policy in force at the waypoint', async () => {
    const r = await curl('http://productpage:9080/', '-X', 'DELETE');
    return r.status === 403 ? r : undefined;
  });
  assert.equal(denied.body, 'RBAC: access denied');
  assert.match(denied.contentType, /^text\/plain/);
  const ok = await curl('http://productpage:9080/productpage');
  assert.equal(ok.status, 200);
  assert.match(ok.body, /"method":"GET"/);
  // Other services have no policy: DELETE reaches them.
  assert.equal((await curl('http://details:9080/', '-X', 'DELETE')).status, 200);

  const metrics = await (await fetch(`http://${WAYPOINT}:15020/metrics`)).text();
  assert.match(
    metrics,
    /istio_requests_total\{reporter="waypoint",source_workload="curl",[^}]*destination_service="productpage\.default\.svc\.cluster\.local"[^}]*response_code="403"[^}]*response_flags="-"[^}]*\} [1-9]/,
  );
  // Log lines reach the file in batches (at most 100 ms late).
  const log = await until('the denial in the waypoint log', async () => {
    const text = await readFile(join(mesh.dir, 'waypoint-default-waypoint.log'), 'utf8');
    return text.includes('rbac_access_denied_matched_policy') ? text : undefined;
  });
  assert.match(log, /"policy":"ns\[default\]-policy\[productpage-viewer\]-rule\[0\]"|"policy":"none"/);
  assert.match(log, /rbac_access_denied_matched_policy\[none\]/);
});

test('23: a DENY on notPrincipals waypoint refuses connections that bypass the waypoint; traffic through it passes', async () => {
  // Sample 23 for the local mesh's namespace (default) and waypoint service account (waypoint).
  const text = (await sample('23-authz-deny-waypoint-bypass.yaml'))
    .replaceAll('namespace: bookinfo', 'namespace: default')
    .replaceAll('cluster.local/ns/bookinfo/sa/waypoint', 'cluster.local/ns/default/sa/waypoint');
  await writeFile(join(kube, '23-authz.yaml'), text);
  // Straight to a reviews pod (no waypoint on the way): the destination agent refuses the tunnel.
  const direct = await until('the bypass to be refused', async () => {
    const r = await curl(`http://${REVIEWS_V1_POD}:9080/`);
    return r.status === 200 ? undefined : r;
  });
  assert.notEqual(direct.code, 0, 'curl fails');
  assert.equal(direct.status, 0, 'no HTTP answer');
  // Through the service (and so the waypoint, whose identity the agent sees): allowed.
  for (let i = 0; i < 5; i++) assert.equal((await curl('http://reviews:9080/')).status, 200);
});

test('25: an egress waypoint for a ServiceEntry host lets GET /get through and answers POST /post with 403', async () => {
  // The "external" service: a plain server on loopback, outside the mesh. Sample 25 resolves
  // httpbin.org by DNS, which would leave the machine; this copy gives the entry a static endpoint.
  const outside = createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ outside: true, method: req.method, path: req.url, host: req.headers.host }));
  });
  const address = `${prefix}.6.1`;
  await new Promise<void>((r) => outside.listen(0, address, () => r()));
  const { port } = outside.address() as AddressInfo;
  try {
    const text = (await sample('25-serviceentry-egress-waypoint.yaml')).replace(
      /  resolution: DNS\n/,
      `  resolution: STATIC\n  endpoints:\n    - address: ${address}\n      ports:\n        http: ${port}\n`,
    );
    assert.match(text, /resolution: STATIC/);
    await writeFile(join(kube, '25-egress.yaml'), text);
    // Its own waypoint (the second waypoint Gateway, istio-egress/waypoint) takes httpbin.org.
    const allowed = await until('GET /get through the egress waypoint', async () => {
      const r = await curl('http://httpbin.org/get');
      return r.status === 200 ? r : undefined;
    });
    assert.deepEqual(JSON.parse(allowed.body), {
      outside: true,
      method: 'GET',
      path: '/get',
      host: 'httpbin.org',
    });
    const denied = await curl('http://httpbin.org/post', '-X', 'POST');
    assert.equal(denied.status, 403);
    assert.equal(denied.body, 'RBAC: access denied');
    const metrics = await (await fetch(`http://${prefix}.3.2:15020/metrics`)).text();
    assert.match(
      metrics,
      /istio_requests_total\{reporter="waypoint",[^}]*destination_service="httpbin\.org"[^}]*response_code="403"/,
    );
  } finally {
    await new Promise((r) => outside.close(r));
  }
});
