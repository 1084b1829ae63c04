/**
 * The L7 engine the waypoint and the ingress gateway share: the proxy's own certificate, its metrics
 * registry, the decoded Envoy config, and the forwarder that routes each request and sends it into
 * the mesh over HBONE (or plain TCP) with the proxy's own identity. Each program puts its own front
 * on it: HBONE tunnels (waypoint) or listeners on ports (gateway).
 */
import { isIP } from 'node:net';
import { Counter, type Registry } from 'prom-client';
import { systemClock, type Clock } from '../core/clock.ts';
import { HbonePool } from '../core/hbone/pool.ts';
import { CertificateAuthority } from '../core/identity/ca.ts';
import { LocalCaProvider, SecretManager, type CertificateProvider } from '../core/identity/secret-manager.ts';
import { formatSpiffe, type Identity } from '../core/identity/spiffe.ts';
import type { Logger } from '../core/log.ts';
import { createRegistry } from '../core/metrics.ts';
import type { MeshState } from '../core/state/mesh-state.ts';
import { controllerCaProvider } from '../core/xds/controller-channel.ts';
import { waypointIdentity, type WaypointConfig } from './config.ts';
import { DEFAULT_RETRY_BUFFER_BYTES, Forwarder } from './forwarder.ts';
import { L7State } from './l7-state.ts';
import type { Random } from './router.ts';
import { createRequestMetrics, type RequestMetrics } from './telemetry.ts';
import { Upstream } from './upstream.ts';

/** Upstream HBONE connections with no streams close after this (as the agent's pool does). */
const POOL_IDLE_TIMEOUT_MS = 300_000;
const POOL_MAX_STREAMS = 100;

export interface EngineDeps {
  readonly clock?: Clock;
  /** Randomness for weighted routes, fault and mirror percentages, load balancing and jitter. */
  readonly random?: Random;
  /** Where the proxy's certificate comes from; defaults to CA_ADDRESS, else the PEM files. */
  readonly certificates?: CertificateProvider;
  /** Process-wide metrics (CPU, memory); off when several programs share a process. */
  readonly processMetrics?: boolean;
  /** The HBONE port of the endpoints' agents (15008; tests may run them elsewhere). */
  readonly upstreamHbonePort?: number;
  /** Request bodies kept for retries and mirrors at most this big (default 1 MiB). */
  readonly retryBufferBytes?: number;
}

export interface L7Engine {
  readonly clock: Clock;
  readonly random: Random;
  readonly identity: Identity;
  readonly spiffe: string;
  readonly provider: CertificateProvider;
  readonly secrets: SecretManager;
  readonly registry: Registry;
  readonly requestMetrics: RequestMetrics;
  /** Config resources NACKed, by type URL. */
  readonly configRejections: Counter<'type_url'>;
  readonly l7: L7State;
  readonly pool: HbonePool;
  readonly upstream: Upstream;
  readonly forwarder: Forwarder;
}

/**
 * Builds the engine for `program` (the metrics' and logs' name). `mesh` gives the current workloads
 * and services; `reporter` is what Istio's metrics call the proxy (`waypoint`, or `source` for a
 * gateway).
 */
export async function startL7Engine(
  config: WaypointConfig,
  opts: {
    readonly program: string;
    readonly reporter: 'waypoint' | 'source';
    readonly mesh: () => MeshState;
  },
  deps: EngineDeps,
  log: Logger,
): Promise<L7Engine> {
  const clock = deps.clock ?? systemClock;
  const random = deps.random ?? Math.random;
  const identity = waypointIdentity(config);
  const provider: CertificateProvider =
    deps.certificates ??
    (config.caAddress
      ? controllerCaProvider(config)
      : new LocalCaProvider(
          await CertificateAuthority.fromFiles(config.caCertPath, config.caKeyPath, config.trustDomain),
          config.certTtlMs,
        ));
  const secrets = new SecretManager({ provider, clock, log: log.child({ scope: 'secrets' }) });
  const registry = createRegistry(opts.program, deps.processMetrics ?? false);
  const requestMetrics = createRequestMetrics(registry);
  const configRejections = new Counter({
    name: 'ambit_config_rejected_total',
    help: 'Config resources rejected as invalid (NACKed); the last good version stayed in force',
    labelNames: ['type_url'] as const,
    registers: [registry],
  });
  const l7 = new L7State({ clock, random });
  const pool = new HbonePool({
    getCertificate: (id) => secrets.get(id),
    log: log.child({ scope: 'pool' }),
    connectTimeoutMs: config.connectTimeoutMs,
    idleTimeoutMs: POOL_IDLE_TIMEOUT_MS,
    maxStreamsPerConnection: POOL_MAX_STREAMS,
  });
  const unspecified =
    config.instanceIp === '0.0.0.0' || config.instanceIp === '::' || !isIP(config.instanceIp);
  const upstream = new Upstream({
    pool,
    identity,
    sourceIp: unspecified ? undefined : config.instanceIp,
    log: log.child({ scope: 'upstream' }),
    ...(deps.upstreamHbonePort !== undefined && { hbonePort: deps.upstreamHbonePort }),
  });
  const forwarder = new Forwarder({
    l7,
    mesh: opts.mesh,
    upstream,
    metrics: requestMetrics,
    log: log.child({ scope: 'forwarder' }),
    accessLog: log.child({ scope: 'access' }),
    clock,
    random,
    connectTimeoutMs: config.connectTimeoutMs,
    retryBufferBytes: deps.retryBufferBytes ?? DEFAULT_RETRY_BUFFER_BYTES,
    ...(opts.reporter === 'source' && { reporter: 'source' as const }),
  });
  return {
    clock,
    random,
    identity,
    spiffe: formatSpiffe(identity),
    provider,
    secrets,
    registry,
    requestMetrics,
    configRejections,
    l7,
    pool,
    upstream,
    forwarder,
  };
}

/**
 * The end of a drain, as both programs end it: whatever is still open after the deadline is closed
 * (TCP connections, then `closeFronts` for the program's own listeners), then the upstream side, the
 * certificates and the status endpoints; logged with how many were closed by force.
 */
export async function closeEngine(
  engine: L7Engine,
  tcpProxy: { open(): number; closeAll(): void },
  endpoints: readonly { close(): Promise<void> }[],
  log: Logger,
  closeFronts: () => void = () => undefined,
): Promise<void> {
  const left = engine.forwarder.inFlight() + tcpProxy.open();
  tcpProxy.closeAll();
  closeFronts();
  engine.upstream.close();
  engine.pool.destroy();
  engine.secrets.close();
  engine.provider.close?.();
  await Promise.all(endpoints.map((e) => e.close()));
  log.info({ forcedClosed: left }, 'shut down');
}
