/**
 * Certificates checked by an independent implementation: the openssl binary.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { CertificateAuthority } from '../../src/core/identity/ca.ts';
import { workloadCertificateFromChain } from '../../src/core/identity/certificate.ts';
import { createCsr } from '../../src/core/identity/csr.ts';

const dir = mkdtempSync(join(tmpdir(), 'ambit-openssl-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const openssl = (...args: string[]) =>
  execFileSync('openssl', args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const file = (name: string, text: string) => {
  writeFileSync(join(dir, name), text);
  return join(dir, name);
};
const reviews = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'reviews' };

test('openssl verifies the chain our CA issues and shows the SPIFFE SAN', async () => {
  const ca = await CertificateAuthority.createSelfSigned('cluster.local');
  const { csrPem, keyPem } = await createCsr(reviews);
  const r = await ca.sign({ csrPem, ttlMs: 3600_000 });
  assert.ok(r.ok);
  const leaf = file('leaf.pem', r.certChain[0]!);
  const root = file('root.pem', r.certChain[1]!);
  assert.match(openssl('verify', '-CAfile', root, leaf), /leaf\.pem: OK/);
  assert.match(openssl('verify', '-CAfile', root, '-purpose', 'sslclient', leaf), /OK/);
  assert.match(openssl('verify', '-CAfile', root, '-purpose', 'sslserver', leaf), /OK/);
  const text = openssl('x509', '-in', leaf, '-noout', '-text');
  assert.match(
    text,
    /X509v3 Subject Alternative Name: critical\s+URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/reviews/,
  );
  assert.match(text, /ASN1 OID: prime256v1/);
  assert.match(text, /Signature Algorithm: ecdsa-with-SHA256/);
  // The validity is the requested TTL (plus the one-minute backdate).
  const cert = workloadCertificateFromChain(reviews, keyPem, r.certChain);
  assert.equal(cert.notAfterMs - cert.notBeforeMs, 3600_000 + 60_000);
  // The key matches the leaf.
  const keyFile = file('leaf.key', keyPem);
  assert.equal(openssl('pkey', '-in', keyFile, '-pubout'), openssl('x509', '-in', leaf, '-noout', '-pubkey'));
});

test('openssl accepts our CSR: ECDSA P-256, valid signature, one critical URI SAN, empty subject', async () => {
  const { csrPem } = await createCsr(reviews);
  const csr = file('req.pem', csrPem);
  const out = openssl('req', '-in', csr, '-noout', '-verify', '-text');
  assert.match(out, /prime256v1/);
  assert.match(
    out,
    /Subject Alternative Name: critical\s+URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/reviews/,
  );
  assert.match(out, /Subject:\s*\n/);
});

test('a root made by openssl (EC and RSA) loads from PEM files and signs verifiable leaves', async () => {
  for (const alg of [
    ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
    ['-newkey', 'rsa:2048'],
  ]) {
    openssl(
      'req',
      '-x509',
      ...alg,
      '-nodes',
      '-keyout',
      'ext-root.key',
      '-out',
      'ext-root.pem',
      '-days',
      '30',
      '-subj',
      '/O=cluster.local',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    );
    const ca = await CertificateAuthority.fromFiles(join(dir, 'ext-root.pem'), join(dir, 'ext-root.key'));
    const { csrPem } = await createCsr(reviews);
    const r = await ca.sign({ csrPem });
    assert.ok(r.ok);
    const leaf = file('ext-leaf.pem', r.certChain[0]!);
    assert.match(openssl('verify', '-CAfile', join(dir, 'ext-root.pem'), leaf), /OK/);
  }
});

test('CSRs made by openssl: one URI SAN is signed; two, none, a non-SPIFFE URI or another trust domain is refused', async () => {
  const ca = await CertificateAuthority.createSelfSigned('cluster.local');
  const csrWith = (san: string | null) => {
    const args = [
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'x.key',
      '-subj',
      '/',
    ];
    if (san) args.push('-addext', `subjectAltName=critical,${san}`);
    return openssl(...args);
  };
  const ok = await ca.sign({ csrPem: csrWith('URI:spiffe://cluster.local/ns/ns1/sa/sa1') });
  assert.ok(ok.ok && ok.identity.serviceAccount === 'sa1');
  const two = await ca.sign({
    csrPem: csrWith('URI:spiffe://cluster.local/ns/a/sa/b,URI:spiffe://cluster.local/ns/c/sa/d'),
  });
  assert.deepEqual(two, { ok: false, reason: 'csr must carry exactly one URI SAN, found 2' });
  const none = await ca.sign({ csrPem: csrWith(null) });
  assert.deepEqual(none, { ok: false, reason: 'csr must carry exactly one URI SAN, found 0' });
  const http = await ca.sign({ csrPem: csrWith('URI:https://example.com/') });
  assert.equal(http.ok, false);
  const weakRsa = openssl(
    'req',
    '-new',
    '-newkey',
    'rsa:1024',
    '-nodes',
    '-keyout',
    'w.key',
    '-subj',
    '/',
    '-addext',
    'subjectAltName=critical,URI:spiffe://cluster.local/ns/a/sa/b',
  );
  assert.deepEqual(await ca.sign({ csrPem: weakRsa }), {
    ok: false,
    reason: 'csr RSA key of 1024 bits is too short (2048 at least)',
  });
  const foreign = await ca.sign({ csrPem: csrWith('URI:spiffe://other.example/ns/a/sa/b') });
  assert.deepEqual(foreign, {
    ok: false,
    reason: 'csr asks for trust domain other.example, this CA issues for cluster.local',
  });
});

test('a CSR whose signature does not verify is refused', async () => {
  const ca = await CertificateAuthority.createSelfSigned('cluster.local');
  const { csrPem } = await createCsr(reviews);
  const der = Buffer.from(csrPem.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
  der[der.length - 5]! ^= 0xff; // inside the signature
  const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  const r = await ca.sign({ csrPem: tampered });
  assert.equal(r.ok, false);
});

test('a CA response whose leaf names another identity is refused', async () => {
  const ca = await CertificateAuthority.createSelfSigned('cluster.local');
  const { csrPem, keyPem } = await createCsr({ ...reviews, serviceAccount: 'ratings' });
  const r = await ca.sign({ csrPem });
  assert.ok(r.ok);
  assert.throws(
    () => workloadCertificateFromChain(reviews, keyPem, r.certChain),
    /instead of the requested identity/,
  );
});
