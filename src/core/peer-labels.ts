/**
 * The label values Istio's standard metrics carry for each side of a connection or request
 * (source_* and destination_*), derived from the workload in one place for every reporter (the node
 * agent's TCP metrics, the waypoint's request metrics). `unknown` where the workload is not known.
 */
import type { Workload } from './xds/model.ts';

export const UNKNOWN_LABEL = 'unknown';

export interface PeerLabelValues {
  readonly workload: string;
  readonly canonicalService: string;
  readonly canonicalRevision: string;
  readonly app: string;
  readonly version: string;
  readonly cluster: string;
}

const UNKNOWN_PEER: PeerLabelValues = {
  workload: UNKNOWN_LABEL,
  canonicalService: UNKNOWN_LABEL,
  canonicalRevision: UNKNOWN_LABEL,
  app: UNKNOWN_LABEL,
  version: UNKNOWN_LABEL,
  cluster: UNKNOWN_LABEL,
};

export function peerLabelValues(w: Workload | undefined): PeerLabelValues {
  if (!w) return UNKNOWN_PEER;
  const or = (v: string) => v || UNKNOWN_LABEL;
  return {
    workload: or(w.workloadName || w.name),
    canonicalService: or(w.canonicalName || w.workloadName || w.name),
    canonicalRevision: w.canonicalRevision || 'latest',
    app: or(w.canonicalName),
    version: or(w.canonicalRevision),
    cluster: or(w.clusterId),
  };
}
