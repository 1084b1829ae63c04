/**
 * The Istio samples (../shared/istio-samples 01–17, copied to test/fixtures/l7/istio-samples) in →
 * Envoy resources out, against the fixture mesh. Each case checks what the sample's "Expected:" line
 * asks of the translation. Samples naming *.prod.svc.cluster.local are applied in `prod` (or from the
 * waypoint's namespace, where said).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { L7Objects } from './helpers.ts';
import { addressesOf, clusterOf, H, json, P, routesOf, run, samples } from './helpers.ts';
import {
  action,
  BACKOFF_25MS,
  cluster,
  defaultRouteTo,
  fault,
  FRACTION_100,
  httpOptions,
  MAX,
  PREVIOUS_HOSTS,
  ROUND_ROBIN_POLICIES,
  toCluster,
  ZERO,
} from './expect.ts';

const into = (objs: L7Objects, namespace: string): L7Objects => ({
  virtualServices: objs.virtualServices.map((v) => ({ ...v, namespace })),
  destinationRules: objs.destinationRules.map((d) => ({ ...d, namespace })),
  problems: objs.problems,
});

/** The subsets of 02 for the prod services too (09, 13–15 route to prod subsets). */
const PROD_SUBSETS = `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ratings, namespace: prod }
spec:
  host: ratings.prod.svc.cluster.local
  subsets: [{ name: v1, labels: { version: v1 } }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: prod }
spec:
  host: reviews
  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
`;

import { l7From } from './helpers.ts';

function withProdSubsets(objs: L7Objects): L7Objects {
  const prod = l7From(PROD_SUBSETS);
  return { ...objs, destinationRules: [...objs.destinationRules, ...prod.destinationRules] };
}

test('01+02: every request to productpage/reviews/ratings/details goes to subset v1', () => {
  const r = run(samples('01', '02'));
  assert.deepEqual(r.problems, []);
  for (const svc of ['productpage', 'reviews', 'ratings', 'details']) {
    assert.deepEqual(json(routesOf(r, `${H(svc)}:9080`)), [
      toCluster(`outbound|9080|v1|${H(svc)}`, `${H(svc)}:9080/*`),
    ]);
  }
  // v1 of reviews has the v1 pod only; the whole-service cluster has all three.
  assert.deepEqual(addressesOf(r, `outbound|9080|v1|${H('reviews')}`), ['10.0.0.21:9080']);
  assert.deepEqual(addressesOf(r, `outbound|9080||${H('reviews')}`), [
    '10.0.0.21:9080',
    '10.0.0.22:9080',
    '10.0.0.23:9080',
  ]);
});

test('02 alone: subsets exist as clusters, but routing still spreads over every version', () => {
  const r = run(samples('02'));
  assert.deepEqual(r.problems, []);
  assert.deepEqual(json(routesOf(r, `${H('reviews')}:9080`)), [defaultRouteTo(H('reviews'), 9080)]);
  for (const [subset, ip] of [
    ['v1', '10.0.0.21'],
    ['v2', '10.0.0.22'],
    ['v3', '10.0.0.23'],
  ] as const) {
    assert.deepEqual(
      json(clusterOf(r, `outbound|9080|${subset}|${H('reviews')}`)),
      cluster(`outbound|9080|${subset}|${H('reviews')}`),
    );
    assert.deepEqual(addressesOf(r, `outbound|9080|${subset}|${H('reviews')}`), [`${ip}:9080`]);
  }
  // ratings' v2-mysql subset selects no pod: an empty assignment, not a missing one.
  assert.deepEqual(addressesOf(r, `outbound|9080|v2-mysql|${H('ratings')}`), []);
});

test('03: reviews is split 90/10 between v1 and v2', () => {
  const r = run(samples('02', '03'));
  assert.deepEqual(r.problems, []);
  assert.deepEqual(json(routesOf(r, `${H('reviews')}:9080`)), [
    {
      match: { prefix: '/' },
      route: action({
        weighted_clusters: {
          clusters: [
            { name: `outbound|9080|v1|${H('reviews')}`, weight: { value: 90 } },
            { name: `outbound|9080|v2|${H('reviews')}`, weight: { value: 10 } },
          ],
        },
      }),
      decorator: { operation: 'reviews:9080/*' },
    },
  ]);
});

test('04: end-user: jason goes to v2, everyone else falls through to v1', () => {
  const r = run(samples('02', '04'));
  assert.deepEqual(r.problems, []);
  assert.deepEqual(json(routesOf(r, `${H('reviews')}:9080`)), [
    toCluster(`outbound|9080|v2|${H('reviews')}`, `${H('reviews')}:9080/*`, {
      match: { prefix: '/', headers: [{ name: 'end-user', string_match: { exact: 'jason' } }] },
    }),
    toCluster(`outbound|9080|v1|${H('reviews')}`, `${H('reviews')}:9080/*`),
  ]);
});

const JASON = { prefix: '/', headers: [{ name: 'end-user', string_match: { exact: 'jason' } }] };

test('05: jason is delayed 7s on every ratings call; others are not', () => {
  const r = run(samples('02', '05'));
  assert.deepEqual(r.problems, []);
  const [jason, others] = json(routesOf(r, `${H('ratings')}:9080`)) as Record<string, unknown>[];
  assert.deepEqual(jason!.match, JASON);
  assert.deepEqual(
    jason!.typed_per_filter_config,
    fault({ delay: { fixed_delay: { seconds: 7, nanos: 0 }, percentage: FRACTION_100 } }),
  );
  assert.equal(others!.typed_per_filter_config, undefined);
  assert.deepEqual(others, toCluster(`outbound|9080|v1|${H('ratings')}`, `${H('ratings')}:9080/*`));
  // The listener lists the fault filter before the router, so per-route faults take effect.
  const listener = json(r.resources.listeners.find((l) => l.name === `${H('ratings')}:9080`)) as {
    api_listener: { api_listener: { http_filters: { name: string }[] } };
  };
  assert.deepEqual(
    listener.api_listener.api_listener.http_filters.map((f) => f.name),
    ['envoy.filters.http.fault', 'envoy.filters.http.router'],
  );
});

test('06: jason gets HTTP 500 from ratings for every call', () => {
  const r = run(samples('02', '06'));
  assert.deepEqual(r.problems, []);
  const [jason] = json(routesOf(r, `${H('ratings')}:9080`)) as Record<string, unknown>[];
  assert.deepEqual(jason!.match, JASON);
  assert.deepEqual(
    jason!.typed_per_filter_config,
    fault({ abort: { http_status: 500, percentage: FRACTION_100 } }),
  );
});

test('07: the first rule is a catch-all (abort 555 for everyone), so the second is never reached', () => {
  const r = run(samples('07'));
  assert.deepEqual(r.problems, []);
  const routes = json(routesOf(r, `${H('details')}:9080`)) as Record<string, unknown>[];
  assert.equal(routes.length, 1);
  assert.deepEqual(routes[0], {
    ...toCluster(`outbound|9080|v1|${H('details')}`, `${H('details')}:9080/*`),
    typed_per_filter_config: fault({ abort: { http_status: 555, percentage: FRACTION_100 } }),
  });
});

test('08: reviews→v2 times out after 0.5s (also as the gRPC deadline); ratings is delayed 2s', () => {
  const r = run(samples('02', '08'));
  assert.deepEqual(r.problems, []);
  const half = { seconds: 0, nanos: 500_000_000 };
  assert.deepEqual(json(routesOf(r, `${H('reviews')}:9080`)), [
    {
      match: { prefix: '/' },
      route: action({ cluster: `outbound|9080|v2|${H('reviews')}` }, half),
      decorator: { operation: `${H('reviews')}:9080/*` },
    },
  ]);
  const [ratings] = json(routesOf(r, `${H('ratings')}:9080`)) as Record<string, unknown>[];
  assert.deepEqual(
    ratings!.typed_per_filter_config,
    fault({ delay: { fixed_delay: { seconds: 2, nanos: 0 }, percentage: FRACTION_100 } }),
  );
});

test('09: ratings v1 is retried up to 3 more times on gateway errors, connect failures and refused streams, 2s per try', () => {
  const r = run(withProdSubsets(into(samples('09'), 'prod')));
  assert.deepEqual(r.problems, []);
  // ratings.prod has two ports; the destination names no port, so each port routes to its own.
  for (const port of [9080, 8080]) {
    const [route] = json(routesOf(r, `${P('ratings')}:${port}`)) as Record<string, unknown>[];
    assert.deepEqual(
      (route!.route as Record<string, unknown>).cluster,
      `outbound|${port}|v1|${P('ratings')}`,
    );
    assert.deepEqual((route!.route as Record<string, unknown>).retry_policy, {
      retry_on: 'gateway-error,connect-failure,refused-stream',
      num_retries: { value: 3 },
      per_try_timeout: { seconds: 2, nanos: 0 },
      retry_host_predicate: PREVIOUS_HOSTS,
      host_selection_retry_max_attempts: 5,
      retry_back_off: BACKOFF_25MS,
    });
  }
});

test('10: httpbin allows 1 connection and 1 pending request per host, and ejects a host for 3m after one 5xx', () => {
  const r = run(samples('10'));
  assert.deepEqual(r.problems, []);
  const name = `outbound|8000||${H('httpbin')}`;
  assert.deepEqual(
    json(clusterOf(r, name)),
    cluster(name, {
      circuit_breakers: {
        thresholds: [
          {
            max_connections: { value: 1 },
            max_pending_requests: { value: 1 },
            max_requests: MAX,
            max_retries: MAX,
          },
        ],
      },
      outlier_detection: {
        consecutive_5xx: { value: 1 },
        enforcing_consecutive_5xx: { value: 100 },
        interval: { seconds: 1, nanos: 0 },
        base_ejection_time: { seconds: 180, nanos: 0 },
        max_ejection_percent: { value: 100 },
        enforcing_success_rate: { value: 0 },
      },
      common_lb_config: { healthy_panic_threshold: { value: 0 } },
      typed_extension_protocol_options: httpOptions({ max_requests_per_connection: { value: 1 } }),
    }),
  );
  // The target port is the pods' (80), not the service's (8000).
  assert.deepEqual(addressesOf(r, name), ['10.0.0.51:80', '10.0.0.52:80']);
});

test('11: every request is served by httpbin v1 and mirrored, fire-and-forget, to v2', () => {
  const r = run(samples('11'));
  assert.deepEqual(r.problems, []);
  assert.deepEqual(json(routesOf(r, `${H('httpbin')}:8000`)), [
    {
      match: { prefix: '/' },
      route: action({
        cluster: `outbound|8000|v1|${H('httpbin')}`,
        request_mirror_policies: [
          {
            cluster: `outbound|8000|v2|${H('httpbin')}`,
            runtime_fraction: { default_value: FRACTION_100 },
            trace_sampled: { value: false },
          },
        ],
      }),
      decorator: { operation: `${H('httpbin')}:8000/*` },
    },
  ]);
  assert.deepEqual(addressesOf(r, `outbound|8000|v2|${H('httpbin')}`), ['10.0.0.52:80']);
});

test('12: GET /v1/getProductRatings gets a 301 to newratings…/v1/bookRatings; other paths go to ratings', () => {
  const r = run(into(samples('12'), 'prod'));
  assert.deepEqual(r.problems, []);
  assert.deepEqual(json(routesOf(r, `${P('ratings')}:9080`)), [
    {
      match: { path: '/v1/getProductRatings' },
      redirect: {
        host_redirect: 'newratings.default.svc.cluster.local',
        path_redirect: '/v1/bookRatings',
        response_code: 'MOVED_PERMANENTLY',
      },
      decorator: { operation: 'ratings-route:9080/v1/getProductRatings' },
    },
    toCluster(`outbound|9080||${P('ratings')}`, `${P('ratings')}:9080/*`),
  ]);
});

test('13: /v1/getProductRatings is answered 503 with a JSON body and content-type text/plain', () => {
  const r = run(into(samples('13'), 'prod'));
  assert.deepEqual(r.problems, []);
  const [direct] = json(routesOf(r, `${P('ratings')}:9080`)) as Record<string, unknown>[];
  assert.deepEqual(direct, {
    match: { path: '/v1/getProductRatings' },
    direct_response: { status: 503, body: { inline_string: '{"error": "unknown error"}' } },
    decorator: { operation: 'ratings-route:9080/v1/getProductRatings' },
    response_headers_to_add: [
      { header: { key: 'content-type', value: 'text/plain' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
    ],
  });
});

test('14: 25/75 between v2 and v1, test: true on every request, foo removed from v1 responses only', () => {
  const r = run(withProdSubsets(into(samples('14'), 'prod')));
  assert.deepEqual(r.problems, []);
  assert.deepEqual(json(routesOf(r, `${P('reviews')}:9080`)), [
    {
      match: { prefix: '/' },
      route: action({
        weighted_clusters: {
          clusters: [
            { name: `outbound|9080|v2|${P('reviews')}`, weight: { value: 25 } },
            {
              name: `outbound|9080|v1|${P('reviews')}`,
              weight: { value: 75 },
              response_headers_to_remove: ['foo'],
            },
          ],
        },
      }),
      decorator: { operation: 'reviews-route:9080/*' },
      request_headers_to_add: [
        { header: { key: 'test', value: 'true' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
      ],
    },
  ]);
  // reviews.prod's port is named grpc: its clusters speak HTTP/2 upstream.
  assert.deepEqual(
    json(clusterOf(r, `outbound|9080|v1|${P('reviews')}`).typed_extension_protocol_options),
    httpOptions(undefined, { explicit_http_config: { http2_protocol_options: {} } }),
  );
});

test('15: CORS for https://example.com (POST, GET; X-Foo-Bar; no credentials; max age 86400)', () => {
  const r = run(withProdSubsets(into(samples('15'), 'prod')));
  assert.deepEqual(r.problems, []);
  const [route] = json(routesOf(r, `${P('ratings')}:9080`)) as Record<string, unknown>[];
  assert.deepEqual(route!.typed_per_filter_config, {
    'envoy.filters.http.cors': {
      '@type': 'envoy.config.route.v3.FilterConfig',
      config: {
        '@type': 'envoy.extensions.filters.http.cors.v3.CorsPolicy',
        allow_origin_string_match: [{ exact: 'https://example.com' }],
        allow_methods: 'POST,GET',
        allow_headers: 'X-Foo-Bar',
        max_age: '86400',
        allow_credentials: { value: false },
        filter_enabled: { default_value: { numerator: 100, denominator: 'HUNDRED' } },
        forward_not_matching_preflights: { value: true },
      },
      is_optional: true,
    },
  });
  const listener = json(r.resources.listeners.find((l) => l.name === `${P('ratings')}:9080`)) as {
    api_listener: { api_listener: { http_filters: Record<string, unknown>[] } };
  };
  assert.deepEqual(listener.api_listener.api_listener.http_filters, [
    {
      name: 'envoy.filters.http.fault',
      typed_config: { '@type': 'envoy.extensions.filters.http.fault.v3.HTTPFault' },
    },
    {
      name: 'envoy.filters.http.cors',
      typed_config: { '@type': 'envoy.extensions.filters.http.cors.v3.Cors' },
      is_optional: true,
    },
    {
      name: 'envoy.filters.http.router',
      typed_config: { '@type': 'envoy.extensions.filters.http.router.v3.Router' },
    },
  ]);
});

test('16: 9080 LEAST_REQUEST with pool and outlier limits; testversion swaps only the LB; 8080 has cookie hashing and no limits', () => {
  const r = run(into(samples('16'), 'prod'));
  assert.deepEqual(r.problems, []);
  const pool = {
    connect_timeout: { seconds: 0, nanos: 30_000_000 },
    circuit_breakers: {
      thresholds: [
        {
          max_connections: { value: 100 },
          max_pending_requests: MAX,
          max_requests: { value: 1000 },
          max_retries: MAX,
        },
      ],
    },
    outlier_detection: {
      consecutive_5xx: { value: 7 },
      enforcing_consecutive_5xx: { value: 100 },
      interval: { seconds: 300, nanos: 0 },
      base_ejection_time: { seconds: 900, nanos: 0 },
      enforcing_success_rate: { value: 0 },
    },
    common_lb_config: { healthy_panic_threshold: { value: 0 } },
    upstream_connection_options: {
      tcp_keepalive: { keepalive_time: { value: 7200 }, keepalive_interval: { value: 75 } },
    },
    typed_extension_protocol_options: httpOptions({ max_requests_per_connection: { value: 10 } }),
  };
  const whole9080 = `outbound|9080||${P('ratings')}`;
  assert.deepEqual(json(clusterOf(r, whole9080)), cluster(whole9080, pool));
  const test9080 = `outbound|9080|testversion|${P('ratings')}`;
  assert.deepEqual(
    json(clusterOf(r, test9080)),
    cluster(test9080, { ...pool, lb_policy: 'ROUND_ROBIN', load_balancing_policy: ROUND_ROBIN_POLICIES }),
  );
  assert.deepEqual(addressesOf(r, test9080), ['10.0.1.33:9080']);

  const ringHash = {
    lb_policy: 'RING_HASH',
    ring_hash_lb_config: { minimum_ring_size: { value: 1024 } },
    load_balancing_policy: {
      policies: [
        {
          typed_extension_config: {
            name: 'envoy.load_balancing_policies.ring_hash',
            typed_config: {
              '@type': 'envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash',
              hash_function: 'XX_HASH',
              minimum_ring_size: { value: 1024 },
            },
          },
        },
      ],
    },
  };
  const whole8080 = `outbound|8080||${P('ratings')}`;
  assert.deepEqual(json(clusterOf(r, whole8080)), cluster(whole8080, ringHash));
  // The subset's LB overrides the port-level one at 8080 too (a subset overrides whole sections).
  const test8080 = `outbound|8080|testversion|${P('ratings')}`;
  assert.deepEqual(
    json(clusterOf(r, test8080)),
    cluster(test8080, { lb_policy: 'ROUND_ROBIN', load_balancing_policy: ROUND_ROBIN_POLICIES }),
  );
  // Cookie-sticky: the default route of 8080 hashes on the cookie (a session cookie: ttl 0s), and
  // does not retry on another host, which would break stickiness.
  const [route] = json(routesOf(r, `${P('ratings')}:8080`)) as { route: Record<string, unknown> }[];
  assert.deepEqual(route!.route.hash_policy, [{ cookie: { name: 'user', ttl: ZERO } }]);
  assert.equal((route!.route.retry_policy as Record<string, unknown>).retry_host_predicate, undefined);
});

test('17: the TCP split via an ingress gateway does not apply to mesh traffic; the subsets become clusters', () => {
  const objs = samples('17');
  const r = run(objs);
  assert.deepEqual(r.problems, []);
  const echo = H('tcp-echo');
  assert.deepEqual(json(r.resources.listeners.find((l) => l.name === `${echo}:9000`)), {
    name: `${echo}:9000`,
    address: { socket_address: { address: '10.96.10.6', port_value: 9000 } },
    filter_chains: [
      {
        filters: [
          {
            name: 'envoy.filters.network.tcp_proxy',
            typed_config: {
              '@type': 'envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
              stat_prefix: `${echo}:9000`,
              cluster: `outbound|9000||${echo}`,
            },
          },
        ],
      },
    ],
  });
  // A TCP port has no RouteConfiguration, and its clusters carry no HTTP options.
  assert.equal(
    r.resources.routeConfigurations.find((c) => c.name === `${echo}:9000`),
    undefined,
  );
  assert.equal(clusterOf(r, `outbound|9000|v1|${echo}`).typed_extension_protocol_options, undefined);
  assert.deepEqual(addressesOf(r, `outbound|9000|v2|${echo}`), ['10.0.0.62:9000']);

  // The same split bound to the mesh: per-connection weights in the tcp_proxy.
  const vs = objs.virtualServices[0]!;
  const tcp = vs.tcp[0]!;
  const meshBound = {
    ...objs,
    virtualServices: [
      {
        ...vs,
        hosts: ['tcp-echo'],
        gateways: [],
        tcp: [{ ...tcp, match: [{ ...tcp.match[0]!, port: 9000 }] }],
      },
    ],
  };
  const m = run(meshBound);
  assert.deepEqual(m.problems, []);
  const listener = json(m.resources.listeners.find((l) => l.name === `${echo}:9000`)) as {
    filter_chains: { filters: { typed_config: Record<string, unknown> }[] }[];
  };
  assert.deepEqual(listener.filter_chains[0]!.filters[0]!.typed_config.weighted_clusters, {
    clusters: [
      { name: `outbound|9000|v1|${echo}`, weight: 80 },
      { name: `outbound|9000|v2|${echo}`, weight: 20 },
    ],
  });
  // Port 9001 is not matched by the rule (port 9000), so it goes to the service as a whole.
  const other = json(m.resources.listeners.find((l) => l.name === `${echo}:9001`)) as typeof listener;
  assert.equal(other.filter_chains[0]!.filters[0]!.typed_config.cluster, `outbound|9001||${echo}`);
});

test('samples 09 and 12–15 also apply from the waypoint namespace (the VirtualService in default, the service in prod)', () => {
  const prodSubsets = l7From(PROD_SUBSETS).destinationRules;
  const waypointNamespaces = new Map([
    [`prod/${P('ratings')}`, 'default'],
    [`prod/${P('reviews')}`, 'default'],
  ]);
  const objs = samples('09', '15');
  // Two VirtualServices named ratings-route: creation order (then name) decides; both apply.
  const r = run({ ...objs, destinationRules: prodSubsets }, { waypointNamespaces });
  assert.deepEqual(r.problems, []);
  const routes = json(routesOf(r, `${P('ratings')}:9080`)) as {
    route: { retry_policy: { num_retries: unknown } };
  }[];
  // 09 and 15 are both catch-alls for the same host: only the first (09, same timestamp, same name,
  // then namespace) survives.
  assert.equal(routes.length, 1);
  assert.deepEqual(routes[0]!.route.retry_policy.num_retries, { value: 3 });
  // Without the waypoint namespace, a VirtualService in default does not apply to a service in prod.
  const none = run({ ...samples('09'), destinationRules: prodSubsets });
  assert.deepEqual(json(routesOf(none, `${P('ratings')}:9080`)), [defaultRouteTo(P('ratings'), 9080)]);
});
