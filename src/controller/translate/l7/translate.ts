/**
 * The controller's L7 translation: Services and ServiceEntries with their VirtualServices and
 * DestinationRules → the standard Envoy v3 resources that the waypoint and proxyless gRPC clients
 * consume (DESIGN.md §3 "L7 xDS"), named as src/core/xds/l7-names.ts says. Pure: data in, plain
 * objects (protobufjs shape, envoy-types.ts) and problems out; encode.ts makes bytes of them.
 *
 * Per port of every service (Kubernetes Service or ServiceEntry host) in `mesh.services`:
 * - HTTP ports (HTTP, HTTP2, gRPC, gRPC-Web, or a protocol left to sniffing, which waypoints treat as
 *   HTTP as Istio's do): Listener and RouteConfiguration `<host>:<port>`;
 * - other TCP ports: a Listener `<host>:<port>` with a tcp_proxy (listeners.ts);
 * - Cluster and ClusterLoadAssignment `outbound|<port>||<host>`, and `outbound|<port>|<subset>|<host>`
 *   for each subset of the service's DestinationRule, with its endpoints (the workloads whose
 *   `services` map names the service and port, filtered by the subset's labels).
 *
 * Endpoints come from the workload translation's output (`mesh`, what translate() returned for the
 * same snapshot); only their labels, which the workload API does not carry, are read from the
 * snapshot (pods, and ServiceEntry endpoints).
 *
 * A route to a host, port or subset that does not exist is kept, as in Istio, and the request gets a
 * 503: the cluster it names is served empty (rather than missing, which would leave gRPC clients
 * waiting for it), and a warning names the destination's field path.
 *
 * Gateway API HTTPRoutes whose parentRef is a Kubernetes Service (GAMMA producer routes: the route
 * lives in the Service's namespace) route that Service's HTTP ports — the port the parentRef names
 * (`port` or `sectionName`), else every port — into the same RouteConfiguration (http-routes.ts).
 * Where an HTTPRoute applies to a port, VirtualServices for the same service do not apply on that
 * port, and each is told so in a warning. Istio calls mixing the two for one service undefined
 * behaviour (istio-api.md §0, "Mixing VirtualService and HTTPRoute for the same workload is not
 * supported"), rates HTTPRoute GA on waypoints and VirtualService alpha, recommends Gateway API
 * first, and documents VirtualService on waypoints as usable "as long as the configured hosts do not
 * conflict with the parentRefs of any Gateway API route": so the GA API wins, whole, rather than
 * the rules of both being interleaved. DestinationRule policies still apply to the clusters.
 */
import { clusterName, listenerName } from '../../../core/xds/l7-names.ts';
import { ipFamily } from '../../../core/ip.ts';
import {
  serviceKey,
  type MeshConfig,
  type PortMap,
  type Service,
  type Workload,
} from '../../../core/xds/model.ts';
import { compare, push, serviceHostname, type TranslateOptions } from '../common.ts';
import {
  selects,
  type KubeSnapshot,
  type Service as KubeService,
  type ServiceEntry,
  type ServicePort,
  type StringMap,
} from '../kube-types.ts';
import {
  buildCluster,
  withDefaultSans,
  buildLoadAssignment,
  type ClusterSpec,
  type EndpointSpec,
  type UpstreamProtocol,
} from './clusters.ts';
import type {
  Cluster,
  ClusterLoadAssignment,
  HashPolicy,
  Listener,
  RouteConfiguration,
} from './envoy-types.ts';
import { translateAuthz, type AuthzProblem, type AuthzService } from './authz.ts';
import { translateDirect, workloadWaypoints } from './direct.ts';
import { resolveGatewayPorts } from './gateway-ports.ts';
import { translateGatewayApi, type GatewayApiStatus } from './gateway-api-translate.ts';
import { translateIstioGateways } from './gateway-translate.ts';
import { asDnsCluster, dnsDiscovery, type DnsDiscovery } from './dns-clusters.ts';
import { httpListener, routeConfiguration, tcpListener, type TcpTarget } from './listeners.ts';
import { buildHttpRoutes, defaultRoute, usesCors, type ResolvedCluster, type RouteEnv } from './routes.ts';
import {
  effectivePolicy,
  NO_POLICY,
  selectDestinationRule,
  selectVirtualServices,
  type EffectivePolicy,
  type MergedDestinationRule,
  otherNamespaceSubsets,
} from './select.ts';
import { CORE_GROUP, GATEWAY_GROUP, type GatewayHttpRoute } from './http-route-types.ts';
import { buildGatewayRoutes, type AttachedRule, type HttpRouteEnv } from './http-routes.ts';
import type {
  Destination,
  DestinationRule,
  L4Match,
  L7Problem,
  RouteDestination,
  VirtualService,
} from './types.ts';
import { hostMatches, resolveHost } from './values.ts';

export interface L7Input {
  /** What the controller read: Service ports (names, appProtocol), ServiceEntry ports, and labels. */
  readonly snapshot: KubeSnapshot;
  /** translate()'s output for the same snapshot: services (hostnames, VIPs, ports) and workloads. */
  readonly mesh: MeshConfig;
  /** Decoded and valid (decode.ts); invalid ones are left out by the caller. */
  readonly virtualServices: readonly VirtualService[];
  readonly destinationRules: readonly DestinationRule[];
  /** Decoded and valid (decode-http-route.ts); absent: the snapshot's. */
  readonly httpRoutes?: readonly GatewayHttpRoute[];
  /**
   * `namespace/name` of every Secret the controller read, for the status of Gateway API listeners
   * (InvalidCertificateRef); absent: not checked.
   */
  readonly secrets?: ReadonlySet<string>;
  /**
   * Service key (`namespace/hostname`) → namespace of the waypoint that serves it, whose
   * VirtualServices also apply. Absent: the namespace of the service's `waypoint` when it names one
   * by hostname, else the service's own namespace.
   */
  readonly waypointNamespaces?: ReadonlyMap<string, string>;
}

/** Every resource, each list sorted by name. */
export interface L7Resources {
  readonly listeners: readonly Listener[];
  readonly routeConfigurations: readonly RouteConfiguration[];
  readonly clusters: readonly Cluster[];
  readonly clusterLoadAssignments: readonly ClusterLoadAssignment[];
}

export interface L7Result {
  readonly resources: L7Resources;
  /** Warnings found while translating (each once); decoding problems are decode.ts's. */
  readonly problems: readonly L7Problem[];
  /** Problems of the AuthorizationPolicies attached to waypoints (`targetRefs`, authz.ts). */
  readonly authzProblems: readonly AuthzProblem[];
  /** The status of Gateway API ingress Gateways and their routes (gateway-api-translate.ts). */
  readonly gatewayApiStatus: GatewayApiStatus;
}

/** How a port is carried: as HTTP (and then how upstream), or as TCP. */
export type PortProtocol = 'http1' | 'http2' | 'sniffed' | 'tcp';

interface PortInfo {
  readonly port: number;
  readonly protocol: PortProtocol;
}

interface ServiceInfo {
  readonly service: Service;
  readonly key: string;
  readonly source: Source;
  /** The names clients may use for it (without port): FQDN, short forms, VIPs. */
  readonly names: readonly string[];
  readonly ports: readonly PortInfo[];
  readonly virtualServices: readonly VirtualService[];
  readonly destinationRule: MergedDestinationRule | undefined;
}

interface ClusterEntry extends ClusterSpec {
  readonly endpoints: readonly EndpointSpec[];
  /** A ServiceEntry resolved by DNS: the endpoints go inline, by host name (dns-clusters.ts). */
  readonly dns?: DnsDiscovery;
}

export function translateL7(input: L7Input, options: TranslateOptions): L7Result {
  const problems = new Problems();
  const drProblems: L7Problem[] = [];
  const usedRules = new Set<DestinationRule>();
  const infos: ServiceInfo[] = [];
  const byHostname = new Map<string, ServiceInfo[]>();
  // Indexes, so that each service costs what its own namespace holds (10k services stay linear).
  const sources = sourceIndex(input.snapshot);
  const vsByNamespace = groupBy(input.virtualServices, (v) => v.namespace);
  const drByNamespace = groupBy(input.destinationRules, (d) => d.namespace);
  const rootRules = drByNamespace.get(options.rootNamespace) ?? [];
  for (const service of [...input.mesh.services].sort(
    (a, b) => compare(a.namespace, b.namespace) || compare(a.hostname, b.hostname),
  )) {
    const key = serviceKey(service);
    const source = sourceOf(service, sources, options);
    const ports = portsOf(service, source);
    const waypointNamespace =
      input.waypointNamespaces?.get(key) ??
      (service.waypoint?.destination.kind === 'hostname'
        ? service.waypoint.destination.namespace
        : service.namespace);
    const destinationRule = selectDestinationRule(
      service,
      service.namespace === options.rootNamespace
        ? rootRules
        : [...(drByNamespace.get(service.namespace) ?? []), ...rootRules],
      options.rootNamespace,
      options.clusterDomain,
      drProblems,
    );
    for (const rule of destinationRule?.rules ?? []) usedRules.add(rule);
    const info: ServiceInfo = {
      service,
      key,
      source,
      names: namesOf(service, source),
      ports,
      virtualServices: selectVirtualServices(
        service,
        waypointNamespace,
        waypointNamespace === service.namespace
          ? (vsByNamespace.get(service.namespace) ?? [])
          : [
              ...(vsByNamespace.get(service.namespace) ?? []),
              ...(vsByNamespace.get(waypointNamespace) ?? []),
            ],
        options.clusterDomain,
      ),
      destinationRule,
    };
    infos.push(info);
    const list = byHostname.get(service.hostname);
    if (list) list.push(info);
    else byHostname.set(service.hostname, [info]);
  }
  for (const p of drProblems) problems.add(p);

  // Every cluster the services define, with its endpoints.
  const labels = labelIndex(input.snapshot, options);
  const members = new Map<string, { workload: Workload; ports: PortMap }[]>();
  for (const workload of input.mesh.workloads)
    for (const [key, ports] of workload.services) {
      const list = members.get(key);
      if (list) list.push({ workload, ports });
      else members.set(key, [{ workload, ports }]);
    }
  const clusters = new Map<string, ClusterEntry>();
  for (const info of infos) {
    const own = info.destinationRule;
    const others = otherNamespaceSubsets(
      info.service,
      input.destinationRules,
      own,
      options.rootNamespace,
      options.clusterDomain,
    );
    for (const o of others) for (const r of o.rule.rules) usedRules.add(r);
    const dns = info.source?.kind === 'entry' ? dnsDiscovery(info.source.entry) : undefined;
    const subsets = [
      { subset: { name: '', labels: {} as StringMap }, rule: own },
      ...(own?.subsets ?? []).map((s) => ({ subset: s.subset, rule: own })),
      ...others.map((o) => ({ subset: o.subset.subset, rule: o.rule })),
    ];
    for (const { port, protocol } of info.ports)
      for (const { subset, rule } of subsets) {
        const name = clusterName(port, subset.name, info.service.hostname);
        if (clusters.has(name)) continue; // the same hostname in two namespaces: the first keeps it
        clusters.set(name, {
          name,
          policy: withDefaultSans(
            effectivePolicy(rule, port, subset.name),
            info.source?.kind === 'entry' ? info.source.entry.subjectAltNames : [],
          ),
          protocol: upstreamOf(protocol),
          endpoints: endpointsOf(members.get(info.key) ?? [], port, subset.labels, labels, dns !== undefined),
          ...(dns ? { dns } : {}),
        });
      }
  }

  const dangling = new Map<string, ClusterEntry>();
  const env: RouteEnv = {
    report: (vs, severity, path, message) =>
      problems.add({
        severity,
        kind: 'VirtualService',
        namespace: vs.namespace,
        name: vs.name,
        path,
        message,
      }),
    resolve: (vs, destination, listenerPort, path) =>
      resolve(vs, destination, listenerPort, path, byHostname, clusters, dangling, env, options),
  };

  const kubeInfos = new Map<string, ServiceInfo>();
  for (const info of infos)
    if (info.source?.kind === 'service')
      kubeInfos.set(`${info.source.service.namespace}/${info.source.service.name}`, info);
  const attached = attachHttpRoutes(input.httpRoutes ?? input.snapshot.httpRoutes, kubeInfos, problems);
  const gatewayEnv: HttpRouteEnv = {
    report: (route, severity, path, message) =>
      problems.add({
        severity,
        kind: 'HTTPRoute',
        namespace: route.namespace,
        name: route.name,
        path,
        message,
      }),
    service: (ref) => {
      const info = kubeInfos.get(`${ref.namespace}/${ref.name}`);
      if (info === undefined)
        return { problem: `Service ${ref.namespace}/${ref.name} is not in the mesh`, field: 'name' };
      const name = clusterName(ref.port ?? 0, '', info.service.hostname);
      const found = clusters.get(name);
      if (found === undefined)
        return {
          problem: `${info.service.hostname} has no port ${ref.port ?? '(none given)'} (its ports: ${info.ports.map((p) => p.port).join(', ') || 'none'})`,
          field: 'port',
        };
      return { name, hashPolicy: hashPolicyOf(found.policy) };
    },
  };

  const direct = workloadWaypoints(input.snapshot.gateways, input.snapshot.gatewayClasses ?? []);
  const authz = translateAuthz(
    {
      policies: input.snapshot.authorizationPolicies,
      gateways: input.snapshot.gateways,
      services: infos.map(authzService),
      directListeners: new Map(
        direct.map((w) => [`${w.namespace}/${w.gateway}`, { http: w.httpListener, tcp: w.tcpListener }]),
      ),
    },
    options,
  );
  const authzFilters = (listener: string) => authz.filters.get(listener) ?? [];
  const authzNetworkFilters = (listener: string) => authz.networkFilters.get(listener) ?? [];

  const listeners: Listener[] = [];
  const routeConfigurations: RouteConfiguration[] = [];
  const seen = new Set<string>();
  for (const info of infos) {
    const host = info.service.hostname;
    for (const { port, protocol } of info.ports) {
      const name = listenerName(host, port);
      if (seen.has(name)) continue;
      seen.add(name);
      if (protocol === 'tcp') {
        listeners.push(
          tcpListener(
            name,
            info.service.vips.map((v) => v.address),
            port,
            tcpTarget(info, port, env),
            clusters.get(clusterName(port, '', host))?.policy,
            authzNetworkFilters(name),
          ),
        );
        continue;
      }
      const gatewayRules = attached.get(name);
      if (gatewayRules) {
        const routes = buildGatewayRoutes(gatewayRules, port, gatewayEnv);
        reportDisplaced(info.virtualServices, gatewayRules, name, problems);
        listeners.push(httpListener(name, usesCors(routes), authzFilters(name)));
        routeConfigurations.push(routeConfiguration(name, domainsOf(info.names, port), routes));
        continue;
      }
      let routes = buildHttpRoutes(info.virtualServices, port, env);
      if (routes.length === 0) {
        const own = clusters.get(clusterName(port, '', host))!;
        routes = [defaultRoute({ name: own.name, hashPolicy: hashPolicyOf(own.policy) }, host, port)];
      }
      listeners.push(httpListener(name, usesCors(routes), authzFilters(name)));
      routeConfigurations.push(routeConfiguration(name, domainsOf(info.names, port), routes));
    }
  }

  // Ingress gateways: their listeners and routes, to the same clusters (gateway-translate.ts).
  const gateways = translateIstioGateways(
    {
      gateways: resolveGatewayPorts(input.snapshot.istioGateways ?? [], input.snapshot),
      virtualServices: input.virtualServices,
    },
    env,
    options.clusterDomain,
  );
  listeners.push(...gateways.listeners);
  routeConfigurations.push(...gateways.routeConfigurations);
  for (const p of gateways.problems) problems.add(p);
  // Gateway API ingress: Gateways of class ambit and their HTTPRoutes (gateway-api-translate.ts).
  const gatewayApi = translateGatewayApi(
    {
      gateways: input.snapshot.gateways,
      httpRoutes: input.httpRoutes ?? input.snapshot.httpRoutes,
      namespaces: input.snapshot.namespaces,
      referenceGrants: input.snapshot.referenceGrants ?? [],
      ...(input.secrets && { secrets: input.secrets }),
    },
    gatewayEnv,
  );
  listeners.push(...gatewayApi.listeners);
  routeConfigurations.push(...gatewayApi.routeConfigurations);
  for (const p of gatewayApi.problems) problems.add(p);

  // Workload waypoints: traffic to the IPs of the pods bound to them (direct.ts).
  const directResources = translateDirect(direct, authzFilters, authzNetworkFilters);
  listeners.push(...directResources.listeners);
  routeConfigurations.push(...directResources.routeConfigurations);

  reportUnusedRules(input.destinationRules, usedRules, infos, options, problems);

  const all = [...clusters.values(), ...dangling.values()].sort((a, b) => compare(a.name, b.name));
  return {
    resources: {
      listeners: listeners.sort((a, b) => compare(a.name, b.name)),
      routeConfigurations: routeConfigurations.sort((a, b) => compare(a.name, b.name)),
      clusters: [
        ...all.map((c) =>
          c.dns
            ? asDnsCluster(buildCluster(c), c.dns, buildLoadAssignment(c.name, c.endpoints))
            : buildCluster(c),
        ),
        ...directResources.clusters,
      ].sort((a, b) => compare(a.name, b.name)),
      clusterLoadAssignments: all.filter((c) => !c.dns).map((c) => buildLoadAssignment(c.name, c.endpoints)),
    },
    problems: problems.list(),
    authzProblems: authz.problems,
    gatewayApiStatus: gatewayApi.status,
  };
}

/** A service as AuthorizationPolicy attachment sees it. */
function authzService(info: ServiceInfo): AuthzService {
  const host = info.service.hostname;
  return {
    service: info.service,
    source:
      info.source?.kind === 'service'
        ? { kind: 'Service', name: info.source.service.name }
        : info.source?.kind === 'entry'
          ? { kind: 'ServiceEntry', name: info.source.entry.name }
          : undefined,
    httpListeners: info.ports.filter((p) => p.protocol !== 'tcp').map((p) => listenerName(host, p.port)),
    tcpListeners: info.ports.filter((p) => p.protocol === 'tcp').map((p) => listenerName(host, p.port)),
  };
}

/**
 * The HTTPRoute rules that apply to each HTTP service port, by listener name. A parent that is not a
 * Service of the mesh in the route's own namespace, or names a port the Service lacks, is reported
 * and ignored; the route's other parents still apply.
 */
function attachHttpRoutes(
  routes: readonly GatewayHttpRoute[],
  kubeInfos: ReadonlyMap<string, ServiceInfo>,
  problems: Problems,
): Map<string, AttachedRule[]> {
  const out = new Map<string, AttachedRule[]>();
  for (const route of routes) {
    const report = (path: string, message: string) =>
      problems.add({
        severity: 'warning',
        kind: 'HTTPRoute',
        namespace: route.namespace,
        name: route.name,
        path,
        message,
      });
    const attachedTo = new Set<string>();
    let serviceParents = 0;
    if (route.parentRefs.length === 0)
      report('spec.parentRefs', 'is empty, so the route applies nowhere; name the Service it routes');
    route.parentRefs.forEach((ref, i) => {
      const p = `spec.parentRefs[${i}]`;
      // A Gateway parent is ingress, attached by gateway-api-translate.ts.
      if (ref.group === GATEWAY_GROUP && ref.kind === 'Gateway') return;
      if (ref.group !== CORE_GROUP || ref.kind !== 'Service') {
        report(
          ref.group !== CORE_GROUP ? `${p}.group` : `${p}.kind`,
          ref.kind === 'Service'
            ? `${ref.group}/Service is not a Kubernetes Service: write group: "" (the group defaults to gateway.networking.k8s.io); this parent is ignored`
            : `${ref.group ? `${ref.group}/` : ''}${ref.kind} parents are not supported by Ambit (only core Services, group "", which waypoints serve); this parent is ignored`,
        );
        return;
      }
      serviceParents++;
      if (ref.namespace !== route.namespace) {
        report(
          `${p}.namespace`,
          `a route in ${route.namespace} for a Service in ${ref.namespace} is a consumer route, for clients in ${route.namespace} only, which a waypoint cannot tell apart; put the route in ${ref.namespace} (a producer route); this parent is ignored`,
        );
        return;
      }
      const info = kubeInfos.get(`${ref.namespace}/${ref.name}`);
      if (info === undefined || info.source?.kind !== 'service') {
        report(
          `${p}.name`,
          `Service ${ref.namespace}/${ref.name} is not in the mesh; this parent has no effect`,
        );
        return;
      }
      let ports = info.ports;
      if (ref.sectionName) {
        const named = info.source.service.ports.find((sp) => sp.name === ref.sectionName);
        ports = ports.filter((x) => x.port === named?.port);
        if (ports.length === 0) {
          report(
            `${p}.sectionName`,
            `${info.service.hostname} has no port named "${ref.sectionName}"; this parent has no effect`,
          );
          return;
        }
      }
      if (ref.port !== undefined) {
        ports = ports.filter((x) => x.port === ref.port);
        if (ports.length === 0) {
          report(
            `${p}.port`,
            `${info.service.hostname} has no port ${ref.port}${ref.sectionName ? ` named "${ref.sectionName}"` : ''} (its ports: ${info.ports.map((x) => x.port).join(', ') || 'none'}); this parent has no effect`,
          );
          return;
        }
      }
      const explicit = ref.port !== undefined || ref.sectionName !== '';
      for (const { port, protocol } of ports) {
        if (protocol === 'tcp') {
          if (explicit)
            report(
              p,
              `port ${port} of ${info.service.hostname} is not HTTP (its name or appProtocol says so); an HTTPRoute does not apply there`,
            );
          continue;
        }
        const name = listenerName(info.service.hostname, port);
        if (attachedTo.has(name)) continue; // two parentRefs for the same port: the rules once
        attachedTo.add(name);
        route.rules.forEach((rule, index) => push(out, name, { route, index, rule }));
      }
    });
    if (route.hostnames.length > 0 && serviceParents > 0)
      report(
        'spec.hostnames',
        'has no effect for Service parents (the Service is the host); requests are matched whatever their Host header',
      );
  }
  return out;
}

/** A VirtualService for a port HTTPRoutes route: it does not apply there (see the file comment). */
function reportDisplaced(
  virtualServices: readonly VirtualService[],
  rules: readonly AttachedRule[],
  listener: string,
  problems: Problems,
): void {
  const routes = [...new Set(rules.map((r) => `${r.route.namespace}/${r.route.name}`))].join(', ');
  for (const vs of virtualServices) {
    if (vs.http.length === 0) continue;
    problems.add({
      severity: 'warning',
      kind: 'VirtualService',
      namespace: vs.namespace,
      name: vs.name,
      path: 'spec.http',
      message: `HTTPRoute ${routes} also routes ${listener}; Gateway API routes take precedence, so these http rules are not applied there (mixing both for one service is undefined in Istio)`,
    });
  }
}

/** Problems, each reported once (a rule is translated for every port it applies to). */
class Problems {
  private readonly byKey = new Map<string, L7Problem>();

  add(p: L7Problem): void {
    const key = JSON.stringify([p.kind, p.namespace, p.name, p.path, p.message]);
    if (!this.byKey.has(key)) this.byKey.set(key, p);
  }

  list(): L7Problem[] {
    return [...this.byKey.values()];
  }
}

// ---- destinations ----

/**
 * istiod's GetDestinationCluster: the destination's port, else the service's only port, else the
 * port being routed. A destination that names nothing the mesh defines is served as an empty cluster.
 */
function resolve(
  vs: VirtualService,
  destination: Destination,
  listenerPort: number,
  path: string,
  byHostname: ReadonlyMap<string, readonly ServiceInfo[]>,
  clusters: ReadonlyMap<string, ClusterEntry>,
  dangling: Map<string, ClusterEntry>,
  env: RouteEnv,
  options: TranslateOptions,
): ResolvedCluster {
  const host = resolveHost(destination.host, vs.namespace, options.clusterDomain);
  const candidates = byHostname.get(host) ?? [];
  const info = candidates.find((c) => c.service.namespace === vs.namespace) ?? candidates[0];
  const port = destination.port ?? (info && info.ports.length === 1 ? info.ports[0]!.port : listenerPort);
  const name = clusterName(port, destination.subset, host);
  const found = clusters.get(name);
  if (found) return { name, hashPolicy: hashPolicyOf(found.policy) };
  const consequence = 'requests routed there get 503 (as in Istio)';
  if (info === undefined)
    env.report(
      vs,
      'warning',
      `${path}.host`,
      `"${host}" is not a Service or ServiceEntry in the mesh; ${consequence}`,
    );
  else if (!info.ports.some((p) => p.port === port))
    env.report(
      vs,
      'warning',
      destination.port === undefined ? path : `${path}.port.number`,
      destination.port === undefined
        ? `${host} has ports ${info.ports.map((p) => p.port).join(', ')}, none of them ${listenerPort} (the port being routed); set port.number; ${consequence}`
        : `${host} has no port ${port}; ${consequence}`,
    );
  else
    env.report(
      vs,
      'warning',
      `${path}.subset`,
      `subset "${destination.subset}" is not defined by ${
        info.destinationRule
          ? `the DestinationRule for ${host} (${info.destinationRule.rules.map((r) => `${r.namespace}/${r.name}`).join(', ')})`
          : `any DestinationRule for ${host}`
      }; ${consequence}`,
    );
  if (!dangling.has(name))
    dangling.set(name, { name, policy: NO_POLICY, protocol: undefined, endpoints: [] });
  return { name, hashPolicy: undefined };
}

/** The route hash policy a cluster's consistentHash asks for (istiod's ConsistentHashToHashPolicy). */
function hashPolicyOf(policy: EffectivePolicy): HashPolicy | undefined {
  const key = policy.loadBalancer?.consistentHash?.key;
  switch (key?.kind) {
    case undefined:
      return undefined;
    case 'header':
      return { header: { header_name: key.name } };
    case 'cookie':
      return {
        cookie: {
          name: key.name,
          ...(key.ttl ? { ttl: key.ttl } : {}),
          ...(key.path ? { path: key.path } : {}),
          ...(key.attributes.length > 0 ? { attributes: key.attributes } : {}),
        },
      };
    case 'sourceIp':
      return { connection_properties: { source_ip: true } };
    case 'queryParameter':
      return { query_parameter: { name: key.name } };
  }
}

/**
 * Istio's waypoint TCP routing (listener_waypoint.go getWaypointTCPRoutes): the first TLS rule of the
 * merged VirtualServices whose single SNI host is the service, then the first TCP rule, whose match
 * (if any) is for this port. Source labels and namespaces cannot be evaluated on TCP: such a block
 * does not match.
 */
function tcpTarget(info: ServiceInfo, port: number, env: RouteEnv): TcpTarget {
  const applies = (m: L4Match) =>
    (m.gateways.length === 0 || m.gateways.includes('mesh')) &&
    Object.keys(m.sourceLabels).length === 0 &&
    m.sourceNamespace === '' &&
    (m.port === undefined || m.port === port);
  const found =
    firstRule(
      info.virtualServices,
      'tls',
      (vs) => vs.tls,
      (m) => applies(m) && m.sniHosts.length === 1 && m.sniHosts[0] === info.service.hostname,
    ) ?? firstRule(info.virtualServices, 'tcp', (vs) => vs.tcp, applies);
  if (found === undefined) return { cluster: clusterName(port, '', info.service.hostname) };
  const { vs, route, path } = found;
  if (route.length === 1)
    return { cluster: env.resolve(vs, route[0]!.destination, port, `${path}.route[0].destination`).name };
  const weighted: { name: string; weight: number }[] = [];
  route.forEach((d, j) => {
    if (d.weight > 0)
      weighted.push({
        name: env.resolve(vs, d.destination, port, `${path}.route[${j}].destination`).name,
        weight: d.weight,
      });
  });
  return { weightedClusters: weighted };
}

/** The first rule (across the VirtualServices, in order) with no match or a block that applies. */
function firstRule<M>(
  virtualServices: readonly VirtualService[],
  field: 'tls' | 'tcp',
  rulesOf: (
    vs: VirtualService,
  ) => readonly { readonly match: readonly M[]; readonly route: readonly RouteDestination[] }[],
  applies: (m: M) => boolean,
): { vs: VirtualService; route: readonly RouteDestination[]; path: string } | undefined {
  for (const vs of virtualServices) {
    const rules = rulesOf(vs);
    for (let i = 0; i < rules.length; i++) {
      const rule = rules[i]!;
      if (rule.match.length === 0 || rule.match.some(applies))
        return { vs, route: rule.route, path: `spec.${field}[${i}]` };
    }
  }
  return undefined;
}

// ---- services ----

/** Istio's protocol names (pkg/config/protocol Parse), lower-cased. */
function parseProtocol(name: string): string {
  return (
    [
      'tcp',
      'udp',
      'grpc',
      'grpc-web',
      'http',
      'http_proxy',
      'http2',
      'https',
      'tls',
      'mongo',
      'redis',
      'mysql',
    ].find((p) => p === name.toLowerCase()) ?? ''
  );
}

/** Ports Istio never sniffs (kube.ConvertProtocol's wellKnownPorts): SMTP, DNS, MySQL, MongoDB. */
const WELL_KNOWN_TCP_PORTS = [25, 53, 3306, 27017];

/** istiod's kube.ConvertProtocol: appProtocol (replacing the name) or the port name's prefix. */
function kubePortProtocol(p: ServicePort): string {
  let name = p.name;
  if (p.appProtocol) {
    if (p.appProtocol === 'kubernetes.io/h2c') return 'http2';
    if (p.appProtocol === 'kubernetes.io/ws') return 'http';
    if (p.appProtocol === 'kubernetes.io/wss') return 'https';
    name = p.appProtocol;
  }
  if (name.toLowerCase().startsWith('grpc-web')) return 'grpc-web';
  const dash = name.indexOf('-');
  const parsed = parseProtocol(dash >= 0 ? name.slice(0, dash) : name);
  if (parsed === '' && WELL_KNOWN_TCP_PORTS.includes(p.port)) return 'tcp';
  return parsed;
}

function classify(protocol: string): PortProtocol {
  switch (protocol) {
    case 'http':
    case 'http_proxy':
      return 'http1';
    case 'http2':
    case 'grpc':
    case 'grpc-web':
      return 'http2';
    case '':
      return 'sniffed';
    default:
      return 'tcp';
  }
}

function upstreamOf(protocol: PortProtocol): UpstreamProtocol {
  return protocol === 'sniffed' ? 'downstream' : protocol;
}

function groupBy<T>(list: readonly T[], key: (x: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const x of list) {
    const k = key(x);
    const l = out.get(k);
    if (l) l.push(x);
    else out.set(k, [x]);
  }
  return out;
}

interface SourceIndex {
  /** Kubernetes Services by `namespace/name`. */
  readonly services: ReadonlyMap<string, KubeService>;
  /** ServiceEntries by `namespace/name`. */
  readonly entries: ReadonlyMap<string, ServiceEntry>;
}

function sourceIndex(snapshot: KubeSnapshot): SourceIndex {
  return {
    services: new Map(snapshot.services.map((s) => [`${s.namespace}/${s.name}`, s])),
    entries: new Map(snapshot.serviceEntries.map((se) => [`${se.namespace}/${se.name}`, se])),
  };
}

/** Where a translated service came from: a Kubernetes Service, or one host of a ServiceEntry. */
type Source =
  | { readonly kind: 'service'; readonly service: KubeService }
  | { readonly kind: 'entry'; readonly entry: ServiceEntry }
  | undefined;

function sourceOf(service: Service, index: SourceIndex, options: TranslateOptions): Source {
  const id = `${service.namespace}/${service.name}`;
  const kube = index.services.get(id);
  if (kube && serviceHostname(kube, options) === service.hostname) return { kind: 'service', service: kube };
  const entry = index.entries.get(id);
  if (entry?.hosts.includes(service.hostname)) return { kind: 'entry', entry };
  return undefined;
}

/** The service's ports (as the workload translation kept them: TCP ones), with their protocol. */
function portsOf(service: Service, source: Source): PortInfo[] {
  return [...service.ports.keys()]
    .sort((a, b) => a - b)
    .map((port) => {
      let protocol = '';
      if (source?.kind === 'service') {
        const p = source.service.ports.find((x) => x.port === port);
        if (p) protocol = kubePortProtocol(p);
      } else if (source?.kind === 'entry') {
        const p = source.entry.ports.find((x) => x.number === port);
        if (p) protocol = parseProtocol(p.protocol);
      }
      return { port, protocol: classify(protocol) };
    });
}

/** The names a client may use: FQDN, then for a Kubernetes Service its short forms, then the VIPs. */
function namesOf(service: Service, source: Source): string[] {
  const names = [service.hostname];
  if (source?.kind === 'service')
    names.push(
      `${service.name}.${service.namespace}`,
      `${service.name}.${service.namespace}.svc`,
      service.name,
    );
  for (const vip of service.vips) names.push(ipFamily(vip.address) === 6 ? `[${vip.address}]` : vip.address);
  return [...new Set(names)];
}

/** Each name, then the same with `:<port>` (Envoy matches the Host header with or without it). */
function domainsOf(names: readonly string[], port: number): string[] {
  return names.flatMap((n) => [n, `${n}:${port}`]);
}

/**
 * Labels of the workloads that have them, by uid: pods (`<cluster>//Pod/<ns>/<name>`) and
 * ServiceEntry endpoints (`<cluster>/networking.istio.io/ServiceEntry/<ns>/<name>/<address>`), as the
 * workload translation names them. EndpointSlice endpoints that are not pods have no labels.
 */
function labelIndex(snapshot: KubeSnapshot, options: TranslateOptions): ReadonlyMap<string, StringMap> {
  const out = new Map<string, StringMap>();
  for (const pod of snapshot.pods)
    out.set(`${options.clusterId}//Pod/${pod.namespace}/${pod.name}`, pod.labels);
  for (const se of snapshot.serviceEntries)
    for (const ep of se.endpoints)
      out.set(
        `${options.clusterId}/networking.istio.io/ServiceEntry/${se.namespace}/${se.name}/${ep.address}`,
        ep.labels,
      );
  return out;
}

/**
 * The endpoints serving `port` whose labels the subset selects, sorted by address. Workloads known by
 * host name only (ServiceEntry DNS endpoints) are kept only for a DNS cluster (`byName`), which
 * carries them inline: EDS carries IP addresses. An address seen twice is kept once (gRPC clients
 * reject a duplicate).
 */
function endpointsOf(
  members: readonly { workload: Workload; ports: PortMap }[],
  port: number,
  subsetLabels: StringMap,
  labels: ReadonlyMap<string, StringMap>,
  byName = false,
): EndpointSpec[] {
  const out: EndpointSpec[] = [];
  const seen = new Set<string>();
  for (const member of members) {
    const { ports } = member;
    const workload =
      byName && member.workload.addresses.length === 0 && member.workload.hostname
        ? { ...member.workload, addresses: [member.workload.hostname] }
        : member.workload;
    if (workload.addresses.length === 0) continue;
    // An empty port map means the workload serves every port on the same number.
    const target = ports.size === 0 ? port : ports.get(port);
    if (target === undefined) continue;
    if (!selects(subsetLabels, labels.get(workload.uid) ?? {})) continue;
    const key = `${workload.addresses[0]!}|${target}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({
      addresses: workload.addresses,
      port: target,
      healthy: workload.healthy,
      weight: workload.capacity,
    });
  }
  return out.sort((a, b) => compare(a.addresses[0]!, b.addresses[0]!) || a.port - b.port);
}

/** A DestinationRule that no service used: say why, so a typo in `host` does not go unnoticed. */
function reportUnusedRules(
  rules: readonly DestinationRule[],
  used: ReadonlySet<DestinationRule>,
  infos: readonly ServiceInfo[],
  options: TranslateOptions,
  problems: Problems,
): void {
  for (const rule of rules) {
    if (used.has(rule) || rule.workloadSelector !== undefined) continue;
    const host = resolveHost(rule.host, rule.namespace, options.clusterDomain);
    const matching = infos.filter((i) => hostMatches(host, i.service.hostname));
    const message =
      matching.length === 0
        ? `"${host}" is not a Service or ServiceEntry in the mesh; the rule has no effect`
        : matching.every((i) => i.service.namespace !== rule.namespace) &&
            rule.namespace !== options.rootNamespace
          ? `applies only from the service's namespace (${[...new Set(matching.map((i) => i.service.namespace))].join(', ')}) or the root namespace (${options.rootNamespace}); the rule has no effect`
          : 'another DestinationRule (for a more specific host, or in the service namespace) takes precedence; the rule has no effect';
    problems.add({
      severity: 'warning',
      kind: 'DestinationRule',
      namespace: rule.namespace,
      name: rule.name,
      path: 'spec.host',
      message,
    });
  }
}
