import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadKubeDir, watchKubeDir } from '../../../src/controller/files/file-source.ts';
import {
  decodeKubeSnapshot,
  formatKubeYamlProblem,
  type KubeYamlProblem,
} from '../../../src/controller/files/kube-yaml.ts';
import type { KubeSnapshot } from '../../../src/controller/translate/kube-types.ts';
import { translate } from '../../../src/controller/translate/workloads.ts';
import { evaluateL4 } from '../../../src/core/policy/l4.ts';

/** One YAML line per argument, so a case's expected line numbers can be read off its source. */
const doc = (...lines: string[]): string => lines.join('\n') + '\n';

function decodeOk(text: string): KubeSnapshot {
  const r = decodeKubeSnapshot(text, 'x.yaml');
  assert.deepEqual(r.problems, []);
  return r.snapshot;
}

/** The problems as `line kind ns/name path: message` strings. */
function problems(text: string): string[] {
  return decodeKubeSnapshot(text, 'x.yaml').problems.map(
    (p) => `${p.severity} ${p.line} ${p.kind} ${p.namespace}/${p.name} ${p.path}: ${p.message}`,
  );
}

test('a Pod with everything the controller reads', () => {
  const s = decodeOk(
    doc(
      'apiVersion: v1',
      'kind: Pod',
      'metadata:',
      '  name: reviews-v1-7f99cc4496-gdxfn',
      '  namespace: bookinfo',
      '  uid: 0c4d3e2a',
      '  labels: {app: reviews, version: v1}',
      '  annotations: {sidecar.istio.io/status: "{}"}',
      '  ownerReferences:',
      '  - {apiVersion: apps/v1, kind: ReplicaSet, name: reviews-v1-7f99cc4496, controller: true, uid: x}',
      'spec:',
      '  nodeName: node-1',
      '  serviceAccountName: bookinfo-reviews',
      '  hostNetwork: false',
      '  containers:',
      '  - name: reviews',
      '    image: reviews:v1',
      '    ports:',
      '    - {name: http, containerPort: 9080}',
      '    - {containerPort: 9090, protocol: UDP}',
      '  - name: side',
      '    ports: [{name: admin, containerPort: "15000"}]',
      'status:',
      '  phase: Running',
      '  podIP: 10.0.1.5',
      '  podIPs: [{ip: 10.0.1.5}, {ip: "fd00::5"}]',
      '  conditions:',
      '  - {type: PodScheduled, status: "True"}',
      '  - {type: Ready, status: "False"}',
    ),
  );
  assert.deepEqual(s.pods, [
    {
      namespace: 'bookinfo',
      name: 'reviews-v1-7f99cc4496-gdxfn',
      uid: '0c4d3e2a',
      labels: { app: 'reviews', version: 'v1' },
      annotations: { 'sidecar.istio.io/status': '{}' },
      nodeName: 'node-1',
      serviceAccountName: 'bookinfo-reviews',
      podIPs: ['10.0.1.5', 'fd00::5'],
      phase: 'Running',
      ready: false,
      ownerReferences: [
        { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'reviews-v1-7f99cc4496', controller: true },
      ],
      hostNetwork: false,
      containerPorts: [
        { name: 'http', containerPort: 9080, protocol: 'TCP' },
        { name: '', containerPort: 9090, protocol: 'UDP' },
        { name: 'admin', containerPort: 15000, protocol: 'TCP' },
      ],
    },
  ]);
});

test('a hand-written Pod: defaults, no status, the deprecated serviceAccount field', () => {
  const cases: [string, Partial<KubeSnapshot['pods'][number]>][] = [
    [
      doc('apiVersion: v1', 'kind: Pod', 'metadata: {name: p}'),
      { namespace: 'default', podIPs: [], phase: undefined, ready: undefined, serviceAccountName: '' },
    ],
    [
      doc('apiVersion: v1', 'kind: Pod', 'metadata: {name: p}', 'status: {podIP: 10.0.0.1}'),
      { podIPs: ['10.0.0.1'] },
    ],
    [
      doc('apiVersion: v1', 'kind: Pod', 'metadata: {name: p}', 'spec: {serviceAccount: old}'),
      { serviceAccountName: 'old' },
    ],
    [
      doc('apiVersion: v1', 'kind: Pod', 'metadata: {name: p}', 'spec: {hostNetwork: true}'),
      { hostNetwork: true },
    ],
    [
      doc(
        'apiVersion: v1',
        'kind: Pod',
        'metadata: {name: p}',
        'status: {conditions: [{type: Ready, status: "True"}]}',
      ),
      { ready: true },
    ],
  ];
  for (const [text, want] of cases) {
    const [p] = decodeOk(text).pods;
    for (const [k, v] of Object.entries(want))
      assert.deepEqual(p![k as keyof typeof p], v, `${k} in ${text}`);
  }
});

test('a Service: clusterIP(s), IntOrString targetPort, defaults', () => {
  const s = decodeOk(
    doc(
      'apiVersion: v1',
      'kind: Service',
      'metadata: {name: reviews, labels: {app: reviews}}',
      'spec:',
      '  selector: {app: reviews}',
      '  clusterIP: 10.96.0.3',
      '  ports:',
      '  - {name: http, port: 9080, targetPort: http, appProtocol: http}',
      '  - {port: 80, targetPort: 8080, protocol: TCP}',
      '  - {port: 81, targetPort: "8081"}',
      '  - {port: 53, protocol: UDP}',
      '---',
      'apiVersion: v1',
      'kind: Service',
      'metadata: {name: dual, namespace: other}',
      'spec: {type: NodePort, clusterIP: 10.96.0.4, clusterIPs: [10.96.0.4, "fd00::4"]}',
    ),
  );
  assert.deepEqual(s.services, [
    {
      namespace: 'default',
      name: 'reviews',
      labels: { app: 'reviews' },
      type: 'ClusterIP',
      selector: { app: 'reviews' },
      clusterIPs: ['10.96.0.3'],
      ports: [
        { name: 'http', port: 9080, targetPort: 'http', protocol: 'TCP', appProtocol: 'http' },
        { name: '', port: 80, targetPort: 8080, protocol: 'TCP', appProtocol: '' },
        { name: '', port: 81, targetPort: 8081, protocol: 'TCP', appProtocol: '' },
        { name: '', port: 53, targetPort: undefined, protocol: 'UDP', appProtocol: '' },
      ],
    },
    {
      namespace: 'other',
      name: 'dual',
      labels: {},
      type: 'NodePort',
      selector: {},
      clusterIPs: ['10.96.0.4', 'fd00::4'],
      ports: [],
    },
  ]);
});

test('Namespaces, ServiceAccounts and List expansion', () => {
  const s = decodeOk(
    doc(
      'apiVersion: v1',
      'kind: Namespace',
      'metadata: {name: default, labels: {istio.io/dataplane-mode: ambient}}',
      '---',
      '# an empty document is fine',
      '---',
      'apiVersion: v1',
      'kind: List',
      'items:',
      '- {apiVersion: v1, kind: ServiceAccount, metadata: {name: curl}}',
      '- {apiVersion: v1, kind: ServiceAccount, metadata: {name: reviews, namespace: bookinfo}}',
      '- {apiVersion: v1, kind: Namespace, metadata: {name: bookinfo}}',
    ),
  );
  assert.deepEqual(s.namespaces, [
    { name: 'default', labels: { 'istio.io/dataplane-mode': 'ambient' } },
    { name: 'bookinfo', labels: {} },
  ]);
  assert.deepEqual(s.serviceAccounts, [
    { namespace: 'default', name: 'curl' },
    { namespace: 'bookinfo', name: 'reviews' },
  ]);
});

test('an AuthorizationPolicy (v1 and v1beta1)', () => {
  const s = decodeOk(
    doc(
      'apiVersion: security.istio.io/v1',
      'kind: AuthorizationPolicy',
      'metadata: {name: full, namespace: default, annotations: {istio.io/dry-run: "true"}}',
      'spec:',
      '  selector: {matchLabels: {app: reviews}}',
      '  action: DENY',
      '  rules:',
      '  - from:',
      '    - source: {principals: [a], notNamespaces: [b], ipBlocks: [10.0.0.0/8], requestPrincipals: ["*"]}',
      '    - {}',
      '    to:',
      '    - operation: {ports: [9080, "9081"], methods: [GET]}',
      '    when:',
      '    - {key: source.ip, notValues: [10.1.0.0/16]}',
      '  - {}',
      '---',
      'apiVersion: security.istio.io/v1beta1',
      'kind: AuthorizationPolicy',
      'metadata: {name: waypoint}',
      'spec:',
      '  selector: {}',
      '  targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}',
      '  targetRefs: [{kind: Service, name: reviews}]',
      '---',
      'apiVersion: security.istio.io/v1',
      'kind: AuthorizationPolicy',
      'metadata: {name: allow-nothing}',
    ),
  );
  const none = { principals: [], notPrincipals: [], requestPrincipals: [], notRequestPrincipals: [] };
  const rest = { namespaces: [], notNamespaces: [], serviceAccounts: [], notServiceAccounts: [] };
  const ips = { ipBlocks: [], notIpBlocks: [], remoteIpBlocks: [], notRemoteIpBlocks: [] };
  assert.deepEqual(s.authorizationPolicies, [
    {
      namespace: 'default',
      name: 'full',
      annotations: { 'istio.io/dry-run': 'true' },
      selector: { app: 'reviews' },
      targetRefs: [],
      action: 'DENY',
      rules: [
        {
          from: [
            {
              ...none,
              ...rest,
              ...ips,
              principals: ['a'],
              requestPrincipals: ['*'],
              notNamespaces: ['b'],
              ipBlocks: ['10.0.0.0/8'],
            },
            undefined,
          ],
          to: [
            {
              hosts: [],
              notHosts: [],
              ports: ['9080', '9081'],
              notPorts: [],
              methods: ['GET'],
              notMethods: [],
              paths: [],
              notPaths: [],
            },
          ],
          when: [{ key: 'source.ip', values: [], notValues: ['10.1.0.0/16'] }],
        },
        { from: [], to: [], when: [] },
      ],
    },
    {
      namespace: 'default',
      name: 'waypoint',
      annotations: {},
      selector: {},
      targetRefs: [
        { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'waypoint', namespace: '' },
        { group: '', kind: 'Service', name: 'reviews', namespace: '' },
      ],
      action: '',
      rules: [],
    },
    {
      namespace: 'default',
      name: 'allow-nothing',
      annotations: {},
      selector: undefined,
      targetRefs: [],
      action: '',
      rules: [],
    },
  ]);
});

test('kinds the controller does not read are noted and ignored', () => {
  assert.deepEqual(
    problems(
      doc(
        'apiVersion: apps/v1',
        'kind: Deployment',
        'metadata: {name: reviews-v1}',
        '---',
        'apiVersion: gateway.networking.k8s.io/v1',
        'kind: GRPCRoute',
        'metadata: {name: reviews, namespace: default}',
        '---',
        'apiVersion: v2',
        'kind: Pod',
        'metadata: {name: p}',
      ),
    ),
    [
      'info 1 Deployment /reviews-v1 : apps/v1 Deployment is not read by the controller; ignored',
      'info 5 GRPCRoute default/reviews : gateway.networking.k8s.io/v1 GRPCRoute is not read by the controller yet; ignored',
      'info 9 Pod /p : v2 Pod is not read by the controller; ignored',
    ],
  );
});

test('problems name file, line, object and field; the bad object is skipped and the rest kept', () => {
  const good = doc('---', 'apiVersion: v1', 'kind: ServiceAccount', 'metadata: {name: good}');
  const cases: [string, string, string[]][] = [
    [
      'a syntax error',
      doc('apiVersion: v1', 'kind: Pod', 'metadata: {name: p', 'x: y'),
      ['error 4  / : YAML syntax:'],
    ],
    [
      'no kind',
      doc('apiVersion: v1', 'metadata: {name: p}'),
      ['error 1  /p : apiVersion and kind are required'],
    ],
    ['not a mapping', doc('- a', '- b'), ['error 1  / : must be a mapping']],
    [
      'no name',
      doc('apiVersion: v1', 'kind: Pod', 'metadata: {namespace: x}'),
      ['error 3 Pod x/ metadata.name: is required'],
    ],
    [
      'a label that is not a string',
      doc('apiVersion: v1', 'kind: Pod', 'metadata:', '  name: p', '  labels: {version: 2}'),
      ['error 5 Pod default/p metadata.labels.version: must be a string'],
    ],
    [
      'a port that is not an integer',
      doc('apiVersion: v1', 'kind: Service', 'metadata: {name: s}', 'spec:', '  ports:', '  - {port: http}'),
      ['error 6 Service default/s spec.ports[0].port: must be an integer from -2147483648 to 2147483647'],
    ],
    [
      'a port without a number',
      doc('apiVersion: v1', 'kind: Service', 'metadata: {name: s}', 'spec:', '  ports:', '  - {name: http}'),
      ['error 6 Service default/s spec.ports[0].port: is required'],
    ],
    [
      'a targetPort that is neither',
      doc(
        'apiVersion: v1',
        'kind: Service',
        'metadata: {name: s}',
        'spec:',
        '  ports:',
        '  - {port: 80, targetPort: [1]}',
      ),
      ['error 6 Service default/s spec.ports[0].targetPort: must be an integer or a port name'],
    ],
    [
      'a misspelt AuthorizationPolicy field',
      doc(
        'apiVersion: security.istio.io/v1',
        'kind: AuthorizationPolicy',
        'metadata: {name: a}',
        'spec:',
        '  rules:',
        '  - from:',
        '    - source: {notPrincipal: [x]}',
      ),
      [
        'error 7 AuthorizationPolicy default/a spec.rules[0].from[0].source.notPrincipal: unknown field (known: principals, notPrincipals, requestPrincipals, notRequestPrincipals, namespaces, notNamespaces, serviceAccounts, notServiceAccounts, ipBlocks, notIpBlocks, remoteIpBlocks, notRemoteIpBlocks)',
      ],
    ],
    [
      'a policy list that is a mapping',
      doc(
        'apiVersion: security.istio.io/v1',
        'kind: AuthorizationPolicy',
        'metadata: {name: a}',
        'spec: {rules: {from: []}}',
      ),
      ['error 4 AuthorizationPolicy default/a spec.rules: must be a list'],
    ],
    [
      'a bad item in a List',
      doc(
        'apiVersion: v1',
        'kind: List',
        'items:',
        '- {apiVersion: v1, kind: Pod, metadata: {name: p, labels: x}}',
      ),
      ['error 4 Pod default/p metadata.labels: must be a mapping'],
    ],
    [
      'a duplicate object',
      doc('apiVersion: v1', 'kind: ServiceAccount', 'metadata: {name: good}'),
      ['error 5 ServiceAccount default/good : already defined at x.yaml:1; this definition is ignored'],
    ],
  ];
  for (const [name, text, want] of cases) {
    const r = decodeKubeSnapshot(text + good, 'x.yaml');
    const got = r.problems.map(
      (p) => `${p.severity} ${p.line} ${p.kind} ${p.namespace}/${p.name} ${p.path}: ${p.message}`,
    );
    assert.equal(got.length, want.length, `${name}: ${JSON.stringify(got)}`);
    got.forEach((g, i) => assert.ok(g.startsWith(want[i]!), `${name}: ${g}`));
    assert.ok(
      r.snapshot.serviceAccounts.some((s) => s.name === 'good'),
      `${name}: the good object is kept`,
    );
    assert.deepEqual(r.snapshot.pods, [], name);
    assert.deepEqual(r.snapshot.services, [], name);
    assert.deepEqual(r.snapshot.authorizationPolicies, [], name);
    for (const p of r.problems) assert.equal(p.file, 'x.yaml');
  }
});

test('formatKubeYamlProblem', () => {
  const p: KubeYamlProblem = {
    severity: 'error',
    file: 'a.yaml',
    line: 7,
    kind: 'Service',
    namespace: 'default',
    name: 's',
    path: 'spec.ports[0].port',
    message: 'is required',
  };
  assert.equal(formatKubeYamlProblem(p), 'a.yaml:7: Service default/s: spec.ports[0].port: is required');
  assert.equal(
    formatKubeYamlProblem({ ...p, kind: '', namespace: '', name: '', path: '' }),
    'a.yaml:7: is required',
  );
});

const FIXTURES = new URL('../../fixtures/kube/', import.meta.url).pathname;

test('end to end: the fixture directory, loaded and translated', async () => {
  const { snapshot, problems: readProblems } = await loadKubeDir(FIXTURES);
  assert.deepEqual(readProblems, []);
  const r = translate(snapshot, {
    clusterId: 'Kubernetes',
    trustDomain: 'cluster.local',
    clusterDomain: 'cluster.local',
    rootNamespace: 'istio-system',
  });
  assert.deepEqual(r.problems, []);
  const reviewsKey = 'default/reviews.default.svc.cluster.local';
  assert.deepEqual(
    r.config.workloads.map((w) => ({
      uid: w.uid,
      addresses: w.addresses,
      tunnel: w.tunnelProtocol,
      sa: w.serviceAccount,
      node: w.node,
      type: `${w.workloadType}/${w.workloadName}`,
      canonical: `${w.canonicalName}/${w.canonicalRevision}`,
      services: Object.fromEntries([...w.services].map(([k, v]) => [k, Object.fromEntries(v)])),
      policies: w.authorizationPolicies,
      healthy: w.healthy,
    })),
    [
      {
        uid: 'Kubernetes//Pod/default/curl-6d9c7b7b5d-x2x7k',
        addresses: ['127.0.1.2'],
        tunnel: 'HBONE',
        sa: 'curl',
        node: 'node-1',
        type: 'deployment/curl',
        canonical: 'curl/latest',
        services: {},
        policies: [],
        healthy: true,
      },
      {
        uid: 'Kubernetes//Pod/default/reviews-v1-7f99cc4496-gdxfn',
        addresses: ['127.0.1.5'],
        tunnel: 'HBONE',
        sa: 'bookinfo-reviews',
        node: 'node-1',
        type: 'deployment/reviews-v1',
        canonical: 'reviews/v1',
        services: { [reviewsKey]: { 9080: 9080 } },
        policies: ['default/reviews-from-curl'],
        healthy: true,
      },
      {
        uid: 'Kubernetes//Pod/default/reviews-v2-5b667bcbf8-8lq9x',
        addresses: ['127.0.2.2'],
        tunnel: 'HBONE',
        sa: 'bookinfo-reviews',
        node: 'node-2',
        type: 'deployment/reviews-v2',
        canonical: 'reviews/v2',
        services: { [reviewsKey]: { 9080: 9081 } },
        policies: ['default/reviews-from-curl'],
        healthy: true,
      },
    ],
  );
  assert.deepEqual(r.config.services, [
    {
      name: 'reviews',
      namespace: 'default',
      hostname: 'reviews.default.svc.cluster.local',
      vips: [{ network: '', address: '127.0.100.3' }],
      ports: new Map([[9080, 9080]]),
      subjectAltNames: [],
      waypoint: undefined,
    },
  ]);
  assert.equal(r.config.policies.length, 1);
  const [policy] = r.config.policies;
  assert.deepEqual([policy!.scope, policy!.action], ['WorkloadSelector', 'Allow']);
  // curl may reach reviews-v2 on its resolved target port; reviews itself may not.
  const id = (serviceAccount: string) => ({
    trustDomain: 'cluster.local',
    namespace: 'default',
    serviceAccount,
  });
  const to = { dstIp: '127.0.2.2', dstPort: 9081 };
  assert.equal(
    evaluateL4(r.config.policies, { srcIp: '127.0.1.2', ...to, srcIdentity: id('curl') }).allowed,
    true,
  );
  assert.equal(
    evaluateL4(r.config.policies, { srcIp: '127.0.1.5', ...to, srcIdentity: id('bookinfo-reviews') }).allowed,
    false,
  );
});

test('loadKubeDir: a missing directory is a problem, not a throw', async () => {
  const r = await loadKubeDir(join(tmpdir(), 'ambit-no-such-dir-for-test'));
  assert.equal(r.problems.length, 1);
  assert.match(r.problems[0]!.message, /cannot read/);
  assert.deepEqual(r.snapshot.pods, []);
});

test('watchKubeDir: the first read, then one debounced re-read per real change', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-kube-'));
  const sa = (name: string) => doc('apiVersion: v1', 'kind: ServiceAccount', `metadata: {name: ${name}}`);
  await writeFile(join(dir, 'a.yaml'), sa('a'));
  await writeFile(join(dir, 'notes.txt'), 'not yaml');
  const seen: string[][] = [];
  let wake: (() => void) | undefined;
  const watcher = watchKubeDir(dir, {
    debounceMs: 20,
    onSnapshot: (s, p) => {
      assert.deepEqual(p, []);
      seen.push(s.serviceAccounts.map((x) => x.name));
      wake?.();
    },
  });
  const next = () => new Promise<void>((resolve) => (wake = resolve));
  try {
    await watcher.ready;
    assert.deepEqual(seen, [['a']]);
    let changed = next();
    await writeFile(join(dir, 'b.yml'), sa('b'));
    await changed;
    assert.deepEqual(seen.at(-1), ['a', 'b']);
    // An editor's save: write a temporary file, then rename it over the original.
    changed = next();
    await writeFile(join(dir, '.a.yaml.tmp'), sa('a2'));
    await rename(join(dir, '.a.yaml.tmp'), join(dir, 'a.yaml'));
    await changed;
    assert.deepEqual(seen.at(-1), ['a2', 'b']);
    // Rewriting the same content, or touching a file that is not YAML, reports nothing.
    const count = seen.length;
    await writeFile(join(dir, 'b.yml'), sa('b'));
    await writeFile(join(dir, 'notes.txt'), 'still not yaml');
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(seen.length, count);
  } finally {
    watcher.close();
    await rm(dir, { recursive: true, force: true });
  }
});
