/**
 * Issue 8 part 3: the status the reconciler writes for Gateway API ingress — HTTPRoute parents
 * (other controllers' entries kept, times kept while a condition holds) and an ingress Gateway's
 * conditions and addresses.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  decodeIngressGateway,
  ingressGatewayStatus,
  routeStatus,
} from '../../../src/controller/reconcile/gateway-api.ts';
import type { GatewayApiRouteParentStatus } from '../../../src/controller/translate/l7/gateway-api-translate.ts';

const T0 = Date.parse('2026-11-22T08:00:00Z');
const T1 = Date.parse('2026-11-22T09:00:00Z');
const parentRef = {
  group: 'gateway.networking.k8s.io',
  kind: 'Gateway',
  namespace: 'default',
  name: 'web',
  sectionName: 'http',
  port: undefined,
};
const parent = (accepted: boolean): GatewayApiRouteParentStatus => ({
  parentRef,
  conditions: [
    {
      type: 'Accepted',
      status: accepted ? 'True' : 'False',
      reason: accepted ? 'Accepted' : 'NoMatchingListenerHostname',
      message: 'm',
    },
    { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: 'r' },
  ],
});

test('route parents: ours replaced, other controllers kept, times kept while a condition holds', () => {
  const istio = {
    parentRef: { name: 'other' },
    controllerName: 'istio.io/gateway-controller',
    conditions: [],
  };
  const route = {
    metadata: { name: 'r', namespace: 'default', generation: 3 },
    status: { parents: [istio] },
  };
  const first = routeStatus(route, [parent(false)], T0);
  const parents = first.parents as Record<string, unknown>[];
  assert.deepEqual(parents[0], istio);
  assert.deepEqual(parents[1]!.parentRef, {
    group: 'gateway.networking.k8s.io',
    kind: 'Gateway',
    namespace: 'default',
    name: 'web',
    sectionName: 'http',
  });
  assert.equal(parents[1]!.controllerName, 'ambit.dev/gateway-controller');
  const conditions = parents[1]!.conditions as Record<string, unknown>[];
  assert.deepEqual(
    conditions.map((c) => [c.type, c.status, c.observedGeneration, c.lastTransitionTime]),
    [
      ['Accepted', 'False', 3, '2026-11-22T08:00:00Z'],
      ['ResolvedRefs', 'True', 3, '2026-11-22T08:00:00Z'],
    ],
  );
  // An hour later the route is accepted: only Accepted gets a new time.
  const second = routeStatus({ ...route, status: first }, [parent(true)], T1);
  const again = (
    (second.parents as Record<string, unknown>[])[1]!.conditions as Record<string, unknown>[]
  ).map((c) => [c.type, c.status, c.lastTransitionTime]);
  assert.deepEqual(again, [
    ['Accepted', 'True', '2026-11-22T09:00:00Z'],
    ['ResolvedRefs', 'True', '2026-11-22T08:00:00Z'],
  ]);
  assert.equal((second.parents as unknown[]).length, 2);
  // No ambit parent now or before: the status is left as it is; ours going away removes ours only.
  const gamma = { metadata: { name: 'g' }, status: { parents: [istio] } };
  assert.equal(routeStatus(gamma, [], T1), gamma.status);
  assert.deepEqual(routeStatus({ ...route, status: first }, [], T1).parents, [istio]);
});

test('ingress Gateway: decoded by class; Programmed on a ready replica; LoadBalancer addresses, else the Service name', () => {
  const raw = {
    metadata: { name: 'web', namespace: 'shop', uid: 'u1', generation: 2 },
    spec: { gatewayClassName: 'ambit', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] },
  };
  assert.equal(decodeIngressGateway({ ...raw, spec: { ...raw.spec, gatewayClassName: 'istio' } }), undefined);
  const gw = decodeIngressGateway(raw)!;
  assert.deepEqual(gw.listeners, [{ name: 'http', port: 80, protocol: 'HTTP' }]);
  const options = { clusterDomain: 'cluster.local', nowMs: T0 };
  const conds = (s: Record<string, unknown>) =>
    (s.conditions as Record<string, unknown>[]).map(
      (c) => `${String(c.type)}=${String(c.status)} ${String(c.reason)}`,
    );
  const pending = ingressGatewayStatus(gw, {}, undefined, options);
  assert.deepEqual(conds(pending), ['Accepted=True Accepted', 'Programmed=False NoResources']);
  assert.deepEqual(pending.addresses, [{ type: 'Hostname', value: 'web-ambit.shop.svc.cluster.local' }]);
  const ready = ingressGatewayStatus(
    gw,
    {
      deployment: { status: { readyReplicas: 1 } },
      service: {
        status: { loadBalancer: { ingress: [{ ip: '203.0.113.7' }, { hostname: 'lb.example.com' }] } },
      },
    },
    undefined,
    options,
  );
  assert.deepEqual(conds(ready), ['Accepted=True Accepted', 'Programmed=True Programmed']);
  assert.deepEqual(ready.addresses, [
    { type: 'IPAddress', value: '203.0.113.7' },
    { type: 'Hostname', value: 'lb.example.com' },
  ]);
  const rejected = ingressGatewayStatus(gw, { rejected: ['metadata.name: too long'] }, undefined, options);
  assert.deepEqual(conds(rejected), ['Accepted=False Invalid', 'Programmed=False Invalid']);
  assert.deepEqual(rejected.addresses, []);
});
