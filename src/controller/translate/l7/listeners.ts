/**
 * The Listener and RouteConfiguration of one service port. Pure.
 *
 * HTTP ports (DESIGN.md §3 "L7 xDS"): an API listener whose HttpConnectionManager takes its routes
 * over ADS from the RouteConfiguration of the same name, with the fault filter (always: gRPC clients
 * need it listed to apply per-route faults), the CORS filter when a route has a CORS policy (optional,
 * so gRPC clients, which have none, still accept the listener), and the router, last. The RBAC filters
 * of AuthorizationPolicies attached to the service (authz.ts) come before all of them.
 *
 * TCP ports: Ambit's own shape, for the waypoint only (gRPC clients never ask for a TCP port): a
 * listener on the service's address with one filter chain: the RBAC network filters of the
 * AuthorizationPolicies attached to the service (authz.ts), then a tcp_proxy filter naming the
 * cluster, or the weighted clusters of a VirtualService `tcp` (or `tls`) route.
 */
import type { HttpFilter, Listener, NetworkFilter, Route, RouteConfiguration } from './envoy-types.ts';
import { ADS } from './clusters.ts';
import { emptyAny, EnvoyType, packAny } from './protos.ts';
import { CORS_FILTER, FAULT_FILTER, ROUTER_FILTER } from './routes.ts';
import type { EffectivePolicy } from './select.ts';

export const TCP_PROXY_FILTER = 'envoy.filters.network.tcp_proxy';

/** `authz`: the RBAC filters of the policies that target the service (authz.ts), which go first. */
export function httpListener(name: string, cors: boolean, authz: readonly HttpFilter[] = []): Listener {
  const filters: HttpFilter[] = [
    ...authz,
    { name: FAULT_FILTER, typed_config: emptyAny(EnvoyType.HTTPFault) },
  ];
  if (cors) filters.push({ name: CORS_FILTER, typed_config: emptyAny(EnvoyType.Cors), is_optional: true });
  filters.push({ name: ROUTER_FILTER, typed_config: emptyAny(EnvoyType.Router) });
  return {
    name,
    api_listener: {
      api_listener: packAny(EnvoyType.HttpConnectionManager, {
        stat_prefix: name,
        rds: { route_config_name: name, config_source: ADS },
        http_filters: filters,
      }),
    },
  };
}

export function routeConfiguration(
  name: string,
  domains: readonly string[],
  routes: readonly Route[],
): RouteConfiguration {
  return { name, virtual_hosts: [{ name, domains, routes }] };
}

/** Where a TCP port's connections go: one cluster, or several by weight (per connection). */
export type TcpTarget =
  | { readonly cluster: string }
  | { readonly weightedClusters: readonly { readonly name: string; readonly weight: number }[] };

/**
 * `policy` is the service port's DestinationRule policy: as istiod does for tcp_proxy, its
 * `connectionPool.tcp.idleTimeout` becomes the proxy's idle timeout (else Envoy's 1 h default), and a
 * `consistentHash.useSourceIp` the proxy's source-IP hash (the only hash a TCP connection has).
 * `authz`: the RBAC network filters of the policies that target the service (authz.ts), which go
 * first.
 */
export function tcpListener(
  name: string,
  vips: readonly string[],
  port: number,
  target: TcpTarget,
  policy: EffectivePolicy | undefined,
  authz: readonly NetworkFilter[] = [],
): Listener {
  const address = (ip: string) => ({ socket_address: { address: ip, port_value: port } });
  const idle = policy?.connectionPool?.tcp?.idleTimeout;
  const sourceIp = policy?.loadBalancer?.consistentHash?.key.kind === 'sourceIp';
  const [first, ...rest] = vips.length > 0 ? vips : ['0.0.0.0'];
  return {
    name,
    address: address(first!),
    ...(rest.length > 0 ? { additional_addresses: rest.map((ip) => ({ address: address(ip) })) } : {}),
    filter_chains: [
      {
        filters: [
          ...authz,
          {
            name: TCP_PROXY_FILTER,
            typed_config: packAny(EnvoyType.TcpProxy, {
              stat_prefix: name,
              ...('cluster' in target
                ? { cluster: target.cluster }
                : { weighted_clusters: { clusters: target.weightedClusters } }),
              ...(idle ? { idle_timeout: idle } : {}),
              ...(sourceIp ? { hash_policy: [{ source_ip: {} }] } : {}),
            }),
          },
        ],
      },
    ],
  };
}
