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

/**
 * Ingress gateways (issue 8): the controller serves the listeners and route configurations of the
 * `networking.istio.io` Gateways to every subscriber (the ADS server does not scope resources per
 * subscriber), so their names carry the gateway group they belong to: the Gateways' `selector`,
 * written `k=v,k=v` with the keys sorted. A gateway proxy serves the groups its own labels match.
 * After the prefix the names are Istio's: listener `0.0.0.0_<port>` (and, per TLS server, the filter
 * chain `…/<namespace>/<gateway>/<index>`), route configuration `http.<port>` or
 * `https.<port>.<portName>.<gateway>.<namespace>`.
 */
const GATEWAY_PREFIX = 'gateway/';

/**
 * The group a Gateway selector defines. A `/` (label keys such as
 * `gateway.networking.k8s.io/gateway-name` have one) is written `%2F`, and `%` itself `%25`, so
 * the group never holds the `/` that ends it in a resource name.
 */
export function gatewayGroup(selector: Readonly<Record<string, string>>): string {
  const esc = (s: string) => s.replace(/%/g, '%25').replace(/\//g, '%2F');
  return Object.keys(selector)
    .sort()
    .map((k) => `${esc(k)}=${esc(selector[k]!)}`)
    .join(',');
}

/** Parses a group back into the selector it was made of. */
export function parseGatewayGroup(group: string): Record<string, string> {
  const unesc = (s: string) => s.replace(/%2F/g, '/').replace(/%25/g, '%');
  const out: Record<string, string> = {};
  for (const pair of group.split(',')) {
    const eq = pair.indexOf('=');
    if (eq > 0) out[unesc(pair.slice(0, eq))] = unesc(pair.slice(eq + 1));
  }
  return out;
}

/** `gateway/<group>/<name>`: a gateway resource of that group. */
export function gatewayResourceName(group: string, name: string): string {
  return `${GATEWAY_PREFIX}${group}/${name}`;
}

/** The group and Istio name of a gateway resource; undefined for any other resource. */
export function parseGatewayResourceName(name: string): { group: string; name: string } | undefined {
  if (!name.startsWith(GATEWAY_PREFIX)) return undefined;
  const rest = name.slice(GATEWAY_PREFIX.length);
  const slash = rest.indexOf('/');
  if (slash < 0) return undefined;
  return { group: rest.slice(0, slash), name: rest.slice(slash + 1) };
}

/**
 * Listener metadata namespace (`metadata.filter_metadata`) holding what a gateway server needs
 * beyond the HTTP connection manager: port, protocol, SNI hosts and TLS settings. Gateway listeners
 * stay API listeners (the waypoint and gRPC clients decode every Listener and accept only those),
 * so the server facts a filter chain would carry travel here, as a Struct.
 */
export const GATEWAY_METADATA_FILTER = 'ambit.gateway';

/** TLS settings of one gateway server (Istio's ServerTLSSettings, the parts the gateway honours). */
export interface GatewayTlsFacts {
  /**
   * SIMPLE or MUTUAL: the gateway terminates TLS. PASSTHROUGH (protocol TLS only): it reads the SNI
   * from the ClientHello and forwards the bytes untouched.
   */
  readonly mode: string;
  /** PEM file paths on the gateway's file system ('' when credentialName is used). */
  readonly serverCertificate: string;
  readonly privateKey: string;
  readonly caCertificates: string;
  /**
   * A Kubernetes Secret with the certificate and key (and for MUTUAL the client CA), which the
   * gateway subscribes to over SDS (SECRET_TYPE_URL, sdsSecretName). Written `<name>`: a Secret in
   * the gateway proxy's own namespace, as Istio's credentialName means it; or `<namespace>/<name>`:
   * a Secret in that namespace, for Gateway API certificateRefs across namespaces — the translation
   * writes that form only for a reference a ReferenceGrant allows, and the controller serves such a
   * Secret only to proxies of listeners that name it. '' when certificate files are used.
   */
  readonly credentialName: string;
  /** Client certificates must carry one of these SANs (MUTUAL); empty: any the CA signed. */
  readonly subjectAltNames: readonly string[];
  /** TLSV1_2, TLSV1_3 or '' (the default). */
  readonly minProtocolVersion: string;
  readonly maxProtocolVersion: string;
}

/** What `metadata.filter_metadata["ambit.gateway"]` of a gateway listener says. */
export interface GatewayListenerFacts {
  readonly port: number;
  /**
   * HTTP (plaintext, every HTTP server of the port merged) or HTTPS (one TLS server, HTTP inside):
   * API listeners with routes over RDS. TCP (a plaintext port) or TLS (PASSTHROUGH: one listener per
   * SNI route; SIMPLE or MUTUAL: terminated, then TCP): listeners with a tcp_proxy filter chain.
   */
  readonly protocol: 'HTTP' | 'HTTPS' | 'TCP' | 'TLS';
  /** The server's host names (SNI for HTTPS and TLS; for PASSTHROUGH the route's sniHosts); `*` for any. */
  readonly hosts: readonly string[];
  /** The Gateway servers behind it, `<namespace>/<name> spec.servers[<i>]`, for messages. */
  readonly servers: readonly string[];
  readonly tls: GatewayTlsFacts | undefined;
}

/**
 * SDS (issue 8): the controller serves the certificates of Kubernetes Secrets named by gateway
 * servers as Envoy `Secret` resources on the same ADS server, named as istiod names them:
 * `kubernetes://<namespace>/<name>` for the certificate and key (a TlsCertificate secret), and
 * `kubernetes://<namespace>/<name>-cacert` for the CA that checks client certificates (a
 * validation-context secret: the `<name>-cacert` Secret, else the `ca.crt`/`cacert` key of
 * `<name>`). The gateway always subscribes with the namespace (istiod reads `kubernetes://<name>`
 * as the proxy's own namespace, which one shared resource set cannot). A proxy may read only the
 * Secrets of its own namespace (its SPIFFE identity's), as istiod allows.
 */
export const SECRET_TYPE_URL = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';
export const SDS_PREFIX = 'kubernetes://';
export const SDS_CA_SUFFIX = '-cacert';

/** The SDS resource of a credentialName (`name` or `namespace/name`) for a proxy of `proxyNamespace`. */
export function sdsSecretName(credentialName: string, proxyNamespace: string): string {
  return credentialName.includes('/')
    ? `${SDS_PREFIX}${credentialName}`
    : `${SDS_PREFIX}${proxyNamespace}/${credentialName}`;
}

/** The Secret an SDS resource name refers to; `ca` for a `-cacert` one. Undefined when not ours. */
export function parseSdsSecretName(
  resource: string,
): { namespace: string; name: string; ca: boolean } | undefined {
  if (!resource.startsWith(SDS_PREFIX)) return undefined;
  const parts = resource.slice(SDS_PREFIX.length).split('/');
  if (parts.length !== 2 || !parts[0] || !parts[1]) return undefined;
  const ca = parts[1].endsWith(SDS_CA_SUFFIX) && parts[1].length > SDS_CA_SUFFIX.length;
  return { namespace: parts[0], name: parts[1], ca };
}

/**
 * Workload waypoints (issue 5): traffic addressed to the IP of a pod bound to a waypoint Gateway
 * with `istio.io/waypoint-for: workload` or `all` is served by that waypoint's own resources, as
 * istiod's `direct-http` and `direct-tcp` filter chains and `encap` cluster do it. Every proxy
 * receives every resource, so the names say which waypoint they are for, and their `/` keeps them
 * apart from service listeners (`<hostname>:<port>`) and clusters (`outbound|…`):
 *
 * - Listener and RouteConfiguration `waypoint/<namespace>/<gateway>/direct-http`: an API listener
 *   with the waypoint's own RBAC filters (policies whose targetRefs name the Gateway or its class)
 *   and one route, `default`, to the encap cluster;
 * - Listener `waypoint/<namespace>/<gateway>/direct-tcp`: a tcp_proxy to the encap cluster;
 * - Cluster `waypoint/<namespace>/<gateway>/encap`: type ORIGINAL_DST, lb_policy CLUSTER_PROVIDED.
 */
export type DirectResource = 'direct-http' | 'direct-tcp' | 'encap';

const WAYPOINT_PREFIX = 'waypoint/';

export function directResourceName(namespace: string, gateway: string, what: DirectResource): string {
  return `${WAYPOINT_PREFIX}${namespace}/${gateway}/${what}`;
}

/** The waypoint and kind of a direct resource name; undefined for any other name. */
export function parseDirectResourceName(
  name: string,
): { namespace: string; gateway: string; what: DirectResource } | undefined {
  if (!name.startsWith(WAYPOINT_PREFIX)) return undefined;
  const parts = name.slice(WAYPOINT_PREFIX.length).split('/');
  if (parts.length !== 3 || !parts[0] || !parts[1]) return undefined;
  const what = parts[2];
  if (what !== 'direct-http' && what !== 'direct-tcp' && what !== 'encap') return undefined;
  return { namespace: parts[0], gateway: parts[1], what };
}
