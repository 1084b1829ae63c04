/**
 * The L7 evaluator (core/policy/l7.ts) as tables: Envoy RBAC semantics (filters in order, DENY
 * before ALLOW, ALLOW with no match denies, LOG never denies, shadow rules reported only), each
 * permission and principal kind with its negation, CIDRs (IPv4, IPv6, x-forwarded-for), and the
 * string forms Istio writes for paths, hosts, methods and principals.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { evaluateL7, type L7RbacFilter, type L7Request } from '../../../src/core/policy/l7.ts';
import type {
  HeaderMatcher,
  RbacAction,
  RbacPermission,
  RbacPolicy,
  RbacPrincipal,
  StringMatcher,
} from '../../../src/core/xds/l7-model.ts';

const ANY_P: RbacPermission = { kind: 'any' };
const ANY_ID: RbacPrincipal = { kind: 'any' };
const exact = (value: string, ignoreCase = false): StringMatcher => ({ kind: 'exact', value, ignoreCase });
const prefix = (value: string): StringMatcher => ({ kind: 'prefix', value, ignoreCase: false });
const suffix = (value: string): StringMatcher => ({ kind: 'suffix', value, ignoreCase: false });
const regex = (r: string): StringMatcher => ({ kind: 'regex', regex: r });
const hm = (name: string, m: StringMatcher): HeaderMatcher => ({
  name,
  match: { kind: 'string', matcher: m },
  invert: false,
  treatMissingAsEmpty: false,
});
const header = (name: string, m: StringMatcher): { header: RbacPermission } => ({
  header: { kind: 'header', header: hm(name, m) },
});
const present = (name: string): RbacPermission => ({
  kind: 'header',
  header: { name, match: { kind: 'present', present: true }, invert: false, treatMissingAsEmpty: false },
});

const REQ: L7Request = {
  method: 'GET',
  path: '/productpage?u=1',
  authority: 'productpage.default.svc.cluster.local:9080',
  headers: new Map([
    ['user-agent', ['curl/8']],
    ['x-multi', ['a', 'b']],
  ]),
  peerPrincipal: 'spiffe://cluster.local/ns/default/sa/curl',
  directRemoteIp: '10.0.1.5',
  destinationIp: '10.96.0.9',
  destinationPort: 9080,
  requestedServerName: '',
};

const policy = (
  name: string,
  permissions: readonly RbacPermission[],
  principals: readonly RbacPrincipal[],
): RbacPolicy => ({ name, permissions, principals });

const filter = (action: RbacAction, policies: readonly RbacPolicy[], name = `f-${action}`): L7RbacFilter => ({
  name,
  config: { rules: { action, policies }, shadowRules: undefined, shadowRulesStatPrefix: '' },
});

/** Whether a single ALLOW policy with this permission and principal lets REQ (with changes) through. */
function allows(perm: RbacPermission, id: RbacPrincipal, over: Partial<L7Request> = {}): boolean {
  return evaluateL7([filter('ALLOW', [policy('p', [perm], [id])])], { ...REQ, ...over }).allowed;
}

test('no filters, or a filter without rules: everything is allowed', () => {
  assert.equal(evaluateL7([], REQ).allowed, true);
  const empty: L7RbacFilter = {
    name: 'x',
    config: { rules: undefined, shadowRules: undefined, shadowRulesStatPrefix: '' },
  };
  assert.equal(evaluateL7([empty], REQ).allowed, true);
});

test('ALLOW with no policies (Istio: an ALLOW policy without rules) allows nothing', () => {
  const d = evaluateL7([filter('ALLOW', [])], REQ);
  assert.equal(d.allowed, false);
  assert.equal(!d.allowed && d.details, 'rbac_access_denied_matched_policy[none]');
});

test("istiod's never-matching policy (rules: []) and the empty rule ({}: any/any)", () => {
  const never = policy('n', [{ kind: 'not', rule: ANY_P }], [{ kind: 'not', id: ANY_ID }]);
  assert.equal(evaluateL7([filter('ALLOW', [never])], REQ).allowed, false);
  assert.equal(evaluateL7([filter('DENY', [never])], REQ).allowed, true);
  const all = policy('a', [{ kind: 'and', rules: [ANY_P] }], [{ kind: 'and', ids: [ANY_ID] }]);
  assert.equal(evaluateL7([filter('ALLOW', [all])], REQ).allowed, true);
  assert.equal(evaluateL7([filter('DENY', [all])], REQ).allowed, false);
});

test('DENY first: a matching DENY denies even when an ALLOW matches; its policy is named', () => {
  const all = policy('ns[default]-policy[all]-rule[0]', [ANY_P], [ANY_ID]);
  const del = policy(
    'ns[default]-policy[no-get]-rule[0]',
    [header(':method', exact('GET')).header],
    [ANY_ID],
  );
  const d = evaluateL7([filter('DENY', [del]), filter('ALLOW', [all])], REQ);
  assert.equal(d.allowed, false);
  assert.ok(!d.allowed);
  assert.equal(d.policy, 'ns[default]-policy[no-get]-rule[0]');
  assert.equal(d.filter, 'f-DENY');
  assert.equal(d.details, 'rbac_access_denied_matched_policy[ns[default]-policy[no-get]-rule[0]]');
  // A DENY that does not match leaves the ALLOW to decide.
  assert.equal(
    evaluateL7([filter('DENY', [del]), filter('ALLOW', [all])], { ...REQ, method: 'POST' }).allowed,
    true,
  );
});

test('any of several ALLOW policies suffices; the first matching policy by name is reported', () => {
  const a = policy('a', [header(':method', exact('POST')).header], [ANY_ID]);
  const b = policy('b', [ANY_P], [ANY_ID]);
  assert.equal(evaluateL7([filter('ALLOW', [a, b])], REQ).allowed, true);
  const d = evaluateL7([filter('DENY', [b, policy('c', [ANY_P], [ANY_ID])])], REQ);
  assert.equal(!d.allowed && d.policy, 'b');
});

test('AUDIT (LOG) never denies and reports the matching policy; shadow rules are reported, not enforced', () => {
  const all = policy('audit-all', [ANY_P], [ANY_ID]);
  const d = evaluateL7([filter('LOG', [all])], REQ);
  assert.deepEqual(d, { allowed: true, audited: ['audit-all'], shadow: [] });
  const shadow: L7RbacFilter = {
    name: 'dry',
    config: {
      rules: undefined,
      shadowRules: { action: 'DENY', policies: [all] },
      shadowRulesStatPrefix: 'istio_dry_run_deny_',
    },
  };
  const s = evaluateL7([shadow], REQ);
  assert.equal(s.allowed, true);
  assert.deepEqual(s.shadow, [
    { filter: 'dry', statPrefix: 'istio_dry_run_deny_', allowed: false, policy: 'audit-all' },
  ]);
});

test('a policy needs a matching permission AND a matching principal', () => {
  const get = header(':method', exact('GET')).header;
  const curl: RbacPrincipal = { kind: 'authenticated', principalName: exact(REQ.peerPrincipal!) };
  assert.equal(allows(get, curl), true);
  assert.equal(allows(get, curl, { method: 'DELETE' }), false);
  assert.equal(allows(get, curl, { peerPrincipal: 'spiffe://cluster.local/ns/default/sa/reviews' }), false);
});

const PERMISSIONS: [string, RbacPermission, Partial<L7Request>, boolean][] = [
  ['method exact', header(':method', exact('GET')).header, {}, true],
  ['method exact, other', header(':method', exact('GET')).header, { method: 'POST' }, false],
  ['method prefix (Istio "G*")', header(':method', prefix('G')).header, {}, true],
  ['method present ("*")', present(':method'), {}, true],
  [
    'host exact, ignore case',
    header(':authority', exact('PRODUCTPAGE.default.svc.cluster.local:9080', true)).header,
    {},
    true,
  ],
  ['host suffix', header(':authority', suffix(':9080')).header, {}, true],
  ['host suffix, other', header(':authority', suffix(':80')).header, {}, false],
  ['path exact ignores the query', { kind: 'url-path', matcher: exact('/productpage') }, {}, true],
  ['path prefix ("/product*")', { kind: 'url-path', matcher: prefix('/product') }, {}, true],
  ['path suffix ("*page")', { kind: 'url-path', matcher: suffix('page') }, {}, true],
  ['path suffix does not see the query', { kind: 'url-path', matcher: suffix('=1') }, {}, false],
  ['path presence (".+")', { kind: 'url-path', matcher: regex('.+') }, {}, true],
  [':path header sees the query', header(':path', suffix('u=1')).header, {}, true],
  ['header exact', header('user-agent', exact('curl/8')).header, {}, true],
  ['header missing', header('x-none', exact('')).header, {}, false],
  ['header with several values is comma-joined', header('x-multi', exact('a,b')).header, {}, true],
  ['destination port', { kind: 'destination-port', port: 9080 }, {}, true],
  ['destination port, other', { kind: 'destination-port', port: 80 }, {}, false],
  ['destination port range', { kind: 'destination-port-range', start: 9000, end: 9081 }, {}, true],
  ['destination ip', { kind: 'destination-ip', cidr: { address: '10.96.0.0', prefixLength: 16 } }, {}, true],
  [
    'destination ip, host-name destination',
    { kind: 'destination-ip', cidr: { address: '0.0.0.0', prefixLength: 0 } },
    { destinationIp: undefined },
    false,
  ],
  ['sni (none inside HBONE)', { kind: 'requested-server-name', matcher: exact('') }, {}, true],
  ['not(method GET) for GET', { kind: 'not', rule: header(':method', exact('GET')).header }, {}, false],
  [
    'not(method GET) for PUT',
    { kind: 'not', rule: header(':method', exact('GET')).header },
    { method: 'PUT' },
    true,
  ],
  ['or', { kind: 'or', rules: [header(':method', exact('PUT')).header, ANY_P] }, {}, true],
  ['and', { kind: 'and', rules: [header(':method', exact('PUT')).header, ANY_P] }, {}, false],
];

for (const [name, perm, over, want] of PERMISSIONS) {
  test(`permission: ${name}`, () => assert.equal(allows(perm, ANY_ID, over), want));
}

const v4 = (address: string, prefixLength: number) => ({ address, prefixLength });
const PRINCIPALS: [string, RbacPrincipal, Partial<L7Request>, boolean][] = [
  ['authenticated, any name', { kind: 'authenticated', principalName: undefined }, {}, true],
  [
    'authenticated, no TLS peer',
    { kind: 'authenticated', principalName: undefined },
    { peerPrincipal: undefined },
    false,
  ],
  [
    'principal exact with spiffe://',
    { kind: 'authenticated', principalName: exact('spiffe://cluster.local/ns/default/sa/curl') },
    {},
    true,
  ],
  [
    'principal prefix',
    { kind: 'authenticated', principalName: prefix('spiffe://cluster.local/ns/default/') },
    {},
    true,
  ],
  ['principal suffix ("*/sa/curl")', { kind: 'authenticated', principalName: suffix('/sa/curl') }, {}, true],
  ['namespace regex', { kind: 'authenticated', principalName: regex('.*/ns/default/.*') }, {}, true],
  ['namespace regex, other', { kind: 'authenticated', principalName: regex('.*/ns/prod/.*') }, {}, false],
  [
    'not namespace (plaintext has none)',
    { kind: 'not', id: { kind: 'authenticated', principalName: regex('.*/ns/default/.*') } },
    { peerPrincipal: undefined },
    true,
  ],
  ['ipBlocks /24', { kind: 'direct-remote-ip', cidr: v4('10.0.1.0', 24) }, {}, true],
  ['ipBlocks exact /32', { kind: 'direct-remote-ip', cidr: v4('10.0.1.5', 32) }, {}, true],
  ['ipBlocks other', { kind: 'direct-remote-ip', cidr: v4('10.0.2.0', 24) }, {}, false],
  ['ipBlocks /0 (all IPv4)', { kind: 'direct-remote-ip', cidr: v4('0.0.0.0', 0) }, {}, true],
  [
    'ipBlocks IPv6 /64',
    { kind: 'direct-remote-ip', cidr: v4('fd00:1::', 64) },
    { directRemoteIp: 'fd00:1::abcd' },
    true,
  ],
  [
    'ipBlocks IPv6 other',
    { kind: 'direct-remote-ip', cidr: v4('fd00:2::', 64) },
    { directRemoteIp: 'fd00:1::abcd' },
    false,
  ],
  [
    'ipBlocks IPv4 never matches IPv6',
    { kind: 'direct-remote-ip', cidr: v4('0.0.0.0', 0) },
    { directRemoteIp: 'fd00::1' },
    false,
  ],
  [
    'remoteIpBlocks from x-forwarded-for (last entry)',
    { kind: 'remote-ip', cidr: v4('192.0.2.0', 24) },
    { headers: new Map([['x-forwarded-for', ['198.51.100.1, 192.0.2.7']]]) },
    true,
  ],
  [
    'remoteIpBlocks without x-forwarded-for: the peer',
    { kind: 'remote-ip', cidr: v4('10.0.1.0', 24) },
    {},
    true,
  ],
  [
    'remoteIpBlocks is not direct_remote_ip',
    { kind: 'direct-remote-ip', cidr: v4('192.0.2.0', 24) },
    { headers: new Map([['x-forwarded-for', ['192.0.2.7']]]) },
    false,
  ],
  ['when request.headers[...]', { kind: 'header', header: hm('user-agent', prefix('curl/')) }, {}, true],
  [
    'not_id(or(...))',
    { kind: 'not', id: { kind: 'or', ids: [{ kind: 'direct-remote-ip', cidr: v4('10.0.0.0', 8) }] } },
    {},
    false,
  ],
];

for (const [name, id, over, want] of PRINCIPALS) {
  test(`principal: ${name}`, () => assert.equal(allows(ANY_P, id, over), want));
}

test('DENY with notPrincipals (sample 23 at L7): only the waypoint identity passes', () => {
  const wp: RbacPrincipal = {
    kind: 'not',
    id: {
      kind: 'or',
      ids: [
        { kind: 'authenticated', principalName: exact('spiffe://cluster.local/ns/bookinfo/sa/waypoint') },
      ],
    },
  };
  const f = [filter('DENY', [policy('d', [ANY_P], [wp])])];
  assert.equal(evaluateL7(f, REQ).allowed, false);
  assert.equal(
    evaluateL7(f, { ...REQ, peerPrincipal: 'spiffe://cluster.local/ns/bookinfo/sa/waypoint' }).allowed,
    true,
  );
});
