import { EMPTY_MATCH } from '../../../src/core/xds/model.ts';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeLocalConfig } from '../../../src/core/xds/local-config.ts';
import type { Match, MeshConfig } from '../../../src/core/xds/model.ts';
import type { DecodeError } from '../../../src/core/xds/yaml-decoder.ts';

/** One YAML line per argument, so a case's expected line numbers can be read off its source. */
const doc = (...lines: string[]): string => lines.join('\n') + '\n';

function decodeOk(text: string): MeshConfig {
  const r = decodeLocalConfig(text);
  if (!r.ok) assert.fail(`unexpected errors: ${JSON.stringify(r.errors, null, 2)}`);
  return r.config;
}

function decodeErrors(text: string): DecodeError[] {
  const r = decodeLocalConfig(text);
  if (r.ok) assert.fail('decoded without errors');
  return r.errors;
}

const emptyMatch: Match = EMPTY_MATCH;

const FULL = doc(
  'workloads:',
  '- uid: cluster1//Pod/default/productpage-v1',
  '  name: productpage-v1',
  '  namespace: default',
  '  workloadIps: [10.0.1.3, fd00::1:3]',
  '  protocol: HBONE',
  '  trustDomain: example.org',
  '  serviceAccount: bookinfo-productpage',
  '  node: node-1',
  '  canonicalName: productpage',
  '  canonicalRevision: v1',
  '  workloadType: Deployment',
  '  workloadName: productpage-v1',
  '  clusterId: cluster1',
  '  capacity: 3',
  '  authorizationPolicies: [default/allow-curl]',
  '  services:',
  '    default/productpage.default.svc.cluster.local: {9080: 9081, "80": 9080}',
  '- name: legacy',
  '  namespace: other',
  '  workloadIps: [10.0.2.1]',
  '  protocol: TCP',
  '  status: Unhealthy',
  '  waypoint: {destination: "/10.96.0.10", hboneMtlsPort: 15009}',
  '- name: plain',
  '  namespace: other',
  '  hostname: plain.example.com',
  'services:',
  '- name: productpage',
  '  namespace: default',
  '  hostname: productpage.default.svc.cluster.local',
  '  vips: ["/10.96.0.1", "net1/10.96.0.2", "net2/fd00::10"]',
  '  ports: {9080: 9081, 80: 9080}',
  '  subjectAltNames: [spiffe://example.org/ns/default/sa/extra]',
  '  waypoint:',
  '    destination: {namespace: default, hostname: waypoint.default.svc.cluster.local}',
  '- namespace: default',
  '  hostname: reviews.default.svc.cluster.local',
  'policies:',
  '- name: allow-curl',
  '  namespace: default',
  '  scope: WorkloadSelector',
  '  action: Allow',
  '  rules:',
  '  - - - principals: [{Exact: cluster.local/ns/default/sa/curl}, {Suffix: /sa/admin}]',
  '        namespaces: [Presence, {Prefix: team-}]',
  '      - sourceIps: [10.0.0.0/8, fd00::/16, 192.168.1.1]',
  '        notDestinationPorts: [9999]',
  '        serviceAccounts: [{namespace: default, serviceAccount: curl}]',
  '    - - destinationPorts: [9080, "80"]',
  '- name: deny-all',
  '  namespace: istio-system',
  '  scope: Global',
  '  action: Deny',
  '  dryRun: true',
  '  rules: [[[]]]',
  '- name: defaults',
);

test('a full config decodes to the model', () => {
  const c = decodeOk(FULL);
  assert.equal(c.workloads.length, 3);
  assert.equal(c.services.length, 2);
  assert.equal(c.policies.length, 3);

  const [pp, legacy, plain] = c.workloads;
  assert.deepEqual(pp, {
    uid: 'cluster1//Pod/default/productpage-v1',
    name: 'productpage-v1',
    namespace: 'default',
    addresses: ['10.0.1.3', 'fd00::1:3'],
    hostname: '',
    network: '',
    tunnelProtocol: 'HBONE',
    trustDomain: 'example.org',
    serviceAccount: 'bookinfo-productpage',
    waypoint: undefined,
    node: 'node-1',
    canonicalName: 'productpage',
    canonicalRevision: 'v1',
    workloadType: 'deployment',
    workloadName: 'productpage-v1',
    services: new Map([
      [
        'default/productpage.default.svc.cluster.local',
        new Map([
          [9080, 9081],
          [80, 9080],
        ]),
      ],
    ]),
    authorizationPolicies: ['default/allow-curl'],
    healthy: true,
    clusterId: 'cluster1',
    capacity: 3,
  });
  assert.deepEqual(legacy, {
    uid: 'local//Pod/other/legacy',
    name: 'legacy',
    namespace: 'other',
    addresses: ['10.0.2.1'],
    hostname: '',
    network: '',
    tunnelProtocol: 'NONE',
    trustDomain: 'cluster.local',
    serviceAccount: 'default',
    waypoint: { destination: { kind: 'address', network: '', address: '10.96.0.10' }, hboneMtlsPort: 15009 },
    node: '',
    canonicalName: '',
    canonicalRevision: '',
    workloadType: 'pod',
    workloadName: '',
    services: new Map(),
    authorizationPolicies: [],
    healthy: false,
    clusterId: 'Kubernetes',
    capacity: 1,
  });
  assert.equal(plain?.hostname, 'plain.example.com');
  assert.deepEqual(plain?.addresses, []);
  assert.equal(plain?.tunnelProtocol, 'NONE', 'protocol defaults to TCP');

  assert.deepEqual(c.services[0], {
    name: 'productpage',
    namespace: 'default',
    hostname: 'productpage.default.svc.cluster.local',
    vips: [
      { network: '', address: '10.96.0.1' },
      { network: 'net1', address: '10.96.0.2' },
      { network: 'net2', address: 'fd00::10' },
    ],
    ports: new Map([
      [9080, 9081],
      [80, 9080],
    ]),
    subjectAltNames: ['spiffe://example.org/ns/default/sa/extra'],
    waypoint: {
      destination: { kind: 'hostname', namespace: 'default', hostname: 'waypoint.default.svc.cluster.local' },
      hboneMtlsPort: 15008,
    },
  });
  assert.deepEqual(c.services[1], {
    name: 'reviews',
    namespace: 'default',
    hostname: 'reviews.default.svc.cluster.local',
    vips: [],
    ports: new Map(),
    subjectAltNames: [],
    waypoint: undefined,
  });

  assert.deepEqual(c.policies[0], {
    name: 'allow-curl',
    namespace: 'default',
    scope: 'WorkloadSelector',
    action: 'Allow',
    dryRun: false,
    rules: [
      [
        [
          {
            ...emptyMatch,
            principals: [
              { kind: 'exact', value: 'cluster.local/ns/default/sa/curl' },
              { kind: 'suffix', value: '/sa/admin' },
            ],
            namespaces: [{ kind: 'presence' }, { kind: 'prefix', value: 'team-' }],
          },
          {
            ...emptyMatch,
            sourceIps: [
              { address: '10.0.0.0', prefixLength: 8 },
              { address: 'fd00::', prefixLength: 16 },
              { address: '192.168.1.1', prefixLength: 32 },
            ],
            notDestinationPorts: [9999],
            serviceAccounts: [{ namespace: 'default', serviceAccount: 'curl' }],
          },
        ],
        [{ ...emptyMatch, destinationPorts: [9080, 80] }],
      ],
    ],
  });
  assert.deepEqual(c.policies[1], {
    name: 'deny-all',
    namespace: 'istio-system',
    scope: 'Global',
    action: 'Deny',
    dryRun: true,
    rules: [[[]]],
  });
  assert.deepEqual(c.policies[2], {
    name: 'defaults',
    namespace: '',
    scope: 'WorkloadSelector',
    action: 'Allow',
    dryRun: false,
    rules: [],
  });
});

const emptyDocs: { name: string; text: string }[] = [
  { name: 'empty file', text: '' },
  { name: 'comment only', text: '# nothing yet\n' },
  { name: 'empty sections', text: doc('workloads:', 'services: []', 'policies:') },
];

for (const { name, text } of emptyDocs) {
  test(`${name} decodes to an empty config`, () => {
    assert.deepEqual(decodeOk(text), { workloads: [], services: [], policies: [] });
  });
}

const protocols: { yaml: string; want: string }[] = [
  { yaml: '', want: 'NONE' },
  { yaml: '  protocol: TCP', want: 'NONE' },
  { yaml: '  protocol: HBONE', want: 'HBONE' },
];

for (const { yaml, want } of protocols) {
  test(`protocol ${JSON.stringify(yaml.trim() || '(unset)')} decodes to tunnelProtocol ${want}`, () => {
    const lines = ['workloads:', '- namespace: ns', '  workloadIps: [10.0.0.1]'];
    if (yaml) lines.push(yaml);
    assert.equal(decodeOk(doc(...lines)).workloads[0]?.tunnelProtocol, want);
  });
}

const vips: { raw: string; network: string; address: string }[] = [
  { raw: '/1.2.3.4', network: '', address: '1.2.3.4' },
  { raw: 'net1/1.2.3.4', network: 'net1', address: '1.2.3.4' },
  { raw: '1.2.3.4', network: '', address: '1.2.3.4' },
  { raw: '/fd00::1', network: '', address: 'fd00::1' },
  { raw: 'net-a/fd00::1', network: 'net-a', address: 'fd00::1' },
];

for (const { raw, network, address } of vips) {
  test(`vip ${JSON.stringify(raw)} is network ${JSON.stringify(network)}, address ${address}`, () => {
    const c = decodeOk(doc('services:', '- namespace: ns', '  hostname: h', `  vips: ["${raw}"]`));
    assert.deepEqual(c.services[0]?.vips, [{ network, address }]);
  });
}

test('the same IP on two networks is not a duplicate', () => {
  const c = decodeOk(
    doc(
      'workloads:',
      '- {name: a, namespace: ns, workloadIps: [10.0.0.1], network: n1}',
      '- {name: b, namespace: ns, workloadIps: [10.0.0.1], network: n2}',
    ),
  );
  assert.equal(c.workloads.length, 2);
});

interface ErrorCase {
  name: string;
  text: string;
  errors: { path: string; line: number; message: RegExp }[];
}

const errorCases: ErrorCase[] = [
  {
    name: 'unknown top-level field',
    text: doc('workloads: []', 'endpoints: []'),
    errors: [
      { path: 'endpoints', line: 2, message: /unknown field \(known: workloads, services, policies\)/ },
    ],
  },
  {
    name: 'unknown workload field',
    text: doc(
      'workloads:',
      '- name: a',
      '  namespace: default',
      '  workloadIps: [10.0.0.1]',
      '  colour: blue',
    ),
    errors: [{ path: 'workloads[0].colour', line: 5, message: /unknown field/ }],
  },
  {
    name: 'snake_case field is unknown (camelCase only)',
    text: doc('workloads:', '- namespace: default', '  workload_ips: [10.0.0.1]', '  hostname: h'),
    errors: [{ path: 'workloads[0].workload_ips', line: 3, message: /unknown field/ }],
  },
  {
    name: 'unknown match field',
    text: doc('policies:', '- name: p', '  rules:', '  - - - paths: [/admin]'),
    errors: [{ path: 'policies[0].rules[0][0][0].paths', line: 4, message: /unknown field/ }],
  },
  {
    name: 'bad IP',
    text: doc('workloads:', '- name: a', '  namespace: default', '  workloadIps: [10.0.0.1, 10.0.0.256]'),
    errors: [{ path: 'workloads[0].workloadIps[1]', line: 4, message: /"10.0.0.256" is not an IP address/ }],
  },
  {
    name: 'IP with a prefix length',
    text: doc('workloads:', '- name: a', '  namespace: default', '  workloadIps:', '  - 10.0.0.1/32'),
    errors: [{ path: 'workloads[0].workloadIps[0]', line: 5, message: /is not an IP address/ }],
  },
  {
    name: 'missing namespace',
    text: doc('workloads:', '- name: a', '  workloadIps: [10.0.0.1]'),
    errors: [{ path: 'workloads[0].namespace', line: 2, message: /is required/ }],
  },
  {
    name: 'empty namespace',
    text: doc('workloads:', '- name: a', '  namespace: ""', '  workloadIps: [10.0.0.1]'),
    errors: [{ path: 'workloads[0].namespace', line: 3, message: /must not be empty/ }],
  },
  {
    name: 'missing service namespace',
    text: doc('services:', '- hostname: h.example'),
    errors: [{ path: 'services[0].namespace', line: 2, message: /is required/ }],
  },
  {
    name: 'no workloadIps and no hostname',
    text: doc('workloads:', '- name: a', '  namespace: default'),
    errors: [{ path: 'workloads[0].workloadIps', line: 2, message: /needs workloadIps or a hostname/ }],
  },
  {
    name: 'bad port key in a workload service map',
    text: doc(
      'workloads:',
      '- name: a',
      '  namespace: default',
      '  workloadIps: [10.0.0.1]',
      '  services:',
      '    default/h: {http: 8080}',
    ),
    errors: [{ path: 'workloads[0].services.default/h.http', line: 6, message: /integer from 1 to 65535/ }],
  },
  {
    name: 'service map key without a namespace',
    text: doc(
      'workloads:',
      '- namespace: default',
      '  workloadIps: [10.0.0.1]',
      '  services:',
      '    h: {80: 80}',
    ),
    errors: [{ path: 'workloads[0].services.h', line: 5, message: /"namespace\/hostname"/ }],
  },
  {
    name: 'service port key 0',
    text: doc('services:', '- namespace: ns', '  hostname: h', '  ports:', '    0: 80'),
    errors: [{ path: 'services[0].ports.0', line: 5, message: /integer from 1 to 65535/ }],
  },
  {
    name: 'service port key 65536',
    text: doc('services:', '- namespace: ns', '  hostname: h', '  ports: {65536: 80}'),
    errors: [{ path: 'services[0].ports.65536', line: 4, message: /integer from 1 to 65535/ }],
  },
  {
    name: 'target port out of range',
    text: doc('services:', '- namespace: ns', '  hostname: h', '  ports:', '    80: 70000'),
    errors: [{ path: 'services[0].ports.80', line: 5, message: /integer from 1 to 65535/ }],
  },
  {
    name: 'duplicate uid',
    text: doc(
      'workloads:',
      '- uid: u1',
      '  namespace: ns',
      '  workloadIps: [10.0.0.1]',
      '- uid: u1',
      '  namespace: ns',
      '  workloadIps: [10.0.0.2]',
    ),
    errors: [{ path: 'workloads[1]', line: 5, message: /uid "u1" is also used by workloads\[0\]/ }],
  },
  {
    name: 'duplicate default uid (same namespace and name)',
    text: doc(
      'workloads:',
      '- {name: a, namespace: ns, workloadIps: [10.0.0.1]}',
      '- {name: a, namespace: ns, workloadIps: [10.0.0.2]}',
    ),
    errors: [{ path: 'workloads[1]', line: 3, message: /uid "local\/\/Pod\/ns\/a" is also used/ }],
  },
  {
    name: 'duplicate IP',
    text: doc(
      'workloads:',
      '- name: a',
      '  namespace: ns',
      '  workloadIps: [10.0.0.1]',
      '- name: b',
      '  namespace: ns',
      '  workloadIps: [10.0.0.2, 10.0.0.1]',
    ),
    errors: [
      { path: 'workloads[1].workloadIps', line: 5, message: /10.0.0.1 is also used by workloads\[0\]/ },
    ],
  },
  {
    name: 'duplicate service',
    text: doc('services:', '- {namespace: ns, hostname: h}', '- {namespace: ns, hostname: h}'),
    errors: [{ path: 'services[1]', line: 3, message: /service ns\/h is also defined by services\[0\]/ }],
  },
  {
    name: 'duplicate policy',
    text: doc('policies:', '- {namespace: ns, name: p}', '- {namespace: ns, name: p}'),
    errors: [{ path: 'policies[1]', line: 3, message: /policy ns\/p is also defined by policies\[0\]/ }],
  },
  {
    name: 'bad SPIFFE SAN',
    text: doc(
      'services:',
      '- namespace: ns',
      '  hostname: h',
      '  subjectAltNames:',
      '  - spiffe://td/ns/a/sa/b',
      '  - spiffe://td/ns/a',
    ),
    errors: [{ path: 'services[0].subjectAltNames[1]', line: 6, message: /must have the form spiffe:/ }],
  },
  {
    name: 'bad VIP',
    text: doc('services:', '- namespace: ns', '  hostname: h', '  vips: ["net1/10.0.0"]'),
    errors: [{ path: 'services[0].vips[0]', line: 4, message: /"net1\/10.0.0" is not "network\/IP"/ }],
  },
  {
    name: 'bad CIDR in a policy match: prefix too long',
    text: doc('policies:', '- name: p', '  rules:', '  - - - sourceIps: [10.0.0.0/33]'),
    errors: [
      { path: 'policies[0].rules[0][0][0].sourceIps[0]', line: 4, message: /not an IP address or CIDR/ },
    ],
  },
  {
    name: 'bad CIDR in a policy match: IPv6 prefix too long, not address',
    text: doc(
      'policies:',
      '- name: p',
      '  rules:',
      '  - - - namespaces: [Presence]',
      '      - notDestinationIps: [fd00::/129, fd00::1]',
      '        destinationIps: [not-an-ip/8]',
    ),
    errors: [
      { path: 'policies[0].rules[0][0][1].destinationIps[0]', line: 6, message: /"not-an-ip\/8"/ },
      { path: 'policies[0].rules[0][0][1].notDestinationIps[0]', line: 5, message: /"fd00::\/129"/ },
    ],
  },
  {
    name: 'bad CIDR in a policy match: non-numeric prefix',
    text: doc('policies:', '- name: p', '  rules:', '  - - - sourceIps:', '        - 10.0.0.0/x'),
    errors: [
      { path: 'policies[0].rules[0][0][0].sourceIps[0]', line: 5, message: /not an IP address or CIDR/ },
    ],
  },
  {
    name: 'policy port out of range',
    text: doc('policies:', '- name: p', '  rules: [[[{destinationPorts: [80, 65536]}]]]'),
    errors: [{ path: 'policies[0].rules[0][0][0].destinationPorts[1]', line: 3, message: /0 to 65535/ }],
  },
  {
    name: 'string match with two kinds',
    text: doc('policies:', '- name: p', '  rules:', '  - - - principals: [{Exact: a, Prefix: b}]'),
    errors: [{ path: 'policies[0].rules[0][0][0].principals[0]', line: 4, message: /exactly one of/ }],
  },
  {
    name: 'string match with an unknown kind',
    text: doc('policies:', '- name: p', '  rules:', '  - - - principals: [{Regex: a}]'),
    errors: [
      { path: 'policies[0].rules[0][0][0].principals[0].Regex', line: 4, message: /unknown field/ },
      { path: 'policies[0].rules[0][0][0].principals[0]', line: 4, message: /exactly one of/ },
    ],
  },
  {
    name: 'service account match without serviceAccount',
    text: doc('policies:', '- name: p', '  rules:', '  - - - serviceAccounts: [{namespace: ns}]'),
    errors: [
      {
        path: 'policies[0].rules[0][0][0].serviceAccounts[0].serviceAccount',
        line: 4,
        message: /is required/,
      },
    ],
  },
  {
    name: 'bad enums',
    text: doc(
      'workloads:',
      '- namespace: ns',
      '  workloadIps: [10.0.0.1]',
      '  protocol: UDP',
      '  status: Sick',
      'policies:',
      '- name: p',
      '  action: Audit',
      '  scope: Cluster',
      '  dryRun: "yes"',
    ),
    errors: [
      { path: 'workloads[0].protocol', line: 4, message: /must be one of TCP, HBONE/ },
      { path: 'workloads[0].status', line: 5, message: /must be one of Healthy, Unhealthy/ },
      { path: 'policies[0].scope', line: 9, message: /must be one of Global, Namespace, WorkloadSelector/ },
      { path: 'policies[0].action', line: 8, message: /must be one of Allow, Deny/ },
      { path: 'policies[0].dryRun', line: 10, message: /must be true or false/ },
    ],
  },
  {
    name: 'a list item that is not a mapping',
    text: doc('workloads: []', 'services:', '- just a string'),
    errors: [
      { path: 'services[0]', line: 3, message: /must be a mapping/ },
      { path: 'services[0].hostname', line: 3, message: /is required/ },
      { path: 'services[0].namespace', line: 3, message: /is required/ },
    ],
  },
  {
    name: 'root is not a mapping',
    text: doc('- a', '- b'),
    errors: [{ path: '', line: 1, message: /must be a mapping/ }],
  },
  {
    name: 'YAML syntax error: duplicate key',
    text: doc('workloads:', '- name: a', '  name: b'),
    errors: [{ path: '', line: 3, message: /Map keys must be unique/ }],
  },
  {
    name: 'YAML syntax error: tab indentation',
    text: doc('workloads:', '\t- name: a'),
    errors: [{ path: '', line: 2, message: /Tabs are not allowed/ }],
  },
  {
    name: 'multiple errors across sections are all reported',
    text: doc(
      'workloads:',
      '- name: a',
      '  workloadIps: [10.0.0.1, bogus]',
      '  colour: blue',
      'services:',
      '- namespace: ns',
      '  hostname: h',
      '  ports: {http: 80}',
      '  subjectAltNames: [not-spiffe]',
      'policies:',
      '- name: p',
      '  rules:',
      '  - - - sourceIps: [300.0.0.0/8]',
    ),
    errors: [
      { path: 'workloads[0].colour', line: 4, message: /unknown field/ },
      { path: 'workloads[0].namespace', line: 2, message: /is required/ },
      { path: 'workloads[0].workloadIps[1]', line: 3, message: /"bogus" is not an IP address/ },
      { path: 'services[0].subjectAltNames[0]', line: 9, message: /does not start with spiffe/ },
      { path: 'services[0].ports.http', line: 8, message: /integer from 1 to 65535/ },
      { path: 'policies[0].rules[0][0][0].sourceIps[0]', line: 13, message: /"300.0.0.0\/8"/ },
    ],
  },
];

for (const c of errorCases) {
  test(`decode error: ${c.name}`, () => {
    const errors = decodeErrors(c.text);
    assert.deepEqual(
      errors.map((e) => ({ path: e.path, line: e.line })),
      c.errors.map((e) => ({ path: e.path, line: e.line })),
      JSON.stringify(errors, null, 2),
    );
    c.errors.forEach((want, i) => assert.match(errors[i]!.message, want.message, want.path));
  });
}

// Bug: cidr() in src/core/xds/local-config.ts reads the prefix with Number(''), which is 0, so a
// trailing slash turns "10.0.0.0/" into 10.0.0.0/0 — a match on every IPv4 address, accepted silently.
test('regression: local-config cidr: "10.0.0.0/" (empty prefix length) is rejected, not read as /0', () => {
  const r = decodeLocalConfig(doc('policies:', '- name: p', '  rules:', '  - - - sourceIps: ["10.0.0.0/"]'));
  assert.equal(r.ok, false, `decoded as ${JSON.stringify(r.ok && r.config.policies[0]?.rules)}`);
  assert.deepEqual(
    r.errors.map((e) => ({ path: e.path, line: e.line })),
    [{ path: 'policies[0].rules[0][0][0].sourceIps[0]', line: 4 }],
  );
});

// Bug: crossCheck() in src/core/xds/local-config.ts calls d.list() again on the workloads, services
// and policies nodes, and d.list() records "must be a list" every time it is
// called, so a section of the wrong shape is reported twice.
test('regression: local-config crossCheck: a section that is not a list is reported once, not twice', () => {
  const errors = decodeErrors(doc('workloads: {a: 1}', 'policies: 3'));
  assert.deepEqual(
    errors.map((e) => ({ path: e.path, line: e.line, message: e.message })),
    [
      { path: 'workloads', line: 1, message: 'must be a list' },
      { path: 'policies', line: 2, message: 'must be a list' },
    ],
  );
});
