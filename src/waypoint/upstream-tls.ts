/**
 * TLS origination to a cluster's endpoints (DestinationRule `tls` SIMPLE or MUTUAL, as the Cluster's
 * UpstreamTlsContext carries it): the handshake runs over the byte stream upstream.ts opened — an
 * HBONE CONNECT stream for a mesh endpoint (TLS inside the tunnel, as istiod's `hbone` transport
 * socket match wraps the user's TLS), a TCP connection for one outside the mesh.
 *
 * Envoy's rules: the SNI is `sni`, or with auto_sni the request's host without its port (never an IP
 * address); the chain is verified against `trusted_ca`, or the system roots, or not at all when no
 * validation context is configured; the SAN matchers (any SAN of the type, DNS names with `*.`
 * wildcards) or, with none and auto_san_validation, the SNI host must match the certificate.
 * A failed handshake is a connect failure whose transport failure reason goes into the 503 body, as
 * Envoy's `TLS_error:|…:TLS_error_end`.
 *
 * Certificates, keys and roots are read from their files when a connection opens and the secure
 * context is cached by the files' modification times, so a rotated file is used by the next
 * connection.
 */
import { stat, readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  checkServerIdentity,
  connect as tlsConnect,
  createSecureContext,
  type PeerCertificate,
  type SecureContext,
  type TLSSocket,
} from 'node:tls';
import { AmbitError, describeError, ErrorCode } from '../core/errors.ts';
import { stringMatches } from '../core/policy/l7.ts';
import type { PemSource, SanMatcher, UpstreamTls } from '../core/xds/l7-model.ts';

/** What one connection's handshake needs: the cluster's TLS and the request's host (auto_sni). */
export interface TlsOrigination {
  readonly tls: UpstreamTls;
  /** The SNI and auto-SAN name; undefined: none. */
  readonly serverName: string | undefined;
  /** Offered ALPN protocols, most preferred first. */
  readonly alpn: readonly string[];
}

/** A handshake that failed: an UpstreamConnectFailed error with Envoy's transport failure reason. */
export class TlsOriginationError extends AmbitError {
  /** `TLS_error:|<reason>:TLS_error_end`, as Envoy reports it. */
  readonly transportFailureReason: string;

  constructor(message: string, reason: string, cause?: unknown) {
    super(ErrorCode.UpstreamConnectFailed, message, { cause });
    this.transportFailureReason = `TLS_error:|${reason}:TLS_error_end`;
  }
}

/**
 * The SNI for a connection: the configured one, else (auto_sni) the host of `authority`; IP
 * addresses are never sent (RFC 6066). Pure.
 */
export function serverNameFor(tls: UpstreamTls, authority: string | undefined): string | undefined {
  if (tls.sni) return tls.sni;
  if (!tls.autoSni || !authority) return undefined;
  const host = hostOf(authority);
  return host && isIP(host) === 0 ? host : undefined;
}

/** `host` of `host[:port]` or `[v6][:port]`, lower-cased. */
function hostOf(authority: string): string {
  if (authority.startsWith('[')) return authority.slice(1, authority.indexOf(']')).toLowerCase();
  const colon = authority.lastIndexOf(':');
  const host = colon >= 0 && authority.indexOf(':') === colon ? authority.slice(0, colon) : authority;
  return host.toLowerCase();
}

/** ALPN to offer: the configured list, else the one protocol the waypoint will speak. Pure. */
export function alpnFor(tls: UpstreamTls, speaks: 'http/1.1' | 'h2' | undefined): readonly string[] {
  if (tls.alpnProtocols.length) return tls.alpnProtocols;
  return speaks ? [speaks] : [];
}

/** Node's `subjectaltname` ("DNS:a, IP Address:1.2.3.4, URI:…") as typed entries. Pure. */
export function parseSubjectAltNames(
  text: string | undefined,
): { readonly type: NonNullable<SanMatcher['type']>; readonly value: string }[] {
  const out: { type: NonNullable<SanMatcher['type']>; value: string }[] = [];
  if (!text) return out;
  const types: Record<string, NonNullable<SanMatcher['type']>> = {
    DNS: 'DNS',
    'IP Address': 'IP_ADDRESS',
    URI: 'URI',
    email: 'EMAIL',
  };
  // Values with a comma or quote are JSON-quoted by Node.
  const entry = /(DNS|IP Address|URI|email|[^:,]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/gy;
  let m: RegExpExecArray | null;
  while ((m = entry.exec(text)) !== null && m[0] !== '') {
    const type = types[m[1]!];
    const raw = m[2]!;
    if (type) out.push({ type, value: raw.startsWith('"') ? (JSON.parse(raw) as string) : raw });
  }
  return out;
}

/** Envoy's DNS SAN match for an exact name: equal, or a `*.` wildcard for one leftmost label. */
function dnsNameMatch(name: string, san: string): boolean {
  const n = name.toLowerCase();
  const s = san.toLowerCase();
  if (n === s) return true;
  if (!s.startsWith('*.')) return false;
  const dot = n.indexOf('.');
  return dot > 0 && n.slice(dot) === s.slice(1);
}

/** Envoy's SAN match: an exact matcher on a DNS SAN honours the certificate's `*.` wildcard. */
function matches(m: SanMatcher['matcher'], value: string, dns: boolean): boolean {
  return dns && m.kind === 'exact' && !m.ignoreCase ? dnsNameMatch(m.value, value) : stringMatches(m, value);
}

/**
 * Whether the server's certificate is acceptable beyond its chain: a SAN matcher matches, or with
 * none and auto_san_validation the certificate is valid for `serverName`. Returns why not. Pure.
 */
export function checkPeerIdentity(
  tls: UpstreamTls,
  serverName: string | undefined,
  cert: Pick<PeerCertificate, 'subjectaltname' | 'subject'>,
): string | undefined {
  const verify = tls.verify;
  if (!verify) return undefined;
  if (verify.subjectAltNames.length > 0) {
    const sans = parseSubjectAltNames(cert.subjectaltname);
    const ok = verify.subjectAltNames.some((m) =>
      sans.some(
        (s) => (m.type === undefined || m.type === s.type) && matches(m.matcher, s.value, s.type === 'DNS'),
      ),
    );
    return ok
      ? undefined
      : `certificate SANs (${cert.subjectaltname ?? 'none'}) match none of ${verify.subjectAltNames
          .map(
            (m) =>
              (m.type ? `${m.type}:` : '') + (m.matcher.kind === 'regex' ? m.matcher.regex : m.matcher.value),
          )
          .join(', ')}`;
  }
  if (tls.autoSanValidation && serverName) {
    const err = checkServerIdentity(serverName, cert as PeerCertificate);
    return err ? err.message : undefined;
  }
  return undefined;
}

interface CachedContext {
  readonly key: string;
  readonly context: SecureContext;
}

/** Builds and caches secure contexts (by files and their modification times). */
export class TlsContexts {
  private readonly cache = new Map<string, CachedContext>();
  private static readonly MAX_ENTRIES = 64;

  /** The secure context for `tls`, reading its files if they changed. */
  async contextFor(tls: UpstreamTls): Promise<SecureContext> {
    const sources = [
      tls.verify?.trustedCa,
      tls.verify?.crl,
      tls.clientCertificate?.certificateChain,
      tls.clientCertificate?.privateKey,
    ];
    const stamps = await Promise.all(sources.map((s) => stampOf(s)));
    const key = JSON.stringify([
      stamps,
      tls.minVersion,
      tls.maxVersion,
      tls.cipherSuites,
      tls.ecdhCurves,
      tls.verify === undefined,
    ]);
    const hit = this.cache.get(key);
    if (hit) return hit.context;
    const [ca, crl, cert, privateKey] = await Promise.all(sources.map((s) => pemOf(s)));
    const context = createSecureContext({
      ...(ca !== undefined ? { ca } : {}),
      ...(crl !== undefined ? { crl } : {}),
      ...(cert !== undefined && privateKey !== undefined ? { cert, key: privateKey } : {}),
      ...(tls.minVersion ? { minVersion: tls.minVersion } : {}),
      ...(tls.maxVersion ? { maxVersion: tls.maxVersion } : {}),
      ...(tls.cipherSuites.length ? { ciphers: tls.cipherSuites.join(':') } : {}),
      ...(tls.ecdhCurves.length ? { ecdhCurve: tls.ecdhCurves.join(':') } : {}),
    });
    if (this.cache.size >= TlsContexts.MAX_ENTRIES) this.cache.clear();
    this.cache.set(key, { key, context });
    return context;
  }
}

async function stampOf(s: PemSource | undefined): Promise<string> {
  if (s === undefined) return '';
  if (s.kind === 'inline') return `inline:${s.pem}`;
  try {
    const st = await stat(s.path);
    return `${s.path}@${st.mtimeMs}:${st.size}`;
  } catch (err) {
    throw new TlsOriginationError(
      `cannot read ${s.path}: ${describeError(err)}`,
      `CONFIGURATION_ERROR: cannot read ${s.path}`,
      err,
    );
  }
}

async function pemOf(s: PemSource | undefined): Promise<string | undefined> {
  if (s === undefined) return undefined;
  if (s.kind === 'inline') return s.pem;
  return readFile(s.path, 'utf8');
}

/** Node's verification error codes, which Envoy (BoringSSL) reports as CERTIFICATE_VERIFY_FAILED. */
const VERIFY_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * Runs the client handshake over `stream` and resolves with the TLS socket once it is up (and,
 * when the cluster must speak h2, once the server chose it). Rejects with a TlsOriginationError.
 */
export async function originateTls(
  stream: Duplex,
  o: TlsOrigination,
  contexts: TlsContexts,
  where: string,
  timeoutMs: number,
  requireAlpn: string | undefined,
): Promise<TLSSocket> {
  let secureContext: SecureContext;
  try {
    secureContext = await contexts.contextFor(o.tls);
  } catch (err) {
    stream.destroy();
    if (err instanceof TlsOriginationError) throw err;
    throw new TlsOriginationError(
      `tls to ${where}: bad certificate configuration: ${describeError(err)}`,
      `CONFIGURATION_ERROR: ${describeError(err)}`,
      err,
    );
  }
  const verify = o.tls.verify !== undefined;
  return new Promise<TLSSocket>((resolve, reject) => {
    let identityError: string | undefined;
    const socket = tlsConnect({
      socket: stream,
      secureContext,
      ...(o.serverName ? { servername: o.serverName } : {}),
      ...(o.alpn.length ? { ALPNProtocols: [...o.alpn] } : {}),
      rejectUnauthorized: verify,
      checkServerIdentity: (_host, cert) => {
        identityError = checkPeerIdentity(o.tls, o.serverName, cert);
        return identityError === undefined
          ? undefined
          : Object.assign(new Error(identityError), {
              code: 'ERR_TLS_CERT_ALTNAME_INVALID',
            });
      },
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new TlsOriginationError(
          `tls handshake with ${where} timed out after ${timeoutMs} ms`,
          'HANDSHAKE_TIMEOUT',
        ),
      );
    }, timeoutMs);
    const onError = (err: Error & { code?: string }) => {
      clearTimeout(timer);
      socket.destroy();
      const code = err.code ?? 'SSL_ERROR';
      const reason = VERIFY_CODES.has(code) ? `CERTIFICATE_VERIFY_FAILED: ${identityError ?? code}` : code;
      reject(
        new TlsOriginationError(`tls handshake with ${where} failed: ${describeError(err)}`, reason, err),
      );
    };
    socket.once('error', onError);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      if (requireAlpn && socket.alpnProtocol !== requireAlpn) {
        socket.destroy();
        reject(
          new TlsOriginationError(
            `tls to ${where}: the server did not choose ALPN ${requireAlpn} (chose ${socket.alpnProtocol || 'none'})`,
            'ALPN_MISMATCH',
          ),
        );
        return;
      }
      socket.off('error', onError);
      resolve(socket);
    });
  });
}
