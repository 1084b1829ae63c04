import { createPrivateKey, randomBytes, X509Certificate as NodeX509 } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { AmbitError, ErrorCode } from '../errors.ts';
import { DEFAULT_TRUST_DOMAIN, formatSpiffe, parseSpiffe, type Identity } from './spiffe.ts';
import {
  derToPem,
  ECDSA_SHA256,
  P256_KEY,
  pemToDer,
  splitPem,
  subtle,
  x509,
  type CryptoKey,
} from './x509.ts';

export const DEFAULT_CERT_TTL_MS = 24 * 3600_000;
/** Self-signed roots live ten years, as Istio's self-signed CA root does. */
const SAN_OID = '2.5.29.17';
export const DEFAULT_ROOT_TTL_MS = 10 * 365 * 24 * 3600_000;
/**
 * Leaves start up to a minute in the past so small clock skew between nodes does not reject them;
 * never more than a quarter of the TTL, or a short-lived certificate would be due for renewal
 * (at half its life) the moment it is issued.
 */
const MAX_BACKDATE_MS = 60_000;

export interface SignRequest {
  readonly csrPem: string;
  readonly ttlMs?: number;
  /** When set, the CSR's SAN must name exactly this identity (impersonation checks happen before). */
  readonly expected?: Identity;
}

export type SignResult =
  { ok: true; certChain: string[]; identity: Identity } | { ok: false; reason: string };

interface SigningKey {
  readonly key: CryptoKey;
  readonly algorithm: { readonly name: string; readonly hash: string };
}

/**
 * A certificate authority that signs workload CSRs. Its root is self-signed (ECDSA P-256) or loaded
 * from PEM files. The trust bundle may hold more roots than the signing one, so a root can rotate.
 */
export class CertificateAuthority {
  readonly rootCertPem: string;
  readonly rootKeyPem: string;
  /** Every root peers should trust, PEM-concatenated, signing root first. */
  readonly trustBundlePem: string;
  /** The only trust domain this CA issues identities in. */
  readonly trustDomain: string;
  private readonly signer: SigningKey;
  private readonly root: x509.X509Certificate;
  private readonly nowMs: () => number;

  private constructor(
    trustDomain: string,
    rootCertPem: string,
    rootKeyPem: string,
    extraRootsPem: string,
    signer: SigningKey,
    nowMs: () => number,
  ) {
    this.trustDomain = trustDomain;
    this.rootCertPem = rootCertPem;
    this.rootKeyPem = rootKeyPem;
    this.trustBundlePem = [rootCertPem.trim(), ...splitPem(extraRootsPem)].join('\n') + '\n';
    this.signer = signer;
    this.root = new x509.X509Certificate(rootCertPem);
    this.nowMs = nowMs;
  }

  /** A fresh self-signed ECDSA P-256 root with subject `O=<trustDomain>`. */
  static async createSelfSigned(
    trustDomain: string,
    options: { ttlMs?: number; nowMs?: () => number } = {},
  ): Promise<CertificateAuthority> {
    const nowMs = options.nowMs ?? Date.now;
    const keys = await subtle.generateKey(P256_KEY, true, ['sign', 'verify']);
    const now = nowMs();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerial(),
      name: `O=${trustDomain}`,
      notBefore: new Date(now - MAX_BACKDATE_MS),
      notAfter: new Date(now + (options.ttlMs ?? DEFAULT_ROOT_TTL_MS)),
      keys,
      signingAlgorithm: ECDSA_SHA256,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
          true,
        ),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const keyPem = derToPem(await subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY');
    return new CertificateAuthority(
      trustDomain,
      cert.toString('pem'),
      keyPem,
      '',
      { key: keys.privateKey, algorithm: ECDSA_SHA256 },
      nowMs,
    );
  }

  /**
   * A root from PEM text: the certificate and its private key (PKCS#8, SEC1 or PKCS#1). When the
   * certificate text holds several certificates, the first signs and every one is a trusted root:
   * that is how a root rotates (README, "Rotating the CA root").
   */
  static async fromPem(
    certPem: string,
    keyPem: string,
    options: { trustDomain?: string; extraRootsPem?: string; nowMs?: () => number } = {},
  ): Promise<CertificateAuthority> {
    const [signingPem = certPem, ...otherRoots] = splitPem(certPem);
    const extraRootsPem = [...otherRoots, ...splitPem(options.extraRootsPem ?? '')].join('\n');
    let nodeCert: NodeX509;
    try {
      nodeCert = new NodeX509(signingPem);
    } catch (err) {
      throw new AmbitError(ErrorCode.CertificateInvalid, 'CA certificate is not a PEM X.509 certificate', {
        cause: err,
      });
    }
    if (!nodeCert.ca) {
      throw new AmbitError(ErrorCode.CertificateInvalid, 'CA certificate lacks basicConstraints CA:TRUE', {
        hint: 'use a root or intermediate CA certificate, not a leaf',
      });
    }
    let nodeKey;
    try {
      nodeKey = createPrivateKey(keyPem);
    } catch (err) {
      throw new AmbitError(ErrorCode.CertificateInvalid, 'CA key is not a PEM private key', { cause: err });
    }
    if (!nodeCert.checkPrivateKey(nodeKey)) {
      throw new AmbitError(ErrorCode.CertificateInvalid, 'CA key does not match the CA certificate', {
        hint: 'when the certificate file holds several roots, the one the key belongs to must come first',
      });
    }
    for (const [i, pem] of otherRoots.entries()) {
      let root: NodeX509;
      try {
        root = new NodeX509(pem);
      } catch (err) {
        throw new AmbitError(
          ErrorCode.CertificateInvalid,
          `CA certificate file: certificate ${i + 2} is not X.509`,
          {
            cause: err,
          },
        );
      }
      if (!root.ca)
        throw new AmbitError(
          ErrorCode.CertificateInvalid,
          `CA certificate file: certificate ${i + 2} lacks basicConstraints CA:TRUE`,
          { hint: 'extra certificates after the signing one are trusted roots' },
        );
    }
    const pkcs8 = nodeKey.export({ type: 'pkcs8', format: 'der' });
    let signer: SigningKey;
    if (nodeKey.asymmetricKeyType === 'ec' && nodeKey.asymmetricKeyDetails?.namedCurve === 'prime256v1') {
      signer = {
        key: await subtle.importKey('pkcs8', pkcs8, P256_KEY, false, ['sign']),
        algorithm: ECDSA_SHA256,
      };
    } else if (nodeKey.asymmetricKeyType === 'rsa') {
      const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
      signer = { key: await subtle.importKey('pkcs8', pkcs8, alg, false, ['sign']), algorithm: alg };
    } else {
      throw new AmbitError(
        ErrorCode.CertificateInvalid,
        `CA key type ${nodeKey.asymmetricKeyType} is not supported`,
        {
          hint: 'use an ECDSA P-256 or RSA key',
        },
      );
    }
    return new CertificateAuthority(
      options.trustDomain ?? DEFAULT_TRUST_DOMAIN,
      nodeCert.toString(),
      derToPem(pkcs8, 'PRIVATE KEY'),
      extraRootsPem,
      signer,
      options.nowMs ?? Date.now,
    );
  }

  static async fromFiles(
    certPath: string,
    keyPath: string,
    trustDomain: string = DEFAULT_TRUST_DOMAIN,
  ): Promise<CertificateAuthority> {
    const read = async (path: string, what: string) => {
      try {
        return await readFile(path, 'utf8');
      } catch (err) {
        throw new AmbitError(ErrorCode.ConfigRead, `cannot read CA ${what} ${path}`, { cause: err });
      }
    };
    return CertificateAuthority.fromPem(await read(certPath, 'certificate'), await read(keyPath, 'key'), {
      trustDomain,
    });
  }

  /**
   * Signs a workload CSR. The CSR must carry a valid self-signature and exactly one URI SAN that is
   * a SPIFFE ID in this CA's trust domain. A refusal is a result with the reason, not a throw.
   */
  async sign(req: SignRequest): Promise<SignResult> {
    let csr: x509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(pemToDer(req.csrPem));
    } catch {
      return { ok: false, reason: 'csr is not a PEM PKCS#10 certificate request' };
    }
    if (!(await csr.verify())) return { ok: false, reason: 'csr signature does not verify' };
    const weak = weakKeyReason(
      csr.publicKey.algorithm as { name: string; namedCurve?: string; modulusLength?: number },
    );
    if (weak) return { ok: false, reason: weak };
    const san = csr.extensions.find((e) => e.type === SAN_OID) as
      x509.SubjectAlternativeNameExtension | undefined;
    const uris = san?.names.items.filter((n) => n.type === 'url').map((n) => n.value) ?? [];
    if (uris.length !== 1)
      return { ok: false, reason: `csr must carry exactly one URI SAN, found ${uris.length}` };
    const parsed = parseSpiffe(uris[0]!);
    if (!parsed.ok) return { ok: false, reason: parsed.error };
    const id = parsed.identity;
    if (id.trustDomain !== this.trustDomain) {
      return {
        ok: false,
        reason: `csr asks for trust domain ${id.trustDomain}, this CA issues for ${this.trustDomain}`,
      };
    }
    if (
      req.expected &&
      (req.expected.trustDomain !== id.trustDomain ||
        req.expected.namespace !== id.namespace ||
        req.expected.serviceAccount !== id.serviceAccount)
    ) {
      return { ok: false, reason: `csr asks for ${uris[0]!}, which is not the caller's identity` };
    }
    const ttlMs = req.ttlMs && req.ttlMs > 0 ? req.ttlMs : DEFAULT_CERT_TTL_MS;
    const leaf = await this.issue(csr.publicKey, [{ type: 'url', value: uris[0]! }], ttlMs);
    return { ok: true, identity: id, certChain: [leaf, this.trustBundlePem] };
  }

  /**
   * A serving certificate for the control plane itself (xDS and CA over TLS): a fresh P-256 key, the
   * SPIFFE identity and the DNS names clients dial (e.g. `istiod.istio-system.svc`).
   */
  async issueServing(
    identity: Identity,
    dnsNames: readonly string[],
    ttlMs: number,
  ): Promise<{ keyPem: string; certChainPem: string }> {
    const keys = await subtle.generateKey(P256_KEY, true, ['sign', 'verify']);
    const leaf = await this.issue(
      keys.publicKey,
      [
        { type: 'url', value: formatSpiffe(identity) },
        ...dnsNames.map((value) => ({ type: 'dns' as const, value })),
      ],
      ttlMs,
    );
    return {
      keyPem: derToPem(await subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY'),
      certChainPem: `${leaf.trim()}\n${this.rootCertPem.trim()}\n`,
    };
  }

  private async issue(
    publicKey: x509.PublicKey | CryptoKey,
    names: { type: 'url' | 'dns'; value: string }[],
    ttlMs: number,
  ): Promise<string> {
    const now = this.nowMs();
    const notAfter = Math.min(now + ttlMs, this.root.notAfter.getTime());
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: '',
      issuer: this.root.subject,
      notBefore: new Date(now - Math.min(MAX_BACKDATE_MS, ttlMs / 4)),
      notAfter: new Date(notAfter),
      publicKey,
      signingKey: this.signer.key,
      signingAlgorithm: this.signer.algorithm,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
          true,
        ),
        new x509.ExtendedKeyUsageExtension([
          x509.ExtendedKeyUsage.serverAuth,
          x509.ExtendedKeyUsage.clientAuth,
        ]),
        await x509.AuthorityKeyIdentifierExtension.create(this.root, false),
        new x509.SubjectAlternativeNameExtension(names, true),
      ],
    });
    return leaf.toString('pem');
  }
}

/** Keys a workload may be issued for: ECDSA P-256/P-384 (what ztunnel sends) or RSA of 2048 bits or more. */
function weakKeyReason(alg: {
  name: string;
  namedCurve?: string;
  modulusLength?: number;
}): string | undefined {
  if (alg.name === 'ECDSA') {
    return alg.namedCurve === 'P-256' || alg.namedCurve === 'P-384'
      ? undefined
      : `csr key curve ${alg.namedCurve ?? 'unknown'} is not accepted (use P-256)`;
  }
  if (alg.name.startsWith('RSA')) {
    return (alg.modulusLength ?? 0) >= 2048
      ? undefined
      : `csr RSA key of ${alg.modulusLength ?? 0} bits is too short (2048 at least)`;
  }
  return `csr key type ${alg.name} is not accepted (use ECDSA P-256)`;
}

function randomSerial(): string {
  const b = randomBytes(16);
  b[0]! &= 0x7f; // positive INTEGER
  return b.toString('hex');
}
