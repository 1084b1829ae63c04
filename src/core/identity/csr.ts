import { derToPem, ECDSA_SHA256, P256_KEY, subtle, x509 } from './x509.ts';
import { formatSpiffe, type Identity } from './spiffe.ts';

export interface CsrAndKey {
  readonly csrPem: string;
  /** PKCS#8 PEM of the fresh key. */
  readonly keyPem: string;
}

/**
 * A CSR as Istio's ztunnel sends it (reference/ztunnel.md §3.7): a fresh ECDSA P-256 key, SHA-256,
 * empty subject, one critical SubjectAltName holding the SPIFFE URI.
 */
export async function createCsr(identity: Identity): Promise<CsrAndKey> {
  const keys = await subtle.generateKey(P256_KEY, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: formatSpiffe(identity) }], true),
    ],
  });
  const pkcs8 = await subtle.exportKey('pkcs8', keys.privateKey);
  return { csrPem: csr.toString('pem'), keyPem: derToPem(pkcs8, 'PRIVATE KEY') };
}
