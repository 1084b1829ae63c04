/**
 * The Envoy protos that ship inside `@grpc/grpc-js-xds` (deps/envoy-api, xds, googleapis,
 * protoc-gen-validate), loaded once with protobufjs (never copied into this repo), and the one thing
 * the translation needs them for: packing a typed config into a `google.protobuf.Any`.
 *
 * The root is core/xds/l7-wire.ts's, so the controller and the waypoint read the same .proto files,
 * loaded once per process (about 0.25 s); after that everything here is pure.
 */
import type protobuf from 'protobufjs';
import { envoyL7Protos } from '../../../core/xds/l7-wire.ts';
import type { Any } from './envoy-types.ts';

/** Full names of the messages the translation packs into Any, and of the resources. */
export const EnvoyType = {
  Listener: 'envoy.config.listener.v3.Listener',
  RouteConfiguration: 'envoy.config.route.v3.RouteConfiguration',
  Cluster: 'envoy.config.cluster.v3.Cluster',
  ClusterLoadAssignment: 'envoy.config.endpoint.v3.ClusterLoadAssignment',
  HttpConnectionManager: 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
  TcpProxy: 'envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
  HTTPFault: 'envoy.extensions.filters.http.fault.v3.HTTPFault',
  Cors: 'envoy.extensions.filters.http.cors.v3.Cors',
  CorsPolicy: 'envoy.extensions.filters.http.cors.v3.CorsPolicy',
  Router: 'envoy.extensions.filters.http.router.v3.Router',
  Rbac: 'envoy.extensions.filters.http.rbac.v3.RBAC',
  NetworkRbac: 'envoy.extensions.filters.network.rbac.v3.RBAC',
  FilterConfig: 'envoy.config.route.v3.FilterConfig',
  HttpProtocolOptions: 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
  UpstreamTlsContext: 'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
  PreviousHostsPredicate: 'envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate',
  RoundRobin: 'envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin',
  LeastRequest: 'envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest',
  Random: 'envoy.extensions.load_balancing_policies.random.v3.Random',
  RingHash: 'envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash',
  Maglev: 'envoy.extensions.load_balancing_policies.maglev.v3.Maglev',
} as const;
export type EnvoyType = (typeof EnvoyType)[keyof typeof EnvoyType];

const TYPE_URL_PREFIX = 'type.googleapis.com/';

/** The protobufjs root with every message above: the one the waypoint decodes with (l7-wire.ts). */
export function envoyProtos(): protobuf.Root {
  return envoyL7Protos();
}

/** `type.googleapis.com/<name>` */
export function typeUrl(name: string): string {
  return TYPE_URL_PREFIX + name;
}

/** Encodes a plain object (proto-loader shape: enums by name) as the message `name`. */
export function encodeMessage(name: string, value: object): Uint8Array {
  const type = envoyProtos().lookupType(name);
  return type.encode(type.fromObject(value)).finish();
}

/** A typed config: `value` encoded as the message `name`, in an Any. */
export function packAny(name: EnvoyType, value: object): Any {
  return { type_url: typeUrl(name), value: encodeMessage(name, value) };
}

const empty = new Map<EnvoyType, Any>();

/** A typed config with no fields set, encoded once (the router, the retry predicate, LB policies). */
export function emptyAny(name: EnvoyType): Any {
  let any = empty.get(name);
  if (!any) empty.set(name, (any = packAny(name, {})));
  return any;
}
