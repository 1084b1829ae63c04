/**
 * A Delta ADS client: wildcard subscriptions per type, decode-and-validate every resource, ACK or
 * NACK (with every rejected resource's name, path and reason) by nonce, and reconnect with backoff
 * sending the versions it holds so only changes come back (reference/ztunnel.md §3.1).
 */
import { Metadata, type ChannelCredentials, type ClientDuplexStream } from '@grpc/grpc-js';
import { describeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { adsDefinitions, type DeltaRequest, type DeltaResponse } from './envoy-protos.ts';
import type { Decoded } from './workload-proto.ts';

export interface AdsType {
  readonly typeUrl: string;
  /**
   * Subscribed by name (`subscribe()`), not wildcard — Envoy Secrets, as SDS asks for them. Such a
   * type is not waited for by isSynced(): nothing is owed until a name is asked for.
   */
  readonly named?: boolean;
  /** Wire bytes → model, with every problem's path. */
  decode(bytes: Uint8Array): Decoded<unknown>;
}

export interface AdsClientOptions {
  /** `host:port` of the xDS server. */
  readonly target: string;
  readonly credentials: ChannelCredentials;
  readonly node: { readonly id: string; readonly metadata?: Record<string, unknown> };
  /** Types subscribed, in this order (Address before Authorization, as ztunnel does). */
  readonly types: readonly AdsType[];
  /**
   * The whole current set of a type, after each response that changed it. The map is the client's
   * own and changes with later responses: read it now, copy what must be kept.
   */
  readonly onResources: (typeUrl: string, resources: ReadonlyMap<string, unknown>) => void;
  readonly log: Logger;
  /** Call metadata, e.g. `authorization: Bearer <token>`; asked for on every (re)connect, so a rotated token is used. */
  readonly headers?: () => Readonly<Record<string, string>>;
  /** gRPC channel options, e.g. the TLS name override for a server dialled by address. */
  readonly channelOptions?: Readonly<Record<string, string | number>>;
}

/** Reconnect delays (reference/ztunnel.md §3.1): 10 ms doubling to 15 s; reset by a good response. */
export const ADS_BACKOFF = { initialMs: 10, maxMs: 15_000 } as const;

/**
 * The version claimed for a resource whose update we rejected: it matches nothing the server has, so
 * after a reconnect the server either sends the resource again or, if it is gone, removes it (an
 * unclaimed name would never be removed, and a deleted workload would linger).
 */
const REJECTED = 'ambit:rejected';

interface Held {
  readonly version: string;
  readonly value: unknown;
}

export class AdsClient {
  private readonly opts: AdsClientOptions;
  private readonly client: InstanceType<ReturnType<typeof adsDefinitions>['client']>;
  private readonly state = new Map<string, Map<string, Held>>();
  /** name → value per type, kept in step with `state`; handed to `onResources` as is. */
  private readonly values = new Map<string, Map<string, unknown>>();
  private readonly synced = new Set<string>();
  /** The names subscribed, per named type. */
  private readonly names = new Map<string, Set<string>>();
  private call: ClientDuplexStream<DeltaRequest, DeltaResponse> | undefined;
  private delayMs: number = ADS_BACKOFF.initialMs;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private connected = false;
  /** Requests may be written on `call`. */
  private streamOpen = false;

  constructor(opts: AdsClientOptions) {
    this.opts = opts;
    const { client: Client } = adsDefinitions();
    this.client = new Client(opts.target, opts.credentials, {
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.max_receive_message_length': 200 * 1024 * 1024,
      ...opts.channelOptions,
    });
    for (const t of opts.types) {
      this.state.set(t.typeUrl, new Map());
      this.values.set(t.typeUrl, new Map());
      if (t.named) this.names.set(t.typeUrl, new Set());
    }
  }

  /**
   * Sets the names subscribed of a named type: the difference goes out on the open stream, the
   * whole set on every reconnect. What is no longer subscribed is forgotten (onResources follows).
   */
  subscribe(typeUrl: string, names: Iterable<string>): void {
    const current = this.names.get(typeUrl);
    if (!current) throw new Error(`type ${typeUrl} is not a named type of this client`);
    const next = new Set(names);
    const added = [...next].filter((n) => !current.has(n));
    const removed = [...current].filter((n) => !next.has(n));
    if (added.length === 0 && removed.length === 0) return;
    this.names.set(typeUrl, next);
    for (const n of removed) {
      this.state.get(typeUrl)!.delete(n);
      this.values.get(typeUrl)!.delete(n);
    }
    // A Delta stream's first request of a type with no names would be a wildcard one: a named type
    // says nothing until it has names, then subscribes and unsubscribes by difference.
    if (this.streamOpen)
      this.call?.write({
        type_url: typeUrl,
        resource_names_subscribe: added,
        resource_names_unsubscribe: removed,
      });
    if (removed.length > 0) this.opts.onResources(typeUrl, this.values.get(typeUrl)!);
  }

  start(): void {
    this.connect();
  }

  /** True once every type has had its first response applied (readiness). */
  isSynced(): boolean {
    return this.opts.types.every((t) => t.named || this.synced.has(t.typeUrl));
  }

  /** Whether a stream is up now. */
  isConnected(): boolean {
    return this.connected;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.call?.cancel();
    this.client.close();
  }

  private connect(): void {
    if (this.closed) return;
    const md = new Metadata();
    for (const [k, v] of Object.entries(this.opts.headers?.() ?? {})) md.set(k, v);
    const call = (
      this.client as unknown as {
        DeltaAggregatedResources(md: Metadata): ClientDuplexStream<DeltaRequest, DeltaResponse>;
      }
    ).DeltaAggregatedResources(md);
    this.call = call;
    this.streamOpen = true;
    call.on('data', (res: DeltaResponse) => this.onResponse(call, res));
    let ended = false;
    const retry = (why: string) => {
      if (ended) return;
      ended = true;
      this.connected = false;
      if (this.call === call) this.streamOpen = false;
      if (this.closed) return;
      this.opts.log.warn(
        { target: this.opts.target, error: why, retryInMs: this.delayMs },
        'xds stream ended',
      );
      this.timer = setTimeout(() => this.connect(), this.delayMs);
      this.timer.unref();
      this.delayMs = Math.min(ADS_BACKOFF.maxMs, this.delayMs * 2);
    };
    call.on('error', (err) => retry(describeError(err)));
    call.on('end', () => retry('server closed the stream'));
    for (const t of this.opts.types) {
      const held = this.state.get(t.typeUrl)!;
      const names = this.names.get(t.typeUrl);
      if (names?.size === 0) continue;
      call.write({
        node: { id: this.opts.node.id, metadata: toStruct(this.opts.node.metadata ?? {}) },
        type_url: t.typeUrl,
        resource_names_subscribe: names ? [...names] : [],
        // What we hold, so the server resends only what changed (rejected ones claim a version
        // that never matches).
        initial_resource_versions: Object.fromEntries([...held].map(([name, h]) => [name, h.version])),
      });
    }
  }

  private onResponse(call: ClientDuplexStream<DeltaRequest, DeltaResponse>, res: DeltaResponse): void {
    const type = this.opts.types.find((t) => t.typeUrl === res.type_url);
    if (!type) {
      call.write({
        type_url: res.type_url,
        response_nonce: res.nonce,
        error_detail: { code: 3, message: `type ${res.type_url} was not subscribed` },
      });
      return;
    }
    this.connected = true;
    this.delayMs = ADS_BACKOFF.initialMs;
    const held = this.state.get(type.typeUrl)!;
    const values = this.values.get(type.typeUrl)!;
    const rejected: string[] = [];
    for (const r of res.resources ?? []) {
      if (!r.resource) {
        rejected.push(`${r.name}: resource body missing`);
        continue;
      }
      const d = type.decode(r.resource.value);
      if (d.ok) {
        held.set(r.name, { version: r.version, value: d.value });
        values.set(r.name, d.value);
      } else {
        // The last good version stays in force, but its version is no longer claimed: after a
        // reconnect the server sends the resource again or removes it (reference/ztunnel.md §3.1).
        const old = held.get(r.name);
        if (old) held.set(r.name, { version: REJECTED, value: old.value });
        rejected.push(
          `${r.name}: ${d.errors.map((e) => (e.path ? `${e.path}: ${e.message}` : e.message)).join(', ')}`,
        );
      }
    }
    for (const name of res.removed_resources ?? []) {
      held.delete(name);
      values.delete(name);
    }
    if (rejected.length > 0) {
      const message = rejected.join('; ');
      this.opts.log.warn(
        { typeUrl: type.typeUrl, nonce: res.nonce, error: message },
        'xds resources rejected',
      );
      call.write({ type_url: type.typeUrl, response_nonce: res.nonce, error_detail: { code: 3, message } });
    } else {
      call.write({ type_url: type.typeUrl, response_nonce: res.nonce });
    }
    this.synced.add(type.typeUrl);
    // The live map, not a copy: copying every resource on every response cost more than the update.
    this.opts.onResources(type.typeUrl, values);
  }
}

/** A plain object as `google.protobuf.Struct` (proto-loader's object form). */
function toStruct(obj: Record<string, unknown>): unknown {
  const value = (v: unknown): unknown => {
    // Well-known types come from protobufjs's built-ins, whose field names are camelCase.
    if (v === null || v === undefined) return { nullValue: 'NULL_VALUE' };
    if (typeof v === 'string') return { stringValue: v };
    if (typeof v === 'number') return { numberValue: v };
    if (typeof v === 'boolean') return { boolValue: v };
    if (Array.isArray(v)) return { listValue: { values: v.map(value) } };
    return { structValue: toStruct(v as Record<string, unknown>) };
  };
  return { fields: Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, value(v)])) };
}
