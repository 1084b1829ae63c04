/**
 * The pure parts of TCP services through the waypoint: the tcp_proxy listener decoded from its
 * Envoy bytes (settings, defaults, refusals with their paths), the per-connection cluster choice,
 * connection settings, hash key, refusal answers, outlier outcome, idle check and metric labels.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeListenerBytes, anyOf, encodeEnvoy } from '../../../src/core/xds/l7-wire.ts';
import type { Decoded } from '../../../src/core/xds/workload-proto.ts';
import type { L7Listener, OutlierDetection } from '../../../src/core/xds/l7-model.ts';
import { workloadSpiffe } from '../../../src/core/xds/model.ts';
import {
  chooseTcpCluster,
  connectSuccessOutcome,
  DEFAULT_TCP_PROXY,
  idleCheck,
  refusalAnswer,
  tcpConnectionSettings,
  tcpHashKey,
  TcpRefusal,
} from '../../../src/waypoint/tcp-plan.ts';
import { requestLabels, REQUEST_LABELS, tcpConnectionLabels } from '../../../src/waypoint/telemetry.ts';
import { xxHash64 } from '../../../src/waypoint/xxhash64.ts';
import { TCP_LABELS } from '../../../src/core/metrics.ts';
import { service, workload } from '../../fixtures/mesh-config.ts';
import { seeded, sequence } from './l7-builders.ts';

const NAME = 'tcp-echo.default.svc.cluster.local:9000';
const V1 = 'outbound|9000|v1|tcp-echo.default.svc.cluster.local';
const V2 = 'outbound|9000|v2|tcp-echo.default.svc.cluster.local';
const TCP_PROXY = 'envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy';

function decode(proxy: object): Decoded<L7Listener> {
  return decodeListenerBytes(
    encodeEnvoy('envoy.config.listener.v3.Listener', {
      name: NAME,
      filter_chains: [
        {
          filters: [
            {
              name: 'envoy.filters.network.tcp_proxy',
              typed_config: anyOf(TCP_PROXY, { stat_prefix: NAME, ...proxy }),
            },
          ],
        },
      ],
    }),
  );
}

test('tcp_proxy decoding: clusters, settings and defaults', () => {
  const cases: [string, object, Partial<L7Listener>][] = [
    [
      'one cluster, Envoy defaults',
      { cluster: V1 },
      { tcp: [{ cluster: V1, weight: 1 }], tcpProxy: DEFAULT_TCP_PROXY },
    ],
    [
      'weighted clusters; a weight of 0 gets nothing',
      {
        weighted_clusters: {
          clusters: [
            { name: V1, weight: 80 },
            { name: V2, weight: 20 },
            { name: 'outbound|9000|v3|x', weight: 0 },
          ],
        },
      },
      {
        tcp: [
          { cluster: V1, weight: 80 },
          { cluster: V2, weight: 20 },
        ],
      },
    ],
    [
      'idle timeout, connect attempts, source-ip hashing',
      {
        cluster: V1,
        idle_timeout: { seconds: 30 },
        max_connect_attempts: { value: 3 },
        hash_policy: [{ source_ip: {} }],
      },
      { tcpProxy: { idleTimeoutMs: 30_000, maxConnectAttempts: 3, hashSourceIp: true } },
    ],
    [
      'idle_timeout 0s disables it',
      { cluster: V1, idle_timeout: {} },
      { tcpProxy: { ...DEFAULT_TCP_PROXY, idleTimeoutMs: 0 } },
    ],
  ];
  for (const [name, proxy, want] of cases) {
    const d = decode(proxy);
    assert.ok(d.ok, `${name}: ${JSON.stringify(d.ok ? '' : d.errors)}`);
    assert.equal(d.value.name, NAME, name);
    assert.equal(d.value.routeConfigName, '', name);
    for (const [k, v] of Object.entries(want)) {
      assert.deepEqual(d.value[k as keyof L7Listener], v, `${name}: ${k}`);
    }
  }
});

test('tcp_proxy decoding: fields that would change where bytes go are refused with their paths', () => {
  const at = 'filter_chains[0].filters[0].typed_config';
  const cases: [string, object, string, RegExp][] = [
    ['no cluster', { weighted_clusters: { clusters: [] } }, at, /no cluster/],
    [
      'metadata_match',
      { cluster: V1, metadata_match: { filter_metadata: {} } },
      `${at}.metadata_match`,
      /not supported/,
    ],
    [
      'tunneling_config',
      { cluster: V1, tunneling_config: { hostname: 'x' } },
      `${at}.tunneling_config`,
      /not supported/,
    ],
    [
      'max_downstream_connection_duration',
      { cluster: V1, max_downstream_connection_duration: { seconds: 5 } },
      `${at}.max_downstream_connection_duration`,
      /not supported/,
    ],
    [
      'a filter-state hash',
      { cluster: V1, hash_policy: [{ filter_state: { key: 'k' } }] },
      `${at}.hash_policy[0]`,
      /source_ip/,
    ],
    [
      'a negative idle timeout',
      { cluster: V1, idle_timeout: { seconds: -1 } },
      `${at}.idle_timeout`,
      /non-negative/,
    ],
  ];
  for (const [name, proxy, path, message] of cases) {
    const d = decode(proxy);
    assert.ok(!d.ok, `${name}: decoded fine`);
    assert.ok(
      d.errors.some((e) => e.path === path && message.test(e.message)),
      `${name}: ${JSON.stringify(d.errors)}`,
    );
  }
});

test('chooseTcpCluster samples by weight per connection', () => {
  const targets = [
    { cluster: V1, weight: 80 },
    { cluster: V2, weight: 20 },
  ];
  assert.equal(chooseTcpCluster(targets, sequence(0)), V1);
  assert.equal(chooseTcpCluster(targets, sequence(0.799)), V1);
  assert.equal(chooseTcpCluster(targets, sequence(0.8)), V2);
  assert.equal(chooseTcpCluster([{ cluster: V1, weight: 1 }], sequence(0.99)), V1);
  const random = seeded(7);
  const N = 10_000;
  let v1 = 0;
  for (let i = 0; i < N; i++) if (chooseTcpCluster(targets, random) === V1) v1++;
  assert.ok(Math.abs(v1 - 0.8 * N) <= 4 * Math.sqrt(N * 0.8 * 0.2), `v1 ${v1} of ${N}`);
});

test('tcpConnectionSettings: connect timeout capped by the waypoint, idle from the listener else the cluster', () => {
  const cases: [
    string,
    Parameters<typeof tcpConnectionSettings>,
    ReturnType<typeof tcpConnectionSettings>,
  ][] = [
    [
      'defaults',
      [DEFAULT_TCP_PROXY, { connectTimeoutMs: 10_000, idleTimeoutMs: 3_600_000 }, 5000],
      { connectTimeoutMs: 5000, idleTimeoutMs: 3_600_000, maxConnectAttempts: 1 },
    ],
    [
      "the cluster's shorter connect timeout",
      [DEFAULT_TCP_PROXY, { connectTimeoutMs: 250, idleTimeoutMs: 30_000 }, 5000],
      { connectTimeoutMs: 250, idleTimeoutMs: 30_000, maxConnectAttempts: 1 },
    ],
    [
      "the listener's idle timeout, 0 included",
      [
        { idleTimeoutMs: 0, maxConnectAttempts: 3, hashSourceIp: false },
        { connectTimeoutMs: 0, idleTimeoutMs: 30_000 },
        5000,
      ],
      { connectTimeoutMs: 5000, idleTimeoutMs: 0, maxConnectAttempts: 3 },
    ],
  ];
  for (const [name, args, want] of cases) assert.deepEqual(tcpConnectionSettings(...args), want, name);
});

test('tcpHashKey hashes the client address only under a source_ip policy', () => {
  assert.equal(tcpHashKey(DEFAULT_TCP_PROXY, '10.0.0.1'), undefined);
  const proxy = { ...DEFAULT_TCP_PROXY, hashSourceIp: true };
  assert.equal(tcpHashKey(proxy, '10.0.0.1'), xxHash64('10.0.0.1'));
  assert.equal(tcpHashKey(proxy, ''), undefined);
});

test('refusals: 503 on the CONNECT, with Envoy flags', () => {
  const want: Record<TcpRefusal, string> = {
    'cluster-not-found': 'NC',
    overflow: 'UO',
    'no-healthy-upstream': 'UH',
    'connect-failure': 'UF',
    'downstream-gone': 'DC',
  };
  for (const why of Object.values(TcpRefusal)) {
    const a = refusalAnswer(why);
    assert.equal(a.status, 503, why);
    assert.equal(a.flag, want[why], why);
    assert.ok(a.details, why);
  }
});

test('a successful connect is final for outlier detection', () => {
  assert.deepEqual(connectSuccessOutcome({ outlierDetection: undefined }), { kind: 'http', status: 200 });
  const split = { splitExternalLocalOriginErrors: true } as OutlierDetection;
  assert.deepEqual(connectSuccessOutcome({ outlierDetection: split }), { kind: 'connect-success' });
});

test('idleCheck: expired at the timeout, otherwise the time left', () => {
  assert.deepEqual(idleCheck(1000, 300, 1300), { expired: true });
  assert.deepEqual(idleCheck(1000, 300, 1100), { expired: false, recheckInMs: 200 });
  assert.deepEqual(idleCheck(1000, 300, 1000), { expired: false, recheckInMs: 300 });
});

test('TCP labels share the peer labels of the request metrics, with request_protocol tcp', () => {
  const client = workload({ name: 'client', canonicalName: 'client', serviceAccount: 'client' });
  const server = workload({ name: 'echo-v1', canonicalName: 'echo', canonicalRevision: 'v1' });
  const facts = {
    srcWorkload: client,
    srcIdentity: { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'client' },
    service: service({ name: 'echo' }),
    dstWorkload: server,
    dstIdentity: workloadSpiffe(server),
  };
  const tcp = tcpConnectionLabels(facts, ['UF']);
  assert.deepEqual(Object.keys(tcp), [...TCP_LABELS]);
  assert.equal(tcp.reporter, 'waypoint');
  assert.equal(tcp.request_protocol, 'tcp');
  assert.equal(tcp.response_flags, 'UF');
  assert.equal(tcp.connection_security_policy, 'mutual_tls');
  assert.equal(tcp.destination_service, 'echo.default.svc.cluster.local');
  assert.equal(tcpConnectionLabels(facts, []).response_flags, '-');
  const http = requestLabels({ ...facts, protocol: 'http', status: 200, grpcStatus: undefined, flags: [] });
  assert.deepEqual(new Set(Object.keys(http)), new Set(REQUEST_LABELS));
  for (const k of TCP_LABELS) {
    if (k !== 'request_protocol' && k !== 'response_flags') assert.equal(http[k], tcp[k], k);
  }
});
