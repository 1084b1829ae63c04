/**
 * The controller's configuration, built once from the environment (flags are mapped onto the same
 * names by the CLI) and validated before anything binds.
 */
import { fileURLToPath } from 'node:url';
import { EnvReader, parseDurationMs, parseHostPort, type HostPort } from '../core/config/env.ts';
import { DEFAULT_CERT_TTL_MS } from '../core/identity/ca.ts';
import { DEFAULT_TRUST_DOMAIN } from '../core/identity/spiffe.ts';
import { isLogLevel, type LevelWithSilent } from '../core/log.ts';

export interface ControllerConfig {
  /** Directory of Kubernetes YAML (local mode); '' to watch an API server instead. */
  readonly configDir: string;
  /** kubeconfig of the API server to watch; '' with `inCluster` or a config directory. */
  readonly kubeconfigPath: string;
  /** Use the pod's service account (KUBERNETES_SERVICE_HOST is set). */
  readonly inCluster: boolean;
  /** Delta ADS and the CA service, plaintext (local/dev only). */
  readonly grpcAddr: HostPort;
  /** The same services over TLS (15012), with a serving certificate from our CA; undefined: off. */
  readonly grpcTlsAddr: HostPort | undefined;
  /**
   * ADS for proxyless gRPC clients (`@grpc/grpc-js-xds`), plaintext and without a token, serving the
   * L7 types only; local mode only; undefined: off. grpc-js-xds cannot send a bearer token: its
   * bootstrap knows only `insecure` and `google_default` channel credentials, and no call credentials.
   */
  readonly proxylessXdsAddr: HostPort | undefined;
  /** DNS names on the TLS serving certificate (what agents verify, `ALT_XDS_HOSTNAME`). */
  readonly servingDnsNames: readonly string[];
  /** Metrics, readiness and debug endpoints. */
  readonly adminAddr: HostPort;
  readonly caCertPath: string;
  readonly caKeyPath: string;
  /** `<token> <node>` lines: which node agent a bearer token belongs to; '' to ask TokenReview. */
  readonly tokensPath: string;
  /** With TokenReview: `namespace/name` of the node agents' service accounts. */
  readonly agentServiceAccounts: readonly string[];
  /** With TokenReview: audiences agent tokens must carry. */
  readonly tokenAudiences: readonly string[];
  readonly trustDomain: string;
  readonly clusterId: string;
  readonly clusterDomain: string;
  readonly rootNamespace: string;
  /** Changes within this window are pushed together. */
  readonly debounceMs: number;
  readonly defaultCertTtlMs: number;
  readonly maxCertTtlMs: number;
  readonly logLevel: LevelWithSilent;
  /** The waypoint reconciler (with an API server only); off when undefined or its `image` is ''. */
  readonly waypoints?: WaypointReconcilerConfig;
}

export interface WaypointReconcilerConfig {
  /** waypoint/template.yaml: the objects made for each waypoint Gateway. */
  readonly templatePath: string;
  /** waypoint/gateway-template.yaml: the objects made for each Gateway of class `ambit` (ingress). */
  readonly gatewayTemplatePath: string;
  /** The image of waypoint Deployments (the controller's own); '': the reconciler is off. */
  readonly image: string;
  /** This replica's identity in leader election (its pod's name); '': the host name plus a random suffix. */
  readonly identity: string;
  /** Where the Lease lives: the controller's namespace. */
  readonly leaseNamespace: string;
  readonly leaseDurationMs: number;
  /** How often the leader renews the Lease, and the others check it. */
  readonly leaseRenewMs: number;
}

/** The template in the installed package: `<package>/waypoint/template.yaml` (the image: `/app/waypoint/`). */
export const DEFAULT_WAYPOINT_TEMPLATE = fileURLToPath(
  new URL('../../waypoint/template.yaml', import.meta.url),
);
/** The ingress gateway template beside it: `<package>/waypoint/gateway-template.yaml`. */
export const DEFAULT_GATEWAY_TEMPLATE = fileURLToPath(
  new URL('../../waypoint/gateway-template.yaml', import.meta.url),
);

/** Every variable the controller reads, with its default, for `--help` and the README. */
export const CONTROLLER_ENV = {
  AMBIT_CONFIG_DIR: '(one source) directory of Kubernetes YAML',
  KUBECONFIG: '(one source) kubeconfig of the API server to watch',
  KUBERNETES_SERVICE_HOST: '(one source) set inside a pod: watch the cluster with the pod service account',
  AMBIT_GRPC_ADDR: '127.0.0.1:15010',
  AMBIT_GRPC_TLS_ADDR: '(off) e.g. 0.0.0.0:15012',
  AMBIT_PROXYLESS_XDS_ADDR: '(off; local mode only) e.g. 127.0.0.1:15011: L7 xDS for gRPC clients, no token',
  AMBIT_SERVING_DNS_NAMES: 'istiod.istio-system.svc,ambit-controller.istio-system.svc',
  AMBIT_CONTROLLER_ADMIN_ADDR: '127.0.0.1:15014',
  AMBIT_CA_CERT_FILE: '(required)',
  AMBIT_CA_KEY_FILE: '(required)',
  AMBIT_TOKENS_FILE: '(required with AMBIT_CONFIG_DIR) "<token> <node>" lines; otherwise TokenReview',
  AMBIT_AGENT_SERVICE_ACCOUNTS: 'istio-system/ztunnel',
  AMBIT_TOKEN_AUDIENCES: 'istio-ca',
  TRUST_DOMAIN: DEFAULT_TRUST_DOMAIN,
  CLUSTER_ID: 'Kubernetes',
  CLUSTER_DOMAIN: 'cluster.local',
  ROOT_NAMESPACE: 'istio-system',
  AMBIT_PUSH_DEBOUNCE: '100ms',
  SECRET_TTL: '24h',
  AMBIT_MAX_SECRET_TTL: '48h',
  LOG_LEVEL: 'info',
  AMBIT_WAYPOINT_IMAGE: "(waypoint reconciler off) the image of waypoint Deployments: the controller's own",
  AMBIT_WAYPOINT_TEMPLATE: 'waypoint/template.yaml of the installed package',
  AMBIT_GATEWAY_TEMPLATE: 'waypoint/gateway-template.yaml of the installed package (class ambit Gateways)',
  POD_NAME: '(downward API) identity in leader election; default: $HOSTNAME plus a random suffix',
  POD_NAMESPACE: '(downward API) namespace of the leader election Lease; default ambit-system',
  AMBIT_LEASE_DURATION: '15s',
  AMBIT_LEASE_RENEW: '5s',
} as const;

export type ControllerConfigResult = { ok: true; config: ControllerConfig } | { ok: false; errors: string[] };

export function buildControllerConfig(
  env: Readonly<Record<string, string | undefined>>,
): ControllerConfigResult {
  const r = new EnvReader(env);
  const required = (name: string, what: string) => {
    const v = r.optional(name);
    if (!v) r.errors.push(`${name}: is required (${what})`);
    return v ?? '';
  };
  const addr = (name: string, fallback: string): HostPort => {
    const f = parseHostPort(fallback);
    if (!f.ok) throw new Error(`bad built-in default ${fallback}`);
    return r.parsed(name, f.value, parseHostPort);
  };
  const rawLevel = r.string('LOG_LEVEL', 'info');
  if (!isLogLevel(rawLevel))
    r.errors.push(`LOG_LEVEL: "${rawLevel}" is not one of trace, debug, info, warn, error, fatal, silent`);
  const waypoints: WaypointReconcilerConfig = {
    templatePath: r.string('AMBIT_WAYPOINT_TEMPLATE', DEFAULT_WAYPOINT_TEMPLATE),
    gatewayTemplatePath: r.string('AMBIT_GATEWAY_TEMPLATE', DEFAULT_GATEWAY_TEMPLATE),
    image: r.optional('AMBIT_WAYPOINT_IMAGE') ?? '',
    identity: r.optional('POD_NAME') ?? '',
    leaseNamespace: r.string('POD_NAMESPACE', 'ambit-system'),
    leaseDurationMs: r.parsed('AMBIT_LEASE_DURATION', 15_000, parseDurationMs),
    leaseRenewMs: r.parsed('AMBIT_LEASE_RENEW', 5_000, parseDurationMs),
  };
  const { leaseDurationMs, leaseRenewMs } = waypoints;
  const config: ControllerConfig = {
    configDir: r.optional('AMBIT_CONFIG_DIR') ?? '',
    kubeconfigPath: r.optional('KUBECONFIG') ?? '',
    inCluster:
      !r.optional('AMBIT_CONFIG_DIR') && !r.optional('KUBECONFIG') && !!r.optional('KUBERNETES_SERVICE_HOST'),
    grpcAddr: addr('AMBIT_GRPC_ADDR', '127.0.0.1:15010'),
    grpcTlsAddr: r.optional('AMBIT_GRPC_TLS_ADDR')
      ? r.parsed('AMBIT_GRPC_TLS_ADDR', { host: '', port: 0 }, parseHostPort)
      : undefined,
    proxylessXdsAddr: r.optional('AMBIT_PROXYLESS_XDS_ADDR')
      ? r.parsed('AMBIT_PROXYLESS_XDS_ADDR', { host: '', port: 0 }, parseHostPort)
      : undefined,
    servingDnsNames: r
      .string('AMBIT_SERVING_DNS_NAMES', 'istiod.istio-system.svc,ambit-controller.istio-system.svc')
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean),
    adminAddr: addr('AMBIT_CONTROLLER_ADMIN_ADDR', '127.0.0.1:15014'),
    caCertPath: required('AMBIT_CA_CERT_FILE', 'the CA certificate PEM'),
    caKeyPath: required('AMBIT_CA_KEY_FILE', 'the CA private key PEM'),
    tokensPath: r.optional('AMBIT_TOKENS_FILE') ?? '',
    agentServiceAccounts: r
      .string('AMBIT_AGENT_SERVICE_ACCOUNTS', 'istio-system/ztunnel')
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean),
    tokenAudiences: r
      .string('AMBIT_TOKEN_AUDIENCES', 'istio-ca')
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean),
    trustDomain: r.string('TRUST_DOMAIN', DEFAULT_TRUST_DOMAIN),
    clusterId: r.string('CLUSTER_ID', 'Kubernetes'),
    clusterDomain: r.string('CLUSTER_DOMAIN', 'cluster.local'),
    rootNamespace: r.string('ROOT_NAMESPACE', 'istio-system'),
    debounceMs: r.parsed('AMBIT_PUSH_DEBOUNCE', 100, parseDurationMs),
    defaultCertTtlMs: r.parsed('SECRET_TTL', DEFAULT_CERT_TTL_MS, parseDurationMs),
    maxCertTtlMs: r.parsed('AMBIT_MAX_SECRET_TTL', 2 * DEFAULT_CERT_TTL_MS, parseDurationMs),
    logLevel: isLogLevel(rawLevel) ? rawLevel : 'info',
    waypoints,
  };
  if (leaseDurationMs < 1000)
    r.errors.push('AMBIT_LEASE_DURATION: must be at least 1s (a Lease counts whole seconds)');
  if (leaseRenewMs <= 0 || leaseRenewMs * 2 > leaseDurationMs) {
    r.errors.push(
      'AMBIT_LEASE_RENEW: must be positive and at most half of AMBIT_LEASE_DURATION, so that one failed renewal does not lose the Lease',
    );
  }
  if (!config.configDir && !config.kubeconfigPath && !config.inCluster) {
    r.errors.push(
      'AMBIT_CONFIG_DIR, KUBECONFIG: set one (a directory of Kubernetes YAML, or the API server to watch; in a pod the service account is used)',
    );
  }
  if (config.configDir && config.kubeconfigPath) r.errors.push('AMBIT_CONFIG_DIR, KUBECONFIG: set only one');
  if (config.proxylessXdsAddr && !config.configDir) {
    // Anyone who reaches it reads every service's routes and endpoints: not for a cluster.
    r.errors.push(
      'AMBIT_PROXYLESS_XDS_ADDR: only in local mode (with AMBIT_CONFIG_DIR): it serves L7 xDS without a token',
    );
  }
  if (config.configDir && !config.tokensPath) {
    r.errors.push(
      'AMBIT_TOKENS_FILE: is required with AMBIT_CONFIG_DIR (node agent tokens, "<token> <node>" per line)',
    );
  }
  return r.errors.length > 0 ? { ok: false, errors: r.errors } : { ok: true, config };
}
