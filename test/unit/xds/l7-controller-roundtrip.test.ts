/**
 * The two sides of the L7 contract against each other: everything the controller's translation
 * emits for the Istio samples (test/fixtures/l7) decodes without an error in the waypoint's decoder,
 * and TCP splits come out as weighted TCP listeners.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeL7Resources } from '../../../src/controller/translate/l7/encode.ts';
import { decodeL7Resource } from '../../../src/core/xds/l7-wire.ts';
import { l7From, run, samples } from '../controller/l7/helpers.ts';

const SAMPLES = [
  '01',
  '03',
  '04',
  '05',
  '06',
  '07',
  '08',
  '09',
  '10',
  '11',
  '12',
  '13',
  '14',
  '15',
  '16',
  '17',
];

for (const s of SAMPLES) {
  test(`sample ${s} (with 02's subsets): every resource the controller serves decodes in the waypoint`, () => {
    const r = run(samples('02', s));
    let count = 0;
    for (const [typeUrl, list] of encodeL7Resources(r.resources)) {
      for (const res of list) {
        const d = decodeL7Resource(typeUrl, res.bytes);
        assert.ok(
          d.ok,
          `${res.name}: ${d.ok ? '' : d.errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`,
        );
        count++;
      }
    }
    assert.ok(count > 0);
  });
}

// Sample 17 binds its split to an ingress Gateway, so on the mesh it is the same split bound to mesh.
const TCP_SPLIT = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: tcp-echo, namespace: default }
spec:
  hosts: [tcp-echo]
  tcp:
  - match: [{ port: 9000 }]
    route:
    - { destination: { host: tcp-echo, port: { number: 9000 }, subset: v1 }, weight: 80 }
    - { destination: { host: tcp-echo, port: { number: 9000 }, subset: v2 }, weight: 20 }
`;

test('a mesh-bound TCP 80/20 split (sample 17 on the mesh) is a TCP listener with weighted clusters', () => {
  const objs = samples('17');
  const split = l7From(TCP_SPLIT);
  const r = run({ ...objs, virtualServices: [...split.virtualServices] });
  const listeners =
    encodeL7Resources(r.resources).get('type.googleapis.com/envoy.config.listener.v3.Listener') ?? [];
  const tcp = listeners
    .filter((l) => l.name === 'tcp-echo.default.svc.cluster.local:9000')
    .map((l) => decodeL7Resource('type.googleapis.com/envoy.config.listener.v3.Listener', l.bytes))
    .flatMap((d) =>
      d.ok && d.value.kind === 'listener' && d.value.listener.tcp ? [d.value.listener.tcp] : [],
    );
  assert.deepEqual(tcp, [
    [
      { cluster: 'outbound|9000|v1|tcp-echo.default.svc.cluster.local', weight: 80 },
      { cluster: 'outbound|9000|v2|tcp-echo.default.svc.cluster.local', weight: 20 },
    ],
  ]);
});
