/**
 * A 2-node "cluster" built from network namespaces, for the capture e2e tests (issue 4, DESIGN.md §5).
 *
 *                         hub netns: bridge br0 (10.200.0.0/24, no address of its own)
 *                 ┌───────────────┬──────────┴───────────┐
 *       controller 10.200.0.2   node-1 10.200.0.11     node-2 10.200.0.12     (each: eth0 ↔ veth ↔ br0)
 *                                 │ pod-1-1, pod-1-2     │ pod-2-1, pod-2-2   (each: its own veth pair)
 *                          pods 10.201.1.2, .3      pods 10.201.2.2, .3
 *
 * Addressing follows Calico, the CNI whose shape needs no bridge per node:
 * - A pod's `eth0` holds its IP as a /32, with `169.254.1.1 dev eth0 scope link` and
 *   `default via 169.254.1.1`. Every packet leaves through the node, so the node routes (and could
 *   police) pod-to-pod traffic even on the same node, and nothing is NATed: peers see pod IPs.
 * - The node's end of each pod veth carries 169.254.1.1/32 (the same address on every pod veth) so
 *   the node answers the pod's ARP for its gateway itself. Calico uses proxy ARP instead, but proxy ARP
 *   only answers for addresses the node has a route to, and our nodes deliberately have no default route.
 * - The node routes each pod as `<podIP>/32 dev <veth> src <nodeIP>` (so the node's own connections
 *   to pods come from its node IP, as a kubelet probe would), the other nodes' pod CIDRs via their
 *   node IPs on the hub, and forwards (ip_forward=1).
 *
 * Why pods have a default route although nothing lies beyond the node: for locally generated
 * packets Linux looks up a route in connect(), *before* the nat OUTPUT chain runs; without one,
 * connect() fails with ENETUNREACH and a later iptables REDIRECT of Service VIPs (10.96.0.0/16, which
 * no table routes) would never see the packet. With it, the packet reaches OUTPUT, and when nothing
 * captures it the node, which has no default route, answers ICMP net-unreachable: the connection fails
 * with ENETUNREACH and no packet leaves the machine. Nothing is connected to the root namespace at all.
 *
 * How fast that failure is depends on the caller (measured on kernel 6.18): a non-blocking
 * connect(), which is what Node, libuv and curl use, sees ENETUNREACH within a few milliseconds; a
 * blocking connect() (bash's /dev/tcp, a plain blocking socket) only after the SYN is retransmitted
 * at the 1 s initial RTO. The likely reason: the node's ICMP error for the first SYN is generated
 * synchronously while the pod's connect() still holds the socket (veth delivery runs in the sender's
 * softirq), and Linux keeps an error that lands on a locked SYN_SENT socket only as a soft error, which
 * SO_ERROR reports but a sleeping connect() does not. The node's per-source limiter for these errors
 * (net.ipv4.route.error_cost: a burst of 5, then 1/s, global rather than per namespace) can add
 * seconds when one pod hammers unroutable addresses; icmp_ratelimit=0 on the nodes removes the other,
 * per-destination limiter.
 *
 * rp_filter is 0 everywhere (all, default, lo) because TPROXY and fwmark routing deliver packets on
 * interfaces strict reverse-path filtering would reject. The hub's bridge skips iptables
 * (bridge-nf-call-*=0) so bridged frames never meet netfilter in the hub.
 *
 * Names: every namespace is `<prefix>-<n>-<role>` with prefix `amb<pid>` (the full pid, so
 * {@link cleanupStale} can tell a crashed run's leftovers from a live run's) and `n` counting
 * topologies in this process. Interfaces need no prefix: each lives only inside a namespace this
 * module made (veth ends are created directly in their namespaces, never in the root one), so they
 * cannot collide with anything, and pods keep the `eth0` a real pod has.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { spawnSync } from 'node:child_process';
import { exited, waitForExit, waitUntil } from './child.ts';
import { IpCommandError, ipBatch, ipBatchSync, listNetns, netnsPath, pidAlive, pidsInNetns } from './ip.ts';

/** Leftovers of `amb<pid>-…` runs; the first capture group is the creating process's pid. */
export const STALE_PATTERN = /^amb(\d+)-/;

/** Defaults for {@link TopologyOptions}. */
export const TOPOLOGY_DEFAULTS = {
  nodes: 2,
  podsPerNode: 2,
  hubCidr: '10.200.0.0/24',
  controllerHost: 2,
  nodeHostBase: 10,
  podGateway: '169.254.1.1',
  graceMs: 2_000,
} as const;

/** How to shape a topology; everything has a default (see {@link TOPOLOGY_DEFAULTS}). */
export interface TopologyOptions {
  /** Number of nodes, each a namespace on the hub bridge. */
  readonly nodes?: number;
  /** Pods created on each node at start (more with {@link Topology.addPod}). */
  readonly podsPerNode?: number;
  /** The node network on the hub bridge; nodes and the controller take host numbers in it. */
  readonly hubCidr?: string;
  /** Host number of the controller in `hubCidr` (2 → 10.200.0.2). */
  readonly controllerHost?: number;
  /** Node i (1-based) takes host number `nodeHostBase + i` in `hubCidr` (10 → 10.200.0.11). */
  readonly nodeHostBase?: number;
  /** Pod CIDR per node, in node order; the default gives node i `10.201.i.0/24`. */
  readonly podCidrs?: readonly string[];
  /** The link-local gateway every pod routes through. */
  readonly podGateway?: string;
  /** Namespace name prefix; defaults to `amb<pid>`, which {@link cleanupStale} recognises. */
  readonly prefix?: string;
  /** How long {@link Topology.destroy} waits after SIGTERM before SIGKILL. */
  readonly graceMs?: number;
}

/** Something that names a namespace: its name or any object with a `netns`. */
export type NetnsRef = string | { readonly netns: string };

/** A namespace of the topology. */
export interface TopologyNamespace {
  /** Short role name: `hub`, `controller`, `node-1`, `pod-1-2`. */
  readonly name: string;
  /** The namespace's name for `ip netns` / `ip -n`. */
  readonly netns: string;
  /** `/var/run/netns/<netns>`, what setns(2) opens. */
  readonly netnsPath: string;
}

/** The hub: holds the bridge every node and the controller plug into. */
export interface TopologyHub extends TopologyNamespace {
  /** The bridge's interface name inside the hub. */
  readonly bridge: string;
}

/** The controller's namespace: on the hub, with routes to every pod CIDR. */
export interface TopologyController extends TopologyNamespace {
  /** Its address on the hub network. */
  readonly ip: string;
  /** Its interface toward the hub. */
  readonly iface: string;
}

/** A node: a namespace on the hub that routes for its pods. */
export interface TopologyNode extends TopologyNamespace {
  /** 1-based node number. */
  readonly index: number;
  /** Its address on the hub network. */
  readonly ip: string;
  /** Its interface toward the hub. */
  readonly iface: string;
  /** The CIDR its pods' addresses come from. */
  readonly podCidr: string;
  /** Its pods, in creation order; {@link Topology.addPod} and {@link Topology.removePod} change it. */
  readonly pods: TopologyPod[];
}

/** A pod: a namespace joined to its node by a veth pair. */
export interface TopologyPod extends TopologyNamespace {
  /** The pod's IP (a /32 on `iface`). */
  readonly ip: string;
  /** The node it runs on. */
  readonly node: TopologyNode;
  /** The pod's interface, `eth0`. */
  readonly iface: string;
  /** The node's end of the pod's veth pair (an interface in the node namespace). */
  readonly hostVeth: string;
  /** The pod's default gateway (an address on `hostVeth`). */
  readonly gateway: string;
}

/** Options for {@link Topology.exec}: anything `spawn` takes except `detached`. */
export type ExecOptions = Omit<SpawnOptions, 'detached'>;

/** Options for {@link Topology.run}. */
export interface RunOptions {
  /** Written to the command's stdin. */
  readonly input?: string;
  /** Kill the command (its whole process group) after this long; default 10 s. */
  readonly timeoutMs?: number;
  /** Environment; defaults to this process's. */
  readonly env?: NodeJS.ProcessEnv;
}

/** What {@link Topology.run} returns; a non-zero exit is a result, not an exception. */
export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
  /** Exit code, or null when killed by a signal. */
  readonly code: number | null;
  /** The signal that ended it, if any. */
  readonly signal: NodeJS.Signals | null;
  /** Whether {@link RunOptions.timeoutMs} ran out. */
  readonly timedOut: boolean;
}

/** A running topology. */
export interface Topology {
  /** `<prefix>-<n>`: the start of every namespace name of this topology. */
  readonly tag: string;
  /** The hub namespace and its bridge. */
  readonly hub: TopologyHub;
  /** The controller namespace. */
  readonly controller: TopologyController;
  /** The nodes, in order. */
  readonly nodes: readonly TopologyNode[];
  /** Every pod of every node. */
  readonly pods: readonly TopologyPod[];
  /** Every namespace name this topology has made and not yet deleted. */
  readonly namespaces: readonly string[];
  /** Whether {@link destroy} has started. */
  readonly destroyed: boolean;
  /**
   * Spawns `cmd args` inside a namespace (`ip netns exec`) as the leader of a new process group, which
   * {@link destroy} (or removing the pod) kills. Stdio defaults to pipes.
   */
  exec(ns: NetnsRef, cmd: string, args?: readonly string[], opts?: ExecOptions): ChildProcess;
  /** Runs `cmd args` inside a namespace to completion, bounded by a timeout. */
  run(ns: NetnsRef, cmd: string, args?: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** Adds a pod to a node: next free address in its pod CIDR, fresh names. */
  addPod(node: TopologyNode): Promise<TopologyPod>;
  /** Kills the pod's processes and deletes its namespace and veth pair. */
  removePod(pod: TopologyPod): Promise<void>;
  /**
   * Kills every process inside the topology's namespaces (its own spawns by process group, SIGTERM then
   * SIGKILL; strays found in /proc by SIGKILL) and deletes every namespace, which deletes their links.
   * Idempotent; also runs on process exit, SIGINT and SIGTERM.
   */
  destroy(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// IPv4 arithmetic

interface Cidr {
  readonly base: number;
  readonly bits: number;
  readonly text: string;
}

function ipToInt(ip: string): number {
  const parts = ip.split('.');
  const octets = parts.map(Number);
  if (parts.length !== 4 || octets.some((o, i) => !/^\d{1,3}$/.test(parts[i]!) || o > 255)) {
    throw new Error(`invalid IPv4 address ${JSON.stringify(ip)}`);
  }
  return octets.reduce((acc, o) => acc * 256 + o, 0);
}

function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function parseCidr(text: string): Cidr {
  const [addr, len] = text.split('/');
  const bits = Number(len);
  if (addr === undefined || !Number.isInteger(bits) || bits < 8 || bits > 30) {
    throw new Error(`invalid IPv4 CIDR ${JSON.stringify(text)} (want a.b.c.d/8..30)`);
  }
  const size = 2 ** (32 - bits);
  const base = ipToInt(addr) - (ipToInt(addr) % size);
  return { base, bits, text: `${intToIp(base)}/${bits}` };
}

/** Address number `host` of `cidr`; host 0 and the broadcast address are refused. */
function hostAddr(cidr: Cidr, host: number): string {
  if (!Number.isInteger(host) || host < 1 || host >= 2 ** (32 - cidr.bits) - 1) {
    throw new Error(`host number ${host} does not fit in ${cidr.text}`);
  }
  return intToIp(cidr.base + host);
}

// ---------------------------------------------------------------------------------------------
// Sysctls, one `sysctl` per namespace, run from the root batch before any link is made so new
// interfaces inherit the `default` values.

const COMMON_SYSCTLS = [
  'net.ipv4.conf.all.rp_filter=0',
  'net.ipv4.conf.default.rp_filter=0',
  'net.ipv4.conf.lo.rp_filter=0',
];
const NODE_SYSCTLS = [
  ...COMMON_SYSCTLS,
  'net.ipv4.ip_forward=1',
  'net.ipv4.conf.all.send_redirects=0',
  'net.ipv4.conf.default.send_redirects=0',
  // The per-destination ICMP limiter (1/s) would otherwise delay pods' unreachable errors by seconds.
  'net.ipv4.icmp_ratelimit=0',
];
// Exist only when the kernel has bridge netfilter; `-e` ignores them where it does not.
const BRIDGE_SYSCTLS = [
  'net.bridge.bridge-nf-call-iptables=0',
  'net.bridge.bridge-nf-call-ip6tables=0',
  'net.bridge.bridge-nf-call-arptables=0',
];

function sysctlLines(netns: string, settings: readonly string[], ignoreMissing = false): string[] {
  return [`netns exec ${netns} sysctl -q ${ignoreMissing ? '-e ' : ''}-w ${settings.join(' ')}`];
}

const IFNAMSIZ = 15;

function checkIfname(name: string): string {
  if (name.length > IFNAMSIZ) throw new Error(`interface name ${name} is longer than ${IFNAMSIZ} characters`);
  return name;
}

// ---------------------------------------------------------------------------------------------
// Every live topology, so exit and signal handlers can tear them all down.

const live = new Set<TestTopology>();
/** Namespace names this process is using outside any topology (the root probe). */
const reserved = new Set<string>();
let sequence = 0;
let handlersInstalled = false;

function destroyAllSync(): void {
  for (const topo of [...live]) topo.destroySync();
}

function onSignal(signal: NodeJS.Signals): void {
  destroyAllSync();
  uninstallHandlers();
  // Without our listener the default action (terminate) applies again, unless someone else listens.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', destroyAllSync);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

function uninstallHandlers(): void {
  if (!handlersInstalled) return;
  handlersInstalled = false;
  process.off('exit', destroyAllSync);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}

function ownsNetns(name: string): boolean {
  if (reserved.has(name)) return true;
  for (const topo of live) if (topo.owns(name)) return true;
  return false;
}

function refName(ns: NetnsRef): string {
  return typeof ns === 'string' ? ns : ns.netns;
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

function killPid(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

/** SIGKILLs every process inside `names` and waits (bounded) until none is left. */
async function killStrays(names: readonly string[], timeoutMs: number): Promise<void> {
  let pids = pidsInNetns(names);
  if (pids.length === 0) return;
  pids.forEach(killPid);
  const gone = await waitUntil(() => (pids = pidsInNetns(names)).length === 0, timeoutMs);
  if (!gone) {
    // The namespaces still get unmounted; they (and their links) vanish when these processes die.
    process.emitWarning(`processes ${pids.join(', ')} still inside ${names.join(', ')} after SIGKILL`);
  }
}

class TestTopology implements Topology {
  readonly tag: string;
  readonly hub: TopologyHub;
  readonly controller: TopologyController;
  readonly nodes: TopologyNode[] = [];
  readonly #graceMs: number;
  readonly #gateway: string;
  readonly #hubPrefixBits: number;
  readonly #namespaces = new Set<string>();
  readonly #children = new Map<ChildProcess, string>();
  readonly #podSeq = new Map<TopologyNode, number>();
  /** Pods allocated but not yet on their node's list (so two allocations never share an IP). */
  readonly #pendingPods: TopologyPod[] = [];
  #destroying: Promise<void> | undefined;

  constructor(
    tag: string,
    opts: Required<Omit<TopologyOptions, 'prefix' | 'podCidrs'>> & { podCidrs: string[] },
  ) {
    this.tag = tag;
    this.#graceMs = opts.graceMs;
    this.#gateway = intToIp(ipToInt(opts.podGateway)); // Validates it before any namespace exists.
    const hubCidr = parseCidr(opts.hubCidr);
    this.#hubPrefixBits = hubCidr.bits;
    this.hub = this.#ns('hub', { bridge: 'br0' });
    this.controller = this.#ns('controller', { ip: hostAddr(hubCidr, opts.controllerHost), iface: 'eth0' });
    for (let i = 1; i <= opts.nodes; i++) {
      const node: TopologyNode = this.#ns(`node-${i}`, {
        index: i,
        ip: hostAddr(hubCidr, opts.nodeHostBase + i),
        iface: 'eth0',
        podCidr: parseCidr(opts.podCidrs[i - 1]!).text,
        pods: [],
      });
      this.nodes.push(node);
      this.#podSeq.set(node, 0);
    }
  }

  #ns<T extends object>(name: string, rest: T): TopologyNamespace & T {
    const netns = `${this.tag}-${name}`;
    return { name, netns, netnsPath: netnsPath(netns), ...rest };
  }

  get pods(): TopologyPod[] {
    return this.nodes.flatMap((n) => n.pods);
  }

  get namespaces(): string[] {
    return [...this.#namespaces];
  }

  get destroyed(): boolean {
    return this.#destroying !== undefined;
  }

  /** Whether a namespace name belongs to this topology. */
  owns(name: string): boolean {
    return this.#namespaces.has(name);
  }

  /** Builds everything with one `ip` batch from the root namespace, then one per namespace in parallel. */
  async create(podsPerNode: number): Promise<void> {
    const pods = this.nodes.flatMap((node) =>
      Array.from({ length: podsPerNode }, () => {
        const pod = this.#allocatePod(node);
        this.#settle(pod);
        node.pods.push(pod);
        return pod;
      }),
    );
    const all = [this.hub, this.controller, ...this.nodes, ...pods];
    all.forEach((ns) => this.#namespaces.add(ns.netns));
    const root: string[] = [
      ...all.map((ns) => `netns add ${ns.netns}`),
      ...sysctlLines(this.hub.netns, COMMON_SYSCTLS),
      ...sysctlLines(this.hub.netns, BRIDGE_SYSCTLS, true),
      ...sysctlLines(this.controller.netns, COMMON_SYSCTLS),
      ...this.nodes.flatMap((n) => sysctlLines(n.netns, NODE_SYSCTLS)),
      ...pods.flatMap((p) => sysctlLines(p.netns, COMMON_SYSCTLS)),
      `link add name ${this.hub.bridge} netns ${this.hub.netns} type bridge forward_delay 0 stp_state 0 mcast_snooping 0`,
      `link add name ctl netns ${this.hub.netns} type veth peer name ${this.controller.iface} netns ${this.controller.netns}`,
      ...this.nodes.map(
        (n) =>
          `link add name ${checkIfname(n.name)} netns ${this.hub.netns} type veth peer name ${n.iface} netns ${n.netns}`,
      ),
      ...pods.map((p) => this.#podLinkLine(p)),
    ];
    await ipBatch(root);

    const hub = [
      'link set lo up',
      `link set ${this.hub.bridge} up`,
      `link set ctl master ${this.hub.bridge} up`,
      ...this.nodes.map((n) => `link set ${n.name} master ${this.hub.bridge} up`),
    ];
    const controller = [
      'link set lo up',
      `link set ${this.controller.iface} up`,
      `addr add ${this.controller.ip}/${this.#hubPrefixBits} dev ${this.controller.iface}`,
      ...this.nodes.map((n) => `route add ${n.podCidr} via ${n.ip} dev ${this.controller.iface}`),
    ];
    await Promise.all([
      ipBatch(hub, { netns: this.hub.netns }),
      ipBatch(controller, { netns: this.controller.netns }),
      ...this.nodes.map((node) =>
        ipBatch(
          [
            'link set lo up',
            `link set ${node.iface} up`,
            `addr add ${node.ip}/${this.#hubPrefixBits} dev ${node.iface}`,
            ...this.nodes
              .filter((other) => other !== node)
              .map((other) => `route add ${other.podCidr} via ${other.ip} dev ${node.iface}`),
            ...node.pods.flatMap((p) => this.#nodeSideLines(p)),
          ],
          { netns: node.netns },
        ),
      ),
      ...pods.map((p) => ipBatch(this.#podLines(p), { netns: p.netns })),
    ]);
  }

  /** Picks a pod's names and address (the lowest free host number from 2 up). */
  #allocatePod(node: TopologyNode): TopologyPod {
    const seq = this.#podSeq.get(node)! + 1;
    this.#podSeq.set(node, seq);
    const cidr = parseCidr(node.podCidr);
    const taken = new Set([...node.pods, ...this.#pendingPods].map((p) => p.ip));
    let host = 2;
    while (taken.has(hostAddr(cidr, host))) host++;
    const name = `pod-${node.index}-${seq}`;
    const pod: TopologyPod = this.#ns(name, {
      ip: hostAddr(cidr, host),
      node,
      iface: 'eth0',
      hostVeth: checkIfname(name),
      gateway: this.#gateway,
    });
    this.#pendingPods.push(pod);
    return pod;
  }

  #podLinkLine(p: TopologyPod): string {
    return `link add name ${p.iface} netns ${p.netns} type veth peer name ${p.hostVeth} netns ${p.node.netns}`;
  }

  #nodeSideLines(p: TopologyPod): string[] {
    return [
      `link set ${p.hostVeth} up`,
      `addr add ${p.gateway}/32 dev ${p.hostVeth} scope link`,
      `route add ${p.ip}/32 dev ${p.hostVeth} scope link src ${p.node.ip}`,
    ];
  }

  #podLines(p: TopologyPod): string[] {
    return [
      'link set lo up',
      `link set ${p.iface} up`,
      `addr add ${p.ip}/32 dev ${p.iface}`,
      `route add ${p.gateway}/32 dev ${p.iface} scope link`,
      `route add default via ${p.gateway} dev ${p.iface}`,
    ];
  }

  #settle(pod: TopologyPod): void {
    const i = this.#pendingPods.indexOf(pod);
    if (i >= 0) this.#pendingPods.splice(i, 1);
  }

  async addPod(node: TopologyNode): Promise<TopologyPod> {
    this.#assertLive();
    if (!this.nodes.includes(node)) throw new Error(`${node.name} is not a node of ${this.tag}`);
    const pod = this.#allocatePod(node);
    this.#namespaces.add(pod.netns);
    try {
      await ipBatch([
        `netns add ${pod.netns}`,
        ...sysctlLines(pod.netns, COMMON_SYSCTLS),
        this.#podLinkLine(pod),
      ]);
      await Promise.all([
        ipBatch(this.#podLines(pod), { netns: pod.netns }),
        ipBatch(this.#nodeSideLines(pod), { netns: node.netns }),
      ]);
    } catch (err) {
      this.#settle(pod);
      await this.#deletePod(pod);
      throw err;
    }
    this.#settle(pod);
    node.pods.push(pod);
    return pod;
  }

  async removePod(pod: TopologyPod): Promise<void> {
    const pods = pod.node.pods;
    const i = pods.indexOf(pod);
    if (i < 0) return;
    pods.splice(i, 1);
    await this.#deletePod(pod);
  }

  async #deletePod(pod: TopologyPod): Promise<void> {
    await this.#killInside([pod.netns]);
    // Deleting the node's end takes the pod's end and the /32 route with it at once, even if some
    // socket still pins the pod namespace; a later pod may then reuse the address.
    try {
      await ipBatch([`link del ${pod.hostVeth}`], { netns: pod.node.netns });
    } catch (err) {
      if (!(err instanceof IpCommandError && /Cannot find device/.test(err.stderr))) throw err;
    }
    if (listNetns().includes(pod.netns)) await ipBatch([`netns del ${pod.netns}`]);
    this.#namespaces.delete(pod.netns);
  }

  exec(ns: NetnsRef, cmd: string, args: readonly string[] = [], opts: ExecOptions = {}): ChildProcess {
    this.#assertLive();
    const netns = refName(ns);
    if (!this.#namespaces.has(netns)) throw new Error(`${netns} is not a namespace of ${this.tag}`);
    const child = spawn('ip', ['netns', 'exec', netns, cmd, ...args], {
      stdio: 'pipe',
      ...opts,
      // Its own process group, so destroy() can take down whatever it forks too.
      detached: true,
    });
    if (child.pid !== undefined) {
      this.#children.set(child, netns);
      child.once('exit', () => this.#children.delete(child));
    }
    return child;
  }

  run(ns: NetnsRef, cmd: string, args: readonly string[] = [], opts: RunOptions = {}): Promise<RunResult> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      const child = this.exec(ns, cmd, args, { env: opts.env ?? process.env });
      let stdout = '';
      let stderr = '';
      let timedOut = false;
      child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
      child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
      const timer = setTimeout(() => {
        timedOut = true;
        if (child.pid !== undefined) killGroup(child.pid, 'SIGKILL');
      }, timeoutMs);
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ stdout, stderr, code, signal, timedOut });
      });
      child.stdin!.on('error', () => {}); // EPIPE if it exits without reading; the result says why.
      child.stdin!.end(opts.input ?? '');
    });
  }

  destroy(): Promise<void> {
    this.#destroying ??= this.#teardown();
    return this.#destroying;
  }

  async #teardown(): Promise<void> {
    try {
      await this.#killInside(this.namespaces);
      const existing = new Set(listNetns());
      const names = this.namespaces.filter((n) => existing.has(n));
      // Deleting a namespace deletes the veth ends in it and so their peers: no link outlives it.
      await ipBatch(
        names.map((n) => `netns del ${n}`),
        { force: true },
      );
      this.#namespaces.clear();
    } finally {
      live.delete(this);
      if (live.size === 0) uninstallHandlers();
    }
  }

  /** Kills our spawns in `names` (group SIGTERM, then SIGKILL after the grace period), then strays. */
  async #killInside(names: readonly string[]): Promise<void> {
    const inside = new Set(names);
    const ours = [...this.#children].filter(([c, ns]) => inside.has(ns) && !exited(c)).map(([c]) => c);
    ours.forEach((c) => killGroup(c.pid!, 'SIGTERM'));
    const graceful = await Promise.all(ours.map((c) => waitForExit(c, this.#graceMs)));
    const stubborn = ours.filter((_, i) => !graceful[i]);
    stubborn.forEach((c) => killGroup(c.pid!, 'SIGKILL'));
    await Promise.all(stubborn.map((c) => waitForExit(c, 2_000)));
    await killStrays(names, 2_000);
  }

  /** Everything {@link destroy} does, synchronously and without grace, for exit and signal handlers. */
  destroySync(): void {
    this.#destroying ??= Promise.resolve();
    for (const [child] of this.#children) if (!exited(child)) killGroup(child.pid!, 'SIGKILL');
    const names = this.namespaces;
    pidsInNetns(names).forEach(killPid);
    const existing = new Set(listNetns());
    try {
      ipBatchSync(
        names.filter((n) => existing.has(n)).map((n) => `netns del ${n}`),
        { force: true },
      );
    } catch (err) {
      process.stderr.write(`topology ${this.tag}: ${(err as Error).message}\n`);
    }
    this.#namespaces.clear();
    live.delete(this);
  }

  #assertLive(): void {
    if (this.destroyed) throw new Error(`topology ${this.tag} has been destroyed`);
  }
}

/**
 * Builds a topology (see the file comment for its shape). On failure everything made so far is
 * removed before the error (an {@link IpCommandError} naming the failing command) propagates.
 * The first call in a process also removes leftovers of crashed runs ({@link cleanupStale}).
 */
export async function createTopology(options: TopologyOptions = {}): Promise<Topology> {
  const nodes = options.nodes ?? TOPOLOGY_DEFAULTS.nodes;
  const podsPerNode = options.podsPerNode ?? TOPOLOGY_DEFAULTS.podsPerNode;
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 99)
    throw new Error(`nodes must be 1..99, not ${nodes}`);
  if (!Number.isInteger(podsPerNode) || podsPerNode < 0) throw new Error(`podsPerNode must be ≥ 0`);
  const podCidrs = options.podCidrs ?? Array.from({ length: nodes }, (_, i) => `10.201.${i + 1}.0/24`);
  if (podCidrs.length < nodes) throw new Error(`podCidrs names ${podCidrs.length} CIDRs for ${nodes} nodes`);
  if (sequence === 0 && options.prefix === undefined) await cleanupStale();
  const tag = `${options.prefix ?? `amb${process.pid}`}-${sequence++}`;
  const topo = new TestTopology(tag, {
    nodes,
    podsPerNode,
    hubCidr: options.hubCidr ?? TOPOLOGY_DEFAULTS.hubCidr,
    controllerHost: options.controllerHost ?? TOPOLOGY_DEFAULTS.controllerHost,
    nodeHostBase: options.nodeHostBase ?? TOPOLOGY_DEFAULTS.nodeHostBase,
    podGateway: options.podGateway ?? TOPOLOGY_DEFAULTS.podGateway,
    graceMs: options.graceMs ?? TOPOLOGY_DEFAULTS.graceMs,
    podCidrs: [...podCidrs],
  });
  live.add(topo);
  installHandlers();
  try {
    await topo.create(podsPerNode);
  } catch (err) {
    await topo.destroy();
    throw err;
  }
  return topo;
}

/**
 * Removes namespaces left by earlier runs that crashed: names matching `pattern` whose creating
 * pid (the pattern's first capture group) is no longer running, or is this process but belongs to
 * no live topology (a reused pid). Processes still inside them are killed first. Returns the names
 * removed.
 */
export async function cleanupStale(pattern: RegExp = STALE_PATTERN): Promise<string[]> {
  const stale = listNetns().filter((name) => {
    const pid = Number(new RegExp(pattern.source, pattern.flags.replace('g', '')).exec(name)?.[1]);
    if (!Number.isInteger(pid) || pid <= 0) return false;
    return pid === process.pid ? !ownsNetns(name) : !pidAlive(pid);
  });
  if (stale.length === 0) return [];
  await killStrays(stale, 2_000);
  await ipBatch(
    stale.map((n) => `netns del ${n}`),
    { force: true },
  );
  return stale;
}

let skipReason: string | false | undefined;

/**
 * Why the netns e2e tests cannot run here, or false when they can; pass it as node:test's `skip`.
 * Beyond root and iproute2 it makes (and removes) a namespace with a veth pair, which catches
 * unprivileged containers where uid 0 lacks CAP_SYS_ADMIN / CAP_NET_ADMIN.
 */
export function requireRoot(): string | false {
  if (skipReason !== undefined) return skipReason;
  skipReason = probe();
  return skipReason;
}

function probe(): string | false {
  if (process.platform !== 'linux') return 'needs Linux network namespaces';
  if (process.getuid?.() !== 0) return 'needs root for ip netns, veth pairs and bridges (CI runs it as root)';
  for (const [bin, args] of [
    ['ip', ['-V']],
    ['sysctl', ['-V']],
  ] as const) {
    const r = spawnSync(bin, args, { stdio: 'ignore', timeout: 5_000 });
    if (r.error || r.status !== 0)
      return `needs \`${bin}\` (${bin === 'ip' ? 'iproute2' : 'procps'}) on PATH`;
  }
  const name = `amb${process.pid}-probe`;
  reserved.add(name);
  try {
    ipBatchSync([
      `netns add ${name}`,
      `link add name a netns ${name} type veth peer name b netns ${name}`,
      `netns del ${name}`,
    ]);
    return false;
  } catch (err) {
    if (listNetns().includes(name)) ipBatchSync([`netns del ${name}`], { force: true });
    return `cannot create a network namespace with a veth pair: ${(err as Error).message}`;
  } finally {
    reserved.delete(name);
  }
}
