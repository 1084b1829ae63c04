import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  compileFullMatch,
  compileSearch,
  parseSubstitution,
  replaceAll,
} from '../../../src/core/xds/l7-regex.ts';

const matches: [string, string, boolean][] = [
  ['/v[0-9]+', '/v12', true],
  ['/v[0-9]+', '/v12x', false],
  ['a|ab', 'ab', true],
  ['(?i)jason', 'JaSoN', true],
  ['(?i:ja)son', 'JAson', true],
  ['(?i:ja)son', 'jaSON', false],
  ['\\Aabc\\z', 'abc', true],
  ['(?P<v>v\\d)/x', 'v1/x', true],
  ['\\Q.*+\\E', '.*+', true],
  ['\\Q.*+\\E', 'abc', false],
  ['[[:digit:]]{3}', '123', true],
  ['[[:alpha:]_]+', 'ab_c', true],
  ['a{2,3}', 'aaa', true],
  ['a{2,3}', 'aaaa', false],
  ['x{', 'x{', true],
  ['a]', 'a]', true],
  ['[]a]+', ']a]', true],
  ['\\pL+', 'héllo', true],
  ['\\p{Greek}+', 'αβγ', true],
  ['\\x{41}\\x42', 'AB', true],
  ['\\-\\@\\#', '-@#', true],
  ['\\s', '\u00a0', false],
  ['\\s', '\t', true],
  ['.', '\n', false],
  ['(?s).', '\n', true],
  ['[^/]+', 'a/b', false],
];
for (const [pattern, input, want] of matches) {
  test(`${pattern} ${want ? 'matches' : 'does not match'} ${JSON.stringify(input)}`, () => {
    const r = compileFullMatch(pattern);
    if (!r.ok) assert.fail(r.message);
    assert.equal(r.regex.test(input), want);
  });
}

const refused: [string, RegExp][] = [
  ['', /empty/],
  ['(a)\\1', /backreferences/],
  ['(?=a)', /lookaround/],
  ['(?<!a)b', /lookaround/],
  ['a(?i)b', /start/],
  ['(?U)a*', /ungreedy/],
  ['a*+', /possessive/],
  ['a{1001}', /1000/],
  ['(', /./],
  ['[a', /missing ]/],
  ['\\Z', /not supported/],
  ['\\k', /unknown escape/],
  ['[[:^alpha:]]', /negated POSIX/],
  // Catastrophic backtracking in JavaScript's engine (RE2 would run these in linear time).
  ['(a+)+', /nested unbounded repetition/],
  ['(a*)*$', /nested unbounded repetition/],
  ['(\\w+\\s?)*', /nested unbounded repetition/],
  ['(?:x+){2,}', /nested unbounded repetition/],
  ['(?<p>[a-z]{3,})+', /nested unbounded repetition/],
];

test('bounded or unnested repetition stays allowed', () => {
  for (const p of ['/api/v[0-9]+/.*', '(foo|bar)+', '(a+)?', '([a-z]+)/(.*)', '(a{2,5})*', '(ab)+c'])
    assert.ok(compileFullMatch(p).ok, p);
});
for (const [pattern, message] of refused) {
  test(`${JSON.stringify(pattern)} is refused`, () => {
    const r = compileFullMatch(pattern);
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.message, message);
  });
}

test('substitutions: groups, \\0 and escaped backslashes', () => {
  const r = compileSearch('(\\w+)@(\\w+)');
  assert.ok(r.ok);
  assert.equal(r.groups, 2);
  const s = parseSubstitution('\\2 at \\1 (\\0) \\\\', r.groups);
  assert.ok(s.ok);
  assert.equal(
    replaceAll('mail bob@example now', r.regex, s.parts),
    'mail example at bob (bob@example) \\ now',
  );
  assert.deepEqual(parseSubstitution('\\3', 2), {
    ok: false,
    message: '\\3 refers to a group the regex does not have',
  });
  assert.equal(parseSubstitution('\\x', 2).ok, false);
  const dollar = parseSubstitution('$1', 2);
  assert.ok(dollar.ok);
  assert.equal(
    replaceAll('a@b', r.regex, dollar.parts),
    '$1',
    'a $ is literal, not a JavaScript group reference',
  );
});

test('a search regex replaces every match and is reusable', () => {
  const r = compileSearch('o');
  assert.ok(r.ok);
  for (let i = 0; i < 2; i++) assert.equal(replaceAll('/foo/boo', r.regex, ['0']), '/f00/b00');
});
