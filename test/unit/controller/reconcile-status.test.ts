/**
 * Issue 7 part 2: a waypoint Gateway's status — Accepted and Programmed with the Gateway API's
 * reasons and the Gateway's generation, the address from the waypoint Service, a transition time
 * that moves only with a condition's status, and no write when nothing changed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  decodeWaypointGateway,
  type KubeJson,
  type WaypointGateway,
} from '../../../src/controller/reconcile/objects.ts';
import {
  clusterIps,
  statusChanged,
  waypointStatus,
  type WaypointObservation,
} from '../../../src/controller/reconcile/status.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const T1 = T0 + 60_000;
const OPTS = { clusterDomain: 'cluster.local', nowMs: T0 };

function gw(status: KubeJson = {}, generation = 2): WaypointGateway {
  const g = decodeWaypointGateway({
    metadata: { name: 'waypoint', namespace: 'default', uid: 'u1', generation },
    spec: { gatewayClassName: 'istio-waypoint' },
    status,
  });
  assert.ok(g);
  return g;
}

const deployment = (ready: number | undefined): KubeJson => ({
  kind: 'Deployment',
  status: ready === undefined ? {} : { readyReplicas: ready },
});
const service = (spec: KubeJson): KubeJson => ({ kind: 'Service', spec });

type Row = [type: string, status: string, reason: string];
const rows = (status: KubeJson): Row[] =>
  (status.conditions as KubeJson[]).map((c) => [String(c.type), String(c.status), String(c.reason)]);

test('conditions and addresses by what the reconciler sees', () => {
  const HOST = [{ type: 'Hostname', value: 'waypoint.default.svc.cluster.local' }];
  const cases: {
    name: string;
    seen: WaypointObservation;
    conditions: Row[];
    addresses: KubeJson[];
    message?: RegExp;
  }[] = [
    {
      name: 'just created: accepted, not programmed, the host name',
      seen: {},
      conditions: [
        ['Accepted', 'True', 'Accepted'],
        ['Programmed', 'False', 'NoResources'],
      ],
      addresses: HOST,
      message: /Deployment default\/waypoint has no ready replica yet/,
    },
    {
      name: 'Service has its IP, no replica ready: the IP, still not programmed',
      seen: { deployment: deployment(0), service: service({ clusterIP: '10.96.0.50' }) },
      conditions: [
        ['Accepted', 'True', 'Accepted'],
        ['Programmed', 'False', 'NoResources'],
      ],
      addresses: [{ type: 'IPAddress', value: '10.96.0.50' }],
    },
    {
      name: "a ready replica: programmed, with istiod's message",
      seen: { deployment: deployment(1), service: service({ clusterIP: '10.96.0.50' }) },
      conditions: [
        ['Accepted', 'True', 'Accepted'],
        ['Programmed', 'True', 'Programmed'],
      ],
      addresses: [{ type: 'IPAddress', value: '10.96.0.50' }],
      message: /Resource programmed, assigned to service\(s\) waypoint\.default\.svc\.cluster\.local:15008/,
    },
    {
      name: 'dual stack: both cluster IPs',
      seen: {
        deployment: deployment(2),
        service: service({ clusterIP: '10.96.0.50', clusterIPs: ['10.96.0.50', 'fd00::50'] }),
      },
      conditions: [
        ['Accepted', 'True', 'Accepted'],
        ['Programmed', 'True', 'Programmed'],
      ],
      addresses: [
        { type: 'IPAddress', value: '10.96.0.50' },
        { type: 'IPAddress', value: 'fd00::50' },
      ],
    },
    {
      name: 'headless Service: the host name',
      seen: { deployment: deployment(1), service: service({ clusterIP: 'None' }) },
      conditions: [
        ['Accepted', 'True', 'Accepted'],
        ['Programmed', 'True', 'Programmed'],
      ],
      addresses: HOST,
    },
    {
      name: 'an object of its name belongs to someone else',
      seen: {
        deployment: deployment(1),
        conflicts: ['Service default/waypoint exists and is not managed by this controller'],
      },
      conditions: [
        ['Accepted', 'True', 'Accepted'],
        ['Programmed', 'False', 'NoResources'],
      ],
      addresses: HOST,
      message: /Service default\/waypoint exists and is not managed/,
    },
    {
      name: 'cannot be rendered: not accepted, not programmed, no address',
      seen: { rejected: ['metadata.name: "on" does not read back'] },
      conditions: [
        ['Accepted', 'False', 'Invalid'],
        ['Programmed', 'False', 'Invalid'],
      ],
      addresses: [],
      message: /metadata\.name: "on"/,
    },
  ];
  for (const c of cases) {
    const s = waypointStatus(gw(), c.seen, OPTS);
    assert.deepEqual(rows(s), c.conditions, c.name);
    assert.deepEqual(s.addresses, c.addresses, c.name);
    for (const cond of s.conditions as KubeJson[]) {
      assert.equal(cond.observedGeneration, 2, c.name);
      assert.equal(cond.lastTransitionTime, '2026-01-01T00:00:00Z', c.name);
    }
    if (c.message)
      assert.match((s.conditions as KubeJson[]).map((x) => x.message).join('\n'), c.message, c.name);
  }
});

test('lastTransitionTime moves only when the status does; other conditions and fields stay', () => {
  const first = waypointStatus(gw({ listeners: [{ name: 'mesh' }] }), { deployment: deployment(0) }, OPTS);
  const old = gw({
    ...first,
    conditions: [...(first.conditions as KubeJson[]), { type: 'ResolvedRefs', status: 'True' }],
  });
  const later = waypointStatus(old, { deployment: deployment(1) }, { ...OPTS, nowMs: T1 });
  const [accepted, programmed, other] = later.conditions as KubeJson[];
  assert.equal(accepted!.lastTransitionTime, '2026-01-01T00:00:00Z', 'Accepted stayed True');
  assert.equal(programmed!.lastTransitionTime, '2026-01-01T00:01:00Z', 'Programmed went False → True');
  assert.deepEqual(other, { type: 'ResolvedRefs', status: 'True' });
  assert.deepEqual(later.listeners, [{ name: 'mesh' }]);
});

test('a new generation is observed; nothing changed means no write, whatever the key order', () => {
  const s = waypointStatus(gw(), { deployment: deployment(1) }, OPTS);
  // As a real API server gives it back: Go's field order.
  const reordered = {
    addresses: s.addresses,
    conditions: (s.conditions as KubeJson[]).map(
      ({ type, status, observedGeneration, lastTransitionTime, reason, message }) => ({
        type,
        status,
        observedGeneration,
        lastTransitionTime,
        reason,
        message,
      }),
    ),
  };
  assert.equal(
    statusChanged(
      gw(reordered),
      waypointStatus(gw(reordered), { deployment: deployment(1) }, { ...OPTS, nowMs: T1 }),
    ),
    false,
  );
  const bumped = waypointStatus(gw(reordered, 3), { deployment: deployment(1) }, { ...OPTS, nowMs: T1 });
  assert.equal(statusChanged(gw(reordered, 3), bumped), true);
  assert.deepEqual(
    (bumped.conditions as KubeJson[]).map((c) => c.observedGeneration),
    [3, 3],
  );
});

test('clusterIps: unassigned, headless and malformed give none', () => {
  assert.deepEqual(clusterIps(undefined), []);
  assert.deepEqual(clusterIps(service({})), []);
  assert.deepEqual(clusterIps(service({ clusterIP: 'None', clusterIPs: ['None'] })), []);
  assert.deepEqual(clusterIps(service({ clusterIP: '10.0.0.1' })), ['10.0.0.1']);
});
