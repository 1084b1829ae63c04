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
import { join } from 'node:path';
import { proxyObjectsYaml } from './local-proxies.ts';
import { LocalProxyManager, type LocalProxiesOptions, type ManagedProxy } from './local-proxy-manager.ts';
import { WAYPOINT_CLASSES } from '../controller/translate/gateways.ts';
import { GATEWAY_NAME_LABEL } from '../controller/translate/waypoint-binding.ts';

export const GENERATED_FILE = 'waypoints.generated.yaml';
const MAX_WAYPOINTS = 150;

export type LocalWaypointsOptions = LocalProxiesOptions;

/** A running waypoint, for the guide and for tests. */
export interface LocalWaypoint extends ManagedProxy {
  readonly serviceIp: string;
  readonly admin: string;
  readonly metrics: string;
  readonly readiness: string;
}

export class LocalWaypoints extends LocalProxyManager<LocalWaypoint> {
  protected readonly program = 'waypoint';
  protected readonly generatedFile = GENERATED_FILE;
  protected readonly goneReason = 'its Gateway is gone';
  private readonly slots = new Map<string, number>();

  /**
   * Writes the generated objects, so the controller's first view already holds the waypoints'
   * addresses. Nothing runs until `run()`.
   */
  static async prepare(opts: LocalWaypointsOptions): Promise<LocalWaypoints> {
    const w = new LocalWaypoints(opts);
    await w.sync();
    return w;
  }

  /** The waypoints running now. */
  list(): LocalWaypoint[] {
    return this.runningProxies();
  }

  protected plan(docs: readonly unknown[]): LocalWaypoint[] {
    const gateways = waypointGateways(docs);
    for (const key of gateways) {
      if (!this.slots.has(key) && this.slots.size < MAX_WAYPOINTS) this.slots.set(key, this.slots.size + 1);
    }
    const wanted = gateways.filter((k) => this.slots.has(k));
    if (wanted.length < gateways.length) {
      this.opts.report(`ambit local: at most ${MAX_WAYPOINTS} waypoints run locally; the rest are ignored\n`);
    }
    const { prefix, dir } = this.opts;
    return wanted.map((key) => {
      const [namespace, name] = key.split('/') as [string, string];
      const n = this.slots.get(key)!;
      const podIp = `${prefix}.3.${n}`;
      return {
        namespace,
        name,
        serviceAccount: name,
        role: 'waypoint',
        podIp,
        serviceIp: `${prefix}.100.${100 + n}`,
        admin: `http://${podIp}:15000`,
        metrics: `http://${podIp}:15020/metrics`,
        readiness: `http://${podIp}:15021/healthz/ready`,
        log: join(dir, `waypoint-${namespace}-${name}.log`),
      };
    });
  }

  protected generatedYaml(wanted: readonly LocalWaypoint[]): string {
    return generatedYaml(wanted, this.opts.nodeName);
  }

  protected env(): Record<string, string> {
    return {};
  }
}

/** `namespace/name` of every waypoint Gateway in the directory's YAML, sorted. */
function waypointGateways(docs: readonly unknown[]): string[] {
  const found = new Set<string>();
  for (const doc of docs) {
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
