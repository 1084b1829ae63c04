/**
 * Fakes for the in-pod manager's effects (src/ztunnel/inpod/manager.ts `InpodEffects`): a node of
 * fake network namespaces with addresses and rules, pins that record their release, listeners that
 * record their close, a manual clock and a certificate source whose answers the test controls. Every
 * effect is recorded in one ordered log, so a test can check what happened before what.
 */
import type { Clock } from '../../../src/core/clock.ts';
import type { WorkloadCertificate } from '../../../src/core/identity/certificate.ts';
import { formatSpiffe, type Identity } from '../../../src/core/identity/spiffe.ts';
import { silentLogger } from '../../../src/core/log.ts';
import { MeshState } from '../../../src/core/state/mesh-state.ts';
import type { MeshConfig, Workload } from '../../../src/core/xds/model.ts';
import {
  formatCniRequest,
  parseCniRequest,
  type CniResponse,
} from '../../../src/ztunnel/inpod/cni-protocol.ts';
import { InpodManager, type InpodEffects } from '../../../src/ztunnel/inpod/manager.ts';
import { netnsKey, scanOwners, type PinnedNetns } from '../../../src/ztunnel/inpod/netns-scan.ts';
import type { PodListeners } from '../../../src/ztunnel/inpod/pod-proxy.ts';
import type { ProxyContext } from '../../../src/ztunnel/proxy/context.ts';
import { workload } from '../../fixtures/mesh-config.ts';

export const NODE = 'node-1';

/** A workload of this node's (a Kubernetes pod as the controller sends it). */
export function pod(
  name: string,
  addresses: string[],
  over: Partial<Omit<Workload, 'services'>> = {},
): Workload {
  const namespace = over.namespace ?? 'demo';
  return workload({
    name,
    namespace,
    uid: `Kubernetes//Pod/${namespace}/${name}`,
    addresses,
    node: NODE,
    serviceAccount: `sa-${name}`,
    ...over,
  });
}

/** Lets every promise chain that can make progress do so. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
}

/** Manual time: timers run only when the test advances the clock. */
export class FakeClock implements Clock {
  private now = 1_000_000;
  private timers: { atMs: number; seq: number; fn: () => void }[] = [];
  private seq = 0;

  nowMs(): number {
    return this.now;
  }

  setTimer(fn: () => void, delayMs: number): () => void {
    const t = { atMs: this.now + delayMs, seq: this.seq++, fn };
    this.timers.push(t);
    return () => {
      this.timers = this.timers.filter((x) => x !== t);
    };
  }

  /** Moves time forward, running each due timer at its own time and letting promises settle. */
  async advance(ms: number): Promise<void> {
    const target = this.now + ms;
    for (;;) {
      const due = this.timers
        .filter((t) => t.atMs <= target)
        .sort((a, b) => a.atMs - b.atMs || a.seq - b.seq)[0];
      if (!due) break;
      this.timers = this.timers.filter((t) => t !== due);
      this.now = due.atMs;
      due.fn();
      await settle();
    }
    this.now = target;
    await settle();
  }
}

/** A network namespace of the fake node. */
export interface FakeNetns {
  readonly name: string;
  readonly ino: number;
  /** Addresses on its interfaces (not loopback). */
  ips: string[];
  /** Addresses bindable only because loopback carries them. */
  loIps: string[];
  /** Our rules are in it. */
  rules: boolean;
  /** Something other than the agent holds it (a process, a bind mount). */
  alive: boolean;
  /** Rule installation fails in it, after installing part of the rules. */
  failInstall: boolean;
}

export class FakeListeners implements PodListeners {
  readonly workload: Workload;
  readonly netns: string;
  closedWith: number | undefined;
  private readonly log: string[];
  /** Set by the test to hold close() open, like a slow drain. */
  hold: Promise<void> | undefined;

  constructor(workload: Workload, netns: string, log: string[]) {
    this.workload = workload;
    this.netns = netns;
    this.log = log;
  }

  listeners(): string[] {
    return this.closedWith === undefined ? ['0.0.0.0:15001', '0.0.0.0:15006', '0.0.0.0:15008'] : [];
  }

  setCertificate(): void {}

  async close(deadlineMs: number): Promise<void> {
    this.closedWith = deadlineMs;
    this.log.push(`close-listeners ${this.netns} ${deadlineMs}`);
    await this.hold;
  }
}

/** A certificate request the test answers. */
interface CertWait {
  readonly identity: string;
  resolve(cert: WorkloadCertificate): void;
  reject(err: Error): void;
}

/** The fake node, the fake effects over it, and a manager using them. */
export class FakeNode {
  readonly clock = new FakeClock();
  readonly log: string[] = [];
  readonly namespaces = new Map<string, FakeNetns>();
  readonly proxies: FakeListeners[] = [];
  readonly pooledClosed: string[] = [];
  readonly certWaits: CertWait[] = [];
  /** When false, certificate requests wait for {@link answerCerts}. */
  certsReady = true;
  synced = true;
  config: MeshConfig = { workloads: [], services: [], policies: [] };
  private state = new MeshState(this.config);
  private ino = 100;
  /** Open pins: pinned path → the namespace it holds. */
  readonly pins = new Map<string, FakeNetns>();
  private pinSeq = 0;
  readonly manager: InpodManager;

  constructor(opts: { cniAddTimeoutMs?: number } = {}) {
    const ctx = { state: () => this.state, trustDomain: 'cluster.local' } as unknown as ProxyContext;
    const secrets = {
      get: (identity: Identity): Promise<WorkloadCertificate> => {
        const id = formatSpiffe(identity);
        this.log.push(`cert ${id}`);
        if (this.certsReady) return Promise.resolve({ identity } as unknown as WorkloadCertificate);
        return new Promise((resolve, reject) => this.certWaits.push({ identity: id, resolve, reject }));
      },
    };
    this.manager = new InpodManager(
      {
        nodeName: NODE,
        probeSources: [],
        ...(opts.cniAddTimeoutMs !== undefined && { cniAddTimeoutMs: opts.cniAddTimeoutMs }),
      },
      ctx,
      secrets,
      silentLogger(),
      this.effects(),
    );
  }

  /** Replaces the mesh config, as an xDS update does (the manager is told, as app.ts tells it). */
  setWorkloads(workloads: Workload[]): void {
    this.config = { workloads, services: [], policies: [] };
    this.state = new MeshState(this.config);
    this.manager.reconcile();
  }

  /** A namespace on the node, at `/var/run/netns/<name>`. */
  addNetns(name: string, ips: string[], over: Partial<FakeNetns> = {}): FakeNetns {
    const ns: FakeNetns = {
      name,
      ino: this.ino++,
      ips,
      loIps: [],
      rules: false,
      alive: true,
      failInstall: false,
      ...over,
    };
    this.namespaces.set(`/var/run/netns/${name}`, ns);
    return ns;
  }

  /** Answers every waiting certificate request. */
  answerCerts(): void {
    for (const w of this.certWaits.splice(0))
      w.resolve({ identity: w.identity } as unknown as WorkloadCertificate);
  }

  /** Open pins of a namespace. */
  pinsOf(ns: FakeNetns): number {
    return [...this.pins.values()].filter((x) => x === ns).length;
  }

  /** Runs the real plugin's request through the manager. */
  cni(
    command: 'ADD' | 'DEL',
    ns: FakeNetns | string,
    name: string,
    ips: string[],
    over: { namespace?: string; containerId?: string } = {},
  ): Promise<CniResponse> {
    const nsName = typeof ns === 'string' ? ns : ns.name;
    const req = parseCniRequest(
      formatCniRequest(
        {
          CNI_COMMAND: command,
          CNI_CONTAINERID: over.containerId ?? `ctr-${nsName}`,
          CNI_NETNS: `/var/run/netns/${nsName}`,
          CNI_IFNAME: 'eth0',
          CNI_ARGS: `K8S_POD_NAMESPACE=${over.namespace ?? 'demo'};K8S_POD_NAME=${name}`,
        },
        JSON.stringify({
          cniVersion: '1.0.0',
          prevResult: { cniVersion: '1.0.0', ips: ips.map((ip) => ({ address: `${ip}/32` })) },
        }),
      ),
    );
    if (!req.ok) throw new Error(req.error);
    return this.manager.handleCni(req.value);
  }

  private nsAt(path: string): FakeNetns | undefined {
    const ns = this.pins.get(path) ?? this.namespaces.get(path);
    return ns && (ns.alive || this.pins.get(path) === ns) ? ns : undefined;
  }

  private effects(): InpodEffects {
    const pin = (path: string): PinnedNetns => {
      const ns = this.nsAt(path);
      if (!ns) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
      const pinned = `/proc/self/fd/pin-${this.pinSeq++}`;
      this.pins.set(pinned, ns);
      let released = false;
      return {
        path: pinned,
        id: { dev: 4, ino: ns.ino },
        release: () => {
          if (released) return;
          released = true;
          this.pins.delete(pinned);
        },
      };
    };
    const listNetns = () =>
      Promise.resolve(
        new Map(
          [...this.namespaces]
            .filter(([, ns]) => ns.alive)
            .map(([path, ns]) => [netnsKey({ dev: 4, ino: ns.ino }), path] as const),
        ),
      );
    const must = (path: string) => {
      const ns = this.nsAt(path);
      if (!ns) throw new Error(`no namespace at ${path}`);
      return ns;
    };
    return {
      clock: this.clock,
      pinNetns: pin,
      netnsKeyAt: (path) => {
        const ns = this.nsAt(path);
        return ns ? netnsKey({ dev: 4, ino: ns.ino }) : undefined;
      },
      listNetns,
      scanOwners: (ips, skip) =>
        scanOwners(ips, skip, {
          listNetns,
          excluded: () => new Set(),
          pinNetns: pin,
          hasIp: (path, ip) => {
            const ns = this.nsAt(path);
            return ns !== undefined && (ns.ips.includes(ip) || ns.loIps.includes(ip));
          },
          interfaceAddresses: (path) => Promise.resolve(must(path).ips),
        }).then((r) => {
          this.log.push(`scan ${ips.join(',')}`);
          return r;
        }),
      ownsIp: (path, ip) => this.nsAt(path)?.ips.includes(ip) ?? false,
      ensureRedirection: (path) => {
        const ns = must(path);
        this.log.push(`install ${ns.name}`);
        ns.rules = true;
        if (ns.failInstall) return Promise.reject(new Error('ip6tables-restore failed'));
        return Promise.resolve({ adopted: false });
      },
      unhookRedirection: (path) => {
        const ns = must(path);
        this.log.push(`unhook ${ns.name}`);
        return Promise.resolve();
      },
      removeRedirection: (path) => {
        const ns = must(path);
        this.log.push(`remove ${ns.name}`);
        ns.rules = false;
        return Promise.resolve();
      },
      hasRedirection: (path) => Promise.resolve(must(path).rules),
      interfaceAddresses: (path) => Promise.resolve(must(path).ips),
      startProxy: (w, path) => {
        const ns = must(path);
        this.log.push(`listen ${ns.name} as ${w.namespace}/${w.name} ${w.addresses.join(',')}`);
        const p = new FakeListeners(w, ns.name, this.log);
        this.proxies.push(p);
        return Promise.resolve(p);
      },
      closePooled: (ip) => void this.pooledClosed.push(ip),
      configSynced: () => this.synced,
    };
  }
}
