/**
 * AuthorizationPolicies with targetRefs → RBAC HTTP filters in the targeted listeners
 * (translate/l7/authz.ts): samples 22 and 25, attachment by Service, Gateway, GatewayClass and
 * ServiceEntry, istiod's filter order and names, empty policies and rules, dry run, CUSTOM, and what
 * cannot be honoured. Every listener is also decoded by the waypoint's decoder (the round trip) and
 * the decoded filters are evaluated, so the table checks behaviour, not only shape.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { encodeListener, expandAny } from '../../../src/controller/translate/l7/encode.ts';
import { translateL7, type L7Result } from '../../../src/controller/translate/l7/translate.ts';
import { evaluateL7, type L7Request } from '../../../src/core/policy/l7.ts';
import { decodeListenerBytes } from '../../../src/core/xds/l7-wire.ts';
import { meshFrom, OPTIONS } from './l7/helpers.ts';

const SAMPLES = new URL('../../fixtures/kube/istio-samples/', import.meta.url);
const sample = (file: string) => readFileSync(new URL(file, SAMPLES), 'utf8');

const BASE = `
apiVersion: v1
kind: Namespace
metadata: { name: default, labels: { istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint } }
---
apiVersion: v1
kind: Namespace
metadata: { name: other, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: waypoint, namespace: default }
spec: { gatewayClassName: istio-waypoint, listeners: [{ name: mesh, port: 15008, protocol: HBONE }] }
---
apiVersion: v1
kind: Service
metadata: { name: productpage, namespace: default }
spec: { selector: { app: productpage }, clusterIP: 10.96.0.9, ports: [{ name: http, port: 9080 }] }
---
apiVersion: v1
kind: Service
metadata: { name: ratings, namespace: default }
spec: { selector: { app: ratings }, clusterIP: 10.96.0.4, ports: [{ name: http, port: 9080 }, { name: tcp-db, port: 5432 }] }
---
apiVersion: v1
kind: Service
metadata: { name: direct, namespace: other }
spec: { selector: { app: direct }, clusterIP: 10.96.1.1, ports: [{ name: http, port: 80 }] }
---
`;

const PP = 'productpage.default.svc.cluster.local:9080';
const RATINGS = 'ratings.default.svc.cluster.local:9080';

function run(policies: string, extra = ''): L7Result {
  const m = meshFrom(BASE + extra + policies);
  return translateL7(
    { snapshot: m.snapshot, mesh: m.mesh, virtualServices: [], destinationRules: [] },
    OPTIONS,
  );
}

/** The listener's HTTP filter names, after a round trip through the waypoint's decoder. */
function decoded(r: L7Result, name: string) {
  const l = r.resources.listeners.find((x) => x.name === name);
  assert.ok(l, `listener ${name}`);
  const d = decodeListenerBytes(encodeListener(l).bytes);
  assert.ok(d.ok, d.ok ? '' : JSON.stringify(d.errors));
  return d.value;
}

function names(r: L7Result, listener: string): string[] {
  return decoded(r, listener).httpFilters.map((f) => f.name);
}

const REQ: L7Request = {
  method: 'GET',
  path: '/productpage',
  authority: PP,
  headers: new Map(),
  peerPrincipal: 'spiffe://cluster.local/ns/default/sa/curl',
  directRemoteIp: '10.0.0.7',
  destinationIp: '10.96.0.9',
  destinationPort: 9080,
  requestedServerName: '',
};

/** Whether the listener's decoded RBAC filters let the request through. */
function allowed(r: L7Result, listener: string, over: Partial<L7Request> = {}): boolean {
  const filters = decoded(r, listener).httpFilters.flatMap((f) =>
    f.rbac ? [{ name: f.name, config: f.rbac }] : [],
  );
  return evaluateL7(filters, { ...REQ, ...over }).allowed;
}

const problems = (r: L7Result) => r.authzProblems.map((p) => [p.severity, p.path, p.message]);

const policy = (name: string, spec: string, namespace = 'default', annotations = '') => `
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: ${namespace}${annotations ? `, annotations: ${annotations}` : ''} }
spec:
${spec}
`;

const TO_PP = '  targetRefs: [{ kind: Service, group: "", name: productpage }]';

test('sample 22: an ALLOW filter before fault and router; GET from sa/curl passes, DELETE and other identities do not', () => {
  const r = run(sample('22-authz-l7-productpage-waypoint.yaml'));
  assert.deepEqual(problems(r), []);
  assert.deepEqual(names(r, PP), [
    'istio.authorization.allow',
    'envoy.filters.http.fault',
    'envoy.filters.http.router',
  ]);
  const l = r.resources.listeners.find((x) => x.name === PP)!;
  const hcm = (expandAny(l) as { api_listener: { api_listener: { http_filters: unknown[] } } }).api_listener
    .api_listener;
  assert.deepEqual(hcm.http_filters[0], {
    name: 'istio.authorization.allow',
    is_optional: true,
    typed_config: {
      '@type': 'envoy.extensions.filters.http.rbac.v3.RBAC',
      rules: {
        action: 'ALLOW',
        policies: {
          'ns[default]-policy[productpage-viewer]-rule[0]': {
            permissions: [
              {
                and_rules: {
                  rules: [
                    {
                      or_rules: { rules: [{ header: { name: ':method', string_match: { exact: 'GET' } } }] },
                    },
                  ],
                },
              },
            ],
            principals: [
              {
                and_ids: {
                  ids: [
                    {
                      or_ids: {
                        ids: [
                          {
                            authenticated: {
                              principal_name: { exact: 'spiffe://cluster.local/ns/default/sa/curl' },
                            },
                          },
                        ],
                      },
                    },
                  ],
                },
              },
            ],
          },
        },
      },
    },
  });
  assert.equal(allowed(r, PP), true);
  assert.equal(allowed(r, PP, { method: 'DELETE' }), false);
  assert.equal(
    allowed(r, PP, { peerPrincipal: 'spiffe://cluster.local/ns/default/sa/bookinfo-reviews' }),
    false,
  );
  // Other services are untouched.
  assert.deepEqual(names(r, RATINGS), ['envoy.filters.http.fault', 'envoy.filters.http.router']);
});

test("istiod's order and names: AUDIT (LOG), DENY, ALLOW; a dry-run policy is shadow only", () => {
  const r = run(
    policy('allow-get', `${TO_PP}\n  rules: [{ to: [{ operation: { methods: [GET, DELETE] } }] }]`) +
      policy(
        'deny-delete',
        `${TO_PP}\n  action: DENY\n  rules: [{ to: [{ operation: { methods: [DELETE] } }] }]`,
      ) +
      policy('audit', `${TO_PP}\n  action: AUDIT\n  rules: [{}]`) +
      policy('dry', `${TO_PP}\n  action: DENY\n  rules: [{}]`, 'default', '{ istio.io/dry-run: "true" }'),
  );
  assert.deepEqual(problems(r), []);
  assert.deepEqual(names(r, PP).slice(0, 3), [
    'istio.authorization.audit',
    'istio.authorization.deny',
    'istio.authorization.allow',
  ]);
  const deny = decoded(r, PP).httpFilters[1]!.rbac!;
  assert.deepEqual(
    deny.rules?.policies.map((p) => p.name),
    ['ns[default]-policy[deny-delete]-rule[0]'],
  );
  assert.deepEqual(
    deny.shadowRules?.policies.map((p) => p.name),
    ['ns[default]-policy[dry]-rule[0]'],
  );
  assert.equal(deny.shadowRulesStatPrefix, 'istio_dry_run_deny_');
  assert.equal(decoded(r, PP).httpFilters[0]!.rbac!.rules?.action, 'LOG');
  assert.equal(allowed(r, PP), true);
  assert.equal(allowed(r, PP, { method: 'DELETE' }), false);
  assert.equal(allowed(r, PP, { method: 'POST' }), false);
});

test('empty policy: ALLOW without rules allows nothing, DENY without rules denies nothing; rules: [{}] matches all', () => {
  assert.equal(allowed(run(policy('none', `${TO_PP}`)), PP), false);
  assert.equal(allowed(run(policy('none', `${TO_PP}\n  action: DENY`)), PP), true);
  assert.equal(allowed(run(policy('all', `${TO_PP}\n  rules: [{}]`)), PP), true);
  assert.equal(allowed(run(policy('all', `${TO_PP}\n  action: DENY\n  rules: [{}]`)), PP), false);
});

const FIELDS: [string, string, Partial<L7Request>, boolean][] = [
  ['paths exact', 'to: [{ operation: { paths: [/productpage] } }]', {}, true],
  ['paths prefix', 'to: [{ operation: { paths: ["/product*"] } }]', { path: '/product/x?y' }, true],
  ['paths suffix', 'to: [{ operation: { paths: ["*page"] } }]', {}, true],
  ['paths presence', 'to: [{ operation: { paths: ["*"] } }]', {}, true],
  ['notPaths', 'to: [{ operation: { notPaths: [/productpage] } }]', {}, false],
  [
    'hosts, case-insensitive',
    'to: [{ operation: { hosts: ["ProductPage.default.svc.cluster.local:9080"] } }]',
    {},
    true,
  ],
  ['notHosts', 'to: [{ operation: { notHosts: ["*:9080"] } }]', {}, false],
  ['ports', 'to: [{ operation: { ports: ["9080"] } }]', {}, true],
  ['notPorts', 'to: [{ operation: { notPorts: ["9080"] } }]', {}, false],
  ['notMethods', 'to: [{ operation: { notMethods: [GET] } }]', {}, false],
  ['principals prefix', 'from: [{ source: { principals: ["cluster.local/ns/default/*"] } }]', {}, true],
  ['principals any', 'from: [{ source: { principals: ["*"] } }]', {}, true],
  ['notPrincipals', 'from: [{ source: { notPrincipals: ["cluster.local/ns/default/sa/curl"] } }]', {}, false],
  ['namespaces', 'from: [{ source: { namespaces: [default] } }]', {}, true],
  ['notNamespaces', 'from: [{ source: { notNamespaces: [default] } }]', {}, false],
  ['serviceAccounts (policy namespace)', 'from: [{ source: { serviceAccounts: [curl] } }]', {}, true],
  ['ipBlocks', 'from: [{ source: { ipBlocks: [10.0.0.0/24] } }]', {}, true],
  ['notIpBlocks', 'from: [{ source: { notIpBlocks: [10.0.0.7] } }]', {}, false],
  ['ipBlocks IPv6', 'from: [{ source: { ipBlocks: ["fd00::/8"] } }]', { directRemoteIp: 'fd00::7' }, true],
  [
    'remoteIpBlocks',
    'from: [{ source: { remoteIpBlocks: [192.0.2.0/24] } }]',
    { headers: new Map([['x-forwarded-for', ['192.0.2.1']]]) },
    true,
  ],
  [
    'when request.headers',
    'when: [{ key: "request.headers[X-Team]", values: [blue] }]',
    { headers: new Map([['x-team', ['blue']]]) },
    true,
  ],
  ['when request.headers, missing', 'when: [{ key: "request.headers[X-Team]", values: [blue] }]', {}, false],
  ['when source.namespace', 'when: [{ key: source.namespace, values: [default] }]', {}, true],
  [
    'when source.principal',
    'when: [{ key: source.principal, notValues: ["cluster.local/ns/default/sa/curl"] }]',
    {},
    false,
  ],
  ['when source.ip', 'when: [{ key: source.ip, values: [10.0.0.0/8] }]', {}, true],
  ['when remote.ip', 'when: [{ key: remote.ip, values: [10.0.0.7] }]', {}, true],
  ['when destination.port', 'when: [{ key: destination.port, values: ["9080"] }]', {}, true],
  ['when destination.ip', 'when: [{ key: destination.ip, values: [10.96.0.0/16] }]', {}, true],
  ['when connection.sni', 'when: [{ key: connection.sni, values: ["*"] }]', {}, false],
  [
    'two sources are ORed',
    'from: [{ source: { namespaces: [prod] } }, { source: { ipBlocks: [10.0.0.7] } }]',
    {},
    true,
  ],
  [
    'fields of one source are ANDed',
    'from: [{ source: { namespaces: [default], ipBlocks: [10.9.0.0/16] } }]',
    {},
    false,
  ],
];

for (const [name, rule, over, want] of FIELDS) {
  test(`ALLOW rule field: ${name}`, () => {
    const r = run(policy('p', `${TO_PP}\n  rules:\n  - ${rule}`));
    assert.deepEqual(problems(r), []);
    assert.equal(allowed(r, PP, over), want);
  });
}

test('requestPrincipals (no JWT yet): an ALLOW rule using it is dropped (fail closed), a DENY rule enforces the rest', () => {
  const allow = run(
    policy(
      'jwt',
      `${TO_PP}\n  rules: [{ from: [{ source: { requestPrincipals: ["*"], namespaces: [default] } }] }]`,
    ),
  );
  assert.equal(allowed(allow, PP), false);
  assert.deepEqual(
    problems(allow).map((p) => p.slice(0, 2)),
    [['warning', 'spec.rules[0].from[0].source.requestPrincipals[0]']],
  );
  assert.match(String(problems(allow)[0]![2]), /JWT.*never matches \(fail closed\)/);
  const deny = run(
    policy(
      'jwt',
      `${TO_PP}\n  action: DENY\n  rules: [{ from: [{ source: { notRequestPrincipals: ["*"] } }], to: [{ operation: { methods: [DELETE] } }] }]`,
    ),
  );
  assert.equal(allowed(deny, PP), true);
  assert.equal(allowed(deny, PP, { method: 'DELETE' }), false);
  assert.match(String(problems(deny)[0]![2]), /left out and this DENY rule matches more requests/);
});

test('an unknown when key skips the rule for any action; request.auth.claims is unsupported', () => {
  const r = run(
    policy('u', `${TO_PP}\n  action: DENY\n  rules: [{ when: [{ key: source.bogus, values: [x] }] }]`),
  );
  assert.equal(allowed(r, PP), true);
  assert.deepEqual(
    problems(r).map((p) => p.slice(0, 2)),
    [['warning', 'spec.rules[0].when[0].key']],
  );
  const c = run(
    policy('c', `${TO_PP}\n  rules: [{ when: [{ key: "request.auth.claims[iss]", values: [x] }] }]`),
  );
  assert.equal(allowed(c, PP), false);
  assert.deepEqual(
    problems(c).map((p) => p.slice(0, 2)),
    [['warning', 'spec.rules[0].when[0].values[0]']],
  );
});

test('invalid values are errors at their path and drop the ALLOW rule', () => {
  const r = run(
    policy(
      'bad',
      `${TO_PP}\n  rules: [{ from: [{ source: { ipBlocks: [not-an-ip] } }], to: [{ operation: { ports: ["99999"] } }] }]`,
    ),
  );
  assert.deepEqual(
    problems(r).map((p) => p.slice(0, 2)),
    [
      ['error', 'spec.rules[0].to[0].operation.ports[0]'],
      ['error', 'spec.rules[0].from[0].source.ipBlocks[0]'],
    ],
  );
  assert.equal(allowed(r, PP), false);
});

test('CUSTOM (no external authorizer) denies what it matches, with a warning', () => {
  const r = run(
    policy(
      'ext',
      `${TO_PP}\n  action: CUSTOM\n  provider: { name: ext }\n  rules: [{ to: [{ operation: { paths: ["/admin*"] } }] }]`,
    ),
  );
  assert.deepEqual(
    problems(r).map((p) => p.slice(0, 2)),
    [['warning', 'spec.action']],
  );
  assert.equal(allowed(r, PP), true);
  assert.equal(allowed(r, PP, { path: '/admin/x' }), false);
});

test('a Gateway target covers every service bound to that waypoint; on its TCP port a methods-only DENY denies all (istiod forTCP)', () => {
  const r = run(
    policy(
      'wp',
      '  targetRefs: [{ kind: Gateway, group: gateway.networking.k8s.io, name: waypoint }]\n  action: DENY\n  rules: [{ to: [{ operation: { methods: [DELETE] } }] }]',
    ),
  );
  for (const l of [PP, RATINGS]) assert.equal(allowed(r, l, { method: 'DELETE' }), false, l);
  assert.equal(allowed(r, 'direct.other.svc.cluster.local:80', { method: 'DELETE' }), true);
  // ratings:5432 is TCP: its network RBAC DENY has the methods left out, so it matches everything.
  const tcp = decoded(r, 'ratings.default.svc.cluster.local:5432');
  assert.deepEqual(
    tcp.networkRbac?.map((f) => f.name),
    ['istio.authorization.deny'],
  );
  assert.deepEqual(
    problems(r).map((p) => p.slice(0, 2)),
    [['warning', 'spec.rules[0].to[0].operation.methods']],
  );
  assert.match(
    String(problems(r)[0]![2]),
    /methods are HTTP-only.*ratings\.default\.svc\.cluster\.local:5432 .*matches every connection/,
  );
});

test('a GatewayClass target from the root namespace covers every waypoint of the class', () => {
  const r = run(
    policy(
      'all-waypoints',
      '  targetRefs: [{ kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint }]\n  action: DENY\n  rules: [{ to: [{ operation: { paths: ["/admin*"] } }] }]',
      'istio-system',
    ),
    'apiVersion: v1\nkind: Namespace\nmetadata: { name: istio-system }\n---\n',
  );
  assert.equal(allowed(r, PP, { path: '/admin' }), false);
  assert.equal(allowed(r, RATINGS, { path: '/admin' }), false);
});

test('references that attach nowhere are reported and leave listeners alone', () => {
  const r = run(
    policy('x', '  targetRefs: [{ kind: Service, group: "", name: nope }]\n  rules: [{}]') +
      policy(
        'y',
        '  targetRefs: [{ kind: Service, group: "", name: productpage, namespace: other }]\n  rules: [{}]',
      ) +
      policy('z', '  targetRefs: [{ kind: Deployment, group: apps, name: productpage }]\n  rules: [{}]') +
      policy('w', '  targetRefs: [{ kind: Service, group: "", name: direct }]\n  rules: [{}]', 'other'),
  );
  assert.deepEqual(
    r.authzProblems.map((p) => [p.name, p.path]),
    [
      ['x', 'spec.targetRefs[0].name'],
      ['y', 'spec.targetRefs[0].namespace'],
      ['z', 'spec.targetRefs[0]'],
      ['w', 'spec.targetRefs[0]'],
    ],
  );
  assert.match(r.authzProblems[3]!.message, /not bound to a waypoint/);
  assert.deepEqual(names(r, PP), ['envoy.filters.http.fault', 'envoy.filters.http.router']);
});

test('sample 25: a ServiceEntry target (egress waypoint): GET /get passes, POST /post is denied', () => {
  const r = run(sample('25-serviceentry-egress-waypoint.yaml'));
  assert.deepEqual(problems(r), []);
  const l = 'httpbin.org:80';
  assert.equal(allowed(r, l, { authority: 'httpbin.org', path: '/get', destinationPort: 80 }), true);
  assert.equal(
    allowed(r, l, { authority: 'httpbin.org', method: 'POST', path: '/post', destinationPort: 80 }),
    false,
  );
  assert.equal(allowed(r, l, { authority: 'httpbin.org', path: '/post', destinationPort: 80 }), false);
});
