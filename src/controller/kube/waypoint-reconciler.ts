/**
 * The waypoint reconciler: for every Gateway of a waypoint class, the objects of the waypoint
 * template (ServiceAccount, root-certificate ConfigMap, Deployment, Service), kept as rendered, and
 * the Gateway's status (Accepted, Programmed, addresses). The I/O edge of src/controller/reconcile/,
 * which decides everything; this file lists, watches and writes through `@kubernetes/client-node`'s
 * HTTP stack (auth, TLS and token refresh from the kubeconfig), the objects staying plain JSON.
 *
 * - Every replica runs leader election over one Lease (reconcile/lease.ts); only the holder watches
 *   and writes. Every replica keeps serving xDS and the CA whatever happens here.
 * - Level-triggered: a pass lists the Gateways and the objects labelled as ours, computes the whole
 *   diff and applies it, then writes each waypoint Gateway's status where it changed. Watches only
 *   say when to run a pass (debounced); a periodic resync catches anything they missed; a failed
 *   pass is retried with backoff (1 s doubling to 30 s).
 * - The cluster's garbage collector deletes the objects when their Gateway goes (owner references);
 *   the reconciler deletes them too, so nothing is left where there is no collector or the owner
 *   reference was removed.
 */
import {
  HttpMethod,
  IsomorphicFetchHttpLibrary,
  RequestContext,
  Watch,
  type KubeConfig,
} from '@kubernetes/client-node';
import { systemClock, type Clock } from '../../core/clock.ts';
import { AmbitError, describeError, ErrorCode } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import { diffWaypointObjects, type ReconcileAction } from '../reconcile/diff.ts';
import {
  decideLease,
  leadingUntilMs,
  releasedLease,
  type LeaseCandidate,
  type LeaseObservation,
  type LeaseSpec,
} from '../reconcile/lease.ts';
import {
  canonicalJson,
  decodeWaypointGateway,
  isObject,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  metadataOf,
  objectKey,
  OWNED_API_VERSIONS,
  OWNED_KINDS,
  str,
  type KubeJson,
  type OwnedKind,
  type WaypointGateway,
} from '../reconcile/objects.ts';
import {
  decodeIngressGateway,
  desiredIngressGateways,
  gatewayClassStatus,
  ingressGatewayStatus,
  routeStatus,
  translateGatewayApiStatus,
  type IngressGateway,
} from '../reconcile/gateway-api.ts';
import { statusChanged, waypointStatus } from '../reconcile/status.ts';
import { gatewayApiDeploymentName } from '../translate/l7/gateway-api-translate.ts';
import { desiredWaypoints, type RenderOptions } from '../reconcile/template.ts';
import { loadKubeConfig, type KubeConfigSource } from './source.ts';

export interface WaypointReconcilerOptions {
  readonly kubeConfig: KubeConfigSource;
  /** The text of waypoint/template.yaml (checked by the caller with checkTemplate). */
  readonly template: string;
  /**
   * The text of waypoint/gateway-template.yaml: with it, each Gateway of class `ambit` gets its
   * ingress gateway objects (reconcile/gateway-api.ts) and a status, and so do the HTTPRoutes
   * attached to it; without it, such Gateways are left alone.
   */
  readonly gatewayTemplate?: string;
  readonly render: RenderOptions;
  readonly clusterDomain: string;
  readonly lease: {
    readonly namespace: string;
    readonly name: string;
  } & LeaseCandidate;
  /** Full pass at least this often, events or not. */
  readonly resyncMs?: number;
  /** A burst of watch events within this window gives one pass. */
  readonly debounceMs?: number;
  readonly log: Logger;
  readonly clock?: Clock;
}

export interface WaypointReconciler {
  /** This replica holds the Lease and reconciles. */
  isLeader(): boolean;
  /** Writes made so far: object creates, replaces and deletes, and Gateway status updates. */
  writes(): number;
  /**
   * Stops reconciling and leader election. With `release` (the default) a held Lease is given up
   * so another replica takes over at once; without it, as after a crash, only once it expires.
   */
  close(options?: { readonly release?: boolean }): Promise<void>;
}

export const DEFAULT_LEASE_NAME = 'ambit-waypoint-reconciler';
const DEFAULT_RESYNC_MS = 60_000;
const DEFAULT_DEBOUNCE_MS = 100;
const RETRY_BASE_MS = 1000;
const RETRY_MAX_MS = 30_000;
const REQUEST_TIMEOUT_MS = 30_000;
const STALE_RETRY_MS = 500;

const GATEWAYS = '/apis/gateway.networking.k8s.io/v1/gateways';
/** What ingress Gateways' and routes' status depends on besides the Gateways (gatewayTemplate set). */
const HTTPROUTES = '/apis/gateway.networking.k8s.io/v1/httproutes';
const INGRESS_INPUTS = {
  namespaces: '/api/v1/namespaces',
  services: '/api/v1/services',
  referenceGrants: '/apis/gateway.networking.k8s.io/v1beta1/referencegrants',
  secrets: '/api/v1/secrets',
  gatewayClasses: '/apis/gateway.networking.k8s.io/v1/gatewayclasses',
} as const;
const COLLECTIONS: Readonly<Record<OwnedKind, { all: string; ns: (ns: string) => string }>> = {
  ServiceAccount: {
    all: '/api/v1/serviceaccounts',
    ns: (ns) => `/api/v1/namespaces/${enc(ns)}/serviceaccounts`,
  },
  ConfigMap: { all: '/api/v1/configmaps', ns: (ns) => `/api/v1/namespaces/${enc(ns)}/configmaps` },
  Deployment: {
    all: '/apis/apps/v1/deployments',
    ns: (ns) => `/apis/apps/v1/namespaces/${enc(ns)}/deployments`,
  },
  Service: { all: '/api/v1/services', ns: (ns) => `/api/v1/namespaces/${enc(ns)}/services` },
};
const OWNED_SELECTOR = `${MANAGED_BY_LABEL}=${MANAGED_BY}`;

/** Starts leader election; the reconciler runs while this replica leads. */
export function startWaypointReconciler(options: WaypointReconcilerOptions): WaypointReconciler {
  const kc = loadKubeConfig(options.kubeConfig);
  const rest = new Rest(kc);
  const clock = options.clock ?? systemClock;
  const log = options.log.child({ scope: 'waypoints' });
  const lease = options.lease;
  const leasePath = `/apis/coordination.k8s.io/v1/namespaces/${enc(lease.namespace)}/leases/${enc(lease.name)}`;
  const resyncMs = options.resyncMs ?? DEFAULT_RESYNC_MS;
  const debounceMs = options.debounceMs ?? DEFAULT_DEBOUNCE_MS;

  let closed = false;
  let leading = false;
  /** Bumped whenever leadership ends: watches and passes of an older term stop. */
  let term = 0;
  let observed: LeaseObservation | undefined;
  let cancelLeaseTimer: (() => void) | undefined;
  let cancelDeadline: (() => void) | undefined;
  let leaseTick: Promise<void> = Promise.resolve();
  let writes = 0;

  // ---- leader election ----

  const tick = async (): Promise<void> => {
    const startedMs = clock.nowMs();
    try {
      const got = await rest.send(HttpMethod.GET, leasePath, undefined, lease.renewIntervalMs);
      if (got.status !== 200 && got.status !== 404) throw httpError('read the Lease', got, 'leases');
      const current = got.status === 404 ? undefined : ((got.body?.spec ?? {}) as LeaseSpec);
      const decided = decideLease(current, lease, observed, startedMs);
      observed = decided.observed;
      const d = decided.decision;
      if (d.kind === 'wait') {
        if (leading) stopLeading(`the Lease is held by ${d.holder}`);
        return;
      }
      const body = {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: {
          name: lease.name,
          namespace: lease.namespace,
          ...(d.kind !== 'create' && { resourceVersion: str(metadataOf(got.body ?? {}).resourceVersion) }),
        },
        spec: d.spec,
      };
      const wrote =
        d.kind === 'create'
          ? await rest.send(
              HttpMethod.POST,
              leasePath.slice(0, leasePath.lastIndexOf('/')),
              body,
              lease.renewIntervalMs,
            )
          : await rest.send(HttpMethod.PUT, leasePath, body, lease.renewIntervalMs);
      if (wrote.status === 409) {
        // Another candidate wrote first: it holds the Lease now.
        if (leading) stopLeading('another replica took the Lease');
        return;
      }
      if (wrote.status !== 200 && wrote.status !== 201) throw httpError('write the Lease', wrote, 'leases');
      if (d.kind !== 'renew') {
        log.info(
          {
            lease: `${lease.namespace}/${lease.name}`,
            identity: lease.identity,
            transitions: d.spec.leaseTransitions,
          },
          'leader election: acquired the Lease',
        );
      }
      renewed(startedMs);
    } catch (err) {
      log.warn(
        { lease: `${lease.namespace}/${lease.name}`, error: describeError(err) },
        'leader election failed; retrying',
      );
    }
  };

  /** The Lease was written at (or after) `atMs`: lead until it could expire for the others. */
  const renewed = (atMs: number) => {
    if (closed) return;
    const untilMs = leadingUntilMs(atMs, lease);
    cancelDeadline?.();
    cancelDeadline = clock.setTimer(
      () => stopLeading('the Lease was not renewed in time'),
      Math.max(0, untilMs - clock.nowMs()),
    );
    if (!leading) {
      leading = true;
      log.info({ identity: lease.identity }, 'leading: reconciling waypoint Gateways');
      startTerm();
    }
  };

  const loop = () => {
    if (closed) return;
    leaseTick = tick().finally(() => {
      if (!closed) cancelLeaseTimer = clock.setTimer(loop, lease.renewIntervalMs);
    });
  };

  const stopLeading = (why: string) => {
    cancelDeadline?.();
    cancelDeadline = undefined;
    if (!leading) return;
    leading = false;
    term++;
    log.warn({ identity: lease.identity, reason: why }, 'no longer leading: waypoint reconciling stopped');
    stopTerm();
  };

  // ---- the reconciling term: watches, passes ----

  const watcher = new Watch(kc);
  let aborts: AbortController[] = [];
  let cancelPass: (() => void) | undefined;
  let passDueMs = Infinity;
  let passRunning: Promise<void> | undefined;
  let passAgain = false;
  let retryMs = RETRY_BASE_MS;
  let gatewayApiMissing = false;
  const lastRejected = new Map<string, string>();

  /** Runs a pass after `delayMs`, or sooner if one is due sooner already. */
  const schedule = (delayMs: number) => {
    if (!leading || closed) return;
    if (passRunning) {
      if (delayMs <= debounceMs) passAgain = true;
      return;
    }
    const due = clock.nowMs() + delayMs;
    if (due >= passDueMs) return;
    cancelPass?.();
    passDueMs = due;
    const myTerm = term;
    cancelPass = clock.setTimer(() => {
      cancelPass = undefined;
      passDueMs = Infinity;
      if (myTerm === term) runPass(myTerm);
    }, delayMs);
  };

  const runPass = (myTerm: number) => {
    passRunning = reconcileOnce(myTerm)
      .then(
        (stale) => {
          retryMs = RETRY_BASE_MS;
          // A write refused as stale (409): the watch brings the newer version soon; look again then.
          return stale ? STALE_RETRY_MS : resyncMs;
        },
        (err: unknown) => {
          if (err instanceof NotLeading) return undefined;
          log.warn({ error: describeError(err), retryInMs: retryMs }, 'waypoint reconcile failed; retrying');
          const wait = retryMs;
          retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
          return wait;
        },
      )
      .then((next) => {
        passRunning = undefined;
        if (next === undefined || myTerm !== term) return;
        if (passAgain) {
          passAgain = false;
          schedule(Math.min(debounceMs, next));
        } else schedule(next);
      });
  };

  const startTerm = () => {
    const myTerm = term;
    retryMs = RETRY_BASE_MS;
    watch(GATEWAYS, {}, myTerm);
    if (options.gatewayTemplate !== undefined) {
      watch(HTTPROUTES, {}, myTerm);
      watch(INGRESS_INPUTS.referenceGrants, {}, myTerm);
    }
    for (const kind of OWNED_KINDS) watch(COLLECTIONS[kind].all, { labelSelector: OWNED_SELECTOR }, myTerm);
    schedule(0);
  };

  const stopTerm = () => {
    cancelPass?.();
    cancelPass = undefined;
    passDueMs = Infinity;
    passAgain = false;
    for (const a of aborts) a.abort();
    aborts = [];
  };

  /**
   * A watch whose events only trigger passes; resumed from its last resourceVersion when it ends,
   * after `backoffMs` (doubling) if it failed.
   */
  const watch = (
    path: string,
    query: Record<string, string>,
    myTerm: number,
    fromRv?: string,
    backoffMs = RETRY_BASE_MS,
  ) => {
    let rv = fromRv;
    const restart = (err: unknown) => {
      if (closed || myTerm !== term) return;
      // The library ends a quiet watch after 30 s with a TimeoutError: a normal end, not a failure.
      const failed = err !== null && err !== undefined && !isTimeout(err);
      if (failed)
        log.debug({ path, error: describeError(err), retryInMs: backoffMs }, 'watch failed; restarting');
      clock.setTimer(
        () => watch(path, query, myTerm, rv, failed ? Math.min(backoffMs * 2, RETRY_MAX_MS) : RETRY_BASE_MS),
        failed ? backoffMs : debounceMs,
      );
    };
    watcher
      .watch(
        path,
        { ...query, allowWatchBookmarks: true, ...(rv !== undefined && { resourceVersion: rv }) },
        (phase: string, obj: unknown) => {
          const objRv = isObject(obj) ? str(metadataOf(obj).resourceVersion) : '';
          if (phase === 'ERROR')
            rv = undefined; // 410 Expired: start afresh (a pass follows anyway)
          else if (objRv) rv = objRv;
          if (phase !== 'BOOKMARK') schedule(debounceMs);
        },
        restart,
      )
      .then((abort) => {
        if (closed || myTerm !== term) abort.abort();
        else aborts.push(abort);
      }, restart);
  };

  /** One level-triggered pass; true when a write was refused as stale. */
  const reconcileOnce = async (myTerm: number): Promise<boolean> => {
    const guard = () => {
      if (closed || myTerm !== term || !leading) throw new NotLeading();
    };
    const gwList = await rest.send(HttpMethod.GET, GATEWAYS);
    if (gwList.status === 404) {
      // No Gateway API CRDs: nothing can be a waypoint. Deleting what exists would be a guess, so wait.
      if (!gatewayApiMissing)
        log.warn(
          { path: GATEWAYS },
          'Gateways are not served (are the Gateway API CRDs installed?); waiting',
        );
      gatewayApiMissing = true;
      return false;
    }
    gatewayApiMissing = false;
    if (gwList.status !== 200) throw httpError('list Gateways', gwList, 'gateways');
    const rawGateways = items(gwList.body, 'Gateway', 'gateway.networking.k8s.io/v1');
    const gateways: { gw: WaypointGateway; raw: KubeJson }[] = [];
    for (const raw of rawGateways) {
      const gw = decodeWaypointGateway(raw);
      if (gw) gateways.push({ gw, raw });
    }
    const existing: KubeJson[] = [];
    for (const kind of OWNED_KINDS) {
      const got = await rest.send(
        HttpMethod.GET,
        `${COLLECTIONS[kind].all}?labelSelector=${encodeURIComponent(OWNED_SELECTOR)}`,
      );
      if (got.status !== 200) throw httpError(`list ${kind}s`, got, `${kind.toLowerCase()}s`);
      existing.push(...items(got.body, kind, OWNED_API_VERSIONS[kind]));
    }
    const ingress: { gw: IngressGateway; raw: KubeJson }[] = [];
    if (options.gatewayTemplate !== undefined)
      for (const raw of rawGateways) {
        const gw = decodeIngressGateway(raw);
        if (gw) ingress.push({ gw, raw });
      }
    const waypointsDesired = desiredWaypoints(
      options.template,
      gateways.map((g) => g.gw),
      options.render,
    );
    const ingressDesired = options.gatewayTemplate
      ? desiredIngressGateways(
          options.gatewayTemplate,
          ingress.map((g) => g.gw),
          options.render,
        )
      : { objects: [], rejected: new Map<string, readonly string[]>() };
    const desired = {
      objects: [...waypointsDesired.objects, ...ingressDesired.objects],
      rejected: new Map([...waypointsDesired.rejected, ...ingressDesired.rejected]),
    };
    for (const [gateway, errors] of desired.rejected) {
      const text = errors.join('; ');
      if (lastRejected.get(gateway) !== text)
        log.warn({ gateway, error: text }, 'waypoint Gateway rejected: its objects cannot be made');
      lastRejected.set(gateway, text);
    }
    for (const gateway of lastRejected.keys())
      if (!desired.rejected.has(gateway)) lastRejected.delete(gateway);

    const diff = diffWaypointObjects(desired.objects, existing);
    /** The newest version of each object, as the writes answered. */
    const current = new Map(existing.map((o) => [objectKey(o), o]));
    const conflicts = new Map<string, string[]>();
    for (const c of diff.conflicts)
      conflicts.set(c.gateway, [...(conflicts.get(c.gateway) ?? []), c.message]);
    let stale = false;
    for (const action of diff.actions) {
      guard();
      const outcome = await apply(action);
      if (outcome.kind === 'done') {
        writes++;
        if (outcome.object) current.set(objectKey(action.object), outcome.object);
        else current.delete(objectKey(action.object));
      } else if (outcome.kind === 'conflict') {
        conflicts.set(action.gateway, [...(conflicts.get(action.gateway) ?? []), outcome.message]);
      } else stale = true;
    }
    for (const c of diff.conflicts)
      log.warn({ gateway: c.gateway, object: c.key, error: c.message }, 'waypoint object not ours');

    for (const { gw, raw } of gateways) {
      const key = `${gw.namespace}/${gw.name}`;
      const next = waypointStatus(
        gw,
        {
          deployment: current.get(`Deployment/${gw.namespace}/${gw.name}`),
          service: current.get(`Service/${gw.namespace}/${gw.name}`),
          rejected: desired.rejected.get(key),
          conflicts: conflicts.get(key),
        },
        { clusterDomain: options.clusterDomain, nowMs: clock.nowMs() },
      );
      if (!statusChanged(gw, next)) continue;
      guard();
      const got = await rest.send(HttpMethod.PUT, `${gatewayPath(gw)}/status`, { ...raw, status: next });
      if (got.status === 409 || got.status === 404) {
        stale = true; // changed or deleted meanwhile: the watch brings the news
        continue;
      }
      if (got.status !== 200) throw httpError(`update the status of Gateway ${key}`, got, 'gateways/status');
      writes++;
      const conds = (next.conditions as KubeJson[]).map((c) => `${str(c.type)}=${str(c.status)}`).join(' ');
      log.info(
        { gateway: key, conditions: conds, addresses: (next.addresses as KubeJson[]).map((a) => a.value) },
        'waypoint Gateway status updated',
      );
    }
    if (options.gatewayTemplate !== undefined)
      stale =
        (await reconcileIngress(guard, rawGateways, ingress, current, desired.rejected, conflicts)) || stale;
    return stale;
  };

  /**
   * The status of ingress Gateways (their objects as `current` holds them) and of the HTTPRoutes
   * attached to them; true when a write was refused as stale.
   */
  const reconcileIngress = async (
    guard: () => void,
    rawGateways: readonly KubeJson[],
    ingress: readonly { gw: IngressGateway; raw: KubeJson }[],
    current: ReadonlyMap<string, KubeJson>,
    rejected: ReadonlyMap<string, readonly string[]>,
    conflicts: ReadonlyMap<string, string[]>,
  ): Promise<boolean> => {
    const list = async (path: string, kind: string, apiVersion: string): Promise<KubeJson[]> => {
      const got = await rest.send(HttpMethod.GET, path);
      if (got.status === 404) return []; // the kind is not served (its CRD is not installed)
      if (got.status !== 200) throw httpError(`list ${kind}s`, got, `${kind.toLowerCase()}s`);
      return items(got.body, kind, apiVersion);
    };
    const listSecretNames = async (): Promise<KubeJson[] | undefined> => {
      const got = await rest.send(HttpMethod.GET, INGRESS_INPUTS.secrets);
      if (got.status !== 200) return undefined;
      // Only the names are kept: certificates and keys stay out of the reconciler's memory.
      return items(got.body, 'Secret', 'v1').map((o) => ({ metadata: metadataOf(o) }));
    };
    // The class itself: Accepted, as the implementation that handles it.
    for (const raw of await list(
      INGRESS_INPUTS.gatewayClasses,
      'GatewayClass',
      'gateway.networking.k8s.io/v1',
    )) {
      const next = gatewayClassStatus(raw, clock.nowMs());
      const old = isObject(raw.status) ? raw.status : {};
      if (next === undefined || canonicalJson(next) === canonicalJson(old)) continue;
      guard();
      const name = str(metadataOf(raw).name);
      const got = await rest.send(HttpMethod.PUT, `${INGRESS_INPUTS.gatewayClasses}/${enc(name)}/status`, {
        ...raw,
        status: next,
      });
      if (got.status === 200) {
        writes++;
        log.info({ gatewayClass: name }, 'GatewayClass accepted');
      } else if (got.status !== 409 && got.status !== 404)
        throw httpError(`update the status of GatewayClass ${name}`, got, 'gatewayclasses/status');
    }
    const httpRoutes = await list(HTTPROUTES, 'HTTPRoute', 'gateway.networking.k8s.io/v1');
    if (ingress.length === 0 && httpRoutes.length === 0) return false;
    const status = translateGatewayApiStatus(
      {
        gateways: rawGateways,
        httpRoutes,
        namespaces: await list(INGRESS_INPUTS.namespaces, 'Namespace', 'v1'),
        services: await list(INGRESS_INPUTS.services, 'Service', 'v1'),
        referenceGrants: await list(
          INGRESS_INPUTS.referenceGrants,
          'ReferenceGrant',
          'gateway.networking.k8s.io/v1beta1',
        ),
        // For ResolvedRefs (InvalidCertificateRef); without the right to list them, not checked.
        secrets: await listSecretNames(),
      },
      options.clusterDomain,
    );
    let stale = false;
    const put = async (path: string, body: KubeJson, what: string, resource: string) => {
      guard();
      const got = await rest.send(HttpMethod.PUT, path, body);
      if (got.status === 409 || got.status === 404) {
        stale = true; // changed or deleted meanwhile: the watch brings the news
        return false;
      }
      if (got.status !== 200) throw httpError(`update the status of ${what}`, got, resource);
      writes++;
      return true;
    };
    for (const { gw, raw } of ingress) {
      const key = `${gw.namespace}/${gw.name}`;
      const name = gatewayApiDeploymentName(gw.name);
      const next = ingressGatewayStatus(
        gw,
        {
          deployment: current.get(`Deployment/${gw.namespace}/${name}`),
          service: current.get(`Service/${gw.namespace}/${name}`),
          rejected: rejected.get(key),
          conflicts: conflicts.get(key),
        },
        status.gateways.get(key),
        { clusterDomain: options.clusterDomain, nowMs: clock.nowMs() },
      );
      if (!statusChanged(gw, next)) continue;
      if (
        await put(`${gatewayPath(gw)}/status`, { ...raw, status: next }, `Gateway ${key}`, 'gateways/status')
      ) {
        const conds = (next.conditions as KubeJson[]).map((c) => `${str(c.type)}=${str(c.status)}`).join(' ');
        log.info({ gateway: key, conditions: conds }, 'ingress Gateway status updated');
      }
    }
    for (const raw of httpRoutes) {
      const meta = metadataOf(raw);
      const key = `${str(meta.namespace)}/${str(meta.name)}`;
      const parents = status.routes.get(key) ?? [];
      const old = isObject(raw.status) ? raw.status : {};
      const next = routeStatus(raw, parents, clock.nowMs());
      if (canonicalJson(next) === canonicalJson(old)) continue;
      const path = `/apis/gateway.networking.k8s.io/v1/namespaces/${enc(str(meta.namespace))}/httproutes/${enc(str(meta.name))}/status`;
      if (await put(path, { ...raw, status: next }, `HTTPRoute ${key}`, 'httproutes/status'))
        log.info({ route: key, parents: parents.length }, 'HTTPRoute status updated');
    }
    return stale;
  };

  type Outcome =
    | { kind: 'done'; object: KubeJson | undefined }
    | { kind: 'conflict'; message: string }
    | { kind: 'stale' };

  const apply = async (action: ReconcileAction): Promise<Outcome> => {
    const obj = action.object;
    const kind = obj.kind as OwnedKind;
    const meta = metadataOf(obj);
    const ns = str(meta.namespace);
    const name = str(meta.name);
    const path = `${COLLECTIONS[kind].ns(ns)}/${enc(name)}`;
    const what = { gateway: action.gateway, object: `${kind} ${ns}/${name}` };
    if (action.op === 'create') {
      const got = await rest.send(HttpMethod.POST, COLLECTIONS[kind].ns(ns), obj);
      if (got.status === 409) {
        // Not in our (labelled) list, yet there: someone else's object of that name.
        const message = `${kind} ${ns}/${name} exists and is not managed by this controller: delete or rename it`;
        log.warn({ ...what, error: message }, 'waypoint object not ours');
        return { kind: 'conflict', message };
      }
      if (got.status !== 201 && got.status !== 200)
        throw httpError(`create ${kind} ${ns}/${name}`, got, `${kind.toLowerCase()}s`);
      log.info(what, 'waypoint object created');
      return { kind: 'done', object: got.body };
    }
    if (action.op === 'replace') {
      const got = await rest.send(HttpMethod.PUT, path, obj);
      if (got.status === 409 || got.status === 404) return { kind: 'stale' };
      if (got.status !== 200) throw httpError(`replace ${kind} ${ns}/${name}`, got, `${kind.toLowerCase()}s`);
      log.info(what, 'waypoint object replaced');
      return { kind: 'done', object: got.body };
    }
    // Only this very object (its uid): never one recreated under the same name meanwhile.
    const got = await rest.send(HttpMethod.DELETE, path, {
      apiVersion: 'v1',
      kind: 'DeleteOptions',
      propagationPolicy: 'Background',
      preconditions: { uid: str(meta.uid) },
    });
    if (got.status === 404) return { kind: 'done', object: undefined };
    if (got.status === 409) return { kind: 'stale' };
    if (got.status !== 200 && got.status !== 202)
      throw httpError(`delete ${kind} ${ns}/${name}`, got, `${kind.toLowerCase()}s`);
    log.info(what, 'waypoint object deleted');
    return { kind: 'done', object: undefined };
  };

  loop();

  return {
    isLeader: () => leading,
    writes: () => writes,
    async close({ release = true } = {}) {
      if (closed) return;
      const wasLeading = leading;
      stopLeading('closing');
      closed = true;
      cancelLeaseTimer?.();
      await leaseTick;
      await passRunning;
      if (!release || !wasLeading) return;
      try {
        const got = await rest.send(HttpMethod.GET, leasePath, undefined, lease.renewIntervalMs);
        const spec =
          got.status === 200 ? releasedLease(got.body?.spec as LeaseSpec, lease, clock.nowMs()) : undefined;
        if (!spec) return;
        const body = { ...got.body, spec };
        const put = await rest.send(HttpMethod.PUT, leasePath, body, lease.renewIntervalMs);
        if (put.status === 200) log.info({ identity: lease.identity }, 'leader election: released the Lease');
      } catch (err) {
        log.warn(
          { error: describeError(err) },
          'leader election: could not release the Lease; it expires instead',
        );
      }
    },
  };
}

/** Thrown inside a pass whose leadership ended: it stops without another attempt. */
class NotLeading extends Error {}

interface Reply {
  readonly status: number;
  readonly body: KubeJson | undefined;
  readonly text: string;
}

/** Requests as the library makes them, answering the status rather than throwing on one. */
class Rest {
  private readonly http = new IsomorphicFetchHttpLibrary();
  private readonly server: string;
  private readonly kc: KubeConfig;

  constructor(kc: KubeConfig) {
    this.kc = kc;
    this.server = kc.getCurrentCluster()?.server ?? '';
  }

  async send(
    method: HttpMethod,
    path: string,
    body?: unknown,
    timeoutMs = REQUEST_TIMEOUT_MS,
  ): Promise<Reply> {
    const ctx = new RequestContext(`${this.server}${path}`, method);
    ctx.setHeaderParam('Accept', 'application/json');
    if (body !== undefined) {
      ctx.setHeaderParam('Content-Type', 'application/json');
      ctx.setBody(JSON.stringify(body));
    }
    ctx.setSignal(AbortSignal.timeout(timeoutMs));
    await this.kc.applySecurityAuthentication(ctx);
    try {
      const rsp = await this.http.send(ctx).toPromise();
      const text = await rsp.body.text();
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      return { status: rsp.httpStatusCode, body: isObject(parsed) ? parsed : undefined, text };
    } catch (err) {
      throw new AmbitError(
        ErrorCode.ConfigRead,
        `${method} ${path}: cannot reach the API server ${this.server}`,
        {
          cause: err,
        },
      );
    }
  }
}

function httpError(what: string, reply: Reply, resource: string): AmbitError {
  const message = typeof reply.body?.message === 'string' ? reply.body.message : reply.text.slice(0, 200);
  return new AmbitError(
    ErrorCode.ConfigRead,
    `cannot ${what}: HTTP ${reply.status}: ${message}`,
    reply.status === 401 || reply.status === 403
      ? { hint: `may the controller's service account do this with ${resource} (daemonset/ambit/rbac.yaml)?` }
      : {},
  );
}

/** A list's items with the kind and apiVersion list items lack. */
function items(list: KubeJson | undefined, kind: string, apiVersion: string): KubeJson[] {
  const raw = Array.isArray(list?.items) ? list.items : [];
  return raw.filter(isObject).map((o) => ({ ...o, apiVersion, kind }));
}

function gatewayPath(gw: WaypointGateway): string {
  return `/apis/gateway.networking.k8s.io/v1/namespaces/${enc(gw.namespace)}/gateways/${enc(gw.name)}`;
}

function enc(s: string): string {
  return encodeURIComponent(s);
}

function isTimeout(err: unknown): boolean {
  return err instanceof Error && err.name === 'TimeoutError';
}
