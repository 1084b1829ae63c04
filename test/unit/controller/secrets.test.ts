/**
 * Gateway certificates from Kubernetes Secrets (issue 8): decoding with field paths, istiod's key
 * conventions (cert/key before tls.crt/tls.key; `<name>-cacert` before the ca.crt of `<name>`), the
 * last good certificate kept over a malformed update, and istiod's authorization rule (a gateway
 * reads only the Secrets of its own namespace).
 */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import 'reflect-metadata';
import { CertificateAuthority } from '../../../src/core/identity/ca.ts';
import {
  crossNamespaceRefs,
  decodeSecret,
  mayReadSecret,
  secretCredentials,
  withLastGood,
  type KubeSecret,
} from '../../../src/controller/xds/secrets.ts';

let cert = '';
let key = '';
let otherKey = '';
let ca = '';

before(async () => {
  const authority = await CertificateAuthority.createSelfSigned('cluster.local');
  const id = { trustDomain: 'cluster.local', namespace: 'istio-system', serviceAccount: 'gw' };
  const a = await authority.issueServing(id, ['a.example.com'], 3600_000);
  const b = await authority.issueServing(id, ['b.example.com'], 3600_000);
  cert = a.certChainPem;
  key = a.keyPem;
  otherKey = b.keyPem;
  ca = authority.trustBundlePem;
});

const b64 = (s: string) => Buffer.from(s).toString('base64');

function secret(name: string, data: Record<string, string>, type = 'Opaque', namespace = 'istio-system') {
  const d = decodeSecret({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace },
    type,
    stringData: data,
  });
  assert.ok(d.value, JSON.stringify(d.problems));
  return d.value;
}

test('decodeSecret: data is base64, stringData text that wins; problems carry their paths', () => {
  const ok = decodeSecret({
    metadata: { name: 's', namespace: 'ns' },
    type: 'kubernetes.io/tls',
    data: { 'tls.crt': b64('x'), 'tls.key': b64('old') },
    stringData: { 'tls.key': 'new' },
  });
  assert.equal(ok.value?.data.get('tls.crt')?.toString(), 'x');
  assert.equal(ok.value?.data.get('tls.key')?.toString(), 'new');
  const cases: [unknown, string, RegExp][] = [
    [{ metadata: {} }, 'metadata.name', /is required/],
    [{ metadata: { name: 's' }, data: { 'tls.crt': 'not base64!' } }, 'data["tls.crt"]', /not base64/],
    [{ metadata: { name: 's' }, data: { 'tls.crt': 1 } }, 'data["tls.crt"]', /must be a string/],
    [{ metadata: { name: 's' }, stringData: [] }, 'stringData', /map of strings/],
    [{ metadata: { name: 's' }, type: 3 }, 'type', /must be a string/],
  ];
  for (const [raw, path, message] of cases) {
    const d = decodeSecret(raw);
    assert.equal(d.value, undefined, path);
    assert.ok(
      d.problems.some((p) => p.path === path && message.test(p.message)),
      `${path}: ${JSON.stringify(d.problems)}`,
    );
  }
});

test("secretCredentials: istiod's keys, the CA resource, and malformed Secrets named by field", () => {
  const secrets: KubeSecret[] = [
    secret('tls', { 'tls.crt': cert, 'tls.key': key, 'ca.crt': ca }, 'kubernetes.io/tls'),
    // cert/key are tried first, as istiod does.
    secret('generic', { cert, key, 'tls.crt': 'ignored', 'tls.key': 'ignored' }),
    // The -cacert Secret wins over ca.crt of its base.
    secret('both', { 'tls.crt': cert, 'tls.key': key, 'ca.crt': 'not used' }, 'kubernetes.io/tls'),
    secret('both-cacert', { cacert: ca }),
    secret('badcert', { 'tls.crt': 'nope', 'tls.key': key }, 'kubernetes.io/tls'),
    secret('wrongkey', { 'tls.crt': cert, 'tls.key': otherKey }, 'kubernetes.io/tls'),
    secret('empty', { 'tls.crt': '', 'tls.key': '' }, 'kubernetes.io/tls'),
    secret('nokeys', { foo: 'bar' }, 'kubernetes.io/tls'),
    secret('unrelated', { password: 'x' }),
  ];
  const { resources, problems } = secretCredentials(secrets);
  assert.deepEqual([...resources.keys()].sort(), [
    'kubernetes://istio-system/both',
    'kubernetes://istio-system/both-cacert',
    'kubernetes://istio-system/generic',
    'kubernetes://istio-system/tls',
    'kubernetes://istio-system/tls-cacert',
  ]);
  const tls = resources.get('kubernetes://istio-system/tls');
  assert.equal(tls?.kind, 'certificate');
  assert.equal(tls.kind === 'certificate' && tls.certificateChain.toString(), cert);
  const both = resources.get('kubernetes://istio-system/both-cacert');
  assert.equal(both?.kind === 'ca' && both.trustedCa.toString(), ca);
  const got = problems.map((p) => `${p.name} ${p.path}: ${p.message}`).sort();
  assert.equal(got.length, 4, got.join('\n'));
  assert.match(got[0]!, /^badcert data\["tls.crt"\]: holds no PEM certificate/);
  assert.match(got[1]!, /^empty data: found keys "tls.crt" and "tls.key", but they were empty/);
  assert.match(got[2]!, /^nokeys data: has no certificate: expected keys .*found: foo/);
  assert.match(got[3]!, /^wrongkey data\["tls.key"\]: is not the key of the certificate/);
});

test('withLastGood: a malformed new version keeps the last good certificate; a deleted Secret takes it away', () => {
  const good = secretCredentials([secret('s', { 'tls.crt': cert, 'tls.key': key, 'ca.crt': ca })]);
  const broken = [secret('s', { 'tls.crt': 'garbage', 'tls.key': key })];
  const now = secretCredentials(broken);
  const kept = withLastGood(now.resources, good.resources, broken, now.problems);
  assert.deepEqual(kept.kept.sort(), ['kubernetes://istio-system/s', 'kubernetes://istio-system/s-cacert']);
  assert.equal(kept.resources.size, 2);
  const gone = withLastGood(new Map(), good.resources, [], []);
  assert.equal(gone.resources.size, 0);
});

test("mayReadSecret: a gateway reads its own namespace's Secrets if it may list them (CAs always); another namespace only by a granted reference", () => {
  const mine = { namespace: 'istio-system', mayListSecrets: true };
  const noRbac = { namespace: 'istio-system', mayListSecrets: false };
  const table: [typeof mine | undefined, string, ReadonlySet<string>, boolean][] = [
    [mine, 'kubernetes://istio-system/cert', new Set(), true],
    [mine, 'kubernetes://istio-system/cert-cacert', new Set(), true],
    [noRbac, 'kubernetes://istio-system/cert', new Set(), false],
    [noRbac, 'kubernetes://istio-system/cert-cacert', new Set(), true],
    [mine, 'kubernetes://default/cert', new Set(), false],
    [mine, 'kubernetes://default/cert-cacert', new Set(), false],
    [mine, 'kubernetes://default/cert', new Set(['default/cert']), true],
    [mine, 'kubernetes://default/cert-cacert', new Set(['default/cert']), true],
    [mine, 'kubernetes://cert', new Set(), false],
    [mine, 'file:///etc/cert', new Set(), false],
    [undefined, 'kubernetes://istio-system/cert', new Set(), false],
  ];
  for (const [reader, name, cross, want] of table)
    assert.equal(mayReadSecret(reader, name, cross), want, `${JSON.stringify(reader)} ${name}`);
});

test('crossNamespaceRefs: the <namespace>/<name> credentialNames of gateway listeners', () => {
  const listener = (credentialName: string) => ({
    metadata: {
      filter_metadata: {
        'ambit.gateway': {
          fields: { tls: { structValue: { fields: { credentialName: { stringValue: credentialName } } } } },
        },
      },
    },
  });
  assert.deepEqual(
    [...crossNamespaceRefs([listener('same'), listener('other/cert'), { name: 'plain' }])],
    ['other/cert'],
  );
});
