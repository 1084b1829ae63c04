/**
 * Gateway API HTTPRoutes with a Service parentRef, translated into the service port's
 * RouteConfiguration (translate/l7/http-routes.ts): sample 20's 90/10 split, precedence, weights and
 * invalid backends (500), filters, timeouts, which parents and ports a route attaches to, its
 * precedence over VirtualServices, and an invalid route rejected while the good ones stay.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { decodeHttpRoute } from '../../../src/controller/translate/l7/decode-http-route.ts';
import type { Route } from '../../../src/controller/translate/l7/envoy-types.ts';
import type { GatewayHttpRoute } from '../../../src/controller/translate/l7/http-route-types.ts';
import { INVALID_BACKEND_CLUSTER } from '../../../src/controller/translate/l7/http-routes.ts';
import { translateL7, type L7Result } from '../../../src/controller/translate/l7/translate.ts';
import type { L7Problem } from '../../../src/controller/translate/l7/types.ts';
import { addressesOf, clusterOf, json, l7From, meshFrom, OPTIONS, routesOf } from './l7/helpers.ts';

/** Istio's sample 20, the repository's copy (istio-samples/20-httproute-reviews-90-10-waypoint.yaml). */
const SAMPLE_20 = readFileSync(
  new URL('../../fixtures/l7/istio-samples/20-httproute-reviews-90-10-waypoint.yaml', import.meta.url),
  'utf8',
);

const svc = (name: string, ip: string, selector: string, ports: string, namespace = 'default') => `
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: ${namespace} }
spec: { selector: ${selector}, clusterIP: ${ip}, ports: ${ports} }
---`;
const pod = (name: string, ip: string, labels: string, namespace = 'default') => `
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: ${namespace}, labels: ${labels} }
spec: { nodeName: node-1 }
status: { phase: Running, podIP: ${ip} }
---`;

/** bookinfo's reviews with one Service per version (what HTTPRoute splits need), and a few more. */
const MESH = meshFrom(`
apiVersion: v1
kind: Namespace
metadata: { name: default, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Namespace
metadata: { name: other, labels: { istio.io/dataplane-mode: ambient } }
---
${svc('reviews', '10.96.0.2', '{ app: reviews }', '[{ name: http, port: 9080 }, { name: tcp-admin, port: 9090 }, { name: http-alt, port: 8080 }]')}
${svc('reviews-v1', '10.96.0.3', '{ app: reviews, version: v1 }', '[{ name: http, port: 9080 }]')}
${svc('reviews-v2', '10.96.0.4', '{ app: reviews, version: v2 }', '[{ name: http, port: 9080 }]')}
${svc('shadow', '10.96.0.5', '{ app: shadow }', '[{ name: http, port: 80 }]')}
${svc('reviews', '10.96.1.2', '{ app: reviews }', '[{ name: http, port: 9080 }]', 'other')}
${pod('reviews-v1', '10.0.0.1', '{ app: reviews, version: v1 }')}
${pod('reviews-v2', '10.0.0.2', '{ app: reviews, version: v2 }')}
${pod('shadow', '10.0.0.5', '{ app: shadow }')}
${pod('reviews', '10.0.1.1', '{ app: reviews }', 'other')}
`);

const H = (name: string, ns = 'default') => `${name}.${ns}.svc.cluster.local`;
const RC = `${H('reviews')}:9080`;
const V1 = `outbound|9080||${H('reviews-v1')}`;
const V2 = `outbound|9080||${H('reviews-v2')}`;

/** HTTPRoutes from YAML; each must decode cleanly. */
function routes(text: string): GatewayHttpRoute[] {
  return parseAllDocuments(text).flatMap((doc) => {
    const obj: unknown = doc.toJS();
    if (!obj) return [];
    const d = decodeHttpRoute(obj);
    assert.deepEqual(d.problems, [], 'the route decodes');
    return [d.value!];
  });
}

function run(httpRoutes: readonly GatewayHttpRoute[], vsText = ''): L7Result {
  const l7 = l7From(vsText);
  return translateL7(
    {
      snapshot: MESH.snapshot,
      mesh: MESH.mesh,
      virtualServices: l7.virtualServices,
      destinationRules: l7.destinationRules,
      httpRoutes,
    },
    OPTIONS,
  );
}

/** An HTTPRoute for reviews:9080 with these rules (YAML, indented as a list under `rules:`). */
function reviewsRoute(rules: string, name = 'r', extra = ''): string {
  return `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: ${name}, namespace: default${extra} }
spec:
  parentRefs: [{ group: "", kind: Service, name: reviews, port: 9080 }]
  rules:
${rules}
`;
}

const problemsOf = (r: L7Result) => r.problems.map((p: L7Problem) => [p.severity, p.kind, p.name, p.path]);

test('sample 20: the waypoint for reviews splits 90/10 between the reviews-v1 and reviews-v2 Services', () => {
  const r = run(routes(SAMPLE_20));
  assert.deepEqual(r.problems, []);
  const [route, ...rest] = routesOf(r, RC);
  assert.deepEqual(rest, []);
  assert.deepEqual(route!.match, { prefix: '/' });
  assert.deepEqual(route!.route!.weighted_clusters, {
    clusters: [
      { name: V1, weight: { value: 90 } },
      { name: V2, weight: { value: 10 } },
    ],
  });
  assert.equal(route!.route!.cluster_not_found_response_code, 'INTERNAL_SERVER_ERROR');
  // Each per-version Service has its own cluster, with its own pods.
  assert.equal(clusterOf(r, V1).type, 'EDS');
  assert.deepEqual(addressesOf(r, V1), ['10.0.0.1:9080']);
  assert.deepEqual(addressesOf(r, V2), ['10.0.0.2:9080']);
  // The route is on the parentRef's port only: reviews:8080 keeps its default route.
  assert.deepEqual(
    routesOf(r, `${H('reviews')}:8080`).map((x) => x.name),
    ['default'],
  );
});

const names = (list: readonly Route[]) => list.map((x) => `${x.name} ${JSON.stringify(x.match)}`);

test('precedence: exact, longest prefix, method, most headers, most query parameters; regex last', () => {
  const r = run(
    routes(
      reviewsRoute(`  - matches: [{ path: { value: / } }]
    backendRefs: [{ name: reviews-v1, port: 9080 }]
  - matches: [{ path: { value: /api } }]
    backendRefs: [{ name: reviews-v1, port: 9080 }]
  - matches:
    - { path: { value: /api }, headers: [{ name: a, value: "1" }], queryParams: [{ name: q, value: "1" }] }
    - { path: { value: /api }, headers: [{ name: a, value: "1" }, { name: b, value: "2" }] }
    - { path: { value: /api }, method: GET }
    backendRefs: [{ name: reviews-v2, port: 9080 }]
  - matches: [{ path: { type: RegularExpression, value: "/api/v[0-9]+" } }]
    backendRefs: [{ name: reviews-v2, port: 9080 }]
  - matches: [{ path: { type: Exact, value: /api/v1 } }]
    backendRefs: [{ name: reviews-v2, port: 9080 }]`),
    ),
  );
  assert.deepEqual(r.problems, []);
  assert.deepEqual(names(routesOf(r, RC)), [
    'default.r.4.0 {"path":"/api/v1"}',
    // A path prefix is matched by whole segments: the path itself, then under it.
    'default.r.2.2 {"path":"/api","headers":[{"name":":method","string_match":{"exact":"GET"}}]}',
    'default.r.2.2 {"prefix":"/api/","headers":[{"name":":method","string_match":{"exact":"GET"}}]}',
    'default.r.2.1 {"path":"/api","headers":[{"name":"a","string_match":{"exact":"1"}},{"name":"b","string_match":{"exact":"2"}}]}',
    'default.r.2.1 {"prefix":"/api/","headers":[{"name":"a","string_match":{"exact":"1"}},{"name":"b","string_match":{"exact":"2"}}]}',
    'default.r.2.0 {"path":"/api","headers":[{"name":"a","string_match":{"exact":"1"}}],"query_parameters":[{"name":"q","string_match":{"exact":"1"}}]}',
    'default.r.2.0 {"prefix":"/api/","headers":[{"name":"a","string_match":{"exact":"1"}}],"query_parameters":[{"name":"q","string_match":{"exact":"1"}}]}',
    'default.r.1.0 {"path":"/api"}',
    'default.r.1.0 {"prefix":"/api/"}',
    'default.r.0.0 {"prefix":"/"}',
    'default.r.3.0 {"safe_regex":{"regex":"/api/v[0-9]+"}}',
  ]);
});

test('ties between HTTPRoutes: the oldest first, then by namespace/name; a trailing / of a prefix is ignored', () => {
  const rule = (b: string) => `  - matches: [{ path: { value: /api/ } }]
    backendRefs: [{ name: ${b}, port: 9080 }]`;
  const r = run(
    routes(
      [
        reviewsRoute(rule('reviews-v1'), 'b-newer', ', creationTimestamp: "2026-02-01T00:00:00Z"'),
        reviewsRoute(rule('reviews-v2'), 'c-older', ', creationTimestamp: "2026-01-01T00:00:00Z"'),
        reviewsRoute(rule('reviews-v1'), 'a-newer', ', creationTimestamp: "2026-02-01T00:00:00Z"'),
      ].join('---\n'),
    ),
  );
  assert.deepEqual(
    routesOf(r, RC).map((x) => `${x.name} ${JSON.stringify(x.match)}`),
    [
      'default.c-older.0.0 {"path":"/api"}',
      'default.c-older.0.0 {"prefix":"/api/"}',
      'default.a-newer.0.0 {"path":"/api"}',
      'default.a-newer.0.0 {"prefix":"/api/"}',
      'default.b-newer.0.0 {"path":"/api"}',
      'default.b-newer.0.0 {"prefix":"/api/"}',
    ],
  );
  // No catch-all is added: a request no rule matches gets Envoy's 404.
  assert.ok(routesOf(r, RC).every((x) => x.match.prefix !== '/'));
});

test('weights: proportional, 0 sends nothing, one backend is a plain cluster, none answers 500', () => {
  const r = run(
    routes(
      reviewsRoute(`  - matches: [{ path: { value: /three-to-one } }]
    backendRefs: [{ name: reviews-v1, port: 9080, weight: 3 }, { name: reviews-v2, port: 9080 }]
  - matches: [{ path: { value: /one } }]
    backendRefs: [{ name: reviews-v1, port: 9080, weight: 0 }, { name: reviews-v2, port: 9080, weight: 5 }]
  - matches: [{ path: { value: /zero } }]
    backendRefs: [{ name: reviews-v1, port: 9080, weight: 0 }]
  - matches: [{ path: { value: /none } }]`),
    ),
  );
  assert.deepEqual(r.problems, []);
  const by = (path: string) => routesOf(r, RC).find((x) => x.match.path === path)!;
  assert.deepEqual(by('/three-to-one').route!.weighted_clusters!.clusters, [
    { name: V1, weight: { value: 3 } },
    { name: V2, weight: { value: 1 } },
  ]);
  assert.equal(by('/one').route!.cluster, V2);
  assert.deepEqual(by('/zero').direct_response, { status: 500 });
  assert.deepEqual(by('/none').direct_response, { status: 500 });
});

test('invalid backends keep their share, which gets 500; each is reported at its field path', () => {
  const r = run(
    routes(
      reviewsRoute(`  - backendRefs:
    - { name: reviews-v1, port: 9080, weight: 2 }
    - { name: missing, port: 9080, weight: 1 }
    - { name: reviews-v2, port: 7000, weight: 1 }
    - { name: reviews, namespace: other, port: 9080, weight: 1 }
    - { group: networking.istio.io, kind: Hostname, name: example.com, port: 80, weight: 1 }`),
    ),
  );
  const route = routesOf(r, RC)[0]!;
  assert.deepEqual(route.route!.weighted_clusters!.clusters, [
    { name: V1, weight: { value: 2 } },
    { name: INVALID_BACKEND_CLUSTER, weight: { value: 4 } },
  ]);
  assert.equal(route.route!.cluster_not_found_response_code, 'INTERNAL_SERVER_ERROR');
  assert.ok(!r.resources.clusters.some((c) => c.name === INVALID_BACKEND_CLUSTER), 'never served');
  assert.deepEqual(problemsOf(r), [
    ['warning', 'HTTPRoute', 'r', 'spec.rules[0].backendRefs[1].name'],
    ['warning', 'HTTPRoute', 'r', 'spec.rules[0].backendRefs[2].port'],
    ['error', 'HTTPRoute', 'r', 'spec.rules[0].backendRefs[3].namespace'],
    ['error', 'HTTPRoute', 'r', 'spec.rules[0].backendRefs[4].group'],
  ]);
  assert.match(r.problems[2]!.message, /ReferenceGrant/);
  assert.match(r.problems[1]!.message, /no port 7000/);
});

test('filters: header modifiers at rule and backend level, redirect, rewrite, mirror; timeouts', () => {
  const r = run(
    routes(
      reviewsRoute(`  - matches: [{ path: { value: /headers } }]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{ name: X-Set, value: a }, { name: Host, value: reviews.internal }]
        add: [{ name: x-add, value: b }]
        remove: [x-remove]
    - type: ResponseHeaderModifier
      responseHeaderModifier: { set: [{ name: x-served-by, value: waypoint }] }
    - type: RequestMirror
      requestMirror: { backendRef: { name: shadow, port: 80 }, percent: 25 }
    backendRefs:
    - name: reviews-v1
      port: 9080
      weight: 1
      filters: [{ type: RequestHeaderModifier, requestHeaderModifier: { add: [{ name: x-version, value: v1 }] } }]
    - { name: reviews-v2, port: 9080, weight: 1 }
    timeouts: { request: 10s, backendRequest: 2s }
  - matches: [{ path: { value: /old } }]
    filters:
    - type: RequestRedirect
      requestRedirect: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /new }, statusCode: 301 }
  - matches: [{ path: { type: Exact, value: /secure } }]
    filters: [{ type: RequestRedirect, requestRedirect: { scheme: https, hostname: reviews.example.com } }]
  - matches: [{ path: { value: /v1 } }]
    filters: [{ type: URLRewrite, urlRewrite: { hostname: api, path: { type: ReplacePrefixMatch, replacePrefixMatch: / } } }]
    backendRefs: [{ name: reviews-v1, port: 9080 }]
  - matches: [{ path: { type: Exact, value: /legacy } }]
    filters: [{ type: URLRewrite, urlRewrite: { path: { type: ReplaceFullPath, replaceFullPath: /modern } } }]
    backendRefs: [{ name: reviews-v1, port: 9080 }]`),
    ),
  );
  assert.deepEqual(r.problems, []);
  const all = routesOf(r, RC);
  const by = (match: object) => all.find((x) => JSON.stringify(x.match) === JSON.stringify(match))!;

  const headers = by({ path: '/headers' });
  assert.deepEqual(json(headers.request_headers_to_add), [
    { header: { key: 'x-set', value: 'a' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
    { header: { key: 'x-add', value: 'b' }, append_action: 'APPEND_IF_EXISTS_OR_ADD' },
  ]);
  assert.deepEqual(headers.request_headers_to_remove, ['x-remove']);
  assert.deepEqual(json(headers.response_headers_to_add), [
    { header: { key: 'x-served-by', value: 'waypoint' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
  ]);
  const action = headers.route!;
  assert.equal(action.host_rewrite_literal, 'reviews.internal');
  assert.deepEqual(json(action.weighted_clusters!.clusters[0]), {
    name: V1,
    weight: { value: 1 },
    request_headers_to_add: [
      { header: { key: 'x-version', value: 'v1' }, append_action: 'APPEND_IF_EXISTS_OR_ADD' },
    ],
  });
  assert.deepEqual(json(action.request_mirror_policies), [
    {
      cluster: `outbound|80||${H('shadow')}`,
      runtime_fraction: { default_value: { numerator: 250_000, denominator: 'MILLION' } },
      trace_sampled: { value: false },
    },
  ]);
  assert.deepEqual(action.timeout, { seconds: 10, nanos: 0 });
  assert.deepEqual(action.max_stream_duration, { max_stream_duration: { seconds: 10, nanos: 0 } });
  assert.deepEqual(action.retry_policy!.per_try_timeout, { seconds: 2, nanos: 0 });
  assert.equal(action.retry_policy!.num_retries.value, 2, "the mesh default retry policy, as Istio's");

  // ReplacePrefixMatch: the path itself becomes the replacement, what is under it keeps its rest.
  assert.deepEqual(by({ path: '/old' }).redirect, {
    port_redirect: 9080,
    prefix_rewrite: '/new',
    response_code: 'MOVED_PERMANENTLY',
  });
  assert.deepEqual(by({ prefix: '/old/' }).redirect, {
    port_redirect: 9080,
    prefix_rewrite: '/new/',
    response_code: 'MOVED_PERMANENTLY',
  });
  // A scheme without a port: that scheme's well-known port, left out of the Location; 302 by default.
  assert.deepEqual(by({ path: '/secure' }).redirect, {
    scheme_redirect: 'https',
    host_redirect: 'reviews.example.com',
    response_code: 'FOUND',
  });
  assert.equal(by({ path: '/v1' }).route!.prefix_rewrite, '/');
  assert.equal(by({ prefix: '/v1/' }).route!.prefix_rewrite, '/');
  assert.equal(by({ prefix: '/v1/' }).route!.host_rewrite_literal, 'api');
  assert.deepEqual(by({ path: '/legacy' }).route!.regex_rewrite, {
    pattern: { regex: '^/.*$' },
    substitution: '/modern',
  });
});

test('parents: the port named by sectionName or port; every HTTP port when none; other parents ignored with a warning', () => {
  const route = (parentRefs: string) =>
    routes(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: p, namespace: default }
spec:
  parentRefs: ${parentRefs}
  rules: [{ backendRefs: [{ name: reviews-v1, port: 9080 }] }]
`);
  const splitPorts = (r: L7Result) =>
    [9080, 8080].filter((port) => routesOf(r, `${H('reviews')}:${port}`)[0]!.route?.cluster === V1);

  const all = run(route('[{ group: "", kind: Service, name: reviews }]'));
  assert.deepEqual(splitPorts(all), [9080, 8080]);
  assert.deepEqual(all.problems, [], 'the TCP port 9090 is skipped quietly when no port is named');

  assert.deepEqual(
    splitPorts(run(route('[{ group: "", kind: Service, name: reviews, sectionName: http-alt }]'))),
    [8080],
  );

  const bad = run(
    route(`
  - { group: "", kind: Service, name: reviews, port: 9999 }
  - { group: "", kind: Service, name: reviews, port: 9090 }
  - { group: "", kind: Service, name: reviews, namespace: other }
  - { group: "", kind: Service, name: nope }
  - { name: waypoint }`),
  );
  assert.deepEqual(splitPorts(bad), []);
  assert.deepEqual(problemsOf(bad), [
    ['warning', 'HTTPRoute', 'p', 'spec.parentRefs[0].port'],
    ['warning', 'HTTPRoute', 'p', 'spec.parentRefs[1]'],
    ['warning', 'HTTPRoute', 'p', 'spec.parentRefs[2].namespace'],
    ['warning', 'HTTPRoute', 'p', 'spec.parentRefs[3].name'],
    ['warning', 'HTTPRoute', 'p', 'spec.parentRefs[4].name'],
  ]);
  assert.match(bad.problems[1]!.message, /not HTTP/);
  assert.match(bad.problems[2]!.message, /consumer route/);
});

const REVIEWS_VS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews-vs, namespace: default }
spec:
  hosts: [reviews]
  http:
  - route: [{ destination: { host: reviews-v2 } }]
`;

test('an HTTPRoute takes precedence over a VirtualService for the same service port; the VirtualService is told', () => {
  const withVs = run(routes(SAMPLE_20), REVIEWS_VS);
  assert.deepEqual(
    routesOf(withVs, RC).map((x) => x.name),
    ['default.reviews.0.0'],
  );
  assert.deepEqual(problemsOf(withVs), [['warning', 'VirtualService', 'reviews-vs', 'spec.http']]);
  assert.match(withVs.problems[0]!.message, /HTTPRoute default\/reviews also routes/);
  // On the port the HTTPRoute does not attach to, the VirtualService still routes (to reviews-v2's
  // only port).
  assert.equal(
    routesOf(withVs, `${H('reviews')}:8080`)[0]!.route!.cluster,
    `outbound|9080||${H('reviews-v2')}`,
  );
  // Without the HTTPRoute, the VirtualService is back.
  assert.equal(routesOf(run([], REVIEWS_VS), RC)[0]!.route!.cluster, `outbound|9080||${H('reviews-v2')}`);
});

test('an invalid HTTPRoute is rejected on its own; the good routes stay exactly as they were', () => {
  const good = routes(SAMPLE_20);
  const before = run(good);
  const bad = decodeHttpRoute(
    parseAllDocuments(
      reviewsRoute(
        `  - matches: [{ path: { value: /x } }]
    backendRefs: [{ name: reviews-v1, port: 9080, weight: 2000000 }]`,
        'broken',
      ),
    )[0]!.toJS(),
  );
  assert.equal(bad.value, undefined);
  assert.deepEqual(
    bad.problems.map((p) => [p.severity, p.kind, p.name, p.path]),
    [['error', 'HTTPRoute', 'broken', 'spec.rules[0].backendRefs[0].weight']],
  );
  // What the sources hand on is the valid routes only; their translation is unchanged.
  const after = run([...good, ...(bad.value ? [bad.value] : [])]);
  assert.deepEqual(after.resources, before.resources);
  assert.deepEqual(after.problems, []);
});
