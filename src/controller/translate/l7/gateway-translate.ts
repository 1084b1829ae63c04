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
 * - TCP, TLS passthrough and ISTIO_MUTUAL servers are reported as not served yet.
 *
 * The server facts the proxy needs besides HTTP routing (port, SNI hosts, certificate files) ride
 * in each listener's metadata (l7-names.ts GATEWAY_METADATA_FILTER).
 */
import {
  GATEWAY_METADATA_FILTER,
  gatewayGroup,
  gatewayResourceName,
  type GatewayListenerFacts,
} from '../../../core/xds/l7-names.ts';
import { compare } from '../common.ts';
import type { IstioGateway, IstioGatewayServer } from '../kube-types.ts';
import type { Listener, Route, RouteConfiguration, VirtualHost } from './envoy-types.ts';
import { httpListener } from './listeners.ts';
import { buildHttpRoutes, usesCors, type RouteEnv } from './routes.ts';
import { byCreation } from './select.ts';
import type { L7Problem, VirtualService } from './types.ts';
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
    const tlsHosts = new Map<string, ServerRef>();
    for (const gateway of gateways)
      gateway.servers.forEach((server, index) => {
        const ref: ServerRef = { gateway, server, index };
        const p = `spec.servers[${index}]`;
        const port = server.port.number;
        const protocol = server.port.protocol;
        const mode = server.tls?.mode || 'SIMPLE';
        if (!HTTP_PROTOCOLS.includes(protocol) && protocol !== 'HTTPS') {
          report(
            gateway,
            'warning',
            `${p}.port.protocol`,
            `${protocol} servers are not served by Ambit's gateway yet; this server is ignored`,
          );
          return;
        }
        if (protocol === 'HTTPS' && mode !== 'SIMPLE' && mode !== 'MUTUAL') {
          report(
            gateway,
            'warning',
            `${p}.tls.mode`,
            `${mode} is not served by Ambit's gateway yet (SIMPLE and MUTUAL are); this server is ignored`,
          );
          return;
        }
        const mine = protocol === 'HTTPS' ? https : http;
        const other = protocol === 'HTTPS' ? http : https;
        const clash = other.get(port)?.[0];
        if (clash) {
          report(
            gateway,
            'error',
            `${p}.port.number`,
            `port ${port} is already served as ${clash.server.port.protocol} by ${describe(clash)}; ${describe(ref)} (${protocol}) conflicts with it and is ignored`,
          );
          return;
        }
        if (protocol === 'HTTPS') {
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
        const list = mine.get(port);
        if (list) list.push(ref);
        else mine.set(port, [ref]);
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
            tls: {
              mode: tls.mode || 'SIMPLE',
              serverCertificate: tls.serverCertificate,
              privateKey: tls.privateKey,
              caCertificates: tls.caCertificates,
              credentialName: tls.credentialName,
              subjectAltNames: tls.subjectAltNames,
              minProtocolVersion: tls.minProtocolVersion,
              maxProtocolVersion: tls.maxProtocolVersion,
            },
          }),
        );
      }
  }
  return {
    listeners: listeners.sort((a, b) => compare(a.name, b.name)),
    routeConfigurations: routeConfigurations.sort((a, b) => compare(a.name, b.name)),
    problems,
  };
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

/** The more specific of two hosts when one covers the other, else undefined. */
function intersect(a: string, b: string): string | undefined {
  if (a === b) return a;
  if (hostMatches(a, b)) return b;
  if (hostMatches(b, a)) return a;
  return undefined;
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
  return {
    ...httpListener(
      name,
      vhosts.some((v) => usesCors(v.routes)),
    ),
    address: { socket_address: { address: '0.0.0.0', port_value: facts.port } },
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
