/**
 * The protobuf edge of the L7 model: loads the Envoy protos that ship inside `@grpc/grpc-js-xds`
 * (never copied into this repo) into a protobufjs root, once, and decodes resource bytes (the
 * `value` of a discovery response's Any) into l7-model types through the pure decoders in
 * l7-decode.ts. Also encodes plain objects, for the controller and for tests.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import protobuf from 'protobufjs';
import type { Decoded } from './workload-proto.ts';
import type { Cluster, ClusterLoadAssignment, L7Listener, RouteConfiguration } from './l7-model.ts';
import {
  decodeCluster,
  decodeClusterLoadAssignment,
  decodeListener,
  decodeRouteConfiguration,
  L7AnyType,
  type AnyUnpacker,
} from './l7-decode.ts';
import { EnvoyTypeUrl } from './l7-names.ts';

const FILES = [
  'envoy/config/listener/v3/listener.proto',
  'envoy/config/route/v3/route.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/endpoint/v3/endpoint.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/http/fault/v3/fault.proto',
  'envoy/extensions/filters/http/cors/v3/cors.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/filters/http/rbac/v3/rbac.proto',
  'envoy/extensions/filters/network/rbac/v3/rbac.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
  'envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto',
  'envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto',
  // DestinationRule TLS origination: a Cluster's transport_socket holds an UpstreamTlsContext.
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  // Gateway certificates over SDS (l7-names.ts SECRET_TYPE_URL).
  'envoy/extensions/transport_sockets/tls/v3/secret.proto',
  // The load-balancing policy list the controller adds to each Cluster for gRPC clients.
  ...['round_robin', 'least_request', 'random', 'ring_hash', 'maglev'].map(
    (p) => `envoy/extensions/load_balancing_policies/${p}/v3/${p}.proto`,
  ),
];

let root: protobuf.Root | undefined;

/**
 * The protobufjs root with the Envoy L7 messages (snake_case field names, as in the .proto), loaded
 * once; the controller's translation encodes with the same root.
 */
export function envoyL7Protos(): protobuf.Root {
  if (!root) {
    const require = createRequire(import.meta.url);
    const deps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
    const dirs = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(deps, d));
    const protobufDir = dirname(require.resolve('protobufjs/package.json'));
    const r = new protobuf.Root();
    r.resolvePath = (origin, target) => {
      if (target.startsWith('google/protobuf/')) {
        // The well-known types protobufjs has built in; descriptor.proto ships beside them.
        return target in protobuf.common ? target : join(protobufDir, target);
      }
      for (const d of dirs) {
        const p = join(d, target);
        if (existsSync(p)) return p;
      }
      return protobuf.util.path.resolve(origin, target);
    };
    r.loadSync(FILES, { keepCase: true });
    r.resolveAll();
    root = r;
  }
  return root;
}

const TO_OBJECT: protobuf.IConversionOptions = {
  longs: Number,
  enums: String,
  defaults: false,
  oneofs: true,
};

/** Decodes an Any's bytes of one of the types the L7 decoders unpack. */
export const unpackAny: AnyUnpacker = (typeName, value) => {
  try {
    const type = envoyL7Protos().lookupType(typeName);
    return { ok: true, message: type.toObject(type.decode(value), TO_OBJECT) };
  } catch (err) {
    return { ok: false, message: (err as Error).message };
  }
};

function fromBytes<T, W>(
  typeName: string,
  bytes: Uint8Array,
  decode: (w: W, unpack: AnyUnpacker) => Decoded<T>,
): Decoded<T> {
  const r = unpackAny(typeName, bytes);
  if (!r.ok) return { ok: false, errors: [{ path: '', message: `not a ${typeName}: ${r.message}` }] };
  return decode(r.message as W, unpackAny);
}

export const decodeListenerBytes = (b: Uint8Array): Decoded<L7Listener> =>
  fromBytes('envoy.config.listener.v3.Listener', b, decodeListener);
export const decodeRouteConfigurationBytes = (b: Uint8Array): Decoded<RouteConfiguration> =>
  fromBytes('envoy.config.route.v3.RouteConfiguration', b, decodeRouteConfiguration);
export const decodeClusterBytes = (b: Uint8Array): Decoded<Cluster> =>
  fromBytes('envoy.config.cluster.v3.Cluster', b, decodeCluster);
export const decodeClusterLoadAssignmentBytes = (b: Uint8Array): Decoded<ClusterLoadAssignment> =>
  fromBytes('envoy.config.endpoint.v3.ClusterLoadAssignment', b, decodeClusterLoadAssignment);

export type L7Resource =
  | { readonly kind: 'listener'; readonly listener: L7Listener }
  | { readonly kind: 'route-configuration'; readonly routeConfiguration: RouteConfiguration }
  | { readonly kind: 'cluster'; readonly cluster: Cluster }
  | { readonly kind: 'cluster-load-assignment'; readonly loadAssignment: ClusterLoadAssignment };

/** Decodes a resource of one of the four L7 type URLs (the `type_url` of its Any). */
export function decodeL7Resource(typeUrl: string, bytes: Uint8Array): Decoded<L7Resource> {
  const wrap = <T>(d: Decoded<T>, f: (v: T) => L7Resource): Decoded<L7Resource> =>
    d.ok ? { ok: true, value: f(d.value) } : d;
  switch (typeUrl) {
    case EnvoyTypeUrl.Listener:
      return wrap(decodeListenerBytes(bytes), (listener) => ({ kind: 'listener', listener }));
    case EnvoyTypeUrl.RouteConfiguration:
      return wrap(decodeRouteConfigurationBytes(bytes), (routeConfiguration) => ({
        kind: 'route-configuration',
        routeConfiguration,
      }));
    case EnvoyTypeUrl.Cluster:
      return wrap(decodeClusterBytes(bytes), (cluster) => ({ kind: 'cluster', cluster }));
    case EnvoyTypeUrl.ClusterLoadAssignment:
      return wrap(decodeClusterLoadAssignmentBytes(bytes), (loadAssignment) => ({
        kind: 'cluster-load-assignment',
        loadAssignment,
      }));
    default:
      return { ok: false, errors: [{ path: '', message: `unknown resource type ${typeUrl}` }] };
  }
}

/**
 * Encodes a plain object (snake_case fields, enums by name, nested Anys as
 * `{type_url, value}`) as the Envoy message `typeName`; `anyOf` builds such an Any.
 */
export function encodeEnvoy(typeName: string, object: object): Uint8Array {
  const type = envoyL7Protos().lookupType(typeName);
  const err = type.verify(type.fromObject(object));
  if (err) throw new TypeError(`${typeName}: ${err}`);
  return type.encode(type.fromObject(object)).finish();
}

/** An Any (as protobufjs objects carry it) holding `object` encoded as `typeName`. */
export function anyOf(typeName: string, object: object): { type_url: string; value: Uint8Array } {
  return { type_url: `type.googleapis.com/${typeName}`, value: encodeEnvoy(typeName, object) };
}

export { L7AnyType };
