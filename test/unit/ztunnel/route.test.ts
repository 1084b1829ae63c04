import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MeshState } from '../../../src/core/state/mesh-state.ts';
import type { Workload } from '../../../src/core/xds/model.ts';
import { routeOutbound, type OutboundRoute, type OutboundTarget } from '../../../src/ztunnel/proxy/route.ts';
import {
  mesh,
  service,
  spiffe,
  waypointByAddress,
  waypointByHost,
  workload,
} from '../../fixtures/mesh-config.ts';

const REVIEWS = 'default/reviews.default.svc.cluster.local';
const LEGACY = 'default/legacy.default.svc.cluster.local';
const PRODUCTPAGE = 'default/productpage.default.svc.cluster.local';
const WAYPOINT = 'default/waypoint.default.svc.cluster.local';
const V6 = 'default/v6.default.svc.cluster.local';

const curl = workload({ name: 'curl', serviceAccount: 'curl', addresses: ['10.0.0.2'] });
const reviewsV1 = workload({
  name: 'reviews-v1',
  serviceAccount: 'bookinfo-reviews',
  addresses: ['10.0.1.5'],
  services: { [REVIEWS]: { 80: 9080 } },
});
const reviewsV2 = workload({
  name: 'reviews-v2',
  serviceAccount: 'bookinfo-reviews',
  addresses: ['10.0.1.6'],
  services: { [REVIEWS]: { 80: 9080 } },
  healthy: false,
});
const reviewsV3 = workload({
  name: 'reviews-v3',
  serviceAccount: 'bookinfo-reviews-v3',
  addresses: ['10.0.1.7'],
  services: { [REVIEWS]: { 80: 9080 } },
});
const legacy = workload({
  name: 'legacy',
  serviceAccount: 'legacy',
  addresses: ['10.0.2.1'],
  tunnelProtocol: 'NONE',
  services: { [LEGACY]: { 3306: 3307 } },
});
const productpage = workload({
  name: 'productpage',
  serviceAccount: 'bookinfo-productpage',
  addresses: ['10.0.1.3'],
  services: { [PRODUCTPAGE]: { 9080: 9080 } },
});
const waypoint = workload({
  name: 'waypoint',
  serviceAccount: 'waypoint',
  addresses: ['10.0.3.1'],
  services: { [WAYPOINT]: { 15008: 15008 } },
});
const ratings = workload({
  name: 'ratings',
  serviceAccount: 'bookinfo-ratings',
  addresses: ['10.0.1.8'],
  waypoint: waypointByAddress('10.96.0.9'),
});
const orphan = workload({
  name: 'orphan',
  addresses: ['10.0.1.9'],
  waypoint: waypointByHost('default', 'gone.default.svc.cluster.local'),
});
const v6pod = workload({ name: 'v6pod', addresses: ['fd00::5'], services: { [V6]: { 80: 8080 } } });

const reviewsSvc = service({
  name: 'reviews',
  vips: ['10.96.0.3'],
  ports: { 80: 9080 },
  subjectAltNames: [spiffe('default', 'reviews-extra'), spiffe('default', 'bookinfo-reviews')],
});
const legacySvc = service({ name: 'legacy', vips: ['10.96.0.4'], ports: { 3306: 3307 } });
const emptySvc = service({ name: 'empty', vips: ['10.96.0.5'], ports: { 80: 80 } });
const portlessSvc = service({ name: 'portless', vips: ['10.96.0.6'] });
const productpageSvc = service({
  name: 'productpage',
  vips: ['10.96.0.1'],
  ports: { 9080: 9080 },
  waypoint: waypointByHost('default', 'waypoint.default.svc.cluster.local'),
});
const waypointSvc = service({
  name: 'waypoint',
  vips: ['10.96.0.9'],
  ports: { 15008: 15008 },
  subjectAltNames: [spiffe('default', 'waypoint-extra')],
});
const brokenWaypointSvc = service({
  name: 'broken',
  vips: ['10.96.0.10'],
  ports: { 80: 80 },
  waypoint: waypointByHost('default', 'gone.default.svc.cluster.local'),
});
const v6Svc = service({ name: 'v6', vips: ['fd00:96::1'], ports: { 80: 8080 } });
/** A ServiceEntry host with no VIP, bound to a waypoint (istio-samples 25, the egress waypoint). */
const externalSvc = service({
  name: 'httpbin.org',
  vips: [],
  ports: { 80: 80 },
  waypoint: waypointByHost('default', 'waypoint.default.svc.cluster.local'),
});

const config = mesh({
  workloads: [curl, reviewsV1, reviewsV2, reviewsV3, legacy, productpage, waypoint, ratings, orphan, v6pod],
  services: [
    reviewsSvc,
    legacySvc,
    emptySvc,
    portlessSvc,
    productpageSvc,
    waypointSvc,
    brokenWaypointSvc,
    v6Svc,
    { ...externalSvc, hostname: 'httpbin.org' },
  ],
});

const ip = (addr: string, port: number): OutboundTarget => ({ kind: 'ip', ip: addr, port });
const host = (hostname: string, port: number): OutboundTarget => ({ kind: 'hostname', hostname, port });

/** The parts of a route worth comparing: the workload and service by name instead of whole objects. */
function summary(r: OutboundRoute): Record<string, unknown> {
  if (r.kind === 'hbone') {
    return {
      kind: r.kind,
      dst: `${r.dstIp}:${r.dstPort}`,
      authority: r.authority,
      expectedIdentities: r.expectedIdentities,
      workload: r.workload.name,
      service: r.service?.name,
      viaWaypoint: r.viaWaypoint,
    };
  }
  if (r.kind === 'tcp') {
    return {
      kind: r.kind,
      dst: `${r.dstIp}:${r.dstPort}`,
      workload: r.workload?.name,
      service: r.service?.name,
    };
  }
  if (r.kind === 'unreachable') return { kind: r.kind, reason: r.reason, service: r.service?.name };
  return { kind: r.kind, reason: r.reason };
}

interface Case {
  name: string;
  source?: Workload;
  target: OutboundTarget;
  want: Record<string, unknown>;
}

const toReviewsV1 = {
  kind: 'hbone',
  dst: '10.0.1.5:15008',
  authority: '10.0.1.5:9080',
  expectedIdentities: [spiffe('default', 'bookinfo-reviews'), spiffe('default', 'reviews-extra')],
  workload: 'reviews-v1',
  service: 'reviews',
  viaWaypoint: false,
};

const viaServiceWaypoint = (authority: string) => ({
  kind: 'hbone',
  dst: '10.0.3.1:15008',
  authority,
  expectedIdentities: [spiffe('default', 'waypoint'), spiffe('default', 'waypoint-extra')],
  workload: 'waypoint',
  service: 'productpage',
  viaWaypoint: true,
});

const cases: Case[] = [
  {
    name: 'a VIP-less host bound to a waypoint: HBONE to the waypoint, authority hostname:port',
    target: host('httpbin.org', 80),
    want: { ...viaServiceWaypoint('httpbin.org:80'), service: 'httpbin.org' },
  },
  {
    name: 'VIP → HBONE to the pod on 15008, authority podIP:targetPort, workload + service SANs (deduplicated)',
    target: ip('10.96.0.3', 80),
    want: toReviewsV1,
  },
  {
    name: 'FQDN → same as the VIP',
    target: host('reviews.default.svc.cluster.local', 80),
    want: toReviewsV1,
  },
  { name: 'bare name in the client namespace', target: host('reviews', 80), want: toReviewsV1 },
  { name: 'name.namespace', target: host('reviews.default', 80), want: toReviewsV1 },
  {
    name: 'pod IP → HBONE directly with only the workload identity',
    target: ip('10.0.1.5', 9080),
    want: {
      ...toReviewsV1,
      expectedIdentities: [spiffe('default', 'bookinfo-reviews')],
      service: undefined,
    },
  },
  {
    name: 'pod IP keeps the requested port (no service to translate it)',
    target: ip('10.0.1.5', 80),
    want: {
      ...toReviewsV1,
      authority: '10.0.1.5:80',
      expectedIdentities: [spiffe('default', 'bookinfo-reviews')],
      service: undefined,
    },
  },
  {
    name: 'IPv6 pod via VIP → bracketed authority',
    target: ip('fd00:96::1', 80),
    want: {
      kind: 'hbone',
      dst: 'fd00::5:15008',
      authority: '[fd00::5]:8080',
      expectedIdentities: [spiffe('default', 'default')],
      workload: 'v6pod',
      service: 'v6',
      viaWaypoint: false,
    },
  },
  {
    name: 'TCP (protocol NONE) workload by pod IP → plain TCP',
    target: ip('10.0.2.1', 3306),
    want: { kind: 'tcp', dst: '10.0.2.1:3306', workload: 'legacy', service: undefined },
  },
  {
    name: 'TCP (protocol NONE) workload by VIP → plain TCP to the target port',
    target: ip('10.96.0.4', 3306),
    want: { kind: 'tcp', dst: '10.0.2.1:3307', workload: 'legacy', service: 'legacy' },
  },
  {
    name: 'unknown IP → passthrough TCP',
    target: ip('8.8.8.8', 443),
    want: { kind: 'tcp', dst: '8.8.8.8:443', workload: undefined, service: undefined },
  },
  {
    name: 'unknown hostname → unreachable',
    target: host('nope.default.svc.cluster.local', 80),
    want: {
      kind: 'unreachable',
      reason: 'no service named nope.default.svc.cluster.local',
      service: undefined,
    },
  },
  {
    name: 'bare name of a service in another namespace → unreachable',
    target: host('reviews', 80),
    source: workload({ name: 'other', namespace: 'other', addresses: ['10.0.9.9'] }),
    want: { kind: 'unreachable', reason: 'no service named reviews', service: undefined },
  },
  {
    name: 'service without endpoints → unreachable',
    target: ip('10.96.0.5', 80),
    want: {
      kind: 'unreachable',
      reason: 'service empty.default.svc.cluster.local has no healthy endpoint',
      service: 'empty',
    },
  },
  {
    name: 'service port not declared → unreachable',
    target: ip('10.96.0.3', 9080),
    want: {
      kind: 'unreachable',
      reason: 'service reviews.default.svc.cluster.local has no port 9080',
      service: 'reviews',
    },
  },
  {
    name: 'a service with no ports accepts any port (and still needs an endpoint)',
    target: ip('10.96.0.6', 1234),
    want: {
      kind: 'unreachable',
      reason: 'service portless.default.svc.cluster.local has no healthy endpoint',
      service: 'portless',
    },
  },
  ...[15001, 15006, 15008, 15080].map((port) => ({
    name: `illegal port ${port} to an unknown IP → refused`,
    target: ip('192.0.2.1', port),
    want: { kind: 'refused', reason: `port ${port} is reserved for the mesh` },
  })),
  {
    name: 'illegal port to a mesh pod → refused',
    target: ip('10.0.1.5', 15008),
    want: { kind: 'refused', reason: 'port 15008 is reserved for the mesh' },
  },
  {
    name: 'a non-reserved port next to them passes through',
    target: ip('192.0.2.1', 15007),
    want: { kind: 'tcp', dst: '192.0.2.1:15007', workload: undefined, service: undefined },
  },
  {
    name: 'a workload waypoint that cannot be resolved fails closed (never around it)',
    target: ip('10.0.1.9', 80),
    want: { kind: 'unreachable', reason: 'waypoint of orphan has no endpoint', service: undefined },
  },
  {
    name: 'service waypoint → HBONE to the waypoint with authority VIP:port',
    target: ip('10.96.0.1', 9080),
    want: viaServiceWaypoint('10.96.0.1:9080'),
  },
  {
    name: 'service waypoint by hostname → authority is the VIP, not the name',
    target: host('productpage', 9080),
    want: viaServiceWaypoint('10.96.0.1:9080'),
  },
  {
    name: 'the waypoint itself as source skips its service waypoint',
    source: waypoint,
    target: ip('10.96.0.1', 9080),
    want: {
      kind: 'hbone',
      dst: '10.0.1.3:15008',
      authority: '10.0.1.3:9080',
      expectedIdentities: [spiffe('default', 'bookinfo-productpage')],
      workload: 'productpage',
      service: 'productpage',
      viaWaypoint: false,
    },
  },
  {
    name: 'a service waypoint does not take pod-addressed traffic',
    target: ip('10.0.1.3', 9080),
    want: {
      kind: 'hbone',
      dst: '10.0.1.3:15008',
      authority: '10.0.1.3:9080',
      expectedIdentities: [spiffe('default', 'bookinfo-productpage')],
      workload: 'productpage',
      service: undefined,
      viaWaypoint: false,
    },
  },
  {
    name: 'workload waypoint → HBONE to the waypoint with authority podIP:port',
    target: ip('10.0.1.8', 9080),
    want: {
      kind: 'hbone',
      dst: '10.0.3.1:15008',
      authority: '10.0.1.8:9080',
      expectedIdentities: [spiffe('default', 'waypoint'), spiffe('default', 'waypoint-extra')],
      workload: 'waypoint',
      service: undefined,
      viaWaypoint: true,
    },
  },
  {
    name: 'the waypoint itself as source skips the workload waypoint',
    source: waypoint,
    target: ip('10.0.1.8', 9080),
    want: {
      kind: 'hbone',
      dst: '10.0.1.8:15008',
      authority: '10.0.1.8:9080',
      expectedIdentities: [spiffe('default', 'bookinfo-ratings')],
      workload: 'ratings',
      service: undefined,
      viaWaypoint: false,
    },
  },
  {
    name: 'a service waypoint without endpoints → unreachable',
    target: ip('10.96.0.10', 80),
    want: {
      kind: 'unreachable',
      reason: 'waypoint of broken.default.svc.cluster.local has no endpoint',
      service: 'broken',
    },
  },
];

for (const c of cases) {
  test(`routeOutbound: ${c.name}`, () => {
    const state = new MeshState(config);
    assert.deepEqual(summary(routeOutbound(state, c.source ?? curl, c.target)), c.want);
  });
}

test('routeOutbound round-robins service traffic over healthy endpoints', () => {
  const state = new MeshState(config);
  const picks = Array.from({ length: 4 }, () => {
    const r = routeOutbound(state, curl, ip('10.96.0.3', 80));
    return r.kind === 'hbone' ? [r.dstIp, r.expectedIdentities] : r.kind;
  });
  const v1 = ['10.0.1.5', [spiffe('default', 'bookinfo-reviews'), spiffe('default', 'reviews-extra')]];
  const v3 = [
    '10.0.1.7',
    [
      spiffe('default', 'bookinfo-reviews-v3'),
      spiffe('default', 'reviews-extra'),
      spiffe('default', 'bookinfo-reviews'),
    ],
  ];
  assert.deepEqual(picks, [v1, v3, v1, v3]);
});

test('routeOutbound looks VIPs up on the source network', () => {
  const onNet1 = workload({ name: 'n1', addresses: ['10.0.0.2'], network: 'net1' });
  const svc1 = service({ name: 's1', vips: ['net1/10.96.5.5'], ports: { 80: 80 } });
  const svc0 = service({ name: 's0', vips: ['10.96.5.5'], ports: { 80: 80 } });
  const ep = (name: string, addr: string, network: string, key: string) =>
    workload({ name, addresses: [addr], network, services: { [key]: {} } });
  const state = new MeshState(
    mesh({
      workloads: [
        onNet1,
        ep('e1', '10.1.0.1', 'net1', 'default/s1.default.svc.cluster.local'),
        ep('e0', '10.1.0.2', '', 'default/s0.default.svc.cluster.local'),
      ],
      services: [svc1, svc0],
    }),
  );
  const r1 = routeOutbound(state, onNet1, ip('10.96.5.5', 80));
  const r0 = routeOutbound(state, curl, ip('10.96.5.5', 80));
  assert.equal(r1.kind === 'hbone' && r1.service?.name, 's1');
  assert.equal(r0.kind === 'hbone' && r0.service?.name, 's0');
});

test('routeOutbound prefers a VIP service in the client namespace', () => {
  const mine = service({ name: 'mine', namespace: 'team', vips: ['10.96.7.7'], ports: { 80: 80 } });
  const theirs = service({ name: 'theirs', namespace: 'default', vips: ['10.96.7.7'], ports: { 80: 80 } });
  const client = workload({ name: 'client', namespace: 'team', addresses: ['10.0.7.1'] });
  const state = new MeshState(
    mesh({
      workloads: [
        client,
        workload({
          name: 'a',
          addresses: ['10.0.7.2'],
          services: { 'team/mine.team.svc.cluster.local': {} },
        }),
        workload({
          name: 'b',
          addresses: ['10.0.7.3'],
          services: { 'default/theirs.default.svc.cluster.local': {} },
        }),
      ],
      services: [theirs, mine],
    }),
  );
  const r = routeOutbound(state, client, ip('10.96.7.7', 80));
  assert.equal(r.kind === 'hbone' && r.dstIp, '10.0.7.2');
  const fromDefault = routeOutbound(state, curl, ip('10.96.7.7', 80));
  assert.equal(fromDefault.kind === 'hbone' && fromDefault.dstIp, '10.0.7.3');
});
