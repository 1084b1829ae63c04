/**
 * Gateway API ingress (issue 8 part 3): Gateways of class `ambit` and their HTTPRoutes, from YAML
 * through the controller's decoder and the whole L7 translation, into gateway listeners, route
 * configurations, listener facts and the status the Gateway API asks for.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gatewayApiKind } from '../../../src/cli/local-gateway-api.ts';
import { buildSnapshot, decodeKubeYaml } from '../../../src/controller/files/kube-yaml.ts';
import {
  intersectHostnames,
  matchesSelector,
  type GatewayApiCondition,
} from '../../../src/controller/translate/l7/gateway-api-translate.ts';
import { translateL7 } from '../../../src/controller/translate/l7/translate.ts';
import { LastGoodObjects } from '../../../src/controller/translate/last-good.ts';
import {
  gatewayGroup,
  gatewayResourceName,
  parseGatewayGroup,
  parseGatewayResourceName,
} from '../../../src/core/xds/l7-names.ts';
import { fixtureMesh, OPTIONS } from './l7/helpers.ts';

const GROUP = 'ambit.dev%2Fgateway-namespace=default,gateway.networking.k8s.io%2Fgateway-name=web';

function translateYaml(text: string) {
  const decoded = decodeKubeYaml(text, 'gw.yaml');
  assert.deepEqual(
    decoded.problems.filter((p) => p.severity === 'error'),
    [],
  );
  const b = buildSnapshot(decoded.objects).snapshot;
  const { snapshot, mesh } = fixtureMesh();
  const r = translateL7(
    {
      snapshot: {
        ...snapshot,
        namespaces: [...snapshot.namespaces, ...b.namespaces],
        gateways: b.gateways,
        httpRoutes: b.httpRoutes,
        referenceGrants: b.referenceGrants ?? [],
      },
      mesh,
      virtualServices: [],
      destinationRules: [],
    },
    OPTIONS,
  );
  return r;
}

/** The head of a class-ambit Gateway in `default`, up to its listeners. */
const ambitGateway = (name: string) =>
  `apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: { name: ${name}, namespace: default }\nspec:\n  gatewayClassName: ambit\n  listeners:`;

const GATEWAY = `
${ambitGateway('web')}
  - name: http
    port: 8080
    protocol: HTTP
    hostname: "*.example.com"
  - name: https
    port: 8443
    protocol: HTTPS
    hostname: bookinfo.example.com
    tls:
      certificateRefs: [{ name: bookinfo-cert }]
`;

const ROUTE = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: bookinfo, namespace: default }
spec:
  parentRefs: [{ name: web }]
  hostnames: [bookinfo.example.com]
  rules:
  - matches: [{ path: { type: PathPrefix, value: /productpage } }]
    backendRefs:
    - { name: productpage, port: 9080 }
  - matches: [{ path: { type: Exact, value: /reviews } }]
    backendRefs:
    - { name: reviews, port: 9080, weight: 90 }
    - { name: ratings, port: 9080, weight: 10 }
`;

const conditions = (list: readonly GatewayApiCondition[]) =>
  Object.fromEntries(list.map((c) => [c.type, `${c.status} ${c.reason}`]));

test('group: a selector with "/" in its keys survives the resource name (escaped)', () => {
  const selector = {
    'gateway.networking.k8s.io/gateway-name': 'web',
    'ambit.dev/gateway-namespace': 'default',
  };
  assert.equal(gatewayGroup(selector), GROUP);
  assert.deepEqual(parseGatewayGroup(gatewayGroup(selector)), selector);
  assert.deepEqual(parseGatewayResourceName(gatewayResourceName(gatewayGroup(selector), 'http.80')), {
    group: GROUP,
    name: 'http.80',
  });
  // Istio's plain selectors keep their old group.
  assert.equal(gatewayGroup({ istio: 'ingressgateway' }), 'istio=ingressgateway');
  assert.deepEqual(parseGatewayGroup('k=a%25b%2Fc'), { k: 'a%b/c' });
});

test('HTTP and HTTPS listeners with a route: listeners, virtual hosts, weighted split, facts', () => {
  const r = translateYaml(GATEWAY + '---' + ROUTE);
  const names = r.resources.listeners.map((l) => l.name).filter((n) => n.startsWith('gateway/'));
  assert.deepEqual(names, [`gateway/${GROUP}/http.8080`, `gateway/${GROUP}/https.8443.https.web.default`]);
  const http = r.resources.routeConfigurations.find((c) => c.name === `gateway/${GROUP}/http.8080`)!;
  assert.deepEqual(
    http.virtual_hosts.map((v) => [v.name, v.domains]),
    [['bookinfo.example.com:8080', ['bookinfo.example.com', 'bookinfo.example.com:*']]],
  );
  const routes = http.virtual_hosts[0]!.routes;
  assert.deepEqual(
    routes.map((x) => [x.match.path ?? x.match.prefix, x.route?.cluster]),
    [
      // Exact before PathPrefix (the Gateway API's precedence); a prefix is the path and under it.
      ['/reviews', undefined],
      ['/productpage', 'outbound|9080||productpage.default.svc.cluster.local'],
      ['/productpage/', 'outbound|9080||productpage.default.svc.cluster.local'],
    ],
  );
  const split = routes.find((x) => x.match.path === '/reviews')!.route!.weighted_clusters!.clusters;
  assert.deepEqual(
    split.map((c) => [c.name, c.weight.value]),
    [
      ['outbound|9080||reviews.default.svc.cluster.local', 90],
      ['outbound|9080||ratings.default.svc.cluster.local', 10],
    ],
  );
  const https = r.resources.listeners.find((l) => l.name.endsWith('https.8443.https.web.default'))!;
  const facts = (
    https as { metadata?: { filter_metadata: Record<string, { fields: Record<string, unknown> }> } }
  ).metadata!.filter_metadata['ambit.gateway']!.fields;
  assert.deepEqual(facts.protocol, { stringValue: 'HTTPS' });
  assert.deepEqual(facts.hosts, { listValue: { values: [{ stringValue: 'bookinfo.example.com' }] } });
  const tls = (facts.tls as { structValue: { fields: Record<string, unknown> } }).structValue.fields;
  assert.deepEqual(tls.credentialName, { stringValue: 'bookinfo-cert' });
  assert.deepEqual(tls.mode, { stringValue: 'SIMPLE' });

  const status = r.gatewayApiStatus;
  const gw = status.gateways.get('default/web')!;
  assert.equal(gw.accepted.status, 'True');
  assert.deepEqual(
    gw.listeners.map((l) => [l.name, l.attachedRoutes, conditions(l.conditions)]),
    [
      [
        'http',
        1,
        {
          Accepted: 'True Accepted',
          ResolvedRefs: 'True ResolvedRefs',
          Conflicted: 'False NoConflicts',
          Programmed: 'True Programmed',
        },
      ],
      [
        'https',
        1,
        {
          Accepted: 'True Accepted',
          ResolvedRefs: 'True ResolvedRefs',
          Conflicted: 'False NoConflicts',
          Programmed: 'True Programmed',
        },
      ],
    ],
  );
  assert.deepEqual(gw.ports, [
    { name: 'http', port: 8080 },
    { name: 'https', port: 8443 },
  ]);
  const parents = status.routes.get('default/bookinfo')!;
  assert.deepEqual(
    parents.map((p) => conditions(p.conditions)),
    [{ Accepted: 'True Accepted', ResolvedRefs: 'True ResolvedRefs' }],
  );
});

test('route attachment: hostnames, sectionName, port, namespaces, missing backends', () => {
  const extra = `
apiVersion: v1
kind: Namespace
metadata: { name: team-a, labels: { ingress: allowed } }
---
${ambitGateway('shared')}
  - name: selected
    port: 80
    protocol: HTTP
    allowedRoutes: { namespaces: { from: Selector, selector: { matchLabels: { ingress: allowed } } } }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: other-host, namespace: default }
spec:
  parentRefs: [{ name: web, sectionName: http }]
  hostnames: [bookinfo.example.org]
  rules: [{ backendRefs: [{ name: productpage, port: 9080 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: no-such-listener, namespace: default }
spec:
  parentRefs: [{ name: web, sectionName: nope }, { name: web, port: 9999 }]
  rules: [{ backendRefs: [{ name: productpage, port: 9080 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: wrong-namespace, namespace: prod }
spec:
  parentRefs: [{ name: web, namespace: default }, { name: shared, namespace: default }]
  rules: [{ backendRefs: [{ name: ratings, port: 9080 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: missing-backend, namespace: team-a }
spec:
  parentRefs: [{ name: shared, namespace: default }]
  rules: [{ backendRefs: [{ name: nothing, port: 80 }, { name: productpage, namespace: default, port: 9080 }] }]
`;
  const r = translateYaml(GATEWAY + '---' + extra);
  const s = r.gatewayApiStatus.routes;
  const accepted = (route: string) => s.get(route)!.map((p) => conditions(p.conditions).Accepted);
  assert.deepEqual(accepted('default/other-host'), ['False NoMatchingListenerHostname']);
  assert.deepEqual(accepted('default/no-such-listener'), [
    'False NoMatchingParent',
    'False NoMatchingParent',
  ]);
  assert.deepEqual(accepted('prod/wrong-namespace'), [
    'False NotAllowedByListeners',
    'False NotAllowedByListeners',
  ]);
  assert.deepEqual(accepted('team-a/missing-backend'), ['True Accepted']);
  const resolved = s.get('team-a/missing-backend')![0]!.conditions.find((c) => c.type === 'ResolvedRefs')!;
  assert.equal(`${resolved.status} ${resolved.reason}`, 'False BackendNotFound');
  assert.match(resolved.message, /backendRefs\[0\].*nothing/);
  assert.match(resolved.message, /backendRefs\[1\].*another namespace/);
  // Why, with the field path, in the problems.
  const p = r.problems.find((x) => x.kind === 'HTTPRoute' && x.name === 'other-host')!;
  assert.equal(p.path, 'spec.parentRefs[0]');
  assert.match(p.message, /no hostname of the route \(bookinfo\.example\.org\)/);
  const shared = r.gatewayApiStatus.gateways.get('default/shared')!;
  assert.equal(shared.listeners[0]!.attachedRoutes, 1);
  const vhosts = r.resources.routeConfigurations.find((c) =>
    c.name.includes('gateway-name=shared'),
  )!.virtual_hosts;
  assert.deepEqual(
    vhosts.map((v) => v.domains),
    [['*']],
  );
  // Neither backend can be used (one is missing, one in another namespace without a grant): 500.
  assert.deepEqual(vhosts[0]!.routes[0]!.direct_response, { status: 500 });
});

test('ReferenceGrant: a backend and a certificate in another namespace', () => {
  const yaml = `
${ambitGateway('web')}
  - name: https
    port: 443
    protocol: HTTPS
    tls: { certificateRefs: [{ name: cert, namespace: certs }] }
    allowedRoutes: { namespaces: { from: All } }
  - name: https-denied
    port: 443
    hostname: denied.example.com
    protocol: HTTPS
    tls: { certificateRefs: [{ name: cert, namespace: elsewhere }] }
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: { name: gateways-read-certs, namespace: certs }
spec:
  from: [{ group: gateway.networking.k8s.io, kind: Gateway, namespace: default }]
  to: [{ group: "", kind: Secret }]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: { name: routes-from-default, namespace: prod }
spec:
  from: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default }]
  to: [{ group: "", kind: Service, name: ratings }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: to-prod, namespace: default }
spec:
  parentRefs: [{ name: web }]
  rules: [{ backendRefs: [{ name: ratings, namespace: prod, port: 9080 }] }]
`;
  const r = translateYaml(yaml);
  const gw = r.gatewayApiStatus.gateways.get('default/web')!;
  assert.deepEqual(
    gw.listeners.map((l) => conditions(l.conditions).ResolvedRefs),
    ['True ResolvedRefs', 'False RefNotPermitted'],
  );
  assert.deepEqual(
    r.gatewayApiStatus.routes.get('default/to-prod')!.map((p) => conditions(p.conditions)),
    [{ Accepted: 'True Accepted', ResolvedRefs: 'True ResolvedRefs' }],
  );
  const rc = r.resources.routeConfigurations.find((c) => c.name.endsWith('https.443.https.web.default'))!;
  assert.equal(
    rc.virtual_hosts[0]!.routes[0]!.route!.cluster,
    'outbound|9080||ratings.prod.svc.cluster.local',
  );
  assert.ok(!r.resources.listeners.some((l) => l.name.includes('https-denied')));
  const listener = r.resources.listeners.find((l) => l.name.endsWith('https.443.https.web.default'));
  assert.match(JSON.stringify(listener), /"credentialName":\{"stringValue":"certs\/cert"\}/);
});

test('listeners that cannot be served, and invalid Gateways rejected with field paths', () => {
  const yaml = `
${ambitGateway('web')}
  - { name: a, port: 80, protocol: HTTP }
  - { name: b, port: 80, protocol: HTTPS, tls: { certificateRefs: [{ name: c }] } }
  - { name: c, port: 80, protocol: HTTP }
  - { name: d, port: 9000, protocol: TCP }
---
${ambitGateway('bad')}
  - { name: a, port: 80, protocol: HTTP, hostname: "Not_A_Host" }
  - { name: b, port: 443, protocol: HTTPS }
  - { name: c, port: 81, protocol: HTTP, allowedRoutes: { namespaces: { from: Nowhere } } }
`;
  const r = translateYaml(yaml);
  const web = r.gatewayApiStatus.gateways.get('default/web')!;
  assert.deepEqual(
    web.listeners.map((l) => [
      l.name,
      conditions(l.conditions).Accepted,
      conditions(l.conditions).Conflicted,
    ]),
    [
      ['a', 'True Accepted', 'False NoConflicts'],
      ['b', 'True Accepted', 'True ProtocolConflict'],
      ['c', 'True Accepted', 'True HostnameConflict'],
      ['d', 'False UnsupportedProtocol', 'False NoConflicts'],
    ],
  );
  const bad = r.gatewayApiStatus.gateways.get('default/bad')!;
  assert.equal(`${bad.accepted.status} ${bad.accepted.reason}`, 'False Invalid');
  const errors = r.problems
    .filter((p) => p.kind === 'Gateway' && p.name === 'bad' && p.severity === 'error')
    .map((p) => p.path);
  assert.deepEqual(errors, [
    'spec.listeners[0].hostname',
    'spec.listeners[1].tls.certificateRefs',
    'spec.listeners[2].allowedRoutes.namespaces.from',
  ]);
  assert.ok(!r.resources.listeners.some((l) => l.name.includes('gateway-name=bad')));
});

test('hostname intersection and label selectors follow the Gateway API', () => {
  const cases: [string, string[], string[]][] = [
    ['', [], ['*']],
    ['a.example.com', [], ['a.example.com']],
    ['', ['x.org'], ['x.org']],
    [
      '*.example.com',
      ['a.example.com', 'a.b.example.com', 'example.com', 'x.org'],
      ['a.example.com', 'a.b.example.com'],
    ],
    ['a.example.com', ['*.example.com'], ['a.example.com']],
    ['*.example.com', ['*.a.example.com', '*.com'], ['*.a.example.com', '*.example.com']],
    ['a.example.com', ['b.example.com'], []],
  ];
  for (const [listener, route, want] of cases)
    assert.deepEqual(intersectHostnames(listener, route), want, `${listener} ∩ ${route.join(',')}`);
  const labels = { team: 'a', tier: 'web' };
  const sel = (
    matchLabels: Record<string, string>,
    ...matchExpressions: { key: string; operator: string; values: string[] }[]
  ) => ({
    matchLabels,
    matchExpressions,
  });
  assert.equal(matchesSelector(sel({ team: 'a' }), labels), true);
  assert.equal(matchesSelector(sel({ team: 'b' }), labels), false);
  assert.equal(
    matchesSelector(sel({}, { key: 'tier', operator: 'In', values: ['web', 'api'] }), labels),
    true,
  );
  assert.equal(matchesSelector(sel({}, { key: 'tier', operator: 'NotIn', values: ['web'] }), labels), false);
  assert.equal(matchesSelector(sel({}, { key: 'x', operator: 'DoesNotExist', values: [] }), labels), true);
  assert.equal(matchesSelector(sel({}, { key: 'x', operator: 'Exists', values: [] }), labels), false);
});

test('ambit local: one gateway deployment per class-ambit Gateway, on its HTTP and HTTPS listener ports', () => {
  const docs = [
    {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { name: 'web', namespace: 'shop' },
      spec: {
        gatewayClassName: 'ambit',
        listeners: [
          { name: 'a', port: 8443, protocol: 'HTTPS' },
          { name: 'b', port: 8080, protocol: 'HTTP' },
          { name: 'c', port: 8080, protocol: 'HTTPS' },
          { name: 'd', port: 9000, protocol: 'TCP' },
        ],
      },
    },
    {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { name: 'w' },
      spec: { gatewayClassName: 'istio-waypoint', listeners: [{ port: 15008, protocol: 'HBONE' }] },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'Gateway',
      metadata: { name: 'i' },
      spec: { gatewayClassName: 'ambit' },
    },
  ];
  assert.deepEqual(gatewayApiKind(docs), [
    {
      namespace: 'shop',
      name: 'web-ambit',
      serviceAccount: 'web-ambit',
      labels: { 'gateway.networking.k8s.io/gateway-name': 'web', 'ambit.dev/gateway-namespace': 'shop' },
      ports: [
        { number: 8080, protocol: 'HTTP' },
        { number: 8443, protocol: 'HTTPS' },
      ],
      ambient: false,
      role: 'gateway (Gateway shop/web)',
    },
  ]);
});

test('HTTP listeners of one port share a route configuration: one virtual host per intersected host name', () => {
  const yaml = `
${ambitGateway('web')}
  - { name: a, port: 80, protocol: HTTP, hostname: a.example.com }
  - { name: any, port: 80, protocol: HTTP }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: everywhere, namespace: default }
spec:
  parentRefs: [{ name: web }]
  rules: [{ backendRefs: [{ name: productpage, port: 9080 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: only-any, namespace: default }
spec:
  parentRefs: [{ name: web, sectionName: any }]
  hostnames: [b.example.com]
  rules: [{ backendRefs: [{ name: details, port: 9080 }] }]
`;
  const r = translateYaml(yaml);
  const rcs = r.resources.routeConfigurations.filter((c) => c.name.startsWith(`gateway/${GROUP}/`));
  assert.deepEqual(
    rcs.map((c) => c.name),
    [`gateway/${GROUP}/http.80`],
  );
  assert.deepEqual(
    rcs[0]!.virtual_hosts.map((v) => [v.domains[0], v.routes.map((x) => x.route?.cluster?.split('|')[3])]),
    [
      // Envoy picks the most specific domain: a.example.com is served by the route attached to `a`.
      ['*', ['productpage.default.svc.cluster.local']],
      ['a.example.com', ['productpage.default.svc.cluster.local']],
      ['b.example.com', ['details.default.svc.cluster.local']],
    ],
  );
  const listener = r.resources.listeners.find((l) => l.name === `gateway/${GROUP}/http.80`);
  assert.match(
    JSON.stringify(listener),
    /"hosts":\{"listValue":\{"values":\[\{"stringValue":"a.example.com"\},\{"stringValue":"\*"\}\]\}\}/,
  );
  assert.deepEqual(
    r.gatewayApiStatus.gateways.get('default/web')!.listeners.map((l) => [l.name, l.attachedRoutes]),
    [
      ['a', 1],
      ['any', 2],
    ],
  );
});

test('a certificate Secret that does not exist: InvalidCertificateRef, not Programmed, yet given to the gateway', () => {
  const decoded = decodeKubeYaml(GATEWAY + '---' + ROUTE, 'gw.yaml');
  const b = buildSnapshot(decoded.objects).snapshot;
  const { snapshot, mesh } = fixtureMesh();
  const run = (secrets: ReadonlySet<string>) =>
    translateL7(
      {
        snapshot: { ...snapshot, gateways: b.gateways, httpRoutes: b.httpRoutes },
        mesh,
        virtualServices: [],
        destinationRules: [],
        secrets,
      },
      OPTIONS,
    );
  const missing = run(new Set(['default/other']));
  const https = missing.gatewayApiStatus.gateways.get('default/web')!.listeners[1]!;
  assert.deepEqual(conditions(https.conditions), {
    Accepted: 'True Accepted',
    ResolvedRefs: 'False InvalidCertificateRef',
    Conflicted: 'False NoConflicts',
    Programmed: 'False Invalid',
  });
  assert.equal(https.attachedRoutes, 1);
  // The gateway gets the listener all the same: it waits for the Secret over SDS.
  const present = run(new Set(['default/bookinfo-cert']));
  const names = (r: typeof missing) =>
    r.resources.listeners.map((l) => l.name).filter((n) => n.startsWith('gateway/'));
  assert.deepEqual(names(missing), names(present));
  assert.equal(
    conditions(present.gatewayApiStatus.gateways.get('default/web')!.listeners[1]!.conditions).ResolvedRefs,
    'True ResolvedRefs',
  );
  assert.match(
    missing.problems.find((p) => p.path === 'spec.listeners[1]')!.message,
    /Secret default\/bookinfo-cert does not exist; the gateway serves it once the Secret exists/,
  );
});

test('an invalid new version of a Gateway is rejected and its last good version stays in force', () => {
  const { snapshot, mesh } = fixtureMesh();
  const lastGood = new LastGoodObjects();
  const round = (gatewayYaml: string) => {
    const decoded = decodeKubeYaml(gatewayYaml + '---' + ROUTE, 'gw.yaml');
    const b = buildSnapshot(decoded.objects).snapshot;
    let current = { ...snapshot, gateways: b.gateways, httpRoutes: b.httpRoutes };
    const run = () =>
      translateL7({ snapshot: current, mesh, virtualServices: [], destinationRules: [] }, OPTIONS);
    let r = run();
    const problems = r.problems;
    const second = lastGood.substitute(current, problems, 'failed');
    if (second.kept.length > 0) {
      current = second.snapshot;
      r = run();
    }
    lastGood.commit(current, decoded.problems, r.problems);
    return { r, problems, kept: second.kept };
  };
  const names = (r: ReturnType<typeof round>['r']) =>
    r.resources.listeners.map((l) => l.name).filter((n) => n.startsWith('gateway/'));
  const good = round(GATEWAY);
  assert.equal(names(good.r).length, 2);
  // The listener's hostname is edited into something that is not one.
  const bad = round(GATEWAY.replace('"*.example.com"', '"Not_A_Host"'));
  assert.deepEqual(
    bad.problems
      .filter((p) => p.severity === 'error')
      .map((p) => [p.kind, `${p.namespace}/${p.name}`, p.path]),
    [['Gateway', 'default/web', 'spec.listeners[0].hostname']],
  );
  assert.deepEqual(bad.kept, [{ kind: 'Gateway', namespace: 'default', name: 'web' }]);
  assert.deepEqual(names(bad.r), names(good.r));
});
