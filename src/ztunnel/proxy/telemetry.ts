/**
 * Istio's TCP metrics and one access-log line per connection (reference/ztunnel.md §5).
 */
import { formatSpiffe, type Identity } from '../../core/identity/spiffe.ts';
import { peerLabelValues, UNKNOWN_LABEL } from '../../core/peer-labels.ts';
import type { Logger } from '../../core/log.ts';
import { ResponseFlag, type TcpLabels, type TcpMetrics, type TcpSeries } from '../../core/metrics.ts';
import type { Service, Workload } from '../../core/xds/model.ts';

export const Reporter = { Source: 'source', Destination: 'destination' } as const;
export type Reporter = (typeof Reporter)[keyof typeof Reporter];

export interface ConnectionFacts {
  readonly reporter: Reporter;
  readonly src: string;
  readonly dst: string;
  /** The HBONE address the tunnel went to, when there was one. */
  readonly hboneAddr?: string;
  readonly srcWorkload: Workload | undefined;
  readonly srcIdentity: Identity | undefined;
  readonly dstWorkload: Workload | undefined;
  readonly dstIdentity: string | undefined;
  readonly dstService: Service | undefined;
  readonly mtls: boolean;
}

export interface ConnectionOutcome {
  readonly flag: ResponseFlag;
  /** Bytes from client to server. */
  readonly bytesReceived: number;
  /** Bytes from server to client. */
  readonly bytesSent: number;
  readonly error?: string;
  /** The policy that denied the connection, if any. */
  readonly policy?: string;
}

const UNKNOWN = UNKNOWN_LABEL;

export function tcpLabels(f: ConnectionFacts, flag: ResponseFlag): TcpLabels {
  const src = peerLabelValues(f.srcWorkload);
  const dst = peerLabelValues(f.dstWorkload);
  const labels: TcpLabels = {
    reporter: f.reporter,
    source_workload: src.workload,
    source_canonical_service: src.canonicalService,
    source_canonical_revision: src.canonicalRevision,
    source_workload_namespace: f.srcWorkload?.namespace ?? f.srcIdentity?.namespace ?? UNKNOWN,
    source_principal: f.srcIdentity ? formatSpiffe(f.srcIdentity) : UNKNOWN,
    source_app: src.app,
    source_version: src.version,
    source_cluster: src.cluster,
    destination_service: f.dstService?.hostname ?? UNKNOWN,
    destination_service_namespace: f.dstService?.namespace ?? UNKNOWN,
    destination_service_name: f.dstService?.name ?? UNKNOWN,
    destination_workload: dst.workload,
    destination_canonical_service: dst.canonicalService,
    destination_canonical_revision: dst.canonicalRevision,
    destination_workload_namespace: f.dstWorkload?.namespace ?? UNKNOWN,
    destination_principal: f.dstIdentity ?? UNKNOWN,
    destination_app: dst.app,
    destination_version: dst.version,
    destination_cluster: dst.cluster,
    request_protocol: 'tcp',
    response_flags: flag,
    connection_security_policy: f.mtls ? 'mutual_tls' : UNKNOWN,
  };
  return labels;
}

/**
 * Records one connection from the moment its route is decided to its end: `opened` now, and
 * `closed` (or `failed`), bytes and the access-log line when `finish` is called.
 */
export class ConnectionRecord {
  private readonly startMs = Date.now();
  private readonly metrics: TcpMetrics;
  private readonly log: Logger;
  /** Who the connection is between (its access-log facts). */
  readonly facts: ConnectionFacts;
  /** The series with response flag `-`, kept so a normal close costs no label work. */
  private readonly series: TcpSeries;
  private done = false;

  constructor(metrics: TcpMetrics, log: Logger, facts: ConnectionFacts) {
    this.metrics = metrics;
    this.log = log;
    this.facts = facts;
    this.series = metrics.series(tcpLabels(facts, ResponseFlag.None));
    this.series.opened++;
    metrics.socketsOpen(facts.reporter, 1);
  }

  /** The connection ended before any byte moved (refused, denied, or its upstream failed). */
  fail(flag: ResponseFlag, error: string, policy?: string): void {
    this.finish({ flag, bytesReceived: 0, bytesSent: 0, error, policy });
  }

  finish(outcome: ConnectionOutcome): void {
    if (this.done) return;
    this.done = true;
    const f = this.facts;
    this.metrics.socketsOpen(f.reporter, -1);
    const ok = outcome.flag === ResponseFlag.None;
    const series = ok ? this.series : this.metrics.series(tcpLabels(f, outcome.flag));
    if (ok) series.closed++;
    else series.failed++;
    series.received += outcome.bytesReceived;
    series.sent += outcome.bytesSent;
    if (!this.log.isLevelEnabled(ok ? 'info' : 'warn')) return;
    const line = {
      direction: f.reporter === Reporter.Source ? 'outbound' : 'inbound',
      src: f.src,
      dst: f.dst,
      hboneAddr: f.hboneAddr,
      srcWorkload: f.srcWorkload?.name,
      srcNamespace: f.srcWorkload?.namespace ?? f.srcIdentity?.namespace,
      srcIdentity: f.mtls && f.srcIdentity ? formatSpiffe(f.srcIdentity) : undefined,
      dstService: f.dstService?.hostname,
      dstWorkload: f.dstWorkload?.name,
      dstNamespace: f.dstWorkload?.namespace,
      dstIdentity: f.dstIdentity,
      durationMs: Date.now() - this.startMs,
      bytesSent: outcome.bytesSent,
      bytesReceived: outcome.bytesReceived,
      responseFlags: outcome.flag,
      policy: outcome.policy,
      error: outcome.error,
    };
    // A connection that was refused or failed to connect is a warning; one that ran and ended, even
    // with a reset, is ordinary traffic.
    if (ok) this.log.info(line, 'connection complete');
    else this.log.warn(line, 'connection complete');
  }
}
