/**
 * The in-pod manager's pure decisions (src/ztunnel/inpod/pod-match.ts) and the pieces around them:
 * which workload a pod is (must-fix 4), which left-over rules to remove (must-fix 6), the scan's
 * choice of namespace (should-fix 3), and reading `ip -o addr`.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MeshState } from '../../../src/core/state/mesh-state.ts';
import type { Workload } from '../../../src/core/xds/model.ts';
import { netnsKey, scanOwners, type PinnedNetns } from '../../../src/ztunnel/inpod/netns-scan.ts';
import { decidePod, orphanVerdict, sameIp, type PodFacts } from '../../../src/ztunnel/inpod/pod-match.ts';
import { parseIpAddr } from '../../../src/ztunnel/inpod/redirect.ts';
import { routeOutbound } from '../../../src/ztunnel/proxy/route.ts';
import { service } from '../../fixtures/mesh-config.ts';
import { NODE, pod } from './inpod-fakes.ts';

const state = (...workloads: Workload[]) => new MeshState({ workloads, services: [], policies: [] });
const cni = (name: string, ips: string[], namespace = 'demo'): PodFacts => ({
  via: 'cni',
  namespace,
  name,
  ips,
});
const scanned = (name: string, ips: string[]): PodFacts => ({ via: 'scan', namespace: 'demo', name, ips });

test('must-fix 4: decidePod matches by namespace and name, on this node, with agreeing IPs', () => {
  const x = pod('pod-x', ['10.0.0.5']);
  const pending = pod('pod-p', []);
  const legacy = pod('legacy', ['10.0.0.9'], { tunnelProtocol: 'NONE' });
  const away = pod('away', ['10.0.1.1'], { node: 'node-2' });
  const s = state(x, pending, legacy, away);
  const cases: [string, PodFacts, string, RegExp | string][] = [
    ['same name and IP', cni('pod-x', ['10.0.0.5']), 'capture', 'demo/pod-x'],
    ["another pod with pod-x's IP", cni('pod-y', ['10.0.0.5'], 'other'), 'unknown', /no pod other\/pod-y/],
    [
      'pod-x with another IP',
      cni('pod-x', ['10.0.0.6']),
      'pending',
      /lists pod demo\/pod-x with IPs 10\.0\.0\.5/,
    ],
    ['scheduled, no IP in the config yet', cni('pod-p', ['10.0.0.7']), 'capture', 'demo/pod-p'],
    ['not in the mesh', cni('legacy', ['10.0.0.9']), 'out', /not in the mesh/],
    ['on another node', cni('away', ['10.0.1.1']), 'pending', /on node "node-2"/],
    ['scanned, still its IP', scanned('pod-x', ['10.0.0.5']), 'capture', 'demo/pod-x'],
    ['scanned, gone from the config', scanned('gone', ['10.0.0.8']), 'out', /no pod demo\/gone/],
    ['scanned, IP changed', scanned('pod-x', ['10.0.0.6']), 'out', /lists pod demo\/pod-x/],
  ];
  for (const [name, facts, kind, what] of cases) {
    const d = decidePod(s, NODE, facts);
    assert.equal(d.kind, kind, name);
    if (d.kind === 'capture') assert.equal(`${d.workload.namespace}/${d.workload.name}`, what, name);
    else assert.match(d.reason, what as RegExp, name);
  }
  // The pod's own IPs stand in while the config has none.
  const d = decidePod(s, NODE, cni('pod-p', ['10.0.0.7']));
  assert.ok(d.kind === 'capture');
  assert.deepEqual(d.workload.addresses, ['10.0.0.7']);
});

test("must-fix 6: orphanVerdict removes rules of this node's non-mesh pods, keeps mesh and other nodes' pods, is unsure of unknown IPs", () => {
  const s = state(
    pod('mesh', ['10.0.0.2']),
    pod('left', ['10.0.0.3'], { tunnelProtocol: 'NONE' }),
    pod('remote', ['10.0.1.2'], { node: 'node-2', tunnelProtocol: 'NONE' }),
  );
  const cases: [string[], string][] = [
    [['10.0.0.3'], 'remove'],
    [['10.0.0.2'], 'keep'],
    [['10.0.1.2'], 'keep'],
    [['10.0.0.3', '10.0.0.2'], 'keep'],
    [['10.0.9.9'], 'unknown'],
    [[], 'unknown'],
  ];
  for (const [ips, want] of cases) assert.equal(orphanVerdict(s, NODE, ips), want, ips.join(','));
});

test('sameIp compares addresses, not spellings', () => {
  assert.ok(sameIp('FD00::1', 'fd00:0::1'));
  assert.ok(!sameIp('10.0.0.1', '10.0.0.2'));
  assert.ok(!sameIp('x', 'x'));
});

test('parseIpAddr: addresses on interfaces other than loopback', () => {
  const text = [
    '1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever',
    '1: lo    inet 10.0.0.5/32 scope host lo\\       valid_lft forever preferred_lft forever',
    '1: lo    inet6 ::1/128 scope host \\       valid_lft forever preferred_lft forever',
    '3: eth0    inet 10.201.1.2/32 scope global eth0\\       valid_lft forever preferred_lft forever',
    '3: eth0    inet6 fd00::2/128 scope global \\       valid_lft forever preferred_lft forever',
    '4: veth1@if2    inet 10.9.9.9/24 scope global veth1',
  ].join('\n');
  assert.deepEqual(parseIpAddr(text), ['10.201.1.2', 'fd00::2', '10.9.9.9']);
});

test("should-fix 3: the scan pins before testing, tests through the pinned path, skips the agent's and the host's namespaces, and refuses shared or loopback-only IPs", async () => {
  const spaces: Record<string, { ino: number; bindable: string[]; onInterfaces: string[] }> = {
    '/proc/1/ns/net': { ino: 1, bindable: ['10.0.0.1'], onInterfaces: ['10.0.0.1'] },
    '/proc/2/ns/net': { ino: 2, bindable: ['10.0.0.2'], onInterfaces: ['10.0.0.2'] },
    '/var/run/netns/a': { ino: 3, bindable: ['10.0.0.3'], onInterfaces: ['10.0.0.3'] },
    '/var/run/netns/b': { ino: 4, bindable: ['10.0.0.3', '10.0.0.4'], onInterfaces: ['10.0.0.3'] },
    '/var/run/netns/c': {
      ino: 5,
      bindable: ['10.0.0.5', '10.0.0.6'],
      onInterfaces: ['10.0.0.5', '10.0.0.6'],
    },
  };
  const pinned = new Map<string, string>();
  const tested: string[] = [];
  const released: string[] = [];
  const r = await scanOwners(
    ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6'],
    () => false,
    {
      listNetns: () =>
        Promise.resolve(
          new Map(Object.entries(spaces).map(([p, s]) => [netnsKey({ dev: 1, ino: s.ino }), p])),
        ),
      excluded: () => new Set([netnsKey({ dev: 1, ino: 1 }), netnsKey({ dev: 1, ino: 2 })]),
      pinNetns: (path): PinnedNetns => {
        const pin = `/pin/${spaces[path]!.ino}`;
        pinned.set(pin, path);
        return { path: pin, id: { dev: 1, ino: spaces[path]!.ino }, release: () => released.push(pin) };
      },
      hasIp: (path, ip) => {
        tested.push(path);
        return spaces[pinned.get(path)!]!.bindable.includes(ip);
      },
      interfaceAddresses: (path) => Promise.resolve(spaces[pinned.get(path)!]!.onInterfaces),
    },
  );
  assert.ok(
    tested.every((p) => p.startsWith('/pin/')),
    'tested through an unpinned path',
  );
  assert.ok(
    !tested.includes('/pin/1') && !tested.includes('/pin/2'),
    "looked into the agent's or the host's namespace",
  );
  assert.deepEqual(
    [...r.owners].map(([ip, p]) => [ip, p.path]),
    [
      ['10.0.0.5', '/pin/5'],
      ['10.0.0.6', '/pin/5'],
    ],
  );
  assert.deepEqual([...r.ambiguous], [['10.0.0.3', ['/var/run/netns/a', '/var/run/netns/b']]]);
  // 10.0.0.4 is bindable in b only through loopback: not b's. The refused candidates are unpinned.
  assert.deepEqual(released.sort(), ['/pin/3', '/pin/4']);
});

test('address-less (scheduled, no IP yet) workloads are in the state but never a route target', () => {
  const pending = pod('pending', []);
  const s = new MeshState({
    workloads: [
      pod('client', ['10.0.0.2']),
      { ...pending, services: new Map([['demo/echo.demo.svc.cluster.local', new Map([[80, 8080]])]]) },
    ],
    services: [service({ name: 'echo', namespace: 'demo', vips: ['10.96.0.10'], ports: { 80: 8080 } })],
    policies: [],
  });
  assert.equal(s.workloadByUid(pending.uid)?.name, 'pending');
  const client = s.workloadByUid('Kubernetes//Pod/demo/client')!;
  const r = routeOutbound(s, client, { kind: 'ip', ip: '10.96.0.10', port: 80 });
  assert.equal(r.kind, 'unreachable');
});
