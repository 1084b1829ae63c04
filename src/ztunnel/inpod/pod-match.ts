/**
 * Which workload a pod on this node is, and whether rules found in a namespace were left behind:
 * the in-pod manager's decisions, as pure functions of the mesh config and what the agent knows of
 * a pod (issue 4; reference/ztunnel.md §1.6).
 */
import type { MeshState } from '../../core/state/mesh-state.ts';
import { TunnelProtocol, type Workload } from '../../core/xds/model.ts';
import { ipFromBytes, ipToBytes } from '../../core/ip.ts';

/** A pod as the agent knows it, for {@link decidePod}. */
export interface PodFacts {
  /** How the agent learned of it: CNI entries are matched by name; scanned ones were found by IP. */
  readonly via: 'cni' | 'scan';
  readonly namespace: string;
  readonly name: string;
  /** Its IPs: from the CNI, or the ones the scan found. */
  readonly ips: readonly string[];
}

/** What to do with a pod, given the mesh config. */
export type PodDecision =
  /** Capture it as `workload` (whose addresses are the pod's own when the config has none yet). */
  | { readonly kind: 'capture'; readonly workload: Workload }
  /** Not in the mesh: no rules, no listeners. */
  | { readonly kind: 'out'; readonly reason: string }
  /** In the mesh config, but not as this pod: leave it as it is and say why. */
  | { readonly kind: 'pending'; readonly reason: string }
  /** The mesh config has no such pod (yet). */
  | { readonly kind: 'unknown'; readonly reason: string };

const byNameCache = new WeakMap<MeshState, Map<string, Workload>>();

/** The pods of the mesh config by `namespace/name` (a Pod workload wins over others of that name). */
function podsByName(state: MeshState): Map<string, Workload> {
  let m = byNameCache.get(state);
  if (!m) {
    m = new Map();
    for (const w of state.config.workloads) {
      const k = `${w.namespace}/${w.name}`;
      const prev = m.get(k);
      if (!prev || (!isPod(prev) && isPod(w))) m.set(k, w);
    }
    byNameCache.set(state, m);
  }
  return m;
}

function isPod(w: Workload): boolean {
  return w.uid.includes('//Pod/') || w.node !== '';
}

/**
 * Which workload a pod on `node` is, by its namespace and name (pure). A pod is captured only as the
 * workload of its own name, on this node, whose addresses (once the config has any) include the pod's.
 */
export function decidePod(state: MeshState, node: string, pod: PodFacts): PodDecision {
  const ref = `${pod.namespace}/${pod.name}`;
  const w = podsByName(state).get(ref);
  if (!w) {
    const reason = `the mesh config has no pod ${ref} yet`;
    return pod.via === 'cni' ? { kind: 'unknown', reason } : { kind: 'out', reason };
  }
  if (w.tunnelProtocol !== TunnelProtocol.Hbone)
    return { kind: 'out', reason: `pod ${ref} is not in the mesh (tunnel protocol ${w.tunnelProtocol})` };
  if (w.node !== node) {
    const reason = `the mesh config places pod ${ref} on node "${w.node}", not on this node "${node}"`;
    return pod.via === 'cni' ? { kind: 'pending', reason } : { kind: 'out', reason };
  }
  if (w.addresses.length > 0 && !w.addresses.some((a) => pod.ips.some((ip) => sameIp(a, ip)))) {
    const reason = `the mesh config lists pod ${ref} with IPs ${w.addresses.join(', ')}, but its network namespace has ${pod.ips.join(', ')}`;
    return pod.via === 'cni' ? { kind: 'pending', reason } : { kind: 'out', reason };
  }
  return { kind: 'capture', workload: w.addresses.length > 0 ? w : { ...w, addresses: pod.ips } };
}

/**
 * Whether rules found in a namespace the agent does not follow were left behind (pure): `remove`
 * when one of its addresses is a workload of this node that is not in the mesh; `keep` when one is a
 * mesh pod of this node (a scan will adopt it) or a pod of another node (not this agent's to judge);
 * `unknown` when the mesh config knows none of its addresses (a pod so new the config has no IP for
 * it yet, or one gone from the config: the sweep waits for a second look).
 */
export function orphanVerdict(
  state: MeshState,
  node: string,
  addresses: readonly string[],
): 'remove' | 'keep' | 'unknown' {
  let remove = false;
  for (const ip of addresses) {
    const w = state.workloadByIp(ip);
    if (!w || w.node === '') continue;
    if (w.node !== node) return 'keep';
    if (w.tunnelProtocol === TunnelProtocol.Hbone) return 'keep';
    remove = true;
  }
  return remove ? 'remove' : 'unknown';
}

/** The same address however it is spelled (`FD00::1` and `fd00::1`). */
export function sameIp(a: string, b: string): boolean {
  const x = ipToBytes(a);
  const y = ipToBytes(b);
  return x !== undefined && y !== undefined && ipFromBytes(x) === ipFromBytes(y);
}
