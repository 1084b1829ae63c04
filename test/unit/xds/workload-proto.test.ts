import assert from 'node:assert/strict';
import { test } from 'node:test';
import protobuf from 'protobufjs';
import { ambitProtos } from '../../../src/core/proto/load.ts';
import { decodeLocalConfig } from '../../../src/core/xds/local-config.ts';
import {
  decodeAddress,
  decodeAuthorization,
  encodeAuthorization,
  encodeService,
  encodeWorkload,
} from '../../../src/core/xds/workload-proto.ts';
import { EMPTY_MATCH as EMPTY } from '../../../src/core/xds/model.ts';

const yaml = `
workloads:
- uid: c1//Pod/ns1/a
  name: a
  namespace: ns1
  serviceAccount: sa-a
  workloadIps: [10.0.0.1, "fd00::1"]
  protocol: HBONE
  node: n1
  canonicalName: app
  canonicalRevision: v2
  workloadType: deployment
  workloadName: a-deploy
  clusterId: c1
  capacity: 3
  status: Unhealthy
  authorizationPolicies: [ns1/p]
  waypoint: {destination: {namespace: ns1, hostname: wp.ns1.svc.cluster.local}, hboneMtlsPort: 15008}
  services:
    ns1/svc.ns1.svc.cluster.local: {80: 8080, 443: 8443}
- uid: c1//Pod/ns1/b
  name: b
  namespace: ns1
  workloadIps: [10.0.0.2]
  protocol: TCP
  waypoint: {destination: "net1/10.0.0.9", hboneMtlsPort: 15009}
services:
- name: svc
  namespace: ns1
  hostname: svc.ns1.svc.cluster.local
  vips: [/10.96.0.1, "net2/fd00:96::1"]
  ports: {80: 8080}
  subjectAltNames: [spiffe://cluster.local/ns/ns1/sa/extra]
policies:
- name: p
  namespace: ns1
  scope: WorkloadSelector
  action: Deny
  dryRun: true
  rules:
  - - - namespaces: [{Exact: ns2}, {Prefix: te}]
        notPrincipals: [{Suffix: /sa/x}, Presence]
        serviceAccounts: [{namespace: ns3, serviceAccount: s3}]
        sourceIps: [10.0.0.0/8, "fd00::/16"]
        notDestinationIps: [10.1.2.3]
        destinationPorts: [80, 443]
        notDestinationPorts: [9999]
    - []
- name: g
  namespace: istio-system
  scope: Global
  rules: []
`;

const decoded = decodeLocalConfig(yaml);
assert.ok(decoded.ok);
const model = decoded.config;

test('every workload round-trips through istio.workload.Address', () => {
  for (const w of model.workloads) {
    const r = decodeAddress(encodeWorkload(w));
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(r.value, { kind: 'workload', workload: w });
  }
});

test('every service round-trips through istio.workload.Address', () => {
  for (const s of model.services) {
    const r = decodeAddress(encodeService(s));
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(r.value, { kind: 'service', service: s });
  }
});

test('every policy round-trips through istio.security.Authorization', () => {
  for (const p of model.policies) {
    const r = decodeAuthorization(encodeAuthorization(p));
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(r.value, p);
  }
});

const Address = () => ambitProtos().lookupType('istio.workload.Address');
const encodeRaw = (obj: object) => Address().encode(Address().fromObject(obj)).finish();

const bad: { name: string; msg: object; errors: { path: string; message: string }[] }[] = [
  {
    name: 'an address of 5 bytes, no uid, LEGACY_ISTIO_MTLS',
    msg: { workload: { namespace: 'n', addresses: [Buffer.from([1, 2, 3, 4, 5])], tunnel_protocol: 2 } },
    errors: [
      { path: 'workload.uid', message: 'is required' },
      { path: 'workload.tunnel_protocol', message: 'LEGACY_ISTIO_MTLS is not supported' },
      { path: 'workload.addresses[0]', message: 'must be 4 or 16 bytes, got 5' },
    ],
  },
  {
    name: 'a service port out of range and a bad services key',
    msg: {
      workload: {
        uid: 'u',
        namespace: 'n',
        addresses: [Buffer.from([10, 0, 0, 1])],
        services: { nokey: { ports: [{ service_port: 70000, target_port: 1 }] } },
      },
    },
    errors: [
      { path: 'workload.services["nokey"]', message: 'key must be "namespace/hostname"' },
      { path: 'workload.services["nokey"].ports[0].service_port', message: 'must be 1-65535' },
    ],
  },
  {
    name: 'a service without hostname, a waypoint with no destination',
    msg: { service: { namespace: 'n', waypoint: { hbone_mtls_port: 15008 } } },
    errors: [
      { path: 'service.hostname', message: 'is required' },
      { path: 'service.waypoint', message: 'has neither hostname nor address' },
    ],
  },
  {
    name: 'neither workload nor service',
    msg: {},
    errors: [{ path: '', message: 'Address has neither workload nor service' }],
  },
];

for (const c of bad) {
  test(`decodeAddress rejects ${c.name}, naming every field`, () => {
    const r = decodeAddress(encodeRaw(c.msg));
    assert.equal(r.ok, false);
    if (!r.ok) assert.deepEqual(r.errors, c.errors);
  });
}

test('garbage bytes are an error, never a throw', () => {
  const r = decodeAddress(Buffer.from([0xff, 0xff, 0xff, 0x01]));
  assert.equal(r.ok, false);
  const a = decodeAuthorization(Buffer.from([0x0a, 0xff]));
  assert.equal(a.ok, false);
});

test('an authorization with a bad CIDR length and an empty string match is rejected with paths', () => {
  const A = ambitProtos().lookupType('istio.security.Authorization');
  const bytes = A.encode(
    A.fromObject({
      name: 'p',
      rules: [
        {
          clauses: [
            {
              matches: [
                { source_ips: [{ address: Buffer.from([10, 0, 0, 0]), length: 40 }], principals: [{}] },
              ],
            },
          ],
        },
      ],
    }),
  ).finish();
  const r = decodeAuthorization(bytes);
  assert.equal(r.ok, false);
  if (!r.ok) {
    assert.deepEqual(r.errors, [
      {
        path: 'rules[0].clauses[0].matches[0].principals[0]',
        message: 'string match has no exact, prefix, suffix or presence',
      },
      { path: 'rules[0].clauses[0].matches[0].source_ips[0].length', message: 'must be at most 32' },
    ]);
  }
});

test('a host-name workload (a ServiceEntry DNS endpoint) and the STRICT deny policy round-trip', () => {
  const w = {
    ...model.workloads[1]!,
    uid: 'Kubernetes/networking.istio.io/ServiceEntry/ns1/api/api.example.com',
    addresses: [],
    hostname: 'api.example.com',
  };
  assert.deepEqual(decodeAddress(encodeWorkload(w)), { ok: true, value: { kind: 'workload', workload: w } });
  const strict = {
    name: 'istio_converted_static_strict',
    namespace: 'istio-system',
    scope: 'WorkloadSelector' as const,
    action: 'Deny' as const,
    rules: [[[{ ...EMPTY, notPrincipals: [{ kind: 'presence' as const }] }]]],
    dryRun: false,
  };
  assert.deepEqual(decodeAuthorization(encodeAuthorization(strict)), { ok: true, value: strict });
});

test('wire field numbers: Workload.hostname is 21, StringMatch.presence is 4 (reference/ztunnel.md §3.2–3.3)', () => {
  // Read the raw tags, not through our own schema: the bytes of the first field numbered `n`.
  const field = (bytes: Uint8Array, n: number): Uint8Array | undefined => {
    const r = protobuf.Reader.create(bytes);
    while (r.pos < r.len) {
      const tag = r.uint32();
      if (tag >>> 3 === n && (tag & 7) === 2) return r.bytes();
      r.skipType(tag & 7);
    }
    return undefined;
  };
  const w = { ...model.workloads[1]!, uid: 'u', addresses: [], hostname: 'h.example.com' };
  const hostname = field(field(encodeWorkload(w), 1)!, 21); // Address.workload → Workload.hostname
  assert.equal(Buffer.from(hostname!).toString(), 'h.example.com');
  const strict = encodeAuthorization({
    name: 'p',
    namespace: 'n',
    scope: 'Global',
    action: 'Deny',
    rules: [[[{ ...EMPTY, notPrincipals: [{ kind: 'presence' }] }]]],
    dryRun: false,
  });
  // Authorization.rules (5) → Rule.clauses (1) → Clause.matches (2) → Match.not_principals (4)
  // → StringMatch.presence (4), an empty message.
  let b: Uint8Array | undefined = strict;
  for (const n of [5, 1, 2, 4, 4]) b = b && field(b, n);
  assert.deepEqual(b && [...b], []);
});

test('labels ride in the Workload extension ambit.io/labels (field 26), round-trip, and are checked', () => {
  const w = { ...model.workloads[1]!, labels: { app: 'reviews', version: 'v2', 'example.com/tier': 'gold' } };
  const bytes = encodeWorkload(w);
  const r = decodeAddress(bytes);
  assert.ok(r.ok, JSON.stringify(r));
  assert.deepEqual(r.value, { kind: 'workload', workload: w });
  // On the wire: Address.workload (1) → Workload.extensions (26) → Extension.name (1).
  const field = (b: Uint8Array, n: number): Uint8Array | undefined => {
    const rd = protobuf.Reader.create(b);
    while (rd.pos < rd.len) {
      const tag = rd.uint32();
      if (tag >>> 3 === n && (tag & 7) === 2) return rd.bytes();
      rd.skipType(tag & 7);
    }
    return undefined;
  };
  const ext = field(field(bytes, 1)!, 26)!;
  assert.equal(Buffer.from(field(ext, 1)!).toString(), 'ambit.io/labels');
  // No labels: no extension, so istiod-shaped bytes are unchanged.
  assert.equal(field(field(encodeWorkload(model.workloads[1]!), 1)!, 26), undefined);
  // An unknown extension is ignored (as ztunnel ignores it); ours with the wrong type is an error.
  const Address = ambitProtos().lookupType('istio.workload.Address');
  const withExt = (name: string, typeUrl: string) =>
    Address.encode(
      Address.fromObject({
        workload: {
          uid: 'u',
          namespace: 'n',
          extensions: [{ name, config: { type_url: typeUrl, value: new Uint8Array([8, 1]) } }],
        },
      }),
    ).finish();
  const other = decodeAddress(withExt('example.com/other', 'type.googleapis.com/x.Y'));
  assert.ok(other.ok && other.value.kind === 'workload' && other.value.workload.labels === undefined);
  const wrong = decodeAddress(withExt('ambit.io/labels', 'type.googleapis.com/x.Y'));
  assert.ok(!wrong.ok);
  assert.match(wrong.errors[0]!.path, /^workload\.extensions\[0\]\.config\.type_url$/);
});
