import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  EnvReader,
  parseBool,
  parseDurationMs,
  parseHostPort,
  parsePort,
  type Parsed,
} from '../../../src/core/config/env.ts';

function table<T>(
  name: string,
  parse: (raw: string) => Parsed<T>,
  ok: [string, T][],
  bad: [string, RegExp][],
) {
  for (const [raw, value] of ok) {
    test(`${name}(${JSON.stringify(raw)}) is ${JSON.stringify(value)}`, () => {
      assert.deepEqual(parse(raw), { ok: true, value });
    });
  }
  for (const [raw, error] of bad) {
    test(`${name}(${JSON.stringify(raw)}) is an error`, () => {
      const r = parse(raw);
      assert.equal(r.ok, false, `parsed as ${JSON.stringify(r)}`);
      assert.match((r as { error: string }).error, error);
    });
  }
}

table(
  'parseDurationMs',
  parseDurationMs,
  [
    ['500ms', 500],
    ['10s', 10_000],
    ['5m', 300_000],
    ['24h', 86_400_000],
    ['1.5s', 1500],
    ['0.25m', 15_000],
    ['0.4ms', 0],
    ['0.5ms', 1],
    ['0', 0],
    ['0s', 0],
    ['10', 10_000],
    ['86400', 86_400_000],
    [' 10s ', 10_000],
  ],
  [
    ['', /is not a duration/],
    ['abc', /is not a duration \(use e\.g\. 500ms, 10s, 5m, 24h\)/],
    ['10d', /is not a duration/],
    ['-1s', /is not a duration/],
    ['1.s', /is not a duration/],
    ['.5s', /is not a duration/],
    ['s', /is not a duration/],
    ['10 s', /is not a duration/],
    ['1m30s', /is not a duration/],
    ['10S', /is not a duration/],
    ['1e3', /is not a duration/],
    ['1.5', /is not a duration/],
  ],
);

table(
  'parseBool',
  parseBool,
  [
    ['true', true],
    ['TRUE', true],
    [' True ', true],
    ['1', true],
    ['yes', true],
    ['on', true],
    ['false', false],
    ['FALSE', false],
    ['0', false],
    ['no', false],
    ['off', false],
  ],
  [
    ['', /is not a boolean/],
    ['maybe', /"maybe" is not a boolean \(use true or false\)/],
    ['2', /is not a boolean/],
    ['t', /is not a boolean/],
    ['enabled', /is not a boolean/],
  ],
);

table(
  'parsePort',
  parsePort,
  [
    ['0', 0],
    ['1', 1],
    ['80', 80],
    ['15008', 15008],
    ['65535', 65535],
  ],
  [
    ['65536', /"65536" is not a port \(0-65535\)/],
    ['-1', /is not a port/],
    ['1.5', /is not a port/],
    ['abc', /is not a port/],
    ['80abc', /is not a port/],
    ['NaN', /is not a port/],
    ['Infinity', /is not a port/],
  ],
);

// Bug: parsePort (src/core/config/env.ts) converts with Number(raw), which reads '' and ' ' as 0 and
// accepts '0x50', '1e3' and '8.0'; '' quietly becomes "any free port". parseHostPort only passes it
// digits, so the config builder does not hit this today, but the exported parser is wrong.
test("regression: env parsePort: '', ' ', '0x50', '1e3' and '8.0' are not ports", () => {
  const accepted = ['', ' ', '0x50', '1e3', '8.0'].filter((raw) => parsePort(raw).ok);
  assert.deepEqual(accepted, []);
});

table(
  'parseHostPort',
  parseHostPort,
  [
    ['127.0.0.1:15000', { host: '127.0.0.1', port: 15000 }],
    ['0.0.0.0:0', { host: '0.0.0.0', port: 0 }],
    ['[::1]:15000', { host: '::1', port: 15000 }],
    ['[::]:15021', { host: '::', port: 15021 }],
    ['[fd00::1:2]:80', { host: 'fd00::1:2', port: 80 }],
    ['[::ffff:127.0.0.1]:80', { host: '::ffff:127.0.0.1', port: 80 }],
    ['localhost:8080', { host: 'localhost', port: 8080 }],
    ['node-1.example.com:65535', { host: 'node-1.example.com', port: 65535 }],
  ],
  [
    ['', /is not host:port/],
    ['127.0.0.1', /"127.0.0.1" is not host:port/],
    [':15000', /is not host:port/],
    ['127.0.0.1:', /is not host:port/],
    ['::1:15000', /is not host:port/],
    ['[::1]', /is not host:port/],
    ['[::1]:', /is not host:port/],
    ['[example.com]:80', /is not host:port/],
    ['127.0.0.1:80:90', /is not host:port/],
    ['127.0.0.1:-1', /is not host:port/],
    ['127.0.0.1:http', /is not host:port/],
    ['127.0.0.1:65536', /"65536" is not a port/],
    ['[::1]:99999', /is not a port/],
  ],
);

test('EnvReader.string falls back on unset and empty values', () => {
  const r = new EnvReader({ SET: 'x', EMPTY: '', UNSET: undefined });
  assert.equal(r.string('SET', 'd'), 'x');
  assert.equal(r.string('EMPTY', 'd'), 'd');
  assert.equal(r.string('UNSET', 'd'), 'd');
  assert.equal(r.string('MISSING', 'd'), 'd');
  assert.equal(r.optional('EMPTY'), undefined);
  assert.equal(r.optional('SET'), 'x');
});

test('EnvReader.parsed collects every error, prefixed by the variable name, and uses the fallback', () => {
  const r = new EnvReader({ A: '10s', B: 'soon', C: 'maybe', D: '' });
  assert.equal(r.parsed('A', 1, parseDurationMs), 10_000);
  assert.equal(r.parsed('B', 2, parseDurationMs), 2);
  assert.equal(r.parsed('C', true, parseBool), true);
  assert.equal(r.parsed('D', 7, parseDurationMs), 7);
  assert.deepEqual(r.errors, [
    'B: "soon" is not a duration (use e.g. 500ms, 10s, 5m, 24h)',
    'C: "maybe" is not a boolean (use true or false)',
  ]);
});
