/**
 * What the gateway reads off the wire (issue 8): the server facts of a listener's metadata, every
 * problem with its path, and SDS Secrets (a certificate with its key, a CA) with theirs.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeMessage } from '../../../src/controller/translate/l7/protos.ts';
import { decodeGatewayFacts } from '../../../src/waypoint/gateway/listener-facts.ts';
import { decodeSecretBytes, secretNamesOf } from '../../../src/waypoint/gateway/sds.ts';

const AT = 'metadata.filter_metadata["ambit.gateway"]';

const tls = (mode: string) => ({
  mode,
  serverCertificate: '',
  privateKey: '',
  caCertificates: '',
  credentialName: 'cert',
  subjectAltNames: [],
  minProtocolVersion: '',
  maxProtocolVersion: '',
});

test('decodeGatewayFacts: TCP, TLS PASSTHROUGH, terminated and ISTIO_MUTUAL servers; each problem with its path', () => {
  const ok: Record<string, unknown>[] = [
    { port: 31400, protocol: 'TCP', hosts: ['*'], servers: [] },
    { port: 15443, protocol: 'TLS', hosts: ['a.example.com'], servers: [], tls: tls('PASSTHROUGH') },
    { port: 15443, protocol: 'TLS', hosts: ['a.example.com'], servers: [], tls: tls('ISTIO_MUTUAL') },
    { port: 15443, protocol: 'TLS', hosts: ['a.example.com'], servers: [], tls: tls('MUTUAL') },
    { port: 443, protocol: 'HTTPS', hosts: ['a.example.com'], servers: [], tls: tls('SIMPLE') },
  ];
  for (const raw of ok) assert.equal(decodeGatewayFacts(raw).ok, true, JSON.stringify(raw));
  const bad: [Record<string, unknown>, string, RegExp][] = [
    [{ port: 0, protocol: 'TCP', hosts: ['*'] }, `${AT}.port`, /must be a port/],
    [{ port: 1, protocol: 'UDP', hosts: ['*'] }, `${AT}.protocol`, /must be one of HTTP, HTTPS, TCP, TLS/],
    [{ port: 1, protocol: 'TLS', hosts: ['*'] }, `${AT}.tls`, /is required for TLS/],
    [
      { port: 1, protocol: 'HTTPS', hosts: ['*'], tls: tls('PASSTHROUGH') },
      `${AT}.tls.mode`,
      /must be SIMPLE or MUTUAL or ISTIO_MUTUAL$/,
    ],
    [
      { port: 1, protocol: 'TLS', hosts: ['*'], tls: tls('OPTIONAL_MUTUAL') },
      `${AT}.tls.mode`,
      /SIMPLE or MUTUAL or ISTIO_MUTUAL or PASSTHROUGH/,
    ],
    [{ port: 1, protocol: 'TCP', hosts: [] }, `${AT}.hosts`, /at least one host/],
    [{ port: 1, protocol: 'TLS', hosts: ['*'], tls: 'x' }, `${AT}.tls`, /must be a struct/],
  ];
  for (const [raw, path, message] of bad) {
    const d = decodeGatewayFacts(raw);
    assert.ok(
      !d.ok && d.errors.some((e) => e.path === path && message.test(e.message)),
      `${path}: ${JSON.stringify(d)}`,
    );
  }
});

test('secretNamesOf: the certificate, the CA for MUTUAL, nothing for PASSTHROUGH or files', () => {
  const facts = (t: ReturnType<typeof tls> | undefined) => ({
    port: 443,
    protocol: 'HTTPS' as const,
    hosts: ['*'],
    servers: [],
    tls: t,
  });
  assert.deepEqual(secretNamesOf(facts(tls('SIMPLE')), 'istio-system'), ['kubernetes://istio-system/cert']);
  assert.deepEqual(secretNamesOf(facts(tls('MUTUAL')), 'gw'), [
    'kubernetes://gw/cert',
    'kubernetes://gw/cert-cacert',
  ]);
  assert.deepEqual(secretNamesOf(facts({ ...tls('SIMPLE'), credentialName: 'other/cert' }), 'gw'), [
    'kubernetes://other/cert',
  ]);
  assert.deepEqual(secretNamesOf(facts(tls('PASSTHROUGH')), 'gw'), []);
  assert.deepEqual(secretNamesOf(facts({ ...tls('SIMPLE'), credentialName: '' }), 'gw'), []);
  assert.deepEqual(secretNamesOf(facts(undefined), 'gw'), []);
});

const SECRET = 'envoy.extensions.transport_sockets.tls.v3.Secret';

test('decodeSecretBytes: inline PEM of a certificate and of a CA; file names and empty ones refused with paths', () => {
  const cert = decodeSecretBytes(
    encodeMessage(SECRET, {
      name: 'kubernetes://ns/c',
      tls_certificate: {
        certificate_chain: { inline_bytes: Buffer.from('CERT') },
        private_key: { inline_string: 'KEY' },
      },
    }),
  );
  assert.ok(cert.ok && cert.value.kind === 'certificate');
  assert.equal(cert.value.certificateChain.toString(), 'CERT');
  assert.equal(cert.value.privateKey.toString(), 'KEY');
  const ca = decodeSecretBytes(
    encodeMessage(SECRET, {
      name: 'x',
      validation_context: { trusted_ca: { inline_bytes: Buffer.from('CA') } },
    }),
  );
  assert.ok(ca.ok && ca.value.kind === 'ca' && ca.value.trustedCa.toString() === 'CA');
  const cases: [object, string, RegExp][] = [
    [
      {
        tls_certificate: {
          certificate_chain: { filename: '/etc/c.pem' },
          private_key: { inline_string: 'K' },
        },
      },
      'tls_certificate.certificate_chain',
      /a file name is not read/,
    ],
    [
      { tls_certificate: { certificate_chain: { inline_string: 'C' } } },
      'tls_certificate.private_key',
      /is required/,
    ],
    [{ validation_context: {} }, 'validation_context.trusted_ca', /is required/],
    [{ name: 'only' }, 'type', /tls_certificate or validation_context/],
  ];
  for (const [msg, path, message] of cases) {
    const d = decodeSecretBytes(encodeMessage(SECRET, msg));
    assert.ok(
      !d.ok && d.errors.some((e) => e.path === path && message.test(e.message)),
      `${path}: ${JSON.stringify(d)}`,
    );
  }
  assert.equal(decodeSecretBytes(Buffer.from([0xff, 0xff, 0xff])).ok, false);
});
