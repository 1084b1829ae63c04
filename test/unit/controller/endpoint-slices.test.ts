/** EndpointSlices → endpoints of Services without a selector (objects in → resources out). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { EndpointSlice } from '../../../src/controller/translate/kube-types.ts';
import { translate } from '../../../src/controller/translate/workloads.ts';
import { MeshState } from '../../../src/core/state/mesh-state.ts';
import type { Workload } from '../../../src/core/xds/model.ts';
import { endpoint, OPTIONS, pod, service, slice, snapshot } from './objects.ts';

const LEGACY = 'default/legacy.default.svc.cluster.local';
/** A Service without a selector: port 80 named http, port 81 named admin. */
const legacy = service({
  name: 'legacy',
  selector: {},
  clusterIPs: ['10.96.0.9'],
  ports: [
    { name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', appProtocol: '' },
    { name: 'admin', port: 81, targetPort: 8081, protocol: 'TCP', appProtocol: '' },
  ],
});
const ratings = pod({
  name: 'ratings-v1-abc',
  uid: 'uid-ratings',
  labels: { app: 'ratings' },
  podIPs: ['10.0.1.6'],
});

function run(slices: EndpointSlice[], over: Parameters<typeof snapshot>[0] = {}) {
  const r = translate(
    snapshot({ pods: [pod(), ratings], services: [legacy], endpointSlices: slices, ...over }),
    OPTIONS,
  );
  const byName = new Map(r.config.workloads.map((w) => [w.name, w]));
  return { ...r, byName, slices: r.config.workloads.filter((w) => w.uid.includes('/EndpointSlice/')) };
}

test('an endpoint that is not a pod becomes a plain workload with istiod uid; not ready is UNHEALTHY', () => {
  const r = run([
    slice({
      endpoints: [
        endpoint(),
        endpoint({ addresses: ['10.0.9.2'], ready: false }),
        endpoint({ addresses: ['10.0.9.3'], ready: undefined }),
      ],
      ports: [
        { name: 'http', port: 9090, protocol: 'TCP', appProtocol: '' },
        { name: 'admin', port: 9091, protocol: 'TCP', appProtocol: '' },
      ],
    }),
  ]);
  assert.deepEqual(r.problems, []);
  const ports = new Map([
    [80, 9090],
    [81, 9091],
  ]);
  const want: Workload = {
    uid: 'Kubernetes/discovery.k8s.io/EndpointSlice/default/legacy-abc12/10.0.9.1',
    name: 'legacy-abc12',
    namespace: 'default',
    addresses: ['10.0.9.1'],
    hostname: '',
    network: '',
    tunnelProtocol: 'NONE',
    trustDomain: 'cluster.local',
    serviceAccount: 'default',
    waypoint: undefined,
    node: '',
    canonicalName: '',
    canonicalRevision: '',
    workloadType: 'deployment',
    workloadName: '',
    services: new Map([[LEGACY, ports]]),
    authorizationPolicies: [],
    healthy: true,
    clusterId: 'Kubernetes',
    capacity: 1,
  };
  assert.deepEqual(r.slices, [
    want,
    { ...want, uid: want.uid.replace('10.0.9.1', '10.0.9.2'), addresses: ['10.0.9.2'], healthy: false },
    { ...want, uid: want.uid.replace('10.0.9.1', '10.0.9.3'), addresses: ['10.0.9.3'] },
  ]);
  // The Service's endpoints, as the agent's state sees them.
  const state = new MeshState(r.config);
  const svc = state.serviceByKey(LEGACY)!;
  assert.deepEqual(
    state.endpoints(svc).map((e) => e.workload.addresses[0]),
    ['10.0.9.1', '10.0.9.2', '10.0.9.3'],
  );
  assert.deepEqual(state.pickEndpoint(svc, 80), { workload: want, targetPort: 9090 });
});

test("a pod's address in a slice adds the Service to that pod's services map, ports from the slice", () => {
  const cases: [string, EndpointSlice[], Record<string, [number, number][]>][] = [
    [
      'by IP, no targetRef',
      [slice({ endpoints: [endpoint({ addresses: ['10.0.1.5'] })] })],
      { 'reviews-v1-abc': [[80, 8080]] },
    ],
    [
      'by targetRef (namespace defaulted, uid checked)',
      [
        slice({
          endpoints: [
            endpoint({
              addresses: ['10.0.1.6'],
              targetRef: { kind: 'Pod', namespace: '', name: 'ratings-v1-abc', uid: 'uid-ratings' },
            }),
          ],
        }),
      ],
      { 'ratings-v1-abc': [[80, 8080]] },
    ],
    [
      'targetRef of an unknown pod: nothing, and no plain workload either',
      [
        slice({
          endpoints: [endpoint({ targetRef: { kind: 'Pod', namespace: 'default', name: 'gone', uid: '' } })],
        }),
      ],
      {},
    ],
    [
      'targetRef uid of an older pod of the same name: nothing',
      [
        slice({
          endpoints: [
            endpoint({
              addresses: ['10.0.1.6'],
              targetRef: { kind: 'Pod', namespace: 'default', name: 'ratings-v1-abc', uid: 'old' },
            }),
          ],
        }),
      ],
      {},
    ],
    [
      'two slices of one Service (dual stack) merge their ports',
      [
        slice({ name: 'legacy-a', endpoints: [endpoint({ addresses: ['10.0.1.5'] })] }),
        slice({
          name: 'legacy-b',
          endpoints: [endpoint({ addresses: ['10.0.1.5'] })],
          ports: [{ name: 'admin', port: 8081, protocol: 'TCP', appProtocol: '' }],
        }),
      ],
      {
        'reviews-v1-abc': [
          [80, 8080],
          [81, 8081],
        ],
      },
    ],
  ];
  for (const [name, slices, want] of cases) {
    const r = run(slices);
    assert.deepEqual(r.problems, [], name);
    assert.deepEqual(r.slices, [], name);
    for (const w of ['reviews-v1-abc', 'ratings-v1-abc']) {
      const got = r.byName.get(w)!.services.get(LEGACY);
      assert.deepEqual(got, want[w] && new Map(want[w]), `${name}: ${w}`);
    }
  }
});

test('slices that add nothing: a Service with a selector, no service label, an unknown Service', () => {
  const selecting = service({ name: 'legacy' }); // selects app=reviews
  const cases: [string, EndpointSlice, Parameters<typeof snapshot>[0]][] = [
    ['Service has a selector: pods are its endpoints, not the slice', slice(), { services: [selecting] }],
    ['no kubernetes.io/service-name label', slice({ labels: {} }), {}],
    ['no such Service', slice({ labels: { 'kubernetes.io/service-name': 'nope' } }), {}],
    ['Service in another namespace', slice({ namespace: 'other' }), {}],
  ];
  for (const [name, s, over] of cases) {
    const r = run([s], over);
    assert.deepEqual(r.problems, [], name);
    assert.deepEqual(r.slices, [], name);
  }
  // With a selector, the pod is an endpoint through the selector with the Service's own ports.
  const r = run([slice({ endpoints: [endpoint({ addresses: ['10.0.1.5'] })] })], { services: [selecting] });
  assert.deepEqual(r.byName.get('reviews-v1-abc')!.services.get(LEGACY), new Map([[9080, 9080]]));
});

test('bad slices: skipped (or the bad endpoint skipped) with the path and reason; the rest kept', () => {
  const cases: [string, EndpointSlice, string[], string[]][] = [
    [
      'an address that is not an IP',
      slice({ endpoints: [endpoint({ addresses: ['10.0.9'] }), endpoint({ addresses: ['10.0.9.2'] })] }),
      ['error endpoints[0].addresses[0]: "10.0.9" is not an IP address; the endpoint is skipped'],
      ['10.0.9.2'],
    ],
    [
      'an endpoint without an address',
      slice({ endpoints: [endpoint({ addresses: [] }), endpoint({ addresses: ['10.0.9.2'] })] }),
      ['error endpoints[0].addresses: an endpoint needs an address; it is skipped'],
      ['10.0.9.2'],
    ],
    [
      'a port out of range',
      slice({ ports: [{ name: 'http', port: 70000, protocol: 'TCP', appProtocol: '' }] }),
      ['error ports[0].port: 70000 is not a port number (1-65535); the slice is skipped'],
      [],
    ],
    [
      'a port named after no Service port',
      slice({
        ports: [
          { name: 'metrics', port: 9100, protocol: 'TCP', appProtocol: '' },
          { name: 'http', port: 8080, protocol: 'TCP', appProtocol: '' },
        ],
      }),
      [
        'warning ports[0].name: Service default/legacy has no TCP port named "metrics"; this port does not reach the endpoints through it',
      ],
      ['10.0.9.1'],
    ],
    [
      'no port matches',
      slice({ ports: [{ name: 'metrics', port: 9100, protocol: 'TCP', appProtocol: '' }] }),
      [
        'warning ports[0].name: Service default/legacy has no TCP port named "metrics"; this port does not reach the endpoints through it',
        'warning ports: no TCP port matches a port of Service default/legacy by name; the slice adds no endpoints',
      ],
      [],
    ],
    [
      'FQDN slices',
      slice({ addressType: 'FQDN', endpoints: [endpoint({ addresses: ['db.example.com'] })] }),
      ['warning addressType: FQDN endpoints are not supported (as in istiod); the slice is ignored'],
      [],
    ],
    [
      'an address listed twice',
      slice({ endpoints: [endpoint(), endpoint({ ready: false })] }),
      ['warning endpoints[1].addresses[0]: "10.0.9.1" is listed twice; the first endpoint is kept'],
      ['10.0.9.1'],
    ],
  ];
  const good = slice({ name: 'good', endpoints: [endpoint({ addresses: ['10.0.8.1'] })] });
  for (const [name, bad, problems, kept] of cases) {
    const r = run([bad, good]);
    assert.deepEqual(
      r.problems.map((p) => `${p.severity} ${p.path}: ${p.message}`),
      problems,
      name,
    );
    for (const p of r.problems)
      assert.deepEqual([p.kind, p.namespace, p.name], ['EndpointSlice', 'default', 'legacy-abc12']);
    assert.deepEqual(
      r.slices.filter((w) => w.name === 'legacy-abc12').map((w) => w.addresses[0]),
      kept,
      name,
    );
    assert.ok(
      r.slices.some((w) => w.name === 'good'),
      `${name}: the other slice is unaffected`,
    );
  }
});
