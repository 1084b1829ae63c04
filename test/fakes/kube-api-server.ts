/**
 * A Kubernetes API server stand-in that speaks the real list/watch protocol over plain HTTP, so the
 * real `@kubernetes/client-node` informers are what the tests exercise (no real API server can run
 * on the test machines).
 *
 * What it implements, as kube-apiserver does:
 * - one global, monotonically increasing resourceVersion (etcd's revision), stamped on every write;
 * - LIST → `{apiVersion, kind: <Kind>List, metadata: {resourceVersion}, items}`, items without their
 *   own apiVersion/kind (the real server omits them too), in namespace/name order;
 * - WATCH (`watch=true|1`) → newline-delimited `{type, object}` events after `resourceVersion`
 *   (none or "0": synthetic ADDED events for what exists, then changes), from a bounded history
 *   per resource; an older resourceVersion gets an `ERROR` event carrying a `Status` with
 *   `code: 410, reason: "Expired"` and the stream ends, which is what makes informers relist;
 * - BOOKMARK events every `bookmarkIntervalMs` on watches that asked (`allowWatchBookmarks`);
 * - `timeoutSeconds` on watches; an optional bearer-token check (401 `Status` otherwise);
 * - `POST /apis/authentication.k8s.io/v1/tokenreviews` answered from `tokenReviews`, and
 *   `POST /apis/authorization.k8s.io/v1/subjectaccessreviews` from `accessRules` (allowed only
 *   when a rule grants the user the verb on the resource in the namespace).
 *
 * - writes over HTTP, as `kubectl` and the CLI make them: POST (create; 409 AlreadyExists), PUT
 *   (replace; 409 Conflict on a stale `metadata.resourceVersion`), PATCH with
 *   `application/merge-patch+json` (RFC 7386) and DELETE, each answered with the object.
 * - a Service created over HTTP without a `spec.clusterIP` gets one from 10.96.0.0/16, as the
 *   API server's allocator gives it (the test hooks store what they are given);
 * - for the kinds with a status subresource ({@link STATUS_KINDS}: Gateway, Deployment): the
 *   `<name>/status` path, whose PUT and PATCH change only `status`, while writes to the object itself
 *   keep the stored `status`; and `metadata.generation`, 1 at creation and raised by every write that
 *   changes anything but metadata and status (what a controller's `observedGeneration` refers to).
 *   Test hooks ({@link FakeKubeApiServer.update}) may still set `status` directly, as a kubelet or a
 *   Deployment controller would.
 *
 * Not implemented: label/field selectors, pagination (`limit` is ignored: everything comes in one
 * page, which clients must accept), strategic-merge, JSON and server-side-apply patches (415).
 */
import { writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

type Json = Record<string, unknown>;

interface ResourceDef {
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  readonly namespaced: boolean;
}

/** The resources the fake serves, by kind. */
export const FAKE_RESOURCES = {
  Namespace: { group: '', version: 'v1', plural: 'namespaces', namespaced: false },
  Pod: { group: '', version: 'v1', plural: 'pods', namespaced: true },
  Service: { group: '', version: 'v1', plural: 'services', namespaced: true },
  ServiceAccount: { group: '', version: 'v1', plural: 'serviceaccounts', namespaced: true },
  EndpointSlice: { group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices', namespaced: true },
  ServiceEntry: { group: 'networking.istio.io', version: 'v1', plural: 'serviceentries', namespaced: true },
  VirtualService: {
    group: 'networking.istio.io',
    version: 'v1',
    plural: 'virtualservices',
    namespaced: true,
  },
  DestinationRule: {
    group: 'networking.istio.io',
    version: 'v1',
    plural: 'destinationrules',
    namespaced: true,
  },
  AuthorizationPolicy: {
    group: 'security.istio.io',
    version: 'v1',
    plural: 'authorizationpolicies',
    namespaced: true,
  },
  PeerAuthentication: {
    group: 'security.istio.io',
    version: 'v1',
    plural: 'peerauthentications',
    namespaced: true,
  },
  Gateway: { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'gateways', namespaced: true },
  // Watched for the waypoint-for label; the ingress reconciler also reports on the classes' status.
  GatewayClass: {
    group: 'gateway.networking.k8s.io',
    version: 'v1',
    plural: 'gatewayclasses',
    namespaced: false,
  },
  HTTPRoute: { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'httproutes', namespaced: true },
  ReferenceGrant: {
    group: 'gateway.networking.k8s.io',
    version: 'v1beta1',
    plural: 'referencegrants',
    namespaced: true,
  },
} as const satisfies Record<string, ResourceDef>;
/**
 * Further kinds the fake serves: what the waypoint reconciler stamps out and its leader election's
 * Lease. Apart from {@link FAKE_RESOURCES} (the kinds the controller's source watches), which tests
 * iterate as "every kind watched".
 */
export const FAKE_WRITTEN_RESOURCES = {
  Deployment: { group: 'apps', version: 'v1', plural: 'deployments', namespaced: true },
  ConfigMap: { group: '', version: 'v1', plural: 'configmaps', namespaced: true },
  Lease: { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', namespaced: true },
  // Gateway certificates: watched by the source only when SDS asks (WatchKubeOptions.onSecrets).
  Secret: { group: '', version: 'v1', plural: 'secrets', namespaced: true },
} as const satisfies Record<string, ResourceDef>;
const ALL_RESOURCES = { ...FAKE_RESOURCES, ...FAKE_WRITTEN_RESOURCES };
export type FakeKind = keyof typeof ALL_RESOURCES;
const KINDS = Object.keys(ALL_RESOURCES) as FakeKind[];
/** Kinds served with a `/status` subresource and a `metadata.generation`, as kube-apiserver does. */
export const STATUS_KINDS: ReadonlySet<FakeKind> = new Set<FakeKind>([
  'Gateway',
  'GatewayClass',
  'HTTPRoute',
  'Deployment',
]);

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  /** A LIST or a WATCH of one of the served resources (false for anything else). */
  readonly verb: 'list' | 'watch' | 'get' | 'create' | 'update' | 'patch' | 'delete' | 'other';
  readonly kind: FakeKind | undefined;
  /** The watch was refused with an ERROR 410 Expired event. */
  readonly expired: boolean;
}

export interface TokenReviewUser {
  readonly username: string;
  readonly uid?: string;
  readonly groups: readonly string[];
  readonly extra?: Readonly<Record<string, readonly string[]>>;
}

export interface FakeKubeApiServerOptions {
  /** When set, every request must carry `Authorization: Bearer <token>`. */
  readonly token?: string;
  /** Events kept per resource for watch resumption; older resourceVersions get 410. */
  readonly maxHistoryPerKind?: number;
  /** Period of BOOKMARK events on watches that allow them; 0 disables the timer. */
  readonly bookmarkIntervalMs?: number;
  /** Kinds answered with 404, as when a CRD is not installed. */
  readonly unserved?: readonly FakeKind[];
}

interface HistoryEvent {
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED';
  readonly rv: number;
  readonly object: Json;
}

interface OpenWatch {
  readonly kind: FakeKind;
  readonly namespace: string | undefined;
  readonly bookmarks: boolean;
  readonly res: ServerResponse;
  timer: NodeJS.Timeout | undefined;
}

export class FakeKubeApiServer {
  /** Every request received, in order. */
  readonly requests: RecordedRequest[] = [];
  /** TokenReview answers, by token. Unknown tokens are reported unauthenticated. */
  readonly tokenReviews = new Map<string, TokenReviewUser>();
  /** RBAC as SubjectAccessReviews see it: `<user> <verb> <namespace>/<resource>` entries allowed. */
  readonly accessRules = new Set<string>();
  readonly token: string | undefined;
  private readonly maxHistory: number;
  private readonly unserved: Set<FakeKind>;
  private readonly objects = new Map<FakeKind, Map<string, Json>>(KINDS.map((k) => [k, new Map()]));
  private readonly history = new Map<FakeKind, HistoryEvent[]>(KINDS.map((k) => [k, []]));
  /** Per kind: every event with a resourceVersion above this is still in `history`. */
  private readonly retainedAfter = new Map<FakeKind, number>(KINDS.map((k) => [k, 0]));
  private readonly watches = new Set<OpenWatch>();
  private rv = 1;
  private uid = 0;
  private serviceIps = 0;
  private server: Server;
  private bookmarkTimer: NodeJS.Timeout | undefined;
  private readonly bookmarkIntervalMs: number;
  private portNumber = 0;

  private constructor(options: FakeKubeApiServerOptions) {
    this.token = options.token;
    this.maxHistory = options.maxHistoryPerKind ?? 1000;
    this.unserved = new Set(options.unserved ?? []);
    this.bookmarkIntervalMs = options.bookmarkIntervalMs ?? 0;
    this.server = this.createHttpServer();
  }

  static async start(options: FakeKubeApiServerOptions = {}): Promise<FakeKubeApiServer> {
    const fake = new FakeKubeApiServer(options);
    await fake.listen(0);
    return fake;
  }

  get port(): number {
    return this.portNumber;
  }

  get url(): string {
    return `http://127.0.0.1:${this.portNumber}`;
  }

  /** The current (global) resourceVersion. */
  get resourceVersion(): string {
    return String(this.rv);
  }

  /** Watches currently open, optionally of one kind. */
  openWatches(kind?: FakeKind): number {
    return [...this.watches].filter((w) => kind === undefined || w.kind === kind).length;
  }

  /** Writes a kubeconfig pointing at this server with a token user; returns its path. */
  async writeKubeconfig(path: string, token = this.token ?? 'test-token'): Promise<string> {
    const config = {
      apiVersion: 'v1',
      kind: 'Config',
      // client-node refuses a plain-HTTP server unless TLS verification is explicitly off.
      clusters: [{ name: 'fake', cluster: { server: this.url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'fake', user: { token } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'fake' } }],
      'current-context': 'fake',
    };
    await writeFile(path, JSON.stringify(config, null, 2) + '\n'); // JSON is YAML
    return path;
  }

  // ---- test hooks: writes ----

  /** Creates an object (it must not exist); returns the stored copy with its resourceVersion. */
  add(kind: FakeKind, obj: Json): Json {
    const stored = this.prepare(kind, obj);
    const key = keyOf(stored);
    if (this.objects.get(kind)!.has(key)) throw new Error(`${kind} ${key} already exists`);
    const meta = stored.metadata as Json;
    meta.uid ??= `uid-${++this.uid}`;
    meta.creationTimestamp ??= new Date().toISOString();
    if (STATUS_KINDS.has(kind)) meta.generation = 1;
    return this.write(kind, 'ADDED', stored);
  }

  /** Replaces an object (it must exist). */
  update(kind: FakeKind, obj: Json): Json {
    const stored = this.prepare(kind, obj);
    const old = this.objects.get(kind)!.get(keyOf(stored));
    if (!old) throw new Error(`${kind} ${keyOf(stored)} does not exist`);
    const meta = stored.metadata as Json;
    const oldMeta = old.metadata as Json;
    meta.uid = oldMeta.uid;
    meta.creationTimestamp = oldMeta.creationTimestamp;
    if (STATUS_KINDS.has(kind)) {
      const generation = typeof oldMeta.generation === 'number' ? oldMeta.generation : 1;
      meta.generation = specOf(stored) === specOf(old) ? generation : generation + 1;
    }
    return this.write(kind, 'MODIFIED', stored);
  }

  /** Deletes an object named by `obj.metadata` (namespace defaults to `default` for namespaced kinds). */
  delete(kind: FakeKind, obj: { metadata: { name: string; namespace?: string } }): void {
    const key = keyOf(this.prepare(kind, obj));
    const old = this.objects.get(kind)!.get(key);
    if (!old) throw new Error(`${kind} ${key} does not exist`);
    this.objects.get(kind)!.delete(key);
    // The DELETED event carries the object's last state at the deletion's resourceVersion.
    const gone = clone(old);
    (gone.metadata as Json).resourceVersion = String(++this.rv);
    this.record(kind, 'DELETED', gone);
  }

  /** A copy of a stored object, or undefined. */
  get(kind: FakeKind, name: string, namespace?: string): Json | undefined {
    const ns = ALL_RESOURCES[kind].namespaced ? (namespace ?? 'default') : '';
    const obj = this.objects.get(kind)!.get(`${ns}/${name}`);
    return obj && clone(obj);
  }

  // ---- test hooks: faults ----

  /**
   * Forgets all watch history, as etcd compaction does, and advances the resourceVersion (as any
   * write elsewhere in the cluster would), so every watch resumed from an older resourceVersion
   * gets 410 Expired.
   */
  compactHistory(): void {
    this.rv++;
    for (const kind of KINDS) {
      this.history.set(kind, []);
      this.retainedAfter.set(kind, this.rv);
    }
  }

  /** Ends every open watch cleanly (the API server's own watch timeout, a load balancer's idle cut). */
  dropWatches(): void {
    for (const w of this.watches) this.endWatch(w);
  }

  /** Sends a BOOKMARK now on every open watch that allows them. */
  sendBookmarks(): void {
    for (const w of this.watches) if (w.bookmarks) this.bookmark(w);
  }

  /** Stops listening and cuts every connection (a crash); objects and history survive. */
  async stop(): Promise<void> {
    if (this.bookmarkTimer) clearInterval(this.bookmarkTimer);
    this.bookmarkTimer = undefined;
    for (const w of this.watches) if (w.timer) clearTimeout(w.timer);
    this.watches.clear();
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    this.server.closeAllConnections();
    await closed;
  }

  /** Listens again on the same port after `stop()`. */
  async restart(): Promise<void> {
    this.server = this.createHttpServer();
    await this.listen(this.portNumber);
  }

  async close(): Promise<void> {
    if (this.server.listening) await this.stop();
  }

  // ---- storage ----

  /** A deep copy with apiVersion, kind and a defaulted namespace filled in. */
  private prepare(kind: FakeKind, obj: Json): Json {
    const def = ALL_RESOURCES[kind];
    const copy = clone(obj);
    const meta = (copy.metadata && typeof copy.metadata === 'object' ? copy.metadata : {}) as Json;
    copy.metadata = meta;
    copy.apiVersion = apiVersionOf(def);
    copy.kind = kind;
    if (def.namespaced) meta.namespace ??= 'default';
    else delete meta.namespace;
    if (typeof meta.name !== 'string' || meta.name === '') throw new Error(`${kind} needs metadata.name`);
    return copy;
  }

  private write(kind: FakeKind, type: 'ADDED' | 'MODIFIED', stored: Json): Json {
    (stored.metadata as Json).resourceVersion = String(++this.rv);
    this.objects.get(kind)!.set(keyOf(stored), stored);
    this.record(kind, type, stored);
    return clone(stored);
  }

  private record(kind: FakeKind, type: HistoryEvent['type'], object: Json): void {
    const event: HistoryEvent = { type, rv: this.rv, object: clone(object) };
    const history = this.history.get(kind)!;
    history.push(event);
    while (history.length > this.maxHistory) this.retainedAfter.set(kind, history.shift()!.rv);
    for (const w of this.watches) if (w.kind === kind) this.send(w, event);
  }

  // ---- HTTP ----

  private createHttpServer(): Server {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) status(res, 500, 'InternalError', String(err));
        else res.destroy();
      });
    });
    // Long-lived watches must not be cut by Node's own request timeouts.
    server.requestTimeout = 0;
    server.keepAliveTimeout = 60_000;
    return server;
  }

  private async listen(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.portNumber = (this.server.address() as AddressInfo).port;
    if (this.bookmarkIntervalMs > 0) {
      this.bookmarkTimer = setInterval(() => this.sendBookmarks(), this.bookmarkIntervalMs);
      this.bookmarkTimer.unref();
    }
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const query = Object.fromEntries(url.searchParams);
    const route = parsePath(url.pathname);
    const method = req.method ?? 'GET';
    const watching = query.watch === 'true' || query.watch === '1';
    const verb: RecordedRequest['verb'] =
      route?.kind === undefined
        ? (route?.tokenReview || route?.accessReview) && method === 'POST'
          ? 'create'
          : 'other'
        : (WRITE_VERBS[method] ?? (route.name !== undefined ? 'get' : watching ? 'watch' : 'list'));
    const entry = { method, path: url.pathname, query, verb, kind: route?.kind, expired: false };
    this.requests.push(entry);

    if (this.token !== undefined && req.headers.authorization !== `Bearer ${this.token}`) {
      return status(res, 401, 'Unauthorized', 'Unauthorized');
    }
    if (route?.tokenReview && method === 'POST') return this.tokenReview(req, res);
    if (route?.accessReview && method === 'POST') return this.accessReview(req, res);
    if (route?.kind === undefined || this.unserved.has(route.kind)) {
      return status(res, 404, 'NotFound', `the server could not find the requested resource`);
    }
    if (route.subresource === 'status')
      return this.statusRequest(req, res, method, { ...route, kind: route.kind });
    if (method !== 'GET') return this.writeRequest(req, res, method, { ...route, kind: route.kind });
    const { kind, namespace, name } = route;
    if (name !== undefined) {
      const obj = this.objects.get(kind)!.get(`${namespace ?? ''}/${name}`);
      if (!obj) return status(res, 404, 'NotFound', `${ALL_RESOURCES[kind].plural} "${name}" not found`);
      return json(res, 200, obj);
    }
    if (!watching) return this.list(res, kind, namespace);
    const expired = this.watch(req, res, kind, namespace, query);
    if (expired) this.requests[this.requests.indexOf(entry)] = { ...entry, expired: true };
  }

  /** POST to a collection; PUT, PATCH (JSON merge patch) and DELETE of one object. */
  private async writeRequest(
    req: IncomingMessage,
    res: ServerResponse,
    method: string,
    route: Route & { kind: FakeKind },
  ): Promise<void> {
    const { kind, namespace, name } = route;
    const def = ALL_RESOURCES[kind];
    const plural = def.plural;
    const onObject = name !== undefined;
    if (method === 'POST' ? onObject : !onObject || !['PUT', 'PATCH', 'DELETE'].includes(method)) {
      return status(res, 405, 'MethodNotAllowed', `${method} is not supported here`);
    }
    const existing = onObject ? this.objects.get(kind)!.get(`${namespace ?? ''}/${name}`) : undefined;
    if (onObject && !existing) return status(res, 404, 'NotFound', `${plural} "${name}" not found`);
    if (method === 'DELETE') {
      this.delete(kind, existing as { metadata: { name: string; namespace?: string } });
      return json(res, 200, existing);
    }
    let body: Json;
    try {
      body = await readJson(req);
    } catch {
      return status(res, 400, 'BadRequest', 'request body is not a JSON object');
    }
    if (method === 'PATCH') {
      const type = req.headers['content-type'] ?? '';
      if (!type.startsWith('application/merge-patch+json')) {
        return status(res, 415, 'UnsupportedMediaType', `the fake takes only merge patches, not ${type}`);
      }
      const patched = mergePatch(existing!, body) as Json;
      return json(res, 200, this.update(kind, keepStatus(kind, patched, existing!)));
    }
    const meta = (body.metadata && typeof body.metadata === 'object' ? body.metadata : {}) as Json;
    // The path names the namespace (and the object); the body must agree, as kube-apiserver checks.
    if (def.namespaced && meta.namespace !== undefined && meta.namespace !== namespace) {
      return status(res, 400, 'BadRequest', `the namespace of the object does not match the request's`);
    }
    if (method === 'PUT') {
      if (meta.name !== name) return status(res, 400, 'BadRequest', 'the name of the object does not match');
      const want = meta.resourceVersion;
      const have = (existing!.metadata as Json).resourceVersion;
      if (want !== undefined && want !== have) {
        return staleWrite(res);
      }
      return json(
        res,
        200,
        this.update(kind, keepStatus(kind, { ...body, metadata: { ...meta, namespace } }, existing!)),
      );
    }
    if (typeof meta.name !== 'string' || meta.name === '') {
      return status(res, 422, 'Invalid', `${kind} "" is invalid: metadata.name: Required value`);
    }
    if (this.objects.get(kind)!.has(`${namespace ?? ''}/${meta.name}`)) {
      return status(res, 409, 'AlreadyExists', `${plural} "${meta.name}" already exists`);
    }
    return json(
      res,
      201,
      this.add(
        kind,
        withClusterIp(
          kind,
          { ...body, metadata: { ...meta, ...(def.namespaced && { namespace }) } },
          ++this.serviceIps,
        ),
      ),
    );
  }

  /** GET, PUT and PATCH (merge) of `<object>/status`: only `status` changes, and not the generation. */
  private async statusRequest(
    req: IncomingMessage,
    res: ServerResponse,
    method: string,
    route: Route & { kind: FakeKind },
  ): Promise<void> {
    const { kind, namespace, name } = route;
    const plural = ALL_RESOURCES[kind].plural;
    if (!STATUS_KINDS.has(kind) || name === undefined) {
      return status(res, 404, 'NotFound', `the server could not find the requested resource`);
    }
    if (!['GET', 'PUT', 'PATCH'].includes(method)) {
      return status(res, 405, 'MethodNotAllowed', `${method} is not supported on /status`);
    }
    const existing = this.objects.get(kind)!.get(`${namespace ?? ''}/${name}`);
    if (!existing) return status(res, 404, 'NotFound', `${plural} "${name}" not found`);
    if (method === 'GET') return json(res, 200, existing);
    let body: Json;
    try {
      body = await readJson(req);
    } catch {
      return status(res, 400, 'BadRequest', 'request body is not a JSON object');
    }
    let next: unknown;
    if (method === 'PATCH') {
      const type = req.headers['content-type'] ?? '';
      if (!type.startsWith('application/merge-patch+json')) {
        return status(res, 415, 'UnsupportedMediaType', `the fake takes only merge patches, not ${type}`);
      }
      next = (mergePatch(existing, body) as Json).status;
    } else {
      const want = (body.metadata as Json | undefined)?.resourceVersion;
      if (want !== undefined && want !== (existing.metadata as Json).resourceVersion) {
        return staleWrite(res);
      }
      next = body.status;
    }
    const updated = clone(existing);
    if (next === undefined) delete updated.status;
    else updated.status = next;
    return json(res, 200, this.update(kind, updated));
  }

  private list(res: ServerResponse, kind: FakeKind, namespace: string | undefined): void {
    const def = ALL_RESOURCES[kind];
    const items = this.matching(kind, namespace).map((o) => {
      const { apiVersion: _a, kind: _k, ...rest } = o;
      return rest;
    });
    json(res, 200, {
      apiVersion: apiVersionOf(def),
      kind: `${kind}List`,
      metadata: { resourceVersion: String(this.rv) },
      items,
    });
  }

  /** Returns true when the watch was refused as expired. */
  private watch(
    req: IncomingMessage,
    res: ServerResponse,
    kind: FakeKind,
    namespace: string | undefined,
    query: Record<string, string>,
  ): boolean {
    const rvParam = query.resourceVersion ?? '';
    const from = rvParam === '' || rvParam === '0' ? undefined : Number(rvParam);
    if (from !== undefined && !Number.isSafeInteger(from)) {
      status(res, 400, 'BadRequest', `invalid resourceVersion "${rvParam}"`);
      return false;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-cache, private' });
    res.flushHeaders();
    const bookmarks = query.allowWatchBookmarks === 'true' || query.allowWatchBookmarks === '1';
    const w: OpenWatch = { kind, namespace, bookmarks, res, timer: undefined };
    const after = this.retainedAfter.get(kind)!;
    if (from !== undefined && from < after) {
      // What kube-apiserver sends for a compacted resourceVersion: 200, one ERROR event, end.
      const expired = {
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Failure',
        message: `too old resource version: ${from} (${after})`,
        reason: 'Expired',
        code: 410,
      };
      res.end(JSON.stringify({ type: 'ERROR', object: expired }) + '\n');
      return true;
    }
    if (from === undefined) {
      for (const o of this.matching(kind, namespace)) this.write1(w, { type: 'ADDED', object: o });
    } else {
      for (const e of this.history.get(kind)!) if (e.rv > from) this.send(w, e);
    }
    this.watches.add(w);
    const timeoutSeconds = Number(query.timeoutSeconds ?? '0');
    if (timeoutSeconds > 0) w.timer = setTimeout(() => this.endWatch(w), timeoutSeconds * 1000);
    req.on('close', () => {
      if (w.timer) clearTimeout(w.timer);
      this.watches.delete(w);
    });
    return false;
  }

  private endWatch(w: OpenWatch): void {
    if (w.timer) clearTimeout(w.timer);
    this.watches.delete(w);
    w.res.end();
  }

  private send(w: OpenWatch, e: HistoryEvent): void {
    const meta = e.object.metadata as Json;
    if (w.namespace !== undefined && meta.namespace !== w.namespace) return;
    this.write1(w, { type: e.type, object: e.object });
  }

  private bookmark(w: OpenWatch): void {
    const def = ALL_RESOURCES[w.kind];
    const object = {
      kind: w.kind,
      apiVersion: apiVersionOf(def),
      metadata: { resourceVersion: this.resourceVersion },
    };
    this.write1(w, { type: 'BOOKMARK', object });
  }

  private write1(w: OpenWatch, event: { type: string; object: Json }): void {
    if (!w.res.writableEnded) w.res.write(JSON.stringify(event) + '\n');
  }

  private matching(kind: FakeKind, namespace: string | undefined): Json[] {
    return [...this.objects.get(kind)!.entries()]
      .filter(([key]) => namespace === undefined || key.startsWith(`${namespace}/`))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, o]) => clone(o));
  }

  private async accessReview(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const spec = await reviewSpec(req);
    if (!spec) return status(res, 400, 'BadRequest', 'request body is not JSON');
    const attrs = (
      spec.resourceAttributes && typeof spec.resourceAttributes === 'object' ? spec.resourceAttributes : {}
    ) as Json;
    const str = (v: unknown) => (typeof v === 'string' ? v : '');
    const allowed = this.accessRules.has(
      `${str(spec.user)} ${str(attrs.verb)} ${str(attrs.namespace)}/${str(attrs.resource)}`,
    );
    json(res, 201, {
      apiVersion: 'authorization.k8s.io/v1',
      kind: 'SubjectAccessReview',
      metadata: { creationTimestamp: null },
      spec,
      status: allowed ? { allowed: true } : { allowed: false, reason: 'no RBAC rule allows it' },
    });
  }

  private async tokenReview(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const spec = await reviewSpec(req);
    if (!spec) return status(res, 400, 'BadRequest', 'request body is not JSON');
    const user = typeof spec.token === 'string' ? this.tokenReviews.get(spec.token) : undefined;
    const audiences = Array.isArray(spec.audiences) ? spec.audiences : [];
    json(res, 201, {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenReview',
      metadata: { creationTimestamp: null },
      spec,
      status: user
        ? {
            authenticated: true,
            user: {
              username: user.username,
              ...(user.uid ? { uid: user.uid } : {}),
              groups: user.groups,
              ...(user.extra ? { extra: user.extra } : {}),
            },
            audiences,
          }
        : { authenticated: false, user: {}, error: 'invalid bearer token' },
    });
  }
}

/** The `spec` of a review's JSON body ({} when it has none); undefined when the body is not JSON. */
async function reviewSpec(req: IncomingMessage): Promise<Json | undefined> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  let body: Json;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Json;
  } catch {
    return undefined;
  }
  return (body.spec && typeof body.spec === 'object' ? body.spec : {}) as Json;
}

interface Route {
  readonly kind: FakeKind | undefined;
  readonly namespace: string | undefined;
  readonly name: string | undefined;
  /** `status` for `<object>/status`. */
  readonly subresource?: string;
  readonly tokenReview: boolean;
  readonly accessReview?: boolean;
}

/** `/api/v1[/namespaces/<ns>]/<plural>[/<name>]` and `/apis/<group>/<version>/...` as the client builds them. */
function parsePath(pathname: string): Route | undefined {
  const parts = pathname.split('/').filter(Boolean).map(decodeURIComponent);
  let group: string;
  let version: string;
  let rest: string[];
  if (parts[0] === 'api' && parts.length >= 2) [group, version, rest] = ['', parts[1]!, parts.slice(2)];
  else if (parts[0] === 'apis' && parts.length >= 3)
    [group, version, rest] = [parts[1]!, parts[2]!, parts.slice(3)];
  else return undefined;
  if (group === 'authentication.k8s.io' && version === 'v1' && rest.join('/') === 'tokenreviews') {
    return { kind: undefined, namespace: undefined, name: undefined, tokenReview: true };
  }
  if (group === 'authorization.k8s.io' && version === 'v1' && rest.join('/') === 'subjectaccessreviews') {
    return { kind: undefined, namespace: undefined, name: undefined, tokenReview: false, accessReview: true };
  }
  let namespace: string | undefined;
  // `namespaces/<ns>/<plural>...` is a namespaced path; `namespaces[/<name>]` is the Namespace kind.
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  // `<plural>/<name>/status`: the status subresource.
  const subresource = rest.length === 3 ? rest[2] : undefined;
  if (rest.length < 1 || rest.length > 3 || (subresource !== undefined && subresource !== 'status'))
    return undefined;
  const kind = KINDS.find((k) => {
    const d: ResourceDef = ALL_RESOURCES[k];
    return d.group === group && d.version === version && d.plural === rest[0];
  });
  if (kind === undefined || (namespace !== undefined && !ALL_RESOURCES[kind].namespaced)) return undefined;
  const name = rest[1];
  // A GET of one namespaced object needs its namespace; cluster-scoped objects have none.
  if (name !== undefined && ALL_RESOURCES[kind].namespaced && namespace === undefined) return undefined;
  return {
    kind,
    namespace: namespace ?? (name !== undefined ? '' : undefined),
    name,
    ...(subresource !== undefined && { subresource }),
    tokenReview: false,
  };
}

const WRITE_VERBS: Readonly<Record<string, RecordedRequest['verb']>> = {
  POST: 'create',
  PUT: 'update',
  PATCH: 'patch',
  DELETE: 'delete',
};

async function readJson(req: IncomingMessage): Promise<Json> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const v = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
  return v as Json;
}

/** RFC 7386 JSON merge patch: objects merge key by key, `null` removes, anything else replaces. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Json =
    target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Json) } : {};
  for (const [k, v] of Object.entries(patch as Json)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** A Service with a cluster IP allocated when it asks for none (`None`, headless, is kept). */
function withClusterIp(kind: FakeKind, obj: Json, n: number): Json {
  const spec = obj.spec;
  if (kind !== 'Service' || spec === null || typeof spec !== 'object' || Array.isArray(spec)) return obj;
  const s = spec as Json;
  if (typeof s.clusterIP === 'string' && s.clusterIP !== '') return obj;
  const ip = `10.96.${Math.floor(n / 250) % 256}.${(n % 250) + 1}`;
  return { ...obj, spec: { ...s, clusterIP: ip, clusterIPs: [ip] } };
}

/** Everything but metadata and status, as text: what a change of raises the generation. */
function specOf(obj: Json): string {
  const { metadata: _m, status: _s, ...rest } = obj;
  return JSON.stringify(rest);
}

/** A write to an object with a status subresource keeps the stored status, as kube-apiserver does. */
function keepStatus(kind: FakeKind, next: Json, existing: Json): Json {
  if (!STATUS_KINDS.has(kind)) return next;
  const { status: _dropped, ...rest } = next;
  return existing.status === undefined ? rest : { ...rest, status: existing.status };
}

function apiVersionOf(def: ResourceDef): string {
  return def.group ? `${def.group}/${def.version}` : def.version;
}

function keyOf(obj: Json): string {
  const meta = obj.metadata as Json;
  return `${typeof meta.namespace === 'string' ? meta.namespace : ''}/${meta.name as string}`;
}

function clone(obj: Json): Json {
  return structuredClone(obj);
}

function json(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** 409 for a write based on an older resourceVersion, in kube-apiserver's words. */
function staleWrite(res: ServerResponse): void {
  status(
    res,
    409,
    'Conflict',
    `the object has been modified; please apply your changes to the latest version and try again`,
  );
}

/** A `Status` error body, as every kube-apiserver error response carries. */
function status(res: ServerResponse, code: number, reason: string, message: string): void {
  json(res, code, {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason,
    code,
  });
}
