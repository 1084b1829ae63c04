import assert from 'node:assert/strict';
import { test } from 'node:test';
import { combineHashes, xxHash64 } from '../../../src/waypoint/xxhash64.ts';

// Reference values of XXH64 with seed 0 (the xxHash test vectors and python-xxhash's documentation).
const vectors: [string, bigint][] = [
  ['', 0xef46db3751d8e999n],
  ['a', 0xd24ec4f1a98c6e5bn],
  ['abc', 0x44bc2cf5ad770999n],
  ['Nobody inspects the spammish repetition', 0xfbcea83c8a378bf1n],
];
for (const [input, want] of vectors) {
  test(`xxHash64(${JSON.stringify(input)})`, () => assert.equal(xxHash64(input), want));
}

test('bytes and their UTF-8 string hash the same; the seed changes the value', () => {
  assert.equal(xxHash64(new TextEncoder().encode('héllo')), xxHash64('héllo'));
  assert.notEqual(xxHash64('abc', 1n), xxHash64('abc'));
  for (let n = 0; n < 70; n++) assert.ok(xxHash64('x'.repeat(n)) < 1n << 64n);
});

test('combining rotates the previous value left by one before the xor', () => {
  assert.equal(combineHashes(undefined, 5n), 5n);
  assert.equal(combineHashes(1n << 63n, 0n), 1n);
  assert.equal(combineHashes(3n, 1n), 7n);
});
