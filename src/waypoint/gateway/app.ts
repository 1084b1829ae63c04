/**
 * The ingress gateway (issue 8): the waypoint's L7 engine (route tables, cluster pickers, the
 * forwarder with its retries, timeouts, mirrors and faults, HBONE upstream) behind a different
 * front — real listeners on the Istio Gateway servers' ports (servers.ts) instead of HBONE tunnels.
 * It takes from the controller every L7 resource (as a waypoint does) and serves the gateway
 * listeners whose group (the Gateway selector, core/xds/l7-names.ts) its own labels match. Requests
 * go into the mesh over HBONE with the gateway's own identity; metrics say `reporter="source"`, as
 * Istio's ingress gateways report. Admin 15000, metrics 15020, readiness 15021; drains on close.
 */
import type { AddressInfo, Socket } from 'node:net';
import { AmbitError, describeError, ErrorCode } from '../../core/errors.ts';
import { formatSpiffe } from '../../core/identity/spiffe.ts';
import type { HttpEndpoint } from '../../core/http-endpoint.ts';
import { createLogger, type Logger } from '../../core/log.ts';
import { MeshState } from '../../core/state/mesh-state.ts';
import type { AdsClient } from '../../core/xds/ads-client.ts';
import {
  EnvoyTypeUrl,
  parseGatewayGroup,
  parseGatewayResourceName,
  SECRET_TYPE_URL,
} from '../../core/xds/l7-names.ts';
import type { Service, Workload } from '../../core/xds/model.ts';
import { startStatusEndpoints } from '../../core/admin-routes.ts';
import { engineTcpProxy } from '../tcp-proxy.ts';
import { INGRESS_OPTIONS } from '../app.ts';
import { waypointXdsClient } from '../control-plane.ts';
import type { Forwarder, RequestContext } from '../forwarder.ts';
import { closeEngine, startL7Engine, type EngineDeps } from '../engine.ts';
import type { L7Values } from '../l7-state.ts';
import { redactedGatewayConfig, type GatewayConfig } from './config.ts';
import { decodeGatewayListenerBytes, type GatewayL7Listener } from './listener-facts.ts';
import { SECRET_ADS_TYPE, secretNamesOf, type GatewaySecret } from './sds.ts';
import { GatewayServers, type ConnectionInfo, type GatewayChain } from './servers.ts';

export interface GatewayDeps extends EngineDeps {
  readonly log?: Logger;
}

export interface GatewayBound {
  readonly admin: AddressInfo;
  readonly metrics: AddressInfo;
  readonly readiness: AddressInfo;
  /** `spiffe://…` the gateway presents upstream. */
  readonly identity: string;
  /** Where each Gateway server port listens now. */
  ports(): Map<number, AddressInfo>;
  /** The gateway listeners served now (those of the groups the pod's labels match). */
  chains(): readonly GatewayChain[];
  /** What readiness still waits for; empty when ready. */
  pending(): string[];
  /** Drains: stops listening, lets requests in flight finish up to the deadline, then closes. */
  close(): Promise<void>;
  /** Resolves once the gateway has shut down (also after POST /quitquitquit). */
  readonly done: Promise<void>;
}

/** Whether a gateway listener's group (a Gateway selector) selects a pod with `labels`. */
export function servesGroup(group: string, labels: Readonly<Record<string, string>>): boolean {
  return Object.entries(parseGatewayGroup(group)).every(
    ([k, v]) => Object.hasOwn(labels, k) && labels[k] === v,
  );
}

/**
 * The chains this pod serves, from every listener: the gateway ones of its groups; when two groups
 * serve one port, the first by name keeps it and the other is reported.
 */
export function selectChains(
  listeners: Iterable<GatewayL7Listener>,
  labels: Readonly<Record<string, string>>,
): { chains: GatewayChain[]; conflicts: string[] } {
  const mine = [...listeners]
    .flatMap((l) => {
      const parsed = parseGatewayResourceName(l.name);
      return l.gateway && parsed && servesGroup(parsed.group, labels)
        ? [{ listenerName: l.name, facts: l.gateway, group: parsed.group }]
        : [];
    })
    .sort((a, b) => (a.listenerName < b.listenerName ? -1 : a.listenerName > b.listenerName ? 1 : 0));
  const portGroup = new Map<number, string>();
  const chains: GatewayChain[] = [];
  const conflicts: string[] = [];
  for (const c of mine) {
    const owner = portGroup.get(c.facts.port);
    if (owner !== undefined && owner !== c.group) {
      conflicts.push(
        `port ${c.facts.port}: Gateways with selector ${c.group} conflict with those with selector ${owner}, which keep it`,
      );
      continue;
    }
    portGroup.set(c.facts.port, c.group);
    chains.push({ listenerName: c.listenerName, facts: c.facts });
  }
  return { chains, conflicts };
}

export async function startGateway(config: GatewayConfig, deps: GatewayDeps = {}): Promise<GatewayBound> {
  const log = deps.log ?? createLogger('gateway', config.logLevel);
  let state = new MeshState({ workloads: [], services: [], policies: [] });
  const engine = await startL7Engine(
    config,
    { program: 'gateway', reporter: 'source', mesh: () => state },
    deps,
    log,
  );
  const { identity, spiffe, secrets, registry, configRejections } = engine;
  const { l7, upstream, forwarder } = engine;
  // TCP and TLS servers: the waypoint's TCP proxy, the gateway as the source.
  const tcpProxy = engineTcpProxy(engine, () => state, log, config.connectTimeoutMs, 'source');

  /** The client as routes and telemetry see it: every request leaves as the gateway workload. */
  const sourceOf = (conn: ConnectionInfo) => {
    const self: Workload | undefined = state.workloadByIp(config.instanceIp);
    return {
      port: conn.chain.facts.port,
      listenerName: conn.chain.listenerName,
      source: {
        namespace: config.namespace,
        labels: self?.labels ?? config.labels,
        principal: spiffe,
        address: conn.remoteAddress,
      },
      srcWorkload: self,
      srcIdentity: identity,
      clientAddress: conn.remoteAddress,
      clientPort: conn.remotePort,
    };
  };
  /** A TCP or TLS server's connection (TLS terminated already, or passed through). */
  const onTcp = (conn: ConnectionInfo, socket: Socket, prefix: Buffer | undefined) => {
    const listener = listeners.get(conn.chain.listenerName);
    if (!listener?.tcp) return void socket.destroy();
    tcpProxy.handle(
      {
        acceptStream: () => {
          if (socket.destroyed) return undefined;
          if (prefix?.length) socket.unshift(prefix);
          return socket;
        },
        reject: () => socket.destroy(),
        rawAuthority: `${conn.chain.facts.hosts.join(',')}:${conn.chain.facts.port}`,
      },
      { ...sourceOf(conn), service: undefined },
      listener,
    );
  };
  /** Every request leaves as the gateway workload (Istio's ingress gateway is the source). */
  const onRequest = (
    conn: ConnectionInfo,
    req: Parameters<Forwarder['handle']>[1],
    res: Parameters<Forwarder['handle']>[2],
    protocol: 'http/1.1' | 'h2c',
  ) => {
    const ctx: RequestContext = {
      ...sourceOf(conn),
      service: undefined,
      scheme: conn.tls ? 'https' : 'http',
    };
    forwarder.handle(ctx, req, res, protocol);
  };
  /** The Secrets received over SDS (the ADS client's live map). */
  let secretsReceived: ReadonlyMap<string, unknown> = new Map();
  const servers = new GatewayServers({
    secrets: {
      namespace: config.namespace,
      get: (name) => secretsReceived.get(name) as GatewaySecret | undefined,
    },
    // ISTIO_MUTUAL servers present the gateway's own mesh certificate.
    meshCertificate: () => secrets.states().find((s) => formatSpiffe(s.identity) === spiffe)?.cert,
    host: config.listenHost,
    log: log.child({ scope: 'listeners' }),
    http: INGRESS_OPTIONS,
    onRequest,
    onTcp,
  });

  let chains: GatewayChain[] = [];
  let conflicts: string[] = [];
  let listeners: ReadonlyMap<string, GatewayL7Listener> = new Map();
  const applyListeners = () => {
    const selected = selectChains(listeners.values(), config.labels);
    conflicts = selected.conflicts;
    for (const c of conflicts) log.warn({ error: c }, 'gateway servers conflict');
    chains = selected.chains;
    // The Secrets the servers name are subscribed to (and those no longer named dropped) first.
    ads?.subscribe(SECRET_TYPE_URL, new Set(chains.flatMap((c) => secretNamesOf(c.facts, config.namespace))));
    void servers.update(chains);
  };

  let ads: AdsClient | undefined;
  if (config.xdsAddress) {
    ads = waypointXdsClient(
      config,
      log.child({ scope: 'xds' }),
      {
        onMesh: (workloads: Workload[], services: Service[]) => {
          state = new MeshState({ workloads, services, policies: [] });
        },
        onL7: (kind, resources) => {
          l7.replace(kind, resources as ReadonlyMap<string, L7Values[typeof kind]>);
          if (kind === 'cluster' || kind === 'cluster-load-assignment') upstream.prune(l7.endpointKeys());
          if (kind === 'listener') {
            listeners = resources as ReadonlyMap<string, GatewayL7Listener>;
            applyListeners();
          }
        },
        onRejected: (typeUrl) => configRejections.inc({ type_url: typeUrl }),
      },
      {
        nodeType: 'router',
        decoders: { [EnvoyTypeUrl.Listener]: decodeGatewayListenerBytes },
        extraTypes: [SECRET_ADS_TYPE],
        // A new or rotated Secret: the servers' contexts are made again; handshakes from now on use it.
        onOther: (typeUrl, resources) => {
          if (typeUrl !== SECRET_TYPE_URL) return;
          secretsReceived = resources;
          log.info({ secrets: [...resources.keys()] }, 'gateway secrets updated');
          void servers.update(chains);
        },
      },
    );
  }

  // A new or renewed mesh certificate: ISTIO_MUTUAL servers present it from the next handshake on.
  secrets.onCertificate((cert) => {
    if (formatSpiffe(cert.identity) === spiffe && chains.some((c) => c.facts.tls?.mode === 'ISTIO_MUTUAL'))
      void servers.update(chains);
  });

  let draining = false;
  const pending = () => {
    const out: string[] = [];
    if (draining) out.push('draining');
    if (ads && !ads.isSynced()) out.push(`xds from ${config.xdsAddress} (not synced yet)`);
    const cert = secrets.states().find((s) => formatSpiffe(s.identity) === spiffe);
    if (!cert || cert.state !== 'Available')
      out.push(`certificate ${spiffe} (${cert?.state ?? 'Initializing'})`);
    if (ads?.isSynced() && chains.length === 0)
      out.push(
        `no Gateway selects this gateway's labels (${Object.entries(config.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(',')})`,
      );
    out.push(...conflicts);
    // A server that cannot serve (its certificate is missing) does not take the gateway out of
    // its Service while another serves: readiness says so (degraded) and stays 200.
    if (!servers.serving()) out.push(...servers.problems());
    return out;
  };
  const degraded = () => (servers.serving() ? servers.problems() : []);

  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  let closing: Promise<void> | undefined;
  const close = () => (closing ??= shutdown());
  const endpoints: HttpEndpoint[] = [];
  let bound: Awaited<ReturnType<typeof startStatusEndpoints>> | undefined;
  const shutdown = async () => {
    draining = true;
    log.info(
      {
        inFlight: forwarder.inFlight(),
        connections: servers.openConnections(),
        deadlineMs: config.drainDeadlineMs,
      },
      'draining',
    );
    ads?.close();
    await servers.drain();
    await Promise.all([
      forwarder.waitIdle(config.drainDeadlineMs),
      tcpProxy.waitIdle(config.drainDeadlineMs),
    ]);
    await closeEngine(engine, tcpProxy, endpoints, log, () => servers.destroyAll());
    resolveDone();
  };

  const configDump = () => ({
    version: 'ambit-0.1.0',
    config: redactedGatewayConfig(config),
    identity: spiffe,
    xds: ads ? { synced: ads.isSynced(), connected: ads.isConnected() } : { source: 'none' },
    gateway: {
      labels: config.labels,
      ports: Object.fromEntries(servers.addresses()),
      chains,
      secrets: [...secretsReceived.keys()],
      notReady: [...conflicts, ...servers.problems()],
    },
    ...l7.dump(),
    traffic: {
      inFlight: forwarder.inFlight(),
      connections: servers.openConnections(),
      tcpConnections: tcpProxy.open(),
      upstream: upstream.describe(),
    },
  });

  try {
    // The gateway's own certificate (upstream HBONE) is asked for now, not at the first request.
    void secrets
      .get(identity)
      .catch((err: unknown) => log.warn({ error: describeError(err) }, 'certificate not issued yet'));
    bound = await startStatusEndpoints(
      config,
      {
        admin: { program: 'gateway', configDump, quit: () => void close() },
        registry,
        readiness: { pending, degraded },
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
    { gateway: `${config.namespace}/${config.gatewayName}`, identity: spiffe, labels: config.labels, admin },
    'gateway started',
  );
  return {
    admin,
    metrics,
    readiness,
    identity: spiffe,
    ports: () => servers.addresses(),
    chains: () => chains,
    pending,
    close,
    done,
  };
}
