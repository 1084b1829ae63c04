/**
 * What to change so that the cluster holds exactly the desired waypoint objects. Pure.
 *
 * Only objects that are the reconciler's own ({@link owningGateway}) are replaced or deleted; an
 * object of a desired kind and name that belongs to someone else is left alone and reported, so its
 * Gateway can say why it is not programmed. A replace is due when the rendered hash differs (the
 * template, the image, the Gateway's labels, or the owning Gateway's uid changed): comparing the
 * objects themselves would see every field the API server defaults as a change.
 */
import { metadataOf, objectKey, owningGateway, str, type KubeJson } from './objects.ts';
import { renderedHash } from './template.ts';

export type ReconcileAction =
  /** `object`: the desired object. */
  | { readonly op: 'create'; readonly gateway: string; readonly object: KubeJson }
  /** `object`: the desired object with what the server owns of the existing one (resourceVersion, clusterIP). */
  | { readonly op: 'replace'; readonly gateway: string; readonly object: KubeJson }
  /** `object`: the existing object (its name, namespace and uid). */
  | { readonly op: 'delete'; readonly gateway: string; readonly object: KubeJson };

export interface Conflict {
  /** `namespace/name` of the Gateway that wants the object. */
  readonly gateway: string;
  readonly key: string;
  readonly message: string;
}

export interface WaypointDiff {
  /** Creates and replaces in desired order (service account and config map before the pods), then deletes. */
  readonly actions: readonly ReconcileAction[];
  readonly conflicts: readonly Conflict[];
}

/**
 * `existing`: what the API server holds of the owned kinds (any object; the ones not ours are
 * recognised here). Every desired object must be unique by kind, namespace and name.
 */
export function diffWaypointObjects(
  desired: readonly KubeJson[],
  existing: readonly KubeJson[],
): WaypointDiff {
  const byKey = new Map(existing.map((o) => [objectKey(o), o]));
  const wanted = new Set<string>();
  const actions: ReconcileAction[] = [];
  const conflicts: Conflict[] = [];
  for (const d of desired) {
    const key = objectKey(d);
    wanted.add(key);
    const gateway = gatewayOf(d);
    const e = byKey.get(key);
    if (!e) actions.push({ op: 'create', gateway, object: d });
    else if (owningGateway(e) === undefined) {
      const [kind, ns, name] = key.split('/');
      conflicts.push({
        gateway,
        key,
        message: `${kind} ${ns}/${name} exists and is not managed by this controller: delete or rename it`,
      });
    } else if (renderedHash(e) !== renderedHash(d)) {
      actions.push({ op: 'replace', gateway, object: withServerFields(d, e) });
    }
  }
  for (const e of existing) {
    const owner = owningGateway(e);
    if (owner === undefined || wanted.has(objectKey(e))) continue;
    actions.push({ op: 'delete', gateway: `${str(metadataOf(e).namespace)}/${owner}`, object: e });
  }
  return { actions, conflicts };
}

function gatewayOf(obj: KubeJson): string {
  const meta = metadataOf(obj);
  const refs = Array.isArray(meta.ownerReferences) ? (meta.ownerReferences as KubeJson[]) : [];
  return `${str(meta.namespace)}/${str(refs[0]?.name)}`;
}

/**
 * The desired object as a replacement of `existing`: its resourceVersion (a concurrent change makes
 * the replace fail with 409 rather than be lost), and the fields the server assigned that a replace
 * may not change or drop — a Service's cluster IPs and IP families, a ServiceAccount's token Secrets.
 */
function withServerFields(desired: KubeJson, existing: KubeJson): KubeJson {
  const meta = { ...metadataOf(desired), resourceVersion: metadataOf(existing).resourceVersion };
  const out: KubeJson = { ...desired, metadata: meta };
  const have = existing.spec as KubeJson | undefined;
  if (desired.kind === 'Service' && have && typeof have === 'object') {
    const spec = { ...(desired.spec as KubeJson) };
    for (const f of ['clusterIP', 'clusterIPs', 'ipFamilies', 'ipFamilyPolicy'] as const) {
      if (spec[f] === undefined && have[f] !== undefined) spec[f] = have[f];
    }
    out.spec = spec;
  }
  if (desired.kind === 'ServiceAccount' && existing.secrets !== undefined && desired.secrets === undefined)
    out.secrets = existing.secrets;
  return out;
}
