/**
 * Small parsers for configuration values taken from the environment or flags. Each returns a value
 * or an error string naming what was wrong, so the config builder can report every problem at once.
 */
export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/** "500ms", "10s", "5m", "24h", or a bare number of seconds (as Istio's env vars accept). */
export function parseDurationMs(raw: string): Parsed<number> {
  const text = raw.trim();
  if (/^\d+$/.test(text)) return { ok: true, value: Number(text) * 1000 };
  const m = DURATION.exec(text);
  if (!m) return { ok: false, error: `"${raw}" is not a duration (use e.g. 500ms, 10s, 5m, 24h)` };
  return { ok: true, value: Math.round(Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS]) };
}

export function parseBool(raw: string): Parsed<boolean> {
  const text = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(text)) return { ok: true, value: true };
  if (['0', 'false', 'no', 'off'].includes(text)) return { ok: true, value: false };
  return { ok: false, error: `"${raw}" is not a boolean (use true or false)` };
}

export function parsePort(raw: string): Parsed<number> {
  const n = /^\d{1,5}$/.test(raw) ? Number(raw) : NaN;
  if (!(n >= 0 && n <= 65535)) return { ok: false, error: `"${raw}" is not a port (0-65535)` };
  return { ok: true, value: n };
}

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** "127.0.0.1:15000", "[::1]:15000". */
export function parseHostPort(raw: string): Parsed<HostPort> {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(raw) ?? /^([^:[\]]+):(\d+)$/.exec(raw);
  if (!m) return { ok: false, error: `"${raw}" is not host:port` };
  const port = parsePort(m[2]!);
  if (!port.ok) return port;
  return { ok: true, value: { host: m[1]!, port: port.value } };
}

/**
 * Reads typed values from an environment map, collecting every problem instead of stopping at the
 * first, so a misconfigured program reports all of its mistakes in one start attempt.
 */
export class EnvReader {
  readonly errors: string[] = [];
  private readonly env: Readonly<Record<string, string | undefined>>;

  constructor(env: Readonly<Record<string, string | undefined>>) {
    this.env = env;
  }

  string(name: string, fallback: string): string {
    const v = this.env[name];
    return v === undefined || v === '' ? fallback : v;
  }

  optional(name: string): string | undefined {
    const v = this.env[name];
    return v === undefined || v === '' ? undefined : v;
  }

  parsed<T>(name: string, fallback: T, parse: (raw: string) => Parsed<T>): T {
    const raw = this.optional(name);
    if (raw === undefined) return fallback;
    const r = parse(raw);
    if (r.ok) return r.value;
    this.errors.push(`${name}: ${r.error}`);
    return fallback;
  }
}
