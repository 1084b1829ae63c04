/**
 * Which traffic goes through which waypoint (istio-api.md §3.2–3.3): the `waypoint` field of the
 * Service and Workload resources, from waypoint Gateways (class `istio-waypoint`, or `ambit-waypoint`)
 * and the `istio.io/use-waypoint` labels. Pure.
 *
 * - The label on the object (Service, ServiceEntry, Pod) wins over its namespace's; `none` (or the
 *   older `#none`) opts the object out. The value is a Gateway name in the namespace given by
 *   `istio.io/use-waypoint-namespace` (on the same object, or its namespace), else the object's own;
 *   the older `ns/name` form is accepted too.
 * - The waypoint must take that kind of traffic: its `istio.io/waypoint-for` label, else its
 *   GatewayClass's, else `service` (gateways.ts waypointFor) must be `service` or `all` for a
 *   Service, `workload` or `all` for a Pod.
 * - The waypoint's own pods and Service (label `gateway.networking.k8s.io/gateway-name`) are never
 *   sent to a waypoint: that would loop.
 * - A label naming no waypoint Gateway binds nothing, with a warning (as istiod reports it on the
 *   object's status); traffic then goes direct.
 * - The address ztunnel gets: the Gateway's reported IP address if it has one, else the host name of
 *   the Service that fronts it (`<name>.<ns>.svc.<domain>`, which istiod and `ambit` create), on HBONE
 *   port 15008.
 */
import type { GatewayAddress } from '../../core/xds/model.ts';
import { reporter, type TranslateOptions, type TranslateProblem } from './common.ts';
import { WAYPOINT_CLASSES, WAYPOINT_FOR_LABEL, waypointFor } from './gateways.ts';
import { lookup, type Gateway, type GatewayClass, type Namespace, type StringMap } from './kube-types.ts';

export const USE_WAYPOINT_LABEL = 'istio.io/use-waypoint';
export const USE_WAYPOINT_NAMESPACE_LABEL = 'istio.io/use-waypoint-namespace';
/** Set by the Gateway controller on the waypoint's own pods and Service. */
export const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';
const WAYPOINT_HBONE_PORT = 15008;

export type TrafficKind = 'service' | 'workload';

interface Waypoint {
  readonly address: GatewayAddress;
  /** `service`, `workload`, `all` or `none`. */
  readonly for: string;
}

/** The object asking for a waypoint, as far as binding is concerned. */
export interface BindingSubject {
  readonly kind: 'Service' | 'ServiceEntry' | 'Pod';
  readonly namespace: string;
  readonly name: string;
  readonly labels: StringMap;
}

export class WaypointBinder {
  private readonly waypoints = new Map<string, Waypoint>();
  private readonly namespaces: ReadonlyMap<string, Namespace>;
  private readonly problems: TranslateProblem[];

  constructor(
    gateways: readonly Gateway[],
    gatewayClasses: readonly GatewayClass[],
    namespaces: readonly Namespace[],
    options: TranslateOptions,
    problems: TranslateProblem[],
  ) {
    this.namespaces = new Map(namespaces.map((n) => [n.name, n]));
    this.problems = problems;
    for (const gw of gateways) {
      if (!WAYPOINT_CLASSES.includes(gw.gatewayClassName)) continue;
      const ip = [...gw.statusAddresses, ...gw.addresses].find(
        (a) => (a.type || 'IPAddress') === 'IPAddress',
      );
      const host = [...gw.statusAddresses, ...gw.addresses].find((a) => a.type === 'Hostname');
      const destination: GatewayAddress['destination'] = ip
        ? { kind: 'address', network: '', address: ip.value }
        : {
            kind: 'hostname',
            namespace: gw.namespace,
            hostname: host?.value ?? `${gw.name}.${gw.namespace}.svc.${options.clusterDomain}`,
          };
      this.waypoints.set(`${gw.namespace}/${gw.name}`, {
        address: { destination, hboneMtlsPort: WAYPOINT_HBONE_PORT },
        for: waypointFor(gw, gatewayClasses),
      });
    }
  }

  /** The waypoint `subject`'s traffic of this kind goes through, if any. */
  bind(subject: BindingSubject, kind: TrafficKind): GatewayAddress | undefined {
    if (lookup(subject.labels, GATEWAY_NAME_LABEL) !== undefined) return undefined;
    const nsLabels = this.namespaces.get(subject.namespace)?.labels ?? {};
    const own = lookup(subject.labels, USE_WAYPOINT_LABEL);
    const fromNamespace = own === undefined;
    const value = own ?? lookup(nsLabels, USE_WAYPOINT_LABEL);
    if (value === undefined || value === '' || value === 'none' || value === '#none') return undefined;
    const labels = fromNamespace ? nsLabels : subject.labels;
    let namespace = lookup(labels, USE_WAYPOINT_NAMESPACE_LABEL) || subject.namespace;
    let name = value;
    if (value.includes('/')) [namespace, name] = value.split('/', 2) as [string, string];
    const where = fromNamespace
      ? `namespace ${subject.namespace}'s label ${USE_WAYPOINT_LABEL}`
      : `label ${USE_WAYPOINT_LABEL}`;
    const report = reporter(this.problems, subject.kind, subject);
    const wp = this.waypoints.get(`${namespace}/${name}`);
    if (!wp) {
      report(
        'warning',
        `metadata.labels["${USE_WAYPOINT_LABEL}"]`,
        `${where} names waypoint ${namespace}/${name}, but there is no Gateway of class ${WAYPOINT_CLASSES.join(' or ')} by that name; traffic goes direct`,
      );
      return undefined;
    }
    if (wp.for !== 'all' && wp.for !== kind) {
      // A namespace-wide label quietly covers objects of the other kind; only an explicit label is an error.
      if (!fromNamespace)
        report(
          'warning',
          `metadata.labels["${USE_WAYPOINT_LABEL}"]`,
          `waypoint ${namespace}/${name} is for ${wp.for} traffic (${WAYPOINT_FOR_LABEL}), not ${kind} traffic; traffic goes direct`,
        );
      return undefined;
    }
    return wp.address;
  }
}
