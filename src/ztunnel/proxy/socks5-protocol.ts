/**
 * SOCKS5 (RFC 1928) framing for the agent's SOCKS listener: no-auth only, CONNECT only, IPv4, IPv6
 * and domain targets. Pure parsers over buffers: they say "need more bytes", "error with reply code",
 * or the parsed message and how many bytes it used.
 */

import { ipFromBytes } from '../../core/ip.ts';

export const SocksReply = {
  Succeeded: 0,
  GeneralFailure: 1,
  NotAllowed: 2,
  NetworkUnreachable: 3,
  HostUnreachable: 4,
  ConnectionRefused: 5,
  TtlExpired: 6,
  CommandNotSupported: 7,
  AddressTypeNotSupported: 8,
} as const;
export type SocksReply = (typeof SocksReply)[keyof typeof SocksReply];

const VERSION = 5;
const NO_AUTH = 0;
export const NO_ACCEPTABLE_METHOD = 0xff;
const CMD_CONNECT = 1;
const ATYP_IPV4 = 1;
const ATYP_DOMAIN = 3;
const ATYP_IPV6 = 4;

export type Parse<T> =
  | { readonly kind: 'more' }
  | { readonly kind: 'error'; readonly reason: string; readonly reply: SocksReply | undefined }
  | ({ readonly kind: 'ok'; readonly consumed: number } & T);

/** Client greeting: VER NMETHODS METHODS… */
export function parseGreeting(buf: Uint8Array): Parse<{ noAuthOffered: boolean }> {
  if (buf.length < 2) return { kind: 'more' };
  if (buf[0] !== VERSION)
    return { kind: 'error', reason: `not SOCKS5 (version byte ${buf[0]})`, reply: undefined };
  const n = buf[1]!;
  if (n === 0) return { kind: 'error', reason: 'greeting offers no methods', reply: undefined };
  if (buf.length < 2 + n) return { kind: 'more' };
  const methods = buf.subarray(2, 2 + n);
  return { kind: 'ok', consumed: 2 + n, noAuthOffered: methods.includes(NO_AUTH) };
}

export type SocksTarget =
  | { readonly kind: 'ip'; readonly ip: string; readonly port: number }
  | { readonly kind: 'hostname'; readonly hostname: string; readonly port: number };

/** Request: VER CMD RSV ATYP DST.ADDR DST.PORT */
export function parseRequest(buf: Uint8Array): Parse<{ target: SocksTarget }> {
  if (buf.length < 4) return { kind: 'more' };
  if (buf[0] !== VERSION)
    return { kind: 'error', reason: `bad request version ${buf[0]}`, reply: SocksReply.GeneralFailure };
  if (buf[1] !== CMD_CONNECT) {
    return {
      kind: 'error',
      reason: `command ${buf[1]} is not CONNECT`,
      reply: SocksReply.CommandNotSupported,
    };
  }
  const atyp = buf[3];
  let addrEnd: number;
  let target: (port: number) => SocksTarget;
  if (atyp === ATYP_IPV4) {
    addrEnd = 8;
    if (buf.length < addrEnd + 2) return { kind: 'more' };
    const ip = Array.from(buf.subarray(4, 8)).join('.');
    target = (port) => ({ kind: 'ip', ip, port });
  } else if (atyp === ATYP_IPV6) {
    addrEnd = 20;
    if (buf.length < addrEnd + 2) return { kind: 'more' };
    const bytes = buf.subarray(4, 20);
    // An IPv4-mapped address names an IPv4 destination: look it up as one.
    const v4mapped = bytes.subarray(0, 10).every((x) => x === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
    const ip = ipFromBytes(v4mapped ? bytes.subarray(12) : bytes)!;
    target = (port) => ({ kind: 'ip', ip, port });
  } else if (atyp === ATYP_DOMAIN) {
    if (buf.length < 5) return { kind: 'more' };
    const len = buf[4]!;
    if (len === 0) return { kind: 'error', reason: 'empty domain name', reply: SocksReply.HostUnreachable };
    addrEnd = 5 + len;
    if (buf.length < addrEnd + 2) return { kind: 'more' };
    const hostname = Buffer.from(buf.subarray(5, addrEnd)).toString('latin1');
    if (!/^[A-Za-z0-9.-]+$/.test(hostname)) {
      return {
        kind: 'error',
        reason: 'domain name has invalid characters',
        reply: SocksReply.HostUnreachable,
      };
    }
    target = (port) => ({ kind: 'hostname', hostname, port });
  } else {
    return {
      kind: 'error',
      reason: `address type ${atyp} is not supported`,
      reply: SocksReply.AddressTypeNotSupported,
    };
  }
  const port = (buf[addrEnd]! << 8) | buf[addrEnd + 1]!;
  if (port === 0) return { kind: 'error', reason: 'port 0', reply: SocksReply.HostUnreachable };
  return { kind: 'ok', consumed: addrEnd + 2, target: target(port) };
}

export function methodSelection(noAuth: boolean): Buffer {
  return Buffer.from([VERSION, noAuth ? NO_AUTH : NO_ACCEPTABLE_METHOD]);
}

/** A reply with bound address 0.0.0.0:0 (the client does not use it). */
export function formatReply(code: SocksReply): Buffer {
  return Buffer.from([VERSION, code, 0, ATYP_IPV4, 0, 0, 0, 0, 0, 0]);
}
