/**
 * A whole in-pod mesh on the namespace test bed (topology.ts), shared by the capture e2e tests and
 * `npm run bench:e2e`: the controller in its namespace reading Kubernetes YAML from a directory, one
 * node agent per node namespace in in-pod mode, the pod applications (pod-app.ts), and the real
 * `ambit-cni` plugin to report pods. Layout on a 2×2 topology:
 *
 *   node-1: client (demo, sa client)   echo-a (demo, sa server, app=echo)
 *   node-2: echo-b (demo, app=echo)    legacy (namespace legacy, not in the mesh)
 *
 * and Service demo/echo at VIP 10.96.0.10 with ports 80→8080 (whoami), 81→8081 (echo), 82→8082 (sha);
 * echo-a carries `version: v1`, echo-b `version: v2`. A demo pod can be left out of capture (label
 * `istio.io/dataplane-mode: none`) at start or later, so a benchmark can measure the very same pods
 * and veths with and without the mesh.
 *
 * With the `waypoint` option a third pod on a node runs `ambit waypoint` for Gateway demo/<name>
 * (class istio-waypoint), with the objects the reconciler creates in a cluster — and `ambit local`
 * writes (src/cli/local-waypoints.ts) — in the YAML: ServiceAccount, Service <name> (port 15008, a
 * cluster IP) and a running Pod labelled `gateway.networking.k8s.io/gateway-name` and
 * `istio.io/dataplane-mode: none` (a waypoint speaks HBONE itself, nothing captures it). Its bootstrap
 * token is a workload token (`sa:demo/<name>`), so the CA gives it its own identity. Services bind to
 * it with `istio.io/use-waypoint: <name>` in YAML the caller adds (`extraYaml`, {@link writeMesh}).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GATEWAY_NAME_LABEL } from '../../../src/controller/translate/waypoint-binding.ts';
import { CertificateAuthority } from '../../../src/core/identity/ca.ts';
import { waitForExit, waitUntil } from './child.ts';
import {
  createTopology,
  requireRoot,
  type Topology,
  type TopologyNode,
  type TopologyPod,
} from './topology.ts';

const MAIN = fileURLToPath(new URL('../../../src/cli/main.ts', import.meta.url));
export const POD_APP = fileURLToPath(new URL('./pod-app.ts', import.meta.url));
export const CNI_PLUGIN = fileURLToPath(new URL('../../../build/Release/ambit-cni', import.meta.url));
export const VIP = '10.96.0.10';
export const APP_PORTS = { whoami: 8080, echo: 8081, sha: 8082, http: 8083 } as const;
/** The waypoint Service's cluster IP (Service <gateway name>, port 15008). */
export const WAYPOINT_VIP = '10.96.0.100';
const READY_MS = 30_000;
/** How often {@link InpodMesh.setCaptured} looks at a pod's rules and listeners. */
const CAPTURE_POLL_MS = 200;

/** The pods of the layout, by the name their Pod object has. */
export const POD_NAMES = ['client', 'echo-a', 'echo-b', 'legacy'] as const;
export type PodName = (typeof POD_NAMES)[number];
/** `version` labels, so a DestinationRule can name each echo pod as a subset. */
export const POD_VERSIONS: Readonly<Partial<Record<PodName, string>>> = { 'echo-a': 'v1', 'echo-b': 'v2' };

/** Options for {@link InpodMesh.start}. */
export interface InpodMeshOptions {
  /** Extra environment for both agents. */
  readonly agentEnv?: Record<string, string>;
  /**
   * Demo pods that start opted out of the mesh (`istio.io/dataplane-mode: none`): their namespace and
   * veths are the same, only their traffic is not captured. {@link InpodMesh.setCaptured} flips it.
   */
  readonly uncaptured?: readonly PodName[];
  /** Runs a waypoint in a pod of its own (see the file comment). */
  readonly waypoint?: WaypointOptions;
  /** YAML documents (each starting with `---`) appended to the mesh's from the start. */
  readonly extraYaml?: string;
}

/** Where and as what the waypoint runs. */
export interface WaypointOptions {
  /** The Gateway's name in namespace demo, also its service account and Service; default `waypoint`. */
  readonly name?: string;
  /** The node its pod runs on; default node-1. */
  readonly node?: 'node-1' | 'node-2';
  /** Extra environment for the waypoint process. */
  readonly env?: Record<string, string>;
}

/** The running waypoint. */
export interface Waypoint {
  readonly name: string;
  /** Its pod (own network namespace, not captured); INSTANCE_IP is the pod's IP. */
  readonly pod: TopologyPod;
  readonly child: ChildProcess;
  /** Everything it printed. */
  output: string;
  /** Its Prometheus endpoint, reachable from its pod and its node. */
  readonly metricsUrl: string;
}

/** Why the in-pod mesh cannot run here, or false. */
export function inpodSkipReason(): string | false {
  const root = requireRoot();
  if (root) return root;
  if (!existsSync(CNI_PLUGIN)) return `the CNI plugin is not built (${CNI_PLUGIN}): run npm ci`;
  return false;
}

/** One agent process and everything it printed (across restarts). */
export interface Agent {
  child: ChildProcess;
  output: string;
  readonly node: TopologyNode;
  readonly socket: string;
}

export class InpodMesh {
  readonly topo: Topology;
  readonly dir: string;
  readonly agents = new Map<string, Agent>();
  readonly client: TopologyPod;
  /** On node-1, reported by the CNI plugin. */
  readonly echoA: TopologyPod;
  /** On node-2; left for the agent to find by scanning. */
  readonly echoB: TopologyPod;
  /** On node-2, in a namespace not in the mesh. */
  readonly legacy: TopologyPod;
  /** Set when started with the `waypoint` option. */
  waypoint: Waypoint | undefined;
  private waypointPlan: { name: string; pod: TopologyPod; env: Record<string, string> } | undefined;
  private controller: ChildProcess | undefined;
  private readonly apps: ChildProcess[] = [];
  /** Pods written with `istio.io/dataplane-mode: none`. */
  private readonly optedOut = new Set<PodName>();
  /** The arguments of the last {@link writeMesh}, so {@link setCaptured} keeps the rest as it was. */
  private lastMesh = { extra: '', without: '' };

  private constructor(topo: Topology, dir: string) {
    this.topo = topo;
    this.dir = dir;
    [this.client, this.echoA] = topo.nodes[0]!.pods as [TopologyPod, TopologyPod];
    [this.echoB, this.legacy] = topo.nodes[1]!.pods as [TopologyPod, TopologyPod];
  }

  /** Builds the topology and starts everything; resolves once both agents are ready. */
  static async start(opts: InpodMeshOptions = {}): Promise<InpodMesh> {
    const topo = await createTopology({ nodes: 2, podsPerNode: 2 });
    const mesh = new InpodMesh(topo, await mkdtemp(join(tmpdir(), 'ambit-inpod-')));
    for (const name of opts.uncaptured ?? []) mesh.optedOut.add(name);
    mesh.lastMesh.extra = opts.extraYaml ?? '';
    try {
      if (opts.waypoint) {
        const node = topo.nodes.find((n) => n.name === (opts.waypoint!.node ?? 'node-1'))!;
        const pod = await topo.addPod(node);
        mesh.waypointPlan = { name: opts.waypoint.name ?? 'waypoint', pod, env: opts.waypoint.env ?? {} };
      }
      await mesh.boot(opts.agentEnv ?? {});
    } catch (err) {
      await mesh.close();
      throw err;
    }
    return mesh;
  }

  private async boot(extraEnv: Record<string, string>): Promise<void> {
    const { dir, topo } = this;
    const ca = await CertificateAuthority.createSelfSigned('cluster.local');
    await writeFile(join(dir, 'ca-cert.pem'), ca.rootCertPem);
    await writeFile(join(dir, 'ca-key.pem'), ca.rootKeyPem, { mode: 0o600 });
    const tokens = topo.nodes.map((n) => ({ node: n.name, token: randomBytes(16).toString('hex') }));
    await writeFile(join(dir, 'tokens'), tokens.map((t) => `${t.token} ${t.node}`).join('\n') + '\n');
    for (const t of tokens) await writeFile(join(dir, `${t.node}.token`), t.token);
    const wp = this.waypointPlan;
    if (wp) {
      // A workload token: the CA signs only the waypoint's own identity, sa:demo/<name>.
      const token = randomBytes(16).toString('hex');
      await writeFile(join(dir, 'tokens'), `${token} sa:demo/${wp.name}\n`, { flag: 'a' });
      await writeFile(join(dir, 'waypoint.token'), token);
    }
    await mkdir(join(dir, 'kube'));
    await this.writeMesh(this.lastMesh.extra);

    const ctl = topo.controller.ip;
    this.controller = topo.exec(topo.controller, process.execPath, [MAIN, 'controller'], {
      env: {
        ...process.env,
        AMBIT_CONFIG_DIR: join(dir, 'kube'),
        AMBIT_GRPC_ADDR: `${ctl}:15010`,
        AMBIT_GRPC_TLS_ADDR: `${ctl}:15012`,
        AMBIT_CONTROLLER_ADMIN_ADDR: `${ctl}:15014`,
        AMBIT_CA_CERT_FILE: join(dir, 'ca-cert.pem'),
        AMBIT_CA_KEY_FILE: join(dir, 'ca-key.pem'),
        AMBIT_TOKENS_FILE: join(dir, 'tokens'),
        LOG_LEVEL: 'warn',
      },
      stdio: 'ignore',
    });
    this.agentEnv = (node) => ({
      ...(process.env as Record<string, string>),
      NODE_NAME: node.name,
      XDS_ADDRESS: `${ctl}:15012`,
      CA_ADDRESS: `${ctl}:15012`,
      XDS_ROOT_CA: join(dir, 'ca-cert.pem'),
      AUTH_TOKEN: join(dir, `${node.name}.token`),
      INPOD_ENABLED: 'true',
      AMBIT_CNI_SOCKET: join(dir, `${node.name}.sock`),
      AMBIT_ADMIN_ADDR: `${node.ip}:15000`,
      AMBIT_METRICS_ADDR: `${node.ip}:15020`,
      AMBIT_READINESS_ADDR: `${node.ip}:15021`,
      CONNECTION_TERMINATION_DEADLINE: '2s',
      ...extraEnv,
    });
    for (const p of [this.client, this.echoA, this.echoB, this.legacy])
      this.apps.push(topo.exec(p, process.execPath, [POD_APP, 'serve'], { stdio: 'ignore' }));
    for (const node of topo.nodes) this.startAgent(node);
    const sockets = await waitUntil(
      () => [...this.agents.values()].every((a) => existsSync(a.socket)),
      READY_MS,
    );
    if (!sockets) throw new Error(`agents did not open their CNI sockets:\n${this.outputs()}`);
    // The plugin reports node-1's pods and the out-of-mesh pod; echo-b is left to the scan.
    for (const [p, name, ns] of [
      [this.client, 'client', 'demo'],
      [this.echoA, 'echo-a', 'demo'],
      [this.legacy, 'legacy', 'legacy'],
    ] as const) {
      const r = await this.cni('ADD', p, name, ns);
      if (r.code !== 0) throw new Error(`cni ADD ${name} failed (${r.code}): ${r.out}`);
      if (JSON.stringify(JSON.parse(r.out)) !== JSON.stringify(r.prev))
        throw new Error(`cni ADD ${name} did not print the previous result back: ${r.out}`);
    }
    for (const a of this.agents.values()) await this.waitReady(a);
    if (wp) await this.startWaypoint(wp, ctl);
  }

  /** Runs `ambit waypoint` in its pod as the waypoint Deployment's container would, and waits until ready. */
  private async startWaypoint(
    wp: { name: string; pod: TopologyPod; env: Record<string, string> },
    ctl: string,
  ): Promise<void> {
    const { pod } = wp;
    const child = this.topo.exec(pod, process.execPath, [MAIN, 'waypoint'], {
      env: {
        ...process.env,
        POD_NAME: `${wp.name}-0`,
        POD_NAMESPACE: 'demo',
        GATEWAY_NAME: wp.name,
        SERVICE_ACCOUNT: wp.name,
        INSTANCE_IP: pod.ip,
        XDS_ADDRESS: `${ctl}:15012`,
        CA_ADDRESS: `${ctl}:15012`,
        XDS_ROOT_CA: join(this.dir, 'ca-cert.pem'),
        AUTH_TOKEN: join(this.dir, 'waypoint.token'),
        AMBIT_ADMIN_ADDR: `${pod.ip}:15000`,
        AMBIT_METRICS_ADDR: `${pod.ip}:15020`,
        AMBIT_READINESS_ADDR: `${pod.ip}:15021`,
        CONNECTION_TERMINATION_DEADLINE: '2s',
        ...wp.env,
      },
    });
    const w: Waypoint = {
      name: wp.name,
      pod,
      child,
      output: '',
      metricsUrl: `http://${pod.ip}:15020/metrics`,
    };
    child.stdout!.on('data', (b: Buffer) => (w.output += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (w.output += b.toString()));
    this.waypoint = w;
    let last = '';
    const deadline = Date.now() + READY_MS;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) break;
      last = (await this.http(pod, `http://${pod.ip}:15021/healthz/ready`)).stdout;
      if (last.endsWith('\n200')) return;
      await new Promise((res) => setTimeout(res, 200));
    }
    throw new Error(`waypoint not ready: ${last}\n--- waypoint output ---\n${w.output.slice(-4000)}`);
  }

  private agentEnv: (node: TopologyNode) => Record<string, string> = () => ({});

  /** The mesh's Kubernetes YAML, with `extra` documents appended and a pod left out if asked. */
  async writeMesh(extra = '', without = ''): Promise<void> {
    this.lastMesh = { extra, without };
    const version = (name: PodName) => (POD_VERSIONS[name] ? `, version: ${POD_VERSIONS[name]}` : '');
    const pod = (name: PodName, ns: string, sa: string, app: string, p: TopologyPod) =>
      name === without
        ? ''
        : `---
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: ${ns}, labels: { app: ${app}${version(name)}${this.optedOut.has(name) ? ', istio.io/dataplane-mode: none' : ''} } }
spec:
  nodeName: ${p.node.name}
  serviceAccountName: ${sa}
  containers: [{ name: app, image: app }]
status: { phase: Running, podIP: ${p.ip} }
`;
    const yaml = `apiVersion: v1
kind: Namespace
metadata: { name: demo, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Namespace
metadata: { name: legacy }
---
apiVersion: v1
kind: ServiceAccount
metadata: { name: client, namespace: demo }
---
apiVersion: v1
kind: ServiceAccount
metadata: { name: server, namespace: demo }
${pod('client', 'demo', 'client', 'client', this.client)}${pod('echo-a', 'demo', 'server', 'echo', this.echoA)}${pod('echo-b', 'demo', 'server', 'echo', this.echoB)}${pod('legacy', 'legacy', 'default', 'legacy', this.legacy)}---
apiVersion: v1
kind: Service
metadata: { name: echo, namespace: demo }
spec:
  selector: { app: echo }
  clusterIP: ${VIP}
  ports:
  - { name: whoami, port: 80, targetPort: ${APP_PORTS.whoami} }
  - { name: echo, port: 81, targetPort: ${APP_PORTS.echo} }
  - { name: sha, port: 82, targetPort: ${APP_PORTS.sha} }
${this.waypointYaml()}${extra}`;
    await writeFile(join(this.dir, 'kube', 'mesh.yaml'), yaml);
  }

  /** The waypoint's Gateway and the objects a cluster holds for it; '' without a waypoint. */
  private waypointYaml(): string {
    const wp = this.waypointPlan;
    if (!wp) return '';
    const gw = `${GATEWAY_NAME_LABEL}: ${wp.name}`;
    return `---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: ${wp.name}, namespace: demo, labels: { istio.io/waypoint-for: service } }
spec:
  gatewayClassName: istio-waypoint
  listeners: [{ name: mesh, port: 15008, protocol: HBONE }]
---
apiVersion: v1
kind: ServiceAccount
metadata: { name: ${wp.name}, namespace: demo }
---
apiVersion: v1
kind: Service
metadata: { name: ${wp.name}, namespace: demo, labels: { ${gw} } }
spec:
  selector: { ${gw} }
  clusterIP: ${WAYPOINT_VIP}
  ports: [{ name: mesh, port: 15008, targetPort: 15008 }]
---
apiVersion: v1
kind: Pod
metadata:
  name: ${wp.name}-0
  namespace: demo
  labels: { ${gw}, service.istio.io/canonical-name: ${wp.name}, istio.io/dataplane-mode: none }
spec:
  nodeName: ${wp.pod.node.name}
  serviceAccountName: ${wp.name}
  containers: [{ name: waypoint, image: ambit, ports: [{ name: mesh, containerPort: 15008 }] }]
status: { phase: Running, podIP: ${wp.pod.ip} }
`;
  }

  /** The topology pod behind a Pod name of the layout. */
  pod(name: PodName): TopologyPod {
    return { client: this.client, 'echo-a': this.echoA, 'echo-b': this.echoB, legacy: this.legacy }[name];
  }

  /**
   * Opts demo pods into the mesh (`captured`) or out of it (`istio.io/dataplane-mode: none`) by
   * rewriting their Pod objects (other YAML as last written), and resolves once each pod's redirection
   * rules and its HBONE listener (15008) are there, or gone, as asked. Throws after `timeoutMs`.
   */
  async setCaptured(names: readonly PodName[], captured: boolean, timeoutMs = READY_MS): Promise<void> {
    for (const name of names) {
      if (captured) this.optedOut.delete(name);
      else this.optedOut.add(name);
    }
    await this.writeMesh(this.lastMesh.extra, this.lastMesh.without);
    const deadline = Date.now() + timeoutMs;
    const state = async (p: TopologyPod) => {
      const [rules, listeners] = await Promise.all([
        this.topo.run(p, 'iptables-save', []),
        this.topo.run(p, 'ss', ['-ltnH']),
      ]);
      return { rules: rules.stdout.includes('AMBIT'), hbone: /:15008\b/.test(listeners.stdout) };
    };
    let pending = [...names];
    while (pending.length > 0) {
      const states = await Promise.all(pending.map((n) => state(this.pod(n))));
      pending = pending.filter((_, i) => states[i]!.rules !== captured || states[i]!.hbone !== captured);
      if (pending.length === 0) return;
      if (Date.now() >= deadline) {
        throw new Error(
          `${pending.join(', ')} still ${captured ? 'not captured' : 'captured'} after ${timeoutMs} ms:\n${this.outputs()}`,
        );
      }
      await new Promise((res) => setTimeout(res, CAPTURE_POLL_MS));
    }
  }

  /** Runs the real CNI plugin as the container runtime would, against the pod's node agent. */
  async cni(
    command: 'ADD' | 'DEL',
    p: TopologyPod,
    name: string,
    ns: string,
  ): Promise<{ code: number | null; out: string; prev: unknown }> {
    // The agent's socket comes from the network configuration, as the node's CNI config list gives it.
    const conf = {
      cniVersion: '1.0.0',
      name: 'k8s-pod-network',
      type: 'ambit-cni',
      socket: this.agents.get(p.node.name)!.socket,
      prevResult: { cniVersion: '1.0.0', ips: [{ address: `${p.ip}/32`, interface: 0 }] },
    };
    const child = spawn(CNI_PLUGIN, [], {
      env: {
        CNI_COMMAND: command,
        CNI_CONTAINERID: `ctr-${p.netns}`,
        CNI_NETNS: p.netnsPath,
        CNI_IFNAME: 'eth0',
        CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${ns};K8S_POD_NAME=${name}`,
        CNI_PATH: '/opt/cni/bin',
      },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stdin.end(JSON.stringify(conf));
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    return { code, out, prev: conf.prevResult };
  }

  /** Starts (or restarts) the node's agent; its output is appended to what it printed before. */
  startAgent(node: TopologyNode): Agent {
    const a: Agent = this.agents.get(node.name) ?? {
      child: undefined as unknown as ChildProcess,
      output: '',
      node,
      socket: join(this.dir, `${node.name}.sock`),
    };
    a.output += `\n--- agent started ---\n`;
    a.child = this.topo.exec(node, process.execPath, [MAIN, 'ztunnel'], { env: this.agentEnv(node) });
    a.child.stdout!.on('data', (b: Buffer) => (a.output += b.toString()));
    a.child.stderr!.on('data', (b: Buffer) => (a.output += b.toString()));
    this.agents.set(node.name, a);
    return a;
  }

  /** GET from inside a namespace with curl; stdout ends with the status code on its own line. */
  http(ns: { netns: string }, url: string) {
    return this.topo.run(ns, 'curl', ['-s', '-m', '3', '-w', '\n%{http_code}', url], { timeoutMs: 5000 });
  }

  async waitReady(a: Agent): Promise<void> {
    let last = '';
    const deadline = Date.now() + READY_MS;
    while (Date.now() < deadline) {
      const r = await this.http(a.node, `http://${a.node.ip}:15021/healthz/ready`);
      last = r.stdout;
      if (r.stdout.endsWith('\n200')) return;
      await new Promise((res) => setTimeout(res, 200));
    }
    throw new Error(`${a.node.name} not ready: ${last}\n--- agent output ---\n${a.output.slice(-4000)}`);
  }

  /** Runs a pod-app client command inside a pod; returns its stdout, throws on a non-zero exit. */
  async inPod(p: TopologyPod, args: readonly string[], timeoutMs = 30_000): Promise<string> {
    const r = await this.topo.run(p, process.execPath, [POD_APP, ...args], { timeoutMs });
    if (r.code !== 0) throw new Error(`pod-app ${args.join(' ')} in ${p.name}: ${r.stderr.trim() || r.code}`);
    return r.stdout;
  }

  async whoami(from: TopologyPod, host: string, port: number): Promise<{ peer: string; local: string }> {
    return JSON.parse(await this.inPod(from, ['whoami', host, String(port)])) as {
      peer: string;
      local: string;
    };
  }

  /** Every agent's output (and the waypoint's), for a failure message. */
  outputs(): string {
    return [
      ...[...this.agents.values()].map((a) => `--- ${a.node.name} ---\n${a.output.slice(-3000)}`),
      ...(this.waypoint ? [`--- waypoint ---\n${this.waypoint.output.slice(-3000)}`] : []),
    ].join('\n');
  }

  /** Stops everything and removes the topology and files; AMBIT_E2E_LOGS=<dir> keeps agent output. */
  async close(): Promise<void> {
    const keep = process.env.AMBIT_E2E_LOGS;
    if (keep) {
      for (const a of this.agents.values()) await writeFile(join(keep, `${a.node.name}.log`), a.output);
      if (this.waypoint) await writeFile(join(keep, 'waypoint.log'), this.waypoint.output);
    }
    for (const a of this.agents.values()) a.child.kill('SIGTERM');
    this.waypoint?.child.kill('SIGTERM');
    this.controller?.kill('SIGTERM');
    await Promise.all(
      [...this.agents.values(), ...(this.waypoint ? [this.waypoint] : [])].map((a) =>
        waitForExit(a.child, 5000),
      ),
    );
    await this.topo.destroy();
    await rm(this.dir, { recursive: true, force: true });
  }
}
