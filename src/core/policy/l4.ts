/**
 * L4 authorization as ztunnel evaluates it (reference/ztunnel.md §6). Pure: policies and connection
 * facts in, a decision out.
 */
import { ipToBytes } from '../ip.ts';
import { formatSpiffe, type Identity } from '../identity/spiffe.ts';
import { policyKey, type Authorization, type Cidr, type Match, type StringMatch } from '../xds/model.ts';

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

export function evaluateL4(policies: readonly Authorization[], conn: L4Connection): Decision {
  const enforced = policies.filter((p) => !p.dryRun);
  for (const p of enforced) {
    if (p.action === 'Deny' && matches(p, conn)) {
      return { allowed: false, policy: policyKey(p), reason: `explicitly denied by ${policyKey(p)}` };
    }
  }
  const allows = enforced.filter((p) => p.action === 'Allow');
  if (allows.length === 0) return { allowed: true };
  if (allows.some((p) => matches(p, conn))) return { allowed: true };
  return { allowed: false, policy: undefined, reason: 'allow policies exist, but none allowed' };
}

/** Any rule; every clause of the rule; any non-empty match of the clause. */
export function matches(p: Authorization, conn: L4Connection): boolean {
  return p.rules.some((rule) =>
    rule.every((clause) => clause.length === 0 || clause.some((m) => matchOne(m, conn))),
  );
}

function isEmpty(m: Match): boolean {
  return Object.values(m).every((v: readonly unknown[]) => v.length === 0);
}

function matchOne(m: Match, c: L4Connection): boolean {
  // An empty match group never matches (reference/ztunnel.md §6; istio/istio#61126).
  if (isEmpty(m)) return false;
  const principal = c.srcIdentity ? formatSpiffe(c.srcIdentity).slice('spiffe://'.length) : '';
  const ns = c.srcIdentity?.namespace ?? '';
  const sa = (x: { namespace: string; serviceAccount: string }) =>
    c.srcIdentity !== undefined &&
    c.srcIdentity.namespace === x.namespace &&
    c.srcIdentity.serviceAccount === x.serviceAccount;
  return (
    check(m.namespaces, m.notNamespaces, (s) => stringMatches(s, ns)) &&
    check(m.principals, m.notPrincipals, (s) => stringMatches(s, principal)) &&
    check(m.serviceAccounts, m.notServiceAccounts, sa) &&
    check(m.sourceIps, m.notSourceIps, (cidr) => inCidr(c.srcIp, cidr)) &&
    check(m.destinationIps, m.notDestinationIps, (cidr) => inCidr(c.dstIp, cidr)) &&
    check(m.destinationPorts, m.notDestinationPorts, (p) => p === c.dstPort)
  );
}

function check<T>(positive: readonly T[], negative: readonly T[], test: (v: T) => boolean): boolean {
  return (positive.length === 0 || positive.some(test)) && (negative.length === 0 || !negative.some(test));
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
  const a = ipToBigInt(ip);
  const b = ipToBigInt(cidr.address);
  if (!a || !b || a.bits !== b.bits) return false;
  // An IPv4-mapped IPv6 CIDR (::ffff:a.b.c.d/104) was converted to IPv4: its prefix shrinks by 96.
  const prefixLength = V4_MAPPED.test(cidr.address) ? cidr.prefixLength - 96 : cidr.prefixLength;
  if (prefixLength < 0) return false;
  const shift = BigInt(a.bits - prefixLength);
  return a.value >> shift === b.value >> shift;
}

const V4_MAPPED = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

/** The address as a number; an IPv4-mapped IPv6 address is taken as the IPv4 address it carries. */
function ipToBigInt(ip: string): { value: bigint; bits: number } | undefined {
  const bytes = ipToBytes(V4_MAPPED.exec(ip)?.[1] ?? ip);
  if (!bytes) return undefined;
  return { value: bytes.reduce((acc, b) => (acc << 8n) | BigInt(b), 0n), bits: bytes.length * 8 };
}
