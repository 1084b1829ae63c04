/**
 * The waypoint (DESIGN.md §2 "With a waypoint", issue 5): an HBONE server on INSTANCE_IP:15008 that
 * terminates the tunnels client agents open for services bound to this waypoint, reads HTTP/1.1 or
 * h2c from them, applies the service's routes and clusters (Envoy LDS/RDS/CDS/EDS from the
 * controller) and forwards each request over its own HBONE, with its own identity, to the chosen
 * endpoint. Admin 15000, metrics 15020, readiness 15021; drains on close.
 */
import type { AddressInfo } from 'node:net';
import { AmbitError, describeError, ErrorCode } from '../core/errors.ts';
import { HboneServer, type HboneRequest } from '../core/hbone/server.ts';
import { describeCertificate } from '../core/identity/certificate.ts';
import { formatSpiffe } from '../core/identity/spiffe.ts';
import type { HttpEndpoint } from '../core/http-endpoint.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { MeshState } from '../core/state/mesh-state.ts';
import type { AdsClient } from '../core/xds/ads-client.ts';
import type { Cluster, ClusterLoadAssignment, L7Listener, RouteConfiguration } from '../core/xds/l7-model.ts';
import type { Service, Workload } from '../core/xds/model.ts';
import { startStatusEndpoints } from '../core/admin-routes.ts';
import { redactedWaypointConfig, type WaypointConfig } from './config.ts';
import { L7_DECODERS, L7_TYPES, waypointXdsClient } from './control-plane.ts';
import { closeEngine, startL7Engine, type EngineDeps } from './engine.ts';
import { serveHttp, type IngressOptions } from './http-ingress.ts';
import { serveDirect, type DirectDeps } from './direct.ts';
import { admitTunnel, type SelfFacts } from './inbound.ts';
import type { L7State } from './l7-state.ts';
import { type L7Kind, type L7Values } from './l7-state.ts';
import { engineTcpProxy } from './tcp-proxy.ts';

/** A listener that could not start (no certificate yet, address in use) is tried again after this. */
const LISTENER_RETRY_MS = 5000;

/**
 * HTTP on each tunnel: a kept-alive HTTP/1.1 connection idle for an hour is closed (Envoy's
 * downstream idle timeout), headers must arrive within a minute, and may be 60 KiB (Envoy's
 * max_request_headers_kb default).
 */
export const INGRESS_OPTIONS: IngressOptions = {
  keepAliveTimeoutMs: 3_600_000,
  headersTimeoutMs: 60_000,
  maxHeaderBytes: 60 * 1024,
};

export interface WaypointDeps extends EngineDeps {
  readonly log?: Logger;
}

/** Resources fed through the Bound (tests): each kind given replaces that kind's whole set. */
export interface L7Update {
  readonly listeners?: readonly L7Listener[];
  readonly routeConfigurations?: readonly RouteConfiguration[];
  readonly clusters?: readonly Cluster[];
  readonly loadAssignments?: readonly ClusterLoadAssignment[];
}

/** The outcome of resources fed as bytes: what was applied, and the NACK for the rest. */
export interface XdsApplyResult {
  readonly accepted: readonly string[];
  /** `name: path: reason, …` per rejected resource (what a NACK's error_detail carries). */
  readonly rejected: readonly string[];
}

export interface WaypointBound {
  readonly admin: AddressInfo;
  readonly metrics: AddressInfo;
  readonly readiness: AddressInfo;
  /** `spiffe://…` the waypoint presents. */
  readonly identity: string;
  /** The HBONE listener's address, once it is up. */
  hbone(): AddressInfo | undefined;
  /** The workloads and services in force. */
  state(): MeshState;
  /** The L7 configuration in force (route tables, pickers). */
  l7(): L7State;
  /** Replaces the workloads and services, as an xDS Address update would. */
  applyMesh(workloads: readonly Workload[], services: readonly Service[]): void;
  /** Replaces whole L7 resource sets with decoded resources. */
  applyL7(update: L7Update): void;
  /**
   * Applies encoded Envoy resources of one L7 type as a Delta ADS response would: each is decoded,
   * a bad one is rejected with all its errors and its last good version stays; `removed` names go.
   */
  applyXds(
    typeUrl: string,
    resources: readonly { name: string; bytes: Uint8Array }[],
    removed?: readonly string[],
  ): XdsApplyResult;
  /** What readiness still waits for; empty when ready. */
  pending(): string[];
  /** Requests being handled now. */
  inFlight(): number;
  /** Tunnels (client connections, HTTP and TCP) open now. */
  openTunnels(): number;
  /** Drains: refuses new tunnels, lets requests in flight finish up to the deadline, then closes. */
  close(): Promise<void>;
  /** Resolves once the waypoint has shut down (also after POST /quitquitquit). */
  readonly done: Promise<void>;
}

export async function startWaypoint(config: WaypointConfig, deps: WaypointDeps = {}): Promise<WaypointBound> {
  const log = deps.log ?? createLogger('waypoint', config.logLevel);
  let state = new MeshState({ workloads: [], services: [], policies: [] });
  const engine = await startL7Engine(
    config,
    { program: 'waypoint', reporter: 'waypoint', mesh: () => state },
    deps,
    log,
  );
  const { identity, spiffe, secrets, registry, configRejections } = engine;
  const { l7, pool, upstream, forwarder } = engine;
  const tcpProxy = engineTcpProxy(engine, () => state, log, config.connectTimeoutMs);
  const self: SelfFacts = {
    namespace: config.namespace,
    gatewayName: config.gatewayName,
    instanceIp: config.instanceIp,
  };

  const applyMesh = (workloads: readonly Workload[], services: readonly Service[]) => {
    state = new MeshState({ workloads, services, policies: [] });
    log.debug({ workloads: workloads.length, services: services.length }, 'workloads applied');
  };
  const afterL7 = (kind: L7Kind) => {
    if (kind === 'cluster' || kind === 'cluster-load-assignment') upstream.prune(l7.endpointKeys());
    log.debug({ kind, ...l7.counts() }, 'l7 config applied');
  };
  const applyL7 = (u: L7Update) => {
    const by = <K extends L7Kind>(
      kind: K,
      list: readonly L7Values[K][] | undefined,
      name: (v: L7Values[K]) => string,
    ) => {
      if (!list) return;
      l7.replace(kind, new Map(list.map((v) => [name(v), v])));
      afterL7(kind);
    };
    by('listener', u.listeners, (v) => v.name);
    by('route-configuration', u.routeConfigurations, (v) => v.name);
    by('cluster', u.clusters, (v) => v.name);
    by('cluster-load-assignment', u.loadAssignments, (v) => v.clusterName);
  };
  const applyXds = (
    typeUrl: string,
    resources: readonly { name: string; bytes: Uint8Array }[],
    removed: readonly string[] = [],
  ): XdsApplyResult => {
    const entry = L7_TYPES.find(([t]) => t === typeUrl);
    if (!entry) return { accepted: [], rejected: [`type ${typeUrl} is not an L7 type the waypoint applies`] };
    const [url, kind] = entry;
    const accepted: string[] = [];
    const rejected: string[] = [];
    const upserts = new Map<string, L7Values[typeof kind]>();
    for (const r of resources) {
      const d = L7_DECODERS[url](r.bytes);
      if (d.ok) {
        upserts.set(r.name, d.value as L7Values[typeof kind]);
        accepted.push(r.name);
      } else {
        configRejections.inc({ type_url: url });
        rejected.push(
          `${r.name}: ${d.errors.map((e) => (e.path ? `${e.path}: ${e.message}` : e.message)).join(', ')}`,
        );
      }
    }
    if (rejected.length)
      log.warn(
        { typeUrl: url, error: rejected.join('; ') },
        'resources rejected, keeping the last good ones',
      );
    l7.update(kind, upserts, removed);
    afterL7(kind);
    return { accepted, rejected };
  };

  let draining = false;
  let server: HboneServer | undefined;
  let listenerError: string | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  const tunnels = new Set<() => void>();
  const directDeps: DirectDeps = {
    forwarder,
    tcpProxy,
    clock: engine.clock,
    log: log.child({ scope: 'direct' }),
    detectionTimeoutMs: config.protocolDetectionTimeoutMs,
    ingress: INGRESS_OPTIONS,
    track: (stop, stream) => {
      tunnels.add(stop);
      const untrack = () => void tunnels.delete(stop);
      stream.once('close', untrack);
      return untrack;
    },
  };

  const onTunnel = (req: HboneRequest) => {
    if (draining) return req.reject(503);
    const adm = admitTunnel(state, (n) => l7.listener(n), self, {
      authority: req.authority,
      peerIdentity: req.peerIdentity,
      remoteAddress: req.remoteAddress,
      remotePort: req.remotePort,
      forwarded: req.forwarded,
    });
    if (!adm.ok) {
      log.info(
        {
          src: `${req.remoteAddress}:${req.remotePort}`,
          srcIdentity: formatSpiffe(req.peerIdentity),
          dst: req.rawAuthority,
          status: adm.status,
          error: adm.reason,
        },
        'tunnel refused',
      );
      return req.reject(adm.status);
    }
    // A workload's IP: sniffed, then its waypoint's direct-http or direct-tcp listener (direct.ts).
    if (adm.direct) return serveDirect(req, adm.context, adm.direct, directDeps);
    // A TCP port: the CONNECT is answered once the upstream connection is up (or has failed).
    if (adm.listener.tcp) return tcpProxy.handle(req, adm.context, adm.listener);
    const stream = req.acceptStream();
    if (!stream) return;
    log.debug({ src: `${req.remoteAddress}:${req.remotePort}`, dst: req.rawAuthority }, 'tunnel accepted');
    const ctx = adm.context;
    const stop = serveHttp(
      stream,
      (hreq, hres, protocol) => forwarder.handle(ctx, hreq, hres, protocol),
      INGRESS_OPTIONS,
    );
    tunnels.add(stop);
    stream.once('close', () => tunnels.delete(stop));
  };

  const startListener = async (): Promise<void> => {
    retryTimer = undefined;
    try {
      const cert = await secrets.get(identity);
      if (draining) return;
      const s = await HboneServer.start({
        host: config.hbone.host,
        port: config.hbone.port,
        certificate: cert,
        trustDomain: config.trustDomain,
        log: log.child({ scope: 'hbone' }),
        onRequest: onTunnel,
      });
      if (draining) return void (await s.close(0));
      server = s;
      listenerError = undefined;
      log.info({ hbone: s.address(), identity: spiffe }, 'hbone listener up');
    } catch (err) {
      listenerError = describeError(err);
      log.error({ error: listenerError, retryInMs: LISTENER_RETRY_MS }, 'hbone listener failed');
      if (!draining) {
        retryTimer = setTimeout(() => void startListener(), LISTENER_RETRY_MS);
        retryTimer.unref();
      }
    }
  };
  secrets.onCertificate((cert) => {
    if (formatSpiffe(cert.identity) === spiffe) server?.setCertificate(cert);
  });

  let ads: AdsClient | undefined;
  if (config.xdsAddress) {
    ads = waypointXdsClient(config, log.child({ scope: 'xds' }), {
      onMesh: applyMesh,
      onL7: (kind, resources) => {
        l7.replace(kind, resources as ReadonlyMap<string, L7Values[typeof kind]>);
        afterL7(kind);
      },
      onRejected: (typeUrl) => configRejections.inc({ type_url: typeUrl }),
    });
  }

  const pending = () => {
    const out: string[] = [];
    if (draining) out.push('draining');
    if (ads && !ads.isSynced()) out.push(`xds from ${config.xdsAddress} (not synced yet)`);
    const cert = secrets.states().find((s) => formatSpiffe(s.identity) === spiffe);
    if (!cert || cert.state !== 'Available')
      out.push(`certificate ${spiffe} (${cert?.state ?? 'Initializing'})`);
    if (!server)
      out.push(
        `hbone listener ${config.hbone.host}:${config.hbone.port}${listenerError ? ` (${listenerError})` : ''}`,
      );
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
    log.info(
      {
        inFlight: forwarder.inFlight(),
        tunnels: tunnels.size,
        tcpConnections: tcpProxy.open(),
        deadlineMs: config.drainDeadlineMs,
      },
      'draining',
    );
    ads?.close();
    // HTTP/2 clients get GOAWAY; HTTP/1.1 connections close once the response in flight is sent.
    for (const stop of tunnels) stop();
    // TCP connections run on until the deadline, as Envoy's drain leaves them.
    await Promise.all([
      server?.close(config.drainDeadlineMs),
      forwarder.waitIdle(config.drainDeadlineMs),
      tcpProxy.waitIdle(config.drainDeadlineMs),
    ]);
    await closeEngine(engine, tcpProxy, endpoints, log);
    resolveDone();
  };

  const configDump = () => ({
    version: 'ambit-0.1.0',
    config: redactedWaypointConfig(config),
    identity: spiffe,
    hbone: server?.address() ?? null,
    xds: ads ? { synced: ads.isSynced(), connected: ads.isConnected() } : { source: 'fed by the caller' },
    ...l7.dump(),
    mesh: {
      workloads: state.config.workloads.map((w) => ({
        uid: w.uid,
        namespace: w.namespace,
        name: w.name,
        addresses: w.addresses,
        tunnelProtocol: w.tunnelProtocol,
        identity: formatSpiffe({
          trustDomain: w.trustDomain,
          namespace: w.namespace,
          serviceAccount: w.serviceAccount,
        }),
      })),
      services: state.config.services.map((s) => ({
        namespace: s.namespace,
        hostname: s.hostname,
        vips: s.vips.map((v) => v.address),
        ports: Object.fromEntries(s.ports),
        waypoint: s.waypoint,
      })),
    },
    certificates: secrets.states().map((s) => ({
      identity: formatSpiffe(s.identity),
      state: s.state,
      ...(s.cert ? describeCertificate(s.cert) : { certChain: [], rootCerts: [] }),
    })),
    traffic: {
      inFlight: forwarder.inFlight(),
      tunnels: tunnels.size,
      tcpConnections: tcpProxy.open(),
      upstream: upstream.describe(),
      pooled: pool.connectionCount,
    },
  });

  try {
    await startListener();
    bound = await startStatusEndpoints(
      config,
      {
        admin: { program: 'waypoint', configDump, quit: () => void close() },
        registry,
        readiness: { pending },
      },
      log,
      endpoints,
    );
    ads?.start();
  } catch (err) {
    await close();
    throw new AmbitError(ErrorCode.BindFailed, `cannot start: ${describeError(err)}`, {
      cause: err,
      hint: 'is another program already using the admin, metrics or readiness address?',
    });
  }
  const { admin, metrics, readiness } = bound;
  log.info(
    {
      gateway: `${config.namespace}/${config.gatewayName}`,
      identity: spiffe,
      hbone: server?.address(),
      admin,
    },
    'waypoint started',
  );
  return {
    admin,
    metrics,
    readiness,
    identity: spiffe,
    hbone: () => server?.address(),
    state: () => state,
    l7: () => l7,
    applyMesh,
    applyL7,
    applyXds,
    pending,
    inFlight: () => forwarder.inFlight(),
    openTunnels: () => tunnels.size + tcpProxy.open(),
    close,
    done,
  };
}
