/**
 * Our Istio resources checked by an independent protobuf implementation: protoc (C++), decoding
 * what we encode and encoding what we decode, against our .proto files.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { PROTO_DIR } from '../../src/core/proto/load.ts';
import { decodeLocalConfig } from '../../src/core/xds/local-config.ts';
import {
  decodeAddress,
  decodeAuthorization,
  encodeAuthorization,
  encodeWorkload,
} from '../../src/core/xds/workload-proto.ts';

const protoc = (mode: '--decode' | '--encode', type: string, file: string, input: Buffer | string): Buffer =>
  execFileSync('protoc', [`${mode}=${type}`, `-I${PROTO_DIR}`, '-I/usr/include', file], { input });

const config = decodeLocalConfig(`
workloads:
- uid: c1//Pod/ns1/a
  name: a
  namespace: ns1
  serviceAccount: sa-a
  workloadIps: [10.0.0.1]
  protocol: HBONE
  node: n1
  services:
    ns1/svc.ns1.svc.cluster.local: {80: 8080}
policies:
- name: p
  namespace: ns1
  scope: Namespace
  action: Deny
  rules: [[[{principals: [{Exact: cluster.local/ns/x/sa/y}], destinationPorts: [9080]}]]]
`);
assert.ok(config.ok);

test('protoc decodes our Workload with Istio field names and values', () => {
  const text = protoc(
    '--decode',
    'istio.workload.Address',
    'workload.proto',
    Buffer.from(encodeWorkload(config.config.workloads[0]!)),
  ).toString();
  assert.match(text, /workload \{/);
  assert.match(text, /uid: "c1\/\/Pod\/ns1\/a"/);
  assert.match(text, /addresses: "\\n\\000\\000\\001"/);
  assert.match(text, /tunnel_protocol: HBONE/);
  assert.match(text, /service_account: "sa-a"/);
  assert.match(
    text,
    /services \{\s+key: "ns1\/svc.ns1.svc.cluster.local"\s+value \{\s+ports \{\s+service_port: 80\s+target_port: 8080/,
  );
});

test('protoc decodes our Authorization', () => {
  const text = protoc(
    '--decode',
    'istio.security.Authorization',
    'authorization.proto',
    Buffer.from(encodeAuthorization(config.config.policies[0]!)),
  ).toString();
  assert.match(text, /scope: NAMESPACE/);
  assert.match(text, /action: DENY/);
  assert.match(text, /principals \{\s+exact: "cluster.local\/ns\/x\/sa\/y"/);
  assert.match(text, /destination_ports: 9080/);
});

test('we decode what protoc encodes from Istio-shaped text', () => {
  const bytes = protoc(
    '--encode',
    'istio.workload.Address',
    'workload.proto',
    `service { name: "reviews" namespace: "default" hostname: "reviews.default.svc.cluster.local"
       addresses { network: "" address: "\\n\\140\\000\\003" }
       ports { service_port: 9080 target_port: 9080 }
       waypoint { hostname { namespace: "default" hostname: "waypoint.default.svc.cluster.local" } hbone_mtls_port: 15008 } }`,
  );
  const r = decodeAddress(bytes);
  assert.ok(r.ok, JSON.stringify(r));
  assert.equal(r.value.kind, 'service');
  if (r.value.kind === 'service') {
    assert.deepEqual(r.value.service.vips, [{ network: '', address: '10.96.0.3' }]);
    assert.deepEqual([...r.value.service.ports], [[9080, 9080]]);
    assert.deepEqual(r.value.service.waypoint, {
      destination: { kind: 'hostname', namespace: 'default', hostname: 'waypoint.default.svc.cluster.local' },
      hboneMtlsPort: 15008,
    });
  }
  const policy = protoc(
    '--encode',
    'istio.security.Authorization',
    'authorization.proto',
    'name: "x" namespace: "y" scope: GLOBAL action: ALLOW rules { clauses { matches { namespaces { presence {} } } } }',
  );
  const p = decodeAuthorization(policy);
  assert.ok(p.ok);
  assert.deepEqual(p.value.rules, [[[{ ...p.value.rules[0]![0]![0]!, namespaces: [{ kind: 'presence' }] }]]]);
  assert.equal(p.value.scope, 'Global');
});
