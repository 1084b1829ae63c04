/**
 * The waypoint's config from the controller: one Delta ADS stream with wildcard subscriptions to the
 * workload addresses (`istio.workload.Address`: which service is at a VIP, who an endpoint is and how
 * to reach it) and the four Envoy L7 types (Listener, RouteConfiguration, Cluster,
 * ClusterLoadAssignment). A resource that does not decode is NACKed with every error, and its last
 * good version stays in force (the ADS client's contract, core/xds/ads-client.ts).
 */
import type { Logger } from '../core/log.ts';
import { TypeUrl } from '../core/proto/load.ts';
import { AdsClient, type AdsType } from '../core/xds/ads-client.ts';
import { controllerChannel, readToken } from '../core/xds/controller-channel.ts';
import { EnvoyTypeUrl } from '../core/xds/l7-names.ts';
import {
  decodeClusterBytes,
  decodeClusterLoadAssignmentBytes,
  decodeListenerBytes,
  decodeRouteConfigurationBytes,
} from '../core/xds/l7-wire.ts';
import type { Service, Workload } from '../core/xds/model.ts';
import { decodeAddress, type AddressResource, type Decoded } from '../core/xds/workload-proto.ts';
import type { WaypointConfig } from './config.ts';
import type { L7Kind } from './l7-state.ts';

/** The L7 type URLs and the kind of resource each holds. */
export const L7_TYPES: readonly (readonly [EnvoyTypeUrl, L7Kind])[] = [
  [EnvoyTypeUrl.Listener, 'listener'],
  [EnvoyTypeUrl.RouteConfiguration, 'route-configuration'],
  [EnvoyTypeUrl.Cluster, 'cluster'],
  [EnvoyTypeUrl.ClusterLoadAssignment, 'cluster-load-assignment'],
];

/** Bytes → model for each L7 type. */
export const L7_DECODERS: Readonly<Record<EnvoyTypeUrl, (b: Uint8Array) => Decoded<unknown>>> = {
  [EnvoyTypeUrl.Listener]: decodeListenerBytes,
  [EnvoyTypeUrl.RouteConfiguration]: decodeRouteConfigurationBytes,
  [EnvoyTypeUrl.Cluster]: decodeClusterBytes,
  [EnvoyTypeUrl.ClusterLoadAssignment]: decodeClusterLoadAssignmentBytes,
};

export interface WaypointXdsHandlers {
  /** The whole current set of workloads and services (at most once per event-loop turn). */
  onMesh(workloads: Workload[], services: Service[]): void;
  /** The whole current set of one L7 kind. */
  onL7(kind: L7Kind, resources: ReadonlyMap<string, unknown>): void;
  /** A resource was rejected (already NACKed and logged). */
  onRejected(typeUrl: string): void;
}

/** How another proxy (an ingress gateway) uses the same client. */
export interface XdsClientOptions {
  /** The node id's proxy type: `waypoint` (default), `router` for a gateway, as Istio's proxies say. */
  readonly nodeType?: string;
  /** Decoders that replace the default of their type (a gateway also reads its listeners' metadata). */
  readonly decoders?: Partial<Record<EnvoyTypeUrl, (b: Uint8Array) => Decoded<unknown>>>;
  /** Further types on the same stream (a gateway's Secrets, by name), handed to `onOther`. */
  readonly extraTypes?: readonly AdsType[];
  readonly onOther?: (typeUrl: string, resources: ReadonlyMap<string, unknown>) => void;
}

export function waypointXdsClient(
  config: WaypointConfig,
  log: Logger,
  h: WaypointXdsHandlers,
  opts: XdsClientOptions = {},
): AdsClient {
  const c = controllerChannel(config);
  const counted =
    (typeUrl: string, decode: (b: Uint8Array) => Decoded<unknown>) =>
    (b: Uint8Array): Decoded<unknown> => {
      const d = decode(b);
      if (!d.ok) h.onRejected(typeUrl);
      return d;
    };
  let addresses: ReadonlyMap<string, unknown> = new Map();
  let scheduled = false;
  const types: AdsType[] = [
    { typeUrl: TypeUrl.Address, decode: counted(TypeUrl.Address, decodeAddress) },
    ...L7_TYPES.map(([typeUrl]) => ({
      typeUrl,
      decode: counted(typeUrl, opts.decoders?.[typeUrl] ?? L7_DECODERS[typeUrl]),
    })),
    ...(opts.extraTypes ?? []).map((t) => ({ ...t, decode: counted(t.typeUrl, (b) => t.decode(b)) })),
  ];
  return new AdsClient({
    target: config.xdsAddress,
    credentials: c.credentials,
    channelOptions: c.options,
    node: {
      id: `${opts.nodeType ?? 'waypoint'}~${config.instanceIp}~${config.podName}.${config.namespace}~${config.namespace}.svc.cluster.local`,
      metadata: {
        NAMESPACE: config.namespace,
        CLUSTER_ID: config.clusterId,
        SERVICE_ACCOUNT: config.serviceAccount,
        GATEWAY_NAME: config.gatewayName,
        INSTANCE_IPS: config.instanceIp,
        POD_NAME: config.podName,
      },
    },
    types,
    headers: (): Record<string, string> =>
      config.authToken
        ? { authorization: `Bearer ${readToken(config.authToken)}`, clusterid: config.clusterId }
        : {},
    log,
    onResources: (typeUrl, resources) => {
      const l7 = L7_TYPES.find(([t]) => t === typeUrl);
      if (l7) return h.onL7(l7[1], resources);
      if (typeUrl !== TypeUrl.Address) return opts.onOther?.(typeUrl, resources);
      addresses = resources;
      // One MeshState per event-loop turn, however many Address responses arrive in it.
      if (scheduled) return;
      scheduled = true;
      setImmediate(() => {
        scheduled = false;
        const all = [...addresses.values()] as AddressResource[];
        h.onMesh(
          all.flatMap((a) => (a.kind === 'workload' ? [a.workload] : [])),
          all.flatMap((a) => (a.kind === 'service' ? [a.service] : [])),
        );
      });
    },
  });
}
