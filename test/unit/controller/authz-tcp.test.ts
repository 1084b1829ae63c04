/**
 * AuthorizationPolicies on a waypoint's TCP listeners (translate/l7/authz.ts, tcp mode): the RBAC
 * network filters istiod's BuildTCP makes from the same policies — a TCP service port and the
 * workload waypoint's direct-tcp listener; AUDIT, DENY, ALLOW in that order; dry run into shadow
 * rules; stat_prefix `tcp.`; and the HTTP-only fields handled as istiod handles them for TCP (an
 * ALLOW rule using one is dropped, a DENY or AUDIT rule leaves it out). Every listener goes through
 * the waypoint's decoder and the decoded filters are evaluated per connection, so the tables check
 * behaviour, not only shape.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { encodeListener, expandAny } from '../../../src/controller/translate/l7/encode.ts';
import { translateL7, type L7Result } from '../../../src/controller/translate/l7/translate.ts';
import { evaluateConnection, type L7Connection } from '../../../src/core/policy/l7.ts';
import type { L7Listener } from '../../../src/core/xds/l7-model.ts';
import { directResourceName } from '../../../src/core/xds/l7-names.ts';
import { decodeListenerBytes } from '../../../src/core/xds/l7-wire.ts';
import { meshFrom, OPTIONS } from './l7/helpers.ts';

const BASE = `
apiVersion: v1
kind: Namespace
metadata: { name: default, labels: { istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint } }
---
apiVersion: v1
kind: Namespace
metadata: { name: istio-system }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: waypoint, namespace: default, labels: { istio.io/waypoint-for: all } }
spec: { gatewayClassName: istio-waypoint, listeners: [{ name: mesh, port: 15008, protocol: HBONE }] }
---
apiVersion: v1
kind: Service
metadata: { name: db, namespace: default }
spec: { selector: { app: db }, clusterIP: 10.96.0.5, ports: [{ name: tcp-db, port: 5432 }, { name: http, port: 8080 }] }
---
apiVersion: v1
kind: Service
metadata: { name: echo, namespace: default }
spec: { selector: { app: echo }, clusterIP: 10.96.0.6, ports: [{ name: tcp, port: 9000 }] }
---
`;

const DB = 'db.default.svc.cluster.local:5432';
const DB_HTTP = 'db.default.svc.cluster.local:8080';
const ECHO = 'echo.default.svc.cluster.local:9000';
const DIRECT_TCP = directResourceName('default', 'waypoint', 'direct-tcp');
const TO_DB = '  targetRefs: [{ kind: Service, group: "", name: db }]';
const TO_WAYPOINT = '  targetRefs: [{ kind: Gateway, group: gateway.networking.k8s.io, name: waypoint }]';

function run(policies: string): L7Result {
  const m = meshFrom(BASE + policies);
  return translateL7(
    { snapshot: m.snapshot, mesh: m.mesh, virtualServices: [], destinationRules: [] },
    OPTIONS,
  );
}

const policy = (name: string, spec: string, annotations = '') => `
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: default${annotations ? `, annotations: ${annotations}` : ''} }
spec:
${spec}
`;

/** The listener after a round trip through the waypoint's decoder. */
function decoded(r: L7Result, name: string): L7Listener {
  const l = r.resources.listeners.find((x) => x.name === name);
  assert.ok(l, `listener ${name}`);
  const d = decodeListenerBytes(encodeListener(l).bytes);
  assert.ok(d.ok, d.ok ? '' : JSON.stringify(d.errors));
  return d.value;
}

const CONN: L7Connection = {
  peerPrincipal: 'spiffe://cluster.local/ns/default/sa/client',
  directRemoteIp: '10.0.0.7',
  destinationIp: '10.96.0.5',
  destinationPort: 5432,
  requestedServerName: '',
};
const OTHER = 'spiffe://cluster.local/ns/default/sa/intruder';

function allowed(r: L7Result, listener: string, over: Partial<L7Connection> = {}): boolean {
  const filters = (decoded(r, listener).networkRbac ?? []).map((f) => ({ name: f.name, config: f.rbac }));
  return evaluateConnection(filters, { ...CONN, ...over }).allowed;
}

const problems = (r: L7Result) => r.authzProblems.map((p) => [p.severity, p.path, p.message] as const);

test('a Service target puts RBAC network filters before tcp_proxy: ALLOW for one principal admits it only', () => {
  const r = run(
    policy(
      'allow-client',
      `${TO_DB}\n  rules: [{ from: [{ source: { principals: ["cluster.local/ns/default/sa/client"] } }] }]`,
    ),
  );
  assert.deepEqual(problems(r), []);
  const wire = expandAny(r.resources.listeners.find((l) => l.name === DB)!) as {
    filter_chains: { filters: { name: string; typed_config: Record<string, unknown> }[] }[];
  };
  const filters = wire.filter_chains[0]!.filters;
  assert.deepEqual(
    filters.map((f) => f.name),
    ['istio.authorization.allow', 'envoy.filters.network.tcp_proxy'],
  );
  assert.equal(filters[0]!.typed_config['@type'], 'envoy.extensions.filters.network.rbac.v3.RBAC');
  assert.equal(filters[0]!.typed_config.stat_prefix, 'tcp.');
  assert.equal(allowed(r, DB), true);
  assert.equal(allowed(r, DB, { peerPrincipal: OTHER }), false);
  // The service's HTTP port gets the HTTP filter; another service gets nothing.
  assert.deepEqual(decoded(r, DB_HTTP).httpFilters.map((f) => f.name)[0], 'istio.authorization.allow');
  assert.equal(decoded(r, ECHO).networkRbac, undefined);
});

test('AUDIT, DENY, ALLOW in that order; a dry-run policy is shadow only, with its stat prefix', () => {
  const r = run(
    policy('allow-all', `${TO_DB}\n  rules: [{}]`) +
      policy(
        'deny-other',
        `${TO_DB}\n  action: DENY\n  rules: [{ from: [{ source: { notNamespaces: [default] } }] }]`,
      ) +
      policy('audit', `${TO_DB}\n  action: AUDIT\n  rules: [{}]`) +
      policy('dry', `${TO_DB}\n  action: DENY\n  rules: [{}]`, '{ istio.io/dry-run: "true" }'),
  );
  assert.deepEqual(problems(r), []);
  const l = decoded(r, DB);
  assert.deepEqual(
    l.networkRbac?.map((f) => [f.name, f.rbac.rules?.action]),
    [
      ['istio.authorization.audit', 'LOG'],
      ['istio.authorization.deny', 'DENY'],
      ['istio.authorization.allow', 'ALLOW'],
    ],
  );
  const deny = l.networkRbac[1]!.rbac;
  assert.deepEqual(
    deny.shadowRules?.policies.map((p) => p.name),
    ['ns[default]-policy[dry]-rule[0]'],
  );
  assert.equal(deny.shadowRulesStatPrefix, 'istio_dry_run_deny_');
  assert.equal(allowed(r, DB), true);
  assert.equal(allowed(r, DB, { peerPrincipal: 'spiffe://cluster.local/ns/prod/sa/x' }), false);
  const d = evaluateConnection(
    l.networkRbac.map((f) => ({ name: f.name, config: f.rbac })),
    CONN,
  );
  assert.deepEqual(d.audited, ['ns[default]-policy[audit]-rule[0]']);
  assert.deepEqual(
    d.shadow.map((s) => [s.filter, s.allowed, s.policy]),
    [['istio.authorization.deny', false, 'ns[default]-policy[dry]-rule[0]']],
  );
});

describe('HTTP-only fields on TCP, as istiod builds them (forTCP)', () => {
  // [name, rule, action, allowed for the client, the problem path or undefined]
  const cases: [string, string, 'ALLOW' | 'DENY' | 'AUDIT', boolean, string | undefined][] = [
    [
      'ALLOW with paths: the rule is dropped (fail closed)',
      'to: [{ operation: { paths: [/x] } }]',
      'ALLOW',
      false,
      'spec.rules[0].to[0].operation.paths',
    ],
    [
      'ALLOW with methods and a principal: dropped',
      'from: [{ source: { principals: ["cluster.local/ns/default/sa/client"] } }], to: [{ operation: { methods: [GET] } }]',
      'ALLOW',
      false,
      'spec.rules[0].to[0].operation.methods',
    ],
    [
      'ALLOW with hosts: dropped',
      'to: [{ operation: { hosts: [db] } }]',
      'ALLOW',
      false,
      'spec.rules[0].to[0].operation.hosts',
    ],
    [
      'ALLOW with notPaths: dropped',
      'to: [{ operation: { notPaths: [/x] } }]',
      'ALLOW',
      false,
      'spec.rules[0].to[0].operation.notPaths',
    ],
    [
      'ALLOW with requestPrincipals: dropped',
      'from: [{ source: { requestPrincipals: ["*"] } }]',
      'ALLOW',
      false,
      'spec.rules[0].from[0].source.requestPrincipals',
    ],
    [
      'ALLOW with when request.headers: dropped',
      'when: [{ key: "request.headers[X-A]", values: [b] }]',
      'ALLOW',
      false,
      'spec.rules[0].when[0].key',
    ],
    [
      'ALLOW with when request.auth.claims: dropped',
      'when: [{ key: "request.auth.claims[iss]", values: [b] }]',
      'ALLOW',
      false,
      'spec.rules[0].when[0].key',
    ],
    ['ALLOW with ports only: kept', 'to: [{ operation: { ports: ["5432"] } }]', 'ALLOW', true, undefined],
    [
      'ALLOW with another port: kept, no match',
      'to: [{ operation: { ports: ["5433"] } }]',
      'ALLOW',
      false,
      undefined,
    ],
    [
      'DENY with paths only: denies every connection',
      'to: [{ operation: { paths: [/admin] } }]',
      'DENY',
      false,
      'spec.rules[0].to[0].operation.paths',
    ],
    [
      'DENY with notMethods only: denies every connection',
      'to: [{ operation: { notMethods: [GET] } }]',
      'DENY',
      false,
      'spec.rules[0].to[0].operation.notMethods',
    ],
    [
      'DENY with paths and a port: the port still decides (match)',
      'to: [{ operation: { paths: [/admin], ports: ["5432"] } }]',
      'DENY',
      false,
      'spec.rules[0].to[0].operation.paths',
    ],
    [
      'DENY with paths and a port: the port still decides (no match)',
      'to: [{ operation: { paths: [/admin], ports: ["1"] } }]',
      'DENY',
      true,
      'spec.rules[0].to[0].operation.paths',
    ],
    [
      'DENY with methods from another namespace: the namespace decides',
      'from: [{ source: { namespaces: [prod] } }], to: [{ operation: { methods: [POST] } }]',
      'DENY',
      true,
      'spec.rules[0].to[0].operation.methods',
    ],
    [
      'DENY with a header condition only: denies every connection',
      'when: [{ key: "request.headers[X-A]", values: [b] }]',
      'DENY',
      false,
      'spec.rules[0].when[0].key',
    ],
    [
      'AUDIT with paths: never denies',
      'to: [{ operation: { paths: [/x] } }]',
      'AUDIT',
      true,
      'spec.rules[0].to[0].operation.paths',
    ],
  ];
  for (const [name, rule, action, ok, path] of cases)
    test(name, () => {
      const r = run(policy('p', `${TO_DB}\n  action: ${action}\n  rules: [{ ${rule} }]`));
      assert.equal(allowed(r, DB), ok);
      const tcp = problems(r).filter(([, , m]) => /TCP listener/.test(m));
      assert.deepEqual(
        tcp.map(([sev, p]) => [sev, p]),
        path ? [['warning', path]] : [],
      );
      if (path)
        assert.match(
          tcp[0]![2],
          action === 'ALLOW'
            ? /HTTP-only.*on TCP listener db\.default\.svc\.cluster\.local:5432 this ALLOW rule never matches/
            : /HTTP-only.*it is left out/,
        );
    });

  test('a DENY whose rule keeps a connection field says "more", one whose rule keeps none says "every"', () => {
    const every = problems(
      run(policy('p', `${TO_DB}\n  action: DENY\n  rules: [{ to: [{ operation: { paths: [/a] } }] }]`)),
    );
    assert.match(every.at(-1)![2], /matches every connection/);
    const more = problems(
      run(
        policy(
          'p',
          `${TO_DB}\n  action: DENY\n  rules: [{ to: [{ operation: { paths: [/a], ports: ["1"] } }] }]`,
        ),
      ),
    );
    assert.match(more.at(-1)![2], /matches more connections/);
  });

  test('the HTTP listener of the same service keeps the HTTP meaning (no TCP problems there)', () => {
    const r = run(
      policy('p', `${TO_DB}\n  action: DENY\n  rules: [{ to: [{ operation: { paths: [/admin] } }] }]`),
    );
    const http = decoded(r, DB_HTTP).httpFilters.find((f) => f.rbac)!;
    assert.equal(http.rbac?.rules?.policies[0]?.permissions.length, 1);
    assert.equal(allowed(r, DB), false);
    // Reported once, for TCP only; the HTTP build has nothing to say.
    assert.equal(problems(r).length, 1);
  });
});

describe('connection-level fields on TCP', () => {
  const cases: [string, string, Partial<L7Connection>, boolean][] = [
    ['namespaces', 'from: [{ source: { namespaces: [default] } }]', {}, true],
    ['notNamespaces', 'from: [{ source: { notNamespaces: [default] } }]', {}, false],
    ['serviceAccounts', 'from: [{ source: { serviceAccounts: [client] } }]', {}, true],
    ['ipBlocks', 'from: [{ source: { ipBlocks: [10.0.0.0/24] } }]', {}, true],
    [
      'ipBlocks, other source',
      'from: [{ source: { ipBlocks: [10.0.0.0/24] } }]',
      { directRemoteIp: '10.1.0.1' },
      false,
    ],
    [
      'remoteIpBlocks (the direct peer on TCP)',
      'from: [{ source: { remoteIpBlocks: [10.0.0.7] } }]',
      {},
      true,
    ],
    ['notPorts', 'to: [{ operation: { notPorts: ["5432"] } }]', {}, false],
    ['when destination.port', 'when: [{ key: destination.port, values: ["5432"] }]', {}, true],
    ['when destination.ip', 'when: [{ key: destination.ip, values: [10.96.0.0/16] }]', {}, true],
    ['when destination.ip, other', 'when: [{ key: destination.ip, values: [10.97.0.0/16] }]', {}, false],
    ['when source.ip', 'when: [{ key: source.ip, values: [10.0.0.7] }]', {}, true],
    ['when remote.ip', 'when: [{ key: remote.ip, notValues: [10.0.0.7] }]', {}, false],
    [
      'when source.principal',
      'when: [{ key: source.principal, values: ["cluster.local/ns/default/sa/client"] }]',
      {},
      true,
    ],
    ['when source.namespace', 'when: [{ key: source.namespace, values: [prod] }]', {}, false],
    ['when connection.sni (no SNI known)', 'when: [{ key: connection.sni, values: ["*"] }]', {}, false],
  ];
  for (const [name, rule, over, ok] of cases)
    test(`ALLOW ${name}`, () => {
      const r = run(policy('p', `${TO_DB}\n  rules: [{ ${rule} }]`));
      assert.deepEqual(problems(r), []);
      assert.equal(allowed(r, DB, over), ok);
    });
});

test('direct-tcp follows the policies of its waypoint Gateway (and not those of a Service)', () => {
  const r = run(
    policy(
      'wp-allow',
      `${TO_WAYPOINT}\n  rules: [{ from: [{ source: { principals: ["cluster.local/ns/default/sa/client"] } }] }]`,
    ) + policy('svc-deny', `${TO_DB}\n  action: DENY\n  rules: [{}]`),
  );
  const direct = { destinationIp: '10.0.0.9', destinationPort: 7000 };
  assert.deepEqual(
    decoded(r, DIRECT_TCP).networkRbac?.map((f) => f.name),
    ['istio.authorization.allow'],
  );
  assert.equal(allowed(r, DIRECT_TCP, direct), true);
  assert.equal(allowed(r, DIRECT_TCP, { ...direct, peerPrincipal: OTHER }), false);
  // The Gateway target covers the services bound to it too: db's port and echo's.
  assert.equal(allowed(r, ECHO, { peerPrincipal: OTHER }), false);
  assert.equal(allowed(r, ECHO), true);
  assert.equal(allowed(r, DB), false, 'svc-deny denies all TCP to db');
});

test('no policy: TCP listeners are as before, a single tcp_proxy filter', () => {
  const r = run('');
  for (const name of [DB, ECHO, DIRECT_TCP]) {
    const wire = expandAny(r.resources.listeners.find((l) => l.name === name)!) as {
      filter_chains: { filters: { name: string }[] }[];
    };
    assert.deepEqual(
      wire.filter_chains[0]!.filters.map((f) => f.name),
      ['envoy.filters.network.tcp_proxy'],
      name,
    );
    assert.equal(decoded(r, name).networkRbac, undefined);
  }
});
