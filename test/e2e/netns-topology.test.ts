/**
 * The network-namespace test bed itself (issue 4): a 2-node "cluster" of namespaces in which pods
 * reach each other without NAT, nothing routes off the machine, and nothing outlives the topology.
 * Needs root; skips with the reason elsewhere.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { waitForExit, waitForOutput, waitUntil } from './lib/child.ts';
import { ip, listNetns, pidAlive } from './lib/ip.ts';
import { cleanupStale, createTopology, requireRoot } from './lib/topology.ts';
import type { NetnsRef, Topology } from './lib/topology.ts';

const topologyModule = fileURLToPath(new URL('./lib/topology.ts', import.meta.url));
const PORT = 8080;
const WAIT_MS = 10_000;

// Answers every connection with the addresses it saw, then closes.
const SERVER = `
const net = require('node:net');
const [host, port] = process.argv.slice(1);
const server = net.createServer((c) => c.end(JSON.stringify({ remote: c.remoteAddress, local: c.localAddress })));
server.listen(Number(port), host, () => console.log('listening ' + server.address().port));
`;

// Connects once and prints what happened as one JSON line.
const CLIENT = `
const net = require('node:net');
const [host, port, timeoutMs] = process.argv.slice(1);
const t0 = Date.now();
const done = (r) => { console.log(JSON.stringify({ ...r, ms: Date.now() - t0 })); process.exit(0); };
const s = net.connect({ host, port: Number(port) });
let local = '';
let data = '';
s.setTimeout(Number(timeoutMs), () => done({ error: 'ETIMEDOUT' }));
s.on('connect', () => (local = s.localAddress));
s.on('data', (d) => (data += d));
s.on('end', () => done({ local, reply: JSON.parse(data) }));
s.on('error', (e) => done({ error: e.code }));
`;

interface Reply {
  readonly remote: string;
  readonly local: string;
}

interface Outcome {
  readonly ms: number;
  readonly local?: string;
  readonly reply?: Reply;
  readonly error?: string;
}

function tagPattern(tag: string): RegExp {
  return new RegExp(`^${tag}-`);
}

describe('network-namespace topology', { skip: requireRoot() }, () => {
  let topo: Topology;
  const servers: ChildProcess[] = [];

  async function startServer(ns: NetnsRef, host = '0.0.0.0'): Promise<ChildProcess> {
    const child = topo.exec(ns, process.execPath, ['-e', SERVER, host, String(PORT)]);
    servers.push(child);
    await waitForOutput(child, /listening \d+/, WAIT_MS);
    return child;
  }

  async function connect(from: NetnsRef, host: string, timeoutMs = 8_000): Promise<Outcome> {
    const r = await topo.run(from, process.execPath, ['-e', CLIENT, host, String(PORT), String(timeoutMs)], {
      timeoutMs: timeoutMs + WAIT_MS,
    });
    assert.equal(r.code, 0, `client in ${typeof from === 'string' ? from : from.netns} failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as Outcome;
  }

  before(async () => {
    await cleanupStale();
    const t0 = performance.now();
    topo = await createTopology({ nodes: 2, podsPerNode: 2 });
    console.log(
      `# createTopology (2 nodes × 2 pods, 8 namespaces): ${(performance.now() - t0).toFixed(0)} ms`,
    );
    const [node1, node2] = topo.nodes;
    await Promise.all([
      startServer(node1!.pods[0]!),
      startServer(node2!.pods[1]!),
      startServer(node1!, node1!.ip),
      startServer(node2!, node2!.ip),
    ]);
  });

  after(async () => {
    await topo?.destroy();
  });

  test('has the documented shape and addresses', () => {
    assert.equal(topo.controller.ip, '10.200.0.2');
    assert.deepEqual(
      topo.nodes.map((n) => [n.name, n.ip, n.podCidr, n.pods.map((p) => p.ip)]),
      [
        ['node-1', '10.200.0.11', '10.201.1.0/24', ['10.201.1.2', '10.201.1.3']],
        ['node-2', '10.200.0.12', '10.201.2.0/24', ['10.201.2.2', '10.201.2.3']],
      ],
    );
    for (const ns of [topo.hub, topo.controller, ...topo.nodes, ...topo.pods]) {
      assert.match(ns.netns, tagPattern(topo.tag));
      assert.equal(ns.netnsPath, `/var/run/netns/${ns.netns}`);
      assert.ok(listNetns().includes(ns.netns), `${ns.netns} is not mounted`);
    }
    for (const pod of topo.pods) assert.ok(pod.node.pods.includes(pod));
  });

  test('a pod reaches a pod on its own node and on the other node, which sees its own IP', async () => {
    const [node1, node2] = topo.nodes;
    const server = node1!.pods[0]!;
    for (const client of [node1!.pods[1]!, node2!.pods[0]!]) {
      const r = await connect(client, server.ip);
      assert.equal(r.error, undefined, `${client.name} → ${server.name}: ${r.error}`);
      assert.deepEqual(r.reply, { remote: client.ip, local: server.ip }, `${client.name} → ${server.name}`);
      assert.equal(r.local, client.ip);
    }
    // And the other way round, across nodes.
    const back = await connect(node1!.pods[0]!, node2!.pods[1]!.ip);
    assert.deepEqual(back.reply, { remote: node1!.pods[0]!.ip, local: node2!.pods[1]!.ip });
  });

  test('a pod reaches both node addresses without NAT', async () => {
    const pod = topo.nodes[0]!.pods[1]!;
    for (const node of topo.nodes) {
      const r = await connect(pod, node.ip);
      assert.deepEqual(r.reply, { remote: pod.ip, local: node.ip }, `${pod.name} → ${node.name}: ${r.error}`);
    }
  });

  test('a node connects to its pod from its node IP, as a kubelet probe would', async () => {
    const node = topo.nodes[0]!;
    const r = await connect(node, node.pods[0]!.ip);
    assert.deepEqual(r.reply, { remote: node.ip, local: node.pods[0]!.ip });
  });

  test('the controller reaches both nodes and pods on both nodes', async () => {
    const { controller } = topo;
    for (const addr of [
      ...topo.nodes.map((n) => n.ip),
      topo.nodes[0]!.pods[0]!.ip,
      topo.nodes[1]!.pods[1]!.ip,
    ]) {
      const r = await connect(controller, addr);
      assert.deepEqual(r.reply, { remote: controller.ip, local: addr }, `controller → ${addr}: ${r.error}`);
    }
  });

  test('unroutable destinations fail fast as unreachable: nothing routes off the machine', async () => {
    const pod = topo.nodes[0]!.pods[0]!;
    // 1.1.1.1 is the Internet; 10.96.0.10 a Service VIP that nothing captures yet.
    for (const addr of ['1.1.1.1', '10.96.0.10']) {
      const r = await connect(pod, addr);
      assert.ok(
        r.error === 'ENETUNREACH' || r.error === 'EHOSTUNREACH',
        `${pod.name} → ${addr}:${PORT} ended ${JSON.stringify(r)}`,
      );
      // A few ms for Node's non-blocking connect; even the 1 s retransmit path (see topology.ts)
      // would pass, while a route off the machine would leave the SYN unanswered for minutes.
      assert.ok(r.ms < 2_500, `${addr} took ${r.ms} ms to fail`);
      console.log(`# ${pod.name} → ${addr}:${PORT}: ${r.error} after ${r.ms} ms`);
    }
    // Only pods have a default route, and it points at their node, which has none.
    for (const ns of [topo.hub, topo.controller, ...topo.nodes]) {
      assert.equal((await ip(['route', 'show', 'default'], { netns: ns.netns })).trim(), '', ns.name);
    }
    for (const p of topo.pods) {
      const route = await ip(['route', 'show', 'default'], { netns: p.netns });
      assert.equal(route.trim(), 'default via 169.254.1.1 dev eth0', p.name);
    }
  });

  test('addPod and removePod: a new pod is reachable, removal kills its processes, others keep working', async () => {
    const [node1, node2] = topo.nodes;
    const added = await topo.addPod(node2!);
    assert.equal(added.ip, '10.201.2.4');
    assert.equal(added.name, 'pod-2-3');
    assert.ok(node2!.pods.includes(added));
    await startServer(added);
    const r = await connect(node1!.pods[0]!, added.ip);
    assert.deepEqual(r.reply, { remote: node1!.pods[0]!.ip, local: added.ip });

    // Remove a pod with a server inside: the server dies and its namespace goes.
    const victim = node2!.pods[1]!;
    const server = servers[1]!;
    await topo.removePod(victim);
    assert.ok(await waitForExit(server, WAIT_MS), 'the removed pod’s server is still running');
    assert.ok(!listNetns().includes(victim.netns));
    assert.ok(!node2!.pods.includes(victim));
    // The node still answers ARP for the shared gateway on the remaining pod veths.
    const still = await connect(node1!.pods[1]!, added.ip);
    assert.deepEqual(still.reply, { remote: node1!.pods[1]!.ip, local: added.ip });
    // The freed address is handed out again.
    const again = await topo.addPod(node2!);
    assert.equal(again.ip, victim.ip);
    assert.notEqual(again.netns, victim.netns);
    await startServer(again);
    const r2 = await connect(node1!.pods[0]!, again.ip);
    assert.deepEqual(r2.reply, { remote: node1!.pods[0]!.ip, local: again.ip });
  });

  test('a second topology in the same process gets distinct names and works alongside', async () => {
    const second = await createTopology({ nodes: 1, podsPerNode: 1 });
    try {
      assert.notEqual(second.tag, topo.tag);
      const mine = new Set(topo.namespaces);
      assert.ok(second.namespaces.every((n) => !mine.has(n)));
      // Same addresses, separate worlds.
      const [pod] = second.pods;
      assert.equal(pod!.ip, topo.nodes[0]!.pods[0]!.ip);
      const r = await second.run(pod!, 'ip', ['-o', '-4', 'addr', 'show', 'dev', 'eth0']);
      assert.match(r.stdout, /inet 10\.201\.1\.2\/32/);
    } finally {
      await second.destroy();
    }
    assert.deepEqual(
      listNetns().filter((n) => tagPattern(second.tag).test(n)),
      [],
    );
  });

  test('destroy kills every process inside, deletes every namespace and link, and is idempotent', async () => {
    const pod = topo.nodes[0]!.pods[0]!;
    // A process that escaped our process group (setsid) still dies: it lives in our namespace.
    const escaped = await topo.run(pod, 'sh', [
      '-c',
      'setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!',
    ]);
    const strayPid = Number(escaped.stdout.trim());
    assert.ok(strayPid > 0 && pidAlive(strayPid));
    const running = servers.filter((s) => s.exitCode === null && s.signalCode === null);
    assert.ok(running.length >= 4);

    const t0 = performance.now();
    await topo.destroy();
    console.log(`# destroy: ${(performance.now() - t0).toFixed(0)} ms`);
    await topo.destroy();
    assert.ok(topo.destroyed);
    assert.deepEqual(topo.namespaces, []);
    assert.ok(running.every((s) => s.exitCode !== null || s.signalCode !== null));
    assert.ok(await waitUntil(() => !pidAlive(strayPid), 2_000), `stray ${strayPid} survived`);

    const mounted = (await ip(['netns', 'list'])).split('\n').filter((l) => l.startsWith(`${topo.tag}-`));
    assert.deepEqual(mounted, []);
    const rootLinks = (await ip(['-o', 'link', 'show'])).split('\n');
    const ours = rootLinks.filter(
      (l) => l.includes(topo.tag) || /^\d+: (br0|ctl|node-\d+|pod-\d+-\d+)[@:]/.test(l),
    );
    assert.deepEqual(ours, []);
    assert.throws(() => topo.exec(pod, 'true'), /destroyed/);
  });
});

describe('cleanup outside the test', { skip: requireRoot() }, () => {
  // A child process that builds a topology and then waits to be killed.
  async function orphanTopology(): Promise<{ child: ChildProcess; tag: string }> {
    const script = `
      import { createTopology } from ${JSON.stringify(topologyModule)};
      const t = await createTopology({ nodes: 1, podsPerNode: 1 });
      console.log('tag ' + t.tag);
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'pipe' });
    const [, tag] = await waitForOutput(child, /tag (\S+)/, WAIT_MS);
    return { child, tag: tag! };
  }

  const mountedFor = (tag: string) => listNetns().filter((n) => tagPattern(tag).test(n));

  test('SIGTERM and SIGINT tear the topology down', async () => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      const { child, tag } = await orphanTopology();
      assert.equal(mountedFor(tag).length, 4);
      child.kill(signal);
      assert.ok(await waitForExit(child, WAIT_MS), `child ignored ${signal}`);
      assert.equal(child.signalCode, signal);
      assert.deepEqual(mountedFor(tag), [], `after ${signal}`);
    }
  });

  test('cleanupStale removes what a SIGKILLed run left behind', async () => {
    const { child, tag } = await orphanTopology();
    child.kill('SIGKILL');
    assert.ok(await waitForExit(child, WAIT_MS));
    assert.equal(mountedFor(tag).length, 4, 'SIGKILL leaves the namespaces behind');
    const removed = await cleanupStale();
    assert.deepEqual(
      removed.filter((n) => tagPattern(tag).test(n)).sort(),
      ['controller', 'hub', 'node-1', 'pod-1-1'].map((role) => `${tag}-${role}`),
    );
    assert.deepEqual(mountedFor(tag), []);
  });
});
