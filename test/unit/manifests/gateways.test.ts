/**
 * Issue 8: daemonset/gateways/, the optional install of Istio's ingress and egress gateways run by
 * `ambit gateway`. Each Deployment's environment is read with the gateway's own config reader, so a
 * change on either side that breaks the other fails here: the labels Gateway selectors match, the
 * controller it dials and the token audience it presents, the ports its Service sends to.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildControllerConfig } from '../../../src/controller/config.ts';
import { buildGatewayConfig, GATEWAY_ENV } from '../../../src/waypoint/gateway/config.ts';
import {
  container,
  envOf,
  find,
  loadAll,
  podSpec,
  projectedToken,
  parseYaml,
  readRepoFile,
  volumeAt,
} from './manifests.ts';

const all = loadAll();
const NS = 'istio-system';
const controller = container(
  find(all, 'Deployment', 'ambit-controller', 'daemonset/ambit/controller.yaml'),
  'controller',
);
const controllerService = find(all, 'Service', 'ambit-controller', 'daemonset/ambit/controller.yaml');

interface Case {
  readonly name: string;
  readonly file: string;
  /** The selector of Istio's own YAML for this gateway. */
  readonly istioLabel: string;
  readonly serviceType: string;
  /** The pods' `istio.io/dataplane-mode`: whether the node agent takes their traffic. */
  readonly dataplaneMode: string;
}

const CASES: Case[] = [
  {
    name: 'istio-ingressgateway',
    file: 'daemonset/gateways/ingress.yaml',
    istioLabel: 'ingressgateway',
    serviceType: 'LoadBalancer',
    // Its clients are outside the mesh, and it speaks HBONE into the mesh itself.
    dataplaneMode: 'none',
  },
  {
    name: 'istio-egressgateway',
    file: 'daemonset/gateways/egress.yaml',
    istioLabel: 'egressgateway',
    serviceType: 'ClusterIP',
    // Waypoints reach it over HBONE through its node agent, as any enrolled pod.
    dataplaneMode: 'ambient',
  },
];

function controllerConfig() {
  const built = buildControllerConfig({ ...envOf(controller), KUBERNETES_SERVICE_HOST: '10.96.0.1' });
  assert.ok(built.ok, JSON.stringify(built));
  return built.config;
}

for (const c of CASES) {
  const deploy = find(all, 'Deployment', c.name, c.file);
  const gw = container(deploy, 'gateway');
  const service = find(all, 'Service', c.name, c.file);
  const podLabels = deploy.spec?.template.metadata?.labels ?? {};
  const config = () => {
    const built = buildGatewayConfig({
      ...envOf(gw),
      POD_NAME: 'p',
      POD_NAMESPACE: NS,
      INSTANCE_IP: '10.0.0.7',
    });
    assert.ok(built.ok, `the gateway's config reader refuses ${c.file}: ${JSON.stringify(built)}`);
    return built.config;
  };

  test(`${c.name}: the gateway serves Istio's \`istio: ${c.istioLabel}\` Gateways with the pod's own labels`, () => {
    assert.deepEqual(gw.args, ['gateway']);
    assert.equal(deploy.metadata?.namespace, NS);
    assert.equal(podLabels.istio, c.istioLabel);
    const labels = config().labels;
    for (const [k, v] of Object.entries(labels)) assert.equal(podLabels[k], v, `GATEWAY_LABELS ${k}=${v}`);
    assert.equal(labels.istio, c.istioLabel);
    for (const [k, v] of Object.entries(deploy.spec?.selector.matchLabels ?? {}))
      assert.equal(podLabels[k], v, `the Deployment's selector ${k}`);
  });

  test(`${c.name}: its identity is its own service account, with no API token mounted`, () => {
    const spec = podSpec(deploy);
    assert.equal(spec.serviceAccountName, config().serviceAccount);
    assert.equal(spec.automountServiceAccountToken, false);
    const accounts = all.filter((l) => l.file === c.file && l.obj.kind === 'ServiceAccount');
    assert.deepEqual(
      accounts.map((l) => l.obj.metadata?.name),
      [config().serviceAccount],
    );
    assert.equal(config().gatewayName, c.name);
  });

  test(`${c.name}: it dials the controller's TLS port with a token of the audience the controller requires`, () => {
    const cfg = config();
    const ctl = controllerConfig();
    const svcHost = `${controllerService.metadata?.name}.${controllerService.metadata?.namespace}.svc`;
    assert.equal(cfg.xdsAddress, `${svcHost}:${ctl.grpcTlsAddr?.port}`);
    assert.equal(cfg.caAddress, cfg.xdsAddress);
    assert.ok(ctl.servingDnsNames.includes(cfg.xdsHostname), cfg.xdsHostname);
    const token = volumeAt(deploy, gw, cfg.authToken);
    assert.ok(ctl.tokenAudiences.includes(projectedToken(token.volume, token.rest)?.audience ?? '(none)'));
    const root = volumeAt(deploy, gw, cfg.xdsRootCaPath);
    assert.equal(root.volume.configMap?.name, 'ambit-ca-root-cert');
    assert.equal(root.rest, 'root-cert.pem');
  });

  test(`${c.name}: a ${c.serviceType} Service selecting the pods, every target port a container port`, () => {
    assert.equal(service.metadata?.namespace, NS);
    assert.equal(service.spec?.type ?? 'ClusterIP', c.serviceType);
    for (const [k, v] of Object.entries(service.spec?.selector ?? {}))
      assert.equal(podLabels[k], v, `the Service's selector ${k}`);
    const ports = service.spec?.ports ?? [];
    assert.ok(ports.length >= 2);
    for (const p of ports)
      assert.ok(
        gw.ports?.some((cp) => cp.containerPort === p.targetPort && cp.name === p.name),
        `Service port ${p.name} → ${String(p.targetPort)}`,
      );
    assert.ok(ports.some((p) => p.name === 'status-port' && p.targetPort === config().readiness.port));
    assert.equal(gw.readinessProbe?.httpGet?.port, config().readiness.port);
    assert.equal(gw.readinessProbe?.httpGet?.path, '/healthz/ready');
  });

  test(`${c.name}: every variable set is one the gateway reads (GATEWAY_ENV)`, () => {
    for (const name of Object.keys(envOf(gw)))
      assert.ok(name in GATEWAY_ENV, `the gateway does not read ${name}`);
  });

  test(`${c.name}: non-root, may bind low ports, and in the mesh (dataplane-mode) only if its role needs it`, () => {
    const sc = podSpec(deploy).securityContext;
    assert.equal(sc?.runAsNonRoot, true);
    assert.deepEqual(sc?.sysctls, [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }]);
    assert.equal(podLabels['istio.io/dataplane-mode'], c.dataplaneMode);
  });
}

test("the ingress Service maps Istio's ports (80 → 8080, 443 → 8443), so bookinfo's 8080 server is reached on 80", () => {
  const svc = find(all, 'Service', 'istio-ingressgateway', 'daemonset/gateways/ingress.yaml');
  const map = Object.fromEntries((svc.spec?.ports ?? []).map((p) => [p.port, p.targetPort]));
  assert.equal(map[80], 8080);
  assert.equal(map[443], 8443);
  const sample = parseYaml(
    readRepoFile('test/fixtures/kube/istio-samples/18-gateway-bookinfo-ingress.yaml'),
    'sample 18',
  ).find((o) => o.kind === 'Gateway') as {
    spec: { selector: Record<string, string>; servers: { port: { number: number } }[] };
  };
  const deploy = find(all, 'Deployment', 'istio-ingressgateway', 'daemonset/gateways/ingress.yaml');
  const labels = deploy.spec?.template.metadata?.labels ?? {};
  for (const [k, v] of Object.entries(sample.spec.selector)) assert.equal(labels[k], v);
  assert.ok(sample.spec.servers.every((s) => Object.values(map).includes(s.port.number)));
});
