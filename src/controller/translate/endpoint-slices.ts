/**
 * EndpointSlices → endpoints of Services without a selector, as istiod's ambient index does
 * (ambient/workloads.go: endpointSlicesBuilder, matchingServicesWithoutSelectors). Pure.
 *
 * A Service with a selector takes its endpoints from the pods it selects, and its slices are not
 * read (istiod's pods carry much more than a slice). For a Service without one, each slice labelled
 * `kubernetes.io/service-name: <service>` lists its endpoints:
 * - an endpoint that is a known pod (its targetRef names the pod, or, without a targetRef, one of its
 *   addresses is the pod's IP) makes the pod an endpoint of the Service: the Service joins the pod's
 *   `services` map;
 * - any other endpoint becomes a plain (tunnel NONE) Workload of its own, with istiod's uid
 *   `<cluster>/discovery.k8s.io/EndpointSlice/<ns>/<slice>/<first address>`, UNHEALTHY when
 *   `conditions.ready` is false. It has no identity, node or policies: it only receives traffic.
 *
 * The port map comes from the slice: each TCP slice port is matched by name to a Service port, and
 * maps that service port to the slice port's number.
 */
import { ipFamily } from '../../core/ip.ts';
import {
  serviceKey,
  TunnelProtocol,
  WorkloadType,
  type PortMap,
  type Workload,
} from '../../core/xds/model.ts';
import {
  isTcp,
  reporter,
  serviceHostname,
  sortedPorts,
  validPort,
  type Report,
  type TranslateOptions,
  type TranslateProblem,
} from './common.ts';
import { lookup, type EndpointSlice, type Pod, type Service as KubeService } from './kube-types.ts';

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/** Pods that become workloads, for endpoints to find. */
export interface PodIndex {
  /** By every pod IP. */
  readonly byIp: ReadonlyMap<string, Pod>;
  /** By `namespace/name`. */
  readonly byName: ReadonlyMap<string, Pod>;
}

export interface SliceResult {
  /** Workloads of endpoints that are not pods. */
  readonly workloads: readonly Workload[];
  /** Pod (`namespace/name`) → service key → port map: the Services a pod is an endpoint of by slice. */
  readonly podServices: ReadonlyMap<string, ReadonlyMap<string, PortMap>>;
}

/**
 * `services`: the Services that translated and have no selector, by `namespace/name`. A slice of a
 * Service that is absent, invalid or has a selector contributes nothing (no problem: slices outlive
 * their Service briefly, and a selector's slices are Kubernetes' own copy of the pods).
 */
export function translateEndpointSlices(
  slices: readonly EndpointSlice[],
  services: ReadonlyMap<string, KubeService>,
  pods: PodIndex,
  options: TranslateOptions,
  problems: TranslateProblem[],
): SliceResult {
  const workloads: Workload[] = [];
  const podServices = new Map<string, Map<string, PortMap>>();
  const addPod = (pod: Pod, key: string, ports: PortMap) => {
    const podKey = `${pod.namespace}/${pod.name}`;
    let m = podServices.get(podKey);
    if (!m) podServices.set(podKey, (m = new Map<string, PortMap>()));
    // Dual-stack Services have a slice per family, both listing the pod.
    m.set(key, sortedPorts(new Map([...(m.get(key) ?? []), ...ports])));
  };
  for (const slice of slices) {
    const serviceName = lookup(slice.labels, SERVICE_NAME_LABEL);
    if (serviceName === undefined) continue; // not a Service's slice: nothing for the mesh
    const svc = services.get(`${slice.namespace}/${serviceName}`);
    if (svc === undefined) continue;
    const report = reporter(problems, 'EndpointSlice', slice);
    if (slice.addressType === 'FQDN') {
      report(
        'warning',
        'addressType',
        'FQDN endpoints are not supported (as in istiod); the slice is ignored',
      );
      continue;
    }
    const ports = slicePorts(slice, svc, report);
    if (ports === undefined) continue;
    const key = serviceKey({ namespace: svc.namespace, hostname: serviceHostname(svc, options) });
    const seen = new Set<string>();
    slice.endpoints.forEach((ep, i) => {
      const path = `endpoints[${i}]`;
      if (ep.addresses.length === 0) {
        report('error', `${path}.addresses`, 'an endpoint needs an address; it is skipped');
        return;
      }
      const bad = ep.addresses.findIndex((a) => ipFamily(a) === 0);
      if (bad >= 0) {
        report(
          'error',
          `${path}.addresses[${bad}]`,
          `"${ep.addresses[bad]!}" is not an IP address; the endpoint is skipped`,
        );
        return;
      }
      const ref = ep.targetRef;
      if (ref?.kind === 'Pod') {
        // A pod not known (yet), or not a workload (host network, finished), adds nothing.
        const pod = pods.byName.get(`${ref.namespace || slice.namespace}/${ref.name}`);
        if (pod && (!ref.uid || !pod.uid || ref.uid === pod.uid)) addPod(pod, key, ports);
        return;
      }
      const pod = ep.addresses.map((a) => pods.byIp.get(a)).find((p) => p !== undefined);
      if (pod) {
        addPod(pod, key, ports);
        return;
      }
      // Kubernetes gives an endpoint one address (IPv4 and IPv6 are separate slices).
      const first = ep.addresses[0]!;
      if (seen.has(first)) {
        report('warning', `${path}.addresses[0]`, `"${first}" is listed twice; the first endpoint is kept`);
        return;
      }
      seen.add(first);
      workloads.push({
        uid: `${options.clusterId}/discovery.k8s.io/EndpointSlice/${slice.namespace}/${slice.name}/${first}`,
        name: slice.name,
        namespace: slice.namespace,
        addresses: ep.addresses,
        hostname: '',
        network: '',
        tunnelProtocol: TunnelProtocol.None,
        trustDomain: options.trustDomain,
        serviceAccount: 'default',
        waypoint: undefined,
        node: '',
        // What istiod leaves unset (the wire default is DEPLOYMENT).
        canonicalName: '',
        canonicalRevision: '',
        workloadType: WorkloadType.Deployment,
        workloadName: '',
        services: new Map([[key, ports]]),
        authorizationPolicies: [],
        healthy: ep.ready !== false,
        clusterId: options.clusterId,
        capacity: 1,
      });
    });
  }
  return { workloads, podServices };
}

/**
 * service port → endpoint port, by port name; undefined (reported) when the slice serves none of the
 * Service's TCP ports, since an empty map would read as "every port".
 */
function slicePorts(slice: EndpointSlice, svc: KubeService, report: Report): PortMap | undefined {
  const out = new Map<number, number>();
  let bad = false;
  slice.ports.forEach((p, i) => {
    // An unset port means "all ports" to Kubernetes; istiod cannot use it either.
    if (!isTcp(p.protocol) || p.port === undefined) return;
    if (!validPort(p.port)) {
      report('error', `ports[${i}].port`, `${p.port} is not a port number (1-65535); the slice is skipped`);
      bad = true;
      return;
    }
    const sp = svc.ports.find((s) => s.name === p.name && isTcp(s.protocol) && validPort(s.port));
    if (sp === undefined)
      report(
        'warning',
        `ports[${i}].name`,
        `Service ${svc.namespace}/${svc.name} has no TCP port named "${p.name}"; this port does not reach the endpoints through it`,
      );
    else out.set(sp.port, p.port);
  });
  if (bad) return undefined;
  // A Service with ports but none the mesh carries (UDP only) has no mesh endpoints either.
  if (out.size === 0 && svc.ports.length > 0) {
    if (svc.ports.some((s) => isTcp(s.protocol)))
      report(
        'warning',
        'ports',
        `no TCP port matches a port of Service ${svc.namespace}/${svc.name} by name; the slice adds no endpoints`,
      );
    return undefined;
  }
  return sortedPorts(out);
}
