/**
 * The evaluator for a connection (core/policy/l7.ts evaluateConnection), as Envoy's RBAC network
 * filter evaluates its rules: the same engine as for a request, but with no request — every header
 * missing (an empty header map), no path — so the connection facts alone decide: peer principal,
 * source and remote address, destination address and port, SNI. Tables.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  evaluateConnection,
  evaluateL7,
  type L7Connection,
  type L7RbacFilter,
} from '../../../src/core/policy/l7.ts';
import type {
  RbacAction,
  RbacPermission,
  RbacPolicy,
  RbacPrincipal,
  StringMatcher,
} from '../../../src/core/xds/l7-model.ts';

const ANY_P: RbacPermission = { kind: 'any' };
const ANY_ID: RbacPrincipal = { kind: 'any' };
const exact = (value: string): StringMatcher => ({ kind: 'exact', value, ignoreCase: false });
const cidr = (address: string, prefixLength: number) => ({ address, prefixLength });

const CONN: L7Connection = {
  peerPrincipal: 'spiffe://cluster.local/ns/default/sa/client',
  directRemoteIp: '10.0.1.5',
  destinationIp: '10.96.0.5',
  destinationPort: 5432,
  requestedServerName: '',
};

const policy = (name: string, permissions: RbacPermission[], principals: RbacPrincipal[]): RbacPolicy => ({
  name,
  permissions,
  principals,
});
const filter = (action: RbacAction, policies: RbacPolicy[]): L7RbacFilter => ({
  name: `istio.authorization.${action.toLowerCase()}`,
  config: { rules: { action, policies }, shadowRules: undefined, shadowRulesStatPrefix: '' },
});

function allows(perm: RbacPermission, id: RbacPrincipal, over: Partial<L7Connection> = {}): boolean {
  return evaluateConnection([filter('ALLOW', [policy('p', [perm], [id])])], { ...CONN, ...over }).allowed;
}

const missingHeader = (name: string, present: boolean, invert = false): RbacPermission => ({
  kind: 'header',
  header: { name, match: { kind: 'present', present }, invert, treatMissingAsEmpty: false },
});

const PERMISSIONS: [string, RbacPermission, Partial<L7Connection>, boolean][] = [
  ['any', ANY_P, {}, true],
  ['destination port', { kind: 'destination-port', port: 5432 }, {}, true],
  ['another destination port', { kind: 'destination-port', port: 5433 }, {}, false],
  [
    'destination port range [5000, 6000)',
    { kind: 'destination-port-range', start: 5000, end: 6000 },
    {},
    true,
  ],
  ['destination ip', { kind: 'destination-ip', cidr: cidr('10.96.0.0', 16) }, {}, true],
  [
    'destination ip, none known',
    { kind: 'destination-ip', cidr: cidr('0.0.0.0', 0) },
    { destinationIp: undefined },
    false,
  ],
  ['SNI, none', { kind: 'requested-server-name', matcher: exact('db') }, {}, false],
  ['SNI', { kind: 'requested-server-name', matcher: exact('db') }, { requestedServerName: 'db' }, true],
  // No request: a path never matches, a header is missing (Envoy hands the engine no headers).
  [
    'url_path never matches',
    { kind: 'url-path', matcher: { kind: 'prefix', value: '/', ignoreCase: false } },
    {},
    false,
  ],
  [
    'not url_path matches',
    { kind: 'not', rule: { kind: 'url-path', matcher: { kind: 'prefix', value: '/', ignoreCase: false } } },
    {},
    true,
  ],
  [
    ':method is missing',
    {
      kind: 'header',
      header: {
        name: ':method',
        match: { kind: 'string', matcher: exact('GET') },
        invert: false,
        treatMissingAsEmpty: false,
      },
    },
    {},
    false,
  ],
  ['present_match true on a missing header', missingHeader(':authority', true), {}, false],
  ['present_match false on a missing header', missingHeader('x-a', false), {}, true],
];

for (const [name, perm, over, ok] of PERMISSIONS)
  test(`permission: ${name}`, () => assert.equal(allows(perm, ANY_ID, over), ok));

const TEAM_HEADER: RbacPrincipal = {
  kind: 'header',
  header: {
    name: 'x-team',
    match: { kind: 'string', matcher: exact('a') },
    invert: false,
    treatMissingAsEmpty: false,
  },
};

const PRINCIPALS: [string, RbacPrincipal, Partial<L7Connection>, boolean][] = [
  ['authenticated, exact', { kind: 'authenticated', principalName: exact(CONN.peerPrincipal!) }, {}, true],
  [
    'authenticated, another',
    { kind: 'authenticated', principalName: exact('spiffe://x/ns/a/sa/b') },
    {},
    false,
  ],
  [
    'authenticated, plaintext peer',
    { kind: 'authenticated', principalName: undefined },
    { peerPrincipal: undefined },
    false,
  ],
  [
    'namespace regex',
    { kind: 'authenticated', principalName: { kind: 'regex', regex: '.*/ns/default/.*' } },
    {},
    true,
  ],
  ['direct remote ip', { kind: 'direct-remote-ip', cidr: cidr('10.0.1.0', 24) }, {}, true],
  [
    'direct remote ip, IPv6 peer',
    { kind: 'direct-remote-ip', cidr: cidr('10.0.1.0', 24) },
    { directRemoteIp: 'fd00::1' },
    false,
  ],
  // No x-forwarded-for on a connection: remote_ip is the direct peer.
  ['remote ip is the direct peer', { kind: 'remote-ip', cidr: cidr('10.0.1.5', 32) }, {}, true],
  ['header principal is missing', TEAM_HEADER, {}, false],
  [
    'not of a missing header',
    {
      kind: 'not',
      id: TEAM_HEADER,
    },
    {},
    true,
  ],
];

for (const [name, id, over, ok] of PRINCIPALS)
  test(`principal: ${name}`, () => assert.equal(allows(ANY_P, id, over), ok));

test('DENY before ALLOW; the denial names the filter and the policy, with Envoy details', () => {
  const d = evaluateConnection(
    [
      filter('DENY', [
        policy('ns[default]-policy[deny-db]-rule[0]', [{ kind: 'destination-port', port: 5432 }], [ANY_ID]),
      ]),
      filter('ALLOW', [policy('all', [ANY_P], [ANY_ID])]),
    ],
    CONN,
  );
  assert.equal(d.allowed, false);
  assert.ok(!d.allowed);
  assert.equal(d.filter, 'istio.authorization.deny');
  assert.equal(d.policy, 'ns[default]-policy[deny-db]-rule[0]');
  assert.equal(d.details, 'rbac_access_denied_matched_policy[ns[default]-policy[deny-db]-rule[0]]');
});

test('ALLOW with no match denies with policy none; LOG only audits; shadow rules only report', () => {
  const none = evaluateConnection(
    [filter('ALLOW', [policy('p', [{ kind: 'destination-port', port: 1 }], [ANY_ID])])],
    CONN,
  );
  assert.ok(!none.allowed);
  assert.equal(none.details, 'rbac_access_denied_matched_policy[none]');
  const audit = evaluateConnection([filter('LOG', [policy('a', [ANY_P], [ANY_ID])])], CONN);
  assert.deepEqual([audit.allowed, audit.audited], [true, ['a']]);
  const shadow: L7RbacFilter = {
    name: 'istio.authorization.deny',
    config: {
      rules: undefined,
      shadowRules: { action: 'DENY', policies: [policy('dry', [ANY_P], [ANY_ID])] },
      shadowRulesStatPrefix: 'istio_dry_run_deny_',
    },
  };
  const s = evaluateConnection([shadow], CONN);
  assert.equal(s.allowed, true);
  assert.deepEqual(s.shadow, [
    { filter: 'istio.authorization.deny', statPrefix: 'istio_dry_run_deny_', allowed: false, policy: 'dry' },
  ]);
});

test('the same filters decide a request by its headers and a connection without them', () => {
  const f = [
    filter('DENY', [
      policy(
        'd',
        [
          {
            kind: 'header',
            header: {
              name: ':method',
              match: { kind: 'string', matcher: exact('DELETE') },
              invert: false,
              treatMissingAsEmpty: false,
            },
          },
        ],
        [ANY_ID],
      ),
    ]),
  ];
  const req = { ...CONN, method: 'DELETE', path: '/', authority: 'db', headers: new Map() };
  assert.equal(evaluateL7(f, req).allowed, false);
  assert.equal(evaluateConnection(f, CONN).allowed, true);
});
