/**
 * One captured pod's listeners, opened inside its network namespace (reference/ztunnel.md §1.6
 * "Per-pod proxy start"): 15001 outbound capture, 15006 plaintext inbound (transparent, for TPROXY),
 * 15008 inbound HBONE with the pod's own certificate. One set per address family the pod has. All
 * carry the agent's mark and SO_REUSEPORT, so a restarted agent can bind beside a draining one.
 */
import { closeSync } from 'node:fs';
import type { Server, Socket } from 'node:net';
import { describeError } from '../../core/errors.ts';
import { formatHostPort, TCP_KEEPALIVE_MS } from '../../core/hbone/protocol.ts';
import { HboneServer } from '../../core/hbone/server.ts';
import type { WorkloadCertificate } from '../../core/identity/certificate.ts';
import { ipFamily } from '../../core/ip.ts';
import type { Logger } from '../../core/log.ts';
import { listenInNetns, openTcpSocket, originalDestination, type IpFamily } from '../../core/netns/index.ts';
import type { Workload } from '../../core/xds/model.ts';
import type { ProxyContext } from '../proxy/context.ts';
import { handleInbound } from '../proxy/inbound.ts';
import { handleInboundPlaintext } from '../proxy/inbound-plaintext.ts';
import { handleCapturedOutbound } from '../proxy/outbound.ts';
import { AGENT_MARK, CAPTURE_PORTS } from './rules.ts';

const WILDCARD = { 4: '0.0.0.0', 6: '::' } as const;
/** Node's default listen backlog. */
const LISTEN_BACKLOG = 511;

/** What the manager needs of a pod's listeners (a fake stands in for it in unit tests). */
export interface PodListeners {
  /** The workload the listeners speak for (its identity is the certificate's). */
  readonly workload: Workload;
  /** `ip:port` of every listener, for the admin page and tests. */
  listeners(): string[];
  /** Presents a renewed certificate to new HBONE connections. */
  setCertificate(cert: WorkloadCertificate): void;
  /**
   * Stops accepting; open connections get up to `deadlineMs` to finish, then are cut. 0 cuts them
   * at once (a deleted pod's, as ztunnel drains a deleted pod immediately).
   */
  close(deadlineMs: number): Promise<void>;
}

/**
 * The pod's workload as the mesh knows it now (labels and services may have changed since capture),
 * with the pod's own addresses while the mesh config has none for it yet: a pod is captured as soon
 * as it is scheduled (its CNI ADD), before the mesh config learns its IP.
 */
export function currentWorkload(ctx: ProxyContext, pod: Workload): Workload {
  const now = ctx.state().workloadByUid(pod.uid) ?? pod;
  return now.addresses.length > 0 ? now : { ...now, addresses: pod.addresses };
}

export class PodProxy implements PodListeners {
  readonly workload: Workload;
  private readonly hbone: HboneServer[];
  private readonly plain: Server[];
  /** Connections accepted on the plain listeners, so a drain can cut them at its deadline. */
  private readonly sockets: Set<Socket>;

  private constructor(workload: Workload, hbone: HboneServer[], plain: Server[], sockets: Set<Socket>) {
    this.workload = workload;
    this.hbone = hbone;
    this.plain = plain;
    this.sockets = sockets;
  }

  /**
   * Opens every listener for `workload`, whose `addresses` (the pod's, from the CNI or the mesh
   * config) decide the address families; on any failure closes those already open and throws.
   */
  static async start(
    ctx: ProxyContext,
    workload: Workload,
    netnsPath: string,
    certificate: WorkloadCertificate,
    log: Logger,
  ): Promise<PodProxy> {
    const families = [...new Set(workload.addresses.map((a) => ipFamily(a)))].filter(
      (f): f is IpFamily => f === 4 || f === 6,
    );
    const hbone: HboneServer[] = [];
    const plain: Server[] = [];
    const sockets = new Set<Socket>();
    const track = (socket: Socket) => {
      socket.setNoDelay(true);
      socket.setKeepAlive(true, TCP_KEEPALIVE_MS);
      socket.on('error', () => undefined);
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    };
    const listen = (family: IpFamily, port: number, transparent: boolean) =>
      listenInNetns(netnsPath, {
        family,
        address: WILDCARD[family],
        port,
        transparent,
        mark: AGENT_MARK,
        reusePort: true,
        allowHalfOpen: true,
        ...(family === 6 && { v6Only: true }),
      });
    try {
      for (const family of families) {
        const outbound = await listen(family, CAPTURE_PORTS.outbound, false);
        plain.push(outbound);
        outbound.on('connection', (socket: Socket) => {
          track(socket);
          onOutbound(ctx, workload, socket, log);
        });
        const inbound = await listen(family, CAPTURE_PORTS.inboundPlaintext, true);
        plain.push(inbound);
        inbound.on('connection', (socket: Socket) => {
          track(socket);
          void handleInboundPlaintext(ctx, socket, currentWorkload(ctx, workload));
        });
        // The HBONE server (TLS and HTTP/2 on top) adopts a listening fd made in the netns.
        const fd = openTcpSocket(netnsPath, {
          family,
          reuseAddr: true,
          reusePort: true,
          mark: AGENT_MARK,
          ...(family === 6 && { v6Only: true }),
          bind: { address: WILDCARD[family], port: CAPTURE_PORTS.inboundHbone },
          listen: LISTEN_BACKLOG,
        });
        let server: HboneServer;
        try {
          server = await HboneServer.start({
            host: WILDCARD[family],
            port: CAPTURE_PORTS.inboundHbone,
            fd,
            certificate,
            trustDomain: ctx.trustDomain,
            log: log.child({ scope: 'hbone' }),
            onRequest: (req) => void handleInbound(ctx, req),
          });
        } catch (err) {
          // Not adopted (a bad certificate, or the fd could not be wrapped): still ours to close,
          // or it would listen in the pod with nobody accepting.
          try {
            closeSync(fd);
          } catch {
            // closed with a handle that did take it
          }
          throw err;
        }
        hbone.push(server);
      }
    } catch (err) {
      await Promise.all([...hbone.map((h) => h.close(0)), ...plain.map((s) => closeServer(s, sockets, 0))]);
      throw err;
    }
    return new PodProxy(workload, hbone, plain, sockets);
  }

  listeners(): string[] {
    return [...this.plain.map((s) => s.address()), ...this.hbone.map((h) => h.address())].flatMap((a) =>
      a && typeof a === 'object' ? [formatHostPort(a.address, a.port)] : [],
    );
  }

  setCertificate(cert: WorkloadCertificate): void {
    for (const h of this.hbone) h.setCertificate(cert);
  }

  /** HBONE sessions get GOAWAY; every connection gets up to `deadlineMs`, then is cut. */
  async close(deadlineMs: number): Promise<void> {
    await Promise.all([
      ...this.hbone.map((h) => h.close(deadlineMs)),
      ...this.plain.map((s) => closeServer(s, this.sockets, deadlineMs)),
    ]);
  }
}

function onOutbound(ctx: ProxyContext, pod: Workload, socket: Socket, log: Logger): void {
  let target;
  try {
    target = originalDestination(socket);
  } catch (err) {
    log.warn({ src: socket.remoteAddress, error: describeError(err) }, 'no original destination, closing');
    socket.resetAndDestroy();
    return;
  }
  void handleCapturedOutbound(ctx, socket, currentWorkload(ctx, pod), {
    ip: target.address,
    port: target.port,
  });
}

/**
 * Stops `s` accepting and resolves once it has closed, which Node waits for until every connection
 * it accepted has ended: those still open at the deadline are destroyed, so an idle connection
 * cannot hold a drain (and an agent's shutdown) forever.
 */
function closeServer(s: Server, sockets: Set<Socket>, deadlineMs: number): Promise<void> {
  const closed = new Promise<void>((resolve) => s.close(() => resolve()));
  const cut = () => {
    for (const socket of sockets) socket.destroy();
  };
  if (deadlineMs <= 0) {
    cut();
    return closed;
  }
  const timer = setTimeout(cut, deadlineMs);
  return closed.finally(() => clearTimeout(timer));
}
