/**
 * The gateway deployments of `ambit local` (issue 8): what installing a gateway creates in a cluster
 * — a Deployment of `ambit gateway`, its ServiceAccount and a Service — done for a mesh of loopback
 * addresses. Each *kind* of gateway installation is a `GatewayKind`: a pure function from the mesh's
 * YAML documents to the deployments it wants. The manager (`LocalGateways`) gives each deployment a
 * pod address, writes the objects a cluster would hold for all of them to `gateways.generated.yaml`
 * (so the controller knows each gateway as a workload behind a Service VIP), gives each a bootstrap
 * token for its own service account, runs it (restarted if it dies) and stops it when no Gateway
 * wants it any more.
 *
 * Istio's two (`ISTIO_GATEWAY_KINDS`), as Istio's charts install them:
 * - `istio-system/istio-ingressgateway` (labels `istio: ingressgateway`), pod `<prefix>.4.1`, for
 *   the `networking.istio.io` Gateways that select it (bookinfo's ingress);
 * - `istio-system/istio-egressgateway` (labels `istio: egressgateway`), pod `<prefix>.4.2`, for the
 *   ones that select it (Istio's egress-gateway task). Its pod is in the mesh
 *   (`istio.io/dataplane-mode: ambient`): the waypoint that applies the `mesh` half of the task's
 *   VirtualService reaches it over HBONE through the node agent, which keeps mutual TLS and the
 *   waypoint's identity (and L4 policy) on that hop, as for any enrolled pod. The ingress gateway
 *   stays out (`none`): its clients are outside the mesh and it speaks HBONE itself.
 *
 * Another kind (say, Kubernetes Gateway API Gateways of an `ambit` class, one deployment per
 * Gateway) is one more `GatewayKind` passed to `LocalGateways.prepare`; kinds without a fixed `slot`
 * get pod `<prefix>.4.<n>` (n from `DYNAMIC_SLOT_FIRST`, kept while the mesh runs). Each Service's
 * cluster IP is `<prefix>.104.<slot>`; its ports are the gateway's listening ports, unmapped, so a
 * Gateway server's port is both the Service port and the port the pod listens on.
 */
import { join } from 'node:path';
import { proxyObjectsYaml } from './local-proxies.ts';
import {
  LocalProxyManager,
  proxyKey,
  type LocalProxiesOptions,
  type ManagedProxy,
} from './local-proxy-manager.ts';

export const GATEWAYS_GENERATED_FILE = 'gateways.generated.yaml';
/** Pod `<prefix>.4.<n>` for deployments without a fixed slot; below it: Istio's fixed ones. */
export const DYNAMIC_SLOT_FIRST = 10;
const DYNAMIC_SLOT_LAST = 250;

/** One gateway deployment a kind wants, before it has an address. */
export interface GatewayDeploymentSpec {
  readonly namespace: string;
  /** The Deployment's (and the Service's) name. */
  readonly name: string;
  readonly serviceAccount: string;
  /** The pod's labels: the gateway serves the Gateways whose selector they match. */
  readonly labels: Readonly<Record<string, string>>;
  /**
   * The ports it listens on (its Gateway servers' or listeners' ports), sorted, at least one, with
   * their protocol (`HTTP`, `HTTPS`, `TCP`, ...): the Service names each port after it, as Istio's
   * port naming convention (`<protocol>-<suffix>`) reads.
   */
  readonly ports: readonly GatewayPort[];
  /**
   * In the mesh (`istio.io/dataplane-mode: ambient`): the node agent takes HBONE for the pod and
   * hands it the connections in plain text. False: the pod opts out (`none`).
   */
  readonly ambient: boolean;
  /** A fixed pod address `<prefix>.4.<slot>`; absent: one is given out. */
  readonly slot?: number;
  /** What it is, for the user: "ingress gateway", "egress gateway". */
  readonly role: string;
}

export interface GatewayPort {
  readonly number: number;
  readonly protocol: string;
}

/** A kind of gateway installation: which deployments the mesh's YAML documents want. Pure. */
export type GatewayKind = (docs: readonly unknown[]) => GatewayDeploymentSpec[];

export type LocalGatewaysOptions = LocalProxiesOptions;

/** A running gateway deployment, for the guide and for tests. */
export interface LocalGateway extends GatewayDeploymentSpec, ManagedProxy {
  readonly podIp: string;
  readonly serviceIp: string;
  readonly admin: string;
  readonly metrics: string;
  readonly readiness: string;
  readonly log: string;
}

export class LocalGateways extends LocalProxyManager<LocalGateway> {
  protected readonly program = 'gateway';
  protected readonly generatedFile = GATEWAYS_GENERATED_FILE;
  protected readonly goneReason = 'no Gateway wants it';
  private readonly kinds: readonly GatewayKind[];
  private readonly slots = new Map<string, number>();
  private wanted: LocalGateway[] = [];

  private constructor(opts: LocalGatewaysOptions, kinds: readonly GatewayKind[]) {
    super(opts);
    this.kinds = kinds;
  }

  /** Writes the generated objects before the controller starts; nothing runs until `run()`. */
  static async prepare(
    opts: LocalGatewaysOptions,
    kinds: readonly GatewayKind[] = ISTIO_GATEWAY_KINDS,
  ): Promise<LocalGateways> {
    const g = new LocalGateways(opts, kinds);
    await g.sync();
    return g;
  }

  /** The gateway deployments wanted now (running, or restarting), in a stable order. */
  list(): readonly LocalGateway[] {
    return this.wanted;
  }

  protected plan(docs: readonly unknown[]): LocalGateway[] {
    const specs = new Map<string, GatewayDeploymentSpec>();
    for (const kind of this.kinds)
      for (const s of kind(docs)) if (!specs.has(proxyKey(s))) specs.set(proxyKey(s), s);
    const wanted: LocalGateway[] = [];
    for (const s of specs.values()) {
      const slot = s.slot ?? this.dynamicSlot(proxyKey(s));
      if (slot === undefined) {
        this.opts.report(`ambit local: no address left for gateway ${proxyKey(s)}; it does not run\n`);
        continue;
      }
      wanted.push(this.describe(s, slot));
    }
    this.wanted = wanted;
    return wanted;
  }

  protected generatedYaml(wanted: readonly LocalGateway[]): string {
    return generatedYaml(wanted, this.opts.nodeName);
  }

  protected env(g: LocalGateway): Record<string, string> {
    return {
      GATEWAY_LABELS: Object.entries(g.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
    };
  }

  /** The same deployment with other labels or another address is a new pod. */
  protected override unchanged(running: LocalGateway, wanted: LocalGateway): boolean {
    return sameDeployment(running, wanted);
  }

  private dynamicSlot(k: string): number | undefined {
    const had = this.slots.get(k);
    if (had !== undefined) return had;
    const used = new Set(this.slots.values());
    for (let n = DYNAMIC_SLOT_FIRST; n <= DYNAMIC_SLOT_LAST; n++) {
      if (used.has(n)) continue;
      this.slots.set(k, n);
      return n;
    }
    return undefined;
  }

  private describe(s: GatewayDeploymentSpec, slot: number): LocalGateway {
    const podIp = `${this.opts.prefix}.4.${slot}`;
    return {
      ...s,
      podIp,
      serviceIp: `${this.opts.prefix}.104.${slot}`,
      admin: `http://${podIp}:15000`,
      metrics: `http://${podIp}:15020/metrics`,
      readiness: `http://${podIp}:15021/healthz/ready`,
      log: join(this.opts.dir, `gateway-${s.namespace}-${s.name}.log`),
    };
  }
}

function sameDeployment(a: LocalGateway, b: LocalGateway): boolean {
  const labels = (l: Readonly<Record<string, string>>) => JSON.stringify(Object.entries(l).sort());
  return (
    a.podIp === b.podIp &&
    a.serviceAccount === b.serviceAccount &&
    labels(a.labels) === labels(b.labels) &&
    a.ambient === b.ambient
  );
}

/** An Istio gateway deployment, as Istio's `gateways` chart installs it. */
interface IstioGatewayInstall {
  readonly name: string;
  readonly istioLabel: string;
  readonly slot: number;
  readonly ambient: boolean;
  readonly role: string;
}

/**
 * The kind for one of Istio's gateway deployments in `istio-system`: wanted while a
 * `networking.istio.io` Gateway's selector matches its labels, listening on those Gateways' server
 * ports.
 */
export function istioGatewayKind(install: IstioGatewayInstall): GatewayKind {
  const labels = { istio: install.istioLabel, app: install.name };
  return (docs) => {
    const ports = istioServerPorts(docs, labels);
    if (ports.length === 0) return [];
    return [
      {
        namespace: 'istio-system',
        name: install.name,
        serviceAccount: `${install.name}-service-account`,
        labels,
        ports,
        ambient: install.ambient,
        slot: install.slot,
        role: install.role,
      },
    ];
  };
}

/** Istio's ingress (`<prefix>.4.1`) and egress (`<prefix>.4.2`) gateways. */
export const ISTIO_GATEWAY_KINDS: readonly GatewayKind[] = [
  istioGatewayKind({
    name: 'istio-ingressgateway',
    istioLabel: 'ingressgateway',
    slot: 1,
    ambient: false,
    role: 'ingress gateway',
  }),
  istioGatewayKind({
    name: 'istio-egressgateway',
    istioLabel: 'egressgateway',
    slot: 2,
    ambient: true,
    role: 'egress gateway',
  }),
];

/** The server ports of the `networking.istio.io` Gateways whose selector `labels` match, sorted. */
function istioServerPorts(docs: readonly unknown[], labels: Readonly<Record<string, string>>): GatewayPort[] {
  const ports = new Map<number, string>();
  for (const doc of docs) {
    const o = doc as {
      apiVersion?: unknown;
      kind?: unknown;
      spec?: {
        selector?: Record<string, unknown>;
        servers?: { port?: { number?: unknown; protocol?: unknown } }[];
      };
    } | null;
    if (!o || o.kind !== 'Gateway' || typeof o.apiVersion !== 'string') continue;
    if (!o.apiVersion.startsWith('networking.istio.io/')) continue;
    const selector = o.spec?.selector ?? {};
    if (!Object.entries(selector).every(([k, v]) => Object.hasOwn(labels, k) && labels[k] === v)) continue;
    for (const s of Array.isArray(o.spec?.servers) ? o.spec.servers : []) {
      const n = s?.port?.number;
      const protocol = typeof s?.port?.protocol === 'string' ? s.port.protocol : 'TCP';
      // The first server on a port names it (the controller rejects a conflicting second).
      if (typeof n === 'number' && Number.isInteger(n) && n > 0 && n < 65536 && !ports.has(n))
        ports.set(n, /^[A-Za-z0-9]+$/.test(protocol) ? protocol : 'TCP');
    }
  }
  return [...ports].map(([number, protocol]) => ({ number, protocol })).sort((a, b) => a.number - b.number);
}

function generatedYaml(gateways: readonly LocalGateway[], nodeName: string): string {
  const docs = gateways.map((g) =>
    proxyObjectsYaml({
      ...g,
      serviceLabels: g.labels,
      ports: g.ports.map((p) => ({ name: `${p.protocol.toLowerCase()}-${p.number}`, port: p.number })),
      nodeName,
      dataplaneMode: g.ambient ? 'ambient' : 'none',
      container: 'istio-proxy',
    }),
  );
  return (
    '# Written by `ambit local` for the gateways the Gateways in this directory want (as installing\n' +
    '# them would create in a cluster). Rewritten on every change: do not edit.\n' +
    (docs.length ? docs.join('\n---\n') + '\n' : '')
  );
}
