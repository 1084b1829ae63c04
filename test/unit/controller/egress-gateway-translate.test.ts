/**
 * Issue 8 part 2: Istio's egress-gateway task translated. Its DestinationRule for the egress gateway
 * Service lives in the client's namespace (default), not the Service's (istio-system): istiod looks a
 * rule up in the proxy's namespace first, so subset `cnn` exists and the `mesh` route reaches the
 * gateway pod; the gateway route goes to the ServiceEntry's endpoint.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { buildSnapshot, decodeKubeYaml } from '../../../src/controller/files/kube-yaml.ts';
import { translateL7 } from '../../../src/controller/translate/l7/translate.ts';
import { translate } from '../../../src/controller/translate/workloads.ts';
import { addressesOf, clusterOf, l7From, OPTIONS, routesOf } from './l7/helpers.ts';

const TASK = readFileSync(new URL('../../fixtures/istio-tasks/egress-gateway.yaml', import.meta.url), 'utf8');

const MESH = `
apiVersion: v1
kind: Namespace
metadata: { name: default, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Service
metadata: { name: istio-egressgateway, namespace: istio-system }
spec:
  selector: { istio: egressgateway }
  clusterIP: 10.96.20.2
  ports: [{ name: http2, port: 80, targetPort: 80 }]
---
apiVersion: v1
kind: Pod
metadata:
  name: istio-egressgateway-1
  namespace: istio-system
  labels: { istio: egressgateway, istio.io/dataplane-mode: ambient }
spec: { nodeName: n1, serviceAccountName: istio-egressgateway-service-account }
status: { phase: Running, podIP: 10.244.9.2 }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: cnn, namespace: default }
spec:
  hosts: [edition.cnn.com]
  location: MESH_EXTERNAL
  ports: [{ number: 80, name: http-port, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: 192.0.2.7 }]
`;

function translateTask(text = TASK, mesh = MESH) {
  const { snapshot } = buildSnapshot(decodeKubeYaml(mesh, 'mesh.yaml').objects);
  const { config } = translate(snapshot, OPTIONS);
  const gateways = buildSnapshot(decodeKubeYaml(text, 'task.yaml').objects).snapshot.istioGateways;
  const objs = l7From(text);
  assert.deepEqual(objs.problems, []);
  return translateL7(
    {
      snapshot: { ...snapshot, istioGateways: gateways },
      mesh: config,
      virtualServices: objs.virtualServices,
      destinationRules: objs.destinationRules,
    },
    OPTIONS,
  );
}

test("egress-gateway task: the client namespace's rule gives subset cnn its endpoints; the gateway routes to the entry", () => {
  const r = translateTask();
  assert.deepEqual(
    r.problems.map((p) => `${p.path}: ${p.message}`),
    [],
  );
  assert.deepEqual(addressesOf(r, 'outbound|80|cnn|istio-egressgateway.istio-system.svc.cluster.local'), [
    '10.244.9.2:80',
  ]);
  assert.deepEqual(
    routesOf(r, 'edition.cnn.com:80').map((x) => x.route?.cluster),
    ['outbound|80|cnn|istio-egressgateway.istio-system.svc.cluster.local'],
  );
  const gw = r.resources.routeConfigurations.find((c) => c.name.startsWith('gateway/istio=egressgateway/'));
  assert.ok(gw, 'a route configuration for the egress gateway');
  assert.deepEqual(
    gw.virtual_hosts.flatMap((v) => v.routes.map((x) => x.route?.cluster)),
    ['outbound|80||edition.cnn.com'],
  );
  assert.deepEqual(addressesOf(r, 'outbound|80||edition.cnn.com'), ['192.0.2.7:80']);
});

test('a subset no rule defines is reported with its field path; its cluster has no endpoints', () => {
  const r = translateTask(TASK.replace('subset: cnn', 'subset: cnnn'));
  assert.ok(
    r.problems.some(
      (p) =>
        p.path === 'spec.http[0].route[0].destination.subset' &&
        /subset "cnnn" is not defined/.test(p.message),
    ),
    JSON.stringify(r.problems),
  );
  assert.equal(
    r.resources.clusterLoadAssignments.find(
      (c) => c.cluster_name === 'outbound|80|cnnn|istio-egressgateway.istio-system.svc.cluster.local',
    )?.endpoints.length ?? 0,
    0,
  );
});

test('resolution DNS: a STRICT_DNS cluster with its host-name endpoint inline (no EDS); DNS_ROUND_ROBIN: LOGICAL_DNS', () => {
  for (const [resolution, type] of [
    ['DNS', 'STRICT_DNS'],
    ['DNS_ROUND_ROBIN', 'LOGICAL_DNS'],
  ] as const) {
    const r = translateTask(
      TASK,
      MESH.replace('resolution: STATIC', `resolution: ${resolution}`).replace('192.0.2.7', 'localhost'),
    );
    const name = 'outbound|80||edition.cnn.com';
    const cluster = clusterOf(r, name);
    assert.equal(cluster.type, type);
    assert.equal(cluster.eds_cluster_config, undefined);
    assert.deepEqual(
      cluster.load_assignment?.endpoints.flatMap((l) =>
        l.lb_endpoints.map(
          (e) =>
            `${e.endpoint.address.socket_address.address}:${e.endpoint.address.socket_address.port_value}`,
        ),
      ),
      ['localhost:80'],
    );
    assert.equal(
      r.resources.clusterLoadAssignments.some((c) => c.cluster_name === name),
      false,
      'no EDS resource for a DNS cluster',
    );
    // The egress gateway's own Service stays EDS.
    assert.equal(
      clusterOf(r, 'outbound|80|cnn|istio-egressgateway.istio-system.svc.cluster.local').type,
      'EDS',
    );
  }
});
