/**
 * Pieces shared by the L7 decoders (l7-decode.ts, l7-decode-cluster.ts): the error collector, the
 * wire shapes of small Envoy messages as protobufjs hands them over (`toObject` with snake_case
 * names, `longs: Number`, `enums: String`, `defaults: false`, `oneofs: true`), and their
 * conversions into l7-model types. Pure.
 */
import type { FieldError } from './workload-proto.ts';
import {
  HeaderAppendAction,
  type Fraction,
  type HeaderMatcher,
  type HeaderMutations,
  type HeaderToAdd,
  type StringMatcher,
} from './l7-model.ts';
import { compileFullMatch } from './l7-regex.ts';

// ---------- the collector ----------

/** A `google.protobuf.Any` as protobufjs decodes it. */
export interface WireAny {
  type_url?: string;
  value?: Uint8Array;
}

/**
 * Decodes the bytes of an Any whose type the decoder knows into a plain object (same options as
 * the outer message). Injected so that the decoders stay free of protobufjs and file loading;
 * l7-wire.ts has the real one.
 */
export type AnyUnpacker = (
  typeName: string,
  value: Uint8Array,
) => { ok: true; message: object } | { ok: false; message: string };

export class Collector {
  readonly errors: FieldError[] = [];
  readonly unpack: AnyUnpacker;

  constructor(unpack: AnyUnpacker) {
    this.unpack = unpack;
  }

  err(path: string, message: string): void {
    this.errors.push({ path, message });
  }

  /** An error for each field of `obj` in `fields` that is set: ones the waypoint cannot honour. */
  unsupported(obj: object, fields: readonly string[], at: string, why = 'is not supported'): void {
    const o = obj as Record<string, unknown>;
    for (const f of fields) if (isSet(o[f])) this.err(join(at, f), why);
  }

  /** Unpacks an Any of an expected type (`typeNames`), reporting a wrong or corrupt one. */
  any<T>(a: WireAny | undefined, typeNames: readonly string[], at: string): T | undefined {
    if (!a?.type_url) {
      this.err(at, 'is required');
      return undefined;
    }
    const name = anyTypeName(a);
    if (!typeNames.includes(name)) {
      this.err(join(at, 'type_url'), `must be ${typeNames.join(' or ')}, not ${name}`);
      return undefined;
    }
    const r = this.unpack(name, a.value ?? new Uint8Array());
    if (!r.ok) {
      this.err(at, `cannot decode ${name}: ${r.message}`);
      return undefined;
    }
    return r.message as T;
  }
}

export function anyTypeName(a: WireAny): string {
  const url = a.type_url ?? '';
  return url.slice(url.lastIndexOf('/') + 1);
}

export function join(at: string, field: string): string {
  return at ? `${at}.${field}` : field;
}

/** Present on the wire with a non-default value (an empty message counts as set). */
export function isSet(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (v instanceof Uint8Array) return v.length > 0;
  return true;
}

// ---------- well-known types ----------

export interface WireDuration {
  seconds?: number;
  nanos?: number;
}
export interface WireBool {
  value?: boolean;
}
export interface WireUInt {
  value?: number;
}
export interface WireFractionalPercent {
  numerator?: number;
  denominator?: string | number;
}
export interface WireRuntimeFractionalPercent {
  default_value?: WireFractionalPercent;
  runtime_key?: string;
}

export function bool(v: WireBool | undefined, dflt: boolean): boolean {
  return v === undefined ? dflt : (v.value ?? false);
}

export function uint(v: WireUInt | undefined, dflt: number): number {
  return v === undefined ? dflt : (v.value ?? 0);
}

/** Milliseconds, or undefined if absent; negative or malformed durations are errors. */
export function durationMs(d: WireDuration | undefined, at: string, c: Collector): number | undefined {
  if (d === undefined) return undefined;
  const seconds = Number(d.seconds ?? 0);
  const nanos = d.nanos ?? 0;
  if (!Number.isFinite(seconds) || seconds < 0 || nanos < 0 || nanos > 999_999_999) {
    c.err(at, 'must be a non-negative duration');
    return undefined;
  }
  return seconds * 1000 + Math.floor(nanos / 1e6);
}

/** A duration that must be greater than zero when set. */
export function positiveMs(d: WireDuration | undefined, at: string, c: Collector): number | undefined {
  const ms = durationMs(d, at, c);
  if (ms === 0 && (d?.nanos ?? 0) === 0) c.err(at, 'must be greater than 0');
  return ms;
}

const DENOMINATORS: Record<string, Fraction['denominator']> = {
  HUNDRED: 100,
  TEN_THOUSAND: 10_000,
  MILLION: 1_000_000,
};

/** A FractionalPercent; an absent one is `dflt`. A numerator above the denominator means 100 %. */
export function fraction(
  f: WireFractionalPercent | undefined,
  at: string,
  c: Collector,
  dflt: Fraction,
): Fraction {
  if (f === undefined) return dflt;
  const denominator = DENOMINATORS[String(f.denominator ?? 'HUNDRED')];
  if (!denominator) {
    c.err(join(at, 'denominator'), `unknown value ${f.denominator}`);
    return dflt;
  }
  return { numerator: Math.min(f.numerator ?? 0, denominator), denominator };
}

// ---------- matchers ----------

export interface WireRegexMatcher {
  regex?: string;
  google_re2?: object;
}
export interface WireStringMatcher {
  exact?: string;
  prefix?: string;
  suffix?: string;
  contains?: string;
  safe_regex?: WireRegexMatcher;
  custom?: object;
  ignore_case?: boolean;
}

/** Validates an RE2 pattern for full-match use and returns it. */
export function regex(m: WireRegexMatcher | undefined, at: string, c: Collector): string {
  const pattern = m?.regex ?? '';
  const r = compileFullMatch(pattern);
  if (!r.ok) c.err(join(at, 'regex'), `invalid RE2 pattern: ${r.message}`);
  return pattern;
}

export function stringMatcher(m: WireStringMatcher | undefined, at: string, c: Collector): StringMatcher {
  const ignoreCase = m?.ignore_case ?? false;
  if (m?.exact !== undefined) return { kind: 'exact', value: m.exact, ignoreCase };
  for (const kind of ['prefix', 'suffix', 'contains'] as const) {
    const value = m?.[kind];
    if (value === undefined) continue;
    if (value === '') c.err(join(at, kind), 'must not be empty');
    return { kind, value, ignoreCase };
  }
  if (m?.safe_regex !== undefined) {
    if (ignoreCase) c.err(join(at, 'ignore_case'), 'has no effect for safe_regex (Envoy rejects it)');
    return { kind: 'regex', regex: regex(m.safe_regex, join(at, 'safe_regex'), c) };
  }
  if (m?.custom !== undefined) c.err(join(at, 'custom'), 'custom string matchers are not supported');
  else c.err(at, 'needs exact, prefix, suffix, contains or safe_regex');
  return { kind: 'exact', value: '', ignoreCase: false };
}

export interface WireHeaderMatcher {
  name?: string;
  exact_match?: string;
  safe_regex_match?: WireRegexMatcher;
  range_match?: { start?: number; end?: number };
  present_match?: boolean;
  prefix_match?: string;
  suffix_match?: string;
  contains_match?: string;
  string_match?: WireStringMatcher;
  header_match_specifier?: string;
  invert_match?: boolean;
  treat_missing_header_as_empty?: boolean;
}

/** `envoy.config.route.v3.HeaderMatcher` (routes and RBAC rules). */
export function decodeHeaderMatcher(h: WireHeaderMatcher, at: string, c: Collector): HeaderMatcher {
  const name = (h.name ?? '').toLowerCase();
  if (!name) c.err(join(at, 'name'), 'is required');
  let match: HeaderMatcher['match'];
  if (h.string_match !== undefined)
    match = { kind: 'string', matcher: stringMatcher(h.string_match, join(at, 'string_match'), c) };
  else if (h.exact_match !== undefined) {
    // Deprecated exact_match: an empty value only asks for presence.
    match =
      h.exact_match === ''
        ? { kind: 'present', present: true }
        : { kind: 'string', matcher: { kind: 'exact', value: h.exact_match, ignoreCase: false } };
  } else if (h.safe_regex_match !== undefined) {
    match = {
      kind: 'string',
      matcher: { kind: 'regex', regex: regex(h.safe_regex_match, join(at, 'safe_regex_match'), c) },
    };
  } else if (h.prefix_match !== undefined)
    match = { kind: 'string', matcher: { kind: 'prefix', value: h.prefix_match, ignoreCase: false } };
  else if (h.suffix_match !== undefined)
    match = { kind: 'string', matcher: { kind: 'suffix', value: h.suffix_match, ignoreCase: false } };
  else if (h.contains_match !== undefined)
    match = { kind: 'string', matcher: { kind: 'contains', value: h.contains_match, ignoreCase: false } };
  else if (h.range_match !== undefined) {
    const start = Number(h.range_match.start ?? 0);
    const end = Number(h.range_match.end ?? 0);
    if (!(start < end)) c.err(join(at, 'range_match'), 'start must be less than end');
    match = { kind: 'range', start, end };
  } else match = { kind: 'present', present: h.present_match ?? true };
  return {
    name,
    match,
    invert: h.invert_match ?? false,
    treatMissingAsEmpty: h.treat_missing_header_as_empty ?? false,
  };
}

// ---------- header mutations ----------

export interface WireHeaderValueOption {
  header?: { key?: string; value?: string; raw_value?: Uint8Array };
  append?: WireBool;
  append_action?: string | number;
  keep_empty_value?: boolean;
}

const APPEND_ACTIONS: Record<string, HeaderAppendAction> = {
  APPEND_IF_EXISTS_OR_ADD: HeaderAppendAction.AppendIfExistsOrAdd,
  ADD_IF_ABSENT: HeaderAppendAction.AddIfAbsent,
  OVERWRITE_IF_EXISTS_OR_ADD: HeaderAppendAction.OverwriteIfExistsOrAdd,
  OVERWRITE_IF_EXISTS: HeaderAppendAction.OverwriteIfExists,
};

const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;

function modifiableHeader(name: string, at: string, c: Collector, verb: string): boolean {
  if (name === '') {
    c.err(at, 'must not be empty');
    return false;
  }
  if (name.startsWith(':') || name === 'host') {
    c.err(at, `:-prefixed or host headers may not be ${verb}`);
    return false;
  }
  if (!HEADER_NAME.test(name)) {
    c.err(at, `${JSON.stringify(name)} is not a valid header name`);
    return false;
  }
  return true;
}

/**
 * Envoy reads header values as access-log format strings: `%%` is a literal percent sign and
 * `%COMMAND%` is substituted. Only literals are supported.
 */
function literalHeaderValue(v: string, at: string, c: Collector): string {
  let out = '';
  for (let i = 0; i < v.length; i++) {
    if (v[i] !== '%') {
      out += v[i];
      continue;
    }
    if (v[i + 1] === '%') {
      out += '%';
      i++;
      continue;
    }
    c.err(at, 'format commands (%…%) in header values are not supported; write a literal % as %%');
    return v;
  }
  return out;
}

export function headerMutations(
  add: readonly WireHeaderValueOption[] | undefined,
  remove: readonly string[] | undefined,
  at: string,
  prefix: 'request' | 'response',
  c: Collector,
): HeaderMutations {
  const addPath = join(at, `${prefix}_headers_to_add`);
  const removePath = join(at, `${prefix}_headers_to_remove`);
  const out: HeaderToAdd[] = [];
  (add ?? []).forEach((o, i) => {
    const p = `${addPath}[${i}]`;
    const name = (o.header?.key ?? '').toLowerCase();
    const nameOk = modifiableHeader(name, `${p}.header.key`, c, 'modified');
    if (isSet(o.header?.raw_value)) c.err(`${p}.header.raw_value`, 'is not supported; use value');
    const value = literalHeaderValue(o.header?.value ?? '', `${p}.header.value`, c);
    let action: HeaderAppendAction = HeaderAppendAction.AppendIfExistsOrAdd;
    if (
      o.append !== undefined &&
      o.append_action !== undefined &&
      o.append_action !== 'APPEND_IF_EXISTS_OR_ADD'
    ) {
      c.err(p, 'both append and append_action are set');
    } else if (o.append !== undefined) {
      action = bool(o.append, true)
        ? HeaderAppendAction.AppendIfExistsOrAdd
        : HeaderAppendAction.OverwriteIfExistsOrAdd;
    } else if (o.append_action !== undefined) {
      const a = APPEND_ACTIONS[String(o.append_action)];
      if (a) action = a;
      else c.err(`${p}.append_action`, `unknown value ${o.append_action}`);
    }
    if (nameOk) out.push({ name, value, action, keepEmptyValue: o.keep_empty_value ?? false });
  });
  const removed: string[] = [];
  (remove ?? []).forEach((r, i) => {
    const name = r.toLowerCase();
    if (modifiableHeader(name, `${removePath}[${i}]`, c, 'removed')) removed.push(name);
  });
  return { add: out, remove: removed };
}

// ---------- addresses ----------

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** An IPv4 or IPv6 literal (no zone, no brackets). */
export function isIpAddress(s: string): boolean {
  if (IPV4.test(s)) return true;
  if (!s.includes(':') || s.includes(':::')) return false;
  let text = s;
  let groupsWanted = 8;
  const v4 = /:((?:\d+\.){3}\d+)$/.exec(s);
  if (v4) {
    if (!IPV4.test(v4[1]!)) return false;
    text = s.slice(0, v4.index + 1) + '0';
    groupsWanted = 7;
  }
  const halves = text.split('::');
  if (halves.length > 2) return false;
  const groups = (h: string) => (h === '' ? [] : h.split(':'));
  const all = halves.flatMap(groups);
  if (!all.every((g) => /^[0-9A-Fa-f]{1,4}$/.test(g))) return false;
  return halves.length === 2 ? all.length < groupsWanted : all.length === groupsWanted;
}
