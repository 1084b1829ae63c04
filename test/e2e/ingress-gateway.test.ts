/**
 * Issue 8 part 1: the ingress gateway of `ambit local`, driven with the real curl. Istio's bookinfo
 * ingress sample (istio-samples 18) unchanged: `Host: bookinfo.example.com` /productpage reaches
 * productpage through the gateway → HBONE (the gateway's own identity) → the pod; other paths 404.
 * Then HTTPS with a test CA made by openssl: SNI to two hosts on one port, mutual TLS with a client
 * certificate, httpsRedirect; and the bad input: a server whose certificate file is missing keeps
 * the others serving and is reported not ready with the reason, and a conflicting server on one
 * port is rejected naming both. Issue 8 part 2: certificates from Kubernetes Secrets over SDS — a
 * Secret written after its Gateway makes the server ready, a rotated Secret changes the certificate
 * served (openssl s_client), a malformed one leaves its server not ready while the others serve;
 * HTTPS servers speak HTTP/2 to clients that pick h2 by ALPN (curl --http2). TLS PASSTHROUGH routed
 * on SNI to an HTTPS server in the mesh (its own certificate reaches curl and openssl), and a TCP
 * server routed to tcp-echo; gRPC (grpc-js) over the gateway's TLS into a gRPC server in the mesh;
 * ISTIO_MUTUAL: the gateway's own mesh certificate, clients with the mesh CA's.
 */
import assert from 'node:assert/strict';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { createServer as createHttpsServer } from 'node:https';
import { connect as connectTcp } from 'node:net';
import { connect as connectTls } from 'node:tls';
import {
  Client as GrpcClient,
  credentials as grpcCredentials,
  Server as GrpcServer,
  ServerCredentials,
  type ServiceError,
} from '@grpc/grpc-js';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { curl, issueLeaf, makePki, run, until } from './lib/curl.ts';
import { startLocalMesh, type LocalMesh } from './lib/local-mesh.ts';

const SAMPLE = new URL('../fixtures/kube/istio-samples/18-gateway-bookinfo-ingress.yaml', import.meta.url);
const prefix = `127.${180 + (process.pid % 15)}`;
const GW = `${prefix}.4.1`;

let mesh: LocalMesh;
let kube: string;
let pki: string;

/** The test CA and its leaves: the servers' hosts, a client, and the PASSTHROUGH and gRPC backends. */
const LEAVES = [
  ['bookinfo', 'DNS:bookinfo.example.com'],
  ['other', 'DNS:other.example.com'],
  ['mtls', 'DNS:mtls.example.com'],
  ['client', 'DNS:client.example.com'],
  ['sds', 'DNS:sds.example.com'],
  ['sds2', 'DNS:sds.example.com'],
  ['backend', 'DNS:passthrough.example.com'],
  ['grpc', 'DNS:grpc.example.com'],
] as const;

before(async () => {
  mesh = await startLocalMesh(prefix);
  kube = join(mesh.dir, 'kube');
  pki = mesh.dir;
  await makePki(pki, LEAVES);
  await copyFile(SAMPLE, join(kube, '18-gateway-bookinfo-ingress.yaml'));
});

after(async () => {
  await mesh?.stop();
});

test('sample 18 unchanged: bookinfo.example.com /productpage reaches productpage; other paths 404', async () => {
  const r = await until('the gateway to route /productpage', async () => {
    const c = await curl('-H', 'Host: bookinfo.example.com', `http://${GW}:8080/productpage`);
    return c.status === 200 ? c : undefined;
  });
  const app = JSON.parse(r.body) as { app: string; path: string; headers: Record<string, string> };
  assert.equal(app.app, 'productpage');
  assert.equal(app.path, '/productpage');
  assert.equal(app.headers['x-forwarded-proto'], 'http');
  for (const path of ['/static/x.css', '/login', '/logout', '/api/v1/products/1'])
    assert.equal(
      (await curl('-H', 'Host: bookinfo.example.com', `http://${GW}:8080${path}`)).status,
      200,
      path,
    );
  for (const path of ['/', '/productpage/x', '/reviews', '/loginx'])
    assert.equal(
      (await curl('-H', 'Host: bookinfo.example.com', `http://${GW}:8080${path}`)).status,
      404,
      path,
    );
  // The gateway is the source: its own identity upstream, reporter="source".
  const metrics = await (await fetch(`http://${GW}:15020/metrics`)).text();
  const line = metrics
    .split('\n')
    .find((l) => l.startsWith('istio_requests_total{') && l.includes('response_code="200"'));
  assert.ok(line, metrics);
  assert.match(line, /reporter="source"/);
  assert.match(
    line,
    /source_principal="spiffe:\/\/cluster.local\/ns\/istio-system\/sa\/istio-ingressgateway-service-account"/,
  );
  assert.match(line, /destination_service="productpage.default.svc.cluster.local"/);
  const log = await readFile(join(mesh.dir, 'gateway-istio-system-istio-ingressgateway.log'), 'utf8');
  assert.match(log, /"scope":"access".*"path":"\/productpage".*"status":200/);
});

test('HTTPS: SNI picks the server of two hosts, mutual TLS needs a client certificate, httpsRedirect answers 301; a missing certificate and a conflicting server are reported', async () => {
  await writeFile(
    join(kube, '30-https-gateway.yaml'),
    `apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: secure
  namespace: default
spec:
  selector:
    istio: ingressgateway
  servers:
  - port: { number: 8443, name: https-bookinfo, protocol: HTTPS }
    hosts: [bookinfo.example.com]
    tls: { mode: SIMPLE, serverCertificate: ${pki}/bookinfo.pem, privateKey: ${pki}/bookinfo.key }
  - port: { number: 8443, name: https-other, protocol: HTTPS }
    hosts: [other.example.com]
    tls: { mode: SIMPLE, serverCertificate: ${pki}/other.pem, privateKey: ${pki}/other.key }
  - port: { number: 8443, name: https-broken, protocol: HTTPS }
    hosts: [broken.example.com]
    tls: { mode: SIMPLE, serverCertificate: ${pki}/missing.pem, privateKey: ${pki}/missing.key }
  - port: { number: 9443, name: https-mtls, protocol: HTTPS }
    hosts: [mtls.example.com]
    tls: { mode: MUTUAL, serverCertificate: ${pki}/mtls.pem, privateKey: ${pki}/mtls.key, caCertificates: ${pki}/ca.pem }
  - port: { number: 8081, name: http-redirect, protocol: HTTP }
    hosts: [bookinfo.example.com]
    tls: { httpsRedirect: true }
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: clash
  namespace: default
  creationTimestamp: "2030-01-01T00:00:00Z"
spec:
  selector:
    istio: ingressgateway
  servers:
  - port: { number: 8443, name: http-clash, protocol: HTTP }
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: secure
  namespace: default
spec:
  hosts: [bookinfo.example.com, other.example.com, mtls.example.com]
  gateways: [secure]
  http:
  - match: [{ authority: { prefix: other.example.com } }]
    route: [{ destination: { host: details, port: { number: 9080 } } }]
  - route: [{ destination: { host: productpage, port: { number: 9080 } } }]
`,
  );
  const tlsArgs = (host: string, port: number) => [
    '--cacert',
    join(pki, 'ca.pem'),
    '--resolve',
    `${host}:${port}:${GW}`,
  ];
  const book = await until('the HTTPS server', async () => {
    const c = await curl(
      ...tlsArgs('bookinfo.example.com', 8443),
      'https://bookinfo.example.com:8443/productpage',
    );
    return c.status === 200 ? c : undefined;
  });
  const bookApp = JSON.parse(book.body) as { app: string; headers: Record<string, string> };
  assert.equal(bookApp.app, 'productpage');
  assert.equal(bookApp.headers['x-forwarded-proto'], 'https');
  const other = await curl(...tlsArgs('other.example.com', 8443), 'https://other.example.com:8443/');
  assert.equal(other.status, 200, other.stderr);
  assert.equal((JSON.parse(other.body) as { app: string }).app, 'details');
  // The certificate presented is the one for the SNI name (curl verifies the name against it).
  const verbose = await run('curl', [
    '-sS',
    '-v',
    '-o',
    '/dev/null',
    ...tlsArgs('other.example.com', 8443),
    'https://other.example.com:8443/',
  ]);
  assert.match(verbose.stderr, /subject: CN=other/);

  // HTTP/2 over TLS: ALPN h2 offered and served (curl prints HTTP/2 200), the routes the same.
  const h2 = await run('curl', [
    '-sS',
    '-i',
    '--http2',
    ...tlsArgs('bookinfo.example.com', 8443),
    'https://bookinfo.example.com:8443/productpage',
  ]);
  assert.match(h2.stdout, /^HTTP\/2 200/, h2.stderr);
  assert.equal(
    (JSON.parse(h2.stdout.slice(h2.stdout.indexOf('\r\n\r\n') + 4)) as { app: string }).app,
    'productpage',
  );
  // A client that offers only http/1.1 still gets it.
  const h1 = await run('curl', [
    '-sS',
    '-i',
    '--http1.1',
    ...tlsArgs('bookinfo.example.com', 8443),
    'https://bookinfo.example.com:8443/productpage',
  ]);
  assert.match(h1.stdout, /^HTTP\/1\.1 200/, h1.stderr);

  // Mutual TLS: without a client certificate the handshake is refused; with one the CA signed, served.
  const noCert = await curl(
    ...tlsArgs('mtls.example.com', 9443),
    'https://mtls.example.com:9443/productpage',
  );
  assert.notEqual(noCert.status, 200);
  const withCert = await curl(
    ...tlsArgs('mtls.example.com', 9443),
    '--cert',
    join(pki, 'client.pem'),
    '--key',
    join(pki, 'client.key'),
    'https://mtls.example.com:9443/productpage',
  );
  assert.equal(withCert.status, 200, withCert.stderr);

  // httpsRedirect: 301 to https with the same host and path.
  const redirect = await run('curl', [
    '-sS',
    '-o',
    '/dev/null',
    '-w',
    '%{http_code} %{redirect_url}',
    '-H',
    'Host: bookinfo.example.com',
    `http://${GW}:8081/productpage?x=1`,
  ]);
  assert.match(redirect.stdout, /^301 https:\/\/bookinfo\.example\.com(:8081)?\/productpage\?x=1$/);

  // The broken server: its hosts fail, the others serve, readiness says why and stays 200 (the pod
  // keeps its place in the Service for the servers that work).
  const broken = await curl(
    '--resolve',
    `broken.example.com:8443:${GW}`,
    '-k',
    'https://broken.example.com:8443/',
  );
  assert.notEqual(broken.status, 200);
  const ready = await fetch(`http://${GW}:15021/healthz/ready`);
  const text = await ready.text();
  assert.equal(ready.status, 200, text);
  assert.match(text, /^ready, degraded: .*Gateway default\/secure spec\.servers\[2\].*missing\.pem/);
  // The conflicting server is rejected, naming both.
  const controllerLog = await until('the conflict in controller.log', async () => {
    const t = await readFile(join(mesh.dir, 'controller.log'), 'utf8');
    return /Gateway default\/clash spec\.servers\[0\]/.test(t) ? t : undefined;
  });
  assert.match(
    controllerLog,
    /port 8443 is already served as HTTPS by Gateway default\/secure spec\.servers\[0\]; Gateway default\/clash spec\.servers\[0\] \(HTTP\) conflicts with it/,
  );
  // And sample 18 on 8080 still serves.
  assert.equal((await curl('-H', 'Host: bookinfo.example.com', `http://${GW}:8080/productpage`)).status, 200);
});

/** A kubernetes.io/tls Secret in the gateway's namespace, the PEM as base64 `data`. */
async function tlsSecret(name: string, cert: string, key: string): Promise<string> {
  const b64 = async (f: string) => (await readFile(join(pki, f))).toString('base64');
  return `apiVersion: v1
kind: Secret
metadata:
  name: ${name}
  namespace: istio-system
type: kubernetes.io/tls
data:
  tls.crt: ${await b64(cert)}
  tls.key: ${await b64(key)}
`;
}

/** The subject of the certificate the gateway presents for `servername` (openssl s_client). */
async function servedSubject(servername: string, port: number): Promise<string> {
  const r = await run('sh', [
    '-c',
    `openssl s_client -connect ${GW}:${port} -servername ${servername} </dev/null 2>/dev/null | openssl x509 -noout -subject`,
  ]);
  return r.stdout.trim();
}

test('credentialName: a Secret written after the Gateway makes its server ready, a rotated Secret is served without a restart, a malformed one fails only its own hosts', async () => {
  await writeFile(
    join(kube, '40-sds-gateway.yaml'),
    `apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: sds
  namespace: default
spec:
  selector:
    istio: ingressgateway
  servers:
  - port: { number: 10443, name: https-sds, protocol: HTTPS }
    hosts: [sds.example.com]
    tls: { mode: SIMPLE, credentialName: sds-cert }
  - port: { number: 10443, name: https-sds-bad, protocol: HTTPS }
    hosts: [sds-bad.example.com]
    tls: { mode: SIMPLE, credentialName: sds-bad }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: sds
  namespace: default
spec:
  hosts: [sds.example.com, sds-bad.example.com]
  gateways: [sds]
  http:
  - route: [{ destination: { host: productpage, port: { number: 9080 } } }]
`,
  );
  const args = (host: string) => [
    '--cacert',
    join(pki, 'ca.pem'),
    '--resolve',
    `${host}:10443:${GW}`,
    `https://${host}:10443/productpage`,
  ];
  // No Secret yet: the server is not ready and says which SDS resource it waits for.
  const waiting = await until('the SDS server to be reported not ready', async () => {
    const t = await (await fetch(`http://${GW}:15021/healthz/ready`)).text();
    return /kubernetes:\/\/istio-system\/sds-cert not received over SDS/.test(t) ? t : undefined;
  });
  assert.match(waiting, /Gateway default\/sds spec\.servers\[0\]/);
  assert.notEqual((await curl(...args('sds.example.com'))).status, 200);

  // The Secret arrives: the server serves, with its certificate.
  await writeFile(join(kube, '41-sds-secret.yaml'), await tlsSecret('sds-cert', 'sds.pem', 'sds.key'));
  const served = await until('the Secret to be served', async () => {
    const c = await curl(...args('sds.example.com'));
    return c.status === 200 ? c : undefined;
  });
  assert.equal((JSON.parse(served.body) as { app: string }).app, 'productpage');
  assert.match(await servedSubject('sds.example.com', 10443), /CN ?= ?sds$/);

  // Rotation: the Secret changes, the next handshake presents the new certificate.
  await writeFile(join(kube, '41-sds-secret.yaml'), await tlsSecret('sds-cert', 'sds2.pem', 'sds2.key'));
  await until('the rotated certificate', async () =>
    /CN ?= ?sds2$/.test(await servedSubject('sds.example.com', 10443)) ? true : undefined,
  );
  assert.equal((await curl(...args('sds.example.com'))).status, 200);

  // A malformed Secret: the controller names the field, its host fails, the other keeps serving.
  await writeFile(
    join(kube, '42-sds-bad.yaml'),
    `apiVersion: v1
kind: Secret
metadata:
  name: sds-bad
  namespace: istio-system
type: kubernetes.io/tls
stringData:
  tls.crt: not a certificate
  tls.key: not a key
`,
  );
  const controllerLog = await until('the malformed Secret in controller.log', async () => {
    const t = await readFile(join(mesh.dir, 'controller.log'), 'utf8');
    return /Secret\/istio-system\/sds-bad/.test(t) ? t : undefined;
  });
  assert.match(controllerLog, /"path":"data\[\\"tls.crt\\"\]".*no PEM certificate/);
  const bad = await curl(...args('sds-bad.example.com'));
  assert.notEqual(bad.status, 200);
  const text = await (await fetch(`http://${GW}:15021/healthz/ready`)).text();
  assert.match(
    text,
    /Gateway default\/sds spec\.servers\[1\].*kubernetes:\/\/istio-system\/sds-bad not received/,
  );
  assert.equal((await curl(...args('sds.example.com'))).status, 200);
});

test('TLS PASSTHROUGH: routed on SNI into the mesh untouched (the backend terminates); TCP, and TLS terminated at the gateway: routed by a tcp route', async () => {
  // An HTTPS server in the mesh: a pod of node-1 the test declares, served by this process.
  const backendIp = `${prefix}.1.40`;
  const backend = createHttpsServer(
    {
      cert: await readFile(join(pki, 'backend.pem')),
      key: await readFile(join(pki, 'backend.key')),
    },
    (req, res) => res.end(`backend saw ${req.url} over TLS\n`),
  );
  await new Promise<void>((r) => backend.listen(8443, backendIp, r));
  try {
    await writeFile(
      join(kube, '50-passthrough.yaml'),
      `${testPodYaml('tls-backend', backendIp, `${prefix}.100.40`, 'tls', 8443)}---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: edge, namespace: default }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: 11443, name: tls-pass, protocol: TLS }
    hosts: [passthrough.example.com]
    tls: { mode: PASSTHROUGH }
  - port: { number: 19000, name: tcp, protocol: TCP }
    hosts: ["*"]
  - port: { number: 12443, name: tls-term, protocol: TLS }
    hosts: [sds.example.com]
    tls: { mode: SIMPLE, serverCertificate: ${pki}/sds.pem, privateKey: ${pki}/sds.key }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: pass, namespace: default }
spec:
  hosts: [passthrough.example.com]
  gateways: [edge]
  tls:
  - match: [{ port: 11443, sniHosts: [passthrough.example.com] }]
    route: [{ destination: { host: tls-backend, port: { number: 8443 } } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: tcp, namespace: default }
spec:
  hosts: ["*"]
  gateways: [edge]
  tcp:
  - match: [{ port: 19000 }, { port: 12443 }]
    route: [{ destination: { host: tcp-echo, port: { number: 9000 } } }]
`,
    );
    const args = [
      '--cacert',
      join(pki, 'ca.pem'),
      '--resolve',
      `passthrough.example.com:11443:${GW}`,
      'https://passthrough.example.com:11443/hello',
    ];
    const r = await until('the passthrough route', async () => {
      const c = await curl(...args);
      return c.status === 200 ? c : undefined;
    });
    assert.equal(r.body.trimEnd(), 'backend saw /hello over TLS');
    // The certificate is the backend's own: the gateway did not terminate.
    assert.match(await servedSubject('passthrough.example.com', 11443), /CN ?= ?backend$/);
    // An SNI no server names gets no handshake.
    assert.equal(await servedSubject('nobody.example.com', 11443), '');

    // TCP: bytes to tcp-echo and back, through the gateway and HBONE.
    const echo = (tls: boolean) =>
      until(`the ${tls ? 'TLS-terminated ' : ''}tcp route`, async () => {
        const answer = await new Promise<string>((resolve) => {
          const sock = tls
            ? connectTls({ host: GW, port: 12443, servername: 'sds.example.com', ca: caPem })
            : connectTcp({ host: GW, port: 19000 });
          let got = '';
          sock.setEncoding('utf8');
          sock.on('data', (d: string) => (got += d));
          sock.on('close', () => resolve(got));
          sock.on('error', () => resolve(''));
          sock.setTimeout(5000, () => sock.destroy());
          sock.end('hello gateway\n');
        });
        return answer ? answer : undefined;
      });
    const caPem = await readFile(join(pki, 'ca.pem'));
    assert.match(await echo(false), /^(one|two) hello gateway\n$/);
    // TLS terminated at the gateway (its certificate, checked against the test CA), then TCP.
    assert.match(await echo(true), /^(one|two) hello gateway\n$/);
    const metrics = await (await fetch(`http://${GW}:15020/metrics`)).text();
    assert.ok(
      metrics
        .split('\n')
        .some(
          (l) =>
            l.startsWith('istio_tcp_connections_opened_total{') &&
            l.includes('reporter="source"') &&
            l.includes('destination_service="tls-backend.default.svc.cluster.local"'),
        ),
      metrics,
    );
  } finally {
    await new Promise<void>((r) => backend.close(() => r()));
  }
});

/** A mesh pod the test serves itself: ServiceAccount, Pod on node-1 and Service, as YAML. */
function testPodYaml(name: string, ip: string, vip: string, portName: string, port: number): string {
  return `apiVersion: v1
kind: ServiceAccount
metadata: { name: ${name}, namespace: default }
---
apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: default
  labels: { app: ${name} }
spec:
  nodeName: node-1
  serviceAccountName: ${name}
  containers:
  - name: ${name}
    image: ${name}
    ports: [{ name: ${portName}, containerPort: ${port} }]
status:
  phase: Running
  podIP: ${ip}
---
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: default }
spec:
  clusterIP: ${vip}
  selector: { app: ${name} }
  ports: [{ name: ${portName}, port: ${port}, targetPort: ${port} }]
`;
}

test('gRPC through the gateway: grpc-js over TLS (ALPN h2) to a gRPC server in the mesh, status codes and all', async () => {
  const ip = `${prefix}.1.41`;
  const raw = (b: Buffer) => b;
  const method = {
    path: '/ambit.test.Echo/Say',
    requestStream: false,
    responseStream: false,
    requestSerialize: raw,
    requestDeserialize: raw,
    responseSerialize: raw,
    responseDeserialize: raw,
  };
  const server = new GrpcServer();
  server.addService(
    { Say: method },
    {
      Say: (call: { request: Buffer }, cb: (err: Partial<ServiceError> | null, v?: Buffer) => void) =>
        call.request.toString() === 'fail'
          ? cb({ code: 9, details: 'asked to fail' })
          : cb(null, Buffer.concat([Buffer.from('echo: '), call.request])),
    },
  );
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`${ip}:50051`, ServerCredentials.createInsecure(), (err) =>
      err ? reject(err) : resolve(),
    ),
  );
  const client = new GrpcClient(
    `${GW}:13443`,
    grpcCredentials.createSsl(await readFile(join(pki, 'ca.pem'))),
    {
      'grpc.ssl_target_name_override': 'grpc.example.com',
      'grpc.default_authority': 'grpc.example.com',
      // The route appears a moment after the YAML: retry the channel soon.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 500,
    },
  );
  const say = (text: string) =>
    new Promise<{ err: ServiceError | null; value?: Buffer }>((resolve) =>
      client.makeUnaryRequest(
        method.path,
        raw,
        raw,
        Buffer.from(text),
        { deadline: Date.now() + 5000 },
        (err, value) => resolve({ err, value }),
      ),
    );
  try {
    await writeFile(
      join(kube, '60-grpc.yaml'),
      `${testPodYaml('grpc-backend', ip, `${prefix}.100.41`, 'grpc', 50051)}---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: grpc, namespace: default }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: 13443, name: https-grpc, protocol: HTTPS }
    hosts: [grpc.example.com]
    tls: { mode: SIMPLE, serverCertificate: ${pki}/grpc.pem, privateKey: ${pki}/grpc.key }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: grpc, namespace: default }
spec:
  hosts: [grpc.example.com]
  gateways: [grpc]
  http:
  - route: [{ destination: { host: grpc-backend, port: { number: 50051 } } }]
`,
    );
    const ok = await until('the gRPC route', async () => {
      const r = await say('hello');
      return r.err ? undefined : r;
    });
    assert.equal(ok.value?.toString(), 'echo: hello');
    // The server's status comes back as the gRPC status, not as an HTTP error.
    const failed = await say('fail');
    assert.equal(failed.err?.code, 9);
    assert.equal(failed.err?.details, 'asked to fail');
  } finally {
    client.close();
    server.forceShutdown();
  }
});

test('ISTIO_MUTUAL: the gateway presents its own mesh certificate and takes clients with one the mesh CA signed', async () => {
  // A mesh client certificate: the mesh CA's, with a SPIFFE identity.
  await issueLeaf(
    pki,
    'mesh',
    'URI:spiffe://cluster.local/ns/default/sa/curl',
    join(mesh.dir, 'ca-cert.pem'),
    join(mesh.dir, 'ca-key.pem'),
  );
  await writeFile(
    join(kube, '70-istio-mutual.yaml'),
    `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: mesh-mtls, namespace: default }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: 14443, name: https-mesh, protocol: HTTPS }
    hosts: [mesh.example.com]
    tls: { mode: ISTIO_MUTUAL }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: mesh-mtls, namespace: default }
spec:
  hosts: [mesh.example.com]
  gateways: [mesh-mtls]
  http:
  - route: [{ destination: { host: productpage, port: { number: 9080 } } }]
`,
  );
  // The gateway's certificate names a SPIFFE identity, no DNS name: curl checks the chain, not the name.
  const base = [
    '-k',
    '--resolve',
    `mesh.example.com:14443:${GW}`,
    'https://mesh.example.com:14443/productpage',
  ];
  const meshCert = ['--cert', join(pki, 'mesh.pem'), '--key', join(pki, 'mesh.key')];
  const ok = await until('the ISTIO_MUTUAL server', async () => {
    const c = await curl(...meshCert, ...base);
    return c.status === 200 ? c : undefined;
  });
  assert.equal((JSON.parse(ok.body) as { app: string }).app, 'productpage');
  // Without a client certificate, or with one of another CA, no.
  assert.notEqual((await curl(...base)).status, 200);
  assert.notEqual(
    (await curl('--cert', join(pki, 'client.pem'), '--key', join(pki, 'client.key'), ...base)).status,
    200,
  );
  // What it presents is its mesh identity, signed by the mesh CA.
  const sans = await run('sh', [
    '-c',
    `openssl s_client -connect ${GW}:14443 -servername mesh.example.com -cert ${join(pki, 'mesh.pem')} -key ${join(pki, 'mesh.key')} -CAfile ${join(mesh.dir, 'ca-cert.pem')} </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName`,
  ]);
  assert.match(
    sans.stdout,
    /URI:spiffe:\/\/cluster\.local\/ns\/istio-system\/sa\/istio-ingressgateway-service-account/,
  );
});
