/**
 * Issue 7: `kubectl kustomize daemonset/` renders without error, with the kinds an install needs, and
 * the kustomizations list every object the directories hold (a file left out of kustomization.yaml
 * would silently not be installed). Needs kubectl (Debian's package: kubernetes-client).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { loadAll, parseYaml, ROOT, type KubeObject, type Loaded } from './manifests.ts';

const KUBECTL = process.env.KUBECTL ?? 'kubectl';

function kustomize(dir: string): KubeObject[] {
  const r = spawnSync(KUBECTL, ['kustomize', dir], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') {
    assert.fail(
      `${KUBECTL} is not installed: these tests render the manifests with \`kubectl kustomize\`. ` +
        'Install it (Debian: apt-get install kubernetes-client), or point KUBECTL at one.',
    );
  }
  assert.ifError(r.error);
  assert.equal(r.status, 0, `kubectl kustomize ${dir} failed:\n${r.stderr}`);
  return parseYaml(r.stdout, `kubectl kustomize ${dir}`);
}

const key = (o: KubeObject) =>
  `${String(o.kind)} ${o.metadata?.namespace ? `${String(o.metadata.namespace)}/` : ''}${String(o.metadata?.name)}`;
const keys = (objs: readonly KubeObject[]) => objs.map(key).sort();
const files = loadAll();
const under = (prefix: string, except?: string) =>
  files
    .filter((l: Loaded) => l.file.startsWith(prefix) && !(except && l.file.startsWith(except)))
    .map((l) => l.obj);
/** Optional installs under daemonset/, each with its own kustomization, not in the whole install. */
const OPTIONAL = 'daemonset/gateways/';

test('kubectl kustomize daemonset/ renders the whole install', () => {
  const objs = kustomize('daemonset/');
  const count = (kind: string) => objs.filter((o) => o.kind === kind).length;
  assert.equal(count('CustomResourceDefinition'), 10);
  for (const kind of [
    'Namespace',
    'ClusterRole',
    'ClusterRoleBinding',
    'Role',
    'RoleBinding',
    'Deployment',
    'Service',
    'PodDisruptionBudget',
    'DaemonSet',
  ]) {
    assert.equal(count(kind), 1, kind);
  }
  assert.equal(count('ServiceAccount'), 2);
  // Exactly the objects of the files under daemonset/, as written (kustomize changes nothing).
  assert.deepEqual(keys(objs), keys(under('daemonset/', OPTIONAL)));
  const ds = objs.find((o) => o.kind === 'DaemonSet')!;
  const fromFile = under('daemonset/', OPTIONAL).find((o) => o.kind === 'DaemonSet')!;
  assert.deepEqual(ds, fromFile);
});

test('daemonset/gateways/ renders the optional ingress and egress gateways, exactly its files', () => {
  const objs = kustomize(OPTIONAL);
  assert.deepEqual(keys(objs), keys(under(OPTIONAL)));
  assert.deepEqual(
    objs.filter((o) => o.kind === 'Deployment').map((o) => o.metadata?.name),
    ['istio-egressgateway', 'istio-ingressgateway'],
  );
});

test('daemonset/crds/ and daemonset/ambit/ render the two halves of the install', () => {
  assert.deepEqual(keys(kustomize('daemonset/crds/')), keys(under('daemonset/crds/')));
  assert.deepEqual(keys(kustomize('daemonset/ambit/')), keys(under('daemonset/ambit/')));
});

test('kubectl kustomize waypoint/ renders the GatewayClasses only', () => {
  assert.deepEqual(keys(kustomize('waypoint/')), keys(under('waypoint/gatewayclasses.yaml')));
});
