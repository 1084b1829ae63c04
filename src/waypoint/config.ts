/**
 * The waypoint's configuration: built once from the environment (flags are mapped onto the same
 * names by the CLI), validated before anything binds, immutable afterwards. Names follow Istio's
 * where it has one (POD_NAME, POD_NAMESPACE, SERVICE_ACCOUNT, INSTANCE_IP, XDS_ADDRESS, CA_ADDRESS…).
 */
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { EnvReader, parseDurationMs, parseHostPort, type HostPort } from '../core/config/env.ts';
import { HBONE_PORT } from '../core/hbone/protocol.ts';
import { DEFAULT_CERT_TTL_MS } from '../core/identity/ca.ts';
import { DEFAULT_TRUST_DOMAIN, formatSpiffe, parseSpiffe, type Identity } from '../core/identity/spiffe.ts';
import { type LevelWithSilent } from '../core/log.ts';
import {
  readCaSource,
  readEndpointAddresses,
  readLogLevel,
  redactSecrets,
} from '../core/config/data-plane-env.ts';

export interface WaypointConfig {
  /** This pod's name (logs, the xDS node id). */
  readonly podName: string;
  /** This pod's namespace: the waypoint's identity and the Gateway's namespace. */
  readonly namespace: string;
  /** The service account the waypoint runs as: its identity `spiffe://<td>/ns/<ns>/sa/<sa>`. */
  readonly serviceAccount: string;
  /** The waypoint Gateway this pod serves; services bound to it are accepted. */
  readonly gatewayName: string;
  /** This pod's IP: HBONE listens here, and upstream tunnels start from it. */
  readonly instanceIp: string;
  /** Where HBONE listens: INSTANCE_IP:15008 (tests bind port 0). */
  readonly hbone: HostPort;
  readonly trustDomain: string;
  /** Sent to the CA as `clusterid`, and in the xDS node metadata. */
  readonly clusterId: string;
  /** `host:port` of the controller's Delta ADS; '' only in tests that feed config through the Bound. */
  readonly xdsAddress: string;
  /** `host:port` of the CA service; '' to sign with the CA in the PEM files below. */
  readonly caAddress: string;
  /** Bearer token for xDS and the CA: a file path (read on every use) or the token itself. */
  readonly authToken: string;
  /** Root certificate (PEM file) of the controller's TLS port; '' for plaintext. */
  readonly xdsRootCaPath: string;
  /** The name the controller's certificate must carry (we dial an address). */
  readonly xdsHostname: string;
  /** The CA that signs the waypoint's CSR when there is no CA service (tests, local mode). */
  readonly caCertPath: string;
  readonly caKeyPath: string;
  readonly certTtlMs: number;
  readonly admin: HostPort;
  readonly metrics: HostPort;
  readonly readiness: HostPort;
  /** On SIGTERM, how long requests and tunnels in flight may take to finish. */
  readonly drainDeadlineMs: number;
  /** HBONE/TCP connect timeout to an endpoint (a cluster's shorter connect_timeout wins). */
  readonly connectTimeoutMs: number;
  /**
   * A workload-addressed tunnel whose first bytes have not said HTTP or not within this is TCP
   * (server-first protocols wait this long for their greeting; direct.ts).
   */
  readonly protocolDetectionTimeoutMs: number;
  readonly logLevel: LevelWithSilent;
}

/** Every variable the waypoint reads, with its default, for `--help` and the README. */
export const WAYPOINT_ENV = {
  POD_NAME: 'the host name',
  POD_NAMESPACE: '(required) the namespace of the waypoint pod and its Gateway',
  SERVICE_ACCOUNT: 'GATEWAY_NAME (the service account the waypoint runs as)',
  GATEWAY_NAME: '(required) the waypoint Gateway this pod serves',
  INSTANCE_IP: '(required) the pod IP; HBONE listens on INSTANCE_IP:15008',
  TRUST_DOMAIN: DEFAULT_TRUST_DOMAIN,
  CLUSTER_ID: 'Kubernetes',
  XDS_ADDRESS: '(required) controller host:port, e.g. 127.0.0.1:15010',
  CA_ADDRESS: '(none: sign with AMBIT_CA_*) CA service host:port',
  AUTH_TOKEN: '(required with CA_ADDRESS) token file path or token',
  XDS_ROOT_CA: "(plaintext) root certificate PEM of the controller's TLS port (xDS and CA)",
  ALT_XDS_HOSTNAME: 'istiod.istio-system.svc',
  AMBIT_CA_CERT_FILE: '(required without CA_ADDRESS)',
  AMBIT_CA_KEY_FILE: '(required without CA_ADDRESS)',
  SECRET_TTL: '24h',
  AMBIT_ADMIN_ADDR: '127.0.0.1:15000',
  AMBIT_METRICS_ADDR: '0.0.0.0:15020',
  AMBIT_READINESS_ADDR: '0.0.0.0:15021',
  CONNECTION_TERMINATION_DEADLINE: '5s',
  AMBIT_CONNECT_TIMEOUT: '10s',
  AMBIT_PROTOCOL_DETECTION_TIMEOUT: '1s',
  LOG_LEVEL: 'info',
} as const;

export type WaypointConfigResult = { ok: true; config: WaypointConfig } | { ok: false; errors: string[] };

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function buildWaypointConfig(env: Readonly<Record<string, string | undefined>>): WaypointConfigResult {
  const r = new EnvReader(env);
  const duration = (name: string, fallbackMs: number) => r.parsed(name, fallbackMs, parseDurationMs);
  const required = (name: string, what: string): string => {
    const v = r.optional(name);
    if (v === undefined) r.errors.push(`${name}: is required (${what})`);
    return v ?? '';
  };
  const label = (name: string, value: string) => {
    if (value && !DNS_LABEL.test(value)) r.errors.push(`${name}: "${value}" is not a Kubernetes name`);
  };

  const namespace = required('POD_NAMESPACE', 'the namespace of the waypoint pod and its Gateway');
  label('POD_NAMESPACE', namespace);
  const gatewayName = required('GATEWAY_NAME', 'the waypoint Gateway this pod serves');
  label('GATEWAY_NAME', gatewayName);
  const serviceAccount = r.string('SERVICE_ACCOUNT', gatewayName);
  const trustDomain = r.string('TRUST_DOMAIN', DEFAULT_TRUST_DOMAIN);
  if (namespace && serviceAccount) {
    const id = parseSpiffe(formatSpiffe({ trustDomain, namespace, serviceAccount }));
    if (!id.ok) r.errors.push(`TRUST_DOMAIN, POD_NAMESPACE, SERVICE_ACCOUNT: ${id.error}`);
  }
  const instanceIp = required('INSTANCE_IP', 'the pod IP HBONE listens on');
  if (instanceIp && !isIP(instanceIp)) r.errors.push(`INSTANCE_IP: "${instanceIp}" is not an IP address`);

  const xdsAddress = required('XDS_ADDRESS', "the controller's host:port to get routes and clusters from");
  if (xdsAddress && !parseHostPort(xdsAddress).ok)
    r.errors.push(`XDS_ADDRESS: "${xdsAddress}" is not host:port`);
  const ca = readCaSource(r, "the waypoint's certificate");
  const logLevel = readLogLevel(r);
  const connectTimeoutMs = duration('AMBIT_CONNECT_TIMEOUT', 10_000);
  if (connectTimeoutMs <= 0) r.errors.push('AMBIT_CONNECT_TIMEOUT: must be more than 0');
  const protocolDetectionTimeoutMs = duration('AMBIT_PROTOCOL_DETECTION_TIMEOUT', 1000);
  if (protocolDetectionTimeoutMs <= 0) r.errors.push('AMBIT_PROTOCOL_DETECTION_TIMEOUT: must be more than 0');

  const config: WaypointConfig = {
    podName: r.string('POD_NAME', hostname()),
    namespace,
    serviceAccount,
    gatewayName,
    instanceIp,
    hbone: { host: instanceIp, port: HBONE_PORT },
    trustDomain,
    clusterId: r.string('CLUSTER_ID', 'Kubernetes'),
    xdsAddress,
    caAddress: ca.caAddress,
    authToken: ca.authToken,
    xdsRootCaPath: r.optional('XDS_ROOT_CA') ?? '',
    xdsHostname: r.string('ALT_XDS_HOSTNAME', 'istiod.istio-system.svc'),
    caCertPath: ca.caCertPath,
    caKeyPath: ca.caKeyPath,
    certTtlMs: duration('SECRET_TTL', DEFAULT_CERT_TTL_MS),
    ...readEndpointAddresses(r),
    drainDeadlineMs: duration('CONNECTION_TERMINATION_DEADLINE', 5000),
    connectTimeoutMs,
    protocolDetectionTimeoutMs,
    logLevel,
  };
  return r.errors.length > 0 ? { ok: false, errors: r.errors } : { ok: true, config };
}

/** The identity the waypoint presents, upstream and downstream. */
export function waypointIdentity(c: WaypointConfig): Identity {
  return { trustDomain: c.trustDomain, namespace: c.namespace, serviceAccount: c.serviceAccount };
}

/** The config as the admin port shows it: file paths, no key material, no inline token. */
export function redactedWaypointConfig(c: WaypointConfig): Record<string, unknown> {
  return redactSecrets(c);
}
