import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { test } from 'node:test';
import {
  formatSpiffe,
  identityFromSubjectAltName,
  parseSpiffe,
  uriSans,
  type Identity,
} from '../../../src/core/identity/spiffe.ts';
import { ECDSA_SHA256, P256_KEY, subtle, x509 } from '../../../src/core/identity/x509.ts';

const valid: { uri: string; identity: Identity }[] = [
  {
    uri: 'spiffe://cluster.local/ns/default/sa/productpage',
    identity: { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'productpage' },
  },
  {
    uri: 'spiffe://example.org/ns/istio-system/sa/ztunnel_v2',
    identity: { trustDomain: 'example.org', namespace: 'istio-system', serviceAccount: 'ztunnel_v2' },
  },
  { uri: 'spiffe://td/ns/n/sa/s', identity: { trustDomain: 'td', namespace: 'n', serviceAccount: 's' } },
];

for (const { uri, identity } of valid) {
  test(`parseSpiffe accepts ${uri}`, () => {
    assert.deepEqual(parseSpiffe(uri), { ok: true, identity });
  });
  test(`formatSpiffe(parseSpiffe(${uri})) round-trips`, () => {
    assert.equal(formatSpiffe(identity), uri);
  });
}

const invalid: { name: string; uri: string; error: RegExp }[] = [
  { name: 'https scheme', uri: 'https://cluster.local/ns/a/sa/b', error: /does not start with spiffe:\/\// },
  { name: 'upper-case scheme', uri: 'SPIFFE://cluster.local/ns/a/sa/b', error: /does not start with/ },
  { name: 'no scheme', uri: 'cluster.local/ns/a/sa/b', error: /does not start with/ },
  { name: 'empty string', uri: '', error: /does not start with/ },
  { name: 'trust domain only', uri: 'spiffe://cluster.local', error: /must have the form/ },
  { name: 'three segments', uri: 'spiffe://cluster.local/ns/a', error: /must have the form/ },
  { name: 'six segments', uri: 'spiffe://cluster.local/ns/a/sa/b/c', error: /must have the form/ },
  { name: 'trailing slash', uri: 'spiffe://cluster.local/ns/a/sa/b/', error: /must have the form/ },
  { name: 'double slash', uri: 'spiffe://cluster.local//ns/a/sa/b', error: /must have the form/ },
  { name: 'extra leading slash', uri: 'spiffe:///cluster.local/ns/a/sa/b', error: /must have the form/ },
  { name: '"namespace" instead of ns', uri: 'spiffe://td/namespace/a/sa/b', error: /must have the form/ },
  { name: '"serviceaccount" instead of sa', uri: 'spiffe://td/ns/a/serviceaccount/b', error: /must have/ },
  { name: 'ns and sa swapped', uri: 'spiffe://td/sa/a/ns/b', error: /must have the form/ },
  { name: 'upper-case NS literal', uri: 'spiffe://td/NS/a/sa/b', error: /must have the form/ },
  { name: 'empty trust domain', uri: 'spiffe:///ns/a/sa/b', error: /empty or invalid trust domain/ },
  { name: 'empty namespace', uri: 'spiffe://td/ns//sa/b', error: /empty or invalid namespace/ },
  { name: 'empty service account', uri: 'spiffe://td/ns/a/sa/', error: /empty or invalid service account/ },
  { name: 'space in namespace', uri: 'spiffe://td/ns/a b/sa/c', error: /invalid namespace/ },
  { name: 'comma in namespace', uri: 'spiffe://td/ns/a,b/sa/c', error: /invalid namespace/ },
  { name: 'port in trust domain', uri: 'spiffe://td:443/ns/a/sa/b', error: /invalid trust domain/ },
  { name: 'query after sa', uri: 'spiffe://td/ns/a/sa/b?x=1', error: /invalid service account/ },
];

for (const { name, uri, error } of invalid) {
  test(`parseSpiffe rejects ${name}: ${JSON.stringify(uri)}`, () => {
    const r = parseSpiffe(uri);
    assert.equal(r.ok, false);
    assert.match((r as { error: string }).error, error);
  });
}

// The `subjectaltname` strings below are exactly what Node 24's X509Certificate.subjectAltName returned
// for certificates made with openssl and @peculiar/x509: Node JSON-quotes an entry holding a comma or
// a quote and escapes the comma itself as \u002c, so no raw ", " ever appears inside an entry.
const sanCases: { name: string; san: string | undefined; uris: string[]; identity: Identity | undefined }[] =
  [
    { name: 'undefined', san: undefined, uris: [], identity: undefined },
    { name: 'empty string', san: '', uris: [], identity: undefined },
    { name: 'DNS only', san: 'DNS:a.example.com, DNS:b', uris: [], identity: undefined },
    {
      name: 'DNS, URI and IP',
      san: 'DNS:a, URI:spiffe://cluster.local/ns/default/sa/x, IP Address:1.2.3.4',
      uris: ['spiffe://cluster.local/ns/default/sa/x'],
      identity: { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'x' },
    },
    {
      name: 'URI first',
      san: 'URI:spiffe://td/ns/n/sa/s, DNS:a',
      uris: ['spiffe://td/ns/n/sa/s'],
      identity: { trustDomain: 'td', namespace: 'n', serviceAccount: 's' },
    },
    {
      name: 'IPv6 and email around the URI',
      san: 'IP Address:FD00:0:0:0:0:0:0:1, URI:spiffe://td/ns/n/sa/s, email:a@b.c',
      uris: ['spiffe://td/ns/n/sa/s'],
      identity: { trustDomain: 'td', namespace: 'n', serviceAccount: 's' },
    },
    {
      name: 'quoted URI with an escaped comma (not a valid SPIFFE id)',
      san: 'URI:"spiffe://x/ns/a\\u002cb/sa/c"',
      uris: ['spiffe://x/ns/a,b/sa/c'],
      identity: undefined,
    },
    {
      name: 'quoted URI with an escaped quote',
      san: 'URI:"spiffe://x/ns/a\\"b/sa/c", URI:spiffe://td/ns/n/sa/s',
      uris: ['spiffe://x/ns/a"b/sa/c', 'spiffe://td/ns/n/sa/s'],
      identity: { trustDomain: 'td', namespace: 'n', serviceAccount: 's' },
    },
    {
      name: 'a quoted URI that smuggles ", URI:" is one entry',
      san: 'URI:"spiffe://x/ns/a\\u002c URI:spiffe://evil/ns/e/sa/e", URI:spiffe://td/ns/n/sa/s',
      uris: ['spiffe://x/ns/a, URI:spiffe://evil/ns/e/sa/e', 'spiffe://td/ns/n/sa/s'],
      identity: { trustDomain: 'td', namespace: 'n', serviceAccount: 's' },
    },
    {
      name: 'a quoted DNS name that smuggles ", URI:" yields no URI',
      san: 'DNS:"x\\u002c URI:spiffe://evil/ns/a/sa/b\\u002c y", URI:spiffe://good/ns/n/sa/s',
      uris: ['spiffe://good/ns/n/sa/s'],
      identity: { trustDomain: 'good', namespace: 'n', serviceAccount: 's' },
    },
    {
      name: 'first parseable SPIFFE URI wins over a non-SPIFFE URI before it',
      san: 'URI:https://example.com/x, URI:spiffe://td/ns/n/sa/s, URI:spiffe://td2/ns/n2/sa/s2',
      uris: ['https://example.com/x', 'spiffe://td/ns/n/sa/s', 'spiffe://td2/ns/n2/sa/s2'],
      identity: { trustDomain: 'td', namespace: 'n', serviceAccount: 's' },
    },
    {
      name: 'a malformed SPIFFE URI is skipped',
      san: 'URI:spiffe://td/ns/n, URI:spiffe://td/ns/n/sa/ok',
      uris: ['spiffe://td/ns/n', 'spiffe://td/ns/n/sa/ok'],
      identity: { trustDomain: 'td', namespace: 'n', serviceAccount: 'ok' },
    },
    {
      name: 'only malformed SPIFFE URIs',
      san: 'URI:spiffe://td/ns/n/sa/s/extra, URI:spiffe://td/x/n/sa/s',
      uris: ['spiffe://td/ns/n/sa/s/extra', 'spiffe://td/x/n/sa/s'],
      identity: undefined,
    },
  ];

for (const c of sanCases) {
  test(`uriSans: ${c.name}`, () => {
    assert.deepEqual(uriSans(c.san), c.uris);
  });
  test(`identityFromSubjectAltName: ${c.name}`, () => {
    assert.deepEqual(identityFromSubjectAltName(c.san), c.identity);
  });
}

/** A self-signed certificate carrying exactly `sans`, read back through Node's X509Certificate. */
async function nodeSubjectAltName(sans: { type: 'dns' | 'url' | 'ip'; value: string }[]): Promise<string> {
  const keys = await subtle.generateKey(P256_KEY, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: 'O=test',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
    keys,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [new x509.SubjectAlternativeNameExtension(sans)],
  });
  const got = new X509Certificate(cert.toString('pem')).subjectAltName;
  assert.ok(got !== undefined);
  return got;
}

test("uriSans reads what Node's X509Certificate renders, including a comma inside a URI", async () => {
  const san = await nodeSubjectAltName([
    { type: 'dns', value: 'a.example.com' },
    { type: 'url', value: 'spiffe://x/ns/a,b/sa/c' },
    { type: 'ip', value: '10.1.2.3' },
    { type: 'url', value: 'spiffe://cluster.local/ns/default/sa/curl' },
  ]);
  assert.deepEqual(uriSans(san), ['spiffe://x/ns/a,b/sa/c', 'spiffe://cluster.local/ns/default/sa/curl']);
  assert.deepEqual(identityFromSubjectAltName(san), {
    trustDomain: 'cluster.local',
    namespace: 'default',
    serviceAccount: 'curl',
  });
});

test('a DNS SAN spelling ", URI:spiffe://…" in a real certificate does not become an identity', async () => {
  const san = await nodeSubjectAltName([{ type: 'dns', value: 'x, URI:spiffe://evil/ns/a/sa/b, y' }]);
  assert.deepEqual(uriSans(san), []);
  assert.equal(identityFromSubjectAltName(san), undefined);
});
