/**
 * The lifecycle `ambit local` gives every kind of L7 proxy it runs (waypoints, gateways), as a
 * Deployment controller would: read the mesh's YAML directory, write the objects a cluster would hold
 * for the proxies it wants to a `*.generated.yaml` file there (before anything runs, so the
 * controller knows their addresses), start each new one with a fresh token for its service account,
 * restart one that dies, stop one no longer wanted (or changed), and follow edits to the directory.
 * What differs between kinds — which proxies the documents want and at which addresses, the
 * generated YAML, the program and its environment — comes from the subclass.
 */
import type { ChildProcess } from 'node:child_process';
import { watch, type FSWatcher } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeError } from '../core/errors.ts';
import { meshDocuments, spawnProxy, workloadToken, type LocalControlPlane } from './local-proxies.ts';

const RESTART_DELAY_MS = 1000;
const SYNC_DEBOUNCE_MS = 200;

export interface LocalProxiesOptions extends LocalControlPlane {
  /** The YAML directory the controller watches. */
  readonly kubeDir: string;
  /** Where tokens and logs go. */
  readonly dir: string;
  readonly prefix: string;
  /** The node the proxies' pods are reported on. */
  readonly nodeName: string;
  /** For lines the user should see (process exits, errors). */
  readonly report: (line: string) => void;
}

/** What the manager needs of a wanted proxy. */
export interface ManagedProxy {
  readonly namespace: string;
  readonly name: string;
  readonly serviceAccount: string;
  readonly podIp: string;
  readonly log: string;
  /** What it is, for the user: "waypoint", "ingress gateway", … */
  readonly role: string;
}

interface Running<P> {
  proxy: P;
  child: ChildProcess | undefined;
  removed: boolean;
  restartTimer: NodeJS.Timeout | undefined;
  readonly tokenFile: string;
}

export const proxyKey = (p: { namespace: string; name: string }): string => `${p.namespace}/${p.name}`;

export abstract class LocalProxyManager<P extends ManagedProxy> {
  protected readonly opts: LocalProxiesOptions;
  private readonly running = new Map<string, Running<P>>();
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> = Promise.resolve();
  /** False until `run()`: the first sync only writes the objects, before the controller is up. */
  private spawning = false;
  private closed = false;

  protected constructor(opts: LocalProxiesOptions) {
    this.opts = opts;
  }

  /** The program the proxies run (`ambit <program>`; also their token and log files' prefix). */
  protected abstract readonly program: 'waypoint' | 'gateway';
  /** The generated file's name in the YAML directory. */
  protected abstract readonly generatedFile: string;
  /** Why a running proxy that is no longer wanted is stopped, for the user. */
  protected abstract readonly goneReason: string;
  /** The proxies the documents want now, with their addresses. */
  protected abstract plan(docs: readonly unknown[]): P[];
  /** The objects a cluster would hold for them. */
  protected abstract generatedYaml(wanted: readonly P[]): string;
  /** The environment of a proxy's process, beyond what every proxy gets. */
  protected abstract env(p: P): Record<string, string>;
  /** Whether a running proxy can stay as it is for what is wanted now (else it is started anew). */
  protected unchanged(_running: P, _wanted: P): boolean {
    return true;
  }

  /** The proxies running now (restarting ones included). */
  protected runningProxies(): P[] {
    return [...this.running.values()].filter((r) => !r.removed).map((r) => r.proxy);
  }

  /** Starts the proxies (once the controller serves) and follows edits to the directory. */
  async run(): Promise<void> {
    this.spawning = true;
    this.watcher = watch(this.opts.kubeDir, (_event, file) => {
      // Our own writes (the generated file and its temporary) are not edits to follow.
      if (this.closed || (file !== null && file.startsWith(this.generatedFile))) return;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => void this.sync(), SYNC_DEBOUNCE_MS);
    });
    await this.sync();
  }

  /** Re-reads the YAML; writes the generated objects; starts and stops proxies to match. */
  sync(): Promise<void> {
    this.syncing = this.syncing
      .then(() => this.syncOnce())
      .catch((err: unknown) => this.opts.report(`ambit local: ${this.program}s: ${describeError(err)}\n`));
    return this.syncing;
  }

  /** Stops every proxy (SIGTERM; each drains) and resolves once all have exited. */
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
    const wanted = this.plan(await meshDocuments(this.opts.kubeDir));
    // Write first: a proxy's address must be known before traffic is sent to it.
    const file = join(this.opts.kubeDir, this.generatedFile);
    await writeFile(`${file}.tmp`, this.generatedYaml(wanted));
    await rename(`${file}.tmp`, file);

    for (const [k, r] of this.running) {
      const w = wanted.find((x) => proxyKey(x) === k);
      if (w && this.unchanged(r.proxy, w)) continue;
      this.running.delete(k);
      r.removed = true;
      clearTimeout(r.restartTimer);
      r.child?.kill('SIGTERM');
      if (!w) this.opts.report(`ambit local: ${r.proxy.role} ${k} stopped (${this.goneReason})\n`);
    }
    for (const w of wanted) {
      if (this.running.has(proxyKey(w)) || !this.spawning) continue;
      const tokenFile = join(this.opts.dir, `${this.program}-${w.namespace}-${w.name}.token`);
      await workloadToken(this.opts, tokenFile, w.namespace, w.serviceAccount);
      const r: Running<P> = {
        proxy: w,
        child: undefined,
        removed: false,
        restartTimer: undefined,
        tokenFile,
      };
      this.running.set(proxyKey(w), r);
      this.spawn(r);
    }
  }

  private spawn(r: Running<P>): void {
    const p = r.proxy;
    const who = `${p.role} ${proxyKey(p)}`;
    const env = {
      POD_NAME: `${p.name}-local`,
      POD_NAMESPACE: p.namespace,
      GATEWAY_NAME: p.name,
      SERVICE_ACCOUNT: p.serviceAccount,
      ...this.env(p),
    };
    const { opts } = this;
    const child = spawnProxy(opts, this.program, p.podIp, r.tokenFile, env, p.log, who, opts.report);
    child.once('exit', (code, signal) => {
      if (r.removed || this.closed || r.child !== child) return;
      r.child = undefined;
      // Like a Deployment: a proxy that dies is started again.
      opts.report(`ambit local: ${who} exited (${code ?? signal}); restarting in 1 s; see ${p.log}\n`);
      r.restartTimer = setTimeout(() => {
        if (!r.removed && !this.closed) this.spawn(r);
      }, RESTART_DELAY_MS);
    });
    r.child = child;
  }
}
