import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MeshState } from '../../../src/core/state/mesh-state.ts';
import type { Authorization } from '../../../src/core/xds/model.ts';
import { mesh, service, waypointByAddress, waypointByHost, workload } from '../../fixtures/mesh-config.ts';

const reviewsDefault = service({ name: 'reviews', namespace: 'default', vips: ['10.96.0.3'] });
const reviewsOther = service({ name: 'reviews', namespace: 'other', vips: ['10.96.1.3'] });
const ratingsOther = service({ name: 'ratings', namespace: 'other', vips: ['10.96.1.4'] });
const external = service({ name: 'ext', namespace: 'other', hostname: 'api.example.com' });
const externalDefault = service({ name: 'ext', namespace: 'default', hostname: 'api.example.com' });

const hostState = new MeshState(
  mesh({ services: [reviewsDefault, reviewsOther, ratingsOther, external, externalDefault] }),
);

const hostnameCases: { name: string; clientNs: string; want: string | undefined }[] = [
  {
    name: 'reviews.default.svc.cluster.local',
    clientNs: 'other',
    want: 'default/reviews.default.svc.cluster.local',
  },
  {
    name: 'reviews.default.svc.cluster.local.',
    clientNs: 'other',
    want: 'default/reviews.default.svc.cluster.local',
  },
  {
    name: 'Reviews.Default.SVC.cluster.local',
    clientNs: 'x',
    want: 'default/reviews.default.svc.cluster.local',
  },
  { name: 'reviews.default', clientNs: 'other', want: 'default/reviews.default.svc.cluster.local' },
  { name: 'reviews.default.svc', clientNs: 'other', want: 'default/reviews.default.svc.cluster.local' },
  { name: 'reviews', clientNs: 'default', want: 'default/reviews.default.svc.cluster.local' },
  { name: 'reviews', clientNs: 'other', want: 'other/reviews.other.svc.cluster.local' },
  { name: 'reviews', clientNs: 'istio-system', want: undefined },
  { name: 'ratings', clientNs: 'default', want: undefined },
  { name: 'ratings.other', clientNs: 'default', want: 'other/ratings.other.svc.cluster.local' },
  { name: 'ratings.other.svc.cluster', clientNs: 'default', want: undefined },
  { name: 'ratings.other.cluster.local', clientNs: 'default', want: undefined },
  { name: 'ratings.other.svc.cluster.local.example', clientNs: 'default', want: undefined },
  { name: 'api.example.com', clientNs: 'default', want: 'default/api.example.com' },
  { name: 'api.example.com', clientNs: 'other', want: 'other/api.example.com' },
  { name: 'api.example.com', clientNs: 'third', want: 'other/api.example.com' },
  { name: 'nothing', clientNs: 'default', want: undefined },
];

for (const c of hostnameCases) {
  test(`serviceByHostname(${JSON.stringify(c.name)}) from ${c.clientNs} is ${String(c.want)}`, () => {
    const s = hostState.serviceByHostname(c.name, c.clientNs);
    assert.equal(s && `${s.namespace}/${s.hostname}`, c.want);
  });
}

const sharedVipA = service({ name: 'a', namespace: 'ns-a', vips: ['10.96.0.50'] });
const sharedVipB = service({ name: 'b', namespace: 'ns-b', vips: ['10.96.0.50'] });
const onNet1 = service({ name: 'n1', namespace: 'ns-a', vips: ['net1/10.96.0.60'] });
const onNet2 = service({ name: 'n2', namespace: 'ns-a', vips: ['net2/10.96.0.60'] });
const vipState = new MeshState(mesh({ services: [sharedVipA, sharedVipB, onNet1, onNet2] }));

const vipCases: { ip: string; clientNs: string; network?: string; want: string | undefined }[] = [
  { ip: '10.96.0.50', clientNs: 'ns-a', want: 'a' },
  { ip: '10.96.0.50', clientNs: 'ns-b', want: 'b' },
  { ip: '10.96.0.50', clientNs: 'ns-c', want: 'a' },
  { ip: '10.96.0.51', clientNs: 'ns-a', want: undefined },
  { ip: '10.96.0.50', clientNs: 'ns-a', network: 'net1', want: undefined },
  { ip: '10.96.0.60', clientNs: 'ns-a', network: 'net1', want: 'n1' },
  { ip: '10.96.0.60', clientNs: 'ns-a', network: 'net2', want: 'n2' },
  { ip: '10.96.0.60', clientNs: 'ns-a', want: undefined },
];

for (const c of vipCases) {
  test(`serviceByVip(${c.ip}, ${c.clientNs}, ${JSON.stringify(c.network ?? '')}) is ${String(c.want)}`, () => {
    assert.equal(vipState.serviceByVip(c.ip, c.clientNs, c.network)?.name, c.want);
  });
}

const svcKey = 'default/reviews.default.svc.cluster.local';
const reviews = service({ name: 'reviews', vips: ['10.96.0.3'], ports: { 80: 9080, 81: 9081 } });

test('pickEndpoint round-robins over healthy endpoints, skipping unhealthy ones', () => {
  const state = new MeshState(
    mesh({
      services: [reviews],
      workloads: [
        workload({ name: 'v1', addresses: ['10.0.1.1'], services: { [svcKey]: { 80: 9080 } } }),
        workload({
          name: 'v2',
          addresses: ['10.0.1.2'],
          services: { [svcKey]: { 80: 9080 } },
          healthy: false,
        }),
        workload({ name: 'v3', addresses: ['10.0.1.3'], services: { [svcKey]: { 80: 9080 } } }),
        workload({ name: 'v4', addresses: ['10.0.1.4'], services: { [svcKey]: { 80: 9080 } }, capacity: 0 }),
        workload({ name: 'v5', hostname: 'no-ip.example', services: { [svcKey]: { 80: 9080 } } }),
        workload({ name: 'v6', addresses: ['10.0.1.6'], services: { [svcKey]: { 80: 9080 } } }),
        workload({ name: 'other', addresses: ['10.0.1.9'] }),
      ],
    }),
  );
  const picks = Array.from({ length: 7 }, () => state.pickEndpoint(reviews, 80)?.workload.name);
  assert.deepEqual(picks, ['v1', 'v3', 'v6', 'v1', 'v3', 'v6', 'v1']);
});

test('pickEndpoint keeps a cursor per service', () => {
  const other = service({ name: 'other', vips: ['10.96.0.4'] });
  const otherKey = 'default/other.default.svc.cluster.local';
  const state = new MeshState(
    mesh({
      services: [reviews, other],
      workloads: [
        workload({ name: 'a', addresses: ['10.0.1.1'], services: { [svcKey]: {}, [otherKey]: {} } }),
        workload({ name: 'b', addresses: ['10.0.1.2'], services: { [svcKey]: {}, [otherKey]: {} } }),
      ],
    }),
  );
  assert.equal(state.pickEndpoint(reviews, 80)?.workload.name, 'a');
  assert.equal(state.pickEndpoint(other, 80)?.workload.name, 'a');
  assert.equal(state.pickEndpoint(reviews, 80)?.workload.name, 'b');
  assert.equal(state.pickEndpoint(other, 80)?.workload.name, 'b');
});

test('pickEndpoint returns undefined when every endpoint is unhealthy', () => {
  const state = new MeshState(
    mesh({
      services: [reviews],
      workloads: [
        workload({ name: 'v1', addresses: ['10.0.1.1'], services: { [svcKey]: {} }, healthy: false }),
      ],
    }),
  );
  assert.equal(state.pickEndpoint(reviews, 80), undefined);
});

test('pickEndpoint returns undefined for a service without endpoints', () => {
  const state = new MeshState(mesh({ services: [reviews] }));
  assert.equal(state.pickEndpoint(reviews, 80), undefined);
  assert.deepEqual(state.endpoints(reviews), []);
});

const targetPortCases: {
  name: string;
  endpointPorts: Record<number, number>;
  servicePort: number;
  want: number | undefined;
}[] = [
  { name: "the endpoint's map wins", endpointPorts: { 80: 8080 }, servicePort: 80, want: 8080 },
  { name: "else the service's map", endpointPorts: { 81: 7000 }, servicePort: 80, want: 9080 },
  {
    name: 'an empty endpoint map falls back to the service map',
    endpointPorts: {},
    servicePort: 81,
    want: 9081,
  },
  { name: 'else the port itself', endpointPorts: {}, servicePort: 7777, want: 7777 },
  {
    name: 'an endpoint serving neither the port nor a service port is skipped',
    endpointPorts: { 81: 7000 },
    servicePort: 7777,
    want: undefined,
  },
];

for (const c of targetPortCases) {
  test(`pickEndpoint target port: ${c.name}`, () => {
    const state = new MeshState(
      mesh({
        services: [reviews],
        workloads: [
          workload({ name: 'v1', addresses: ['10.0.1.1'], services: { [svcKey]: c.endpointPorts } }),
        ],
      }),
    );
    assert.equal(state.pickEndpoint(reviews, c.servicePort)?.targetPort, c.want);
  });
}

test('workloadByIp: a Pod wins over another kind sharing the IP, in either order', () => {
  const vm = workload({ name: 'vm', uid: 'c1//WorkloadEntry/default/vm', addresses: ['10.0.0.7'] });
  const pod = workload({ name: 'pod', addresses: ['10.0.0.7'] });
  assert.equal(new MeshState(mesh({ workloads: [vm, pod] })).workloadByIp('10.0.0.7')?.name, 'pod');
  assert.equal(new MeshState(mesh({ workloads: [pod, vm] })).workloadByIp('10.0.0.7')?.name, 'pod');
});

test('workloadByIp is keyed by network', () => {
  const state = new MeshState(
    mesh({
      workloads: [
        workload({ name: 'a', addresses: ['10.0.0.7'], network: 'n1' }),
        workload({ name: 'b', addresses: ['10.0.0.7'] }),
      ],
    }),
  );
  assert.equal(state.workloadByIp('10.0.0.7', 'n1')?.name, 'a');
  assert.equal(state.workloadByIp('10.0.0.7')?.name, 'b');
  assert.equal(state.workloadByIp('10.0.0.7', 'n2'), undefined);
});

test('workloadsOnNode and workloadByUid', () => {
  const a = workload({ name: 'a', node: 'node-1', addresses: ['10.0.0.1'] });
  const b = workload({ name: 'b', node: 'node-2', addresses: ['10.0.0.2'] });
  const state = new MeshState(mesh({ workloads: [a, b] }));
  assert.deepEqual(
    state.workloadsOnNode('node-2').map((w) => w.name),
    ['b'],
  );
  assert.equal(state.workloadByUid('local//Pod/default/a'), a);
  assert.equal(state.workloadByUid('nope'), undefined);
});

function pol(namespace: string, name: string, scope: Authorization['scope']): Authorization {
  return { namespace, name, scope, action: 'Allow', rules: [], dryRun: false };
}

test('policiesFor: namespace-scoped in its namespace, global, then listed selector policies', () => {
  const policies = [
    pol('default', 'ns-wide', 'Namespace'),
    pol('other', 'ns-other', 'Namespace'),
    pol('istio-system', 'mesh-wide', 'Global'),
    pol('default', 'selected', 'WorkloadSelector'),
    pol('default', 'not-selected', 'WorkloadSelector'),
  ];
  const w = workload({
    name: 'a',
    addresses: ['10.0.0.1'],
    authorizationPolicies: ['default/selected', 'default/missing-yet'],
  });
  const state = new MeshState(mesh({ workloads: [w], policies }));
  assert.deepEqual(
    state.policiesFor(w).map((p) => `${p.namespace}/${p.name}`),
    ['default/ns-wide', 'istio-system/mesh-wide', 'default/selected'],
  );
});

test('resolveGateway by hostname picks an endpoint of the waypoint service', () => {
  const wpKey = 'default/waypoint.default.svc.cluster.local';
  const wpSvc = service({ name: 'waypoint', vips: ['10.96.0.9'], ports: { 15008: 15008 } });
  const wp = workload({ name: 'waypoint', addresses: ['10.0.3.1'], services: { [wpKey]: { 15008: 15008 } } });
  const state = new MeshState(mesh({ workloads: [wp], services: [wpSvc] }));
  assert.deepEqual(
    state.resolveGateway(waypointByHost('default', 'waypoint.default.svc.cluster.local'), 'x'),
    {
      workload: wp,
      service: wpSvc,
    },
  );
  assert.deepEqual(state.resolveGateway(waypointByAddress('10.96.0.9'), 'x'), {
    workload: wp,
    service: wpSvc,
  });
  assert.deepEqual(state.resolveGateway(waypointByAddress('10.0.3.1'), 'x'), {
    workload: wp,
    service: undefined,
  });
  assert.equal(
    state.resolveGateway(waypointByHost('default', 'missing.default.svc.cluster.local'), 'x'),
    undefined,
  );
  assert.equal(state.resolveGateway(waypointByAddress('10.96.0.99'), 'x'), undefined);
});
