/**
 * Kubernetes Gateway API ingress in `ambit local` (issue 8 part 3): for every Gateway of class
 * `ambit` in the mesh's YAML, the deployment the controller's reconciler makes for it in a cluster
 * (reconcile/gateway-api-template.ts), as one more kind of local gateway (local-gateways.ts):
 * `ambit gateway` as `<name>-ambit` in the Gateway's namespace, with service account `<name>-ambit`
 * (its identity upstream) and the labels that make it serve that Gateway
 * (`gateway.networking.k8s.io/gateway-name`, `ambit.dev/gateway-namespace`), listening on the
 * Gateway's HTTP and HTTPS listener ports. Its pod stays out of the mesh's capture (it speaks HBONE
 * itself); it gets a pod address from the manager.
 */
import {
  AMBIT_GATEWAY_CLASS,
  gatewayApiDeploymentName,
  gatewayApiLabels,
} from '../controller/translate/l7/gateway-api-translate.ts';
import type { GatewayKind, GatewayPort } from './local-gateways.ts';

const GATEWAY_API_VERSIONS = ['gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1'];
const SERVED_PROTOCOLS = ['HTTP', 'HTTPS'];

interface RawGateway {
  apiVersion?: unknown;
  kind?: unknown;
  metadata?: { name?: unknown; namespace?: unknown };
  spec?: { gatewayClassName?: unknown; listeners?: { port?: unknown; protocol?: unknown }[] };
}

/** The deployments the class-`ambit` Gateways of the YAML want. Pure. */
export const gatewayApiKind: GatewayKind = (docs) =>
  docs.flatMap((doc) => {
    const o = doc as RawGateway | null;
    if (!o || o.kind !== 'Gateway' || !GATEWAY_API_VERSIONS.includes(String(o.apiVersion))) return [];
    if (o.spec?.gatewayClassName !== AMBIT_GATEWAY_CLASS) return [];
    const name = o.metadata?.name;
    if (typeof name !== 'string' || !name) return [];
    const namespace = typeof o.metadata?.namespace === 'string' ? o.metadata.namespace : 'default';
    const ports = new Map<number, string>();
    for (const l of Array.isArray(o.spec.listeners) ? o.spec.listeners : []) {
      const n = l?.port;
      const protocol = typeof l?.protocol === 'string' ? l.protocol : '';
      // The first listener of a port names it (the controller reports a conflicting second).
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535 || ports.has(n)) continue;
      if (SERVED_PROTOCOLS.includes(protocol)) ports.set(n, protocol);
    }
    if (ports.size === 0) return [];
    const deployment = gatewayApiDeploymentName(name);
    return [
      {
        namespace,
        name: deployment,
        serviceAccount: deployment,
        labels: gatewayApiLabels({ namespace, name }),
        ports: [...ports]
          .map(([number, protocol]): GatewayPort => ({ number, protocol }))
          .sort((a, b) => a.number - b.number),
        ambient: false,
        role: `gateway (Gateway ${namespace}/${name})`,
      },
    ];
  });
