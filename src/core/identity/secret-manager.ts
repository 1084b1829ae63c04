import { X509Certificate } from 'node:crypto';
import type { Clock } from '../clock.ts';
import { AmbitError, describeError, ErrorCode } from '../errors.ts';
import type { Logger } from '../log.ts';
import { workloadCertificateFromChain, type WorkloadCertificate } from './certificate.ts';
import type { CertificateAuthority } from './ca.ts';
import { createCsr } from './csr.ts';
import { formatSpiffe, type Identity } from './spiffe.ts';
import { splitPem } from './x509.ts';

/** Where certificates come from: an in-process CA (local mode) or the CA service (later). */
export interface CertificateProvider {
  /** Issues a fresh certificate for `identity`; rejects with a reason on failure. */
  fetch(identity: Identity): Promise<WorkloadCertificate>;
  /** Releases connections to a CA service, if any. */
  close?(): void;
}

/** Signs CSRs with a CA held in this process, through the same CSR path the CA service uses. */
export class LocalCaProvider implements CertificateProvider {
  private readonly ca: CertificateAuthority;
  private readonly ttlMs: number;

  constructor(ca: CertificateAuthority, ttlMs: number) {
    this.ca = ca;
    this.ttlMs = ttlMs;
  }

  async fetch(identity: Identity): Promise<WorkloadCertificate> {
    const { csrPem, keyPem } = await createCsr(identity);
    const r = await this.ca.sign({ csrPem, ttlMs: this.ttlMs, expected: identity });
    if (!r.ok)
      throw new AmbitError(
        ErrorCode.CertificateUnavailable,
        `CA refused ${formatSpiffe(identity)}: ${r.reason}`,
      );
    return workloadCertificateFromChain(identity, keyPem, r.certChain);
  }
}

/** Backoff after a failed fetch (reference/ztunnel.md §3.7): 1 s, ×2, ±20 % jitter, at most 150 s. */
export const RENEW_BACKOFF = { initialMs: 1000, multiplier: 2, jitter: 0.2, maxMs: 150_000 } as const;

/** The soonest a fresh certificate is renewed again. */
export const MIN_RENEW_DELAY_MS = 1000;

/**
 * A certificate this young is not re-issued because another came with other roots: two CA replicas
 * that disagree during a rollout must not make the agent fetch in a loop.
 */
export const ROOTS_CHANGE_MIN_AGE_MS = 5000;

export type CertificateState = 'Initializing' | 'Available' | `Unavailable: ${string}`;

interface Entry {
  readonly identity: Identity;
  cert: WorkloadCertificate | undefined;
  /** When `cert` arrived (agent clock; notBefore is backdated). */
  fetchedAtMs: number;
  lastError: string | undefined;
  waiters: { resolve: (c: WorkloadCertificate) => void; reject: (e: Error) => void }[];
  fetching: boolean;
  failures: number;
  cancelTimer: (() => void) | undefined;
}

export interface SecretManagerOptions {
  readonly provider: CertificateProvider;
  readonly clock: Clock;
  readonly log: Logger;
  /** Source of randomness for jitter, in [0, 1). */
  readonly random?: () => number;
}

/**
 * Holds one certificate per identity. Renews at half life; on failure keeps the old certificate while
 * it is valid and retries with jittered exponential backoff. Listeners hear about every new certificate,
 * so TLS servers can swap their context without dropping connections.
 */
export class SecretManager {
  private readonly entries = new Map<string, Entry>();
  private readonly listeners = new Set<(cert: WorkloadCertificate) => void>();
  private readonly opts: SecretManagerOptions;
  private closed = false;

  constructor(opts: SecretManagerOptions) {
    this.opts = opts;
  }

  /** The current certificate, fetching it first if there is none (the caller waits). */
  get(identity: Identity): Promise<WorkloadCertificate> {
    if (this.closed) return Promise.reject(new AmbitError(ErrorCode.Shutdown, 'secret manager closed'));
    const entry = this.entry(identity);
    if (entry.cert && entry.cert.notAfterMs > this.opts.clock.nowMs()) return Promise.resolve(entry.cert);
    return new Promise((resolve, reject) => {
      entry.waiters.push({ resolve, reject });
      if (!entry.fetching) {
        entry.cancelTimer?.();
        void this.fetch(entry);
      }
    });
  }

  /** The certificate held now, if any, without fetching. */
  current(identity: Identity): WorkloadCertificate | undefined {
    return this.entries.get(formatSpiffe(identity))?.cert;
  }

  /** Starts fetching without waiting (warm-up when a local workload appears). */
  prefetch(identity: Identity): void {
    this.get(identity).catch(() => undefined);
  }

  /** Drops the certificate of an identity no local workload uses any more. */
  forget(identity: Identity): void {
    const key = formatSpiffe(identity);
    const entry = this.entries.get(key);
    if (!entry) return;
    entry.cancelTimer?.();
    this.entries.delete(key);
    const err = new AmbitError(
      ErrorCode.CertificateUnavailable,
      `certificate for ${key} is no longer needed on this node`,
    );
    for (const w of entry.waiters.splice(0)) w.reject(err);
  }

  onCertificate(listener: (cert: WorkloadCertificate) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Every identity with its state, for readiness and the admin dump. */
  states(): { identity: Identity; state: CertificateState; cert: WorkloadCertificate | undefined }[] {
    return [...this.entries.values()].map((e) => ({
      identity: e.identity,
      cert: e.cert,
      state: e.cert ? 'Available' : e.lastError ? `Unavailable: ${e.lastError}` : 'Initializing',
    }));
  }

  close(): void {
    this.closed = true;
    for (const e of this.entries.values()) {
      e.cancelTimer?.();
      for (const w of e.waiters.splice(0))
        w.reject(new AmbitError(ErrorCode.Shutdown, 'secret manager closed'));
    }
  }

  private entry(identity: Identity): Entry {
    const key = formatSpiffe(identity);
    let entry = this.entries.get(key);
    if (!entry) {
      entry = {
        identity,
        cert: undefined,
        fetchedAtMs: 0,
        lastError: undefined,
        waiters: [],
        fetching: false,
        failures: 0,
        cancelTimer: undefined,
      };
      this.entries.set(key, entry);
    }
    return entry;
  }

  private async fetch(entry: Entry): Promise<void> {
    entry.fetching = true;
    entry.cancelTimer = undefined;
    const id = formatSpiffe(entry.identity);
    try {
      const cert = await this.opts.provider.fetch(entry.identity);
      entry.fetching = false;
      if (this.closed || this.entries.get(id) !== entry) return;
      entry.cert = cert;
      entry.fetchedAtMs = this.opts.clock.nowMs();
      entry.lastError = undefined;
      entry.failures = 0;
      for (const w of entry.waiters.splice(0)) w.resolve(cert);
      for (const l of this.listeners) l(cert);
      this.reissueOnNewRoots(entry, cert);
      const renewAt = cert.notBeforeMs + (cert.notAfterMs - cert.notBeforeMs) / 2;
      // A floor keeps a misissued (already half-expired) certificate from turning into a hot loop.
      this.schedule(entry, Math.max(MIN_RENEW_DELAY_MS, renewAt - this.opts.clock.nowMs()));
      this.opts.log.info(
        { identity: id, notAfter: new Date(cert.notAfterMs).toISOString() },
        'certificate issued',
      );
    } catch (err) {
      entry.fetching = false;
      if (this.closed || this.entries.get(id) !== entry) return;
      entry.lastError = describeError(err);
      entry.failures += 1;
      const e = err instanceof Error ? err : new Error(String(err));
      for (const w of entry.waiters.splice(0)) w.reject(e);
      // Keep the old certificate while it is still valid; retry no later than its expiry.
      // Once it has expired, plain backoff: retrying at once would hammer a failing CA.
      const untilExpiryMs = entry.cert ? entry.cert.notAfterMs - this.opts.clock.nowMs() : 0;
      const backoff = backoffMs(entry.failures, this.opts.random ?? Math.random);
      const delayMs = untilExpiryMs > 0 ? Math.min(backoff, untilExpiryMs) : backoff;
      this.schedule(entry, delayMs);
      this.opts.log.warn(
        { identity: id, error: entry.lastError, retryInMs: delayMs, keptOld: entry.cert !== undefined },
        'certificate fetch failed',
      );
    }
  }

  /**
   * When a certificate arrives with other roots or another issuer than the ones held for other
   * identities (the CA's root is rotating: README "Rotating the CA root"), those are re-issued now
   * rather than at their half life, so the whole node trusts the new roots, and presents leaves of
   * the new signing root, as soon as one certificate shows them.
   */
  private reissueOnNewRoots(from: Entry, cert: WorkloadCertificate): void {
    const now = this.opts.clock.nowMs();
    const stale = [...this.entries.values()].filter(
      (e) =>
        e !== from &&
        !e.fetching &&
        e.cert !== undefined &&
        now - e.fetchedAtMs >= ROOTS_CHANGE_MIN_AGE_MS &&
        !sameRoots(e.cert, cert),
    );
    if (stale.length === 0) return;
    this.opts.log.info(
      { identity: formatSpiffe(from.identity), reissuing: stale.map((e) => formatSpiffe(e.identity)) },
      'ca roots changed, re-issuing certificates',
    );
    for (const e of stale) {
      e.cancelTimer?.();
      void this.fetch(e);
    }
  }

  private schedule(entry: Entry, delayMs: number): void {
    if (this.closed) return;
    entry.cancelTimer?.();
    entry.cancelTimer = this.opts.clock.setTimer(() => void this.fetch(entry), delayMs);
  }
}

function splitRoots(cert: WorkloadCertificate): string[] {
  return splitPem(cert.rootsPem).map((p) => p.replace(/\s+/g, ''));
}

/** Same trusted roots and same issuer of the leaf (the signing root changes under the same bundle). */
function sameRoots(a: WorkloadCertificate, b: WorkloadCertificate): boolean {
  const ra = splitRoots(a);
  const rb = splitRoots(b);
  return (
    ra.length === rb.length &&
    ra.every((r, i) => r === rb[i]) &&
    a.chainPem.length === b.chainPem.length &&
    issuerOf(a) === issuerOf(b)
  );
}

function issuerOf(cert: WorkloadCertificate): string {
  try {
    return new X509Certificate(cert.chainPem[0] ?? '').issuer;
  } catch {
    return '';
  }
}

/** Delay before retry number `failures` (1-based). */
export function backoffMs(failures: number, random: () => number): number {
  const base = Math.min(
    RENEW_BACKOFF.maxMs,
    RENEW_BACKOFF.initialMs * RENEW_BACKOFF.multiplier ** (failures - 1),
  );
  const jitter = 1 + RENEW_BACKOFF.jitter * (2 * random() - 1);
  return Math.round(Math.min(RENEW_BACKOFF.maxMs, base * jitter));
}
