/**
 * SDS on the controller's ADS server (issue 8): the certificate Secrets, decoded and checked
 * (secrets.ts), encoded as Envoy `Secret` resources and served under SECRET_TYPE_URL, each
 * subscriber seeing only those it may read (its namespace's; the ADS server's scoped types). A
 * Secret whose new version is malformed keeps its last good resources served; every problem is
 * logged with its field path and counted.
 */
import { createHash } from 'node:crypto';
import type { Counter } from 'prom-client';
import type { Logger } from '../../core/log.ts';
import type { AdsServer, ResourceFilter, ServedResource } from '../../core/xds/ads-server.ts';
import { SECRET_TYPE_URL } from '../../core/xds/l7-names.ts';
import { encodeMessage } from '../translate/l7/protos.ts';
import {
  decodeSecret,
  mayReadSecret,
  secretCredentials,
  withLastGood,
  type KubeSecret,
  type SdsCredential,
  type SecretReader,
} from './secrets.ts';

const SECRET_MESSAGE = 'envoy.extensions.transport_sockets.tls.v3.Secret';

/** One SDS resource as Envoy reads it: the name, and the PEM bytes inline. */
export function encodeSecret(name: string, c: SdsCredential): Uint8Array {
  return encodeMessage(
    SECRET_MESSAGE,
    c.kind === 'certificate'
      ? {
          name,
          tls_certificate: {
            certificate_chain: { inline_bytes: c.certificateChain },
            private_key: { inline_bytes: c.privateKey },
          },
        }
      : { name, validation_context: { trusted_ca: { inline_bytes: c.trustedCa } } },
  );
}

export class SecretService {
  private readonly ads: AdsServer;
  private readonly log: Logger;
  private readonly rejected: Counter<'kind'> | undefined;
  private served = new Map<string, SdsCredential>();
  private crossNamespace: ReadonlySet<string> = new Set();
  /** `ns/name` of the Secrets last reported, so an unchanged problem is not logged on every update. */
  private reported = new Set<string>();

  constructor(ads: AdsServer, log: Logger, rejected?: Counter<'kind'>) {
    this.ads = ads;
    this.log = log;
    this.rejected = rejected;
  }

  /** Every Secret object of the cluster (or directory), raw; replaces the served set. */
  update(raw: readonly unknown[]): void {
    const secrets: KubeSecret[] = [];
    const problems = [];
    for (const obj of raw) {
      const d = decodeSecret(obj);
      if (d.value) secrets.push(d.value);
      problems.push(...d.problems);
    }
    const built = secretCredentials(secrets);
    problems.push(...built.problems);
    const { resources, kept } = withLastGood(built.resources, this.served, secrets, problems);
    const reported = new Set<string>();
    for (const p of problems) {
      const key = `${p.namespace}/${p.name}: ${p.path}: ${p.message}`;
      reported.add(key);
      if (this.reported.has(key)) continue;
      this.rejected?.inc({ kind: 'Secret' });
      this.log.warn(
        { object: `Secret/${p.namespace}/${p.name}`, path: p.path, error: p.message },
        'secret not served as a certificate',
      );
    }
    this.reported = reported;
    for (const name of kept)
      this.log.warn(
        { resource: name },
        'new secret version rejected; the last good certificate stays in force',
      );
    this.served = resources;
    const out = new Map<string, ServedResource>();
    for (const [name, c] of resources) {
      const bytes = encodeSecret(name, c);
      out.set(name, { version: createHash('sha256').update(bytes).digest('hex').slice(0, 16), bytes });
    }
    this.ads.set(SECRET_TYPE_URL, out);
  }

  /** `<ns>/<name>` references gateway listeners make across namespaces (allowed by ReferenceGrants). */
  setCrossNamespace(refs: ReadonlySet<string>): void {
    this.crossNamespace = refs;
  }

  /** What a stream of `reader` may read. */
  filterFor(reader: SecretReader): ResourceFilter {
    return (typeUrl, name) => typeUrl === SECRET_TYPE_URL && mayReadSecret(reader, name, this.crossNamespace);
  }

  /** The resource names served now (admin dump: names only, never key material). */
  names(): string[] {
    return [...this.served.keys()].sort();
  }
}
