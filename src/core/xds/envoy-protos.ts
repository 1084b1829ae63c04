/**
 * The Envoy discovery service definitions, loaded from the protos that ship inside
 * `@grpc/grpc-js-xds` (never copied into this repo).
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import {
  loadPackageDefinition,
  type GrpcObject,
  type ServiceClientConstructor,
  type ServiceDefinition,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

export const ADS_SERVICE = 'envoy.service.discovery.v3.AggregatedDiscoveryService';

let loaded: { service: ServiceDefinition; client: ServiceClientConstructor } | undefined;

/** The ADS gRPC service definition (for servers) and client constructor. */
export function adsDefinitions(): { service: ServiceDefinition; client: ServiceClientConstructor } {
  if (!loaded) {
    const require = createRequire(import.meta.url);
    const deps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
    const def = loadSync('envoy/service/discovery/v3/ads.proto', {
      keepCase: true,
      longs: Number,
      enums: String,
      defaults: false,
      oneofs: true,
      includeDirs: ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(deps, d)),
    });
    const pkg = loadPackageDefinition(def) as unknown as {
      envoy: {
        service: { discovery: { v3: { AggregatedDiscoveryService: ServiceClientConstructor & GrpcObject } } };
      };
    };
    const ctor = pkg.envoy.service.discovery.v3.AggregatedDiscoveryService;
    loaded = { service: ctor.service, client: ctor };
  }
  return loaded;
}

/** A `google.protobuf.Any` as proto-loader represents it. */
export interface AnyMessage {
  type_url: string;
  value: Buffer;
}

/** `envoy.service.discovery.v3.Resource` */
export interface ResourceMessage {
  name: string;
  version: string;
  resource?: AnyMessage;
}

/** `envoy.service.discovery.v3.DeltaDiscoveryRequest` */
export interface DeltaRequest {
  node?: { id?: string; cluster?: string; metadata?: unknown };
  type_url?: string;
  resource_names_subscribe?: string[];
  resource_names_unsubscribe?: string[];
  initial_resource_versions?: Record<string, string>;
  response_nonce?: string;
  error_detail?: { code?: number; message?: string };
}

/** `envoy.service.discovery.v3.DeltaDiscoveryResponse` (empty lists arrive as undefined). */
export interface DeltaResponse {
  system_version_info?: string;
  resources?: ResourceMessage[];
  type_url: string;
  nonce: string;
  removed_resources?: string[];
}
