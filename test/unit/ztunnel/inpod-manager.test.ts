/**
 * The in-pod manager (src/ztunnel/inpod/manager.ts) over fake namespaces, rules, listeners, clock and
 * certificates (inpod-fakes.ts). Each test is named after the review finding it covers.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ErrorCode } from '../../../src/core/errors.ts';
import { CniErrorCode } from '../../../src/ztunnel/inpod/cni-protocol.ts';
import {
  DEFAULT_CNI_ADD_TIMEOUT_MS,
  RECHECK_INTERVAL_MS,
  RETRY_MS,
  SCAN_MIN_INTERVAL_MS,
  SWEEP_INTERVAL_MS,
} from '../../../src/ztunnel/inpod/manager.ts';
import { FakeNode, pod, settle } from './inpod-fakes.ts';

const codeOf = (r: { stdout: string }) => (JSON.parse(r.stdout) as { code: number }).code;

// ---- must fix 1: ADD, DEL and capture serialised; a capture re-checks its pod after every wait

test('must-fix 1: a CNI DEL while the capture waits for its certificate: no listeners in the deleted pod, its rules removed, its pin released', async () => {
  const n = new FakeNode();
  n.certsReady = false;
  const a = n.addNetns('pod-a', ['10.0.0.2']);
  n.setWorkloads([pod('pod-a', ['10.0.0.2'])]);
  const add = n.cni('ADD', a, 'pod-a', ['10.0.0.2']);
  await settle();
  assert.deepEqual(
    n.log.filter((l) => !l.startsWith('scan')),
    ['install pod-a', 'cert spiffe://cluster.local/ns/demo/sa/sa-pod-a'],
  );
  // The DEL does not wait behind the certificate.
  assert.equal((await n.cni('DEL', a, 'pod-a', [])).exitCode, 0);
  assert.equal(a.rules, false);
  assert.equal(n.pinsOf(a), 0);
  // A new pod comes (in real life it may get the pin's fd number), then the certificate arrives.
  const b = n.addNetns('pod-b', ['10.0.0.3']);
  n.setWorkloads([pod('pod-b', ['10.0.0.3'])]);
  const addB = n.cni('ADD', b, 'pod-b', ['10.0.0.3']);
  await settle();
  n.answerCerts();
  assert.equal((await add).exitCode, 0);
  assert.equal((await addB).exitCode, 0);
  await n.manager.settled();
  // Only pod-b got listeners, in its own namespace, as itself.
  assert.deepEqual(
    n.log.filter((l) => l.startsWith('listen')),
    ['listen pod-b as demo/pod-b 10.0.0.3'],
  );
  assert.deepEqual(
    n.manager.describe().map((d) => d.pod),
    ['demo/pod-b'],
  );
});

test('must-fix 1: a reconcile step never acts on a pod an earlier step dropped', async () => {
  const n = new FakeNode();
  const a = n.addNetns('pod-a', ['10.0.0.2']);
  n.setWorkloads([pod('pod-a', ['10.0.0.2'])]);
  assert.equal((await n.cni('ADD', a, 'pod-a', ['10.0.0.2'])).exitCode, 0);
  // Config change and DEL race: the DEL is queued after the reconcile, and each runs whole.
  n.setWorkloads([]);
  const del = n.cni('DEL', a, 'pod-a', []);
  await del;
  await n.manager.settled();
  assert.equal(a.rules, false);
  assert.equal(n.pinsOf(a), 0);
  assert.deepEqual(n.manager.describe(), []);
});

// ---- must fix 2: listeners of a pod that leaves close at once, after its rules are gone

test('must-fix 2: a pod that leaves the mesh loses its rules first, then its listeners with deadline 0, without holding up other pods', async () => {
  const n = new FakeNode();
  const a = n.addNetns('pod-a', ['10.0.0.2']);
  const b = n.addNetns('pod-b', ['10.0.0.3']);
  n.setWorkloads([pod('pod-a', ['10.0.0.2'])]);
  await n.cni('ADD', a, 'pod-a', ['10.0.0.2']);
  const proxyA = n.proxies[0]!;
  let drained!: () => void;
  proxyA.hold = new Promise((r) => (drained = r)); // an idle connection that never ends by itself
  n.log.length = 0;
  n.setWorkloads([pod('pod-a', ['10.0.0.2'], { tunnelProtocol: 'NONE' }), pod('pod-b', ['10.0.0.3'])]);
  // pod-b's capture goes ahead while pod-a's listeners are still closing.
  assert.equal((await n.cni('ADD', b, 'pod-b', ['10.0.0.3'])).exitCode, 0);
  // Capture stops, the listeners close (cutting connections while their NAT still holds), the rest
  // of the rules go.
  assert.deepEqual(n.log.slice(0, 3), ['unhook pod-a', 'close-listeners pod-a 0', 'remove pod-a']);
  assert.ok(n.log.includes('listen pod-b as demo/pod-b 10.0.0.3'));
  assert.equal(proxyA.closedWith, 0);
  assert.deepEqual(n.pooledClosed, ['10.0.0.2']); // should-fix 1: its pooled tunnels go too
  drained();
  await n.manager.settled();
});

test('must-fix 2: shutdown drains listeners with the deadline and keeps the rules', async () => {
  const n = new FakeNode();
  const a = n.addNetns('pod-a', ['10.0.0.2']);
  n.setWorkloads([pod('pod-a', ['10.0.0.2'])]);
  await n.cni('ADD', a, 'pod-a', ['10.0.0.2']);
  await n.manager.close(2000);
  assert.equal(n.proxies[0]!.closedWith, 2000);
  assert.equal(a.rules, true);
  assert.equal(n.pinsOf(a), 0);
  const late = await n.cni('ADD', a, 'pod-a', ['10.0.0.2']);
  assert.equal(codeOf(late), CniErrorCode.TryAgainLater);
});

// ---- must fix 3: a new pod is captured before its ADD is answered

test('must-fix 3: ADD waits for a pod the mesh config does not know yet, then installs rules before the certificate and opens listeners before answering', async () => {
  const n = new FakeNode();
  const a = n.addNetns('pod-a', ['10.0.0.2']);
  let answered = false;
  const add = n.cni('ADD', a, 'pod-a', ['10.0.0.2']).then((r) => ((answered = true), r));
  await n.clock.advance(1000);
  assert.equal(answered, false);
  assert.deepEqual(n.log, []);
  // The controller sends the pod as soon as it is scheduled: no IP yet.
  n.setWorkloads([pod('pod-a', [])]);
  const r = await add;
  assert.equal(r.exitCode, 0);
  assert.deepEqual(JSON.parse(r.stdout), {
    cniVersion: '1.0.0',
    ips: [{ address: '10.0.0.2/32' }],
  });
  assert.deepEqual(n.log, [
    'install pod-a',
    'cert spiffe://cluster.local/ns/demo/sa/sa-pod-a',
    'listen pod-a as demo/pod-a 10.0.0.2',
  ]);
  assert.deepEqual(n.manager.pending(), []);
  // The IP arriving later changes nothing for the captured pod.
  n.log.length = 0;
  n.setWorkloads([pod('pod-a', ['10.0.0.2'], { canonicalRevision: 'v2' })]);
  await n.manager.settled();
  assert.deepEqual(n.log, []);
});

test('must-fix 3: ADD for a pod the mesh config never gets answers CNI error 11 after AMBIT_CNI_ADD_TIMEOUT, keeping nothing', async () => {
  const n = new FakeNode({ cniAddTimeoutMs: 3000 });
  const a = n.addNetns('pod-a', ['10.0.0.2']);
  const add = n.cni('ADD', a, 'pod-a', ['10.0.0.2']);
  await n.clock.advance(2999);
  await n.clock.advance(1);
  const r = await add;
  assert.equal(r.exitCode, 1);
  const err = JSON.parse(r.stdout) as { code: number; msg: string };
  assert.equal(err.code, CniErrorCode.TryAgainLater);
  assert.match(err.msg, /the mesh config has no pod demo\/pod-a on node node-1 yet/);
  assert.equal(n.pinsOf(a), 0);
  assert.deepEqual(n.manager.describe(), []);
});

test('must-fix 3: the default ADD wait is 5 s', async () => {
  const n = new FakeNode();
  const add = n.cni('ADD', n.addNetns('pod-a', ['10.0.0.2']), 'pod-a', ['10.0.0.2']);
  let done = false;
  void add.then(() => (done = true));
  await n.clock.advance(DEFAULT_CNI_ADD_TIMEOUT_MS - 1);
  assert.equal(done, false);
  await n.clock.advance(1);
  assert.equal(codeOf(await add), CniErrorCode.TryAgainLater);
});

test('must-fix 3: ADD for a pod outside the mesh succeeds at once, with no rules', async () => {
  const n = new FakeNode();
  const a = n.addNetns('legacy', ['10.0.0.9']);
  n.setWorkloads([pod('legacy', ['10.0.0.9'], { namespace: 'legacy', tunnelProtocol: 'NONE' })]);
  const r = await n.cni('ADD', a, 'legacy', ['10.0.0.9'], { namespace: 'legacy' });
  assert.equal(r.exitCode, 0);
  assert.equal(a.rules, false);
  assert.deepEqual(n.log, []);
  // Still followed: if its namespace joins the mesh, it is captured.
  n.setWorkloads([pod('legacy', ['10.0.0.9'], { namespace: 'legacy' })]);
  await n.manager.settled();
  assert.equal(a.rules, true);
  assert.equal(n.proxies.length, 1);
});

test('must-fix 3: with the CA down, ADD still answers (after the wait) with the rules in place; listeners follow the certificate', async () => {
  const n = new FakeNode();
  n.certsReady = false;
  const a = n.addNetns('pod-a', ['10.0.0.2']);
  n.setWorkloads([pod('pod-a', [])]);
  const add = n.cni('ADD', a, 'pod-a', ['10.0.0.2']);
  await settle();
  await n.clock.advance(DEFAULT_CNI_ADD_TIMEOUT_MS);
  const r = await add;
  assert.equal(r.exitCode, 0);
  assert.equal(a.rules, true); // connections refused, not uncaptured
  assert.equal(n.proxies.length, 0);
  assert.deepEqual(n.manager.pending(), ['pod demo/pod-a: listeners starting']);
  n.answerCerts();
  await n.manager.settled();
  assert.equal(n.proxies.length, 1);
  assert.deepEqual(n.manager.pending(), []);
});

// ---- must fix 4: identity by namespace/name, never by IP alone

test('must-fix 4: an ADD for other/pod-y with an IP the config still lists for demo/pod-x does not capture pod-y as pod-x', async () => {
  const n = new FakeNode({ cniAddTimeoutMs: 1000 });
  const y = n.addNetns('pod-y', ['10.0.0.5']);
  n.setWorkloads([pod('pod-x', ['10.0.0.5'], { serviceAccount: 'admin' })]);
  const add = n.cni('ADD', y, 'pod-y', ['10.0.0.5'], { namespace: 'other' });
  await n.clock.advance(1000);
  assert.equal(codeOf(await add), CniErrorCode.TryAgainLater);
  assert.equal(n.proxies.length, 0);
  assert.equal(y.rules, false);
});

test('must-fix 4: a pod whose config entry has other IPs or another node stays pending, with the reason', async () => {
  const n = new FakeNode({ cniAddTimeoutMs: 1000 });
  const y = n.addNetns('pod-y', ['10.0.0.5']);
  n.setWorkloads([pod('pod-y', ['10.0.0.99'])]);
  const add = n.cni('ADD', y, 'pod-y', ['10.0.0.5']);
  await n.clock.advance(1000);
  const r = JSON.parse((await add).stdout) as { code: number; msg: string };
  assert.equal(r.code, CniErrorCode.TryAgainLater);
  assert.match(
    r.msg,
    /lists pod demo\/pod-y with IPs 10\.0\.0\.99, but its network namespace has 10\.0\.0\.5/,
  );
  // A pod known (ADDed as out of the mesh) that later shows up on another node: pending, with why.
  const z = n.addNetns('pod-z', ['10.0.0.6']);
  n.setWorkloads([pod('pod-z', ['10.0.0.6'], { tunnelProtocol: 'NONE' })]);
  await n.cni('ADD', z, 'pod-z', ['10.0.0.6']);
  n.setWorkloads([pod('pod-z', ['10.0.0.6'], { node: 'node-2' })]);
  await n.manager.settled();
  assert.deepEqual(n.manager.pending(), [
    'pod demo/pod-z: the mesh config places pod demo/pod-z on node "node-2", not on this node "node-1"',
  ]);
  assert.equal(n.proxies.length, 0);
});

test('must-fix 4: readiness names a mesh pod whose IP the CNI reported for another pod', async () => {
  const n = new FakeNode();
  const y = n.addNetns('pod-y', ['10.0.0.5']);
  n.setWorkloads([pod('pod-y', ['10.0.0.5'], { namespace: 'other', tunnelProtocol: 'NONE' })]);
  await n.cni('ADD', y, 'pod-y', ['10.0.0.5'], { namespace: 'other' });
  n.setWorkloads([
    pod('pod-y', ['10.0.0.5'], { namespace: 'other', tunnelProtocol: 'NONE' }),
    pod('pod-x', ['10.0.0.5']),
  ]);
  await n.manager.settled();
  assert.deepEqual(n.manager.pending(), [
    'pod demo/pod-x: its IP is that of pod other/pod-y as the CNI reported it; not captured until they agree',
  ]);
  assert.equal(n.proxies.length, 0);
});

// ---- must fix 5: a capture that fails half-way is cleaned up

test('must-fix 5: rules left by a capture that failed part-way are removed when the pod leaves the mesh', async () => {
  const n = new FakeNode();
  const a = n.addNetns('pod-a', ['10.0.0.2', 'fd00::2']);
  n.setWorkloads([pod('pod-a', ['10.0.0.2', 'fd00::2'], { tunnelProtocol: 'NONE' })]);
  await n.cni('ADD', a, 'pod-a', ['10.0.0.2', 'fd00::2']);
  a.failInstall = true; // v4 goes in, then ip6tables-restore fails
  n.setWorkloads([pod('pod-a', ['10.0.0.2', 'fd00::2'])]);
  await n.manager.settled();
  assert.equal(a.rules, true);
  assert.match(n.manager.pending()[0]!, /pod demo\/pod-a: ip6tables-restore failed/);
  // Retried after RETRY_MS.
  n.log.length = 0;
  await n.clock.advance(RETRY_MS);
  await n.manager.settled();
  assert.deepEqual(n.log, ['install pod-a']);
  n.setWorkloads([pod('pod-a', ['10.0.0.2', 'fd00::2'], { tunnelProtocol: 'NONE' })]);
  await n.manager.settled();
  assert.equal(a.rules, false);
});

test('must-fix 5: an ADD whose rules fail part-way answers an error and leaves no rules and no pin', async () => {
  const n = new FakeNode();
  const a = n.addNetns('pod-a', ['10.0.0.2'], { failInstall: true });
  n.setWorkloads([pod('pod-a', [])]);
  const r = await n.cni('ADD', a, 'pod-a', ['10.0.0.2']);
  assert.equal(codeOf(r), CniErrorCode.CaptureFailed);
  assert.equal(a.rules, false);
  assert.equal(n.pinsOf(a), 0);
});

// ---- must fix 6: rules orphaned while the agent was down

test("must-fix 6: once the config is synced, rules in pods not in the mesh are removed; mesh pods and other nodes' pods are left; unknown ones on a second look", async () => {
  const n = new FakeNode();
  n.synced = false;
  const left = n.addNetns('left-mesh', ['10.0.0.7'], { rules: true });
  const other = n.addNetns('other-node', ['10.0.9.9'], { rules: true });
  const unknown = n.addNetns('unknown', ['10.0.0.8'], { rules: true });
  const mine = n.addNetns('mine', ['10.0.0.2'], { rules: true });
  const workloads = [
    pod('left-mesh', ['10.0.0.7'], { tunnelProtocol: 'NONE' }),
    pod('other-node', ['10.0.9.9'], { node: 'node-2' }),
    pod('mine', ['10.0.0.2']),
  ];
  n.setWorkloads(workloads);
  await n.manager.settled();
  assert.equal(left.rules, true, 'nothing is removed before the first full config');
  n.synced = true;
  n.setWorkloads(workloads);
  await n.manager.settled();
  assert.equal(left.rules, false);
  assert.equal(other.rules, true);
  assert.equal(unknown.rules, true);
  assert.equal(mine.rules, true); // adopted by the scan instead
  assert.ok(n.manager.describe().some((d) => d.pod === 'demo/mine' && d.via === 'scan'));
  await n.clock.advance(SWEEP_INTERVAL_MS);
  await n.manager.settled();
  assert.equal(unknown.rules, false);
  assert.equal(other.rules, true);
  assert.equal(mine.rules, true);
  assert.equal([...n.pins.values()].length, 1); // only the adopted pod is pinned
});

// ---- must fix 7: pods found by scanning and the CNI DEL

test('must-fix 7: a CNI DEL of a pod found by scanning matches it by its namespace and releases listeners and pin', async () => {
  const n = new FakeNode();
  const c = n.addNetns('pod-c', ['10.0.0.4']);
  n.setWorkloads([pod('pod-c', ['10.0.0.4'])]);
  await n.manager.settled();
  assert.deepEqual(
    n.manager.describe().map((d) => [d.pod, d.via, d.captured]),
    [['demo/pod-c', 'scan', true]],
  );
  assert.equal((await n.cni('DEL', c, 'pod-c', [])).exitCode, 0);
  assert.deepEqual(n.manager.describe(), []);
  assert.equal(n.proxies[0]!.closedWith, 0);
  assert.equal(c.rules, false);
  assert.equal(n.pinsOf(c), 0);
});

test('must-fix 7: a DEL by name reaches a scanned pod only once its namespace is gone; a live one is kept', async () => {
  const n = new FakeNode();
  const c = n.addNetns('pod-c', ['10.0.0.4']);
  n.setWorkloads([pod('pod-c', ['10.0.0.4'])]);
  await n.manager.settled();
  // An old sandbox of the same pod is garbage-collected: its namespace is long gone.
  await n.cni('DEL', 'old-sandbox', 'pod-c', [], { containerId: 'old' });
  assert.equal(n.manager.describe().length, 1);
  c.alive = false; // the runtime removed the pod's namespace; only our pin holds it
  await n.cni('DEL', 'pod-c', 'pod-c', [], { containerId: 'whatever' });
  assert.deepEqual(n.manager.describe(), []);
  assert.equal(n.pinsOf(c), 0);
});

test('must-fix 7: pods whose namespace is gone, or no longer owns their IP, are dropped by the periodic check', async () => {
  const n = new FakeNode();
  const c = n.addNetns('pod-c', ['10.0.0.4']);
  const d = n.addNetns('pod-d', ['10.0.0.5']);
  n.setWorkloads([pod('pod-c', ['10.0.0.4']), pod('pod-d', ['10.0.0.5'])]);
  await n.manager.settled();
  assert.equal(n.manager.describe().length, 2);
  c.alive = false;
  d.ips = [];
  await n.clock.advance(RECHECK_INTERVAL_MS);
  await n.manager.settled();
  assert.deepEqual(n.manager.describe(), []);
  assert.equal(n.pins.size, 0);
});

// ---- should fix 2: no silent host-network dial

test('should-fix 2: dialling from a pod the agent does not capture is an error, not a connection from the node', async () => {
  const n = new FakeNode();
  assert.throws(
    () => n.manager.dial('10.0.0.9', 80, { pod: '10.0.0.77' }),
    (err: { code?: string }) => err.code === ErrorCode.UpstreamConnectFailed,
  );
  assert.throws(() => n.manager.dial('10.0.0.9', 80, {}), /no captured pod/);
  // Known but not captured (out of the mesh): still refused.
  const a = n.addNetns('legacy', ['10.0.0.9']);
  n.setWorkloads([pod('legacy', ['10.0.0.9'], { tunnelProtocol: 'NONE' })]);
  await n.cni('ADD', a, 'legacy', ['10.0.0.9']);
  assert.throws(() => n.manager.dial('10.0.0.1', 80, { pod: '10.0.0.9' }), /no captured pod/);
});

// ---- should fix 3 and 4: the scan

test('should-fix 3: the scan refuses an IP two namespaces own, and one carried only by loopback', async () => {
  const n = new FakeNode();
  const a = n.addNetns('twin-1', ['10.0.0.4']);
  const b = n.addNetns('twin-2', ['10.0.0.4']);
  const lo = n.addNetns('lo-only', [], { loIps: ['10.0.0.5'] });
  n.setWorkloads([pod('pod-c', ['10.0.0.4']), pod('pod-d', ['10.0.0.5'])]);
  await n.manager.settled();
  assert.deepEqual(n.manager.describe(), []);
  assert.equal(n.pinsOf(a) + n.pinsOf(b) + n.pinsOf(lo), 0);
  assert.equal(a.rules || b.rules || lo.rules, false);
});

test('should-fix 4: scans back off while they find nothing, and start over when other pods go missing', async () => {
  const n = new FakeNode();
  n.setWorkloads([pod('pod-c', ['10.0.0.4'])]);
  await n.manager.settled();
  const scans = () => n.log.filter((l) => l.startsWith('scan')).length;
  assert.equal(scans(), 1);
  await n.clock.advance(SCAN_MIN_INTERVAL_MS);
  await n.manager.settled();
  assert.equal(scans(), 1, 'the second scan waits twice as long');
  await n.clock.advance(SCAN_MIN_INTERVAL_MS);
  await n.manager.settled();
  assert.equal(scans(), 2);
  await n.clock.advance(4 * SCAN_MIN_INTERVAL_MS - 1);
  await n.manager.settled();
  assert.equal(scans(), 2);
  await n.clock.advance(1);
  await n.manager.settled();
  assert.equal(scans(), 3);
  n.setWorkloads([pod('pod-c', ['10.0.0.4']), pod('pod-d', ['10.0.0.5'])]);
  await n.manager.settled();
  assert.equal(scans(), 4, 'a newly missing pod is looked for at once');
  n.addNetns('pod-d', ['10.0.0.5']);
  await n.clock.advance(2 * SCAN_MIN_INTERVAL_MS);
  await n.manager.settled();
  assert.ok(n.manager.describe().some((d) => d.pod === 'demo/pod-d' && d.captured === true));
});
