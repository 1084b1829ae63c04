/**
 * The node agent's configuration: built once from the environment (flags are mapped onto the same
 * names by the CLI), validated before anything binds, immutable afterwards. Names follow Istio's
 * ztunnel where it has one (reference/ztunnel.md §4).
 */
import { hostname } from 'node:os';
import { EnvReader, parseBool, parseDurationMs, parseHostPort, type HostPort } from '../core/config/env.ts';
import { DEFAULT_CERT_TTL_MS } from '../core/identity/ca.ts';
import { DEFAULT_TRUST_DOMAIN } from '../core/identity/spiffe.ts';
import { ipFromBytes, ipToBytes, parseCidr } from '../core/ip.ts';
import { type LevelWithSilent } from '../core/log.ts';
import {
  readCaSource,
  readEndpointAddresses,
  readLogLevel,
  redactSecrets,
} from '../core/config/data-plane-env.ts';

export interface Socks5Listener extends HostPort {
  /** Workload uid or `namespace/name` the listener speaks for. */
  readonly workload: string;
}

export interface ZtunnelConfig {
  /** Workloads whose `node` equals this are local: the agent serves their inbound HBONE. */
  readonly nodeName: string;
  readonly trustDomain: string;
  /** The network this node is on (Istio's NETWORK); addresses are looked up within it. */
  readonly network: string;
  /** ztunnel LocalConfig YAML (workloads, services, policies), watched; '' when config comes over xDS. */
  readonly localConfigPath: string;
  /** `host:port` of the controller's Delta ADS (plaintext); '' to use the local config file. */
  readonly xdsAddress: string;
  /** `host:port` of the CA service; '' to sign with the CA in the PEM files below. */
  readonly caAddress: string;
  /** Bearer token for xDS and the CA: a file path (read on every use) or the token itself. */
  readonly authToken: string;
  /** Sent to the CA as `clusterid`. */
  readonly clusterId: string;
  /** Root certificate (PEM file) of the controller's TLS port; '' for plaintext. */
  readonly xdsRootCaPath: string;
  /** The name the controller's certificate must carry (we dial an address). */
  readonly xdsHostname: string;
  /** The CA that signs local workloads' CSRs when there is no CA service. */
  readonly caCertPath: string;
  readonly caKeyPath: string;
  readonly certTtlMs: number;
  readonly admin: HostPort;
  readonly metrics: HostPort;
  readonly readiness: HostPort;
  readonly socks5: readonly Socks5Listener[];
  readonly drainDeadlineMs: number;
  readonly connectTimeoutMs: number;
  readonly socksHandshakeTimeoutMs: number;
  readonly poolMaxStreamsPerConnection: number;
  readonly poolIdleTimeoutMs: number;
  readonly logLevel: LevelWithSilent;
  /**
   * In-pod mode: capture the traffic of this node's pods inside their network namespaces (needs
   * root or CAP_NET_ADMIN + CAP_SYS_ADMIN, and the netns addon). Off in local mode.
   */
  readonly inpod: boolean;
  /** Unix socket the `ambit-cni` plugin reports pods on (in-pod mode). */
  readonly cniSocketPath: string;
  /**
   * How long a CNI ADD waits for the pod to appear in the mesh config, and then for its listeners
   * (in-pod mode). The plugin gives up after 120 s, so this is at most 50 s. Always set by
   * {@link buildZtunnelConfig}; absent (5 s) only in configs written by hand for tests.
   */
  readonly cniAddTimeoutMs?: number;
  /**
   * Sources whose connections into pods are not captured (the kubelet's probes), in the canonical
   * `address/prefix` form `iptables-save` prints, so installed rules compare equal.
   */
  readonly probeSources: readonly string[];
}

/** The longest AMBIT_CNI_ADD_TIMEOUT: ADD waits up to twice this, and the plugin gives up at 120 s. */
const MAX_CNI_ADD_TIMEOUT_MS = 50_000;

/** Every variable the agent reads, with its default, for `--help` and the README. */
export const ZTUNNEL_ENV = {
  NODE_NAME: 'the host name',
  TRUST_DOMAIN: DEFAULT_TRUST_DOMAIN,
  NETWORK: '(empty: the default network)',
  LOCAL_XDS_PATH: '(this or XDS_ADDRESS)',
  XDS_ADDRESS: '(this or LOCAL_XDS_PATH) controller host:port, e.g. 127.0.0.1:15010',
  CA_ADDRESS: '(none: sign with AMBIT_CA_*) CA service host:port',
  AUTH_TOKEN: '(required with CA_ADDRESS) token file path or token',
  CLUSTER_ID: 'Kubernetes',
  XDS_ROOT_CA: "(plaintext) root certificate PEM of the controller's TLS port (xDS and CA)",
  ALT_XDS_HOSTNAME: 'istiod.istio-system.svc',
  AMBIT_CA_CERT_FILE: '(required without CA_ADDRESS)',
  AMBIT_CA_KEY_FILE: '(required without CA_ADDRESS)',
  SECRET_TTL: '24h',
  AMBIT_ADMIN_ADDR: '127.0.0.1:15000',
  AMBIT_METRICS_ADDR: '0.0.0.0:15020',
  AMBIT_READINESS_ADDR: '0.0.0.0:15021',
  AMBIT_SOCKS5: '(none) e.g. 127.0.0.1:15080=default/productpage',
  CONNECTION_TERMINATION_DEADLINE: '5s',
  AMBIT_CONNECT_TIMEOUT: '10s',
  AMBIT_SOCKS_HANDSHAKE_TIMEOUT: '10s',
  POOL_MAX_STREAMS_PER_CONNECTION: '100',
  POOL_UNUSED_RELEASE_TIMEOUT: '5m',
  LOG_LEVEL: 'info',
  INPOD_ENABLED: 'false (true: capture pods in their network namespaces)',
  AMBIT_CNI_SOCKET: '/var/run/ambit/cni.sock',
  AMBIT_CNI_ADD_TIMEOUT: '5s (at most 50s)',
  AMBIT_PROBE_SOURCES: '(none; 169.254.7.127 is always exempt) e.g. 10.201.1.1,10.201.2.0/24',
} as const;

export type ConfigResult = { ok: true; config: ZtunnelConfig } | { ok: false; errors: string[] };

export function buildZtunnelConfig(env: Readonly<Record<string, string | undefined>>): ConfigResult {
  const r = new EnvReader(env);
  const duration = (name: string, fallbackMs: number) => r.parsed(name, fallbackMs, parseDurationMs);
  const localConfigPath = r.optional('LOCAL_XDS_PATH');
  const xdsAddress = r.optional('XDS_ADDRESS');
  if (!localConfigPath === !xdsAddress) {
    r.errors.push(
      'LOCAL_XDS_PATH, XDS_ADDRESS: set exactly one (a config file, or the controller to get config from)',
    );
  }
  if (xdsAddress && !parseHostPort(xdsAddress).ok)
    r.errors.push(`XDS_ADDRESS: "${xdsAddress}" is not host:port`);
  const ca = readCaSource(r, 'workload certificates');
  const socks5 = parseSocks5(r.optional('AMBIT_SOCKS5') ?? '', r.errors);
  const logLevel = readLogLevel(r);
  const maxStreams = r.parsed('POOL_MAX_STREAMS_PER_CONNECTION', 100, (raw) => {
    const n = Number(raw);
    return Number.isInteger(n) && n >= 1 && n <= 1000
      ? { ok: true, value: n }
      : { ok: false, error: `"${raw}" is not 1-1000` };
  });
  const inpod = r.parsed('INPOD_ENABLED', false, parseBool);
  const probeSources = (r.optional('AMBIT_PROBE_SOURCES') ?? '')
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '')
    .flatMap((p) => {
      const c = canonicalCidr(p);
      if (c === undefined) r.errors.push(`AMBIT_PROBE_SOURCES: "${p}" is not an IP address or CIDR`);
      return c === undefined ? [] : [c];
    });
  const cniAddTimeoutMs = duration('AMBIT_CNI_ADD_TIMEOUT', 5000);
  if (cniAddTimeoutMs > MAX_CNI_ADD_TIMEOUT_MS)
    r.errors.push(`AMBIT_CNI_ADD_TIMEOUT: must be at most ${MAX_CNI_ADD_TIMEOUT_MS / 1000}s`);
  const config: ZtunnelConfig = {
    nodeName: r.string('NODE_NAME', hostname()),
    trustDomain: r.string('TRUST_DOMAIN', DEFAULT_TRUST_DOMAIN),
    network: r.string('NETWORK', ''),
    localConfigPath: localConfigPath ?? '',
    xdsAddress: xdsAddress ?? '',
    caAddress: ca.caAddress,
    authToken: ca.authToken,
    clusterId: r.string('CLUSTER_ID', 'Kubernetes'),
    xdsRootCaPath: r.optional('XDS_ROOT_CA') ?? '',
    xdsHostname: r.string('ALT_XDS_HOSTNAME', 'istiod.istio-system.svc'),
    caCertPath: ca.caCertPath,
    caKeyPath: ca.caKeyPath,
    certTtlMs: duration('SECRET_TTL', DEFAULT_CERT_TTL_MS),
    ...readEndpointAddresses(r),
    socks5,
    drainDeadlineMs: duration('CONNECTION_TERMINATION_DEADLINE', 5000),
    connectTimeoutMs: duration('AMBIT_CONNECT_TIMEOUT', 10_000),
    socksHandshakeTimeoutMs: duration('AMBIT_SOCKS_HANDSHAKE_TIMEOUT', 10_000),
    poolMaxStreamsPerConnection: maxStreams,
    poolIdleTimeoutMs: duration('POOL_UNUSED_RELEASE_TIMEOUT', 300_000),
    logLevel,
    inpod,
    cniSocketPath: r.string('AMBIT_CNI_SOCKET', '/var/run/ambit/cni.sock'),
    cniAddTimeoutMs,
    probeSources,
  };
  return r.errors.length > 0 ? { ok: false, errors: r.errors } : { ok: true, config };
}

/**
 * An address or CIDR as `iptables-save` prints it: host bits cleared, IPv6 in RFC 5952 form, and
 * always a prefix length (`10.201.2.5/24` → `10.201.2.0/24`, `FD00::1` → `fd00::1/128`). Rules written
 * from any other spelling would never compare equal to the installed ones, and no pod would be
 * adopted as it is. Undefined for anything that is not an address or CIDR.
 */
function canonicalCidr(v: string): string | undefined {
  const c = parseCidr(v);
  const bytes = c && ipToBytes(c.address);
  if (!c || !bytes) return undefined;
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, c.prefixLength - i * 8));
    bytes[i] = bytes[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  return `${ipFromBytes(bytes)}/${c.prefixLength}`;
}

/** `host:port=workload[,host:port=workload…]` */
function parseSocks5(raw: string, errors: string[]): Socks5Listener[] {
  if (!raw.trim()) return [];
  return raw.split(',').flatMap((entry) => {
    const eq = entry.lastIndexOf('=');
    const hp = parseHostPort(entry.slice(0, eq).trim());
    const workload = entry.slice(eq + 1).trim();
    if (eq < 0 || !hp.ok || !workload) {
      errors.push(
        `AMBIT_SOCKS5: "${entry}" is not host:port=workload (e.g. 127.0.0.1:15080=default/productpage)`,
      );
      return [];
    }
    return [{ ...hp.value, workload }];
  });
}

/** The config as the admin port shows it: file paths, no key material. */
export function redactedConfig(c: ZtunnelConfig): Record<string, unknown> {
  return redactSecrets(c);
}
