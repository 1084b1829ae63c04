/**
 * A Cluster's `transport_socket` (Envoy's `envoy.transport_sockets.tls` with an UpstreamTlsContext,
 * extensions/transport_sockets/tls/v3/tls.proto and common.proto) → the TLS the waypoint originates
 * to the cluster's endpoints. Pure; see l7-decode.ts for the conventions: every error with its path,
 * fields that would change behaviour and that the waypoint cannot honour are errors (the resource is
 * NACKed), tuning fields are ignored.
 *
 * Envoy's rules kept here: without a validation context (or one with neither `trusted_ca` nor
 * `system_root_certs`) the server's certificate is not verified, and SAN matchers then are refused
 * ("SAN-based verification without a trusted CA is insecure"); `sni` is sent as is.
 */
import type { PemSource, SanMatcher, TlsVersion, UpstreamTls } from './l7-model.ts';
import {
  join,
  stringMatcher,
  type Collector,
  type WireAny,
  type WireStringMatcher,
} from './l7-decode-common.ts';

export const TLS_TRANSPORT_SOCKET = 'envoy.transport_sockets.tls';
const RAW_BUFFER_TRANSPORT_SOCKET = 'envoy.transport_sockets.raw_buffer';
const UPSTREAM_TLS_CONTEXT_TYPE = 'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';
const RAW_BUFFER_TYPE = 'envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer';

interface WireDataSource {
  filename?: string;
  inline_bytes?: Uint8Array;
  inline_string?: string;
  environment_variable?: string;
  watched_directory?: object;
}
interface WireTlsCertificate {
  certificate_chain?: WireDataSource;
  private_key?: WireDataSource;
  pkcs12?: WireDataSource;
  watched_directory?: object;
  private_key_provider?: object;
  password?: WireDataSource;
  ocsp_staple?: WireDataSource;
  signed_certificate_timestamp?: WireDataSource[];
}
interface WireSanMatcher {
  san_type?: string | number;
  matcher?: WireStringMatcher;
  oid?: string;
}
interface WireValidationContext {
  trusted_ca?: WireDataSource;
  ca_certificate_provider_instance?: object;
  system_root_certs?: object;
  watched_directory?: object;
  verify_certificate_spki?: string[];
  verify_certificate_hash?: string[];
  match_typed_subject_alt_names?: WireSanMatcher[];
  match_subject_alt_names?: WireStringMatcher[];
  require_signed_certificate_timestamp?: { value?: boolean };
  crl?: WireDataSource;
  allow_expired_certificate?: boolean;
  trust_chain_verification?: string | number;
  custom_validator_config?: object;
  only_verify_leaf_cert_crl?: boolean;
  max_verify_depth?: { value?: number };
}
interface WireTlsParams {
  tls_minimum_protocol_version?: string | number;
  tls_maximum_protocol_version?: string | number;
  cipher_suites?: string[];
  ecdh_curves?: string[];
  signature_algorithms?: string[];
  compliance_policies?: (string | number)[];
}
export interface WireUpstreamTlsContext {
  common_tls_context?: {
    tls_params?: WireTlsParams;
    tls_certificates?: WireTlsCertificate[];
    tls_certificate_sds_secret_configs?: object[];
    tls_certificate_provider_instance?: object;
    custom_tls_certificate_selector?: object;
    tls_certificate_certificate_provider?: object;
    tls_certificate_certificate_provider_instance?: object;
    validation_context?: WireValidationContext;
    validation_context_sds_secret_config?: object;
    combined_validation_context?: object;
    validation_context_certificate_provider?: object;
    validation_context_certificate_provider_instance?: object;
    alpn_protocols?: string[];
    custom_handshaker?: object;
    key_log?: object;
  };
  sni?: string;
  allow_renegotiation?: boolean;
  max_session_keys?: object;
  enforce_rsa_key_usage?: object;
}
export interface WireTransportSocket {
  name?: string;
  typed_config?: WireAny;
}

const SAN_TYPES: readonly (SanMatcher['type'] | undefined)[] = [
  undefined,
  'EMAIL',
  'DNS',
  'URI',
  'IP_ADDRESS',
];
const TLS_VERSIONS: Record<string, TlsVersion | 'auto'> = {
  TLS_AUTO: 'auto',
  TLSv1_0: 'TLSv1',
  TLSv1_1: 'TLSv1.1',
  TLSv1_2: 'TLSv1.2',
  TLSv1_3: 'TLSv1.3',
};
const TLS_VERSION_NAMES = Object.keys(TLS_VERSIONS);

/** `transport_socket`: TLS, raw buffer (none), or an error for anything else. */
export function decodeTransportSocket(
  w: WireTransportSocket | undefined,
  at: string,
  c: Collector,
): UpstreamTls | undefined {
  if (w === undefined) return undefined;
  const typeName = w.typed_config?.type_url?.slice(w.typed_config.type_url.lastIndexOf('/') + 1);
  if (typeName === RAW_BUFFER_TYPE || (!typeName && w.name === RAW_BUFFER_TRANSPORT_SOCKET)) return undefined;
  if (w.name !== TLS_TRANSPORT_SOCKET && typeName !== UPSTREAM_TLS_CONTEXT_TYPE) {
    c.err(at, `only ${TLS_TRANSPORT_SOCKET} and ${RAW_BUFFER_TRANSPORT_SOCKET} are supported`);
    return undefined;
  }
  const ctx = c.any<WireUpstreamTlsContext>(
    w.typed_config,
    [UPSTREAM_TLS_CONTEXT_TYPE],
    join(at, 'typed_config'),
  );
  return ctx ? decodeUpstreamTlsContext(ctx, join(at, 'typed_config'), c) : undefined;
}

export function decodeUpstreamTlsContext(w: WireUpstreamTlsContext, at: string, c: Collector): UpstreamTls {
  const common = w.common_tls_context ?? {};
  const cat = join(at, 'common_tls_context');
  c.unsupported(
    common,
    [
      'tls_certificate_sds_secret_configs',
      'validation_context_sds_secret_config',
      'combined_validation_context',
    ],
    cat,
    'SDS is not supported for upstream TLS; give the files in tls_certificates and validation_context',
  );
  c.unsupported(
    common,
    [
      'tls_certificate_provider_instance',
      'custom_tls_certificate_selector',
      'tls_certificate_certificate_provider',
      'tls_certificate_certificate_provider_instance',
      'validation_context_certificate_provider',
      'validation_context_certificate_provider_instance',
      'custom_handshaker',
      'key_log',
    ],
    cat,
  );

  const certs = common.tls_certificates ?? [];
  if (certs.length > 1) c.err(join(cat, 'tls_certificates'), 'at most one client certificate is supported');
  let clientCertificate: UpstreamTls['clientCertificate'];
  const cert = certs[0];
  if (cert) {
    const p = join(cat, 'tls_certificates[0]');
    c.unsupported(
      cert,
      ['pkcs12', 'watched_directory', 'private_key_provider', 'password', 'ocsp_staple'],
      p,
    );
    const chain = dataSource(cert.certificate_chain, join(p, 'certificate_chain'), c);
    const key = dataSource(cert.private_key, join(p, 'private_key'), c);
    if (chain && key) clientCertificate = { certificateChain: chain, privateKey: key };
  }

  const params = common.tls_params;
  const pat = join(cat, 'tls_params');
  if (params?.signature_algorithms?.length) c.err(join(pat, 'signature_algorithms'), 'is not supported');
  if (params?.compliance_policies?.length) c.err(join(pat, 'compliance_policies'), 'is not supported');
  const version = (v: string | number | undefined, f: string): TlsVersion | undefined => {
    const name = typeof v === 'number' ? TLS_VERSION_NAMES[v] : (v ?? 'TLS_AUTO');
    const value = name === undefined ? undefined : TLS_VERSIONS[name];
    if (value === undefined) c.err(join(pat, f), `unknown value ${v}`);
    return value === 'auto' ? undefined : value;
  };

  const alpnProtocols = common.alpn_protocols ?? [];
  alpnProtocols.forEach((p, i) => {
    if (p !== 'h2' && p !== 'http/1.1')
      c.err(join(cat, `alpn_protocols[${i}]`), `${JSON.stringify(p)}: only h2 and http/1.1 are spoken`);
  });

  const sni = w.sni ?? '';
  if (Buffer.byteLength(sni) > 255) c.err(join(at, 'sni'), 'must be at most 255 bytes');
  return {
    sni,
    autoSni: false,
    autoSanValidation: false,
    verify: validation(common.validation_context, join(cat, 'validation_context'), c),
    clientCertificate,
    alpnProtocols,
    minVersion: version(params?.tls_minimum_protocol_version, 'tls_minimum_protocol_version'),
    maxVersion: version(params?.tls_maximum_protocol_version, 'tls_maximum_protocol_version'),
    cipherSuites: params?.cipher_suites ?? [],
    ecdhCurves: params?.ecdh_curves ?? [],
  };
}

function validation(v: WireValidationContext | undefined, at: string, c: Collector): UpstreamTls['verify'] {
  if (v === undefined) return undefined;
  c.unsupported(
    v,
    [
      'ca_certificate_provider_instance',
      'verify_certificate_spki',
      'verify_certificate_hash',
      'custom_validator_config',
      'allow_expired_certificate',
      'only_verify_leaf_cert_crl',
      'max_verify_depth',
    ],
    at,
  );
  if (v.require_signed_certificate_timestamp?.value)
    c.err(join(at, 'require_signed_certificate_timestamp'), 'is not supported');
  if (v.trust_chain_verification !== undefined && v.trust_chain_verification !== 'VERIFY_TRUST_CHAIN')
    if (v.trust_chain_verification !== 0)
      c.err(join(at, 'trust_chain_verification'), 'only VERIFY_TRUST_CHAIN is supported');
  const subjectAltNames: SanMatcher[] = [];
  (v.match_subject_alt_names ?? []).forEach((m, i) => {
    subjectAltNames.push({
      type: undefined,
      matcher: stringMatcher(m, join(at, `match_subject_alt_names[${i}]`), c),
    });
  });
  (v.match_typed_subject_alt_names ?? []).forEach((m, i) => {
    const p = join(at, `match_typed_subject_alt_names[${i}]`);
    const type =
      typeof m.san_type === 'number' ? SAN_TYPES[m.san_type] : SAN_TYPES.find((t) => t === m.san_type);
    if (type === undefined) {
      c.err(
        join(p, 'san_type'),
        `${m.san_type ?? 'SAN_TYPE_UNSPECIFIED'}: must be EMAIL, DNS, URI or IP_ADDRESS`,
      );
      return;
    }
    subjectAltNames.push({ type, matcher: stringMatcher(m.matcher, join(p, 'matcher'), c) });
  });
  const trustedCa = v.trusted_ca ? dataSource(v.trusted_ca, join(at, 'trusted_ca'), c) : undefined;
  const systemRoots = v.system_root_certs !== undefined;
  if (!trustedCa && !systemRoots) {
    if (subjectAltNames.length > 0)
      c.err(
        at,
        'SAN matchers need trusted_ca or system_root_certs (verifying SANs without a trusted CA is insecure)',
      );
    if (v.crl !== undefined) c.err(join(at, 'crl'), 'needs trusted_ca or system_root_certs');
    return undefined;
  }
  return {
    trustedCa,
    crl: v.crl ? dataSource(v.crl, join(at, 'crl'), c) : undefined,
    subjectAltNames,
  };
}

function dataSource(d: WireDataSource | undefined, at: string, c: Collector): PemSource | undefined {
  if (d?.filename) return { kind: 'file', path: d.filename };
  if (d?.inline_string) return { kind: 'inline', pem: d.inline_string };
  if (d?.inline_bytes?.length) return { kind: 'inline', pem: Buffer.from(d.inline_bytes).toString('utf8') };
  if (d?.environment_variable) c.err(join(at, 'environment_variable'), 'is not supported');
  else c.err(at, 'needs filename, inline_string or inline_bytes');
  return undefined;
}
