import { formatSpiffe, type Identity } from '../identity/spiffe.ts';

/**
 * The internal model of mesh state: Istio's Workload, Service and Authorization
 * (reference/ztunnel.md §3.2–3.3) as plain readonly data. Wire formats (YAML, protobuf) are decoded
 * into these types at the edge; nothing past the edge sees a proto or a YAML node.
 */

export interface NetworkAddress {
  readonly network: string;
  readonly address: string;
}

export type GatewayDestination =
  | { readonly kind: 'address'; readonly network: string; readonly address: string }
  | { readonly kind: 'hostname'; readonly namespace: string; readonly hostname: string };

export interface GatewayAddress {
  readonly destination: GatewayDestination;
  readonly hboneMtlsPort: number;
}

export const TunnelProtocol = { None: 'NONE', Hbone: 'HBONE' } as const;
export type TunnelProtocol = (typeof TunnelProtocol)[keyof typeof TunnelProtocol];

export const WorkloadType = { Deployment: 'deployment', CronJob: 'cronjob', Pod: 'pod', Job: 'job' } as const;
export type WorkloadType = (typeof WorkloadType)[keyof typeof WorkloadType];

/** service port → target port */
export type PortMap = ReadonlyMap<number, number>;

export interface Workload {
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly addresses: readonly string[];
  readonly hostname: string;
  readonly network: string;
  readonly tunnelProtocol: TunnelProtocol;
  readonly trustDomain: string;
  readonly serviceAccount: string;
  readonly waypoint: GatewayAddress | undefined;
  readonly node: string;
  readonly canonicalName: string;
  readonly canonicalRevision: string;
  readonly workloadType: WorkloadType;
  readonly workloadName: string;
  /** `namespace/hostname` → port map: the services this workload is an endpoint of. */
  readonly services: ReadonlyMap<string, PortMap>;
  /** Keys (`namespace/name`) of selector-scoped policies that apply to this workload. */
  readonly authorizationPolicies: readonly string[];
  readonly healthy: boolean;
  readonly clusterId: string;
  readonly capacity: number;
  /**
   * The pod's (or ServiceEntry's) labels, sent by Ambit's controller in the Workload extension
   * `ambit.io/labels` for waypoints' `sourceLabels` matches; absent from istiod.
   */
  readonly labels?: Readonly<Record<string, string>>;
}

export interface Service {
  readonly name: string;
  readonly namespace: string;
  readonly hostname: string;
  readonly vips: readonly NetworkAddress[];
  readonly ports: PortMap;
  readonly subjectAltNames: readonly string[];
  readonly waypoint: GatewayAddress | undefined;
}

export type StringMatch =
  | { readonly kind: 'exact'; readonly value: string }
  | { readonly kind: 'prefix'; readonly value: string }
  | { readonly kind: 'suffix'; readonly value: string }
  | { readonly kind: 'presence' };

export interface Cidr {
  readonly address: string;
  readonly prefixLength: number;
}

export interface ServiceAccountMatch {
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** Within one field the values are ORed; across fields ANDed (reference/ztunnel.md §3.3). */
export interface Match {
  readonly namespaces: readonly StringMatch[];
  readonly notNamespaces: readonly StringMatch[];
  readonly serviceAccounts: readonly ServiceAccountMatch[];
  readonly notServiceAccounts: readonly ServiceAccountMatch[];
  readonly principals: readonly StringMatch[];
  readonly notPrincipals: readonly StringMatch[];
  readonly sourceIps: readonly Cidr[];
  readonly notSourceIps: readonly Cidr[];
  readonly destinationIps: readonly Cidr[];
  readonly notDestinationIps: readonly Cidr[];
  readonly destinationPorts: readonly number[];
  readonly notDestinationPorts: readonly number[];
}

/** A match with no conditions, to build others from (on its own it never matches). */
export const EMPTY_MATCH: Match = {
  namespaces: [],
  notNamespaces: [],
  serviceAccounts: [],
  notServiceAccounts: [],
  principals: [],
  notPrincipals: [],
  sourceIps: [],
  notSourceIps: [],
  destinationIps: [],
  notDestinationIps: [],
  destinationPorts: [],
  notDestinationPorts: [],
};

/** A clause matches if any of its matches does. */
export type Clause = readonly Match[];
/** A rule matches if all of its clauses do. */
export type Rule = readonly Clause[];

export const PolicyScope = {
  Global: 'Global',
  Namespace: 'Namespace',
  WorkloadSelector: 'WorkloadSelector',
} as const;
export type PolicyScope = (typeof PolicyScope)[keyof typeof PolicyScope];
export const PolicyAction = { Allow: 'Allow', Deny: 'Deny' } as const;
export type PolicyAction = (typeof PolicyAction)[keyof typeof PolicyAction];

export interface Authorization {
  readonly name: string;
  readonly namespace: string;
  readonly scope: PolicyScope;
  readonly action: PolicyAction;
  /** A policy matches if any rule does. */
  readonly rules: readonly Rule[];
  readonly dryRun: boolean;
}

/** Everything an agent knows about the mesh. */
export interface MeshConfig {
  readonly workloads: readonly Workload[];
  readonly services: readonly Service[];
  readonly policies: readonly Authorization[];
}

export function policyKey(p: Pick<Authorization, 'namespace' | 'name'>): string {
  return `${p.namespace}/${p.name}`;
}

export function serviceKey(s: Pick<Service, 'namespace' | 'hostname'>): string {
  return `${s.namespace}/${s.hostname}`;
}

/** The SPIFFE identity a workload runs as. */
export function workloadIdentity(w: Workload): Identity {
  return { trustDomain: w.trustDomain, namespace: w.namespace, serviceAccount: w.serviceAccount };
}

const spiffeIds = new WeakMap<Workload, string>();

/** `spiffe://<td>/ns/<ns>/sa/<sa>` of a workload, computed once per workload object. */
export function workloadSpiffe(w: Workload): string {
  let id = spiffeIds.get(w);
  if (id === undefined) {
    id = formatSpiffe(workloadIdentity(w));
    spiffeIds.set(w, id);
  }
  return id;
}

/** The mesh as plain JSON for admin dumps (port maps become objects). */
export function meshConfigJson(c: MeshConfig): {
  workloads: unknown[];
  services: unknown[];
  policies: unknown[];
} {
  return {
    workloads: c.workloads.map((w) => ({
      ...w,
      services: Object.fromEntries([...w.services].map(([k, v]) => [k, Object.fromEntries(v)])),
    })),
    services: c.services.map((s) => ({ ...s, ports: Object.fromEntries(s.ports) })),
    policies: [...c.policies],
  };
}
