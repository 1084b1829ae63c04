/**
 * An ADS server, generic over resource types, speaking both variants of the protocol from one
 * resource store: Delta (`DeltaAggregatedResources`: Istio's ztunnel, our agents and waypoints) and
 * state of the world (`StreamAggregatedResources`: `@grpc/grpc-js-xds` and other proxyless gRPC
 * clients). The owner sets the full resource set of a type; each subscriber gets what its view lacks.
 * ACKs and NACKs are matched by nonce; a NACK is reported with the subscriber's id and error.
 *
 * Subscriptions, as the xDS protocol defines them:
 * - Delta: a first request without names (or with `*`) is a wildcard one; names are added and removed
 *   by `resource_names_subscribe`/`_unsubscribe`; responses carry what changed and `removed_resources`.
 * - State of the world: every request carries the client's whole interest in `resource_names`; a
 *   first request without names is a wildcard one, and stays so while the client keeps naming none.
 *   For the full-state types (Listener and Cluster) every response carries every resource subscribed
 *   that exists, and one left out is deleted by the client; for the others (RouteConfiguration,
 *   ClusterLoadAssignment) a response carries what changed, and a removal cannot be told (the client
 *   drops such a resource when nothing refers to it any more).
 * A subscriber whose view did not change gets nothing.
 *
 * What 100 agents × 10,000 workloads cost (issue 3's benchmark) decides the shape:
 * - Each resource version is encoded once, as its `resources` entry of a Delta response, and every
 *   subscriber's responses share those bytes: a response is its header followed by the entries
 *   (protobuf merges concatenated messages), never a tree of message objects per subscriber. A state
 *   of the world entry (an `Any`) is the same bytes: the Delta entry's `Resource.resource` field has
 *   the same tag and content, so it is sent as a view into them.
 * - A wildcard subscriber that holds a whole snapshot points at that snapshot instead of keeping
 *   a name → version map of its own.
 * - A stream has at most one response being written; what changes meanwhile is coalesced into the
 *   next one. Large responses (initial snapshots) share one byte budget across streams, so 100
 *   agents connecting at once are served a few at a time instead of with 100 full snapshots in
 *   memory at once; a stream that stops reading loses its share after `writeStallMs`.
 */
import {
  status,
  type Metadata,
  type ServerDuplexStream,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { describeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { adsDefinitions, type DeltaRequest, type DeltaResponse } from './envoy-protos.ts';
import { EnvoyTypeUrl } from './l7-names.ts';

/** One resource as served: its version (a content hash) and its encoded message. */
export interface ServedResource {
  readonly version: string;
  readonly bytes: Uint8Array;
}

/** Who may open streams on a listener, and for which types. */
export interface AdsAccess {
  /** Checks a stream's call metadata; resolves to a refusal reason, or undefined to allow it. Absent: anyone. */
  readonly authorize?: (metadata: Metadata) => Promise<string | undefined>;
  /** The type URLs streams may ask for (a subset of those served); absent: all of them. */
  readonly types?: readonly string[];
  /** What a stream may read of the scoped types (`AdsServerOptions.scopedTypes`); absent: `opts.scope`. */
  readonly scope?: (metadata: Metadata) => Promise<ResourceFilter>;
}

/** Whether the subscriber of one stream may read a resource (checked each time it would be sent). */
export type ResourceFilter = (typeUrl: string, name: string) => boolean;

export interface AdsServerOptions {
  readonly log: Logger;
  /** Type URLs this server serves; a request for any other closes the stream. */
  readonly types: readonly string[];
  /** A subscriber rejected a response. */
  readonly onNack?: (subscriber: string, typeUrl: string, message: string) => void;
  /** A subscriber accepted a response. */
  readonly onAck?: (subscriber: string, typeUrl: string, nonce: string) => void;
  /** Checks a stream's call metadata for `handlers()` without an access of its own. */
  readonly authorize?: (metadata: Metadata) => Promise<string | undefined>;
  /**
   * Types served per subscriber (Envoy Secrets): a subscriber gets only the resources its stream's
   * ResourceFilter allows, as if the others did not exist; a wildcard subscription gets those it may
   * read. Asked for once per stream, after authorization. Absent: nothing is scoped.
   */
  readonly scopedTypes?: readonly string[];
  readonly scope?: (metadata: Metadata) => Promise<ResourceFilter>;
  /**
   * Types whose state-of-the-world responses carry every subscribed resource. Default: Listener
   * and Cluster, as the xDS protocol has it.
   */
  readonly fullStateTypes?: readonly string[];
  /**
   * Bytes of large responses being written at once, all streams together; one is always allowed,
   * however large. Default `ADS_SEND_DEFAULTS.sendBudgetBytes`.
   */
  readonly sendBudgetBytes?: number;
  /**
   * A large response still being written after this long stops counting against the budget, so
   * agents that do not read cannot hold up the others. Default `ADS_SEND_DEFAULTS.writeStallMs`.
   */
  readonly writeStallMs?: number;
}

export const ADS_SEND_DEFAULTS = {
  /** About five full snapshots of 10,000 workloads (3.3 MB each). */
  sendBudgetBytes: 16 * 1024 * 1024,
  writeStallMs: 5_000,
  /** Responses up to this size (a change, an ACKed reconnect) never wait for the budget. */
  smallResponseBytes: 64 * 1024,
} as const;

/** `envoy.service.discovery.v3.DiscoveryRequest` (state of the world), as proto-loader reads it. */
export interface SotwRequest {
  version_info?: string;
  node?: { id?: string; cluster?: string; metadata?: unknown };
  resource_names?: string[];
  type_url?: string;
  response_nonce?: string;
  error_detail?: { code?: number; message?: string } | null;
}

/** `envoy.service.discovery.v3.DiscoveryResponse` (state of the world). */
export interface SotwResponse {
  version_info?: string;
  resources?: { type_url: string; value: Buffer }[];
  type_url: string;
  nonce: string;
}

type Protocol = 'delta' | 'sotw';

/** One resource version, shared by every subscriber. */
interface Entry {
  readonly version: string;
  /** The resource as one `resources` entry (field 2) of a DeltaDiscoveryResponse, encoded once. */
  readonly wire: Buffer;
}

type Snapshot = ReadonlyMap<string, Entry>;

interface TypeSet {
  current: Snapshot;
  /** The snapshot before the last change and what changed from it (names sent, names removed). */
  previous: Snapshot | undefined;
  changed: readonly string[];
  removed: readonly string[];
}

/**
 * What a subscriber holds, as far as we know: a whole snapshot (a wildcard subscriber brought up to
 * date; nothing of its own) or its own name → version map (named subscriptions, a reconnect's
 * initial_resource_versions, a subscription change).
 */
type Held = { readonly snapshot: Snapshot } | { readonly versions: Map<string, string> };

interface TypeState {
  /** Subscribed to everything (a first request with no names, or `*`). */
  wildcard: boolean;
  /** Names subscribed explicitly; Delta keeps them when wildcard is switched off. */
  names: Set<string>;
  held: Held;
  /** Nonces sent and not yet answered. */
  pending: Set<string>;
  /** The subscriber's view may differ from the current set: a response may be owed. */
  dirty: boolean;
  /** The first response is owed even if empty: it tells the client it has everything. */
  initial: boolean;
  /** A scoped type: what this subscriber may read. */
  canRead?: (name: string) => boolean;
}

/** A response being written, and whether it counts against the send budget. */
interface InFlight {
  readonly bytes: number;
  counted: boolean;
  timer: NodeJS.Timeout | undefined;
}

interface Subscriber {
  readonly id: string;
  readonly protocol: Protocol;
  readonly call: ServerDuplexStream<unknown, EncodedResponse>;
  readonly types: Map<string, TypeState>;
  /** For the scoped types. */
  readonly filter: ResourceFilter | undefined;
  writing: InFlight | undefined;
  /** Waiting in the send queue for budget. */
  queued: boolean;
  closed: boolean;
}

/** What one response to one subscriber would carry. */
interface Plan {
  readonly typeUrl: string;
  readonly state: TypeState;
  readonly sent: readonly string[];
  /** Delta: sent as removed. State of the world: only forgotten (the client learns it by absence, or not at all). */
  readonly removed: readonly string[];
  /** Approximate encoded size: the entries plus the removed names. */
  readonly bytes: number;
}

/** Why a stream is ended: a status and what it says. */
interface Refusal {
  readonly code: status;
  readonly details: string;
}

export interface SubscriberInfo {
  readonly id: string;
  /** `delta` or `sotw` (state of the world). */
  readonly protocol: Protocol;
  /** Per type URL: nonces sent that are not ACKed or NACKed yet. */
  readonly pending: Readonly<Record<string, number>>;
}

/**
 * A discovery response already encoded, as parts to concatenate. Only the serializers of
 * `AdsServer.definition()` can write it.
 */
class EncodedResponse {
  readonly parts: readonly Buffer[];
  readonly length: number;
  constructor(parts: readonly Buffer[]) {
    this.parts = parts;
    this.length = parts.reduce((n, p) => n + p.length, 0);
  }
}

const DEFAULT_FULL_STATE_TYPES: readonly string[] = [EnvoyTypeUrl.Listener, EnvoyTypeUrl.Cluster];

export class AdsServer {
  private readonly opts: AdsServerOptions;
  private readonly sets = new Map<string, TypeSet>();
  private readonly fullState: ReadonlySet<string>;
  private readonly subscribers = new Set<Subscriber>();
  /** Subscribers whose next response is large and waits for budget, first come first served. */
  private queue: Subscriber[] = [];
  /** Bytes of large responses being written that count against the budget. */
  private inFlightBytes = 0;
  private readonly budgetBytes: number;
  private readonly stallMs: number;
  private readonly serializeDelta = adsDefinitions().service.DeltaAggregatedResources!.responseSerialize;
  private readonly serializeSotw = adsDefinitions().service.StreamAggregatedResources!.responseSerialize;
  private nonce = 0;
  private version = 0;

  constructor(opts: AdsServerOptions) {
    this.opts = opts;
    this.budgetBytes = opts.sendBudgetBytes ?? ADS_SEND_DEFAULTS.sendBudgetBytes;
    this.stallMs = opts.writeStallMs ?? ADS_SEND_DEFAULTS.writeStallMs;
    this.fullState = new Set(opts.fullStateTypes ?? DEFAULT_FULL_STATE_TYPES);
    for (const t of opts.types) {
      this.sets.set(t, { current: new Map(), previous: undefined, changed: [], removed: [] });
    }
  }

  /**
   * The service definition to register the handlers with: ADS as loaded from the Envoy protos, but
   * writing responses this server has already encoded.
   */
  definition(): ServiceDefinition {
    const base = adsDefinitions().service;
    const encoded = (method: ServiceDefinition[string]) => ({
      ...method,
      responseSerialize: (value: unknown) =>
        value instanceof EncodedResponse
          ? Buffer.concat(value.parts, value.length)
          : method.responseSerialize(value),
    });
    return {
      ...base,
      DeltaAggregatedResources: encoded(base.DeltaAggregatedResources!),
      StreamAggregatedResources: encoded(base.StreamAggregatedResources!),
    };
  }

  /**
   * The gRPC handlers for `envoy.service.discovery.v3.AggregatedDiscoveryService`, to register with
   * `definition()` (the plain ADS definition cannot write the pre-encoded responses). Each listener
   * may register its own, with its own access; all share the resources and the send budget.
   */
  handlers(
    access: AdsAccess = { authorize: this.opts.authorize, scope: this.opts.scope },
  ): UntypedServiceImplementation {
    return {
      DeltaAggregatedResources: (call: ServerDuplexStream<unknown, EncodedResponse>) =>
        this.serve(call, 'delta', access),
      StreamAggregatedResources: (call: ServerDuplexStream<unknown, EncodedResponse>) =>
        this.serve(call, 'sotw', access),
    };
  }

  /** Replaces every resource of a type and pushes the differences to each subscriber. */
  set(typeUrl: string, resources: ReadonlyMap<string, ServedResource>): void {
    const set = this.sets.get(typeUrl);
    if (!set) throw new Error(`type ${typeUrl} is not served`);
    const previous = set.current;
    // The difference is computed once; subscribers holding the previous snapshot get just that
    // (100 agents × 10k resources would otherwise be a million comparisons per change). An
    // unchanged resource keeps its entry, so it is never encoded again.
    const next = new Map<string, Entry>();
    const changed: string[] = [];
    for (const [name, r] of resources) {
      const old = previous.get(name);
      if (old?.version === r.version) next.set(name, old);
      else {
        next.set(name, { version: r.version, wire: this.encodeEntry(typeUrl, name, r) });
        changed.push(name);
      }
    }
    const removed: string[] = [];
    for (const name of previous.keys()) if (!next.has(name)) removed.push(name);
    this.version++;
    if (changed.length === 0 && removed.length === 0) return;
    set.previous = previous;
    set.current = next;
    set.changed = changed;
    set.removed = removed;
    for (const s of this.subscribers) {
      const t = s.types.get(typeUrl);
      if (!t) continue;
      t.dirty = true;
      this.flush(s);
    }
  }

  subscriberInfo(): SubscriberInfo[] {
    return [...this.subscribers].map((s) => ({
      id: s.id,
      protocol: s.protocol,
      pending: Object.fromEntries([...s.types].map(([url, t]) => [url, t.pending.size])),
    }));
  }

  /** Ends every stream (clients reconnect elsewhere or later). */
  close(): void {
    for (const s of this.subscribers) {
      this.drop(s);
      s.call.end();
    }
    this.subscribers.clear();
    this.queue = [];
  }

  private serve(
    call: ServerDuplexStream<unknown, EncodedResponse>,
    protocol: Protocol,
    access: AdsAccess,
  ): void {
    let sub: Subscriber | undefined;
    let ended = false;
    const peer = call.getPeer();
    const done = () => {
      if (sub) this.drop(sub);
    };
    // grpc-js ends a server stream with a status when the error is emitted on the call; nothing
    // more is read or written on it after that.
    const reject = ({ code, details }: Refusal) => {
      if (ended) return;
      ended = true;
      done();
      this.opts.log.warn({ subscriber: sub?.id ?? peer, protocol, error: details }, 'xds stream rejected');
      call.emit('error', { code, details });
    };
    // Requests wait for the stream's authorization and are handled in order after it.
    const authorized = (access.authorize ? access.authorize(call.metadata) : Promise.resolve(undefined)).then(
      async (refusal) => ({
        refusal,
        filter:
          refusal === undefined && access.scope && this.opts.scopedTypes?.length
            ? await access.scope(call.metadata)
            : undefined,
      }),
    );
    call.on('data', (req: DeltaRequest | SotwRequest) => {
      void authorized.then(
        ({ refusal, filter }) => {
          if (ended) return;
          if (refusal !== undefined) return reject({ code: status.UNAUTHENTICATED, details: refusal });
          try {
            const typeUrl = req.type_url ?? '';
            const refused = this.refuseType(typeUrl, access);
            if (refused) return reject(refused);
            sub ??= this.register(call, req.node?.id || peer, protocol, filter);
            if (protocol === 'delta') this.handleDelta(sub, typeUrl, req as DeltaRequest);
            else this.handleSotw(sub, typeUrl, req);
          } catch (err) {
            reject({ code: status.INTERNAL, details: describeError(err) });
          }
        },
        (err: unknown) => reject({ code: status.INTERNAL, details: describeError(err) }),
      );
    });
    call.on('end', () => {
      done();
      call.end();
    });
    call.on('error', done);
    call.on('close', done);
    call.on('cancelled', done);
  }

  /** A scoped type's filter for this subscriber: none given means it may read nothing. */
  private scopeOf(sub: Subscriber, typeUrl: string): Pick<TypeState, 'canRead'> {
    if (!this.opts.scopedTypes?.includes(typeUrl)) return {};
    const filter = sub.filter;
    return { canRead: filter ? (name) => filter(typeUrl, name) : () => false };
  }

  private refuseType(typeUrl: string, access: AdsAccess): Refusal | undefined {
    if (!this.sets.has(typeUrl))
      return { code: status.INVALID_ARGUMENT, details: `type_url "${typeUrl}" is not served here` };
    if (access.types && !access.types.includes(typeUrl))
      return {
        code: status.PERMISSION_DENIED,
        details: `type_url "${typeUrl}" is not served on this listener`,
      };
    return undefined;
  }

  private register(
    call: ServerDuplexStream<unknown, EncodedResponse>,
    id: string,
    protocol: Protocol,
    filter: ResourceFilter | undefined,
  ): Subscriber {
    const sub: Subscriber = {
      id,
      protocol,
      call,
      types: new Map(),
      filter,
      writing: undefined,
      queued: false,
      closed: false,
    };
    this.subscribers.add(sub);
    this.opts.log.info({ subscriber: id, protocol }, 'xds subscriber connected');
    return sub;
  }

  /**
   * Forgets a subscriber whose stream ended. A write on a cancelled stream never completes, so its
   * budget is given back here.
   */
  private drop(sub: Subscriber): void {
    if (sub.closed) return;
    sub.closed = true;
    this.subscribers.delete(sub);
    if (sub.writing) this.release(sub.writing);
    sub.writing = undefined;
    if (sub.queued) this.queue = this.queue.filter((s) => s !== sub);
    sub.queued = false;
    this.admit();
  }

  /**
   * An ACK or a NACK of one response. Only the first answer to a nonce counts: state-of-the-world
   * clients repeat their last nonce (and error) on every later subscription change.
   */
  private answer(
    sub: Subscriber,
    t: TypeState,
    typeUrl: string,
    nonce: string,
    error: { message?: string } | null | undefined,
  ): void {
    if (!t.pending.delete(nonce)) return;
    // Any error_detail at all is a NACK, even an empty one.
    if (error !== undefined && error !== null) {
      const message = error.message ?? '';
      this.opts.log.warn({ subscriber: sub.id, typeUrl, nonce, error: message }, 'xds NACK');
      this.opts.onNack?.(sub.id, typeUrl, message);
    } else {
      this.opts.onAck?.(sub.id, typeUrl, nonce);
    }
  }

  private handleDelta(sub: Subscriber, typeUrl: string, req: DeltaRequest): void {
    let t = sub.types.get(typeUrl);
    const first = t === undefined;
    if (!t) {
      // Resources the client already holds (after a reconnect): only what changed is resent.
      t = {
        wildcard: true,
        names: new Set(),
        held: { versions: new Map(Object.entries(req.initial_resource_versions ?? {})) },
        pending: new Set(),
        dirty: true,
        initial: true,
        ...this.scopeOf(sub, typeUrl),
      };
      sub.types.set(typeUrl, t);
    }
    if (req.response_nonce) this.answer(sub, t, typeUrl, req.response_nonce, req.error_detail);
    const subscribe = req.resource_names_subscribe ?? [];
    const unsubscribe = req.resource_names_unsubscribe ?? [];
    if (subscribe.length > 0 || unsubscribe.length > 0) {
      const held = ownVersions(t);
      // A first request that names resources (without `*`) is not a wildcard one; later named
      // subscriptions add to a wildcard instead of replacing it.
      if (first && !subscribe.includes('*')) t.wildcard = false;
      for (const n of subscribe) {
        if (n === '*') t.wildcard = true;
        else t.names.add(n);
      }
      for (const n of unsubscribe) {
        if (n === '*') {
          // The client drops what it no longer subscribes to; so do we, in our view of it.
          t.wildcard = false;
          for (const name of [...held.keys()]) if (!t.names.has(name)) held.delete(name);
        } else {
          t.names.delete(n);
          held.delete(n);
        }
      }
      t.dirty = true;
    }
    if (t.dirty) this.flush(sub);
  }

  private handleSotw(sub: Subscriber, typeUrl: string, req: SotwRequest): void {
    let t = sub.types.get(typeUrl);
    const first = t === undefined;
    if (!t) {
      // A reconnecting client's version_info says nothing about which resources it holds: it is
      // sent what it subscribes to (gRPC clients keep what they already had if it is equal).
      t = {
        wildcard: false,
        names: new Set(),
        held: { versions: new Map() },
        pending: new Set(),
        dirty: true,
        initial: true,
        ...this.scopeOf(sub, typeUrl),
      };
      sub.types.set(typeUrl, t);
    }
    if (req.response_nonce) this.answer(sub, t, typeUrl, req.response_nonce, req.error_detail);
    // Every request carries the whole interest, whatever its nonce, so it is always the latest.
    const requested = req.resource_names ?? [];
    const wildcard = requested.includes('*') || (requested.length === 0 && (first || t.wildcard));
    const names = new Set(requested.filter((n) => n !== '*'));
    if (wildcard !== t.wildcard || names.size !== t.names.size || [...names].some((n) => !t.names.has(n))) {
      if (!wildcard) {
        // What the client no longer asks for it has dropped; asked for again, it is sent again.
        const held = ownVersions(t);
        for (const name of [...held.keys()]) if (!names.has(name)) held.delete(name);
      }
      t.wildcard = wildcard;
      t.names = names;
      t.dirty = true;
    }
    if (t.dirty) this.flush(sub);
  }

  /**
   * Sends the subscriber's next owed response, unless one is being written (its completion calls
   * this again) or it must wait for budget behind others.
   */
  private flush(sub: Subscriber): void {
    if (sub.closed || sub.writing || sub.queued) return;
    const plan = this.nextPlan(sub);
    if (!plan) return;
    if (
      plan.bytes > ADS_SEND_DEFAULTS.smallResponseBytes &&
      (this.queue.length > 0 || !this.fits(plan.bytes))
    ) {
      sub.queued = true;
      this.queue.push(sub);
      return;
    }
    this.send(sub, plan);
  }

  /** Sends to waiting subscribers, in order, while the budget allows. */
  private admit(): void {
    while (this.queue.length > 0) {
      const sub = this.queue[0]!;
      // Planned again now: what it is owed may have changed while it waited.
      const plan = sub.closed ? undefined : this.nextPlan(sub);
      if (plan && plan.bytes > ADS_SEND_DEFAULTS.smallResponseBytes && !this.fits(plan.bytes)) return;
      this.queue.shift();
      sub.queued = false;
      if (plan) this.send(sub, plan);
    }
  }

  private fits(bytes: number): boolean {
    return this.inFlightBytes === 0 || this.inFlightBytes + bytes <= this.budgetBytes;
  }

  /** The first type (in subscription order) with something to send; types with nothing are settled. */
  private nextPlan(sub: Subscriber): Plan | undefined {
    for (const [typeUrl, t] of sub.types) {
      if (!t.dirty) continue;
      const plan = sub.protocol === 'delta' ? this.planDelta(typeUrl, t) : this.planSotw(typeUrl, t);
      if (plan) return plan;
      t.dirty = false;
    }
    return undefined;
  }

  /** Delta: what the subscriber lacks or holds in an old version, and what it holds that is gone. */
  private planDelta(typeUrl: string, t: TypeState): Plan | undefined {
    const set = this.sets.get(typeUrl)!;
    let sent: readonly string[];
    let removed: readonly string[];
    if (t.wildcard && !t.canRead) {
      [sent, removed] = changesSince(t.held, set);
      // A wildcard subscriber that holds exactly the current set needs no map of its own.
      if ('versions' in t.held && sent.length === 0 && removed.length === 0)
        t.held = { snapshot: set.current };
    } else {
      // Named subscriptions cost what they name, not what the type holds. A scoped type hides
      // what the subscriber may not read: never sent, and removed if it was.
      const held = ownVersions(t);
      const readable = t.canRead ?? (() => true);
      const s: string[] = [];
      const r: string[] = [];
      for (const name of t.wildcard ? set.current.keys() : t.names) {
        const e = set.current.get(name);
        if (e && held.get(name) !== e.version && readable(name)) s.push(name);
      }
      for (const name of held.keys()) if (!set.current.has(name) || !readable(name)) r.push(name);
      [sent, removed] = [s, r];
    }
    if (!t.initial && sent.length === 0 && removed.length === 0) return undefined;
    return this.planOf(typeUrl, t, sent, removed, true);
  }

  /**
   * State of the world: owed when a subscribed resource is new, changed or (full-state types) gone,
   * and for the first request of a full-state type. Full-state responses carry everything
   * subscribed; the others what changed.
   */
  private planSotw(typeUrl: string, t: TypeState): Plan | undefined {
    const set = this.sets.get(typeUrl)!;
    const current = set.current;
    const full = this.fullState.has(typeUrl);
    let changed: readonly string[];
    let gone: readonly string[];
    const readable = t.canRead ?? (() => true);
    if (t.wildcard && !t.canRead) [changed, gone] = changesSince(t.held, set);
    else {
      const held = ownVersions(t);
      const c: string[] = [];
      const g: string[] = [];
      for (const name of t.wildcard ? current.keys() : t.names) {
        const e = readable(name) ? current.get(name) : undefined;
        if (e) {
          if (held.get(name) !== e.version) c.push(name);
        } else if (held.has(name)) g.push(name);
      }
      [changed, gone] = [c, g];
    }
    if (changed.length === 0 && !(full && (gone.length > 0 || t.initial))) {
      // Nothing to send. What is gone is forgotten, so that it is sent again if it comes back.
      if (t.wildcard && !t.canRead) t.held = { snapshot: current };
      else for (const name of gone) ownVersions(t).delete(name);
      return undefined;
    }
    const sent = !full
      ? changed
      : t.wildcard
        ? [...current.keys()].filter(readable)
        : [...t.names].filter((n) => current.has(n) && readable(n));
    return this.planOf(typeUrl, t, sent, gone, false);
  }

  private planOf(
    typeUrl: string,
    t: TypeState,
    sent: readonly string[],
    removed: readonly string[],
    removedOnWire: boolean,
  ): Plan {
    const current = this.sets.get(typeUrl)!.current;
    let bytes = 0;
    for (const name of sent) bytes += current.get(name)!.wire.length;
    if (removedOnWire) for (const name of removed) bytes += name.length + 3;
    return { typeUrl, state: t, sent, removed, bytes };
  }

  private send(sub: Subscriber, plan: Plan): void {
    const { typeUrl, state: t } = plan;
    const current = this.sets.get(typeUrl)!.current;
    const nonce = String(++this.nonce);
    const parts: Buffer[] = [];
    if (sub.protocol === 'delta') {
      parts.push(
        asBuffer(
          this.serializeDelta({
            system_version_info: String(this.version),
            type_url: typeUrl,
            nonce,
            removed_resources: [...plan.removed],
          } satisfies DeltaResponse),
        ),
      );
      for (const name of plan.sent) parts.push(current.get(name)!.wire);
    } else {
      parts.push(
        asBuffer(
          this.serializeSotw({
            version_info: String(this.version),
            type_url: typeUrl,
            nonce,
          } satisfies SotwResponse),
        ),
      );
      for (const name of plan.sent) parts.push(anyOf(current.get(name)!.wire));
    }
    // The subscriber now holds what was sent (as far as we know until it NACKs).
    if (t.wildcard && !t.canRead) t.held = { snapshot: current };
    else {
      const held = ownVersions(t);
      for (const name of plan.sent) held.set(name, current.get(name)!.version);
      for (const name of plan.removed) held.delete(name);
    }
    t.dirty = false;
    t.initial = false;
    t.pending.add(nonce);
    const large = plan.bytes > ADS_SEND_DEFAULTS.smallResponseBytes;
    const writing: InFlight = { bytes: plan.bytes, counted: large, timer: undefined };
    if (large) {
      this.inFlightBytes += plan.bytes;
      writing.timer = setTimeout(() => {
        writing.timer = undefined;
        if (!writing.counted) return;
        this.opts.log.debug(
          { subscriber: sub.id, typeUrl, bytes: plan.bytes, stallMs: this.stallMs },
          'xds response still being written; no longer counted against the send budget',
        );
        this.release(writing);
        this.admit();
      }, this.stallMs);
      writing.timer.unref();
    }
    sub.writing = writing;
    // The callback comes once grpc-js has handed the bytes to the socket (never, on a cancelled
    // stream: drop() gives the budget back then).
    sub.call.write(new EncodedResponse(parts), () => {
      if (sub.writing !== writing) return;
      sub.writing = undefined;
      this.release(writing);
      this.admit();
      this.flush(sub);
    });
  }

  private release(writing: InFlight): void {
    if (writing.timer) clearTimeout(writing.timer);
    writing.timer = undefined;
    if (writing.counted) this.inFlightBytes -= writing.bytes;
    writing.counted = false;
  }

  /** A resource as the `resources` entry of a Delta response, by the ADS protos' own encoder. */
  private encodeEntry(typeUrl: string, name: string, r: ServedResource): Buffer {
    // Only field 2 is set: protobufjs writes a scalar that is present even when empty, and a later
    // field wins when messages are concatenated, so an empty nonce here would erase the header's.
    const only: Pick<DeltaResponse, 'resources'> = {
      resources: [{ name, version: r.version, resource: { type_url: typeUrl, value: asBuffer(r.bytes) } }],
    };
    return asBuffer(this.serializeDelta(only));
  }
}

/** The server under its earlier name: it served Delta ADS only. */
export { AdsServer as DeltaAdsServer };

/** The subscriber's own name → version map, made from the snapshot it holds if need be. */
function ownVersions(t: TypeState): Map<string, string> {
  if ('versions' in t.held) return t.held.versions;
  const versions = new Map<string, string>();
  for (const [name, e] of t.held.snapshot) versions.set(name, e.version);
  t.held = { versions };
  return versions;
}

/** What a wildcard subscriber holding `held` lacks of the current set, and holds that is gone. */
function changesSince(held: Held, set: TypeSet): [readonly string[], readonly string[]] {
  const current = set.current;
  if ('snapshot' in held) {
    if (held.snapshot === current) return [[], []];
    if (held.snapshot === set.previous) return [set.changed, set.removed];
    return diff(held.snapshot, current);
  }
  const sent: string[] = [];
  const removed: string[] = [];
  for (const [name, e] of current) if (held.versions.get(name) !== e.version) sent.push(name);
  for (const name of held.versions.keys()) if (!current.has(name)) removed.push(name);
  return [sent, removed];
}

/** Names in `to` that `from` lacks or holds in another version, and names only `from` has. */
function diff(from: Snapshot, to: Snapshot): [string[], string[]] {
  const sent: string[] = [];
  const removed: string[] = [];
  for (const [name, e] of to) if (from.get(name)?.version !== e.version) sent.push(name);
  for (const name of from.keys()) if (!to.has(name)) removed.push(name);
  return [sent, removed];
}

/**
 * The state-of-the-world entry of a resource: a DiscoveryResponse's `resources` (field 2) holds the
 * `Any` itself, and a Delta entry is field 2 holding a `Resource` whose own field 2 is that `Any`
 * — same tag, same bytes. Returns a view of them inside the Delta entry, never a copy.
 */
function anyOf(wire: Buffer): Buffer {
  let pos = 0;
  const varint = (): number => {
    let value = 0;
    let scale = 1;
    let byte: number;
    do {
      byte = wire[pos++]!;
      value += (byte & 0x7f) * scale;
      scale *= 128;
    } while (byte & 0x80 && pos < wire.length);
    return value;
  };
  varint(); // the entry's tag
  const end = varint() + pos;
  while (pos < end) {
    const start = pos;
    const tag = varint();
    const wireType = tag & 7;
    if (wireType === 2) {
      const length = varint();
      if (tag >>> 3 === 2) return wire.subarray(start, pos + length);
      pos += length;
    } else if (wireType === 0) varint();
    else if (wireType === 1) pos += 8;
    else if (wireType === 5) pos += 4;
    else break;
  }
  throw new Error('an encoded resource entry has no Any');
}

/** A Buffer view of the bytes, never a copy. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
