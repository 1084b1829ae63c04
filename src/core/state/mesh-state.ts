/**
 * Indexes over the mesh model (pure: no I/O). Built once per config version and replaced whole, so
 * readers never see a half-applied update.
 */
import {
  policyKey,
  serviceKey,
  type Authorization,
  type GatewayAddress,
  type MeshConfig,
  type Service,
  type Workload,
} from '../xds/model.ts';

export interface Endpoint {
  readonly workload: Workload;
  /** service port → target port for this endpoint. */
  readonly ports: ReadonlyMap<number, number>;
}

export const DEFAULT_CLUSTER_DOMAIN = 'svc.cluster.local';

export class MeshState {
  readonly config: MeshConfig;
  private readonly byUid = new Map<string, Workload>();
  private readonly byIp = new Map<string, Workload>();
  private readonly byHost = new Map<string, Service[]>();
  private readonly servicesByKey = new Map<string, Service>();
  private readonly byVip = new Map<string, Service[]>();
  private readonly endpointsByService = new Map<string, Endpoint[]>();
  private readonly policiesByKey = new Map<string, Authorization>();
  private readonly policiesByNamespace = new Map<string, Authorization[]>();
  /** Round-robin cursors per service key; the only mutable part, advanced by `pickEndpoint`. */
  private readonly cursors = new Map<string, number>();

  constructor(config: MeshConfig) {
    this.config = config;
    for (const w of config.workloads) {
      this.byUid.set(w.uid, w);
      for (const ip of w.addresses) {
        const k = ipKey(w.network, ip);
        const prev = this.byIp.get(k);
        // A Pod wins over other kinds sharing an IP (reference/ztunnel.md §3.1).
        if (!prev || (!prev.uid.includes('//Pod/') && w.uid.includes('//Pod/'))) this.byIp.set(k, w);
      }
      for (const [svc, ports] of w.services) {
        const list = this.endpointsByService.get(svc) ?? [];
        list.push({ workload: w, ports });
        this.endpointsByService.set(svc, list);
      }
    }
    for (const s of config.services) {
      this.servicesByKey.set(serviceKey(s), s);
      push(this.byHost, s.hostname, s);
      for (const v of s.vips) push(this.byVip, ipKey(v.network, v.address), s);
    }
    for (const p of config.policies) {
      this.policiesByKey.set(policyKey(p), p);
      if (p.scope !== 'WorkloadSelector')
        push(this.policiesByNamespace, p.scope === 'Global' ? '' : p.namespace, p);
    }
  }

  workloadByUid(uid: string): Workload | undefined {
    return this.byUid.get(uid);
  }

  /** A workload named by its uid or as `namespace/name` (how a SOCKS listener names its client). */
  workloadByRef(ref: string): Workload | undefined {
    return this.byUid.get(ref) ?? this.config.workloads.find((w) => `${w.namespace}/${w.name}` === ref);
  }

  workloadByIp(ip: string, network = ''): Workload | undefined {
    return this.byIp.get(ipKey(network, ip));
  }

  /** Workloads on a node (local mode and in-pod mode: the agent's own pods). */
  workloadsOnNode(node: string): Workload[] {
    return this.config.workloads.filter((w) => w.node === node);
  }

  /** The service at a VIP, preferring one in the client's namespace. */
  serviceByVip(ip: string, clientNamespace: string, network = ''): Service | undefined {
    return prefer(this.byVip.get(ipKey(network, ip)), clientNamespace);
  }

  serviceByKey(key: string): Service | undefined {
    return this.servicesByKey.get(key);
  }

  /**
   * A service by name as a client would write it: the FQDN, `name.namespace`, `name.namespace.svc`,
   * or a bare `name` in the client's namespace (Kubernetes search-path expansion).
   */
  serviceByHostname(name: string, clientNamespace: string): Service | undefined {
    const host = name.toLowerCase().replace(/\.$/, '');
    const candidates = [host];
    const parts = host.split('.');
    if (parts.length === 1) candidates.push(`${host}.${clientNamespace}.${DEFAULT_CLUSTER_DOMAIN}`);
    if (parts.length === 2) candidates.push(`${host}.${DEFAULT_CLUSTER_DOMAIN}`);
    if (parts.length === 3 && parts[2] === 'svc') candidates.push(`${host}.cluster.local`);
    for (const c of candidates) {
      const s = prefer(this.byHost.get(c), clientNamespace);
      if (s) return s;
    }
    return undefined;
  }

  endpoints(service: Service): readonly Endpoint[] {
    return this.endpointsByService.get(serviceKey(service)) ?? [];
  }

  /**
   * Round robin over the service's healthy endpoints that serve `servicePort`. Returns the workload
   * and the target port (endpoint's map, else the service's, else the port itself).
   */
  pickEndpoint(
    service: Service,
    servicePort: number,
  ): { workload: Workload; targetPort: number } | undefined {
    const key = serviceKey(service);
    const candidates = this.endpoints(service).filter(
      (e) =>
        e.workload.healthy &&
        e.workload.capacity > 0 &&
        e.workload.addresses.length > 0 &&
        (e.ports.size === 0 || e.ports.has(servicePort) || service.ports.has(servicePort)),
    );
    if (candidates.length === 0) return undefined;
    const i = (this.cursors.get(key) ?? 0) % candidates.length;
    this.cursors.set(key, i + 1);
    const e = candidates[i]!;
    const targetPort = e.ports.get(servicePort) ?? service.ports.get(servicePort) ?? servicePort;
    return { workload: e.workload, targetPort };
  }

  /** Resolves a waypoint reference to the waypoint's workload (one of its endpoints). */
  resolveGateway(
    gw: GatewayAddress,
    clientNamespace: string,
  ): { workload: Workload; service: Service | undefined } | undefined {
    const d = gw.destination;
    if (d.kind === 'address') {
      const w = this.workloadByIp(d.address, d.network);
      if (w) return { workload: w, service: undefined };
      const s = this.serviceByVip(d.address, clientNamespace, d.network);
      const picked = s && this.pickEndpoint(s, gw.hboneMtlsPort);
      return picked && { workload: picked.workload, service: s };
    }
    const s = this.serviceByKey(`${d.namespace}/${d.hostname}`);
    const picked = s && this.pickEndpoint(s, gw.hboneMtlsPort);
    return picked && { workload: picked.workload, service: s };
  }

  /**
   * The candidate policies for a destination workload (reference/ztunnel.md §6): namespace-scoped in
   * its namespace, global ones, and the selector-scoped ones it lists. Missing keys are skipped.
   */
  policiesFor(w: Workload): Authorization[] {
    const out = [
      ...(this.policiesByNamespace.get(w.namespace) ?? []),
      ...(this.policiesByNamespace.get('') ?? []),
    ];
    for (const key of w.authorizationPolicies) {
      const p = this.policiesByKey.get(key);
      if (p) out.push(p);
    }
    return out;
  }
}

function ipKey(network: string, ip: string): string {
  return `${network}/${ip}`;
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

function prefer(list: Service[] | undefined, namespace: string): Service | undefined {
  if (!list || list.length === 0) return undefined;
  return list.find((s) => s.namespace === namespace) ?? list[0];
}
