/**
 * The controller's configuration: the tokenless proxyless xDS port is off by default, parsed when
 * set, and refused outside local mode (anyone who reaches it reads every route and endpoint).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildControllerConfig } from '../../../src/controller/config.ts';

const LOCAL = {
  AMBIT_CONFIG_DIR: '/etc/ambit/kube',
  AMBIT_TOKENS_FILE: '/etc/ambit/tokens',
  AMBIT_CA_CERT_FILE: '/etc/ambit/ca.pem',
  AMBIT_CA_KEY_FILE: '/etc/ambit/ca-key.pem',
};

test('the proxyless xDS port: off by default, parsed in local mode, refused with an API server', () => {
  const off = buildControllerConfig(LOCAL);
  assert.ok(off.ok);
  assert.equal(off.config.proxylessXdsAddr, undefined);

  const on = buildControllerConfig({ ...LOCAL, AMBIT_PROXYLESS_XDS_ADDR: '127.0.0.1:15011' });
  assert.ok(on.ok);
  assert.deepEqual(on.config.proxylessXdsAddr, { host: '127.0.0.1', port: 15011 });

  const cluster = buildControllerConfig({
    ...LOCAL,
    AMBIT_CONFIG_DIR: undefined,
    AMBIT_TOKENS_FILE: undefined,
    KUBECONFIG: '/home/me/.kube/config',
    AMBIT_PROXYLESS_XDS_ADDR: '0.0.0.0:15011',
  });
  assert.ok(!cluster.ok);
  assert.deepEqual(
    cluster.errors.filter((e) => e.startsWith('AMBIT_PROXYLESS_XDS_ADDR')),
    [
      'AMBIT_PROXYLESS_XDS_ADDR: only in local mode (with AMBIT_CONFIG_DIR): it serves L7 xDS without a token',
    ],
  );

  const bad = buildControllerConfig({ ...LOCAL, AMBIT_PROXYLESS_XDS_ADDR: 'nowhere' });
  assert.ok(!bad.ok);
  assert.ok(
    bad.errors.some((e) => e.startsWith('AMBIT_PROXYLESS_XDS_ADDR')),
    bad.errors.join('; '),
  );
});
