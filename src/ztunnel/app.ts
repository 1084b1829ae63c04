/**
 * The node agent in local mode: workloads, services and policies from a file; inbound HBONE on 15008
 * of every local workload's address; SOCKS5 listeners for clients; admin, metrics and readiness.
 */
import type { AddressInfo } from 'node:net';
import { Counter } from 'prom-client';
import { systemClock, type Clock } from '../core/clock.ts';
import { AmbitError, describeError, ErrorCode } from '../core/errors.ts';
import { HbonePool } from '../core/hbone/pool.ts';
import { HBONE_PORT } from '../core/hbone/protocol.ts';
import { HboneServer } from '../core/hbone/server.ts';
import { CertificateAuthority } from '../core/identity/ca.ts';
import { describeCertificate } from '../core/identity/certificate.ts';
import { LocalCaProvider, SecretManager, type CertificateProvider } from '../core/identity/secret-manager.ts';
import { formatSpiffe } from '../core/identity/spiffe.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { createRegistry, createTcpMetrics } from '../core/metrics.ts';
import { evaluateL4 } from '../core/policy/l4.ts';
import { MeshState } from '../core/state/mesh-state.ts';
import { loadLocalConfig, watchLocalConfig } from '../core/xds/file-source.ts';
import {
  meshConfigJson,
  workloadIdentity,
  workloadSpiffe,
  type MeshConfig,
  type Workload,
} from '../core/xds/model.ts';
import type { HttpEndpoint } from '../core/http-endpoint.ts';
import { startStatusEndpoints } from '../core/admin-routes.ts';
import { redactedConfig, type ZtunnelConfig } from './config.ts';
import { CniServer } from './inpod/cni-server.ts';
import { checkInpodPrivileges } from './inpod/privileges.ts';
import { InpodManager } from './inpod/manager.ts';
import {
  ConnectionTracker,
  type Dialer,
  type ProxyContext,
  type TrackedConnection,
} from './proxy/context.ts';
import { hostDialer } from './proxy/upstream.ts';
import { handleInbound } from './proxy/inbound.ts';
import { Socks5Server } from './proxy/socks5.ts';

/** A listener that could not start is tried again after this (as ztunnel retries a pod's proxy). */
const LISTENER_RETRY_MS = 5000;
/** After connections are cut at shutdown, how long their metrics and access-log lines may take. */
const BOOKKEEPING_GRACE_MS = 1000;

/** Remembers when each connection was opened, for the admin port's `/connections`. */
class TimedConnectionTracker extends ConnectionTracker {
  readonly openedAtMs = new WeakMap<TrackedConnection, number>();
  private readonly clock: Clock;

  constructor(clock: Clock) {
    super();
    this.clock = clock;
  }

  override add(c: TrackedConnection): () => void {
    this.openedAtMs.set(c, this.clock.nowMs());
    return super.add(c);
  }
}

export interface ZtunnelDeps {
  readonly log?: Logger;
  readonly clock?: Clock;
  /** Where certificates come from; defaults to the CA in the configured PEM files. */
  readonly certificates?: CertificateProvider;
  /** Process-wide metrics (CPU, memory); off when several agents share a process. */
  readonly processMetrics?: boolean;
}

export interface ZtunnelBound {
  readonly admin: AddressInfo;
  readonly metrics: AddressInfo;
  readonly readiness: AddressInfo;
  readonly socks5: readonly AddressInfo[];
  /** `ip:port` of every inbound HBONE listener up now. */
  hboneListeners(): string[];
  state(): MeshState;
  /** Replaces the mesh config as a file reload would (tests, later the xDS client). */
  applyConfig(config: MeshConfig): void;
  /** What readiness still waits for; empty when ready. */
  pending(): string[];
  /** Number of proxied connections open now. */
  openConnections(): number;
  /** Drains: stops accepting, lets open connections finish up to the deadline, then closes. */
  close(): Promise<void>;
  /** Resolves once the agent has shut down (also after POST /quitquitquit). */
  readonly done: Promise<void>;
}

/** In-pod mode's parts: the pod manager and the socket the CNI plugin reports pods on. */
async function startInpod(
  config: ZtunnelConfig,
  ctx: ProxyContext,
  secrets: SecretManager,
  log: Logger,
  clock: Clock,
  configSynced: () => boolean,
): Promise<{ manager: InpodManager; cni: CniServer }> {
  // As ztunnel does at start-up: fail now, with what to fix, rather than on the first pod.
  checkInpodPrivileges();
  const manager = new InpodManager(
    {
      nodeName: config.nodeName,
      probeSources: config.probeSources,
      ...(config.cniAddTimeoutMs !== undefined && { cniAddTimeoutMs: config.cniAddTimeoutMs }),
    },
    ctx,
    secrets,
    log,
    { clock, configSynced },
  );
  const cni = await CniServer.start(config.cniSocketPath, (req) => manager.handleCni(req), log);
  log.info({ socket: cni.path }, 'in-pod mode: waiting for pods');
  return { manager, cni };
}

export async function startZtunnel(config: ZtunnelConfig, deps: ZtunnelDeps = {}): Promise<ZtunnelBound> {
  const log = deps.log ?? createLogger('ztunnel', config.logLevel);
  const clock = deps.clock ?? systemClock;

  // Config comes from a file (watched) or from the controller over xDS (empty until it arrives).
  const initial = config.localConfigPath
    ? await loadLocalConfig(config.localConfigPath)
    : ({ ok: true, config: { workloads: [], services: [], policies: [] }, text: '' } as const);
  if (!initial.ok) {
    throw new AmbitError(ErrorCode.ConfigInvalid, `invalid local config:\n  ${initial.errors.join('\n  ')}`);
  }
  const controlPlane = config.xdsAddress || config.caAddress ? await import('./control-plane.ts') : undefined;
  const provider: CertificateProvider =
    deps.certificates ??
    (controlPlane && config.caAddress
      ? controlPlane.caProvider(config)
      : new LocalCaProvider(
          await CertificateAuthority.fromFiles(config.caCertPath, config.caKeyPath, config.trustDomain),
          config.certTtlMs,
        ));
  const secrets = new SecretManager({ provider, clock, log: log.child({ scope: 'secrets' }) });
  const registry = createRegistry('ztunnel', deps.processMetrics ?? false);
  const tcpMetrics = createTcpMetrics(registry);
  const configRejections = new Counter({
    name: 'ambit_config_rejected_total',
    help: 'Config updates rejected as invalid; the last good config stayed in force',
    labelNames: ['source'],
    registers: [registry],
  });
  // The agent's outbound connections start in the host network, or (in-pod mode) in the pod they
  // are for; the in-pod manager takes over dialling once it exists.
  let dialer: Dialer = hostDialer;
  const pool = new HbonePool({
    openTcp: (t) => dialer.dial(t.dstIp, t.dstPort, { pod: t.srcIp, localAddress: t.srcIp }),
    getCertificate: (id) => secrets.get(id),
    log: log.child({ scope: 'pool' }),
    connectTimeoutMs: config.connectTimeoutMs,
    idleTimeoutMs: config.poolIdleTimeoutMs,
    maxStreamsPerConnection: config.poolMaxStreamsPerConnection,
  });

  let state = new MeshState(initial.config);
  const connections = new TimedConnectionTracker(clock);
  const ctx: ProxyContext = {
    state: () => state,
    nodeName: config.nodeName,
    network: config.network,
    trustDomain: config.trustDomain,
    pool,
    secrets,
    metrics: tcpMetrics,
    log: log.child({ scope: 'proxy' }),
    accessLog: log.child({ scope: 'access' }),
    connections,
    connectTimeoutMs: config.connectTimeoutMs,
    dialer: { dial: (host, port, from) => dialer.dial(host, port, from) },
  };
  // Whether the first full config is in (the in-pod manager then looks for rules left behind);
  // replaced once the xDS client exists.
  let configSynced = () => config.localConfigPath !== '';
  const inpod = config.inpod
    ? await startInpod(config, ctx, secrets, log.child({ scope: 'inpod' }), clock, () => configSynced())
    : undefined;
  if (inpod) dialer = inpod.manager;

  // Inbound HBONE listeners, one per local workload address, keyed by `ip`.
  const inbound = new Map<string, { server: HboneServer | undefined; workload: Workload }>();
  // Listeners that failed to start (no certificate yet, address in use), retried every few seconds.
  const listenerErrors = new Map<string, string>();
  let retryTimer: NodeJS.Timeout | undefined;
  let draining = false;

  const localWorkloads = () =>
    state
      .workloadsOnNode(config.nodeName)
      .filter((w) => w.tunnelProtocol === 'HBONE' && w.addresses.length > 0);

  /** The workloads the SOCKS listeners speak for (by uid, or `namespace/name`). */
  const socksWorkloads = () =>
    config.socks5.flatMap((l) => {
      const w = state.workloadByRef(l.workload);
      return w ? [w] : [];
    });

  const reconcileListeners = async () => {
    const wanted = new Map<string, Workload>();
    // In-pod mode serves local workloads inside their pods (inpod/manager.ts), not here.
    if (!inpod) for (const w of localWorkloads()) for (const ip of w.addresses) wanted.set(ip, w);
    const removals: Promise<void>[] = [];
    for (const [ip, entry] of inbound) {
      const w = wanted.get(ip);
      if (!w || workloadSpiffe(w) !== workloadSpiffe(entry.workload)) {
        inbound.delete(ip);
        if (entry.server) removals.push(entry.server.close(0));
        log.info({ ip }, 'inbound listener removed');
      }
    }
    await Promise.all(removals);
    await Promise.all(
      [...wanted]
        .filter(([ip]) => !inbound.has(ip))
        .map(async ([ip, w]) => {
          const entry: { server: HboneServer | undefined; workload: Workload } = {
            server: undefined,
            workload: w,
          };
          inbound.set(ip, entry);
          try {
            const cert = await secrets.get(workloadIdentity(w));
            const server = await HboneServer.start({
              host: ip,
              port: HBONE_PORT,
              certificate: cert,
              trustDomain: config.trustDomain,
              log: log.child({ scope: 'hbone' }),
              onRequest: (req) => void handleInbound(ctx, req),
            });
            if (inbound.get(ip) !== entry || draining) return void (await server.close(0));
            entry.server = server;
            listenerErrors.delete(ip);
            log.info({ ip, port: HBONE_PORT, workload: `${w.namespace}/${w.name}` }, 'inbound listener up');
          } catch (err) {
            const reason = describeError(err);
            if (inbound.get(ip) === entry) inbound.delete(ip);
            listenerErrors.set(ip, reason);
            log.error({ ip, error: reason, retryInMs: LISTENER_RETRY_MS }, 'inbound listener failed');
          }
        }),
    );
    for (const ip of listenerErrors.keys()) if (!wanted.has(ip)) listenerErrors.delete(ip);
    if (listenerErrors.size > 0 && !draining && !retryTimer) {
      retryTimer = setTimeout(() => {
        retryTimer = undefined;
        void reconcileListeners();
      }, LISTENER_RETRY_MS);
      retryTimer.unref();
    }
    // Forget certificates no local workload (nor SOCKS client workload) uses any more. A pod captured
    // before the config has its IP (in-pod mode) still uses its certificate.
    const onNode = state.workloadsOnNode(config.nodeName).filter((w) => w.tunnelProtocol === 'HBONE');
    const ids = new Set([...onNode, ...socksWorkloads()].map((w) => workloadSpiffe(w)));
    for (const s of secrets.states()) if (!ids.has(formatSpiffe(s.identity))) secrets.forget(s.identity);
  };

  secrets.onCertificate((cert) => {
    inpod?.manager.onCertificate(formatSpiffe(cert.identity), (proxy) => proxy.setCertificate(cert));
    for (const entry of inbound.values()) {
      if (entry.server && workloadSpiffe(entry.workload) === formatSpiffe(cert.identity))
        entry.server.setCertificate(cert);
    }
  });

  const applyConfig = (next: MeshConfig) => {
    state = new MeshState(next);
    log.info(
      { workloads: next.workloads.length, services: next.services.length, policies: next.policies.length },
      'config applied',
    );
    // Late enforcement: open inbound connections are checked against the new policies.
    for (const c of connections.entries()) {
      if (!c.l4) continue;
      const current = state.workloadByUid(c.l4.workload.uid) ?? c.l4.workload;
      const d = evaluateL4(state.policiesFor(current), c.l4.conn);
      if (!d.allowed) {
        log.info(
          {
            src: c.l4.conn.srcIp,
            dst: `${c.l4.conn.dstIp}:${c.l4.conn.dstPort}`,
            policy: d.policy,
            error: d.reason,
          },
          'closing connection now denied',
        );
        c.destroy(d.reason);
      }
    }
    void reconcileListeners();
    inpod?.manager.reconcile();
  };

  await reconcileListeners();
  for (const w of localWorkloads()) secrets.prefetch(workloadIdentity(w));
  inpod?.manager.reconcile();

  const socks5: Socks5Server[] = [];

  let stopWatching: () => void = () => undefined;

  const ads =
    controlPlane && config.xdsAddress
      ? controlPlane.xdsConfigClient(config, log.child({ scope: 'xds' }), (next) => applyConfig(next))
      : undefined;
  if (ads) configSynced = () => ads.isSynced();

  const pending = () => {
    const out: string[] = [];
    if (draining) out.push('draining');
    if (ads && !ads.isSynced()) out.push(`xds from ${config.xdsAddress} (not synced yet)`);
    for (const s of secrets.states())
      if (s.state !== 'Available') out.push(`certificate ${formatSpiffe(s.identity)} (${s.state})`);
    for (const [ip, e] of inbound) if (!e.server) out.push(`inbound listener ${ip}:${HBONE_PORT}`);
    for (const [ip, reason] of listenerErrors) out.push(`inbound listener ${ip}:${HBONE_PORT} (${reason})`);
    if (inpod) out.push(...inpod.manager.pending());
    return out;
  };

  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  let closing: Promise<void> | undefined;
  const close = () => (closing ??= shutdown());

  const endpoints: HttpEndpoint[] = [];
  let bound: Awaited<ReturnType<typeof startStatusEndpoints>> | undefined;
  const shutdown = async () => {
    draining = true;
    if (retryTimer) clearTimeout(retryTimer);
    log.info({ openConnections: connections.size, deadlineMs: config.drainDeadlineMs }, 'draining');
    stopWatching();
    ads?.close();
    for (const s of socks5) s.stopAccepting();
    const servers = [...inbound.values()].flatMap((e) => (e.server ? [e.server] : []));
    pool.close();
    await inpod?.cni.close();
    await Promise.all([
      inpod?.manager.close(config.drainDeadlineMs),
      ...servers.map((s) => s.close(config.drainDeadlineMs)),
      connections.waitIdle(config.drainDeadlineMs),
    ]);
    const left = connections.size;
    connections.destroyAll('agent shutting down');
    pool.destroy();
    // Destroyed connections finish their bookkeeping (metrics, access log) on the next ticks.
    await connections.waitIdle(BOOKKEEPING_GRACE_MS);
    secrets.close();
    provider.close?.();
    await Promise.all(endpoints.map((e) => e.close()));
    log.info({ forcedClosed: left }, 'shut down');
    resolveDone();
  };

  const configDump = () => ({
    version: 'ambit-0.1.0',
    config: redactedConfig(config),
    ...meshConfigJson(state.config),
    certificates: secrets.states().map((s) => ({
      identity: formatSpiffe(s.identity),
      state: s.state,
      ...(s.cert ? describeCertificate(s.cert) : { certChain: [], rootCerts: [] }),
    })),
    ...(inpod ? { pods: inpod.manager.describe() } : {}),
    connections: {
      inbound: connections.count('inbound'),
      outbound: connections.count('outbound'),
      pooled: pool.connectionCount,
    },
  });

  // What the proxies tell the tracker: inbound connections carry the facts their L4 policy was
  // checked with; outbound ones only their direction.
  const openConnections = () => {
    const now = clock.nowMs();
    return [...connections.entries()].map((c) => ({
      direction: c.direction,
      ...c.view(),
      ...(c.l4 && { workload: `${c.l4.workload.namespace}/${c.l4.workload.name}` }),
      ageMs: now - (connections.openedAtMs.get(c) ?? now),
    }));
  };

  try {
    for (const l of config.socks5) {
      socks5.push(
        await Socks5Server.start(ctx, {
          host: l.host,
          port: l.port,
          workload: l.workload,
          handshakeTimeoutMs: config.socksHandshakeTimeoutMs,
        }),
      );
    }
    bound = await startStatusEndpoints(
      config,
      {
        admin: { program: 'ztunnel', configDump, connections: openConnections, quit: () => void close() },
        registry,
        readiness: { pending },
      },
      log,
      endpoints,
    );
    ads?.start();
    if (config.localConfigPath)
      stopWatching = watchLocalConfig(config.localConfigPath, initial.text, {
        onConfig: applyConfig,
        onRejected: (errors) => {
          configRejections.inc({ source: 'file' });
          log.error(
            { file: config.localConfigPath, errors },
            'config rejected, keeping the last good config',
          );
        },
      });
  } catch (err) {
    // Release what did start (listeners, timers, the pool) before reporting.
    await close();
    throw new AmbitError(ErrorCode.BindFailed, `cannot start: ${describeError(err)}`, {
      cause: err,
      hint: 'is another agent already running on this address?',
    });
  }
  const { admin, metrics, readiness } = bound;
  log.info(
    { node: config.nodeName, admin, socks5: socks5.map((s) => s.address()), hbone: [...inbound.keys()] },
    'ztunnel started',
  );

  return {
    admin,
    metrics,
    readiness,
    socks5: socks5.map((s) => s.address()),
    hboneListeners: () => [...inbound].filter(([, e]) => e.server).map(([ip]) => `${ip}:${HBONE_PORT}`),
    state: () => state,
    applyConfig,
    pending,
    openConnections: () => connections.size,
    close,
    done,
  };
}
