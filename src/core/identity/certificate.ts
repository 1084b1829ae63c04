import { X509Certificate } from 'node:crypto';
import { AmbitError, ErrorCode } from '../errors.ts';
import { identityFromSubjectAltName, type Identity } from './spiffe.ts';
import { splitPem } from './x509.ts';

/** A workload's key and certificate chain, as the CA returned them (reference/ztunnel.md §3.7). */
export interface WorkloadCertificate {
  readonly identity: Identity;
  /** PKCS#8 PEM. Never logged or dumped. */
  readonly keyPem: string;
  /** Leaf first, then intermediates. */
  readonly chainPem: readonly string[];
  /** One or more concatenated roots: the trust store for every mTLS peer check. */
  readonly rootsPem: string;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
  readonly serialNumber: string;
}

/**
 * Builds a WorkloadCertificate from a CA response (`cert_chain`: leaf first, roots last) and the key
 * that signed the CSR. Checks that the leaf carries the requested identity, as ztunnel does in shared
 * mode, so a misbehaving CA cannot hand us someone else's identity.
 */
export function workloadCertificateFromChain(
  requested: Identity,
  keyPem: string,
  certChain: readonly string[],
): WorkloadCertificate {
  if (certChain.length < 2) {
    throw new AmbitError(
      ErrorCode.CertificateInvalid,
      `CA returned ${certChain.length} certificates, need leaf and root`,
    );
  }
  const blocks = certChain.map((c, i) => {
    const pems = splitPem(c);
    if (pems.length === 0)
      throw new AmbitError(ErrorCode.CertificateInvalid, `cert_chain[${i}] holds no PEM certificate`);
    return pems;
  });
  const chainPem = blocks.slice(0, -1).flat();
  const rootsPem = blocks[blocks.length - 1]!.join('\n');
  const leaf = new X509Certificate(chainPem[0]!);
  const got = identityFromSubjectAltName(leaf.subjectAltName);
  if (
    !got ||
    got.trustDomain !== requested.trustDomain ||
    got.namespace !== requested.namespace ||
    got.serviceAccount !== requested.serviceAccount
  ) {
    throw new AmbitError(
      ErrorCode.IdentityMismatch,
      `CA issued a certificate for ${leaf.subjectAltName ?? 'no SAN'} instead of the requested identity`,
    );
  }
  return {
    identity: requested,
    keyPem,
    chainPem,
    rootsPem,
    notBeforeMs: Date.parse(leaf.validFrom),
    notAfterMs: Date.parse(leaf.validTo),
    serialNumber: leaf.serialNumber,
  };
}

/** What the admin port may show of a certificate: never the key. */
export function describeCertificate(cert: WorkloadCertificate): Record<string, unknown> {
  const item = (pem: string) => {
    const c = new X509Certificate(pem);
    return {
      pem: Buffer.from(pem).toString('base64'),
      serialNumber: c.serialNumber,
      validFrom: new Date(c.validFrom).toISOString(),
      expirationTime: new Date(c.validTo).toISOString(),
    };
  };
  return { certChain: cert.chainPem.map(item), rootCerts: splitPem(cert.rootsPem).map(item) };
}
