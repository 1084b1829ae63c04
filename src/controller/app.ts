/**
 * The controller: reads a directory of Kubernetes YAML (local mode) or an API server, translates it
 * into Istio's workload resources (for node agents) and the Envoy L7 resources of VirtualServices and
 * DestinationRules (for waypoints and proxyless gRPC clients), serves them all over ADS (Delta and
 * state of the world), and runs the CA service — on one gRPC port, plus, in local mode, an optional
 * tokenless L7-only port for proxyless gRPC clients.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { Counter, Gauge } from 'prom-client';
import type { HostPort } from '../core/config/env.ts';
import { AmbitError, describeError, ErrorCode } from '../core/errors.ts';
import { HttpEndpoint, metricsHandler, send } from '../core/http-endpoint.ts';
import { CertificateAuthority } from '../core/identity/ca.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { createRegistry } from '../core/metrics.ts';
import { caServiceDefinition } from '../core/proto/ca-service.ts';
import { TypeUrl } from '../core/proto/load.ts';
import { AdsServer, type ResourceFilter, type ServedResource } from '../core/xds/ads-server.ts';
import { EnvoyTypeUrl, SECRET_TYPE_URL } from '../core/xds/l7-names.ts';
import { meshConfigJson, type MeshConfig } from '../core/xds/model.ts';
import {
  authorizationResourceName,
  encodeAuthorization,
  encodeService,
  encodeWorkload,
  serviceResourceName,
  workloadResourceName,
} from '../core/xds/workload-proto.ts';
import { bearerToken, caServiceHandlers, type TokenAuthority } from './ca/ca-service.ts';
import { FileTokenAuthority } from './ca/tokens.ts';
import type { ControllerConfig } from './config.ts';
import { watchKubeDir } from './files/file-source.ts';
import type { KubeYamlProblem } from './files/kube-yaml.ts';
import type { SecretAccess } from './kube/access-review.ts';
import type { KubeProblem } from './kube/source.ts';
import type { WaypointReconciler } from './kube/waypoint-reconciler.ts';
import { checkGatewayTemplate } from './reconcile/gateway-api.ts';
import { checkTemplate, type RenderOptions } from './reconcile/template.ts';
import type { KubeSnapshot } from './translate/kube-types.ts';
import type { GatewayApiStatus } from './translate/l7/gateway-api-translate.ts';
import { encodeL7Resources, translateL7, type L7Resources } from './translate/l7/index.ts';
import { LastGoodObjects } from './translate/last-good.ts';
import { translate } from './translate/workloads.ts';
import { SecretService } from './xds/secret-service.ts';
import { crossNamespaceRefs } from './xds/secrets.ts';

export interface ControllerDeps {
  readonly log?: Logger;
  readonly processMetrics?: boolean;
}

export interface ControllerBound {
  /** The gRPC address actually bound (xDS and CA). */
  readonly grpc: { readonly host: string; readonly port: number };
  /** The TLS gRPC port, when enabled. */
  readonly grpcTlsPort: number | undefined;
  /** The tokenless L7 xDS address for proxyless gRPC clients, when enabled. */
  readonly proxylessXds: { readonly host: string; readonly port: number } | undefined;
  readonly admin: AddressInfo;
  /** The mesh as last translated. */
  mesh(): MeshConfig;
  /** The names of the L7 resources served, by type URL. */
  l7Names(): ReadonlyMap<EnvoyTypeUrl, readonly string[]>;
  /** Resolves after the first push of the first snapshot. */
  readonly ready: Promise<void>;
  close(): Promise<void>;
}

export async function startController(
  config: ControllerConfig,
  deps: ControllerDeps = {},
): Promise<ControllerBound> {
  const log = deps.log ?? createLogger('controller', config.logLevel);
  const ca = await CertificateAuthority.fromFiles(config.caCertPath, config.caKeyPath, config.trustDomain);
  const registry = createRegistry('controller', deps.processMetrics ?? false);
  const rejected = new Counter({
    name: 'ambit_config_rejected_total',
    help: 'Kubernetes objects (or parts of them) skipped as invalid, by kind',
    labelNames: ['kind'],
    registers: [registry],
  });
  const keptObjects = new Gauge({
    name: 'ambit_config_kept_last_good',
    help: 'Objects whose newest version was rejected and whose last good version is still served',
    registers: [registry],
  });
  const lastGood = new LastGoodObjects();
  const pushes = new Counter({
    name: 'ambit_xds_pushes_total',
    help: 'Config versions pushed',
    registers: [registry],
  });
  const nacks = new Counter({
    name: 'ambit_xds_nacks_total',
    help: 'Responses rejected by a subscriber',
    labelNames: ['type_url'],
    registers: [registry],
  });
  const caRequests = new Counter({
    name: 'ambit_ca_requests_total',
    help: 'CreateCertificate calls by outcome',
    labelNames: ['outcome'],
    registers: [registry],
  });

  let mesh: MeshConfig = { workloads: [], services: [], policies: [] };
  // The Kubernetes client is loaded only when the controller talks to an API server: in local mode
  // with a tokens file it would be 60 MB of resident memory for nothing.
  const tokens: TokenAuthority = config.tokensPath
    ? new FileTokenAuthority(config.tokensPath)
    : new (await import('./kube/token-review.ts')).TokenReviewAuthority(
        { path: config.kubeconfigPath || undefined, inCluster: config.inCluster },
        {
          agentServiceAccounts: config.agentServiceAccounts,
          audiences: config.tokenAudiences,
          nodeOfPod: (ns, name) =>
            mesh.workloads.find((w) => w.uid === `${config.clusterId}//Pod/${ns}/${name}`)?.node,
          log: log.child({ scope: 'ca' }),
        },
      );
  // istiod's SubjectAccessReview before a gateway reads Secrets; local mode has no RBAC to ask.
  const secretAccess: SecretAccess | undefined = config.configDir
    ? undefined
    : new (await import('./kube/access-review.ts')).SubjectAccessReviewAuthority(
        { path: config.kubeconfigPath || undefined, inCluster: config.inCluster },
        log.child({ scope: 'sds' }),
      );
  const ads = new AdsServer({
    log: log.child({ scope: 'xds' }),
    types: [TypeUrl.Address, TypeUrl.Authorization, ...L7_TYPES, SECRET_TYPE_URL],
    onNack: (_id, typeUrl) => nacks.inc({ type_url: typeUrl }),
    // Gateway certificates (SDS): a stream reads only the Secrets of its caller's namespace, as
    // istiod allows (xds/secrets.ts); node agents none.
    scopedTypes: [SECRET_TYPE_URL],
    scope: async (md): Promise<ResourceFilter> => {
      const token = bearerToken(md);
      const caller = token ? await tokens.callerOf(token) : undefined;
      if (caller?.kind !== 'workload') return sds.filterFor(undefined);
      const refusal = await secretAccess?.mayReadSecrets(caller.namespace, caller.serviceAccount);
      if (refusal) log.warn({ error: refusal }, 'gateway certificates withheld (only CAs are served)');
      return sds.filterFor({ namespace: caller.namespace, mayListSecrets: refusal === undefined });
    },
    // Only node agents (a valid bearer token) may read the mesh.
    authorize: async (md) => {
      const token = bearerToken(md);
      if (!token) return 'missing "authorization: Bearer <token>"';
      return (await tokens.callerOf(token)) === undefined ? 'the bearer token is not valid' : undefined;
    },
  });
  const sds: SecretService = new SecretService(ads, log.child({ scope: 'sds' }), rejected);
  new Gauge({
    name: 'ambit_xds_subscribers',
    help: 'Connected xDS subscribers',
    registers: [registry],
    collect() {
      this.set(ads.subscriberInfo().length);
    },
  });

  // HTTP/2 keepalive finds dead agents (power loss, partition) so their streams and queued pushes go.
  const serverOptions = {
    'grpc.keepalive_time_ms': GRPC_KEEPALIVE_MS,
    'grpc.keepalive_timeout_ms': GRPC_KEEPALIVE_TIMEOUT_MS,
    'grpc.keepalive_permit_without_calls': 1,
  };
  const grpcServer = new Server(serverOptions);
  grpcServer.addService(ads.definition(), ads.handlers());
  // Proxyless gRPC clients cannot send a token (config.ts): their own server, its own port, the L7
  // types only — never the workload identities or the policies — and no CA.
  const proxylessServer = config.proxylessXdsAddr ? new Server(serverOptions) : undefined;
  proxylessServer?.addService(ads.definition(), ads.handlers({ types: L7_TYPES }));
  const shutdownAll = () => {
    grpcServer.forceShutdown();
    proxylessServer?.forceShutdown();
  };
  grpcServer.addService(
    caServiceDefinition(),
    caServiceHandlers({
      ca,
      tokens,
      mesh: () => mesh,
      log: log.child({ scope: 'ca' }),
      defaultTtlMs: config.defaultCertTtlMs,
      maxTtlMs: config.maxCertTtlMs,
      onResult: (outcome) => caRequests.inc({ outcome }),
    }),
  );
  let tlsPort: number | undefined;
  let proxylessPort: number | undefined;
  let port: number;
  try {
    if (config.grpcTlsAddr) {
      // The control plane's own identity, with the DNS names agents dial and verify.
      const serving = await ca.issueServing(
        { trustDomain: config.trustDomain, namespace: 'istio-system', serviceAccount: 'istiod' },
        config.servingDnsNames,
        SERVING_CERT_TTL_MS,
      );
      const tls = config.grpcTlsAddr;
      await new Promise<number>((resolve, reject) =>
        grpcServer.bindAsync(
          `${tls.host}:${tls.port}`,
          ServerCredentials.createSsl(
            null,
            [{ private_key: Buffer.from(serving.keyPem), cert_chain: Buffer.from(serving.certChainPem) }],
            false,
          ),
          (err, p) =>
            err
              ? reject(
                  new AmbitError(ErrorCode.BindFailed, `cannot bind gRPC TLS ${tls.host}:${tls.port}`, {
                    cause: err,
                  }),
                )
              : resolve(p),
        ),
      ).then((p) => (tlsPort = p));
    }
    port = await bindInsecure(grpcServer, config.grpcAddr, 'gRPC');
    if (proxylessServer && config.proxylessXdsAddr) {
      proxylessPort = await bindInsecure(proxylessServer, config.proxylessXdsAddr, 'proxyless xDS');
    }
  } catch (err) {
    // A port that did bind must not keep the process alive after a failed start.
    shutdownAll();
    throw err;
  }
  let pushed = false;
  /** What the last translation found for Gateway API ingress (served on /debug/gateway_status). */
  let gatewayApiStatus: GatewayApiStatus = { gateways: new Map(), routes: new Map() };
  /**
   * `namespace/name` of the Secrets read, for that status (InvalidCertificateRef); undefined until
   * Secrets are read. Both sources hand them over before the snapshot they belong with.
   */
  let secretNames: ReadonlySet<string> | undefined;
  // Only the names are kept: the translated objects of 10,000 services are megabytes, and what is
  // served lives on in the ADS server's encoded entries.
  let l7Names = new Map<EnvoyTypeUrl, readonly string[]>(L7_TYPES.map((t) => [t, []]));
  let resolveReady!: () => void;
  const ready = new Promise<void>((r) => (resolveReady = r));
  /** The L7 resources, encoded before any is served: a failure leaves the last ones in force. */
  const publishL7 = (next: L7Resources) => {
    let byType: Map<EnvoyTypeUrl, Map<string, ServedResource>>;
    try {
      byType = new Map(
        [...encodeL7Resources(next)].map(([typeUrl, list]) => [
          typeUrl,
          new Map(list.map((r) => [r.name, r])),
        ]),
      );
    } catch (err) {
      log.error({ error: describeError(err) }, 'L7 config not pushed: encoding failed; the last one stays');
      return;
    }
    // Make before break, as Envoy asks of a server: clusters and their endpoints before the routes
    // that name them.
    sds.setCrossNamespace(crossNamespaceRefs(next.listeners));
    for (const typeUrl of PUSH_ORDER) ads.set(typeUrl, byType.get(typeUrl) ?? new Map());
    l7Names = new Map(L7_TYPES.map((t) => [t, [...(byType.get(t)?.keys() ?? [])]]));
  };
  const publish = (next: MeshConfig) => {
    // Everything is encoded before anything is served: a failure leaves the last config in force.
    let addresses: Map<string, ServedResource>;
    let policies: Map<string, ServedResource>;
    try {
      addresses = new Map([
        ...next.workloads.map((w) => [workloadResourceName(w), served(encodeWorkload(w))] as const),
        ...next.services.map((s) => [serviceResourceName(s), served(encodeService(s))] as const),
      ]);
      policies = new Map(
        next.policies.map((p) => [authorizationResourceName(p), served(encodeAuthorization(p))] as const),
      );
    } catch (err) {
      log.error({ error: describeError(err) }, 'config not pushed: encoding failed; the last config stays');
      return;
    }
    ads.set(TypeUrl.Address, addresses);
    ads.set(TypeUrl.Authorization, policies);
    mesh = next;
    pushes.inc();
    pushed = true;
    log.info(
      { workloads: next.workloads.length, services: next.services.length, policies: next.policies.length },
      'config pushed',
    );
    resolveReady();
  };

  const onSnapshot = (snapshot: KubeSnapshot, problems: readonly (KubeProblem | KubeYamlProblem)[]) => {
    const options = {
      clusterId: config.clusterId,
      trustDomain: config.trustDomain,
      clusterDomain: config.clusterDomain,
      rootNamespace: config.rootNamespace,
    };
    const translateAll = (s: KubeSnapshot) => {
      const t = translate(s, options);
      // The L7 translation reads the workload translation's services and endpoints. A failure of it
      // (a bug) must not hold back the workloads: the last L7 resources stay in force.
      let l7: ReturnType<typeof translateL7> | undefined;
      try {
        l7 = translateL7(
          {
            snapshot: s,
            mesh: t.config,
            virtualServices: s.virtualServices,
            destinationRules: s.destinationRules,
            ...(secretNames && { secrets: secretNames }),
          },
          options,
        );
      } catch (err) {
        log.error({ error: describeError(err) }, 'L7 translation failed; the last L7 config stays');
      }
      return {
        t,
        l7Result: l7,
        problems: [...t.problems, ...(l7?.problems ?? []), ...(l7?.authzProblems ?? [])],
      };
    };
    // An object the source rejected is served in its last good version; so is one whose
    // translation fails (then the mesh is translated again with it).
    const first = lastGood.substitute(snapshot, problems, 'left-out');
    let current = first.snapshot;
    let { t, l7Result, problems: translated } = translateAll(current);
    const second = lastGood.substitute(current, translated, 'failed');
    if (second.kept.length > 0) {
      current = second.snapshot;
      ({ t, l7Result, problems: translated } = translateAll(current));
    }
    lastGood.commit(current, problems, translated);
    for (const k of [...first.kept, ...second.kept]) {
      log.warn(
        { object: `${k.kind}/${k.namespace ? `${k.namespace}/` : ''}${k.name}` },
        'new version rejected; the last good version stays in force',
      );
    }
    keptObjects.set(first.kept.length + second.kept.length);
    for (const p of [...problems, ...translated]) {
      const fields = {
        object: `${p.kind}/${p.namespace ? `${p.namespace}/` : ''}${p.name}`,
        path: p.path,
        error: p.message,
        ...('file' in p && 'line' in p ? { file: p.file, line: p.line } : {}),
      };
      // error: skipped (counted); warning: applied with a change the user must know; info: a
      // kind the controller does not read.
      if (p.severity === 'error') {
        rejected.inc({ kind: p.kind || 'unknown' });
        log.warn(fields, 'object skipped');
      } else if (p.severity === 'warning') log.warn(fields, 'object applied with a change');
      else log.debug(fields, 'object ignored');
    }
    // Both sources already debounce (debounceMs), so a snapshot is published as it comes. The
    // workloads first: a waypoint learns of a new pod (its identity, its node) before EDS sends
    // traffic to it.
    publish(t.config);
    if (l7Result) {
      publishL7(l7Result.resources);
      gatewayApiStatus = l7Result.gatewayApiStatus;
    }
  };
  const onSecrets = (secrets: readonly unknown[]) => {
    secretNames = new Set(secrets.map(secretKey));
    sds.update(secrets);
  };
  // A directory of YAML (local mode) or the API server through client-node informers.
  let source: { close(): void };
  try {
    source = config.configDir
      ? watchKubeDir(config.configDir, { debounceMs: config.debounceMs, onSnapshot, onSecrets })
      : (await import('./kube/source.ts')).watchKube(
          { path: config.kubeconfigPath || undefined, inCluster: config.inCluster },
          { debounceMs: config.debounceMs, log, onSnapshot, onSecrets },
        );
  } catch (err) {
    shutdownAll();
    throw err;
  }
  // Waypoint Deployments for waypoint Gateways: with an API server only (`ambit local` runs local
  // mode's waypoints itself), by whichever replica holds the Lease.
  let waypoints: WaypointReconciler | undefined;
  try {
    waypoints = config.configDir ? undefined : await startWaypoints(config, ca, log);
  } catch (err) {
    source.close();
    shutdownAll();
    throw err;
  }
  new Gauge({
    name: 'ambit_waypoint_reconciler_leader',
    help: '1 while this replica holds the Lease and reconciles waypoint Gateways',
    registers: [registry],
    collect() {
      this.set(waypoints?.isLeader() ? 1 : 0);
    },
  });

  const admin = await HttpEndpoint.start(
    config.adminAddr,
    {
      '/metrics': metricsHandler(registry),
      '/ready': (_req, _url, res) =>
        pushed ? send(res, 200, 'ready\n') : send(res, 503, 'not ready: waiting for the first snapshot\n'),
      '/debug/config_dump': (_req, _url, res) =>
        send(
          res,
          200,
          JSON.stringify(
            {
              ...meshConfigJson(mesh),
              l7: Object.fromEntries(l7Names),
              secrets: sds.names(),
              subscribers: ads.subscriberInfo(),
            },
            null,
            2,
          ) + '\n',
          'application/json',
        ),
      // Gateway API ingress as the translation sees it: what a cluster's reconciler writes to the
      // Gateways' and HTTPRoutes' status (local mode has no API server to write it to).
      '/debug/gateway_status': (_req, _url, res) =>
        send(
          res,
          200,
          JSON.stringify(
            {
              gateways: [...gatewayApiStatus.gateways.values()],
              routes: Object.fromEntries(gatewayApiStatus.routes),
            },
            null,
            2,
          ) + '\n',
          'application/json',
        ),
    },
    log,
  ).catch(async (err: unknown) => {
    source.close();
    await waypoints?.close();
    shutdownAll();
    throw new AmbitError(
      ErrorCode.BindFailed,
      `cannot bind admin ${config.adminAddr.host}:${config.adminAddr.port}: ${describeError(err)}`,
      { cause: err },
    );
  });
  log.info(
    {
      grpc: `${config.grpcAddr.host}:${port}`,
      ...(proxylessPort !== undefined
        ? { proxylessXds: `${config.proxylessXdsAddr!.host}:${proxylessPort}` }
        : {}),
      admin: admin.address(),
      source: config.configDir || (config.inCluster ? 'in-cluster' : config.kubeconfigPath),
    },
    'controller started',
  );

  return {
    grpc: { host: config.grpcAddr.host, port },
    grpcTlsPort: tlsPort,
    proxylessXds:
      proxylessPort !== undefined && config.proxylessXdsAddr
        ? { host: config.proxylessXdsAddr.host, port: proxylessPort }
        : undefined,
    admin: admin.address(),
    mesh: () => mesh,
    l7Names: () => l7Names,
    ready,
    close: async () => {
      source.close();
      // Gives the Lease up, so the other replica takes over at once.
      await waypoints?.close();
      ads.close();
      // Streams get a moment to end cleanly; then the server stops regardless, so a client that
      // keeps a call open cannot hold the controller up.
      await Promise.race([
        Promise.all(
          [grpcServer, proxylessServer].map(
            (s) => new Promise<void>((r) => (s ? s.tryShutdown(() => r()) : r())),
          ),
        ),
        new Promise<void>((r) => setTimeout(r, SHUTDOWN_GRACE_MS).unref()),
      ]);
      shutdownAll();
      await admin.close();
    },
  };
}

/** Server-side PING to each agent, and how long an answer may take (as istiod). */
const GRPC_KEEPALIVE_MS = 30_000;
const GRPC_KEEPALIVE_TIMEOUT_MS = 10_000;

/** How long open gRPC calls may take to end at shutdown. */
const SHUTDOWN_GRACE_MS = 2000;

/** The control plane's serving certificate lives a year (renewed on restart). */
const SERVING_CERT_TTL_MS = 365 * 24 * 3600_000;

/** The Envoy types of the L7 translation (waypoints and proxyless gRPC clients). */
const L7_TYPES: readonly EnvoyTypeUrl[] = [
  EnvoyTypeUrl.Listener,
  EnvoyTypeUrl.RouteConfiguration,
  EnvoyTypeUrl.Cluster,
  EnvoyTypeUrl.ClusterLoadAssignment,
];

const PUSH_ORDER: readonly EnvoyTypeUrl[] = [
  EnvoyTypeUrl.Cluster,
  EnvoyTypeUrl.ClusterLoadAssignment,
  EnvoyTypeUrl.Listener,
  EnvoyTypeUrl.RouteConfiguration,
];

/**
 * Starts the waypoint reconciler, or logs why it is off; throws when its template is not usable,
 * so a broken template stops the controller at start rather than every Gateway later.
 */
async function startWaypoints(
  config: ControllerConfig,
  ca: CertificateAuthority,
  log: Logger,
): Promise<WaypointReconciler | undefined> {
  const wp = config.waypoints;
  if (!wp) return undefined;
  if (!wp.image) {
    log.warn(
      { setting: 'AMBIT_WAYPOINT_IMAGE' },
      'waypoint reconciler off: AMBIT_WAYPOINT_IMAGE is not set, so waypoint Gateways get no Deployment',
    );
    return undefined;
  }
  let template: string;
  try {
    template = await readFile(wp.templatePath, 'utf8');
  } catch (err) {
    throw new AmbitError(ErrorCode.ConfigRead, `cannot read the waypoint template ${wp.templatePath}`, {
      hint: 'set AMBIT_WAYPOINT_TEMPLATE to a copy of waypoint/template.yaml',
      cause: err,
    });
  }
  // The waypoint verifies the controller with every root the CA trusts (a rotation in progress too).
  const render = { image: wp.image, caRootCertPem: ca.trustBundlePem, blockOwnerDeletion: false };
  const problems = checkTemplate(template, render);
  if (problems.length > 0) {
    throw new AmbitError(
      ErrorCode.ConfigInvalid,
      `the waypoint template ${wp.templatePath} is not usable: ${problems.join('; ')}`,
      { hint: 'compare it with waypoint/template.yaml and its header' },
    );
  }
  const gatewayTemplate = await readGatewayTemplate(wp.gatewayTemplatePath, render, log);
  const { startWaypointReconciler, DEFAULT_LEASE_NAME } = await import('./kube/waypoint-reconciler.ts');
  return startWaypointReconciler({
    kubeConfig: { path: config.kubeconfigPath || undefined, inCluster: config.inCluster },
    template,
    gatewayTemplate,
    render,
    clusterDomain: config.clusterDomain,
    lease: {
      namespace: wp.leaseNamespace,
      name: DEFAULT_LEASE_NAME,
      // client-go's advice where the pod name is unknown: the host name made unique.
      identity: wp.identity || `${hostname()}_${randomBytes(4).toString('hex')}`,
      leaseDurationMs: wp.leaseDurationMs,
      renewIntervalMs: wp.leaseRenewMs,
    },
    log,
  });
}

/** Binds a plaintext port; a failure says which. */
function bindInsecure(server: Server, addr: HostPort, what: string): Promise<number> {
  return new Promise<number>((resolve, reject) =>
    server.bindAsync(`${addr.host}:${addr.port}`, ServerCredentials.createInsecure(), (err, p) =>
      err
        ? reject(
            new AmbitError(ErrorCode.BindFailed, `cannot bind ${what} ${addr.host}:${addr.port}`, {
              cause: err,
            }),
          )
        : resolve(p),
    ),
  );
}

/** A resource with a deterministic version: the hash of its content. */
function served(bytes: Uint8Array): ServedResource {
  return { version: createHash('sha256').update(bytes).digest('hex').slice(0, 16), bytes };
}

/**
 * The ingress gateway template (Gateways of class ambit), or undefined after a warning when it
 * cannot be read (waypoints are reconciled still); throws when it is not usable.
 */
async function readGatewayTemplate(
  path: string,
  render: RenderOptions,
  log: Logger,
): Promise<string | undefined> {
  let template: string;
  try {
    template = await readFile(path, 'utf8');
  } catch (err) {
    log.warn(
      { setting: 'AMBIT_GATEWAY_TEMPLATE', path, error: describeError(err) },
      'ingress gateway template not readable: Gateways of class ambit get no Deployment',
    );
    return undefined;
  }
  const problems = checkGatewayTemplate(template, render);
  if (problems.length > 0)
    throw new AmbitError(
      ErrorCode.ConfigInvalid,
      `the ingress gateway template ${path} is not usable: ${problems.join('; ')}`,
      { hint: 'compare it with waypoint/gateway-template.yaml and its header' },
    );
  return template;
}

/** `namespace/name` of a Secret as the sources hand it over (raw, as listed or written). */
function secretKey(o: unknown): string {
  const meta = (o as { metadata?: { namespace?: unknown; name?: unknown } } | null)?.metadata;
  const ns = typeof meta?.namespace === 'string' && meta.namespace ? meta.namespace : 'default';
  return `${ns}/${typeof meta?.name === 'string' ? meta.name : ''}`;
}
