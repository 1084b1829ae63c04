/**
 * Issue 7: waypoint/ — the GatewayClasses the controller treats as waypoints, an example waypoint
 * Gateway the controller accepts as it is, and the template the controller stamps out per waypoint
 * Gateway, whose environment the waypoint's own config reader accepts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildSnapshot, decodeKubeObject } from '../../../src/controller/files/kube-yaml.ts';
import { WAYPOINT_CLASSES } from '../../../src/controller/translate/gateways.ts';
import {
  AMBIT_GATEWAY_CLASS,
  AMBIT_GATEWAY_CONTROLLER,
} from '../../../src/controller/translate/l7/gateway-api-translate.ts';
import { translate } from '../../../src/controller/translate/workloads.ts';
import { buildWaypointConfig, WAYPOINT_ENV } from '../../../src/waypoint/config.ts';
import {
  container,
  envOf,
  find,
  findAll,
  loadAll,
  placeholders,
  podSpec,
  readRepoFile,
  renderTemplate,
  TEMPLATE_FILE,
  TEMPLATE_VALUES,
  volumeAt,
} from './manifests.ts';

const all = loadAll();
const V = TEMPLATE_VALUES as Record<
  'NAME' | 'NAMESPACE' | 'IMAGE' | 'SERVICE_ACCOUNT' | 'CA_ROOT_CERT_BASE64',
  string
>;
const template = all.filter((l) => l.file === TEMPLATE_FILE).map((l) => l.obj);
const deploy = find(all, 'Deployment', V.NAME, TEMPLATE_FILE);
const wp = container(deploy, 'waypoint');

function waypointConfig() {
  const built = buildWaypointConfig(envOf(wp));
  assert.ok(
    built.ok,
    `the waypoint's config reader refuses the template's environment: ${JSON.stringify(built)}`,
  );
  return built.config;
}

test("the GatewayClasses are exactly the controller's waypoint classes, with one controller name, and the ingress class", () => {
  const classes = findAll(all, 'GatewayClass');
  const waypoints = classes.filter((c) => c.metadata?.name !== AMBIT_GATEWAY_CLASS);
  assert.deepEqual(waypoints.map((c) => c.metadata?.name).sort(), [...WAYPOINT_CLASSES].sort());
  assert.deepEqual(
    [...new Set(waypoints.map((c) => c.spec.controllerName))],
    ['ambit.dev/waypoint-controller'],
  );
  const ingress = classes.filter((c) => c.metadata?.name === AMBIT_GATEWAY_CLASS);
  assert.deepEqual(
    ingress.map((c) => c.spec.controllerName),
    [AMBIT_GATEWAY_CONTROLLER],
  );
});

test('the example Gateway is a waypoint the controller accepts without a problem', () => {
  const gw = find(all, 'Gateway', 'waypoint', 'waypoint/example-gateway.yaml');
  assert.ok(WAYPOINT_CLASSES.includes(gw.spec.gatewayClassName));
  assert.equal(gw.metadata?.namespace, undefined, 'no namespace: `kubectl apply -n <ns>` picks it');
  assert.deepEqual(gw.spec.listeners, [{ name: 'mesh', port: 15008, protocol: 'HBONE' }]);
  const decoded = decodeKubeObject({ ...gw, metadata: { ...gw.metadata, namespace: 'bookinfo' } }, 'example');
  assert.deepEqual(decoded.problems, []);
  const { snapshot, problems } = buildSnapshot(decoded.objects);
  assert.deepEqual(problems, []);
  assert.equal(snapshot.gateways.length, 1);
  const t = translate(snapshot, {
    clusterId: 'Kubernetes',
    trustDomain: 'cluster.local',
    clusterDomain: 'cluster.local',
    rootNamespace: 'istio-system',
  });
  assert.deepEqual(t.problems, []);
});

test('the template documents exactly the placeholders it uses, and renders them all', () => {
  const raw = readRepoFile(TEMPLATE_FILE);
  const header = raw.slice(0, raw.indexOf('\napiVersion:'));
  const documented = [...header.matchAll(/^#\s+\$\{([A-Z0-9_]+)\}\s/gm)].map((m) => m[1]!);
  const body = raw.slice(header.length);
  assert.deepEqual([...documented].sort(), placeholders(body).sort());
  assert.deepEqual(Object.keys(TEMPLATE_VALUES).sort(), [...documented].sort());
  assert.ok(!renderTemplate(raw, TEMPLATE_VALUES).includes('${'));
});

test('the template holds a ServiceAccount, a root-certificate ConfigMap, a Deployment and a Service, all in the namespace', () => {
  assert.deepEqual(
    template.map((o) => `${String(o.kind)}/${o.metadata?.name}`),
    [
      `ServiceAccount/${V.SERVICE_ACCOUNT}`,
      `ConfigMap/${V.NAME}-ca-root-cert`,
      `Deployment/${V.NAME}`,
      `Service/${V.NAME}`,
    ],
  );
  for (const o of template) assert.equal(o.metadata?.namespace, V.NAMESPACE, String(o.kind));
});

test('the Service is <name>.<namespace>.svc with HBONE on 15008 named mesh, and 15021 and 15020', () => {
  const svc = find(all, 'Service', V.NAME, TEMPLATE_FILE);
  const ports = svc.spec?.ports ?? [];
  const mesh = ports.find((p) => p.name === 'mesh');
  assert.equal(mesh?.port, 15008);
  assert.equal(mesh?.targetPort, waypointConfig().hbone.port);
  assert.deepEqual(ports.map((p) => p.port).sort(), [15008, 15020, 15021]);
  assert.deepEqual(svc.spec?.selector, { 'gateway.networking.k8s.io/gateway-name': V.NAME });
  assert.equal(svc.metadata?.labels?.['gateway.networking.k8s.io/gateway-name'], V.NAME);
  for (const p of ports)
    assert.ok(
      wp.ports?.some((c) => c.containerPort === p.targetPort),
      p.name,
    );
});

test('the pods carry the gateway-name label and stay out of capture', () => {
  const labels = deploy.spec?.template.metadata?.labels;
  assert.equal(labels?.['gateway.networking.k8s.io/gateway-name'], V.NAME);
  assert.equal(labels?.['istio.io/dataplane-mode'], 'none');
});

test('the waypoint serves the Gateway it was made for, as its service account, from the image given', () => {
  const cfg = waypointConfig();
  assert.deepEqual(wp.args, ['waypoint']);
  assert.equal(wp.image, V.IMAGE);
  assert.equal(cfg.gatewayName, V.NAME);
  assert.equal(cfg.namespace, V.NAMESPACE);
  assert.equal(cfg.serviceAccount, V.SERVICE_ACCOUNT);
  assert.equal(podSpec(deploy).serviceAccountName, V.SERVICE_ACCOUNT);
  const ip = wp.env?.find((e) => e.name === 'INSTANCE_IP');
  assert.equal(ip?.valueFrom?.fieldRef?.fieldPath, 'status.podIP');
});

test('the root certificate the waypoint verifies the controller with is the ConfigMap of the template', () => {
  const cfg = waypointConfig();
  const { volume, rest } = volumeAt(deploy, wp, cfg.xdsRootCaPath);
  const cm = find(all, 'ConfigMap', volume.configMap?.name ?? '', TEMPLATE_FILE);
  assert.equal(cm.binaryData?.[rest], V.CA_ROOT_CERT_BASE64);
});

test('readiness on 15021 /healthz/ready; the grace period outlasts the drain; requests set', () => {
  const cfg = waypointConfig();
  assert.equal(wp.readinessProbe?.httpGet?.path, '/healthz/ready');
  assert.equal(wp.readinessProbe?.httpGet?.port, cfg.readiness.port);
  assert.equal(cfg.readiness.port, 15021);
  assert.ok((podSpec(deploy).terminationGracePeriodSeconds ?? 30) * 1000 > cfg.drainDeadlineMs);
  assert.ok(wp.resources?.requests?.cpu && wp.resources.requests.memory);
});

test('the waypoint runs as a non-root user with no capability and no API token', () => {
  const pod = podSpec(deploy);
  assert.equal(pod.securityContext?.runAsNonRoot, true);
  assert.equal(pod.automountServiceAccountToken, false);
  assert.equal(wp.securityContext?.allowPrivilegeEscalation, false);
  assert.deepEqual(wp.securityContext?.capabilities, { drop: ['ALL'] });
});

test('every variable set on the waypoint is one it reads (WAYPOINT_ENV)', () => {
  for (const name of Object.keys(envOf(wp)))
    assert.ok(name in WAYPOINT_ENV, `the waypoint does not read ${name}`);
});
