/**
 * HBONE protocol helpers (reference/ztunnel.md §2): pure functions over strings and numbers.
 */
import { isIP } from 'node:net';

export const HBONE_PORT = 15008;

/** HTTP/2 settings of both ends (reference/ztunnel.md §2.2). */
export const H2 = {
  streamWindowBytes: 4 * 1024 * 1024,
  connectionWindowBytes: 16 * 1024 * 1024,
  maxFrameBytes: 1024 * 1024,
  clientMaxHeaderListBytes: 16 * 1024,
  serverMaxHeaderListBytes: 64 * 1024,
  serverMaxConcurrentStreams: 200,
  poolMaxStreamsPerConnection: 100,
  pingIntervalMs: 10_000,
  pingTimeoutMs: 20_000,
  /** Node's session memory cap counts window buffers; 4 MiB windows outgrow its 10 MB default. */
  maxSessionMemoryMb: 64,
} as const;

/** TCP keepalive idle time on every socket (reference/ztunnel.md §2.4). */
export const TCP_KEEPALIVE_MS = 180_000;

/** Response codes and what they mean to the client. */
export const HboneStatus = {
  Ok: 200,
  /** Not CONNECT, unparsable authority, or the authority's IP is not this pod. */
  BadRequest: 400,
  /** AuthorizationPolicy denied. */
  Unauthorized: 401,
  /** Unknown workload or service, illegal port, or the upstream connect failed. */
  Unavailable: 503,
} as const;

/** Ports that must never be a tunnel's target: they would loop back into the agent. */
export const ILLEGAL_PORTS: ReadonlySet<number> = new Set([15001, 15006, 15008, 15080]);

export type Authority =
  | { readonly kind: 'ip'; readonly ip: string; readonly port: number }
  | { readonly kind: 'hostname'; readonly hostname: string; readonly port: number };

export type AuthorityResult = { ok: true; authority: Authority } | { ok: false; error: string };

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** Parses `IP:port`, `[IPv6]:port` or `hostname:port`. */
export function parseAuthority(raw: string | undefined): AuthorityResult {
  if (!raw) return { ok: false, error: 'missing :authority' };
  let host: string;
  let portText: string;
  if (raw.startsWith('[')) {
    const end = raw.indexOf(']');
    if (end < 0 || raw[end + 1] !== ':') return { ok: false, error: `bad authority "${raw}"` };
    host = raw.slice(1, end);
    portText = raw.slice(end + 2);
    if (isIP(host) !== 6) return { ok: false, error: `bad IPv6 address in authority "${raw}"` };
  } else {
    const colon = raw.lastIndexOf(':');
    if (colon <= 0) return { ok: false, error: `authority "${raw}" has no port` };
    host = raw.slice(0, colon);
    portText = raw.slice(colon + 1);
    if (isIP(host) === 6 || host.includes(':'))
      return { ok: false, error: `IPv6 authority "${raw}" needs brackets` };
  }
  if (!/^\d{1,5}$/.test(portText)) return { ok: false, error: `bad port in authority "${raw}"` };
  const port = Number(portText);
  if (port < 1 || port > 65535) return { ok: false, error: `port out of range in authority "${raw}"` };
  if (isIP(host)) return { ok: true, authority: { kind: 'ip', ip: host, port } };
  if (!HOSTNAME.test(host)) return { ok: false, error: `bad host in authority "${raw}"` };
  return { ok: true, authority: { kind: 'hostname', hostname: host.toLowerCase(), port } };
}

export function formatHostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The workload facts that go into `baggage` (reference/ztunnel.md §2.3). */
export interface BaggageFields {
  readonly cluster?: string;
  readonly namespace?: string;
  readonly workloadType?: string;
  readonly workloadName?: string;
  readonly service?: string;
  readonly version?: string;
  readonly region?: string;
  readonly zone?: string;
}

const BAGGAGE_KEYS = [
  ['cluster', 'k8s.cluster.name'],
  ['namespace', 'k8s.namespace.name'],
  ['service', 'service.name'],
  ['version', 'service.version'],
  ['region', 'cloud.region'],
  ['zone', 'cloud.availability_zone'],
] as const;
const WORKLOAD_TYPES = ['deployment', 'cronjob', 'pod', 'job'] as const;

export function formatBaggage(b: BaggageFields): string {
  const parts: string[] = [];
  for (const [field, key] of BAGGAGE_KEYS.slice(0, 2)) {
    const v = b[field];
    if (v) parts.push(`${key}=${v}`);
  }
  if (b.workloadType && b.workloadName) parts.push(`k8s.${b.workloadType}.name=${b.workloadName}`);
  for (const [field, key] of BAGGAGE_KEYS.slice(2)) {
    const v = b[field];
    if (v) parts.push(`${key}=${v}`);
  }
  return parts.join(',');
}

/** Parses a `baggage` header; unknown keys and malformed entries are ignored (telemetry only). */
export function parseBaggage(header: string | undefined): BaggageFields {
  const out: Record<string, string> = {};
  if (!header) return out;
  for (const entry of header.split(',')) {
    const eq = entry.indexOf('=');
    if (eq <= 0) continue;
    const key = entry.slice(0, eq).trim();
    const value = entry
      .slice(eq + 1)
      .split(';')[0]!
      .trim();
    if (!value) continue;
    const known = BAGGAGE_KEYS.find(([, k]) => k === key);
    if (known) out[known[0]] = value;
    const wl = /^k8s\.([a-z]+)\.name$/.exec(key);
    if (
      wl &&
      wl[1] !== 'cluster' &&
      wl[1] !== 'namespace' &&
      (WORKLOAD_TYPES as readonly string[]).includes(wl[1]!)
    ) {
      out.workloadType = wl[1]!;
      out.workloadName = value;
    }
  }
  return out;
}

/** `forwarded: for="<client ip:port>"` with `;host=<service FQDN>` when the service is known. */
export function formatForwarded(clientIp: string, clientPort: number, serviceHost?: string): string {
  const f = `for="${formatHostPort(clientIp, clientPort)}"`;
  return serviceHost ? `${f};host=${serviceHost}` : f;
}

/** The `host=` of a `forwarded` header, if any. */
export function parseForwardedHost(header: string | undefined): string | undefined {
  if (!header) return undefined;
  for (const pair of header.split(/[;,]/)) {
    const m = /^\s*host=("?)([^"]*)\1\s*$/i.exec(pair);
    if (m && m[2]) return m[2];
  }
  return undefined;
}

/** W3C traceparent `00-<32 hex>-<16 hex>-00` from 24 random bytes. */
export function formatTraceparent(random: Uint8Array): string {
  if (random.length < 24) throw new RangeError('traceparent needs 24 random bytes');
  const hex = Buffer.from(random.subarray(0, 24)).toString('hex');
  return `00-${hex.slice(0, 32)}-${hex.slice(32, 48)}-00`;
}

export function isValidTraceparent(value: string | undefined): boolean {
  return value !== undefined && /^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/.test(value);
}

/**
 * The pool key (reference/ztunnel.md §2.5): streams share an HTTP/2 connection only when the source
 * identity, source IP, expected destination identities and destination socket address all match.
 */
export function poolKey(
  srcIdentity: string,
  srcIp: string,
  dstIdentities: readonly string[],
  dst: string,
): string {
  return [srcIdentity, srcIp, [...dstIdentities].sort().join(','), dst].join('|');
}
