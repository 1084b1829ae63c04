/**
 * Istio `networking.istio.io` Gateways and the VirtualServices bound to them (`gateways: [<name>]`
 * or `[<namespace>/<name>]`) → the listeners and route configurations of ingress gateway proxies
 * (issue 8), as istiod builds a gateway's (pilot/pkg/networking/core/gateway.go). Pure.
 *
 * - Gateways are grouped by selector (l7-names.ts `gatewayGroup`); a group is what one gateway
 *   deployment serves. Within a group, servers are taken in creation order: all plaintext HTTP
 *   servers of a port are merged into one route configuration `http.<port>`, as istiod merges them;
 *   each TLS-terminating server (HTTPS, SIMPLE or MUTUAL) gets its own, `https.<port>.<portName>.
 *   <gateway>.<namespace>`, chosen by SNI among the servers of its port.
 * - Conflicts are rejected naming both servers: a port served as plaintext HTTP by one server and
 *   as HTTPS by another, or two HTTPS servers for the same host on one port. The later server is
 *   ignored (the first keeps serving), as istiod ignores the conflicting one.
 * - Virtual hosts: one per host, the intersection of a server host (`ns/host`, whose namespace part
 *   limits which VirtualServices may bind) with each bound VirtualService's hosts, `*.` wildcards
 *   included; its routes are the VirtualServices' http rules, merged in creation order by the same
 *   route builder as the mesh's (routes.ts), match blocks with their own `gateways` kept only where
 *   they name this gateway. A server with `tls.httpsRedirect` answers every request with a 301 to
 *   https instead (istiod's `require_tls: ALL`).
 * - TCP servers, and TLS servers that terminate, route connections by the bound VirtualServices'
 *   `tcp` rules (the first that applies on the port); TLS PASSTHROUGH servers route them on SNI by
 *   their `tls` rules (`match[].sniHosts`), without terminating: listeners with a tcp_proxy filter
 *   chain (weighted clusters for a split), as the waypoint's TCP ports have. A port serves one kind:
 *   plaintext HTTP, TLS terminated (HTTPS and TLS together, by SNI), plaintext TCP, or passthrough;
 *   a server of another kind on it is a conflict. ISTIO_MUTUAL servers terminate with the gateway's own
 *   mesh certificate and ask clients for theirs (the mesh CA's, SPIFFE SANs); AUTO_PASSTHROUGH and
 *   OPTIONAL_MUTUAL servers are reported as not served yet.
 *
 * The server facts the proxy needs besides HTTP routing (port, SNI hosts, certificate files) ride
 * in each listener's metadata (l7-names.ts GATEWAY_METADATA_FILTER).
 */
import {
  GATEWAY_METADATA_FILTER,
  gatewayGroup,
  gatewayResourceName,
  type GatewayListenerFacts,
  type GatewayTlsFacts,
} from '../../../core/xds/l7-names.ts';
import { compare } from '../common.ts';
import type { IstioGateway, IstioGatewayServer } from '../kube-types.ts';
import type { Listener, Route, RouteConfiguration, VirtualHost } from './envoy-types.ts';
import { httpListener, tcpListener, type TcpTarget } from './listeners.ts';
import { buildHttpRoutes, usesCors, type RouteEnv } from './routes.ts';
import { byCreation } from './select.ts';
import type { L4Match, L7Problem, RouteDestination, VirtualService } from './types.ts';
import { hostMatches, resolveHost } from './values.ts';

export interface GatewayInput {
  /** Decoded and valid (gateway-decode.ts). */
  readonly gateways: readonly IstioGateway[];
  readonly virtualServices: readonly VirtualService[];
}

export interface GatewayResult {
  readonly listeners: readonly Listener[];
  readonly routeConfigurations: readonly RouteConfiguration[];
  readonly problems: readonly L7Problem[];
}

const HTTP_PROTOCOLS = ['HTTP', 'HTTP2', 'GRPC', 'GRPC-WEB'];

/** One server of a Gateway, with where it was written. */
interface ServerRef {
  readonly gateway: IstioGateway;
  readonly server: IstioGatewayServer;
  readonly index: number;
}

const describe = (s: ServerRef) =>
  `Gateway ${s.gateway.namespace}/${s.gateway.name} spec.servers[${s.index}]`;
const gatewayKey = (g: IstioGateway) => `${g.namespace}/${g.name}`;

export function translateIstioGateways(
  input: GatewayInput,
  env: RouteEnv,
  clusterDomain: string,
): GatewayResult {
  const problems: L7Problem[] = [];
  const report = (g: IstioGateway, severity: L7Problem['severity'], path: string, message: string) =>
    problems.push({ severity, kind: 'Gateway', namespace: g.namespace, name: g.name, path, message });
  const listeners: Listener[] = [];
  const routeConfigurations: RouteConfiguration[] = [];

  const groups = new Map<string, IstioGateway[]>();
  for (const g of [...input.gateways].sort(byCreation)) {
    const key = gatewayGroup(g.selector);
    const list = groups.get(key);
    if (list) list.push(g);
    else groups.set(key, [g]);
  }

  for (const [group, gateways] of [...groups].sort((a, b) => compare(a[0], b[0]))) {
    const http = new Map<number, ServerRef[]>();
    const https = new Map<number, ServerRef[]>();
    const tcp = new Map<number, ServerRef[]>();
    const passthrough = new Map<number, ServerRef[]>();
    const byClass: Record<PortClass, Map<number, ServerRef[]>> = { http, tls: https, tcp, passthrough };
    const tlsHosts = new Map<string, ServerRef>();
    for (const gateway of gateways)
      gateway.servers.forEach((server, index) => {
        const ref: ServerRef = { gateway, server, index };
        const p = `spec.servers[${index}]`;
        const port = server.port.number;
        const cls = portClass(server);
        if (typeof cls !== 'string') {
          report(gateway, 'warning', `${p}.${cls.path}`, `${cls.message}; this server is ignored`);
          return;
        }
        for (const [other, map] of Object.entries(byClass)) {
          const clash = other === cls ? undefined : map.get(port)?.[0];
          if (!clash) continue;
          report(
            gateway,
            'error',
            `${p}.port.number`,
            `port ${port} is already served as ${describeClass(clash.server)} by ${describe(clash)}; ${describe(ref)} (${describeClass(server)}) conflicts with it and is ignored`,
          );
          return;
        }
        if (cls === 'tls' || cls === 'passthrough') {
          for (const [i, host] of server.hosts.entries()) {
            const taken = tlsHosts.get(`${port}|${dnsOf(host)}`);
            if (taken) {
              report(
                gateway,
                'error',
                `${p}.hosts[${i}]`,
                `host "${dnsOf(host)}" on port ${port} is already served by ${describe(taken)}; ${describe(ref)} conflicts with it (two TLS servers cannot share a host on one port) and is ignored`,
              );
              return;
            }
          }
          for (const host of server.hosts) tlsHosts.set(`${port}|${dnsOf(host)}`, ref);
        }
        if (cls === 'tcp' && tcp.has(port)) {
          report(
            gateway,
            'warning',
            `${p}.port.number`,
            `port ${port} is already a TCP server of ${describe(tcp.get(port)![0]!)}, whose routes it takes; ${describe(ref)} adds nothing (a TCP port has no host to tell servers apart)`,
          );
          return;
        }
        const list = byClass[cls].get(port);
        if (list) list.push(ref);
        else byClass[cls].set(port, [ref]);
      });

    for (const [port, servers] of http) {
      const name = gatewayResourceName(group, `http.${port}`);
      const hosts = [...new Set(servers.flatMap((s) => s.server.hosts.map(dnsOf)))];
      const vhosts = virtualHosts(servers, port, input.virtualServices, env, clusterDomain);
      routeConfigurations.push({ name, virtual_hosts: vhosts });
      listeners.push(
        gatewayListener(name, vhosts, {
          port,
          protocol: 'HTTP',
          hosts,
          servers: servers.map(describe),
          tls: undefined,
        }),
      );
    }
    for (const [port, servers] of https)
      for (const s of servers) {
        if (s.server.port.protocol === 'TLS') {
          const l = tcpServerListener(group, s, port, input.virtualServices, env, clusterDomain, report);
          if (l) listeners.push(l);
          continue;
        }
        const g = s.gateway;
        const name = gatewayResourceName(
          group,
          `https.${port}.${s.server.port.name}.${g.name}.${g.namespace}${countSame(servers, s) > 1 ? `.${s.index}` : ''}`,
        );
        const vhosts = virtualHosts([s], port, input.virtualServices, env, clusterDomain);
        const tls = s.server.tls!;
        routeConfigurations.push({ name, virtual_hosts: vhosts });
        listeners.push(
          gatewayListener(name, vhosts, {
            port,
            protocol: 'HTTPS',
            hosts: s.server.hosts.map(dnsOf),
            servers: [describe(s)],
            tls: tlsFacts(tls),
          }),
        );
      }
    for (const [port, servers] of tcp) {
      const l = tcpServerListener(
        group,
        servers[0]!,
        port,
        input.virtualServices,
        env,
        clusterDomain,
        report,
      );
      if (l) listeners.push(l);
    }
    for (const [port, servers] of passthrough)
      listeners.push(
        ...passthroughListeners(group, servers, port, input.virtualServices, env, clusterDomain),
      );
  }
  return {
    listeners: listeners.sort((a, b) => compare(a.name, b.name)),
    routeConfigurations: routeConfigurations.sort((a, b) => compare(a.name, b.name)),
    problems,
  };
}

/**
 * What a server makes of its port: plaintext HTTP (merged), TLS terminated (HTTPS, or TLS with TCP
 * routes; chosen by SNI), plaintext TCP, or TLS passthrough (routed on SNI, not terminated). One port
 * is one of them. What the gateway does not serve yet, with the field to blame.
 */
function portClass(server: IstioGatewayServer): PortClass | { path: string; message: string } {
  const protocol = server.port.protocol;
  const mode = server.tls?.mode || 'SIMPLE';
  if (HTTP_PROTOCOLS.includes(protocol)) return 'http';
  if (protocol === 'TCP') return 'tcp';
  if (protocol !== 'HTTPS' && protocol !== 'TLS')
    return { path: 'port.protocol', message: `${protocol} servers are not served by Ambit's gateway yet` };
  if (protocol === 'TLS' && mode === 'PASSTHROUGH') return 'passthrough';
  if (mode === 'SIMPLE' || mode === 'MUTUAL' || mode === 'ISTIO_MUTUAL') return 'tls';
  return {
    path: 'tls.mode',
    message: `${mode} is not served by Ambit's gateway yet (SIMPLE, MUTUAL, ISTIO_MUTUAL and, on TLS servers, PASSTHROUGH are)`,
  };
}

type PortClass = 'http' | 'tls' | 'tcp' | 'passthrough';

function describeClass(server: IstioGatewayServer): string {
  return server.port.protocol === 'TLS' ? `TLS ${server.tls?.mode || 'SIMPLE'}` : server.port.protocol;
}

function tlsFacts(tls: NonNullable<IstioGatewayServer['tls']>): GatewayTlsFacts {
  return {
    mode: tls.mode || 'SIMPLE',
    serverCertificate: tls.serverCertificate,
    privateKey: tls.privateKey,
    caCertificates: tls.caCertificates,
    credentialName: tls.credentialName,
    subjectAltNames: tls.subjectAltNames,
    minProtocolVersion: tls.minProtocolVersion,
    maxProtocolVersion: tls.maxProtocolVersion,
  };
}

/** The VirtualServices bound to the server's Gateway whose hosts meet its hosts (`ns/` part honoured). */
function boundTo(s: ServerRef, virtualServices: readonly VirtualService[], clusterDomain: string) {
  const key = gatewayKey(s.gateway);
  return [...virtualServices]
    .sort(byCreation)
    .filter(
      (vs) =>
        vs.gateways.some((ref) => ref !== 'mesh' && qualify(ref, vs.namespace) === key) &&
        s.server.hosts.some(
          (h) =>
            namespaceAllowed(h, s.gateway, vs.namespace) &&
            vs.hosts.some(
              (v) => intersect(resolveHost(v, vs.namespace, clusterDomain), dnsOf(h)) !== undefined,
            ),
        ),
    );
}

/**
 * Whether an L4 match block applies on a gateway's `port`: its port (if any) is that one, its own
 * `gateways` (if any) name this Gateway; source labels, namespaces and destination subnets cannot be
 * told at the gateway, so such a block does not apply.
 */
function l4Applies(m: L4Match, s: ServerRef, vs: VirtualService, port: number): boolean {
  return (
    (m.port === undefined || m.port === port) &&
    (m.gateways.length === 0 || m.gateways.some((g) => qualify(g, vs.namespace) === gatewayKey(s.gateway))) &&
    Object.keys(m.sourceLabels).length === 0 &&
    m.sourceNamespace === '' &&
    m.destinationSubnets.length === 0
  );
}

/** A rule's destinations as a tcp_proxy target: one cluster, or the weighted ones. */
function targetOf(
  vs: VirtualService,
  route: readonly RouteDestination[],
  port: number,
  path: string,
  env: RouteEnv,
): TcpTarget {
  const clusters = route
    .map((d, j) => ({ d, cluster: env.resolve(vs, d.destination, port, `${path}.route[${j}].destination`) }))
    .filter(({ d }) => route.length === 1 || d.weight > 0);
  if (clusters.length === 1) return { cluster: clusters[0]!.cluster.name };
  return { weightedClusters: clusters.map(({ d, cluster }) => ({ name: cluster.name, weight: d.weight })) };
}

/**
 * A TCP server, or a TLS server that terminates: the first `tcp` rule of the bound VirtualServices
 * (creation order) whose match applies, as istiod picks a gateway's TCP route. None: the server is
 * reported and its connections refused (no listener).
 */
function tcpServerListener(
  group: string,
  s: ServerRef,
  port: number,
  virtualServices: readonly VirtualService[],
  env: RouteEnv,
  clusterDomain: string,
  report: (g: IstioGateway, severity: L7Problem['severity'], path: string, message: string) => void,
): Listener | undefined {
  for (const vs of boundTo(s, virtualServices, clusterDomain))
    for (const [i, rule] of vs.tcp.entries()) {
      if (rule.match.length > 0 && !rule.match.some((m) => l4Applies(m, s, vs, port))) continue;
      const g = s.gateway;
      const tls = s.server.port.protocol === 'TLS';
      const name = gatewayResourceName(
        group,
        `${tls ? 'tls' : 'tcp'}.${port}.${s.server.port.name}.${g.name}.${g.namespace}`,
      );
      return factsListener(
        tcpListener(name, [], port, targetOf(vs, rule.route, port, `spec.tcp[${i}]`, env), undefined),
        {
          port,
          protocol: tls ? 'TLS' : 'TCP',
          hosts: s.server.hosts.map(dnsOf),
          servers: [describe(s)],
          tls: tls ? tlsFacts(s.server.tls!) : undefined,
        },
      );
    }
  report(
    s.gateway,
    'warning',
    `spec.servers[${s.index}]`,
    `no VirtualService bound to ${describe(s)} has a tcp route for port ${port}: its connections are refused`,
  );
  return undefined;
}

/**
 * PASSTHROUGH servers of a port: one listener per `tls` rule of the bound VirtualServices, for the
 * SNI hosts its matches name within the server's hosts (a host already routed by an earlier rule
 * stays with it), routed on SNI without terminating — istiod's filter chain per tls route.
 */
function passthroughListeners(
  group: string,
  servers: readonly ServerRef[],
  port: number,
  virtualServices: readonly VirtualService[],
  env: RouteEnv,
  clusterDomain: string,
): Listener[] {
  const out: Listener[] = [];
  const taken = new Set<string>();
  for (const s of servers)
    for (const vs of boundTo(s, virtualServices, clusterDomain))
      for (const [i, rule] of vs.tls.entries()) {
        const hosts: string[] = [];
        for (const m of rule.match) {
          if (!l4Applies(m, s, vs, port)) continue;
          for (const sni of m.sniHosts)
            for (const h of s.server.hosts) {
              const host = intersect(sni, dnsOf(h));
              if (host !== undefined && !taken.has(host) && !hosts.includes(host)) hosts.push(host);
            }
        }
        if (hosts.length === 0) continue;
        for (const h of hosts) taken.add(h);
        const name = gatewayResourceName(group, `tls.${port}.${vs.namespace}.${vs.name}.${i}`);
        out.push(
          factsListener(
            tcpListener(name, [], port, targetOf(vs, rule.route, port, `spec.tls[${i}]`, env), undefined),
            {
              port,
              protocol: 'TLS',
              hosts,
              servers: [describe(s)],
              tls: { ...tlsFacts(s.server.tls!), mode: 'PASSTHROUGH' },
            },
          ),
        );
      }
  return out;
}

/** Servers of one gateway on one port with the same port name (their route names need the index). */
function countSame(servers: readonly ServerRef[], s: ServerRef): number {
  return servers.filter((o) => o.gateway === s.gateway && o.server.port.name === s.server.port.name).length;
}

/** `<namespace>/<name>` of a VirtualService's gateway reference. */
function qualify(ref: string, namespace: string): string {
  return ref.includes('/') ? ref : `${namespace}/${ref}`;
}

/** The host name part of a server host (`ns/host` → `host`). */
function dnsOf(host: string): string {
  const slash = host.indexOf('/');
  return slash < 0 ? host : host.slice(slash + 1);
}

/** Whether a server host lets a VirtualService of `namespace` bind (`*`, `.` = the Gateway's, or named). */
function namespaceAllowed(host: string, gateway: IstioGateway, namespace: string): boolean {
  const slash = host.indexOf('/');
  if (slash < 0) return true;
  const ns = host.slice(0, slash);
  return ns === '*' || (ns === '.' ? gateway.namespace : ns) === namespace;
}

/**
 * The more specific of two hosts when one covers the other (a name over a wildcard, the longer
 * wildcard over the shorter), else undefined.
 */
export function intersect(a: string, b: string): string | undefined {
  if (a === b) return a;
  if (!hostMatches(a, b)) return undefined;
  const wildA = a.startsWith('*');
  if (wildA !== b.startsWith('*')) return wildA ? b : a;
  return a.length >= b.length ? a : b;
}

const REDIRECT_ROUTE: Route = {
  name: 'https-redirect',
  match: { prefix: '/' },
  redirect: { scheme_redirect: 'https', response_code: 'MOVED_PERMANENTLY' },
};

/** The virtual hosts of `servers` (all on `port`): per host, the bound VirtualServices' routes. */
function virtualHosts(
  servers: readonly ServerRef[],
  port: number,
  virtualServices: readonly VirtualService[],
  env: RouteEnv,
  clusterDomain: string,
): VirtualHost[] {
  const byHost = new Map<string, { vss: VirtualService[]; gateways: Set<string>; redirect: boolean }>();
  const entry = (host: string) => {
    let e = byHost.get(host);
    if (!e) byHost.set(host, (e = { vss: [], gateways: new Set(), redirect: false }));
    return e;
  };
  for (const s of servers) {
    const key = gatewayKey(s.gateway);
    if (s.server.tls?.httpsRedirect && s.server.port.protocol !== 'HTTPS') {
      for (const h of s.server.hosts) entry(dnsOf(h)).redirect = true;
      continue;
    }
    for (const vs of virtualServices) {
      if (!vs.gateways.some((ref) => ref !== 'mesh' && qualify(ref, vs.namespace) === key)) continue;
      for (const serverHost of s.server.hosts) {
        if (!namespaceAllowed(serverHost, s.gateway, vs.namespace)) continue;
        for (const vsHost of vs.hosts) {
          const host = intersect(resolveHost(vsHost, vs.namespace, clusterDomain), dnsOf(serverHost));
          if (host === undefined) continue;
          const e = entry(host);
          if (!e.vss.includes(vs)) e.vss.push(vs);
          e.gateways.add(key);
        }
      }
    }
  }
  const out: VirtualHost[] = [];
  for (const [host, e] of [...byHost].sort((a, b) => compare(a[0], b[0]))) {
    const routes = e.redirect
      ? [REDIRECT_ROUTE]
      : buildHttpRoutes(e.vss.sort(byCreation), port, env, (gateways, vs) =>
          gateways.some((ref) => e.gateways.has(qualify(ref, vs.namespace))),
        );
    out.push({ name: `${host}:${port}`, domains: host === '*' ? ['*'] : [host, `${host}:*`], routes });
  }
  return out;
}

/** An API listener on RDS `name`, with the server facts in its metadata. */
function gatewayListener(
  name: string,
  vhosts: readonly VirtualHost[],
  facts: GatewayListenerFacts,
): Listener {
  return factsListener(
    {
      ...httpListener(
        name,
        vhosts.some((v) => usesCors(v.routes)),
      ),
      address: { socket_address: { address: '0.0.0.0', port_value: facts.port } },
    },
    facts,
  );
}

/** A listener with the server facts in its metadata. */
function factsListener(listener: Listener, facts: GatewayListenerFacts): Listener {
  return {
    ...listener,
    metadata: { filter_metadata: { [GATEWAY_METADATA_FILTER]: toStruct(facts) } },
  } as Listener;
}

/** google.protobuf.Value, as protobufjs objects write it (its built-in struct.proto is camelCase). */
type StructValue =
  | { nullValue: 'NULL_VALUE' }
  | { stringValue: string }
  | { numberValue: number }
  | { boolValue: boolean }
  | { listValue: { values: StructValue[] } }
  | { structValue: { fields: Record<string, StructValue> } };

/** A plain object as a google.protobuf.Struct (undefined fields left out). */
export function toStruct(obj: object): { fields: Record<string, StructValue> } {
  const fields: Record<string, StructValue> = {};
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) fields[k] = toValue(v);
  return { fields };
}

function toValue(v: unknown): StructValue {
  if (v === null) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v as object) };
}
