/**
 * Clusters and load assignments: load balancers, connection pools, outlier detection, upstream
 * protocols; endpoints from pods and ServiceEntries (health, weights, subsets, dual stack); which
 * ports are HTTP; and bad objects among good ones.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeL7Object } from '../../../../src/controller/translate/l7/decode.ts';
import type { DestinationRule, VirtualService } from '../../../../src/controller/translate/l7/types.ts';
import { addressesOf, clusterOf, endpointsOf, H, json, l7From, meshFrom, routesOf, run } from './helpers.ts';
import { cluster, defaultRouteTo, httpOptions, MAX, ROUND_ROBIN_POLICIES } from './expect.ts';

const MESH = `
apiVersion: v1
kind: Namespace
metadata: { name: default, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: default }
spec:
  selector: { app: web }
  clusterIPs: [10.96.0.5, "fd00::5"]
  ports:
  - { name: http-web, port: 80, targetPort: 8080 }
  - { name: grpc, port: 90, targetPort: 9090 }
  - { port: 7000, targetPort: 7000 }
  - { name: db, port: 3306, targetPort: 3306 }
  - { name: tcp-raw, port: 5000, targetPort: 5000 }
  - { name: anything, appProtocol: kubernetes.io/h2c, port: 6000, targetPort: 6000 }
---
apiVersion: v1
kind: Pod
metadata: { name: web-a, namespace: default, labels: { app: web, track: stable } }
spec: { nodeName: n1 }
status: { phase: Running, podIPs: [{ ip: 10.0.0.5 }, { ip: "fd00::a:5" }], conditions: [{ type: Ready, status: "True" }] }
---
apiVersion: v1
kind: Pod
metadata: { name: web-b, namespace: default, labels: { app: web, track: canary } }
spec: { nodeName: n1 }
status: { phase: Running, podIP: 10.0.0.6, conditions: [{ type: Ready, status: "False" }] }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: api, namespace: default }
spec:
  hosts: [api.example.com]
  addresses: [240.0.0.1]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{ number: 443, name: https, protocol: HTTPS }, { number: 80, name: http, protocol: HTTP }]
  endpoints:
  - { address: 192.0.2.1, labels: { zone: a }, weight: 3 }
  - { address: 192.0.2.2, labels: { zone: b }, ports: { http: 8080 } }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: dns, namespace: default }
spec:
  hosts: [dns.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{ number: 80, name: http, protocol: HTTP }]
`;

let mesh: ReturnType<typeof meshFrom> | undefined;
const custom = () => (mesh ??= meshFrom(MESH));
const WEB = H('web');

function withRule(yaml: string) {
  const objs = l7From(yaml);
  // Warnings (LEAST_CONN is deprecated) are fine here; errors would drop the object.
  assert.deepEqual(
    objs.problems.filter((p) => p.severity === 'error'),
    [],
  );
  const r = run(objs, { mesh: custom() });
  assert.deepEqual(r.problems, []);
  return r;
}

const dr = (trafficPolicy: string, host = 'web') =>
  withRule(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: d }
spec:
  host: ${host}
  trafficPolicy: ${trafficPolicy}`);

test('ports: HTTP, HTTP/2 (grpc, h2c), sniffed (no protocol) as HTTP; TCP (tcp-, well-known 3306) as tcp_proxy', () => {
  const r = run({ virtualServices: [], destinationRules: [] }, { mesh: custom() });
  const kind = (port: number) => {
    const l = r.resources.listeners.find((x) => x.name === `${WEB}:${port}`)!;
    return l.api_listener ? 'http' : 'tcp';
  };
  const upstream = (port: number) =>
    Object.keys(
      (
        json(clusterOf(r, `outbound|${port}||${WEB}`).typed_extension_protocol_options) as Record<
          string,
          Record<string, unknown>
        >
      )?.['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'] ?? { none: 1 },
    ).filter((k) => k !== '@type');
  assert.deepEqual(
    [80, 90, 7000, 3306, 5000, 6000].map((p) => [p, kind(p), upstream(p).join()]),
    [
      [80, 'http', 'explicit_http_config'],
      [90, 'http', 'explicit_http_config'],
      [7000, 'http', 'use_downstream_protocol_config'],
      [3306, 'tcp', 'none'],
      [5000, 'tcp', 'none'],
      [6000, 'http', 'explicit_http_config'],
    ],
  );
  assert.deepEqual(
    json(clusterOf(r, `outbound|90||${WEB}`).typed_extension_protocol_options),
    httpOptions(undefined, { explicit_http_config: { http2_protocol_options: {} } }),
  );
  // A TCP listener listens on every VIP of the service.
  assert.deepEqual(json(r.resources.listeners.find((x) => x.name === `${WEB}:5000`)!.additional_addresses), [
    { address: { socket_address: { address: 'fd00::5', port_value: 5000 } } },
  ]);
});

test('virtual host domains: the FQDN, the short forms, each VIP (IPv6 bracketed), each with and without the port', () => {
  const r = run({ virtualServices: [], destinationRules: [] }, { mesh: custom() });
  const domains = (name: string) =>
    r.resources.routeConfigurations.find((c) => c.name === name)!.virtual_hosts[0]!.domains;
  assert.deepEqual(domains(`${WEB}:80`), [
    WEB,
    `${WEB}:80`,
    'web.default',
    'web.default:80',
    'web.default.svc',
    'web.default.svc:80',
    'web',
    'web:80',
    '10.96.0.5',
    '10.96.0.5:80',
    '[fd00::5]',
    '[fd00::5]:80',
  ]);
  // A ServiceEntry host has no short forms.
  assert.deepEqual(domains('api.example.com:80'), [
    'api.example.com',
    'api.example.com:80',
    '240.0.0.1',
    '240.0.0.1:80',
  ]);
  assert.deepEqual(json(routesOf(r, 'api.example.com:80')), [defaultRouteTo('api.example.com', 80)]);
});

test('endpoints: target ports, health, dual-stack addresses, ServiceEntry weights and labels; DNS endpoints inline in a STRICT_DNS cluster', () => {
  const r = withRule(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: api }
spec:
  host: api.example.com
  subsets: [{ name: zone-b, labels: { zone: b } }]`);
  assert.deepEqual(json(endpointsOf(r, `outbound|80||${WEB}`)), {
    cluster_name: `outbound|80||${WEB}`,
    endpoints: [
      {
        locality: {},
        lb_endpoints: [
          {
            endpoint: {
              address: { socket_address: { address: '10.0.0.5', port_value: 8080 } },
              additional_addresses: [
                { address: { socket_address: { address: 'fd00::a:5', port_value: 8080 } } },
              ],
            },
            health_status: 'HEALTHY',
            load_balancing_weight: { value: 1 },
          },
          {
            endpoint: { address: { socket_address: { address: '10.0.0.6', port_value: 8080 } } },
            health_status: 'UNHEALTHY',
            load_balancing_weight: { value: 1 },
          },
        ],
        load_balancing_weight: { value: 2 },
      },
    ],
  });
  assert.deepEqual(addressesOf(r, 'outbound|80||api.example.com'), ['192.0.2.1:80', '192.0.2.2:8080']);
  assert.equal(endpointsOf(r, 'outbound|80||api.example.com').endpoints[0]!.load_balancing_weight.value, 4);
  assert.deepEqual(addressesOf(r, 'outbound|80|zone-b|api.example.com'), ['192.0.2.2:8080']);
  // A DNS ServiceEntry's endpoint is a host name (its host, with no endpoints given): EDS carries IP
  // addresses only, so its cluster is STRICT_DNS with the name inline, as istiod builds it.
  const dns = clusterOf(r, 'outbound|80||dns.example.com');
  assert.equal(dns.type, 'STRICT_DNS');
  assert.deepEqual(
    dns.load_assignment?.endpoints[0]?.lb_endpoints.map((e) => e.endpoint.address.socket_address),
    [{ address: 'dns.example.com', port_value: 80 }],
  );
  assert.ok(
    !r.resources.clusterLoadAssignments.some((c) => c.cluster_name === 'outbound|80||dns.example.com'),
  );
});

test('subsets pick endpoints by pod labels', () => {
  const r = withRule(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: web }
spec:
  host: web
  subsets: [{ name: stable, labels: { track: stable } }, { name: canary, labels: { track: canary } }, { name: all }]`);
  assert.deepEqual(addressesOf(r, `outbound|80|stable|${WEB}`), ['10.0.0.5:8080']);
  assert.deepEqual(addressesOf(r, `outbound|80|canary|${WEB}`), ['10.0.0.6:8080 UNHEALTHY']);
  assert.deepEqual(addressesOf(r, `outbound|80|all|${WEB}`), ['10.0.0.5:8080', '10.0.0.6:8080 UNHEALTHY']);
  // Every port has its subset clusters.
  assert.deepEqual(addressesOf(r, `outbound|5000|canary|${WEB}`), ['10.0.0.6:5000 UNHEALTHY']);
});

test('load balancers: simple policies, ring hash and Maglev, each with a policy gRPC clients accept', () => {
  const ext = (name: string, type: string, extra: Record<string, unknown> = {}) => ({
    typed_extension_config: {
      name: `envoy.load_balancing_policies.${name}`,
      typed_config: { '@type': `envoy.extensions.load_balancing_policies.${name}.v3.${type}`, ...extra },
    },
  });
  const cases: [string, Record<string, unknown>][] = [
    [
      '{ loadBalancer: { simple: ROUND_ROBIN } }',
      { lb_policy: 'ROUND_ROBIN', load_balancing_policy: ROUND_ROBIN_POLICIES },
    ],
    ['{ loadBalancer: { simple: LEAST_CONN } }', { lb_policy: 'LEAST_REQUEST' }],
    [
      '{ loadBalancer: { simple: RANDOM } }',
      {
        lb_policy: 'RANDOM',
        load_balancing_policy: { policies: [ext('random', 'Random'), ext('round_robin', 'RoundRobin')] },
      },
    ],
    [
      '{ loadBalancer: { consistentHash: { httpHeaderName: x, ringHash: { minimumRingSize: 4096 } } } }',
      {
        lb_policy: 'RING_HASH',
        ring_hash_lb_config: { minimum_ring_size: { value: 4096 } },
        load_balancing_policy: {
          policies: [
            ext('ring_hash', 'RingHash', { hash_function: 'XX_HASH', minimum_ring_size: { value: 4096 } }),
          ],
        },
      },
    ],
    [
      '{ loadBalancer: { consistentHash: { useSourceIp: true, maglev: { tableSize: 65537 } } } }',
      {
        lb_policy: 'MAGLEV',
        maglev_lb_config: { table_size: { value: 65537 } },
        load_balancing_policy: {
          policies: [
            ext('maglev', 'Maglev', { table_size: { value: 65537 } }),
            ext('ring_hash', 'RingHash', { hash_function: 'XX_HASH' }),
          ],
        },
      },
    ],
  ];
  for (const [policy, expected] of cases) {
    const r = dr(policy);
    assert.deepEqual(
      json(clusterOf(r, `outbound|80||${WEB}`)),
      cluster(`outbound|80||${WEB}`, expected),
      policy,
    );
  }
});

test('connection pool: limits, idle timeouts, requests per connection, HTTP/2 settings, client protocol, retry budget', () => {
  const r = dr(`
    connectionPool:
      tcp: { maxConnections: 5, connectTimeout: 2s, idleTimeout: 30s, maxConnectionDuration: 1h }
      http: { http2MaxRequests: 50, http1MaxPendingRequests: 7, maxRetries: 2, maxRequestsPerConnection: 1, maxConcurrentStreams: 20, http2KeepAlive: { interval: 10s, timeout: 3s } }
    retryBudget: { percent: 25, minRetryConcurrency: 5, budgetInterval: 10s }`);
  const c80 = json(clusterOf(r, `outbound|80||${WEB}`)) as Record<string, unknown>;
  assert.deepEqual(c80.connect_timeout, { seconds: 2, nanos: 0 });
  assert.deepEqual(c80.circuit_breakers, {
    thresholds: [
      {
        max_connections: { value: 5 },
        max_pending_requests: { value: 7 },
        max_requests: { value: 50 },
        max_retries: { value: 2 },
        retry_budget: {
          budget_percent: { value: 25 },
          min_retry_concurrency: { value: 5 },
          budget_interval: { seconds: 10, nanos: 0 },
        },
      },
    ],
  });
  const common = {
    idle_timeout: { seconds: 30, nanos: 0 },
    max_requests_per_connection: { value: 1 },
    max_connection_duration: { seconds: 3600, nanos: 0 },
  };
  assert.deepEqual(c80.typed_extension_protocol_options, httpOptions(common));
  // HTTP/2 settings apply where the cluster speaks HTTP/2.
  assert.deepEqual(
    json(clusterOf(r, `outbound|90||${WEB}`).typed_extension_protocol_options),
    httpOptions(common, {
      explicit_http_config: {
        http2_protocol_options: {
          max_concurrent_streams: { value: 20 },
          connection_keepalive: { interval: { seconds: 10, nanos: 0 }, timeout: { seconds: 3, nanos: 0 } },
        },
      },
    }),
  );
  // TCP ports get the limits, not the HTTP options.
  assert.equal(clusterOf(r, `outbound|5000||${WEB}`).typed_extension_protocol_options, undefined);
  const client = dr('{ connectionPool: { http: { useClientProtocol: true, idleTimeout: 5s } } }');
  assert.deepEqual(
    json(clusterOf(client, `outbound|80||${WEB}`).typed_extension_protocol_options),
    httpOptions({ idle_timeout: { seconds: 5, nanos: 0 } }, { use_downstream_protocol_config: {} }),
  );
  const upgrade = dr('{ connectionPool: { http: { h2UpgradePolicy: UPGRADE } } }');
  assert.deepEqual(
    json(clusterOf(upgrade, `outbound|80||${WEB}`).typed_extension_protocol_options),
    httpOptions(undefined, { explicit_http_config: { http2_protocol_options: {} } }),
  );
});

test('outlier detection: only the fields set; gateway errors; local-origin split; minHealthPercent as the panic threshold', () => {
  const r = dr(`
    outlierDetection:
      consecutiveGatewayErrors: 0
      consecutive5xxErrors: 4
      splitExternalLocalOriginErrors: true
      consecutiveLocalOriginFailures: 2
      minHealthPercent: 40`);
  const c = json(clusterOf(r, `outbound|80||${WEB}`)) as Record<string, unknown>;
  assert.deepEqual(c.outlier_detection, {
    consecutive_5xx: { value: 4 },
    enforcing_consecutive_5xx: { value: 100 },
    consecutive_gateway_failure: { value: 0 },
    enforcing_consecutive_gateway_failure: { value: 0 },
    enforcing_success_rate: { value: 0 },
    split_external_local_origin_errors: true,
    consecutive_local_origin_failure: { value: 2 },
    enforcing_consecutive_local_origin_failure: { value: 100 },
    enforcing_local_origin_success_rate: { value: 0 },
  });
  assert.deepEqual(c.common_lb_config, { healthy_panic_threshold: { value: 40 } });
  assert.deepEqual((c.circuit_breakers as { thresholds: unknown[] }).thresholds, [
    { max_connections: MAX, max_pending_requests: MAX, max_requests: MAX, max_retries: MAX },
  ]);
});

test('bad input: an invalid object is skipped with its problems; the other objects apply unchanged', () => {
  const raw = [
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'broken', namespace: 'default' },
      spec: {
        hosts: ['reviews'],
        http: [{ route: [{ destination: { host: 'reviews', subset: 'v1' }, weight: 150 }] }],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'ratings', namespace: 'default' },
      spec: { hosts: ['ratings'], http: [{ route: [{ destination: { host: 'ratings', subset: 'v1' } }] }] },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      metadata: { name: 'broken-dr', namespace: 'default' },
      spec: { host: 'details', trafficPolicy: { connectionPool: { tcp: { connectTimeout: '-1s' } } } },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      metadata: { name: 'ratings', namespace: 'default' },
      spec: { host: 'ratings', subsets: [{ name: 'v1', labels: { version: 'v1' } }] },
    },
  ];
  const virtualServices: VirtualService[] = [];
  const destinationRules: DestinationRule[] = [];
  const problems = raw.flatMap((o) => {
    const d = decodeL7Object(o);
    if (d.value?.kind === 'VirtualService') virtualServices.push(d.value.value);
    if (d.value?.kind === 'DestinationRule') destinationRules.push(d.value.value);
    return d.problems;
  });
  assert.deepEqual(problems, [
    {
      severity: 'error',
      kind: 'VirtualService',
      namespace: 'default',
      name: 'broken',
      path: 'spec.http[0].route[0].weight',
      message: '150 must be between 0 and 100',
    },
    {
      severity: 'error',
      kind: 'DestinationRule',
      namespace: 'default',
      name: 'broken-dr',
      path: 'spec.trafficPolicy.connectionPool.tcp.connectTimeout',
      message: '"-1s" must not be negative',
    },
  ]);
  const r = run({ virtualServices, destinationRules });
  assert.deepEqual(r.problems, []);
  // reviews: as if the broken VirtualService did not exist.
  assert.deepEqual(json(routesOf(r, `${H('reviews')}:9080`)), [defaultRouteTo(H('reviews'), 9080)]);
  assert.equal(routesOf(r, `${H('ratings')}:9080`)[0]!.route!.cluster, `outbound|9080|v1|${H('ratings')}`);
  assert.deepEqual(clusterOf(r, `outbound|9080||${H('details')}`).connect_timeout, { seconds: 10, nanos: 0 });
});

test('TCP ports: the DestinationRule tcp idleTimeout and a useSourceIp hash go into the tcp_proxy, as istiod puts them', () => {
  const proxyOf = (r: ReturnType<typeof run>, port: number) =>
    json(
      r.resources.listeners.find((x) => x.name === `${WEB}:${port}`)!.filter_chains![0]!.filters[0]!
        .typed_config,
    ) as Record<string, unknown>;
  const plain = proxyOf(run({ virtualServices: [], destinationRules: [] }, { mesh: custom() }), 5000);
  assert.equal(plain.idle_timeout, undefined);
  assert.equal(plain.hash_policy, undefined);
  const tuned = proxyOf(
    dr('{connectionPool: {tcp: {idleTimeout: 90s}}, loadBalancer: {consistentHash: {useSourceIp: true}}}'),
    5000,
  );
  assert.deepEqual(tuned.idle_timeout, { seconds: 90, nanos: 0 });
  assert.deepEqual(tuned.hash_policy, [{ source_ip: {} }]);
  // A header hash has no meaning for a TCP connection: none is set.
  const header = proxyOf(dr('{loadBalancer: {consistentHash: {httpHeaderName: x-user}}}'), 5000);
  assert.equal(header.hash_policy, undefined);
});
