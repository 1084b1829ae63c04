/**
 * Issue 7: the controller's Deployment, Service, PodDisruptionBudget and RBAC, and the contract
 * between the controller and its clients (node agents, waypoints): the address they dial, the name
 * they verify, the token audience and the agents' service account. Both sides are read with the
 * programs' own config readers, so a change on either side that breaks the other fails here.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { IPolicyRule } from 'kubernetes-models/rbac.authorization.k8s.io/v1/PolicyRule';
import { buildControllerConfig, CONTROLLER_ENV } from '../../../src/controller/config.ts';
import { buildWaypointConfig } from '../../../src/waypoint/config.ts';
import { buildZtunnelConfig } from '../../../src/ztunnel/config.ts';
import {
  container,
  envOf,
  find,
  findAll,
  loadAll,
  podSpec,
  projectedToken,
  readRepoFile,
  TEMPLATE_FILE,
  TEMPLATE_VALUES,
  volumeAt,
  type Workload,
} from './manifests.ts';

const all = loadAll();
const NS = 'ambit-system';
const deploy = find(all, 'Deployment', 'ambit-controller', 'daemonset/ambit/controller.yaml');
const ctl = container(deploy, 'controller');
const service = find(all, 'Service', 'ambit-controller', 'daemonset/ambit/controller.yaml');
const ds = find(all, 'DaemonSet', 'ztunnel');
const waypoint = find(all, 'Deployment', TEMPLATE_VALUES.NAME!, TEMPLATE_FILE);

function controllerConfig() {
  // In a pod, Kubernetes sets KUBERNETES_SERVICE_HOST: the controller watches the cluster.
  const built = buildControllerConfig({ ...envOf(ctl), KUBERNETES_SERVICE_HOST: '10.96.0.1' });
  assert.ok(
    built.ok,
    `the controller's config reader refuses the manifest's environment: ${JSON.stringify(built)}`,
  );
  return built.config;
}
function agentConfig() {
  const built = buildZtunnelConfig(envOf(container(ds, 'ztunnel')));
  assert.ok(built.ok, JSON.stringify(built));
  return built.config;
}
function waypointConfig() {
  const built = buildWaypointConfig(envOf(container(waypoint, 'waypoint')));
  assert.ok(built.ok, JSON.stringify(built));
  return built.config;
}

test('two replicas of `ambit controller`, in the cluster, never both down for a disruption', () => {
  assert.equal(deploy.spec?.replicas, 2);
  assert.deepEqual(ctl.args, ['controller']);
  assert.equal(controllerConfig().inCluster, true);
  const pdb = find(all, 'PodDisruptionBudget', 'ambit-controller');
  assert.equal(pdb.metadata?.namespace, NS);
  assert.deepEqual(pdb.spec?.selector?.matchLabels, deploy.spec?.selector.matchLabels);
  const min = Number(pdb.spec?.minAvailable);
  assert.ok(min >= 1 && min < 2, `minAvailable ${min}`);
});

test('ports: 15012 xDS + CA over TLS and 15014 admin in the Service; plaintext 15010 on loopback only', () => {
  const cfg = controllerConfig();
  assert.equal(cfg.grpcTlsAddr?.port, 15012);
  assert.equal(cfg.adminAddr.port, 15014);
  assert.equal(cfg.grpcAddr.port, 15010);
  assert.equal(
    cfg.grpcAddr.host,
    '127.0.0.1',
    'plaintext xDS carries bearer tokens: keep it off the network',
  );
  const ports = service.spec?.ports ?? [];
  assert.deepEqual(
    ports.map((p) => [p.port, p.targetPort]),
    [
      [15012, 15012],
      [15014, 15014],
    ],
  );
  for (const p of ports)
    assert.ok(
      ctl.ports?.some((c) => c.containerPort === p.targetPort),
      String(p.name),
    );
});

test('readiness is the admin port /ready, reachable from the kubelet', () => {
  const cfg = controllerConfig();
  assert.equal(ctl.readinessProbe?.httpGet?.path, '/ready');
  assert.equal(ctl.readinessProbe?.httpGet?.port, cfg.adminAddr.port);
  assert.equal(cfg.adminAddr.host, '0.0.0.0');
});

test('the CA certificate and key are read from the ambit-ca Secret', () => {
  const cfg = controllerConfig();
  for (const path of [cfg.caCertPath, cfg.caKeyPath]) {
    assert.equal(volumeAt(deploy, ctl, path).volume.secret?.secretName, 'ambit-ca', path);
  }
});

test('the controller runs as a non-root user on a read-only root filesystem', () => {
  const pod = podSpec(deploy).securityContext;
  assert.equal(pod?.runAsNonRoot, true);
  assert.notEqual(pod?.runAsUser, 0);
  assert.equal(ctl.securityContext?.allowPrivilegeEscalation, false);
  assert.equal(ctl.securityContext?.readOnlyRootFilesystem, true);
  assert.deepEqual(ctl.securityContext?.capabilities, { drop: ['ALL'] });
});

test('every variable set on the controller is one it reads (CONTROLLER_ENV)', () => {
  for (const name of Object.keys(envOf(ctl))) {
    assert.ok(name in CONTROLLER_ENV, `the controller does not read ${name}`);
  }
});

for (const [who, config] of [
  ['node agent', agentConfig],
  ['waypoint', waypointConfig],
] as const) {
  test(`the ${who} dials the controller's Service on its TLS port and verifies a name the controller serves`, () => {
    const c = config();
    const cfg = controllerConfig();
    const svcHost = `${service.metadata?.name}.${service.metadata?.namespace}.svc`;
    assert.equal(c.xdsAddress, `${svcHost}:${cfg.grpcTlsAddr?.port}`);
    assert.equal(c.caAddress, c.xdsAddress);
    assert.ok(c.xdsRootCaPath, `the ${who} must use TLS (XDS_ROOT_CA)`);
    assert.ok(
      cfg.servingDnsNames.includes(c.xdsHostname),
      `${c.xdsHostname} is not on the serving certificate`,
    );
  });
}

test("the agents' and waypoints' token audience is the one the controller requires", () => {
  const cfg = controllerConfig();
  const cases: [Workload, string, string][] = [
    [ds, 'ztunnel', agentConfig().authToken],
    [waypoint, 'waypoint', waypointConfig().authToken],
  ];
  for (const [workload, name, tokenPath] of cases) {
    const { volume, rest } = volumeAt(workload, container(workload, name), tokenPath);
    const audience = projectedToken(volume, rest)?.audience ?? '(none)';
    assert.ok(cfg.tokenAudiences.includes(audience), `${name}: audience ${audience}`);
  }
});

test("the node agents' service account is the one the controller treats as node agents", () => {
  const sa = `${ds.metadata?.namespace}/${podSpec(ds).serviceAccountName}`;
  assert.ok(controllerConfig().agentServiceAccounts.includes(sa), sa);
});

/** The API group and resource of each collection the controller watches (src/controller/kube/source.ts). */
function watchedResources(): { group: string; resource: string }[] {
  const source = readRepoFile('src/controller/kube/source.ts');
  const paths = [...source.matchAll(/path: '(\/apis?\/[^']+)'/g)].map((m) => m[1]!);
  assert.ok(paths.length >= 10, `found only ${paths.length} collection paths in source.ts`);
  return paths.map((p) => {
    const parts = p.split('/').filter(Boolean);
    return parts[0] === 'api'
      ? { group: '', resource: parts[2]! }
      : { group: parts[1]!, resource: parts[3]! };
  });
}

function allowed(rules: readonly IPolicyRule[], group: string, resource: string, verb: string): boolean {
  return rules.some(
    (r) => r.apiGroups?.includes(group) && r.resources?.includes(resource) && r.verbs.includes(verb),
  );
}

const clusterRules = () => find(all, 'ClusterRole', 'ambit-controller').rules ?? [];

test('RBAC: the controller may list and watch every kind it reads', () => {
  for (const { group, resource } of watchedResources()) {
    for (const verb of ['list', 'watch']) {
      assert.ok(allowed(clusterRules(), group, resource, verb), `${verb} ${resource}.${group || 'core'}`);
    }
  }
});

test('RBAC: TokenReview, waypoint objects, Gateway status, and a Lease in its own namespace', () => {
  const rules = clusterRules();
  assert.ok(allowed(rules, 'authentication.k8s.io', 'tokenreviews', 'create'));
  assert.ok(allowed(rules, 'gateway.networking.k8s.io', 'gateways/status', 'update'));
  for (const [group, resource] of [
    ['apps', 'deployments'],
    ['', 'services'],
    ['', 'serviceaccounts'],
    ['', 'configmaps'],
  ] as const) {
    for (const verb of ['get', 'create', 'update', 'delete']) {
      assert.ok(allowed(rules, group, resource, verb), `${verb} ${resource}`);
    }
  }
  const role = find(all, 'Role', 'ambit-controller-leader-election');
  assert.equal(role.metadata?.namespace, NS);
  for (const verb of ['get', 'create', 'update']) {
    assert.ok(allowed(role.rules ?? [], 'coordination.k8s.io', 'leases', verb), verb);
  }
});

test('RBAC: least privilege — no wildcards, Secrets only listed (the controller also watches them), no role for the node agent', () => {
  for (const role of [...findAll(all, 'ClusterRole'), ...findAll(all, 'Role')]) {
    const name = role.metadata?.name ?? '';
    for (const r of role.rules ?? []) {
      for (const list of [r.apiGroups ?? [], r.resources ?? [], r.verbs])
        assert.ok(!list.includes('*'), name);
      // Gateway certificates: the controller's informer lists and watches; the gateways' Roles
      // (daemonset/gateways/sds-rbac.yaml) only say, for the controller's SubjectAccessReview, that
      // they may list them. Nobody gets, writes or deletes a Secret, and the rule names nothing else.
      if ((r.resources ?? []).includes('secrets')) {
        assert.deepEqual(r.resources, ['secrets'], name);
        assert.deepEqual(
          [...r.verbs].sort(),
          name === 'ambit-controller' ? ['list', 'watch'] : ['list'],
          `${name} reaches Secrets`,
        );
        if (name !== 'ambit-controller') assert.match(name, /^istio-(ingress|egress)gateway-sds$/);
      }
      assert.ok(!r.verbs.some((v) => ['escalate', 'bind', 'impersonate'].includes(v)), name);
    }
  }
  assert.ok(allowed(clusterRules(), 'authorization.k8s.io', 'subjectaccessreviews', 'create'));
  const bindings = all.filter((l) => l.obj.kind === 'ClusterRoleBinding' || l.obj.kind === 'RoleBinding');
  const controllerBindings = bindings.filter((b) => !b.file.startsWith('daemonset/gateways/'));
  assert.equal(controllerBindings.length, 2);
  for (const b of controllerBindings) {
    assert.deepEqual(b.obj.subjects, [{ kind: 'ServiceAccount', name: 'ambit-controller', namespace: NS }]);
  }
  // The gateways' SDS bindings name each gateway's own service account, in istio-system.
  const sds = bindings.filter((b) => b.file.startsWith('daemonset/gateways/'));
  assert.deepEqual(
    sds.map((b) =>
      (b.obj.subjects as { name: string; namespace: string }[]).map((s) => `${s.namespace}/${s.name}`),
    ),
    [
      ['istio-system/istio-ingressgateway-service-account'],
      ['istio-system/istio-egressgateway-service-account'],
    ],
  );
});
