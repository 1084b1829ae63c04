/**
 * The L7 contract for Gateway API HTTPRoutes, end to end without sockets: YAML (sample 20, and a
 * route using every filter) → the controller's decoder and translation → encoded Envoy resources →
 * the waypoint's decoder (every resource must decode without an error) → the waypoint's router,
 * which must see the 90/10 split, Gateway API's path-element prefix matching, the 404 of a request
 * no rule matches, and the 500 of a rule without a usable backend.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { buildSnapshot, decodeKubeYaml } from '../../../src/controller/files/kube-yaml.ts';
import { encodeL7Resources } from '../../../src/controller/translate/l7/encode.ts';
import { translateL7, type L7Result } from '../../../src/controller/translate/l7/translate.ts';
import { translate } from '../../../src/controller/translate/workloads.ts';
import type { RouteConfiguration } from '../../../src/core/xds/l7-model.ts';
import { EnvoyTypeUrl } from '../../../src/core/xds/l7-names.ts';
import { decodeL7Resource } from '../../../src/core/xds/l7-wire.ts';
import { compileRouteTable, route, type RouteRequest } from '../../../src/waypoint/router.ts';
import { OPTIONS } from '../controller/l7/helpers.ts';

/** Istio's sample 20, the repository's copy (istio-samples/20-httproute-reviews-90-10-waypoint.yaml). */
const SAMPLE_20 = readFileSync(
  new URL('../../fixtures/l7/istio-samples/20-httproute-reviews-90-10-waypoint.yaml', import.meta.url),
  'utf8',
);

const MESH = `
apiVersion: v1
kind: Namespace
metadata: { name: default, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Service
metadata: { name: reviews, namespace: default }
spec: { selector: { app: reviews }, clusterIP: 10.96.0.2, ports: [{ name: http, port: 9080 }] }
---
apiVersion: v1
kind: Service
metadata: { name: reviews-v1, namespace: default }
spec: { selector: { app: reviews, version: v1 }, clusterIP: 10.96.0.3, ports: [{ name: http, port: 9080 }] }
---
apiVersion: v1
kind: Service
metadata: { name: reviews-v2, namespace: default }
spec: { selector: { app: reviews, version: v2 }, clusterIP: 10.96.0.4, ports: [{ name: http, port: 9080 }] }
---
apiVersion: v1
kind: Service
metadata: { name: ratings, namespace: default }
spec: { selector: { app: ratings }, clusterIP: 10.96.0.5, ports: [{ name: http, port: 9080 }] }
---
apiVersion: v1
kind: Pod
metadata: { name: reviews-v1, namespace: default, labels: { app: reviews, version: v1 } }
spec: { nodeName: node-1 }
status: { phase: Running, podIP: 10.0.0.1 }
---
apiVersion: v1
kind: Pod
metadata: { name: reviews-v2, namespace: default, labels: { app: reviews, version: v2 } }
spec: { nodeName: node-1 }
status: { phase: Running, podIP: 10.0.0.2 }
---
apiVersion: v1
kind: Pod
metadata: { name: ratings, namespace: default, labels: { app: ratings } }
spec: { nodeName: node-1 }
status: { phase: Running, podIP: 10.0.0.3 }
`;

/** Every filter and match kind on ratings:9080. */
const RATINGS = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: ratings, namespace: default }
spec:
  parentRefs: [{ group: "", kind: Service, name: ratings }]
  rules:
  - matches:
    - path: { value: /api }
      headers: [{ name: x-user, value: jason }, { type: RegularExpression, name: x-tier, value: "gold|silver" }]
      queryParams: [{ name: debug, value: "1" }]
      method: GET
    filters:
    - { type: RequestHeaderModifier, requestHeaderModifier: { set: [{ name: x-a, value: "1" }], remove: [x-b] } }
    - { type: ResponseHeaderModifier, responseHeaderModifier: { add: [{ name: x-c, value: "2" }] } }
    - { type: URLRewrite, urlRewrite: { hostname: ratings.internal, path: { type: ReplacePrefixMatch, replacePrefixMatch: /v2 } } }
    - { type: RequestMirror, requestMirror: { backendRef: { name: reviews, port: 9080 }, percent: 10 } }
    backendRefs: [{ name: ratings, port: 9080 }, { name: gone, port: 9080 }]
    timeouts: { request: 5s, backendRequest: 1s }
  - matches: [{ path: { type: RegularExpression, value: "/r/[a-z]+" } }]
    filters: [{ type: URLRewrite, urlRewrite: { path: { type: ReplaceFullPath, replaceFullPath: /rewritten } } }]
    backendRefs: [{ name: ratings, port: 9080 }]
  - matches: [{ path: { type: Exact, value: /moved } }]
    filters: [{ type: RequestRedirect, requestRedirect: { scheme: https, statusCode: 308 } }]
  - matches: [{ path: { value: /broken } }]
`;

function translateYaml(text: string): L7Result {
  const decoded = decodeKubeYaml(text, 'mesh.yaml');
  assert.deepEqual(
    decoded.problems.filter((p) => p.severity !== 'info'),
    [],
  );
  const { snapshot } = buildSnapshot(decoded.objects);
  const mesh = translate(snapshot, OPTIONS).config;
  return translateL7(
    {
      snapshot,
      mesh,
      virtualServices: snapshot.virtualServices,
      destinationRules: snapshot.destinationRules,
    },
    OPTIONS,
  );
}

/** Every resource through the waypoint's decoder; the route configurations, decoded, by name. */
function roundTrip(r: L7Result): Map<string, RouteConfiguration> {
  const configs = new Map<string, RouteConfiguration>();
  let count = 0;
  for (const [typeUrl, list] of encodeL7Resources(r.resources)) {
    for (const res of list) {
      const d = decodeL7Resource(typeUrl, res.bytes);
      assert.ok(
        d.ok,
        `${res.name}: ${d.ok ? '' : d.errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`,
      );
      if (typeUrl === EnvoyTypeUrl.RouteConfiguration && d.value.kind === 'route-configuration')
        configs.set(res.name, d.value.routeConfiguration);
      count++;
    }
  }
  assert.ok(count > 0);
  return configs;
}

function request(path: string, extra: Partial<RouteRequest> = {}): RouteRequest {
  return {
    method: 'GET',
    scheme: 'http',
    authority: 'ratings:9080',
    path,
    headers: new Map(),
    source: { namespace: 'default', labels: {}, principal: '' },
    port: 9080,
    ...extra,
  };
}

test('sample 20: every resource decodes in the waypoint, whose router splits about 90/10', () => {
  const r = translateYaml(`${MESH}\n---\n${SAMPLE_20}`);
  assert.deepEqual(r.problems, []);
  const configs = roundTrip(r);
  const table = compileRouteTable(configs.get('reviews.default.svc.cluster.local:9080')!);
  const counts = new Map<string, number>();
  for (let i = 0; i < 100; i++) {
    const d = route(table, request('/reviews/0', { authority: 'reviews:9080' }), () => (i + 0.5) / 100);
    assert.equal(d.kind, 'forward');
    if (d.kind === 'forward') counts.set(d.cluster, (counts.get(d.cluster) ?? 0) + 1);
  }
  assert.deepEqual(Object.fromEntries(counts), {
    'outbound|9080||reviews-v1.default.svc.cluster.local': 90,
    'outbound|9080||reviews-v2.default.svc.cluster.local': 10,
  });
});

test('every filter and match kind decodes in the waypoint and routes as Gateway API says', () => {
  const r = translateYaml(`${MESH}\n---\n${RATINGS}`);
  assert.deepEqual(
    r.problems.map((p) => [p.severity, p.path]),
    [['warning', 'spec.rules[0].backendRefs[1].name']],
  );
  const table = compileRouteTable(roundTrip(r).get('ratings.default.svc.cluster.local:9080')!);
  const api = (path: string) =>
    route(
      table,
      request(path, {
        headers: new Map([
          ['x-user', ['jason']],
          ['x-tier', ['gold']],
        ]),
      }),
      () => 0,
    );
  const forwarded = api('/api/stars?debug=1');
  assert.equal(forwarded.kind, 'forward');
  if (forwarded.kind === 'forward') {
    assert.equal(forwarded.path, '/v2/stars?debug=1');
    assert.equal(forwarded.authority, 'ratings.internal');
    assert.equal(forwarded.timeoutMs, 5000);
    assert.equal(forwarded.retryPolicy?.perTryTimeoutMs, 1000);
    assert.equal(forwarded.clusterNotFoundStatus, 500);
  }
  // The path itself matches its prefix; a longer path element does not.
  const exact = api('/api?debug=1');
  assert.equal(exact.kind === 'forward' && exact.path, '/v2?debug=1');
  assert.equal(api('/apis?debug=1').kind, 'not-found');
  // Without the query parameter (or on another path), no rule matches: 404.
  const missing = api('/api/stars');
  assert.deepEqual([missing.kind, missing.kind !== 'forward' && missing.status], ['not-found', 404]);

  const rewritten = route(table, request('/r/abc?x=1'), () => 0);
  assert.equal(rewritten.kind === 'forward' && rewritten.path, '/rewritten?x=1');
  const moved = route(table, request('/moved'), () => 0);
  assert.deepEqual([moved.kind, moved.kind !== 'forward' && moved.status], ['redirect', 308]);
  const broken = route(table, request('/broken/x'), () => 0);
  assert.deepEqual([broken.kind, broken.kind !== 'forward' && broken.status], ['direct-response', 500]);
});
