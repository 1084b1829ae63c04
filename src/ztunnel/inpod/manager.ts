/**
 * In-pod mode (DESIGN.md §5, issue 4): which pods on this node are captured, and keeping each one's
 * redirection rules and listeners in step with the mesh config.
 *
 * Pods become known two ways: the CNI plugin reports each new pod's network namespace (ADD) and its
 * end (DEL); pods the agent has no report for (they started while it was down) are found by scanning
 * the node's namespaces for their IPs. A known pod is captured while the mesh config has an HBONE
 * workload on this node with its IP; when the workload goes (or leaves the mesh) its listeners close
 * and its rules are removed. On agent shutdown the listeners drain but the rules stay, so a restarted
 * agent finds them in place, adopts the pod and opens its listeners again (until then the pod's
 * connections are refused rather than leaving the mesh).
 */
import type { Socket } from 'node:net';
import { describeError } from '../../core/errors.ts';
import { TCP_KEEPALIVE_MS } from '../../core/hbone/protocol.ts';
import type { SecretManager } from '../../core/identity/secret-manager.ts';
import { ipFamily } from '../../core/ip.ts';
import type { Logger } from '../../core/log.ts';
import { connectInNetns } from '../../core/netns/index.ts';
import type { MeshState } from '../../core/state/mesh-state.ts';
import { workloadIdentity, workloadSpiffe, type Workload } from '../../core/xds/model.ts';
import type { DialFrom, Dialer, ProxyContext } from '../proxy/context.ts';
import { hostDialer } from '../proxy/upstream.ts';
import {
  addResult,
  cniError,
  CniErrorCode,
  cniPod,
  EMPTY_SUCCESS,
  versionResult,
  type CniRequest,
  type CniResponse,
} from './cni-protocol.ts';
import { findOwners, listNetns, netnsKey, pinNetns, type PinnedNetns } from './netns-scan.ts';
import { PodProxy } from './pod-proxy.ts';
import { ensureRedirection, removeRedirection } from './redirect.ts';
import { AGENT_MARK } from './rules.ts';

/** A pod whose capture failed is tried again after this (as ztunnel retries a pod's proxy). */
const RETRY_MS = 5000;
/** Scans for unknown pods' namespaces at most this often. */
const SCAN_INTERVAL_MS = 2000;

export interface InpodOptions {
  readonly nodeName: string;
  /** Sources whose connections into pods are not captured (kubelet probes after the node's SNAT). */
  readonly probeSources: readonly string[];
}

interface PodEntry {
  readonly key: string;
  readonly netns: PinnedNetns;
  /** How the agent learned of it. */
  readonly via: 'cni' | 'scan';
  containerId: string;
  namespace: string;
  name: string;
  ips: readonly string[];
  /** Set while the pod is captured. */
  proxy: PodProxy | undefined;
  /** Redirection rules are (believed) installed. */
  redirected: boolean;
  /** The last failure, cleared on success. */
  error: string | undefined;
}

export class InpodManager implements Dialer {
  private readonly pods = new Map<string, PodEntry>();
  private readonly byIp = new Map<string, PodEntry>();
  private readonly opts: InpodOptions;
  private readonly ctx: ProxyContext;
  private readonly secrets: SecretManager;
  private readonly log: Logger;
  private running: Promise<void> | undefined;
  private again = false;
  private closed = false;
  private lastScanMs = 0;
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(opts: InpodOptions, ctx: ProxyContext, secrets: SecretManager, log: Logger) {
    this.opts = opts;
    this.ctx = ctx;
    this.secrets = secrets;
    this.log = log;
  }

  /** The CNI plugin's requests (cni-server.ts). */
  async handleCni(req: CniRequest): Promise<CniResponse> {
    if (req.command === 'VERSION') return versionResult(req);
    if (req.command !== 'ADD' && req.command !== 'DEL') return EMPTY_SUCCESS;
    const pod = cniPod(req);
    if (!pod.ok) return cniError(CniErrorCode.InvalidEnvironment, pod.error);
    const p = pod.value;
    if (req.command === 'DEL') {
      const entry = [...this.pods.values()].find((e) => e.containerId === p.containerId);
      if (entry) {
        this.log.info({ pod: `${entry.namespace}/${entry.name}` }, 'pod deleted (cni)');
        await this.drop(entry, true);
      }
      return EMPTY_SUCCESS;
    }
    if (this.closed) return cniError(CniErrorCode.TryAgainLater, 'the node agent is shutting down');
    let netns: PinnedNetns;
    try {
      netns = pinNetns(p.netns);
    } catch (err) {
      return cniError(
        CniErrorCode.InvalidEnvironment,
        `cannot open CNI_NETNS ${p.netns}`,
        describeError(err),
      );
    }
    const key = netnsKey(netns.id);
    const existing = this.pods.get(key);
    if (existing) {
      netns.release();
      Object.assign(existing, { containerId: p.containerId, namespace: p.namespace, name: p.name });
      this.setIps(existing, p.ips);
    } else {
      // A pod re-added with a new namespace (sandbox recreated) replaces its old entry.
      const stale = [...this.pods.values()].find((e) => e.namespace === p.namespace && e.name === p.name);
      if (stale) await this.drop(stale, false);
      this.add(
        { key, netns, via: 'cni', containerId: p.containerId, namespace: p.namespace, name: p.name },
        p.ips,
      );
    }
    this.log.info({ pod: `${p.namespace}/${p.name}`, ips: p.ips, netns: p.netns }, 'pod added (cni)');
    this.reconcile();
    return addResult(req);
  }

  /** Brings every pod in step with the current mesh config; runs one at a time. */
  reconcile(): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.reconcileOnce()
      .catch((err: unknown) => this.log.error({ error: describeError(err) }, 'in-pod reconcile failed'))
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.reconcile();
        }
      });
  }

  /** Resolves when no reconcile is running or queued (tests, readiness). */
  async settled(): Promise<void> {
    while (this.running) await this.running;
  }

  private wanted(state: MeshState): Workload[] {
    return state
      .workloadsOnNode(this.opts.nodeName)
      .filter((w) => w.tunnelProtocol === 'HBONE' && w.addresses.length > 0);
  }

  private async reconcileOnce(): Promise<void> {
    const state = this.ctx.state();
    const wanted = this.wanted(state);
    const unknown = wanted.flatMap((w) => w.addresses).filter((ip) => !this.byIp.has(ip));
    if (unknown.length > 0 && Date.now() - this.lastScanMs >= SCAN_INTERVAL_MS)
      await this.scan(unknown, wanted);

    const byIp = new Map<string, Workload>();
    for (const w of wanted) for (const ip of w.addresses) byIp.set(ip, w);
    let failed = false;
    for (const entry of [...this.pods.values()]) {
      const w = entry.ips.map((ip) => byIp.get(ip)).find((x) => x !== undefined);
      if (!w) {
        // Out of the mesh now (or never in it): no listeners, no rules.
        if (entry.proxy || entry.redirected) {
          this.log.info({ pod: `${entry.namespace}/${entry.name}` }, 'pod no longer captured');
          await this.release(entry, true);
        }
        // A pod found by scanning is only followed while the mesh knows it.
        if (entry.via === 'scan') await this.drop(entry, false);
        continue;
      }
      if (entry.proxy && workloadSpiffe(entry.proxy.workload) === workloadSpiffe(w)) continue;
      if (entry.proxy) await this.release(entry, false);
      try {
        await this.capture(entry, w);
        entry.error = undefined;
      } catch (err) {
        failed = true;
        entry.error = describeError(err);
        this.log.error(
          { pod: `${w.namespace}/${w.name}`, error: entry.error, retryInMs: RETRY_MS },
          'pod capture failed',
        );
      }
    }
    const stillUnknown = wanted.some((w) => w.addresses.every((ip) => !this.byIp.has(ip)));
    if ((failed || stillUnknown) && !this.retryTimer && !this.closed) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.reconcile();
      }, RETRY_MS);
      this.retryTimer.unref();
    }
  }

  private async capture(entry: PodEntry, w: Workload): Promise<void> {
    const families = [...new Set(entry.ips.map((ip) => ipFamily(ip)))].filter((f) => f === 4 || f === 6);
    const cert = await this.secrets.get(workloadIdentity(w));
    const { adopted } = await ensureRedirection(entry.netns.path, {
      families,
      probeSources: this.opts.probeSources,
    });
    entry.redirected = true;
    entry.proxy = await PodProxy.start(this.ctx, w, entry.netns.path, cert, this.log.child({ scope: 'pod' }));
    this.log.info(
      {
        pod: `${w.namespace}/${w.name}`,
        identity: workloadSpiffe(w),
        adopted,
        listeners: entry.proxy.listeners(),
      },
      'pod captured',
    );
  }

  /** Finds the namespaces of pods the mesh says are here but no CNI report named. */
  private async scan(ips: readonly string[], wanted: readonly Workload[]): Promise<void> {
    this.lastScanMs = Date.now();
    const candidates = await listNetns();
    for (const key of this.pods.keys()) candidates.delete(key);
    for (const [ip, owner] of findOwners(candidates, ips)) {
      if (this.byIp.has(ip)) continue;
      const w = wanted.find((x) => x.addresses.includes(ip));
      let netns: PinnedNetns;
      try {
        netns = pinNetns(owner.path);
      } catch {
        continue; // gone since the scan
      }
      const key = netnsKey(netns.id);
      const existing = this.pods.get(key);
      if (existing) {
        netns.release();
        this.setIps(existing, [...new Set([...existing.ips, ip])]);
        continue;
      }
      this.add(
        { key, netns, via: 'scan', containerId: '', namespace: w?.namespace ?? '', name: w?.name ?? '' },
        [ip],
      );
      this.log.info({ pod: `${w?.namespace}/${w?.name}`, ip, netns: owner.path }, 'pod found by scanning');
    }
  }

  private add(
    e: Pick<PodEntry, 'key' | 'netns' | 'via' | 'containerId' | 'namespace' | 'name'>,
    ips: readonly string[],
  ): void {
    const entry: PodEntry = { ...e, ips: [], proxy: undefined, redirected: false, error: undefined };
    this.pods.set(entry.key, entry);
    this.setIps(entry, ips);
  }

  private setIps(entry: PodEntry, ips: readonly string[]): void {
    for (const ip of entry.ips) if (this.byIp.get(ip) === entry) this.byIp.delete(ip);
    entry.ips = ips;
    for (const ip of ips) this.byIp.set(ip, entry);
  }

  /** Closes the pod's listeners now and, if asked, removes its rules. */
  private async release(entry: PodEntry, removeRules: boolean): Promise<void> {
    const proxy = entry.proxy;
    entry.proxy = undefined;
    await proxy?.close(0);
    if (removeRules && entry.redirected) {
      entry.redirected = false;
      await removeRedirection(entry.netns.path).catch((err: unknown) =>
        // The namespace may be gone with the pod; then so are the rules.
        this.log.debug(
          { pod: `${entry.namespace}/${entry.name}`, error: describeError(err) },
          'rules not removed',
        ),
      );
    }
  }

  /** Forgets a pod: listeners closed, rules removed if asked, namespace unpinned. */
  private async drop(entry: PodEntry, removeRules: boolean): Promise<void> {
    if (this.pods.get(entry.key) !== entry) return;
    this.pods.delete(entry.key);
    this.setIps(entry, []);
    await this.release(entry, removeRules);
    entry.netns.release();
  }

  /** What readiness still waits for: pods of this node not yet captured, with the reason. */
  pending(): string[] {
    const out: string[] = [];
    for (const w of this.wanted(this.ctx.state())) {
      const entry = w.addresses.map((ip) => this.byIp.get(ip)).find((e) => e !== undefined);
      const pod = `pod ${w.namespace}/${w.name}`;
      if (!entry) out.push(`${pod}: network namespace not found yet (no CNI report, not found by scanning)`);
      else if (entry.error) out.push(`${pod}: ${entry.error}`);
      else if (!entry.proxy) out.push(`${pod}: listeners starting`);
    }
    return out;
  }

  /** Captured pods and their listeners, for the admin page. */
  describe(): Record<string, unknown>[] {
    return [...this.pods.values()].map((e) => ({
      pod: `${e.namespace}/${e.name}`,
      via: e.via,
      ips: e.ips,
      netns: e.netns.path,
      captured: e.proxy !== undefined,
      listeners: e.proxy?.listeners() ?? [],
      ...(e.error ? { error: e.error } : {}),
    }));
  }

  /** Connections for a known pod start inside its namespace, marked to pass its capture rules. */
  dial(host: string, port: number, from: DialFrom): Socket {
    const entry = from.pod === undefined ? undefined : this.byIp.get(from.pod);
    if (!entry) return hostDialer.dial(host, port, from);
    const family = ipFamily(host);
    const socket = connectInNetns(
      entry.netns.path,
      { family: family === 6 ? 6 : 4, mark: AGENT_MARK, allowHalfOpen: true },
      { host, port },
    );
    socket.setNoDelay(true);
    socket.setKeepAlive(true, TCP_KEEPALIVE_MS);
    return socket;
  }

  /** Certificates renewed: captured pods present the new one to new connections. */
  onCertificate(identity: string, apply: (proxy: PodProxy) => void): void {
    for (const e of this.pods.values())
      if (e.proxy && workloadSpiffe(e.proxy.workload) === identity) apply(e.proxy);
  }

  /** Agent shutdown: listeners drain up to the deadline; rules stay for the next agent to adopt. */
  async close(deadlineMs: number): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.running;
    await Promise.all([...this.pods.values()].flatMap((e) => (e.proxy ? [e.proxy.close(deadlineMs)] : [])));
    for (const e of this.pods.values()) e.netns.release();
    this.pods.clear();
    this.byIp.clear();
  }
}
