/**
 * The server name of a TLS ClientHello, read without terminating TLS (PASSTHROUGH servers route on
 * it, as Envoy's tls_inspector does). Pure and bounded: every length is checked against the bytes
 * there are, the handshake may span records, and at most MAX_CLIENT_HELLO_BYTES are looked at, so
 * any input ends in an answer (RFC 8446 §4.1.2 and §5.1, RFC 6066 §3).
 */

/** A ClientHello larger than this (Envoy's tls_inspector default limit is 64 KiB) is refused. */
export const MAX_CLIENT_HELLO_BYTES = 64 * 1024;

export type SniResult =
  /** More bytes are needed. */
  | { readonly kind: 'more' }
  /** A ClientHello; `serverName` is '' when it names none. */
  | { readonly kind: 'hello'; readonly serverName: string }
  /** Not a TLS ClientHello (or a malformed one), with why. */
  | { readonly kind: 'invalid'; readonly reason: string };

const RECORD_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
const EXT_SERVER_NAME = 0;
const NAME_TYPE_HOST = 0;

/** Reads the bytes received so far; call again with more on `more`. */
export function readClientHello(bytes: Uint8Array): SniResult {
  // The handshake message, put together from the payloads of the records seen so far.
  const parts: Uint8Array[] = [];
  let have = 0;
  let pos = 0;
  let need = -1;
  while (need < 0 || have < need) {
    if (pos + 5 > bytes.length) return more(bytes);
    if (bytes[pos] !== RECORD_HANDSHAKE) return invalid('not a TLS handshake record');
    if (bytes[pos + 1] !== 3) return invalid('not a TLS record version');
    const length = (bytes[pos + 3]! << 8) | bytes[pos + 4]!;
    if (length === 0 || length > 16384 + 2048) return invalid('a TLS record length out of range');
    if (pos + 5 + length > bytes.length) return more(bytes);
    parts.push(bytes.subarray(pos + 5, pos + 5 + length));
    have += length;
    pos += 5 + length;
    if (need < 0 && have >= 4) {
      const head = concat(parts, 4);
      if (head[0] !== HANDSHAKE_CLIENT_HELLO)
        return invalid('the first handshake message is not a ClientHello');
      need = 4 + ((head[1]! << 16) | (head[2]! << 8) | head[3]!);
      if (need > MAX_CLIENT_HELLO_BYTES) return invalid('the ClientHello is too large');
    }
  }
  return parseClientHello(concat(parts, need).subarray(4));
}

function more(bytes: Uint8Array): SniResult {
  return bytes.length >= MAX_CLIENT_HELLO_BYTES + 5 * 8
    ? invalid('no complete ClientHello within the size limit')
    : { kind: 'more' };
}

function invalid(reason: string): SniResult {
  return { kind: 'invalid', reason };
}

function concat(parts: readonly Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let off = 0;
  for (const p of parts) {
    if (off >= length) break;
    const n = Math.min(p.length, length - off);
    out.set(p.subarray(0, n), off);
    off += n;
  }
  return out;
}

/** The ClientHello body: version, random, session id, cipher suites, compression, extensions. */
function parseClientHello(b: Uint8Array): SniResult {
  let pos = 2 + 32;
  const skip = (lengthBytes: 1 | 2): boolean => {
    if (pos + lengthBytes > b.length) return false;
    const n = lengthBytes === 1 ? b[pos]! : (b[pos]! << 8) | b[pos + 1]!;
    pos += lengthBytes + n;
    return pos <= b.length;
  };
  if (pos > b.length || !skip(1) || !skip(2) || !skip(1))
    return invalid('the ClientHello is truncated before its extensions');
  // No extensions at all: a ClientHello without SNI.
  if (pos === b.length) return { kind: 'hello', serverName: '' };
  if (pos + 2 > b.length) return invalid('the ClientHello extensions are truncated');
  const end = pos + 2 + ((b[pos]! << 8) | b[pos + 1]!);
  if (end > b.length) return invalid('the ClientHello extensions are truncated');
  pos += 2;
  while (pos + 4 <= end) {
    const type = (b[pos]! << 8) | b[pos + 1]!;
    const length = (b[pos + 2]! << 8) | b[pos + 3]!;
    pos += 4;
    if (pos + length > end) return invalid('a ClientHello extension is truncated');
    if (type === EXT_SERVER_NAME) return serverName(b.subarray(pos, pos + length));
    pos += length;
  }
  return { kind: 'hello', serverName: '' };
}

/** The server_name extension: a list of (type, name); the host_name entry counts. */
function serverName(e: Uint8Array): SniResult {
  if (e.length < 2) return invalid('the server_name extension is truncated');
  const end = 2 + ((e[0]! << 8) | e[1]!);
  if (end > e.length) return invalid('the server_name list is truncated');
  let pos = 2;
  while (pos + 3 <= end) {
    const type = e[pos]!;
    const length = (e[pos + 1]! << 8) | e[pos + 2]!;
    pos += 3;
    if (pos + length > end) return invalid('a server name is truncated');
    if (type === NAME_TYPE_HOST) {
      const name = Buffer.from(e.subarray(pos, pos + length)).toString('latin1');
      if (!/^[A-Za-z0-9.*_-]{1,253}$/.test(name)) return invalid('the server name is not a DNS name');
      return { kind: 'hello', serverName: name.toLowerCase() };
    }
    pos += length;
  }
  return { kind: 'hello', serverName: '' };
}
