/**
 * The Kubernetes objects the controller reads, as minimal plain data. Both sources (the API server's
 * informers in `kube/` and the local YAML directory in `files/`) decode into these types, so the
 * translation never sees a `@kubernetes/client-node` type or a YAML node (STYLE.md §3).
 *
 * Only structure is checked when decoding; meaning (port ranges, CIDRs, actions) is checked by the
 * translation, which names the object and field path of every problem it finds.
 */
import type { GatewayHttpRoute } from './l7/http-route-types.ts';
import type { DestinationRule, VirtualService } from './l7/types.ts';
import type { StringMap } from './plain.ts';

export type { StringMap } from './plain.ts';

export interface Namespace {
  readonly name: string;
  readonly labels: StringMap;
}

export interface OwnerReference {
  readonly apiVersion: string;
  readonly kind: string;
  readonly name: string;
  /** True for the managing controller; at most one owner reference has it. */
  readonly controller: boolean;
}

export interface ContainerPort {
  /** Empty when the port has no name. */
  readonly name: string;
  readonly containerPort: number;
  /** `TCP` (the default), `UDP` or `SCTP`. */
  readonly protocol: string;
}

export interface Pod {
  readonly namespace: string;
  readonly name: string;
  /** metadata.uid; empty in local YAML that does not set it. */
  readonly uid: string;
  readonly labels: StringMap;
  readonly annotations: StringMap;
  /** spec.nodeName; empty until scheduled. */
  readonly nodeName: string;
  /** spec.serviceAccountName; empty means `default`. */
  readonly serviceAccountName: string;
  /** status.podIPs (or status.podIP); empty when the pod has no address yet. */
  readonly podIPs: readonly string[];
  /** status.phase: Pending, Running, Succeeded, Failed, Unknown; undefined when absent. */
  readonly phase: string | undefined;
  /** The `Ready` condition's status; undefined when the pod has no such condition. */
  readonly ready: boolean | undefined;
  readonly ownerReferences: readonly OwnerReference[];
  readonly hostNetwork: boolean;
  /** Ports of all (non-init) containers, in declaration order. */
  readonly containerPorts: readonly ContainerPort[];
}

export interface ServicePort {
  /** Empty for a single unnamed port. */
  readonly name: string;
  readonly port: number;
  /** A number, a container port name, or undefined (meaning: the same as `port`). */
  readonly targetPort: number | string | undefined;
  /** `TCP` (the default), `UDP` or `SCTP`. */
  readonly protocol: string;
  /** Empty when not set. */
  readonly appProtocol: string;
}

export interface Service {
  readonly namespace: string;
  readonly name: string;
  readonly labels: StringMap;
  /** spec.type: ClusterIP (default), NodePort, LoadBalancer or ExternalName. */
  readonly type: string;
  /** spec.selector; empty means the Service selects no pods (its endpoints are managed elsewhere). */
  readonly selector: StringMap;
  /** spec.clusterIPs (or spec.clusterIP); `["None"]` for a headless Service. */
  readonly clusterIPs: readonly string[];
  readonly ports: readonly ServicePort[];
}

export interface ServiceAccount {
  readonly namespace: string;
  readonly name: string;
}

/** `security.istio.io/v1` Source (istio-api.md §3.4). Absent lists are empty. */
export interface AuthzSource {
  readonly principals: readonly string[];
  readonly notPrincipals: readonly string[];
  readonly requestPrincipals: readonly string[];
  readonly notRequestPrincipals: readonly string[];
  readonly namespaces: readonly string[];
  readonly notNamespaces: readonly string[];
  readonly serviceAccounts: readonly string[];
  readonly notServiceAccounts: readonly string[];
  readonly ipBlocks: readonly string[];
  readonly notIpBlocks: readonly string[];
  readonly remoteIpBlocks: readonly string[];
  readonly notRemoteIpBlocks: readonly string[];
}

/** `security.istio.io/v1` Operation. Ports are strings, as in Istio's API. */
export interface AuthzOperation {
  readonly hosts: readonly string[];
  readonly notHosts: readonly string[];
  readonly ports: readonly string[];
  readonly notPorts: readonly string[];
  readonly methods: readonly string[];
  readonly notMethods: readonly string[];
  readonly paths: readonly string[];
  readonly notPaths: readonly string[];
}

export interface AuthzCondition {
  readonly key: string;
  readonly values: readonly string[];
  readonly notValues: readonly string[];
}

export interface AuthzRule {
  /** Each entry's `source`; undefined when the entry has none (invalid, reported by translation). */
  readonly from: readonly (AuthzSource | undefined)[];
  /** Each entry's `operation`; undefined when the entry has none (invalid, reported by translation). */
  readonly to: readonly (AuthzOperation | undefined)[];
  readonly when: readonly AuthzCondition[];
}

export interface PolicyTargetRef {
  readonly group: string;
  readonly kind: string;
  readonly name: string;
  /** Empty means the policy's namespace. */
  readonly namespace: string;
}

export interface AuthorizationPolicy {
  readonly namespace: string;
  readonly name: string;
  readonly annotations: StringMap;
  /** spec.selector.matchLabels; undefined when the policy has no selector (an empty one is `{}`). */
  readonly selector: StringMap | undefined;
  /** spec.targetRefs plus the deprecated spec.targetRef. */
  readonly targetRefs: readonly PolicyTargetRef[];
  /** spec.action as written (ALLOW when empty); validated by translation. */
  readonly action: string;
  readonly rules: readonly AuthzRule[];
}

/** `discovery.k8s.io/v1` EndpointPort. */
export interface EndpointSlicePort {
  /** The Service port's name this port serves; empty for a Service's single unnamed port. */
  readonly name: string;
  /** The endpoints' (target) port; undefined when unset, which Kubernetes reads as "all ports". */
  readonly port: number | undefined;
  /** `TCP` (the default), `UDP` or `SCTP`. */
  readonly protocol: string;
  /** Empty when not set. */
  readonly appProtocol: string;
}

/** The object an endpoint stands for (usually a Pod). */
export interface EndpointTargetRef {
  readonly kind: string;
  /** Empty means the slice's namespace. */
  readonly namespace: string;
  readonly name: string;
  /** Empty when not set. */
  readonly uid: string;
}

export interface SliceEndpoint {
  /** IP addresses (or names, with addressType FQDN); Kubernetes sets one per endpoint. */
  readonly addresses: readonly string[];
  /** conditions.ready; undefined (unknown) counts as ready, as Kubernetes documents. */
  readonly ready: boolean | undefined;
  readonly targetRef: EndpointTargetRef | undefined;
  /** Empty when not set. */
  readonly nodeName: string;
}

/** `discovery.k8s.io/v1` EndpointSlice. Its Service is named by the label `kubernetes.io/service-name`. */
export interface EndpointSlice {
  readonly namespace: string;
  readonly name: string;
  readonly labels: StringMap;
  /** `IPv4`, `IPv6` or `FQDN`; empty when not set (hand-written YAML). */
  readonly addressType: string;
  readonly endpoints: readonly SliceEndpoint[];
  readonly ports: readonly EndpointSlicePort[];
}

/** `networking.istio.io/v1` ServicePort. */
export interface ServiceEntryPort {
  readonly number: number;
  /** As written (`HTTP`, `TCP`, …); empty when not set. */
  readonly protocol: string;
  readonly name: string;
  /** undefined (or 0) means the same as `number`. */
  readonly targetPort: number | undefined;
}

/** `networking.istio.io/v1` WorkloadEntry, as a ServiceEntry's inline `endpoints` entry. */
export interface WorkloadEntry {
  /** An IP address, or a host name with DNS resolution. */
  readonly address: string;
  /** ServiceEntry port name → the port this endpoint serves it on. Look names up with `Object.hasOwn`. */
  readonly ports: Readonly<Record<string, number>>;
  readonly labels: StringMap;
  /** Empty when not set. */
  readonly network: string;
  /** Empty when not set. */
  readonly locality: string;
  /** undefined when not set. */
  readonly weight: number | undefined;
  /** Empty when not set. */
  readonly serviceAccount: string;
}

/** `networking.istio.io/v1` (also v1beta1, v1alpha3) ServiceEntry. Enum fields are as written. */
export interface ServiceEntry {
  readonly namespace: string;
  readonly name: string;
  readonly labels: StringMap;
  readonly annotations: StringMap;
  readonly hosts: readonly string[];
  /** VIPs: IP addresses or CIDRs. */
  readonly addresses: readonly string[];
  readonly ports: readonly ServiceEntryPort[];
  /** `MESH_EXTERNAL` (the default, when empty) or `MESH_INTERNAL`. */
  readonly location: string;
  /** `NONE` (the default, when empty), `STATIC`, `DNS`, `DNS_ROUND_ROBIN` or `DYNAMIC_DNS`. */
  readonly resolution: string;
  readonly endpoints: readonly WorkloadEntry[];
  /** spec.workloadSelector.labels; undefined when the entry has no workloadSelector. */
  readonly workloadSelector: StringMap | undefined;
  readonly subjectAltNames: readonly string[];
}

export interface PortMtls {
  readonly port: number;
  /** As written; empty means UNSET. */
  readonly mode: string;
}

/** `security.istio.io/v1` (also v1beta1) PeerAuthentication. */
export interface PeerAuthentication {
  readonly namespace: string;
  readonly name: string;
  /**
   * metadata.creationTimestamp (RFC 3339, so it sorts as text); empty in YAML that does not set it.
   * When several policies compete, the oldest wins, as in istiod.
   */
  readonly creationTimestamp: string;
  /** spec.selector.matchLabels; undefined when the policy has no selector (an empty one is `{}`). */
  readonly selector: StringMap | undefined;
  /** spec.mtls.mode as written; empty means UNSET (inherit). */
  readonly mode: string;
  /** spec.portLevelMtls, in the order written. */
  readonly portLevelMtls: readonly PortMtls[];
}

export interface GatewayListener {
  readonly name: string;
  /** Empty when not set. */
  readonly hostname: string;
  /** 0 when missing (reported by validation). */
  readonly port: number;
  readonly protocol: string;
  /** `tls`, as written; undefined when absent (ingress Gateways, l7/gateway-api-translate.ts). */
  readonly tls?: GatewayListenerTls;
  /** `allowedRoutes`, as written; undefined when absent (the API's default: Same namespace). */
  readonly allowedRoutes?: GatewayAllowedRoutes;
}

/** A Gateway API object reference (SecretObjectReference, RouteGroupKind with a name). */
export interface GatewayObjectReference {
  /** '' (the core group) when not set. */
  readonly group: string;
  /** As written; '' when not set (the API's default depends on the field). */
  readonly kind: string;
  /** '' when not set: the referring object's namespace. */
  readonly namespace: string;
  readonly name: string;
}

/** A listener's `tls`. */
export interface GatewayListenerTls {
  /** `Terminate` (the default, when '') or `Passthrough`. */
  readonly mode: string;
  readonly certificateRefs: readonly GatewayObjectReference[];
  /** Implementation-specific options (domain-prefixed keys). */
  readonly options: StringMap;
}

/** A Kubernetes label selector (matchLabels and matchExpressions). */
export interface LabelSelector {
  readonly matchLabels: StringMap;
  readonly matchExpressions: readonly {
    readonly key: string;
    /** In, NotIn, Exists or DoesNotExist, as written. */
    readonly operator: string;
    readonly values: readonly string[];
  }[];
}

/** A listener's `allowedRoutes`. */
export interface GatewayAllowedRoutes {
  /** `namespaces.from`: Same (the default, when ''), All or Selector, as written. */
  readonly from: string;
  /** `namespaces.selector`; undefined when not set. */
  readonly selector: LabelSelector | undefined;
  /** `kinds` (group '' when not set means gateway.networking.k8s.io here, as the API defaults it). */
  readonly kinds: readonly { readonly group: string; readonly kind: string }[];
}

/** `gateway.networking.k8s.io` ReferenceGrant (v1beta1, v1): lets objects of `from` refer to `to`. */
export interface ReferenceGrant {
  readonly namespace: string;
  readonly name: string;
  readonly from: readonly { readonly group: string; readonly kind: string; readonly namespace: string }[];
  /** `name` '' when not set: every object of that kind in the grant's namespace. */
  readonly to: readonly { readonly group: string; readonly kind: string; readonly name: string }[];
}

/** A Gateway address, requested (spec.addresses) or assigned (status.addresses). */
export interface GatewayAddressEntry {
  /** `IPAddress` (the default, when empty), `Hostname`, or a domain-prefixed custom type. */
  readonly type: string;
  readonly value: string;
}

/**
 * `gateway.networking.k8s.io/v1` Gateway: the fields waypoints need (DESIGN.md §4; istio-api.md
 * §3.2). Class `istio-waypoint` (or its alias `ambit-waypoint`) makes it a waypoint.
 */
export interface Gateway {
  readonly namespace: string;
  readonly name: string;
  /** Including `istio.io/waypoint-for`, which wins over the GatewayClass's. */
  readonly labels: StringMap;
  readonly annotations: StringMap;
  /** metadata.creationTimestamp (RFC 3339, sorts as text); '' or absent when not set. */
  readonly creationTimestamp?: string;
  readonly gatewayClassName: string;
  readonly listeners: readonly GatewayListener[];
  readonly addresses: readonly GatewayAddressEntry[];
  /** Where the gateway is reachable, as its controller reported it. */
  readonly statusAddresses: readonly GatewayAddressEntry[];
}

/**
 * `gateway.networking.k8s.io/v1` GatewayClass (cluster-scoped): only its labels are read, for the
 * `istio.io/waypoint-for` of the waypoint Gateways of the class that set none (istio-api.md §3.2).
 */
export interface GatewayClass {
  readonly name: string;
  readonly labels: StringMap;
}

/** Istio Gateway server TLS settings (`spec.servers[].tls`), as written. */
export interface IstioServerTls {
  readonly httpsRedirect: boolean;
  /** SIMPLE, MUTUAL, PASSTHROUGH, AUTO_PASSTHROUGH, ISTIO_MUTUAL, OPTIONAL_MUTUAL; '' when not set. */
  readonly mode: string;
  readonly credentialName: string;
  readonly serverCertificate: string;
  readonly privateKey: string;
  readonly caCertificates: string;
  readonly subjectAltNames: readonly string[];
  /** TLSV1_0 … TLSV1_3, '' for the default. */
  readonly minProtocolVersion: string;
  readonly maxProtocolVersion: string;
}

/** One `spec.servers[]` entry of an Istio Gateway. */
export interface IstioGatewayServer {
  readonly port: { readonly number: number; readonly name: string; readonly protocol: string };
  /** As written: `host`, `ns/host`, `./host`, `*`/host, with `*.` wildcards. */
  readonly hosts: readonly string[];
  readonly tls: IstioServerTls | undefined;
  /** An optional server name (Istio uses it for stats); '' when not set. */
  readonly name: string;
  /** The IP to listen on; '' for every address. */
  readonly bind: string;
}

/**
 * `networking.istio.io/v1` Gateway (istio-api.md): the servers an ingress (or egress) gateway proxy
 * listens on, for the proxies whose labels the selector matches. Decoded and valid
 * (l7/gateway-decode.ts).
 */
export interface IstioGateway {
  readonly namespace: string;
  readonly name: string;
  readonly creationTimestamp: string;
  /** The gateway proxies' labels; empty selects every gateway proxy. */
  readonly selector: StringMap;
  readonly servers: readonly IstioGatewayServer[];
}

/** Everything the controller read, from one source, at one moment. */
export interface KubeSnapshot {
  readonly namespaces: readonly Namespace[];
  readonly pods: readonly Pod[];
  readonly services: readonly Service[];
  readonly endpointSlices: readonly EndpointSlice[];
  readonly serviceAccounts: readonly ServiceAccount[];
  readonly serviceEntries: readonly ServiceEntry[];
  readonly authorizationPolicies: readonly AuthorizationPolicy[];
  readonly peerAuthentications: readonly PeerAuthentication[];
  readonly gateways: readonly Gateway[];
  /** Gateway API GatewayClasses; absent: none. */
  readonly gatewayClasses?: readonly GatewayClass[];
  /** Decoded and valid (l7/decode.ts): invalid ones are left out by the sources, with problems. */
  readonly virtualServices: readonly VirtualService[];
  readonly destinationRules: readonly DestinationRule[];
  /** Gateway API HTTPRoutes, decoded and valid (l7/decode-http-route.ts), like the two above. */
  readonly httpRoutes: readonly GatewayHttpRoute[];
  /** `networking.istio.io` Gateways, decoded and valid (l7/gateway-decode.ts); absent: none. */
  readonly istioGateways?: readonly IstioGateway[];
  /** Gateway API ReferenceGrants; absent: none. */
  readonly referenceGrants?: readonly ReferenceGrant[];
}

export const EMPTY_SNAPSHOT: KubeSnapshot = {
  namespaces: [],
  pods: [],
  services: [],
  endpointSlices: [],
  serviceAccounts: [],
  serviceEntries: [],
  authorizationPolicies: [],
  peerAuthentications: [],
  gateways: [],
  virtualServices: [],
  destinationRules: [],
  httpRoutes: [],
};

/** The value of `key` in a label or annotation map, ignoring inherited properties. */
export function lookup(map: StringMap, key: string): string | undefined {
  return Object.hasOwn(map, key) ? map[key] : undefined;
}

/** Kubernetes equality-based selection: every selector entry is present with the same value. */
export function selects(selector: StringMap, labels: StringMap): boolean {
  return Object.entries(selector).every(([k, v]) => lookup(labels, k) === v);
}
