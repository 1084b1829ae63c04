/**
 * A waypoint Gateway's status, as the Gateway API defines it for its conditions and addresses. Pure.
 *
 * - `Accepted`: True (reason `Accepted`) when the controller can make the waypoint's objects; False
 *   (`Invalid`) with the problems when the Gateway or the template cannot give valid objects.
 * - `Programmed`: True (`Programmed`) once the waypoint's Deployment reports a ready replica; False
 *   with `NoResources` while it has none (or an object it needs belongs to someone else), with
 *   `Invalid` when the Gateway is not accepted.
 * - Both carry the Gateway's `metadata.generation` as `observedGeneration`; `lastTransitionTime`
 *   changes only when a condition's status does.
 * - `addresses`: the waypoint Service's cluster IPs (`IPAddress`), or until it has one, its host name
 *   `<name>.<ns>.svc.<domain>` (`Hostname`), which node agents resolve themselves; none when the
 *   Gateway is not accepted. What node agents are sent (translate/waypoint-binding.ts) reads these.
 *
 * Other condition types and status fields (per-listener status) are kept as they are.
 */
import {
  canonicalJson,
  isObject,
  str,
  type Condition,
  type GatewayStatusAddress,
  type KubeJson,
  type WaypointGateway,
} from './objects.ts';

const HBONE_PORT = 15008;

/** What the reconciler knows of one waypoint Gateway's objects. */
export interface WaypointObservation {
  readonly deployment?: KubeJson;
  readonly service?: KubeJson;
  /** Why its objects cannot be rendered; non-empty: not accepted. */
  readonly rejected?: readonly string[];
  /** Objects it needs that belong to someone else. */
  readonly conflicts?: readonly string[];
}

export interface StatusOptions {
  readonly clusterDomain: string;
  /** Now, for a lastTransitionTime that changes. */
  readonly nowMs: number;
}

/** The status the Gateway should have. */
export function waypointStatus(
  gw: WaypointGateway,
  seen: WaypointObservation,
  options: StatusOptions,
): KubeJson {
  const host = `${gw.name}.${gw.namespace}.svc.${options.clusterDomain}`;
  const rejected = seen.rejected ?? [];
  const accepted = rejected.length === 0;
  const ready = readyReplicas(seen.deployment);
  const programmed: Pick<Condition, 'status' | 'reason' | 'message'> = !accepted
    ? { status: 'False', reason: 'Invalid', message: 'The Gateway is not accepted' }
    : seen.conflicts && seen.conflicts.length > 0
      ? { status: 'False', reason: 'NoResources', message: seen.conflicts.join('; ') }
      : ready > 0
        ? {
            status: 'True',
            reason: 'Programmed',
            // istiod's words, which `istioctl waypoint status` users know.
            message: `Resource programmed, assigned to service(s) ${host}:${HBONE_PORT}`,
          }
        : {
            status: 'False',
            reason: 'NoResources',
            message: `Deployment ${gw.namespace}/${gw.name} has no ready replica yet`,
          };
  const conditions = [
    condition(
      gw,
      'Accepted',
      accepted
        ? { status: 'True', reason: 'Accepted', message: 'Resource accepted' }
        : { status: 'False', reason: 'Invalid', message: rejected.join('; ') },
      options.nowMs,
    ),
    condition(gw, 'Programmed', programmed, options.nowMs),
  ];
  const others = oldConditions(gw).filter((c) => c.type !== 'Accepted' && c.type !== 'Programmed');
  const ips = clusterIps(seen.service);
  const addresses: GatewayStatusAddress[] = !accepted
    ? []
    : ips.length > 0
      ? ips.map((value) => ({ type: 'IPAddress', value }))
      : [{ type: 'Hostname', value: host }];
  return { ...gw.status, conditions: [...conditions, ...others], addresses };
}

/** Whether `next` differs from the Gateway's current status (so it is worth a write). */
export function statusChanged(gw: WaypointGateway, next: KubeJson): boolean {
  // Key order is the writer's (a real API server writes Go's field order): compare canonically.
  return canonicalJson(next) !== canonicalJson(gw.status);
}

/** `status.readyReplicas` of a Deployment, 0 when unknown. */
export function readyReplicas(deployment: KubeJson | undefined): number {
  const status = deployment && isObject(deployment.status) ? deployment.status : {};
  return typeof status.readyReplicas === 'number' ? status.readyReplicas : 0;
}

/** A Service's cluster IPs (both families on a dual-stack cluster); none while unassigned or headless. */
export function clusterIps(service: KubeJson | undefined): string[] {
  const spec = service && isObject(service.spec) ? service.spec : {};
  const list = Array.isArray(spec.clusterIPs) ? spec.clusterIPs.map(str) : [str(spec.clusterIP)];
  return list.filter((ip) => ip !== '' && ip !== 'None');
}

function condition(
  gw: WaypointGateway,
  type: string,
  c: Pick<Condition, 'status' | 'reason' | 'message'>,
  nowMs: number,
): Condition {
  const old = oldConditions(gw).find((o) => o.type === type);
  return {
    type,
    status: c.status,
    reason: c.reason,
    // The API server refuses messages over 32768 bytes.
    message: c.message.length > 32_000 ? `${c.message.slice(0, 32_000)}…` : c.message,
    observedGeneration: gw.generation,
    lastTransitionTime:
      old && old.status === c.status && typeof old.lastTransitionTime === 'string'
        ? old.lastTransitionTime
        : new Date(nowMs).toISOString().replace(/\.\d{3}Z$/, 'Z'),
  };
}

function oldConditions(gw: WaypointGateway): KubeJson[] {
  const list = gw.status.conditions;
  return Array.isArray(list) ? list.filter(isObject) : [];
}
