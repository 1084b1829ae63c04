/**
 * Kubernetes Secrets → the Envoy `Secret` resources the controller serves to gateways over SDS
 * (issue 8), as istiod's credentials controller reads them (pilot/pkg/credentials/kube/secrets.go)
 * and its SDS generator names and authorizes them (pilot/pkg/xds/sds.go). Pure.
 *
 * - Certificate and key: the keys `cert` and `key` (a generic Secret), else `tls.crt` and `tls.key`
 *   (type `kubernetes.io/tls`), as istiod tries them; served as `kubernetes://<ns>/<name>`, a
 *   TlsCertificate with both inline.
 * - Client CA (MUTUAL): `kubernetes://<ns>/<name>-cacert` is the Secret `<name>-cacert`'s `cacert` or
 *   `ca.crt` when that Secret exists, else the same keys of `<name>`; a CertificateValidationContext
 *   with the bundle as trusted_ca.
 * - A Secret is decoded as the API server returns it (`data` base64) or as written in a local YAML
 *   file (`stringData` too, which the API server merges over `data`). Beyond istiod, each PEM is
 *   parsed and the key must match the certificate, so a malformed Secret is reported with its field
 *   path (`data["tls.crt"]`) here instead of failing every handshake at the gateway; istiod serves
 *   it and Envoy rejects it. A Secret that names none of these keys is not a certificate: ignored.
 * - Authorization, as istiod's filterAuthorizedResources: a gateway may read the Secrets of its own
 *   namespace (its SPIFFE identity's) when its service account may list Secrets there (a
 *   SubjectAccessReview with an API server, kube/access-review.ts; local mode has no RBAC) — the
 *   `-cacert` ones, public, even without; one of another namespace only when a served gateway
 *   listener names it as `<namespace>/<name>` (a Gateway API reference a ReferenceGrant allowed;
 *   istiod's verified references).
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import {
  GATEWAY_METADATA_FILTER,
  SDS_CA_SUFFIX,
  SDS_PREFIX,
  parseSdsSecretName,
} from '../../core/xds/l7-names.ts';

/** A Secret as the controller keeps it: only what a certificate needs. */
export interface KubeSecret {
  readonly namespace: string;
  readonly name: string;
  readonly type: string;
  readonly data: ReadonlyMap<string, Buffer>;
}

/** What one SDS resource holds. */
export type SdsCredential =
  | { readonly kind: 'certificate'; readonly certificateChain: Buffer; readonly privateKey: Buffer }
  | { readonly kind: 'ca'; readonly trustedCa: Buffer };

export interface SecretProblem {
  readonly severity: 'error' | 'warning';
  readonly kind: 'Secret';
  readonly namespace: string;
  readonly name: string;
  readonly path: string;
  readonly message: string;
}

const GENERIC = { cert: 'cert', key: 'key', ca: 'cacert' } as const;
const TLS = { cert: 'tls.crt', key: 'tls.key', ca: 'ca.crt' } as const;
const CERT_KEYS = [GENERIC.cert, GENERIC.key, GENERIC.ca, TLS.cert, TLS.key, TLS.ca];

/** A Secret object (YAML or the API server's JSON) → KubeSecret; problems carry field paths. */
export function decodeSecret(raw: unknown): { value?: KubeSecret; problems: SecretProblem[] } {
  const obj = isRecord(raw) ? raw : {};
  const meta = isRecord(obj.metadata) ? obj.metadata : {};
  const name = typeof meta.name === 'string' ? meta.name : '';
  const namespace = typeof meta.namespace === 'string' && meta.namespace ? meta.namespace : 'default';
  const problems: SecretProblem[] = [];
  const err = (path: string, message: string) =>
    problems.push({ severity: 'error', kind: 'Secret', namespace, name, path, message });
  if (!isRecord(raw)) err('', 'must be an object');
  if (!name) err('metadata.name', 'is required');
  const type = obj.type === undefined ? 'Opaque' : obj.type;
  if (typeof type !== 'string') err('type', 'must be a string');
  const data = new Map<string, Buffer>();
  for (const field of ['data', 'stringData'] as const) {
    const m = obj[field];
    if (m === undefined || m === null) continue;
    if (!isRecord(m)) {
      err(field, 'must be a map of strings');
      continue;
    }
    for (const [k, v] of Object.entries(m)) {
      const at = `${field}["${k}"]`;
      if (typeof v !== 'string') err(at, 'must be a string');
      else if (field === 'stringData') data.set(k, Buffer.from(v, 'utf8'));
      else if (!BASE64.test(v.replace(/\s+/g, '')))
        err(at, 'is not base64 (data values are; use stringData for text)');
      else data.set(k, Buffer.from(v, 'base64'));
    }
  }
  if (problems.length > 0) return { problems };
  return { value: { namespace, name, type: type as string, data }, problems };
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Whether the Secret holds any of the certificate keys (else it is none of the gateway's business). */
export function isCertificateSecret(s: KubeSecret): boolean {
  return s.type === 'kubernetes.io/tls' || CERT_KEYS.some((k) => s.data.has(k));
}

/** `kubernetes://<ns>/<name>` */
export function secretResourceName(namespace: string, name: string): string {
  return `${SDS_PREFIX}${namespace}/${name}`;
}

/**
 * Every SDS resource the Secrets make, by resource name, and what is wrong with those that make
 * none. A Secret whose keys are set but malformed makes no resource: the gateway sees it missing.
 */
export function secretCredentials(secrets: readonly KubeSecret[]): {
  resources: Map<string, SdsCredential>;
  problems: SecretProblem[];
} {
  const resources = new Map<string, SdsCredential>();
  const problems: SecretProblem[] = [];
  const byKey = new Map(secrets.map((s) => [`${s.namespace}/${s.name}`, s]));
  for (const s of secrets) {
    if (!isCertificateSecret(s)) continue;
    const report = (path: string, message: string) =>
      problems.push({
        severity: 'error',
        kind: 'Secret',
        namespace: s.namespace,
        name: s.name,
        path,
        message,
      });
    const pair = keyAndCert(s);
    if ('error' in pair) {
      // A CA-only Secret (`<name>-cacert`, or one with just ca.crt) is fine without a key pair.
      const caOnly =
        !s.data.has(GENERIC.cert) &&
        !s.data.has(TLS.cert) &&
        !s.data.has(GENERIC.key) &&
        !s.data.has(TLS.key);
      if (!caOnly || s.type === 'kubernetes.io/tls') report(pair.path, pair.error);
    } else {
      const bad = checkKeyPair(pair.cert, pair.key);
      if (bad) report(bad.path === 'cert' ? dataPath(pair.certKey) : dataPath(pair.keyKey), bad.message);
      else
        resources.set(secretResourceName(s.namespace, s.name), {
          kind: 'certificate',
          certificateChain: pair.cert,
          privateKey: pair.key,
        });
    }
    // The CA of `<name>`: the `<name>-cacert` Secret wins; a `-cacert` Secret serves its own name.
    const caName = s.name.endsWith(SDS_CA_SUFFIX) ? s.name : `${s.name}${SDS_CA_SUFFIX}`;
    if (caName !== s.name && byKey.has(`${s.namespace}/${caName}`)) continue;
    const ca = s.data.get(GENERIC.ca)?.length ? GENERIC.ca : s.data.get(TLS.ca)?.length ? TLS.ca : undefined;
    if (!ca) {
      if (caName === s.name)
        report(
          'data',
          `has no "${GENERIC.ca}" or "${TLS.ca}": a ${SDS_CA_SUFFIX} Secret holds the client CA`,
        );
      continue;
    }
    const bad = checkCertificates(s.data.get(ca)!);
    if (bad) report(dataPath(ca), bad);
    else resources.set(secretResourceName(s.namespace, caName), { kind: 'ca', trustedCa: s.data.get(ca)! });
  }
  return { resources, problems };
}

function dataPath(key: string): string {
  return `data["${key}"]`;
}

/** istiod's extractKeyAndCert: `cert`/`key` first, then `tls.crt`/`tls.key`, with its messages. */
function keyAndCert(
  s: KubeSecret,
): { cert: Buffer; key: Buffer; certKey: string; keyKey: string } | { path: string; error: string } {
  for (const k of [GENERIC, TLS])
    if (s.data.get(k.cert)?.length && s.data.get(k.key)?.length)
      return { cert: s.data.get(k.cert)!, key: s.data.get(k.key)!, certKey: k.cert, keyKey: k.key };
  for (const k of [GENERIC, TLS])
    if (s.data.has(k.cert) && s.data.has(k.key))
      return { path: 'data', error: `found keys "${k.cert}" and "${k.key}", but they were empty` };
  const found = [...s.data.keys()].sort().join(', ') || 'none';
  return {
    path: 'data',
    error: `has no certificate: expected keys (${GENERIC.cert} and ${GENERIC.key}) or (${TLS.cert} and ${TLS.key}); found: ${found}`,
  };
}

/** The first problem with a PEM chain; undefined when every certificate in it parses. */
function checkCertificates(pem: Buffer): string | undefined {
  const blocks = pem.toString('utf8').match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g);
  if (!blocks) return 'holds no PEM certificate (-----BEGIN CERTIFICATE-----)';
  for (const [i, b] of blocks.entries()) {
    try {
      new X509Certificate(b);
    } catch (err) {
      return `certificate ${i + 1} does not parse: ${(err as Error).message}`;
    }
  }
  return undefined;
}

function checkKeyPair(cert: Buffer, key: Buffer): { path: 'cert' | 'key'; message: string } | undefined {
  const bad = checkCertificates(cert);
  if (bad) return { path: 'cert', message: bad };
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
    const k = createPrivateKey(key);
    if (!leaf.checkPrivateKey(k)) return { path: 'key', message: 'is not the key of the certificate' };
  } catch (err) {
    return { path: 'key', message: `is not a PEM private key: ${(err as Error).message}` };
  }
  return undefined;
}

/**
 * Keeps a resource's last good credential while its Secret still exists but its new version is
 * malformed (the last good config stays in force); a deleted Secret takes its resources away.
 */
export function withLastGood(
  next: ReadonlyMap<string, SdsCredential>,
  previous: ReadonlyMap<string, SdsCredential>,
  secrets: readonly KubeSecret[],
  problems: readonly SecretProblem[],
): { resources: Map<string, SdsCredential>; kept: string[] } {
  const failing = new Set(problems.map((p) => `${p.namespace}/${p.name}`));
  const exists = new Set(secrets.map((s) => `${s.namespace}/${s.name}`));
  const resources = new Map(next);
  const kept: string[] = [];
  for (const [name, credential] of previous) {
    if (resources.has(name)) continue;
    const ref = parseSdsSecretName(name);
    if (!ref) continue;
    const secret = `${ref.namespace}/${ref.name}`;
    const base = ref.ca ? `${ref.namespace}/${ref.name.slice(0, -SDS_CA_SUFFIX.length)}` : secret;
    if ((exists.has(secret) && failing.has(secret)) || (ref.ca && exists.has(base) && failing.has(base))) {
      resources.set(name, credential);
      kept.push(name);
    }
  }
  return { resources, kept };
}

/**
 * Who asks: a workload's namespace (its SPIFFE identity's) and whether its service account may list
 * the Secrets there; undefined for a node agent (never a gateway).
 */
export type SecretReader = { readonly namespace: string; readonly mayListSecrets: boolean } | undefined;

/**
 * istiod's rule for `kubernetes://` resources: the proxy's own namespace only, and there a key pair
 * only if it may list Secrets (a CA is public). `crossNamespace`
 * holds `<ns>/<name>` references a served gateway listener makes explicitly (a ReferenceGrant let
 * them), readable from any namespace.
 */
export function mayReadSecret(
  reader: SecretReader,
  resource: string,
  crossNamespace: ReadonlySet<string>,
): boolean {
  const ref = parseSdsSecretName(resource);
  if (!ref || !reader) return false;
  if (ref.namespace === reader.namespace) return ref.ca || reader.mayListSecrets;
  const base = ref.ca ? ref.name.slice(0, -SDS_CA_SUFFIX.length) : ref.name;
  return crossNamespace.has(`${ref.namespace}/${base}`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The `<namespace>/<name>` credentialNames of gateway listeners (translate/l7/gateway-translate.ts
 * facts in the listener metadata): references across namespaces a ReferenceGrant allowed.
 */
export function crossNamespaceRefs(listeners: readonly object[]): Set<string> {
  const out = new Set<string>();
  for (const l of listeners) {
    const md = (l as { metadata?: unknown }).metadata as
      { filter_metadata?: Record<string, { fields?: Record<string, StructField> }> } | undefined;
    const tls = md?.filter_metadata?.[GATEWAY_METADATA_FILTER]?.fields?.tls?.structValue?.fields;
    const name = tls?.credentialName?.stringValue;
    if (name?.includes('/')) out.add(name);
  }
  return out;
}

interface StructField {
  readonly stringValue?: string;
  readonly structValue?: { readonly fields?: Record<string, StructField> };
}
