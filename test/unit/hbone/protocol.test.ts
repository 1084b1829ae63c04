import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  formatBaggage,
  formatForwarded,
  formatHostPort,
  formatTraceparent,
  isValidTraceparent,
  parseAuthority,
  parseBaggage,
  parseForwardedHost,
  poolKey,
  type Authority,
  type BaggageFields,
} from '../../../src/core/hbone/protocol.ts';

const goodAuthorities: { raw: string; authority: Authority }[] = [
  { raw: '10.0.1.5:8080', authority: { kind: 'ip', ip: '10.0.1.5', port: 8080 } },
  { raw: '127.0.0.1:1', authority: { kind: 'ip', ip: '127.0.0.1', port: 1 } },
  { raw: '0.0.0.0:65535', authority: { kind: 'ip', ip: '0.0.0.0', port: 65535 } },
  { raw: '[fd00::1]:8080', authority: { kind: 'ip', ip: 'fd00::1', port: 8080 } },
  { raw: '[::1]:15008', authority: { kind: 'ip', ip: '::1', port: 15008 } },
  { raw: '[::ffff:10.0.0.1]:80', authority: { kind: 'ip', ip: '::ffff:10.0.0.1', port: 80 } },
  {
    raw: 'reviews.default.svc.cluster.local:9080',
    authority: { kind: 'hostname', hostname: 'reviews.default.svc.cluster.local', port: 9080 },
  },
  { raw: 'localhost:80', authority: { kind: 'hostname', hostname: 'localhost', port: 80 } },
  { raw: 'Example.COM:443', authority: { kind: 'hostname', hostname: 'example.com', port: 443 } },
  { raw: 'a-b.c1:8', authority: { kind: 'hostname', hostname: 'a-b.c1', port: 8 } },
  { raw: '10.0.1.5:080', authority: { kind: 'ip', ip: '10.0.1.5', port: 80 } },
];

for (const { raw, authority } of goodAuthorities) {
  test(`parseAuthority accepts ${raw}`, () => {
    assert.deepEqual(parseAuthority(raw), { ok: true, authority });
  });
}

const badAuthorities: { name: string; raw: string | undefined; error: RegExp }[] = [
  { name: 'undefined', raw: undefined, error: /missing :authority/ },
  { name: 'empty', raw: '', error: /missing :authority/ },
  { name: 'IPv4 without port', raw: '10.0.1.5', error: /has no port/ },
  { name: 'hostname without port', raw: 'example.com', error: /has no port/ },
  { name: 'port only', raw: ':8080', error: /has no port/ },
  { name: 'empty port', raw: '10.0.1.5:', error: /bad port/ },
  { name: 'port 0', raw: '10.0.1.5:0', error: /port out of range/ },
  { name: 'port 65536', raw: '10.0.1.5:65536', error: /port out of range/ },
  { name: 'port 99999', raw: 'example.com:99999', error: /port out of range/ },
  { name: 'six-digit port', raw: '10.0.1.5:100000', error: /bad port/ },
  { name: 'negative port', raw: '10.0.1.5:-1', error: /bad port/ },
  { name: 'signed port', raw: '10.0.1.5:+80', error: /bad port/ },
  { name: 'named port', raw: 'example.com:http', error: /bad port/ },
  { name: 'unbracketed IPv6', raw: 'fd00::1:8080', error: /needs brackets/ },
  { name: 'unbracketed ::1', raw: '::1:80', error: /needs brackets/ },
  { name: 'bracketed IPv6 without port', raw: '[fd00::1]', error: /bad authority/ },
  { name: 'unclosed bracket', raw: '[fd00::1:80', error: /bad authority/ },
  { name: 'junk after bracket', raw: '[fd00::1]x80', error: /bad authority/ },
  { name: 'bracketed IPv6 with empty port', raw: '[fd00::1]:', error: /bad port/ },
  { name: 'bracketed IPv6, port 0', raw: '[fd00::1]:0', error: /port out of range/ },
  { name: 'bracketed IPv4', raw: '[10.0.0.1]:80', error: /bad IPv6 address/ },
  { name: 'bracketed hostname', raw: '[example.com]:80', error: /bad IPv6 address/ },
  { name: 'underscore in hostname', raw: 'a_b.example:80', error: /bad host/ },
  { name: 'label starting with a dash', raw: '-a.example:80', error: /bad host/ },
  { name: 'empty label', raw: 'a..b:80', error: /bad host/ },
  { name: 'space', raw: 'a b:80', error: /bad host/ },
  { name: 'userinfo', raw: 'user@host:80', error: /bad host/ },
  { name: 'URL', raw: 'http://host:80', error: /needs brackets|bad/ },
  { name: '64-character label', raw: `${'a'.repeat(64)}.example:80`, error: /bad host/ },
];

for (const { name, raw, error } of badAuthorities) {
  test(`parseAuthority rejects ${name}: ${JSON.stringify(raw)}`, () => {
    const r = parseAuthority(raw);
    assert.equal(r.ok, false);
    assert.match((r as { error: string }).error, error);
  });
}

const hostPorts: { host: string; port: number; want: string }[] = [
  { host: '10.0.0.1', port: 80, want: '10.0.0.1:80' },
  { host: 'fd00::1', port: 15008, want: '[fd00::1]:15008' },
  { host: '::', port: 1, want: '[::]:1' },
  { host: 'example.com', port: 443, want: 'example.com:443' },
];

for (const { host, port, want } of hostPorts) {
  test(`formatHostPort(${host}, ${port}) is ${want} and parses back`, () => {
    assert.equal(formatHostPort(host, port), want);
    const r = parseAuthority(want);
    assert.ok(r.ok);
    assert.equal(r.authority.port, port);
    assert.equal(r.authority.kind === 'ip' ? r.authority.ip : r.authority.hostname, host);
  });
}

const baggageCases: { name: string; fields: BaggageFields; header: string }[] = [
  { name: 'empty', fields: {}, header: '' },
  {
    name: 'all fields',
    fields: {
      cluster: 'Kubernetes',
      namespace: 'default',
      workloadType: 'deployment',
      workloadName: 'productpage-v1',
      service: 'productpage',
      version: 'v1',
      region: 'eu-west-1',
      zone: 'eu-west-1a',
    },
    header:
      'k8s.cluster.name=Kubernetes,k8s.namespace.name=default,k8s.deployment.name=productpage-v1,' +
      'service.name=productpage,service.version=v1,cloud.region=eu-west-1,cloud.availability_zone=eu-west-1a',
  },
  {
    name: 'a pod without telemetry labels',
    fields: { namespace: 'ns1', workloadType: 'pod', workloadName: 'p' },
    header: 'k8s.namespace.name=ns1,k8s.pod.name=p',
  },
  { name: 'cronjob', fields: { workloadType: 'cronjob', workloadName: 'c' }, header: 'k8s.cronjob.name=c' },
  { name: 'job', fields: { workloadType: 'job', workloadName: 'j' }, header: 'k8s.job.name=j' },
];

for (const { name, fields, header } of baggageCases) {
  test(`formatBaggage: ${name}`, () => {
    assert.equal(formatBaggage(fields), header);
  });
  test(`parseBaggage(formatBaggage(x)) round-trips: ${name}`, () => {
    assert.deepEqual(parseBaggage(formatBaggage(fields)), fields);
  });
}

test('formatBaggage omits empty values and a workload type without a name', () => {
  assert.equal(
    formatBaggage({ cluster: '', namespace: 'default', workloadType: 'deployment', service: '' }),
    'k8s.namespace.name=default',
  );
});

const junkBaggage: { name: string; header: string | undefined; want: BaggageFields }[] = [
  { name: 'undefined', header: undefined, want: {} },
  { name: 'empty', header: '', want: {} },
  { name: 'entry without =', header: 'garbage,k8s.namespace.name=ns', want: { namespace: 'ns' } },
  { name: 'entry with empty key', header: '=x,service.name=s', want: { service: 's' } },
  { name: 'empty value', header: 'k8s.namespace.name=,service.name=s', want: { service: 's' } },
  { name: 'unknown keys', header: 'foo=bar,userid=42,service.version=v2', want: { version: 'v2' } },
  {
    name: 'unknown workload type',
    header: 'k8s.replicaset.name=rs-1,k8s.statefulset.name=ss',
    want: {},
  },
  {
    name: 'whitespace and W3C properties',
    header: ' k8s.cluster.name = c1 ;prop=1 , cloud.region=r;x',
    want: { cluster: 'c1', region: 'r' },
  },
  {
    name: 'the last workload entry wins',
    header: 'k8s.deployment.name=a,k8s.job.name=b',
    want: { workloadType: 'job', workloadName: 'b' },
  },
];

for (const { name, header, want } of junkBaggage) {
  test(`parseBaggage ignores junk: ${name}`, () => {
    assert.deepEqual(parseBaggage(header), want);
  });
}

const forwardedCases: {
  name: string;
  ip: string;
  port: number;
  host: string | undefined;
  header: string;
}[] = [
  { name: 'IPv4 with service', ip: '10.0.0.1', port: 43210, host: 'a.ns.svc.cluster.local', header: '' },
  { name: 'IPv6 with service', ip: 'fd00::1', port: 5, host: 'a.ns.svc.cluster.local', header: '' },
  { name: 'no service', ip: '10.0.0.1', port: 1, host: undefined, header: '' },
].map((c) => ({
  ...c,
  header: `for="${formatHostPort(c.ip, c.port)}"${c.host ? `;host=${c.host}` : ''}`,
}));

for (const { name, ip, port, host, header } of forwardedCases) {
  test(`formatForwarded / parseForwardedHost: ${name}`, () => {
    assert.equal(formatForwarded(ip, port, host), header);
    assert.equal(parseForwardedHost(formatForwarded(ip, port, host)), host);
  });
}

test('formatForwarded brackets an IPv6 client', () => {
  assert.equal(formatForwarded('fd00::1', 5, 'h'), 'for="[fd00::1]:5";host=h');
});

const forwardedHosts: { header: string | undefined; host: string | undefined }[] = [
  { header: undefined, host: undefined },
  { header: '', host: undefined },
  { header: 'for="10.0.0.1:5"', host: undefined },
  { header: 'for="10.0.0.1:5";host="quoted.example"', host: 'quoted.example' },
  { header: 'for=1.2.3.4;Host=Mixed.Case;proto=http', host: 'Mixed.Case' },
  { header: 'for=a, for=b;host=second.example', host: 'second.example' },
  { header: 'for=a;host=', host: undefined },
  { header: 'for="host=evil"', host: undefined },
];

for (const { header, host } of forwardedHosts) {
  test(`parseForwardedHost(${JSON.stringify(header)}) is ${String(host)}`, () => {
    assert.equal(parseForwardedHost(header), host);
  });
}

test('formatTraceparent uses the first 24 bytes as trace id and span id', () => {
  const bytes = Uint8Array.from({ length: 24 }, (_, i) => i + 1);
  const tp = formatTraceparent(bytes);
  assert.equal(tp, '00-0102030405060708090a0b0c0d0e0f10-1112131415161718-00');
  assert.equal(isValidTraceparent(tp), true);
});

test('formatTraceparent ignores bytes after the 24th', () => {
  const bytes = new Uint8Array(32).fill(0xab);
  assert.equal(formatTraceparent(bytes), formatTraceparent(bytes.subarray(0, 24)));
});

test('formatTraceparent throws RangeError on fewer than 24 bytes', () => {
  assert.throws(() => formatTraceparent(new Uint8Array(23)), RangeError);
});

test('formatTraceparent of random bytes is valid', () => {
  for (let i = 0; i < 20; i++) {
    const tp = formatTraceparent(crypto.getRandomValues(new Uint8Array(24)));
    assert.equal(isValidTraceparent(tp), true, tp);
  }
});

const traceparents: { value: string | undefined; valid: boolean }[] = [
  { value: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', valid: true },
  { value: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00', valid: true },
  { value: undefined, valid: false },
  { value: '', valid: false },
  { value: formatTraceparent(new Uint8Array(24)), valid: false },
  { value: '00-00000000000000000000000000000000-00f067aa0ba902b7-01', valid: false },
  { value: '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', valid: false },
  { value: '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', valid: false },
  { value: '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01', valid: false },
  { value: '00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01', valid: false },
  { value: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1', valid: false },
  { value: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra', valid: false },
];

for (const { value, valid } of traceparents) {
  test(`isValidTraceparent(${JSON.stringify(value)}) is ${valid}`, () => {
    assert.equal(isValidTraceparent(value), valid);
  });
}

const src = 'spiffe://cluster.local/ns/default/sa/curl';
const dstA = 'spiffe://cluster.local/ns/default/sa/reviews';
const dstB = 'spiffe://cluster.local/ns/default/sa/reviews-extra';

test('poolKey does not depend on the order of the expected identities', () => {
  assert.equal(
    poolKey(src, '10.0.0.1', [dstA, dstB], '10.0.0.9:15008'),
    poolKey(src, '10.0.0.1', [dstB, dstA], '10.0.0.9:15008'),
  );
});

test('poolKey does not reorder the caller’s array', () => {
  const ids = [dstB, dstA];
  poolKey(src, '10.0.0.1', ids, '10.0.0.9:15008');
  assert.deepEqual(ids, [dstB, dstA]);
});

const base = { srcIdentity: src, srcIp: '10.0.0.1', dstIdentities: [dstA], dst: '10.0.0.9:15008' };
const variants: { name: string; change: Partial<typeof base> }[] = [
  { name: 'source identity', change: { srcIdentity: 'spiffe://cluster.local/ns/default/sa/other' } },
  { name: 'source IP', change: { srcIp: '10.0.0.2' } },
  { name: 'an extra expected identity', change: { dstIdentities: [dstA, dstB] } },
  { name: 'a different expected identity', change: { dstIdentities: [dstB] } },
  { name: 'no expected identity', change: { dstIdentities: [] } },
  { name: 'destination port', change: { dst: '10.0.0.9:15009' } },
  { name: 'destination IP', change: { dst: '10.0.0.8:15008' } },
];

for (const { name, change } of variants) {
  test(`poolKey differs when the ${name} differs`, () => {
    const a = { ...base };
    const b = { ...base, ...change };
    assert.notEqual(
      poolKey(a.srcIdentity, a.srcIp, a.dstIdentities, a.dst),
      poolKey(b.srcIdentity, b.srcIp, b.dstIdentities, b.dst),
    );
  });
}
