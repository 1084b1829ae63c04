/**
 * The Kubernetes objects the controller reads, as minimal plain data. Both sources (the API server's
 * informers in `kube/` and the local YAML directory in `files/`) decode into these types, so the
 * translation never sees a `@kubernetes/client-node` type or a YAML node (STYLE.md §3).
 *
 * Only structure is checked when decoding; meaning (port ranges, CIDRs, actions) is checked by the
 * translation, which names the object and field path of every problem it finds.
 */

/** Label or annotation map. Look keys up with `Object.hasOwn`: keys such as `constructor` are legal. */
export type StringMap = Readonly<Record<string, string>>;

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

/** Everything the controller read, from one source, at one moment. */
export interface KubeSnapshot {
  readonly namespaces: readonly Namespace[];
  readonly pods: readonly Pod[];
  readonly services: readonly Service[];
  readonly serviceAccounts: readonly ServiceAccount[];
  readonly authorizationPolicies: readonly AuthorizationPolicy[];
}

export const EMPTY_SNAPSHOT: KubeSnapshot = {
  namespaces: [],
  pods: [],
  services: [],
  serviceAccounts: [],
  authorizationPolicies: [],
};

/** The value of `key` in a label or annotation map, ignoring inherited properties. */
export function lookup(map: StringMap, key: string): string | undefined {
  return Object.hasOwn(map, key) ? map[key] : undefined;
}

/** Kubernetes equality-based selection: every selector entry is present with the same value. */
export function selects(selector: StringMap, labels: StringMap): boolean {
  return Object.entries(selector).every(([k, v]) => lookup(labels, k) === v);
}
