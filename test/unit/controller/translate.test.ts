import { EMPTY_MATCH } from '../../../src/core/xds/model.ts';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type AuthorizationPolicy,
  type AuthzOperation,
  type AuthzRule,
  type AuthzSource,
  type KubeSnapshot,
  type Namespace,
  type Pod,
  type Service as KubeService,
} from '../../../src/controller/translate/kube-types.ts';
import { ipFamily, parseCidr } from '../../../src/core/ip.ts';
import {
  stringMatch,
  translate,
  type TranslateProblem,
} from '../../../src/controller/translate/workloads.ts';
import { evaluateL4, type L4Connection } from '../../../src/core/policy/l4.ts';
import { AMBIENT, OPTIONS, pod, service as svc, snapshot } from './objects.ts';
import type { Authorization, Match, Workload } from '../../../src/core/xds/model.ts';

function policy(over: Partial<AuthorizationPolicy> = {}): AuthorizationPolicy {
  return {
    namespace: 'default',
    name: 'p',
    annotations: {},
    selector: undefined,
    targetRefs: [],
    action: 'ALLOW',
    rules: [],
    ...over,
  };
}

const NO_SOURCE: AuthzSource = {
  principals: [],
  notPrincipals: [],
  requestPrincipals: [],
  notRequestPrincipals: [],
  namespaces: [],
  notNamespaces: [],
  serviceAccounts: [],
  notServiceAccounts: [],
  ipBlocks: [],
  notIpBlocks: [],
  remoteIpBlocks: [],
  notRemoteIpBlocks: [],
};
const NO_OPERATION: AuthzOperation = {
  hosts: [],
  notHosts: [],
  ports: [],
  notPorts: [],
  methods: [],
  notMethods: [],
  paths: [],
  notPaths: [],
};
const src = (s: Partial<AuthzSource>): AuthzSource => ({ ...NO_SOURCE, ...s });
const op = (o: Partial<AuthzOperation>): AuthzOperation => ({ ...NO_OPERATION, ...o });
const rule = (r: Partial<AuthzRule>): AuthzRule => ({ from: [], to: [], when: [], ...r });

const EMPTY: Match = EMPTY_MATCH;
const m = (fields: Partial<Match>): Match => ({ ...EMPTY, ...fields });

function onlyWorkload(s: Partial<KubeSnapshot>): Workload {
  const r = translate(snapshot(s), OPTIONS);
  assert.equal(r.config.workloads.length, 1, JSON.stringify(r.problems));
  return r.config.workloads[0]!;
}

function onlyPolicy(p: AuthorizationPolicy): {
  policy: Authorization;
  problems: readonly TranslateProblem[];
} {
  const r = translate(snapshot({ authorizationPolicies: [p] }), OPTIONS);
  assert.equal(r.config.policies.length, 1, JSON.stringify(r.problems));
  return { policy: r.config.policies[0]!, problems: r.problems };
}

// ---- workloads ----

test('a pod becomes a workload with every field filled', () => {
  const r = translate(snapshot({ pods: [pod()] }), OPTIONS);
  assert.deepEqual(r.problems, []);
  assert.deepEqual(r.config.workloads, [
    {
      uid: 'Kubernetes//Pod/default/reviews-v1-abc',
      name: 'reviews-v1-abc',
      namespace: 'default',
      addresses: ['10.0.1.5'],
      hostname: '',
      network: '',
      tunnelProtocol: 'HBONE',
      trustDomain: 'cluster.local',
      serviceAccount: 'bookinfo-reviews',
      waypoint: undefined,
      node: 'node-1',
      canonicalName: 'reviews',
      canonicalRevision: 'v1',
      workloadType: 'pod',
      workloadName: 'reviews-v1-abc',
      services: new Map(),
      authorizationPolicies: [],
      healthy: true,
      clusterId: 'Kubernetes',
      capacity: 1,
      labels: { app: 'reviews', version: 'v1' },
    },
  ]);
});

test('enrolment: the pod label overrides the namespace label; sidecar pods are left alone', () => {
  const plain: Namespace = { name: 'default', labels: {} };
  const cases: [string, Namespace[], Partial<Pod>, 'HBONE' | 'NONE'][] = [
    ['namespace ambient', [AMBIENT], {}, 'HBONE'],
    ['namespace without label', [plain], {}, 'NONE'],
    ['no Namespace object', [], {}, 'NONE'],
    ['namespace ambient, pod none', [AMBIENT], { labels: { 'istio.io/dataplane-mode': 'none' } }, 'NONE'],
    ['plain namespace, pod ambient', [plain], { labels: { 'istio.io/dataplane-mode': 'ambient' } }, 'HBONE'],
    [
      'other pod value defers to namespace',
      [AMBIENT],
      { labels: { 'istio.io/dataplane-mode': 'x' } },
      'HBONE',
    ],
    ['sidecar-injected', [AMBIENT], { annotations: { 'sidecar.istio.io/status': '{}' } }, 'NONE'],
  ];
  for (const [name, namespaces, over, want] of cases) {
    const w = onlyWorkload({ namespaces, pods: [pod(over)] });
    assert.equal(w.tunnelProtocol, want, name);
  }
});

test('identity and placement: service account default, node, trust domain, cluster id', () => {
  const w = translate(snapshot({ pods: [pod({ serviceAccountName: '', nodeName: '' })] }), {
    ...OPTIONS,
    clusterId: 'c1',
    trustDomain: 'example.org',
  }).config.workloads[0]!;
  assert.equal(w.uid, 'c1//Pod/default/reviews-v1-abc');
  assert.equal(w.serviceAccount, 'default');
  assert.equal(w.node, '');
  assert.equal(w.trustDomain, 'example.org');
  assert.equal(w.clusterId, 'c1');
});

test('canonical name and revision follow istio label precedence', () => {
  const cases: [Record<string, string>, string, string][] = [
    [
      {
        'service.istio.io/canonical-name': 'cn',
        'app.kubernetes.io/name': 'an',
        app: 'a',
        'service.istio.io/canonical-revision': 'cr',
        'app.kubernetes.io/version': 'av',
        version: 'v',
      },
      'cn',
      'cr',
    ],
    [
      { 'app.kubernetes.io/name': 'an', app: 'a', 'app.kubernetes.io/version': 'av', version: 'v' },
      'an',
      'av',
    ],
    [{ app: 'a', version: 'v' }, 'a', 'v'],
    [{}, 'reviews-v1', 'latest'], // the workload (deployment) name
  ];
  const owned = {
    ownerReferences: [
      { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'reviews-v1-7f99cc4496', controller: true },
    ],
  };
  for (const [labels, name, revision] of cases) {
    const w = onlyWorkload({ pods: [pod({ labels, ...owned })] });
    assert.equal(w.canonicalName, name, JSON.stringify(labels));
    assert.equal(w.canonicalRevision, revision, JSON.stringify(labels));
  }
});

test('workload type and name come from the controlling owner', () => {
  const ref = (kind: string, name: string, controller = true) => ({
    apiVersion: 'x',
    kind,
    name,
    controller,
  });
  const cases: [Partial<Pod>, string, string][] = [
    [{}, 'pod', 'reviews-v1-abc'],
    [
      {
        labels: { 'pod-template-hash': '7f99cc4496' },
        ownerReferences: [ref('ReplicaSet', 'reviews-v1-7f99cc4496')],
      },
      'deployment',
      'reviews-v1',
    ],
    [{ ownerReferences: [ref('ReplicaSet', 'reviews-v1-7f99cc4496')] }, 'deployment', 'reviews-v1'],
    [{ ownerReferences: [ref('ReplicaSet', 'standalone')] }, 'deployment', 'standalone'],
    [{ ownerReferences: [ref('Job', 'migrate')] }, 'job', 'migrate'],
    [{ ownerReferences: [ref('Job', 'backup-28974360')] }, 'cronjob', 'backup'],
    [{ ownerReferences: [ref('StatefulSet', 'db')] }, 'pod', 'db'],
    [{ ownerReferences: [ref('Other', 'x', false), ref('Job', 'migrate')] }, 'job', 'migrate'],
  ];
  for (const [over, type, name] of cases) {
    const w = onlyWorkload({ pods: [pod(over)] });
    assert.deepEqual([w.workloadType, w.workloadName], [type, name], JSON.stringify(over));
  }
});

test('health: Running and Ready; missing phase or condition (hand-written YAML) counts as healthy', () => {
  const cases: [string | undefined, boolean | undefined, boolean][] = [
    ['Running', true, true],
    ['Running', false, false],
    ['Running', undefined, true],
    [undefined, undefined, true],
    [undefined, false, false],
    ['Pending', true, false],
    ['Unknown', undefined, false],
  ];
  for (const [phase, ready, want] of cases) {
    assert.equal(onlyWorkload({ pods: [pod({ phase, ready })] }).healthy, want, `${phase}/${ready}`);
  }
});

test('pods that are not workloads: host network, finished, not scheduled and no address, bad address', () => {
  const cases: [string, Partial<Pod>, Pick<TranslateProblem, 'severity' | 'path'>[]][] = [
    ['host network', { hostNetwork: true }, []],
    ['succeeded', { phase: 'Succeeded' }, []],
    ['failed', { phase: 'Failed' }, []],
    ['pending without IP', { phase: 'Pending', podIPs: [], nodeName: '' }, []],
    [
      'no IP, no status',
      { phase: undefined, podIPs: [], nodeName: '' },
      [{ severity: 'warning', path: 'status.podIP' }],
    ],
    ['scheduled without IP, host network', { phase: 'Pending', podIPs: [], hostNetwork: true }, []],
    ['bad IP', { podIPs: ['10.0.1.5', '10.0.1'] }, [{ severity: 'error', path: 'status.podIPs[1]' }]],
  ];
  for (const [name, over, want] of cases) {
    const r = translate(snapshot({ pods: [pod(over)] }), OPTIONS);
    assert.deepEqual(r.config.workloads, [], name);
    assert.deepEqual(
      r.problems.map((p) => ({ severity: p.severity, path: p.path })),
      want,
      name,
    );
    for (const p of r.problems)
      assert.deepEqual([p.kind, p.namespace, p.name], ['Pod', 'default', 'reviews-v1-abc']);
  }
});

test('in-pod must-fix 3: a scheduled pod with no IP yet is a workload without addresses (its node agent captures it at its CNI ADD)', () => {
  const r = translate(
    snapshot({
      namespaces: [AMBIENT],
      pods: [pod({ podIPs: [], phase: 'Pending', ready: false })],
    }),
    OPTIONS,
  );
  assert.deepEqual(r.problems, []);
  assert.equal(r.config.workloads.length, 1);
  const w = r.config.workloads[0]!;
  assert.deepEqual(w.addresses, []);
  assert.equal(w.node, 'node-1');
  assert.equal(w.tunnelProtocol, 'HBONE');
  assert.equal(w.uid, 'Kubernetes//Pod/default/reviews-v1-abc');
  assert.equal(w.serviceAccount, 'bookinfo-reviews');
  assert.equal(w.healthy, false);
  // The same uid, identity and protocol once the IP is in: an agent that captured it changes nothing.
  const later = onlyWorkload({ namespaces: [AMBIENT], pods: [pod({ podIPs: ['10.0.1.5'] })] });
  assert.deepEqual(
    [later.uid, later.serviceAccount, later.tunnelProtocol, later.node],
    [w.uid, w.serviceAccount, w.tunnelProtocol, w.node],
  );
  // A pod that should have an IP by now is still worth a word.
  const running = translate(snapshot({ pods: [pod({ podIPs: [], phase: 'Running' })] }), OPTIONS);
  assert.equal(running.config.workloads.length, 1);
  assert.deepEqual(
    running.problems.map((p) => [p.severity, p.path]),
    [['warning', 'status.podIP']],
  );
});

test('dual-stack pods keep every address', () => {
  assert.deepEqual(onlyWorkload({ pods: [pod({ podIPs: ['10.0.1.5', 'fd00::5'] })] }).addresses, [
    '10.0.1.5',
    'fd00::5',
  ]);
});

test("a workload's services map: selection, target ports, named ports", () => {
  const key = 'default/reviews.default.svc.cluster.local';
  const port = (p: number, targetPort: number | string | undefined, protocol = 'TCP') => ({
    name: '',
    port: p,
    targetPort,
    protocol,
    appProtocol: '',
  });
  const cases: [string, Partial<Pod>, Partial<KubeService>, [number, number][] | undefined, number][] = [
    ['numeric targetPort', {}, { ports: [port(80, 9080)] }, [[80, 9080]], 0],
    ['named targetPort', {}, { ports: [port(80, 'http')] }, [[80, 9080]], 0],
    ['missing targetPort', {}, { ports: [port(9080, undefined)] }, [[9080, 9080]], 0],
    [
      'one named port missing on the pod',
      {},
      { ports: [port(80, 'http'), port(81, 'admin')] },
      [[80, 9080]],
      1,
    ],
    ['no named port resolves: not an endpoint', {}, { ports: [port(80, 'admin')] }, undefined, 1],
    [
      'UDP named port does not resolve a TCP service port',
      { containerPorts: [{ name: 'http', containerPort: 9080, protocol: 'UDP' }] },
      { ports: [port(80, 'http')] },
      undefined,
      1,
    ],
    [
      'UDP service ports are not meshed',
      {},
      { ports: [port(53, 53, 'UDP'), port(80, 9080)] },
      [[80, 9080]],
      0,
    ],
    ['UDP-only service', {}, { ports: [port(53, 53, 'UDP')] }, undefined, 0],
    ['selector does not match', {}, { selector: { app: 'ratings' } }, undefined, 0],
    ['selector is a subset of the labels', {}, { selector: { version: 'v1' } }, [[9080, 9080]], 0],
    ['empty selector selects nothing', {}, { selector: {} }, undefined, 0],
    ['other namespace', {}, { namespace: 'other' }, undefined, 0],
    ['headless without ports: every port', {}, { clusterIPs: ['None'], ports: [] }, [], 0],
  ];
  for (const [name, podOver, svcOver, want, problemCount] of cases) {
    const r = translate(snapshot({ pods: [pod(podOver)], services: [svc(svcOver)] }), OPTIONS);
    const w = r.config.workloads[0]!;
    const svcKey = svcOver.namespace === 'other' ? 'other/reviews.other.svc.cluster.local' : key;
    assert.deepEqual(w.services.get(svcKey), want === undefined ? undefined : new Map(want), name);
    assert.equal(r.problems.length, problemCount, `${name}: ${JSON.stringify(r.problems)}`);
    for (const p of r.problems) assert.equal(p.severity, 'warning', name);
  }
});

test('a pod is an endpoint of every Service that selects it, keys sorted', () => {
  const w = onlyWorkload({
    pods: [pod()],
    services: [svc({ name: 'reviews' }), svc({ name: 'all', selector: { version: 'v1' } })],
  });
  assert.deepEqual(
    [...w.services.keys()],
    ['default/all.default.svc.cluster.local', 'default/reviews.default.svc.cluster.local'],
  );
});

test("a workload's authorizationPolicies: valid selector policies of its namespace and the root namespace", () => {
  const sel = (labels: Record<string, string>) => labels;
  const w = onlyWorkload({
    pods: [pod()],
    authorizationPolicies: [
      policy({ name: 'match', selector: sel({ app: 'reviews' }) }),
      policy({ name: 'empty-selector', selector: {} }),
      policy({ name: 'no-match', selector: sel({ app: 'ratings' }) }),
      policy({ name: 'namespace-wide' }),
      policy({ name: 'other-ns', namespace: 'other', selector: {} }),
      policy({ name: 'root', namespace: 'istio-system', selector: sel({ app: 'reviews' }) }),
      policy({
        name: 'waypoint',
        targetRefs: [{ group: '', kind: 'Service', name: 'reviews', namespace: '' }],
      }),
      policy({ name: 'invalid', selector: {}, action: 'MAYBE' }),
      policy({ name: 'audit', selector: {}, action: 'AUDIT' }),
    ],
  });
  assert.deepEqual(w.authorizationPolicies, ['default/empty-selector', 'default/match', 'istio-system/root']);
});

// ---- services ----

test('a Service becomes a model service', () => {
  const r = translate(
    snapshot({
      services: [
        svc({
          clusterIPs: ['10.96.0.3', 'fd00::3'],
          ports: [
            { name: 'http', port: 9080, targetPort: 'http', protocol: 'TCP', appProtocol: 'http' },
            { name: 'grpc', port: 80, targetPort: 8080, protocol: '', appProtocol: '' },
            { name: 'metrics', port: 15020, targetPort: undefined, protocol: 'TCP', appProtocol: '' },
            { name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP', appProtocol: '' },
          ],
        }),
      ],
    }),
    OPTIONS,
  );
  assert.deepEqual(r.problems, []);
  assert.deepEqual(r.config.services, [
    {
      name: 'reviews',
      namespace: 'default',
      hostname: 'reviews.default.svc.cluster.local',
      vips: [
        { network: '', address: '10.96.0.3' },
        { network: '', address: 'fd00::3' },
      ],
      ports: new Map([
        [80, 8080],
        [9080, 9080],
        [15020, 15020],
      ]),
      subjectAltNames: [],
      waypoint: undefined,
    },
  ]);
});

test('headless, selectorless and ExternalName Services', () => {
  const r = translate(
    snapshot({
      services: [
        svc({ name: 'headless', clusterIPs: ['None'] }),
        svc({ name: 'no-ip', clusterIPs: [] }),
        svc({ name: 'external', selector: {} }),
        svc({ name: 'alias', type: 'ExternalName', clusterIPs: [] }),
      ],
    }),
    { ...OPTIONS, clusterDomain: 'example.internal' },
  );
  assert.deepEqual(r.problems, []);
  assert.deepEqual(
    r.config.services.map((s) => [s.hostname, s.vips.map((v) => v.address)]),
    [
      ['external.default.svc.example.internal', ['10.96.0.3']],
      ['headless.default.svc.example.internal', []],
      ['no-ip.default.svc.example.internal', []],
    ],
  );
});

test('invalid Services are skipped with every problem; others are kept', () => {
  const port = { name: '', port: 80, targetPort: 80, protocol: 'TCP', appProtocol: '' };
  const cases: [Partial<KubeService>, string[]][] = [
    [{ clusterIPs: ['10.96.0.300'] }, ['spec.clusterIPs[0]']],
    [{ ports: [{ ...port, port: 0 }] }, ['spec.ports[0].port']],
    [
      { ports: [port, { ...port, port: 70000, targetPort: -1 }] },
      ['spec.ports[1].port', 'spec.ports[1].targetPort'],
    ],
    [{ ports: [{ ...port, targetPort: 'Not_A_Name' }] }, ['spec.ports[0].targetPort']],
    [{ ports: [{ ...port, targetPort: 'waytoolongportname' }] }, ['spec.ports[0].targetPort']],
    [{ ports: [{ ...port, protocol: 'tcp' }] }, ['spec.ports[0].protocol']],
  ];
  for (const [over, paths] of cases) {
    const r = translate(
      snapshot({ services: [svc({ name: 'bad', ...over }), svc()], pods: [pod()] }),
      OPTIONS,
    );
    assert.deepEqual(
      r.config.services.map((s) => s.name),
      ['reviews'],
      JSON.stringify(over),
    );
    assert.deepEqual(
      r.problems.map((p) => p.path),
      paths,
      JSON.stringify(over),
    );
    for (const p of r.problems)
      assert.deepEqual([p.severity, p.kind, p.namespace, p.name], ['error', 'Service', 'default', 'bad']);
    // The skipped Service is not in any workload's services map either.
    assert.deepEqual(
      [...r.config.workloads[0]!.services.keys()],
      ['default/reviews.default.svc.cluster.local'],
    );
  }
});

// ---- authorization ----

test('scope follows selector and namespace; action and dry run', () => {
  const cases: [Partial<AuthorizationPolicy>, Partial<Authorization>][] = [
    [{ selector: { app: 'x' } }, { scope: 'WorkloadSelector', action: 'Allow' }],
    [{ selector: {} }, { scope: 'WorkloadSelector' }],
    [{}, { scope: 'Namespace' }],
    [{ namespace: 'istio-system' }, { scope: 'Global' }],
    [{ namespace: 'istio-system', selector: { app: 'x' } }, { scope: 'WorkloadSelector' }],
    [{ action: '' }, { action: 'Allow' }],
    [{ action: 'DENY' }, { action: 'Deny' }],
    [{ annotations: { 'istio.io/dry-run': 'true' } }, { dryRun: true }],
    [{ annotations: { 'istio.io/dry-run': 'false' } }, { dryRun: false }],
  ];
  for (const [over, want] of cases) {
    const { policy: got, problems } = onlyPolicy(policy(over));
    assert.deepEqual(problems, []);
    for (const [k, v] of Object.entries(want))
      assert.equal(got[k as keyof Authorization], v, JSON.stringify(over));
  }
});

test('policies ztunnel does not enforce: waypoint-attached (silently), AUDIT and CUSTOM (with a warning)', () => {
  const ref = { group: '', kind: 'Service', name: 'reviews', namespace: '' };
  const cases: [Partial<AuthorizationPolicy>, Pick<TranslateProblem, 'severity' | 'path'>[]][] = [
    [{ targetRefs: [ref] }, []],
    [{ targetRefs: [ref], action: 'CUSTOM' }, []],
    [{ action: 'AUDIT' }, [{ severity: 'warning', path: 'spec.action' }]],
    [{ action: 'CUSTOM' }, [{ severity: 'warning', path: 'spec.action' }]],
    [{ action: 'allow' }, [{ severity: 'error', path: 'spec.action' }]],
    [{ targetRefs: [ref], selector: {} }, [{ severity: 'error', path: 'spec' }]],
  ];
  for (const [over, want] of cases) {
    const r = translate(snapshot({ authorizationPolicies: [policy(over)] }), OPTIONS);
    assert.deepEqual(r.config.policies, [], JSON.stringify(over));
    assert.deepEqual(
      r.problems.map((p) => ({ severity: p.severity, path: p.path })),
      want,
      JSON.stringify(over),
    );
  }
});

test('rules: to, from and when become ANDed clauses of ORed matches', () => {
  const cases: [string, AuthzRule, Authorization['rules'][number]][] = [
    ['empty rule matches everything', rule({}), []],
    [
      'principals with wildcards',
      rule({
        from: [
          { ...src({ principals: ['cluster.local/ns/default/sa/curl', '*/sa/admin', 'spiffe*', '*'] }) },
        ],
      }),
      [
        [
          m({
            principals: [
              { kind: 'exact', value: 'cluster.local/ns/default/sa/curl' },
              { kind: 'suffix', value: '/sa/admin' },
              { kind: 'prefix', value: 'spiffe' },
              { kind: 'presence' },
            ],
          }),
        ],
      ],
    ],
    [
      'every L4 source field',
      rule({
        from: [
          src({
            notPrincipals: ['a'],
            namespaces: ['default'],
            notNamespaces: ['kube-*'],
            serviceAccounts: ['other/sa1', 'sa2'],
            notServiceAccounts: ['sa3'],
            ipBlocks: ['10.0.0.0/8', '10.1.2.3'],
            notIpBlocks: ['fd00::/8', 'fd00::1'],
          }),
        ],
      }),
      [
        [
          m({
            notPrincipals: [{ kind: 'exact', value: 'a' }],
            namespaces: [{ kind: 'exact', value: 'default' }],
            notNamespaces: [{ kind: 'prefix', value: 'kube-' }],
            serviceAccounts: [
              { namespace: 'other', serviceAccount: 'sa1' },
              { namespace: 'default', serviceAccount: 'sa2' },
            ],
            notServiceAccounts: [{ namespace: 'default', serviceAccount: 'sa3' }],
            sourceIps: [
              { address: '10.0.0.0', prefixLength: 8 },
              { address: '10.1.2.3', prefixLength: 32 },
            ],
            notSourceIps: [
              { address: 'fd00::', prefixLength: 8 },
              { address: 'fd00::1', prefixLength: 128 },
            ],
          }),
        ],
      ],
    ],
    [
      'two sources are ORed in one clause; to comes first',
      rule({
        from: [src({ namespaces: ['a'] }), src({ namespaces: ['b'] })],
        to: [op({ ports: ['9080'], notPorts: ['15000'] })],
      }),
      [
        [m({ destinationPorts: [9080], notDestinationPorts: [15000] })],
        [
          m({ namespaces: [{ kind: 'exact', value: 'a' }] }),
          m({ namespaces: [{ kind: 'exact', value: 'b' }] }),
        ],
      ],
    ],
    [
      'each L4 when condition is its own clause',
      rule({
        when: [
          { key: 'source.ip', values: ['10.0.0.1'], notValues: ['10.0.0.2/32'] },
          { key: 'source.namespace', values: ['ns*'], notValues: [] },
          { key: 'source.principal', values: [], notValues: ['*'] },
          { key: 'destination.ip', values: ['10.96.0.0/12'], notValues: [] },
          { key: 'destination.port', values: ['80'], notValues: ['81'] },
        ],
      }),
      [
        [
          m({
            sourceIps: [{ address: '10.0.0.1', prefixLength: 32 }],
            notSourceIps: [{ address: '10.0.0.2', prefixLength: 32 }],
          }),
        ],
        [m({ namespaces: [{ kind: 'prefix', value: 'ns' }] })],
        [m({ notPrincipals: [{ kind: 'presence' }] })],
        [m({ destinationIps: [{ address: '10.96.0.0', prefixLength: 12 }] })],
        [m({ destinationPorts: [80], notDestinationPorts: [81] })],
      ],
    ],
  ];
  for (const [name, r, want] of cases) {
    const { policy: got, problems } = onlyPolicy(policy({ rules: [r] }));
    assert.deepEqual(problems, [], name);
    assert.deepEqual(got.rules, [want], name);
  }
});

test('no rules: an ALLOW that allows nothing; rules: [{}]: allow everything (checked with l4.ts)', () => {
  const conn: L4Connection = { srcIp: '10.0.0.2', dstIp: '10.0.1.5', dstPort: 9080, srcIdentity: undefined };
  const allowNothing = onlyPolicy(policy({ rules: [] })).policy;
  const allowAll = onlyPolicy(policy({ rules: [rule({})] })).policy;
  const denyNothing = onlyPolicy(policy({ action: 'DENY', rules: [] })).policy;
  assert.deepEqual(allowNothing.rules, []);
  assert.equal(evaluateL4([allowNothing], conn).allowed, false);
  assert.equal(evaluateL4([allowAll], conn).allowed, true);
  assert.equal(evaluateL4([denyNothing], conn).allowed, true);
  assert.equal(evaluateL4([{ ...allowAll, action: 'Deny' }], conn).allowed, false);
});

test('L7 attributes: an ALLOW rule is dropped, a DENY rule is enforced without them', () => {
  const curl = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'curl' };
  const conn: L4Connection = { srcIp: '10.0.0.2', dstIp: '10.0.1.5', dstPort: 9080, srcIdentity: curl };
  const l7Rule = rule({
    from: [src({ principals: ['cluster.local/ns/default/sa/curl'], requestPrincipals: ['*'] })],
    to: [op({ methods: ['GET'], ports: ['9080'] })],
  });
  const cases: [string, AuthorizationPolicy, Authorization['rules'], string[], boolean][] = [
    [
      'ALLOW: the L7 rule is dropped, the L4 rule kept',
      policy({ rules: [l7Rule, rule({ from: [src({ namespaces: ['other'] })] })] }),
      [[[m({ namespaces: [{ kind: 'exact', value: 'other' }] })]]],
      ['spec.rules[0]'],
      false,
    ],
    [
      'ALLOW: an L7 when key drops the rule',
      policy({ rules: [rule({ when: [{ key: 'request.headers[x]', values: ['y'], notValues: [] }] })] }),
      [],
      ['spec.rules[0]'],
      false,
    ],
    [
      'DENY: L7 fields stripped, L4 fields enforced (more restrictive)',
      policy({ action: 'DENY', rules: [l7Rule] }),
      [
        [
          [m({ destinationPorts: [9080] })],
          [m({ principals: [{ kind: 'exact', value: 'cluster.local/ns/default/sa/curl' }] })],
        ],
      ],
      ['spec.rules[0]'],
      false,
    ],
    [
      'DENY: only L7 left nothing: an empty match, a no-op as in istiod (istio/istio#61126)',
      policy({ action: 'DENY', rules: [rule({ to: [op({ methods: ['DELETE'] })] })] }),
      [[[EMPTY]]],
      ['spec.rules[0]'],
      true,
    ],
    [
      'DENY: remoteIpBlocks is L7 (client address from headers)',
      policy({ action: 'DENY', rules: [rule({ from: [src({ remoteIpBlocks: ['10.0.0.0/8'] })] })] }),
      [[[EMPTY]]],
      ['spec.rules[0]'],
      true,
    ],
    [
      'DENY: an L7 when key makes the rule never match',
      policy({
        action: 'DENY',
        rules: [
          rule({
            from: [src({ namespaces: ['default'] })],
            when: [{ key: 'request.auth.claims[iss]', values: ['x'], notValues: [] }],
          }),
        ],
      }),
      [[[m({ namespaces: [{ kind: 'exact', value: 'default' }] })], [EMPTY]]],
      ['spec.rules[0]'],
      true,
    ],
  ];
  for (const [name, p, rules, paths, allowed] of cases) {
    const r = translate(snapshot({ authorizationPolicies: [p] }), OPTIONS);
    assert.equal(r.config.policies.length, 1, name);
    assert.deepEqual(r.config.policies[0]!.rules, rules, name);
    assert.deepEqual(
      r.problems.map((x) => x.path),
      paths,
      name,
    );
    for (const x of r.problems) {
      assert.equal(x.severity, 'warning', name);
      assert.match(x.message, /waypoint/, name);
    }
    assert.equal(evaluateL4(r.config.policies, conn).allowed, allowed, name);
  }
});

test('the DENY warning says when the rule has no effect', () => {
  const msg = (r: AuthzRule) =>
    translate(snapshot({ authorizationPolicies: [policy({ action: 'DENY', rules: [r] })] }), OPTIONS)
      .problems[0]!.message;
  assert.match(msg(rule({ to: [op({ methods: ['DELETE'] })] })), /no effect/);
  assert.match(
    msg(rule({ to: [op({ methods: ['DELETE'] }), op({ ports: ['80'] })] })),
    /to\[0\]\.operation never matches/,
  );
  assert.match(msg(rule({ to: [op({ methods: ['DELETE'], ports: ['80'] })] })), /denies more than requested/);
});

test('invalid policies are skipped with the field path; others are kept', () => {
  const cases: [string, AuthzRule, string[]][] = [
    [
      'bad CIDRs',
      rule({ from: [src({ ipBlocks: ['10.0.0.0/8', '10.0.0.0/33', 'fd00::/129', 'host'] })] }),
      [
        'spec.rules[0].from[0].source.ipBlocks[1]',
        'spec.rules[0].from[0].source.ipBlocks[2]',
        'spec.rules[0].from[0].source.ipBlocks[3]',
      ],
    ],
    [
      'bad notIpBlocks',
      rule({ from: [src({ notIpBlocks: ['1.2.3.4/'] })] }),
      ['spec.rules[0].from[0].source.notIpBlocks[0]'],
    ],
    [
      'bad ports',
      rule({ to: [op({ ports: ['0', '65536', 'http', '80'] }), op({ notPorts: ['-1'] })] }),
      [
        'spec.rules[0].to[0].operation.ports[0]',
        'spec.rules[0].to[0].operation.ports[1]',
        'spec.rules[0].to[0].operation.ports[2]',
        'spec.rules[0].to[1].operation.notPorts[0]',
      ],
    ],
    [
      'empty source',
      rule({ from: [src({}), undefined] }),
      ['spec.rules[0].from[0].source', 'spec.rules[0].from[1].source'],
    ],
    ['empty operation', rule({ to: [undefined] }), ['spec.rules[0].to[0].operation']],
    [
      'bad when',
      rule({
        when: [
          { key: '', values: ['x'], notValues: [] },
          { key: 'source.ip', values: [], notValues: [] },
          { key: 'destination.port', values: ['x'], notValues: [] },
          { key: 'destination.ip', values: [], notValues: ['y'] },
        ],
      }),
      [
        'spec.rules[0].when[0].key',
        'spec.rules[0].when[1]',
        'spec.rules[0].when[2].values[0]',
        'spec.rules[0].when[3].notValues[0]',
      ],
    ],
  ];
  for (const [name, r, paths] of cases) {
    const good = policy({ name: 'good', rules: [rule({})] });
    const res = translate(
      snapshot({ authorizationPolicies: [policy({ name: 'bad', rules: [rule({}), r] }), good] }),
      OPTIONS,
    );
    assert.deepEqual(
      res.config.policies.map((p) => p.name),
      ['good'],
      name,
    );
    const want = paths.map((p) => p.replace('spec.rules[0]', 'spec.rules[1]'));
    assert.deepEqual(
      res.problems.map((p) => p.path),
      want,
      name,
    );
    for (const p of res.problems)
      assert.deepEqual(
        [p.severity, p.kind, p.namespace, p.name],
        ['error', 'AuthorizationPolicy', 'default', 'bad'],
        name,
      );
  }
});

test('output is sorted: workloads by uid, services by namespace/hostname, policies by namespace/name', () => {
  const r = translate(
    snapshot({
      pods: [
        pod({ name: 'b' }),
        pod({ name: 'a', podIPs: ['10.0.0.1'] }),
        pod({ namespace: 'a-ns', name: 'z' }),
      ],
      services: [svc({ name: 'b' }), svc({ namespace: 'a-ns', name: 'z' }), svc({ name: 'a' })],
      authorizationPolicies: [
        policy({ name: 'b' }),
        policy({ namespace: 'a-ns', name: 'z' }),
        policy({ name: 'a' }),
      ],
    }),
    OPTIONS,
  );
  assert.deepEqual(
    r.config.workloads.map((w) => w.uid),
    ['Kubernetes//Pod/a-ns/z', 'Kubernetes//Pod/default/a', 'Kubernetes//Pod/default/b'],
  );
  assert.deepEqual(
    r.config.services.map((s) => `${s.namespace}/${s.hostname}`),
    [
      'a-ns/z.a-ns.svc.cluster.local',
      'default/a.default.svc.cluster.local',
      'default/b.default.svc.cluster.local',
    ],
  );
  assert.deepEqual(
    r.config.policies.map((p) => `${p.namespace}/${p.name}`),
    ['a-ns/z', 'default/a', 'default/b'],
  );
});

test('helpers: Istio wildcards, CIDRs, IP syntax', () => {
  assert.deepEqual(stringMatch('a*'), { kind: 'prefix', value: 'a' });
  assert.deepEqual(stringMatch('*a'), { kind: 'suffix', value: 'a' });
  assert.deepEqual(stringMatch('a*b'), { kind: 'exact', value: 'a*b' });
  assert.deepEqual(parseCidr('10.0.0.0/0'), { address: '10.0.0.0', prefixLength: 0 });
  assert.deepEqual(parseCidr('::ffff:10.0.0.1'), { address: '::ffff:10.0.0.1', prefixLength: 128 });
  for (const bad of ['10.0.0.0/x', '10.0.0.0/08a', '/8', '10.0.0.0/8/8', ''])
    assert.equal(parseCidr(bad), undefined, bad);
  const cases: [string, 0 | 4 | 6][] = [
    ['10.0.0.1', 4],
    ['255.255.255.255', 4],
    ['256.0.0.1', 0],
    ['01.0.0.1', 0],
    ['1.2.3', 0],
    ['::', 6],
    ['fd00::1:2', 6],
    ['::ffff:1.2.3.4', 6],
    ['1:2:3:4:5:6:7:8', 6],
    ['1:2:3:4:5:6:7:8:9', 0],
    ['fe80::1%eth0', 0],
    ['[::1]', 0],
    ['example.com', 0],
    ['1::2::3', 0],
  ];
  for (const [ip, family] of cases) assert.equal(ipFamily(ip), family, ip);
});
