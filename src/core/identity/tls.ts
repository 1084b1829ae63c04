import { createSecureContext, type PeerCertificate, type SecureContext, type TLSSocket } from 'node:tls';
import type { WorkloadCertificate } from './certificate.ts';
import { formatSpiffe, identityFromSubjectAltName, uriSans, type Identity } from './spiffe.ts';

/** HBONE's TLS profile (reference/ztunnel.md §2.1): TLS 1.3 only, AES-GCM suites, ALPN h2. */
export const HBONE_TLS = {
  minVersion: 'TLSv1.3',
  maxVersion: 'TLSv1.3',
  ciphers: 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384',
  alpn: 'h2',
} as const;

/** TLS options for a workload certificate: the key, the chain we present, the roots we trust. */
export function hboneTlsOptions(cert: WorkloadCertificate) {
  return {
    key: cert.keyPem,
    cert: cert.chainPem.join('\n'),
    ca: cert.rootsPem,
    minVersion: HBONE_TLS.minVersion,
    maxVersion: HBONE_TLS.maxVersion,
    ciphers: HBONE_TLS.ciphers,
  };
}

const contexts = new WeakMap<WorkloadCertificate, SecureContext>();

/**
 * One SecureContext per certificate, created once: building a context costs more than a handshake
 * (reference/performance.md), so it is never done per connection.
 */
export function secureContextFor(cert: WorkloadCertificate): SecureContext {
  let ctx = contexts.get(cert);
  if (!ctx) {
    ctx = createSecureContext(hboneTlsOptions(cert));
    contexts.set(cert, ctx);
  }
  return ctx;
}

/**
 * The client's check of the server (reference/ztunnel.md §2.1): the chain was already verified against
 * our roots by OpenSSL; here any URI SAN must equal any expected identity. DNS names are ignored.
 * Returns an Error to abort the handshake, as `checkServerIdentity` expects.
 */
export function checkServerIdentities(expected: readonly string[], cert: PeerCertificate): Error | undefined {
  const sans = uriSans(cert.subjectaltname);
  if (sans.some((s) => expected.includes(s))) return undefined;
  const err = new Error(
    `server identity ${sans.length ? sans.join(',') : '(no URI SAN)'} is not the expected ${expected.join(' or ')}`,
  );
  (err as NodeJS.ErrnoException).code = 'ERR_TLS_CERT_ALTNAME_INVALID';
  return err;
}

export type PeerCheck = { ok: true; identity: Identity } | { ok: false; reason: string };

/**
 * The server's check of a client after OpenSSL verified its chain: it must carry a SPIFFE identity in
 * our trust domain.
 */
export function checkClientIdentity(socket: TLSSocket, trustDomain: string): PeerCheck {
  if (!socket.authorized) {
    return {
      ok: false,
      reason: `client certificate rejected: ${String(socket.authorizationError ?? 'none sent')}`,
    };
  }
  const identity = identityFromSubjectAltName(socket.getPeerCertificate().subjectaltname);
  if (!identity) return { ok: false, reason: 'client certificate carries no SPIFFE identity' };
  if (identity.trustDomain !== trustDomain) {
    return { ok: false, reason: `client ${formatSpiffe(identity)} is not in trust domain ${trustDomain}` };
  }
  return { ok: true, identity };
}
