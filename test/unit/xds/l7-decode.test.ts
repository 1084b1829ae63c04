/**
 * The L7 decoders, fed hand-built Envoy messages encoded with protobufjs from the protos shipped in
 * @grpc/grpc-js-xds: round trips into the model, and every invalid field reported with its path.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { FieldError } from '../../../src/core/xds/workload-proto.ts';
import { EnvoyTypeUrl } from '../../../src/core/xds/l7-names.ts';
import {
  anyOf,
  decodeClusterBytes,
  decodeClusterLoadAssignmentBytes,
  decodeL7Resource,
  decodeListenerBytes,
  decodeRouteConfigurationBytes,
  encodeEnvoy,
} from '../../../src/core/xds/l7-wire.ts';
import type { Decoded } from '../../../src/core/xds/workload-proto.ts';
import type { Cluster, RouteConfiguration } from '../../../src/core/xds/l7-model.ts';

const T = {
  Listener: 'envoy.config.listener.v3.Listener',
  RouteConfiguration: 'envoy.config.route.v3.RouteConfiguration',
  Cluster: 'envoy.config.cluster.v3.Cluster',
  Cla: 'envoy.config.endpoint.v3.ClusterLoadAssignment',
  Hcm: 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
  Fault: 'envoy.extensions.filters.http.fault.v3.HTTPFault',
  Cors: 'envoy.extensions.filters.http.cors.v3.Cors',
  CorsPolicy: 'envoy.extensions.filters.http.cors.v3.CorsPolicy',
  RouteCorsPolicy: 'envoy.config.route.v3.CorsPolicy',
  Router: 'envoy.extensions.filters.http.router.v3.Router',
  FilterConfig: 'envoy.config.route.v3.FilterConfig',
  HttpProtocolOptions: 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
  PreviousHosts: 'envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate',
};

const HOST = 'reviews.ns.svc.cluster.local';
const ROUTES = `${HOST}:9080`;
const V1 = `outbound|9080|v1|${HOST}`;
const V2 = `outbound|9080|v2|${HOST}`;

function ok<V>(d: Decoded<V>): V {
  if (!d.ok) assert.fail(`decode failed: ${JSON.stringify(d.errors)}`);
  return d.value;
}

function errors<V>(d: Decoded<V>): FieldError[] {
  if (d.ok) assert.fail('expected errors, decoded fine');
  return d.errors;
}

const clone = <X>(x: X): X => structuredClone(x);

// ---------- Listener ----------

function listener(hcm: object = {}, extra: object = {}) {
  return {
    name: ROUTES,
    api_listener: {
      api_listener: anyOf(T.Hcm, {
        stat_prefix: ROUTES,
        rds: { route_config_name: ROUTES, config_source: { ads: {}, resource_api_version: 'V3' } },
        http_filters: [
          { name: 'envoy.filters.http.fault', typed_config: anyOf(T.Fault, {}) },
          { name: 'envoy.filters.http.cors', typed_config: anyOf(T.Cors, {}) },
          { name: 'envoy.filters.http.router', typed_config: anyOf(T.Router, {}) },
        ],
        ...hcm,
      }),
    },
    ...extra,
  };
}

describe('Listener', () => {
  test('an API listener with RDS over ADS and the three filters', () => {
    assert.deepEqual(ok(decodeListenerBytes(encodeEnvoy(T.Listener, listener()))), {
      name: ROUTES,
      routeConfigName: ROUTES,
      httpFilters: [
        { name: 'envoy.filters.http.fault', kind: 'fault' },
        { name: 'envoy.filters.http.cors', kind: 'cors' },
        { name: 'envoy.filters.http.router', kind: 'router' },
      ],
    });
  });

  test('CORS is optional; an unknown optional filter is skipped', () => {
    const l = listener({
      http_filters: [
        {
          name: 'x',
          typed_config: { type_url: 'type.googleapis.com/acme.Filter', value: new Uint8Array() },
          is_optional: true,
        },
        { name: 'router', typed_config: anyOf(T.Router, {}) },
      ],
    });
    assert.deepEqual(ok(decodeListenerBytes(encodeEnvoy(T.Listener, l))).httpFilters, [
      { name: 'router', kind: 'router' },
    ]);
  });

  const at = 'api_listener.api_listener';
  const cases: [string, object, string, RegExp][] = [
    [
      'no router',
      listener({ http_filters: [{ name: 'f', typed_config: anyOf(T.Fault, {}) }] }),
      `${at}.http_filters`,
      /router/,
    ],
    [
      'router not last',
      listener({
        http_filters: [
          { name: 'r', typed_config: anyOf(T.Router, {}) },
          { name: 'f', typed_config: anyOf(T.Fault, {}) },
        ],
      }),
      `${at}.http_filters`,
      /end with/,
    ],
    [
      'an unknown filter',
      listener({
        http_filters: [
          {
            name: 'ext_authz',
            typed_config: {
              type_url: 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz',
              value: new Uint8Array(),
            },
          },
          { name: 'r', typed_config: anyOf(T.Router, {}) },
        ],
      }),
      `${at}.http_filters[0].typed_config`,
      /unsupported HTTP filter envoy.extensions.filters.http.ext_authz.v3.ExtAuthz/,
    ],
    [
      'a listener-wide fault',
      listener({
        http_filters: [
          {
            name: 'f',
            typed_config: anyOf(T.Fault, { abort: { http_status: 503, percentage: { numerator: 100 } } }),
          },
          { name: 'r', typed_config: anyOf(T.Router, {}) },
        ],
      }),
      `${at}.http_filters[0].typed_config`,
      /per route/,
    ],
    [
      'an inline route configuration',
      listener({ rds: undefined, route_config: { name: 'x' } }),
      `${at}.route_config`,
      /rds/,
    ],
    [
      'RDS from a file',
      listener({ rds: { route_config_name: 'x', config_source: { path: '/etc/r.yaml' } } }),
      `${at}.rds.config_source`,
      /ADS/,
    ],
    [
      'RDS without a name',
      listener({ rds: { config_source: { ads: {} } } }),
      `${at}.rds.route_config_name`,
      /required/,
    ],
    [
      'a TCP listener without its tcp_proxy filter',
      { name: 'x', filter_chains: [{}] },
      'filter_chains[0].filters',
      /exactly one filter \(tcp_proxy\)/,
    ],
    [
      'both an API listener and filter chains',
      { name: 'x', filter_chains: [{}], api_listener: { api_listener: anyOf(T.Router, {}) } },
      'filter_chains',
      /either an API listener or a TCP one/,
    ],
    [
      'an API listener that is not an HCM',
      { name: 'x', api_listener: { api_listener: anyOf(T.Router, {}) } },
      `${at}.type_url`,
      /HttpConnectionManager/,
    ],
  ];
  for (const [name, l, path, message] of cases) {
    test(`rejects ${name}`, () => {
      const errs = errors(decodeListenerBytes(encodeEnvoy(T.Listener, l)));
      assert.ok(
        errs.some((e) => e.path === path && message.test(e.message)),
        JSON.stringify(errs),
      );
    });
  }
});

// ---------- RouteConfiguration ----------

const dur = (seconds: number, nanos = 0) => ({ seconds, nanos });
const pct = (numerator: number, denominator = 'HUNDRED') => ({ numerator, denominator });

function routeConfiguration() {
  return {
    name: ROUTES,
    virtual_hosts: [
      {
        name: ROUTES,
        domains: [HOST, `${HOST}:9080`, 'Reviews', 'reviews:9080', '10.96.0.10', '10.96.0.10:9080'],
        routes: [
          {
            name: 'jason',
            match: {
              prefix: '/',
              case_sensitive: {},
              headers: [
                { name: 'End-User', string_match: { exact: 'jason' } },
                { name: ':method', string_match: { safe_regex: { regex: 'GET|HEAD' } } },
                { name: 'x-absent', present_match: true, invert_match: true },
              ],
              query_parameters: [
                { name: 'v', string_match: { prefix: '2', ignore_case: true } },
                { name: 'debug', present_match: true },
              ],
              dynamic_metadata: [
                {
                  filter: 'ambit.source',
                  path: [{ key: 'namespace' }],
                  value: { string_match: { exact: 'frontend' } },
                },
                {
                  filter: 'ambit.source',
                  path: [{ key: 'labels' }, { key: 'app' }],
                  value: { string_match: { exact: 'productpage' } },
                  invert: true,
                },
              ],
            },
            route: {
              weighted_clusters: {
                clusters: [
                  {
                    name: V1,
                    weight: { value: 90 },
                    request_headers_to_add: [
                      {
                        header: { key: 'X-Version', value: 'v1' },
                        append_action: 'OVERWRITE_IF_EXISTS_OR_ADD',
                      },
                    ],
                    response_headers_to_remove: ['x-internal'],
                  },
                  { name: V2, weight: { value: 10 }, host_rewrite_literal: 'v2.example' },
                ],
              },
              timeout: dur(2, 500_000_000),
              max_stream_duration: {
                max_stream_duration: dur(2, 500_000_000),
                grpc_timeout_header_max: dur(0),
              },
              retry_policy: {
                retry_on: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes',
                num_retries: { value: 3 },
                per_try_timeout: dur(1),
                retriable_status_codes: [503],
                retry_host_predicate: [
                  {
                    name: 'envoy.retry_host_predicates.previous_hosts',
                    typed_config: anyOf(T.PreviousHosts, {}),
                  },
                ],
                host_selection_retry_max_attempts: 5,
                retry_back_off: { base_interval: dur(0, 50_000_000) },
              },
              prefix_rewrite: '/v2/',
              request_mirror_policies: [
                { cluster: V2, runtime_fraction: { default_value: pct(50) } },
                { cluster: V1 },
              ],
              hash_policy: [
                { header: { header_name: 'X-User' } },
                { cookie: { name: 'session', ttl: dur(0), path: '/' }, terminal: true },
                { connection_properties: { source_ip: true } },
                { query_parameter: { name: 'id' } },
              ],
              upgrade_configs: [
                { upgrade_type: 'websocket' },
                { upgrade_type: 'CONNECT', enabled: { value: false } },
              ],
            },
            typed_per_filter_config: {
              'envoy.filters.http.fault': anyOf(T.Fault, {
                delay: { fixed_delay: dur(7), percentage: pct(100) },
                abort: { http_status: 500, percentage: pct(1, 'TEN_THOUSAND') },
              }),
              'envoy.filters.http.cors': anyOf(T.CorsPolicy, {
                allow_origin_string_match: [{ exact: 'https://example.com' }],
                allow_methods: 'POST,GET',
                allow_headers: 'X-Foo-Bar',
                max_age: '86400',
                allow_credentials: { value: false },
              }),
            },
            request_headers_to_add: [
              { header: { key: 'x-added', value: '100%%' } },
              { header: { key: 'x-set', value: 'v' }, append: { value: false } },
              {
                header: { key: 'x-empty', value: '' },
                keep_empty_value: true,
                append_action: 'ADD_IF_ABSENT',
              },
            ],
            request_headers_to_remove: ['X-Remove'],
            response_headers_to_add: [
              { header: { key: 'x-resp', value: 'r' }, append_action: 'OVERWRITE_IF_EXISTS' },
            ],
          },
          {
            name: 'regex',
            match: {
              safe_regex: { regex: '/api/v[0-9]+/.*' },
              grpc: {},
              runtime_fraction: { default_value: pct(25) },
            },
            route: {
              cluster: V1,
              regex_rewrite: {
                pattern: { regex: '^/api/(v[0-9]+)/(.*)$' },
                substitution: '/\\2?version=\\1',
              },
            },
          },
          {
            name: 'redirect',
            match: { path: '/v1/getProductRatings' },
            redirect: {
              host_redirect: 'newratings.default.svc.cluster.local',
              path_redirect: '/v1/bookRatings',
              port_redirect: 8080,
              https_redirect: true,
              response_code: 'PERMANENT_REDIRECT',
              strip_query: true,
            },
          },
          {
            name: 'direct',
            match: { prefix: '/health' },
            direct_response: { status: 503, body: { inline_string: 'unavailable' } },
            typed_per_filter_config: {
              'envoy.filters.http.fault': anyOf(T.FilterConfig, { disabled: true }),
              'envoy.filters.http.cors': anyOf(T.FilterConfig, {
                config: anyOf(T.RouteCorsPolicy, { allow_origin_string_match: [{ suffix: '.example.com' }] }),
              }),
              'acme.optional': anyOf(T.FilterConfig, {
                is_optional: true,
                config: { type_url: 'type.googleapis.com/acme.X', value: new Uint8Array() },
              }),
            },
          },
          { name: 'default', match: { prefix: '' }, route: { cluster: V1, timeout: dur(0) } },
        ],
      },
    ],
    response_headers_to_add: [{ header: { key: 'x-mesh', value: 'ambit' } }],
  };
}

describe('RouteConfiguration', () => {
  const model = ok(decodeRouteConfigurationBytes(encodeEnvoy(T.RouteConfiguration, routeConfiguration())));
  const vh = model.virtualHosts[0]!;
  const [jason, regex, redirect, direct, dflt] = vh.routes;

  test('configuration and virtual host', () => {
    assert.equal(model.name, ROUTES);
    assert.equal(vh.name, ROUTES);
    assert.deepEqual(vh.domains, [
      HOST,
      `${HOST}:9080`,
      'reviews',
      'reviews:9080',
      '10.96.0.10',
      '10.96.0.10:9080',
    ]);
    assert.deepEqual(model.responseHeaders, {
      add: [{ name: 'x-mesh', value: 'ambit', action: 'append-if-exists-or-add', keepEmptyValue: false }],
      remove: [],
    });
    assert.equal(model.mostSpecificHeaderMutationsWins, false);
    assert.equal(vh.retryPolicy, undefined);
  });

  test('a match with every kind of condition', () => {
    assert.deepEqual(jason!.match, {
      path: { kind: 'prefix', value: '/' },
      caseSensitive: false,
      headers: [
        {
          name: 'end-user',
          match: { kind: 'string', matcher: { kind: 'exact', value: 'jason', ignoreCase: false } },
          invert: false,
          treatMissingAsEmpty: false,
        },
        {
          name: ':method',
          match: { kind: 'string', matcher: { kind: 'regex', regex: 'GET|HEAD' } },
          invert: false,
          treatMissingAsEmpty: false,
        },
        {
          name: 'x-absent',
          match: { kind: 'present', present: true },
          invert: true,
          treatMissingAsEmpty: false,
        },
      ],
      queryParameters: [
        { name: 'v', matcher: { kind: 'prefix', value: '2', ignoreCase: true } },
        { name: 'debug', matcher: undefined },
      ],
      source: [
        {
          field: { kind: 'namespace' },
          matcher: { kind: 'exact', value: 'frontend', ignoreCase: false },
          invert: false,
        },
        {
          field: { kind: 'label', label: 'app' },
          matcher: { kind: 'exact', value: 'productpage', ignoreCase: false },
          invert: true,
        },
      ],
      grpcOnly: false,
      fraction: undefined,
    });
  });

  test('a route action with weights, headers, timeouts, retries, rewrite, mirrors, hashing', () => {
    assert.deepEqual(jason!.action, {
      kind: 'route',
      clusters: [
        {
          name: V1,
          weight: 90,
          requestHeaders: {
            add: [
              { name: 'x-version', value: 'v1', action: 'overwrite-if-exists-or-add', keepEmptyValue: false },
            ],
            remove: [],
          },
          responseHeaders: { add: [], remove: ['x-internal'] },
          hostRewrite: undefined,
        },
        {
          name: V2,
          weight: 10,
          requestHeaders: { add: [], remove: [] },
          responseHeaders: { add: [], remove: [] },
          hostRewrite: 'v2.example',
        },
      ],
      weighted: true,
      timeoutMs: 2500,
      maxStreamDurationMs: 2500,
      grpcTimeoutHeaderMaxMs: 0,
      retryPolicy: {
        retryOn: ['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes'],
        numRetries: 3,
        perTryTimeoutMs: 1000,
        retriableStatusCodes: [503],
        retryPreviousHosts: true,
        hostSelectionRetryMaxAttempts: 5,
        backOff: { baseIntervalMs: 50, maxIntervalMs: 500 },
      },
      prefixRewrite: '/v2/',
      regexRewrite: undefined,
      hostRewrite: undefined,
      mirrors: [
        { cluster: V2, fraction: { numerator: 50, denominator: 100 }, disableShadowHostSuffix: false },
        { cluster: V1, fraction: undefined, disableShadowHostSuffix: false },
      ],
      hashPolicies: [
        { kind: 'header', name: 'x-user', terminal: false },
        { kind: 'cookie', name: 'session', ttlMs: 0, path: '/', terminal: true },
        { kind: 'source-ip', terminal: false },
        { kind: 'query-parameter', name: 'id', terminal: false },
      ],
      upgrades: ['websocket'],
      clusterNotFoundStatus: 503,
    });
  });

  test('fault and CORS from typed_per_filter_config', () => {
    assert.deepEqual(jason!.fault, {
      kind: 'config',
      config: {
        delay: { fixedDelayMs: 7000, percentage: { numerator: 100, denominator: 100 } },
        abort: { httpStatus: 500, percentage: { numerator: 1, denominator: 10_000 } },
      },
    });
    assert.deepEqual(jason!.cors, {
      kind: 'config',
      config: {
        allowOrigins: [{ kind: 'exact', value: 'https://example.com', ignoreCase: false }],
        allowMethods: 'POST,GET',
        allowHeaders: 'X-Foo-Bar',
        exposeHeaders: '',
        maxAge: '86400',
        allowCredentials: false,
        allowPrivateNetworkAccess: undefined,
        forwardNotMatchingPreflights: undefined,
        enabled: undefined,
      },
    });
    assert.deepEqual(direct!.fault, { kind: 'disabled' });
    assert.deepEqual(direct!.cors?.kind === 'config' && direct!.cors.config.allowOrigins, [
      { kind: 'suffix', value: '.example.com', ignoreCase: false },
    ]);
  });

  test('route-level header mutations: %% is a literal %, append: false overwrites', () => {
    assert.deepEqual(jason!.requestHeaders, {
      add: [
        { name: 'x-added', value: '100%', action: 'append-if-exists-or-add', keepEmptyValue: false },
        { name: 'x-set', value: 'v', action: 'overwrite-if-exists-or-add', keepEmptyValue: false },
        { name: 'x-empty', value: '', action: 'add-if-absent', keepEmptyValue: true },
      ],
      remove: ['x-remove'],
    });
    assert.deepEqual(jason!.responseHeaders.add[0]?.action, 'overwrite-if-exists');
  });

  test('regex match, gRPC, runtime fraction and regex rewrite', () => {
    assert.deepEqual(regex!.match.path, { kind: 'regex', regex: '/api/v[0-9]+/.*' });
    assert.equal(regex!.match.grpcOnly, true);
    assert.deepEqual(regex!.match.fraction, { numerator: 25, denominator: 100 });
    assert.equal(regex!.match.caseSensitive, true);
    assert.ok(regex!.action.kind === 'route');
    assert.deepEqual(regex!.action.regexRewrite, {
      regex: '^/api/(v[0-9]+)/(.*)$',
      substitution: '/\\2?version=\\1',
    });
    assert.equal(regex!.action.timeoutMs, 15_000, 'Envoy’s default route timeout');
  });

  test('redirect, direct response, catch-all with timeout 0', () => {
    assert.deepEqual(redirect!.action, {
      kind: 'redirect',
      scheme: 'https',
      host: 'newratings.default.svc.cluster.local',
      port: 8080,
      path: { kind: 'path', value: '/v1/bookRatings' },
      status: 308,
      stripQuery: true,
    });
    assert.equal(direct!.action.kind, 'direct-response');
    assert.ok(direct!.action.kind === 'direct-response');
    assert.equal(direct!.action.status, 503);
    assert.equal(new TextDecoder().decode(direct!.action.body), 'unavailable');
    assert.ok(dflt!.action.kind === 'route');
    assert.equal(dflt!.action.timeoutMs, 0);
    assert.deepEqual(dflt!.match.path, { kind: 'prefix', value: '' });
  });

  test('the route.v3 CorsPolicy is accepted as well as the filter’s', () => {
    const rc = routeConfiguration();
    rc.virtual_hosts[0]!.routes[0]!.typed_per_filter_config = {
      'envoy.filters.http.cors': anyOf(T.RouteCorsPolicy, {
        allow_origin_string_match: [{ exact: '*' }],
        forward_not_matching_preflights: { value: false },
      }),
    } as never;
    const m = ok(decodeRouteConfigurationBytes(encodeEnvoy(T.RouteConfiguration, rc)));
    const cors = m.virtualHosts[0]!.routes[0]!.cors;
    assert.ok(cors?.kind === 'config');
    assert.equal(cors.config.forwardNotMatchingPreflights, false);
  });

  type Wire = ReturnType<typeof routeConfiguration>;
  type AnyRoute = Record<string, unknown> & {
    match: Record<string, unknown>;
    route: Record<string, unknown>;
  };
  const r0 = (w: Wire) => w.virtual_hosts[0]!.routes[0] as unknown as AnyRoute;
  const p0 = 'virtual_hosts[0].routes[0]';
  const cases: [string, (w: Wire) => void, string, RegExp][] = [
    [
      'weights summing to 0',
      (w) => {
        const wc = r0(w).route.weighted_clusters as { clusters: { weight: { value: number } }[] };
        for (const c of wc.clusters) c.weight = { value: 0 };
      },
      `${p0}.route.weighted_clusters.clusters`,
      /greater than 0/,
    ],
    [
      'a weighted cluster without a name',
      (w) => {
        (r0(w).route.weighted_clusters as { clusters: { name?: string }[] }).clusters[1]!.name = '';
      },
      `${p0}.route.weighted_clusters.clusters[1].name`,
      /required/,
    ],
    [
      'total_weight that disagrees',
      (w) => {
        (r0(w).route.weighted_clusters as Record<string, unknown>).total_weight = { value: 99 };
      },
      `${p0}.route.weighted_clusters.total_weight`,
      /sum to 100/,
    ],
    [
      'a bad regex',
      (w) => {
        (w.virtual_hosts[0]!.routes[1] as unknown as AnyRoute).match.safe_regex = { regex: '/api/(v1' };
      },
      'virtual_hosts[0].routes[1].match.safe_regex.regex',
      /invalid RE2 pattern/,
    ],
    [
      'a lookahead (not RE2)',
      (w) => {
        r0(w).match.headers = [{ name: 'x', string_match: { safe_regex: { regex: '(?=a)a' } } }];
      },
      `${p0}.match.headers[0].string_match.safe_regex.regex`,
      /lookaround/,
    ],
    [
      'a backreference (not RE2)',
      (w) => {
        r0(w).match.headers = [{ name: 'x', string_match: { safe_regex: { regex: '(a)\\1' } } }];
      },
      `${p0}.match.headers[0].string_match.safe_regex.regex`,
      /backreferences/,
    ],
    [
      'ignore_case with safe_regex',
      (w) => {
        r0(w).match.headers = [
          { name: 'x', string_match: { safe_regex: { regex: 'a' }, ignore_case: true } },
        ];
      },
      `${p0}.match.headers[0].string_match.ignore_case`,
      /no effect/,
    ],
    [
      'an empty prefix string match',
      (w) => {
        r0(w).match.query_parameters = [{ name: 'x', string_match: { prefix: '' } }];
      },
      `${p0}.match.query_parameters[0].string_match.prefix`,
      /empty/,
    ],
    [
      'an unknown retry condition',
      (w) => {
        (r0(w).route.retry_policy as Record<string, unknown>).retry_on = '5xx,sometimes';
      },
      `${p0}.route.retry_policy.retry_on`,
      /"sometimes"/,
    ],
    [
      'a back-off maximum under the base',
      (w) => {
        (r0(w).route.retry_policy as Record<string, unknown>).retry_back_off = {
          base_interval: dur(1),
          max_interval: dur(0, 1000),
        };
      },
      `${p0}.route.retry_policy.retry_back_off.max_interval`,
      /less than base_interval/,
    ],
    [
      'an unsupported retry host predicate',
      (w) => {
        (r0(w).route.retry_policy as Record<string, unknown>).retry_host_predicate = [
          { name: 'envoy.retry_host_predicates.omit_canary_hosts' },
        ];
      },
      `${p0}.route.retry_policy.retry_host_predicate[0]`,
      /omit_canary_hosts/,
    ],
    [
      'a negative timeout',
      (w) => {
        r0(w).route.timeout = dur(-1);
      },
      `${p0}.route.timeout`,
      /non-negative/,
    ],
    [
      'a direct response status out of range',
      (w) => {
        (
          w.virtual_hosts[0]!.routes[3] as unknown as { direct_response: { status: number } }
        ).direct_response.status = 700;
      },
      'virtual_hosts[0].routes[3].direct_response.status',
      /200..599/,
    ],
    [
      'a direct response body over 4 KiB',
      (w) => {
        (
          w.virtual_hosts[0]!.routes[3] as unknown as { direct_response: { body: object } }
        ).direct_response.body = {
          inline_string: 'x'.repeat(5000),
        };
      },
      'virtual_hosts[0].routes[3].direct_response.body',
      /limit is 4096/,
    ],
    [
      'a direct response body from a file',
      (w) => {
        (
          w.virtual_hosts[0]!.routes[3] as unknown as { direct_response: { body: object } }
        ).direct_response.body = { filename: '/etc/passwd' };
      },
      'virtual_hosts[0].routes[3].direct_response.body',
      /inline/,
    ],
    [
      'adding :authority',
      (w) => {
        r0(w).request_headers_to_add = [{ header: { key: ':authority', value: 'x' } }];
      },
      `${p0}.request_headers_to_add[0].header.key`,
      /may not be modified/,
    ],
    [
      'removing host',
      (w) => {
        r0(w).response_headers_to_remove = ['Host'];
      },
      `${p0}.response_headers_to_remove[0]`,
      /may not be removed/,
    ],
    [
      'a format command in a header value',
      (w) => {
        r0(w).request_headers_to_add = [{ header: { key: 'x', value: '%DOWNSTREAM_REMOTE_ADDRESS%' } }];
      },
      `${p0}.request_headers_to_add[0].header.value`,
      /%%/,
    ],
    [
      'both append and append_action',
      (w) => {
        r0(w).request_headers_to_add = [
          { header: { key: 'x', value: 'y' }, append: { value: true }, append_action: 'ADD_IF_ABSENT' },
        ];
      },
      `${p0}.request_headers_to_add[0]`,
      /both append and append_action/,
    ],
    [
      'metadata of another filter',
      (w) => {
        r0(w).match.dynamic_metadata = [
          { filter: 'envoy.lb', path: [{ key: 'namespace' }], value: { string_match: { exact: 'x' } } },
        ];
      },
      `${p0}.match.dynamic_metadata[0].filter`,
      /ambit.source/,
    ],
    [
      'a source path that is not namespace or labels.<label>',
      (w) => {
        r0(w).match.dynamic_metadata = [
          { filter: 'ambit.source', path: [{ key: 'principal' }], value: { string_match: { exact: 'x' } } },
        ];
      },
      `${p0}.match.dynamic_metadata[0].path`,
      /namespace/,
    ],
    [
      'a substitution naming a missing group',
      (w) => {
        (w.virtual_hosts[0]!.routes[1] as unknown as AnyRoute).route.regex_rewrite = {
          pattern: { regex: '/(a)' },
          substitution: '\\2',
        };
      },
      'virtual_hosts[0].routes[1].route.regex_rewrite.substitution',
      /group/,
    ],
    [
      'prefix_rewrite with regex_rewrite',
      (w) => {
        r0(w).route.regex_rewrite = { pattern: { regex: 'a' }, substitution: 'b' };
      },
      `${p0}.route`,
      /both prefix_rewrite and regex_rewrite/,
    ],
    [
      'cluster_header',
      (w) => void (r0(w).route = { cluster_header: 'x-cluster' }),
      `${p0}.route.cluster_header`,
      /not supported/,
    ],
    [
      'a hedge policy',
      (w) => void (r0(w).route.hedge_policy = { hedge_on_per_try_timeout: true }),
      `${p0}.route.hedge_policy`,
      /not supported/,
    ],
    [
      'rate limits',
      (w) => void (r0(w).route.rate_limits = [{ actions: [{ remote_address: {} }] }]),
      `${p0}.route.rate_limits`,
      /not supported/,
    ],
    [
      'host_rewrite_header',
      (w) => void (r0(w).route.host_rewrite_header = 'x-host'),
      `${p0}.route.host_rewrite_header`,
      /not supported/,
    ],
    [
      'a TLS context match',
      (w) => void (r0(w).match.tls_context = { presented: { value: true } }),
      `${p0}.match.tls_context`,
      /not supported/,
    ],
    [
      'a domain used twice',
      (w) => {
        (w.virtual_hosts as object[]).push({ name: 'other', domains: ['reviews'], routes: [] });
      },
      'virtual_hosts[1].domains[0]',
      /duplicate domain reviews/,
    ],
    [
      'a wildcard in the middle',
      (w) => {
        w.virtual_hosts[0]!.domains = ['re*views'];
      },
      'virtual_hosts[0].domains[0]',
      /wildcard/,
    ],
    [
      'a virtual host without domains',
      (w) => void (w.virtual_hosts[0]!.domains = []),
      'virtual_hosts[0].domains',
      /at least one/,
    ],
    [
      'an unknown per-route filter configuration',
      (w) => {
        r0(w).typed_per_filter_config = {
          'envoy.filters.http.rbac': {
            type_url: 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute',
            value: new Uint8Array(),
          },
        };
      },
      `${p0}.typed_per_filter_config["envoy.filters.http.rbac"]`,
      /RBACPerRoute/,
    ],
    [
      'a fault abort status out of range',
      (w) => {
        r0(w).typed_per_filter_config = {
          f: anyOf(T.Fault, { abort: { http_status: 700, percentage: pct(100) } }),
        };
      },
      `${p0}.typed_per_filter_config["f"].abort.http_status`,
      /200..599/,
    ],
    [
      'a header-controlled abort',
      (w) => {
        r0(w).typed_per_filter_config = { f: anyOf(T.Fault, { abort: { header_abort: {} } }) };
      },
      `${p0}.typed_per_filter_config["f"].abort.header_abort`,
      /not supported/,
    ],
    [
      'a zero fixed delay',
      (w) => {
        r0(w).typed_per_filter_config = {
          f: anyOf(T.Fault, { delay: { fixed_delay: dur(0), percentage: pct(1) } }),
        };
      },
      `${p0}.typed_per_filter_config["f"].delay.fixed_delay`,
      /greater than 0/,
    ],
    [
      'a fault limited to an upstream cluster',
      (w) => {
        r0(w).typed_per_filter_config = {
          f: anyOf(T.Fault, { upstream_cluster: 'x', abort: { http_status: 503 } }),
        };
      },
      `${p0}.typed_per_filter_config["f"].upstream_cluster`,
      /not supported/,
    ],
    [
      'two fault configurations',
      (w) => {
        r0(w).typed_per_filter_config = { a: anyOf(T.Fault, {}), b: anyOf(T.Fault, {}) };
      },
      `${p0}.typed_per_filter_config["b"]`,
      /second configuration/,
    ],
    [
      'a route without an action',
      (w) => {
        delete (r0(w) as Record<string, unknown>).route;
      },
      p0,
      /route, redirect or direct_response/,
    ],
    [
      'VHDS',
      (w) => void ((w as Record<string, unknown>).vhds = { config_source: { ads: {} } }),
      'vhds',
      /not supported/,
    ],
  ];
  for (const [name, mutate, path, message] of cases) {
    test(`rejects ${name}`, () => {
      const w = clone(routeConfiguration());
      mutate(w);
      const errs = errors(decodeRouteConfigurationBytes(encodeEnvoy(T.RouteConfiguration, w)));
      assert.ok(
        errs.some((e) => e.path === path && message.test(e.message)),
        JSON.stringify(errs),
      );
    });
  }

  test('every error is reported, not just the first', () => {
    const w = clone(routeConfiguration());
    r0(w).route.timeout = dur(-1);
    r0(w).request_headers_to_add = [{ header: { key: ':path', value: 'x' } }];
    w.virtual_hosts[0]!.domains = [];
    const paths = errors(decodeRouteConfigurationBytes(encodeEnvoy(T.RouteConfiguration, w))).map(
      (e) => e.path,
    );
    assert.deepEqual(
      paths.sort(),
      [
        `${p0}.request_headers_to_add[0].header.key`,
        `${p0}.route.timeout`,
        'virtual_hosts[0].domains',
      ].sort(),
    );
  });
});

// ---------- Cluster ----------

function clusterWire() {
  return {
    name: V1,
    type: 'EDS',
    eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' }, service_name: V1 },
    connect_timeout: dur(0, 30_000_000),
    lb_policy: 'RING_HASH',
    ring_hash_lb_config: { minimum_ring_size: { value: 2048 } },
    circuit_breakers: {
      thresholds: [
        { priority: 'HIGH', max_connections: { value: 1 } },
        {
          max_connections: { value: 100 },
          max_pending_requests: { value: 10 },
          max_requests: { value: 1000 },
          max_retries: { value: 4294967295 },
          track_remaining: true,
        },
      ],
    },
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': anyOf(T.HttpProtocolOptions, {
        common_http_protocol_options: { idle_timeout: dur(3600), max_requests_per_connection: { value: 10 } },
        explicit_http_config: { http2_protocol_options: {} },
      }),
    },
    outlier_detection: {
      consecutive_5xx: { value: 7 },
      enforcing_consecutive_5xx: { value: 100 },
      consecutive_gateway_failure: { value: 0 },
      enforcing_consecutive_gateway_failure: { value: 0 },
      enforcing_success_rate: { value: 0 },
      interval: dur(300),
      base_ejection_time: dur(900),
      max_ejection_percent: { value: 100 },
    },
    common_lb_config: { healthy_panic_threshold: { value: 0 } },
  };
}

describe('Cluster', () => {
  test('EDS, ring hash, limits, protocol options and outlier detection', () => {
    const expected: Cluster = {
      name: V1,
      edsServiceName: V1,
      lbPolicy: 'RING_HASH',
      leastRequestChoiceCount: 2,
      ringHash: { minimumRingSize: 2048, maximumRingSize: 8 * 1024 * 1024 },
      maglevTableSize: 65537,
      connectTimeoutMs: 30,
      circuitBreakers: {
        maxConnections: 100,
        maxPendingRequests: 10,
        maxRequests: 1000,
        maxRetries: 4294967295,
      },
      maxRequestsPerConnection: 10,
      idleTimeoutMs: 3_600_000,
      upstreamProtocol: 'http2',
      healthyPanicThresholdPercent: 0,
      outlierDetection: {
        consecutive5xx: 7,
        consecutiveGatewayFailure: 0,
        enforcingConsecutive5xxPercent: 100,
        enforcingConsecutiveGatewayFailurePercent: 0,
        splitExternalLocalOriginErrors: false,
        consecutiveLocalOriginFailure: 5,
        enforcingConsecutiveLocalOriginFailurePercent: 100,
        intervalMs: 300_000,
        baseEjectionTimeMs: 900_000,
        maxEjectionTimeMs: 900_000,
        maxEjectionTimeJitterMs: 0,
        maxEjectionPercent: 100,
        alwaysEjectOneHost: false,
      },
    };
    assert.deepEqual(ok(decodeClusterBytes(encodeEnvoy(T.Cluster, clusterWire()))), expected);
  });

  test('Envoy’s defaults for a bare EDS cluster', () => {
    const c = ok(
      decodeClusterBytes(
        encodeEnvoy(T.Cluster, { name: 'c', type: 'EDS', eds_cluster_config: { eds_config: { ads: {} } } }),
      ),
    );
    assert.equal(c.lbPolicy, 'ROUND_ROBIN');
    assert.equal(c.edsServiceName, 'c');
    assert.equal(c.connectTimeoutMs, 5000);
    assert.deepEqual(c.circuitBreakers, {
      maxConnections: 1024,
      maxPendingRequests: 1024,
      maxRequests: 1024,
      maxRetries: 3,
    });
    assert.equal(c.healthyPanicThresholdPercent, 50);
    assert.equal(c.upstreamProtocol, 'http1');
    assert.equal(c.outlierDetection, undefined);
    const od = ok(
      decodeClusterBytes(encodeEnvoy(T.Cluster, { name: 'c', type: 'EDS', outlier_detection: {} })),
    ).outlierDetection;
    assert.deepEqual(
      od && [
        od.consecutive5xx,
        od.intervalMs,
        od.baseEjectionTimeMs,
        od.maxEjectionTimeMs,
        od.maxEjectionPercent,
      ],
      [5, 10_000, 30_000, 300_000, 10],
    );
  });

  test('LEAST_REQUEST, MAGLEV and RANDOM', () => {
    const lr = ok(
      decodeClusterBytes(
        encodeEnvoy(T.Cluster, {
          name: 'c',
          type: 'EDS',
          lb_policy: 'LEAST_REQUEST',
          least_request_lb_config: { choice_count: { value: 3 } },
        }),
      ),
    );
    assert.equal(lr.leastRequestChoiceCount, 3);
    const mg = ok(
      decodeClusterBytes(
        encodeEnvoy(T.Cluster, {
          name: 'c',
          type: 'EDS',
          lb_policy: 'MAGLEV',
          maglev_lb_config: { table_size: { value: 5003 } },
        }),
      ),
    );
    assert.equal(mg.maglevTableSize, 5003);
    assert.equal(
      ok(decodeClusterBytes(encodeEnvoy(T.Cluster, { name: 'c', type: 'EDS', lb_policy: 'RANDOM' })))
        .lbPolicy,
      'RANDOM',
    );
  });

  const HPO = 'typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]';
  const cases: [string, (w: Record<string, unknown>) => void, string, RegExp][] = [
    ['a STATIC cluster', (w) => void (w.type = 'STATIC'), 'type', /EDS/],
    ['CLUSTER_PROVIDED', (w) => void (w.lb_policy = 'CLUSTER_PROVIDED'), 'lb_policy', /not supported/],
    [
      'a table size that is not prime',
      (w) => {
        delete w.ring_hash_lb_config;
        w.lb_policy = 'MAGLEV';
        w.maglev_lb_config = { table_size: { value: 65536 } };
      },
      'maglev_lb_config.table_size',
      /prime/,
    ],
    [
      'a minimum ring over the maximum',
      (w) =>
        void (w.ring_hash_lb_config = {
          minimum_ring_size: { value: 4096 },
          maximum_ring_size: { value: 1024 },
        }),
      'ring_hash_lb_config.minimum_ring_size',
      /maximum/,
    ],
    [
      'MurmurHash2',
      (w) => void (w.ring_hash_lb_config = { hash_function: 'MURMUR_HASH_2' }),
      'ring_hash_lb_config.hash_function',
      /XX_HASH/,
    ],
    [
      'a retry budget',
      (w) =>
        void (w.circuit_breakers = { thresholds: [{ retry_budget: { budget_percent: { value: 20 } } }] }),
      'circuit_breakers.thresholds[0].retry_budget',
      /not supported/,
    ],
    [
      'per-host thresholds',
      (w) => void (w.circuit_breakers = { per_host_thresholds: [{ max_connections: { value: 1 } }] }),
      'circuit_breakers.per_host_thresholds',
      /not supported/,
    ],
    [
      'active health checks',
      (w) => void (w.health_checks = [{ timeout: dur(1), interval: dur(1) }]),
      'health_checks',
      /not supported/,
    ],
    [
      'a transport socket other than TLS (l7-decode-tls.test.ts has TLS)',
      (w) => void (w.transport_socket = { name: 'envoy.transport_sockets.alts' }),
      'transport_socket',
      /only envoy.transport_sockets.tls and envoy.transport_sockets.raw_buffer are supported/,
    ],
    [
      'success-rate ejection',
      (w) => void ((w.outlier_detection as Record<string, unknown>).enforcing_success_rate = { value: 100 }),
      'outlier_detection.enforcing_success_rate',
      /not supported/,
    ],
    [
      'a max ejection time under the base',
      (w) => void ((w.outlier_detection as Record<string, unknown>).max_ejection_time = dur(60)),
      'outlier_detection.max_ejection_time',
      /base_ejection_time/,
    ],
    [
      'an enforcement percentage over 100',
      (w) =>
        void ((w.outlier_detection as Record<string, unknown>).enforcing_consecutive_5xx = { value: 101 }),
      'outlier_detection.enforcing_consecutive_5xx',
      /0..100/,
    ],
    ['a zero connect timeout', (w) => void (w.connect_timeout = dur(0)), 'connect_timeout', /greater than 0/],
    [
      'unknown protocol options',
      (w) =>
        void (w.typed_extension_protocol_options = {
          'envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions': anyOf(T.Router, {}),
        }),
      'typed_extension_protocol_options["envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions"]',
      /HttpProtocolOptions/,
    ],
    [
      'ALPN auto protocol selection',
      (w) =>
        void (w.typed_extension_protocol_options = {
          'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': anyOf(T.HttpProtocolOptions, {
            auto_config: {},
          }),
        }),
      `${HPO}.auto_config`,
      /not supported/,
    ],
    [
      'a maximum connection duration',
      (w) =>
        void (w.typed_extension_protocol_options = {
          'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': anyOf(T.HttpProtocolOptions, {
            common_http_protocol_options: { max_connection_duration: dur(60) },
            explicit_http_config: { http_protocol_options: {} },
          }),
        }),
      `${HPO}.common_http_protocol_options.max_connection_duration`,
      /not supported/,
    ],
  ];
  for (const [name, mutate, path, message] of cases) {
    test(`rejects ${name}`, () => {
      const w = clone(clusterWire()) as unknown as Record<string, unknown>;
      mutate(w);
      const errs = errors(decodeClusterBytes(encodeEnvoy(T.Cluster, w)));
      assert.ok(
        errs.some((e) => e.path === path && message.test(e.message)),
        JSON.stringify(errs),
      );
    });
  }
});

// ---------- ClusterLoadAssignment ----------

function claWire() {
  return {
    cluster_name: V1,
    endpoints: [
      {
        locality: { region: 'r1', zone: 'z1' },
        lb_endpoints: [
          {
            endpoint: { address: { socket_address: { address: '10.0.1.5', port_value: 9080 } } },
            health_status: 'HEALTHY',
          },
          {
            endpoint: {
              address: { socket_address: { address: 'fd00::5', port_value: 9080 } },
              hostname: 'reviews-v1-b',
            },
            load_balancing_weight: { value: 3 },
            health_status: 'DRAINING',
          },
          { endpoint: { address: { socket_address: { address: '10.0.1.6', port_value: 9080 } } } },
        ],
      },
    ],
    policy: { overprovisioning_factor: { value: 200 } },
  };
}

describe('ClusterLoadAssignment', () => {
  test('endpoints with health and weight', () => {
    assert.deepEqual(ok(decodeClusterLoadAssignmentBytes(encodeEnvoy(T.Cla, claWire()))), {
      clusterName: V1,
      endpoints: [
        { address: '10.0.1.5', port: 9080, health: 'HEALTHY', weight: 1, hostname: '' },
        { address: 'fd00::5', port: 9080, health: 'DRAINING', weight: 3, hostname: 'reviews-v1-b' },
        { address: '10.0.1.6', port: 9080, health: 'UNKNOWN', weight: 1, hostname: '' },
      ],
      overprovisioningFactor: 200,
    });
  });

  const ep = 'endpoints[0].lb_endpoints[0]';
  type Cla = ReturnType<typeof claWire>;
  const first = (w: Cla) =>
    w.endpoints[0]!.lb_endpoints[0]! as Record<string, unknown> & {
      endpoint: { address: { socket_address: Record<string, unknown> } };
    };
  const cases: [string, (w: Cla) => void, string, RegExp][] = [
    [
      'a hostname instead of an IP',
      (w) => void (first(w).endpoint.address.socket_address.address = 'reviews'),
      `${ep}.endpoint.address.socket_address.address`,
      /not an IP/,
    ],
    [
      'port 0',
      (w) => void (first(w).endpoint.address.socket_address.port_value = 0),
      `${ep}.endpoint.address.socket_address.port_value`,
      /1..65535/,
    ],
    [
      'a named port',
      (w) => {
        const sa = first(w).endpoint.address.socket_address;
        delete sa.port_value;
        sa.named_port = 'http';
      },
      `${ep}.endpoint.address.socket_address.named_port`,
      /not supported/,
    ],
    [
      'UDP',
      (w) => void (first(w).endpoint.address.socket_address.protocol = 'UDP'),
      `${ep}.endpoint.address.socket_address.protocol`,
      /TCP/,
    ],
    [
      'a duplicate endpoint',
      (w) => void w.endpoints[0]!.lb_endpoints.push(clone(w.endpoints[0]!.lb_endpoints[0]!)),
      'endpoints[0].lb_endpoints[3]',
      /duplicate endpoint 10.0.1.5:9080/,
    ],
    [
      'a priority',
      (w) => void ((w.endpoints[0] as Record<string, unknown>).priority = 1),
      'endpoints[0].priority',
      /priorities/,
    ],
    [
      'a pipe address',
      (w) => void (first(w).endpoint = { address: { pipe: { path: '/tmp/s' } } } as never),
      `${ep}.endpoint.address.socket_address`,
      /socket addresses/,
    ],
    [
      'drop overloads',
      (w) =>
        void ((w.policy as Record<string, unknown>).drop_overloads = [
          { category: 'x', drop_percentage: pct(10) },
        ]),
      'policy.drop_overloads',
      /not supported/,
    ],
    ['no cluster name', (w) => void (w.cluster_name = ''), 'cluster_name', /required/],
  ];
  for (const [name, mutate, path, message] of cases) {
    test(`rejects ${name}`, () => {
      const w = clone(claWire());
      mutate(w);
      const errs = errors(decodeClusterLoadAssignmentBytes(encodeEnvoy(T.Cla, w)));
      assert.ok(
        errs.some((e) => e.path === path && message.test(e.message)),
        JSON.stringify(errs),
      );
    });
  }
});

describe('decodeL7Resource', () => {
  test('dispatches on the type URL', () => {
    const kinds = [
      [EnvoyTypeUrl.Listener, encodeEnvoy(T.Listener, listener()), 'listener'],
      [
        EnvoyTypeUrl.RouteConfiguration,
        encodeEnvoy(T.RouteConfiguration, routeConfiguration()),
        'route-configuration',
      ],
      [EnvoyTypeUrl.Cluster, encodeEnvoy(T.Cluster, clusterWire()), 'cluster'],
      [EnvoyTypeUrl.ClusterLoadAssignment, encodeEnvoy(T.Cla, claWire()), 'cluster-load-assignment'],
    ] as const;
    for (const [url, bytes, kind] of kinds) assert.equal(ok(decodeL7Resource(url, bytes)).kind, kind);
  });

  test('unknown types and corrupt bytes are errors, not throws', () => {
    assert.match(
      errors(decodeL7Resource('type.googleapis.com/acme.X', new Uint8Array()))[0]!.message,
      /unknown resource type/,
    );
    const corrupt = errors(decodeL7Resource(EnvoyTypeUrl.Cluster, new Uint8Array([0x0a, 0xff, 0xff])));
    assert.equal(corrupt[0]!.path, '');
    assert.match(corrupt[0]!.message, /not a envoy.config.cluster.v3.Cluster/);
  });

  test('a decoded route configuration is plain data', () => {
    const m: RouteConfiguration = ok(
      decodeRouteConfigurationBytes(encodeEnvoy(T.RouteConfiguration, routeConfiguration())),
    );
    assert.deepEqual(structuredClone(m), m);
  });
});
