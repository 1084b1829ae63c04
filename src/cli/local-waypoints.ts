/**
 * Waypoints for `ambit local`: what the controller's reconciler does in a cluster (a Deployment,
 * Service and ServiceAccount per waypoint Gateway), done for a mesh of loopback addresses. For every
 * Gateway of a waypoint class in the mesh's YAML directory it
 *
 * - writes the objects a cluster would hold for it (ServiceAccount, Service with a cluster IP on
 *   port 15008, and a running Pod with an address) to `waypoints.generated.yaml` in the same
 *   directory, so the controller binds `istio.io/use-waypoint` to a reachable address exactly as it
 *   does in a cluster;
 * - gives the waypoint a bootstrap token for its own service account (`sa:<ns>/<name>` in the tokens
 *   file, which the CA re-reads on every request);
 * - runs `ambit waypoint` for it, restarted if it dies, stopped when its Gateway goes away.
 *
 * Addresses: pod `<prefix>.3.<n>`, Service `<prefix>.100.<100+n>`, with n given out in order of first
 * appearance and kept while the mesh runs.
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
import { WAYPOINT_CLASSES } from '../controller/translate/gateways.ts';
import { GATEWAY_NAME_LABEL } from '../controller/translate/waypoint-binding.ts';

export const GENERATED_FILE = 'waypoints.generated.yaml';
const RESTART_DELAY_MS = 1000;
const SYNC_DEBOUNCE_MS = 200;
const MAX_WAYPOINTS = 150;

export interface LocalWaypointsOptions extends LocalControlPlane {
  /** The YAML directory the controller watches. */
  readonly kubeDir: string;
  /** Where tokens and logs go. */
  readonly dir: string;
  readonly prefix: string;
  /** The node the waypoint pods are reported on. */
  readonly nodeName: string;
  /** For lines the user should see (process exits, errors). */
  readonly report: (line: string) => void;
}

/** A running waypoint, for the guide and for tests. */
export interface LocalWaypoint {
  readonly namespace: string;
  readonly name: string;
  readonly podIp: string;
  readonly serviceIp: string;
  readonly admin: string;
  readonly metrics: string;
  readonly readiness: string;
  readonly log: string;
}

interface Running extends LocalWaypoint {
  child: ChildProcess | undefined;
  removed: boolean;
  restartTimer: NodeJS.Timeout | undefined;
}

export class LocalWaypoints {
  private readonly opts: LocalWaypointsOptions;
  private readonly running = new Map<string, Running>();
  private readonly slots = new Map<string, number>();
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> = Promise.resolve();
  private closed = false;
  /** False until `run()`: the first sync only writes the objects, before the controller is up. */
  private spawning = false;

  private constructor(opts: LocalWaypointsOptions) {
    this.opts = opts;
  }

  /**
   * Writes the generated objects, so the controller's first view already holds the waypoints'
   * addresses. Nothing runs until `run()`.
   */
  static async prepare(opts: LocalWaypointsOptions): Promise<LocalWaypoints> {
    const w = new LocalWaypoints(opts);
    await w.sync();
    return w;
  }

  /** Starts the waypoints (once the controller serves) and follows edits to the directory. */
  async run(): Promise<void> {
    this.spawning = true;
    this.watcher = watch(this.opts.kubeDir, (_event, file) => {
      // Our own writes (the generated file and its temporary) are not edits to follow.
      if (this.closed || (file !== null && file.startsWith(GENERATED_FILE))) return;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => void this.sync(), SYNC_DEBOUNCE_MS);
    });
    await this.sync();
  }

  /** The waypoints running now. */
  list(): LocalWaypoint[] {
    return [...this.running.values()].filter((r) => !r.removed);
  }

  /** Re-reads the Gateways; writes the generated objects; starts and stops waypoints to match. */
  sync(): Promise<void> {
    this.syncing = this.syncing
      .then(() => this.syncOnce())
      .catch((err: unknown) => {
        this.opts.report(`ambit local: waypoints: ${describeError(err)}\n`);
      });
    return this.syncing;
  }

  /** Stops every waypoint (SIGTERM; each drains) and resolves once all have exited. */
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
    const gateways = await waypointGateways(this.opts.kubeDir);
    for (const key of gateways) {
      if (!this.slots.has(key) && this.slots.size < MAX_WAYPOINTS) this.slots.set(key, this.slots.size + 1);
    }
    const wanted = gateways.filter((k) => this.slots.has(k));
    if (wanted.length < gateways.length) {
      this.opts.report(`ambit local: at most ${MAX_WAYPOINTS} waypoints run locally; the rest are ignored\n`);
    }
    const { prefix } = this.opts;
    const objects = wanted.map((key) => {
      const [namespace, name] = key.split('/') as [string, string];
      const n = this.slots.get(key)!;
      return { key, namespace, name, podIp: `${prefix}.3.${n}`, serviceIp: `${prefix}.100.${100 + n}` };
    });
    // Write first: a waypoint's address must be known before traffic is sent to it.
    const file = join(this.opts.kubeDir, GENERATED_FILE);
    const tmp = `${file}.tmp`;
    await writeFile(tmp, generatedYaml(objects, this.opts.nodeName));
    await rename(tmp, file);

    for (const [key, r] of this.running) {
      if (wanted.includes(key)) continue;
      this.running.delete(key);
      r.removed = true;
      clearTimeout(r.restartTimer);
      r.child?.kill('SIGTERM');
      this.opts.report(`ambit local: waypoint ${key} stopped (its Gateway is gone)\n`);
    }
    for (const o of objects) {
      if (this.running.has(o.key) || !this.spawning) continue;
      const tokenFile = join(this.opts.dir, `waypoint-${o.namespace}-${o.name}.token`);
      await workloadToken(this.opts, tokenFile, o.namespace, o.name);
      const r: Running = {
        namespace: o.namespace,
        name: o.name,
        podIp: o.podIp,
        serviceIp: o.serviceIp,
        admin: `http://${o.podIp}:15000`,
        metrics: `http://${o.podIp}:15020/metrics`,
        readiness: `http://${o.podIp}:15021/healthz/ready`,
        log: join(this.opts.dir, `waypoint-${o.namespace}-${o.name}.log`),
        child: undefined,
        removed: false,
        restartTimer: undefined,
      };
      this.running.set(o.key, r);
      this.spawn(r, tokenFile);
    }
  }

  private spawn(r: Running, tokenFile: string): void {
    const who = `waypoint ${r.namespace}/${r.name}`;
    const env = {
      POD_NAME: `${r.name}-local`,
      POD_NAMESPACE: r.namespace,
      GATEWAY_NAME: r.name,
      SERVICE_ACCOUNT: r.name,
    };
    const child = spawnProxy(this.opts, 'waypoint', r.podIp, tokenFile, env, r.log, who, this.opts.report);
    child.once('exit', (code, signal) => {
      if (r.removed || this.closed) return;
      // Like a Deployment: a waypoint that dies is started again.
      this.opts.report(`ambit local: ${who} exited (${code ?? signal}); restarting in 1 s; see ${r.log}\n`);
      r.restartTimer = setTimeout(() => {
        if (!r.removed && !this.closed) this.spawn(r, tokenFile);
      }, RESTART_DELAY_MS);
    });
    r.child = child;
  }
}

/** `namespace/name` of every waypoint Gateway in the directory's YAML, sorted. */
async function waypointGateways(dir: string): Promise<string[]> {
  const found = new Set<string>();
  for (const doc of await meshDocuments(dir)) {
    const o = doc as {
      apiVersion?: unknown;
      kind?: unknown;
      metadata?: { name?: unknown; namespace?: unknown };
      spec?: { gatewayClassName?: unknown };
    } | null;
    if (!o || o.kind !== 'Gateway' || typeof o.apiVersion !== 'string') continue;
    if (!o.apiVersion.startsWith('gateway.networking.k8s.io/')) continue;
    if (!WAYPOINT_CLASSES.includes(String(o.spec?.gatewayClassName))) continue;
    const name = o.metadata?.name;
    const namespace = o.metadata?.namespace ?? 'default';
    if (typeof name !== 'string' || typeof namespace !== 'string') continue;
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name) || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(namespace)) {
      continue;
    }
    found.add(`${namespace}/${name}`);
  }
  return [...found].sort();
}

function generatedYaml(
  waypoints: readonly { namespace: string; name: string; podIp: string; serviceIp: string }[],
  nodeName: string,
): string {
  const docs = waypoints.map((w) =>
    proxyObjectsYaml({
      ...w,
      serviceAccount: w.name,
      labels: { [GATEWAY_NAME_LABEL]: w.name },
      serviceLabels: { [GATEWAY_NAME_LABEL]: w.name },
      ports: [{ name: 'mesh', port: 15008 }],
      nodeName,
      dataplaneMode: 'none',
      container: 'waypoint',
    }),
  );
  return (
    `# Written by \`ambit local\` for the waypoint Gateways in this directory (as the controller creates a\n` +
    `# Deployment, Service and ServiceAccount per waypoint in a cluster). Rewritten on every change: do not edit.\n` +
    (docs.length ? docs.join('\n---\n') + '\n' : '')
  );
}
