/** Gateways and GatewayClasses: read into the snapshot and validated; nothing is translated from them yet. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waypointFor } from '../../../src/controller/translate/gateways.ts';
import type { Gateway, GatewayClass } from '../../../src/controller/translate/kube-types.ts';
import { translate } from '../../../src/controller/translate/workloads.ts';
import { gateway, OPTIONS, snapshot } from './objects.ts';

const problems = (gws: Gateway[]) =>
  translate(snapshot({ gateways: gws }), OPTIONS).problems.map(
    (p) => `${p.severity} ${p.kind} ${p.namespace}/${p.name} ${p.path}: ${p.message}`,
  );

test('a waypoint Gateway (and an ingress one) validate cleanly and produce no resources', () => {
  const ingress = gateway({
    name: 'ingress',
    labels: {},
    gatewayClassName: 'istio',
    listeners: [
      { name: 'http', hostname: '*.example.com', port: 80, protocol: 'HTTP' },
      { name: 'https.tls', hostname: '', port: 443, protocol: 'HTTPS' },
    ],
    addresses: [{ type: 'Hostname', value: 'gw.example.com' }],
    statusAddresses: [
      { type: 'IPAddress', value: '10.96.0.20' },
      { type: '', value: 'fd00::20' },
      { type: 'example.com/custom', value: 'anything' },
    ],
  });
  const r = translate(snapshot({ gateways: [gateway(), ingress] }), OPTIONS);
  assert.deepEqual(r.problems, []);
  assert.deepEqual(r.config, { workloads: [], services: [], policies: [] });
});

test('invalid Gateway fields are reported with their path; every Gateway is checked', () => {
  const listener = { name: 'mesh', hostname: '', port: 15008, protocol: 'HBONE' };
  const cases: [Partial<Gateway>, string[]][] = [
    [{ gatewayClassName: '' }, ['error Gateway default/waypoint spec.gatewayClassName: is required']],
    [
      { labels: { 'istio.io/waypoint-for': 'everything' } },
      [
        'error Gateway default/waypoint metadata.labels["istio.io/waypoint-for"]: "everything" must be one of service, workload, all, none',
      ],
    ],
    [{ listeners: [] }, ['error Gateway default/waypoint spec.listeners: at least one listener is required']],
    [
      { listeners: [{ ...listener, name: '' }] },
      ['error Gateway default/waypoint spec.listeners[0].name: is required'],
    ],
    [
      { listeners: [{ ...listener, name: 'Mesh_1' }] },
      [
        'error Gateway default/waypoint spec.listeners[0].name: "Mesh_1" is not a valid listener name (lower-case DNS labels)',
      ],
    ],
    [
      { listeners: [listener, { ...listener, port: 15009 }] },
      ['error Gateway default/waypoint spec.listeners[1].name: "mesh" is used by another listener'],
    ],
    [
      { listeners: [{ ...listener, port: 0 }] },
      [
        'error Gateway default/waypoint spec.listeners[0].port: 0 is not a port number (1-65535)',
        'warning Gateway default/waypoint spec.listeners: a waypoint needs a listener {name: mesh, port: 15008, protocol: HBONE}; without it nothing can reach the waypoint',
      ],
    ],
    [
      { listeners: [{ ...listener, protocol: '' }] },
      [
        'error Gateway default/waypoint spec.listeners[0].protocol: is required',
        'warning Gateway default/waypoint spec.listeners: a waypoint needs a listener {name: mesh, port: 15008, protocol: HBONE}; without it nothing can reach the waypoint',
      ],
    ],
    [
      { statusAddresses: [{ type: 'IPAddress', value: '10.96.0' }] },
      ['error Gateway default/waypoint status.addresses[0].value: "10.96.0" is not an IP address'],
    ],
    [
      { addresses: [{ type: 'Hostname', value: 'not a host' }] },
      ['error Gateway default/waypoint spec.addresses[0].value: "not a host" is not a host name'],
    ],
    [
      { statusAddresses: [{ type: 'Magic', value: 'x' }] },
      [
        'error Gateway default/waypoint status.addresses[0].type: "Magic" must be IPAddress, Hostname or a domain-prefixed type',
      ],
    ],
  ];
  for (const [over, want] of cases) {
    assert.deepEqual(problems([gateway(over), gateway({ name: 'fine' })]), want, JSON.stringify(over));
  }
});

test("a GatewayClass's waypoint-for is checked like a Gateway's: an invalid one is reported with its path and ignored", () => {
  const classes: GatewayClass[] = [
    { name: 'istio-waypoint', labels: { 'istio.io/waypoint-for': 'Workload' } },
    { name: 'ambit-waypoint', labels: { 'istio.io/waypoint-for': 'all' } },
    { name: 'istio', labels: {} },
  ];
  const r = translate(snapshot({ gatewayClasses: classes, gateways: [gateway({ labels: {} })] }), OPTIONS);
  assert.deepEqual(
    r.problems.map((p) => `${p.severity} ${p.kind} ${p.namespace}/${p.name} ${p.path}: ${p.message}`),
    [
      `error GatewayClass /istio-waypoint metadata.labels["istio.io/waypoint-for"]: "Workload" must be one of service, workload, all, none; ignored: the class's Gateways without the label take service traffic`,
    ],
  );
  // Ignored: the class's Gateway takes the default, service traffic (not workload, not none).
  assert.equal(waypointFor(gateway({ labels: {} }), classes), 'service');
  assert.equal(waypointFor(gateway({ labels: {}, gatewayClassName: 'ambit-waypoint' }), classes), 'all');
  assert.equal(waypointFor(gateway({ labels: { 'istio.io/waypoint-for': 'none' } }), classes), 'none');
  assert.equal(waypointFor(gateway({ labels: {}, gatewayClassName: 'istio' }), classes), 'service');
});
