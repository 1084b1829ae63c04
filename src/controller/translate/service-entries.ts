/**
 * ServiceEntry → Services and Workloads, as istiod's ambient index builds them
 * (ambient/services.go constructServiceEntries, ambient/workloads.go serviceEntryWorkloadBuilder).
 * Pure.
 *
 * - One Service per host: hostname = the host, the entry's namespace and name, `addresses` as VIPs
 *   (none: reachable by name only), ports with their targetPort (the port number when unset), the
 *   entry's subjectAltNames. `location` (MESH_INTERNAL/MESH_EXTERNAL) is validated but, as in
 *   istiod, nothing in the workload API carries it.
 * - Each inline endpoint (a WorkloadEntry) is a Workload with uid
 *   `<cluster>/networking.istio.io/ServiceEntry/<ns>/<name>/<address>`: an IP address in
 *   `addresses`, a DNS name (resolution DNS or DNS_ROUND_ROBIN) in `hostname`. It serves every host,
 *   each port on the endpoint's own port of that name, else the targetPort.
 * - With resolution DNS or DNS_ROUND_ROBIN, no endpoints and no workloadSelector, each host is its
 *   own endpoint: a Workload with `hostname` = the host (istiod's "implicit endpoints").
 * - `workloadSelector` selects pods in the entry's namespace (the translation adds the entry's
 *   services to their `services` maps).
 * - Endpoints are plain TCP unless the entry carries the annotation `ambient.istio.io/redirection:
 *   enabled` or the label `networking.istio.io/tunnel: http` (istiod's setTunnelProtocol).
 *
 * Wildcard hosts are skipped with a warning: ztunnel can only serve them through an egress waypoint
 * (istio-api.md §3.6, `DYNAMIC_DNS`), which a later issue translates.
 */
import { ipFamily, parseCidr } from '../../core/ip.ts';
import {
  serviceKey,
  TunnelProtocol,
  WorkloadType,
  type NetworkAddress,
  type PortMap,
  type Service,
  type Workload,
} from '../../core/xds/model.ts';
import {
  canonicalService,
  isDnsName,
  reporter,
  sortedPorts,
  validPort,
  type TranslateOptions,
  type TranslateProblem,
} from './common.ts';
import { lookup, type ServiceEntry, type StringMap } from './kube-types.ts';

/** A ServiceEntry that translated, with what its workloads and selected pods need. */
export interface TranslatedServiceEntry {
  readonly entry: ServiceEntry;
  /** One per usable host, in the order written. */
  readonly services: readonly Service[];
  /** Its non-empty workloadSelector, if any. */
  readonly selector: StringMap | undefined;
  /** Service key → port map, for a pod the selector picks (numeric target ports only). */
  readonly podServices: ReadonlyMap<string, PortMap>;
  readonly endpoints: readonly EntryEndpoint[];
}

interface EntryEndpoint {
  readonly address: string;
  readonly isIp: boolean;
  readonly network: string;
  readonly serviceAccount: string;
  readonly capacity: number;
  /** Service key → port map for this endpoint. */
  readonly services: ReadonlyMap<string, PortMap>;
}

const LOCATIONS = ['MESH_EXTERNAL', 'MESH_INTERNAL'];
const RESOLUTIONS = ['NONE', 'STATIC', 'DNS', 'DNS_ROUND_ROBIN', 'DYNAMIC_DNS'];
/** Istio's protocol names (protocol.Parse), compared case-insensitively. */
const PROTOCOLS = [
  'HTTP',
  'HTTPS',
  'HTTP2',
  'HTTP_PROXY',
  'GRPC',
  'GRPC-WEB',
  'TCP',
  'TLS',
  'UDP',
  'MONGO',
  'MYSQL',
  'REDIS',
];
/** Kubernetes DNS-1123 label: what Istio requires of a port name. */
const PORT_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const REDIRECTION_ANNOTATION = 'ambient.istio.io/redirection';
const TUNNEL_LABEL = 'networking.istio.io/tunnel';

/**
 * Validates and translates one entry; undefined (with errors reported) when it is skipped. A host
 * whose service key (`namespace/host`) is already in `taken` (a Kubernetes Service or an earlier
 * entry) is left out with an error; the keys of this entry's hosts are added to it.
 */
export function translateServiceEntry(
  se: ServiceEntry,
  options: TranslateOptions,
  problems: TranslateProblem[],
  taken: Set<string>,
): TranslatedServiceEntry | undefined {
  const errors: TranslateProblem[] = [];
  const warnings: TranslateProblem[] = [];
  const reportError = reporter(errors, 'ServiceEntry', se);
  const reportWarning = reporter(warnings, 'ServiceEntry', se);
  const error = (path: string, message: string) => reportError('error', path, message);
  const warn = (path: string, message: string) => reportWarning('warning', path, message);

  const resolution = se.resolution || 'NONE';
  if (!RESOLUTIONS.includes(resolution))
    error('spec.resolution', `"${se.resolution}" must be one of ${RESOLUTIONS.join(', ')}`);
  if (se.location && !LOCATIONS.includes(se.location))
    error('spec.location', `"${se.location}" must be MESH_EXTERNAL or MESH_INTERNAL`);
  const dns = resolution === 'DNS' || resolution === 'DNS_ROUND_ROBIN';

  // Hosts.
  if (se.hosts.length === 0) error('spec.hosts', 'at least one host is required');
  const hosts: string[] = [];
  se.hosts.forEach((h, i) => {
    const path = `spec.hosts[${i}]`;
    if (h === '*' || h.startsWith('*.')) {
      warn(
        path,
        `"${h}" is a wildcard host, which ztunnel serves only through an egress waypoint (DYNAMIC_DNS); the host is skipped`,
      );
      return;
    }
    if (!isDnsName(h)) error(path, `"${h}" is not a valid host name`);
    else if (hosts.includes(h)) error(path, `"${h}" is listed twice`);
    else hosts.push(h);
  });

  // Addresses (VIPs).
  const vips: NetworkAddress[] = [];
  se.addresses.forEach((a, i) => {
    const path = `spec.addresses[${i}]`;
    const cidr = parseCidr(a);
    if (cidr === undefined) error(path, `"${a}" is not an IP address or CIDR`);
    else if (cidr.prefixLength < (ipFamily(cidr.address) === 4 ? 32 : 128))
      warn(path, `"${a}": CIDR VIPs are not supported yet; the address is left out`);
    else vips.push({ network: '', address: cidr.address });
  });

  // Ports.
  const ports: { name: string; number: number; target: number }[] = [];
  se.ports.forEach((p, i) => {
    const path = `spec.ports[${i}]`;
    if (!validPort(p.number)) error(`${path}.number`, `${p.number} is not a port number (1-65535)`);
    else if (se.ports.findIndex((q) => q.number === p.number) < i)
      error(`${path}.number`, `port ${p.number} is listed twice`);
    if (!PORT_NAME.test(p.name))
      error(
        `${path}.name`,
        `"${p.name}" is not a port name (lower-case letters, digits and "-", at most 63)`,
      );
    else if (se.ports.findIndex((q) => q.name === p.name) < i)
      error(`${path}.name`, `port name "${p.name}" is used twice`);
    const protocol = p.protocol.toUpperCase();
    if (p.protocol && !PROTOCOLS.includes(protocol))
      error(`${path}.protocol`, `"${p.protocol}" is not a protocol Istio knows (${PROTOCOLS.join(', ')})`);
    if (p.targetPort !== undefined && p.targetPort !== 0 && !validPort(p.targetPort))
      error(`${path}.targetPort`, `${p.targetPort} is not a port number (1-65535)`);
    // ztunnel carries TCP only; a UDP port is not part of the mesh.
    if (protocol !== 'UDP') ports.push({ name: p.name, number: p.number, target: p.targetPort || p.number });
  });

  // Endpoints.
  if (se.endpoints.length > 0 && se.workloadSelector !== undefined)
    error('spec', 'workloadSelector and endpoints cannot be used together');
  if (resolution === 'DNS_ROUND_ROBIN' && se.endpoints.length > 1)
    error('spec.endpoints', 'resolution DNS_ROUND_ROBIN allows at most one endpoint');
  const endpoints: Omit<EntryEndpoint, 'services'>[] = [];
  const endpointPorts: Readonly<Record<string, number>>[] = [];
  se.endpoints.forEach((ep, i) => {
    const path = `spec.endpoints[${i}]`;
    const isIp = ipFamily(ep.address) !== 0;
    if (!ep.address) error(`${path}.address`, 'is required');
    else if (ep.address.startsWith('unix://'))
      error(`${path}.address`, 'Unix domain socket endpoints are not supported in ambient');
    else if (!isIp && !(dns && isDnsName(ep.address)))
      error(
        `${path}.address`,
        dns
          ? `"${ep.address}" is neither an IP address nor a host name`
          : `"${ep.address}" is not an IP address (host names need resolution DNS or DNS_ROUND_ROBIN)`,
      );
    else if (se.endpoints.findIndex((q) => q.address === ep.address) < i)
      error(`${path}.address`, `"${ep.address}" is listed twice`);
    for (const [name, port] of Object.entries(ep.ports)) {
      if (!validPort(port)) error(`${path}.ports.${name}`, `${port} is not a port number (1-65535)`);
      if (!se.ports.some((p) => p.name === name))
        error(`${path}.ports.${name}`, `the entry has no port named "${name}"`);
    }
    endpoints.push({
      address: ep.address,
      isIp,
      network: ep.network,
      serviceAccount: ep.serviceAccount,
      capacity: ep.weight !== undefined && ep.weight > 0 ? ep.weight : 1,
    });
    endpointPorts.push(ep.ports);
  });

  if (errors.length > 0) {
    problems.push(...errors);
    return undefined;
  }

  // Hosts another Service or entry already defines in this namespace would merge two services'
  // endpoints under one key: the later one is left out.
  const usable = hosts.filter((h) => {
    const key = serviceKey({ namespace: se.namespace, hostname: h });
    if (!taken.has(key)) {
      taken.add(key);
      return true;
    }
    reportError(
      'error',
      `spec.hosts[${se.hosts.indexOf(h)}]`,
      `a Service or ServiceEntry in ${se.namespace} already defines ${h}; this host is skipped`,
    );
    return false;
  });
  problems.push(...errors);
  problems.push(...warnings);

  const defaultPorts = sortedPorts(new Map(ports.map((p) => [p.number, p.target])));
  const services = usable.map((hostname): Service => ({
    name: se.name,
    namespace: se.namespace,
    hostname,
    vips,
    ports: defaultPorts,
    subjectAltNames: se.subjectAltNames,
    waypoint: undefined,
  }));
  const keys = services.map(serviceKey);
  const withPorts = (portMap: PortMap) => new Map(keys.map((k) => [k, portMap]));
  const selector =
    se.workloadSelector !== undefined && Object.keys(se.workloadSelector).length > 0
      ? se.workloadSelector
      : undefined;
  const explicit = endpoints.map((ep, i): EntryEndpoint => ({
    ...ep,
    services: withPorts(
      sortedPorts(
        new Map(
          ports.map((p) => {
            const own = endpointPorts[i]!;
            return [p.number, Object.hasOwn(own, p.name) ? own[p.name]! : p.target];
          }),
        ),
      ),
    ),
  }));
  // istiod's implicit endpoints: each host resolves itself.
  const implicit =
    dns && se.endpoints.length === 0 && se.workloadSelector === undefined
      ? services.map((s): EntryEndpoint => ({
          address: s.hostname,
          isIp: false,
          network: '',
          serviceAccount: '',
          capacity: 1,
          services: new Map([[serviceKey(s), defaultPorts]]),
        }))
      : [];
  return {
    entry: se,
    services,
    selector,
    podServices: withPorts(defaultPorts),
    // Without a service an endpoint serves nothing (every host was skipped).
    endpoints: services.length === 0 ? [] : [...explicit, ...implicit],
  };
}

/** The entry's endpoints as Workloads; `authorizationPolicies` is what the entry's labels select. */
export function serviceEntryWorkloads(
  t: TranslatedServiceEntry,
  options: TranslateOptions,
  authorizationPolicies: readonly string[],
): Workload[] {
  const se = t.entry;
  const hbone =
    lookup(se.annotations, REDIRECTION_ANNOTATION) === 'enabled' ||
    lookup(se.labels, TUNNEL_LABEL) === 'http';
  return t.endpoints.map((ep): Workload => ({
    uid: `${options.clusterId}/networking.istio.io/ServiceEntry/${se.namespace}/${se.name}/${ep.address}`,
    name: se.name,
    namespace: se.namespace,
    addresses: ep.isIp ? [ep.address] : [],
    hostname: ep.isIp ? '' : ep.address,
    network: ep.network,
    tunnelProtocol: hbone ? TunnelProtocol.Hbone : TunnelProtocol.None,
    trustDomain: options.trustDomain,
    serviceAccount: ep.serviceAccount || 'default',
    waypoint: undefined,
    node: '',
    ...canonicalService(se.labels, se.name),
    // istiod presents an entry's endpoints as pods of a workload named after the entry.
    workloadType: WorkloadType.Pod,
    workloadName: se.name,
    services: ep.services,
    authorizationPolicies,
    healthy: true,
    clusterId: options.clusterId,
    capacity: ep.capacity,
  }));
}
