/**
 * The gateway's certificates from Kubernetes Secrets (issue 8): Envoy `Secret` resources the
 * controller serves over SDS on the same ADS stream, subscribed by name — `kubernetes://<ns>/<name>`
 * for each server's credentialName and, for MUTUAL servers, `…-cacert` for the client CA
 * (core/xds/l7-names.ts). A resource that does not decode is NACKed with its path and the last good
 * one stays in force; one the controller does not send (the Secret is missing, malformed, or of
 * another namespace) leaves its server not ready.
 */
import type { AdsType } from '../../core/xds/ads-client.ts';
import { SDS_CA_SUFFIX, SECRET_TYPE_URL, sdsSecretName } from '../../core/xds/l7-names.ts';
import { unpackAny } from '../../core/xds/l7-wire.ts';
import type { Decoded } from '../../core/xds/workload-proto.ts';
import type { GatewayListenerFacts } from '../../core/xds/l7-names.ts';

/** A Secret as the gateway uses it. */
export type GatewaySecret =
  | { readonly kind: 'certificate'; readonly certificateChain: Buffer; readonly privateKey: Buffer }
  | { readonly kind: 'ca'; readonly trustedCa: Buffer };

interface WireDataSource {
  inline_bytes?: Uint8Array;
  inline_string?: string;
  filename?: string;
}

interface WireSecret {
  name?: string;
  tls_certificate?: { certificate_chain?: WireDataSource; private_key?: WireDataSource };
  validation_context?: { trusted_ca?: WireDataSource };
}

/** Secret bytes → GatewaySecret; only inline PEM is taken (a file path names the controller's disk). */
export function decodeSecretBytes(bytes: Uint8Array): Decoded<GatewaySecret> {
  const r = unpackAny('envoy.extensions.transport_sockets.tls.v3.Secret', bytes);
  if (!r.ok) return { ok: false, errors: [{ path: '', message: `not a Secret: ${r.message}` }] };
  const w = r.message as WireSecret;
  const errors: { path: string; message: string }[] = [];
  const inline = (d: WireDataSource | undefined, path: string): Buffer => {
    if (d?.inline_bytes?.length) return Buffer.from(d.inline_bytes);
    if (d?.inline_string) return Buffer.from(d.inline_string, 'utf8');
    errors.push({
      path,
      message: d?.filename ? 'a file name is not read; inline PEM expected' : 'is required',
    });
    return Buffer.alloc(0);
  };
  let value: GatewaySecret | undefined;
  if (w.tls_certificate) {
    value = {
      kind: 'certificate',
      certificateChain: inline(w.tls_certificate.certificate_chain, 'tls_certificate.certificate_chain'),
      privateKey: inline(w.tls_certificate.private_key, 'tls_certificate.private_key'),
    };
  } else if (w.validation_context) {
    value = {
      kind: 'ca',
      trustedCa: inline(w.validation_context.trusted_ca, 'validation_context.trusted_ca'),
    };
  } else errors.push({ path: 'type', message: 'must be tls_certificate or validation_context' });
  return errors.length > 0 || !value ? { ok: false, errors } : { ok: true, value };
}

/** The named type the gateway adds to its ADS stream. */
export const SECRET_ADS_TYPE: AdsType = { typeUrl: SECRET_TYPE_URL, named: true, decode: decodeSecretBytes };

/** The SDS resources a server needs: its certificate, and for MUTUAL its client CA. */
export function secretNamesOf(facts: GatewayListenerFacts, proxyNamespace: string): string[] {
  const tls = facts.tls;
  if (!tls?.credentialName || tls.mode === 'PASSTHROUGH') return [];
  const cert = sdsSecretName(tls.credentialName, proxyNamespace);
  return tls.mode === 'MUTUAL' ? [cert, `${cert}${SDS_CA_SUFFIX}`] : [cert];
}
