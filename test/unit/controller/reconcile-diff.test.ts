/**
 * Issue 7 part 2: the diff between the desired waypoint objects and the cluster's — create what is
 * missing, replace what was rendered differently (keeping what the server assigned), delete what is
 * ours and no longer wanted, and never touch what is not ours.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { diffWaypointObjects } from '../../../src/controller/reconcile/diff.ts';
import {
  MANAGED_BY,
  MANAGED_BY_LABEL,
  RENDERED_HASH_ANNOTATION,
  type KubeJson,
} from '../../../src/controller/reconcile/objects.ts';

const OWNER = {
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'Gateway',
  name: 'waypoint',
  uid: 'u1',
  controller: true,
};

function obj(
  kind: string,
  name: string,
  hash: string,
  extra: {
    owner?: KubeJson | null;
    managed?: boolean;
    rv?: string;
    spec?: KubeJson;
    namespace?: string;
  } = {},
): KubeJson {
  return {
    apiVersion: kind === 'Deployment' ? 'apps/v1' : 'v1',
    kind,
    metadata: {
      name,
      namespace: extra.namespace ?? 'default',
      uid: `uid-${name}`,
      ...(extra.rv && { resourceVersion: extra.rv }),
      labels: {
        'gateway.networking.k8s.io/gateway-name': 'waypoint',
        ...(extra.managed !== false && { [MANAGED_BY_LABEL]: MANAGED_BY }),
      },
      annotations: { [RENDERED_HASH_ANNOTATION]: hash },
      ...(extra.owner !== null && { ownerReferences: [extra.owner ?? OWNER] }),
    },
    ...(extra.spec && { spec: extra.spec }),
  };
}

const summary = (d: ReturnType<typeof diffWaypointObjects>) => ({
  actions: d.actions.map(
    (a) => `${a.op} ${String(a.object.kind)}/${String((a.object.metadata as KubeJson).name)} (${a.gateway})`,
  ),
  conflicts: d.conflicts.map((c) => c.key),
});

test('create, replace, keep, delete; conflicts with what is not ours', () => {
  const cases: {
    name: string;
    desired: KubeJson[];
    existing: KubeJson[];
    actions: string[];
    conflicts?: string[];
  }[] = [
    {
      name: 'nothing exists: create all, in desired order',
      desired: [obj('ServiceAccount', 'waypoint', 'a'), obj('Deployment', 'waypoint', 'b')],
      existing: [],
      actions: [
        'create ServiceAccount/waypoint (default/waypoint)',
        'create Deployment/waypoint (default/waypoint)',
      ],
    },
    {
      name: 'same hash: nothing to do, whatever the server added',
      desired: [obj('Service', 'waypoint', 'a')],
      existing: [
        obj('Service', 'waypoint', 'a', {
          rv: '7',
          spec: { clusterIP: '10.96.0.9', sessionAffinity: 'None' },
        }),
      ],
      actions: [],
    },
    {
      name: 'another hash: replace',
      desired: [obj('Deployment', 'waypoint', 'new')],
      existing: [obj('Deployment', 'waypoint', 'old', { rv: '7' })],
      actions: ['replace Deployment/waypoint (default/waypoint)'],
    },
    {
      name: 'ours and not desired (its Gateway is gone): delete',
      desired: [],
      existing: [obj('ConfigMap', 'waypoint-ca-root-cert', 'a')],
      actions: ['delete ConfigMap/waypoint-ca-root-cert (default/waypoint)'],
    },
    {
      name: 'not desired and not ours (no managed-by label): left alone',
      desired: [],
      existing: [obj('Deployment', 'istio-ingress', 'a', { managed: false })],
      actions: [],
    },
    {
      name: 'not desired, labelled but owned by nothing: left alone',
      desired: [],
      existing: [obj('Deployment', 'waypoint', 'a', { owner: null })],
      actions: [],
    },
    {
      name: 'not desired, owned but not as controller: left alone',
      desired: [],
      existing: [obj('Deployment', 'waypoint', 'a', { owner: { ...OWNER, controller: false } })],
      actions: [],
    },
    {
      name: 'desired name taken by an object not ours: a conflict, untouched',
      desired: [obj('Service', 'waypoint', 'a')],
      existing: [obj('Service', 'waypoint', 'x', { managed: false })],
      actions: [],
      conflicts: ['Service/default/waypoint'],
    },
    {
      name: 'same name in another namespace is another object',
      desired: [obj('Service', 'waypoint', 'a')],
      existing: [obj('Service', 'waypoint', 'a', { namespace: 'prod' })],
      actions: ['create Service/waypoint (default/waypoint)', 'delete Service/waypoint (prod/waypoint)'],
    },
  ];
  for (const c of cases) {
    assert.deepEqual(
      summary(diffWaypointObjects(c.desired, c.existing)),
      { actions: c.actions, conflicts: c.conflicts ?? [] },
      c.name,
    );
  }
});

test('a replace carries the resourceVersion and what the server assigned, and nothing else of the old object', () => {
  const desired = obj('Service', 'waypoint', 'new', { spec: { ports: [{ port: 15008 }] } });
  const existing = obj('Service', 'waypoint', 'old', {
    rv: '42',
    spec: {
      ports: [{ port: 1 }],
      clusterIP: '10.96.0.9',
      clusterIPs: ['10.96.0.9'],
      ipFamilies: ['IPv4'],
      ipFamilyPolicy: 'SingleStack',
      sessionAffinity: 'None',
    },
  });
  const [action] = diffWaypointObjects([desired], [existing]).actions;
  assert.equal(action?.op, 'replace');
  assert.equal((action.object.metadata as KubeJson).resourceVersion, '42');
  assert.deepEqual(action.object.spec, {
    ports: [{ port: 15008 }],
    clusterIP: '10.96.0.9',
    clusterIPs: ['10.96.0.9'],
    ipFamilies: ['IPv4'],
    ipFamilyPolicy: 'SingleStack',
  });
  const sa = diffWaypointObjects(
    [obj('ServiceAccount', 'waypoint', 'new')],
    [{ ...obj('ServiceAccount', 'waypoint', 'old'), secrets: [{ name: 'tok' }] }],
  );
  assert.deepEqual(sa.actions[0]?.object.secrets, [{ name: 'tok' }]);
});
