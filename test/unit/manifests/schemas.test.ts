/**
 * Issue 7: every object of daemonset/ and waypoint/ (the template rendered with sample values) is
 * valid against the Kubernetes and Gateway API schemas — the JSON schemas of `kubernetes-models` and
 * `@kubernetes-models/gateway-api`, generated from the upstream OpenAPI and Go types — and passes the
 * API server's own rules those schemas cannot express.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1';
import { DaemonSet, Deployment } from 'kubernetes-models/apps/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import {
  ClusterRole,
  ClusterRoleBinding,
  Role,
  RoleBinding,
} from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { ConfigMap, Namespace, Service, ServiceAccount } from 'kubernetes-models/v1';
import { Gateway, GatewayClass } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1';
import { allContainers, describeObj, loadAll, podSpec, type KubeObject, type Workload } from './manifests.ts';

type ModelClass = new (data: never) => { validate(): void };

/** apiVersion/kind → its schema. A kind used in the manifests but missing here fails the test. */
const MODELS: Readonly<Record<string, ModelClass>> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
  'apps/v1/Deployment': Deployment,
  'apps/v1/DaemonSet': DaemonSet,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'apiextensions.k8s.io/v1/CustomResourceDefinition': CustomResourceDefinition,
  'gateway.networking.k8s.io/v1/GatewayClass': GatewayClass,
  'gateway.networking.k8s.io/v1/Gateway': Gateway,
};

const all = loadAll();

test('the manifests hold the objects they should', () => {
  const files = new Set(all.map((l) => l.file));
  for (const f of [
    'daemonset/crds/istio.yaml',
    'daemonset/crds/gateway-api.yaml',
    'daemonset/ambit/namespace.yaml',
    'daemonset/ambit/rbac.yaml',
    'daemonset/ambit/controller.yaml',
    'daemonset/ambit/node-agent.yaml',
    'waypoint/gatewayclasses.yaml',
    'waypoint/example-gateway.yaml',
    'waypoint/template.yaml',
  ]) {
    assert.ok(files.has(f), `${f} has no objects`);
  }
});

for (const l of all) {
  test(`${describeObj(l)} is valid against its schema`, () => {
    const Model = MODELS[`${String(l.obj.apiVersion)}/${String(l.obj.kind)}`];
    assert.ok(Model, `no schema for ${String(l.obj.apiVersion)} ${String(l.obj.kind)}: add it to MODELS`);
    // The models validate the object as given (apiVersion and kind included).
    assert.doesNotThrow(() => new Model(structuredClone(l.obj) as never).validate());
  });
}

test('names and labels are valid Kubernetes names and label values', () => {
  const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
  const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
  const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
  for (const l of all) {
    const name = l.obj.metadata?.name ?? '';
    // Services and Namespaces need DNS labels; everything else a DNS subdomain.
    const label = l.obj.kind === 'Service' || l.obj.kind === 'Namespace';
    assert.match(name, label ? DNS_LABEL : DNS_SUBDOMAIN, describeObj(l));
    assert.ok(name.length <= (label ? 63 : 253), describeObj(l));
    const workload =
      l.obj.kind === 'Deployment' || l.obj.kind === 'DaemonSet' ? (l.obj as unknown as Workload) : undefined;
    const labelSets = [
      l.obj.metadata?.labels,
      workload?.spec?.template.metadata?.labels,
      workload?.spec?.selector.matchLabels,
    ];
    for (const labels of labelSets) {
      for (const [k, v] of Object.entries((labels ?? {}) as Record<string, unknown>)) {
        assert.equal(typeof v, 'string', `${describeObj(l)}: label ${k} must be a string`);
        assert.match(String(v), LABEL_VALUE, `${describeObj(l)}: label ${k}`);
        assert.ok(String(v).length <= 63, `${describeObj(l)}: label ${k} is longer than 63`);
      }
    }
  }
});

test('each workload selects its own pods, and each Service and PodDisruptionBudget selects one workload', () => {
  const workloads = all
    .filter((l) => l.obj.kind === 'Deployment' || l.obj.kind === 'DaemonSet')
    .map((l) => l.obj as unknown as Workload);
  const matches = (sel: Record<string, string> | undefined, labels: Record<string, string> | undefined) =>
    sel !== undefined && Object.entries(sel).every(([k, v]) => labels?.[k] === v);
  for (const w of workloads) {
    assert.ok(matches(w.spec?.selector.matchLabels, w.spec?.template.metadata?.labels), w.metadata?.name);
  }
  const selectors = all.flatMap((l): [string, KubeObject, Record<string, string> | undefined][] => {
    const spec = l.obj.spec as {
      selector?: Record<string, string> & { matchLabels?: Record<string, string> };
    };
    if (l.obj.kind === 'Service') return [[describeObj(l), l.obj, spec.selector]];
    if (l.obj.kind === 'PodDisruptionBudget') return [[describeObj(l), l.obj, spec.selector?.matchLabels]];
    return [];
  });
  for (const [where, obj, sel] of selectors) {
    const selected = workloads.filter(
      (w) =>
        w.metadata?.namespace === obj.metadata?.namespace && matches(sel, w.spec?.template.metadata?.labels),
    );
    assert.equal(selected.length, 1, `${where} selects ${selected.length} workloads`);
  }
});

test('containers follow the API server rules the schemas cannot express', () => {
  for (const { where, workload, c } of allContainers(all)) {
    const sc = c.securityContext;
    const caps = (sc?.capabilities?.add ?? []).map((x) => x.replace(/^CAP_/, ''));
    // pkg/apis/core/validation: "cannot set allowPrivilegeEscalation to false and privileged to true"
    // and "... and capabilities.Add CAP_SYS_ADMIN".
    if (sc?.allowPrivilegeEscalation === false) {
      assert.notEqual(sc.privileged, true, where);
      assert.ok(
        !caps.includes('SYS_ADMIN'),
        `${where}: SYS_ADMIN needs allowPrivilegeEscalation unset or true`,
      );
    }
    // Every volume mount names a volume of the pod, and ports are named uniquely, in 15 characters.
    const volumes = new Set((podSpec(workload).volumes ?? []).map((v) => v.name));
    for (const m of c.volumeMounts ?? []) assert.ok(volumes.has(m.name), `${where}: ${m.name}`);
    const portNames = (c.ports ?? []).map((p) => p.name ?? '');
    assert.equal(new Set(portNames).size, portNames.length, where);
    for (const n of portNames) assert.ok(n.length <= 15, `${where}: port name ${n} is longer than 15`);
    // Requests on every container: the scheduler places pods by them.
    assert.ok(c.resources?.requests?.cpu && c.resources.requests.memory, `${where}: resource requests`);
  }
});

test('every pod runs as a service account the manifests create (or the template does)', () => {
  const accounts = new Set(
    all
      .filter((l) => l.obj.kind === 'ServiceAccount')
      .map((l) => `${l.obj.metadata?.namespace}/${l.obj.metadata?.name}`),
  );
  for (const { where, workload } of allContainers(all)) {
    const sa = `${workload.metadata?.namespace}/${podSpec(workload).serviceAccountName}`;
    assert.ok(accounts.has(sa), `${where}: service account ${sa}`);
  }
});
