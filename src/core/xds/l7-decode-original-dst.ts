/**
 * The parts of an Envoy Cluster of type ORIGINAL_DST that the waypoint honours (issue 5, workload
 * waypoints: istiod's `encap` / `connect_originate` clusters). Such a cluster has no endpoints: each
 * connection goes to the original destination of the tunnel it came in on (the CONNECT authority,
 * `<podIP>:<port>`), and the waypoint itself decides to reach it over HBONE. So it must say
 * `lb_policy: CLUSTER_PROVIDED` (Envoy refuses any other policy for this type), takes no EDS config
 * and no load assignment, and none of `original_dst_lb_config`'s ways of choosing another
 * destination (an HTTP header, a port override, metadata). Pure.
 */
import type { OriginalDstSettings } from './l7-model.ts';
import { join, positiveMs, type Collector, type WireDuration } from './l7-decode-common.ts';

/** Envoy's default `cleanup_interval` for ORIGINAL_DST clusters. */
export const ORIGINAL_DST_CLEANUP_INTERVAL_MS = 5000;

export interface WireOriginalDstLbConfig {
  use_http_header?: boolean;
  http_header_name?: string;
  upstream_port_override?: { value?: number };
  metadata_key?: object;
}

interface WireOriginalDstCluster {
  lb_policy?: string | number;
  eds_cluster_config?: object;
  original_dst_lb_config?: WireOriginalDstLbConfig;
  cleanup_interval?: WireDuration;
}

/** Checks an ORIGINAL_DST cluster's own fields, reporting into `c`. */
export function decodeOriginalDst(w: WireOriginalDstCluster, c: Collector): OriginalDstSettings {
  const policy = String(w.lb_policy ?? 'ROUND_ROBIN');
  if (policy !== 'CLUSTER_PROVIDED')
    c.err('lb_policy', `must be CLUSTER_PROVIDED for an ORIGINAL_DST cluster, not ${policy}`);
  if (w.eds_cluster_config !== undefined)
    c.err('eds_cluster_config', 'an ORIGINAL_DST cluster has no EDS endpoints');
  const o = w.original_dst_lb_config;
  if (o) {
    const why = "is not supported: the waypoint sends to the tunnel's original destination";
    const at = 'original_dst_lb_config';
    if (o.use_http_header) c.err(join(at, 'use_http_header'), why);
    if (o.http_header_name) c.err(join(at, 'http_header_name'), why);
    if (o.upstream_port_override !== undefined) c.err(join(at, 'upstream_port_override'), why);
    if (o.metadata_key !== undefined) c.err(join(at, 'metadata_key'), why);
  }
  return {
    cleanupIntervalMs:
      positiveMs(w.cleanup_interval, 'cleanup_interval', c) ?? ORIGINAL_DST_CLEANUP_INTERVAL_MS,
  };
}
