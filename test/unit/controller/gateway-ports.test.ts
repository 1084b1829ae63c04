/**
 * Issue 8: a Gateway server port that is a port of the gateway's Service is served on its target
 * port, as istiod resolves it (gateway-ports.ts) — so Istio's YAML works against a gateway Service
 * that maps 80 → 8080 as Istio's does — and the translation listens there.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type {
  IstioGateway,
  IstioGatewayServer,
  ServicePort,
} from '../../../src/controller/translate/kube-types.ts';
import {
  DISABLE_PORT_TRANSLATION_LABEL,
  resolveGatewayPorts,
} from '../../../src/controller/translate/l7/gateway-ports.ts';
import { translateL7 } from '../../../src/controller/translate/l7/translate.ts';
import { fixtureMesh, OPTIONS } from './l7/helpers.ts';
import { pod, service } from './objects.ts';

const INGRESS_LABELS = { app: 'istio-ingressgateway', istio: 'ingressgateway' };
const gwPod = pod({
  namespace: 'istio-system',
  name: 'istio-ingressgateway-1',
  labels: INGRESS_LABELS,
  containerPorts: [
    { name: 'http2', containerPort: 8080, protocol: 'TCP' },
    { name: 'https', containerPort: 8443, protocol: 'TCP' },
  ],
});
const port = (name: string, p: number, targetPort: ServicePort['targetPort']): ServicePort => ({
  name,
  port: p,
  targetPort,
  protocol: 'TCP',
  appProtocol: '',
});
const gwService = service({
  namespace: 'istio-system',
  name: 'istio-ingressgateway',
  selector: INGRESS_LABELS,
  ports: [port('status-port', 15021, 15021), port('http2', 80, 8080), port('https', 443, 'https')],
});
const server = (n: number): IstioGatewayServer => ({
  port: { number: n, name: `p${n}`, protocol: 'HTTP' },
  hosts: ['*'],
  tls: undefined,
  name: '',
  bind: '',
});
const gateway = (
  ports: number[],
  selector: Record<string, string> = { istio: 'ingressgateway' },
): IstioGateway => ({
  namespace: 'default',
  name: 'gw',
  creationTimestamp: '2026-01-01T00:00:00Z',
  selector,
  servers: ports.map(server),
});
const portsOf = (gs: readonly IstioGateway[]) => gs.map((g) => g.servers.map((s) => s.port.number));

test('a Service port becomes its target port (a number, or a container port name); other numbers stay', () => {
  const out = resolveGatewayPorts([gateway([80, 443, 8080, 9000])], { pods: [gwPod], services: [gwService] });
  assert.deepEqual(portsOf(out), [[8080, 8443, 8080, 9000]]);
});

test('without a Service selecting the selected pods, or without such pods, ports stay as written', () => {
  const other = service({ ...gwService, selector: { app: 'something-else' } });
  assert.deepEqual(portsOf(resolveGatewayPorts([gateway([80])], { pods: [gwPod], services: [other] })), [
    [80],
  ]);
  assert.deepEqual(portsOf(resolveGatewayPorts([gateway([80])], { pods: [], services: [gwService] })), [
    [80],
  ]);
  assert.deepEqual(
    portsOf(
      resolveGatewayPorts([gateway([80], { istio: 'egressgateway' })], {
        pods: [gwPod],
        services: [gwService],
      }),
    ),
    [[80]],
  );
  // A Service in another namespace than the pod does not front it.
  const elsewhere = service({ ...gwService, namespace: 'default' });
  assert.deepEqual(portsOf(resolveGatewayPorts([gateway([80])], { pods: [gwPod], services: [elsewhere] })), [
    [80],
  ]);
});

test('a Service labelled to opt out of translation is skipped, as istiod skips it', () => {
  const optOut = service({ ...gwService, labels: { [DISABLE_PORT_TRANSLATION_LABEL]: 'true' } });
  assert.deepEqual(portsOf(resolveGatewayPorts([gateway([80])], { pods: [gwPod], services: [optOut] })), [
    [80],
  ]);
});

test('with two Services on the port, the first by namespace/name decides, whatever the input order', () => {
  const a = service({ ...gwService, name: 'a-gateway', ports: [port('http', 80, 8081)] });
  const b = service({ ...gwService, name: 'b-gateway', ports: [port('http', 80, 8082)] });
  for (const services of [
    [a, b],
    [b, a],
  ])
    assert.deepEqual(portsOf(resolveGatewayPorts([gateway([80])], { pods: [gwPod], services })), [[8081]]);
});

test('the input Gateways are not modified', () => {
  const g = gateway([80]);
  resolveGatewayPorts([g], { pods: [gwPod], services: [gwService] });
  assert.equal(g.servers[0]!.port.number, 80);
});

test("translated: a server on the Service's port 80 is served on 8080, in the same route configuration as bookinfo's 8080", () => {
  const { snapshot, mesh } = fixtureMesh();
  const g80 = { ...gateway([80]), name: 'gw80' };
  const g8080 = { ...gateway([8080]), name: 'gw8080' };
  const r = translateL7(
    {
      snapshot: {
        ...snapshot,
        pods: [...snapshot.pods, gwPod],
        services: [...snapshot.services, gwService],
        istioGateways: [g80, g8080],
      },
      mesh,
      virtualServices: [],
      destinationRules: [],
    },
    OPTIONS,
  );
  const names = r.resources.routeConfigurations.map((c) => c.name).filter((n) => n.startsWith('gateway/'));
  assert.deepEqual(names, ['gateway/istio=ingressgateway/http.8080']);
  assert.deepEqual(
    r.problems.filter((p) => p.kind === 'Gateway'),
    [],
  );
});
