import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  formatReply,
  methodSelection,
  NO_ACCEPTABLE_METHOD,
  parseGreeting,
  parseRequest,
  SocksReply,
  type SocksTarget,
} from '../../../src/ztunnel/proxy/socks5-protocol.ts';

const bytes = (...parts: (number | string | ArrayLike<number>)[]): Uint8Array =>
  Uint8Array.from(
    parts.flatMap((p) =>
      typeof p === 'number'
        ? [p]
        : typeof p === 'string'
          ? Array.from(Buffer.from(p, 'latin1'))
          : Array.from(p),
    ),
  );

const greetings: { name: string; msg: Uint8Array; noAuthOffered: boolean }[] = [
  { name: 'no-auth only', msg: bytes(5, 1, 0), noAuthOffered: true },
  { name: 'user/pass then no-auth', msg: bytes(5, 2, 2, 0), noAuthOffered: true },
  { name: 'GSSAPI and user/pass', msg: bytes(5, 2, 1, 2), noAuthOffered: false },
  { name: 'user/pass only', msg: bytes(5, 1, 2), noAuthOffered: false },
];

for (const { name, msg, noAuthOffered } of greetings) {
  test(`parseGreeting: ${name}`, () => {
    assert.deepEqual(parseGreeting(msg), { kind: 'ok', consumed: msg.length, noAuthOffered });
  });
  test(`parseGreeting: ${name} — every truncation needs more`, () => {
    for (let n = 0; n < msg.length; n++) {
      assert.deepEqual(parseGreeting(msg.subarray(0, n)), { kind: 'more' }, `${n} bytes`);
    }
  });
  test(`parseGreeting: ${name} — trailing request bytes are not consumed`, () => {
    const withRequest = bytes(msg, 5, 1, 0, 1);
    const r = parseGreeting(withRequest);
    assert.equal(r.kind, 'ok');
    assert.equal((r as { consumed: number }).consumed, msg.length);
  });
}

const badGreetings: { name: string; msg: Uint8Array; reason: RegExp }[] = [
  { name: 'SOCKS4', msg: bytes(4, 1, 0, 80, 1, 2, 3, 4, 0), reason: /not SOCKS5 \(version byte 4\)/ },
  { name: 'HTTP', msg: bytes('GET / HTTP/1.1\r\n'), reason: /not SOCKS5/ },
  { name: 'no methods', msg: bytes(5, 0), reason: /offers no methods/ },
];

for (const { name, msg, reason } of badGreetings) {
  test(`parseGreeting rejects ${name}`, () => {
    const r = parseGreeting(msg);
    assert.equal(r.kind, 'error');
    assert.match((r as { reason: string }).reason, reason);
    assert.equal((r as { reply: unknown }).reply, undefined);
  });
}

const requests: { name: string; msg: Uint8Array; target: SocksTarget }[] = [
  {
    name: 'IPv4',
    msg: bytes(5, 1, 0, 1, [10, 0, 1, 5], [0x1f, 0x90]),
    target: { kind: 'ip', ip: '10.0.1.5', port: 8080 },
  },
  {
    name: 'IPv4 port 65535',
    msg: bytes(5, 1, 0, 1, [255, 255, 255, 255], [0xff, 0xff]),
    target: { kind: 'ip', ip: '255.255.255.255', port: 65535 },
  },
  {
    name: 'IPv4 port 1',
    msg: bytes(5, 1, 0, 1, [0, 0, 0, 0], [0, 1]),
    target: { kind: 'ip', ip: '0.0.0.0', port: 1 },
  },
  {
    name: 'IPv6 ::1',
    msg: bytes(5, 1, 0, 4, [...Array<number>(15).fill(0), 1], [0, 80]),
    target: { kind: 'ip', ip: '::1', port: 80 },
  },
  {
    name: 'IPv6 fd00::1:2',
    msg: bytes(5, 1, 0, 4, [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2], [0x3a, 0x98]),
    target: { kind: 'ip', ip: 'fd00::1:2', port: 15000 },
  },
  {
    name: 'IPv6 all zeros',
    msg: bytes(5, 1, 0, 4, Array<number>(16).fill(0), [0, 80]),
    target: { kind: 'ip', ip: '::', port: 80 },
  },
  {
    name: 'IPv6 trailing zeros',
    msg: bytes(5, 1, 0, 4, [0xfe, 0x80, ...Array<number>(14).fill(0)], [0, 80]),
    target: { kind: 'ip', ip: 'fe80::', port: 80 },
  },
  {
    name: 'IPv6 without zero groups',
    msg: bytes(5, 1, 0, 4, [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6], [0, 80]),
    target: { kind: 'ip', ip: '2001:db8:1:2:3:4:5:6', port: 80 },
  },
  {
    name: 'IPv6 single zero group is not compressed (RFC 5952 §4.2.2)',
    msg: bytes(5, 1, 0, 4, [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1], [0, 80]),
    target: { kind: 'ip', ip: '2001:db8:0:1:1:1:1:1', port: 80 },
  },
  {
    name: 'IPv6 longest zero run compressed, first on a tie (RFC 5952 §4.2.3)',
    msg: bytes(5, 1, 0, 4, [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1], [0, 80]),
    target: { kind: 'ip', ip: '2001:db8::1:0:0:1', port: 80 },
  },
  {
    name: 'IPv6 the longer zero run wins',
    msg: bytes(5, 1, 0, 4, [0x20, 0x01, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], [0, 80]),
    target: { kind: 'ip', ip: '2001:0:1::1', port: 80 },
  },
  {
    name: 'IPv6 hex is lower case without leading zeros',
    msg: bytes(5, 1, 0, 4, [0xab, 0xcd, 0x00, 0x0f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff], [0, 80]),
    target: { kind: 'ip', ip: 'abcd:f::ffff', port: 80 },
  },
  {
    name: 'IPv4-mapped IPv6 is an IPv4 destination',
    msg: bytes(5, 1, 0, 4, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3], [0, 80]),
    target: { kind: 'ip', ip: '10.1.2.3', port: 80 },
  },
  {
    name: 'domain',
    msg: bytes(5, 1, 0, 3, 33, 'reviews.default.svc.cluster.local', [0x23, 0x78]),
    target: { kind: 'hostname', hostname: 'reviews.default.svc.cluster.local', port: 9080 },
  },
  {
    name: 'one-character domain',
    msg: bytes(5, 1, 0, 3, 1, 'a', [0, 80]),
    target: { kind: 'hostname', hostname: 'a', port: 80 },
  },
  {
    name: '255-character domain',
    msg: bytes(5, 1, 0, 3, 255, 'a'.repeat(255), [0, 80]),
    target: { kind: 'hostname', hostname: 'a'.repeat(255), port: 80 },
  },
];

for (const { name, msg, target } of requests) {
  test(`parseRequest: ${name}`, () => {
    assert.deepEqual(parseRequest(msg), { kind: 'ok', consumed: msg.length, target });
  });
  test(`parseRequest: ${name} — every truncation needs more`, () => {
    for (let n = 0; n < msg.length; n++) {
      assert.deepEqual(parseRequest(msg.subarray(0, n)), { kind: 'more' }, `${n} of ${msg.length} bytes`);
    }
  });
  test(`parseRequest: ${name} — early application data is not consumed`, () => {
    const r = parseRequest(bytes(msg, 'GET /'));
    assert.deepEqual(r, { kind: 'ok', consumed: msg.length, target });
  });
}

const badRequests: { name: string; msg: Uint8Array; reply: SocksReply; reason: RegExp }[] = [
  {
    name: 'wrong version',
    msg: bytes(4, 1, 0, 1, [10, 0, 0, 1], [0, 80]),
    reply: SocksReply.GeneralFailure,
    reason: /bad request version 4/,
  },
  {
    name: 'BIND',
    msg: bytes(5, 2, 0, 1, [10, 0, 0, 1], [0, 80]),
    reply: SocksReply.CommandNotSupported,
    reason: /command 2 is not CONNECT/,
  },
  {
    name: 'UDP ASSOCIATE',
    msg: bytes(5, 3, 0, 1, [10, 0, 0, 1], [0, 80]),
    reply: SocksReply.CommandNotSupported,
    reason: /command 3/,
  },
  {
    name: 'command 0',
    msg: bytes(5, 0, 0, 1, [10, 0, 0, 1], [0, 80]),
    reply: SocksReply.CommandNotSupported,
    reason: /command 0/,
  },
  {
    name: 'non-CONNECT reported before the address is complete',
    msg: bytes(5, 2, 0, 1),
    reply: SocksReply.CommandNotSupported,
    reason: /not CONNECT/,
  },
  {
    name: 'ATYP 2',
    msg: bytes(5, 1, 0, 2, [10, 0, 0, 1], [0, 80]),
    reply: SocksReply.AddressTypeNotSupported,
    reason: /address type 2/,
  },
  {
    name: 'ATYP 0',
    msg: bytes(5, 1, 0, 0),
    reply: SocksReply.AddressTypeNotSupported,
    reason: /address type 0/,
  },
  {
    name: 'ATYP 255',
    msg: bytes(5, 1, 0, 255),
    reply: SocksReply.AddressTypeNotSupported,
    reason: /address type 255/,
  },
  {
    name: 'empty domain',
    msg: bytes(5, 1, 0, 3, 0, [0, 80]),
    reply: SocksReply.HostUnreachable,
    reason: /empty domain/,
  },
  {
    name: 'empty domain, port not yet sent',
    msg: bytes(5, 1, 0, 3, 0),
    reply: SocksReply.HostUnreachable,
    reason: /empty domain/,
  },
  {
    name: 'domain with a space',
    msg: bytes(5, 1, 0, 3, 3, 'a b', [0, 80]),
    reply: SocksReply.HostUnreachable,
    reason: /invalid characters/,
  },
  {
    name: 'domain with a NUL',
    msg: bytes(5, 1, 0, 3, 3, [0x61, 0, 0x62], [0, 80]),
    reply: SocksReply.HostUnreachable,
    reason: /invalid characters/,
  },
  {
    name: 'domain with a colon',
    msg: bytes(5, 1, 0, 3, 6, 'a.b:80', [0, 80]),
    reply: SocksReply.HostUnreachable,
    reason: /invalid characters/,
  },
  {
    name: 'IPv4 port 0',
    msg: bytes(5, 1, 0, 1, [10, 0, 0, 1], [0, 0]),
    reply: SocksReply.HostUnreachable,
    reason: /port 0/,
  },
  {
    name: 'IPv6 port 0',
    msg: bytes(5, 1, 0, 4, Array<number>(16).fill(1), [0, 0]),
    reply: SocksReply.HostUnreachable,
    reason: /port 0/,
  },
  {
    name: 'domain port 0',
    msg: bytes(5, 1, 0, 3, 1, 'a', [0, 0]),
    reply: SocksReply.HostUnreachable,
    reason: /port 0/,
  },
];

for (const { name, msg, reply, reason } of badRequests) {
  test(`parseRequest rejects ${name} with reply ${reply}`, () => {
    const r = parseRequest(msg);
    assert.equal(r.kind, 'error');
    assert.equal((r as { reply: unknown }).reply, reply);
    assert.match((r as { reason: string }).reason, reason);
  });
}

test('methodSelection: no-auth accepted', () => {
  assert.deepEqual([...methodSelection(true)], [5, 0]);
});

test('methodSelection: no acceptable method', () => {
  assert.deepEqual([...methodSelection(false)], [5, 0xff]);
  assert.equal(NO_ACCEPTABLE_METHOD, 0xff);
});

const replyCodes: { name: string; code: SocksReply; byte: number }[] = [
  { name: 'Succeeded', code: SocksReply.Succeeded, byte: 0 },
  { name: 'GeneralFailure', code: SocksReply.GeneralFailure, byte: 1 },
  { name: 'NotAllowed', code: SocksReply.NotAllowed, byte: 2 },
  { name: 'NetworkUnreachable', code: SocksReply.NetworkUnreachable, byte: 3 },
  { name: 'HostUnreachable', code: SocksReply.HostUnreachable, byte: 4 },
  { name: 'ConnectionRefused', code: SocksReply.ConnectionRefused, byte: 5 },
  { name: 'TtlExpired', code: SocksReply.TtlExpired, byte: 6 },
  { name: 'CommandNotSupported', code: SocksReply.CommandNotSupported, byte: 7 },
  { name: 'AddressTypeNotSupported', code: SocksReply.AddressTypeNotSupported, byte: 8 },
];

for (const { name, code, byte } of replyCodes) {
  test(`formatReply(${name}) is VER REP RSV ATYP=IPv4 0.0.0.0:0`, () => {
    assert.deepEqual([...formatReply(code)], [5, byte, 0, 1, 0, 0, 0, 0, 0, 0]);
  });
}
