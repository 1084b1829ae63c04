/**
 * A Cluster's transport_socket (UpstreamTlsContext) as the waypoint decodes it: what it applies,
 * and everything it refuses with the field path (the Cluster is NACKed, the last good one stays).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { anyOf, decodeClusterBytes, encodeEnvoy } from '../../../src/core/xds/l7-wire.ts';
import type { FieldError } from '../../../src/core/xds/workload-proto.ts';

const CLUSTER = 'envoy.config.cluster.v3.Cluster';
const TLS = 'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';
const HPO = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

function cluster(tlsContext: object | undefined, extra: object = {}) {
  return encodeEnvoy(CLUSTER, {
    name: 'outbound|80||api.example.com',
    type: 'EDS',
    eds_cluster_config: { eds_config: { ads: {} } },
    ...(tlsContext
      ? { transport_socket: { name: 'envoy.transport_sockets.tls', typed_config: anyOf(TLS, tlsContext) } }
      : {}),
    ...extra,
  });
}

function errorsOf(bytes: Uint8Array): [string, string][] {
  const d = decodeClusterBytes(bytes);
  if (d.ok) assert.fail('expected errors, decoded fine');
  return d.errors.map((e: FieldError) => [e.path, e.message]);
}

test('typed SAN matchers, inline PEM, TLS versions, ciphers, curves and auto SNI from the protocol options', () => {
  const d = decodeClusterBytes(
    cluster(
      {
        common_tls_context: {
          tls_params: {
            tls_minimum_protocol_version: 'TLSv1_2',
            tls_maximum_protocol_version: 'TLSv1_3',
            cipher_suites: ['ECDHE-ECDSA-AES128-GCM-SHA256'],
            ecdh_curves: ['P-256'],
          },
          tls_certificates: [
            { certificate_chain: { inline_string: 'CERT' }, private_key: { filename: '/k.pem' } },
          ],
          validation_context: {
            trusted_ca: { filename: '/ca.pem' },
            match_typed_subject_alt_names: [
              { san_type: 'DNS', matcher: { suffix: '.example.com' } },
              { san_type: 'URI', matcher: { exact: 'spiffe://td/ns/a/sa/b' } },
            ],
          },
          alpn_protocols: ['h2', 'http/1.1'],
        },
      },
      {
        typed_extension_protocol_options: {
          [HPO]: anyOf(HPO, {
            upstream_http_protocol_options: { auto_sni: true, auto_san_validation: true },
            explicit_http_config: { http_protocol_options: {} },
          }),
        },
      },
    ),
  );
  if (!d.ok) assert.fail(JSON.stringify(d.errors));
  assert.deepEqual(d.value.tls, {
    sni: '',
    autoSni: true,
    autoSanValidation: true,
    verify: {
      trustedCa: { kind: 'file', path: '/ca.pem' },
      crl: undefined,
      subjectAltNames: [
        { type: 'DNS', matcher: { kind: 'suffix', value: '.example.com', ignoreCase: false } },
        { type: 'URI', matcher: { kind: 'exact', value: 'spiffe://td/ns/a/sa/b', ignoreCase: false } },
      ],
    },
    clientCertificate: {
      certificateChain: { kind: 'inline', pem: 'CERT' },
      privateKey: { kind: 'file', path: '/k.pem' },
    },
    alpnProtocols: ['h2', 'http/1.1'],
    minVersion: 'TLSv1.2',
    maxVersion: 'TLSv1.3',
    cipherSuites: ['ECDHE-ECDSA-AES128-GCM-SHA256'],
    ecdhCurves: ['P-256'],
  });
});

test('no validation context: not verified; a raw_buffer transport socket is no TLS', () => {
  const d = decodeClusterBytes(cluster({ sni: 'x.example.com' }));
  assert.ok(d.ok);
  assert.deepEqual([d.value.tls?.sni, d.value.tls?.verify], ['x.example.com', undefined]);
  const raw = decodeClusterBytes(
    encodeEnvoy(CLUSTER, {
      name: 'c',
      type: 'EDS',
      eds_cluster_config: { eds_config: { ads: {} } },
      transport_socket: { name: 'envoy.transport_sockets.raw_buffer' },
    }),
  );
  assert.ok(raw.ok);
  assert.equal(raw.value.tls, undefined);
});

const REFUSED: [string, Uint8Array, [string, RegExp][]][] = [
  [
    'another transport socket',
    encodeEnvoy(CLUSTER, {
      name: 'c',
      type: 'EDS',
      eds_cluster_config: { eds_config: { ads: {} } },
      transport_socket: { name: 'envoy.transport_sockets.alts' },
    }),
    [['transport_socket', /only envoy.transport_sockets.tls and envoy.transport_sockets.raw_buffer/]],
  ],
  [
    'SDS certificates and roots',
    cluster({
      common_tls_context: {
        tls_certificate_sds_secret_configs: [{ name: 'default' }],
        combined_validation_context: { default_validation_context: {} },
      },
    }),
    [
      [
        'transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs',
        /SDS is not supported/,
      ],
      [
        'transport_socket.typed_config.common_tls_context.combined_validation_context',
        /SDS is not supported/,
      ],
    ],
  ],
  [
    'SAN matchers without a trusted CA',
    cluster({ common_tls_context: { validation_context: { match_subject_alt_names: [{ exact: 'a' }] } } }),
    [
      [
        'transport_socket.typed_config.common_tls_context.validation_context',
        /need trusted_ca or system_root_certs/,
      ],
    ],
  ],
  [
    'SPKI pinning, an unknown ALPN',
    cluster({
      common_tls_context: {
        validation_context: {
          system_root_certs: {},
          verify_certificate_spki: ['abc'],
        },
        alpn_protocols: ['istio'],
      },
    }),
    [
      ['transport_socket.typed_config.common_tls_context.alpn_protocols[0]', /only h2 and http\/1.1/],
      [
        'transport_socket.typed_config.common_tls_context.validation_context.verify_certificate_spki',
        /not supported/,
      ],
    ],
  ],
  [
    'a certificate without its key, two certificates',
    cluster({
      common_tls_context: {
        tls_certificates: [
          { certificate_chain: { filename: '/c.pem' } },
          { certificate_chain: { filename: '/d.pem' } },
        ],
      },
    }),
    [
      ['transport_socket.typed_config.common_tls_context.tls_certificates', /at most one/],
      ['transport_socket.typed_config.common_tls_context.tls_certificates[0].private_key', /needs filename/],
    ],
  ],
  [
    'override_auto_sni_header',
    cluster(
      { sni: 'a' },
      {
        typed_extension_protocol_options: {
          [HPO]: anyOf(HPO, {
            upstream_http_protocol_options: { auto_sni: true, override_auto_sni_header: 'x-sni' },
            explicit_http_config: { http_protocol_options: {} },
          }),
        },
      },
    ),
    [
      [
        `typed_extension_protocol_options["${HPO}"].upstream_http_protocol_options.override_auto_sni_header`,
        /not supported/,
      ],
    ],
  ],
];

for (const [name, bytes, expected] of REFUSED) {
  test(`NACKed with the field path: ${name}`, () => {
    const got = errorsOf(bytes);
    assert.equal(got.length, expected.length, JSON.stringify(got));
    expected.forEach(([path, message], i) => {
      assert.equal(got[i]![0], path);
      assert.match(got[i]![1], message);
    });
  });
}
