/**
 * Issue 8 part 3: waypoint/gateway-template.yaml, the objects the controller stamps out per Gateway
 * API Gateway of class `ambit` — its placeholders, its objects, an environment the gateway's own
 * config reader accepts, and pod labels that make the gateway serve exactly that Gateway — and the
 * reconciler's rendering of it with a Gateway's listener ports.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderIngressGateway, type IngressGateway } from '../../../src/controller/reconcile/gateway-api.ts';
import { gatewayApiLabels } from '../../../src/controller/translate/l7/gateway-api-translate.ts';
import { gatewayGroup } from '../../../src/core/xds/l7-names.ts';
import { servesGroup } from '../../../src/waypoint/gateway/app.ts';
import { buildGatewayConfig, GATEWAY_ENV } from '../../../src/waypoint/gateway/config.ts';
import {
  container,
  envOf,
  find,
  GATEWAY_TEMPLATE_FILE,
  GATEWAY_TEMPLATE_VALUES as V,
  loadAll,
  placeholders,
  podSpec,
  readRepoFile,
  renderTemplate,
} from './manifests.ts';

const all = loadAll();
const objects = all.filter((l) => l.file === GATEWAY_TEMPLATE_FILE).map((l) => l.obj);
const deploy = find(all, 'Deployment', V.NAME!, GATEWAY_TEMPLATE_FILE);
const gw = container(deploy, 'gateway');

test('the gateway template documents exactly the placeholders it uses, and renders them all', () => {
  const raw = readRepoFile(GATEWAY_TEMPLATE_FILE);
  const header = raw.slice(0, raw.indexOf('\napiVersion:'));
  const documented = [...header.matchAll(/^#\s+\$\{([A-Z0-9_]+)\}\s/gm)].map((m) => m[1]!);
  assert.deepEqual([...documented].sort(), placeholders(raw.slice(header.length)).sort());
  assert.deepEqual(Object.keys(V).sort(), [...documented].sort());
  assert.ok(!renderTemplate(raw, V).includes('${'));
});

test('it holds a ServiceAccount, a root-certificate ConfigMap, a Deployment and a LoadBalancer Service', () => {
  assert.deepEqual(
    objects.map((o) => `${String(o.kind)}/${o.metadata?.name}`),
    [
      `ServiceAccount/${V.SERVICE_ACCOUNT}`,
      `ConfigMap/${V.NAME}-ca-root-cert`,
      `Deployment/${V.NAME}`,
      `Service/${V.NAME}`,
    ],
  );
  for (const o of objects) assert.equal(o.metadata?.namespace, V.NAMESPACE, String(o.kind));
  const svc = find(all, 'Service', V.NAME!, GATEWAY_TEMPLATE_FILE);
  assert.equal(svc.spec?.type, 'LoadBalancer');
});

test("the gateway's config reader accepts the environment; its labels make it serve this Gateway only", () => {
  const built = buildGatewayConfig({ ...envOf(gw), INSTANCE_IP: '10.0.0.5' });
  assert.ok(built.ok, JSON.stringify(built));
  const gateway = { namespace: V.NAMESPACE!, name: V.GATEWAY_NAME! };
  assert.deepEqual(built.config.labels, gatewayApiLabels(gateway));
  assert.equal(built.config.serviceAccount, V.SERVICE_ACCOUNT);
  assert.equal(podSpec(deploy).serviceAccountName, V.SERVICE_ACCOUNT);
  assert.deepEqual(gw.args, ['gateway']);
  assert.ok(servesGroup(gatewayGroup(gatewayApiLabels(gateway)), built.config.labels));
  assert.ok(
    !servesGroup(gatewayGroup(gatewayApiLabels({ ...gateway, namespace: 'other' })), built.config.labels),
  );
  // The pods carry the labels, and the Service selects them.
  const podLabels = deploy.spec?.template.metadata?.labels ?? {};
  for (const [k, v] of Object.entries(gatewayApiLabels(gateway))) assert.equal(podLabels[k], v, k);
  const svc = find(all, 'Service', V.NAME!, GATEWAY_TEMPLATE_FILE);
  for (const [k, v] of Object.entries(svc.spec?.selector ?? {})) assert.equal(podLabels[k], v, k);
  assert.equal(podLabels['istio.io/dataplane-mode'], 'none');
  for (const name of Object.keys(envOf(gw)))
    assert.ok(name in GATEWAY_ENV, `the gateway does not read ${name}`);
});

test('ports below 1024 without root, as Istio gateway pods do; no capability, no API token', () => {
  const pod = podSpec(deploy);
  assert.deepEqual(pod.securityContext?.sysctls, [
    { name: 'net.ipv4.ip_unprivileged_port_start', value: '0' },
  ]);
  assert.equal(pod.securityContext?.runAsNonRoot, true);
  assert.equal(pod.automountServiceAccountToken, false);
  assert.deepEqual(gw.securityContext?.capabilities, { drop: ['ALL'] });
});

test('rendered for a Gateway, the Service and the container get its HTTP and HTTPS listener ports', () => {
  const gateway: IngressGateway = {
    namespace: 'shop',
    name: 'web',
    uid: '00000000-0000-0000-0000-000000000001',
    generation: 1,
    className: 'ambit',
    infrastructure: { labels: {}, annotations: {} },
    status: {},
    listeners: [
      { name: 'http', port: 80, protocol: 'HTTP' },
      { name: 'https', port: 443, protocol: 'HTTPS' },
      { name: 'tcp', port: 9000, protocol: 'TCP' },
    ],
  };
  const r = renderIngressGateway(readRepoFile(GATEWAY_TEMPLATE_FILE), gateway, {
    image: 'ambit:test',
    caRootCertPem: 'PEM',
    blockOwnerDeletion: false,
  });
  assert.ok(r.ok, JSON.stringify(r));
  const svc = r.objects.find((o) => o.kind === 'Service')!;
  assert.deepEqual(
    (svc.spec as { ports: { name: string; port: number }[] }).ports.map((p) => `${p.name}:${p.port}`),
    ['http-80:80', 'https-443:443', 'status-port:15021'],
  );
  const rejected = renderIngressGateway(
    readRepoFile(GATEWAY_TEMPLATE_FILE),
    { ...gateway, listeners: [{ name: 'tcp', port: 9000, protocol: 'TCP' }] },
    { image: 'ambit:test', caRootCertPem: 'PEM', blockOwnerDeletion: false },
  );
  assert.deepEqual(rejected, {
    ok: false,
    errors: ['spec.listeners: no HTTP or HTTPS listener, so nothing to deploy'],
  });
});
