/**
 * The outbound routing decision (reference/ztunnel.md §1.5 "Outbound"): where a connection from a
 * local workload to a target goes, and how. Pure: state and target in, a route out.
 */
import { formatHostPort, HBONE_PORT, ILLEGAL_PORTS } from '../../core/hbone/protocol.ts';
import type { MeshState } from '../../core/state/mesh-state.ts';
import { workloadSpiffe, type Service, type Workload } from '../../core/xds/model.ts';

export type OutboundTarget =
  | { readonly kind: 'ip'; readonly ip: string; readonly port: number }
  | { readonly kind: 'hostname'; readonly hostname: string; readonly port: number };

export type OutboundRoute =
  | {
      readonly kind: 'hbone';
      /** TCP destination: the pod's (or waypoint's) HBONE address. */
      readonly dstIp: string;
      readonly dstPort: number;
      readonly authority: string;
      readonly expectedIdentities: readonly string[];
      readonly workload: Workload;
      readonly service: Service | undefined;
      readonly viaWaypoint: boolean;
    }
  | {
      readonly kind: 'tcp';
      readonly dstIp: string;
      readonly dstPort: number;
      /** Undefined for passthrough to a destination outside the mesh. */
      readonly workload: Workload | undefined;
      readonly service: Service | undefined;
    }
  | { readonly kind: 'unreachable'; readonly reason: string; readonly service: Service | undefined }
  | { readonly kind: 'refused'; readonly reason: string };

export function routeOutbound(state: MeshState, source: Workload, target: OutboundTarget): OutboundRoute {
  let service: Service | undefined;
  let vip: string | undefined;
  if (target.kind === 'hostname') {
    service = state.serviceByHostname(target.hostname, source.namespace);
    if (!service)
      return { kind: 'unreachable', reason: `no service named ${target.hostname}`, service: undefined };
    vip = service.vips.find((v) => v.network === source.network)?.address ?? service.vips[0]?.address;
  } else {
    service = state.serviceByVip(target.ip, source.namespace, source.network);
    vip = service ? target.ip : undefined;
  }

  if (service) {
    if (!service.ports.has(target.port) && service.ports.size > 0) {
      return {
        kind: 'unreachable',
        reason: `service ${service.hostname} has no port ${target.port}`,
        service,
      };
    }
    // A service waypoint takes service-addressed traffic, unless we are that waypoint.
    if (service.waypoint) {
      const wp = state.resolveGateway(service.waypoint, source.namespace);
      if (!wp)
        return { kind: 'unreachable', reason: `waypoint of ${service.hostname} has no endpoint`, service };
      if (wp.workload.uid !== source.uid) {
        return hboneTo(
          wp.workload,
          service.waypoint.hboneMtlsPort,
          // The service's VIP, or (a ServiceEntry with none) its host name: the waypoint routes by it.
          vip ? formatHostPort(vip, target.port) : `${service.hostname}:${target.port}`,
          [...identitiesOf(wp.workload), ...(wp.service?.subjectAltNames ?? [])],
          service,
          true,
        );
      }
    }
    const picked = state.pickEndpoint(service, target.port);
    if (!picked)
      return { kind: 'unreachable', reason: `service ${service.hostname} has no healthy endpoint`, service };
    return toWorkload(picked.workload, picked.targetPort, service, [
      ...identitiesOf(picked.workload),
      ...service.subjectAltNames,
    ]);
  }

  const ip = (target as { ip: string }).ip;
  const workload = state.workloadByIp(ip, source.network);
  if (!workload) {
    if (ILLEGAL_PORTS.has(target.port))
      return { kind: 'refused', reason: `port ${target.port} is reserved for the mesh` };
    return { kind: 'tcp', dstIp: ip, dstPort: target.port, workload: undefined, service: undefined };
  }
  // A workload waypoint takes pod-addressed traffic, unless we are that waypoint.
  if (workload.waypoint) {
    const wp = state.resolveGateway(workload.waypoint, source.namespace);
    // Fail closed: going around a waypoint that cannot be found would skip its L7 policy.
    if (!wp)
      return {
        kind: 'unreachable',
        reason: `waypoint of ${workload.name} has no endpoint`,
        service: undefined,
      };
    if (wp.workload.uid !== source.uid) {
      return hboneTo(
        wp.workload,
        workload.waypoint.hboneMtlsPort,
        formatHostPort(ip, target.port),
        [...identitiesOf(wp.workload), ...(wp.service?.subjectAltNames ?? [])],
        undefined,
        true,
      );
    }
  }
  return toWorkload(workload, target.port, undefined, identitiesOf(workload));
}

function toWorkload(
  w: Workload,
  port: number,
  service: Service | undefined,
  identities: string[],
): OutboundRoute {
  const ip = w.addresses[0]!;
  if (ILLEGAL_PORTS.has(port)) return { kind: 'refused', reason: `port ${port} is reserved for the mesh` };
  if (w.tunnelProtocol === 'HBONE')
    return hboneTo(w, HBONE_PORT, formatHostPort(ip, port), identities, service, false);
  return { kind: 'tcp', dstIp: ip, dstPort: port, workload: w, service };
}

function hboneTo(
  w: Workload,
  port: number,
  authority: string,
  identities: string[],
  service: Service | undefined,
  viaWaypoint: boolean,
): OutboundRoute {
  return {
    kind: 'hbone',
    dstIp: w.addresses[0]!,
    dstPort: port,
    authority,
    expectedIdentities: [...new Set(identities)],
    workload: w,
    service,
    viaWaypoint,
  };
}

export function identitiesOf(w: Workload): string[] {
  return [workloadSpiffe(w)];
}
