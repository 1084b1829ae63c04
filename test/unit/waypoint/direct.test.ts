/**
 * Workload waypoints (issue 5), the waypoint's pure parts: protocol sniffing of a tunnel's first
 * bytes (sniff.ts), admission of tunnels addressed to a workload's IP (inbound.ts), and the
 * ORIGINAL_DST cluster's picker (original-dst.ts).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HboneStatus } from '../../../src/core/hbone/protocol.ts';
import { MeshState } from '../../../src/core/state/mesh-state.ts';
import type { Cluster, L7Listener } from '../../../src/core/xds/l7-model.ts';
import { directResourceName } from '../../../src/core/xds/l7-names.ts';
import type { GatewayAddress, Service, Workload } from '../../../src/core/xds/model.ts';
import { admitTunnel, type SelfFacts } from '../../../src/waypoint/inbound.ts';
import { L7State } from '../../../src/waypoint/l7-state.ts';
import { OriginalDstPicker } from '../../../src/waypoint/original-dst.ts';
import { MAX_REQUEST_LINE_BYTES, sniffProtocol, type Sniffed } from '../../../src/waypoint/sniff.ts';
import { cluster } from './l7-builders.ts';

describe('sniffing the first bytes of a workload tunnel', () => {
  const cases: [string, string | Buffer, Sniffed][] = [
    ['nothing yet', '', 'more'],
    ['an HTTP/1.1 request line', 'GET /productpage HTTP/1.1\r\nhost: x\r\n\r\n', 'http1'],
    ['HTTP/1.0', 'POST /a?b=c HTTP/1.0\r\n', 'http1'],
    ['a bare LF ends the line', 'GET / HTTP/1.1\n', 'http1'],
    ['an extension method', 'PURGE /cache HTTP/1.1\r\n', 'http1'],
    ['an absolute-form target', 'GET http://10.0.0.7:8080/x HTTP/1.1\r\n', 'http1'],
    ['a method still arriving', 'GE', 'more'],
    ['the target still arriving', 'GET /produ', 'more'],
    ['the version still arriving', 'GET / HTTP/1.', 'more'],
    ['CR before its LF', 'GET / HTTP/1.1\r', 'more'],
    ['the h2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00', 'h2'],
    ['part of the h2 preface', 'PRI * HTTP/2.0\r\n', 'more'],
    ['"PRI" alone could begin either', 'PRI', 'more'],
    ['HTTP/2.0 as a request line', 'GET / HTTP/2.0\r\n', 'tcp'],
    ['a TLS ClientHello', Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]), 'tcp'],
    ['a text protocol line', 'hello over tcp\n', 'tcp'],
    ['a line with no version', 'GET /\r\n', 'tcp'],
    ['two spaces after the method', 'GET  / HTTP/1.1\r\n', 'tcp'],
    ['a control character in the target', 'GET /\x01 HTTP/1.1\r\n', 'tcp'],
    ['a leading space', ' GET / HTTP/1.1\r\n', 'tcp'],
    ['a binary first byte', Buffer.from([0x00, 0x01]), 'tcp'],
    ['a request line too long to be one', `GET /${'a'.repeat(MAX_REQUEST_LINE_BYTES)}`, 'tcp'],
    ['a token too long to be a method', 'A'.repeat(MAX_REQUEST_LINE_BYTES + 1), 'tcp'],
  ];
  for (const [name, bytes, expected] of cases)
    test(name, () => {
      const b = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
      assert.equal(sniffProtocol(b), expected);
      // Byte by byte, no prefix ever contradicts the final answer ('more' until it is known).
      for (let i = 1; i < b.length; i++) {
        const partial = sniffProtocol(b.subarray(0, i));
        assert.ok(partial === 'more' || partial === expected, `${i} bytes: ${partial}`);
      }
    });
});

// ---------- admission ----------

const TD = 'cluster.local';
const SELF: SelfFacts = { namespace: 'default', gatewayName: 'waypoint', instanceIp: '10.0.9.1' };
const waypointRef = (ns: string, name: string): GatewayAddress => ({
  destination: { kind: 'hostname', namespace: ns, hostname: `${name}.${ns}.svc.cluster.local` },
  hboneMtlsPort: 15008,
});

function workload(name: string, ip: string, p: Partial<Workload> = {}): Workload {
  return {
    uid: `Kubernetes//Pod/default/${name}`,
    name,
    namespace: 'default',
    addresses: [ip],
    hostname: '',
    network: '',
    tunnelProtocol: 'HBONE',
    trustDomain: TD,
    serviceAccount: name,
    waypoint: undefined,
    node: 'node-1',
    canonicalName: name,
    canonicalRevision: 'v1',
    workloadType: 'pod',
    workloadName: name,
    services: new Map(),
    authorizationPolicies: [],
    healthy: true,
    clusterId: 'Kubernetes',
    capacity: 1,
    ...p,
  };
}

const SERVICE: Service = {
  name: 'productpage',
  namespace: 'default',
  hostname: 'productpage.default.svc.cluster.local',
  vips: [{ network: '', address: '10.96.0.9' }],
  ports: new Map([[9080, 9080]]),
  subjectAltNames: [],
  waypoint: undefined,
};

const STATE = new MeshState({
  workloads: [
    workload('curl', '10.0.1.2'),
    workload('bound', '10.0.1.3', { waypoint: waypointRef('default', 'waypoint') }),
    workload('elsewhere', '10.0.1.4', { waypoint: waypointRef('other', 'waypoint') }),
    workload('unbound', '10.0.1.5'),
  ],
  services: [SERVICE],
  policies: [],
});

const HTTP_NAME = directResourceName('default', 'waypoint', 'direct-http');
const TCP_NAME = directResourceName('default', 'waypoint', 'direct-tcp');
const listener = (name: string, tcp: boolean): L7Listener => ({
  name,
  routeConfigName: tcp ? '' : name,
  httpFilters: [],
  ...(tcp
    ? {
        tcp: [{ cluster: 'waypoint/default/waypoint/encap', weight: 1 }],
        tcpProxy: { idleTimeoutMs: undefined, maxConnectAttempts: 1, hashSourceIp: false },
      }
    : {}),
});
const DIRECT = new Map([
  [HTTP_NAME, listener(HTTP_NAME, false)],
  [TCP_NAME, listener(TCP_NAME, true)],
]);

describe('admitting a tunnel to a workload IP', () => {
  const admit = (ip: string, port: number, listeners: ReadonlyMap<string, L7Listener> = DIRECT) =>
    admitTunnel(STATE, (n) => listeners.get(n), SELF, {
      authority: { kind: 'ip', ip, port },
      peerIdentity: { trustDomain: TD, namespace: 'default', serviceAccount: 'curl' },
      remoteAddress: '10.0.1.2',
      remotePort: 40000,
      forwarded: undefined,
    });
  const cases: [string, () => ReturnType<typeof admit>, number | 'direct', RegExp?][] = [
    ['a pod bound to this waypoint', () => admit('10.0.1.3', 8080), 'direct'],
    ['a pod bound to another waypoint', () => admit('10.0.1.4', 8080), HboneStatus.BadRequest, /other/],
    ['a pod bound to no waypoint', () => admit('10.0.1.5', 8080), HboneStatus.BadRequest, /no waypoint/],
    [
      'no workload and no service',
      () => admit('10.0.1.99', 8080),
      HboneStatus.Unavailable,
      /no service or workload/,
    ],
    ['the HBONE port of a bound pod', () => admit('10.0.1.3', 15008), HboneStatus.Unavailable, /reserved/],
    [
      'no direct listeners (a service-only waypoint)',
      () => admit('10.0.1.3', 8080, new Map()),
      HboneStatus.Unavailable,
      /waypoint-for/,
    ],
  ];
  for (const [name, run, expected, reason] of cases)
    test(name, () => {
      const a = run();
      if (expected === 'direct') {
        assert.ok(a.ok && a.direct, JSON.stringify(a));
        assert.equal(a.direct.http.name, HTTP_NAME);
        assert.equal(a.direct.tcp.name, TCP_NAME);
        assert.equal(a.context.service, undefined);
        assert.equal(a.context.listenerName, HTTP_NAME);
        assert.deepEqual(a.context.originalDestination, { address: '10.0.1.3', port: 8080 });
        assert.equal(a.context.port, 8080);
        assert.equal(a.context.srcWorkload?.name, 'curl');
        return;
      }
      assert.ok(!a.ok);
      assert.equal(a.status, expected);
      assert.match(a.reason, reason!);
    });
  test('a service VIP is still served as a service', () => {
    const a = admitTunnel(
      STATE,
      () => listener('x', false),
      { ...SELF },
      {
        authority: { kind: 'ip', ip: '10.96.0.9', port: 9080 },
        peerIdentity: { trustDomain: TD, namespace: 'default', serviceAccount: 'curl' },
        remoteAddress: '10.0.1.2',
        remotePort: 40000,
        forwarded: undefined,
      },
    );
    // productpage has no waypoint: refused as a service, not taken as a workload.
    assert.ok(!a.ok && /service default\/productpage/.test(a.reason));
  });
});

// ---------- the ORIGINAL_DST picker ----------

describe('the ORIGINAL_DST cluster picks each tunnel’s own destination', () => {
  const encap: Cluster = cluster({
    name: 'waypoint/default/waypoint/encap',
    edsServiceName: 'waypoint/default/waypoint/encap',
    originalDst: { cleanupIntervalMs: 5000 },
  });
  const clock = {
    now: 0,
    nowMs() {
      return this.now;
    },
  };

  test('picks are the destination, hosts appear on use and share the breakers', () => {
    const p = new OriginalDstPicker(encap, { clock, random: () => 0.5 });
    assert.deepEqual(p.pick(), { ok: false, reason: 'no-healthy-upstream' });
    const a = p.forDestination({ address: '10.0.1.3', port: 8080 });
    const b = p.forDestination({ address: '10.0.1.4', port: 9000 });
    for (let i = 0; i < 3; i++) {
      const pa = a.pick();
      const pb = b.pick();
      assert.ok(pa.ok && pb.ok);
      assert.equal(pa.host.key, '10.0.1.3:8080');
      assert.equal(pb.host.key, '10.0.1.4:9000');
    }
    assert.deepEqual(
      p
        .hosts()
        .map((h) => h.key)
        .sort(),
      ['10.0.1.3:8080', '10.0.1.4:9000'],
    );
    const slot = a.tryAcquire('requests');
    assert.ok(slot.ok);
    assert.equal(p.usage().requests, 1, 'cluster-wide circuit breakers');
    slot.release();
  });

  test('a host unused for a cleanup interval, with nothing in flight, is forgotten', () => {
    const p = new OriginalDstPicker(encap, { clock, random: () => 0.5 });
    clock.now = 0;
    const busy = p.forDestination({ address: '10.0.1.3', port: 8080 });
    const end = busy.startRequest('10.0.1.3:8080');
    p.forDestination({ address: '10.0.1.4', port: 9000 });
    clock.now = 6000;
    p.forDestination({ address: '10.0.1.5', port: 80 });
    assert.deepEqual(
      p
        .hosts()
        .map((h) => h.key)
        .sort(),
      ['10.0.1.3:8080', '10.0.1.5:80'],
      'the idle one went, the busy one stayed',
    );
    end();
    clock.now = 12_000;
    p.forDestination({ address: '10.0.1.5', port: 80 });
    assert.deepEqual(
      p.hosts().map((h) => h.key),
      ['10.0.1.5:80'],
    );
  });

  test('L7State hands the view for a destination, and forgets no host on endpoint updates', () => {
    const l7 = new L7State({ clock, random: () => 0.5 });
    l7.replace('cluster', new Map([[encap.name, encap]]));
    const pick = l7.picker(encap.name, { address: '10.0.1.3', port: 8080 })!.pick();
    assert.ok(pick.ok && pick.host.key === '10.0.1.3:8080');
    l7.replace('cluster-load-assignment', new Map());
    assert.deepEqual(
      l7
        .picker(encap.name)!
        .hosts()
        .map((h) => h.key),
      ['10.0.1.3:8080'],
    );
    assert.ok(l7.endpointKeys().has('10.0.1.3:8080'), 'upstream pools for it are kept');
    const dumped = (l7.dump().clusters as { name: string; loadAssignment: string }[]).find(
      (c) => c.name === encap.name,
    );
    assert.match(dumped?.loadAssignment ?? '', /original destination/);
  });
});
