/**
 * Properties of the waypoint's pure core over random input (fast-check).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { compileFullMatch, translateRe2 } from '../../../src/core/xds/l7-regex.ts';
import { createClusterPicker } from '../../../src/waypoint/cluster-picker.ts';
import { compileRouteTable, pickWeighted, route as decide } from '../../../src/waypoint/router.ts';
import { xxHash64 } from '../../../src/waypoint/xxhash64.ts';
import {
  action,
  assignment,
  cluster,
  config,
  endpoint,
  fakeClock,
  match,
  request,
  route,
  seeded,
  vhost,
  weighted,
} from './l7-builders.ts';

test('a weighted choice never picks a zero-weight cluster', () => {
  fc.assert(
    fc.property(
      fc.array(fc.nat({ max: 1000 }), { minLength: 1, maxLength: 8 }).filter((w) => w.some((x) => x > 0)),
      fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
      (weights, r) => {
        const items = weights.map((weight, i) => ({ weight, i }));
        assert.ok(pickWeighted(items, () => r).weight > 0);
      },
    ),
    { numRuns: 5000 },
  );
});

test('through the router too, for any weights and seed', () => {
  fc.assert(
    fc.property(
      fc.array(fc.nat({ max: 100 }), { minLength: 2, maxLength: 5 }).filter((w) => w.some((x) => x > 0)),
      fc.integer(),
      (weights, seed) => {
        const clusters = weights.map((w, i) => weighted(`c${i}`, w));
        const table = compileRouteTable(
          config([vhost([route({ action: action({ clusters, weighted: true }) })])]),
        );
        const random = seeded(seed);
        for (let i = 0; i < 20; i++) {
          const d = decide(table, request(), random);
          assert.equal(d.kind, 'forward');
          if (d.kind === 'forward') assert.ok(weights[Number(d.cluster.slice(1))]! > 0);
        }
      },
    ),
    { numRuns: 300 },
  );
});

const ipArb = fc.ipV4();

test('ring hash: a key keeps its host, and removing a host moves only that host’s keys', () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(ipArb, { minLength: 2, maxLength: 8 }),
      fc.array(fc.string(), { minLength: 1, maxLength: 40 }),
      fc.nat(),
      (ips, keys, which) => {
        const make = (list: readonly string[]) => {
          const p = createClusterPicker(
            cluster({ lbPolicy: 'RING_HASH', ringHash: { minimumRingSize: 64, maximumRingSize: 1 << 20 } }),
            {
              clock: fakeClock(),
              random: seeded(1),
            },
          );
          p.updateEndpoints(assignment(list.map((ip) => endpoint(ip))));
          return p;
        };
        const host = (p: ReturnType<typeof make>, k: string) => {
          const r = p.pick({ hashKey: xxHash64(k) });
          assert.ok(r.ok);
          return r.host.key;
        };
        const removed = ips[which % ips.length]!;
        const before = make(ips);
        const after = make(ips.filter((ip) => ip !== removed));
        for (const k of keys) {
          const a = host(before, k);
          assert.equal(host(before, k), a);
          if (a !== `${removed}:9080`) assert.equal(host(after, k), a);
          else assert.notEqual(host(after, k), a);
        }
      },
    ),
    { numRuns: 200 },
  );
});

test('the router never throws and always decides, for arbitrary requests', () => {
  const table = compileRouteTable(
    config([
      vhost(
        [
          route({
            name: 'a',
            match: match({ path: { kind: 'regex', regex: '/(a|b)+/.*' } }),
            action: action({ regexRewrite: { regex: '(a)', substitution: '[\\1]' } }),
          }),
          route({
            name: 'b',
            match: match({
              path: { kind: 'prefix', value: '/B' },
              caseSensitive: false,
              queryParameters: [{ name: 'q', matcher: undefined }],
            }),
            action: {
              kind: 'redirect',
              scheme: 'https',
              host: undefined,
              port: undefined,
              path: { kind: 'prefix', value: '/c' },
              status: 302,
              stripQuery: false,
            },
          }),
        ],
        { domains: ['*.svc.cluster.local', 'x*'] },
      ),
    ]),
  );
  fc.assert(
    fc.property(
      fc.string(),
      fc.string(),
      fc.string(),
      fc.dictionary(fc.string(), fc.string()),
      (authority, path, method, headers) => {
        const d = decide(table, request({ authority, path, method, headers }), Math.random);
        assert.ok(['forward', 'redirect', 'not-found'].includes(d.kind));
      },
    ),
    { numRuns: 3000 },
  );
});

test('the RE2 translation returns a verdict for any pattern and never throws', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 30 }), (pattern) => {
      const t = translateRe2(pattern);
      assert.equal(typeof t.ok, 'boolean');
      const c = compileFullMatch(pattern);
      if (c.ok) assert.equal(typeof c.regex.test(pattern), 'boolean');
    }),
    { numRuns: 5000 },
  );
});

test('a literal pattern (escaped with \\Q…\\E) matches exactly itself', () => {
  fc.assert(
    fc.property(
      fc.string({ minLength: 1, maxLength: 20 }).filter((s) => !s.includes('\\E')),
      (s) => {
        const r = compileFullMatch(`\\Q${s}\\E`);
        assert.ok(r.ok, s);
        assert.ok(r.regex.test(s));
        assert.equal(r.regex.test(`${s}x`), false);
      },
    ),
    { numRuns: 3000 },
  );
});
