/**
 * One captured pod's listeners, opened inside its network namespace (reference/ztunnel.md §1.6
 * "Per-pod proxy start"): 15001 outbound capture, 15006 plaintext inbound (transparent, for TPROXY),
 * 15008 inbound HBONE with the pod's own certificate. One set per address family the pod has. All
 * carry the agent's mark and SO_REUSEPORT, so a restarted agent can bind beside a draining one.
 */
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

export class PodProxy {
  /** The workload the listeners speak for (its identity is the certificate's). */
  readonly workload: Workload;
  private readonly hbone: HboneServer[];
  private readonly plain: Server[];

  private constructor(workload: Workload, hbone: HboneServer[], plain: Server[]) {
    this.workload = workload;
    this.hbone = hbone;
    this.plain = plain;
  }

  /** Opens every listener; on any failure closes those already open and throws. */
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
        outbound.on('connection', (socket: Socket) => onOutbound(ctx, workload, socket, log));
        const inbound = await listen(family, CAPTURE_PORTS.inboundPlaintext, true);
        plain.push(inbound);
        inbound.on('connection', (socket: Socket) => {
          prepare(socket);
          void handleInboundPlaintext(ctx, socket, workload);
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
        hbone.push(
          await HboneServer.start({
            host: WILDCARD[family],
            port: CAPTURE_PORTS.inboundHbone,
            fd,
            certificate,
            trustDomain: ctx.trustDomain,
            log: log.child({ scope: 'hbone' }),
            onRequest: (req) => void handleInbound(ctx, req),
          }),
        );
      }
    } catch (err) {
      await Promise.all([...hbone.map((h) => h.close(0)), ...plain.map((s) => closeServer(s))]);
      throw err;
    }
    return new PodProxy(workload, hbone, plain);
  }

  /** `ip:port` of every listener, for the admin page and tests. */
  listeners(): string[] {
    return [...this.plain.map((s) => s.address()), ...this.hbone.map((h) => h.address())].flatMap((a) =>
      a && typeof a === 'object' ? [formatHostPort(a.address, a.port)] : [],
    );
  }

  setCertificate(cert: WorkloadCertificate): void {
    for (const h of this.hbone) h.setCertificate(cert);
  }

  /** Stops accepting; HBONE sessions get GOAWAY and up to `deadlineMs` to finish. */
  async close(deadlineMs: number): Promise<void> {
    await Promise.all([
      ...this.hbone.map((h) => h.close(deadlineMs)),
      ...this.plain.map((s) => closeServer(s)),
    ]);
  }
}

function onOutbound(ctx: ProxyContext, fallback: Workload, socket: Socket, log: Logger): void {
  prepare(socket);
  let target;
  try {
    target = originalDestination(socket);
  } catch (err) {
    log.warn({ src: socket.remoteAddress, error: describeError(err) }, 'no original destination, closing');
    socket.resetAndDestroy();
    return;
  }
  // The pod's workload as the mesh knows it now (labels and services may have changed).
  const source = ctx.state().workloadByUid(fallback.uid) ?? fallback;
  void handleCapturedOutbound(ctx, socket, source, { ip: target.address, port: target.port });
}

function prepare(socket: Socket): void {
  socket.setNoDelay(true);
  socket.setKeepAlive(true, TCP_KEEPALIVE_MS);
  socket.on('error', () => undefined);
}

function closeServer(s: Server): Promise<void> {
  return new Promise((resolve) => s.close(() => resolve()));
}
