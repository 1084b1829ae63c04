/** The waypoint's configuration from the environment (src/waypoint/config.ts). */
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { test } from 'node:test';
import { DEFAULT_CERT_TTL_MS } from '../../../src/core/identity/ca.ts';
import {
  buildWaypointConfig,
  redactedWaypointConfig,
  WAYPOINT_ENV,
  waypointIdentity,
  type WaypointConfig,
} from '../../../src/waypoint/config.ts';

const REQUIRED = {
  POD_NAMESPACE: 'bookinfo',
  GATEWAY_NAME: 'waypoint',
  INSTANCE_IP: '10.1.2.3',
  XDS_ADDRESS: 'ambit-controller.istio-system.svc:15012',
  AMBIT_CA_CERT_FILE: '/etc/ambit/ca-cert.pem',
  AMBIT_CA_KEY_FILE: '/etc/ambit/ca-key.pem',
};

function build(env: Record<string, string | undefined>): WaypointConfig {
  const r = buildWaypointConfig(env);
  if (!r.ok) assert.fail(`unexpected errors: ${r.errors.join('; ')}`);
  return r.config;
}

function errorsOf(env: Record<string, string | undefined>): string[] {
  const r = buildWaypointConfig(env);
  if (r.ok) assert.fail('built without errors');
  return r.errors;
}

test('defaults', () => {
  assert.deepEqual(build(REQUIRED), {
    podName: hostname(),
    namespace: 'bookinfo',
    serviceAccount: 'waypoint',
    gatewayName: 'waypoint',
    instanceIp: '10.1.2.3',
    hbone: { host: '10.1.2.3', port: 15008 },
    trustDomain: 'cluster.local',
    clusterId: 'Kubernetes',
    xdsAddress: 'ambit-controller.istio-system.svc:15012',
    caAddress: '',
    authToken: '',
    xdsRootCaPath: '',
    xdsHostname: 'istiod.istio-system.svc',
    caCertPath: '/etc/ambit/ca-cert.pem',
    caKeyPath: '/etc/ambit/ca-key.pem',
    certTtlMs: DEFAULT_CERT_TTL_MS,
    admin: { host: '127.0.0.1', port: 15000 },
    metrics: { host: '0.0.0.0', port: 15020 },
    readiness: { host: '0.0.0.0', port: 15021 },
    drainDeadlineMs: 5000,
    connectTimeoutMs: 10_000,
    protocolDetectionTimeoutMs: 1000,
    logLevel: 'info',
  });
});

test('every variable is read', () => {
  const c = build({
    POD_NAME: 'waypoint-7d9f-abc',
    POD_NAMESPACE: 'bookinfo',
    SERVICE_ACCOUNT: 'bookinfo-waypoint',
    GATEWAY_NAME: 'waypoint',
    INSTANCE_IP: 'fd00::12',
    TRUST_DOMAIN: 'example.org',
    CLUSTER_ID: 'east',
    XDS_ADDRESS: '10.0.0.5:15012',
    CA_ADDRESS: '10.0.0.5:15012',
    AUTH_TOKEN: '/var/run/secrets/tokens/istio-token',
    XDS_ROOT_CA: '/var/run/secrets/istio/root-cert.pem',
    ALT_XDS_HOSTNAME: 'ambit-controller.istio-system.svc',
    SECRET_TTL: '12h',
    AMBIT_ADMIN_ADDR: '127.0.0.1:16000',
    AMBIT_METRICS_ADDR: '[::]:16020',
    AMBIT_READINESS_ADDR: '0.0.0.0:16021',
    CONNECTION_TERMINATION_DEADLINE: '30s',
    AMBIT_CONNECT_TIMEOUT: '2500ms',
    AMBIT_PROTOCOL_DETECTION_TIMEOUT: '250ms',
    LOG_LEVEL: 'debug',
  });
  assert.deepEqual(c, {
    podName: 'waypoint-7d9f-abc',
    namespace: 'bookinfo',
    serviceAccount: 'bookinfo-waypoint',
    gatewayName: 'waypoint',
    instanceIp: 'fd00::12',
    hbone: { host: 'fd00::12', port: 15008 },
    trustDomain: 'example.org',
    clusterId: 'east',
    xdsAddress: '10.0.0.5:15012',
    caAddress: '10.0.0.5:15012',
    authToken: '/var/run/secrets/tokens/istio-token',
    xdsRootCaPath: '/var/run/secrets/istio/root-cert.pem',
    xdsHostname: 'ambit-controller.istio-system.svc',
    caCertPath: '',
    caKeyPath: '',
    certTtlMs: 12 * 3600_000,
    admin: { host: '127.0.0.1', port: 16000 },
    metrics: { host: '::', port: 16020 },
    readiness: { host: '0.0.0.0', port: 16021 },
    drainDeadlineMs: 30_000,
    connectTimeoutMs: 2500,
    protocolDetectionTimeoutMs: 250,
    logLevel: 'debug',
  });
  assert.deepEqual(waypointIdentity(c), {
    trustDomain: 'example.org',
    namespace: 'bookinfo',
    serviceAccount: 'bookinfo-waypoint',
  });
});

const bad: [string, Record<string, string | undefined>, RegExp][] = [
  ['POD_NAMESPACE missing', { POD_NAMESPACE: undefined }, /^POD_NAMESPACE: is required/],
  ['GATEWAY_NAME missing', { GATEWAY_NAME: '' }, /^GATEWAY_NAME: is required/],
  ['INSTANCE_IP missing', { INSTANCE_IP: undefined }, /^INSTANCE_IP: is required/],
  [
    'INSTANCE_IP not an address',
    { INSTANCE_IP: 'waypoint.local' },
    /^INSTANCE_IP: "waypoint.local" is not an IP/,
  ],
  ['XDS_ADDRESS missing', { XDS_ADDRESS: undefined }, /^XDS_ADDRESS: is required/],
  [
    'XDS_ADDRESS without a port',
    { XDS_ADDRESS: 'controller' },
    /^XDS_ADDRESS: "controller" is not host:port/,
  ],
  [
    'namespace not a Kubernetes name',
    { POD_NAMESPACE: 'Book_Info' },
    /^POD_NAMESPACE: "Book_Info" is not a Kubernetes name/,
  ],
  ['gateway not a Kubernetes name', { GATEWAY_NAME: 'way point' }, /^GATEWAY_NAME: /],
  [
    'CA_ADDRESS without AUTH_TOKEN',
    { CA_ADDRESS: '10.0.0.5:15012' },
    /^AUTH_TOKEN: is required with CA_ADDRESS/,
  ],
  [
    'no CA at all',
    { AMBIT_CA_CERT_FILE: undefined },
    /^AMBIT_CA_CERT_FILE, AMBIT_CA_KEY_FILE: both are required/,
  ],
  ['bad CA_ADDRESS', { CA_ADDRESS: 'ca', AUTH_TOKEN: 't' }, /^CA_ADDRESS: "ca" is not host:port/],
  [
    'bad duration',
    { CONNECTION_TERMINATION_DEADLINE: 'soon' },
    /^CONNECTION_TERMINATION_DEADLINE: "soon" is not a duration/,
  ],
  ['zero connect timeout', { AMBIT_CONNECT_TIMEOUT: '0s' }, /^AMBIT_CONNECT_TIMEOUT: must be more than 0/],
  [
    'zero protocol detection timeout',
    { AMBIT_PROTOCOL_DETECTION_TIMEOUT: '0s' },
    /^AMBIT_PROTOCOL_DETECTION_TIMEOUT: must be more than 0/,
  ],
  ['bad admin address', { AMBIT_ADMIN_ADDR: 'localhost' }, /^AMBIT_ADMIN_ADDR: "localhost" is not host:port/],
  ['bad log level', { LOG_LEVEL: 'loud' }, /^LOG_LEVEL: "loud" is not one of/],
  ['bad service account', { SERVICE_ACCOUNT: 'a/b' }, /^TRUST_DOMAIN, POD_NAMESPACE, SERVICE_ACCOUNT: /],
];
for (const [name, change, want] of bad) {
  test(`invalid: ${name}`, () => {
    const errors = errorsOf({ ...REQUIRED, ...change });
    assert.ok(
      errors.some((e) => want.test(e)),
      `expected ${String(want)} in ${JSON.stringify(errors)}`,
    );
  });
}

test('every problem is reported at once', () => {
  const errors = errorsOf({ INSTANCE_IP: 'x', LOG_LEVEL: 'loud' });
  for (const name of [
    'POD_NAMESPACE',
    'GATEWAY_NAME',
    'INSTANCE_IP',
    'XDS_ADDRESS',
    'AMBIT_CA_CERT_FILE',
    'LOG_LEVEL',
  ])
    assert.ok(
      errors.some((e) => e.startsWith(name)),
      `${name} in ${JSON.stringify(errors)}`,
    );
});

test('the admin dump hides an inline token and the CA key, not file paths', () => {
  const inline = build({ ...REQUIRED, CA_ADDRESS: '10.0.0.5:15012', AUTH_TOKEN: 'secret-token' });
  assert.equal(redactedWaypointConfig(inline).authToken, '<redacted>');
  const file = build({ ...REQUIRED, AUTH_TOKEN: '/var/run/secrets/token' });
  assert.equal(redactedWaypointConfig(file).authToken, '/var/run/secrets/token');
  assert.equal(redactedWaypointConfig(file).caKeyPath, '<redacted>');
  assert.equal(redactedWaypointConfig(file).caCertPath, '/etc/ambit/ca-cert.pem');
});

test('WAYPOINT_ENV names every variable the builder reads', () => {
  const read = new Set<string>();
  const env: Record<string, string | undefined> = { ...REQUIRED };
  const spy = new Proxy(env, {
    get(target, key: string) {
      read.add(key);
      return target[key];
    },
  });
  buildWaypointConfig(spy);
  assert.deepEqual([...read].sort(), Object.keys(WAYPOINT_ENV).sort());
});
