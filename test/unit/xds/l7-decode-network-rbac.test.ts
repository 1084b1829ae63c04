/**
 * A TCP listener's RBAC network filters (`envoy.extensions.filters.network.rbac.v3.RBAC`), decoded
 * by the waypoint (l7-decode.ts, l7-decode-rbac.ts) from messages encoded with the protos shipped in
 * @grpc/grpc-js-xds: the filters before tcp_proxy come back in order with their rules and shadow
 * rules; what cannot be applied is refused with its field path, so the listener is NACKed and the
 * last good one stays.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { anyOf, decodeListenerBytes, encodeEnvoy } from '../../../src/core/xds/l7-wire.ts';
import type { FieldError } from '../../../src/core/xds/workload-proto.ts';

const T = {
  Listener: 'envoy.config.listener.v3.Listener',
  TcpProxy: 'envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
  NetworkRbac: 'envoy.extensions.filters.network.rbac.v3.RBAC',
  HttpRbac: 'envoy.extensions.filters.http.rbac.v3.RBAC',
};
const NAME = 'db.default.svc.cluster.local:5432';
const CLUSTER = 'outbound|5432||db.default.svc.cluster.local';

const POLICY = {
  permissions: [{ destination_port: 5432 }],
  principals: [
    { authenticated: { principal_name: { exact: 'spiffe://cluster.local/ns/default/sa/client' } } },
  ],
};

function rbac(config: object) {
  return { name: 'istio.authorization.allow', typed_config: anyOf(T.NetworkRbac, config) };
}

function tcpListener(before: object[]) {
  return {
    name: NAME,
    filter_chains: [
      {
        filters: [
          ...before,
          {
            name: 'envoy.filters.network.tcp_proxy',
            typed_config: anyOf(T.TcpProxy, { stat_prefix: NAME, cluster: CLUSTER }),
          },
        ],
      },
    ],
  };
}

const decode = (listener: object) => decodeListenerBytes(encodeEnvoy(T.Listener, listener));

function errors(listener: object): FieldError[] {
  const d = decode(listener);
  if (d.ok) assert.fail('expected errors, decoded fine');
  return d.errors;
}

test('RBAC network filters before tcp_proxy decode in order, with rules and shadow rules', () => {
  const d = decode(
    tcpListener([
      {
        name: 'istio.authorization.deny',
        typed_config: anyOf(T.NetworkRbac, {
          stat_prefix: 'tcp.',
          rules: { action: 'DENY', policies: { 'ns[default]-policy[d]-rule[0]': POLICY } },
          shadow_rules: { action: 'DENY', policies: { 'ns[default]-policy[dry]-rule[0]': POLICY } },
          shadow_rules_stat_prefix: 'istio_dry_run_deny_',
          enforcement_type: 'CONTINUOUS',
        }),
      },
      rbac({ stat_prefix: 'tcp.', rules: { action: 'ALLOW', policies: { p: POLICY } } }),
    ]),
  );
  assert.ok(d.ok, d.ok ? '' : JSON.stringify(d.errors));
  const l = d.value;
  assert.deepEqual(l.tcp, [{ cluster: CLUSTER, weight: 1 }]);
  assert.deepEqual(
    l.networkRbac?.map((f) => [f.name, f.rbac.rules?.action, f.rbac.shadowRules?.action]),
    [
      ['istio.authorization.deny', 'DENY', 'DENY'],
      ['istio.authorization.allow', 'ALLOW', undefined],
    ],
  );
  assert.deepEqual(l.networkRbac[1]!.rbac.rules?.policies[0], {
    name: 'p',
    permissions: [{ kind: 'destination-port', port: 5432 }],
    principals: [
      {
        kind: 'authenticated',
        principalName: {
          kind: 'exact',
          value: 'spiffe://cluster.local/ns/default/sa/client',
          ignoreCase: false,
        },
      },
    ],
  });
  assert.equal(l.networkRbac[0]!.rbac.shadowRulesStatPrefix, 'istio_dry_run_deny_');
});

test('a TCP listener without RBAC filters has none', () => {
  const d = decode(tcpListener([]));
  assert.ok(d.ok);
  assert.equal(d.value.networkRbac, undefined);
});

describe('what cannot be applied is refused with its field path', () => {
  const at = 'filter_chains[0].filters[0].typed_config';
  const cases: [string, object, string, RegExp][] = [
    [
      'no stat_prefix (Envoy requires one)',
      tcpListener([rbac({ rules: { action: 'ALLOW' } })]),
      `${at}.stat_prefix`,
      /required/,
    ],
    [
      'a matcher tree',
      tcpListener([rbac({ stat_prefix: 'tcp.', matcher: { on_no_match: {} } })]),
      `${at}.matcher`,
      /not supported/,
    ],
    [
      'a CEL condition',
      tcpListener([
        rbac({ stat_prefix: 'tcp.', rules: { policies: { p: { ...POLICY, condition: { id: '1' } } } } }),
      ]),
      `${at}.rules.policies["p"].condition`,
      /CEL/,
    ],
    [
      'a metadata principal',
      tcpListener([
        rbac({
          stat_prefix: 'tcp.',
          rules: {
            policies: { p: { permissions: [{ any: true }], principals: [{ metadata: { filter: 'x' } }] } },
          },
        }),
      ]),
      `${at}.rules.policies["p"].principals[0].metadata`,
      /not supported/,
    ],
    [
      'an invalid CIDR',
      tcpListener([
        rbac({
          stat_prefix: 'tcp.',
          rules: {
            policies: {
              p: {
                permissions: [{ any: true }],
                principals: [{ direct_remote_ip: { address_prefix: 'nope' } }],
              },
            },
          },
        }),
      ]),
      `${at}.rules.policies["p"].principals[0].direct_remote_ip.address_prefix`,
      /not an IP address/,
    ],
    [
      'an HTTP RBAC filter in a TCP chain',
      tcpListener([{ name: 'x', typed_config: anyOf(T.HttpRbac, {}) }]),
      at,
      /may not come before tcp_proxy/,
    ],
    [
      'a filter after tcp_proxy',
      {
        name: NAME,
        filter_chains: [
          {
            filters: [
              { name: 'tcp', typed_config: anyOf(T.TcpProxy, { stat_prefix: NAME, cluster: CLUSTER }) },
              rbac({ stat_prefix: 'tcp.' }),
            ],
          },
        ],
      },
      at,
      /must be the last filter/,
    ],
  ];
  for (const [name, listener, path, message] of cases)
    test(name, () => {
      const errs = errors(listener);
      const hit = errs.find((e) => e.path === path);
      assert.ok(hit, `no error at ${path}: ${JSON.stringify(errs)}`);
      assert.match(hit.message, message);
    });
});
