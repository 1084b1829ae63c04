/**
 * Workload-addressed tunnels (issue 5): a client's agent sends traffic for the IP of a pod bound to
 * this waypoint (waypoint-for `workload` or `all`) with `:authority` `<podIP>:<port>`. As istiod's
 * waypoint chooses between its `direct-http` and `direct-tcp` filter chains with http_inspector,
 * the tunnel is answered 200 at once (its bytes are needed to decide), and the client's first bytes
 * are sniffed (sniff.ts):
 *
 * - HTTP/1.1 or the h2 preface: served like a service's HTTP port, through the direct-http
 *   listener — the waypoint's own AuthorizationPolicies, request metrics, an access-log line per
 *   request — and upstream over HBONE with the waypoint's identity to `<podIP>:<port>` (the ORIGINAL_DST
 *   encap cluster; the endpoint's workload gives the metrics their destination labels);
 * - anything else: the direct-tcp listener — its network RBAC filters (the same policies, with
 *   their HTTP-only parts handled as istiod handles them for TCP), then its tcp_proxy, to the same
 *   destination.
 *
 * Server-first protocols send nothing until the server speaks: when no decision has come within the
 * detection timeout (AMBIT_PROTOCOL_DETECTION_TIMEOUT, 1 s by default), or the client half-closes
 * first, the tunnel is TCP and the server's greeting then flows. So a server-first protocol waits
 * that long for its first byte, and a client that sends HTTP only after the timeout is carried as
 * TCP, where only the connection-level parts of policies apply — as with Envoy's
 * listener_filters_timeout. Since the CONNECT has already been answered, a TCP connection that
 * policy denies, or whose upstream cannot be had, is reset (CONNECT_ERROR) rather than refused with
 * 401 or 503.
 */
import { constants as h2 } from 'node:http2';
import type { ServerHttp2Stream } from 'node:http2';
import type { Clock } from '../core/clock.ts';
import type { HboneRequest } from '../core/hbone/server.ts';
import type { Logger } from '../core/log.ts';
import type { L7Listener } from '../core/xds/l7-model.ts';
import type { Forwarder } from './forwarder.ts';
import { serveHttp, type IngressOptions } from './http-ingress.ts';
import { sniffProtocol } from './sniff.ts';
import type { DirectContext } from './inbound.ts';
import type { TcpDownstream, TcpProxy } from './tcp-proxy.ts';

export interface DirectDeps {
  readonly forwarder: Forwarder;
  readonly tcpProxy: TcpProxy;
  readonly clock: Clock;
  readonly log: Logger;
  /** No decision within this: TCP (server-first protocols). */
  readonly detectionTimeoutMs: number;
  readonly ingress: IngressOptions;
  /**
   * Registers an open tunnel's stop function for the drain (HTTP: GOAWAY or close after the request
   * in flight; while sniffing: end it) until its stream closes or the returned function is called.
   */
  readonly track: (stop: () => void, stream: ServerHttp2Stream) => () => void;
}

/** Serves one admitted workload-addressed tunnel. */
export function serveDirect(
  req: HboneRequest,
  ctx: DirectContext,
  listeners: { readonly http: L7Listener; readonly tcp: L7Listener },
  deps: DirectDeps,
): void {
  const stream = req.acceptStream();
  if (!stream) return;
  const chunks: Buffer[] = [];
  let decided = false;
  let stopTimer: () => void = () => undefined;
  let untrackSniffing: () => void = () => undefined;
  const where = { src: `${req.remoteAddress}:${req.remotePort}`, dst: req.rawAuthority };

  const decide = (protocol: 'http' | 'tcp', why: string) => {
    if (decided) return;
    decided = true;
    stopTimer();
    // The HTTP side registers itself below; a TCP connection is the TCP proxy's to drain.
    untrackSniffing();
    stream.off('readable', onReadable);
    const seen = Buffer.concat(chunks);
    // Back in front of the stream for whoever reads it next (before any 'end' is emitted).
    if (seen.length > 0 && !stream.readableEnded) stream.unshift(seen);
    deps.log.debug({ ...where, protocol, why }, 'workload tunnel sniffed');
    if (protocol === 'http') {
      const stop = serveHttp(
        stream,
        (hreq, hres, p) => deps.forwarder.handle(ctx, hreq, hres, p),
        deps.ingress,
      );
      deps.track(stop, stream);
      return;
    }
    deps.tcpProxy.handle(acceptedDownstream(req, stream), ctx, listeners.tcp);
  };

  const onReadable = (): void => {
    const before = chunks.length;
    let chunk: Buffer | null;
    while ((chunk = stream.read() as Buffer | null) !== null) chunks.push(chunk);
    const sniffed = sniffProtocol(Buffer.concat(chunks));
    if (sniffed === 'h2' || sniffed === 'http1') return decide('http', sniffed);
    if (sniffed === 'tcp') return decide('tcp', 'not http');
    // 'readable' with nothing new is the end of the client's bytes (its half-close): decide now,
    // while what was read can still be put back — in this tick, before 'end' is emitted.
    if ((chunks.length === before && before > 0) || stream.state?.remoteClose)
      decide('tcp', 'client closed before a decision');
  };

  untrackSniffing = deps.track(() => stream.close(h2.NGHTTP2_NO_ERROR), stream);
  stream.on('readable', onReadable);
  // With nothing read there is nothing to put back; the TCP side sees the end.
  stream.once('end', () => decide('tcp', 'client closed before a decision'));
  stopTimer = deps.clock.setTimer(
    () => decide('tcp', `no decision within ${deps.detectionTimeoutMs} ms`),
    deps.detectionTimeoutMs,
  );
  stream.once('close', stopTimer);
}

/**
 * The tunnel as tcp-proxy.ts takes it, after its CONNECT was answered: accepting hands over the
 * stream; refusing (no upstream) can no longer send a status, so it resets the stream with
 * CONNECT_ERROR (RFC 9113 §8.5), which the client's agent turns into a closed connection.
 */
function acceptedDownstream(req: HboneRequest, stream: ServerHttp2Stream): TcpDownstream {
  return {
    rawAuthority: req.rawAuthority,
    authority: req.authority,
    reject: () => {
      if (!stream.destroyed && !stream.closed) stream.close(h2.NGHTTP2_CONNECT_ERROR);
    },
    acceptStream: () => (stream.destroyed || stream.closed ? undefined : stream),
  };
}
