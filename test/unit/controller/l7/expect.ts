/**
 * Expected Envoy objects for the L7 tables, in the form `json()` shows them: plain fields as the
 * translation writes them, nested Any decoded under `@type` with proto3 defaults left out.
 */
export const ZERO = { seconds: 0, nanos: 0 };

export const PREVIOUS_HOSTS = [
  {
    name: 'envoy.retry_host_predicates.previous_hosts',
    typed_config: { '@type': 'envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate' },
  },
];

export const BACKOFF_25MS = { base_interval: { seconds: 0, nanos: 25_000_000 } };

/** Istio's mesh default retry policy. */
export const DEFAULT_RETRY = {
  retry_on: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes',
  num_retries: { value: 2 },
  retriable_status_codes: [503],
  retry_host_predicate: PREVIOUS_HOSTS,
  host_selection_retry_max_attempts: 5,
  retry_back_off: BACKOFF_25MS,
};

/** A RouteAction with Istio's defaults (no timeout, the mesh retry policy) and `over` on top. */
export function action(over: Record<string, unknown>, timeout: { seconds: number; nanos: number } = ZERO) {
  return {
    timeout,
    max_stream_duration: { max_stream_duration: timeout },
    retry_policy: DEFAULT_RETRY,
    ...over,
  };
}

/** A catch-all route to one cluster, with the default action. */
export function toCluster(cluster: string, operation: string, over: Record<string, unknown> = {}) {
  return { match: { prefix: '/' }, route: action({ cluster }), decorator: { operation }, ...over };
}

/** The route of a port no VirtualService routes. */
export function defaultRouteTo(host: string, port: number) {
  return {
    name: 'default',
    match: { prefix: '/' },
    route: action({ cluster: `outbound|${port}||${host}` }),
    decorator: { operation: `${host}:${port}/*` },
  };
}

export const FRACTION_100 = { numerator: 1_000_000, denominator: 'MILLION' };

export function fault(body: Record<string, unknown>) {
  return {
    'envoy.filters.http.fault': { '@type': 'envoy.extensions.filters.http.fault.v3.HTTPFault', ...body },
  };
}

export const MAX = { value: 2 ** 32 - 1 };

export const LEAST_REQUEST_POLICIES = {
  policies: [
    {
      typed_extension_config: {
        name: 'envoy.load_balancing_policies.least_request',
        typed_config: { '@type': 'envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest' },
      },
    },
    {
      typed_extension_config: {
        name: 'envoy.load_balancing_policies.round_robin',
        typed_config: { '@type': 'envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin' },
      },
    },
  ],
};

export const ROUND_ROBIN_POLICIES = { policies: [LEAST_REQUEST_POLICIES.policies[1]] };

/** HttpProtocolOptions as the cluster carries it, for an HTTP/1.1 port unless `explicit` says otherwise. */
export function httpOptions(
  common?: Record<string, unknown>,
  explicit: Record<string, unknown> = { explicit_http_config: { http_protocol_options: {} } },
) {
  return {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
      '@type': 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
      ...(common ? { common_http_protocol_options: common } : {}),
      ...explicit,
    },
  };
}

/** A cluster with Istio's defaults and `over` on top. */
export function cluster(name: string, over: Record<string, unknown> = {}) {
  return {
    name,
    type: 'EDS',
    eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' }, service_name: name },
    connect_timeout: { seconds: 10, nanos: 0 },
    lb_policy: 'LEAST_REQUEST',
    load_balancing_policy: LEAST_REQUEST_POLICIES,
    circuit_breakers: {
      thresholds: [{ max_connections: MAX, max_pending_requests: MAX, max_requests: MAX, max_retries: MAX }],
    },
    typed_extension_protocol_options: httpOptions(),
    ...over,
  };
}
