/**
 * Clusters of ServiceEntries resolved by DNS, as istiod builds them (cluster.go convertResolution):
 * resolution `DNS` is an Envoy `STRICT_DNS` cluster, `DNS_ROUND_ROBIN` a `LOGICAL_DNS` one, and either
 * carries its endpoints inline (`load_assignment`, host names or addresses) instead of subscribing to
 * EDS: the proxy resolves the names itself when it connects. Pure.
 */
import type { Cluster, ClusterLoadAssignment } from './envoy-types.ts';
import type { ServiceEntry } from '../kube-types.ts';

export type DnsDiscovery = 'STRICT_DNS' | 'LOGICAL_DNS';

/** The discovery type of an entry's clusters; undefined: EDS (STATIC, NONE). */
export function dnsDiscovery(entry: Pick<ServiceEntry, 'resolution'>): DnsDiscovery | undefined {
  if (entry.resolution === 'DNS') return 'STRICT_DNS';
  if (entry.resolution === 'DNS_ROUND_ROBIN') return 'LOGICAL_DNS';
  return undefined;
}

/** An EDS cluster turned into a DNS one with `assignment` inline. */
export function asDnsCluster(
  cluster: Cluster,
  type: DnsDiscovery,
  assignment: ClusterLoadAssignment,
): Cluster {
  const { eds_cluster_config: _eds, ...rest } = cluster;
  return { ...rest, type, load_assignment: assignment };
}
