/**
 * Should-fix 1 of the in-pod review: pooled HBONE connections dialled from a pod's address go when
 * the pod is released (HbonePool.closeFrom), instead of outliving it for the idle timeout.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HbonePool } from '../../../src/core/hbone/pool.ts';
import { HboneServer } from '../../../src/core/hbone/server.ts';
import { CertificateAuthority } from '../../../src/core/identity/ca.ts';
import { LocalCaProvider } from '../../../src/core/identity/secret-manager.ts';
import { silentLogger } from '../../../src/core/log.ts';

const id = (sa: string) => ({ trustDomain: 'cluster.local', namespace: 'default', serviceAccount: sa });

test('should-fix 1: closeFrom(srcIp) closes and forgets only the connections dialled from that address', async () => {
  const provider = new LocalCaProvider(
    await CertificateAuthority.createSelfSigned('cluster.local'),
    3600_000,
  );
  const server = await HboneServer.start({
    host: '127.0.0.1',
    port: 0,
    certificate: await provider.fetch(id('server')),
    trustDomain: 'cluster.local',
    log: silentLogger(),
    onRequest: (req) => req.reject(503),
  });
  const pool = new HbonePool({
    getCertificate: (i) => provider.fetch(i),
    log: silentLogger(),
    connectTimeoutMs: 5000,
    idleTimeoutMs: 300_000,
    maxStreamsPerConnection: 100,
  });
  try {
    const to = (srcIp: string) =>
      pool.connect(
        {
          srcIdentity: id('client'),
          srcIp,
          dstIp: '127.0.0.1',
          dstPort: server.address().port,
          expectedIdentities: ['spiffe://cluster.local/ns/default/sa/server'],
        },
        { authority: '127.0.0.1:80', headers: {} },
      );
    assert.equal((await to('127.0.0.2')).ok, false);
    assert.equal((await to('127.0.0.3')).ok, false);
    assert.equal(pool.connectionCount, 2);
    assert.equal(pool.closeFrom('127.0.0.2'), 1);
    assert.equal(pool.connectionCount, 1);
    assert.equal(pool.closeFrom('127.0.0.2'), 0);
    // A new request from the released address dials afresh rather than reusing the closed one.
    assert.equal((await to('127.0.0.2')).ok, false);
    assert.equal(pool.connectionCount, 2);
  } finally {
    pool.destroy();
    await server.close(0);
  }
});
