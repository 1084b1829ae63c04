import { EMPTY_MATCH } from '../../../src/core/xds/model.ts';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ipToBytes } from '../../../src/core/ip.ts';
import type { Identity } from '../../../src/core/identity/spiffe.ts';
import {
  evaluateL4,
  inCidr,
  stringMatches,
  type Decision,
  type L4Connection,
} from '../../../src/core/policy/l4.ts';
import type {
  Authorization,
  Cidr,
  Match,
  PolicyAction,
  Rule,
  StringMatch,
} from '../../../src/core/xds/model.ts';

const curl: Identity = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'curl' };

/** A connection from curl (10.0.0.2) to 10.0.1.5:9080 unless overridden. */
function conn(over: Partial<L4Connection> = {}): L4Connection {
  return { srcIp: '10.0.0.2', dstIp: '10.0.1.5', dstPort: 9080, srcIdentity: curl, ...over };
}

function match(fields: Partial<Match>): Match {
  return {
    ...EMPTY_MATCH,
    ...fields,
  };
}

/** A policy whose single rule has a single clause holding `matches`. */
function policy(
  name: string,
  action: PolicyAction,
  matches: Match[],
  opts: { dryRun?: boolean; rules?: Rule[] } = {},
): Authorization {
  return {
    name,
    namespace: 'default',
    scope: 'Namespace',
    action,
    rules: opts.rules ?? [[matches]],
    dryRun: opts.dryRun ?? false,
  };
}

const exact = (value: string): StringMatch => ({ kind: 'exact', value });
const cidr = (s: string): Cidr => {
  const [address = '', len] = s.split('/');
  return { address, prefixLength: len === undefined ? (address.includes(':') ? 128 : 32) : Number(len) };
};

const ALLOWED: Decision = { allowed: true };
const NONE_ALLOWED: Decision = {
  allowed: false,
  policy: undefined,
  reason: 'allow policies exist, but none allowed',
};
const deniedBy = (name: string): Decision => ({
  allowed: false,
  policy: `default/${name}`,
  reason: `explicitly denied by default/${name}`,
});

interface Case {
  name: string;
  policies: Authorization[];
  conn?: Partial<L4Connection>;
  want: Decision;
}

const fromCurl = match({ principals: [exact('cluster.local/ns/default/sa/curl')] });
const port9080 = match({ destinationPorts: [9080] });
const emptyMatch = match({});

const cases: Case[] = [
  { name: 'no policies allow', policies: [], want: ALLOWED },
  {
    name: 'a matching DENY denies and names the policy',
    policies: [policy('deny-curl', 'Deny', [fromCurl])],
    want: deniedBy('deny-curl'),
  },
  {
    name: 'a DENY that does not match allows',
    policies: [policy('deny-9999', 'Deny', [match({ destinationPorts: [9999] })])],
    want: ALLOWED,
  },
  {
    name: 'ALLOW policies exist but none match: denied with no policy named',
    policies: [policy('allow-other', 'Allow', [match({ namespaces: [exact('other')] })])],
    want: NONE_ALLOWED,
  },
  { name: 'a matching ALLOW allows', policies: [policy('allow-curl', 'Allow', [fromCurl])], want: ALLOWED },
  {
    name: 'one of several ALLOWs matching is enough',
    policies: [
      policy('allow-other', 'Allow', [match({ namespaces: [exact('other')] })]),
      policy('allow-curl', 'Allow', [fromCurl]),
    ],
    want: ALLOWED,
  },
  {
    name: 'DENY wins over a matching ALLOW',
    policies: [policy('allow-curl', 'Allow', [fromCurl]), policy('deny-port', 'Deny', [port9080])],
    want: deniedBy('deny-port'),
  },
  {
    name: 'the first matching DENY is named',
    policies: [
      policy('deny-a', 'Deny', [match({ destinationPorts: [1] })]),
      policy('deny-b', 'Deny', [port9080]),
      policy('deny-c', 'Deny', [fromCurl]),
    ],
    want: deniedBy('deny-b'),
  },
  {
    name: 'an ALLOW with no rules matches nothing',
    policies: [policy('allow-nothing', 'Allow', [], { rules: [] })],
    want: NONE_ALLOWED,
  },
  {
    name: 'a DENY with no rules matches nothing',
    policies: [policy('deny-nothing', 'Deny', [], { rules: [] })],
    want: ALLOWED,
  },
  {
    name: 'an empty clause matches (ALLOW)',
    policies: [policy('allow-all', 'Allow', [])],
    want: ALLOWED,
  },
  {
    name: 'an empty clause matches (DENY)',
    policies: [policy('deny-all', 'Deny', [])],
    want: deniedBy('deny-all'),
  },
  {
    name: 'a rule with no clauses matches',
    policies: [policy('deny-all', 'Deny', [], { rules: [[]] })],
    want: deniedBy('deny-all'),
  },
  {
    name: 'an empty match group never matches (ALLOW)',
    policies: [policy('allow-empty', 'Allow', [emptyMatch])],
    want: NONE_ALLOWED,
  },
  {
    name: 'an empty match group never matches: stripped L7 DENY is a no-op (istio/istio#61126)',
    policies: [policy('deny-l7', 'Deny', [emptyMatch])],
    want: ALLOWED,
  },
  {
    name: 'an empty match group is skipped; another match in the clause decides',
    policies: [policy('deny', 'Deny', [emptyMatch, port9080])],
    want: deniedBy('deny'),
  },
  {
    name: 'all clauses of a rule must match',
    policies: [policy('allow', 'Allow', [], { rules: [[[fromCurl], [match({ destinationPorts: [80] })]]] })],
    want: NONE_ALLOWED,
  },
  {
    name: 'any rule matching is enough',
    policies: [
      policy('allow', 'Allow', [], {
        rules: [[[match({ destinationPorts: [80] })]], [[fromCurl], [port9080]]],
      }),
    ],
    want: ALLOWED,
  },
  {
    name: 'principals compare without the spiffe:// prefix',
    policies: [
      policy('allow', 'Allow', [match({ principals: [exact('spiffe://cluster.local/ns/default/sa/curl')] })]),
    ],
    want: NONE_ALLOWED,
  },
  {
    name: 'principal suffix match',
    policies: [policy('deny', 'Deny', [match({ principals: [{ kind: 'suffix', value: '/sa/curl' }] })])],
    want: deniedBy('deny'),
  },
  {
    name: 'principal prefix match on trust domain',
    policies: [
      policy('deny', 'Deny', [match({ principals: [{ kind: 'prefix', value: 'cluster.local/' }] })]),
    ],
    want: deniedBy('deny'),
  },
  {
    name: 'no identity fails principals',
    policies: [policy('allow-curl', 'Allow', [fromCurl])],
    conn: { srcIdentity: undefined },
    want: NONE_ALLOWED,
  },
  {
    name: 'no identity fails principal Presence',
    policies: [policy('allow-any-principal', 'Allow', [match({ principals: [{ kind: 'presence' }] })])],
    conn: { srcIdentity: undefined },
    want: NONE_ALLOWED,
  },
  {
    name: 'an identity passes principal Presence',
    policies: [policy('allow-any-principal', 'Allow', [match({ principals: [{ kind: 'presence' }] })])],
    want: ALLOWED,
  },
  {
    name: 'no identity fails namespaces',
    policies: [policy('allow-ns', 'Allow', [match({ namespaces: [exact('default')] })])],
    conn: { srcIdentity: undefined },
    want: NONE_ALLOWED,
  },
  {
    name: 'no identity fails namespace Presence',
    policies: [policy('deny-meshed', 'Deny', [match({ namespaces: [{ kind: 'presence' }] })])],
    conn: { srcIdentity: undefined },
    want: ALLOWED,
  },
  {
    name: 'no identity fails serviceAccounts',
    policies: [
      policy('allow-sa', 'Allow', [
        match({ serviceAccounts: [{ namespace: 'default', serviceAccount: 'curl' }] }),
      ]),
    ],
    conn: { srcIdentity: undefined },
    want: NONE_ALLOWED,
  },
  {
    name: 'no identity passes notPrincipals (empty principal matches nothing)',
    policies: [
      policy('deny-not-curl', 'Deny', [
        match({ notPrincipals: [exact('cluster.local/ns/default/sa/curl')] }),
      ]),
    ],
    conn: { srcIdentity: undefined },
    want: deniedBy('deny-not-curl'),
  },
  {
    // istiod's PeerAuthentication STRICT (istio_converted_static_strict): deny without an identity.
    name: 'STRICT: notPrincipals presence denies a connection without an identity',
    policies: [policy('strict', 'Deny', [match({ notPrincipals: [{ kind: 'presence' }] })])],
    conn: { srcIdentity: undefined },
    want: deniedBy('strict'),
  },
  {
    name: 'STRICT: notPrincipals presence lets any identity through',
    policies: [policy('strict', 'Deny', [match({ notPrincipals: [{ kind: 'presence' }] })])],
    conn: {},
    want: ALLOWED,
  },
  {
    name: 'STRICT with a PERMISSIVE port: no identity AND not that port (clauses ANDed)',
    policies: [
      policy('strict-but-8080', 'Deny', [], {
        rules: [
          [[match({ notPrincipals: [{ kind: 'presence' }] })], [match({ notDestinationPorts: [8080] })]],
        ],
      }),
    ],
    conn: { srcIdentity: undefined, dstPort: 8080 },
    want: ALLOWED,
  },
  {
    name: 'STRICT with a PERMISSIVE port: plaintext to another port is denied',
    policies: [
      policy('strict-but-8080', 'Deny', [], {
        rules: [
          [[match({ notPrincipals: [{ kind: 'presence' }] })], [match({ notDestinationPorts: [8080] })]],
        ],
      }),
    ],
    conn: { srcIdentity: undefined, dstPort: 9080 },
    want: deniedBy('strict-but-8080'),
  },
  {
    name: 'plaintext client on an allowed port is allowed by a ports-only ALLOW',
    policies: [policy('allow-port', 'Allow', [port9080])],
    conn: { srcIdentity: undefined },
    want: ALLOWED,
  },
  {
    name: 'namespaces compare the identity namespace',
    policies: [policy('allow-ns', 'Allow', [match({ namespaces: [exact('other'), exact('default')] })])],
    want: ALLOWED,
  },
  {
    name: 'serviceAccounts need namespace and name to match',
    policies: [
      policy('allow-sa', 'Allow', [
        match({ serviceAccounts: [{ namespace: 'other', serviceAccount: 'curl' }] }),
      ]),
    ],
    want: NONE_ALLOWED,
  },
  {
    name: 'serviceAccounts match',
    policies: [
      policy('allow-sa', 'Allow', [
        match({ serviceAccounts: [{ namespace: 'default', serviceAccount: 'curl' }] }),
      ]),
    ],
    want: ALLOWED,
  },
  {
    name: 'notNamespaces excludes the client namespace',
    policies: [policy('allow', 'Allow', [match({ notNamespaces: [exact('default')] })])],
    want: NONE_ALLOWED,
  },
  {
    name: 'notNamespaces passes other namespaces',
    policies: [policy('deny', 'Deny', [match({ notNamespaces: [exact('istio-system')] })])],
    want: deniedBy('deny'),
  },
  {
    name: 'notServiceAccounts excludes the client',
    policies: [
      policy('deny', 'Deny', [
        match({ notServiceAccounts: [{ namespace: 'default', serviceAccount: 'curl' }] }),
      ]),
    ],
    want: ALLOWED,
  },
  {
    name: 'positive and negative lists of one field both apply',
    policies: [
      policy('allow', 'Allow', [
        match({
          namespaces: [{ kind: 'presence' }],
          notPrincipals: [exact('cluster.local/ns/default/sa/curl')],
        }),
      ]),
    ],
    want: NONE_ALLOWED,
  },
  {
    name: 'fields are ANDed: principal matches but port does not',
    policies: [policy('deny', 'Deny', [match({ ...fromCurl, destinationPorts: [80] })])],
    want: ALLOWED,
  },
  {
    name: 'fields are ANDed: principal and port match',
    policies: [policy('deny', 'Deny', [match({ ...fromCurl, destinationPorts: [80, 9080] })])],
    want: deniedBy('deny'),
  },
  {
    name: 'sourceIps IPv4 CIDR',
    policies: [policy('deny', 'Deny', [match({ sourceIps: [cidr('10.0.0.0/24')] })])],
    want: deniedBy('deny'),
  },
  {
    name: 'sourceIps IPv4 CIDR miss',
    policies: [policy('deny', 'Deny', [match({ sourceIps: [cidr('10.0.1.0/24')] })])],
    want: ALLOWED,
  },
  {
    name: 'notSourceIps',
    policies: [policy('allow', 'Allow', [match({ notSourceIps: [cidr('10.0.0.0/8')] })])],
    want: NONE_ALLOWED,
  },
  {
    name: 'destinationIps exact address',
    policies: [policy('deny', 'Deny', [match({ destinationIps: [cidr('10.0.1.5')] })])],
    want: deniedBy('deny'),
  },
  {
    name: 'notDestinationIps',
    policies: [policy('deny', 'Deny', [match({ notDestinationIps: [cidr('10.0.1.0/24')] })])],
    want: ALLOWED,
  },
  {
    name: 'sourceIps IPv6 CIDR',
    policies: [policy('deny', 'Deny', [match({ sourceIps: [cidr('fd00:1::/32')] })])],
    conn: { srcIp: 'fd00:1:2::7', dstIp: 'fd00:1:3::5' },
    want: deniedBy('deny'),
  },
  {
    name: 'an IPv4 CIDR never matches an IPv6 source',
    policies: [policy('deny', 'Deny', [match({ sourceIps: [cidr('0.0.0.0/0')] })])],
    conn: { srcIp: 'fd00::7' },
    want: ALLOWED,
  },
  {
    name: 'an IPv4-mapped IPv6 source matches an IPv4 CIDR',
    policies: [policy('deny', 'Deny', [match({ sourceIps: [cidr('10.0.0.0/8')] })])],
    conn: { srcIp: '::ffff:10.0.0.2' },
    want: deniedBy('deny'),
  },
  {
    name: 'destinationPorts compare the resolved target port',
    policies: [policy('allow', 'Allow', [match({ destinationPorts: [15008] })])],
    want: NONE_ALLOWED,
  },
  {
    name: 'notDestinationPorts effectively denies a port (examples/localhost.yaml)',
    policies: [policy('allow', 'Allow', [match({ notDestinationPorts: [9999] })])],
    conn: { dstPort: 9999 },
    want: NONE_ALLOWED,
  },
  {
    name: 'notDestinationPorts lets other ports through',
    policies: [policy('allow', 'Allow', [match({ notDestinationPorts: [9999] })])],
    want: ALLOWED,
  },
  {
    name: 'a dry-run DENY is ignored',
    policies: [policy('deny', 'Deny', [port9080], { dryRun: true })],
    want: ALLOWED,
  },
  {
    name: 'a dry-run ALLOW does not make ALLOW policies exist',
    policies: [policy('allow-other', 'Allow', [match({ destinationPorts: [1] })], { dryRun: true })],
    want: ALLOWED,
  },
  {
    name: 'a dry-run ALLOW does not allow',
    policies: [
      policy('allow-curl', 'Allow', [fromCurl], { dryRun: true }),
      policy('allow-other', 'Allow', [match({ destinationPorts: [1] })]),
    ],
    want: NONE_ALLOWED,
  },
];

for (const c of cases) {
  test(`evaluateL4: ${c.name}`, () => {
    assert.deepEqual(evaluateL4(c.policies, conn(c.conn)), c.want);
  });
}

const cidrCases: { ip: string; cidr: string; want: boolean }[] = [
  { ip: '10.1.2.3', cidr: '10.0.0.0/8', want: true },
  { ip: '10.255.255.255', cidr: '10.0.0.0/8', want: true },
  { ip: '11.0.0.0', cidr: '10.0.0.0/8', want: false },
  { ip: '9.255.255.255', cidr: '10.0.0.0/8', want: false },
  { ip: '192.168.1.255', cidr: '192.168.0.0/23', want: true },
  { ip: '192.168.2.0', cidr: '192.168.0.0/23', want: false },
  { ip: '10.0.0.1', cidr: '10.0.0.1/32', want: true },
  { ip: '10.0.0.2', cidr: '10.0.0.1/32', want: false },
  { ip: '10.9.9.9', cidr: '10.1.2.3/8', want: true },
  { ip: '1.2.3.4', cidr: '0.0.0.0/0', want: true },
  { ip: '255.255.255.255', cidr: '0.0.0.0/0', want: true },
  { ip: '128.0.0.0', cidr: '0.0.0.0/1', want: false },
  { ip: '127.255.255.255', cidr: '0.0.0.0/1', want: true },
  { ip: 'fd00::1', cidr: 'fd00::/8', want: true },
  { ip: 'fe80::1', cidr: 'fd00::/8', want: false },
  { ip: '::1', cidr: '::1/128', want: true },
  { ip: '::2', cidr: '::1/128', want: false },
  { ip: 'fd00::1', cidr: '::/0', want: true },
  { ip: 'fd00:0:0:1::5', cidr: 'fd00:0:0:1::/64', want: true },
  { ip: 'fd00:0:0:2::5', cidr: 'fd00:0:0:1::/64', want: false },
  { ip: 'fd00:0:0:1:ffff:ffff:ffff:ffff', cidr: 'fd00:0:0:1::/64', want: true },
  { ip: '2001:db9::1', cidr: '2001:db8::/32', want: false },
  { ip: '2001:DB8:0:0:0:0:0:1', cidr: '2001:db8::/32', want: true },
  { ip: '2001:db8::1', cidr: '2001:0db8:0000::/48', want: true },
  { ip: '64:ff9b::10.0.0.1', cidr: '64:ff9b::/96', want: true },
  { ip: '64:ff9b::a00:1', cidr: '64:ff9b::10.0.0.1/128', want: true },
  { ip: '::ffff:10.0.0.1', cidr: '10.0.0.0/8', want: true },
  { ip: '::FFFF:10.0.0.1', cidr: '10.0.0.0/8', want: true },
  { ip: '::ffff:11.0.0.1', cidr: '10.0.0.0/8', want: false },
  { ip: '10.0.0.1', cidr: 'fd00::/8', want: false },
  { ip: '10.0.0.1', cidr: '::/0', want: false },
  { ip: 'fd00::1', cidr: '0.0.0.0/0', want: false },
  { ip: 'not-an-ip', cidr: '0.0.0.0/0', want: false },
  { ip: '10.0.0.1', cidr: 'not-an-ip/0', want: false },
  { ip: '', cidr: '::/0', want: false },
];

for (const c of cidrCases) {
  test(`inCidr(${c.ip}, ${c.cidr}) is ${c.want}`, () => {
    assert.equal(inCidr(c.ip, cidr(c.cidr)), c.want);
  });
}

// Bug: inCidr in src/core/policy/l4.ts converts an IPv4-mapped CIDR address to IPv4 (32 bits) but keeps
// its IPv6 prefix length, so the shift 32 - 104 is negative (a left shift) and the CIDR matches only
// its own base address: ::ffff:10.0.0.0/104 contains 10.0.0.0 but not 10.1.2.3. The decoder accepts
// such CIDRs (prefix up to 128 for an IPv6 literal).
test('regression: l4 inCidr: IPv4-mapped CIDR ::ffff:10.0.0.0/104 contains ::ffff:10.1.2.3', () => {
  assert.equal(inCidr('::ffff:10.1.2.3', { address: '::ffff:10.0.0.0', prefixLength: 104 }), true);
});

const stringCases: { m: StringMatch; value: string; want: boolean }[] = [
  { m: exact('a'), value: 'a', want: true },
  { m: exact('a'), value: 'ab', want: false },
  { m: exact(''), value: '', want: true },
  { m: { kind: 'prefix', value: 'team-' }, value: 'team-a', want: true },
  { m: { kind: 'prefix', value: 'team-' }, value: 'a-team-', want: false },
  { m: { kind: 'suffix', value: '/sa/curl' }, value: 'td/ns/x/sa/curl', want: true },
  { m: { kind: 'suffix', value: '/sa/curl' }, value: 'td/ns/x/sa/curl2', want: false },
  { m: { kind: 'presence' }, value: 'x', want: true },
  { m: { kind: 'presence' }, value: '', want: false },
];

for (const c of stringCases) {
  test(`stringMatches(${JSON.stringify(c.m)}, ${JSON.stringify(c.value)}) is ${c.want}`, () => {
    assert.equal(stringMatches(c.m, c.value), c.want);
  });
}

// ---- More edges ----

const moreCases: Case[] = [
  {
    name: 'several CIDRs in one field are ORed (IPv4 and IPv6 side by side)',
    policies: [policy('deny', 'Deny', [match({ sourceIps: [cidr('fd00::/8'), cidr('10.0.0.0/30')] })])],
    want: deniedBy('deny'),
  },
  {
    name: 'destinationIps IPv6 exact address',
    policies: [policy('allow', 'Allow', [match({ destinationIps: [cidr('fd00:1:3::5')] })])],
    conn: { srcIp: 'fd00:1:2::7', dstIp: 'fd00:1:3::5' },
    want: ALLOWED,
  },
  {
    name: 'notDestinationIps IPv6 excludes the pod',
    policies: [policy('allow', 'Allow', [match({ notDestinationIps: [cidr('fd00:1:3::/48')] })])],
    conn: { srcIp: 'fd00:1:2::7', dstIp: 'fd00:1:3::5' },
    want: NONE_ALLOWED,
  },
  {
    name: 'a prefix that is not on a byte boundary (/20)',
    policies: [policy('deny', 'Deny', [match({ sourceIps: [cidr('10.0.16.0/20')] })])],
    conn: { srcIp: '10.0.31.255' },
    want: deniedBy('deny'),
  },
  {
    name: 'a prefix that is not on a byte boundary (/20), just outside',
    policies: [policy('deny', 'Deny', [match({ sourceIps: [cidr('10.0.16.0/20')] })])],
    conn: { srcIp: '10.0.32.0' },
    want: ALLOWED,
  },
  {
    name: 'an IPv6 prefix of /0 holds every IPv6 source but no IPv4 one',
    policies: [policy('allow', 'Allow', [match({ sourceIps: [cidr('::/0')] })])],
    want: NONE_ALLOWED,
  },
  {
    name: 'notPorts with several ports',
    policies: [policy('allow', 'Allow', [match({ notDestinationPorts: [1, 9080, 2] })])],
    want: NONE_ALLOWED,
  },
  {
    name: 'notPrincipals prefix: everything outside a namespace',
    policies: [
      policy('deny', 'Deny', [
        match({ notPrincipals: [{ kind: 'prefix', value: 'cluster.local/ns/default/' }] }),
      ]),
    ],
    conn: { srcIdentity: { trustDomain: 'cluster.local', namespace: 'other', serviceAccount: 'curl' } },
    want: deniedBy('deny'),
  },
  {
    name: 'notNamespaces presence: only connections without an identity pass',
    policies: [policy('allow', 'Allow', [match({ notNamespaces: [{ kind: 'presence' }] })])],
    conn: { srcIdentity: undefined },
    want: ALLOWED,
  },
  {
    name: 'a policy whose rules are all empty-match clauses never matches (ALLOW)',
    policies: [policy('allow', 'Allow', [], { rules: [[[emptyMatch]], [[emptyMatch, emptyMatch]]] })],
    want: NONE_ALLOWED,
  },
  {
    name: 'only dry-run policies: allowed',
    policies: [
      policy('deny', 'Deny', [port9080], { dryRun: true }),
      policy('allow', 'Allow', [match({ destinationPorts: [1] })], { dryRun: true }),
    ],
    want: ALLOWED,
  },
  {
    name: 'a matching dry-run DENY does not hide an enforced one after it',
    policies: [policy('dry', 'Deny', [port9080], { dryRun: true }), policy('real', 'Deny', [port9080])],
    want: deniedBy('real'),
  },
  {
    name: 'an ALLOW before a DENY in the list: the DENY still wins',
    policies: [policy('allow', 'Allow', [port9080]), policy('deny', 'Deny', [fromCurl])],
    want: deniedBy('deny'),
  },
  {
    name: 'another trust domain is another principal',
    policies: [policy('allow-curl', 'Allow', [fromCurl])],
    conn: { srcIdentity: { ...curl, trustDomain: 'evil.example' } },
    want: NONE_ALLOWED,
  },
  {
    name: 'serviceAccounts ignore the trust domain (namespace and name only, as ztunnel)',
    policies: [
      policy('allow', 'Allow', [
        match({ serviceAccounts: [{ namespace: 'default', serviceAccount: 'curl' }] }),
      ]),
    ],
    conn: { srcIdentity: { ...curl, trustDomain: 'other.td' } },
    want: ALLOWED,
  },
];

for (const c of moreCases) {
  test(`evaluateL4: ${c.name}`, () => {
    assert.deepEqual(evaluateL4(c.policies, conn(c.conn)), c.want);
  });
}

// ---- The evaluator against a plain reading of reference/ztunnel.md §6 ----

/** CIDR containment written the slow, obvious way (numbers as bigints). */
function refInCidr(ip: string, c: Cidr): boolean {
  const mapped = (s: string) => /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(s)?.[1] ?? s;
  const toBig = (s: string) => {
    const b = ipToBytes(mapped(s));
    return b && { v: b.reduce((acc, x) => (acc << 8n) | BigInt(x), 0n), bits: b.length * 8 };
  };
  const a = toBig(ip);
  const n = toBig(c.address);
  if (!a || !n || a.bits !== n.bits) return false;
  const len = mapped(c.address) !== c.address ? c.prefixLength - 96 : c.prefixLength;
  if (len < 0) return false;
  const shift = BigInt(Math.max(0, a.bits - len));
  return a.v >> shift === n.v >> shift;
}

function refDecide(policies: readonly Authorization[], c: L4Connection): boolean {
  const id = c.srcIdentity;
  const principal = id ? `${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}` : '';
  const field = <T>(pos: readonly T[], neg: readonly T[], f: (v: T) => boolean) =>
    (pos.length === 0 || pos.some(f)) && !neg.some(f);
  const one = (m: Match) =>
    Object.values(m).some((v: readonly unknown[]) => v.length > 0) &&
    field(m.namespaces, m.notNamespaces, (s) => stringMatches(s, id?.namespace ?? '')) &&
    field(m.principals, m.notPrincipals, (s) => stringMatches(s, principal)) &&
    field(
      m.serviceAccounts,
      m.notServiceAccounts,
      (x) => !!id && x.namespace === id.namespace && x.serviceAccount === id.serviceAccount,
    ) &&
    field(m.sourceIps, m.notSourceIps, (x) => refInCidr(c.srcIp, x)) &&
    field(m.destinationIps, m.notDestinationIps, (x) => refInCidr(c.dstIp, x)) &&
    field(m.destinationPorts, m.notDestinationPorts, (p) => p === c.dstPort);
  const matchesPolicy = (p: Authorization) =>
    p.rules.some((r) => r.every((cl) => cl.length === 0 || cl.some(one)));
  const live = policies.filter((p) => !p.dryRun);
  if (live.some((p) => p.action === 'Deny' && matchesPolicy(p))) return false;
  const allows = live.filter((p) => p.action === 'Allow');
  return allows.length === 0 || allows.some(matchesPolicy);
}

test('property: evaluateL4 decides as the plain reading of the reference, for any policies', () => {
  const ips = [
    '10.0.0.2',
    '10.0.1.5',
    '10.1.2.3',
    '192.168.0.1',
    'fd00::7',
    'fd00:1::5',
    '::ffff:10.0.0.2',
    '::1',
  ];
  const addresses = [
    '10.0.0.0',
    '10.0.0.2',
    '10.0.1.0',
    '0.0.0.0',
    'fd00::',
    'fd00:1::',
    '::',
    '::ffff:10.0.0.0',
  ];
  const arbCidr = fc
    .tuple(fc.constantFrom(...addresses), fc.integer({ min: 0, max: 128 }))
    .map(([address, len]) => ({
      address,
      prefixLength: address.includes(':') ? len : len % 33,
    }));
  const arbString = fc.oneof(
    fc.record({
      kind: fc.constant('exact' as const),
      value: fc.constantFrom('default', 'other', 'cluster.local/ns/default/sa/curl', ''),
    }),
    fc.record({ kind: fc.constant('prefix' as const), value: fc.constantFrom('cluster.local/', 'def', '') }),
    fc.record({ kind: fc.constant('suffix' as const), value: fc.constantFrom('/sa/curl', 'ult', '') }),
    fc.constant({ kind: 'presence' as const }),
  );
  const arbSa = fc.record({
    namespace: fc.constantFrom('default', 'other'),
    serviceAccount: fc.constantFrom('curl', 'web'),
  });
  const small = <T>(a: fc.Arbitrary<T>) => fc.array(a, { maxLength: 2 });
  const arbMatch: fc.Arbitrary<Match> = fc.record({
    namespaces: small(arbString),
    notNamespaces: small(arbString),
    serviceAccounts: small(arbSa),
    notServiceAccounts: small(arbSa),
    principals: small(arbString),
    notPrincipals: small(arbString),
    sourceIps: small(arbCidr),
    notSourceIps: small(arbCidr),
    destinationIps: small(arbCidr),
    notDestinationIps: small(arbCidr),
    destinationPorts: small(fc.constantFrom(80, 9080)),
    notDestinationPorts: small(fc.constantFrom(80, 9080)),
  });
  const arbPolicy: fc.Arbitrary<Authorization> = fc.record({
    name: fc.constantFrom('a', 'b', 'c'),
    namespace: fc.constant('default'),
    scope: fc.constant('Namespace' as const),
    action: fc.constantFrom('Allow' as const, 'Deny' as const),
    rules: fc.array(fc.array(fc.array(arbMatch, { maxLength: 2 }), { maxLength: 2 }), { maxLength: 2 }),
    dryRun: fc.boolean(),
  });
  const arbConn: fc.Arbitrary<L4Connection> = fc.record({
    srcIp: fc.constantFrom(...ips),
    dstIp: fc.constantFrom(...ips),
    dstPort: fc.constantFrom(80, 9080),
    srcIdentity: fc.option(
      fc.record({
        trustDomain: fc.constantFrom('cluster.local', 'other.td'),
        namespace: fc.constantFrom('default', 'other'),
        serviceAccount: fc.constantFrom('curl', 'web'),
      }),
      { nil: undefined },
    ),
  });
  fc.assert(
    fc.property(fc.array(arbPolicy, { maxLength: 4 }), arbConn, (policies, c) => {
      assert.equal(evaluateL4(policies, c).allowed, refDecide(policies, c));
    }),
    { numRuns: 3000 },
  );
});
