/** ServiceEntry → Services and Workloads (objects in → resources out). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ServiceEntry } from '../../../src/controller/translate/kube-types.ts';
import { translate } from '../../../src/controller/translate/workloads.ts';
import type { Service, Workload } from '../../../src/core/xds/model.ts';
import {
  OPTIONS,
  peerAuthentication,
  pod,
  service,
  serviceEntry,
  snapshot,
  workloadEntry,
} from './objects.ts';

const run = (entries: ServiceEntry[], over: Parameters<typeof snapshot>[0] = {}) =>
  translate(snapshot({ serviceEntries: entries, ...over }), OPTIONS);

test('a STATIC entry: one Service per host, one Workload per endpoint with istiod uids', () => {
  const r = run([
    serviceEntry({
      labels: { app: 'db' },
      hosts: ['db.example.com', 'db-replica.example.com'],
      addresses: ['240.0.0.10', '240.0.0.11/32'],
      location: 'MESH_INTERNAL',
      ports: [
        { number: 5432, protocol: 'TCP', name: 'pg', targetPort: 15432 },
        { number: 9187, protocol: 'http', name: 'metrics', targetPort: undefined },
        { number: 53, protocol: 'UDP', name: 'dns', targetPort: undefined },
      ],
      subjectAltNames: ['spiffe://cluster.local/ns/db/sa/postgres'],
      endpoints: [
        workloadEntry({
          address: '192.0.2.10',
          ports: { pg: 6432 },
          network: 'vm-net',
          serviceAccount: 'postgres',
          weight: 3,
          labels: { zone: 'a' },
        }),
        workloadEntry({ address: '2001:db8::10' }),
      ],
    }),
  ]);
  assert.deepEqual(r.problems, []);
  const base: Service = {
    name: 'external-db',
    namespace: 'default',
    hostname: 'db-replica.example.com',
    vips: [
      { network: '', address: '240.0.0.10' },
      { network: '', address: '240.0.0.11' },
    ],
    ports: new Map([
      [5432, 15432],
      [9187, 9187],
    ]),
    subjectAltNames: ['spiffe://cluster.local/ns/db/sa/postgres'],
    waypoint: undefined,
  };
  assert.deepEqual(r.config.services, [base, { ...base, hostname: 'db.example.com' }]);
  const keys = ['default/db.example.com', 'default/db-replica.example.com'];
  const first: Workload = {
    uid: 'Kubernetes/networking.istio.io/ServiceEntry/default/external-db/192.0.2.10',
    name: 'external-db',
    namespace: 'default',
    addresses: ['192.0.2.10'],
    hostname: '',
    network: 'vm-net',
    tunnelProtocol: 'NONE',
    trustDomain: 'cluster.local',
    serviceAccount: 'postgres',
    waypoint: undefined,
    node: '',
    canonicalName: 'db',
    canonicalRevision: 'latest',
    workloadType: 'pod',
    workloadName: 'external-db',
    // The endpoint's own port for `pg`; the targetPort (else the number) for the rest.
    services: new Map(
      keys.map((k) => [
        k,
        new Map([
          [5432, 6432],
          [9187, 9187],
        ]),
      ]),
    ),
    authorizationPolicies: [],
    healthy: true,
    clusterId: 'Kubernetes',
    capacity: 3,
  };
  assert.deepEqual(r.config.workloads, [
    first,
    {
      ...first,
      uid: 'Kubernetes/networking.istio.io/ServiceEntry/default/external-db/2001:db8::10',
      addresses: ['2001:db8::10'],
      network: '',
      serviceAccount: 'default',
      capacity: 1,
      services: new Map(keys.map((k) => [k, base.ports])),
    },
  ]);
});

test('DNS resolution: host-name endpoints, or each host its own endpoint (Workload.hostname)', () => {
  const explicit = run([
    serviceEntry({
      resolution: 'DNS',
      hosts: ['api.example.com'],
      endpoints: [workloadEntry({ address: 'eu.api.example.com' }), workloadEntry({ address: '192.0.2.7' })],
    }),
  ]);
  assert.deepEqual(explicit.problems, []);
  assert.deepEqual(
    explicit.config.workloads.map((w) => [w.uid, w.addresses, w.hostname]),
    [
      ['Kubernetes/networking.istio.io/ServiceEntry/default/external-db/192.0.2.7', ['192.0.2.7'], ''],
      [
        'Kubernetes/networking.istio.io/ServiceEntry/default/external-db/eu.api.example.com',
        [],
        'eu.api.example.com',
      ],
    ],
  );
  const implicit = run([
    serviceEntry({ resolution: 'DNS', hosts: ['a.example.com', 'b.example.com'], endpoints: [] }),
  ]);
  assert.deepEqual(implicit.problems, []);
  assert.deepEqual(
    implicit.config.workloads.map((w) => [w.uid, w.hostname, [...w.services.keys()]]),
    [
      [
        'Kubernetes/networking.istio.io/ServiceEntry/default/external-db/a.example.com',
        'a.example.com',
        ['default/a.example.com'],
      ],
      [
        'Kubernetes/networking.istio.io/ServiceEntry/default/external-db/b.example.com',
        'b.example.com',
        ['default/b.example.com'],
      ],
    ],
  );
  // NONE (or STATIC) without endpoints: services only, reachable at their VIPs by whatever is there.
  const none = run([serviceEntry({ resolution: 'NONE', addresses: ['240.0.0.1'], endpoints: [] })]);
  assert.deepEqual(none.config.workloads, []);
  assert.equal(none.config.services.length, 1);
});

test('workloadSelector: the entry becomes a service of the pods it selects in its namespace', () => {
  const r = run(
    [
      serviceEntry({
        hosts: ['reviews.internal'],
        ports: [{ number: 80, protocol: 'HTTP', name: 'http', targetPort: 9080 }],
        endpoints: [],
        workloadSelector: { app: 'reviews' },
      }),
      // An empty selector selects nothing, as in istiod.
      serviceEntry({ name: 'empty', hosts: ['empty.internal'], endpoints: [], workloadSelector: {} }),
    ],
    {
      pods: [
        pod(),
        pod({ name: 'ratings', labels: { app: 'ratings' }, podIPs: ['10.0.1.6'] }),
        pod({ namespace: 'other', name: 'reviews-other', podIPs: ['10.0.2.5'] }),
      ],
      services: [service()],
    },
  );
  assert.deepEqual(r.problems, []);
  const services = Object.fromEntries(
    r.config.workloads.map((w) => [w.name, Object.fromEntries(w.services)]),
  );
  assert.deepEqual(services, {
    'reviews-v1-abc': {
      'default/reviews.default.svc.cluster.local': new Map([[9080, 9080]]),
      'default/reviews.internal': new Map([[80, 9080]]),
    },
    ratings: {},
    'reviews-other': {},
  });
});

test('endpoints take the tunnel, the canonical name and the policies from the entry', () => {
  const r = run(
    [
      serviceEntry({
        labels: { 'networking.istio.io/tunnel': 'http', 'service.istio.io/canonical-name': 'pg', app: 'db' },
      }),
      serviceEntry({
        name: 'redirected',
        hosts: ['r.example.com'],
        annotations: { 'ambient.istio.io/redirection': 'enabled' },
      }),
    ],
    {
      peerAuthentications: [peerAuthentication()],
      authorizationPolicies: [
        {
          namespace: 'default',
          name: 'db-only',
          annotations: {},
          selector: { app: 'db' },
          targetRefs: [],
          action: 'DENY',
          rules: [{ from: [], to: [], when: [] }],
        },
      ],
    },
  );
  assert.deepEqual(r.problems, []);
  assert.deepEqual(
    r.config.workloads.map((w) => [w.name, w.tunnelProtocol, w.canonicalName, w.authorizationPolicies]),
    [
      ['external-db', 'HBONE', 'pg', ['default/db-only', 'istio-system/istio_converted_static_strict']],
      ['redirected', 'HBONE', 'redirected', ['istio-system/istio_converted_static_strict']],
    ],
  );
});

test('wildcard hosts and CIDR VIPs are left out with a warning; the rest of the entry applies', () => {
  const r = run([
    serviceEntry({
      hosts: ['*.example.com', 'db.example.com', '*'],
      addresses: ['240.0.0.0/24', '240.0.1.1'],
      resolution: 'NONE',
      endpoints: [],
    }),
  ]);
  assert.deepEqual(
    r.problems.map((p) => `${p.severity} ${p.kind} ${p.namespace}/${p.name} ${p.path}`),
    [
      'warning ServiceEntry default/external-db spec.hosts[0]',
      'warning ServiceEntry default/external-db spec.hosts[2]',
      'warning ServiceEntry default/external-db spec.addresses[0]',
    ],
  );
  assert.match(r.problems[0]!.message, /wildcard host.*egress waypoint.*skipped/);
  assert.match(r.problems[2]!.message, /CIDR VIPs are not supported yet/);
  assert.deepEqual(
    r.config.services.map((s) => [s.hostname, s.vips.map((v) => v.address)]),
    [['db.example.com', ['240.0.1.1']]],
  );
});

test('a host another Service or entry already defines in the namespace is skipped with an error', () => {
  const r = run(
    [
      serviceEntry({ name: 'shadow', hosts: ['reviews.default.svc.cluster.local', 'mine.example.com'] }),
      serviceEntry({ name: 'second', hosts: ['mine.example.com'] }),
      serviceEntry({ name: 'elsewhere', namespace: 'other', hosts: ['mine.example.com'] }),
    ],
    { services: [service()] },
  );
  assert.deepEqual(
    r.problems.map((p) => `${p.severity} ${p.namespace}/${p.name} ${p.path}: ${p.message}`),
    [
      'error default/shadow spec.hosts[0]: a Service or ServiceEntry in default already defines reviews.default.svc.cluster.local; this host is skipped',
      'error default/second spec.hosts[0]: a Service or ServiceEntry in default already defines mine.example.com; this host is skipped',
    ],
  );
  assert.deepEqual(
    r.config.services.map((s) => `${s.namespace}/${s.hostname} ${s.name}`),
    [
      'default/mine.example.com shadow',
      'default/reviews.default.svc.cluster.local reviews',
      'other/mine.example.com elsewhere',
    ],
  );
  // The shadowing entry's endpoint does not become an endpoint of the Kubernetes Service.
  const shadow = r.config.workloads.find((w) => w.name === 'shadow')!;
  assert.deepEqual([...shadow.services.keys()], ['default/mine.example.com']);
  assert.ok(!r.config.workloads.some((w) => w.name === 'second'));
});

test('invalid entries are skipped with the path and reason; the others are unaffected', () => {
  const port = { number: 80, protocol: 'HTTP', name: 'http', targetPort: undefined };
  const cases: [Partial<ServiceEntry>, string, RegExp][] = [
    [{ hosts: [] }, 'spec.hosts', /at least one host/],
    [{ hosts: ['bad_host!'] }, 'spec.hosts[0]', /not a valid host name/],
    [{ hosts: ['a.example.com', 'a.example.com'] }, 'spec.hosts[1]', /listed twice/],
    [{ addresses: ['240.0.0'] }, 'spec.addresses[0]', /not an IP address or CIDR/],
    [{ ports: [{ ...port, number: 0 }] }, 'spec.ports[0].number', /not a port number/],
    [{ ports: [port, { ...port, name: 'other' }] }, 'spec.ports[1].number', /listed twice/],
    [{ ports: [{ ...port, name: '' }] }, 'spec.ports[0].name', /not a port name/],
    [{ ports: [port, { ...port, number: 81 }] }, 'spec.ports[1].name', /used twice/],
    [{ ports: [{ ...port, protocol: 'QUIC' }] }, 'spec.ports[0].protocol', /not a protocol Istio knows/],
    [{ ports: [{ ...port, targetPort: 70000 }] }, 'spec.ports[0].targetPort', /not a port number/],
    [{ location: 'INSIDE' }, 'spec.location', /MESH_EXTERNAL or MESH_INTERNAL/],
    [{ resolution: 'MAGIC' }, 'spec.resolution', /must be one of NONE, STATIC, DNS/],
    [{ workloadSelector: { app: 'db' } }, 'spec', /workloadSelector and endpoints cannot be used together/],
    [
      { endpoints: [workloadEntry({ address: 'db.internal' })] },
      'spec.endpoints[0].address',
      /host names need resolution DNS/,
    ],
    [{ endpoints: [workloadEntry({ address: '' })] }, 'spec.endpoints[0].address', /is required/],
    [
      { endpoints: [workloadEntry({ address: 'unix:///var/run/db.sock' })] },
      'spec.endpoints[0].address',
      /Unix domain socket/,
    ],
    [{ endpoints: [workloadEntry(), workloadEntry()] }, 'spec.endpoints[1].address', /listed twice/],
    [{ endpoints: [workloadEntry({ ports: { pg: 0 } })] }, 'spec.endpoints[0].ports.pg', /not a port number/],
    [
      { endpoints: [workloadEntry({ ports: { web: 80 } })] },
      'spec.endpoints[0].ports.web',
      /no port named "web"/,
    ],
    [
      {
        resolution: 'DNS_ROUND_ROBIN',
        endpoints: [workloadEntry(), workloadEntry({ address: '192.0.2.11' })],
      },
      'spec.endpoints',
      /at most one endpoint/,
    ],
  ];
  const good = serviceEntry({ name: 'good', hosts: ['good.example.com'] });
  for (const [over, path, message] of cases) {
    const r = run([serviceEntry({ name: 'bad', ...over }), good]);
    assert.deepEqual(
      r.problems.map((p) => [p.severity, p.kind, `${p.namespace}/${p.name}`, p.path]),
      [['error', 'ServiceEntry', 'default/bad', path]],
      path,
    );
    assert.match(r.problems[0]!.message, message, path);
    assert.deepEqual(
      r.config.services.map((s) => s.name),
      ['good'],
      path,
    );
    assert.deepEqual(
      r.config.workloads.map((w) => w.name),
      ['good'],
      path,
    );
  }
});
