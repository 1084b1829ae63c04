/**
 * Sample 22 from YAML to enforcement, in process: the controller's translation (workloads and L7,
 * with the RBAC filter) served over a real Delta ADS stream to a real waypoint, and clients of two
 * identities tunnelling to it over HBONE. sa/curl may GET and not DELETE; another identity
 * (bookinfo-reviews) may do neither — the case `ambit local`'s single SOCKS5 identity cannot show.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { after, before, test } from 'node:test';
import { asHttpSocket } from '../../src/waypoint/stream-socket.ts';
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
  curl: `${P}.41.2`,
  reviews: `${P}.41.3`,
  pod: `${P}.42.2`,
  waypoint: `${P}.45.1`,
  vip: `${P}.140.9`,
};
const HOST = 'productpage.default.svc.cluster.local';

const pod = (name: string, serviceAccount: string, ip: string, app: string) =>
  podYaml({ name, serviceAccount, ip, labels: `app: ${app}` });

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

let mesh: TestWaypoint;
const closers: (() => Promise<void>)[] = [];

before(async () => {
  const tca = await startTestCa();
  const app = createHttpServer((req, res) => {
    req.resume();
    req.on('end', () => res.end(`productpage ${req.method} ${req.url}`));
  });
  await new Promise<void>((r) => app.listen({ host: IP.pod, port: 9080 }, r));
  closers.push(() => new Promise((r) => app.close(() => r())));
  closers.push(await startPodAgent(tca, IP.pod, 'bookinfo-productpage'));

  // What the controller serves for this YAML, and the waypoint it serves.
  mesh = await startTestWaypoint(tca, YAML, IP.waypoint, { logLevel: 'silent' });
  assert.deepEqual(mesh.ads.l7.authzProblems, []);
  // Ready once the waypoint has the config: a tunnel is admitted and the GET is answered.
  await mesh.untilServing('productpage', async () => (await request('curl', IP.curl, 'GET')).status === 200);
});

after(async () => {
  await mesh?.close();
  for (const c of closers) await c();
});

async function request(
  serviceAccount: string,
  srcIp: string,
  method: string,
): Promise<{ status: number; body: string; contentType: string }> {
  const r = await mesh.tunnel(serviceAccount, srcIp, `${IP.vip}:9080`);
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
  assert.deepEqual(mesh.ads.nacks, []);
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
