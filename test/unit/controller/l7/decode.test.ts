/** VirtualService / DestinationRule decoding: raw objects in → typed objects or problems with paths out. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  decodeDestinationRule,
  decodeL7Object,
  decodeVirtualService,
  isL7Object,
} from '../../../../src/controller/translate/l7/decode.ts';
import type { L7Problem } from '../../../../src/controller/translate/l7/types.ts';
import { checkRe2, parseDurationNanos } from '../../../../src/controller/translate/l7/values.ts';
import { samples } from './helpers.ts';

const vs = (spec: unknown, metadata: Record<string, unknown> = {}) => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'VirtualService',
  metadata: { name: 'r', namespace: 'default', ...metadata },
  spec,
});
/** A valid VirtualService with one rule, `rule` merged into it. */
const rule = (over: Record<string, unknown>) =>
  vs({ hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews' } }], ...over }] });
const dr = (spec: unknown) => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'DestinationRule',
  metadata: { name: 'd', namespace: 'default' },
  spec,
});
const policy = (trafficPolicy: unknown) => dr({ host: 'reviews', trafficPolicy });

const errorsOf = (problems: readonly L7Problem[]) =>
  problems.filter((p) => p.severity === 'error').map((p) => [p.path, p.message]);

test('sample 04 decodes to the typed VirtualService', () => {
  const d = decodeVirtualService({
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: 'reviews', creationTimestamp: '2024-05-01T10:00:00Z' },
    spec: {
      hosts: ['reviews'],
      http: [
        {
          match: [{ headers: { 'end-user': { exact: 'jason' } } }],
          route: [{ destination: { host: 'reviews', subset: 'v2' } }],
        },
        { route: [{ destination: { host: 'reviews', subset: 'v1' } }] },
      ],
    },
  });
  assert.deepEqual(d.problems, []);
  const noMatch = {
    name: '',
    uri: undefined,
    scheme: undefined,
    method: undefined,
    authority: undefined,
    headers: [],
    withoutHeaders: [],
    queryParams: [],
    ignoreUriCase: false,
    port: undefined,
    sourceLabels: {},
    sourceNamespace: '',
    gateways: [],
    statPrefix: '',
  };
  const bare = {
    name: '',
    redirect: undefined,
    directResponse: undefined,
    delegate: undefined,
    rewrite: undefined,
    timeout: undefined,
    retries: undefined,
    fault: undefined,
    mirrors: [],
    corsPolicy: undefined,
    headers: undefined,
  };
  assert.deepEqual(d.value, {
    namespace: 'default', // metadata.namespace absent: the default namespace, as kubectl applies it
    name: 'reviews',
    creationTimestamp: '2024-05-01T10:00:00Z',
    hosts: ['reviews'],
    gateways: [],
    http: [
      {
        ...bare,
        match: [{ ...noMatch, headers: [['end-user', { kind: 'exact', value: 'jason' }]] }],
        route: [
          { destination: { host: 'reviews', subset: 'v2', port: undefined }, weight: 0, headers: undefined },
        ],
      },
      {
        ...bare,
        match: [],
        route: [
          { destination: { host: 'reviews', subset: 'v1', port: undefined }, weight: 0, headers: undefined },
        ],
      },
    ],
    tls: [],
    tcp: [],
    exportTo: [],
  });
});

test('sample 16 decodes: sections, port-level settings and subset policy kept apart', () => {
  const { destinationRules } = samples('16');
  const tp = destinationRules[0]!.trafficPolicy!;
  assert.deepEqual(tp.loadBalancer, { simple: 'LEAST_REQUEST', consistentHash: undefined });
  assert.deepEqual(tp.connectionPool?.tcp, {
    maxConnections: 100,
    connectTimeout: { seconds: 0, nanos: 30_000_000 },
    tcpKeepalive: {
      probes: undefined,
      time: { seconds: 7200, nanos: 0 },
      interval: { seconds: 75, nanos: 0 },
    },
    maxConnectionDuration: undefined,
    idleTimeout: undefined,
  });
  assert.deepEqual(tp.portLevelSettings, [
    {
      port: 8080,
      loadBalancer: {
        simple: undefined,
        consistentHash: {
          key: { kind: 'cookie', name: 'user', path: '', ttl: { seconds: 0, nanos: 0 }, attributes: [] },
          ringHash: undefined,
          maglev: undefined,
          minimumRingSize: 0,
        },
      },
      connectionPool: undefined,
      outlierDetection: undefined,
      tls: undefined,
    },
  ]);
  assert.deepEqual(destinationRules[0]!.subsets[0]!.trafficPolicy?.loadBalancer, {
    simple: 'ROUND_ROBIN',
    consistentHash: undefined,
  });
});

test('every sample with VirtualService or DestinationRule content decodes without a problem', () => {
  const all = samples(
    '01',
    '02',
    '03',
    '04',
    '05',
    '06',
    '07',
    '08',
    '09',
    '10',
    '11',
    '12',
    '13',
    '14',
    '15',
    '16',
    '17',
  );
  assert.equal(all.virtualServices.length, 18);
  assert.equal(all.destinationRules.length, 9);
});

test('API versions and kinds: v1, v1beta1 and v1alpha3 are read; other objects are not ours', () => {
  for (const apiVersion of [
    'networking.istio.io/v1',
    'networking.istio.io/v1beta1',
    'networking.istio.io/v1alpha3',
  ]) {
    const d = decodeL7Object({ ...rule({}), apiVersion });
    assert.equal(d.value?.kind, 'VirtualService', apiVersion);
  }
  assert.equal(isL7Object({ apiVersion: 'v1', kind: 'Service' }), false);
  assert.equal(isL7Object({ apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry' }), false);
  assert.equal(isL7Object(dr({ host: 'x' })), true);
  assert.deepEqual(
    errorsOf(decodeVirtualService({ ...rule({}), apiVersion: 'networking.istio.io/v2' }).problems),
    [
      [
        'apiVersion',
        'must be one of networking.istio.io/v1, networking.istio.io/v1beta1, networking.istio.io/v1alpha3',
      ],
    ],
  );
});

test('values in Istio syntax: Go durations, (?i) regexes, 64-bit integers as strings, Date timestamps', () => {
  const d = decodeVirtualService(
    rule({
      timeout: '1h30m',
      retries: { attempts: 2, perTryTimeout: '1.5s', retryOn: '5xx, 503 ,reset' },
      match: [{ uri: { regex: '(?i)/API/.*' }, queryParams: { q: { regex: '*' }, v: { exact: '' } } }],
    }),
  );
  assert.deepEqual(d.problems, []);
  const http = d.value!.http[0]!;
  assert.deepEqual(http.timeout, { seconds: 5400, nanos: 0 });
  assert.deepEqual(http.retries, {
    attempts: 2,
    perTryTimeout: { seconds: 1, nanos: 500_000_000 },
    retryOn: '5xx,503,reset',
    retryRemoteLocalities: undefined,
    retryIgnorePreviousHosts: undefined,
    backoff: undefined,
  });
  // regex "*" is not RE2: Istio reads it as "present".
  assert.deepEqual(http.match[0]!.queryParams, [
    ['q', { kind: 'present' }],
    ['v', { kind: 'exact', value: '' }],
  ]);
  const ring = decodeDestinationRule(
    policy({
      loadBalancer: { consistentHash: { httpHeaderName: 'x-user', ringHash: { minimumRingSize: '2048' } } },
    }),
  );
  assert.deepEqual(ring.problems, []);
  assert.deepEqual(ring.value!.trafficPolicy!.loadBalancer!.consistentHash!.ringHash, {
    minimumRingSize: 2048,
  });
  const dated = decodeVirtualService({
    ...rule({}),
    metadata: { name: 'r', creationTimestamp: new Date('2024-01-02T03:04:05Z') },
  });
  assert.equal(dated.value!.creationTimestamp, '2024-01-02T03:04:05Z');

  assert.equal(parseDurationNanos('300ms'), 300_000_000n);
  assert.equal(parseDurationNanos('2h45m0.5s'), 9_900_500_000_000n);
  assert.equal(typeof parseDurationNanos('soon'), 'string');
  assert.equal(checkRe2('(?P<v>v[0-9]+)/x\\z'), undefined);
  assert.match(checkRe2('(a)\\1') ?? '', /backreferences/);
  assert.match(checkRe2('a(?=b)') ?? '', /lookaround/);
  assert.match(checkRe2('([') ?? '', /not a valid RE2 regex/);
  // What the waypoint would NACK is refused at the object, with its reason.
  assert.match(checkRe2('(a+)+b') ?? '', /cannot be run by the waypoint: nested unbounded repetition/);
});

/** [case, object, expected errors as [path, message pattern]] */
const BAD: [string, unknown, [string, RegExp][]][] = [
  [
    'weight over 100',
    rule({ route: [{ destination: { host: 'reviews' }, weight: 150 }] }),
    [['spec.http[0].route[0].weight', /150 must be between 0 and 100/]],
  ],
  [
    'negative weight',
    rule({
      route: [
        { destination: { host: 'a' }, weight: -1 },
        { destination: { host: 'b' }, weight: 1 },
      ],
    }),
    [['spec.http[0].route[0].weight', /-1 must be between 0 and 100/]],
  ],
  [
    'fractional weight',
    rule({ route: [{ destination: { host: 'reviews' }, weight: 1.5 }] }),
    [['spec.http[0].route[0].weight', /must be an integer/]],
  ],
  [
    'weights summing to 0',
    rule({
      route: [
        { destination: { host: 'a' }, weight: 0 },
        { destination: { host: 'b' }, weight: 0 },
      ],
    }),
    [['spec.http[0].route', /total weight .* is 0/]],
  ],
  [
    'bad regex',
    rule({ match: [{ uri: { regex: '/api/([' } }] }),
    [['spec.http[0].match[0].uri.regex', /not a valid RE2 regex/]],
  ],
  [
    'lookaround regex in a header',
    rule({ match: [{ headers: { 'x-v': { regex: 'a(?!b)' } } }] }),
    [['spec.http[0].match[0].headers.x-v.regex', /lookaround/]],
  ],
  [
    'two match kinds',
    rule({ match: [{ method: { exact: 'GET', prefix: 'G' } }] }),
    [['spec.http[0].match[0].method', /only one of exact, prefix and regex/]],
  ],
  [
    'empty header prefix',
    rule({ match: [{ headers: { 'x-v': { prefix: '' } } }] }),
    [['spec.http[0].match[0].headers.x-v.prefix', /must not be empty/]],
  ],
  [
    'null header match',
    rule({ match: [{ headers: { 'x-v': null } }] }),
    [['spec.http[0].match[0].headers.x-v', /must not be null/]],
  ],
  [
    'bad header name',
    rule({ match: [{ headers: { 'end user': { exact: 'x' } } }] }),
    [['spec.http[0].match[0].headers["end user"]', /not a valid header name/]],
  ],
  [
    'JWT claims on the mesh',
    rule({ match: [{ headers: { '@request.auth.claims.group': { exact: 'x' } } }] }),
    [['spec.http[0].match[0].headers["@request.auth.claims.group"]', /JWT claims/]],
  ],
  [
    'match port out of range',
    rule({ match: [{ port: 70000 }] }),
    [['spec.http[0].match[0].port', /70000 must be between 1 and 65535/]],
  ],
  [
    'bad source namespace',
    rule({ match: [{ sourceNamespace: 'Not_A_Namespace' }] }),
    [['spec.http[0].match[0].sourceNamespace', /not a namespace name/]],
  ],
  [
    'bad source label',
    rule({ match: [{ sourceLabels: { app: 'bad value!' } }] }),
    [['spec.http[0].match[0].sourceLabels.app', /not a valid label value/]],
  ],
  [
    'redirect with route',
    rule({ redirect: { uri: '/x' } }),
    [['spec.http[0]', /route and redirect cannot be used together/]],
  ],
  [
    'redirect with rewrite',
    vs({ hosts: ['r'], http: [{ redirect: { uri: '/x' }, rewrite: { uri: '/y' } }] }),
    [['spec.http[0]', /rewrite and redirect cannot be used together/]],
  ],
  [
    'directResponse with route',
    rule({ directResponse: { status: 503 } }),
    [['spec.http[0]', /route and directResponse cannot be used together/]],
  ],
  [
    'directResponse with fault',
    vs({
      hosts: ['r'],
      http: [
        { directResponse: { status: 503 }, fault: { abort: { httpStatus: 500, percentage: { value: 1 } } } },
      ],
    }),
    [['spec.http[0]', /fault and directResponse/]],
  ],
  [
    'directResponse status 700',
    vs({ hosts: ['r'], http: [{ directResponse: { status: 700 } }] }),
    [['spec.http[0].directResponse.status', /700 must be between 200 and 599/]],
  ],
  [
    'nothing to do',
    vs({ hosts: ['r'], http: [{ timeout: '1s' }] }),
    [['spec.http[0]', /one of route, redirect or directResponse is required/]],
  ],
  [
    'redirect code 304',
    vs({ hosts: ['r'], http: [{ redirect: { uri: '/x', redirectCode: 304 } }] }),
    [['spec.http[0].redirect.redirectCode', /304 must be 301, 302, 303, 307 or 308/]],
  ],
  [
    'redirect prefixRewrite with an exact match',
    vs({ hosts: ['r'], http: [{ match: [{ uri: { exact: '/a' } }], redirect: { prefixRewrite: '/b' } }] }),
    [['spec.http[0].redirect.prefixRewrite', /prefix match/]],
  ],
  [
    'redirect uri and prefixRewrite',
    vs({ hosts: ['r'], http: [{ redirect: { uri: '/a', prefixRewrite: '/b' } }] }),
    [['spec.http[0].redirect', /uri and prefixRewrite cannot be used together/]],
  ],
  [
    'empty redirect',
    vs({ hosts: ['r'], http: [{ redirect: {} }] }),
    [['spec.http[0].redirect', /must specify/]],
  ],
  [
    'redirect scheme ftp',
    vs({ hosts: ['r'], http: [{ redirect: { scheme: 'ftp' } }] }),
    [['spec.http[0].redirect.scheme', /"http" or "https"/]],
  ],
  [
    'fault percentage 150',
    rule({ fault: { abort: { httpStatus: 500, percentage: { value: 150 } } } }),
    [['spec.http[0].fault.abort.percentage.value', /150 must be 0 or between 0.0001 and 100/]],
  ],
  [
    'fault status 99',
    rule({ fault: { abort: { httpStatus: 99, percentage: { value: 10 } } } }),
    [['spec.http[0].fault.abort.httpStatus', /99 must be between 200 and 599/]],
  ],
  [
    'unknown gRPC status',
    rule({ fault: { abort: { grpcStatus: 'NOPE', percentage: { value: 10 } } } }),
    [['spec.http[0].fault.abort.grpcStatus', /not a gRPC status name/]],
  ],
  ['empty fault', rule({ fault: {} }), [['spec.http[0].fault', /needs an abort, a delay, or both/]]],
  [
    'exponential delay',
    rule({ fault: { delay: { exponentialDelay: '1s', percentage: { value: 1 } } } }),
    [['spec.http[0].fault.delay.exponentialDelay', /not supported/]],
  ],
  ['negative timeout', rule({ timeout: '-1s' }), [['spec.http[0].timeout', /must not be negative/]]],
  ['timeout below 1ms', rule({ timeout: '500us' }), [['spec.http[0].timeout', /at least 1ms/]]],
  [
    'timeout 0s (Istio requires at least 1ms)',
    rule({ timeout: '0s' }),
    [['spec.http[0].timeout', /at least 1ms/]],
  ],
  ['timeout not a duration', rule({ timeout: 'soon' }), [['spec.http[0].timeout', /not a duration/]]],
  ['timeout as a number', rule({ timeout: 5 }), [['spec.http[0].timeout', /must be a duration string/]]],
  [
    'unknown retryOn',
    rule({ retries: { attempts: 1, retryOn: '5xx,sometimes' } }),
    [['spec.http[0].retries.retryOn', /"sometimes" is not a retry condition/]],
  ],
  [
    'retry settings with attempts 0',
    rule({ retries: { attempts: 0, perTryTimeout: '1s' } }),
    [['spec.http[0].retries', /attempts is 0/]],
  ],
  [
    'negative attempts',
    rule({ retries: { attempts: -1 } }),
    [['spec.http[0].retries.attempts', /must not be negative/]],
  ],
  ['misspelt field', rule({ timout: '1s' }), [['spec.http[0].timout', /unknown field/]]],
  [
    'misspelt spec field',
    vs({ hosts: ['r'], htp: [] }),
    [
      ['spec.htp', /unknown field/],
      ['spec', /http, tcp or tls must be provided/],
    ],
  ],
  [
    'wildcard host on the mesh',
    vs({ hosts: ['*'], http: [{ route: [{ destination: { host: 'r' } }] }] }),
    [['spec.hosts[0]', /wildcard host \* is not allowed/]],
  ],
  [
    'no hosts',
    vs({ http: [{ route: [{ destination: { host: 'r' } }] }] }),
    [['spec.hosts', /at least one host/]],
  ],
  [
    'duplicate hosts',
    vs({ hosts: ['*.example.com', 'a.example.com'], http: [{ route: [{ destination: { host: 'r' } }] }] }),
    [['spec.hosts[1]', /duplicates spec.hosts\[0\]/]],
  ],
  [
    'upper-case host',
    vs({ hosts: ['Reviews'], http: [{ route: [{ destination: { host: 'r' } }] }] }),
    [['spec.hosts[0]', /not a valid host name/]],
  ],
  [
    'bad gateway name',
    vs({ hosts: ['r'], gateways: ['Bad/Name'], http: [{ route: [{ destination: { host: 'r' } }] }] }),
    [['spec.gateways[0]', /<namespace>\/<name>/]],
  ],
  [
    'mirror and mirrors',
    rule({ mirror: { host: 'a' }, mirrors: [{ destination: { host: 'b' } }] }),
    [['spec.http[0]', /mirror and mirrors cannot be used together/]],
  ],
  [
    'mirror percentage 101',
    rule({ mirror: { host: 'a' }, mirrorPercentage: { value: 101 } }),
    [['spec.http[0].mirrorPercentage.value', /101 must be 0 or between/]],
  ],
  [
    'bad subset name',
    rule({ route: [{ destination: { host: 'reviews', subset: 'V1' } }] }),
    [['spec.http[0].route[0].destination.subset', /not a valid subset name/]],
  ],
  [
    'destination port 0',
    rule({ route: [{ destination: { host: 'reviews', port: { number: 0 } } }] }),
    [['spec.http[0].route[0].destination.port.number', /0 must be between 1 and 65535/]],
  ],
  [
    'no destination host',
    rule({ route: [{ destination: { subset: 'v1' } }] }),
    [['spec.http[0].route[0].destination.host', /is required/]],
  ],
  [
    'authority rewritten twice',
    rule({ rewrite: { authority: 'a' }, headers: { request: { set: { host: 'b' } } } }),
    [
      [
        'spec.http[0].headers.request.set.host',
        /authority is already rewritten by spec.http\[0\].rewrite.authority/,
      ],
    ],
  ],
  [
    'removing :path',
    rule({ headers: { request: { remove: [':path'] } } }),
    [['spec.http[0].headers.request.remove[0]', /cannot be changed/]],
  ],
  [
    'response Host',
    rule({ headers: { response: { set: { Host: 'x' } } } }),
    [['spec.http[0].headers.response.set.Host', /Host header/]],
  ],
  [
    'unterminated % in a header value',
    rule({ headers: { request: { set: { 'x-a': '100%' } } } }),
    [['spec.http[0].headers.request.set.x-a', /not closed/]],
  ],
  [
    'rewrite uri and regex',
    rule({ rewrite: { uri: '/a', uriRegexRewrite: { match: '^/b', rewrite: '/c' } } }),
    [['spec.http[0].rewrite', /uri and uriRegexRewrite/]],
  ],
  [
    'rewrite regex without substitution',
    rule({ rewrite: { uriRegexRewrite: { match: '^/b' } } }),
    [['spec.http[0].rewrite.uriRegexRewrite', /needs both match and rewrite/]],
  ],
  [
    'CORS method',
    rule({ corsPolicy: { allowMethods: ['GET', 'FETCH'] } }),
    [['spec.http[0].corsPolicy.allowMethods[1]', /"FETCH" is not an HTTP method/]],
  ],
  [
    'CORS maxAge with milliseconds',
    rule({ corsPolicy: { maxAge: '1500ms' } }),
    [['spec.http[0].corsPolicy.maxAge', /whole seconds/]],
  ],
  [
    'TCP route without destinations',
    vs({ hosts: ['r'], tcp: [{ match: [{ port: 9000 }] }] }),
    [['spec.tcp[0].route', /at least one destination/]],
  ],
  [
    'TLS route without SNI',
    vs({ hosts: ['r'], tls: [{ match: [{ port: 443 }], route: [{ destination: { host: 'r' } }] }] }),
    [['spec.tls[0].match[0].sniHosts', /at least one SNI host/]],
  ],
  ['not an object', 'reviews', [['(object)', /must be an object/]]],
  [
    'no spec',
    { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'r' } },
    [
      ['spec', /is required/],
      ['spec.hosts', /at least one host/],
    ],
  ],
  ['no name', { ...rule({}), metadata: { namespace: 'default' } }, [['metadata.name', /is required/]]],

  ['DR without host', dr({ subsets: [{ name: 'v1' }] }), [['spec.host', /is required/]]],
  [
    'subset without name',
    dr({ host: 'reviews', subsets: [{ labels: { version: 'v1' } }] }),
    [['spec.subsets[0].name', /is required/]],
  ],
  [
    'duplicate subset',
    dr({ host: 'reviews', subsets: [{ name: 'v1' }, { name: 'v1' }] }),
    [['spec.subsets[1].name', /"v1" is used by another subset/]],
  ],
  ['empty traffic policy', policy({}), [['spec.trafficPolicy', /at least one field/]]],
  [
    'port-level settings without a port',
    policy({ portLevelSettings: [{ loadBalancer: { simple: 'RANDOM' } }] }),
    [['spec.trafficPolicy.portLevelSettings[0].port', /a port number is required/]],
  ],
  [
    'port-level settings with nothing',
    policy({ portLevelSettings: [{ port: { number: 80 } }] }),
    [['spec.trafficPolicy.portLevelSettings[0]', /at least one field/]],
  ],
  [
    'two hash keys',
    policy({ loadBalancer: { consistentHash: { httpHeaderName: 'x', useSourceIp: true } } }),
    [
      [
        'spec.trafficPolicy.loadBalancer.consistentHash',
        /exactly one hash key may be set \(found httpHeaderName, useSourceIp\)/,
      ],
    ],
  ],
  [
    'no hash key',
    policy({ loadBalancer: { consistentHash: { ringHash: { minimumRingSize: 10 } } } }),
    [['spec.trafficPolicy.loadBalancer.consistentHash', /exactly one hash key is required/]],
  ],
  [
    'cookie without name',
    policy({ loadBalancer: { consistentHash: { httpCookie: { ttl: '1s' } } } }),
    [['spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name', /is required/]],
  ],
  [
    'maglev table not prime',
    policy({ loadBalancer: { consistentHash: { useSourceIp: true, maglev: { tableSize: 1000 } } } }),
    [['spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize', /prime/]],
  ],
  [
    'simple and consistentHash',
    policy({ loadBalancer: { simple: 'RANDOM', consistentHash: { useSourceIp: true } } }),
    [['spec.trafficPolicy.loadBalancer', /simple and consistentHash/]],
  ],
  [
    'unknown LB',
    policy({ loadBalancer: { simple: 'FASTEST' } }),
    [['spec.trafficPolicy.loadBalancer.simple', /must be one of UNSPECIFIED/]],
  ],
  [
    'negative maxConnections',
    policy({ connectionPool: { tcp: { maxConnections: -1 } } }),
    [['spec.trafficPolicy.connectionPool.tcp.maxConnections', /-1 must not be negative/]],
  ],
  [
    'empty connection pool',
    policy({ connectionPool: {} }),
    [['spec.trafficPolicy.connectionPool', /must set tcp or http/]],
  ],
  [
    'upgrade with client protocol',
    policy({ connectionPool: { http: { h2UpgradePolicy: 'UPGRADE', useClientProtocol: true } } }),
    [['spec.trafficPolicy.connectionPool.http', /useClientProtocol/]],
  ],
  [
    'keepalive without timeout',
    policy({ connectionPool: { http: { http2KeepAlive: { interval: '1s' } } } }),
    [['spec.trafficPolicy.connectionPool.http.http2KeepAlive.timeout', /is required/]],
  ],
  [
    'maxEjectionPercent 150',
    policy({ outlierDetection: { maxEjectionPercent: 150 } }),
    [['spec.trafficPolicy.outlierDetection.maxEjectionPercent', /150 must be 0..100/]],
  ],
  [
    'negative interval',
    policy({ outlierDetection: { interval: '-5s' } }),
    [['spec.trafficPolicy.outlierDetection.interval', /must not be negative/]],
  ],
  [
    'local-origin failures without the split',
    policy({ outlierDetection: { consecutiveLocalOriginFailures: 3 } }),
    [
      [
        'spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures',
        /splitExternalLocalOriginErrors/,
      ],
    ],
  ],
  [
    'ISTIO_MUTUAL with sni',
    policy({ tls: { mode: 'ISTIO_MUTUAL', sni: 'x' } }),
    [['spec.trafficPolicy.tls', /ISTIO_MUTUAL takes no other fields/]],
  ],
  [
    'MUTUAL without a key',
    policy({ tls: { mode: 'MUTUAL', clientCertificate: '/c.pem' } }),
    [['spec.trafficPolicy.tls', /MUTUAL needs credentialName, or clientCertificate and privateKey/]],
  ],
  [
    'MUTUAL with credentialName (the waypoint cannot read the Secret)',
    policy({ tls: { mode: 'MUTUAL', credentialName: 'client-cert' } }),
    [['spec.trafficPolicy.tls.credentialName', /not supported on Ambit's waypoints/]],
  ],
  [
    'credentialName with files',
    policy({ tls: { mode: 'SIMPLE', credentialName: 'c', caCertificates: '/ca.pem' } }),
    [['spec.trafficPolicy.tls', /credentialName cannot be used with/]],
  ],
  [
    'TLS fields of the wrong type',
    policy({ tls: { mode: 'SIMPLE', insecureSkipVerify: 'yes', subjectAltNames: 'a' } }),
    [
      ['spec.trafficPolicy.tls.subjectAltNames', /list/],
      ['spec.trafficPolicy.tls.insecureSkipVerify', /true or false/],
    ],
  ],
  [
    'subset policy error',
    dr({ host: 'reviews', subsets: [{ name: 'v1', trafficPolicy: { loadBalancer: { simple: 'NOPE' } } }] }),
    [['spec.subsets[0].trafficPolicy.loadBalancer.simple', /must be one of/]],
  ],
];

for (const [name, obj, expected] of BAD) {
  test(`rejected: ${name}`, () => {
    const d = decodeL7Object(obj);
    assert.equal(d.value, undefined, 'an object with an error is not returned');
    const errors = errorsOf(d.problems);
    assert.equal(errors.length, expected.length, JSON.stringify(errors));
    expected.forEach(([path, message], i) => {
      assert.equal(errors[i]![0], path);
      assert.match(errors[i]![1]!, message);
    });
    for (const p of d.problems) {
      assert.equal(p.kind, obj && typeof obj === 'object' && 'kind' in obj ? obj.kind : 'VirtualService');
      assert.equal(p.namespace, 'default');
    }
  });
}

test('every problem of an object is reported, not only the first', () => {
  const d = decodeVirtualService(
    vs({
      hosts: ['reviews', 'Bad'],
      http: [
        { route: [{ destination: { host: 'reviews' }, weight: 101 }], timeout: '-1s' },
        { match: [{ uri: { regex: '(' } }], route: [{ destination: { host: 'reviews', subset: '_' } }] },
      ],
    }),
  );
  assert.deepEqual(
    errorsOf(d.problems).map(([p]) => p),
    [
      'spec.hosts[1]',
      'spec.http[0].route[0].weight',
      'spec.http[0].timeout',
      'spec.http[1].match[0].uri.regex',
      'spec.http[1].route[0].destination.subset',
    ],
  );
  assert.ok(
    d.problems.every((p) => p.kind === 'VirtualService' && p.namespace === 'default' && p.name === 'r'),
  );
});

/** [case, object, expected warnings as [path, message pattern]] — the object is still returned. */
const WARNED: [string, unknown, [string, RegExp][]][] = [
  [
    'deprecated mirrorPercent',
    rule({ mirror: { host: 'a' }, mirrorPercent: 50 }),
    [['spec.http[0].mirrorPercent', /deprecated/]],
  ],
  [
    'fault without percentage',
    rule({ fault: { abort: { httpStatus: 500 } } }),
    [['spec.http[0].fault.abort', /no percentage, so no request is aborted/]],
  ],
  [
    'delay with the deprecated percent',
    rule({ fault: { delay: { fixedDelay: '1s', percent: 10 } } }),
    [['spec.http[0].fault.delay.percent', /deprecated/]],
  ],
  [
    'delegate',
    vs({ hosts: ['r'], http: [{ delegate: { name: 'd' } }] }),
    [['spec.http[0].delegate', /not supported on waypoints/]],
  ],
  [
    'workloadSelector',
    dr({ host: 'r', workloadSelector: { matchLabels: { app: 'x' } }, subsets: [{ name: 'v1' }] }),
    [['spec.workloadSelector', /sidecar clients/]],
  ],
  [
    'consecutiveErrors',
    policy({ outlierDetection: { consecutiveErrors: 5 } }),
    [['spec.trafficPolicy.outlierDetection.consecutiveErrors', /deprecated and ignored/]],
  ],
  [
    'SIMPLE with credentialName: verified against the system roots',
    policy({ tls: { mode: 'SIMPLE', credentialName: 'api-ca' } }),
    [['spec.trafficPolicy.tls.credentialName', /not read by Ambit's waypoints.*system roots/]],
  ],
  [
    'PASSTHROUGH',
    policy({ loadBalancer: { simple: 'PASSTHROUGH' } }),
    [['spec.trafficPolicy.loadBalancer.simple', /PASSTHROUGH is not supported/]],
  ],
];

for (const [name, obj, expected] of WARNED) {
  test(`applied with a warning: ${name}`, () => {
    const d = decodeL7Object(obj);
    assert.notEqual(d.value, undefined, JSON.stringify(d.problems));
    const warnings = d.problems.filter((p) => p.severity === 'warning').map((p) => [p.path, p.message]);
    assert.equal(warnings.length, expected.length, JSON.stringify(warnings));
    expected.forEach(([path, message], i) => {
      assert.equal(warnings[i]![0], path);
      assert.match(warnings[i]![1]!, message);
    });
  });
}

test('deprecated fields still take effect: mirrorPercent, allowOrigin, delay.percent', () => {
  const d = decodeVirtualService(
    rule({
      mirror: { host: 'a' },
      mirrorPercent: 50,
      corsPolicy: { allowOrigin: ['https://a.example'] },
      fault: { delay: { fixedDelay: '1s', percent: 10 } },
    }),
  );
  const http = d.value!.http[0]!;
  assert.deepEqual(http.mirrors, [
    { field: 'mirror', destination: { host: 'a', subset: '', port: undefined }, percentage: 50 },
  ]);
  assert.deepEqual(http.corsPolicy?.allowOrigins, [{ kind: 'exact', value: 'https://a.example' }]);
  assert.deepEqual(http.fault?.delay, { fixedDelay: { seconds: 1, nanos: 0 }, percentage: 10 });
});
