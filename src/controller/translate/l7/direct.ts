/**
 * Workload waypoints (issue 5): the resources a waypoint needs for traffic addressed to the IP of a
 * pod bound to it (`istio.io/use-waypoint` on a Pod or its namespace, the Gateway, or else its
 * GatewayClass, labelled `istio.io/waypoint-for: workload` or `all`), as istiod builds the direct
 * pod access chains of its waypoint's internal listener
 * (pilot/pkg/networking/core/listener_waypoint.go, buildWaypointInternal):
 *
 * - `direct-http`: an HTTP connection manager with the waypoint's own policies — the RBAC filters of
 *   AuthorizationPolicies whose targetRefs name the Gateway or its GatewayClass (authz.ts) — and a
 *   route configuration with one virtual host `inbound|http|0` (domains `*`) whose route `default`
 *   sends everything to the encap cluster, with no timeout and no retries (istiod's sidecar inbound
 *   default route). VirtualServices do not apply: the destination is a pod, not a host.
 * - `direct-tcp`: the RBAC network filters of the same policies (built for TCP, authz.ts), then a
 *   tcp_proxy to the encap cluster.
 * - `encap`: a cluster of type ORIGINAL_DST (lb_policy CLUSTER_PROVIDED, connect timeout 2 s, cleanup
 *   interval 60 s, as istiod's connect_originate): each connection goes on, over HBONE with the
 *   waypoint's identity, to its own original destination `<podIP>:<port>`; HTTP goes upstream in
 *   the protocol the client spoke.
 *
 * The waypoint chooses between the two by sniffing (istiod's http_inspector). Every proxy receives
 * every resource, so the names say which waypoint they are for (l7-names.ts directResourceName).
 * Pure.
 */
import { directResourceName } from '../../../core/xds/l7-names.ts';
import { compare } from '../common.ts';
import { WAYPOINT_CLASSES, waypointFor } from '../gateways.ts';
import type { Gateway, GatewayClass } from '../kube-types.ts';
import type { Cluster, HttpFilter, Listener, NetworkFilter, RouteConfiguration } from './envoy-types.ts';
import { EnvoyType, packAny } from './protos.ts';
import { httpListener, tcpListener } from './listeners.ts';

const HTTP_PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const MAX_UINT32 = 2 ** 32 - 1;
/** istiod's sidecar inbound virtual host for a port it knows nothing about. */
export const DIRECT_VIRTUAL_HOST = 'inbound|http|0';

/** The `waypoint-for` values under which a waypoint takes pod-addressed traffic. */
const WORKLOAD_TRAFFIC = ['workload', 'all'];

/** One workload waypoint's resource names. */
export interface DirectWaypoint {
  readonly namespace: string;
  readonly gateway: string;
  readonly httpListener: string;
  readonly tcpListener: string;
  readonly cluster: string;
}

/** The waypoint Gateways that take workload traffic, sorted by namespace and name. */
export function workloadWaypoints(
  gateways: readonly Gateway[],
  classes: readonly GatewayClass[],
): DirectWaypoint[] {
  return gateways
    .filter(
      (g) =>
        WAYPOINT_CLASSES.includes(g.gatewayClassName) && WORKLOAD_TRAFFIC.includes(waypointFor(g, classes)),
    )
    .sort((a, b) => compare(a.namespace, b.namespace) || compare(a.name, b.name))
    .map((g) => ({
      namespace: g.namespace,
      gateway: g.name,
      httpListener: directResourceName(g.namespace, g.name, 'direct-http'),
      tcpListener: directResourceName(g.namespace, g.name, 'direct-tcp'),
      cluster: directResourceName(g.namespace, g.name, 'encap'),
    }));
}

export interface DirectResources {
  readonly listeners: readonly Listener[];
  readonly routeConfigurations: readonly RouteConfiguration[];
  readonly clusters: readonly Cluster[];
}

/**
 * The listeners, route configurations and clusters of every workload waypoint. `authz` gives the
 * RBAC HTTP filters of a listener (by name), `networkAuthz` its RBAC network filters: the
 * direct-http and direct-tcp listeners have those of the policies that target their waypoint.
 */
export function translateDirect(
  waypoints: readonly DirectWaypoint[],
  authz: (listener: string) => readonly HttpFilter[],
  networkAuthz: (listener: string) => readonly NetworkFilter[] = () => [],
): DirectResources {
  const listeners: Listener[] = [];
  const routeConfigurations: RouteConfiguration[] = [];
  const clusters: Cluster[] = [];
  for (const w of waypoints) {
    listeners.push(httpListener(w.httpListener, false, authz(w.httpListener)));
    listeners.push(
      tcpListener(w.tcpListener, [], 0, { cluster: w.cluster }, undefined, networkAuthz(w.tcpListener)),
    );
    routeConfigurations.push(directRouteConfiguration(w.httpListener, w.cluster));
    clusters.push(encapCluster(w.cluster));
  }
  return { listeners, routeConfigurations, clusters };
}

function directRouteConfiguration(name: string, cluster: string): RouteConfiguration {
  const zero = { seconds: 0, nanos: 0 };
  return {
    name,
    virtual_hosts: [
      {
        name: DIRECT_VIRTUAL_HOST,
        domains: ['*'],
        routes: [
          {
            name: 'default',
            match: { prefix: '/' },
            route: { cluster, timeout: zero, max_stream_duration: { max_stream_duration: zero } },
          },
        ],
      },
    ],
  };
}

/** istiod's connect_originate cluster, as the waypoint's model has it (no TLS: HBONE is the waypoint's). */
export function encapCluster(name: string): Cluster {
  const unlimited = { value: MAX_UINT32 };
  return {
    name,
    type: 'ORIGINAL_DST',
    lb_policy: 'CLUSTER_PROVIDED',
    connect_timeout: { seconds: 2, nanos: 0 },
    cleanup_interval: { seconds: 60, nanos: 0 },
    circuit_breakers: {
      thresholds: [
        {
          max_connections: unlimited,
          max_pending_requests: unlimited,
          max_requests: unlimited,
          max_retries: unlimited,
        },
      ],
    },
    typed_extension_protocol_options: {
      [HTTP_PROTOCOL_OPTIONS]: packAny(EnvoyType.HttpProtocolOptions, {
        use_downstream_protocol_config: { http_protocol_options: {}, http2_protocol_options: {} },
      }),
    },
  };
}
