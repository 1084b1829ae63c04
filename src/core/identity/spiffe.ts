/**
 * SPIFFE workload identities as Istio uses them: `spiffe://<trust-domain>/ns/<namespace>/sa/<sa>`.
 * Parsing is strict (reference/ztunnel.md §2.1): exactly the segments `ns` and `sa`, nothing else.
 */
export interface Identity {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

export const DEFAULT_TRUST_DOMAIN = 'cluster.local';
export const DEFAULT_SERVICE_ACCOUNT = 'default';

const SCHEME = 'spiffe://';
// DNS-label-ish characters Kubernetes allows in names, plus dots and underscores for trust domains.
const SEGMENT = /^[A-Za-z0-9._-]+$/;

export type SpiffeResult = { ok: true; identity: Identity } | { ok: false; error: string };

export function parseSpiffe(uri: string): SpiffeResult {
  if (!uri.startsWith(SCHEME)) return { ok: false, error: `"${uri}" does not start with spiffe://` };
  const parts = uri.slice(SCHEME.length).split('/');
  if (parts.length !== 5) {
    return { ok: false, error: `"${uri}" must have the form spiffe://<trust-domain>/ns/<namespace>/sa/<sa>` };
  }
  const [trustDomain, ns, namespace, sa, serviceAccount] = parts as [string, string, string, string, string];
  if (ns !== 'ns' || sa !== 'sa') {
    return { ok: false, error: `"${uri}" must have the form spiffe://<trust-domain>/ns/<namespace>/sa/<sa>` };
  }
  for (const [what, value] of [
    ['trust domain', trustDomain],
    ['namespace', namespace],
    ['service account', serviceAccount],
  ] as const) {
    if (!SEGMENT.test(value)) return { ok: false, error: `"${uri}" has an empty or invalid ${what}` };
  }
  return { ok: true, identity: { trustDomain, namespace, serviceAccount } };
}

export function formatSpiffe(id: Identity): string {
  return `${SCHEME}${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

export function sameIdentity(a: Identity, b: Identity): boolean {
  return (
    a.trustDomain === b.trustDomain && a.namespace === b.namespace && a.serviceAccount === b.serviceAccount
  );
}

/**
 * Every URI SAN in Node's `subjectaltname` rendering (`DNS:a, URI:spiffe://…, IP Address:…`).
 * Node quotes entries that contain commas or quotes as JSON strings; those are unquoted here.
 */
export function uriSans(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  const out: string[] = [];
  // Entries are separated by ", "; a quoted entry is a JSON string that may itself contain ", ".
  const re = /(?:^|, )(?:URI:("(?:[^"\\]|\\.)*"|[^,]*)|[^,]*)/g;
  for (let m = re.exec(subjectAltName); m && m[0] !== ''; m = re.exec(subjectAltName)) {
    const raw = m[1];
    if (raw === undefined) continue;
    out.push(raw.startsWith('"') ? (JSON.parse(raw) as string) : raw);
  }
  return out;
}

/** The peer's identity: the first URI SAN that parses as SPIFFE (reference/ztunnel.md §2.1). */
export function identityFromSubjectAltName(subjectAltName: string | undefined): Identity | undefined {
  for (const uri of uriSans(subjectAltName)) {
    const r = parseSpiffe(uri);
    if (r.ok) return r.identity;
  }
  return undefined;
}
