/**
 * Capture in pod network namespaces, end to end (issue 4): a 2-node "cluster" of network namespaces,
 * the controller in its own namespace reading Kubernetes YAML, one node agent per node namespace in
 * in-pod mode, the real `ambit-cni` plugin reporting pods, and applications that use ordinary sockets
 * with no proxy settings (lib/inpod-mesh.ts). Needs root; skips with the reason elsewhere.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { waitForExit, waitUntil } from './lib/child.ts';
import { InpodMesh, inpodSkipReason, POD_APP, VIP } from './lib/inpod-mesh.ts';
import type { TopologyPod } from './lib/topology.ts';

/** The agents' drain deadline in the test bed (CONNECTION_TERMINATION_DEADLINE in inpod-mesh.ts). */
const DRAIN_MS = 2000;

/** A pod-side program that opens one connection and keeps it, idle, until killed. */
const holdOpen = (host: string, port: number) =>
  `const s=require('net').connect(${port},'${host}',()=>console.log('connected'));` +
  `s.on('error',()=>{});s.on('close',()=>console.log('closed'));setInterval(()=>{},1e9)`;

/** Starts {@link holdOpen} in a pod; resolves once connected. */
async function idleConnection(mesh: InpodMesh, from: TopologyPod, host: string, port: number) {
  const child: ChildProcess = mesh.topo.exec(from, process.execPath, ['-e', holdOpen(host, port)]);
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  assert.ok(await waitUntil(() => out.includes('connected'), 10_000), `no connection from ${from.name}`);
  return { child, closed: () => out.includes('closed') };
}

/** Whether the process holds a file descriptor on the network namespace of `pod`. */
function holdsNetns(pid: number, pod: TopologyPod): boolean {
  const ns = statSync(pod.netnsPath);
  return readdirSync(`/proc/${pid}/fd`).some((fd) => {
    try {
      // stat follows the fd to what it is open on: for a namespace, its nsfs inode.
      const st = statSync(`/proc/${pid}/fd/${fd}`);
      return st.ino === ns.ino && st.dev === ns.dev;
    } catch {
      return false; // closed meanwhile
    }
  });
}

/** Rules and capture listeners in a pod, polled until `want` holds or 10 s pass. */
async function captureState(mesh: InpodMesh, p: TopologyPod, want: (rules: string, ss: string) => boolean) {
  let rules = '';
  let listeners = '';
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    rules = (await mesh.topo.run(p, 'iptables-save', [])).stdout;
    listeners = (await mesh.topo.run(p, 'ss', ['-ltnH'])).stdout;
    if (want(rules, listeners)) break;
    await new Promise((res) => setTimeout(res, 200));
  }
  return { rules, listeners };
}

describe('in-pod capture across two node namespaces', { skip: inpodSkipReason() }, () => {
  let mesh: InpodMesh;

  before(async () => {
    mesh = await InpodMesh.start();
  });

  after(async () => {
    await mesh?.close();
  });

  test('pod → Service VIP is captured, load-balanced over both nodes and tunnelled with the mesh.client identity', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const r = await mesh.whoami(mesh.client, VIP, 80);
      // The server's agent connects to the app from inside the server pod.
      assert.equal(r.peer, r.local);
      seen.add(r.local);
    }
    assert.deepEqual([...seen].sort(), [mesh.echoA.ip, mesh.echoB.ip].sort());
    const metrics = await mesh.http(mesh.echoB.node, `http://${mesh.echoB.node.ip}:15020/metrics`);
    assert.match(
      metrics.stdout,
      /istio_tcp_connections_opened_total\{reporter="destination",[^}]*source_principal="spiffe:\/\/cluster\.local\/ns\/demo\/sa\/client"[^}]*connection_security_policy="mutual_tls"[^}]*\} [1-9]/,
    );
  });

  test('pod → pod on the other node is captured; the server agent logs the mesh.client SPIFFE identity', async () => {
    const r = await mesh.whoami(mesh.client, mesh.echoB.ip, 8080);
    assert.equal(r.local, mesh.echoB.ip);
    const a = mesh.agents.get(mesh.echoB.node.name)!;
    assert.ok(
      await waitUntil(
        () =>
          a.output
            .split('\n')
            .some(
              (l) =>
                l.includes('"srcIdentity":"spiffe://cluster.local/ns/demo/sa/client"') &&
                l.includes(`${mesh.echoB.ip}:8080`),
            ),
        5000,
      ),
      'no access-log line with the mesh.client identity on node-2',
    );
  });

  test('out-of-mesh pods still work both ways: passthrough out, plaintext in (PERMISSIVE)', async () => {
    // Mesh mesh.client → mesh.legacy pod: captured, then plain TCP from inside the mesh.client pod.
    const out = await mesh.whoami(mesh.client, mesh.legacy.ip, 8080);
    assert.equal(out.peer, mesh.client.ip);
    // Legacy pod → mesh pod: arrives in plaintext, TPROXYed to the agent's 15006, delivered.
    const inbound = await mesh.whoami(mesh.legacy, mesh.echoA.ip, 8080);
    assert.equal(inbound.local, mesh.echoA.ip);
  });

  test('10,000 short connections and a 100 MiB transfer through the VIP lose nothing', async () => {
    const many = JSON.parse(
      await mesh.inPod(mesh.client, ['echo-many', VIP, '81', '10000', '50'], 240_000),
    ) as {
      ok: number;
      failed: number;
      firstError?: string;
    };
    assert.deepEqual(many, { ok: 10_000, failed: 0 });
    const sha = JSON.parse(
      await mesh.inPod(mesh.client, ['sha', VIP, '82', String(100 * 1024 * 1024)], 120_000),
    ) as {
      sent: string;
      got: string;
    };
    assert.equal(sha.got, sha.sent);
  });

  test('SIGTERM with idle captured connections open: the agent exits within the drain deadline, keeping the rules', async () => {
    const a = mesh.agents.get(mesh.client.node.name)!;
    // One outbound (client → VIP, through 15001) and one plaintext inbound (legacy → echo-a, 15006),
    // both idle: neither ends by itself.
    const outbound = await idleConnection(mesh, mesh.client, VIP, 81);
    const inbound = await idleConnection(mesh, mesh.legacy, mesh.echoA.ip, 8081);
    try {
      const started = Date.now();
      a.child.kill('SIGTERM');
      assert.ok(await waitForExit(a.child, 15_000), 'agent did not exit after SIGTERM');
      const tookMs = Date.now() - started;
      assert.ok(tookMs < DRAIN_MS + 3000, `agent took ${tookMs} ms to exit (drain deadline ${DRAIN_MS} ms)`);
      assert.ok(await waitUntil(() => outbound.closed() && inbound.closed(), 5000), 'connections not cut');
      for (const p of [mesh.client, mesh.echoA]) {
        const rules = await mesh.topo.run(p, 'iptables-save', []);
        assert.match(rules.stdout, /-j REDIRECT --to-ports 15001/, `rules of ${p.name} removed`);
      }
    } finally {
      outbound.child.kill();
      inbound.child.kill();
      mesh.startAgent(mesh.client.node);
      await mesh.waitReady(a);
    }
  });

  test('restarting an agent (SIGTERM) drains, keeps the rules, and the new agent adopts its pods by scanning', async () => {
    const a = mesh.agents.get(mesh.client.node.name)!;
    a.child.kill('SIGTERM');
    assert.ok(await waitForExit(a.child, 10_000), 'agent did not exit after SIGTERM');
    assert.match(a.output, /"msg":"shut down"/);
    // Rules stay while the agent is away: the pod's connections are refused, not sent around the mesh.
    const rules = await mesh.topo.run(mesh.client, 'iptables-save', []);
    assert.match(rules.stdout, /-j REDIRECT --to-ports 15001/);
    const down = await mesh.topo.run(mesh.client, process.execPath, [POD_APP, 'whoami', VIP, '80'], {
      timeoutMs: 30_000,
    });
    assert.notEqual(down.code, 0);
    // The new agent gets no CNI replay: it must find both node-1 pods by scanning.
    mesh.startAgent(mesh.client.node);
    await mesh.waitReady(a);
    assert.match(a.output.slice(a.output.lastIndexOf('--- agent started ---')), /"adopted":true/);
    const r = await mesh.whoami(mesh.client, VIP, 80);
    assert.ok([mesh.echoA.ip, mesh.echoB.ip].includes(r.local));
  });

  test('STRICT PeerAuthentication refuses plaintext into the namespace; mesh traffic still flows', async () => {
    await mesh.writeMesh(`---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: default, namespace: demo }
spec: { mtls: { mode: STRICT } }
`);
    let refused = false;
    const deadline = Date.now() + 10_000;
    while (!refused && Date.now() < deadline) {
      const r = await mesh.topo.run(
        mesh.legacy,
        process.execPath,
        [POD_APP, 'whoami', mesh.echoA.ip, '8080'],
        {
          timeoutMs: 30_000,
        },
      );
      refused = r.code !== 0;
      if (!refused) await new Promise((res) => setTimeout(res, 200));
    }
    assert.ok(refused, 'plaintext into a STRICT namespace was still accepted');
    assert.equal((await mesh.whoami(mesh.client, mesh.echoA.ip, 8080)).local, mesh.echoA.ip);
  });

  test('deleting a pod removes its rules and listeners', async () => {
    // As Kubernetes does it: the pod object goes (the mesh config drops it) and the runtime runs DEL.
    await mesh.writeMesh('', 'echo-a');
    const r = await mesh.cni('DEL', mesh.echoA, 'echo-a', 'demo');
    assert.equal(r.code, 0);
    assert.equal(r.out, '');
    let rules = '';
    let listeners = '';
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      rules = (await mesh.topo.run(mesh.echoA, 'iptables-save', [])).stdout;
      listeners = (await mesh.topo.run(mesh.echoA, 'ss', ['-ltnH'])).stdout;
      if (!rules.includes('AMBIT') && !/:1500[168]\b/.test(listeners)) break;
      await new Promise((res) => setTimeout(res, 200));
    }
    assert.doesNotMatch(rules, /AMBIT/);
    assert.doesNotMatch(listeners, /:1500[168]\b/);
    // The application itself still listens.
    assert.match(listeners, /:8080\b/);
  });

  test('a pod whose ADD comes before the mesh config has its IP is captured by the time ADD returns', async () => {
    const node = mesh.client.node;
    const fresh = await mesh.topo.addPod(node);
    const podYaml = (ip: string | undefined) => `---
apiVersion: v1
kind: ServiceAccount
metadata: { name: fresh, namespace: demo }
---
apiVersion: v1
kind: Pod
metadata: { name: fresh, namespace: demo, labels: { app: fresh } }
spec:
  nodeName: ${node.name}
  serviceAccountName: fresh
  containers: [{ name: app, image: app }]
status: ${ip ? `{ phase: Running, podIP: ${ip} }` : '{ phase: Pending }'}
`;
    // Scheduled, sandbox being created: the Pod has no IP yet (echo-a stays deleted).
    await mesh.writeMesh(podYaml(undefined), 'echo-a');
    const r = await mesh.cni('ADD', fresh, 'fresh', 'demo');
    assert.equal(r.code, 0, r.out);
    // Captured before its first packet: rules and listeners are there as ADD returns.
    const rules = (await mesh.topo.run(fresh, 'iptables-save', [])).stdout;
    const listeners = (await mesh.topo.run(fresh, 'ss', ['-ltnH'])).stdout;
    assert.match(rules, /-j REDIRECT --to-ports 15001/);
    for (const port of [15001, 15006, 15008]) assert.match(listeners, new RegExp(`:${port}\\b`));
    // Its connections reach the mesh, with its own identity, while the config still has no IP for it.
    const who = await mesh.whoami(fresh, VIP, 80);
    assert.equal(who.local, mesh.echoB.ip);
    assert.equal(who.peer, who.local);
    const b = mesh.agents.get(mesh.echoB.node.name)!;
    assert.ok(
      await waitUntil(
        () => b.output.includes('"srcIdentity":"spiffe://cluster.local/ns/demo/sa/fresh"'),
        5000,
      ),
      'no access-log line with the fresh pod identity on node-2',
    );
    // The kubelet then reports the IP; the agent changes nothing for the captured pod.
    const a = mesh.agents.get(node.name)!;
    const captures = () =>
      a.output
        .split('\n')
        .filter((l) => l.includes('"pod":"demo/fresh"') && l.includes('"msg":"pod captured"')).length;
    assert.equal(captures(), 1);
    await mesh.writeMesh(podYaml(fresh.ip), 'echo-a');
    await new Promise((res) => setTimeout(res, 1500));
    assert.equal(captures(), 1);
    assert.equal((await mesh.whoami(fresh, VIP, 80)).local, mesh.echoB.ip);
  });

  test('a pod leaving the mesh: capture stops, and the application sees its captured connections end', async () => {
    const idle = await idleConnection(mesh, mesh.client, VIP, 81);
    try {
      // Labelled out of the mesh; resolves once its rules and HBONE listener are gone.
      await mesh.setCaptured(['client'], false);
      // Cut while its address translation still held: the FIN reached the application.
      assert.ok(await waitUntil(() => idle.closed(), 5000), 'the captured connection never ended');
      const { listeners } = await captureState(mesh, mesh.client, (_r, ss) => !/:1500[168]\b/.test(ss));
      assert.doesNotMatch(listeners, /:1500[168]\b/);
      // New connections go direct (plaintext into the meshed echo-b, which its agent lets in).
      assert.equal((await mesh.whoami(mesh.client, mesh.echoB.ip, 8080)).local, mesh.echoB.ip);
    } finally {
      idle.child.kill();
    }
  });

  test('a CNI DEL of a pod the agent found by scanning releases its listeners, rules and namespace', async () => {
    // echo-b was never reported by the CNI: node-2's agent found it by scanning.
    const b = mesh.agents.get(mesh.echoB.node.name)!;
    assert.match(b.output, /"pod":"demo\/echo-b"[^\n]*"msg":"pod found by scanning"/);
    assert.ok(holdsNetns(b.child.pid!, mesh.echoB), "the agent does not hold echo-b's namespace");
    const r = await mesh.cni('DEL', mesh.echoB, 'echo-b', 'demo');
    assert.equal(r.code, 0);
    // The main CNI plugin, called after ours on DEL, takes the pod's interface and address away.
    await mesh.topo.run(mesh.echoB, 'ip', ['addr', 'del', `${mesh.echoB.ip}/32`, 'dev', 'eth0']);
    const { rules, listeners } = await captureState(
      mesh,
      mesh.echoB,
      (rules, ss) => !rules.includes('AMBIT') && !/:1500[168]\b/.test(ss),
    );
    assert.doesNotMatch(rules, /AMBIT/);
    assert.doesNotMatch(listeners, /:1500[168]\b/);
    assert.match(listeners, /:8080\b/);
    assert.ok(
      await waitUntil(() => !holdsNetns(b.child.pid!, mesh.echoB), 5000),
      "the agent still holds echo-b's namespace",
    );
    // Removing the rules of a pod with no IPv6 went without a hitch (no table 133 to flush there).
    assert.doesNotMatch(b.output, /rules not removed/);
  });
});
