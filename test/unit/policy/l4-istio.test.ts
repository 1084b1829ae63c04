/**
 * L4 authorization from the user's side: an Istio AuthorizationPolicy as YAML, decoded and translated
 * by the controller, its candidates picked by MeshState for the destination pod, decided by
 * evaluateL4 — the path a policy takes to the node agent (reference/istio-api.md §3.4). One table row
 * per field, `not…` form, `when` key and edge of the reference.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { decodeKubeSnapshot } from '../../../src/controller/files/kube-yaml.ts';
import { translate } from '../../../src/controller/translate/workloads.ts';
import type { Identity } from '../../../src/core/identity/spiffe.ts';
import { evaluateL4, type L4Connection } from '../../../src/core/policy/l4.ts';
import { MeshState } from '../../../src/core/state/mesh-state.ts';

const MESH = `
apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: productpage, namespace: default, labels: {app: productpage}}
spec: {nodeName: node-1, serviceAccountName: bookinfo-productpage}
status: {phase: Running, podIPs: [{ip: 10.0.1.5}, {ip: "fd00:1::5"}], conditions: [{type: Ready, status: "True"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: ratings, namespace: default, labels: {app: ratings}}
spec: {nodeName: node-1, serviceAccountName: bookinfo-ratings}
status: {phase: Running, podIP: 10.0.1.6, conditions: [{type: Ready, status: "True"}]}
`;

const id = (namespace: string, serviceAccount: string, trustDomain = 'cluster.local'): Identity => ({
  trustDomain,
  namespace,
  serviceAccount,
});
const gateway = id('default', 'bookinfo-gateway-istio');
const curl = id('default', 'curl');
const stranger = id('other', 'client');

/** From curl at 10.0.0.2 to productpage 10.0.1.5:9080 unless overridden. */
function conn(over: Partial<L4Connection> = {}): L4Connection {
  return { srcIp: '10.0.0.2', dstIp: '10.0.1.5', dstPort: 9080, srcIdentity: curl, ...over };
}

const OPTIONS = {
  clusterId: 'Kubernetes',
  trustDomain: 'cluster.local',
  clusterDomain: 'cluster.local',
  rootNamespace: 'istio-system',
};

/** The decision for productpage (or `pod`) with the given AuthorizationPolicies in the mesh. */
function decide(policiesYaml: string, c: L4Connection, pod = 'productpage'): boolean {
  const decoded = decodeKubeSnapshot(`${MESH}\n---\n${policiesYaml}`, 'policies.yaml');
  assert.deepEqual(decoded.problems, [], 'the YAML decodes');
  const r = translate(decoded.snapshot, OPTIONS);
  assert.deepEqual(
    r.problems.filter((p) => p.severity === 'error'),
    [],
    'the policies translate',
  );
  const state = new MeshState(r.config);
  const w = state.config.workloads.find((x) => x.name === pod)!;
  return evaluateL4(state.policiesFor(w), c).allowed;
}

/** One AuthorizationPolicy for productpage (selector) with `spec` written inline. */
const policy = (spec: string, name = 'p', namespace = 'default') => `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ${name}, namespace: ${namespace}}
spec: ${spec}
`;
const forProductpage = (rest: string) => policy(`{selector: {matchLabels: {app: productpage}}, ${rest}}`);

interface Case {
  name: string;
  yaml: string;
  conn?: Partial<L4Connection>;
  pod?: string;
  allowed: boolean;
}

const cases: Case[] = [
  // Empty policies and empty rules.
  { name: 'no policy: allowed', yaml: '', allowed: true },
  {
    name: 'empty spec (ALLOW, no rules) denies everything in the namespace',
    yaml: policy('{}'),
    allowed: false,
  },
  {
    name: 'empty spec in another namespace does not apply',
    yaml: policy('{}', 'p', 'other'),
    allowed: true,
  },
  { name: 'rules: [{}] allows everything', yaml: policy('{rules: [{}]}'), allowed: true },
  { name: 'DENY with no rules denies nothing', yaml: policy('{action: DENY}'), allowed: true },
  { name: 'DENY rules: [{}] denies everything', yaml: policy('{action: DENY, rules: [{}]}'), allowed: false },
  {
    name: 'a selector that matches no pod leaves productpage alone',
    yaml: policy('{selector: {matchLabels: {app: nothing}}}'),
    allowed: true,
  },
  {
    name: 'a selector policy for ratings does not apply to productpage',
    yaml: policy('{selector: {matchLabels: {app: ratings}}}'),
    allowed: true,
  },
  {
    name: '...but applies to ratings',
    yaml: policy('{selector: {matchLabels: {app: ratings}}}'),
    conn: { dstIp: '10.0.1.6' },
    pod: 'ratings',
    allowed: false,
  },
  {
    name: 'an empty policy in the root namespace denies the whole mesh',
    yaml: policy('{}', 'deny-all', 'istio-system'),
    allowed: false,
  },
  // Sources.
  {
    name: 'principals: the listed identity is allowed',
    yaml: forProductpage('rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/curl]}}]}]'),
    allowed: true,
  },
  {
    name: 'principals: another identity is not',
    yaml: forProductpage('rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/curl]}}]}]'),
    conn: { srcIdentity: gateway },
    allowed: false,
  },
  {
    name: 'principals: a plaintext client has no principal',
    yaml: forProductpage('rules: [{from: [{source: {principals: ["*"]}}]}]'),
    conn: { srcIdentity: undefined },
    allowed: false,
  },
  {
    name: 'principals: suffix wildcard',
    yaml: forProductpage('rules: [{from: [{source: {principals: ["*/sa/curl"]}}]}]'),
    allowed: true,
  },
  {
    name: 'principals: prefix wildcard across namespaces',
    yaml: forProductpage('rules: [{from: [{source: {principals: ["cluster.local/ns/other/*"]}}]}]'),
    conn: { srcIdentity: stranger },
    allowed: true,
  },
  {
    name: 'principals: another trust domain does not match',
    yaml: forProductpage('rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/curl]}}]}]'),
    conn: { srcIdentity: id('default', 'curl', 'evil.example') },
    allowed: false,
  },
  {
    name: 'notPrincipals: the excluded identity is denied by an ALLOW',
    yaml: forProductpage('rules: [{from: [{source: {notPrincipals: [cluster.local/ns/default/sa/curl]}}]}]'),
    allowed: false,
  },
  {
    name: 'notPrincipals: others pass',
    yaml: forProductpage('rules: [{from: [{source: {notPrincipals: [cluster.local/ns/default/sa/curl]}}]}]'),
    conn: { srcIdentity: gateway },
    allowed: true,
  },
  {
    name: 'namespaces: same namespace allowed',
    yaml: forProductpage('rules: [{from: [{source: {namespaces: [default]}}]}]'),
    allowed: true,
  },
  {
    name: 'namespaces: other namespace denied',
    yaml: forProductpage('rules: [{from: [{source: {namespaces: [default]}}]}]'),
    conn: { srcIdentity: stranger },
    allowed: false,
  },
  {
    name: 'notNamespaces in a DENY: everyone outside default is denied',
    yaml: forProductpage('action: DENY, rules: [{from: [{source: {notNamespaces: [default]}}]}]'),
    conn: { srcIdentity: stranger },
    allowed: false,
  },
  {
    name: 'notNamespaces in a DENY: default passes',
    yaml: forProductpage('action: DENY, rules: [{from: [{source: {notNamespaces: [default]}}]}]'),
    allowed: true,
  },
  {
    name: 'notNamespaces in a DENY: a plaintext client (no namespace) is denied',
    yaml: forProductpage('action: DENY, rules: [{from: [{source: {notNamespaces: [default]}}]}]'),
    conn: { srcIdentity: undefined },
    allowed: false,
  },
  {
    name: 'serviceAccounts: bare name is in the policy namespace',
    yaml: forProductpage('rules: [{from: [{source: {serviceAccounts: [curl]}}]}]'),
    allowed: true,
  },
  {
    name: 'serviceAccounts: ns/name',
    yaml: forProductpage('rules: [{from: [{source: {serviceAccounts: [other/client]}}]}]'),
    conn: { srcIdentity: stranger },
    allowed: true,
  },
  {
    name: 'notServiceAccounts in an ALLOW',
    yaml: forProductpage('rules: [{from: [{source: {notServiceAccounts: [curl]}}]}]'),
    allowed: false,
  },
  {
    name: 'ipBlocks: IPv4 CIDR',
    yaml: forProductpage('rules: [{from: [{source: {ipBlocks: [10.0.0.0/24]}}]}]'),
    allowed: true,
  },
  {
    name: 'ipBlocks: a single address',
    yaml: forProductpage('rules: [{from: [{source: {ipBlocks: [10.0.0.3]}}]}]'),
    allowed: false,
  },
  {
    name: 'ipBlocks: IPv6 CIDR',
    yaml: forProductpage('rules: [{from: [{source: {ipBlocks: ["fd00:2::/32"]}}]}]'),
    conn: { srcIp: 'fd00:2:0:7::9', dstIp: 'fd00:1::5' },
    allowed: true,
  },
  {
    name: 'ipBlocks: IPv6 CIDR does not hold an IPv4 client',
    yaml: forProductpage('rules: [{from: [{source: {ipBlocks: ["::/0"]}}]}]'),
    allowed: false,
  },
  {
    name: 'notIpBlocks in a DENY',
    yaml: forProductpage('action: DENY, rules: [{from: [{source: {notIpBlocks: [10.0.0.0/8]}}]}]'),
    conn: { srcIp: '192.168.1.1' },
    allowed: false,
  },
  {
    name: 'remoteIpBlocks is L7: the ALLOW rule is dropped (fail closed)',
    yaml: forProductpage('rules: [{from: [{source: {remoteIpBlocks: [10.0.0.0/8]}}]}]'),
    allowed: false,
  },
  {
    name: 'remoteIpBlocks in a DENY is stripped: a no-op',
    yaml: forProductpage('action: DENY, rules: [{from: [{source: {remoteIpBlocks: [10.0.0.0/8]}}]}]'),
    allowed: true,
  },
  // Operations.
  {
    name: 'ports: the target port',
    yaml: forProductpage('rules: [{to: [{operation: {ports: ["9080"]}}]}]'),
    allowed: true,
  },
  {
    name: 'ports: another port',
    yaml: forProductpage('rules: [{to: [{operation: {ports: ["9080"]}}]}]'),
    conn: { dstPort: 9090 },
    allowed: false,
  },
  {
    name: 'notPorts',
    yaml: forProductpage('rules: [{to: [{operation: {notPorts: ["9090"]}}]}]'),
    conn: { dstPort: 9090 },
    allowed: false,
  },
  {
    name: 'methods are L7: the ALLOW rule is dropped even with an L4 port beside it',
    yaml: forProductpage('rules: [{to: [{operation: {ports: ["9080"], methods: [GET]}}]}]'),
    allowed: false,
  },
  {
    name: 'a DENY on paths and a port: the port part is enforced (more restrictive)',
    yaml: forProductpage('action: DENY, rules: [{to: [{operation: {ports: ["9080"], paths: [/admin]}}]}]'),
    allowed: false,
  },
  // Combinations.
  {
    name: 'from AND to: both must match',
    yaml: forProductpage(
      'rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/curl]}}], to: [{operation: {ports: ["1"]}}]}]',
    ),
    allowed: false,
  },
  {
    name: 'two sources are ORed',
    yaml: forProductpage(
      'rules: [{from: [{source: {namespaces: [other]}}, {source: {principals: ["*/sa/curl"]}}]}]',
    ),
    allowed: true,
  },
  {
    name: 'two rules are ORed',
    yaml: forProductpage(
      'rules: [{to: [{operation: {ports: ["1"]}}]}, {from: [{source: {namespaces: [default]}}]}]',
    ),
    allowed: true,
  },
  {
    name: 'a DENY wins over a matching ALLOW',
    yaml:
      forProductpage('rules: [{}]') +
      '---\n' +
      policy('{action: DENY, rules: [{from: [{source: {principals: ["*/sa/curl"]}}]}]}', 'deny-curl'),
    allowed: false,
  },
  {
    name: 'a dry-run DENY is not enforced',
    yaml: `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: dry, namespace: default, annotations: {istio.io/dry-run: "true"}}
spec: {action: DENY, rules: [{}]}
`,
    allowed: true,
  },
  {
    name: 'AUDIT is not enforced by the node agent',
    yaml: policy('{action: AUDIT, rules: [{}]}'),
    allowed: true,
  },
  {
    name: 'targetRefs policies are the waypoint’s, not the node agent’s',
    yaml: policy('{targetRefs: [{kind: Service, group: "", name: productpage}]}'),
    allowed: true,
  },
  // The L4 `when` keys (istiod's l4WhenAttributes); each condition is ANDed with the rest.
  {
    name: 'when source.ip: inside',
    yaml: forProductpage('rules: [{when: [{key: source.ip, values: [10.0.0.0/16]}]}]'),
    allowed: true,
  },
  {
    name: 'when source.ip: notValues',
    yaml: forProductpage('rules: [{when: [{key: source.ip, notValues: [10.0.0.2]}]}]'),
    allowed: false,
  },
  {
    name: 'when source.ip: IPv6',
    yaml: forProductpage('rules: [{when: [{key: source.ip, values: ["fd00::/16"]}]}]'),
    conn: { srcIp: 'fd00:2::9', dstIp: 'fd00:1::5' },
    allowed: true,
  },
  {
    name: 'when source.namespace',
    yaml: forProductpage('rules: [{when: [{key: source.namespace, values: [other]}]}]'),
    conn: { srcIdentity: stranger },
    allowed: true,
  },
  {
    name: 'when source.namespace: notValues',
    yaml: forProductpage('rules: [{when: [{key: source.namespace, notValues: [other]}]}]'),
    conn: { srcIdentity: stranger },
    allowed: false,
  },
  {
    name: 'when source.principal',
    yaml: forProductpage(
      'rules: [{when: [{key: source.principal, values: [cluster.local/ns/default/sa/curl]}]}]',
    ),
    allowed: true,
  },
  {
    name: 'when source.principal: presence excludes plaintext',
    yaml: forProductpage('rules: [{when: [{key: source.principal, values: ["*"]}]}]'),
    conn: { srcIdentity: undefined },
    allowed: false,
  },
  {
    name: 'when destination.ip: the pod address',
    yaml: forProductpage('rules: [{when: [{key: destination.ip, values: [10.0.1.5/32]}]}]'),
    allowed: true,
  },
  {
    name: 'when destination.ip: the pod’s other (IPv6) address',
    yaml: forProductpage('rules: [{when: [{key: destination.ip, values: ["fd00:1::/64"]}]}]'),
    conn: { srcIp: 'fd00:1::2', dstIp: 'fd00:1::5' },
    allowed: true,
  },
  {
    name: 'when destination.ip: notValues',
    yaml: forProductpage('rules: [{when: [{key: destination.ip, notValues: [10.0.1.0/24]}]}]'),
    allowed: false,
  },
  {
    name: 'when destination.port',
    yaml: forProductpage('rules: [{when: [{key: destination.port, values: ["9080", "9081"]}]}]'),
    allowed: true,
  },
  {
    name: 'when destination.port: notValues',
    yaml: forProductpage('rules: [{when: [{key: destination.port, notValues: ["9080"]}]}]'),
    allowed: false,
  },
  {
    name: 'when conditions are ANDed with each other and with from',
    yaml: forProductpage(
      'rules: [{from: [{source: {namespaces: [default]}}], when: [{key: source.ip, values: [10.0.0.0/8]}, {key: destination.port, values: ["1"]}]}]',
    ),
    allowed: false,
  },
  {
    name: 'an L7 when key drops the ALLOW rule',
    yaml: forProductpage('rules: [{when: [{key: "request.headers[x-user]", values: [admin]}]}]'),
    allowed: false,
  },
  {
    name: 'an L7 when key makes a DENY rule a no-op (istio/istio#61126)',
    yaml: forProductpage('action: DENY, rules: [{when: [{key: "request.auth.claims[iss]", values: [x]}]}]'),
    allowed: true,
  },
];

for (const c of cases) {
  test(`AuthorizationPolicy at L4: ${c.name}`, () => {
    assert.equal(decide(c.yaml, conn(c.conn), c.pod), c.allowed);
  });
}

test("Istio's sample 21: only the ingress gateway's identity reaches productpage", async () => {
  // The repository's copy of the sample (test/fixtures/kube/istio-samples), as Istio ships it.
  const yaml = await readFile(
    new URL('../../fixtures/kube/istio-samples/21-authz-l4-productpage-ztunnel.yaml', import.meta.url),
    'utf8',
  );
  assert.equal(decide(yaml, conn({ srcIdentity: gateway })), true);
  assert.equal(decide(yaml, conn({ srcIdentity: curl })), false);
  assert.equal(decide(yaml, conn({ srcIdentity: undefined })), false);
  // It selects productpage only: ratings stays open.
  assert.equal(decide(yaml, conn({ dstIp: '10.0.1.6' }), 'ratings'), true);
});
