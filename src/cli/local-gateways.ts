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
import type { ChildProcess } from 'node:child_process';
import { watch, type FSWatcher } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeError } from '../core/errors.ts';
import {
  meshDocuments,
  proxyObjectsYaml,
  spawnProxy,
  workloadToken,
  type LocalControlPlane,
} from './local-proxies.ts';

export const GATEWAYS_GENERATED_FILE = 'gateways.generated.yaml';
const RESTART_DELAY_MS = 1000;
const SYNC_DEBOUNCE_MS = 200;
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

export interface LocalGatewaysOptions extends LocalControlPlane {
  readonly kubeDir: string;
  /** Where tokens and logs go. */
  readonly dir: string;
  readonly prefix: string;
  readonly nodeName: string;
  readonly report: (line: string) => void;
}

/** A running gateway deployment, for the guide and for tests. */
export interface LocalGateway extends GatewayDeploymentSpec {
  readonly podIp: string;
  readonly serviceIp: string;
  readonly admin: string;
  readonly metrics: string;
  readonly readiness: string;
  readonly log: string;
}

interface Running extends LocalGateway {
  child: ChildProcess | undefined;
  removed: boolean;
  restartTimer: NodeJS.Timeout | undefined;
  tokenFile: string;
}

export class LocalGateways {
  private readonly opts: LocalGatewaysOptions;
  private readonly kinds: readonly GatewayKind[];
  private readonly running = new Map<string, Running>();
  private readonly slots = new Map<string, number>();
  private wanted: LocalGateway[] = [];
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> = Promise.resolve();
  /** False until `run()`: the first sync only writes the objects, before the controller is up. */
  private spawning = false;
  private closed = false;

  private constructor(opts: LocalGatewaysOptions, kinds: readonly GatewayKind[]) {
    this.opts = opts;
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

  /** Starts the gateways (once the controller serves) and follows edits to the directory. */
  async run(): Promise<void> {
    this.spawning = true;
    this.watcher = watch(this.opts.kubeDir, (_event, file) => {
      if (this.closed || (file !== null && file.startsWith(GATEWAYS_GENERATED_FILE))) return;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => void this.sync(), SYNC_DEBOUNCE_MS);
    });
    await this.sync();
  }

  /** The gateway deployments wanted now (running, or restarting), in a stable order. */
  list(): readonly LocalGateway[] {
    return this.wanted;
  }

  /** Re-reads the YAML; writes the generated objects; starts and stops gateways to match. */
  sync(): Promise<void> {
    this.syncing = this.syncing
      .then(() => this.syncOnce())
      .catch((err: unknown) => this.opts.report(`ambit local: gateways: ${describeError(err)}\n`));
    return this.syncing;
  }

  /** Stops every gateway (SIGTERM; each drains) and resolves once all have exited. */
  async close(stopChild: (c: ChildProcess) => Promise<void>): Promise<void> {
    this.closed = true;
    this.watcher?.close();
    clearTimeout(this.timer);
    await this.syncing;
    await Promise.all(
      [...this.running.values()].map((r) => {
        r.removed = true;
        clearTimeout(r.restartTimer);
        return r.child ? stopChild(r.child) : Promise.resolve();
      }),
    );
  }

  private async syncOnce(): Promise<void> {
    if (this.closed) return;
    const docs = await meshDocuments(this.opts.kubeDir);
    const specs = new Map<string, GatewayDeploymentSpec>();
    for (const kind of this.kinds) for (const s of kind(docs)) if (!specs.has(key(s))) specs.set(key(s), s);
    const wanted: LocalGateway[] = [];
    for (const s of specs.values()) {
      const slot = s.slot ?? this.dynamicSlot(key(s));
      if (slot === undefined) {
        this.opts.report(`ambit local: no address left for gateway ${key(s)}; it does not run\n`);
        continue;
      }
      wanted.push(this.describe(s, slot));
    }
    this.wanted = wanted;
    // Write first: a gateway's address must be known before traffic is sent to it.
    const file = join(this.opts.kubeDir, GATEWAYS_GENERATED_FILE);
    await writeFile(`${file}.tmp`, generatedYaml(wanted, this.opts.nodeName));
    await rename(`${file}.tmp`, file);

    for (const [k, r] of this.running) {
      const w = wanted.find((x) => key(x) === k);
      // The same deployment with other labels or another address is a new pod.
      if (w && sameDeployment(w, r)) continue;
      this.running.delete(k);
      r.removed = true;
      clearTimeout(r.restartTimer);
      r.child?.kill('SIGTERM');
      if (!w) this.opts.report(`ambit local: ${r.role} ${k} stopped (no Gateway wants it)\n`);
    }
    for (const w of wanted) {
      if (this.running.has(key(w)) || !this.spawning) continue;
      const tokenFile = join(this.opts.dir, `gateway-${w.namespace}-${w.name}.token`);
      await workloadToken(this.opts, tokenFile, w.namespace, w.serviceAccount);
      const r: Running = { ...w, child: undefined, removed: false, restartTimer: undefined, tokenFile };
      this.running.set(key(w), r);
      this.spawn(r);
    }
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

  private spawn(r: Running): void {
    const who = `${r.role} ${key(r)}`;
    const env = {
      POD_NAME: `${r.name}-local`,
      POD_NAMESPACE: r.namespace,
      GATEWAY_NAME: r.name,
      SERVICE_ACCOUNT: r.serviceAccount,
      GATEWAY_LABELS: Object.entries(r.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
    };
    const child = spawnProxy(this.opts, 'gateway', r.podIp, r.tokenFile, env, r.log, who, this.opts.report);
    child.once('exit', (code, signal) => {
      if (r.removed || this.closed || r.child !== child) return;
      r.child = undefined;
      // Like a Deployment: a gateway that dies is started again.
      this.opts.report(`ambit local: ${who} exited (${code ?? signal}); restarting in 1 s; see ${r.log}\n`);
      r.restartTimer = setTimeout(() => {
        if (!r.removed && !this.closed) this.spawn(r);
      }, RESTART_DELAY_MS);
    });
    r.child = child;
  }
}

function key(d: { namespace: string; name: string }): string {
  return `${d.namespace}/${d.name}`;
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
