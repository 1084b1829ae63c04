/** IP addresses and CIDRs: parsing, and strings ⇄ network-order bytes (pure). */
import { isIP } from 'node:net';

/**
 * 4, 6, or 0 for anything that is not an IP address. A zone id (`fe80::1%eth0`) is not accepted:
 * mesh addresses never carry one.
 */
export function ipFamily(s: string): 0 | 4 | 6 {
  return s.includes('%') ? 0 : (isIP(s) as 0 | 4 | 6);
}

/** `a.b.c.d`, `a.b.c.d/n`, an IPv6 address, or one with `/n`; a bare address is a host route. */
export function parseCidr(v: string): { address: string; prefixLength: number } | undefined {
  const slash = v.indexOf('/');
  const address = slash >= 0 ? v.slice(0, slash) : v;
  const family = ipFamily(address);
  if (family === 0) return undefined;
  const max = family === 4 ? 32 : 128;
  if (slash < 0) return { address, prefixLength: max };
  const len = v.slice(slash + 1);
  const prefixLength = /^\d{1,3}$/.test(len) ? Number(len) : NaN;
  if (!(prefixLength >= 0 && prefixLength <= max)) return undefined;
  return { address, prefixLength };
}

/** 4 bytes for IPv4, 16 for IPv6; undefined for anything that is not an IP address. */
export function ipToBytes(ip: string): Buffer | undefined {
  const family = ipFamily(ip);
  if (family === 4) return Buffer.from(ip.split('.').map(Number));
  if (family !== 6) return undefined;
  const v4tail = /:(\d+\.\d+\.\d+\.\d+)$/.exec(ip);
  let text = ip;
  if (v4tail) {
    const o = v4tail[1]!.split('.').map(Number);
    text = `${ip.slice(0, v4tail.index)}:${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const groups = (s: string) => (s ? s.split(':') : []);
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const all = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/**
 * The text form of 4 or 16 bytes (IPv6 in RFC 5952 shortest form: lower case, the longest run of
 * two or more zero groups as "::", the first on a tie); undefined for any other length.
 */
export function ipFromBytes(b: Uint8Array): string | undefined {
  if (b.length === 4) return Array.from(b).join('.');
  if (b.length !== 16) return undefined;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) [best, bestLen] = [i, j - i];
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}
