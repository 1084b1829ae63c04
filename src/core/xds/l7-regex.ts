/**
 * RE2 (Envoy's `safe_regex`) → JavaScript RegExp. The translation keeps RE2's meaning for the syntax
 * route configs use and refuses what RE2 refuses (backreferences, lookaround) or what has no
 * faithful JavaScript form, so a pattern Envoy would NACK is NACKed here too. Pure.
 *
 * Differences that remain: JavaScript matches by backtracking, so a pathological pattern (nested
 * unbounded repetition such as `(a+)+`) can take exponential time where RE2 is linear; RE2's
 * program-size limit is not enforced.
 */

export type RegexResult = { ok: true; regex: RegExp; groups: number } | { ok: false; message: string };

const POSIX_CLASSES: Record<string, string> = {
  alnum: '0-9A-Za-z',
  alpha: 'A-Za-z',
  ascii: '\\x00-\\x7F',
  blank: '\\t ',
  cntrl: '\\x00-\\x1F\\x7F',
  digit: '0-9',
  graph: '!-~',
  lower: 'a-z',
  print: ' -~',
  punct: '!-\\/:-@\\[-`{-~',
  space: '\\t\\n\\v\\f\\r ',
  upper: 'A-Z',
  word: '0-9A-Za-z_',
  xdigit: '0-9A-Fa-f',
};
/** Characters that may follow a backslash in JavaScript's unicode mode. */
const JS_SYNTAX = new Set('^$\\.*+?()[]{}|/'.split(''));
const MAX_REPEAT = 1000;

function escapeLiteral(c: string, inClass: boolean): string {
  if (JS_SYNTAX.has(c) || (inClass && c === '-')) return `\\${c}`;
  return c;
}

function hexEscape(c: string): string {
  return `\\u{${c.codePointAt(0)!.toString(16)}}`;
}

/** Translates RE2 syntax to a JavaScript source (unicode mode) and its flags. */
export function translateRe2(
  pattern: string,
): { ok: true; source: string; flags: string } | { ok: false; message: string } {
  let flags = 'u';
  let i = 0;
  let out = '';
  let inClass = false;
  let classStart = false;
  const fail = (message: string) => ({ ok: false as const, message: `${message} at offset ${i}` });
  // Per open group: whether something inside it repeats without bound. JavaScript's engine
  // backtracks (RE2 does not), so a group like that repeated without bound again — `(a+)+`, `(a*)*`,
  // `(\w+\s?)*` — can take exponential time on a crafted path or header and stall the waypoint;
  // such patterns are refused rather than run.
  const unboundedInside: boolean[] = [];
  const markUnbounded = () => unboundedInside.fill(true);
  const unboundedNext = (at: number) => /^(\*|\+|\{\d+,\})/.test(pattern.slice(at));

  // Leading global flags: (?i), (?s), (?m), (?is)…
  const lead = /^\(\?([imsU]+)\)/.exec(pattern);
  if (lead) {
    for (const f of lead[1]!) {
      if (f === 'U') return fail('the ungreedy flag (?U) is not supported');
      if (!flags.includes(f)) flags += f;
    }
    i = lead[0].length;
  }

  while (i < pattern.length) {
    const c = pattern[i]!;
    if (c === '\\') {
      const n = pattern[i + 1];
      if (n === undefined) return fail('trailing backslash');
      if (n === 'Q') {
        const end = pattern.indexOf('\\E', i + 2);
        const lit = pattern.slice(i + 2, end < 0 ? undefined : end);
        for (const ch of lit) out += /[0-9A-Za-z]/.test(ch) ? ch : escapeLiteral(ch, inClass);
        i = end < 0 ? pattern.length : end + 2;
        classStart = false;
        continue;
      }
      if (n >= '1' && n <= '9') return fail('backreferences are not supported by RE2');
      if (n === '0') {
        out += '\\x00';
        i += 2;
        continue;
      }
      if (n === 'A' || n === 'z') {
        if (inClass) return fail(`\\${n} inside a character class`);
        out += n === 'A' ? '(?<![\\s\\S])' : '(?![\\s\\S])';
        i += 2;
        continue;
      }
      if (n === 'Z' || n === 'C' || n === 'G' || n === 'K' || n === 'X' || n === 'R') {
        return fail(`\\${n} is not supported by RE2`);
      }
      if (n === 'a') out += '\\x07';
      else if (n === 'x') {
        const braced = /^\\x\{([0-9A-Fa-f]{1,6})\}/.exec(pattern.slice(i));
        if (braced) {
          out += `\\u{${braced[1]}}`;
          i += braced[0].length;
          classStart = false;
          continue;
        }
        if (!/^\\x[0-9A-Fa-f]{2}/.test(pattern.slice(i))) return fail('bad \\x escape');
        out += pattern.slice(i, i + 4);
        i += 4;
        classStart = false;
        continue;
      } else if (n === 'p' || n === 'P') {
        const named = /^\\[pP](\{\^?[A-Za-z_]+\}|[A-Za-z])/.exec(pattern.slice(i));
        if (!named) return fail('bad unicode class');
        let name = named[1]!;
        let negate = n === 'P';
        if (name.startsWith('{')) name = name.slice(1, -1);
        if (name.startsWith('^')) {
          negate = !negate;
          name = name.slice(1);
        }
        // One- and two-letter names are general categories; longer ones (but Any) are scripts.
        const property = name.length <= 2 || name === 'Any' ? name : `Script=${name}`;
        out += `\\${negate ? 'P' : 'p'}{${property}}`;
        i += named[0].length;
        classStart = false;
        continue;
      } else if ('dDwWsSbBfnrtv'.includes(n)) {
        if (n === 's') out += inClass ? '\\t\\n\\f\\r ' : '[\\t\\n\\f\\r ]';
        else if (n === 'S') {
          if (inClass) return fail('\\S inside a character class is not supported');
          out += '[^\\t\\n\\f\\r ]';
        } else if (inClass && (n === 'b' || n === 'B')) return fail(`\\${n} inside a character class`);
        else out += `\\${n}`;
      } else if (/[0-9A-Za-z]/.test(n)) {
        return fail(`unknown escape \\${n}`);
      } else {
        out += /[ -~]/.test(n) ? escapeLiteral(n, inClass) : hexEscape(n);
      }
      i += 2;
      classStart = false;
      continue;
    }

    if (inClass) {
      if (c === ']' && !classStart) {
        out += ']';
        inClass = false;
      } else if (c === '[' && pattern[i + 1] === ':') {
        const posix = /^\[:(\^?)([a-z]+):\]/.exec(pattern.slice(i));
        if (!posix || !(posix[2]! in POSIX_CLASSES)) return fail('bad POSIX class');
        if (posix[1]) return fail('negated POSIX classes are not supported');
        out += POSIX_CLASSES[posix[2]!];
        i += posix[0].length;
        classStart = false;
        continue;
      } else if (c === ']' || c === '[') {
        out += `\\${c}`;
      } else out += c;
      i++;
      classStart = false;
      continue;
    }

    if (c === '[') {
      inClass = true;
      classStart = true;
      out += '[';
      i++;
      if (pattern[i] === '^') {
        out += '^';
        i++;
      }
      continue;
    }
    if (c === '(') {
      if (pattern[i + 1] === '?') {
        const rest = pattern.slice(i + 2);
        if (/^P?<[A-Za-z_][A-Za-z0-9_]*>/.test(rest)) {
          const m = /^P?<([A-Za-z_][A-Za-z0-9_]*)>/.exec(rest)!;
          out += `(?<${m[1]}>`;
          unboundedInside.push(false);
          i += 2 + m[0].length;
          continue;
        }
        if (rest.startsWith(':')) {
          out += '(?:';
          unboundedInside.push(false);
          i += 3;
          continue;
        }
        if (/^(=|!|<=|<!)/.test(rest)) return fail('lookaround is not supported by RE2');
        const mod = /^(-?[ims]+|[ims]+-[ims]+):/.exec(rest);
        if (mod) {
          out += `(?${mod[1]}:`;
          unboundedInside.push(false);
          i += 2 + mod[0].length;
          continue;
        }
        if (/^[-imsU]+\)/.test(rest))
          return fail('inline flags are supported only at the start of the pattern');
        return fail('bad group');
      }
      out += '(';
      unboundedInside.push(false);
      i++;
      continue;
    }
    if (c === ')') {
      const inner = unboundedInside.pop() ?? false;
      if (inner && unboundedNext(i + 1))
        return fail('nested unbounded repetition (like (a+)+) could take exponential time; rewrite it');
    }
    if (c === '{') {
      const rep = /^\{(\d+)(,(\d*))?\}/.exec(pattern.slice(i));
      if (!rep) {
        out += '\\{';
        i++;
        continue;
      }
      const lo = Number(rep[1]);
      const hi = rep[3] ? Number(rep[3]) : lo;
      if (lo > MAX_REPEAT || hi > MAX_REPEAT) return fail(`repetition over ${MAX_REPEAT}`);
      if (rep[3] && hi < lo) return fail('bad repetition range');
      if (rep[2] && !rep[3]) markUnbounded();
      out += rep[0];
      i += rep[0].length;
      continue;
    }
    if (c === '}' || c === ']') {
      out += `\\${c}`;
      i++;
      continue;
    }
    if (c === '*' || c === '+' || c === '?') {
      // RE2 has no possessive quantifiers; `a**` is an error in both.
      if ((pattern[i + 1] === '+' && c !== '?') || (c === '?' && pattern[i + 1] === '+')) {
        return fail('possessive repetition is not supported by RE2');
      }
      if (c !== '?') markUnbounded();
    }
    out += c;
    i++;
  }
  if (inClass) return fail('missing ]');
  return { ok: true, source: out, flags };
}

function build(pattern: string, anchored: boolean, global: boolean): RegexResult {
  const t = translateRe2(pattern);
  if (!t.ok) return t;
  const source = anchored ? `(?<![\\s\\S])(?:${t.source})(?![\\s\\S])` : t.source;
  try {
    const regex = new RegExp(source, global ? `${t.flags}g` : t.flags);
    const groups = new RegExp(`${t.source}|`, t.flags).exec('')!.length - 1;
    return { ok: true, regex, groups };
  } catch (err) {
    return { ok: false, message: (err as Error).message.replace(/^Invalid regular expression: /, '') };
  }
}

/** A regex that must match the whole input (Envoy's `safe_regex` matchers). */
export function compileFullMatch(pattern: string): RegexResult {
  if (pattern === '') return { ok: false, message: 'regex must not be empty' };
  return build(pattern, true, false);
}

/** A regex for `RegexMatchAndSubstitute` (every match is replaced, as RE2::GlobalReplace). */
export function compileSearch(pattern: string): RegexResult {
  if (pattern === '') return { ok: false, message: 'regex must not be empty' };
  return build(pattern, false, true);
}

export type Substitution = readonly (string | number)[];

/**
 * Parses an RE2 rewrite string: `\0`–`\9` are groups, `\\` is a backslash; anything else after a
 * backslash is an error, as in RE2::Rewrite.
 */
export function parseSubstitution(
  text: string,
  groups: number,
): { ok: true; parts: Substitution } | { ok: false; message: string } {
  const parts: (string | number)[] = [];
  let lit = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c !== '\\') {
      lit += c;
      continue;
    }
    const n = text[i + 1];
    if (n === '\\') {
      lit += '\\';
    } else if (n !== undefined && n >= '0' && n <= '9') {
      const g = Number(n);
      if (g > groups) return { ok: false, message: `\\${g} refers to a group the regex does not have` };
      if (lit) parts.push(lit);
      lit = '';
      parts.push(g);
    } else {
      return { ok: false, message: 'a backslash must be followed by a digit or a backslash' };
    }
    i++;
  }
  if (lit) parts.push(lit);
  return { ok: true, parts };
}

/** Replaces every match of `regex` (compiled by compileSearch) in `input`. */
export function replaceAll(input: string, regex: RegExp, parts: Substitution): string {
  return input.replace(regex, (...m: unknown[]) =>
    parts.map((p) => (typeof p === 'number' ? ((m[p] as string | undefined) ?? '') : p)).join(''),
  );
}
