/**
 * Capture in pod network namespaces, end to end (issue 4): a 2-node "cluster" of network namespaces,
 * the controller in its own namespace reading Kubernetes YAML, one node agent per node namespace in
 * in-pod mode, the real `ambit-cni` plugin reporting pods, and applications that use ordinary sockets
 * with no proxy settings (lib/inpod-mesh.ts). Needs root; skips with the reason elsewhere.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { waitForExit, waitUntil } from './lib/child.ts';
import { InpodMesh, inpodSkipReason, POD_APP, VIP } from './lib/inpod-mesh.ts';

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
});
