import assert from 'node:assert/strict';
import { test } from 'node:test';
import { translate } from '../../../src/controller/translate/workloads.ts';
import type { KubeSnapshot, Namespace } from '../../../src/controller/translate/kube-types.ts';
import type { GatewayAddress } from '../../../src/core/xds/model.ts';
import { gateway, OPTIONS, pod, service, serviceEntry, snapshot } from './objects.ts';

const VIA_HOSTNAME: GatewayAddress = {
  destination: { kind: 'hostname', namespace: 'default', hostname: 'waypoint.default.svc.cluster.local' },
  hboneMtlsPort: 15008,
};

const ns = (labels: Record<string, string>, name = 'default'): Namespace => ({
  name,
  labels: { 'istio.io/dataplane-mode': 'ambient', ...labels },
});

/**
 * A namespace bound to the waypoint, its Service and pod, the waypoint Gateway with `gatewayLabels`
 * and a GatewayClass `className` with `classLabels`.
 */
const withClass = (
  gatewayLabels: Record<string, string>,
  classLabels: Record<string, string>,
  className = 'istio-waypoint',
): Partial<KubeSnapshot> => ({
  namespaces: [ns({ 'istio.io/use-waypoint': 'waypoint' })],
  gateways: [gateway({ labels: gatewayLabels })],
  gatewayClasses: [{ name: className, labels: classLabels }],
  services: [service()],
  pods: [pod()],
});

function bound(s: Partial<KubeSnapshot>) {
  const r = translate(snapshot(s), OPTIONS);
  return {
    service: r.config.services.find((x) => x.name === 'reviews')?.waypoint,
    workload: r.config.workloads.find((x) => x.name === 'reviews-v1-abc')?.waypoint,
    problems: r.problems.map((p) => `${p.kind} ${p.namespace}/${p.name} ${p.path}: ${p.message}`),
  };
}

const cases: {
  name: string;
  s: Partial<KubeSnapshot>;
  service?: GatewayAddress;
  workload?: GatewayAddress;
  problem?: RegExp;
}[] = [
  {
    name: 'namespace label binds the services (waypoint-for service), not the pods',
    s: {
      namespaces: [ns({ 'istio.io/use-waypoint': 'waypoint' })],
      gateways: [gateway()],
      services: [service()],
      pods: [pod()],
    },
    service: VIA_HOSTNAME,
  },
  {
    name: 'waypoint-for workload binds the pods, not the services',
    s: {
      namespaces: [ns({ 'istio.io/use-waypoint': 'waypoint' })],
      gateways: [gateway({ labels: { 'istio.io/waypoint-for': 'workload' } })],
      services: [service()],
      pods: [pod()],
    },
    workload: VIA_HOSTNAME,
  },
  {
    name: 'waypoint-for all binds both',
    s: {
      namespaces: [ns({ 'istio.io/use-waypoint': 'waypoint' })],
      gateways: [gateway({ labels: { 'istio.io/waypoint-for': 'all' } })],
      services: [service()],
      pods: [pod()],
    },
    service: VIA_HOSTNAME,
    workload: VIA_HOSTNAME,
  },
  {
    name: 'no label on the Gateway means service',
    s: {
      namespaces: [ns({ 'istio.io/use-waypoint': 'waypoint' })],
      gateways: [gateway({ labels: {} })],
      services: [service()],
    },
    service: VIA_HOSTNAME,
  },
  {
    name: "the GatewayClass's waypoint-for applies to a Gateway without one",
    s: withClass({}, { 'istio.io/waypoint-for': 'workload' }),
    workload: VIA_HOSTNAME,
  },
  {
    name: "the Gateway's own waypoint-for wins over its GatewayClass's",
    s: withClass({ 'istio.io/waypoint-for': 'service' }, { 'istio.io/waypoint-for': 'all' }),
    service: VIA_HOSTNAME,
  },
  {
    name: "a GatewayClass's invalid waypoint-for is reported with its path and ignored (service)",
    s: withClass({}, { 'istio.io/waypoint-for': 'pods' }),
    service: VIA_HOSTNAME,
    problem:
      /^GatewayClass \/istio-waypoint metadata\.labels\["istio\.io\/waypoint-for"\]: "pods" must be one of service, workload, all, none; ignored/,
  },
  {
    name: 'a GatewayClass without the label keeps the default (service)',
    s: withClass({}, { team: 'mesh' }),
    service: VIA_HOSTNAME,
  },
  {
    name: "only the Gateway's own class counts: another class's waypoint-for does not apply",
    s: withClass({}, { 'istio.io/waypoint-for': 'workload' }, 'ambit-waypoint'),
    service: VIA_HOSTNAME,
  },
  {
    name: "the service's own label wins over the namespace's",
    s: {
      namespaces: [ns({ 'istio.io/use-waypoint': 'other' })],
      gateways: [gateway(), gateway({ name: 'other' })],
      services: [service({ labels: { 'istio.io/use-waypoint': 'waypoint' } })],
    },
    service: VIA_HOSTNAME,
  },
  {
    name: '"none" on the service opts it out of the namespace waypoint',
    s: {
      namespaces: [ns({ 'istio.io/use-waypoint': 'waypoint' })],
      gateways: [gateway()],
      services: [service({ labels: { 'istio.io/use-waypoint': 'none' } })],
    },
  },
  {
    name: 'use-waypoint-namespace picks a waypoint in another namespace',
    s: {
      namespaces: [ns({}), ns({}, 'infra')],
      gateways: [gateway({ namespace: 'infra', name: 'shared' })],
      services: [
        service({
          labels: { 'istio.io/use-waypoint': 'shared', 'istio.io/use-waypoint-namespace': 'infra' },
        }),
      ],
    },
    service: {
      destination: { kind: 'hostname', namespace: 'infra', hostname: 'shared.infra.svc.cluster.local' },
      hboneMtlsPort: 15008,
    },
  },
  {
    name: 'a reported IP address is used as it is',
    s: {
      namespaces: [ns({ 'istio.io/use-waypoint': 'waypoint' })],
      gateways: [gateway({ statusAddresses: [{ type: 'IPAddress', value: '10.96.0.99' }] })],
      services: [service()],
    },
    service: { destination: { kind: 'address', network: '', address: '10.96.0.99' }, hboneMtlsPort: 15008 },
  },
  {
    name: 'a Gateway of another class is not a waypoint: warning, traffic direct',
    s: {
      namespaces: [ns({})],
      gateways: [gateway({ gatewayClassName: 'istio' })],
      services: [service({ labels: { 'istio.io/use-waypoint': 'waypoint' } })],
    },
    problem:
      /Service default\/reviews metadata.labels\["istio.io\/use-waypoint"\]: label istio.io\/use-waypoint names waypoint default\/waypoint, but there is no Gateway/,
  },
  {
    name: 'an explicit label on a pod for a service waypoint is a warning',
    s: {
      namespaces: [ns({})],
      gateways: [gateway()],
      pods: [pod({ labels: { app: 'reviews', 'istio.io/use-waypoint': 'waypoint' } })],
    },
    problem: /Pod default\/reviews-v1-abc .*is for service traffic/,
  },
  {
    name: "the waypoint's own Service and pods never go through it",
    s: {
      namespaces: [ns({ 'istio.io/use-waypoint': 'waypoint' })],
      gateways: [gateway({ labels: { 'istio.io/waypoint-for': 'all' } })],
      services: [service({ labels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' } })],
      pods: [pod({ labels: { app: 'reviews', 'gateway.networking.k8s.io/gateway-name': 'waypoint' } })],
    },
  },
];

for (const c of cases) {
  test(`waypoint binding: ${c.name}`, () => {
    const r = bound(c.s);
    assert.deepEqual(r.service, c.service);
    assert.deepEqual(r.workload, c.workload);
    if (c.problem)
      assert.ok(
        r.problems.some((p) => c.problem!.test(p)),
        r.problems.join('\n'),
      );
    else assert.deepEqual(r.problems, []);
  });
}

test('waypoint binding: a ServiceEntry in a namespace bound to a waypoint gets it (egress waypoint, sample 25)', () => {
  const r = translate(
    snapshot({
      namespaces: [ns({ 'istio.io/use-waypoint': 'waypoint' }, 'istio-egress')],
      gateways: [gateway({ namespace: 'istio-egress' })],
      serviceEntries: [serviceEntry({ namespace: 'istio-egress' })],
    }),
    OPTIONS,
  );
  const services = r.config.services.filter((s) => s.namespace === 'istio-egress');
  assert.ok(services.length > 0);
  for (const s of services)
    assert.deepEqual(s.waypoint, {
      destination: {
        kind: 'hostname',
        namespace: 'istio-egress',
        hostname: 'waypoint.istio-egress.svc.cluster.local',
      },
      hboneMtlsPort: 15008,
    });
});
