/**
 * Protocol detection for workload-addressed tunnels (issue 5), as Envoy's http_inspector decides
 * between istiod's `direct-http` and `direct-tcp` filter chains: the client's first bytes are HTTP
 * when they are HTTP/2's connection preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, h2c and gRPC) or an
 * HTTP/1.x request line (`<method> <target> HTTP/1.<d>\r\n`); anything that cannot begin either —
 * a TLS ClientHello, a binary protocol, a line that is not a request line — is TCP as soon as a
 * byte says so. Pure: the caller (direct.ts) feeds what has arrived and owns the timeout.
 *
 * Server-first protocols (MySQL, SMTP, …) send nothing until the server speaks, so they cannot be
 * sniffed: the caller takes the tunnel as TCP when no decision has come within the detection
 * timeout (Envoy's listener_filters_timeout with continue_on_listener_filters_timeout), and when the
 * client half-closes before a decision.
 */

/** What the bytes so far say. `more`: they could still begin either. */
export type Sniffed = 'h2' | 'http1' | 'tcp' | 'more';

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/**
 * A request line longer than this without its end is not sniffed as HTTP (Envoy's inspector reads
 * at most 64 KiB; request targets beyond 8 KiB are refused by most servers anyway).
 */
export const MAX_REQUEST_LINE_BYTES = 8192;

/** RFC 9110 §5.6.2 tchar: the characters of a method token. */
function isTchar(b: number): boolean {
  return (
    (b >= 0x30 && b <= 0x39) || // 0-9
    (b >= 0x41 && b <= 0x5a) || // A-Z
    (b >= 0x61 && b <= 0x7a) || // a-z
    "!#$%&'*+-.^_`|~".includes(String.fromCharCode(b))
  );
}

/** Classifies the first bytes of a connection. */
export function sniffProtocol(bytes: Uint8Array): Sniffed {
  if (bytes.length === 0) return 'more';
  const n = Math.min(bytes.length, H2_PREFACE.length);
  if (Buffer.from(bytes.buffer, bytes.byteOffset, n).equals(H2_PREFACE.subarray(0, n)))
    return bytes.length >= H2_PREFACE.length ? 'h2' : 'more';
  return sniffRequestLine(bytes);
}

/** `<method> SP <target> SP HTTP/1.<digit> CRLF`, read byte by byte so a prefix can say `more`. */
function sniffRequestLine(b: Uint8Array): Sniffed {
  let i = 0;
  // Method: one or more tchars, then a space.
  while (i < b.length && isTchar(b[i]!)) i++;
  if (i === b.length) return i > MAX_REQUEST_LINE_BYTES ? 'tcp' : 'more';
  if (i === 0 || b[i] !== 0x20) return 'tcp';
  i++;
  // Target: visible characters (no spaces, no controls).
  const targetStart = i;
  while (i < b.length && b[i]! > 0x20 && b[i]! < 0x7f) i++;
  if (i === b.length) return i > MAX_REQUEST_LINE_BYTES ? 'tcp' : 'more';
  if (i === targetStart || b[i] !== 0x20) return 'tcp';
  i++;
  // Version and the line's end.
  const rest = 'HTTP/1.';
  for (let k = 0; k < rest.length; k++, i++) {
    if (i === b.length) return 'more';
    if (b[i] !== rest.charCodeAt(k)) return 'tcp';
  }
  if (i === b.length) return 'more';
  if (b[i]! < 0x30 || b[i]! > 0x39) return 'tcp';
  i++;
  if (i === b.length) return 'more';
  if (b[i] === 0x0a) return 'http1'; // a bare LF ends the line too (RFC 9112 §2.2)
  if (b[i] !== 0x0d) return 'tcp';
  i++;
  if (i === b.length) return 'more';
  return b[i] === 0x0a ? 'http1' : 'tcp';
}
