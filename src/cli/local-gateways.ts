/**
 * The ingress gateway of `ambit local` (issue 8): when the mesh's YAML holds an Istio
 * (`networking.istio.io`) Gateway whose selector is `istio: ingressgateway` — Istio's default
 * ingress, as the bookinfo sample selects it — it runs `ambit gateway` as Istio's
 * `istio-ingressgateway` Deployment would: pod `<prefix>.4.1` in `istio-system` with the labels
 * `istio: ingressgateway, app: istio-ingressgateway`, service account
 * `istio-ingressgateway-service-account` (its identity upstream), listening on each Gateway
 * server's port of that address. The pod (and its ServiceAccount) are written to
 * `gateways.generated.yaml` so the controller knows the gateway as a workload; it is restarted if it
 * dies and stopped when the last such Gateway goes.
 */
import type { ChildProcess } from 'node:child_process';
import { watch, type FSWatcher } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeError } from '../core/errors.ts';
import { meshDocuments, spawnProxy, workloadToken, type LocalControlPlane } from './local-proxies.ts';

export const GATEWAYS_GENERATED_FILE = 'gateways.generated.yaml';
const NAMESPACE = 'istio-system';
const NAME = 'istio-ingressgateway';
const SERVICE_ACCOUNT = 'istio-ingressgateway-service-account';
const LABELS = { istio: 'ingressgateway', app: 'istio-ingressgateway' } as const;
const RESTART_DELAY_MS = 1000;
const SYNC_DEBOUNCE_MS = 200;

export interface LocalGatewayOptions extends LocalControlPlane {
  readonly kubeDir: string;
  readonly dir: string;
  readonly prefix: string;
  readonly nodeName: string;
  readonly report: (line: string) => void;
}

/** The running ingress gateway, for the guide and for tests. */
export interface LocalGatewayInfo {
  readonly ip: string;
  /** The Gateway server ports found in the YAML (where it listens on `ip`). */
  readonly ports: readonly number[];
  readonly admin: string;
  readonly metrics: string;
  readonly readiness: string;
  readonly log: string;
}

export class LocalIngressGateway {
  private readonly opts: LocalGatewayOptions;
  private child: ChildProcess | undefined;
  private ports: number[] = [];
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> = Promise.resolve();
  private spawning = false;
  private closed = false;
  private tokenFile: string | undefined;

  private constructor(opts: LocalGatewayOptions) {
    this.opts = opts;
  }

  /** Writes the generated objects before the controller starts; nothing runs until `run()`. */
  static async prepare(opts: LocalGatewayOptions): Promise<LocalIngressGateway> {
    const g = new LocalIngressGateway(opts);
    await g.sync();
    return g;
  }

  async run(): Promise<void> {
    this.spawning = true;
    this.watcher = watch(this.opts.kubeDir, (_event, file) => {
      if (this.closed || (file !== null && file.startsWith(GATEWAYS_GENERATED_FILE))) return;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => void this.sync(), SYNC_DEBOUNCE_MS);
    });
    await this.sync();
  }

  /** The gateway, while one runs. */
  info(): LocalGatewayInfo | undefined {
    if (this.ports.length === 0) return undefined;
    const ip = this.ip();
    return {
      ip,
      ports: this.ports,
      admin: `http://${ip}:15000`,
      metrics: `http://${ip}:15020/metrics`,
      readiness: `http://${ip}:15021/healthz/ready`,
      log: join(this.opts.dir, `gateway-${NAMESPACE}-${NAME}.log`),
    };
  }

  sync(): Promise<void> {
    this.syncing = this.syncing
      .then(() => this.syncOnce())
      .catch((err: unknown) => this.opts.report(`ambit local: ingress gateway: ${describeError(err)}\n`));
    return this.syncing;
  }

  async close(stopChild: (c: ChildProcess) => Promise<void>): Promise<void> {
    this.closed = true;
    this.watcher?.close();
    clearTimeout(this.timer);
    clearTimeout(this.restartTimer);
    await this.syncing;
    if (this.child) await stopChild(this.child);
  }

  private ip(): string {
    return `${this.opts.prefix}.4.1`;
  }

  private async syncOnce(): Promise<void> {
    if (this.closed) return;
    this.ports = await ingressPorts(this.opts.kubeDir);
    const wanted = this.ports.length > 0;
    const file = join(this.opts.kubeDir, GATEWAYS_GENERATED_FILE);
    await writeFile(`${file}.tmp`, generatedYaml(wanted ? this.ip() : undefined, this.opts.nodeName));
    await rename(`${file}.tmp`, file);
    if (!wanted && this.child) {
      const c = this.child;
      this.child = undefined;
      c.kill('SIGTERM');
      this.opts.report('ambit local: ingress gateway stopped (no Gateway selects istio: ingressgateway)\n');
    }
    if (wanted && !this.child && this.spawning) {
      if (!this.tokenFile) {
        const tokenFile = join(this.opts.dir, `gateway-${NAMESPACE}-${NAME}.token`);
        await workloadToken(this.opts, tokenFile, NAMESPACE, SERVICE_ACCOUNT);
        this.tokenFile = tokenFile;
      }
      this.spawn();
    }
  }

  private spawn(): void {
    const ip = this.ip();
    const log = this.info()?.log ?? join(this.opts.dir, `gateway-${NAMESPACE}-${NAME}.log`);
    const env = {
      POD_NAME: `${NAME}-local`,
      POD_NAMESPACE: NAMESPACE,
      GATEWAY_NAME: NAME,
      SERVICE_ACCOUNT,
      GATEWAY_LABELS: Object.entries(LABELS)
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
    };
    const child = spawnProxy(
      this.opts,
      'gateway',
      ip,
      this.tokenFile!,
      env,
      log,
      'ingress gateway',
      this.opts.report,
    );
    child.once('exit', (code, signal) => {
      if (this.closed || this.child !== child) return;
      this.child = undefined;
      this.opts.report(
        `ambit local: ingress gateway exited (${code ?? signal}); restarting in 1 s; see ${log}\n`,
      );
      this.restartTimer = setTimeout(() => void this.sync(), RESTART_DELAY_MS);
    });
    this.child = child;
  }
}

/** The server ports of the Istio Gateways in the directory that select `istio: ingressgateway`. */
async function ingressPorts(dir: string): Promise<number[]> {
  const ports = new Set<number>();
  for (const doc of await meshDocuments(dir)) {
    const o = doc as {
      apiVersion?: unknown;
      kind?: unknown;
      spec?: { selector?: Record<string, unknown>; servers?: { port?: { number?: unknown } }[] };
    } | null;
    if (!o || o.kind !== 'Gateway' || typeof o.apiVersion !== 'string') continue;
    if (!o.apiVersion.startsWith('networking.istio.io/')) continue;
    const selector = o.spec?.selector ?? {};
    if (!Object.entries(selector).every(([k, v]) => (LABELS as Record<string, string>)[k] === v)) continue;
    for (const s of Array.isArray(o.spec?.servers) ? o.spec.servers : [])
      if (typeof s?.port?.number === 'number') ports.add(s.port.number);
  }
  return [...ports].sort((a, b) => a - b);
}

function generatedYaml(ip: string | undefined, nodeName: string): string {
  const head =
    '# Written by `ambit local` for the Istio Gateways that select istio: ingressgateway (as installing\n' +
    "# Istio's ingress gateway would create them). Rewritten on every change: do not edit.\n";
  if (!ip) return head;
  return `${head}apiVersion: v1
kind: ServiceAccount
metadata:
  name: ${SERVICE_ACCOUNT}
  namespace: ${NAMESPACE}
---
apiVersion: v1
kind: Pod
metadata:
  name: ${NAME}-local
  namespace: ${NAMESPACE}
  labels:
${Object.entries(LABELS)
  .map(([k, v]) => `    ${k}: ${v}`)
  .join('\n')}
    service.istio.io/canonical-name: ${NAME}
    # The gateway speaks HBONE itself: the node agent must not take its traffic.
    istio.io/dataplane-mode: none
spec:
  nodeName: ${nodeName}
  serviceAccountName: ${SERVICE_ACCOUNT}
  containers:
  - name: istio-proxy
    image: ambit
status:
  phase: Running
  podIP: ${ip}
`;
}
