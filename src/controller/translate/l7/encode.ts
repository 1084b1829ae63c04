/**
 * The L7 resources (translate.ts) as bytes ready to go in an xDS `Any`: `{name, typeUrl, version,
 * bytes}`, with protobufjs types loaded from the protos that ship in `@grpc/grpc-js-xds`. The version
 * is a hash of the bytes, as for the workload resources (equal content, equal version), and the
 * bytes are deterministic: fields go out in field-number order and maps in the order the translation
 * built them.
 *
 * Also the reverse, for tests, debugging and admin dumps: bytes → plain JSON-like objects, with every
 * nested Any decoded in place (`{"@type": <message>, ...fields}`), as Envoy's config dump shows them.
 */
import { createHash } from 'node:crypto';
import { EnvoyTypeUrl } from '../../../core/xds/l7-names.ts';
import type { Cluster, ClusterLoadAssignment, Listener, RouteConfiguration } from './envoy-types.ts';
import { encodeMessage, EnvoyType, envoyProtos } from './protos.ts';
import type { L7Resources } from './translate.ts';

export interface EncodedResource {
  readonly name: string;
  readonly typeUrl: EnvoyTypeUrl;
  /** Hash of the bytes (16 hex digits). */
  readonly version: string;
  readonly bytes: Uint8Array;
}

const MESSAGE_OF: Readonly<Record<EnvoyTypeUrl, EnvoyType>> = {
  [EnvoyTypeUrl.Listener]: EnvoyType.Listener,
  [EnvoyTypeUrl.RouteConfiguration]: EnvoyType.RouteConfiguration,
  [EnvoyTypeUrl.Cluster]: EnvoyType.Cluster,
  [EnvoyTypeUrl.ClusterLoadAssignment]: EnvoyType.ClusterLoadAssignment,
};

export function encodeListener(l: Listener): EncodedResource {
  return encoded(EnvoyTypeUrl.Listener, l.name, l);
}

export function encodeRouteConfiguration(r: RouteConfiguration): EncodedResource {
  return encoded(EnvoyTypeUrl.RouteConfiguration, r.name, r);
}

export function encodeCluster(c: Cluster): EncodedResource {
  return encoded(EnvoyTypeUrl.Cluster, c.name, c);
}

export function encodeClusterLoadAssignment(c: ClusterLoadAssignment): EncodedResource {
  return encoded(EnvoyTypeUrl.ClusterLoadAssignment, c.cluster_name, c);
}

/** Every resource, grouped by type URL (each group in the translation's order: by name). */
export function encodeL7Resources(resources: L7Resources): Map<EnvoyTypeUrl, EncodedResource[]> {
  return new Map<EnvoyTypeUrl, EncodedResource[]>([
    [EnvoyTypeUrl.Listener, resources.listeners.map(encodeListener)],
    [EnvoyTypeUrl.RouteConfiguration, resources.routeConfigurations.map(encodeRouteConfiguration)],
    [EnvoyTypeUrl.Cluster, resources.clusters.map(encodeCluster)],
    [EnvoyTypeUrl.ClusterLoadAssignment, resources.clusterLoadAssignments.map(encodeClusterLoadAssignment)],
  ]);
}

function encoded(typeUrl: EnvoyTypeUrl, name: string, value: object): EncodedResource {
  const bytes = encodeMessage(MESSAGE_OF[typeUrl], value);
  return { name, typeUrl, version: createHash('sha256').update(bytes).digest('hex').slice(0, 16), bytes };
}

/**
 * Decodes a message to plain data: snake_case fields, enums by name, 64-bit integers as numbers,
 * bytes as base64, defaults left out, and each `google.protobuf.Any` replaced by its decoded content
 * under `@type` (recursively). Throws if the bytes are not a `message`.
 */
export function decodeToJson(message: string, bytes: Uint8Array): Record<string, unknown> {
  const type = envoyProtos().lookupType(message);
  const obj = type.toObject(type.decode(bytes), {
    enums: String,
    longs: Number,
    bytes: String,
    defaults: false,
  });
  return expandAny(obj) as Record<string, unknown>;
}

/** `decodeToJson` of a resource by its type URL. */
export function resourceToJson(typeUrl: EnvoyTypeUrl, bytes: Uint8Array): Record<string, unknown> {
  return decodeToJson(MESSAGE_OF[typeUrl], bytes);
}

/** Decodes every Any found in a plain object (as the translation builds them, or as decodeToJson returns). */
export function expandAny(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(expandAny);
  if (typeof value !== 'object' || value === null || value instanceof Uint8Array) return value;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj);
  if (typeof obj.type_url === 'string' && keys.every((k) => k === 'type_url' || k === 'value')) {
    const name = obj.type_url.slice(obj.type_url.lastIndexOf('/') + 1);
    const raw = obj.value;
    const bytes =
      raw instanceof Uint8Array
        ? raw
        : typeof raw === 'string'
          ? Buffer.from(raw, 'base64')
          : new Uint8Array();
    return { '@type': name, ...decodeToJson(name, bytes) };
  }
  return Object.fromEntries(keys.map((k) => [k, expandAny(obj[k])]));
}
