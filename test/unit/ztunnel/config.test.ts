import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { test } from 'node:test';
import { DEFAULT_CERT_TTL_MS } from '../../../src/core/identity/ca.ts';
import { buildZtunnelConfig, redactedConfig, type ZtunnelConfig } from '../../../src/ztunnel/config.ts';

const REQUIRED = {
  LOCAL_XDS_PATH: '/etc/ambit/mesh.yaml',
  AMBIT_CA_CERT_FILE: '/etc/ambit/ca-cert.pem',
  AMBIT_CA_KEY_FILE: '/etc/ambit/ca-key.pem',
};

function build(env: Record<string, string | undefined>): ZtunnelConfig {
  const r = buildZtunnelConfig(env);
  if (!r.ok) assert.fail(`unexpected errors: ${r.errors.join('; ')}`);
  return r.config;
}

function errorsOf(env: Record<string, string | undefined>): string[] {
  const r = buildZtunnelConfig(env);
  if (r.ok) assert.fail('built without errors');
  return r.errors;
}

test('defaults', () => {
  assert.deepEqual(build(REQUIRED), {
    nodeName: hostname(),
    trustDomain: 'cluster.local',
    network: '',
    localConfigPath: '/etc/ambit/mesh.yaml',
    xdsAddress: '',
    caAddress: '',
    authToken: '',
    clusterId: 'Kubernetes',
    xdsRootCaPath: '',
    xdsHostname: 'istiod.istio-system.svc',
    caCertPath: '/etc/ambit/ca-cert.pem',
    caKeyPath: '/etc/ambit/ca-key.pem',
    certTtlMs: DEFAULT_CERT_TTL_MS,
    admin: { host: '127.0.0.1', port: 15000 },
    metrics: { host: '0.0.0.0', port: 15020 },
    readiness: { host: '0.0.0.0', port: 15021 },
    socks5: [],
    drainDeadlineMs: 5000,
    connectTimeoutMs: 10_000,
    socksHandshakeTimeoutMs: 10_000,
    poolMaxStreamsPerConnection: 100,
    poolIdleTimeoutMs: 300_000,
    logLevel: 'info',
    inpod: false,
    cniSocketPath: '/var/run/ambit/cni.sock',
    cniAddTimeoutMs: 5000,
    probeSources: [],
  });
});

test('every variable is read', () => {
  const c = build({
    ...REQUIRED,
    NODE_NAME: 'node-7',
    TRUST_DOMAIN: 'example.org',
    SECRET_TTL: '1h',
    AMBIT_ADMIN_ADDR: '[::1]:16000',
    AMBIT_METRICS_ADDR: '127.0.0.1:0',
    AMBIT_READINESS_ADDR: 'localhost:16021',
    CONNECTION_TERMINATION_DEADLINE: '30',
    AMBIT_CONNECT_TIMEOUT: '500ms',
    AMBIT_SOCKS_HANDSHAKE_TIMEOUT: '2s',
    POOL_MAX_STREAMS_PER_CONNECTION: '1000',
    POOL_UNUSED_RELEASE_TIMEOUT: '1m',
    LOG_LEVEL: 'debug',
    INPOD_ENABLED: 'true',
    AMBIT_CNI_SOCKET: '/run/x/cni.sock',
    AMBIT_CNI_ADD_TIMEOUT: '12s',
    AMBIT_PROBE_SOURCES: '10.0.0.1, 10.1.0.0/16,fd00::1',
  });
  assert.equal(c.nodeName, 'node-7');
  assert.equal(c.trustDomain, 'example.org');
  assert.equal(c.certTtlMs, 3_600_000);
  assert.deepEqual(c.admin, { host: '::1', port: 16000 });
  assert.deepEqual(c.metrics, { host: '127.0.0.1', port: 0 });
  assert.deepEqual(c.readiness, { host: 'localhost', port: 16021 });
  assert.equal(c.drainDeadlineMs, 30_000);
  assert.equal(c.connectTimeoutMs, 500);
  assert.equal(c.socksHandshakeTimeoutMs, 2000);
  assert.equal(c.poolMaxStreamsPerConnection, 1000);
  assert.equal(c.poolIdleTimeoutMs, 60_000);
  assert.equal(c.logLevel, 'debug');
  assert.equal(c.inpod, true);
  assert.equal(c.cniSocketPath, '/run/x/cni.sock');
  assert.equal(c.cniAddTimeoutMs, 12_000);
  assert.deepEqual(c.probeSources, ['10.0.0.1/32', '10.1.0.0/16', 'fd00::1/128']);
});

test('AMBIT_PROBE_SOURCES are kept in the form iptables-save prints, so installed rules compare equal', () => {
  const c = build({
    ...REQUIRED,
    AMBIT_PROBE_SOURCES: '10.201.2.5/24,FD00:0:0::ABCD/64,10.0.0.1,FE80::1',
  });
  assert.deepEqual(c.probeSources, ['10.201.2.0/24', 'fd00::/64', '10.0.0.1/32', 'fe80::1/128']);
});

test('AMBIT_CNI_ADD_TIMEOUT: at most 50 s (ADD may wait twice as long, and the plugin gives up at 120 s)', () => {
  assert.deepEqual(errorsOf({ ...REQUIRED, AMBIT_CNI_ADD_TIMEOUT: '1m' }), [
    'AMBIT_CNI_ADD_TIMEOUT: must be at most 50s',
  ]);
  assert.equal(build({ ...REQUIRED, AMBIT_CNI_ADD_TIMEOUT: '50s' }).cniAddTimeoutMs, 50_000);
});

test('INPOD_ENABLED and AMBIT_PROBE_SOURCES: bad values are named', () => {
  assert.deepEqual(
    errorsOf({
      ...REQUIRED,
      INPOD_ENABLED: 'sometimes',
      AMBIT_PROBE_SOURCES: '10.0.0.1,kubelet,10.0.0.0/40',
    }),
    [
      'INPOD_ENABLED: "sometimes" is not a boolean (use true or false)',
      'AMBIT_PROBE_SOURCES: "kubelet" is not an IP address or CIDR',
      'AMBIT_PROBE_SOURCES: "10.0.0.0/40" is not an IP address or CIDR',
    ],
  );
});

const socksCases: { raw: string; want: ZtunnelConfig['socks5'] }[] = [
  { raw: '', want: [] },
  { raw: '   ', want: [] },
  {
    raw: '127.0.0.1:15080=default/productpage',
    want: [{ host: '127.0.0.1', port: 15080, workload: 'default/productpage' }],
  },
  {
    raw: '127.0.0.1:15080=default/productpage, [::1]:15081=local//Pod/default/curl',
    want: [
      { host: '127.0.0.1', port: 15080, workload: 'default/productpage' },
      { host: '::1', port: 15081, workload: 'local//Pod/default/curl' },
    ],
  },
  {
    raw: ' 0.0.0.0:1 = ns/a ,localhost:2=ns/b',
    want: [
      { host: '0.0.0.0', port: 1, workload: 'ns/a' },
      { host: 'localhost', port: 2, workload: 'ns/b' },
    ],
  },
];

for (const { raw, want } of socksCases) {
  test(`AMBIT_SOCKS5=${JSON.stringify(raw)}`, () => {
    assert.deepEqual(build({ ...REQUIRED, AMBIT_SOCKS5: raw }).socks5, want);
  });
}

const badSocks = [
  '127.0.0.1:15080',
  '127.0.0.1=default/a',
  '127.0.0.1:15080=',
  '127.0.0.1:99999=default/a',
  '=default/a',
  '[::1]=default/a',
];

for (const raw of badSocks) {
  test(`AMBIT_SOCKS5=${JSON.stringify(raw)} is an error naming the entry`, () => {
    assert.deepEqual(errorsOf({ ...REQUIRED, AMBIT_SOCKS5: raw }), [
      `AMBIT_SOCKS5: "${raw}" is not host:port=workload (e.g. 127.0.0.1:15080=default/productpage)`,
    ]);
  });
}

test('AMBIT_SOCKS5: each bad entry is reported, good ones are kept apart', () => {
  const errors = errorsOf({ ...REQUIRED, AMBIT_SOCKS5: 'a:1=ns/x,bad,b:2=ns/y,c:3=' });
  assert.deepEqual(errors, [
    'AMBIT_SOCKS5: "bad" is not host:port=workload (e.g. 127.0.0.1:15080=default/productpage)',
    'AMBIT_SOCKS5: "c:3=" is not host:port=workload (e.g. 127.0.0.1:15080=default/productpage)',
  ]);
});

const singleErrors: { name: string; env: Record<string, string>; error: string | RegExp }[] = [
  {
    name: 'neither LOCAL_XDS_PATH nor XDS_ADDRESS',
    env: { AMBIT_CA_CERT_FILE: 'c', AMBIT_CA_KEY_FILE: 'k' },
    error:
      'LOCAL_XDS_PATH, XDS_ADDRESS: set exactly one (a config file, or the controller to get config from)',
  },
  {
    name: 'empty LOCAL_XDS_PATH',
    env: { ...REQUIRED, LOCAL_XDS_PATH: '' },
    error:
      'LOCAL_XDS_PATH, XDS_ADDRESS: set exactly one (a config file, or the controller to get config from)',
  },
  {
    name: 'both LOCAL_XDS_PATH and XDS_ADDRESS',
    env: { ...REQUIRED, XDS_ADDRESS: '127.0.0.1:15010' },
    error:
      'LOCAL_XDS_PATH, XDS_ADDRESS: set exactly one (a config file, or the controller to get config from)',
  },
  {
    name: 'bad XDS_ADDRESS',
    env: { XDS_ADDRESS: 'controller', AMBIT_CA_CERT_FILE: 'c', AMBIT_CA_KEY_FILE: 'k' },
    error: 'XDS_ADDRESS: "controller" is not host:port',
  },
  {
    name: 'CA_ADDRESS without AUTH_TOKEN',
    env: { LOCAL_XDS_PATH: 'x', CA_ADDRESS: '127.0.0.1:15010' },
    error: 'AUTH_TOKEN: is required with CA_ADDRESS (a token file or the token)',
  },
  {
    name: 'missing CA key',
    env: { LOCAL_XDS_PATH: 'x', AMBIT_CA_CERT_FILE: 'c' },
    error:
      'AMBIT_CA_CERT_FILE, AMBIT_CA_KEY_FILE: both are required without CA_ADDRESS (the CA that signs workload certificates)',
  },
  {
    name: 'bad SECRET_TTL',
    env: { ...REQUIRED, SECRET_TTL: '1d' },
    error: 'SECRET_TTL: "1d" is not a duration (use e.g. 500ms, 10s, 5m, 24h)',
  },
  {
    name: 'bad admin address',
    env: { ...REQUIRED, AMBIT_ADMIN_ADDR: '15000' },
    error: 'AMBIT_ADMIN_ADDR: "15000" is not host:port',
  },
  {
    name: 'bad LOG_LEVEL',
    env: { ...REQUIRED, LOG_LEVEL: 'verbose' },
    error: /^LOG_LEVEL: "verbose" is not one of trace, debug, info, warn, error/,
  },
  {
    name: 'POOL_MAX_STREAMS_PER_CONNECTION 0',
    env: { ...REQUIRED, POOL_MAX_STREAMS_PER_CONNECTION: '0' },
    error: 'POOL_MAX_STREAMS_PER_CONNECTION: "0" is not 1-1000',
  },
  {
    name: 'POOL_MAX_STREAMS_PER_CONNECTION 1001',
    env: { ...REQUIRED, POOL_MAX_STREAMS_PER_CONNECTION: '1001' },
    error: 'POOL_MAX_STREAMS_PER_CONNECTION: "1001" is not 1-1000',
  },
];

for (const c of singleErrors) {
  test(`error: ${c.name}`, () => {
    const errors = errorsOf(c.env);
    assert.equal(errors.length, 1, errors.join('\n'));
    if (typeof c.error === 'string') assert.equal(errors[0], c.error);
    else assert.match(errors[0]!, c.error);
  });
}

test('all errors are reported at once', () => {
  const errors = errorsOf({
    AMBIT_CA_CERT_FILE: 'c',
    AMBIT_CA_KEY_FILE: 'k',
    CONNECTION_TERMINATION_DEADLINE: 'forever',
    AMBIT_CONNECT_TIMEOUT: '-5s',
    AMBIT_SOCKS5: '127.0.0.1=default/a',
    LOG_LEVEL: 'loud',
    AMBIT_METRICS_ADDR: '[::1]',
  });
  const byVariable = new Map(errors.map((e) => [e.slice(0, e.indexOf(':')), e]));
  assert.equal(errors.length, 6, errors.join('\n'));
  assert.deepEqual([...byVariable.keys()].sort(), [
    'AMBIT_CONNECT_TIMEOUT',
    'AMBIT_METRICS_ADDR',
    'AMBIT_SOCKS5',
    'CONNECTION_TERMINATION_DEADLINE',
    'LOCAL_XDS_PATH, XDS_ADDRESS',
    'LOG_LEVEL',
  ]);
  assert.match(byVariable.get('AMBIT_CONNECT_TIMEOUT')!, /"-5s" is not a duration/);
  assert.match(byVariable.get('AMBIT_METRICS_ADDR')!, /"\[::1\]" is not host:port/);
  assert.match(byVariable.get('AMBIT_SOCKS5')!, /"127.0.0.1=default\/a" is not host:port=workload/);
  assert.match(byVariable.get('CONNECTION_TERMINATION_DEADLINE')!, /"forever" is not a duration/);
  assert.match(byVariable.get('LOCAL_XDS_PATH, XDS_ADDRESS')!, /set exactly one/);
  assert.match(byVariable.get('LOG_LEVEL')!, /"loud" is not one of/);
});

test('LOG_LEVEL accepts every pino level', () => {
  for (const level of ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']) {
    assert.equal(build({ ...REQUIRED, LOG_LEVEL: level }).logLevel, level);
  }
});

test('redactedConfig hides the CA key path only', () => {
  const c = build(REQUIRED);
  const r = redactedConfig(c);
  assert.equal(r.caKeyPath, '<redacted>');
  assert.equal(r.caCertPath, '/etc/ambit/ca-cert.pem');
  assert.equal(r.localConfigPath, '/etc/ambit/mesh.yaml');
});
