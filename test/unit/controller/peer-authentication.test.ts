/**
 * PeerAuthentication → Authorization, and what the L4 evaluator then decides: a connection without a
 * peer identity (plaintext inbound) is denied exactly where STRICT applies, and an mTLS one never by
 * these policies.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PeerAuthentication } from '../../../src/controller/translate/kube-types.ts';
import { translate, type TranslateProblem } from '../../../src/controller/translate/workloads.ts';
import { evaluateL4 } from '../../../src/core/policy/l4.ts';
import { MeshState } from '../../../src/core/state/mesh-state.ts';
import { EMPTY_MATCH, type Authorization } from '../../../src/core/xds/model.ts';
import { OPTIONS, peerAuthentication as pa, pod, snapshot } from './objects.ts';

const ROOT = 'istio-system';
const STATIC = 'istio-system/istio_converted_static_strict';
const NO_IDENTITY = { ...EMPTY_MATCH, notPrincipals: [{ kind: 'presence' as const }] };

// Two pods in `default` (reviews 10.0.1.5, ratings 10.0.1.6), one in `other` (10.0.2.5).
const PODS = [
  pod(),
  pod({ name: 'ratings-v1-abc', labels: { app: 'ratings' }, podIPs: ['10.0.1.6'] }),
  pod({ namespace: 'other', name: 'other-abc', labels: { app: 'reviews' }, podIPs: ['10.0.2.5'] }),
];
const REVIEWS = { app: 'reviews' };

/** `ip:port` of every place a plaintext connection is denied, probing ports 8080 and 9080. */
function strictWhere(pas: readonly PeerAuthentication[]): string[] {
  const r = translate(snapshot({ pods: PODS, peerAuthentications: pas }), OPTIONS);
  const state = new MeshState(r.config);
  const denied: string[] = [];
  for (const w of r.config.workloads) {
    for (const dstPort of [8080, 9080]) {
      const conn = { srcIp: '10.0.3.1', dstIp: w.addresses[0]!, dstPort };
      const policies = state.policiesFor(w);
      const mtls = evaluateL4(policies, {
        ...conn,
        srcIdentity: { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'curl' },
      });
      assert.equal(mtls.allowed, true, `mTLS to ${w.name}:${dstPort} must stay allowed`);
      if (!evaluateL4(policies, { ...conn, srcIdentity: undefined }).allowed)
        denied.push(`${conn.dstIp}:${dstPort}`);
    }
  }
  return denied.sort();
}

const ALL = [
  '10.0.1.5:8080',
  '10.0.1.5:9080',
  '10.0.1.6:8080',
  '10.0.1.6:9080',
  '10.0.2.5:8080',
  '10.0.2.5:9080',
];
const DEFAULT_NS = ALL.filter((a) => a.startsWith('10.0.1.'));
const port = (p: number, mode: string) => ({ port: p, mode });

const cases: { name: string; pas: PeerAuthentication[]; denied: string[] }[] = [
  { name: 'no PeerAuthentication: plaintext accepted everywhere', pas: [], denied: [] },
  { name: 'mesh STRICT (root namespace, no selector)', pas: [pa({ namespace: ROOT })], denied: ALL },
  {
    name: 'mesh STRICT, an empty selector is still mesh-wide',
    pas: [pa({ namespace: ROOT, selector: {} })],
    denied: ALL,
  },
  { name: 'mesh PERMISSIVE', pas: [pa({ namespace: ROOT, mode: 'PERMISSIVE' })], denied: [] },
  { name: 'namespace STRICT', pas: [pa()], denied: DEFAULT_NS },
  {
    name: 'mesh STRICT, namespace PERMISSIVE overrides it',
    pas: [pa({ namespace: ROOT }), pa({ mode: 'PERMISSIVE' })],
    denied: ['10.0.2.5:8080', '10.0.2.5:9080'],
  },
  {
    name: 'mesh STRICT, namespace UNSET inherits it',
    pas: [pa({ namespace: ROOT }), pa({ mode: '' })],
    denied: ALL,
  },
  {
    name: 'namespace STRICT, workload PERMISSIVE overrides it for the selected pods',
    pas: [pa(), pa({ name: 'reviews', selector: REVIEWS, mode: 'PERMISSIVE' })],
    denied: ['10.0.1.6:8080', '10.0.1.6:9080'],
  },
  {
    name: 'workload STRICT in a PERMISSIVE mesh',
    pas: [pa({ namespace: ROOT, mode: 'PERMISSIVE' }), pa({ name: 'reviews', selector: REVIEWS })],
    denied: ['10.0.1.5:8080', '10.0.1.5:9080'],
  },
  {
    name: 'namespace STRICT, workload UNSET with port 8080 PERMISSIVE',
    pas: [
      pa(),
      pa({ name: 'reviews', selector: REVIEWS, mode: '', portLevelMtls: [port(8080, 'PERMISSIVE')] }),
    ],
    denied: ['10.0.1.5:9080', '10.0.1.6:8080', '10.0.1.6:9080'],
  },
  {
    name: 'workload STRICT with port 8080 PERMISSIVE',
    pas: [pa({ name: 'reviews', selector: REVIEWS, portLevelMtls: [port(8080, 'PERMISSIVE')] })],
    denied: ['10.0.1.5:9080'],
  },
  {
    name: 'workload PERMISSIVE with port 9080 STRICT',
    pas: [
      pa({ name: 'reviews', selector: REVIEWS, mode: 'PERMISSIVE', portLevelMtls: [port(9080, 'STRICT')] }),
    ],
    denied: ['10.0.1.5:9080'],
  },
  {
    name: 'workload UNSET with port 9080 STRICT, nothing above',
    pas: [pa({ name: 'reviews', selector: REVIEWS, mode: '', portLevelMtls: [port(9080, 'STRICT')] })],
    denied: ['10.0.1.5:9080'],
  },
  {
    name: 'mesh STRICT through an UNSET namespace, workload port 8080 PERMISSIVE',
    pas: [
      pa({ namespace: ROOT }),
      pa({ mode: '' }),
      pa({ name: 'reviews', selector: REVIEWS, mode: '', portLevelMtls: [port(8080, 'PERMISSIVE')] }),
    ],
    denied: ALL.filter((a) => a !== '10.0.1.5:8080'),
  },
  {
    name: 'workload STRICT with every port STRICT is plain STRICT',
    pas: [
      pa({ name: 'reviews', selector: REVIEWS, portLevelMtls: [port(8080, 'STRICT'), port(9080, 'STRICT')] }),
    ],
    denied: ['10.0.1.5:8080', '10.0.1.5:9080'],
  },
  {
    name: 'namespace STRICT, workload DISABLE (not supported: lifts STRICT like PERMISSIVE)',
    pas: [pa(), pa({ name: 'reviews', selector: REVIEWS, mode: 'DISABLE' })],
    denied: ['10.0.1.6:8080', '10.0.1.6:9080'],
  },
  {
    name: 'a selector policy in the root namespace is ignored',
    pas: [pa({ namespace: ROOT, name: 'reviews', selector: REVIEWS })],
    denied: [],
  },
  {
    name: 'two namespace policies: the oldest wins',
    pas: [
      pa({ name: 'newer', mode: 'PERMISSIVE', creationTimestamp: '2024-05-02T00:00:00Z' }),
      pa({ name: 'older', creationTimestamp: '2024-05-01T00:00:00Z' }),
    ],
    denied: DEFAULT_NS,
  },
  {
    name: 'two policies selecting a pod: the oldest wins',
    pas: [
      pa({ name: 'a-newer', selector: REVIEWS, creationTimestamp: '2024-05-02T00:00:00Z' }),
      pa({
        name: 'b-older',
        selector: { app: 'reviews' },
        mode: 'PERMISSIVE',
        creationTimestamp: '2024-05-01T00:00:00Z',
      }),
    ],
    denied: [],
  },
];

for (const c of cases) {
  test(`PeerAuthentication with the L4 evaluator: ${c.name}`, () => {
    assert.deepEqual(strictWhere(c.pas), c.denied);
  });
}

function translated(pas: PeerAuthentication[]) {
  const r = translate(snapshot({ pods: PODS, peerAuthentications: pas }), OPTIONS);
  const keys = Object.fromEntries(r.config.workloads.map((w) => [w.name, w.authorizationPolicies]));
  return { policies: r.config.policies, keys, problems: r.problems };
}

test('the static STRICT policy: as istiod sends it, listed by workloads under STRICT', () => {
  const { policies, keys, problems } = translated([pa()]);
  assert.deepEqual(problems, []);
  const want: Authorization = {
    name: 'istio_converted_static_strict',
    namespace: ROOT,
    scope: 'WorkloadSelector',
    action: 'Deny',
    rules: [[[NO_IDENTITY]]],
    dryRun: false,
  };
  assert.deepEqual(policies, [want]);
  assert.deepEqual(keys, { 'reviews-v1-abc': [STATIC], 'ratings-v1-abc': [STATIC], 'other-abc': [] });
});

test('port-level exceptions: one converted policy per workload policy, istiod style', () => {
  const permissivePort = translated([
    pa({
      name: 'reviews',
      selector: REVIEWS,
      portLevelMtls: [port(9090, 'PERMISSIVE'), port(8080, 'PERMISSIVE')],
    }),
  ]);
  assert.deepEqual(permissivePort.policies.at(0), {
    name: 'converted_peer_authentication_reviews',
    namespace: 'default',
    scope: 'WorkloadSelector',
    action: 'Deny',
    // No identity AND not 8080 AND not 9090.
    rules: [
      [
        [NO_IDENTITY],
        [{ ...EMPTY_MATCH, notDestinationPorts: [8080] }],
        [{ ...EMPTY_MATCH, notDestinationPorts: [9090] }],
      ],
    ],
    dryRun: false,
  });
  assert.deepEqual(permissivePort.keys, {
    'reviews-v1-abc': ['default/converted_peer_authentication_reviews'],
    'ratings-v1-abc': [],
    'other-abc': [],
  });

  const strictPort = translated([
    pa({
      name: 'reviews',
      selector: REVIEWS,
      mode: 'PERMISSIVE',
      portLevelMtls: [port(9080, 'STRICT'), port(8080, 'STRICT')],
    }),
  ]);
  // One rule per STRICT port (rules are ORed).
  assert.deepEqual(strictPort.policies.at(0)?.rules, [
    [[{ ...NO_IDENTITY, destinationPorts: [8080] }]],
    [[{ ...NO_IDENTITY, destinationPorts: [9080] }]],
  ]);
});

test('a workload policy whose ports all agree with it converts to nothing extra', () => {
  const { policies } = translated([
    pa({ name: 'reviews', selector: REVIEWS, mode: 'PERMISSIVE', portLevelMtls: [port(8080, 'PERMISSIVE')] }),
  ]);
  assert.deepEqual(
    policies.map((p) => p.name),
    ['istio_converted_static_strict'],
  );
});

test('the root namespace comes from the options', () => {
  const r = translate(snapshot({ pods: [pod()], peerAuthentications: [pa({ namespace: 'mesh-root' })] }), {
    ...OPTIONS,
    rootNamespace: 'mesh-root',
  });
  assert.deepEqual(r.config.workloads[0]!.authorizationPolicies, ['mesh-root/istio_converted_static_strict']);
  assert.equal(r.config.policies[0]!.namespace, 'mesh-root');
});

test('PeerAuthentication keys follow the AuthorizationPolicy keys of a workload', () => {
  const r = translate(
    snapshot({
      pods: [pod()],
      peerAuthentications: [pa()],
      authorizationPolicies: [
        {
          namespace: 'default',
          name: 'allow-all',
          annotations: {},
          selector: REVIEWS,
          targetRefs: [],
          action: 'ALLOW',
          rules: [{ from: [], to: [], when: [] }],
        },
      ],
    }),
    OPTIONS,
  );
  assert.deepEqual(r.config.workloads[0]!.authorizationPolicies, ['default/allow-all', STATIC]);
});

test('warnings: DISABLE and a root-namespace selector policy are applied as istiod does, and said', () => {
  const { problems } = translated([
    pa({ name: 'off', selector: REVIEWS, mode: 'DISABLE', portLevelMtls: [port(8080, 'DISABLE')] }),
    pa({ namespace: ROOT, name: 'root-selector', selector: REVIEWS }),
  ]);
  assert.deepEqual(
    problems.map((p) => [p.severity, p.kind, `${p.namespace}/${p.name}`, p.path]),
    [
      ['warning', 'PeerAuthentication', 'default/off', 'spec.mtls.mode'],
      ['warning', 'PeerAuthentication', 'default/off', 'spec.portLevelMtls.8080.mode'],
      ['warning', 'PeerAuthentication', 'istio-system/root-selector', 'spec.selector'],
    ],
  );
  assert.match(problems[0]!.message, /DISABLE is not supported in ambient/);
  assert.match(problems[2]!.message, /root namespace \(istio-system\) is ignored/);
});

test('invalid PeerAuthentications are skipped with the path and reason; the others still apply', () => {
  const bad: [Partial<PeerAuthentication>, string, RegExp][] = [
    [{ mode: 'MUTUAL' }, 'spec.mtls.mode', /"MUTUAL" must be UNSET, DISABLE, PERMISSIVE or STRICT/],
    [{ portLevelMtls: [port(8080, 'STRICT')] }, 'spec.portLevelMtls', /cannot have port-level mTLS/],
    [{ selector: REVIEWS, portLevelMtls: [port(0, 'STRICT')] }, 'spec.portLevelMtls.0', /not a port number/],
    [{ selector: REVIEWS, portLevelMtls: [port(70000, 'STRICT')] }, 'spec.portLevelMtls.70000', /not a port/],
    [{ selector: REVIEWS, portLevelMtls: [port(8080, 'strict')] }, 'spec.portLevelMtls.8080.mode', /must be/],
  ];
  for (const [over, path, message] of bad) {
    // The bad policy would make `default` PERMISSIVE; the good mesh policy keeps it STRICT.
    const r = translate(
      snapshot({
        pods: [pod()],
        peerAuthentications: [pa({ namespace: ROOT }), pa({ name: 'bad', mode: 'PERMISSIVE', ...over })],
      }),
      OPTIONS,
    );
    const want: Partial<TranslateProblem>[] = [
      { severity: 'error', kind: 'PeerAuthentication', namespace: 'default', name: 'bad', path },
    ];
    assert.deepEqual(
      r.problems.map((p) => ({
        severity: p.severity,
        kind: p.kind,
        namespace: p.namespace,
        name: p.name,
        path: p.path,
      })),
      want,
      path,
    );
    assert.match(r.problems[0]!.message, message);
    assert.deepEqual(r.config.workloads[0]!.authorizationPolicies, [STATIC], path);
  }
});
