/**
 * Local mode's Secrets (issue 8): `kind: Secret` documents of the YAML directory reach SDS as plain
 * objects (`data` base64 and `stringData` alike), and are not reported as a kind the controller
 * ignores.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadKubeDir } from '../../../src/controller/files/file-source.ts';
import { decodeSecret } from '../../../src/controller/xds/secrets.ts';

test('Secret documents of the directory, from data and stringData, without an "ignored kind" note', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-secrets-'));
  try {
    await writeFile(
      join(dir, 'certs.yaml'),
      `apiVersion: v1
kind: Secret
metadata: { name: a, namespace: istio-system }
type: kubernetes.io/tls
data:
  tls.crt: ${Buffer.from('CERT').toString('base64')}
  tls.key: ${Buffer.from('KEY').toString('base64')}
---
apiVersion: v1
kind: Namespace
metadata: { name: shop }
---
apiVersion: v1
kind: "Secret"
metadata: { name: b }
stringData:
  cacert: CA
`,
    );
    const r = await loadKubeDir(dir);
    assert.deepEqual(r.problems, []);
    assert.equal(r.snapshot.namespaces.length, 1);
    const secrets = r.secrets.map((raw) => decodeSecret(raw).value);
    assert.deepEqual(
      secrets.map((s) => [
        s?.namespace,
        s?.name,
        s?.type,
        Object.fromEntries([...(s?.data ?? [])].map(([k, v]) => [k, v.toString()])),
      ]),
      [
        ['istio-system', 'a', 'kubernetes.io/tls', { 'tls.crt': 'CERT', 'tls.key': 'KEY' }],
        ['default', 'b', 'Opaque', { cacert: 'CA' }],
      ],
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
