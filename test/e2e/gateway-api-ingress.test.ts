/**
 * Issue 8 part 3: Kubernetes Gateway API ingress in `ambit local`, driven with the real curl. A
 * Gateway of class `ambit` (an HTTP listener for `*.example.com`; HTTPS listeners with a certificate
 * from a test CA made by openssl, as a `kubernetes.io/tls` Secret served over SDS, or as files named
 * in `tls.options`; one whose Secret does not exist) and an HTTPRoute for bookinfo.example.com:
 * /productpage reaches productpage through the gateway → HBONE (the gateway's own identity) → the
 * pod, over HTTP and HTTPS; a path no rule matches gets 404; a weighted backendRef split is counted;
 * the listener without its Secret does not serve while the others do, and the gateway says why; a
 * route whose hostname the listener does not allow is not attached, and the controller says why
 * (NoMatchingListenerHostname, with the route's field path).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DYNAMIC_SLOT_FIRST } from '../../src/cli/local-gateways.ts';
import { curl, makePki, until } from './lib/curl.ts';
import { startLocalMesh, type LocalMesh } from './lib/local-mesh.ts';

const prefix = `127.${120 + (process.pid % 20)}`;
/** The first gateway deployment without a fixed slot: this test's only one. */
const GW = `${prefix}.4.${DYNAMIC_SLOT_FIRST}`;
const HOST = 'bookinfo.example.com';
const FILES_HOST = 'files.example.com';
const SHARED_HOST = 'shared.example.com';
const SPLIT_REQUESTS = 200;

let mesh: LocalMesh;
let kube: string;

const b64 = (file: string) => readFileSync(file).toString('base64');

const gatewayYaml = (pki: string) => `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: web, namespace: default }
spec:
  gatewayClassName: ambit
  listeners:
  - name: http
    port: 8080
    protocol: HTTP
    hostname: "*.example.com"
  - name: https
    port: 8443
    protocol: HTTPS
    hostname: ${HOST}
    tls:
      mode: Terminate
      certificateRefs: [{ kind: Secret, name: bookinfo-cert }]
  # Ambit's option for a gateway without Secrets: the PEM files on its own file system.
  - name: https-files
    port: 9443
    protocol: HTTPS
    hostname: ${FILES_HOST}
    tls:
      options:
        ambit.dev/server-certificate: ${join(pki, 'files.pem')}
        ambit.dev/private-key: ${join(pki, 'files.key')}
  # A Secret in another namespace, which a ReferenceGrant there lets this Gateway use.
  - name: https-shared
    port: 11443
    protocol: HTTPS
    hostname: ${SHARED_HOST}
    tls:
      certificateRefs: [{ name: shared-cert, namespace: certs }]
  # A Secret that does not exist: this listener does not serve; the others do.
  - name: https-missing
    port: 10443
    protocol: HTTPS
    tls:
      certificateRefs: [{ name: no-such-secret }]
---
apiVersion: v1
kind: Secret
metadata: { name: bookinfo-cert, namespace: default }
type: kubernetes.io/tls
data:
  tls.crt: ${b64(join(pki, 'bookinfo.pem'))}
  tls.key: ${b64(join(pki, 'bookinfo.key'))}
---
apiVersion: v1
kind: Secret
metadata: { name: shared-cert, namespace: certs }
type: kubernetes.io/tls
data:
  tls.crt: ${b64(join(pki, 'shared.pem'))}
  tls.key: ${b64(join(pki, 'shared.key'))}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: { name: gateways-from-default, namespace: certs }
spec:
  from: [{ group: gateway.networking.k8s.io, kind: Gateway, namespace: default }]
  to: [{ group: "", kind: Secret, name: shared-cert }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: bookinfo, namespace: default }
spec:
  parentRefs: [{ name: web }]
  hostnames: [${HOST}, ${FILES_HOST}, ${SHARED_HOST}]
  rules:
  - matches: [{ path: { type: PathPrefix, value: /productpage } }]
    backendRefs: [{ name: productpage, port: 9080 }]
  - matches: [{ path: { type: Exact, value: /split } }]
    backendRefs:
    - { name: reviews-v1, port: 9080, weight: 80 }
    - { name: reviews-v2, port: 9080, weight: 20 }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: shop, namespace: default }
spec:
  parentRefs: [{ name: web, sectionName: http }]
  hostnames: [shop.example.org]
  rules:
  - backendRefs: [{ name: productpage, port: 9080 }]
`;

before(async () => {
  mesh = await startLocalMesh(prefix);
  kube = join(mesh.dir, 'kube');
  await makePki(mesh.dir, [
    ['bookinfo', `DNS:${HOST}`],
    ['files', `DNS:${FILES_HOST}`],
    ['shared', `DNS:${SHARED_HOST}`],
  ]);
  await writeFile(join(kube, 'gateway-api.yaml'), gatewayYaml(mesh.dir));
});

after(async () => {
  await mesh?.stop();
});

test('HTTP: Host bookinfo.example.com /productpage reaches productpage; a path no rule matches is 404', async () => {
  const r = await until('the gateway to route /productpage', async () => {
    const c = await curl('-H', `Host: ${HOST}`, `http://${GW}:8080/productpage`);
    return c.status === 200 ? c : undefined;
  });
  const app = JSON.parse(r.body) as { app: string; path: string; headers: Record<string, string> };
  assert.equal(app.app, 'productpage');
  assert.equal(app.path, '/productpage');
  assert.equal(app.headers['x-forwarded-proto'], 'http');
  // PathPrefix matches whole path elements.
  assert.equal((await curl('-H', `Host: ${HOST}`, `http://${GW}:8080/productpage/1`)).status, 200);
  for (const path of ['/', '/productpagex', '/nothing', '/split/x'])
    assert.equal((await curl('-H', `Host: ${HOST}`, `http://${GW}:8080${path}`)).status, 404, path);
  // A host the listener allows but no route serves.
  assert.equal((await curl('-H', 'Host: other.example.com', `http://${GW}:8080/productpage`)).status, 404);
  // The gateway is a workload of the mesh with its own identity (its access log says so).
  const log = await readFile(join(mesh.dir, 'gateway-default-web-ambit.log'), 'utf8');
  assert.match(log, /spiffe:\/\/cluster\.local\/ns\/default\/sa\/web-ambit/);
});

test('a weighted backendRef split (80/20) is followed, counted over 200 requests', async () => {
  await until('the split route', async () => {
    const c = await curl('-H', `Host: ${HOST}`, `http://${GW}:8080/split`);
    return c.status === 200 ? c : undefined;
  });
  const counts = new Map<string, number>();
  for (let i = 0; i < SPLIT_REQUESTS; i++) {
    const c = await curl('-H', `Host: ${HOST}`, `http://${GW}:8080/split`);
    assert.equal(c.status, 200, c.body);
    const { app, version } = JSON.parse(c.body) as { app: string; version: string };
    counts.set(`${app}-${version}`, (counts.get(`${app}-${version}`) ?? 0) + 1);
  }
  assert.deepEqual([...counts.keys()].sort(), ['reviews-v1', 'reviews-v2']);
  // 80 % of 200 is 160; ±30 is over 5 standard deviations (sd ≈ 5.7).
  const v1 = counts.get('reviews-v1')!;
  assert.ok(v1 >= 130 && v1 <= 190, `reviews-v1 got ${v1} of ${SPLIT_REQUESTS}`);
});

test('HTTPS: the listener terminates TLS with the certificate Secret of the test CA (over SDS), checked by curl', async () => {
  const tls = ['--cacert', join(mesh.dir, 'ca.pem'), '--resolve', `${HOST}:8443:${GW}`];
  const r = await until('the HTTPS listener', async () => {
    const c = await curl(...tls, `https://${HOST}:8443/productpage`);
    return c.status === 200 ? c : undefined;
  });
  const app = JSON.parse(r.body) as { app: string; headers: Record<string, string> };
  assert.equal(app.app, 'productpage');
  assert.equal(app.headers['x-forwarded-proto'], 'https');
  assert.equal((await curl(...tls, `https://${HOST}:8443/nothing`)).status, 404);
  // Without the test CA, curl refuses the certificate.
  const untrusted = await curl('--resolve', `${HOST}:8443:${GW}`, `https://${HOST}:8443/productpage`);
  assert.equal(untrusted.status, 0);
  assert.match(untrusted.stderr, /certificate/i);
});

test('HTTPS with a Secret in another namespace that a ReferenceGrant allows', async () => {
  const tls = ['--cacert', join(mesh.dir, 'ca.pem'), '--resolve', `${SHARED_HOST}:11443:${GW}`];
  const r = await until('the HTTPS listener with the shared Secret', async () => {
    const c = await curl(...tls, `https://${SHARED_HOST}:11443/productpage`);
    return c.status === 200 ? c : undefined;
  });
  assert.equal((JSON.parse(r.body) as { app: string }).app, 'productpage');
});

test('HTTPS with certificate files (tls.options); a listener whose Secret is missing does not serve, the others do', async () => {
  const tls = ['--cacert', join(mesh.dir, 'ca.pem'), '--resolve', `${FILES_HOST}:9443:${GW}`];
  const r = await until('the HTTPS listener with files', async () => {
    const c = await curl(...tls, `https://${FILES_HOST}:9443/productpage`);
    return c.status === 200 ? c : undefined;
  });
  assert.equal((JSON.parse(r.body) as { app: string }).app, 'productpage');
  const missing = await curl('--resolve', `${HOST}:10443:${GW}`, '-k', `https://${HOST}:10443/productpage`);
  assert.equal(missing.status, 0, 'nothing listens for the listener without its Secret');
  // The gateway says which listener does not serve, and why, and stays ready: its other listeners
  // serve, so the pod must not leave its Service. Once the gateway has asked for the Secret (SDS),
  // its readiness names the listener.
  const ready = await until('the listener in the readiness answer', async () => {
    const c = await curl(`http://${GW}:15021/healthz/ready`);
    return /spec\.listeners\[4\]/.test(c.body) ? c : undefined;
  });
  assert.equal(ready.status, 200, ready.body);
  assert.match(ready.body, /^ready, degraded: .*no-such-secret/);
});

test('a route whose hostname the listener does not allow is not attached, and the controller says why', async () => {
  const line = await until('the refusal in controller.log', async () => {
    const text = await readFile(join(mesh.dir, 'controller.log'), 'utf8');
    return text.split('\n').find((l) => l.includes('HTTPRoute/default/shop'));
  });
  const entry = JSON.parse(line) as { path: string; error: string };
  assert.equal(entry.path, 'spec.parentRefs[0]');
  assert.match(entry.error, /NoMatchingListenerHostname/);
  assert.match(entry.error, /shop\.example\.org/);
  assert.equal((await curl('-H', 'Host: shop.example.org', `http://${GW}:8080/productpage`)).status, 404);
  // The status a cluster's reconciler would write, as the controller shows it.
  const st = await curl(`http://${prefix}.0.100:15014/debug/gateway_status`);
  assert.equal(st.status, 200);
  type Cond = { type: string; status: string; reason: string };
  const status = JSON.parse(st.body) as {
    gateways: { name: string; listeners: { name: string; attachedRoutes: number; conditions: Cond[] }[] }[];
    routes: Record<string, { parentRef: { name: string }; conditions: Cond[] }[]>;
  };
  const accepted = (route: string) =>
    status.routes[route]!.map((p) => p.conditions.find((c) => c.type === 'Accepted')).map(
      (c) => `${c!.status} ${c!.reason}`,
    );
  assert.deepEqual(accepted('default/shop'), ['False NoMatchingListenerHostname']);
  assert.deepEqual(accepted('default/bookinfo'), ['True Accepted']);
  const web = status.gateways.find((g) => g.name === 'web')!;
  const missing = web.listeners.find((l) => l.name === 'https-missing')!;
  assert.deepEqual(
    missing.conditions
      .filter((c) => c.status === 'False' && c.type !== 'Conflicted')
      .map((c) => `${c.type} ${c.reason}`),
    ['ResolvedRefs InvalidCertificateRef', 'Programmed Invalid'],
  );
  assert.deepEqual(
    web.listeners.map((l) => [l.name, l.attachedRoutes]),
    [
      ['http', 1],
      ['https', 1],
      ['https-files', 1],
      ['https-shared', 1],
      ['https-missing', 1],
    ],
  );
});
