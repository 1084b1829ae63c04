/**
 * HTTP route translation, field by field: matches, actions (route, redirect, direct response),
 * rewrites, headers, mirrors, retries, timeouts, faults, hashing, and destinations that do not exist.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { H, json, l7From, routesOf, run } from './helpers.ts';
import { action, BACKOFF_25MS, DEFAULT_RETRY, FRACTION_100, PREVIOUS_HOSTS } from './expect.ts';

const REVIEWS = `${H('reviews')}:9080`;
const V1 = `outbound|9080|v1|${H('reviews')}`;
const SUBSETS = `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews }
spec:
  host: reviews
  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }, { name: v3, labels: { version: v3 } }]
---
`;

/** The routes of reviews:9080 for one VirtualService whose `http` is given as YAML (indented 2). */
function routes(http: string, extra = ''): Record<string, unknown>[] {
  const objs = l7From(`${SUBSETS}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: rv }
spec:
  hosts: [reviews]
  http:
${http}
---
${extra}`);
  assert.deepEqual(objs.problems, []);
  const r = run(objs);
  assert.deepEqual(r.problems, []);
  return json(routesOf(r, REVIEWS)) as Record<string, unknown>[];
}

const first = (http: string) => routes(http)[0]!;

test('match: uri exact/prefix/regex, ignoreUriCase, headers sorted, withoutHeaders, method/authority/scheme, query parameters', () => {
  const cases: [string, string, unknown][] = [
    ['exact uri', '{ uri: { exact: /a } }', { path: '/a' }],
    ['prefix uri', '{ uri: { prefix: /a } }', { prefix: '/a' }],
    ['regex uri', '{ uri: { regex: "/a/[0-9]+" } }', { safe_regex: { regex: '/a/[0-9]+' } }],
    [
      'ignoreUriCase',
      '{ uri: { prefix: /A }, ignoreUriCase: true }',
      { prefix: '/A', case_sensitive: { value: false } },
    ],
    [
      'headers, sorted by name; {} and regex * mean present',
      '{ headers: { x-b: { prefix: b }, x-a: { regex: "a.*" }, x-c: {}, x-d: { regex: "*" } } }',
      {
        prefix: '/',
        headers: [
          { name: 'x-a', string_match: { safe_regex: { regex: 'a.*' } } },
          { name: 'x-b', string_match: { prefix: 'b' } },
          { name: 'x-c', present_match: true },
          { name: 'x-d', present_match: true },
        ],
      },
    ],
    [
      'withoutHeaders: negated; a value match holds when the header is missing',
      '{ withoutHeaders: { x-a: { exact: a }, x-b: {} } }',
      {
        prefix: '/',
        headers: [
          {
            name: 'x-a',
            string_match: { exact: 'a' },
            invert_match: true,
            treat_missing_header_as_empty: true,
          },
          { name: 'x-b', present_match: true, invert_match: true },
        ],
      },
    ],
    [
      'method, authority and scheme as pseudo headers, after the others',
      '{ method: { exact: GET }, authority: { prefix: reviews }, scheme: { exact: http }, headers: { x: { exact: y } } }',
      {
        prefix: '/',
        headers: [
          { name: 'x', string_match: { exact: 'y' } },
          { name: ':method', string_match: { exact: 'GET' } },
          { name: ':authority', string_match: { prefix: 'reviews' } },
          { name: ':scheme', string_match: { exact: 'http' } },
        ],
      },
    ],
    [
      'query parameters, sorted; exact "" is "present with no value"',
      '{ queryParams: { v: { exact: "" }, debug: { regex: "*" }, id: { regex: "[0-9]+" } } }',
      {
        prefix: '/',
        query_parameters: [
          { name: 'debug', present_match: true },
          { name: 'id', string_match: { safe_regex: { regex: '[0-9]+' } } },
          { name: 'v', string_match: { exact: '' } },
        ],
      },
    ],
  ];
  for (const [name, match, expected] of cases) {
    const r = first(`  - match: [${match}]\n    route: [{ destination: { host: reviews, subset: v1 } }]`);
    assert.deepEqual(r.match, expected, name);
  }
});

test('sourceNamespace and sourceLabels become dynamic-metadata matchers the waypoint evaluates against the client', () => {
  const r = first(
    '  - match: [{ sourceNamespace: prod, sourceLabels: { version: v2, app: productpage } }]\n    route: [{ destination: { host: reviews, subset: v1 } }]',
  );
  const src = (path: string[], exact: string) => ({
    filter: 'ambit.source',
    path: path.map((key) => ({ key })),
    value: { string_match: { exact } },
  });
  assert.deepEqual(r.match, {
    prefix: '/',
    dynamic_metadata: [
      src(['namespace'], 'prod'),
      src(['labels', 'app'], 'productpage'),
      src(['labels', 'version'], 'v2'),
    ],
  });
});

test('match blocks are ORed: one route each, same action; the route name joins the rule and block names', () => {
  const rs = routes(`  - name: api
    match: [{ name: v1, uri: { prefix: /v1 } }, { uri: { prefix: /v2 } }]
    route: [{ destination: { host: reviews, subset: v1 } }]`);
  assert.deepEqual(
    rs.map((r) => [
      r.name,
      (r.match as Record<string, unknown>).prefix,
      (r.route as Record<string, unknown>).cluster,
    ]),
    [
      ['api.v1', '/v1', V1],
      ['api', '/v2', V1],
    ],
  );
});

test('a match on another port: the block applies only on that port’s route configuration', () => {
  const objs = l7From(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: rt, namespace: prod }
spec:
  hosts: [ratings]
  http:
  - match: [{ port: 8080, uri: { prefix: /alt } }]
    route: [{ destination: { host: ratings } }]
  - route: [{ destination: { host: ratings } }]`);
  const r = run(objs);
  assert.deepEqual(r.problems, []);
  const host = 'ratings.prod.svc.cluster.local';
  assert.deepEqual(
    routesOf(r, `${host}:8080`).map((x) => [x.match.prefix, x.route?.cluster]),
    [
      ['/alt', `outbound|8080||${host}`],
      ['/', `outbound|8080||${host}`],
    ],
  );
  assert.deepEqual(
    routesOf(r, `${host}:9080`).map((x) => [x.match.prefix, x.route?.cluster]),
    [['/', `outbound|9080||${host}`]],
  );
});

test('redirects: codes, scheme, authority, port, derivePort, prefixRewrite', () => {
  const cases: [string, string, unknown][] = [
    [
      'uri and authority, default 301',
      '{ uri: /new, authority: other.example }',
      { host_redirect: 'other.example', path_redirect: '/new', response_code: 'MOVED_PERMANENTLY' },
    ],
    ['302', '{ uri: /new, redirectCode: 302 }', { path_redirect: '/new', response_code: 'FOUND' }],
    ['303', '{ uri: /new, redirectCode: 303 }', { path_redirect: '/new', response_code: 'SEE_OTHER' }],
    [
      '307',
      '{ uri: /new, redirectCode: 307 }',
      { path_redirect: '/new', response_code: 'TEMPORARY_REDIRECT' },
    ],
    [
      '308 to https',
      '{ scheme: https, redirectCode: 308 }',
      { scheme_redirect: 'https', response_code: 'PERMANENT_REDIRECT' },
    ],
    [
      'explicit port',
      '{ authority: a.example, port: 8443 }',
      { host_redirect: 'a.example', port_redirect: 8443, response_code: 'MOVED_PERMANENTLY' },
    ],
    [
      'port 443 with https is implicit',
      '{ scheme: https, port: 443 }',
      { scheme_redirect: 'https', response_code: 'MOVED_PERMANENTLY' },
    ],
    [
      'derivePort FROM_REQUEST_PORT is the port being routed',
      '{ authority: a.example, derivePort: FROM_REQUEST_PORT }',
      { host_redirect: 'a.example', port_redirect: 9080, response_code: 'MOVED_PERMANENTLY' },
    ],
    [
      'derivePort FROM_PROTOCOL_DEFAULT leaves the port out',
      '{ authority: a.example, derivePort: FROM_PROTOCOL_DEFAULT }',
      { host_redirect: 'a.example', response_code: 'MOVED_PERMANENTLY' },
    ],
  ];
  for (const [name, redirect, expected] of cases) {
    const r = first(`  - redirect: ${redirect}`);
    assert.deepEqual(r.redirect, expected, name);
    assert.equal(r.route, undefined, name);
  }
  const prefix = first('  - match: [{ uri: { prefix: /old } }]\n    redirect: { prefixRewrite: /new }');
  assert.deepEqual(prefix.redirect, { prefix_rewrite: '/new', response_code: 'MOVED_PERMANENTLY' });
});

test('direct responses: a string body, a bytes body, or none', () => {
  assert.deepEqual(first('  - directResponse: { status: 418 }').direct_response, { status: 418 });
  assert.deepEqual(first('  - directResponse: { status: 200, body: { string: ok } }').direct_response, {
    status: 200,
    body: { inline_string: 'ok' },
  });
  const bytes = first('  - directResponse: { status: 200, body: { bytes: "AAEC" } }').direct_response as {
    body: { inline_bytes: Uint8Array };
  };
  assert.deepEqual([...bytes.body.inline_bytes], [0, 1, 2]);
});

test('rewrites: uri as prefix_rewrite (with an exact match it replaces the whole path), regex, authority', () => {
  const exact = first(
    '  - match: [{ uri: { exact: /a } }]\n    rewrite: { uri: /b }\n    route: [{ destination: { host: reviews, subset: v1 } }]',
  );
  assert.deepEqual(exact.match, { path: '/a' });
  assert.equal((exact.route as Record<string, unknown>).prefix_rewrite, '/b');
  const regex = first(
    '  - rewrite: { uriRegexRewrite: { match: "^/v([0-9]+)/(.*)$", rewrite: "/api/\\\\2?version=\\\\1" } }\n    route: [{ destination: { host: reviews, subset: v1 } }]',
  );
  assert.deepEqual((regex.route as Record<string, unknown>).regex_rewrite, {
    pattern: { regex: '^/v([0-9]+)/(.*)$' },
    substitution: '/api/\\2?version=\\1',
  });
  const authority = first(
    '  - rewrite: { authority: reviews.internal }\n    route: [{ destination: { host: reviews, subset: v1 } }]',
  );
  assert.equal((authority.route as Record<string, unknown>).host_rewrite_literal, 'reviews.internal');
});

test('headers: set overwrites, add appends, each sorted; Host / :authority set becomes the host rewrite', () => {
  const r = first(`  - headers:
      request:
        set: { x-b: "2", x-a: "1", host: reviews.example }
        add: { x-c: "3" }
        remove: [x-d]
      response:
        add: { x-e: "5" }
        remove: [x-f]
    route:
    - destination: { host: reviews, subset: v1 }
      headers: { request: { set: { x-g: "7" } }, response: { remove: [x-h] } }`);
  const set = (key: string, value: string) => ({
    header: { key, value },
    append_action: 'OVERWRITE_IF_EXISTS_OR_ADD',
  });
  const add = (key: string, value: string) => ({
    header: { key, value },
    append_action: 'APPEND_IF_EXISTS_OR_ADD',
  });
  // One destination: its headers join the route's, after them.
  assert.deepEqual(r.request_headers_to_add, [
    set('x-a', '1'),
    set('x-b', '2'),
    add('x-c', '3'),
    set('x-g', '7'),
  ]);
  assert.deepEqual(r.request_headers_to_remove, ['x-d']);
  assert.deepEqual(r.response_headers_to_add, [add('x-e', '5')]);
  assert.deepEqual(r.response_headers_to_remove, ['x-f', 'x-h']);
  assert.equal((r.route as Record<string, unknown>).host_rewrite_literal, 'reviews.example');
  // Several destinations: each keeps its own headers and authority on its cluster weight.
  const w = first(`  - route:
    - destination: { host: reviews, subset: v1 }
      weight: 50
      headers: { request: { set: { ":authority": v1.example, x-v: "1" } } }
    - destination: { host: reviews, subset: v2 }
      weight: 50`);
  assert.deepEqual((w.route as { weighted_clusters: unknown }).weighted_clusters, {
    clusters: [
      {
        name: V1,
        weight: { value: 50 },
        request_headers_to_add: [set('x-v', '1')],
        host_rewrite_literal: 'v1.example',
      },
      { name: `outbound|9080|v2|${H('reviews')}`, weight: { value: 50 } },
    ],
  });
});

test('weights: a zero weight beside others gets no traffic and is left out', () => {
  const r = first(`  - route:
    - { destination: { host: reviews, subset: v1 }, weight: 100 }
    - { destination: { host: reviews, subset: v2 }, weight: 0 }`);
  assert.deepEqual((r.route as { weighted_clusters: unknown }).weighted_clusters, {
    clusters: [{ name: V1, weight: { value: 100 } }],
  });
});

test('mirrors: mirror with a percentage, mirrors[], 0% mirrors nothing, no percentage means 100%', () => {
  const r = first(`  - route: [{ destination: { host: reviews, subset: v1 } }]
    mirror: { host: reviews, subset: v2 }
    mirrorPercentage: { value: 12.5 }`);
  assert.deepEqual((r.route as Record<string, unknown>).request_mirror_policies, [
    {
      cluster: `outbound|9080|v2|${H('reviews')}`,
      runtime_fraction: { default_value: { numerator: 125_000, denominator: 'MILLION' } },
      trace_sampled: { value: false },
    },
  ]);
  const many = first(`  - route: [{ destination: { host: reviews, subset: v1 } }]
    mirrors:
    - { destination: { host: reviews, subset: v2 } }
    - { destination: { host: reviews, subset: v3 }, percentage: { value: 0 } }
    - { destination: { host: ratings }, percentage: { value: 0.5 } }`);
  assert.deepEqual(
    (
      (many.route as Record<string, unknown>).request_mirror_policies as {
        cluster: string;
        runtime_fraction: unknown;
      }[]
    ).map((m) => [m.cluster, m.runtime_fraction]),
    [
      [`outbound|9080|v2|${H('reviews')}`, { default_value: FRACTION_100 }],
      [`outbound|9080||${H('ratings')}`, { default_value: { numerator: 5000, denominator: 'MILLION' } }],
    ],
  );
});

test('retries: attempts 0 disables; retryOn codes go to retriable_status_codes; backoff and previous hosts', () => {
  const retry = (spec: string) =>
    (
      first(`  - route: [{ destination: { host: reviews, subset: v1 } }]\n    retries: ${spec}`)
        .route as Record<string, unknown>
    ).retry_policy;
  assert.equal(retry('{ attempts: 0 }'), undefined);
  assert.deepEqual(retry('{ attempts: 5 }'), { ...DEFAULT_RETRY, num_retries: { value: 5 } });
  assert.deepEqual(
    retry('{ attempts: 1, retryOn: "5xx,503,504", backoff: 100ms, retryIgnorePreviousHosts: false }'),
    {
      retry_on: '5xx,retriable-status-codes',
      num_retries: { value: 1 },
      retriable_status_codes: [503, 504],
      host_selection_retry_max_attempts: 5,
      retry_back_off: { base_interval: { seconds: 0, nanos: 100_000_000 } },
    },
  );
  assert.deepEqual(retry('{ attempts: 3, retryOn: "unavailable" }'), {
    retry_on: 'unavailable',
    num_retries: { value: 3 },
    retry_host_predicate: PREVIOUS_HOSTS,
    host_selection_retry_max_attempts: 5,
    retry_back_off: BACKOFF_25MS,
  });
});

test('faults: delay and abort each need a percentage; a gRPC abort carries the status code', () => {
  const perFilter = (spec: string) =>
    first(`  - route: [{ destination: { host: reviews, subset: v1 } }]\n    fault: ${spec}`)
      .typed_per_filter_config;
  assert.deepEqual(
    perFilter(
      '{ abort: { grpcStatus: UNAVAILABLE, percentage: { value: 50 } }, delay: { fixedDelay: 250ms, percentage: { value: 0.1 } } }',
    ),
    {
      'envoy.filters.http.fault': {
        '@type': 'envoy.extensions.filters.http.fault.v3.HTTPFault',
        delay: {
          fixed_delay: { seconds: 0, nanos: 250_000_000 },
          percentage: { numerator: 1000, denominator: 'MILLION' },
        },
        abort: { grpc_status: 14, percentage: { numerator: 500_000, denominator: 'MILLION' } },
      },
    },
  );
});

test('a route timeout is the gRPC deadline too; the default is none (0s)', () => {
  const r = first('  - route: [{ destination: { host: reviews, subset: v1 } }]\n    timeout: 3s');
  assert.deepEqual(r.route, action({ cluster: V1 }, { seconds: 3, nanos: 0 }));
});

test('consistent hashing from the DestinationRule: header, query parameter, source IP; no retry on another host', () => {
  const cases: [string, unknown][] = [
    ['{ httpHeaderName: x-user }', { header: { header_name: 'x-user' } }],
    ['{ httpQueryParameterName: user }', { query_parameter: { name: 'user' } }],
    ['{ useSourceIp: true }', { connection_properties: { source_ip: true } }],
    [
      '{ httpCookie: { name: s, path: /, ttl: 60s } }',
      { cookie: { name: 's', path: '/', ttl: { seconds: 60, nanos: 0 } } },
    ],
  ];
  for (const [hash, expected] of cases) {
    const objs = l7From(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews }
spec:
  host: reviews
  trafficPolicy: { loadBalancer: { consistentHash: ${hash} } }`);
    const r = run(objs);
    const [route] = routesOf(r, REVIEWS);
    assert.deepEqual(json(route!.route!.hash_policy), [expected], hash);
    assert.equal(route!.route!.retry_policy!.retry_host_predicate, undefined, hash);
  }
});

test('destinations that do not exist: the route stays (503, as in Istio), the cluster is served empty, and a warning names the field', () => {
  const objs = l7From(`${SUBSETS}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: rv }
spec:
  hosts: [reviews]
  http:
  - match: [{ uri: { prefix: /a } }]
    route: [{ destination: { host: reviews, subset: v9 } }]
  - match: [{ uri: { prefix: /b } }]
    route: [{ destination: { host: nosuch } }]
  - match: [{ uri: { prefix: /c } }]
    route: [{ destination: { host: reviews, port: { number: 7000 } } }]
  - match: [{ uri: { prefix: /d } }]
    route: [{ destination: { host: ratings.prod.svc.cluster.local } }]
  - route: [{ destination: { host: reviews, subset: v1 } }]
    mirror: { host: reviews, subset: v8 }
`);
  const r = run(objs);
  assert.deepEqual(
    routesOf(r, REVIEWS).map((x) => [x.route!.cluster, x.route!.request_mirror_policies?.[0]?.cluster]),
    [
      [`outbound|9080|v9|${H('reviews')}`, undefined],
      [`outbound|9080||${H('nosuch')}`, undefined],
      [`outbound|7000||${H('reviews')}`, undefined],
      ['outbound|9080||ratings.prod.svc.cluster.local', undefined],
      [V1, `outbound|9080|v8|${H('reviews')}`],
    ],
  );
  assert.deepEqual(
    r.problems.map((p) => [p.kind, p.name, p.path]),
    [
      ['VirtualService', 'rv', 'spec.http[0].route[0].destination.subset'],
      ['VirtualService', 'rv', 'spec.http[1].route[0].destination.host'],
      ['VirtualService', 'rv', 'spec.http[2].route[0].destination.port.number'],
      ['VirtualService', 'rv', 'spec.http[4].mirror.subset'],
    ],
  );
  assert.match(
    r.problems[0]!.message,
    /subset "v9" is not defined by the DestinationRule for reviews\.default\.svc\.cluster\.local \(default\/reviews\); requests routed there get 503/,
  );
  for (const name of [
    `outbound|9080|v9|${H('reviews')}`,
    `outbound|9080||${H('nosuch')}`,
    `outbound|7000||${H('reviews')}`,
  ]) {
    assert.ok(
      r.resources.clusters.some((c) => c.name === name),
      name,
    );
    assert.deepEqual(r.resources.clusterLoadAssignments.find((c) => c.cluster_name === name)?.endpoints, []);
  }
});

test('a destination with several ports and none equal to the routed port must name one', () => {
  const objs = l7From(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: rv }
spec:
  hosts: [reviews]
  http: [{ route: [{ destination: { host: ratings.prod.svc.cluster.local } }] }]`);
  const r = run(objs);
  assert.deepEqual(r.problems, []);
  // ratings.prod has 9080 too, so the routed port is used and nothing is reported.
  assert.equal(routesOf(r, REVIEWS)[0]!.route!.cluster, 'outbound|9080||ratings.prod.svc.cluster.local');
  const tcp = l7From(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: rv }
spec:
  hosts: [reviews]
  http: [{ route: [{ destination: { host: tcp-echo } }] }]`);
  const t = run(tcp);
  assert.deepEqual(
    t.problems.map((p) => [p.path, p.message]),
    [
      [
        'spec.http[0].route[0].destination',
        'tcp-echo.default.svc.cluster.local has ports 9000, 9001, none of them 9080 (the port being routed); set port.number; requests routed there get 503 (as in Istio)',
      ],
    ],
  );
});
