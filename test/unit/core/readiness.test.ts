/**
 * `/healthz/ready` (admin-routes.ts) through a real HTTP endpoint: 500 naming what is pending; 200
 * `ready` when nothing is; 200 naming what is degraded when the program serves with a part broken
 * (a gateway server without its certificate beside others that serve), so the pod stays in its
 * Service.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readinessRoutes, type Readiness } from '../../../src/core/admin-routes.ts';
import { HttpEndpoint } from '../../../src/core/http-endpoint.ts';
import { silentLogger } from '../../../src/core/log.ts';

async function ask(readiness: Readiness): Promise<{ status: number; body: string }> {
  const endpoint = await HttpEndpoint.start(
    { host: '127.0.0.1', port: 0 },
    readinessRoutes(readiness),
    silentLogger(),
  );
  try {
    const res = await fetch(`http://127.0.0.1:${endpoint.address().port}/healthz/ready`);
    return { status: res.status, body: await res.text() };
  } finally {
    await endpoint.close();
  }
}

test('pending: 500 naming each; degraded parts do not matter then', async () => {
  assert.deepEqual(await ask({ pending: () => ['xds', 'certificate'], degraded: () => ['server a'] }), {
    status: 500,
    body: 'not ready, pending: xds, certificate\n',
  });
});

test('nothing pending: 200 ready, with or without a degraded() hook', async () => {
  assert.deepEqual(await ask({ pending: () => [] }), { status: 200, body: 'ready\n' });
  assert.deepEqual(await ask({ pending: () => [], degraded: () => [] }), { status: 200, body: 'ready\n' });
});

test('nothing pending, something degraded: 200 naming it', async () => {
  assert.deepEqual(await ask({ pending: () => [], degraded: () => ['server a (missing.pem)', 'server b'] }), {
    status: 200,
    body: 'ready, degraded: server a (missing.pem), server b\n',
  });
});
