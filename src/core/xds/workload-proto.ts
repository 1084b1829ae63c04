/**
 * Istio's Address (Workload | Service) and Authorization resources on the wire ⇄ the internal model.
 * Encoding is for the controller; decoding, for the agent, validates everything and collects each
 * problem with its field path (a bad resource is NACKed with all of them, the rest applied).
 */
import { ipFromBytes, ipToBytes } from '../ip.ts';
import { ambitProtos } from '../proto/load.ts';
import { DEFAULT_SERVICE_ACCOUNT, DEFAULT_TRUST_DOMAIN } from '../identity/spiffe.ts';
import {
  policyKey,
  serviceKey,
  type Authorization,
  type Cidr,
  type GatewayAddress,
  type Match,
  type PortMap,
  type Service,
  type StringMatch,
  type Workload,
  type WorkloadType,
} from './model.ts';

export interface FieldError {
  readonly path: string;
  readonly message: string;
}

export type Decoded<T> = { ok: true; value: T } | { ok: false; errors: FieldError[] };

const WORKLOAD_TYPES = ['DEPLOYMENT', 'CRONJOB', 'POD', 'JOB'] as const;
/** The Workload extension that carries its labels (core/proto/ambit.proto). */
export const LABELS_EXTENSION = 'ambit.io/labels';
const LABELS_TYPE_URL = 'type.googleapis.com/ambit.WorkloadLabels';
const SCOPES = { GLOBAL: 'Global', NAMESPACE: 'Namespace', WORKLOAD_SELECTOR: 'WorkloadSelector' } as const;

// ---------- encode (controller) ----------

/** The xDS resource name of a workload (its uid), service (`ns/hostname`) or policy (`ns/name`). */
export function workloadResourceName(w: Workload): string {
  return w.uid;
}
export const serviceResourceName = serviceKey;
export const authorizationResourceName = policyKey;

export function encodeWorkload(w: Workload): Uint8Array {
  const Address = ambitProtos().lookupType('istio.workload.Address');
  return Address.encode(
    Address.fromObject({
      workload: {
        uid: w.uid,
        name: w.name,
        namespace: w.namespace,
        addresses: w.addresses.map(ipBytes),
        hostname: w.hostname,
        network: w.network,
        tunnel_protocol: w.tunnelProtocol === 'HBONE' ? 1 : 0,
        trust_domain: w.trustDomain,
        service_account: w.serviceAccount,
        waypoint: w.waypoint ? gatewayToWire(w.waypoint) : undefined,
        node: w.node,
        canonical_name: w.canonicalName,
        canonical_revision: w.canonicalRevision,
        workload_type: WORKLOAD_TYPES.indexOf(
          w.workloadType.toUpperCase() as (typeof WORKLOAD_TYPES)[number],
        ),
        workload_name: w.workloadName,
        services: Object.fromEntries([...w.services].map(([k, ports]) => [k, { ports: portsToWire(ports) }])),
        authorization_policies: [...w.authorizationPolicies],
        status: w.healthy ? 0 : 1,
        cluster_id: w.clusterId,
        capacity: w.capacity === 1 ? undefined : { value: w.capacity },
        extensions: labelsExtension(w.labels),
      },
    }),
  ).finish();
}

function labelsExtension(labels: Workload['labels']) {
  if (!labels || Object.keys(labels).length === 0) return [];
  const T = ambitProtos().lookupType('ambit.WorkloadLabels');
  return [
    {
      name: LABELS_EXTENSION,
      config: { type_url: LABELS_TYPE_URL, value: T.encode(T.fromObject({ labels })).finish() },
    },
  ];
}

/** The labels extension of a Workload, if present; other extensions are ignored, as ztunnel does. */
function labelsFromWire(
  list: readonly { name?: string; config?: { type_url?: string; value?: Uint8Array } }[],
  err: (p: string, m: string) => void,
): Record<string, string> | undefined {
  const i = list.findIndex((e) => e.name === LABELS_EXTENSION);
  if (i < 0) return undefined;
  const config = list[i]!.config;
  if (config?.type_url !== LABELS_TYPE_URL) {
    err(`extensions[${i}].config.type_url`, `must be ${LABELS_TYPE_URL} for ${LABELS_EXTENSION}`);
    return undefined;
  }
  try {
    const T = ambitProtos().lookupType('ambit.WorkloadLabels');
    const o = T.toObject(T.decode(config.value ?? new Uint8Array()), { defaults: false }) as {
      labels?: Record<string, string>;
    };
    return { ...o.labels };
  } catch (e) {
    err(`extensions[${i}].config.value`, `not an ambit.WorkloadLabels: ${(e as Error).message}`);
    return undefined;
  }
}

export function encodeService(s: Service): Uint8Array {
  const Address = ambitProtos().lookupType('istio.workload.Address');
  return Address.encode(
    Address.fromObject({
      service: {
        name: s.name,
        namespace: s.namespace,
        hostname: s.hostname,
        addresses: s.vips.map((v) => ({ network: v.network, address: ipBytes(v.address) })),
        ports: portsToWire(s.ports),
        subject_alt_names: [...s.subjectAltNames],
        waypoint: s.waypoint ? gatewayToWire(s.waypoint) : undefined,
      },
    }),
  ).finish();
}

export function encodeAuthorization(p: Authorization): Uint8Array {
  const A = ambitProtos().lookupType('istio.security.Authorization');
  const str = (m: StringMatch) => (m.kind === 'presence' ? { presence: {} } : { [m.kind]: m.value });
  const cidr = (c: Cidr) => ({ address: ipBytes(c.address), length: c.prefixLength });
  const sa = (x: { namespace: string; serviceAccount: string }) => ({
    namespace: x.namespace,
    serviceAccount: x.serviceAccount,
  });
  return A.encode(
    A.fromObject({
      name: p.name,
      namespace: p.namespace,
      scope: Object.values(SCOPES).indexOf(p.scope),
      action: p.action === 'Deny' ? 1 : 0,
      dry_run: p.dryRun,
      rules: p.rules.map((rule) => ({
        clauses: rule.map((clause) => ({
          matches: clause.map((m) => ({
            namespaces: m.namespaces.map(str),
            not_namespaces: m.notNamespaces.map(str),
            service_accounts: m.serviceAccounts.map(sa),
            not_service_accounts: m.notServiceAccounts.map(sa),
            principals: m.principals.map(str),
            not_principals: m.notPrincipals.map(str),
            source_ips: m.sourceIps.map(cidr),
            not_source_ips: m.notSourceIps.map(cidr),
            destination_ips: m.destinationIps.map(cidr),
            not_destination_ips: m.notDestinationIps.map(cidr),
            destination_ports: [...m.destinationPorts],
            not_destination_ports: [...m.notDestinationPorts],
          })),
        })),
      })),
    }),
  ).finish();
}

function portsToWire(ports: PortMap) {
  return [...ports].map(([service_port, target_port]) => ({ service_port, target_port }));
}

function gatewayToWire(g: GatewayAddress) {
  const d = g.destination;
  return {
    hbone_mtls_port: g.hboneMtlsPort,
    ...(d.kind === 'hostname'
      ? { hostname: { namespace: d.namespace, hostname: d.hostname } }
      : { address: { network: d.network, address: ipBytes(d.address) } }),
  };
}

/** Wire bytes of an address the model already validated. */
function ipBytes(ip: string): Buffer {
  return ipToBytes(ip) ?? Buffer.alloc(0);
}

// ---------- decode (agent) ----------

interface WireGateway {
  hostname?: { namespace?: string; hostname?: string };
  address?: { network?: string; address?: Uint8Array };
  hbone_mtls_port?: number;
}
interface WirePort {
  service_port?: number;
  target_port?: number;
}
interface WireWorkload {
  uid?: string;
  name?: string;
  namespace?: string;
  addresses?: Uint8Array[];
  hostname?: string;
  network?: string;
  tunnel_protocol?: number;
  trust_domain?: string;
  service_account?: string;
  waypoint?: WireGateway;
  node?: string;
  canonical_name?: string;
  canonical_revision?: string;
  workload_type?: number;
  workload_name?: string;
  services?: Record<string, { ports?: WirePort[] }>;
  authorization_policies?: string[];
  status?: number;
  cluster_id?: string;
  capacity?: { value?: number };
  extensions?: { name?: string; config?: { type_url?: string; value?: Uint8Array } }[];
}
interface WireService {
  name?: string;
  namespace?: string;
  hostname?: string;
  addresses?: { network?: string; address?: Uint8Array; length?: number }[];
  ports?: WirePort[];
  subject_alt_names?: string[];
  waypoint?: WireGateway;
}

export type AddressResource =
  { kind: 'workload'; workload: Workload } | { kind: 'service'; service: Service };

/** Decodes an `istio.workload.Address` into a Workload or a Service. */
export function decodeAddress(bytes: Uint8Array): Decoded<AddressResource> {
  const Address = ambitProtos().lookupType('istio.workload.Address');
  let msg: { workload?: WireWorkload; service?: WireService };
  try {
    msg = Address.toObject(Address.decode(bytes), {
      defaults: false,
      enums: Number,
      longs: Number,
    });
  } catch (err) {
    return {
      ok: false,
      errors: [{ path: '', message: `not an istio.workload.Address: ${(err as Error).message}` }],
    };
  }
  const errors: FieldError[] = [];
  if (msg.workload) {
    const w = decodeWorkload(msg.workload, errors);
    return errors.length ? { ok: false, errors } : { ok: true, value: { kind: 'workload', workload: w } };
  }
  if (msg.service) {
    const s = decodeService(msg.service, errors);
    return errors.length ? { ok: false, errors } : { ok: true, value: { kind: 'service', service: s } };
  }
  return { ok: false, errors: [{ path: '', message: 'Address has neither workload nor service' }] };
}

function decodeWorkload(w: WireWorkload, errors: FieldError[]): Workload {
  const err = (path: string, message: string) => errors.push({ path: `workload.${path}`, message });
  if (!w.uid) err('uid', 'is required');
  if (!w.namespace) err('namespace', 'is required');
  if (w.tunnel_protocol === 2) err('tunnel_protocol', 'LEGACY_ISTIO_MTLS is not supported');
  else if (w.tunnel_protocol !== undefined && w.tunnel_protocol !== 0 && w.tunnel_protocol !== 1) {
    err('tunnel_protocol', `unknown value ${w.tunnel_protocol}`);
  }
  const addresses = (w.addresses ?? []).map((b, i) => bytesToIp(b, `addresses[${i}]`, err));
  // No addresses and no hostname is a pod that is scheduled but has no IP yet: Istio's WDS sends
  // those, and the agent captures such a pod at its CNI ADD, before the IP is known.
  const services = new Map<string, PortMap>();
  for (const [key, list] of Object.entries(w.services ?? {})) {
    if (!/^[^/]+\/[^/]+$/.test(key)) err(`services["${key}"]`, 'key must be "namespace/hostname"');
    services.set(key, portsFromWire(list.ports ?? [], `services["${key}"].ports`, err));
  }
  const type = WORKLOAD_TYPES[w.workload_type ?? 0];
  if (!type) err('workload_type', `unknown value ${w.workload_type}`);
  const labels = labelsFromWire(w.extensions ?? [], err);
  return {
    uid: w.uid ?? '',
    name: w.name ?? '',
    namespace: w.namespace ?? '',
    addresses,
    hostname: w.hostname ?? '',
    network: w.network ?? '',
    tunnelProtocol: w.tunnel_protocol === 1 ? 'HBONE' : 'NONE',
    trustDomain: w.trust_domain || DEFAULT_TRUST_DOMAIN,
    serviceAccount: w.service_account || DEFAULT_SERVICE_ACCOUNT,
    waypoint: w.waypoint ? gatewayFromWire(w.waypoint, 'waypoint', err) : undefined,
    node: w.node ?? '',
    canonicalName: w.canonical_name ?? '',
    canonicalRevision: w.canonical_revision ?? '',
    workloadType: (type ?? 'POD').toLowerCase() as WorkloadType,
    workloadName: w.workload_name ?? '',
    services,
    authorizationPolicies: w.authorization_policies ?? [],
    healthy: (w.status ?? 0) === 0,
    clusterId: w.cluster_id || 'Kubernetes',
    capacity: w.capacity?.value ?? 1,
    ...(labels ? { labels } : {}),
  };
}

function decodeService(s: WireService, errors: FieldError[]): Service {
  const err = (path: string, message: string) => errors.push({ path: `service.${path}`, message });
  if (!s.hostname) err('hostname', 'is required');
  if (!s.namespace) err('namespace', 'is required');
  return {
    name: s.name || (s.hostname ?? '').split('.')[0]!,
    namespace: s.namespace ?? '',
    hostname: s.hostname ?? '',
    vips: (s.addresses ?? []).map((a, i) => ({
      network: a.network ?? '',
      address: bytesToIp(a.address ?? new Uint8Array(), `addresses[${i}].address`, err),
    })),
    ports: portsFromWire(s.ports ?? [], 'ports', err),
    subjectAltNames: s.subject_alt_names ?? [],
    waypoint: s.waypoint ? gatewayFromWire(s.waypoint, 'waypoint', err) : undefined,
  };
}

interface WireStringMatch {
  exact?: string;
  prefix?: string;
  suffix?: string;
  presence?: object;
}
interface WireCidr {
  address?: Uint8Array;
  length?: number;
}
interface WireSa {
  namespace?: string;
  serviceAccount?: string;
}
interface WireMatch {
  namespaces?: WireStringMatch[];
  not_namespaces?: WireStringMatch[];
  service_accounts?: WireSa[];
  not_service_accounts?: WireSa[];
  principals?: WireStringMatch[];
  not_principals?: WireStringMatch[];
  source_ips?: WireCidr[];
  not_source_ips?: WireCidr[];
  destination_ips?: WireCidr[];
  not_destination_ips?: WireCidr[];
  destination_ports?: number[];
  not_destination_ports?: number[];
}
interface WireAuthorization {
  name?: string;
  namespace?: string;
  scope?: number;
  action?: number;
  rules?: { clauses?: { matches?: WireMatch[] }[] }[];
  dry_run?: boolean;
}

/** Decodes an `istio.security.Authorization`. */
export function decodeAuthorization(bytes: Uint8Array): Decoded<Authorization> {
  const A = ambitProtos().lookupType('istio.security.Authorization');
  let p: WireAuthorization;
  try {
    p = A.toObject(A.decode(bytes), { defaults: false, enums: Number, longs: Number });
  } catch (err) {
    return {
      ok: false,
      errors: [{ path: '', message: `not an istio.security.Authorization: ${(err as Error).message}` }],
    };
  }
  const errors: FieldError[] = [];
  const err = (path: string, message: string) => errors.push({ path, message });
  if (!p.name) err('name', 'is required');
  const scope = Object.values(SCOPES)[p.scope ?? 0];
  if (!scope) err('scope', `unknown value ${p.scope}`);
  if (p.action !== undefined && p.action !== 0 && p.action !== 1) err('action', `unknown value ${p.action}`);
  const str = (m: WireStringMatch, path: string): StringMatch => {
    if (m.exact !== undefined) return { kind: 'exact', value: m.exact };
    if (m.prefix !== undefined) return { kind: 'prefix', value: m.prefix };
    if (m.suffix !== undefined) return { kind: 'suffix', value: m.suffix };
    if (m.presence !== undefined) return { kind: 'presence' };
    err(path, 'string match has no exact, prefix, suffix or presence');
    return { kind: 'exact', value: '' };
  };
  const cidr = (c: WireCidr, path: string): Cidr => {
    const address = bytesToIp(c.address ?? new Uint8Array(), `${path}.address`, err);
    const max = (c.address?.length ?? 4) === 16 ? 128 : 32;
    const prefixLength = c.length ?? max;
    if (prefixLength > max) err(`${path}.length`, `must be at most ${max}`);
    return { address, prefixLength };
  };
  const ports = (list: number[] | undefined, path: string) =>
    (list ?? []).map((n, i) => {
      if (n > 65535) err(`${path}[${i}]`, 'is not a port');
      return n;
    });
  const rules = (p.rules ?? []).map((rule, r) =>
    (rule.clauses ?? []).map((clause, c) =>
      (clause.matches ?? []).map((m, i): Match => {
        const at = `rules[${r}].clauses[${c}].matches[${i}]`;
        const strs = (list: WireStringMatch[] | undefined, f: string) =>
          (list ?? []).map((x, j) => str(x, `${at}.${f}[${j}]`));
        const cidrs = (list: WireCidr[] | undefined, f: string) =>
          (list ?? []).map((x, j) => cidr(x, `${at}.${f}[${j}]`));
        const sas = (list: WireSa[] | undefined) =>
          (list ?? []).map((x) => ({ namespace: x.namespace ?? '', serviceAccount: x.serviceAccount ?? '' }));
        return {
          namespaces: strs(m.namespaces, 'namespaces'),
          notNamespaces: strs(m.not_namespaces, 'not_namespaces'),
          serviceAccounts: sas(m.service_accounts),
          notServiceAccounts: sas(m.not_service_accounts),
          principals: strs(m.principals, 'principals'),
          notPrincipals: strs(m.not_principals, 'not_principals'),
          sourceIps: cidrs(m.source_ips, 'source_ips'),
          notSourceIps: cidrs(m.not_source_ips, 'not_source_ips'),
          destinationIps: cidrs(m.destination_ips, 'destination_ips'),
          notDestinationIps: cidrs(m.not_destination_ips, 'not_destination_ips'),
          destinationPorts: ports(m.destination_ports, `${at}.destination_ports`),
          notDestinationPorts: ports(m.not_destination_ports, `${at}.not_destination_ports`),
        };
      }),
    ),
  );
  if (errors.length) return { ok: false, errors };
  return {
    ok: true,
    value: {
      name: p.name ?? '',
      namespace: p.namespace ?? '',
      scope: scope ?? 'Global',
      action: p.action === 1 ? 'Deny' : 'Allow',
      rules,
      dryRun: p.dry_run ?? false,
    },
  };
}

function portsFromWire(list: WirePort[], path: string, err: (p: string, m: string) => void): PortMap {
  const out = new Map<number, number>();
  list.forEach((p, i) => {
    const sp = p.service_port ?? 0;
    const tp = p.target_port ?? 0;
    if (sp < 1 || sp > 65535) err(`${path}[${i}].service_port`, 'must be 1-65535');
    if (tp > 65535) err(`${path}[${i}].target_port`, 'must be 0-65535');
    out.set(sp, tp || sp);
  });
  return out;
}

function gatewayFromWire(
  g: WireGateway,
  path: string,
  err: (p: string, m: string) => void,
): GatewayAddress | undefined {
  const hboneMtlsPort = g.hbone_mtls_port || 15008;
  if (g.hostname) {
    if (!g.hostname.hostname) err(`${path}.hostname.hostname`, 'is required');
    return {
      destination: {
        kind: 'hostname',
        namespace: g.hostname.namespace ?? '',
        hostname: g.hostname.hostname ?? '',
      },
      hboneMtlsPort,
    };
  }
  if (g.address) {
    const address = bytesToIp(g.address.address ?? new Uint8Array(), `${path}.address.address`, err);
    return { destination: { kind: 'address', network: g.address.network ?? '', address }, hboneMtlsPort };
  }
  err(path, 'has neither hostname nor address');
  return undefined;
}

function bytesToIp(b: Uint8Array, path: string, err: (p: string, m: string) => void): string {
  const ip = ipFromBytes(b);
  if (ip === undefined) err(path, `must be 4 or 16 bytes, got ${b.length}`);
  return ip ?? '';
}
