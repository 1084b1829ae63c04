/**
 * Which port a gateway proxy opens for a Gateway server, as istiod resolves it
 * (pilot/pkg/model/gateway.go `resolvePorts`, for Gateways that pick their proxies by label
 * selector): a server port that is a port of a Service in front of the gateway pods means that
 * Service port, and the proxy listens on its target port; any other number is the pod's own port.
 *
 * So the same Istio YAML works against a gateway Service that maps ports, as Istio's does
 * (80 → 8080, 443 → 8443: daemonset/gateways/): the egress-gateway task's server on port 80 and
 * bookinfo's on 8080 both end up on 8080. As in istiod:
 * - the Services considered are those selecting a pod the Gateway's selector matches (the pod's
 *   namespace, any Gateway namespace); with several, the first port match wins (here: Services in
 *   namespace/name order, so the choice is stable);
 * - a Service labelled `experimental.istio.io/disable-gateway-port-translation` is skipped;
 * - a named target port is looked up among the pod's container ports.
 * Pure.
 */
import { compare } from '../common.ts';
import {
  lookup,
  selects,
  type IstioGateway,
  type KubeSnapshot,
  type Pod,
  type Service,
  type ServicePort,
} from '../kube-types.ts';

/** The Service label opting a Service out of port translation (istiod's constant). */
export const DISABLE_PORT_TRANSLATION_LABEL = 'experimental.istio.io/disable-gateway-port-translation';

type Inputs = Pick<KubeSnapshot, 'pods' | 'services'>;

/** The Gateways with each server's port number replaced by the port the proxy listens on. */
export function resolveGatewayPorts(gateways: readonly IstioGateway[], snapshot: Inputs): IstioGateway[] {
  const services = [...snapshot.services]
    .filter(
      (s) =>
        Object.keys(s.selector).length > 0 && lookup(s.labels, DISABLE_PORT_TRANSLATION_LABEL) === undefined,
    )
    .sort((a, b) => compare(a.namespace, b.namespace) || compare(a.name, b.name));
  return gateways.map((g) => {
    const targets = serviceTargets(g, snapshot.pods, services);
    if (targets.length === 0) return g;
    let changed = false;
    const servers = g.servers.map((s) => {
      const target = targets.find((t) => t.port === s.port.number);
      if (!target || target.targetPort === s.port.number) return s;
      changed = true;
      return { ...s, port: { ...s.port, number: target.targetPort } };
    });
    return changed ? { ...g, servers } : g;
  });
}

interface Target {
  readonly port: number;
  readonly targetPort: number;
}

/** Each (Service port → pod port) in front of the pods the Gateway selects, in Service order. */
function serviceTargets(g: IstioGateway, pods: readonly Pod[], services: readonly Service[]): Target[] {
  const selected = pods.filter((p) => selects(g.selector, p.labels));
  const out: Target[] = [];
  for (const svc of services) {
    const pod = selected.find((p) => p.namespace === svc.namespace && selects(svc.selector, p.labels));
    if (!pod) continue;
    for (const sp of svc.ports) {
      const targetPort = resolveTarget(sp, pod);
      if (targetPort !== undefined) out.push({ port: sp.port, targetPort });
    }
  }
  return out;
}

function resolveTarget(sp: ServicePort, pod: Pod): number | undefined {
  const t = sp.targetPort;
  if (t === undefined) return sp.port;
  if (typeof t === 'number') return t;
  return pod.containerPorts.find((c) => c.name === t)?.containerPort;
}
