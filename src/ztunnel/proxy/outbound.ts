import { randomBytes } from 'node:crypto';
import { constants, type ClientHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import { AmbitError, describeError, ErrorCode } from '../../core/errors.ts';
import { spliceTcp, spliceTunnel } from '../../core/hbone/copy.ts';
import {
  formatForwarded,
  formatHostPort,
  formatTraceparent,
  HboneStatus,
} from '../../core/hbone/protocol.ts';
import { ResponseFlag } from '../../core/metrics.ts';
import { formatSpiffe } from '../../core/identity/spiffe.ts';
import { workloadIdentity, workloadSpiffe, type Workload } from '../../core/xds/model.ts';
import type { ProxyContext } from './context.ts';
import { routeOutbound, type OutboundRoute, type OutboundTarget } from './route.ts';
import { SocksReply } from './socks5-protocol.ts';
import { ConnectionRecord, Reporter } from './telemetry.ts';
import { baggageOf, connectTcp } from './upstream.ts';

export type OutboundOpen =
  | {
      readonly ok: true;
      readonly route: Extract<OutboundRoute, { kind: 'hbone' | 'tcp' }>;
      readonly upstream: ClientHttp2Stream | Socket;
      readonly record: ConnectionRecord;
    }
  | { readonly ok: false; readonly reply: SocksReply; readonly reason: string };

/**
 * Decides the route for a connection from `source` and opens the upstream side: an HBONE stream that
 * the peer answered 200, or a TCP connection. The caller tells its client, then calls `runOutbound`.
 */
export async function openOutbound(
  ctx: ProxyContext,
  source: Workload,
  client: { ip: string; port: number },
  target: OutboundTarget,
): Promise<OutboundOpen> {
  const route = routeOutbound(ctx.state(), source, target);
  if (route.kind === 'unreachable') return fail(ctx, route.reason, SocksReply.HostUnreachable, target);
  if (route.kind === 'refused') return fail(ctx, route.reason, SocksReply.NotAllowed, target);
  const srcIdentity = workloadIdentity(source);
  const record = new ConnectionRecord(ctx.metrics, ctx.accessLog, {
    reporter: Reporter.Source,
    src: formatHostPort(client.ip, client.port),
    dst: route.kind === 'hbone' ? route.authority : formatHostPort(route.dstIp, route.dstPort),
    hboneAddr: route.kind === 'hbone' ? formatHostPort(route.dstIp, route.dstPort) : undefined,
    srcWorkload: source,
    srcIdentity,
    dstWorkload: route.workload,
    dstIdentity: route.workload ? workloadSpiffe(route.workload) : undefined,
    dstService: route.service,
    mtls: route.kind === 'hbone',
  });
  try {
    if (route.kind === 'hbone') {
      const r = await ctx.pool.connect(
        {
          srcIdentity,
          srcIp: source.addresses[0],
          dstIp: route.dstIp,
          dstPort: route.dstPort,
          expectedIdentities: route.expectedIdentities,
        },
        {
          authority: route.authority,
          headers: {
            baggage: baggageOf(source),
            forwarded: formatForwarded(client.ip, client.port, route.service?.hostname),
            traceparent: formatTraceparent(traceRandom()),
          },
        },
      );
      if (r.ok) return { ok: true, route, upstream: r.stream, record };
      const { reply, flag } = classifyStatus(r.status);
      record.fail(flag, r.reason);
      return { ok: false, reply, reason: r.reason };
    }
    const socket = await connectTcp(
      ctx.dialer,
      route.dstIp,
      route.dstPort,
      { pod: source.addresses[0] },
      ctx.connectTimeoutMs,
    );
    return { ok: true, route, upstream: socket, record };
  } catch (err) {
    const { reply, flag } = classify(err);
    record.fail(flag, describeError(err));
    return { ok: false, reply, reason: describeError(err) };
  }
}

/** Copies bytes between the client and the opened upstream, then records the connection. */
export async function runOutbound(
  ctx: ProxyContext,
  client: Socket,
  open: Extract<OutboundOpen, { ok: true }>,
  /** Client bytes already used by a handshake (SOCKS), not counted as traffic. */
  handshake: { read: number; written: number } = { read: 0, written: 0 },
): Promise<void> {
  const { facts } = open.record;
  const untrack = ctx.connections.add({
    direction: 'outbound',
    view: () => ({
      src: facts.src,
      dst: facts.dst,
      srcIdentity: facts.srcIdentity && formatSpiffe(facts.srcIdentity),
      dstIdentity: facts.dstIdentity,
      bytesSent: client.bytesRead - handshake.read,
      bytesReceived: client.bytesWritten - handshake.written,
    }),
    destroy: (reason) => {
      client.destroy();
      // CANCEL tells the peer the tunnel is gone without calling it an internal error.
      if (open.route.kind === 'hbone') (open.upstream as ClientHttp2Stream).close(constants.NGHTTP2_CANCEL);
      else open.upstream.destroy(new AmbitError(ErrorCode.Shutdown, reason));
    },
  });
  const result =
    open.route.kind === 'hbone'
      ? await spliceTunnel(client, open.upstream as ClientHttp2Stream)
      : await spliceTcp(client, open.upstream as Socket);
  untrack();
  open.record.finish({
    flag: ResponseFlag.None,
    bytesReceived: client.bytesRead - handshake.read,
    bytesSent: client.bytesWritten - handshake.written,
    error: result.error ? describeError(result.error) : undefined,
  });
}

/**
 * A connection the pod's capture rules sent to the outbound listener (15001): its original
 * destination is the target, the pod is the source. Without a status channel, a refusal resets the
 * client's connection (as a refused connect would).
 */
export async function handleCapturedOutbound(
  ctx: ProxyContext,
  client: Socket,
  source: Workload,
  target: { ip: string; port: number },
): Promise<void> {
  const open = await openOutbound(
    ctx,
    source,
    { ip: client.remoteAddress ?? '', port: client.remotePort ?? 0 },
    { kind: 'ip', ip: target.ip, port: target.port },
  );
  if (!open.ok) {
    client.resetAndDestroy();
    return;
  }
  // The application gave up while the tunnel was being opened.
  if (client.destroyed) return abandonOutbound(open);
  await runOutbound(ctx, client, open);
}

/** The client went away while its upstream was being opened: close that, and record it. */
export function abandonOutbound(open: Extract<OutboundOpen, { ok: true }>): void {
  if (open.route.kind === 'hbone') (open.upstream as ClientHttp2Stream).close(constants.NGHTTP2_CANCEL);
  else open.upstream.destroy();
  open.record.fail(ResponseFlag.None, 'client went away');
}

function fail(ctx: ProxyContext, reason: string, reply: SocksReply, target: OutboundTarget): OutboundOpen {
  const dst =
    target.kind === 'ip' ? formatHostPort(target.ip, target.port) : `${target.hostname}:${target.port}`;
  ctx.log.info({ dst, error: reason }, 'outbound connection refused');
  return { ok: false, reply, reason };
}

/** SOCKS reply and response flag for an HBONE refusal. */
function classifyStatus(status: number): { reply: SocksReply; flag: ResponseFlag } {
  if (status === HboneStatus.Unauthorized) return { reply: SocksReply.NotAllowed, flag: ResponseFlag.Deny };
  if (status === HboneStatus.Unavailable)
    return { reply: SocksReply.ConnectionRefused, flag: ResponseFlag.Connect };
  return { reply: SocksReply.GeneralFailure, flag: ResponseFlag.Connect };
}

/** SOCKS reply and response flag for a transport failure, by the error's code. */
function classify(err: unknown): { reply: SocksReply; flag: ResponseFlag } {
  const code = err instanceof AmbitError ? err.code : undefined;
  const errno = (err as { cause?: { code?: unknown } }).cause?.code;
  if (code === ErrorCode.HboneTimeout)
    return { reply: SocksReply.HostUnreachable, flag: ResponseFlag.NetworkPolicy };
  if (code === ErrorCode.HboneTlsFailed)
    return { reply: SocksReply.GeneralFailure, flag: ResponseFlag.TlsFailure };
  if (errno === 'ECONNREFUSED') return { reply: SocksReply.ConnectionRefused, flag: ResponseFlag.Connect };
  return { reply: SocksReply.GeneralFailure, flag: ResponseFlag.Connect };
}

// Random bytes for traceparent ids, drawn in bulk: one randomBytes call per connection was ~4 % of
// the client agent's CPU per short connection (bench/, cpu profile).
const TRACE_BYTES = 24;
let tracePool = Buffer.alloc(0);
let traceOffset = 0;
function traceRandom(): Uint8Array {
  if (traceOffset + TRACE_BYTES > tracePool.length) {
    tracePool = randomBytes(TRACE_BYTES * 256);
    traceOffset = 0;
  }
  traceOffset += TRACE_BYTES;
  return tracePool.subarray(traceOffset - TRACE_BYTES, traceOffset);
}
