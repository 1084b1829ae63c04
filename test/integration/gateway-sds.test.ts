/**
 * SDS on the controller (issue 8): Kubernetes Secrets read by a real client-node informer from the
 * fake API server, served as Envoy Secrets on the ADS server to the gateway's own ADS client
 * (named subscriptions). Authorization as istiod's: a gateway (its token's service account, checked
 * with TokenReview) reads only the Secrets of its own namespace, and the key pairs there only if a
 * SubjectAccessReview says it may list Secrets (the CAs are public); a gateway of another namespace
 * asking for them gets nothing, and a node agent nothing at all. A changed Secret is pushed again.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { after, before, test } from 'node:test';
import 'reflect-metadata';
import { startController, type ControllerBound } from '../../src/controller/app.ts';
import { buildControllerConfig } from '../../src/controller/config.ts';
import { CertificateAuthority } from '../../src/core/identity/ca.ts';
import { silentLogger } from '../../src/core/log.ts';
import { AdsClient } from '../../src/core/xds/ads-client.ts';
import { SECRET_TYPE_URL } from '../../src/core/xds/l7-names.ts';
import { SECRET_ADS_TYPE, type GatewaySecret } from '../../src/waypoint/gateway/sds.ts';
import { FakeKubeApiServer } from '../fakes/kube-api-server.ts';
import { waitFor } from '../fakes/mesh.ts';

let dir: string;
let api: FakeKubeApiServer;
let controller: ControllerBound;
let pem: { cert: string; key: string; cert2: string; key2: string; ca: string };
const clients: AdsClient[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ambit-sds-'));
  const ca = await CertificateAuthority.createSelfSigned('cluster.local');
  await writeFile(join(dir, 'ca-cert.pem'), ca.rootCertPem);
  await writeFile(join(dir, 'ca-key.pem'), ca.rootKeyPem);
  const id = { trustDomain: 'cluster.local', namespace: 'istio-system', serviceAccount: 'gw' };
  const a = await ca.issueServing(id, ['a.example.com'], 3600_000);
  const b = await ca.issueServing(id, ['a.example.com'], 3600_000);
  pem = { cert: a.certChainPem, key: a.keyPem, cert2: b.certChainPem, key2: b.keyPem, ca: ca.rootCertPem };
  api = await FakeKubeApiServer.start();
  for (const [namespace, name] of [
    ['istio-system', 'ingress-cert'],
    ['other', 'other-cert'],
  ] as const)
    api.add('Secret', tlsSecret(namespace, name, pem.cert, pem.key));
  api.tokenReviews.set('ingress', {
    username: 'system:serviceaccount:istio-system:istio-ingressgateway',
    groups: [],
  });
  api.tokenReviews.set('other-gw', { username: 'system:serviceaccount:other:gw', groups: [] });
  // A workload of istio-system whose service account RBAC does not let list Secrets.
  api.tokenReviews.set('app', { username: 'system:serviceaccount:istio-system:app', groups: [] });
  // RBAC the SubjectAccessReviews see (daemonset/gateways/sds-rbac.yaml grants Istio's gateways).
  api.accessRules.add('system:serviceaccount:istio-system:istio-ingressgateway list istio-system/secrets');
  api.accessRules.add('system:serviceaccount:other:gw list other/secrets');
  api.tokenReviews.set('agent', {
    username: 'system:serviceaccount:istio-system:ztunnel',
    groups: [],
    extra: { 'authentication.kubernetes.io/node-name': ['node-1'] },
  });
  const built = buildControllerConfig({
    KUBECONFIG: await api.writeKubeconfig(join(dir, 'kubeconfig')),
    AMBIT_CA_CERT_FILE: join(dir, 'ca-cert.pem'),
    AMBIT_CA_KEY_FILE: join(dir, 'ca-key.pem'),
    AMBIT_GRPC_ADDR: '127.0.0.1:0',
    AMBIT_CONTROLLER_ADMIN_ADDR: '127.0.0.1:0',
    AMBIT_PUSH_DEBOUNCE: '20ms',
    LOG_LEVEL: 'silent',
  });
  assert.ok(built.ok, JSON.stringify(built));
  controller = await startController(built.config, { log: silentLogger() });
  await controller.ready;
});

after(async () => {
  for (const c of clients) c.close();
  await controller?.close();
  await api?.close();
  await rm(dir, { recursive: true, force: true });
});

function tlsSecret(namespace: string, name: string, cert: string, key: string) {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace },
    type: 'kubernetes.io/tls',
    data: {
      'tls.crt': Buffer.from(cert).toString('base64'),
      'tls.key': Buffer.from(key).toString('base64'),
      'ca.crt': Buffer.from(pem.ca).toString('base64'),
    },
  };
}

/** The gateway's ADS client with its token, subscribed to `names`; the Secrets it holds. */
function gatewayClient(token: string, names: string[]) {
  const held = new Map<string, GatewaySecret>();
  let responses = 0;
  const client = new AdsClient({
    target: `127.0.0.1:${controller.grpc.port}`,
    credentials: credentials.createInsecure(),
    node: { id: `router~${token}` },
    headers: () => ({ authorization: `Bearer ${token}` }),
    types: [SECRET_ADS_TYPE],
    log: silentLogger(),
    onResources: (typeUrl, m) => {
      assert.equal(typeUrl, SECRET_TYPE_URL);
      responses++;
      held.clear();
      for (const [k, v] of m) held.set(k, v as GatewaySecret);
    },
  });
  clients.push(client);
  client.subscribe(SECRET_TYPE_URL, names);
  client.start();
  return { held, responses: () => responses, client };
}

const ASKED = [
  'kubernetes://istio-system/ingress-cert',
  'kubernetes://istio-system/ingress-cert-cacert',
  'kubernetes://other/other-cert',
];

test('a gateway gets the Secrets of its own namespace only, the certificate and the CA', async () => {
  const gw = gatewayClient('ingress', ASKED);
  await waitFor(() => gw.held.size === 2, 5000);
  // Another Secret could still be on its way: the other gateway's own arrives meanwhile, this never.
  const other = gatewayClient('other-gw', ASKED);
  await waitFor(() => other.held.size === 1, 5000);
  assert.deepEqual([...gw.held.keys()].sort(), ASKED.slice(0, 2));
  assert.deepEqual([...other.held.keys()], ['kubernetes://other/other-cert']);
  const cert = gw.held.get(ASKED[0]!);
  assert.equal(cert?.kind === 'certificate' && cert.certificateChain.toString(), pem.cert);
  assert.equal(cert?.kind === 'certificate' && cert.privateKey.toString(), pem.key);
  const ca = gw.held.get(ASKED[1]!);
  assert.equal(ca?.kind === 'ca' && ca.trustedCa.toString(), pem.ca);
});

test("a node agent's stream gets no Secret, though it asks by name", async () => {
  const agent = gatewayClient('agent', ASKED);
  // Its stream is answered (the first response, which says what exists for it): empty.
  await waitFor(() => agent.responses() > 0, 5000);
  // Proof that the stream is served: the gateway of istio-system, asking after it, gets its own.
  const gw = gatewayClient('ingress', ASKED.slice(0, 1));
  await waitFor(() => gw.held.size === 1, 5000);
  assert.equal(agent.held.size, 0);
});

test('a workload of the same namespace that RBAC does not let list Secrets gets the CA only', async () => {
  const app = gatewayClient('app', ASKED);
  await waitFor(() => app.responses() > 0, 5000);
  assert.deepEqual([...app.held.keys()], ['kubernetes://istio-system/ingress-cert-cacert']);
  assert.ok(
    api.requests.some((r) => r.path === '/apis/authorization.k8s.io/v1/subjectaccessreviews'),
    'a SubjectAccessReview was made',
  );
});

test('a rotated Secret is pushed to the gateway that holds it; a malformed update keeps the last good one', async () => {
  const gw = gatewayClient('ingress', ASKED.slice(0, 1));
  await waitFor(() => gw.held.size === 1, 5000);
  api.update('Secret', tlsSecret('istio-system', 'ingress-cert', pem.cert2, pem.key2));
  await waitFor(() => {
    const c = gw.held.get(ASKED[0]!);
    return c?.kind === 'certificate' && c.certificateChain.toString() === pem.cert2;
  }, 5000);
  const before = gw.responses();
  api.update('Secret', tlsSecret('istio-system', 'ingress-cert', 'garbage', pem.key2));
  // The next change (a new Secret in the namespace, subscribed) shows the malformed one was not pushed.
  api.add('Secret', tlsSecret('istio-system', 'later', pem.cert, pem.key));
  gw.client.subscribe(SECRET_TYPE_URL, [ASKED[0]!, 'kubernetes://istio-system/later']);
  await waitFor(() => gw.held.has('kubernetes://istio-system/later'), 5000);
  assert.ok(gw.responses() > before);
  const c = gw.held.get(ASKED[0]!);
  assert.equal(c?.kind === 'certificate' && c.certificateChain.toString(), pem.cert2);
});
