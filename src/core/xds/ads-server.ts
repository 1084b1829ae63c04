/**
 * A Delta ADS server (`DeltaAggregatedResources`), generic over resource types. The owner sets the
 * full resource set of a type; each subscriber gets only what changed since what it holds, removals
 * included. ACKs and NACKs are matched by nonce; a NACK is reported with the subscriber's id and
 * error. State-of-the-world ADS is refused with UNIMPLEMENTED.
 */
import {
  status,
  type Metadata,
  type ServerDuplexStream,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { describeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { DeltaRequest, DeltaResponse } from './envoy-protos.ts';

/** One resource as served: its version (a content hash) and its encoded message. */
export interface ServedResource {
  readonly version: string;
  readonly bytes: Uint8Array;
}

export interface AdsServerOptions {
  readonly log: Logger;
  /** Type URLs this server serves; a request for any other closes the stream. */
  readonly types: readonly string[];
  /** A subscriber rejected a response. */
  readonly onNack?: (subscriber: string, typeUrl: string, message: string) => void;
  /** A subscriber accepted a response. */
  readonly onAck?: (subscriber: string, typeUrl: string, nonce: string) => void;
  /** Checks a stream's call metadata; resolves to a refusal reason, or undefined to allow it. */
  readonly authorize?: (metadata: Metadata) => Promise<string | undefined>;
}

interface TypeState {
  /** Subscribed to everything (a first request with no names, or `*`). */
  wildcard: boolean;
  /** Names subscribed explicitly; they stay when wildcard is switched off. */
  names: Set<string>;
  /** What the subscriber holds, as far as we know: name → version. */
  held: Map<string, string>;
  /** Nonces sent and not yet answered. */
  pending: Set<string>;
  /**
   * True when `held` equals the whole current set (a wildcard subscriber we last pushed in full):
   * the next update then needs only the names that changed, not a scan of every resource.
   */
  inStep: boolean;
}

interface Subscriber {
  readonly id: string;
  readonly call: ServerDuplexStream<DeltaRequest, DeltaResponse>;
  readonly types: Map<string, TypeState>;
}

export interface SubscriberInfo {
  readonly id: string;
  /** Per type URL: nonces sent that are not ACKed or NACKed yet. */
  readonly pending: Readonly<Record<string, number>>;
}

export class DeltaAdsServer {
  private readonly opts: AdsServerOptions;
  private readonly resources = new Map<string, Map<string, ServedResource>>();
  private readonly subscribers = new Set<Subscriber>();
  private nonce = 0;
  private version = 0;

  constructor(opts: AdsServerOptions) {
    this.opts = opts;
    for (const t of opts.types) this.resources.set(t, new Map());
  }

  /** The gRPC handlers for `envoy.service.discovery.v3.AggregatedDiscoveryService`. */
  handlers(): UntypedServiceImplementation {
    return {
      DeltaAggregatedResources: (call: ServerDuplexStream<DeltaRequest, DeltaResponse>) => this.serve(call),
      StreamAggregatedResources: (call: ServerDuplexStream<unknown, unknown>) =>
        call.emit('error', { code: status.UNIMPLEMENTED, details: 'only Delta ADS is served' }),
    };
  }

  /** Replaces every resource of a type and pushes the differences to each subscriber. */
  set(typeUrl: string, resources: ReadonlyMap<string, ServedResource>): void {
    const previous = this.resources.get(typeUrl);
    if (!previous) throw new Error(`type ${typeUrl} is not served`);
    const next = new Map(resources);
    // The difference is computed once; subscribers in step get just that (100 agents × 10k
    // resources would otherwise be a million comparisons per change).
    const changed: string[] = [];
    for (const [name, r] of next) if (previous.get(name)?.version !== r.version) changed.push(name);
    const removed: string[] = [];
    for (const name of previous.keys()) if (!next.has(name)) removed.push(name);
    this.resources.set(typeUrl, next);
    this.version++;
    for (const s of this.subscribers) {
      const t = s.types.get(typeUrl);
      if (!t) continue;
      if (t.inStep) this.pushChanges(s, typeUrl, t, changed, removed);
      else this.push(s, typeUrl, t, false);
    }
  }

  subscriberInfo(): SubscriberInfo[] {
    return [...this.subscribers].map((s) => ({
      id: s.id,
      pending: Object.fromEntries([...s.types].map(([url, t]) => [url, t.pending.size])),
    }));
  }

  /** Ends every stream (clients reconnect elsewhere or later). */
  close(): void {
    for (const s of this.subscribers) s.call.end();
    this.subscribers.clear();
  }

  private serve(call: ServerDuplexStream<DeltaRequest, DeltaResponse>): void {
    let sub: Subscriber | undefined;
    let ended = false;
    const peer = call.getPeer();
    const done = () => {
      if (sub) this.subscribers.delete(sub);
    };
    // grpc-js ends a server stream with a status when the error is emitted on the call; nothing
    // more is read or written on it after that.
    const reject = (code: status, details: string) => {
      if (ended) return;
      ended = true;
      done();
      this.opts.log.warn({ subscriber: sub?.id ?? peer, error: details }, 'xds stream rejected');
      call.emit('error', { code, details });
    };
    // Requests wait for the stream's authorization and are handled in order after it.
    const authorized = this.opts.authorize ? this.opts.authorize(call.metadata) : Promise.resolve(undefined);
    call.on('data', (req: DeltaRequest) => {
      void authorized.then(
        (refusal) => {
          if (ended) return;
          if (refusal !== undefined) return reject(status.UNAUTHENTICATED, refusal);
          try {
            sub ??= this.register(call, req.node?.id || peer);
            this.handle(sub, req);
          } catch (err) {
            reject(status.INVALID_ARGUMENT, describeError(err));
          }
        },
        (err: unknown) => reject(status.INTERNAL, describeError(err)),
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

  private register(call: ServerDuplexStream<DeltaRequest, DeltaResponse>, id: string): Subscriber {
    const sub: Subscriber = { id, call, types: new Map() };
    this.subscribers.add(sub);
    this.opts.log.info({ subscriber: id }, 'xds subscriber connected');
    return sub;
  }

  private handle(sub: Subscriber, req: DeltaRequest): void {
    const typeUrl = req.type_url ?? '';
    if (!this.resources.has(typeUrl)) throw new Error(`type_url "${typeUrl}" is not served here`);
    let t = sub.types.get(typeUrl);
    const first = t === undefined;
    if (!t) {
      // Resources the client already holds (after a reconnect): only what changed is resent.
      t = {
        wildcard: true,
        names: new Set(),
        held: new Map(Object.entries(req.initial_resource_versions ?? {})),
        pending: new Set(),
        inStep: false,
      };
      sub.types.set(typeUrl, t);
    }
    if (req.response_nonce) {
      t.pending.delete(req.response_nonce);
      // Any error_detail at all is a NACK, even an empty one.
      if (req.error_detail !== undefined && req.error_detail !== null) {
        const message = req.error_detail?.message ?? '';
        this.opts.log.warn(
          { subscriber: sub.id, typeUrl, nonce: req.response_nonce, error: message },
          'xds NACK',
        );
        this.opts.onNack?.(sub.id, typeUrl, message);
      } else {
        this.opts.onAck?.(sub.id, typeUrl, req.response_nonce);
      }
    }
    const subscribe = req.resource_names_subscribe ?? [];
    const unsubscribe = req.resource_names_unsubscribe ?? [];
    let changed = false;
    if (subscribe.length > 0 || unsubscribe.length > 0) {
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
          for (const name of [...t.held.keys()]) if (!t.names.has(name)) t.held.delete(name);
        } else {
          t.names.delete(n);
          t.held.delete(n);
        }
      }
      changed = true;
      t.inStep = false;
    }
    if (first || changed) this.push(sub, typeUrl, t, first);
  }

  /** Sends what the subscriber lacks or holds in an old version, and what it holds that is gone. */
  private push(sub: Subscriber, typeUrl: string, t: TypeState, always: boolean): void {
    const current = this.resources.get(typeUrl)!;
    const wanted = (name: string) => t.wildcard || t.names.has(name);
    const resources: DeltaResponse['resources'] = [];
    for (const [name, r] of current) {
      if (!wanted(name) || t.held.get(name) === r.version) continue;
      offer(resources, t, typeUrl, name, r);
    }
    const removed: string[] = [];
    for (const name of t.held.keys()) {
      if (!current.has(name)) removed.push(name);
    }
    for (const name of removed) t.held.delete(name);
    t.inStep = t.wildcard;
    this.send(sub, typeUrl, t, resources, removed, always);
  }

  /** For a subscriber in step: only what changed in this update. */
  private pushChanges(
    sub: Subscriber,
    typeUrl: string,
    t: TypeState,
    changed: readonly string[],
    removed: readonly string[],
  ): void {
    const current = this.resources.get(typeUrl)!;
    const resources: DeltaResponse['resources'] = [];
    for (const name of changed) {
      const r = current.get(name)!;
      offer(resources, t, typeUrl, name, r);
    }
    for (const name of removed) t.held.delete(name);
    this.send(sub, typeUrl, t, resources, [...removed], false);
  }

  private send(
    sub: Subscriber,
    typeUrl: string,
    t: TypeState,
    resources: NonNullable<DeltaResponse['resources']>,
    removed: string[],
    always: boolean,
  ): void {
    if (!always && resources.length === 0 && removed.length === 0) return;
    const nonce = String(++this.nonce);
    t.pending.add(nonce);
    sub.call.write({
      system_version_info: String(this.version),
      type_url: typeUrl,
      nonce,
      resources,
      removed_resources: removed,
    });
  }
}

/** Adds a resource to a response and records that the subscriber now holds that version. */
function offer(
  out: NonNullable<DeltaResponse['resources']>,
  t: TypeState,
  typeUrl: string,
  name: string,
  r: ServedResource,
): void {
  out.push({ name, version: r.version, resource: { type_url: typeUrl, value: asBuffer(r.bytes) } });
  t.held.set(name, r.version);
}

/**
 * A Buffer view of the resource's bytes, never a copy: one encoded resource is shared by every
 * subscriber's response (a copy each was 100 × 10k buffers at the first sync of 100 agents).
 */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
