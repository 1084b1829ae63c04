/**
 * "The last good config stays in force": an object whose new version is rejected (it does not
 * decode, or its translation fails) is served in its last good version instead of disappearing. A
 * VirtualService edited into a bad regex keeps routing as it did; a Pod whose update carries a bad
 * address keeps its old one. Objects that are deleted go away; objects never seen good are skipped
 * as before. Pure: snapshots and problems in, a snapshot out.
 *
 * Rejections are matched to objects by kind, namespace and name, as every source reports them.
 */
import type { KubeSnapshot } from './kube-types.ts';

/** The snapshot list holding each kind, by the `kind` problems name. */
const LISTS = {
  Namespace: 'namespaces',
  Pod: 'pods',
  Service: 'services',
  EndpointSlice: 'endpointSlices',
  ServiceAccount: 'serviceAccounts',
  ServiceEntry: 'serviceEntries',
  AuthorizationPolicy: 'authorizationPolicies',
  PeerAuthentication: 'peerAuthentications',
  Gateway: 'gateways',
  VirtualService: 'virtualServices',
  DestinationRule: 'destinationRules',
  HTTPRoute: 'httpRoutes',
} as const satisfies Record<string, keyof KubeSnapshot>;
type Kind = keyof typeof LISTS;

/** What a rejection says about its object. */
export interface Rejection {
  readonly severity: 'error' | 'warning' | 'info';
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
}

/** An object served in its last good version, for the log. */
export interface KeptObject {
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
}

interface Named {
  readonly name: string;
  readonly namespace?: string;
}

const isKind = (k: string): k is Kind => Object.hasOwn(LISTS, k);
const keyOf = (kind: string, namespace: string, name: string) =>
  `${kind}/${kind === 'Namespace' ? '' : namespace}/${name}`;

export class LastGoodObjects {
  private good = new Map<string, { readonly kind: Kind; readonly object: Named }>();

  /**
   * The snapshot with each rejected object (an `error` naming it) in its last good version.
   * `left-out`: the source's rejections; an object is added back only when the snapshot lacks it
   * (a rejected duplicate definition leaves the first one in place, which stays). `failed`: the
   * translation's rejections of objects the snapshot holds; the held version is swapped for the
   * last good one. Call `commit` with what was finally translated.
   */
  substitute(
    snapshot: KubeSnapshot,
    rejections: readonly Rejection[],
    which: 'left-out' | 'failed',
  ): { snapshot: KubeSnapshot; kept: KeptObject[] } {
    const rejected = new Set<string>();
    for (const r of rejections) {
      if (r.severity === 'error' && isKind(r.kind) && r.name)
        rejected.add(keyOf(r.kind, r.namespace, r.name));
    }
    const kept: KeptObject[] = [];
    const lists: Partial<Record<keyof KubeSnapshot, Named[]>> = {};
    for (const key of rejected) {
      const last = this.good.get(key);
      if (!last) continue;
      const listName = LISTS[last.kind];
      const list = (lists[listName] ??= [...(snapshot[listName] as readonly Named[])]);
      const at = list.findIndex((o) => keyOf(last.kind, o.namespace ?? '', o.name) === key);
      if (at >= 0 !== (which === 'failed') || list[at] === last.object) continue;
      if (at >= 0) list[at] = last.object;
      else list.push(last.object);
      kept.push({ kind: last.kind, namespace: last.object.namespace ?? '', name: last.object.name });
    }
    return { snapshot: kept.length > 0 ? ({ ...snapshot, ...lists } as KubeSnapshot) : snapshot, kept };
  }

  /**
   * Remembers this round's good versions: every object of `snapshot` its translation did not reject
   * (`failed`). A rejected object keeps its last good version, and so does one the source left out
   * with an error (`leftOut`); any other object absent from the snapshot (deleted) is forgotten.
   */
  commit(snapshot: KubeSnapshot, leftOut: readonly Rejection[], failed: readonly Rejection[]): void {
    const keys = (rs: readonly Rejection[]) =>
      new Set(rs.filter((r) => r.severity === 'error').map((r) => keyOf(r.kind, r.namespace, r.name)));
    const failedKeys = keys(failed);
    const next = new Map<string, { kind: Kind; object: Named }>();
    for (const [kind, listName] of Object.entries(LISTS) as [Kind, keyof KubeSnapshot][]) {
      for (const object of snapshot[listName] as readonly Named[]) {
        const key = keyOf(kind, object.namespace ?? '', object.name);
        const last = this.good.get(key);
        if (!failedKeys.has(key)) next.set(key, { kind, object });
        else if (last) next.set(key, last);
      }
    }
    for (const key of keys(leftOut)) {
      const last = this.good.get(key);
      if (last && !next.has(key)) next.set(key, last);
    }
    this.good = next;
  }
}
