/**
 * Which rules apply: VirtualService merging (creation order, first catch-all ends the list), host and
 * short-name resolution, the service / waypoint namespace rule, mesh binding; DestinationRule lookup
 * (service namespace, then root), merging, and port-level / subset policy merging.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { effectivePolicy, selectDestinationRule } from '../../../../src/controller/translate/l7/select.ts';
import type { L7Problem } from '../../../../src/controller/translate/l7/types.ts';
import { fixtureMesh, H, json, l7From, OPTIONS, P, routesOf, run } from './helpers.ts';
import { defaultRouteTo } from './expect.ts';

/** A VirtualService routing everything (or what `match` says) to one subset of a host. */
function vsYaml(o: {
  name: string;
  namespace?: string;
  created?: string;
  hosts: string[];
  gateways?: string[];
  rules: { match?: string; dest: string; subset?: string }[];
}): string {
  const rules = o.rules
    .map(
      (r) =>
        `  - ${r.match ? `match: ${r.match}\n    ` : ''}route: [{ destination: { host: ${r.dest}${r.subset ? `, subset: ${r.subset}` : ''} } }]`,
    )
    .join('\n');
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ${o.name}, namespace: ${o.namespace ?? 'default'}${o.created ? `, creationTimestamp: "${o.created}"` : ''} }
spec:
  hosts: [${o.hosts.map((h) => `"${h}"`).join(', ')}]
${o.gateways ? `  gateways: [${o.gateways.join(', ')}]\n` : ''}  http:
${rules}
---
`;
}

/** The cluster each route of a route configuration sends to. */
function targets(text: string, routeConfig: string, over: Parameters<typeof run>[1] = {}): string[] {
  const objs = l7From(text);
  assert.deepEqual(objs.problems, []);
  const r = run(objs, over);
  return routesOf(r, routeConfig).map(
    (x) => x.route?.cluster ?? JSON.stringify(x.route?.weighted_clusters ?? x),
  );
}

const REVIEWS = `${H('reviews')}:9080`;
const sub = (s: string, host = H('reviews'), port = 9080) => `outbound|${port}|${s}|${host}`;

test('VirtualServices for one host merge in creation order, then by name', () => {
  const text =
    vsYaml({
      name: 'a-late',
      created: '2024-02-01T00:00:00Z',
      hosts: ['reviews'],
      rules: [{ match: '[{ uri: { prefix: /a } }]', dest: 'reviews', subset: 'v1' }],
    }) +
    vsYaml({
      name: 'z-early',
      created: '2024-01-01T00:00:00Z',
      hosts: ['reviews'],
      rules: [{ match: '[{ uri: { prefix: /z } }]', dest: 'reviews', subset: 'v2' }],
    }) +
    vsYaml({
      name: 'b-late',
      created: '2024-02-01T00:00:00Z',
      hosts: ['reviews'],
      rules: [{ match: '[{ uri: { prefix: /b } }]', dest: 'reviews', subset: 'v3' }],
    });
  assert.deepEqual(targets(text, REVIEWS), [sub('v2'), sub('v1'), sub('v3')]);
});

test('the first catch-all ends the merged list: later rules and later VirtualServices are dropped', () => {
  const cases: [string, string, string[]][] = [
    [
      'a rule without match',
      vsYaml({
        name: 'a',
        created: '1',
        hosts: ['reviews'],
        rules: [
          { dest: 'reviews', subset: 'v1' },
          { match: '[{ uri: { prefix: /x } }]', dest: 'reviews', subset: 'v2' },
        ],
      }) +
        vsYaml({ name: 'b', created: '2', hosts: ['reviews'], rules: [{ dest: 'reviews', subset: 'v3' }] }),
      [sub('v1')],
    ],
    [
      'a match block of prefix / (the rest of its blocks and rules are dead)',
      vsYaml({
        name: 'a',
        hosts: ['reviews'],
        rules: [
          { match: '[{ uri: { prefix: / } }, { uri: { exact: /x } }]', dest: 'reviews', subset: 'v1' },
          { dest: 'reviews', subset: 'v2' },
        ],
      }),
      [sub('v1')],
    ],
    [
      'a block matching only this port',
      vsYaml({
        name: 'a',
        hosts: ['reviews'],
        rules: [
          { match: '[{ port: 9080 }]', dest: 'reviews', subset: 'v1' },
          { dest: 'reviews', subset: 'v2' },
        ],
      }),
      [sub('v1')],
    ],
    [
      'a header match is not a catch-all; the VirtualService after it still counts',
      vsYaml({
        name: 'a',
        created: '1',
        hosts: ['reviews'],
        rules: [{ match: '[{ headers: { x: { exact: y } } }]', dest: 'reviews', subset: 'v1' }],
      }) +
        vsYaml({ name: 'b', created: '2', hosts: ['reviews'], rules: [{ dest: 'reviews', subset: 'v2' }] }),
      [sub('v1'), sub('v2')],
    ],
    [
      'a source-namespace match is not a catch-all either (it is evaluated per client)',
      vsYaml({
        name: 'a',
        hosts: ['reviews'],
        rules: [
          { match: '[{ sourceNamespace: prod }]', dest: 'reviews', subset: 'v1' },
          { dest: 'reviews', subset: 'v2' },
        ],
      }),
      [sub('v1'), sub('v2')],
    ],
  ];
  for (const [name, text, expected] of cases) assert.deepEqual(targets(text, REVIEWS), expected, name);
});

test('a VirtualService with no route on this port leaves the default route; one whose routes do not match gets 404', () => {
  // Only a block for another port: nothing on 9080, so the service routes to itself (as istiod).
  const otherPort = vsYaml({
    name: 'a',
    hosts: ['reviews'],
    rules: [{ match: '[{ port: 7000 }]', dest: 'reviews', subset: 'v1' }],
  });
  const r = run(l7From(otherPort));
  assert.deepEqual(json(routesOf(r, REVIEWS)), [defaultRouteTo(H('reviews'), 9080)]);
  // A header match only: no default route after it, so other requests get Envoy's 404.
  const onlyJason = vsYaml({
    name: 'a',
    hosts: ['reviews'],
    rules: [{ match: '[{ headers: { end-user: { exact: jason } } }]', dest: 'reviews', subset: 'v2' }],
  });
  assert.deepEqual(targets(onlyJason, REVIEWS), [sub('v2')]);
  // HTTP rules only apply to HTTP ports; a VirtualService with only tcp rules leaves HTTP ports alone.
  const tcpOnly = l7From(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: t }
spec:
  hosts: [reviews]
  tcp: [{ route: [{ destination: { host: reviews, subset: v1 } }] }]`);
  assert.deepEqual(json(routesOf(run(tcpOnly), REVIEWS)), [defaultRouteTo(H('reviews'), 9080)]);
});

test('hosts: short names resolve in the VirtualService namespace; dotted names are taken as written; wildcards match by suffix', () => {
  const cases: [string, string, string, boolean][] = [
    ['short name, same namespace', 'reviews', 'default', true],
    ['short name from prod means reviews.prod', 'reviews', 'prod', false],
    ['FQDN', 'reviews.default.svc.cluster.local', 'default', true],
    ['dotted short form is not expanded (as istiod)', 'reviews.default', 'default', false],
    ['namespace wildcard', '*.default.svc.cluster.local', 'default', true],
    ['cluster-wide wildcard', '*.svc.cluster.local', 'default', true],
    ['another namespace wildcard', '*.prod.svc.cluster.local', 'default', false],
  ];
  for (const [name, host, namespace, applies] of cases) {
    const text = vsYaml({
      name: 'a',
      namespace,
      hosts: [host],
      rules: [{ dest: 'reviews.default.svc.cluster.local', subset: 'v1' }],
    });
    const got = targets(text, REVIEWS);
    assert.deepEqual(got, applies ? [sub('v1')] : [sub('')], name);
  }
  // The same short host in prod routes reviews.prod, and destination short names resolve in prod too.
  const prod = vsYaml({
    name: 'a',
    namespace: 'prod',
    hosts: ['reviews'],
    rules: [{ dest: 'reviews', subset: 'v1' }],
  });
  const prodSubset = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: prod }
spec: { host: reviews, subsets: [{ name: v1, labels: { version: v1 } }] }`;
  assert.deepEqual(targets(prod + prodSubset, `${P('reviews')}:9080`), [sub('v1', P('reviews'))]);
});

test("only the service's or the waypoint's namespace: given as input, or read from the service's waypoint", () => {
  const text = vsYaml({
    name: 'a',
    namespace: 'other',
    hosts: ['reviews.default.svc.cluster.local'],
    rules: [{ dest: 'reviews.default.svc.cluster.local', subset: 'v1' }],
  });
  assert.deepEqual(targets(text, REVIEWS), [sub('')], 'another namespace does not apply');
  assert.deepEqual(
    targets(text, REVIEWS, { waypointNamespaces: new Map([[`default/${H('reviews')}`, 'other']]) }),
    [sub('v1')],
  );
  const m = fixtureMesh();
  const withWaypoint = {
    snapshot: m.snapshot,
    mesh: {
      ...m.mesh,
      services: m.mesh.services.map((s) =>
        s.name === 'reviews' && s.namespace === 'default'
          ? {
              ...s,
              waypoint: {
                destination: {
                  kind: 'hostname' as const,
                  namespace: 'other',
                  hostname: 'waypoint.other.svc.cluster.local',
                },
                hboneMtlsPort: 15008,
              },
            }
          : s,
      ),
    },
  };
  assert.deepEqual(targets(text, REVIEWS, { mesh: withWaypoint }), [sub('v1')]);
});

test('mesh binding: gateways empty or naming mesh; a match block bound to gateways only is skipped', () => {
  const cases: [string, string[] | undefined, string[]][] = [
    ['no gateways (mesh)', undefined, [sub('v1')]],
    ['gateways without mesh', ['bookinfo-gateway'], [sub('')]],
    ['gateways with mesh', ['mesh', 'bookinfo-gateway'], [sub('v1')]],
  ];
  for (const [name, gateways, expected] of cases) {
    const text = vsYaml({
      name: 'a',
      hosts: ['reviews'],
      ...(gateways ? { gateways } : {}),
      rules: [{ dest: 'reviews', subset: 'v1' }],
    });
    assert.deepEqual(targets(text, REVIEWS), expected, name);
  }
  const blocks = vsYaml({
    name: 'a',
    hosts: ['reviews'],
    rules: [
      {
        match:
          '[{ gateways: [bookinfo-gateway], uri: { prefix: /gw } }, { gateways: [mesh], uri: { prefix: /mesh } }]',
        dest: 'reviews',
        subset: 'v1',
      },
    ],
  });
  const r = run(l7From(blocks));
  assert.deepEqual(
    routesOf(r, REVIEWS).map((x) => x.match.prefix),
    ['/mesh'],
  );
});

const DR = (
  name: string,
  namespace: string,
  host: string,
  extra = '',
  created = '',
) => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ${name}, namespace: ${namespace}${created ? `, creationTimestamp: "${created}"` : ''} }
spec:
  host: "${host}"
${extra}
---
`;

test('DestinationRule lookup: the service namespace first, then the root namespace; elsewhere has no effect', () => {
  const lb = (simple: string) => `  trafficPolicy: { loadBalancer: { simple: ${simple} } }`;
  const lbOf = (text: string) => {
    const objs = l7From(text);
    assert.deepEqual(objs.problems, []);
    const r = run(objs);
    return { lb: r.resources.clusters.find((c) => c.name === sub(''))!.lb_policy, problems: r.problems };
  };
  assert.equal(
    lbOf(DR('root', 'istio-system', 'reviews.default.svc.cluster.local', lb('RANDOM'))).lb,
    'RANDOM',
  );
  assert.equal(
    lbOf(
      DR('root', 'istio-system', '*.svc.cluster.local', lb('RANDOM')) +
        DR('own', 'default', 'reviews', lb('ROUND_ROBIN')),
    ).lb,
    'ROUND_ROBIN',
  );
  const elsewhere = lbOf(DR('far', 'prod', 'reviews.default.svc.cluster.local', lb('RANDOM')));
  assert.equal(elsewhere.lb, 'LEAST_REQUEST');
  assert.deepEqual(elsewhere.problems, [
    {
      severity: 'warning',
      kind: 'DestinationRule',
      namespace: 'prod',
      name: 'far',
      path: 'spec.host',
      message:
        "applies only from the service's namespace (default) or the root namespace (istio-system); the rule has no effect",
    },
  ]);
  // The exact host beats a wildcard in the same namespace; the wildcard still serves the others.
  const both = l7From(
    DR('wild', 'default', '*.default.svc.cluster.local', lb('RANDOM')) +
      DR('exact', 'default', 'reviews', lb('ROUND_ROBIN')),
  );
  const r = run(both);
  assert.equal(r.resources.clusters.find((c) => c.name === sub(''))!.lb_policy, 'ROUND_ROBIN');
  assert.equal(r.resources.clusters.find((c) => c.name === sub('', H('ratings')))!.lb_policy, 'RANDOM');
  const typo = run(l7From(DR('typo', 'default', 'reveiws', lb('RANDOM'))));
  assert.match(
    typo.problems[0]!.message,
    /"reveiws.default.svc.cluster.local" is not a Service or ServiceEntry/,
  );
});

test('DestinationRules for the same host merge: subsets concatenated, the first traffic policy kept', () => {
  const text =
    DR(
      'second',
      'default',
      'reviews',
      `  trafficPolicy: { loadBalancer: { simple: RANDOM } }\n  subsets: [{ name: v1, labels: { version: v1 } }, { name: v3, labels: { version: v3 } }]`,
      '2024-02-01T00:00:00Z',
    ) +
    DR(
      'first',
      'default',
      'reviews',
      `  subsets: [{ name: v1, labels: { version: v2 } }]`,
      '2024-01-01T00:00:00Z',
    );
  const problems: L7Problem[] = [];
  const merged = selectDestinationRule(
    { namespace: 'default', hostname: H('reviews') },
    l7From(text).destinationRules,
    OPTIONS.rootNamespace,
    OPTIONS.clusterDomain,
    problems,
  )!;
  assert.deepEqual(
    merged.rules.map((r) => r.name),
    ['first', 'second'],
  );
  assert.deepEqual(
    merged.subsets.map((s) => `${s.rule.name}/${s.subset.name}`),
    ['first/v1', 'second/v3'],
  );
  // `first` has no top-level policy, so the next rule's is used.
  assert.equal(merged.trafficPolicy?.loadBalancer?.simple, 'RANDOM');
  assert.deepEqual(
    problems.map((p) => [p.name, p.path]),
    [['second', 'spec.subsets[0].name']],
  );
  const r = run(l7From(text));
  // v1 is the first rule's: version v2.
  assert.deepEqual(
    r.resources.clusterLoadAssignments
      .find((c) => c.cluster_name === sub('v1'))!
      .endpoints[0]!.lb_endpoints.map((e) => e.endpoint.address.socket_address.address),
    ['10.0.0.22'],
  );
});

test('policy for a port and subset: port-level replaces the four sections, a subset overrides whole sections', () => {
  const text = DR(
    'p',
    'default',
    'reviews',
    `  trafficPolicy:
    loadBalancer: { simple: RANDOM }
    connectionPool: { tcp: { maxConnections: 10 } }
    outlierDetection: { consecutive5xxErrors: 3 }
    retryBudget: { percent: 30 }
    portLevelSettings:
    - port: { number: 9080 }
      connectionPool: { http: { maxRetries: 4 } }
  subsets:
  - name: a
    labels: { version: v1 }
    trafficPolicy: { loadBalancer: { simple: ROUND_ROBIN } }
  - name: b
    labels: { version: v2 }
    trafficPolicy:
      outlierDetection: { consecutive5xxErrors: 9 }
      portLevelSettings:
      - port: { number: 9080 }
        loadBalancer: { consistentHash: { useSourceIp: true } }`,
  );
  const merged = selectDestinationRule(
    { namespace: 'default', hostname: H('reviews') },
    l7From(text).destinationRules,
    OPTIONS.rootNamespace,
    OPTIONS.clusterDomain,
    [],
  );
  const summary = (port: number, subset: string) => {
    const p = effectivePolicy(merged, port, subset);
    return {
      lb: p.loadBalancer?.simple ?? (p.loadBalancer?.consistentHash ? 'hash' : undefined),
      maxConnections: p.connectionPool?.tcp?.maxConnections,
      maxRetries: p.connectionPool?.http?.maxRetries,
      fiveXx: p.outlierDetection?.consecutive5xxErrors,
      budget: p.retryBudget?.percent,
    };
  };
  const none = {
    lb: undefined,
    maxConnections: undefined,
    maxRetries: undefined,
    fiveXx: undefined,
    budget: undefined,
  };
  const cases: [number, string, ReturnType<typeof summary>][] = [
    // Another port: the top-level policy.
    [8080, '', { lb: 'RANDOM', maxConnections: 10, maxRetries: undefined, fiveXx: 3, budget: 30 }],
    // 9080: the port-level entry only; everything it omits is back to Istio's defaults.
    [9080, '', { ...none, maxRetries: 4 }],
    // Subset a at 8080: its LB section replaces the rule's; the rest is inherited.
    [8080, 'a', { lb: 'ROUND_ROBIN', maxConnections: 10, maxRetries: undefined, fiveXx: 3, budget: 30 }],
    // Subset a at 9080: on top of the port-level entry.
    [9080, 'a', { ...none, lb: 'ROUND_ROBIN', maxRetries: 4 }],
    // Subset b at 9080: its own port-level entry replaces all four sections.
    [9080, 'b', { ...none, lb: 'hash' }],
    // Subset b at 8080: its outlier section only.
    [8080, 'b', { lb: 'RANDOM', maxConnections: 10, maxRetries: undefined, fiveXx: 9, budget: 30 }],
  ];
  for (const [port, subset, expected] of cases)
    assert.deepEqual(summary(port, subset), expected, `${port}/${subset}`);
});
