/**
 * Which tunnels the waypoint takes (reference/ztunnel.md §2.6): a client's agent sends the HBONE
 * CONNECT with the original destination as `:authority` — `VIP:port`, or `hostname:port` — and the
 * waypoint serves it only for a service whose `waypoint` is this waypoint and whose port has a
 * listener: an HTTP one (the tunnel carries HTTP to route) or a TCP one (the tunnel's bytes go to a
 * cluster as they are, tcp-proxy.ts). The controller decides which, from the Service port's
 * appProtocol or name as istiod does. Refusals use HBONE's codes: 503 for an unknown service, port or listener, 400 for a
 * service that is bound to another waypoint (the request reached the wrong server).
 *
 * An `IP:port` that is no service VIP but a workload's address is workload-addressed traffic
 * (issue 5): served when the workload's own `waypoint` is this waypoint (the controller binds pods
 * only to Gateways labelled `istio.io/waypoint-for: workload` or `all`), by this waypoint's
 * direct-http or direct-tcp listener as sniffing decides (direct.ts); a workload bound to another
 * waypoint or to none gets 400, a port the mesh reserves 503.
 *
 * "This waypoint" is decided pragmatically from what the workload xDS carries: the service's
 * waypoint reference names our Gateway (`<GATEWAY_NAME>.<POD_NAMESPACE>.svc.…`, as the controller
 * writes it), or resolves — by hostname or address — to a service this pod is an endpoint of, or
 * is this pod's own address.
 *
 * The client is who its certificate says; the workload behind it is looked up by the tunnel's
 * source address (or the `forwarded: for=` address its agent sent) and used only if its identity
 * agrees with the certificate. Pure apart from reading the state it is given.
 */
import type { Authority } from '../core/hbone/protocol.ts';
import { HboneStatus, ILLEGAL_PORTS } from '../core/hbone/protocol.ts';
import { formatSpiffe, type Identity } from '../core/identity/spiffe.ts';
import type { MeshState } from '../core/state/mesh-state.ts';
import type { L7Listener } from '../core/xds/l7-model.ts';
import { directResourceName, listenerName } from '../core/xds/l7-names.ts';
import { workloadSpiffe, type GatewayAddress, type Service, type Workload } from '../core/xds/model.ts';
import type { TunnelContext } from './forwarder.ts';
import type { OriginalDestination } from './original-dst.ts';

/** What the waypoint knows about itself. */
export interface SelfFacts {
  readonly namespace: string;
  readonly gatewayName: string;
  /** The pod's IP. */
  readonly instanceIp: string;
}

/** The parts of a CONNECT admission looks at. */
export interface TunnelRequest {
  readonly authority: Authority;
  readonly peerIdentity: Identity;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** The `forwarded` header the client's agent sent, if any. */
  readonly forwarded: string | undefined;
}

export type Admission =
  | {
      readonly ok: true;
      readonly context: TunnelContext;
      /** The service port's listener: `tcp` set means a TCP port, whose bytes are proxied as they are. */
      readonly listener: L7Listener;
      readonly direct?: undefined;
    }
  | {
      readonly ok: true;
      /** A workload-addressed tunnel: no service, `originalDestination` set. */
      readonly context: DirectContext;
      readonly listener?: undefined;
      /** The waypoint's direct-http and direct-tcp listeners, chosen between by sniffing (direct.ts). */
      readonly direct: { readonly http: L7Listener; readonly tcp: L7Listener };
    }
  | {
      readonly ok: false;
      readonly status: typeof HboneStatus.BadRequest | typeof HboneStatus.Unavailable;
      readonly reason: string;
    };

/** A workload-addressed tunnel's context: no service; where it goes is its original destination. */
export type DirectContext = Omit<TunnelContext, 'service' | 'originalDestination'> & {
  readonly service: undefined;
  readonly originalDestination: OriginalDestination;
};

/** Decides whether to serve a tunnel, and with which service and client facts. */
export function admitTunnel(
  state: MeshState,
  listenerOf: (name: string) => L7Listener | undefined,
  self: SelfFacts,
  req: TunnelRequest,
): Admission {
  const a = req.authority;
  const peer = req.peerIdentity;
  const service =
    a.kind === 'ip'
      ? state.serviceByVip(a.ip, peer.namespace)
      : state.serviceByHostname(a.hostname, peer.namespace);
  const target = a.kind === 'ip' ? `${a.ip}:${a.port}` : `${a.hostname}:${a.port}`;
  if (!service) {
    const workload = a.kind === 'ip' ? state.workloadByIp(a.ip) : undefined;
    if (workload && a.kind === 'ip')
      return admitDirect(state, listenerOf, self, req, workload, { address: a.ip, port: a.port });
    return { ok: false, status: HboneStatus.Unavailable, reason: `no service or workload at ${target}` };
  }
  const svc = `${service.namespace}/${service.name}`;
  if (service.ports.size > 0 && !service.ports.has(a.port)) {
    return { ok: false, status: HboneStatus.Unavailable, reason: `service ${svc} has no port ${a.port}` };
  }
  if (!isThisWaypoint(state, self, service.waypoint)) {
    return {
      ok: false,
      status: HboneStatus.BadRequest,
      reason: `service ${svc} is bound to ${describeWaypoint(service.waypoint)}, not to waypoint ${self.namespace}/${self.gatewayName}`,
    };
  }
  const name = listenerName(service.hostname, a.port);
  const listener = listenerOf(name);
  if (!listener) {
    return {
      ok: false,
      status: HboneStatus.Unavailable,
      reason: `no listener ${name} (has the controller sent the config of this port?)`,
    };
  }
  return { ok: true, listener, context: { ...clientContext(state, req, a.port, name), service } };
}

/**
 * A tunnel to a workload's IP (istiod's direct pod access chains): served only when the workload's
 * own waypoint is this one — by the waypoint-for `workload` or `all` binding the controller wrote —
 * and not to a port the mesh reserves; then by this waypoint's direct-http listener (with its
 * policies) or its direct-tcp one, whichever sniffing picks. A workload bound to another waypoint,
 * or to none, is the wrong server: 400, as ztunnel answers an IP that is not its own.
 */
function admitDirect(
  state: MeshState,
  listenerOf: (name: string) => L7Listener | undefined,
  self: SelfFacts,
  req: TunnelRequest,
  workload: Workload,
  dst: OriginalDestination,
): Admission {
  const who = `workload ${workload.namespace}/${workload.name}`;
  if (ILLEGAL_PORTS.has(dst.port))
    return {
      ok: false,
      status: HboneStatus.Unavailable,
      reason: `port ${dst.port} of ${who} is reserved for the mesh`,
    };
  if (!isThisWaypoint(state, self, workload.waypoint))
    return {
      ok: false,
      status: HboneStatus.BadRequest,
      reason: `${who} is bound to ${describeWaypoint(workload.waypoint)}, not to waypoint ${self.namespace}/${self.gatewayName}`,
    };
  const httpName = directResourceName(self.namespace, self.gatewayName, 'direct-http');
  const tcpName = directResourceName(self.namespace, self.gatewayName, 'direct-tcp');
  const http = listenerOf(httpName);
  const tcp = listenerOf(tcpName);
  if (!http || !tcp)
    return {
      ok: false,
      status: HboneStatus.Unavailable,
      reason: `no listener ${http ? tcpName : httpName} (is Gateway ${self.namespace}/${self.gatewayName} labelled istio.io/waypoint-for: workload or all, and has the controller sent its config?)`,
    };
  const context = clientContext(state, req, dst.port, httpName);
  return {
    ok: true,
    direct: { http, tcp },
    context: { ...context, service: undefined, originalDestination: dst },
  };
}

/** A tunnel's facts but its service: who the client is, and the port and listener it came for. */
function clientContext(
  state: MeshState,
  req: TunnelRequest,
  port: number,
  listenerName: string,
): Omit<TunnelContext, 'service'> {
  const peer = req.peerIdentity;
  const { workload, address } = sourceWorkload(state, peer, req);
  return {
    port,
    listenerName,
    source: {
      namespace: workload?.namespace ?? peer.namespace,
      // The labels Ambit's controller sends with each workload (istiod sends none: then
      // `sourceLabels` matches see none, as Istio's own waypoints never match them).
      labels: workload?.labels ?? {},
      principal: formatSpiffe(peer),
      address,
    },
    srcWorkload: workload,
    srcIdentity: peer,
    clientAddress: address,
    clientPort: req.remotePort,
  };
}

/** Whether a service's waypoint reference means this waypoint. */
export function isThisWaypoint(state: MeshState, self: SelfFacts, gw: GatewayAddress | undefined): boolean {
  if (!gw) return false;
  const d = gw.destination;
  const hasSelf = (s: Service | undefined) =>
    s !== undefined && state.endpoints(s).some((e) => e.workload.addresses.includes(self.instanceIp));
  if (d.kind === 'hostname') {
    const own = `${self.gatewayName}.${self.namespace}.svc`;
    if (d.namespace === self.namespace && (d.hostname === own || d.hostname.startsWith(`${own}.`)))
      return true;
    return hasSelf(state.serviceByKey(`${d.namespace}/${d.hostname}`));
  }
  if (d.address === self.instanceIp) return true;
  const w = state.workloadByIp(d.address, d.network);
  if (w) return w.addresses.includes(self.instanceIp);
  return hasSelf(state.serviceByVip(d.address, self.namespace, d.network));
}

function describeWaypoint(gw: GatewayAddress | undefined): string {
  if (!gw) return 'no waypoint';
  const d = gw.destination;
  return d.kind === 'hostname' ? `waypoint ${d.hostname}` : `waypoint at ${d.address}`;
}

/** `for="ip:port"` (or `for=ip`) of a `forwarded` header. */
export function forwardedFor(header: string | undefined): string | undefined {
  if (!header) return undefined;
  for (const pair of header.split(/[;,]/)) {
    const m = /^\s*for=("?)([^"]*)\1\s*$/i.exec(pair);
    if (!m || !m[2]) continue;
    const v = m[2];
    const bracket = /^\[([^\]]+)\](?::\d+)?$/.exec(v);
    if (bracket) return bracket[1];
    const colon = v.lastIndexOf(':');
    return colon > 0 && v.indexOf(':') === colon ? v.slice(0, colon) : v;
  }
  return undefined;
}

/** The client workload: at the tunnel's source address (or its agent's `forwarded`), if the identity agrees. */
function sourceWorkload(
  state: MeshState,
  peer: Identity,
  req: TunnelRequest,
): { workload: Workload | undefined; address: string } {
  const id = formatSpiffe(peer);
  const fwd = forwardedFor(req.forwarded);
  for (const ip of [req.remoteAddress, fwd]) {
    if (!ip) continue;
    const w = state.workloadByIp(ip);
    if (w && workloadSpiffe(w) === id) return { workload: w, address: ip };
  }
  return { workload: undefined, address: req.remoteAddress };
}
