/**
 * DestinationRule `tls` on a waypoint (istiod's cluster_tls.go): SIMPLE and MUTUAL put an
 * UpstreamTlsContext on the Cluster's transport_socket, with auto_sni / auto_san_validation in the
 * HTTP protocol options when no sni / SANs are given; ISTIO_MUTUAL and DISABLE put none (HBONE is the
 * mesh's mutual TLS). The waypoint's decoder reads back what the controller wrote.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeL7Resources } from '../../../../src/controller/translate/l7/encode.ts';
import { decodeL7Resource } from '../../../../src/core/xds/l7-wire.ts';
import type { Cluster as ModelCluster } from '../../../../src/core/xds/l7-model.ts';
import { EnvoyTypeUrl } from '../../../../src/core/xds/l7-names.ts';
import { clusterOf, json, l7From, meshFrom, run } from './helpers.ts';

const MESH = `
apiVersion: v1
kind: Namespace
metadata: { name: egress, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: api, namespace: egress }
spec:
  hosts: [api.example.com]
  addresses: [240.0.0.1]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{ number: 80, name: http, protocol: HTTP, targetPort: 443 }, { number: 90, name: http2, protocol: HTTP2, targetPort: 443 }, { number: 5432, name: tcp, protocol: TCP }]
  endpoints: [{ address: 192.0.2.1 }]
`;

let mesh: ReturnType<typeof meshFrom> | undefined;
const custom = () => (mesh ??= meshFrom(MESH));
const C80 = 'outbound|80||api.example.com';
const C90 = 'outbound|90||api.example.com';
const C5432 = 'outbound|5432||api.example.com';
const TLS_CONTEXT = 'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';

function withTls(tls: string, on = custom()) {
  const objs = l7From(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: api, namespace: egress }
spec:
  host: api.example.com
  trafficPolicy:
    tls: ${tls}
`);
  assert.deepEqual(
    objs.problems.filter((p) => p.severity === 'error'),
    [],
  );
  const r = run(objs, { mesh: on });
  assert.deepEqual(r.problems, []);
  return r;
}

/** The waypoint's view of a cluster the controller wrote: encoded, then decoded as the waypoint does. */
function decoded(r: ReturnType<typeof run>, name: string): ModelCluster {
  const list = new Map(encodeL7Resources(r.resources)).get(EnvoyTypeUrl.Cluster) ?? [];
  const res = list.find((x) => x.name === name);
  assert.ok(res, `cluster ${name} encoded`);
  const d = decodeL7Resource(EnvoyTypeUrl.Cluster, res.bytes);
  if (!d.ok) assert.fail(JSON.stringify(d.errors));
  assert.equal(d.value.kind, 'cluster');
  return (d.value as { cluster: ModelCluster }).cluster;
}

function upstreamHttpOptions(r: ReturnType<typeof run>, name: string): unknown {
  const opts = json(clusterOf(r, name).typed_extension_protocol_options) as Record<
    string,
    Record<string, unknown>
  >;
  return opts['envoy.extensions.upstreams.http.v3.HttpProtocolOptions']?.upstream_http_protocol_options;
}

test('SIMPLE without caCertificates: system roots, auto SNI and auto SAN validation (istiod defaults)', () => {
  const r = withTls('{ mode: SIMPLE }');
  assert.deepEqual(json(clusterOf(r, C80).transport_socket), {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': TLS_CONTEXT,
      common_tls_context: { validation_context: { system_root_certs: {} } },
    },
  });
  assert.deepEqual(upstreamHttpOptions(r, C80), { auto_sni: true, auto_san_validation: true });
  const c = decoded(r, C80);
  assert.deepEqual(c.tls, {
    sni: '',
    autoSni: true,
    autoSanValidation: true,
    verify: { trustedCa: undefined, crl: undefined, subjectAltNames: [] },
    clientCertificate: undefined,
    alpnProtocols: [],
    minVersion: undefined,
    maxVersion: undefined,
    cipherSuites: [],
    ecdhCurves: [],
  });
});

test('SIMPLE with caCertificates, SANs and sni: no auto SNI or SAN validation; HTTP/2 offers h2 only', () => {
  const r = withTls(
    '{ mode: SIMPLE, caCertificates: /etc/ca.pem, caCrl: /etc/crl.pem, subjectAltNames: [api.example.com, "spiffe://x/ns/a/sa/b"], sni: api.example.com }',
  );
  assert.deepEqual(json(clusterOf(r, C90).transport_socket), {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': TLS_CONTEXT,
      common_tls_context: {
        validation_context: {
          trusted_ca: { filename: '/etc/ca.pem' },
          crl: { filename: '/etc/crl.pem' },
          match_subject_alt_names: [{ exact: 'api.example.com' }, { exact: 'spiffe://x/ns/a/sa/b' }],
        },
        alpn_protocols: ['h2'],
      },
      sni: 'api.example.com',
    },
  });
  assert.equal(upstreamHttpOptions(r, C90), undefined);
  const tls = decoded(r, C90).tls!;
  assert.deepEqual(
    [tls.sni, tls.autoSni, tls.autoSanValidation, tls.alpnProtocols],
    ['api.example.com', false, false, ['h2']],
  );
  assert.deepEqual(tls.verify, {
    trustedCa: { kind: 'file', path: '/etc/ca.pem' },
    crl: { kind: 'file', path: '/etc/crl.pem' },
    subjectAltNames: [
      { type: undefined, matcher: { kind: 'exact', value: 'api.example.com', ignoreCase: false } },
      { type: undefined, matcher: { kind: 'exact', value: 'spiffe://x/ns/a/sa/b', ignoreCase: false } },
    ],
  });
});

test('MUTUAL: the client certificate and key files; insecureSkipVerify: no validation context, auto SNI only', () => {
  const r = withTls(
    '{ mode: MUTUAL, clientCertificate: /c/cert.pem, privateKey: /c/key.pem, insecureSkipVerify: true }',
  );
  assert.deepEqual(json(clusterOf(r, C80).transport_socket), {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': TLS_CONTEXT,
      common_tls_context: {
        tls_certificates: [
          { certificate_chain: { filename: '/c/cert.pem' }, private_key: { filename: '/c/key.pem' } },
        ],
      },
    },
  });
  assert.deepEqual(upstreamHttpOptions(r, C80), { auto_sni: true });
  const tls = decoded(r, C80).tls!;
  assert.equal(tls.verify, undefined);
  assert.deepEqual(tls.clientCertificate, {
    certificateChain: { kind: 'file', path: '/c/cert.pem' },
    privateKey: { kind: 'file', path: '/c/key.pem' },
  });
});

test('a TCP port gets the transport socket without HTTP options', () => {
  const r = withTls('{ mode: SIMPLE, sni: db.example.com }');
  assert.equal(clusterOf(r, C5432).typed_extension_protocol_options, undefined);
  assert.equal(decoded(r, C5432).tls?.sni, 'db.example.com');
});

test("a ServiceEntry's subjectAltNames are the SANs when the rule names none; the rule's own win", () => {
  const entryMesh = meshFrom(
    MESH.replace(
      'endpoints:',
      'subjectAltNames: [api.internal, "spiffe://x/ns/egress/sa/api"]\n  endpoints:',
    ),
  );
  const sansOf = (policy: string) => {
    const r = withTls(policy, entryMesh);
    const tls = decoded(r, C80).tls;
    return {
      r,
      tls,
      sans: tls?.verify?.subjectAltNames.map((m) =>
        'value' in m.matcher ? m.matcher.value : m.matcher.regex,
      ),
    };
  };
  for (const mode of ['SIMPLE', 'MUTUAL, clientCertificate: /etc/c.pem, privateKey: /etc/k.pem']) {
    const { r, sans } = sansOf(`{ mode: ${mode} }`);
    assert.deepEqual(sans, ['api.internal', 'spiffe://x/ns/egress/sa/api'], mode);
    // SANs given: the host is still the SNI, but no longer checked against the certificate.
    assert.deepEqual(upstreamHttpOptions(r, C80), { auto_sni: true }, mode);
  }
  const own = sansOf('{ mode: SIMPLE, subjectAltNames: [own.example.com] }');
  assert.deepEqual(own.sans, ['own.example.com']);
  // insecureSkipVerify: nothing to verify, the entry's SANs do not turn validation back on.
  assert.equal(sansOf('{ mode: SIMPLE, insecureSkipVerify: true }').tls?.verify, undefined);
  // Without SANs anywhere: today's auto SAN validation by host.
  assert.deepEqual(upstreamHttpOptions(withTls('{ mode: SIMPLE }'), C80), {
    auto_sni: true,
    auto_san_validation: true,
  });
});

test('DISABLE and ISTIO_MUTUAL originate nothing (HBONE is the mesh mutual TLS)', () => {
  for (const mode of ['DISABLE', 'ISTIO_MUTUAL']) {
    const r = withTls(`{ mode: ${mode} }`);
    assert.equal(clusterOf(r, C80).transport_socket, undefined, mode);
    assert.equal(upstreamHttpOptions(r, C80), undefined, mode);
    assert.equal(decoded(r, C80).tls, undefined, mode);
  }
});
