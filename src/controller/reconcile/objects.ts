/**
 * The plain data the waypoint reconciler works on: Kubernetes objects as the API server sends them
 * (JSON), the few fields of a waypoint Gateway it reads, and which objects are its own. Pure.
 *
 * An object is the reconciler's own when it carries {@link MANAGED_BY_LABEL} with our value and a
 * controller owner reference to a Gateway. Both are needed: other Gateway controllers (Istio's
 * ingress gateways, say) also label what they create with `gateway.networking.k8s.io/gateway-name`
 * and point it at their Gateway, and those objects must never be touched.
 */
import { GATEWAY_NAME_LABEL } from '../translate/waypoint-binding.ts';
import { WAYPOINT_CLASSES } from '../translate/gateways.ts';

export { GATEWAY_NAME_LABEL };

/** A Kubernetes object as JSON. */
export type KubeJson = Record<string, unknown>;

/** Marks what the reconciler created (and may replace or delete). */
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'ambit-waypoint-controller';
/** The hash of an object as rendered: a replace is needed when it differs from the desired one's. */
export const RENDERED_HASH_ANNOTATION = 'ambit.dev/rendered-hash';
export const GATEWAY_API_VERSION = 'gateway.networking.k8s.io/v1';
const GATEWAY_GROUP = 'gateway.networking.k8s.io';

/** The kinds the template may hold: the ones the reconciler can list, write and delete. */
export const OWNED_KINDS = ['ServiceAccount', 'ConfigMap', 'Deployment', 'Service'] as const;
export type OwnedKind = (typeof OWNED_KINDS)[number];
export const OWNED_API_VERSIONS: Readonly<Record<OwnedKind, string>> = {
  ServiceAccount: 'v1',
  ConfigMap: 'v1',
  Deployment: 'apps/v1',
  Service: 'v1',
};

/** A condition as the Gateway API defines it (metav1.Condition). */
export interface Condition {
  readonly type: string;
  readonly status: 'True' | 'False' | 'Unknown';
  readonly reason: string;
  readonly message: string;
  readonly observedGeneration: number;
  readonly lastTransitionTime: string;
}

export interface GatewayStatusAddress {
  readonly type: 'IPAddress' | 'Hostname';
  readonly value: string;
}

/** What the reconciler reads of a waypoint Gateway. */
export interface WaypointGateway {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly generation: number;
  readonly className: string;
  /** Labels and annotations for the objects made for it (see {@link infrastructureMetadata}). */
  readonly infrastructure: {
    readonly labels: Readonly<Record<string, string>>;
    readonly annotations: Readonly<Record<string, string>>;
  };
  /** `status` as the API server holds it: conditions and addresses as written, anything else. */
  readonly status: KubeJson;
}

/** `kind/namespace/name`: the identity of an object within the reconciler's kinds. */
export function objectKey(obj: KubeJson): string {
  const meta = metadataOf(obj);
  return `${String(obj.kind)}/${str(meta.namespace)}/${str(meta.name)}`;
}

/** JSON with object keys sorted at every level: equal objects give equal text. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (isObject(v))
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`)
      .join(',')}}`;
  return JSON.stringify(v) ?? 'null';
}

export function metadataOf(obj: KubeJson): KubeJson {
  return isObject(obj.metadata) ? obj.metadata : {};
}

export function isObject(v: unknown): v is KubeJson {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

export function stringMap(v: unknown): Record<string, string> {
  if (!isObject(v)) return {};
  return Object.fromEntries(Object.entries(v).filter((e): e is [string, string] => typeof e[1] === 'string'));
}

/**
 * A Gateway of a waypoint class, or undefined for any other (or one too malformed to own anything:
 * without a name or uid no owner reference can point at it).
 */
export function decodeWaypointGateway(obj: KubeJson): WaypointGateway | undefined {
  const meta = metadataOf(obj);
  const spec = isObject(obj.spec) ? obj.spec : {};
  const className = str(spec.gatewayClassName);
  if (!WAYPOINT_CLASSES.includes(className)) return undefined;
  const name = str(meta.name);
  const uid = str(meta.uid);
  if (!name || !uid) return undefined;
  return {
    namespace: str(meta.namespace),
    name,
    uid,
    generation: typeof meta.generation === 'number' ? meta.generation : 0,
    className,
    infrastructure: infrastructureMetadata(obj),
    status: isObject(obj.status) ? obj.status : {},
  };
}

/**
 * The labels and annotations the Gateway asks for on the objects made for it: those of
 * `spec.infrastructure` when it is set (Gateway API), else, as istiod does for Gateways without it,
 * the Gateway's own labels and annotations less the tools' bookkeeping (`kubectl.kubernetes.io/…`)
 * and gateway-name, which the template sets.
 */
export function infrastructureMetadata(gateway: KubeJson): WaypointGateway['infrastructure'] {
  const spec = isObject(gateway.spec) ? gateway.spec : {};
  if (isObject(spec.infrastructure)) {
    return {
      labels: stringMap(spec.infrastructure.labels),
      annotations: stringMap(spec.infrastructure.annotations),
    };
  }
  const meta = metadataOf(gateway);
  const keep = (m: Record<string, string>) =>
    Object.fromEntries(
      Object.entries(m).filter(([k]) => !k.startsWith('kubectl.kubernetes.io/') && k !== GATEWAY_NAME_LABEL),
    );
  return { labels: keep(stringMap(meta.labels)), annotations: keep(stringMap(meta.annotations)) };
}

/** The owner reference every object made for `gw` carries. */
export function ownerReference(gw: WaypointGateway, blockOwnerDeletion: boolean): KubeJson {
  return {
    apiVersion: GATEWAY_API_VERSION,
    kind: 'Gateway',
    name: gw.name,
    uid: gw.uid,
    controller: true,
    // Setting it needs `update` on gateways/finalizers (the API server's OwnerReferencesPermissionEnforcement).
    ...(blockOwnerDeletion && { blockOwnerDeletion: true }),
  };
}

/** The Gateway (its name) that owns an object the reconciler made, or undefined if it is not ours. */
export function owningGateway(obj: KubeJson): string | undefined {
  const meta = metadataOf(obj);
  if (stringMap(meta.labels)[MANAGED_BY_LABEL] !== MANAGED_BY) return undefined;
  const refs = Array.isArray(meta.ownerReferences) ? meta.ownerReferences : [];
  const ref = refs.find(
    (r): r is KubeJson =>
      isObject(r) &&
      r.kind === 'Gateway' &&
      str(r.apiVersion).startsWith(`${GATEWAY_GROUP}/`) &&
      r.controller === true,
  );
  return ref ? str(ref.name) || undefined : undefined;
}
