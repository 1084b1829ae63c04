/**
 * Gateway API HTTPRoute decoding (translate/l7/decode-http-route.ts): the API server's defaults,
 * every refusal with its field path, warnings that keep the route, and the YAML source reporting
 * file:line while keeping the other objects of the file.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse } from 'yaml';
import { buildSnapshot, decodeKubeYaml } from '../../../src/controller/files/kube-yaml.ts';
import { decodeHttpRoute } from '../../../src/controller/translate/l7/decode-http-route.ts';

/** Istio's sample 20, the repository's copy (istio-samples/20-httproute-reviews-90-10-waypoint.yaml). */
const SAMPLE_20 = readFileSync(
  new URL('../../fixtures/l7/istio-samples/20-httproute-reviews-90-10-waypoint.yaml', import.meta.url),
  'utf8',
);

/** An HTTPRoute `r` for Service reviews with these rules (none: no `rules` field); `spec` overrides. */
function route(rules: unknown, spec: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'r', namespace: 'default' },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'reviews' }],
      ...(rules === undefined ? {} : { rules }),
      ...spec,
    },
  };
}

const backend = { name: 'reviews-v1', port: 9080 };

test('sample 20 decodes with the defaults the API server would fill in', () => {
  const d = decodeHttpRoute(parse(SAMPLE_20));
  assert.deepEqual(d.problems, []);
  assert.deepEqual(d.value, {
    namespace: 'default',
    name: 'reviews',
    creationTimestamp: '',
    parentRefs: [
      { group: '', kind: 'Service', namespace: 'default', name: 'reviews', sectionName: '', port: 9080 },
    ],
    hostnames: [],
    rules: [
      {
        name: '',
        matches: [
          { path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [], method: undefined },
        ],
        requestHeaders: undefined,
        responseHeaders: undefined,
        redirect: undefined,
        rewrite: undefined,
        mirrors: [],
        backendRefs: [
          {
            group: '',
            kind: 'Service',
            name: 'reviews-v1',
            namespace: 'default',
            port: 9080,
            weight: 90,
            requestHeaders: undefined,
            responseHeaders: undefined,
          },
          {
            group: '',
            kind: 'Service',
            name: 'reviews-v2',
            namespace: 'default',
            port: 9080,
            weight: 10,
            requestHeaders: undefined,
            responseHeaders: undefined,
          },
        ],
        requestTimeout: undefined,
        backendRequestTimeout: undefined,
      },
    ],
  });
});

test('defaults: parentRef kind Gateway, weight 1, path prefix /, redirect 302, one default rule', () => {
  const d = decodeHttpRoute(
    route(
      [
        { matches: [{ headers: [{ name: 'x', value: 'y' }] }], backendRefs: [backend] },
        { filters: [{ type: 'RequestRedirect', requestRedirect: { scheme: 'https' } }] },
      ],
      { parentRefs: [{ name: 'waypoint' }] },
    ),
  );
  assert.deepEqual(d.problems, []);
  const v = d.value!;
  assert.deepEqual(v.parentRefs[0], {
    group: 'gateway.networking.k8s.io',
    kind: 'Gateway',
    namespace: 'default',
    name: 'waypoint',
    sectionName: '',
    port: undefined,
  });
  assert.deepEqual(v.rules[0]!.matches[0]!.path, { type: 'PathPrefix', value: '/' });
  assert.deepEqual(v.rules[0]!.matches[0]!.headers, [{ type: 'Exact', name: 'x', value: 'y' }]);
  assert.equal(v.rules[0]!.backendRefs[0]!.weight, 1);
  assert.equal(v.rules[1]!.redirect!.statusCode, 302);
  assert.deepEqual(v.rules[1]!.matches, [
    { path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [], method: undefined },
  ]);
  const noRules = decodeHttpRoute(route(undefined));
  assert.deepEqual(noRules.problems, []);
  assert.equal(noRules.value!.rules.length, 1);
  assert.deepEqual(noRules.value!.rules[0]!.backendRefs, []);
});

test('v1beta1 is read too; other versions and kinds are refused', () => {
  const v1beta1 = decodeHttpRoute({
    ...route([{ backendRefs: [backend] }]),
    apiVersion: 'gateway.networking.k8s.io/v1beta1',
  });
  assert.deepEqual(v1beta1.problems, []);
  const alpha = decodeHttpRoute({
    ...route([{ backendRefs: [backend] }]),
    apiVersion: 'gateway.networking.k8s.io/v1alpha2',
  });
  assert.equal(alpha.value, undefined);
  assert.deepEqual(
    alpha.problems.map((p) => [p.kind, p.namespace, p.name, p.path]),
    [['HTTPRoute', 'default', 'r', 'apiVersion']],
  );
});

const rule = (r: Record<string, unknown>) => [r];

/** [what, rules (or `{ spec }`: fields of the spec to override), field path, message pattern]. */
const ERRORS: [string, unknown, string, RegExp][] = [
  [
    'parentRef without a name',
    { spec: { parentRefs: [{ kind: 'Service' }] } },
    'spec.parentRefs[0].name',
    /required/,
  ],
  [
    'parentRef port out of range',
    { spec: { parentRefs: [{ kind: 'Service', group: '', name: 'a', port: 70000 }] } },
    'spec.parentRefs[0].port',
    /70000/,
  ],
  [
    'a wildcard in the middle of a hostname',
    { spec: { parentRefs: [], hostnames: ['a.*.example.com'] } },
    'spec.hostnames[0]',
    /host name/,
  ],
  ['an unknown spec field', { spec: { parentRefs: [], rule: [] } }, 'spec.rule', /unknown field/],
  [
    'an unknown path type',
    rule({ matches: [{ path: { type: 'Prefix', value: '/' } }], backendRefs: [backend] }),
    'spec.rules[0].matches[0].path.type',
    /Exact, PathPrefix, RegularExpression/,
  ],
  [
    'a relative path',
    rule({ matches: [{ path: { type: 'Exact', value: 'api' } }], backendRefs: [backend] }),
    'spec.rules[0].matches[0].path.value',
    /absolute/,
  ],
  [
    'a path with //',
    rule({ matches: [{ path: { value: '/a//b' } }], backendRefs: [backend] }),
    'spec.rules[0].matches[0].path.value',
    /"\/\/"/,
  ],
  [
    'a path regex that is not RE2',
    rule({ matches: [{ path: { type: 'RegularExpression', value: '/(?=x)' } }], backendRefs: [backend] }),
    'spec.rules[0].matches[0].path.value',
    /lookaround/,
  ],
  [
    'a header name with a space',
    rule({ matches: [{ headers: [{ name: 'x user', value: 'a' }] }], backendRefs: [backend] }),
    'spec.rules[0].matches[0].headers[0].name',
    /header name/,
  ],
  [
    'the same header matched twice (names are case-insensitive)',
    rule({
      matches: [
        {
          headers: [
            { name: 'X-User', value: 'a' },
            { name: 'x-user', value: 'b' },
          ],
        },
      ],
      backendRefs: [backend],
    }),
    'spec.rules[0].matches[0].headers[1].name',
    /already matched by spec.rules\[0\].matches\[0\].headers\[0\]/,
  ],
  [
    'a header match without a value',
    rule({ matches: [{ headers: [{ name: 'x' }] }], backendRefs: [backend] }),
    'spec.rules[0].matches[0].headers[0].value',
    /required/,
  ],
  [
    'a query parameter regex that is not RE2',
    rule({
      matches: [{ queryParams: [{ type: 'RegularExpression', name: 'q', value: '(a' }] }],
      backendRefs: [backend],
    }),
    'spec.rules[0].matches[0].queryParams[0].value',
    /RE2/,
  ],
  [
    'an unknown method',
    rule({ matches: [{ method: 'FETCH' }], backendRefs: [backend] }),
    'spec.rules[0].matches[0].method',
    /GET/,
  ],
  [
    'a weight above 1,000,000',
    rule({ backendRefs: [{ ...backend, weight: 1_000_001 }] }),
    'spec.rules[0].backendRefs[0].weight',
    /1000001/,
  ],
  [
    'a negative weight',
    rule({ backendRefs: [{ ...backend, weight: -1 }] }),
    'spec.rules[0].backendRefs[0].weight',
    /-1/,
  ],
  [
    'a Service backend without a port',
    rule({ backendRefs: [{ name: 'reviews-v1' }] }),
    'spec.rules[0].backendRefs[0].port',
    /required for a Service/,
  ],
  [
    'a redirect with backends',
    rule({
      filters: [{ type: 'RequestRedirect', requestRedirect: { scheme: 'https' } }],
      backendRefs: [backend],
    }),
    'spec.rules[0].backendRefs',
    /RequestRedirect/,
  ],
  [
    'a redirect and a rewrite together',
    rule({
      filters: [
        { type: 'RequestRedirect', requestRedirect: { scheme: 'https' } },
        { type: 'URLRewrite', urlRewrite: { hostname: 'a' } },
      ],
    }),
    'spec.rules[0].filters',
    /cannot be used together/,
  ],
  [
    'a filter type without its configuration',
    rule({ filters: [{ type: 'URLRewrite' }], backendRefs: [backend] }),
    'spec.rules[0].filters[0].urlRewrite',
    /required when type is URLRewrite/,
  ],
  [
    'the configuration of another filter type',
    rule({
      filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: {}, urlRewrite: { hostname: 'a' } }],
      backendRefs: [backend],
    }),
    'spec.rules[0].filters[0].urlRewrite',
    /must not be set when type is RequestHeaderModifier/,
  ],
  [
    'the same filter type twice',
    rule({
      filters: [
        { type: 'RequestHeaderModifier', requestHeaderModifier: { remove: ['a'] } },
        { type: 'RequestHeaderModifier', requestHeaderModifier: { remove: ['b'] } },
      ],
      backendRefs: [backend],
    }),
    'spec.rules[0].filters[1].type',
    /already spec.rules\[0\].filters\[0\]/,
  ],
  [
    'ReplacePrefixMatch under an exact match',
    rule({
      matches: [{ path: { type: 'Exact', value: '/a' } }],
      filters: [
        {
          type: 'URLRewrite',
          urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/b' } },
        },
      ],
      backendRefs: [backend],
    }),
    'spec.rules[0].filters[0].urlRewrite.path',
    /exactly one match, and that of path type PathPrefix/,
  ],
  [
    'a redirect status Gateway API does not allow',
    rule({ filters: [{ type: 'RequestRedirect', requestRedirect: { statusCode: 304 } }] }),
    'spec.rules[0].filters[0].requestRedirect.statusCode',
    /301, 302, 303, 307, 308/,
  ],
  [
    'an ExtensionRef filter',
    rule({
      filters: [{ type: 'ExtensionRef', extensionRef: { group: 'x', kind: 'Y', name: 'z' } }],
      backendRefs: [backend],
    }),
    'spec.rules[0].filters[0].type',
    /not supported/,
  ],
  [
    'a mirror on a backend',
    rule({
      backendRefs: [
        { ...backend, filters: [{ type: 'RequestMirror', requestMirror: { backendRef: backend } }] },
      ],
    }),
    'spec.rules[0].backendRefs[0].filters[0].type',
    /not supported on a backendRef/,
  ],
  [
    'a mirror with both percent and fraction',
    rule({
      filters: [
        {
          type: 'RequestMirror',
          requestMirror: { backendRef: backend, percent: 10, fraction: { numerator: 1 } },
        },
      ],
      backendRefs: [backend],
    }),
    'spec.rules[0].filters[0].requestMirror',
    /percent and fraction/,
  ],
  [
    'removing the Host header',
    rule({
      filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { remove: ['Host'] } }],
      backendRefs: [backend],
    }),
    'spec.rules[0].filters[0].requestHeaderModifier.remove[0]',
    /Host header cannot be removed/,
  ],
  [
    'a header value with an unclosed %',
    rule({
      filters: [
        { type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'x', value: '50%' }] } },
      ],
      backendRefs: [backend],
    }),
    'spec.rules[0].filters[0].responseHeaderModifier.set[0].value',
    /%%/,
  ],
  [
    'a fractional timeout',
    rule({ timeouts: { request: '1.5s' }, backendRefs: [backend] }),
    'spec.rules[0].timeouts.request',
    /Gateway API duration/,
  ],
  [
    'a backend timeout longer than the request timeout',
    rule({ timeouts: { request: '1s', backendRequest: '2s' }, backendRefs: [backend] }),
    'spec.rules[0].timeouts.backendRequest',
    /longer than timeouts.request/,
  ],
  ['a misspelt rule field', rule({ backendRef: [backend] }), 'spec.rules[0].backendRef', /unknown field/],
  [
    'two rules of the same name',
    [
      { name: 'a', backendRefs: [backend] },
      { name: 'a', backendRefs: [backend] },
    ],
    'spec.rules[1].name',
    /already the name of spec.rules\[0\]/,
  ],
  [
    'more than 16 rules',
    Array.from({ length: 17 }, () => ({ backendRefs: [backend] })),
    'spec.rules',
    /at most 16/,
  ],
];

for (const [what, rules, path, message] of ERRORS) {
  test(`refused with its field path: ${what}`, () => {
    const obj =
      rules !== null && typeof rules === 'object' && 'spec' in rules
        ? route(undefined, rules.spec as Record<string, unknown>)
        : route(rules);
    const d = decodeHttpRoute(obj);
    assert.equal(d.value, undefined, 'the route is not returned');
    const errors = d.problems.filter((p) => p.severity === 'error');
    const found = errors.find((p) => p.path === path);
    assert.ok(found, `an error at ${path}; got ${JSON.stringify(errors.map((p) => [p.path, p.message]))}`);
    assert.match(found.message, message);
    assert.deepEqual([found.kind, found.namespace, found.name], ['HTTPRoute', 'default', 'r']);
  });
}

test('every error is reported at once, each with its path', () => {
  const d = decodeHttpRoute(
    route([
      {
        matches: [{ method: 'FETCH', path: { value: 'x' } }],
        backendRefs: [{ name: 'a', weight: 2_000_000 }],
      },
    ]),
  );
  assert.deepEqual(
    d.problems.map((p) => p.path),
    [
      'spec.rules[0].matches[0].path.value',
      'spec.rules[0].matches[0].method',
      'spec.rules[0].backendRefs[0].port',
      'spec.rules[0].backendRefs[0].weight',
    ],
  );
});

test('fields Ambit does not apply yet are warnings: the route is kept', () => {
  const d = decodeHttpRoute(
    route([{ backendRefs: [backend], retry: { attempts: 3 }, sessionPersistence: {} }]),
  );
  assert.ok(d.value);
  assert.deepEqual(
    d.problems.map((p) => [p.severity, p.path]),
    [
      ['warning', 'spec.rules[0].retry'],
      ['warning', 'spec.rules[0].sessionPersistence'],
    ],
  );
});

test('filters decode: header modifiers, redirect, rewrite, mirror (fraction as a percentage), timeouts', () => {
  const d = decodeHttpRoute(
    route([
      {
        matches: [{ path: { value: '/api' } }],
        filters: [
          {
            type: 'RequestHeaderModifier',
            requestHeaderModifier: {
              set: [{ name: 'X-A', value: '1' }],
              add: [{ name: 'x-b', value: '2' }],
              remove: ['x-c'],
            },
          },
          {
            type: 'URLRewrite',
            urlRewrite: {
              hostname: 'api.internal',
              path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v2' },
            },
          },
          {
            type: 'RequestMirror',
            requestMirror: {
              backendRef: { name: 'shadow', port: 80 },
              fraction: { numerator: 1, denominator: 4 },
            },
          },
        ],
        backendRefs: [backend],
        timeouts: { request: '10s', backendRequest: '500ms' },
      },
    ]),
  );
  assert.deepEqual(d.problems, []);
  const r = d.value!.rules[0]!;
  assert.deepEqual(r.requestHeaders, { set: [['X-A', '1']], add: [['x-b', '2']], remove: ['x-c'] });
  assert.deepEqual(r.rewrite, {
    hostname: 'api.internal',
    path: { type: 'ReplacePrefixMatch', value: '/v2' },
  });
  assert.equal(r.mirrors[0]!.percent, 25);
  assert.deepEqual(r.mirrors[0]!.backendRef, {
    group: '',
    kind: 'Service',
    name: 'shadow',
    namespace: 'default',
    port: 80,
  });
  assert.deepEqual(r.requestTimeout, { seconds: 10, nanos: 0 });
  assert.deepEqual(r.backendRequestTimeout, { seconds: 0, nanos: 500_000_000 });
});

test('from YAML: an invalid HTTPRoute is skipped with file:line and path; the next one in the file is kept', () => {
  const text = [
    'apiVersion: gateway.networking.k8s.io/v1', // 1
    'kind: HTTPRoute', // 2
    'metadata: {name: bad, namespace: default}', // 3
    'spec:', // 4
    '  parentRefs: [{group: "", kind: Service, name: reviews}]', // 5
    '  rules:', // 6
    '  - backendRefs:', // 7
    '    - name: reviews-v1', // 8
    '      port: 9080', // 9
    '      weight: 2000000', // 10
    '---', // 11
    SAMPLE_20,
  ].join('\n');
  const decoded = decodeKubeYaml(text, 'routes.yaml');
  assert.deepEqual(
    decoded.problems.map((p) => [p.severity, p.file, p.line, p.kind, p.namespace, p.name, p.path]),
    [['error', 'routes.yaml', 10, 'HTTPRoute', 'default', 'bad', 'spec.rules[0].backendRefs[0].weight']],
  );
  const { snapshot } = buildSnapshot(decoded.objects);
  assert.deepEqual(
    snapshot.httpRoutes.map((r) => `${r.namespace}/${r.name}`),
    ['default/reviews'],
  );
});
