/**
 * What every part of the translation shares: its options, how it reports a problem, and small pure
 * helpers. Kept apart from workloads.ts so the per-kind files can use them without an import cycle.
 */
import { lookup, type StringMap } from './kube-types.ts';
import type { ProblemKind, TranslateProblem } from './plain.ts';

export type { ProblemKind, TranslateProblem } from './plain.ts';

export interface TranslateOptions {
  /** Prefix of workload uids (`<clusterId>//Pod/<ns>/<name>`) and each workload's cluster_id. */
  readonly clusterId: string;
  /** Trust domain of every workload identity, e.g. `cluster.local`. */
  readonly trustDomain: string;
  /** DNS suffix of Service hostnames, e.g. `cluster.local`. */
  readonly clusterDomain: string;
  /**
   * Where a policy without a selector applies mesh-wide (AuthorizationPolicy, PeerAuthentication),
   * e.g. `istio-system`; also the namespace of the static STRICT policy.
   */
  readonly rootNamespace: string;
}

/** Reports one problem of one object. */
export type Report = (severity: TranslateProblem['severity'], path: string, message: string) => void;

/** A Report that appends to `problems` with the object's kind, namespace and name. */
export function reporter(
  problems: TranslateProblem[],
  kind: ProblemKind,
  obj: { readonly namespace: string; readonly name: string },
): Report {
  return (severity, path, message) =>
    problems.push({ severity, kind, namespace: obj.namespace, name: obj.name, path, message });
}

export function push<T>(m: Map<string, T[]>, key: string, value: T): void {
  const list = m.get(key);
  if (list) list.push(value);
  else m.set(key, [value]);
}

export function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** `<name>.<namespace>.svc.<clusterDomain>`: a Kubernetes Service's hostname. */
export function serviceHostname(s: { name: string; namespace: string }, options: TranslateOptions): string {
  return `${s.name}.${s.namespace}.svc.${options.clusterDomain}`;
}

/** ztunnel carries TCP only; UDP and SCTP ports are not part of the mesh. */
export function isTcp(protocol: string): boolean {
  return protocol === '' || protocol === 'TCP';
}

export function validPort(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 65535;
}

/** A port map with its service ports in ascending order, so equal inputs give equal output. */
export function sortedPorts(ports: ReadonlyMap<number, number>): Map<number, number> {
  return new Map([...ports].sort(([a], [b]) => a - b));
}

/**
 * Istio's canonical service name and revision (kubelabels.CanonicalService): the istio labels, then
 * the Kubernetes recommended ones, then `app`/`version`, then the workload name and `latest`.
 */
export function canonicalService(
  labels: StringMap,
  workloadName: string,
): { canonicalName: string; canonicalRevision: string } {
  return {
    canonicalName:
      lookup(labels, 'service.istio.io/canonical-name') ||
      lookup(labels, 'app.kubernetes.io/name') ||
      lookup(labels, 'app') ||
      workloadName,
    canonicalRevision:
      lookup(labels, 'service.istio.io/canonical-revision') ||
      lookup(labels, 'app.kubernetes.io/version') ||
      lookup(labels, 'version') ||
      'latest',
  };
}

/**
 * A DNS name as Istio accepts for a host (RFC 1123 labels, at most 255 characters), without a
 * wildcard; for ServiceEntry hosts and hostname endpoints.
 */
export function isDnsName(v: string): boolean {
  if (v.length === 0 || v.length > 255) return false;
  return v.split('.').every((l) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i.test(l));
}
