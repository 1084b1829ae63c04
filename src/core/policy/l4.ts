/**
 * L4 authorization as ztunnel evaluates it (reference/ztunnel.md §6). Pure: policies and connection
 * facts in, a decision out.
 */
import { ipToBytes } from '../ip.ts';
import { formatSpiffe, type Identity } from '../identity/spiffe.ts';
import {
  policyKey,
  type Authorization,
  type Cidr,
  type Match,
  type Rule,
  type ServiceAccountMatch,
  type StringMatch,
} from '../xds/model.ts';

export interface L4Connection {
  readonly srcIp: string;
  readonly dstIp: string;
  /** The resolved target port (not 15008). */
  readonly dstPort: number;
  /** Undefined for plaintext connections. */
  readonly srcIdentity: Identity | undefined;
}

export type Decision =
  | { readonly allowed: true }
  | { readonly allowed: false; readonly policy: string | undefined; readonly reason: string };

/**
 * ztunnel's decision order: any matching DENY denies (the first is named); no ALLOW policy allows; a
 * matching ALLOW allows; otherwise deny. Dry-run policies take no part. `policies` are the candidates
 * for the destination workload (MeshState.policiesFor: namespace, global and its selector policies),
 * so the cost per connection follows that workload's policies, not the mesh's (bench/policy.ts). It
 * runs for every inbound connection and again for each open one on every policy push, so the
 * connection's principal and addresses are derived once, and each policy's CIDRs parsed once.
 */
export function evaluateL4(policies: readonly Authorization[], conn: L4Connection): Decision {
  if (policies.length === 0) return ALLOWED;
  const subject = new Subject(conn);
  let allows = 0;
  for (const p of policies) {
    if (p.dryRun) continue;
    if (p.action === 'Allow') allows++;
    else if (policyMatches(p, subject)) {
      return { allowed: false, policy: policyKey(p), reason: `explicitly denied by ${policyKey(p)}` };
    }
  }
  if (allows === 0) return ALLOWED;
  for (const p of policies) {
    if (!p.dryRun && p.action === 'Allow' && policyMatches(p, subject)) return ALLOWED;
  }
  return { allowed: false, policy: undefined, reason: 'allow policies exist, but none allowed' };
}

const ALLOWED: Decision = { allowed: true };

/** Any rule; every clause of the rule; any non-empty match of the clause. */
export function matches(p: Authorization, conn: L4Connection): boolean {
  return policyMatches(p, new Subject(conn));
}

function policyMatches(p: Authorization, s: Subject): boolean {
  for (const rule of p.rules) if (ruleMatches(rule, s)) return true;
  return false;
}

function ruleMatches(rule: Rule, s: Subject): boolean {
  for (const clause of rule) {
    if (clause.length === 0) continue;
    let any = false;
    for (const m of clause) {
      if (matchOne(m, s)) {
        any = true;
        break;
      }
    }
    if (!any) return false;
  }
  return true;
}

/**
 * The connection as the matchers compare it, each form computed at most once per evaluation and only
 * if a policy asks for it (the principal string, the addresses as bytes).
 */
class Subject {
  readonly conn: L4Connection;
  private principalText: string | undefined;
  private srcBytes: Uint8Array | null | undefined;
  private dstBytes: Uint8Array | null | undefined;

  constructor(conn: L4Connection) {
    this.conn = conn;
  }

  /** `<td>/ns/<ns>/sa/<sa>` (no `spiffe://`, as policies write it); '' without an identity. */
  get principal(): string {
    if (this.principalText === undefined) {
      const id = this.conn.srcIdentity;
      this.principalText = id ? principalOf(id) : '';
    }
    return this.principalText;
  }

  get src(): Uint8Array | null {
    if (this.srcBytes === undefined) this.srcBytes = addressBytes(this.conn.srcIp) ?? null;
    return this.srcBytes;
  }

  get dst(): Uint8Array | null {
    if (this.dstBytes === undefined) this.dstBytes = addressBytes(this.conn.dstIp) ?? null;
    return this.dstBytes;
  }
}

/** Per identity object: an HBONE session's peer identity is one object for all its streams. */
const principals = new WeakMap<Identity, string>();

function principalOf(id: Identity): string {
  let p = principals.get(id);
  if (p === undefined) {
    p = formatSpiffe(id).slice('spiffe://'.length);
    principals.set(id, p);
  }
  return p;
}

const emptiness = new WeakMap<Match, boolean>();

function isEmpty(m: Match): boolean {
  let empty = emptiness.get(m);
  if (empty === undefined) {
    empty = Object.values(m).every((v: readonly unknown[]) => v.length === 0);
    emptiness.set(m, empty);
  }
  return empty;
}

/**
 * Every field present must pass: its positive list if any entry matches (or it is empty), its negative
 * list if none does (or it is empty). No closures, and the connection's forms (principal, address
 * bytes) are asked for only by a field that is present: this is the per-connection hot path.
 */
function matchOne(m: Match, s: Subject): boolean {
  // An empty match group never matches (reference/ztunnel.md §6; istio/istio#61126).
  if (isEmpty(m)) return false;
  const id = s.conn.srcIdentity;
  return (
    (absent(m.namespaces, m.notNamespaces) ||
      passes(m.namespaces, m.notNamespaces, anyString, id?.namespace ?? '')) &&
    (absent(m.principals, m.notPrincipals) ||
      passes(m.principals, m.notPrincipals, anyString, s.principal)) &&
    (absent(m.serviceAccounts, m.notServiceAccounts) ||
      passes(m.serviceAccounts, m.notServiceAccounts, anyServiceAccount, id)) &&
    (absent(m.sourceIps, m.notSourceIps) || passes(m.sourceIps, m.notSourceIps, anyCidr, s.src)) &&
    (absent(m.destinationIps, m.notDestinationIps) ||
      passes(m.destinationIps, m.notDestinationIps, anyCidr, s.dst)) &&
    passes(m.destinationPorts, m.notDestinationPorts, anyPort, s.conn.dstPort)
  );
}

function absent(positive: readonly unknown[], negative: readonly unknown[]): boolean {
  return positive.length === 0 && negative.length === 0;
}

function passes<T, V>(
  positive: readonly T[],
  negative: readonly T[],
  any: (list: readonly T[], value: V) => boolean,
  value: V,
): boolean {
  return (positive.length === 0 || any(positive, value)) && (negative.length === 0 || !any(negative, value));
}

function anyString(list: readonly StringMatch[], value: string): boolean {
  for (const m of list) if (stringMatches(m, value)) return true;
  return false;
}

/** Namespace and service account equality with the peer identity; no identity matches nothing. */
function anyServiceAccount(list: readonly ServiceAccountMatch[], id: Identity | undefined): boolean {
  if (id === undefined) return false;
  for (const x of list)
    if (x.namespace === id.namespace && x.serviceAccount === id.serviceAccount) return true;
  return false;
}

function anyCidr(list: readonly Cidr[], ip: Uint8Array | null): boolean {
  for (const c of list) if (bytesInCidr(ip, c)) return true;
  return false;
}

function anyPort(list: readonly number[], port: number): boolean {
  return list.includes(port);
}

export function stringMatches(m: StringMatch, value: string): boolean {
  switch (m.kind) {
    case 'exact':
      return value === m.value;
    case 'prefix':
      return value.startsWith(m.value);
    case 'suffix':
      return value.endsWith(m.value);
    case 'presence':
      return value !== '';
  }
}

/** CIDR containment for IPv4 and IPv6; an address of the other family never matches. */
export function inCidr(ip: string, cidr: Cidr): boolean {
  return bytesInCidr(addressBytes(ip) ?? null, cidr);
}

const V4_MAPPED = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

/** The address in network order; an IPv4-mapped IPv6 address is taken as the IPv4 address it carries. */
function addressBytes(ip: string): Uint8Array | undefined {
  return ipv4Bytes(ip) ?? ipToBytes(V4_MAPPED.exec(ip)?.[1] ?? ip);
}

/**
 * A dotted quad parsed by hand: pod addresses are almost always IPv4, and the general parser (isIP,
 * split, Buffer) costs more than the rest of an evaluation. Anything unusual falls through to it.
 */
function ipv4Bytes(ip: string): Uint8Array | undefined {
  const out = new Uint8Array(4);
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46 /* . */) {
      if (digits === 0 || part === 3) return undefined;
      out[part++] = value;
      value = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      // No leading zeros (isIP refuses them too) and at most 255.
      if ((digits > 0 && value === 0) || digits === 3) return undefined;
      value = value * 10 + (c - 48);
      digits++;
      if (value > 255) return undefined;
    } else return undefined;
  }
  if (part !== 3 || digits === 0) return undefined;
  out[3] = value;
  return out;
}

interface Network {
  readonly bytes: Uint8Array;
  readonly prefixLength: number;
}

/** Parsed CIDRs, per model object: a policy's CIDRs are parsed once, not per connection. */
const networks = new WeakMap<Cidr, Network | null>();

function network(cidr: Cidr): Network | null {
  let n = networks.get(cidr);
  if (n === undefined) {
    const bytes = addressBytes(cidr.address);
    // An IPv4-mapped IPv6 CIDR (::ffff:a.b.c.d/104) was converted to IPv4: its prefix shrinks by 96.
    const prefixLength = V4_MAPPED.test(cidr.address) ? cidr.prefixLength - 96 : cidr.prefixLength;
    n = bytes && prefixLength >= 0 ? { bytes, prefixLength: Math.min(prefixLength, bytes.length * 8) } : null;
    networks.set(cidr, n);
  }
  return n;
}

function bytesInCidr(ip: Uint8Array | null, cidr: Cidr): boolean {
  const net = network(cidr);
  if (!ip || !net || ip.length !== net.bytes.length) return false;
  const whole = net.prefixLength >> 3;
  for (let i = 0; i < whole; i++) if (ip[i] !== net.bytes[i]) return false;
  const bits = net.prefixLength & 7;
  if (bits === 0) return true;
  const mask = (0xff << (8 - bits)) & 0xff;
  return (ip[whole]! & mask) === (net.bytes[whole]! & mask);
}
