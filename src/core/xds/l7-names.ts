/**
 * The contract between the controller's L7 translation and its consumers (the waypoint and
 * proxyless gRPC clients such as `@grpc/grpc-js-xds`): resource type URLs and names, as Istio names
 * them for proxyless gRPC (DESIGN.md §3 "L7 xDS"). Per HTTP port of a service:
 *
 * - Listener `<hostname>:<port>`: an API listener whose HttpConnectionManager takes its routes over
 *   ADS (RDS) from the route configuration of the same name. `xds:///<hostname>:<port>` resolves to it.
 * - RouteConfiguration `<hostname>:<port>`: one virtual host whose domains are the names a client may
 *   use for the service (FQDN, short forms in its namespace, the VIPs, each with and without the port).
 * - Cluster `outbound|<port>|<subset>|<hostname>` (subset empty for the whole service), type EDS.
 * - ClusterLoadAssignment of the same name: the endpoints (pod IP, target port).
 */

export const EnvoyTypeUrl = {
  Listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  RouteConfiguration: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  Cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  ClusterLoadAssignment: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
} as const;
export type EnvoyTypeUrl = (typeof EnvoyTypeUrl)[keyof typeof EnvoyTypeUrl];

/** Listener and route configuration name for one service port. */
export function listenerName(hostname: string, port: number): string {
  return `${hostname}:${port}`;
}

/** Istio's outbound cluster name; `subset` is '' for the whole service. */
export function clusterName(port: number, subset: string, hostname: string): string {
  return `outbound|${port}|${subset}|${hostname}`;
}

/** Splits a cluster name back into its parts; undefined if it is not one of ours. */
export function parseClusterName(
  name: string,
): { port: number; subset: string; hostname: string } | undefined {
  const parts = name.split('|');
  if (parts.length !== 4 || parts[0] !== 'outbound') return undefined;
  const port = Number(parts[1]);
  if (!Number.isInteger(port) || port < 1 || port > 65535 || !parts[3]) return undefined;
  return { port, subset: parts[2] ?? '', hostname: parts[3] };
}

/**
 * Dynamic-metadata namespace in which the waypoint exposes facts about the real client to route
 * matching — Ambit's extension for VirtualService `sourceNamespace` and `sourceLabels`, which Istio's
 * waypoints drop. Keys: `namespace`, and `labels` (a struct of the client workload's labels).
 */
export const SOURCE_METADATA_FILTER = 'ambit.source';
