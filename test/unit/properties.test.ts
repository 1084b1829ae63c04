/**
 * Properties over random input (fast-check): the wire parsers never throw and round-trip.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { formatHostPort, parseAuthority, parseBaggage } from '../../src/core/hbone/protocol.ts';
import { parseGreeting, parseRequest } from '../../src/ztunnel/proxy/socks5-protocol.ts';
import { decodeLocalConfig } from '../../src/core/xds/local-config.ts';

test('SOCKS5 parsers return a verdict for any bytes and never over-consume', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      for (const r of [parseGreeting(bytes), parseRequest(bytes)]) {
        assert.ok(['more', 'error', 'ok'].includes(r.kind));
        if (r.kind === 'ok') assert.ok(r.consumed <= bytes.length);
      }
    }),
    { numRuns: 5000 },
  );
});

test('any IPv4/IPv6 address and port round-trips through formatHostPort and parseAuthority', () => {
  fc.assert(
    fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), fc.integer({ min: 1, max: 65535 }), (ip, port) => {
      const r = parseAuthority(formatHostPort(ip, port));
      assert.ok(r.ok);
      assert.equal(r.authority.kind, 'ip');
      assert.equal(r.authority.port, port);
    }),
    { numRuns: 2000 },
  );
});

test('parseAuthority and parseBaggage never throw on arbitrary strings', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), (s) => {
      const r = parseAuthority(s);
      assert.equal(typeof r.ok, 'boolean');
      assert.equal(typeof parseBaggage(s), 'object');
    }),
    { numRuns: 5000 },
  );
});

test('the config decoder rejects arbitrary YAML with errors, never a throw', () => {
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 4 }), (value) => {
      const r = decodeLocalConfig(JSON.stringify({ workloads: [value], services: value, policies: [value] }));
      if (!r.ok) for (const e of r.errors) assert.equal(typeof e.message, 'string');
    }),
    { numRuns: 1000 },
  );
});
