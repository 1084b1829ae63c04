import type { Socket } from 'node:net';
import type { HbonePool } from '../../core/hbone/pool.ts';
import type { SecretManager } from '../../core/identity/secret-manager.ts';
import type { Logger } from '../../core/log.ts';
import type { TcpMetrics } from '../../core/metrics.ts';
import type { L4Connection } from '../../core/policy/l4.ts';
import type { MeshState } from '../../core/state/mesh-state.ts';
import type { Workload } from '../../core/xds/model.ts';

/** Where a TCP connection the agent makes starts from. */
export interface DialFrom {
  /**
   * The captured pod (by IP) the connection is made for: in-pod mode starts it inside that pod's
   * network namespace, marked so the pod's capture rules let it pass, so it leaves with the pod's
   * address. Ignored for pods the agent does not capture.
   */
  readonly pod?: string;
  /** Otherwise bind to this local address (local mode binds a workload's loopback address). */
  readonly localAddress?: string;
}

/** Opens the agent's TCP connections: from the host network, or from inside a captured pod. */
export interface Dialer {
  /** A socket connecting to `host:port` (listen for 'connect' and 'error'). */
  dial(host: string, port: number, from: DialFrom): Socket;
}

/** What the proxies share inside one agent. */
export interface ProxyContext {
  /** The current mesh state; replaced whole on every config change. */
  state(): MeshState;
  /** This agent's node: workloads on it are local. */
  readonly nodeName: string;
  /** The network addresses are looked up in. */
  readonly network: string;
  /** Peers must be in this trust domain. */
  readonly trustDomain: string;
  readonly pool: HbonePool;
  readonly secrets: SecretManager;
  readonly metrics: TcpMetrics;
  readonly log: Logger;
  /** Logger for the one-line-per-connection access log. */
  readonly accessLog: Logger;
  readonly connections: ConnectionTracker;
  readonly connectTimeoutMs: number;
  readonly dialer: Dialer;
}

export interface TrackedConnection {
  readonly direction: 'inbound' | 'outbound';
  /** For inbound connections: the facts the L4 policy was checked with, re-checked on policy change. */
  readonly l4?: { readonly workload: Workload; readonly conn: L4Connection };
  /** Who the connection is between and the bytes it has moved so far, for the admin port. */
  view(): ConnectionView;
  /** Ends the connection now. */
  destroy(reason: string): void;
}

/** One open connection as the admin port's `/connections` shows it. */
export interface ConnectionView {
  readonly src: string;
  readonly dst: string;
  readonly srcIdentity: string | undefined;
  readonly dstIdentity: string | undefined;
  /** From the client towards the destination. */
  readonly bytesSent: number;
  /** From the destination back to the client. */
  readonly bytesReceived: number;
}

/** Open connections, for graceful drain and late policy enforcement. */
export class ConnectionTracker {
  private readonly open = new Set<TrackedConnection>();
  private readonly idleWaiters = new Set<() => void>();
  private closed = false;

  add(c: TrackedConnection): () => void {
    if (this.closed) {
      // Opened after the agent cut everything (a dial that finished late): end it now.
      c.destroy('agent shutting down');
      return () => undefined;
    }
    this.open.add(c);
    return () => {
      this.open.delete(c);
      if (this.open.size === 0) for (const w of this.idleWaiters) w();
    };
  }

  get size(): number {
    return this.open.size;
  }

  count(direction: TrackedConnection['direction']): number {
    let n = 0;
    for (const c of this.open) if (c.direction === direction) n++;
    return n;
  }

  *entries(): IterableIterator<TrackedConnection> {
    yield* this.open;
  }

  /** Resolves when no connection is open or the deadline passes; returns whether all finished. */
  waitIdle(deadlineMs: number): Promise<boolean> {
    if (this.open.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (idle: boolean) => {
        clearTimeout(timer);
        this.idleWaiters.delete(onIdle);
        resolve(idle);
      };
      const onIdle = () => done(true);
      const timer = setTimeout(() => done(false), deadlineMs);
      this.idleWaiters.add(onIdle);
    });
  }

  /** Ends every connection, and any added from now on. */
  destroyAll(reason: string): void {
    this.closed = true;
    for (const c of [...this.open]) c.destroy(reason);
  }
}
