/**
 * In-pod mode (DESIGN.md §5, issue 4): which pods on this node are captured, and keeping each one's
 * redirection rules and listeners in step with the mesh config.
 *
 * Pods become known two ways. The CNI plugin reports each new pod (ADD) before its containers start:
 * the agent waits (AMBIT_CNI_ADD_TIMEOUT) for the mesh config to know the pod by namespace and name
 * (the controller sends a pod as soon as it is scheduled, before it has an IP), and for an HBONE pod
 * installs the rules and opens the listeners, with the IPs the CNI reported, before answering; so a
 * pod never sends a packet uncaptured. The plugin also reports the pod's end (DEL). Pods the agent
 * has no report for (they started while it was down) are found by scanning the node's namespaces for
 * the IPs of this node's HBONE workloads.
 *
 * A pod's identity comes from the workload it is matched to by namespace and name, never from an IP
 * alone (an IP the mesh config still lists for a deleted pod may already be a new pod's). When the
 * workload leaves the mesh, capture stops first (new connections then go direct), then its listeners
 * close and their connections are cut at once, then the rest of its rules go. On agent shutdown the listeners drain but the rules stay, so a restarted
 * agent finds them in place, adopts the pod and opens its listeners again (until then the pod's
 * connections are refused rather than leaving the mesh). Rules left in pods that are no longer in
 * the mesh (the pod left it while the agent was down) are found and removed by a periodic sweep.
 *
 * Everything that changes which pods are known and what is installed in them (ADD, DEL, reconcile,
 * adoption by scanning, orphan removal, shutdown) runs through one queue, one step at a time. The
 * slow waits (the pod's certificate, scanning, the sweep's inspection) run outside it, and whatever
 * they find is applied by a queued step that first checks the pod is still the one it was for: a pod
 * deleted while its certificate was fetched is never given listeners in a namespace it no longer has.
 */
import type { Socket } from 'node:net';
import { systemClock, type Clock } from '../../core/clock.ts';
import { AmbitError, describeError, ErrorCode } from '../../core/errors.ts';
import { TCP_KEEPALIVE_MS } from '../../core/hbone/protocol.ts';
import type { WorkloadCertificate } from '../../core/identity/certificate.ts';
import type { SecretManager } from '../../core/identity/secret-manager.ts';
import { ipFamily, ipFromBytes, ipToBytes } from '../../core/ip.ts';
import type { Logger } from '../../core/log.ts';
import { connectInNetns } from '../../core/netns/index.ts';
import type { MeshState } from '../../core/state/mesh-state.ts';
import { TunnelProtocol, workloadIdentity, workloadSpiffe, type Workload } from '../../core/xds/model.ts';
import type { DialFrom, Dialer, ProxyContext } from '../proxy/context.ts';
import {
  addResult,
  cniError,
  CniErrorCode,
  cniPod,
  EMPTY_SUCCESS,
  versionResult,
  type CniPod,
  type CniRequest,
  type CniResponse,
} from './cni-protocol.ts';
import {
  excludedNetns,
  listNetns,
  netnsHasIp,
  netnsKey,
  netnsKeyAt,
  pinNetns,
  scanOwners,
  type PinnedNetns,
  type ScanResult,
} from './netns-scan.ts';
import { decidePod, orphanVerdict, type PodFacts } from './pod-match.ts';
import { PodProxy, type PodListeners } from './pod-proxy.ts';
import {
  ensureRedirection,
  hasRedirection,
  interfaceAddresses,
  removeRedirection,
  unhookRedirection,
  type RedirectOptions,
  type RedirectResult,
} from './redirect.ts';
import { AGENT_MARK } from './rules.ts';

/** A pod whose capture failed is tried again after this (as ztunnel retries a pod's proxy). */
export const RETRY_MS = 5000;
/** Scans for unknown pods' namespaces start this often, and back off to the max while they find nothing. */
export const SCAN_MIN_INTERVAL_MS = 2000;
const SCAN_MAX_INTERVAL_MS = 60_000;
/** How often the agent checks that the namespaces it holds still belong to live pods. */
export const RECHECK_INTERVAL_MS = 10_000;
/** How often (after the first full config) the agent looks for rules left in pods it does not want. */
export const SWEEP_INTERVAL_MS = 5 * 60_000;
/** How long a CNI ADD waits for the pod to appear in the mesh config, by default. */
export const DEFAULT_CNI_ADD_TIMEOUT_MS = 5000;
/**
 * A namespace a CNI ADD named but the agent did not take (it waits, or was refused) is kept from
 * scans this long: a scan goes by IP, and the IP may be one the mesh config still gives a deleted
 * pod. The kubelet retries the ADD (or sends DEL) well within it.
 */
const REPORTED_NETNS_TTL_MS = 60_000;

export interface InpodOptions {
  readonly nodeName: string;
  /** Sources whose connections into pods are not captured (kubelet probes after the node's SNAT). */
  readonly probeSources: readonly string[];
  /**
   * How long a CNI ADD waits for the pod to appear in the mesh config, and then for its listeners
   * (AMBIT_CNI_ADD_TIMEOUT); {@link DEFAULT_CNI_ADD_TIMEOUT_MS} when absent.
   */
  readonly cniAddTimeoutMs?: number;
}

/** What the manager does to the world; each has a real default, and tests pass fakes. */
export interface InpodEffects {
  readonly clock: Clock;
  /** Opens and pins the namespace at a path; throws if there is none. */
  pinNetns(path: string): PinnedNetns;
  /** The key (dev:inode) of the namespace at a path now, or undefined if there is none. */
  netnsKeyAt(path: string): string | undefined;
  /** Every namespace on the node but the agent's and the host's, by key, with a path to it. */
  listNetns(): Promise<Map<string, string>>;
  /** Finds the namespaces owning `ips` among those not skipped (netns-scan.ts). */
  scanOwners(ips: readonly string[], skip: (key: string) => boolean): Promise<ScanResult>;
  /** Whether the namespace at the path (can) own `ip`. */
  ownsIp(netnsPath: string, ip: string): boolean;
  /** Installs the pod's rules, or adopts them if they are already exactly right (redirect.ts). */
  ensureRedirection(netnsPath: string, opts: RedirectOptions): Promise<RedirectResult>;
  /** Stops capturing new connections, keeping the translation of captured ones (redirect.ts). */
  unhookRedirection(netnsPath: string): Promise<void>;
  /** Removes whatever of our rules the namespace has (redirect.ts; idempotent). */
  removeRedirection(netnsPath: string): Promise<void>;
  /** Whether any of our rules are in the namespace. */
  hasRedirection(netnsPath: string): Promise<boolean>;
  /** The namespace's addresses on interfaces other than loopback. */
  interfaceAddresses(netnsPath: string): Promise<string[]>;
  /** Opens the pod's listeners inside its namespace. */
  startProxy(workload: Workload, netnsPath: string, cert: WorkloadCertificate): Promise<PodListeners>;
  /** Closes pooled HBONE connections dialled from `ip` (a released pod's). */
  closePooled(ip: string): void;
  /** Whether the agent has had its first full mesh config (xDS synced, or the file read). */
  configSynced(): boolean;
}

/** The real effects: the addon, nsenter and the tools, the pool. */
function realInpodEffects(ctx: ProxyContext, log: Logger): InpodEffects {
  const podLog = log.child({ scope: 'pod' });
  return {
    clock: systemClock,
    pinNetns,
    netnsKeyAt,
    listNetns,
    scanOwners: (ips, skip) =>
      scanOwners(ips, skip, {
        listNetns,
        excluded: excludedNetns,
        pinNetns,
        hasIp: netnsHasIp,
        interfaceAddresses,
      }),
    ownsIp: netnsHasIp,
    ensureRedirection,
    unhookRedirection,
    removeRedirection,
    hasRedirection,
    interfaceAddresses,
    startProxy: (w, path, cert) => PodProxy.start(ctx, w, path, cert, podLog),
    closePooled: (ip) => void ctx.pool.closeFrom(ip),
    configSynced: () => true,
  };
}

interface PodEntry extends PodFacts {
  readonly key: string;
  readonly netns: PinnedNetns;
  /** A pod found by scanning becomes a CNI one when the CNI reports it (its ADD raced the scan). */
  via: 'cni' | 'scan';
  /** Order of creation: a check that listed namespaces before this entry existed must skip it. */
  readonly seq: number;
  containerId: string;
  namespace: string;
  name: string;
  ips: readonly string[];
  /** The listeners, while the pod is captured. */
  proxy: PodListeners | undefined;
  /** The identity (SPIFFE ID) a capture under way or done is for. */
  capturing: string | undefined;
  /** Bumped whenever a capture is abandoned or superseded; a step that finds it changed stops. */
  generation: number;
  /** Rules may be installed (set before trying, so a failure part-way is still cleaned up). */
  redirected: boolean;
  /** Dropped from the map: nothing may be installed for it any more. */
  gone: boolean;
  /** The last capture failure, cleared on success. */
  error: string | undefined;
  /** When a failed capture is tried again. */
  retryAtMs: number;
  /** The certificate wait and listener start under way. */
  starting: Promise<void> | undefined;
}

type Registered =
  | { readonly ok: true; readonly entry: PodEntry; readonly starting: Promise<void> | undefined }
  | { readonly ok: false; readonly response: CniResponse };

export class InpodManager implements Dialer {
  private readonly pods = new Map<string, PodEntry>();
  private readonly byIp = new Map<string, PodEntry>();
  private readonly opts: InpodOptions;
  private readonly ctx: ProxyContext;
  private readonly secrets: Pick<SecretManager, 'get'>;
  private readonly log: Logger;
  private readonly fx: InpodEffects;
  private readonly addTimeoutMs: number;
  /** The tail of the queue every state change runs through. */
  private tail: Promise<void> = Promise.resolve();
  private reconcileQueued = false;
  /** Background work (certificate waits, scans, sweeps, drains) that settled() waits for. */
  private readonly background = new Set<Promise<unknown>>();
  /** Listener drains under way; shutdown waits for these (not for certificate waits). */
  private readonly drains = new Set<Promise<unknown>>();
  /** ADDs waiting for the mesh config to change. */
  private readonly configWaiters = new Set<() => void>();
  /** Namespaces (by key) that ADDs named and the agent has not taken: key → until when. */
  private readonly reported = new Map<string, number>();
  private closed = false;
  private seq = 0;
  private wake: { atMs: number; cancel: () => void } | undefined;
  private scanning = false;
  private scanIntervalMs = SCAN_MIN_INTERVAL_MS;
  private nextScanMs = 0;
  private lastScanIps = '';
  private rechecking = false;
  private nextRecheckMs = 0;
  private sweeping = false;
  private nextSweepMs: number | undefined;
  /** Namespaces with rules whose addresses the config did not know, as of the last sweep. */
  private sweepSuspects = new Set<string>();

  constructor(
    opts: InpodOptions,
    ctx: ProxyContext,
    secrets: Pick<SecretManager, 'get'>,
    log: Logger,
    effects: Partial<InpodEffects> = {},
  ) {
    this.opts = opts;
    this.ctx = ctx;
    this.secrets = secrets;
    this.log = log;
    this.fx = { ...realInpodEffects(ctx, log), ...effects };
    this.addTimeoutMs = opts.cniAddTimeoutMs ?? DEFAULT_CNI_ADD_TIMEOUT_MS;
    this.nextRecheckMs = this.fx.clock.nowMs() + RECHECK_INTERVAL_MS;
  }

  // ---------------------------------------------------------------- the queue

  /** Runs `fn` after every step queued before it; the queue goes on whatever `fn` does. */
  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn);
    this.tail = run.then(
      () => undefined,
      (err: unknown) => this.log.error({ error: describeError(err) }, 'in-pod step failed'),
    );
    return run;
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.background.add(p);
    void p.finally(() => this.background.delete(p)).catch(() => undefined);
    return p;
  }

  /** Resolves when nothing is queued and no background work is under way (tests, readiness). */
  async settled(): Promise<void> {
    for (;;) {
      const tail = this.tail;
      await tail;
      if (this.background.size > 0) {
        await Promise.allSettled([...this.background]);
        continue;
      }
      if (tail === this.tail && !this.reconcileQueued) return;
    }
  }

  // ---------------------------------------------------------------- CNI

  /** The CNI plugin's requests (cni-server.ts). */
  async handleCni(req: CniRequest): Promise<CniResponse> {
    if (req.command === 'VERSION') return versionResult(req);
    if (req.command !== 'ADD' && req.command !== 'DEL') return EMPTY_SUCCESS;
    const pod = cniPod(req);
    if (!pod.ok) return cniError(CniErrorCode.InvalidEnvironment, pod.error);
    if (req.command === 'DEL') {
      await this.enqueue(() => this.cniDel(pod.value));
      return EMPTY_SUCCESS;
    }
    // The clock's timers never hold the process; a pending ADD is work in progress that must.
    const hold = setInterval(() => undefined, 1 << 30);
    try {
      return await this.cniAdd(req, pod.value);
    } finally {
      clearInterval(hold);
    }
  }

  /**
   * ADD: wait for the mesh config to know the pod; if it is a mesh pod, install its rules and open
   * its listeners before answering, so its first packet is already captured.
   */
  private async cniAdd(req: CniRequest, p: CniPod): Promise<CniResponse> {
    const ref = `${p.namespace}/${p.name}`;
    const facts: PodFacts = { via: 'cni', namespace: p.namespace, name: p.name, ips: p.ips };
    const deadline = this.fx.clock.nowMs() + this.addTimeoutMs;
    // The scan must not take this namespace for whichever pod the config gives its IP meanwhile.
    const reportedKey = this.fx.netnsKeyAt(p.netns);
    if (reportedKey !== undefined) this.reported.set(reportedKey, deadline + REPORTED_NETNS_TTL_MS);
    let d = decidePod(this.ctx.state(), this.opts.nodeName, facts);
    while ((d.kind === 'unknown' || d.kind === 'pending') && !this.closed) {
      if (!(await this.configChange(deadline))) break;
      d = decidePod(this.ctx.state(), this.opts.nodeName, facts);
    }
    if (this.closed) return cniError(CniErrorCode.TryAgainLater, 'the node agent is shutting down');
    if (d.kind === 'unknown' || d.kind === 'pending') {
      const msg =
        d.kind === 'unknown'
          ? `the mesh config has no pod ${ref} on node ${this.opts.nodeName} yet`
          : `pod ${ref} does not match the mesh config yet: ${d.reason}`;
      this.log.warn({ pod: ref, waitedMs: this.addTimeoutMs }, `cni add refused: ${msg}`);
      return cniError(
        CniErrorCode.TryAgainLater,
        msg,
        `waited ${this.addTimeoutMs} ms (AMBIT_CNI_ADD_TIMEOUT); the kubelet retries the pod sandbox. Is the controller up, and does it see the pod?`,
      );
    }
    const r = await this.enqueue(() => this.register(p));
    if (!r.ok) return r.response;
    if (reportedKey !== undefined) this.reported.delete(reportedKey);
    if (r.starting) {
      // Rules are in; the listeners need the pod's certificate. Past the wait, ADD still succeeds:
      // the pod's connections are refused (not uncaptured) until the listeners are up.
      const up = await this.within(r.starting, this.addTimeoutMs);
      if (!up || !r.entry.proxy)
        this.log.warn(
          { pod: ref, error: r.entry.error ?? `listeners not up within ${this.addTimeoutMs} ms` },
          'pod added with its rules but not yet its listeners',
        );
    }
    this.log.info(
      { pod: ref, ips: p.ips, netns: p.netns, captured: r.entry.proxy !== undefined },
      'pod added (cni)',
    );
    return addResult(req);
  }

  /** Pins and records the pod and, if the mesh wants it captured, installs its rules (queued). */
  private async register(p: CniPod): Promise<Registered> {
    if (this.closed)
      return { ok: false, response: cniError(CniErrorCode.TryAgainLater, 'the node agent is shutting down') };
    let netns: PinnedNetns;
    try {
      netns = this.fx.pinNetns(p.netns);
    } catch (err) {
      return {
        ok: false,
        response: cniError(
          CniErrorCode.InvalidEnvironment,
          `cannot open CNI_NETNS ${p.netns}`,
          describeError(err),
        ),
      };
    }
    const key = netnsKey(netns.id);
    let entry = this.pods.get(key);
    if (entry) {
      netns.release();
      entry.via = 'cni';
      entry.containerId = p.containerId;
      entry.namespace = p.namespace;
      entry.name = p.name;
      this.setIps(entry, p.ips);
    } else {
      // A pod re-added with a new namespace (sandbox recreated) replaces its old entry.
      for (const stale of [...this.pods.values()])
        if (stale.namespace === p.namespace && stale.name === p.name)
          await this.drop(stale, true, 'replaced by a new sandbox');
      entry = this.add(
        { key, netns, via: 'cni', containerId: p.containerId, namespace: p.namespace, name: p.name },
        p.ips,
      );
    }
    const d = decidePod(this.ctx.state(), this.opts.nodeName, entry);
    if (d.kind !== 'capture') return { ok: true, entry, starting: undefined };
    const id = workloadSpiffe(d.workload);
    if (entry.proxy && workloadSpiffe(entry.proxy.workload) === id)
      return { ok: true, entry, starting: undefined };
    if (entry.capturing === id) return { ok: true, entry, starting: entry.starting }; // a repeated ADD
    if (entry.proxy) this.closeListeners(entry, 0);
    if (!(await this.capture(entry, d.workload))) {
      const error = entry.error ?? 'capture failed';
      await this.drop(entry, true, 'its capture failed');
      return {
        ok: false,
        response: cniError(
          CniErrorCode.CaptureFailed,
          `cannot install the redirection of pod ${p.namespace}/${p.name}`,
          error,
        ),
      };
    }
    return { ok: true, entry, starting: entry.starting };
  }

  /**
   * DEL: forget the pod, by its container id, else the identity of its namespace (if that still
   * exists), else its name for a pod found by scanning whose namespace is gone (queued).
   */
  private async cniDel(p: CniPod): Promise<void> {
    const nsKey = p.netns ? this.fx.netnsKeyAt(p.netns) : undefined;
    if (nsKey !== undefined) this.reported.delete(nsKey);
    let matches = [...this.pods.values()].filter((e) => e.containerId === p.containerId);
    if (matches.length === 0 && nsKey !== undefined)
      matches = this.pods.has(nsKey) ? [this.pods.get(nsKey)!] : [];
    if (matches.length === 0 && nsKey === undefined && p.namespace && p.name) {
      // Only a scanned pod (its container id unknown) whose namespace only the agent still holds: a
      // DEL naming a live pod's name may be the garbage collection of an older sandbox of it.
      const named = [...this.pods.values()].filter(
        (e) => e.via === 'scan' && e.namespace === p.namespace && e.name === p.name,
      );
      if (named.length > 0) {
        const live = await this.fx.listNetns();
        matches = named.filter((e) => !live.has(e.key));
      }
    }
    for (const e of matches) await this.drop(e, true, 'deleted (cni)');
  }

  // ---------------------------------------------------------------- reconcile

  /** Brings every pod in step with the current mesh config (queued; calls while one waits coalesce). */
  reconcile(): void {
    for (const w of [...this.configWaiters]) w();
    if (this.closed || this.reconcileQueued) return;
    this.reconcileQueued = true;
    void this.enqueue(async () => {
      this.reconcileQueued = false;
      await this.reconcileOnce();
    });
  }

  private async reconcileOnce(): Promise<void> {
    if (this.closed) return;
    const state = this.ctx.state();
    const now = this.fx.clock.nowMs();
    for (const entry of [...this.pods.values()]) {
      if (this.pods.get(entry.key) !== entry) continue; // dropped by an earlier turn of this loop
      const d = decidePod(state, this.opts.nodeName, entry);
      if (d.kind === 'capture') {
        const id = workloadSpiffe(d.workload);
        // Later config (the pod's IP arriving, labels changing) changes nothing for a pod captured
        // with the same identity: the listeners look the workload up on every connection.
        if (entry.proxy && workloadSpiffe(entry.proxy.workload) === id) continue;
        if (entry.capturing === id) continue; // under way
        if (entry.error && now < entry.retryAtMs) continue;
        if (entry.proxy) {
          this.log.info({ pod: ref(entry), identity: id }, 'pod identity changed, reopening its listeners');
          this.closeListeners(entry, 0);
        }
        await this.capture(entry, d.workload);
        continue;
      }
      if (d.kind === 'pending') continue; // left as it is; pending() says why
      if (entry.via === 'scan') {
        await this.drop(entry, true, d.reason);
        continue;
      }
      if (entry.proxy || entry.redirected || entry.capturing) {
        this.log.info({ pod: ref(entry), reason: d.reason }, 'pod no longer captured');
        await this.release(entry);
      }
    }
    this.maintain(state, now);
    this.scheduleWake();
  }

  /** Starts what is due: the liveness check, the scan and the sweep (each outside the queue). */
  private maintain(state: MeshState, now: number): void {
    if (this.pods.size > 0 && now >= this.nextRecheckMs && !this.rechecking) {
      this.nextRecheckMs = now + RECHECK_INTERVAL_MS;
      this.rechecking = true;
      void this.track(this.recheck().finally(() => (this.rechecking = false)));
    }
    const unknown = this.unfoundIps(state);
    if (unknown.length > 0) {
      const sig = [...unknown].sort().join(',');
      if (sig !== this.lastScanIps) {
        // Different pods are missing now: look at once, at the fastest pace.
        this.lastScanIps = sig;
        this.scanIntervalMs = SCAN_MIN_INTERVAL_MS;
        this.nextScanMs = now;
      }
      if (now >= this.nextScanMs && !this.scanning) {
        this.scanning = true;
        void this.track(this.scan(unknown).finally(() => (this.scanning = false)));
      }
    } else this.lastScanIps = '';
    if (
      this.fx.configSynced() &&
      (this.nextSweepMs === undefined || now >= this.nextSweepMs) &&
      !this.sweeping
    ) {
      this.nextSweepMs = now + SWEEP_INTERVAL_MS;
      this.sweeping = true;
      void this.track(this.sweep().finally(() => (this.sweeping = false)));
    }
  }

  private scheduleWake(): void {
    if (this.closed) return;
    const due: number[] = [];
    for (const e of this.pods.values()) if (e.error && !e.proxy && !e.capturing) due.push(e.retryAtMs);
    if (this.lastScanIps) due.push(this.nextScanMs);
    if (this.pods.size > 0) due.push(this.nextRecheckMs);
    if (this.nextSweepMs !== undefined) due.push(this.nextSweepMs);
    if (due.length === 0) return;
    const at = Math.min(...due);
    if (this.wake && this.wake.atMs <= at && this.wake.atMs > this.fx.clock.nowMs()) return;
    this.wake?.cancel();
    const cancel = this.fx.clock.setTimer(
      () => {
        this.wake = undefined;
        this.reconcile();
      },
      Math.max(0, at - this.fx.clock.nowMs()),
    );
    this.wake = { atMs: at, cancel };
  }

  /** IPs of this node's mesh pods that no known pod has (by name or by IP): what a scan looks for. */
  private unfoundIps(state: MeshState): string[] {
    const named = new Set([...this.pods.values()].map((e) => ref(e)));
    return this.wanted(state)
      .filter((w) => !named.has(ref(w)) && w.addresses.every((ip) => !this.podByIp(ip) !== undefined))
      .flatMap((w) => w.addresses);
  }

  private wanted(state: MeshState): Workload[] {
    return state
      .workloadsOnNode(this.opts.nodeName)
      .filter((w) => w.tunnelProtocol === TunnelProtocol.Hbone && w.addresses.length > 0);
  }

  // ---------------------------------------------------------------- capture and release

  /**
   * Installs the pod's rules (queued: the caller is a queued step) and starts the wait for its
   * certificate, after which a queued step opens the listeners. Rules first: while the certificate
   * is on its way (or the CA is down) the pod's connections are refused, never sent around the mesh.
   * Resolves false if the rules could not be installed.
   */
  private async capture(entry: PodEntry, w: Workload): Promise<boolean> {
    const gen = ++entry.generation;
    entry.capturing = workloadSpiffe(w);
    entry.redirected = true; // before trying: a failure part-way leaves some rules to remove
    let adopted: boolean;
    try {
      ({ adopted } = await this.fx.ensureRedirection(entry.netns.path, {
        families: families([...entry.ips, ...w.addresses]),
        probeSources: this.opts.probeSources,
      }));
    } catch (err) {
      if (this.live(entry, gen)) this.fail(entry, err);
      return false;
    }
    if (!this.live(entry, gen)) return false;
    const starting: Promise<void> = this.track(
      this.secrets.get(workloadIdentity(w)).then(
        (cert) => this.enqueue(() => this.openListeners(entry, gen, w, cert, adopted)),
        (err: unknown) => {
          if (this.live(entry, gen)) this.fail(entry, err);
        },
      ),
    ).finally(() => {
      if (entry.starting === starting) entry.starting = undefined;
    });
    entry.starting = starting;
    return true;
  }

  /** Opens the listeners once the certificate is in, unless the pod went or changed meanwhile (queued). */
  private async openListeners(
    entry: PodEntry,
    gen: number,
    w: Workload,
    cert: WorkloadCertificate,
    adopted: boolean,
  ): Promise<void> {
    if (this.closed || !this.live(entry, gen)) return;
    let proxy: PodListeners;
    try {
      proxy = await this.fx.startProxy(w, entry.netns.path, cert);
    } catch (err) {
      if (this.live(entry, gen)) this.fail(entry, err);
      return;
    }
    if (this.closed || !this.live(entry, gen)) {
      this.closing(proxy.close(0));
      return;
    }
    entry.proxy = proxy;
    entry.capturing = undefined;
    entry.error = undefined;
    this.log.info(
      { pod: ref(entry), identity: workloadSpiffe(w), adopted, listeners: proxy.listeners() },
      'pod captured',
    );
  }

  private fail(entry: PodEntry, err: unknown): void {
    entry.capturing = undefined;
    entry.error = describeError(err);
    entry.retryAtMs = this.fx.clock.nowMs() + RETRY_MS;
    this.log.error({ pod: ref(entry), error: entry.error, retryInMs: RETRY_MS }, 'pod capture failed');
    this.scheduleWake();
  }

  /** Whether a capture step for `gen` still applies: the pod is known and nothing superseded it. */
  private live(entry: PodEntry, gen: number): boolean {
    return !entry.gone && this.pods.get(entry.key) === entry && entry.generation === gen;
  }

  /**
   * The pod left the mesh (queued): capture stops first (its new connections then go direct rather
   * than to listeners about to close), then its listeners close and their connections are cut at
   * once (not waited for), then the rest of its rules go. In that order the connections cut still
   * have their address translation, so the application sees them end (rules.ts `unhookScript`).
   */
  private async release(entry: PodEntry): Promise<void> {
    entry.generation++;
    entry.capturing = undefined;
    entry.error = undefined;
    await this.uncapture(entry, true);
  }

  /** Forgets a pod: rules removed if asked, listeners closed, namespace unpinned (queued). */
  private async drop(entry: PodEntry, removeRules: boolean, reason: string): Promise<void> {
    if (this.pods.get(entry.key) !== entry) return;
    entry.gone = true;
    entry.generation++;
    entry.capturing = undefined;
    this.pods.delete(entry.key);
    this.setIps(entry, []);
    this.log.info({ pod: ref(entry), via: entry.via, reason }, 'pod forgotten');
    await this.uncapture(entry, removeRules);
    entry.netns.release();
  }

  /**
   * Unhooks the pod's rules, closes its listeners (cutting their connections now), then removes the
   * rules whatever state an earlier attempt left (idempotent); or, for a pod whose rules are not to
   * be touched, only closes the listeners.
   */
  private async uncapture(entry: PodEntry, removeRules: boolean): Promise<void> {
    if (!removeRules) return this.closeListeners(entry, 0);
    try {
      await this.fx.unhookRedirection(entry.netns.path);
    } catch (err) {
      this.log.warn({ pod: ref(entry), error: describeError(err) }, 'capture not unhooked');
    }
    this.closeListeners(entry, 0);
    try {
      await this.fx.removeRedirection(entry.netns.path);
      entry.redirected = false;
    } catch (err) {
      this.log.warn({ pod: ref(entry), error: describeError(err) }, 'rules not removed');
    }
  }

  /** Closes the pod's listeners (and pooled tunnels from its IPs) without waiting for the drain. */
  private closeListeners(entry: PodEntry, deadlineMs: number): void {
    const proxy = entry.proxy;
    entry.proxy = undefined;
    if (proxy) this.closing(proxy.close(deadlineMs));
    for (const ip of entry.ips) {
      try {
        this.fx.closePooled(ip);
      } catch (err) {
        this.log.debug({ pod: ref(entry), error: describeError(err) }, 'pooled connections not closed');
      }
    }
  }

  private closing(p: Promise<void>): void {
    const drain = this.track(
      p.catch((err: unknown) =>
        this.log.warn({ error: describeError(err) }, 'pod listeners did not close cleanly'),
      ),
    );
    this.drains.add(drain);
    void drain.finally(() => this.drains.delete(drain));
  }

  // ---------------------------------------------------------------- finding pods and their leftovers

  /** Finds the namespaces of this node's mesh pods that no CNI report named (outside the queue). */
  private async scan(ips: readonly string[]): Promise<void> {
    let result: ScanResult;
    try {
      const now = this.fx.clock.nowMs();
      for (const [key, until] of this.reported) if (until <= now) this.reported.delete(key);
      result = await this.fx.scanOwners(ips, (key) => this.pods.has(key) || this.reported.has(key));
    } catch (err) {
      this.log.warn({ error: describeError(err) }, 'scan failed');
      return;
    }
    for (const [ip, paths] of result.ambiguous)
      this.log.warn({ ip, netns: paths }, 'several network namespaces own this pod IP; none adopted');
    const byNetns = new Map<PinnedNetns, string[]>();
    for (const [ip, netns] of result.owners) byNetns.set(netns, [...(byNetns.get(netns) ?? []), ip]);
    const found = await this.enqueue(async () => {
      let n = 0;
      const state = this.ctx.state();
      for (const [netns, owned] of byNetns) {
        const key = netnsKey(netns.id);
        const owners = new Set(owned.map((ip) => state.workloadByIp(ip)));
        const only = owners.size === 1 ? [...owners][0] : undefined;
        // Still a mesh pod of this node: the config may have changed during the scan.
        const w =
          only && only.node === this.opts.nodeName && only.tunnelProtocol === TunnelProtocol.Hbone
            ? only
            : undefined;
        if (
          this.closed ||
          this.pods.has(key) ||
          this.reported.has(key) ||
          owned.some((ip) => this.podByIp(ip) !== undefined) ||
          !w
        ) {
          if (owners.size > 1)
            this.log.warn(
              { ips: owned },
              'a network namespace owns the IPs of several workloads; not adopted',
            );
          netns.release();
          continue;
        }
        this.add({ key, netns, via: 'scan', containerId: '', namespace: w.namespace, name: w.name }, owned);
        this.log.info({ pod: ref(w), ips: owned, netns: netns.path }, 'pod found by scanning');
        n++;
      }
      return n;
    });
    this.scanIntervalMs =
      found > 0 ? SCAN_MIN_INTERVAL_MS : Math.min(this.scanIntervalMs * 2, SCAN_MAX_INTERVAL_MS);
    this.nextScanMs = this.fx.clock.nowMs() + this.scanIntervalMs;
    if (found > 0) this.reconcile();
    else this.scheduleWake();
  }

  /**
   * Forgets pods whose namespace only the agent still holds (the pod is gone and its DEL never came),
   * and scanned pods whose namespace no longer owns their IP (outside the queue; drops are queued).
   */
  private async recheck(): Promise<void> {
    const seq = this.seq;
    let live: Map<string, string>;
    try {
      live = await this.fx.listNetns();
    } catch {
      return;
    }
    // Seeing no namespace at all means the agent cannot look (no host /proc or /var/run/netns), not
    // that every pod is gone.
    if (live.size === 0) return;
    await this.enqueue(async () => {
      for (const e of [...this.pods.values()]) {
        if (e.seq >= seq) continue; // newer than the listing
        if (!live.has(e.key)) await this.drop(e, false, 'its network namespace is gone');
        else if (e.via === 'scan' && !e.ips.some((ip) => this.fx.ownsIp(e.netns.path, ip)))
          await this.drop(e, true, 'its network namespace no longer owns its IP');
      }
    });
  }

  /**
   * Removes rules from namespaces on the node that carry them but are not pods the agent follows
   * and not mesh pods of this node (pods that left the mesh while the agent was down). Inspection
   * runs outside the queue, one namespace at a time; each removal is a queued step that checks the
   * namespace is still not followed.
   */
  private async sweep(): Promise<void> {
    let candidates: Map<string, string>;
    try {
      candidates = await this.fx.listNetns();
    } catch {
      return;
    }
    const suspects = new Set<string>();
    for (const [key, path] of candidates) {
      if (this.closed) return;
      if (this.pods.has(key)) continue;
      await new Promise<void>((r) => setImmediate(r));
      let addresses: string[];
      try {
        if (!(await this.fx.hasRedirection(path))) continue;
        addresses = await this.fx.interfaceAddresses(path);
      } catch {
        continue; // gone since listed
      }
      const verdict = orphanVerdict(this.ctx.state(), this.opts.nodeName, addresses);
      if (verdict === 'keep') continue;
      if (verdict === 'unknown' && !this.sweepSuspects.has(key)) {
        suspects.add(key);
        continue;
      }
      await this.enqueue(async () => {
        if (this.closed || this.pods.has(key)) return;
        let netns: PinnedNetns;
        try {
          netns = this.fx.pinNetns(path);
        } catch {
          return;
        }
        try {
          if (netnsKey(netns.id) !== key) return; // the path names another namespace now
          await this.fx.removeRedirection(netns.path);
          this.log.warn(
            { netns: path, addresses },
            'removed capture rules left in a pod that is not in the mesh',
          );
        } catch (err) {
          this.log.warn({ netns: path, error: describeError(err) }, 'left-over rules not removed');
        } finally {
          netns.release();
        }
      });
    }
    this.sweepSuspects = suspects;
  }

  // ---------------------------------------------------------------- bookkeeping

  private add(
    e: Pick<PodEntry, 'key' | 'netns' | 'via' | 'containerId' | 'namespace' | 'name'>,
    ips: readonly string[],
  ): PodEntry {
    const entry: PodEntry = {
      ...e,
      seq: this.seq++,
      ips: [],
      proxy: undefined,
      capturing: undefined,
      generation: 0,
      redirected: false,
      gone: false,
      error: undefined,
      retryAtMs: 0,
      starting: undefined,
    };
    this.pods.set(entry.key, entry);
    this.setIps(entry, ips);
    return entry;
  }

  private setIps(entry: PodEntry, ips: readonly string[]): void {
    for (const ip of entry.ips)
      if (this.byIp.get(canonicalIp(ip)) === entry) this.byIp.delete(canonicalIp(ip));
    entry.ips = ips;
    for (const ip of ips) this.byIp.set(canonicalIp(ip), entry);
  }

  /** The known pod with this IP (however it is spelled). */
  private podByIp(ip: string): PodEntry | undefined {
    return this.byIp.get(canonicalIp(ip));
  }

  /** Resolves true when the mesh config changes, false at `deadlineMs` (or on shutdown). */
  private configChange(deadlineMs: number): Promise<boolean> {
    const left = deadlineMs - this.fx.clock.nowMs();
    if (left <= 0 || this.closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (changed: boolean) => {
        this.configWaiters.delete(onChange);
        cancel();
        resolve(changed && !this.closed);
      };
      const onChange = () => done(true);
      this.configWaiters.add(onChange);
      const cancel = this.fx.clock.setTimer(() => done(false), left);
    });
  }

  /** Whether `p` settles within `ms`. */
  private within(p: Promise<unknown>, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const cancel = this.fx.clock.setTimer(() => resolve(false), ms);
      void p.then(
        () => {
          cancel();
          resolve(true);
        },
        () => {
          cancel();
          resolve(true);
        },
      );
    });
  }

  // ---------------------------------------------------------------- readiness, admin, dialling

  /** What readiness still waits for: pods of this node not yet captured, with the reason. */
  pending(): string[] {
    const state = this.ctx.state();
    const out: string[] = [];
    const named = new Set<string>();
    for (const e of this.pods.values()) {
      named.add(ref(e));
      const d = decidePod(state, this.opts.nodeName, e);
      if (d.kind === 'pending') out.push(`pod ${ref(e)}: ${d.reason}`);
      else if (d.kind === 'capture' && !e.proxy)
        out.push(`pod ${ref(e)}: ${e.error ?? 'listeners starting'}`);
    }
    for (const w of this.wanted(state)) {
      if (named.has(ref(w))) continue;
      const other = w.addresses.map((ip) => this.podByIp(ip)).find((e) => e !== undefined);
      out.push(
        other
          ? `pod ${ref(w)}: its IP is that of pod ${ref(other)} as the CNI reported it; not captured until they agree`
          : `pod ${ref(w)}: network namespace not found yet (no CNI report, not found by scanning)`,
      );
    }
    return out;
  }

  /** Known pods and their listeners, for the admin page. */
  describe(): Record<string, unknown>[] {
    return [...this.pods.values()].map((e) => ({
      pod: ref(e),
      via: e.via,
      ips: e.ips,
      netns: e.netns.path,
      captured: e.proxy !== undefined,
      listeners: e.proxy?.listeners() ?? [],
      ...(e.error ? { error: e.error } : {}),
    }));
  }

  /**
   * Connections for a captured pod start inside its namespace, marked to pass its capture rules. In
   * in-pod mode every connection the agent makes is for some pod: one for a pod it does not capture
   * is refused, rather than made from the node with the node's address.
   */
  dial(host: string, port: number, from: DialFrom): Socket {
    const entry = from.pod === undefined ? undefined : this.podByIp(from.pod);
    if (!entry?.proxy) {
      throw new AmbitError(
        ErrorCode.UpstreamConnectFailed,
        `no captured pod with IP ${from.pod ?? '(none)'} on this node to connect from`,
        {
          hint: 'the pod is not (or no longer) captured: see /healthz/ready and the pods in the config dump',
        },
      );
    }
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
  onCertificate(identity: string, apply: (proxy: PodListeners) => void): void {
    for (const e of this.pods.values())
      if (e.proxy && workloadSpiffe(e.proxy.workload) === identity) apply(e.proxy);
  }

  /**
   * Agent shutdown: listeners drain up to the deadline, then their connections are cut; rules stay
   * for the next agent to adopt (queued after whatever step is running).
   */
  async close(deadlineMs: number): Promise<void> {
    this.closed = true;
    this.wake?.cancel();
    this.wake = undefined;
    for (const w of [...this.configWaiters]) w();
    await this.enqueue(async () => {
      const entries = [...this.pods.values()];
      // Listeners keep serving (and dialling from the pods) while they drain.
      await Promise.all(
        entries.flatMap((e) => (e.proxy ? [e.proxy.close(deadlineMs).catch(() => undefined)] : [])),
      );
      for (const e of entries) {
        e.gone = true;
        e.generation++;
        e.proxy = undefined;
        e.netns.release();
      }
      this.pods.clear();
      this.byIp.clear();
    });
    await Promise.allSettled([...this.drains]);
  }
}

function ref(p: { readonly namespace: string; readonly name: string }): string {
  return `${p.namespace}/${p.name}`;
}

/** An IP in one spelling (RFC 5952 for IPv6), as the mesh config decodes it. */
function canonicalIp(ip: string): string {
  const b = ipToBytes(ip);
  return (b && ipFromBytes(b)) ?? ip;
}

function families(ips: readonly string[]): (4 | 6)[] {
  return [...new Set(ips.map((ip) => ipFamily(ip)))].filter((f): f is 4 | 6 => f === 4 || f === 6).sort();
}
