/**
 * Sample 22 from YAML to enforcement, in process: the controller's translation (workloads and L7,
 * with the RBAC filter) served over a real Delta ADS stream to a real waypoint, and clients of two
 * identities tunnelling to it over HBONE. sa/curl may GET and not DELETE; another identity
 * (bookinfo-reviews) may do neither — the case `ambit local`'s single SOCKS5 identity cannot show.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { systemClock } from '../../src/core/clock.ts';
import type { HbonePool } from '../../src/core/hbone/pool.ts';
import { HboneServer } from '../../src/core/hbone/server.ts';
import { CertificateAuthority } from '../../src/core/identity/ca.ts';
import { LocalCaProvider, SecretManager } from '../../src/core/identity/secret-manager.ts';
import { silentLogger } from '../../src/core/log.ts';
import { startWaypoint, type WaypointBound } from '../../src/waypoint/app.ts';
import { asHttpSocket } from '../../src/waypoint/stream-socket.ts';
import { testPrefix } from '../fakes/mesh.ts';
import { clientPool, startMeshAds, waypointTestConfig, type MeshAds } from '../fakes/waypoint-harness.ts';

const P = testPrefix();
const IP = {
  curl: `${P}.41.2`,
  reviews: `${P}.41.3`,
  pod: `${P}.42.2`,
  waypoint: `${P}.45.1`,
  vip: `${P}.140.9`,
};
const TD = 'cluster.local';
const HOST = 'productpage.default.svc.cluster.local';

const pod = (name: string, sa: string, ip: string, app: string) => `
---
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: default, labels: { app: ${app} } }
spec: { nodeName: node-1, serviceAccountName: ${sa} }
status: { phase: Running, podIP: ${ip} }`;

const YAML =
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
kind: Service
metadata: { name: productpage, namespace: default }
spec: { selector: { app: productpage }, clusterIP: ${IP.vip}, ports: [{ name: http, port: 9080 }] }` +
  pod('productpage-v1', 'bookinfo-productpage', IP.pod, 'productpage') +
  pod('curl', 'curl', IP.curl, 'curl') +
  pod('reviews-v1', 'bookinfo-reviews', IP.reviews, 'reviews') +
  pod('waypoint', 'waypoint', IP.waypoint, 'waypoint') +
  '\n---\n' +
  readFileSync(
    new URL('../fixtures/kube/istio-samples/22-authz-l7-productpage-waypoint.yaml', import.meta.url),
    'utf8',
  );

let ads: MeshAds;
let wp: WaypointBound;
let pool: HbonePool;
const closers: (() => Promise<void>)[] = [];

before(async () => {
  const ca = await CertificateAuthority.createSelfSigned(TD);
  const secrets = new SecretManager({
    provider: new LocalCaProvider(ca, 3600_000),
    clock: systemClock,
    log: silentLogger(),
  });
  const app = createHttpServer((req, res) => {
    req.resume();
    req.on('end', () => res.end(`productpage ${req.method} ${req.url}`));
  });
  await new Promise<void>((r) => app.listen({ host: IP.pod, port: 9080 }, r));
  closers.push(() => new Promise((r) => app.close(() => r())));
  const hbone = await HboneServer.start({
    host: IP.pod,
    port: 15008,
    certificate: await secrets.get({
      trustDomain: TD,
      namespace: 'default',
      serviceAccount: 'bookinfo-productpage',
    }),
    trustDomain: TD,
    log: silentLogger(),
    onRequest: (req) => {
      const s: Socket = netConnect({ host: IP.pod, port: 9080, allowHalfOpen: true });
      s.once('connect', () => void req.accept(s));
      s.once('error', () => req.reject(503));
    },
  });
  closers.push(() => hbone.close(0));

  // What the controller serves for this YAML.
  ads = await startMeshAds(YAML);
  assert.deepEqual(ads.l7.authzProblems, []);
  const config = waypointTestConfig(IP.waypoint, {
    podName: 'waypoint',
    xdsAddress: `127.0.0.1:${ads.port}`,
    drainDeadlineMs: 1000,
    logLevel: 'silent',
  });
  wp = await startWaypoint(config, { certificates: new LocalCaProvider(ca, 3600_000), log: silentLogger() });
  pool = clientPool((id) => secrets.get(id));
  // Ready once the waypoint has the config: a tunnel is admitted and the GET is answered.
  const deadline = Date.now() + 10_000;
  while ((await request('curl', IP.curl, 'GET').catch(() => undefined))?.status !== 200) {
    assert.ok(Date.now() < deadline, `waypoint not serving productpage; NACKs: ${ads.nacks.join('; ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
});

after(async () => {
  pool?.destroy();
  await wp?.close();
  ads?.close();
  for (const c of closers) await c();
});

async function request(
  serviceAccount: string,
  srcIp: string,
  method: string,
): Promise<{ status: number; body: string; contentType: string }> {
  const r = await pool.connect(
    {
      srcIdentity: { trustDomain: TD, namespace: 'default', serviceAccount },
      srcIp,
      dstIp: IP.waypoint,
      dstPort: wp.hbone()!.port,
      expectedIdentities: [wp.identity],
    },
    { authority: `${IP.vip}:9080`, headers: {} },
  );
  if (!r.ok) throw new Error(r.reason);
  const stream = asHttpSocket(r.stream);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { createConnection: () => stream, method, path: '/productpage', headers: { host: `${HOST}:9080` } },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body,
            contentType: String(res.headers['content-type'] ?? ''),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

test('22: GET from sa/curl passes the waypoint', async () => {
  const r = await request('curl', IP.curl, 'GET');
  assert.deepEqual([r.status, r.body], [200, 'productpage GET /productpage']);
  assert.deepEqual(ads.nacks, []);
});

test('22: DELETE from sa/curl gets 403 "RBAC: access denied"', async () => {
  const r = await request('curl', IP.curl, 'DELETE');
  assert.deepEqual([r.status, r.body, r.contentType], [403, 'RBAC: access denied', 'text/plain']);
});

test('22: any request from another identity (bookinfo-reviews) gets 403', async () => {
  for (const method of ['GET', 'DELETE']) {
    const r = await request('bookinfo-reviews', IP.reviews, method);
    assert.deepEqual([r.status, r.body], [403, 'RBAC: access denied'], method);
  }
});
