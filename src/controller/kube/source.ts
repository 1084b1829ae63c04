/**
 * The cluster source of Kubernetes objects: one `@kubernetes/client-node` informer (list + watch)
 * per kind the controller reads, merged into one KubeSnapshot after every change. This is the I/O
 * edge and the only importer of the client library (DESIGN.md §6); decoding is kube-yaml.ts's, so
 * a cluster and a YAML directory give the same objects and the same problems.
 *
 * The informers keep the raw JSON the API server sent, less `metadata.managedFields` (server-side
 * apply bookkeeping, often half of a Pod's JSON, never read; istiod drops it too); each object is
 * decoded once per version (cached by object identity, which the informer replaces on every change).
 */
import { createHash } from 'node:crypto';
import {
  HttpMethod,
  IsomorphicFetchHttpLibrary,
  KubeConfig,
  makeInformer,
  RequestContext,
  type Informer,
  type KubernetesListObject,
  type KubernetesObject,
  type ObjectCache,
} from '@kubernetes/client-node';
import { AmbitError, describeError, ErrorCode } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import {
  buildSnapshot,
  decodeKubeObject,
  type DecodedObject,
  type DecodeResult,
  type KubeYamlProblem,
} from '../files/kube-yaml.ts';
import type { KubeSnapshot } from '../translate/kube-types.ts';

/** An object (or part of one) the source skipped or ignored, as the file source reports it minus the file. */
export interface KubeProblem {
  /**
   * `error`: the object was skipped; `warning`: it was kept, with a consequence the user must know
   * about; `info`: a kind we do not read was ignored.
   */
  readonly severity: 'error' | 'warning' | 'info';
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  /** Field path within the object, e.g. `spec.containers[0].ports`; empty for the whole object. */
  readonly path: string;
  readonly message: string;
}

export interface KubeConfigSource {
  /** A kubeconfig file; its current context is used. */
  readonly path?: string;
  /** The pod's service account (KUBERNETES_SERVICE_HOST/PORT and the mounted token and CA). */
  readonly inCluster?: boolean;
}

export interface WatchKubeOptions {
  /** Called once every kind has been listed, then after changes that alter the snapshot. */
  onSnapshot(snapshot: KubeSnapshot, problems: readonly KubeProblem[]): void;
  /** Longest a change waits before a snapshot, so that a burst of events gives one snapshot. */
  readonly debounceMs?: number;
  readonly log: Logger;
  /**
   * Every Secret (raw JSON, as listed), after the first list and after changes (gateway
   * certificates over SDS). Set: Secrets are watched too, without holding up the snapshots — a
   * controller that may not read them still serves everything else. Unset: they are not read.
   */
  readonly onSecrets?: (secrets: readonly unknown[]) => void;
}

export interface KubeWatch {
  /** Resolves after the first onSnapshot call; rejects if closed before it. */
  readonly ready: Promise<void>;
  /** Stops every informer; no onSnapshot call follows. */
  close(): void;
}

/** The kinds read (DESIGN.md §4), by cluster-wide collection path. */
const RESOURCES = [
  { kind: 'Namespace', apiVersion: 'v1', path: '/api/v1/namespaces' },
  { kind: 'Pod', apiVersion: 'v1', path: '/api/v1/pods' },
  { kind: 'Service', apiVersion: 'v1', path: '/api/v1/services' },
  { kind: 'ServiceAccount', apiVersion: 'v1', path: '/api/v1/serviceaccounts' },
  {
    kind: 'EndpointSlice',
    apiVersion: 'discovery.k8s.io/v1',
    path: '/apis/discovery.k8s.io/v1/endpointslices',
  },
  {
    kind: 'ServiceEntry',
    apiVersion: 'networking.istio.io/v1',
    path: '/apis/networking.istio.io/v1/serviceentries',
  },
  {
    kind: 'VirtualService',
    apiVersion: 'networking.istio.io/v1',
    path: '/apis/networking.istio.io/v1/virtualservices',
  },
  {
    kind: 'DestinationRule',
    apiVersion: 'networking.istio.io/v1',
    path: '/apis/networking.istio.io/v1/destinationrules',
  },
  {
    kind: 'AuthorizationPolicy',
    apiVersion: 'security.istio.io/v1',
    path: '/apis/security.istio.io/v1/authorizationpolicies',
  },
  {
    kind: 'PeerAuthentication',
    apiVersion: 'security.istio.io/v1',
    path: '/apis/security.istio.io/v1/peerauthentications',
  },
  {
    // Istio's own Gateway (ingress and egress gateways); 404 without Istio's CRDs, read as empty.
    kind: 'Gateway',
    apiVersion: 'networking.istio.io/v1',
    path: '/apis/networking.istio.io/v1/gateways',
  },
  {
    // Without the Gateway API CRDs this is 404, read as empty (see listRaw).
    kind: 'Gateway',
    apiVersion: 'gateway.networking.k8s.io/v1',
    path: '/apis/gateway.networking.k8s.io/v1/gateways',
  },
  {
    // Cluster-scoped; their `istio.io/waypoint-for` label applies to the waypoints of the class.
    // 404 without the Gateway API CRDs, as above.
    kind: 'GatewayClass',
    apiVersion: 'gateway.networking.k8s.io/v1',
    path: '/apis/gateway.networking.k8s.io/v1/gatewayclasses',
  },
  {
    // Likewise 404 without the Gateway API CRDs. v1 serves every stored version (v1beta1 too).
    kind: 'HTTPRoute',
    apiVersion: 'gateway.networking.k8s.io/v1',
    path: '/apis/gateway.networking.k8s.io/v1/httproutes',
  },
  {
    // Cross-namespace references of ingress Gateways and their routes; 404 without the CRD, as above.
    kind: 'ReferenceGrant',
    apiVersion: 'gateway.networking.k8s.io/v1beta1',
    path: '/apis/gateway.networking.k8s.io/v1beta1/referencegrants',
  },
] as const;
type Resource = (typeof RESOURCES)[number];

/** Gateway certificates (SDS): watched only when asked for (WatchKubeOptions.onSecrets); not in snapshots. */
const SECRETS = { kind: 'Secret', apiVersion: 'v1', path: '/api/v1/secrets' } as const;

interface ResourceWatch {
  readonly resource: Resource | typeof SECRETS;
  readonly informer: Informer<KubernetesObject> & ObjectCache<KubernetesObject>;
  /** The informer has listed at least once: its cache is worth a snapshot. */
  listed: boolean;
  /** The delay before the next restart after a failure. */
  delayMs: number;
  startedAt: number;
  retry: NodeJS.Timeout | undefined;
}

const DEFAULT_DEBOUNCE_MS = 100;
/** Restart delay of a failed informer: 1 s, doubling to 30 s (client-go's informer backoff). */
const RETRY_BASE_MS = 1000;
const RETRY_MAX_MS = 30_000;
/** An informer that ran this long before failing starts its backoff afresh. */
const RETRY_RESET_AFTER_MS = 60_000;
/** kube-apiserver ends a LIST after 60 s (its --request-timeout); wait no longer than that. */
const LIST_TIMEOUT_MS = 60_000;

/** Loads the kubeconfig; throws an AmbitError saying what to check when it cannot. */
export function loadKubeConfig(source: KubeConfigSource): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (source.inCluster) {
      if (!process.env.KUBERNETES_SERVICE_HOST || !process.env.KUBERNETES_SERVICE_PORT) {
        throw new Error('KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set');
      }
      kc.loadFromCluster();
    } else if (source.path !== undefined) kc.loadFromFile(source.path);
    else kc.loadFromDefault();
  } catch (err) {
    throw new AmbitError(ErrorCode.ConfigRead, `cannot load the Kubernetes client configuration`, {
      hint: source.inCluster
        ? 'is the controller running in a pod with a service account token mounted?'
        : `is ${source.path ?? '$KUBECONFIG or ~/.kube/config'} a readable kubeconfig?`,
      cause: err,
    });
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) {
    throw new AmbitError(ErrorCode.ConfigInvalid, 'the kubeconfig has no current cluster', {
      hint: 'set current-context to a context whose cluster exists',
    });
  }
  // The library refuses this on every request; say so once, up front, with the fix.
  if (cluster.server.startsWith('http:') && !cluster.skipTLSVerify) {
    throw new AmbitError(ErrorCode.ConfigInvalid, `the API server ${cluster.server} is plain HTTP`, {
      hint: 'use https, or set insecure-skip-tls-verify: true on the cluster (tests only)',
    });
  }
  return kc;
}

/**
 * Lists and watches every kind. Reads never block one another; a failed informer is restarted
 * alone after its backoff while the others keep serving, and the last snapshot stays in force.
 */
export function watchKube(kubeConfig: KubeConfigSource, options: WatchKubeOptions): KubeWatch {
  const kc = loadKubeConfig(kubeConfig);
  const log = options.log.child({ scope: 'kube' });
  const debounceMs = options.debounceMs ?? DEFAULT_DEBOUNCE_MS;
  const http = new IsomorphicFetchHttpLibrary();
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let last: string | undefined;
  let resolveReady!: () => void;
  let rejectReady!: (err: Error) => void;
  const ready = new Promise<void>((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  ready.catch(() => undefined); // closing before the first snapshot is not an unhandled rejection

  const onSecrets = options.onSecrets;
  let lastSecrets: string | undefined;
  const watched: readonly (Resource | typeof SECRETS)[] = onSecrets ? [...RESOURCES, SECRETS] : RESOURCES;
  const watches = watched.map((resource): ResourceWatch => {
    const informer = makeInformer<KubernetesObject>(kc, resource.path, async () => {
      const list = await listRaw(kc, http, resource, log);
      w.listed = true;
      w.delayMs = RETRY_BASE_MS;
      // A relist that changed nothing fires no informer events, and an empty first list fires
      // none at all: either way the snapshot must be (re)considered.
      schedule();
      return list;
    });
    const w: ResourceWatch = {
      resource,
      informer,
      listed: false,
      delayMs: RETRY_BASE_MS,
      startedAt: 0,
      retry: undefined,
    };
    // Handlers must not throw: the library swallows errors thrown from a watch event's callback.
    // The object handed to add/update is the one the informer caches.
    const trim = resource === SECRETS ? withoutUnusedSecretData : withoutManagedFields;
    informer.on('add', trim);
    informer.on('update', trim);
    informer.on('change', () => schedule());
    informer.on('connect', () => log.debug({ kind: resource.kind }, 'watch connecting'));
    informer.on('error', (err: unknown) => {
      // The library's informer stops after any error but a 410 or its own inactivity timeout;
      // aborting it on close() also lands here.
      if (closed || w.retry) return;
      if (Date.now() - w.startedAt >= RETRY_RESET_AFTER_MS) w.delayMs = RETRY_BASE_MS;
      log.warn(
        { kind: resource.kind, path: resource.path, error: describeError(err), retryInMs: w.delayMs },
        'list/watch failed; retrying',
      );
      w.retry = setTimeout(() => {
        w.retry = undefined;
        start(w);
      }, w.delayMs);
      w.delayMs = Math.min(w.delayMs * 2, RETRY_MAX_MS);
    });
    return w;
  });

  function start(w: ResourceWatch): void {
    if (closed) return;
    w.startedAt = Date.now();
    // start() resumes from the informer's last resourceVersion (relisting only on 410), so a
    // restart after an outage does not refetch everything.
    w.informer.start().catch((err: unknown) => {
      log.warn({ kind: w.resource.kind, error: describeError(err) }, 'informer did not start');
    });
  }

  // Not a trailing debounce: under constant churn (pods come and go all day) a snapshot must still
  // go out every debounceMs, so the first change starts the timer and later ones join it.
  function schedule(): void {
    if (closed || timer) return;
    timer = setTimeout(emit, debounceMs);
  }

  function emit(): void {
    timer = undefined;
    if (closed) return;
    const secrets = watches.find((w) => w.resource === SECRETS);
    if (onSecrets && secrets?.listed) {
      const items = secrets.informer.list();
      const digest = items.map((o) => `${o.metadata?.uid}@${o.metadata?.resourceVersion}`).join(',');
      if (digest !== lastSecrets) {
        lastSecrets = digest;
        onSecrets(items);
      }
    }
    const kinds: { resource: Resource; items: readonly KubernetesObject[] }[] = [];
    for (const w of watches) {
      if (w.resource === SECRETS) continue;
      if (!w.listed) return;
      kinds.push({ resource: w.resource as Resource, items: w.informer.list() });
    }
    const { snapshot, problems } = build(kinds);
    // Relists and restarts often change nothing; translation and pushes are not free. A digest,
    // not the text: at 10,000 pods the JSON is megabytes, kept until the next snapshot.
    const fingerprint = createHash('sha256')
      .update(JSON.stringify([snapshot, problems]))
      .digest('hex');
    if (fingerprint === last) return;
    last = fingerprint;
    options.onSnapshot(snapshot, problems);
    resolveReady();
  }

  for (const w of watches) start(w);

  return {
    ready,
    close() {
      if (closed) return;
      closed = true;
      if (timer) clearTimeout(timer);
      // stop() aborts the open watch. An informer waiting out its own reconnect delay still opens
      // one more watch afterwards (the library does not recheck), which lasts until the server
      // ends it or the library's 30 s inactivity timeout; nothing from it reaches onSnapshot.
      for (const w of watches) {
        if (w.retry) clearTimeout(w.retry);
        void w.informer.stop();
      }
      rejectReady(
        new AmbitError(ErrorCode.Shutdown, 'the Kubernetes source was closed before its first snapshot'),
      );
    },
  };
}

const decoded = new WeakMap<KubernetesObject, DecodeResult>();

function withoutManagedFields(obj: KubernetesObject): void {
  if (obj.metadata?.managedFields !== undefined) delete obj.metadata.managedFields;
}

/** Secret types that never hold a gateway certificate (istiod skips them too): their data is dropped. */
const UNUSED_SECRET_TYPES = ['helm.sh/release.v1', 'kubernetes.io/service-account-token'];

function withoutUnusedSecretData(obj: KubernetesObject): void {
  withoutManagedFields(obj);
  const secret = obj as KubernetesObject & { type?: unknown; data?: unknown };
  if (typeof secret.type === 'string' && UNUSED_SECRET_TYPES.includes(secret.type)) delete secret.data;
}

/** The informers' objects as one snapshot, in namespace/name order whatever the arrival order. */
function build(lists: readonly { resource: Resource; items: readonly KubernetesObject[] }[]): {
  snapshot: KubeSnapshot;
  problems: KubeProblem[];
} {
  const objects: DecodedObject[] = [];
  const problems: KubeProblem[] = [];
  for (const { resource, items } of lists) {
    for (const item of [...items].sort(byNamespaceAndName)) {
      let result = decoded.get(item);
      if (!result) {
        result = decodeKubeObject(item, resource.path);
        decoded.set(item, result);
      }
      objects.push(...result.objects);
      problems.push(...result.problems.map(withoutFile));
    }
  }
  const built = buildSnapshot(objects);
  return { snapshot: built.snapshot, problems: [...problems, ...built.problems.map(withoutFile)] };
}

function withoutFile(p: KubeYamlProblem): KubeProblem {
  return {
    severity: p.severity,
    kind: p.kind,
    namespace: p.namespace,
    name: p.name,
    path: p.path,
    message: p.message,
  };
}

function byNamespaceAndName(a: KubernetesObject, b: KubernetesObject): number {
  const ka = `${a.metadata?.namespace ?? ''}/${a.metadata?.name ?? ''}`;
  const kb = `${b.metadata?.namespace ?? ''}/${b.metadata?.name ?? ''}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/**
 * LIST through the library's own HTTP stack (auth, TLS, token refresh from the kubeconfig), but
 * keeping the JSON as sent. The typed API classes (CoreV1Api) would deserialize it into model
 * classes first, which throws on a malformed field (a non-list `ports` fails the whole list, so one
 * bad object would hide every pod) and silently reshapes others; watch events, by contrast, arrive
 * raw. Decoding both the same way, with every problem named, is kube-yaml.ts's job.
 */
async function listRaw(
  kc: KubeConfig,
  http: IsomorphicFetchHttpLibrary,
  resource: Resource | typeof SECRETS,
  log: Logger,
): Promise<KubernetesListObject<KubernetesObject>> {
  const server = kc.getCurrentCluster()?.server ?? '';
  const ctx = new RequestContext(`${server}${resource.path}`, HttpMethod.GET);
  ctx.setHeaderParam('Accept', 'application/json');
  ctx.setSignal(AbortSignal.timeout(LIST_TIMEOUT_MS));
  await kc.applySecurityAuthentication(ctx);
  const rsp = await http.send(ctx).toPromise();
  const text = await rsp.body.text();
  if (rsp.httpStatusCode === 404) {
    // The kind is not served (say, Istio's CRDs are not installed): nothing of it can exist, so
    // count it as empty rather than hold back every other kind. The watch then fails and the
    // backoff keeps retrying until the CRD appears.
    log.warn(
      { kind: resource.kind, path: resource.path },
      'kind not served by the API server (is its CRD installed?); treating it as empty',
    );
    return { apiVersion: resource.apiVersion, kind: `${resource.kind}List`, metadata: {}, items: [] };
  }
  if (rsp.httpStatusCode !== 200) {
    const forbidden = rsp.httpStatusCode === 401 || rsp.httpStatusCode === 403;
    throw new AmbitError(
      ErrorCode.ConfigRead,
      `list ${resource.path}: HTTP ${rsp.httpStatusCode}: ${statusMessage(text)}`,
      forbidden
        ? { hint: `may the controller's service account list and watch ${resource.kind} objects (RBAC)?` }
        : {},
    );
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    throw new AmbitError(ErrorCode.ConfigRead, `list ${resource.path}: the response is not JSON`, {
      cause: err,
    });
  }
  const list = (body ?? {}) as { metadata?: { resourceVersion?: unknown }; items?: unknown };
  if (!Array.isArray(list.items)) {
    throw new AmbitError(ErrorCode.ConfigRead, `list ${resource.path}: the response has no items list`);
  }
  const resourceVersion = list.metadata?.resourceVersion;
  return {
    apiVersion: resource.apiVersion,
    kind: `${resource.kind}List`,
    metadata: typeof resourceVersion === 'string' ? { resourceVersion } : {},
    // List items carry no apiVersion/kind of their own (watch events do); give them the list's so
    // the cache holds one shape. Non-objects and objects without metadata cannot be cached by
    // namespace/name; the decoder reports what is missing.
    items: list.items.map((item): KubernetesObject => {
      const obj =
        item !== null && typeof item === 'object' && !Array.isArray(item) ? (item as KubernetesObject) : {};
      const metadata = obj.metadata !== null && typeof obj.metadata === 'object' ? { ...obj.metadata } : {};
      delete metadata.managedFields;
      return { ...obj, apiVersion: resource.apiVersion, kind: resource.kind, metadata };
    }),
  };
}

/** The message of a `Status` body, or the start of whatever else came back. */
function statusMessage(text: string): string {
  try {
    const status = JSON.parse(text) as { message?: unknown };
    if (typeof status.message === 'string') return status.message;
  } catch {
    // not a Status
  }
  return text.slice(0, 200) || '(empty body)';
}
