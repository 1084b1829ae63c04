import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type {
  CorsPolicy,
  FaultPolicy,
  HeaderMatcher,
  HeaderMutations,
  Route,
  RouteConfiguration,
  StringMatcher,
} from '../../../src/core/xds/l7-model.ts';
import {
  anyOf,
  decodeListenerBytes,
  decodeRouteConfigurationBytes,
  encodeEnvoy,
} from '../../../src/core/xds/l7-wire.ts';
import { applyHeaderMutations } from '../../../src/waypoint/header-mutations.ts';
import {
  compileRouteTable,
  route as decide,
  type ForwardDecision,
  type LocalReplyDecision,
  type RouteDecision,
  type RouteRequest,
} from '../../../src/waypoint/router.ts';
import { xxHash64 } from '../../../src/waypoint/xxhash64.ts';
import {
  action,
  config,
  match,
  request,
  route,
  seeded,
  sequence,
  vhost,
  weighted,
  NONE,
  type RequestSpec,
} from './l7-builders.ts';

const ALWAYS_ZERO = () => 0;

function run(cfg: RouteConfiguration, req: RouteRequest, random = ALWAYS_ZERO): RouteDecision {
  return decide(compileRouteTable(cfg), req, random);
}

const show = (d: RouteDecision) =>
  JSON.stringify(d, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));

function forward(d: RouteDecision): ForwardDecision {
  if (d.kind !== 'forward') assert.fail(`expected forward, got ${show(d)}`);
  return d;
}

function local(d: RouteDecision, kind: LocalReplyDecision['kind']): LocalReplyDecision {
  if (d.kind === 'forward' || d.kind !== kind) assert.fail(`expected ${kind}, got ${show(d)}`);
  return d;
}

/** A table of routes, each named; returns the name of the route a request takes, or 404. */
function routeName(routes: readonly Route[], req: RouteRequest, random = ALWAYS_ZERO): string {
  const d = run(config([vhost(routes)]), req, random);
  return d.kind === 'not-found' ? '404' : (d.route ?? '');
}

const str = (
  kind: 'exact' | 'prefix' | 'suffix' | 'contains',
  value: string,
  ignoreCase = false,
): StringMatcher => ({
  kind,
  value,
  ignoreCase,
});
const header = (name: string, m: HeaderMatcher['match'], p: Partial<HeaderMatcher> = {}): HeaderMatcher => ({
  name,
  match: m,
  invert: false,
  treatMissingAsEmpty: false,
  ...p,
});
const responseHeaders = (d: { responseHeaders: readonly HeaderMutations[] }) =>
  Object.fromEntries(applyHeaderMutations(new Map(), d.responseHeaders));

describe('virtual host selection', () => {
  const cfg = config([
    vhost([route({ name: 'exact' })], {
      name: 'exact',
      domains: ['reviews.ns.svc.cluster.local:9080', 'reviews'],
    }),
    vhost([route({ name: 'suffix-long' })], { name: 'suffix-long', domains: ['*.ns.svc.cluster.local'] }),
    vhost([route({ name: 'suffix-short' })], { name: 'suffix-short', domains: ['*.local'] }),
    vhost([route({ name: 'prefix' })], { name: 'prefix', domains: ['api.*'] }),
    vhost([route({ name: 'fallback' })], { name: 'fallback', domains: ['*'] }),
  ]);
  const cases: [string, string][] = [
    ['reviews.ns.svc.cluster.local:9080', 'exact'],
    ['REVIEWS', 'exact'],
    ['reviews.ns.svc.cluster.local', 'suffix-long'],
    ['ratings.ns.svc.cluster.local', 'suffix-long'],
    ['other.svc.cluster.local', 'suffix-short'],
    ['api.example.com', 'prefix'],
    ['reviews:9080', 'fallback'],
    ['example.com', 'fallback'],
  ];
  for (const [authority, want] of cases) {
    test(`${authority} → ${want}`, () => {
      assert.equal(run(cfg, request({ authority })).virtualHost, want);
    });
  }

  test('without a catch-all domain an unknown host is a 404', () => {
    const d = run(config([vhost([route()], { domains: ['reviews'] })]), request({ authority: 'ratings' }));
    const r = local(d, 'not-found');
    assert.equal(r.status, 404);
    assert.equal(r.details, 'route_not_found');
  });

  test('a wildcard needs at least one character before the suffix', () => {
    const d = run(config([vhost([route()], { domains: ['*.local'] })]), request({ authority: '.local' }));
    local(d, 'not-found');
  });

  test('ignore_port_in_host_matching compares the host without its port', () => {
    const cfg2 = config([vhost([route()], { domains: ['reviews'] })], { ignorePortInHostMatching: true });
    assert.equal(run(cfg2, request({ authority: 'reviews:9080' })).kind, 'forward');
    assert.equal(run(cfg2, request({ authority: '[fd00::1]' })).kind, 'not-found');
  });
});

describe('path matching', () => {
  const cases: [string, Route['match']['path'], boolean, string, boolean][] = [
    ['prefix', { kind: 'prefix', value: '/api' }, true, '/api/v1', true],
    ['prefix is not segment-aware (as Envoy)', { kind: 'prefix', value: '/api' }, true, '/apiv2', true],
    ['prefix is case sensitive', { kind: 'prefix', value: '/api' }, true, '/API/v1', false],
    ['prefix ignoring case', { kind: 'prefix', value: '/api' }, false, '/API/v1', true],
    ['empty prefix matches all', { kind: 'prefix', value: '' }, true, '/x', true],
    ['exact', { kind: 'exact', value: '/login' }, true, '/login', true],
    ['exact ignores the query', { kind: 'exact', value: '/login' }, true, '/login?next=/', true],
    ['exact is not a prefix', { kind: 'exact', value: '/login' }, true, '/login/x', false],
    ['exact ignoring case', { kind: 'exact', value: '/Login' }, false, '/LOGIN', true],
    ['regex is a full match', { kind: 'regex', regex: '/v[0-9]+' }, true, '/v12', true],
    ['regex must match the whole path', { kind: 'regex', regex: '/v[0-9]+' }, true, '/v12/x', false],
    ['regex ignores the query', { kind: 'regex', regex: '/v[0-9]+' }, true, '/v1?x=/v2/y', true],
    ['case_sensitive does not apply to regex', { kind: 'regex', regex: '/v1' }, false, '/V1', false],
    ['regex with (?i)', { kind: 'regex', regex: '(?i)/v1' }, true, '/V1', true],
    ['regex alternation anchored as a whole', { kind: 'regex', regex: '/a|/b' }, true, '/bc', false],
    ['a fragment is not part of the path', { kind: 'exact', value: '/p' }, true, '/p#frag', true],
  ];
  for (const [name, path, caseSensitive, reqPath, want] of cases) {
    test(name, () => {
      const r = route({ name: 'hit', match: match({ path, caseSensitive }) });
      assert.equal(routeName([r], request({ path: reqPath })), want ? 'hit' : '404');
    });
  }
});

describe('header matching', () => {
  const cases: [string, HeaderMatcher, Record<string, string | string[]>, RequestSpec, boolean][] = [
    [
      'exact',
      header('end-user', { kind: 'string', matcher: str('exact', 'jason') }),
      { 'end-user': 'jason' },
      {},
      true,
    ],
    [
      'exact mismatch',
      header('end-user', { kind: 'string', matcher: str('exact', 'jason') }),
      { 'end-user': 'Jason' },
      {},
      false,
    ],
    [
      'exact ignoring case',
      header('end-user', { kind: 'string', matcher: str('exact', 'jason', true) }),
      { 'end-user': 'JASON' },
      {},
      true,
    ],
    ['prefix', header('x', { kind: 'string', matcher: str('prefix', 'ab') }), { x: 'abc' }, {}, true],
    ['suffix', header('x', { kind: 'string', matcher: str('suffix', 'bc') }), { x: 'abc' }, {}, true],
    ['contains', header('x', { kind: 'string', matcher: str('contains', 'b') }), { x: 'abc' }, {}, true],
    [
      'contains ignoring case',
      header('x', { kind: 'string', matcher: str('contains', 'B', true) }),
      { x: 'abc' },
      {},
      true,
    ],
    [
      'regex full match',
      header('x', { kind: 'string', matcher: { kind: 'regex', regex: 'a.c' } }),
      { x: 'abc' },
      {},
      true,
    ],
    [
      'regex not partial',
      header('x', { kind: 'string', matcher: { kind: 'regex', regex: 'b' } }),
      { x: 'abc' },
      {},
      false,
    ],
    ['present', header('x', { kind: 'present', present: true }), { x: '' }, {}, true],
    ['present but missing', header('x', { kind: 'present', present: true }), {}, {}, false],
    ['present: false and missing', header('x', { kind: 'present', present: false }), {}, {}, true],
    [
      'inverted exact, other value',
      header('x', { kind: 'string', matcher: str('exact', 'a') }, { invert: true }),
      { x: 'b' },
      {},
      true,
    ],
    [
      'inverted exact, same value',
      header('x', { kind: 'string', matcher: str('exact', 'a') }, { invert: true }),
      { x: 'a' },
      {},
      false,
    ],
    [
      'inverted exact never matches a missing header',
      header('x', { kind: 'string', matcher: str('exact', 'a') }, { invert: true }),
      {},
      {},
      false,
    ],
    [
      'inverted exact with treat_missing_header_as_empty',
      header(
        'x',
        { kind: 'string', matcher: str('exact', 'a') },
        { invert: true, treatMissingAsEmpty: true },
      ),
      {},
      {},
      true,
    ],
    [
      'inverted presence = absence',
      header('x', { kind: 'present', present: true }, { invert: true }),
      {},
      {},
      true,
    ],
    ['range', header('x', { kind: 'range', start: 10, end: 20 }), { x: '19' }, {}, true],
    ['range is half-open', header('x', { kind: 'range', start: 10, end: 20 }), { x: '20' }, {}, false],
    ['range needs an integer', header('x', { kind: 'range', start: 10, end: 20 }), { x: '15.5' }, {}, false],
    [
      'several values are comma-joined',
      header('x', { kind: 'string', matcher: str('exact', 'a,b') }),
      { x: ['a', 'b'] },
      {},
      true,
    ],
    [
      ':method',
      header(':method', { kind: 'string', matcher: str('exact', 'POST') }),
      {},
      { method: 'POST' },
      true,
    ],
    [
      ':scheme',
      header(':scheme', { kind: 'string', matcher: str('exact', 'https') }),
      {},
      { scheme: 'https' },
      true,
    ],
    [
      ':authority',
      header(':authority', { kind: 'string', matcher: str('prefix', 'reviews') }),
      {},
      { authority: 'reviews:9080' },
      true,
    ],
    [
      ':path includes the query',
      header(':path', { kind: 'string', matcher: str('suffix', '?a=1') }),
      {},
      { path: '/x?a=1' },
      true,
    ],
  ];
  for (const [name, h, headers, extra, want] of cases) {
    test(name, () => {
      const r = route({ name: 'hit', match: match({ headers: [h] }) });
      assert.equal(routeName([r], request({ headers, ...extra })), want ? 'hit' : '404');
    });
  }
});

describe('query parameters, source, gRPC and fractions', () => {
  const cases: [string, Partial<Route['match']>, RequestSpec, boolean][] = [
    [
      'query exact',
      { queryParameters: [{ name: 'v', matcher: str('exact', '2') }] },
      { path: '/p?v=2' },
      true,
    ],
    [
      'query first value wins',
      { queryParameters: [{ name: 'v', matcher: str('exact', '2') }] },
      { path: '/p?v=1&v=2' },
      false,
    ],
    [
      'query is percent-decoded',
      { queryParameters: [{ name: 'q', matcher: str('exact', 'a b') }] },
      { path: '/p?q=a%20b' },
      true,
    ],
    [
      'query + is not a space',
      { queryParameters: [{ name: 'q', matcher: str('exact', 'a b') }] },
      { path: '/p?q=a+b' },
      false,
    ],
    [
      'query regex',
      { queryParameters: [{ name: 'id', matcher: { kind: 'regex', regex: '\\d+' } }] },
      { path: '/p?id=42' },
      true,
    ],
    [
      'query presence',
      { queryParameters: [{ name: 'debug', matcher: undefined }] },
      { path: '/p?debug' },
      true,
    ],
    [
      'query presence, absent',
      { queryParameters: [{ name: 'debug', matcher: undefined }] },
      { path: '/p?x=1' },
      false,
    ],
    [
      'query empty value',
      { queryParameters: [{ name: 'x', matcher: str('exact', '') }] },
      { path: '/p?x=' },
      true,
    ],
    [
      'source namespace',
      { source: [{ field: { kind: 'namespace' }, matcher: str('exact', 'frontend'), invert: false }] },
      { source: { namespace: 'frontend', labels: {}, principal: '' } },
      true,
    ],
    [
      'source namespace mismatch',
      { source: [{ field: { kind: 'namespace' }, matcher: str('exact', 'frontend'), invert: false }] },
      { source: { namespace: 'backend', labels: {}, principal: '' } },
      false,
    ],
    [
      'source label',
      {
        source: [
          { field: { kind: 'label', label: 'app' }, matcher: str('exact', 'productpage'), invert: false },
        ],
      },
      { source: { namespace: 'ns', labels: { app: 'productpage', version: 'v1' }, principal: '' } },
      true,
    ],
    [
      'source label missing',
      {
        source: [
          { field: { kind: 'label', label: 'app' }, matcher: str('exact', 'productpage'), invert: false },
        ],
      },
      { source: { namespace: 'ns', labels: {}, principal: '' } },
      false,
    ],
    [
      'inverted source label missing',
      {
        source: [
          { field: { kind: 'label', label: 'app' }, matcher: str('exact', 'productpage'), invert: true },
        ],
      },
      { source: { namespace: 'ns', labels: {}, principal: '' } },
      true,
    ],
    [
      'source labels and namespace together',
      {
        source: [
          { field: { kind: 'namespace' }, matcher: str('exact', 'ns') },
          { field: { kind: 'label', label: 'version' }, matcher: str('exact', 'v2') },
        ].map((s) => ({ ...s, invert: false })) as Route['match']['source'],
      },
      { source: { namespace: 'ns', labels: { version: 'v1' }, principal: '' } },
      false,
    ],
    [
      'grpc only, grpc request',
      { grpcOnly: true },
      { headers: { 'content-type': 'application/grpc+proto' } },
      true,
    ],
    [
      'grpc only, JSON request',
      { grpcOnly: true },
      { headers: { 'content-type': 'application/json' } },
      false,
    ],
  ];
  for (const [name, m, extra, want] of cases) {
    test(name, () => {
      const r = route({ name: 'hit', match: match(m) });
      assert.equal(routeName([r], request(extra)), want ? 'hit' : '404');
    });
  }

  test('runtime fraction: one draw per request against numerator/denominator', () => {
    const r = route({ name: 'hit', match: match({ fraction: { numerator: 25, denominator: 100 } }) });
    assert.equal(
      routeName([r], request(), () => 0.24),
      'hit',
    );
    assert.equal(
      routeName([r], request(), () => 0.25),
      '404',
    );
  });
});

describe('route order', () => {
  const jason = route({
    name: 'jason',
    match: match({ headers: [header('end-user', { kind: 'string', matcher: str('exact', 'jason') })] }),
  });
  const v1 = route({ name: 'v1', match: match({ path: { kind: 'prefix', value: '/v1' } }) });
  const all = route({ name: 'all' });
  const dead = route({ name: 'dead', match: match({ path: { kind: 'exact', value: '/v1/x' } }) });
  const table: [string, Route[], RequestSpec, string][] = [
    ['first match wins over a later, more specific one', [v1, dead], { path: '/v1/x' }, 'v1'],
    [
      'all conditions of a match must hold',
      [jason, all],
      { path: '/v1', headers: { 'end-user': 'bob' } },
      'all',
    ],
    ['a header route first', [jason, v1, all], { path: '/v1', headers: { 'end-user': 'jason' } }, 'jason'],
    ['the catch-all takes the rest', [jason, v1, all], { path: '/v2' }, 'all'],
    ['nothing after a catch-all is reached', [all, v1], { path: '/v1' }, 'all'],
    ['no route matches → 404', [jason, v1], { path: '/v2' }, '404'],
  ];
  for (const [name, routes, req, want] of table) {
    test(name, () => assert.equal(routeName(routes, request(req)), want));
  }
});

describe('weighted clusters', () => {
  test('a 90/10 split over 10,000 requests is within 1.5 %', () => {
    const table = compileRouteTable(
      config([
        vhost([
          route({ action: action({ clusters: [weighted('v1', 90), weighted('v2', 10)], weighted: true }) }),
        ]),
      ]),
    );
    const random = seeded(42);
    const counts = new Map<string, number>();
    for (let i = 0; i < 10_000; i++) {
      const d = forward(decide(table, request(), random));
      counts.set(d.cluster, (counts.get(d.cluster) ?? 0) + 1);
    }
    assert.ok(Math.abs((counts.get('v1') ?? 0) / 10_000 - 0.9) < 0.015, JSON.stringify([...counts]));
    assert.ok(Math.abs((counts.get('v2') ?? 0) / 10_000 - 0.1) < 0.015, JSON.stringify([...counts]));
  });

  test('the cumulative walk: value < 90 → first, ≥ 90 → second; weight 0 is never chosen', () => {
    const cfg = config([
      vhost([
        route({
          action: action({
            clusters: [weighted('v1', 90), weighted('v0', 0), weighted('v2', 10)],
            weighted: true,
          }),
        }),
      ]),
    ]);
    assert.equal(forward(run(cfg, request(), () => 0.899)).cluster, 'v1');
    assert.equal(forward(run(cfg, request(), () => 0.9)).cluster, 'v2');
    assert.equal(forward(run(cfg, request(), () => 0.9999)).cluster, 'v2');
  });

  test('per-cluster header mutations come first, then route, virtual host, configuration', () => {
    const h = (name: string, value: string): HeaderMutations => ({
      add: [{ name, value, action: 'overwrite-if-exists-or-add', keepEmptyValue: false }],
      remove: [],
    });
    const cfg = config(
      [
        vhost(
          [
            route({
              action: action({
                clusters: [
                  weighted('v1', 1, {
                    requestHeaders: h('x', 'cluster'),
                    responseHeaders: h('y', 'cluster'),
                  }),
                ],
              }),
              requestHeaders: h('x', 'route'),
              responseHeaders: h('y', 'route'),
            }),
          ],
          { requestHeaders: h('x', 'vhost'), responseHeaders: h('y', 'vhost') },
        ),
      ],
      { requestHeaders: h('x', 'config'), responseHeaders: h('y', 'config') },
    );
    const d = forward(run(cfg, request()));
    const value = (stages: readonly HeaderMutations[]) => stages.map((s) => s.add[0]?.value);
    assert.deepEqual(value(d.requestHeaders), ['cluster', 'route', 'vhost', 'config']);
    assert.deepEqual(value(d.responseHeaders), ['cluster', 'route', 'vhost', 'config']);
    // Later stages win: the least specific level, unless most_specific_header_mutations_wins.
    assert.deepEqual(applyHeaderMutations(new Map(), d.requestHeaders).get('x'), ['config']);
    const d2 = forward(run({ ...cfg, mostSpecificHeaderMutationsWins: true }, request()));
    assert.deepEqual(value(d2.requestHeaders), ['cluster', 'config', 'vhost', 'route']);
    assert.deepEqual(applyHeaderMutations(new Map(), d2.requestHeaders).get('x'), ['route']);
  });
});

describe('rewrites', () => {
  const cases: [string, Route, string, string][] = [
    [
      'prefix rewrite replaces only the matched prefix and keeps the query',
      route({
        match: match({ path: { kind: 'prefix', value: '/api/v1' } }),
        action: action({ prefixRewrite: '/v2' }),
      }),
      '/api/v1/users?id=3',
      '/v2/users?id=3',
    ],
    [
      'prefix rewrite to /',
      route({
        match: match({ path: { kind: 'prefix', value: '/app/' } }),
        action: action({ prefixRewrite: '/' }),
      }),
      '/app/x',
      '/x',
    ],
    [
      'prefix rewrite after a case-insensitive prefix match',
      route({
        match: match({ path: { kind: 'prefix', value: '/api' }, caseSensitive: false }),
        action: action({ prefixRewrite: '/svc' }),
      }),
      '/API/users',
      '/svc/users',
    ],
    [
      'prefix rewrite of an exact match replaces the whole path',
      route({
        match: match({ path: { kind: 'exact', value: '/old' } }),
        action: action({ prefixRewrite: '/new/place' }),
      }),
      '/old?x=1',
      '/new/place?x=1',
    ],
    [
      'prefix rewrite of a regex match replaces the whole path',
      route({
        match: match({ path: { kind: 'regex', regex: '/v[0-9]/.*' } }),
        action: action({ prefixRewrite: '/latest' }),
      }),
      '/v1/items?q',
      '/latest?q',
    ],
    [
      'regex rewrite with captures',
      route({
        match: match({ path: { kind: 'prefix', value: '/service/' } }),
        action: action({
          regexRewrite: { regex: '^/service/([^/]+)(/.*)$', substitution: '\\2/instance/\\1' },
        }),
      }),
      '/service/foo/v1/api?x=1',
      '/v1/api/instance/foo?x=1',
    ],
    [
      'regex rewrite replaces every match',
      route({ action: action({ regexRewrite: { regex: 'one', substitution: 'two' } }) }),
      '/xxx/one/yyy/one/zzz',
      '/xxx/two/yyy/two/zzz',
    ],
    [
      'regex rewrite with \\0 and a literal backslash',
      route({ action: action({ regexRewrite: { regex: 'ab', substitution: '[\\0]\\\\' } }) }),
      '/ab',
      '/[ab]\\',
    ],
    ['no rewrite keeps the path', route(), '/a?b', '/a?b'],
  ];
  for (const [name, r, path, want] of cases) {
    test(name, () => assert.equal(forward(run(config([vhost([r])]), request({ path }))).path, want));
  }

  test('host rewrite: the route’s wins over the weighted cluster’s', () => {
    const withCluster = route({
      action: action({ clusters: [weighted('c', 1, { hostRewrite: 'cluster.example' })] }),
    });
    assert.equal(forward(run(config([vhost([withCluster])]), request())).authority, 'cluster.example');
    const both = route({
      action: action({
        hostRewrite: 'route.example',
        clusters: [weighted('c', 1, { hostRewrite: 'cluster.example' })],
      }),
    });
    assert.equal(forward(run(config([vhost([both])]), request())).authority, 'route.example');
    assert.equal(forward(run(config([vhost([route()])]), request({ authority: 'a:80' }))).authority, 'a:80');
  });
});

describe('redirects', () => {
  const redirect = (p: Partial<Extract<Route['action'], { kind: 'redirect' }>>, m = match()) =>
    route({
      match: m,
      action: {
        kind: 'redirect',
        scheme: undefined,
        host: undefined,
        port: undefined,
        path: undefined,
        status: 301,
        stripQuery: false,
        ...p,
      },
    });
  const cases: [string, Route, RequestSpec, number, string][] = [
    [
      'path redirect and host (Istio sample 12)',
      redirect({
        path: { kind: 'path', value: '/v1/bookRatings' },
        host: 'newratings.default.svc.cluster.local',
      }),
      { authority: 'ratings.prod.svc.cluster.local:9080', path: '/v1/getProductRatings' },
      301,
      'http://newratings.default.svc.cluster.local/v1/bookRatings',
    ],
    [
      'path redirect keeps the request query',
      redirect({ path: { kind: 'path', value: '/new' } }),
      { authority: 'h', path: '/old?a=1&b=2' },
      301,
      'http://h/new?a=1&b=2',
    ],
    [
      'a query in path_redirect replaces the request’s',
      redirect({ path: { kind: 'path', value: '/new?x=y' }, stripQuery: true }),
      { authority: 'h', path: '/old?a=1' },
      301,
      'http://h/new?x=y',
    ],
    [
      'prefix rewrite keeps the rest and the query',
      redirect({ path: { kind: 'prefix', value: '/v2' } }, match({ path: { kind: 'prefix', value: '/v1' } })),
      { authority: 'h', path: '/v1/items?page=2' },
      301,
      'http://h/v2/items?page=2',
    ],
    [
      'strip_query',
      redirect({ stripQuery: true, status: 302 }),
      { authority: 'h', path: '/p?a=1' },
      302,
      'http://h/p',
    ],
    [
      'https redirect drops the default :80',
      redirect({ scheme: 'https', status: 308 }),
      { authority: 'h:80', path: '/p' },
      308,
      'https://h/p',
    ],
    [
      'https redirect keeps a non-default port',
      redirect({ scheme: 'https' }),
      { authority: 'h:8080', path: '/p' },
      301,
      'https://h:8080/p',
    ],
    [
      'port redirect replaces the port',
      redirect({ port: 8443, status: 307 }),
      { authority: 'h:8080', path: '/p' },
      307,
      'http://h:8443/p',
    ],
    [
      'host and port redirect',
      redirect({ host: 'other', port: 9000, status: 303 }),
      { authority: 'h:8080', path: '/' },
      303,
      'http://other:9000/',
    ],
    [
      'host redirect drops the request port',
      redirect({ host: 'other' }),
      { authority: 'h:8080', path: '/x' },
      301,
      'http://other/x',
    ],
    [
      'scheme redirect from https to http drops :443',
      redirect({ scheme: 'http' }),
      { scheme: 'https', authority: 'h:443', path: '/x' },
      301,
      'http://h/x',
    ],
    [
      'regex redirect',
      redirect({ path: { kind: 'regex', rewrite: { regex: '^/u/(\\d+)$', substitution: '/users/\\1' } } }),
      { authority: 'h', path: '/u/7?full' },
      301,
      'http://h/users/7?full',
    ],
    [
      'IPv6 authority',
      redirect({ scheme: 'https' }),
      { authority: '[fd00::1]:80', path: '/' },
      301,
      'https://[fd00::1]/',
    ],
  ];
  for (const [name, r, req, status, location] of cases) {
    test(name, () => {
      const d = local(run(config([vhost([r])]), request(req)), 'redirect');
      assert.equal(d.status, status);
      assert.deepEqual(responseHeaders(d).location, [location]);
      assert.equal(d.body, undefined);
    });
  }
});

test('direct response: status, body and the route’s response headers', () => {
  const r = route({
    action: { kind: 'direct-response', status: 503, body: new TextEncoder().encode('unavailable') },
    responseHeaders: {
      add: [
        {
          name: 'content-type',
          value: 'text/plain',
          action: 'overwrite-if-exists-or-add',
          keepEmptyValue: false,
        },
      ],
      remove: [],
    },
  });
  const d = local(run(config([vhost([r])]), request()), 'direct-response');
  assert.equal(d.status, 503);
  assert.equal(new TextDecoder().decode(d.body), 'unavailable');
  assert.deepEqual(responseHeaders(d), { 'content-type': ['text/plain'] });
});

describe('fault injection', () => {
  const fault = (f: Partial<FaultPolicy>): Route['fault'] => ({
    kind: 'config',
    config: { delay: undefined, abort: undefined, ...f },
  });
  const pct = (n: number) => ({ numerator: n, denominator: 100 as const });

  for (const percent of [0, 50, 100]) {
    test(`abort and delay at ${percent} % over 10,000 requests`, () => {
      const table = compileRouteTable(
        config([
          vhost([
            route({
              fault: fault({
                delay: { fixedDelayMs: 7000, percentage: pct(percent) },
                abort: { httpStatus: 555, percentage: pct(percent) },
              }),
            }),
          ]),
        ]),
      );
      const random = seeded(percent + 1);
      let delayed = 0;
      let aborted = 0;
      for (let i = 0; i < 10_000; i++) {
        const d = decide(table, request(), random);
        if (d.delayMs === 7000) delayed++;
        if (d.kind === 'fault-abort') {
          aborted++;
          assert.equal(d.status, 555);
          assert.equal(new TextDecoder().decode(d.body), 'fault filter abort');
        }
      }
      for (const n of [delayed, aborted]) assert.ok(Math.abs(n / 10_000 - percent / 100) < 0.015, `${n}`);
    });
  }

  test('fractions of ten thousand and a million', () => {
    const route1 = route({
      fault: fault({ abort: { httpStatus: 500, percentage: { numerator: 1, denominator: 10_000 } } }),
    });
    assert.equal(run(config([vhost([route1])]), request(), () => 0.0000999).kind, 'fault-abort');
    assert.equal(run(config([vhost([route1])]), request(), () => 0.0001).kind, 'forward');
  });

  test('a gRPC abort answers HTTP 200 with the grpc-status', () => {
    const d = local(
      run(
        config([vhost([route({ fault: fault({ abort: { grpcStatus: 14, percentage: pct(100) } }) })])]),
        request(),
      ),
      'fault-abort',
    );
    assert.equal(d.status, 200);
    assert.equal(d.grpcStatus, 14);
  });

  test('delay then abort; the route’s response headers are applied to the abort', () => {
    const r = route({
      fault: fault({
        delay: { fixedDelayMs: 100, percentage: pct(100) },
        abort: { httpStatus: 503, percentage: pct(100) },
      }),
      responseHeaders: {
        add: [{ name: 'x-r', value: '1', action: 'append-if-exists-or-add', keepEmptyValue: false }],
        remove: [],
      },
    });
    const d = local(run(config([vhost([r])]), request()), 'fault-abort');
    assert.equal(d.delayMs, 100);
    assert.deepEqual(responseHeaders(d), { 'x-r': ['1'] });
  });

  test('no percentage means no fault (Envoy’s default 0 %)', () => {
    const d = run(
      config([vhost([route({ fault: fault({ delay: { fixedDelayMs: 5, percentage: pct(0) } }) })])]),
      request(),
    );
    assert.equal(d.delayMs, 0);
  });

  test('the virtual host’s fault applies unless the route disables the filter', () => {
    const vhFault = fault({ abort: { httpStatus: 500, percentage: pct(100) } });
    assert.equal(run(config([vhost([route()], { fault: vhFault })]), request()).kind, 'fault-abort');
    assert.equal(
      run(config([vhost([route({ fault: { kind: 'disabled' } })], { fault: vhFault })]), request()).kind,
      'forward',
    );
  });

  test('without the fault filter in the listener the setting does nothing', () => {
    const cfg = config([
      vhost([route({ fault: fault({ abort: { httpStatus: 500, percentage: pct(100) } }) })]),
    ]);
    const table = compileRouteTable(cfg, [{ name: 'envoy.filters.http.router', kind: 'router' }]);
    assert.equal(decide(table, request(), ALWAYS_ZERO).kind, 'forward');
  });

  test('no route: no fault, a plain 404', () => {
    const cfg = config([
      vhost([
        route({
          match: match({ path: { kind: 'exact', value: '/x' } }),
          fault: fault({ abort: { httpStatus: 500, percentage: pct(100) } }),
        }),
      ]),
    ]);
    assert.equal(run(cfg, request({ path: '/y' })).kind, 'not-found');
  });
});

describe('mirrors', () => {
  test('fractions are sampled per mirror; authority gets -shadow before the port', () => {
    const r = route({
      action: action({
        mirrors: [
          { cluster: 'always', fraction: undefined, disableShadowHostSuffix: false },
          { cluster: 'half', fraction: { numerator: 50, denominator: 100 }, disableShadowHostSuffix: false },
          { cluster: 'never', fraction: { numerator: 0, denominator: 100 }, disableShadowHostSuffix: false },
          { cluster: 'plain', fraction: undefined, disableShadowHostSuffix: true },
        ],
      }),
    });
    const table = compileRouteTable(config([vhost([r])]));
    const random = seeded(7);
    const counts = new Map<string, number>();
    for (let i = 0; i < 10_000; i++) {
      for (const m of forward(decide(table, request({ authority: 'httpbin:8000' }), random)).mirrors) {
        counts.set(m.cluster, (counts.get(m.cluster) ?? 0) + 1);
        assert.equal(m.authority, m.cluster === 'plain' ? 'httpbin:8000' : 'httpbin-shadow:8000');
      }
    }
    assert.equal(counts.get('always'), 10_000);
    assert.equal(counts.get('plain'), 10_000);
    assert.equal(counts.get('never'), undefined);
    assert.ok(Math.abs((counts.get('half') ?? 0) / 10_000 - 0.5) < 0.02);
  });

  test('an authority without a port', () => {
    const r = route({
      action: action({ mirrors: [{ cluster: 'm', fraction: undefined, disableShadowHostSuffix: false }] }),
    });
    assert.equal(
      forward(run(config([vhost([r])]), request({ authority: 'httpbin' }))).mirrors[0]?.authority,
      'httpbin-shadow',
    );
  });
});

describe('CORS', () => {
  const policy = (p: Partial<CorsPolicy> = {}): CorsPolicy => ({
    allowOrigins: [str('exact', 'https://example.com')],
    allowMethods: 'POST,GET',
    allowHeaders: 'X-Foo-Bar',
    exposeHeaders: 'X-Exposed',
    maxAge: '86400',
    allowCredentials: false,
    allowPrivateNetworkAccess: undefined,
    forwardNotMatchingPreflights: undefined,
    enabled: undefined,
    ...p,
  });
  const withCors = (p: Partial<CorsPolicy> = {}) =>
    config([vhost([route({ cors: { kind: 'config', config: policy(p) } })])]);
  const preflight = (origin: string) =>
    request({ method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST' } });

  test('an allowed preflight is answered here (Istio sample 15)', () => {
    const d = local(run(withCors(), preflight('https://example.com')), 'cors-preflight');
    assert.equal(d.status, 200);
    assert.deepEqual(responseHeaders(d), {
      'access-control-allow-origin': ['https://example.com'],
      'access-control-allow-methods': ['POST,GET'],
      'access-control-allow-headers': ['X-Foo-Bar'],
      'access-control-max-age': ['86400'],
    });
  });

  test('a preflight from another origin is forwarded, without CORS headers', () => {
    const d = forward(run(withCors(), preflight('https://evil.example')));
    assert.deepEqual(responseHeaders(d), {});
  });

  test('unless forward_not_matching_preflights is false: then an empty 200', () => {
    const d = local(
      run(withCors({ forwardNotMatchingPreflights: false }), preflight('https://evil.example')),
      'cors-preflight',
    );
    assert.deepEqual(responseHeaders(d), {});
  });

  test('a simple request from an allowed origin gets allow-origin, credentials and expose headers', () => {
    const d = forward(
      run(withCors({ allowCredentials: true }), request({ headers: { origin: 'https://example.com' } })),
    );
    assert.deepEqual(responseHeaders(d), {
      'access-control-allow-origin': ['https://example.com'],
      'access-control-allow-credentials': ['true'],
      'access-control-expose-headers': ['X-Exposed'],
    });
  });

  test('requests without Origin, or from other origins, are untouched', () => {
    assert.deepEqual(responseHeaders(forward(run(withCors(), request()))), {});
    assert.deepEqual(
      responseHeaders(forward(run(withCors(), request({ headers: { origin: 'https://x' } })))),
      {},
    );
  });

  test('OPTIONS without access-control-request-method is a normal CORS request', () => {
    const d = forward(
      run(withCors(), request({ method: 'OPTIONS', headers: { origin: 'https://example.com' } })),
    );
    assert.deepEqual(responseHeaders(d)['access-control-allow-origin'], ['https://example.com']);
  });

  test('an allow-origin matcher that matches "*" allows every origin', () => {
    const d = local(
      run(withCors({ allowOrigins: [str('exact', '*')] }), preflight('https://any')),
      'cors-preflight',
    );
    assert.deepEqual(responseHeaders(d)['access-control-allow-origin'], ['https://any']);
  });

  test('origins match with regex and ignoring case', () => {
    const cfg = withCors({
      allowOrigins: [{ kind: 'regex', regex: 'https://.*\\.example\\.com' }, str('exact', 'HTTP://A', true)],
    });
    assert.equal(run(cfg, preflight('https://shop.example.com')).kind, 'cors-preflight');
    assert.equal(run(cfg, preflight('http://a')).kind, 'cors-preflight');
    assert.equal(run(cfg, preflight('https://example.com.evil')).kind, 'forward');
  });

  test('route and virtual host policies merge field by field, the route’s first', () => {
    const cfg = config([
      vhost([route({ cors: { kind: 'config', config: policy({ allowMethods: '', maxAge: '60' }) } })], {
        cors: { kind: 'config', config: policy({ allowMethods: 'PUT', maxAge: '10' }) },
      }),
    ]);
    const h = responseHeaders(local(run(cfg, preflight('https://example.com')), 'cors-preflight'));
    assert.deepEqual(h['access-control-allow-methods'], ['PUT']);
    assert.deepEqual(h['access-control-max-age'], ['60']);
  });

  test('filter order: with fault first a preflight can be aborted; with CORS first it cannot', () => {
    const cfg = config([
      vhost([
        route({
          cors: { kind: 'config', config: policy() },
          fault: {
            kind: 'config',
            config: {
              delay: undefined,
              abort: { httpStatus: 503, percentage: { numerator: 100, denominator: 100 } },
            },
          },
        }),
      ]),
    ]);
    const faultFirst = compileRouteTable(cfg);
    assert.equal(decide(faultFirst, preflight('https://example.com'), ALWAYS_ZERO).kind, 'fault-abort');
    const corsFirst = compileRouteTable(cfg, [
      { name: 'cors', kind: 'cors' },
      { name: 'fault', kind: 'fault' },
      { name: 'router', kind: 'router' },
    ]);
    assert.equal(decide(corsFirst, preflight('https://example.com'), ALWAYS_ZERO).kind, 'cors-preflight');
    // …and an abort after CORS carries the CORS headers.
    const abort = local(
      decide(corsFirst, request({ headers: { origin: 'https://example.com' } }), ALWAYS_ZERO),
      'fault-abort',
    );
    assert.deepEqual(responseHeaders(abort)['access-control-allow-origin'], ['https://example.com']);
  });

  test('filter_enabled 0 % turns the policy off', () => {
    const d = run(
      withCors({ enabled: { numerator: 0, denominator: 100 } }),
      preflight('https://example.com'),
    );
    assert.equal(d.kind, 'forward');
  });
});

describe('header mutations', () => {
  const add = (
    name: string,
    value: string,
    act: HeaderMutations['add'][number]['action'],
    keepEmptyValue = false,
  ) => ({
    name,
    value,
    action: act,
    keepEmptyValue,
  });
  const cases: [string, Record<string, string[]>, HeaderMutations[], Record<string, string[]>][] = [
    [
      'append adds a value',
      { x: ['1'] },
      [{ add: [add('x', '2', 'append-if-exists-or-add')], remove: [] }],
      { x: ['1', '2'] },
    ],
    [
      'overwrite replaces every value',
      { x: ['1', '2'] },
      [{ add: [add('x', '3', 'overwrite-if-exists-or-add')], remove: [] }],
      { x: ['3'] },
    ],
    [
      'add-if-absent leaves a present header',
      { x: ['1'] },
      [{ add: [add('x', '2', 'add-if-absent')], remove: [] }],
      { x: ['1'] },
    ],
    [
      'add-if-absent adds a missing one',
      {},
      [{ add: [add('x', '2', 'add-if-absent')], remove: [] }],
      { x: ['2'] },
    ],
    [
      'overwrite-if-exists skips a missing header',
      {},
      [{ add: [add('x', '2', 'overwrite-if-exists')], remove: [] }],
      {},
    ],
    [
      'overwrite-if-exists replaces a present one',
      { x: ['1'] },
      [{ add: [add('x', '2', 'overwrite-if-exists')], remove: [] }],
      { x: ['2'] },
    ],
    [
      'remove happens before add in one stage',
      { x: ['1'] },
      [{ add: [add('x', '2', 'append-if-exists-or-add')], remove: ['x'] }],
      { x: ['2'] },
    ],
    [
      'overwrites run before appends in one stage, whatever their order',
      {},
      [
        {
          add: [add('x', 'a', 'append-if-exists-or-add'), add('x', 'o', 'overwrite-if-exists-or-add')],
          remove: [],
        },
      ],
      { x: ['o', 'a'] },
    ],
    [
      'add-if-absent looks at the headers before the stage’s own adds',
      {},
      [{ add: [add('x', 'a', 'append-if-exists-or-add'), add('x', 'b', 'add-if-absent')], remove: [] }],
      { x: ['a', 'b'] },
    ],
    ['an empty value is dropped…', {}, [{ add: [add('x', '', 'append-if-exists-or-add')], remove: [] }], {}],
    [
      '…unless keep_empty_value',
      {},
      [{ add: [add('x', '', 'append-if-exists-or-add', true)], remove: [] }],
      { x: [''] },
    ],
    [
      'a later stage sees the earlier one',
      {},
      [
        { add: [add('x', '1', 'append-if-exists-or-add')], remove: [] },
        { add: [add('x', '2', 'add-if-absent')], remove: [] },
        { add: [], remove: ['y'] },
      ],
      { x: ['1'] },
    ],
  ];
  for (const [name, before, stages, after] of cases) {
    test(name, () => {
      const out = applyHeaderMutations(new Map(Object.entries(before)), stages);
      assert.deepEqual(Object.fromEntries(out), after);
    });
  }

  test('the input headers are not modified', () => {
    const input = new Map([['x', ['1']]]);
    applyHeaderMutations(input, [{ add: [add('x', '2', 'append-if-exists-or-add')], remove: [] }]);
    assert.deepEqual(input.get('x'), ['1']);
  });
});

describe('hash policies', () => {
  const withHash = (hashPolicies: Extract<Route['action'], { kind: 'route' }>['hashPolicies']) =>
    config([vhost([route({ action: action({ hashPolicies }) })])]);

  test('a header is hashed with xxHash64, as Envoy', () => {
    const d = forward(
      run(
        withHash([{ kind: 'header', name: 'x-user', terminal: false }]),
        request({ headers: { 'x-user': 'jason' } }),
      ),
    );
    assert.equal(d.hashKey, xxHash64('jason'));
  });

  test('repeated header values hash the same in any order', () => {
    const cfg = withHash([{ kind: 'header', name: 'x', terminal: false }]);
    const a = forward(run(cfg, request({ headers: { x: ['b', 'a'] } }))).hashKey;
    const b = forward(run(cfg, request({ headers: { x: ['a', 'b'] } }))).hashKey;
    assert.equal(a, b);
    assert.equal(a, xxHash64('ab'));
  });

  test('no header, no key', () => {
    assert.equal(
      forward(run(withHash([{ kind: 'header', name: 'x', terminal: false }]), request())).hashKey,
      undefined,
    );
  });

  test('a present cookie (quotes removed)', () => {
    const d = forward(
      run(
        withHash([{ kind: 'cookie', name: 'user', ttlMs: 0, path: '', terminal: false }]),
        request({ headers: { cookie: 'a=1; user="u-7"' } }),
      ),
    );
    assert.equal(d.hashKey, xxHash64('u-7'));
    assert.deepEqual(responseHeaders(d), {});
  });

  test('a missing cookie with a ttl is generated and set on the response', () => {
    const cfg = withHash([{ kind: 'cookie', name: 'user', ttlMs: 3_600_000, path: '/app', terminal: false }]);
    const req = request({ source: { namespace: 'ns', labels: {}, principal: '', address: '10.0.0.5' } });
    const d = forward(run(cfg, req));
    const value = xxHash64('10.0.0.5').toString(16).padStart(16, '0');
    assert.equal(d.hashKey, xxHash64(value));
    assert.deepEqual(responseHeaders(d), {
      'set-cookie': [`user="${value}"; Max-Age=3600; Path=/app; HttpOnly`],
    });
  });

  test('a missing cookie without a ttl gives no key', () => {
    const d = forward(
      run(
        withHash([{ kind: 'cookie', name: 'user', ttlMs: undefined, path: '', terminal: false }]),
        request(),
      ),
    );
    assert.equal(d.hashKey, undefined);
  });

  test('source IP and query parameter', () => {
    const src = { namespace: 'ns', labels: {}, principal: '', address: '10.0.0.9' };
    assert.equal(
      forward(run(withHash([{ kind: 'source-ip', terminal: false }]), request({ source: src }))).hashKey,
      xxHash64('10.0.0.9'),
    );
    const q = forward(
      run(
        withHash([{ kind: 'query-parameter', name: 'id', terminal: false }]),
        request({ path: '/p?id=a%20b' }),
      ),
    );
    assert.equal(q.hashKey, xxHash64('a%20b'));
  });

  test('several policies combine (rotate left, xor); a terminal one stops the rest', () => {
    const h1 = xxHash64('a');
    const h2 = xxHash64('b');
    const rotl = ((h1 << 1n) | (h1 >> 63n)) & 0xffffffffffffffffn;
    const both = forward(
      run(
        withHash([
          { kind: 'header', name: 'x', terminal: false },
          { kind: 'header', name: 'y', terminal: false },
        ]),
        request({ headers: { x: 'a', y: 'b' } }),
      ),
    );
    assert.equal(both.hashKey, rotl ^ h2);
    const terminal = forward(
      run(
        withHash([
          { kind: 'header', name: 'x', terminal: true },
          { kind: 'header', name: 'y', terminal: false },
        ]),
        request({ headers: { x: 'a', y: 'b' } }),
      ),
    );
    assert.equal(terminal.hashKey, h1);
  });
});

test('retry policy: the route’s, else the virtual host’s; timeouts pass through', () => {
  const rp = (numRetries: number) => ({
    retryOn: ['5xx' as const],
    numRetries,
    perTryTimeoutMs: 0,
    retriableStatusCodes: [],
    retryPreviousHosts: false,
    hostSelectionRetryMaxAttempts: 1,
    backOff: { baseIntervalMs: 25, maxIntervalMs: 250 },
  });
  const own = forward(
    run(
      config([
        vhost([route({ action: action({ retryPolicy: rp(3), timeoutMs: 500 }) })], { retryPolicy: rp(1) }),
      ]),
      request(),
    ),
  );
  assert.equal(own.retryPolicy?.numRetries, 3);
  assert.equal(own.timeoutMs, 500);
  const inherited = forward(run(config([vhost([route()], { retryPolicy: rp(1) })]), request()));
  assert.equal(inherited.retryPolicy?.numRetries, 1);
});

test('decisions name the virtual host and route; the table is reusable', () => {
  const table = compileRouteTable(config([vhost([route({ name: 'r1' })], { name: 'v' })]));
  for (let i = 0; i < 3; i++) {
    const d = decide(table, request(), sequence(0.5));
    assert.equal(d.virtualHost, 'v');
    assert.equal(d.route, 'r1');
  }
  assert.equal(NONE.add.length, 0);
});

test('from the wire: a decoded listener and route configuration route a request', () => {
  const rc = decodeRouteConfigurationBytes(
    encodeEnvoy('envoy.config.route.v3.RouteConfiguration', {
      name: 'reviews:9080',
      virtual_hosts: [
        {
          name: 'reviews',
          domains: ['reviews', 'reviews:9080'],
          routes: [
            {
              match: {
                prefix: '/',
                headers: [{ name: 'end-user', string_match: { exact: 'jason' } }],
              },
              route: { cluster: 'outbound|9080|v2|reviews.ns.svc.cluster.local', timeout: { seconds: 0 } },
            },
            {
              match: { prefix: '/' },
              route: {
                weighted_clusters: {
                  clusters: [
                    { name: 'outbound|9080|v1|reviews.ns.svc.cluster.local', weight: { value: 90 } },
                    { name: 'outbound|9080|v3|reviews.ns.svc.cluster.local', weight: { value: 10 } },
                  ],
                },
              },
            },
          ],
        },
      ],
    }),
  );
  const listener = decodeListenerBytes(
    encodeEnvoy('envoy.config.listener.v3.Listener', {
      name: 'reviews:9080',
      api_listener: {
        api_listener: anyOf(
          'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
          {
            rds: { route_config_name: 'reviews:9080', config_source: { ads: {} } },
            http_filters: [
              { name: 'router', typed_config: anyOf('envoy.extensions.filters.http.router.v3.Router', {}) },
            ],
          },
        ),
      },
    }),
  );
  assert.ok(rc.ok && listener.ok);
  const table = compileRouteTable(rc.value, listener.value.httpFilters);
  assert.deepEqual(table.filters, []);
  const jason = forward(
    decide(table, request({ authority: 'reviews:9080', headers: { 'end-user': 'jason' } }), seeded(1)),
  );
  assert.equal(jason.cluster, 'outbound|9080|v2|reviews.ns.svc.cluster.local');
  assert.equal(jason.timeoutMs, 0);
  const other = forward(decide(table, request({ authority: 'reviews' }), () => 0.95));
  assert.equal(other.cluster, 'outbound|9080|v3|reviews.ns.svc.cluster.local');
  assert.equal(other.timeoutMs, 15_000);
  assert.equal(decide(table, request({ authority: 'ratings' }), seeded(1)).kind, 'not-found');
});
