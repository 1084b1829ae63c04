/**
 * Decodes ztunnel's LocalConfig YAML (reference/ztunnel.md §4: `workloads`, `services`, `policies`,
 * camelCase, unknown fields rejected) into the internal model, with every error's path and line.
 */
import { isIP } from 'node:net';
import { parseCidr } from '../ip.ts';
import { isScalar, type Node as YamlNode } from 'yaml';
import { DEFAULT_SERVICE_ACCOUNT, DEFAULT_TRUST_DOMAIN, parseSpiffe } from '../identity/spiffe.ts';
import type { WorkloadType } from './model.ts';
import {
  PolicyAction,
  PolicyScope,
  TunnelProtocol,
  type Authorization,
  type Cidr,
  type GatewayAddress,
  type Match,
  type MeshConfig,
  type NetworkAddress,
  type PortMap,
  type Service,
  type ServiceAccountMatch,
  type StringMatch,
  type Workload,
} from './model.ts';
import { join, YamlDecoder, type DecodeError } from './yaml-decoder.ts';

export type LocalConfigResult = { ok: true; config: MeshConfig } | { ok: false; errors: DecodeError[] };

const WORKLOAD_FIELDS = [
  'uid',
  'name',
  'namespace',
  'workloadIps',
  'hostname',
  'network',
  'protocol',
  'trustDomain',
  'serviceAccount',
  'waypoint',
  'networkGateway',
  'node',
  'canonicalName',
  'canonicalRevision',
  'workloadType',
  'workloadName',
  'nativeTunnel',
  'applicationTunnel',
  'services',
  'authorizationPolicies',
  'status',
  'clusterId',
  'locality',
  'networkMode',
  'capacity',
] as const;
const SERVICE_FIELDS = [
  'name',
  'namespace',
  'hostname',
  'vips',
  'cidrVips',
  'ports',
  'endpoints',
  'subjectAltNames',
  'waypoint',
  'weightedWaypoints',
  'loadBalancer',
  'ipFamilies',
  'canonical',
  'visibility',
] as const;
const POLICY_FIELDS = ['name', 'namespace', 'scope', 'action', 'rules', 'dryRun'] as const;
const MATCH_FIELDS = [
  'namespaces',
  'notNamespaces',
  'serviceAccounts',
  'notServiceAccounts',
  'principals',
  'notPrincipals',
  'sourceIps',
  'notSourceIps',
  'destinationIps',
  'notDestinationIps',
  'destinationPorts',
  'notDestinationPorts',
] as const;

export function decodeLocalConfig(text: string): LocalConfigResult {
  const { decoder: d, root } = YamlDecoder.parse(text);
  if (d.errors.length > 0) return { ok: false, errors: d.errors };
  if (root === undefined) return { ok: true, config: { workloads: [], services: [], policies: [] } };
  const top = d.map(root, '', ['workloads', 'services', 'policies']);
  if (!top) return { ok: false, errors: d.errors };
  const nodes = {
    workloads: d.list(top.get('workloads'), 'workloads'),
    services: d.list(top.get('services'), 'services'),
    policies: d.list(top.get('policies'), 'policies'),
  };
  const workloads = nodes.workloads.map((n, i) => workload(d, n, join('workloads', i)));
  const services = nodes.services.map((n, i) => service(d, n, join('services', i)));
  const policies = nodes.policies.map((n, i) => policy(d, n, join('policies', i)));
  crossCheck(d, nodes, workloads, services, policies);
  if (d.errors.length > 0) return { ok: false, errors: d.errors };
  return { ok: true, config: { workloads, services, policies } };
}

function workload(d: YamlDecoder, node: YamlNode, path: string): Workload {
  const f = d.map(node, path, WORKLOAD_FIELDS) ?? new Map<string, YamlNode>();
  const at = (k: string) => join(path, k);
  const namespace = d.requiredString(f.get('namespace'), at('namespace'), node);
  const name = d.string(f.get('name'), at('name'));
  const addresses = d
    .list(f.get('workloadIps'), at('workloadIps'))
    .map((n, i) => ip(d, n, join(at('workloadIps'), i)));
  const hostname = d.string(f.get('hostname'), at('hostname'));
  if (addresses.length === 0 && !hostname)
    d.error(node, at('workloadIps'), 'a workload needs workloadIps or a hostname');
  const services = new Map<string, PortMap>();
  for (const [key, value, keyNode] of d.entries(f.get('services'), at('services'))) {
    if (!/^[^/]+\/[^/]+$/.test(key))
      d.error(keyNode, join(at('services'), key), 'key must be "namespace/hostname"');
    services.set(key, portMap(d, value, join(at('services'), key)));
  }
  return {
    uid: d.string(f.get('uid'), at('uid')) || `local//Pod/${namespace}/${name}`,
    name,
    namespace,
    addresses,
    hostname,
    network: d.string(f.get('network'), at('network')),
    tunnelProtocol:
      d.oneOf(f.get('protocol'), at('protocol'), ['TCP', 'HBONE'], 'TCP') === 'HBONE'
        ? TunnelProtocol.Hbone
        : TunnelProtocol.None,
    trustDomain: d.string(f.get('trustDomain'), at('trustDomain')) || DEFAULT_TRUST_DOMAIN,
    serviceAccount: d.string(f.get('serviceAccount'), at('serviceAccount')) || DEFAULT_SERVICE_ACCOUNT,
    waypoint: gateway(d, f.get('waypoint'), at('waypoint')),
    node: d.string(f.get('node'), at('node')),
    canonicalName: d.string(f.get('canonicalName'), at('canonicalName')),
    canonicalRevision: d.string(f.get('canonicalRevision'), at('canonicalRevision')),
    workloadType: workloadType(d, f.get('workloadType'), at('workloadType')),
    workloadName: d.string(f.get('workloadName'), at('workloadName')),
    services,
    authorizationPolicies: d
      .list(f.get('authorizationPolicies'), at('authorizationPolicies'))
      .map((n, i) => d.string(n, join(at('authorizationPolicies'), i))),
    healthy: d.oneOf(f.get('status'), at('status'), ['Healthy', 'Unhealthy'], 'Healthy') === 'Healthy',
    clusterId: d.string(f.get('clusterId'), at('clusterId')) || 'Kubernetes',
    capacity: d.integer(f.get('capacity'), at('capacity'), 0, 2 ** 32 - 1, 1),
  };
}

function workloadType(d: YamlDecoder, node: YamlNode | undefined, path: string): WorkloadType {
  const v = d.oneOf(
    node,
    path,
    ['deployment', 'cronjob', 'pod', 'job', 'Deployment', 'CronJob', 'Pod', 'Job'],
    'pod',
  );
  return v.toLowerCase() as WorkloadType;
}

function service(d: YamlDecoder, node: YamlNode, path: string): Service {
  const f = d.map(node, path, SERVICE_FIELDS) ?? new Map<string, YamlNode>();
  const at = (k: string) => join(path, k);
  const hostname = d.requiredString(f.get('hostname'), at('hostname'), node);
  const vips = d.list(f.get('vips'), at('vips')).map((n, i) => networkAddress(d, n, join(at('vips'), i)));
  const subjectAltNames = d.list(f.get('subjectAltNames'), at('subjectAltNames')).map((n, i) => {
    const p = join(at('subjectAltNames'), i);
    const v = d.string(n, p);
    const r = parseSpiffe(v);
    if (!r.ok) d.error(n, p, r.error);
    return v;
  });
  return {
    name: d.string(f.get('name'), at('name')) || hostname.split('.')[0]!,
    namespace: d.requiredString(f.get('namespace'), at('namespace'), node),
    hostname,
    vips,
    ports: portMap(d, f.get('ports'), at('ports')),
    subjectAltNames,
    waypoint: gateway(d, f.get('waypoint'), at('waypoint')),
  };
}

function policy(d: YamlDecoder, node: YamlNode, path: string): Authorization {
  const f = d.map(node, path, POLICY_FIELDS) ?? new Map<string, YamlNode>();
  const at = (k: string) => join(path, k);
  const rules = d
    .list(f.get('rules'), at('rules'))
    .map((rule, r) =>
      d
        .list(rule, join(at('rules'), r))
        .map((clause, c) =>
          d
            .list(clause, `${join(at('rules'), r)}[${c}]`)
            .map((m, i) => match(d, m, `${join(at('rules'), r)}[${c}][${i}]`)),
        ),
    );
  return {
    name: d.requiredString(f.get('name'), at('name'), node),
    namespace: d.string(f.get('namespace'), at('namespace')),
    scope: d.oneOf(
      f.get('scope'),
      at('scope'),
      [PolicyScope.Global, PolicyScope.Namespace, PolicyScope.WorkloadSelector],
      PolicyScope.WorkloadSelector,
    ),
    action: d.oneOf(
      f.get('action'),
      at('action'),
      [PolicyAction.Allow, PolicyAction.Deny],
      PolicyAction.Allow,
    ),
    rules,
    dryRun: d.bool(f.get('dryRun'), at('dryRun'), false),
  };
}

function match(d: YamlDecoder, node: YamlNode, path: string): Match {
  const f = d.map(node, path, MATCH_FIELDS) ?? new Map<string, YamlNode>();
  const strings = (k: string) =>
    d.list(f.get(k), join(path, k)).map((n, i) => stringMatch(d, n, join(join(path, k), i)));
  const cidrs = (k: string) =>
    d.list(f.get(k), join(path, k)).map((n, i) => cidr(d, n, join(join(path, k), i)));
  const ports = (k: string) =>
    d.list(f.get(k), join(path, k)).map((n, i) => d.integer(n, join(join(path, k), i), 0, 65535, 0));
  const sas = (k: string) =>
    d.list(f.get(k), join(path, k)).map((n, i) => serviceAccount(d, n, join(join(path, k), i)));
  return {
    namespaces: strings('namespaces'),
    notNamespaces: strings('notNamespaces'),
    serviceAccounts: sas('serviceAccounts'),
    notServiceAccounts: sas('notServiceAccounts'),
    principals: strings('principals'),
    notPrincipals: strings('notPrincipals'),
    sourceIps: cidrs('sourceIps'),
    notSourceIps: cidrs('notSourceIps'),
    destinationIps: cidrs('destinationIps'),
    notDestinationIps: cidrs('notDestinationIps'),
    destinationPorts: ports('destinationPorts'),
    notDestinationPorts: ports('notDestinationPorts'),
  };
}

/** `{Exact: x}`, `{Prefix: x}`, `{Suffix: x}` or `Presence`, as ztunnel's LocalConfig writes them. */
function stringMatch(d: YamlDecoder, node: YamlNode, path: string): StringMatch {
  if (isScalar(node) && node.value === 'Presence') return { kind: 'presence' };
  const f = d.map(node, path, ['Exact', 'Prefix', 'Suffix', 'Presence']);
  if (!f) return { kind: 'exact', value: '' };
  if (f.size !== 1) {
    d.error(node, path, 'must have exactly one of Exact, Prefix, Suffix, Presence');
    return { kind: 'exact', value: '' };
  }
  const [kind, value] = [...f.entries()][0]!;
  if (kind === 'Presence') return { kind: 'presence' };
  return {
    kind: kind.toLowerCase() as 'exact' | 'prefix' | 'suffix',
    value: d.string(value, join(path, kind)),
  };
}

function serviceAccount(d: YamlDecoder, node: YamlNode, path: string): ServiceAccountMatch {
  const f = d.map(node, path, ['namespace', 'serviceAccount']) ?? new Map<string, YamlNode>();
  return {
    namespace: d.requiredString(f.get('namespace'), join(path, 'namespace'), node),
    serviceAccount: d.requiredString(f.get('serviceAccount'), join(path, 'serviceAccount'), node),
  };
}

function portMap(d: YamlDecoder, node: YamlNode | undefined, path: string): PortMap {
  const out = new Map<number, number>();
  for (const [key, value, keyNode] of d.entries(node, path)) {
    const p = join(path, key);
    if (!/^\d+$/.test(key) || Number(key) < 1 || Number(key) > 65535) {
      d.error(keyNode, p, 'service port must be an integer from 1 to 65535');
      continue;
    }
    out.set(Number(key), d.integer(value, p, 1, 65535, Number(key)));
  }
  return out;
}

function ip(d: YamlDecoder, node: YamlNode, path: string): string {
  const v = d.string(node, path);
  if (!isIP(v)) d.error(node, path, `"${v}" is not an IP address`);
  return v;
}

/** `network/IP`, with a leading `/` for the default network. */
function networkAddress(d: YamlDecoder, node: YamlNode, path: string): NetworkAddress {
  const v = d.string(node, path);
  const slash = v.lastIndexOf('/');
  const address = slash >= 0 ? v.slice(slash + 1) : v;
  if (!isIP(address)) d.error(node, path, `"${v}" is not "network/IP"`);
  return { network: slash >= 0 ? v.slice(0, slash) : '', address };
}

function cidr(d: YamlDecoder, node: YamlNode, path: string): Cidr {
  const v = d.string(node, path);
  const c = parseCidr(v);
  if (!c) d.error(node, path, `"${v}" is not an IP address or CIDR`);
  return c ?? { address: v, prefixLength: 0 };
}

function gateway(d: YamlDecoder, node: YamlNode | undefined, path: string): GatewayAddress | undefined {
  if (node === undefined) return undefined;
  const f = d.map(node, path, ['destination', 'hboneMtlsPort']);
  if (!f) return undefined;
  const dest = f.get('destination');
  const hboneMtlsPort = d.integer(f.get('hboneMtlsPort'), join(path, 'hboneMtlsPort'), 1, 65535, 15008);
  if (isScalar(dest)) {
    const a = networkAddress(d, dest, join(path, 'destination'));
    return { destination: { kind: 'address', ...a }, hboneMtlsPort };
  }
  const h = d.map(dest, join(path, 'destination'), ['namespace', 'hostname']);
  if (!h) return undefined;
  return {
    destination: {
      kind: 'hostname',
      namespace: d.requiredString(h.get('namespace'), join(path, 'destination.namespace'), dest),
      hostname: d.requiredString(h.get('hostname'), join(path, 'destination.hostname'), dest),
    },
    hboneMtlsPort,
  };
}

/** Checks across objects: unique uids and addresses. */
function crossCheck(
  d: YamlDecoder,
  nodes: { workloads: YamlNode[]; services: YamlNode[]; policies: YamlNode[] },
  workloads: readonly Workload[],
  services: readonly Service[],
  policies: readonly Authorization[],
): void {
  const wlNodes = nodes.workloads;
  const uids = new Map<string, number>();
  const ips = new Map<string, number>();
  workloads.forEach((w, i) => {
    const prev = uids.get(w.uid);
    if (prev !== undefined)
      d.error(wlNodes[i], join('workloads', i), `uid "${w.uid}" is also used by workloads[${prev}]`);
    uids.set(w.uid, i);
    for (const a of w.addresses) {
      const k = `${w.network}/${a}`;
      const p = ips.get(k);
      if (p !== undefined)
        d.error(
          wlNodes[i],
          join(join('workloads', i), 'workloadIps'),
          `${a} is also used by workloads[${p}]`,
        );
      ips.set(k, i);
    }
  });
  const svcNodes = nodes.services;
  const hosts = new Map<string, number>();
  services.forEach((s, i) => {
    const k = `${s.namespace}/${s.hostname}`;
    const p = hosts.get(k);
    if (p !== undefined)
      d.error(svcNodes[i], join('services', i), `service ${k} is also defined by services[${p}]`);
    hosts.set(k, i);
  });
  const polNodes = nodes.policies;
  const names = new Map<string, number>();
  policies.forEach((p, i) => {
    const k = `${p.namespace}/${p.name}`;
    const prev = names.get(k);
    if (prev !== undefined)
      d.error(polNodes[i], join('policies', i), `policy ${k} is also defined by policies[${prev}]`);
    names.set(k, i);
  });
}
