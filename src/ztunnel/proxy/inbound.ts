/**
 * Inbound HBONE (reference/ztunnel.md §1.5 "Inbound HBONE"): validate the CONNECT, apply L4 policy,
 * connect to the application, and answer 200 only after that connect succeeded.
 */
import { formatHostPort, HboneStatus, ILLEGAL_PORTS } from '../../core/hbone/protocol.ts';
import type { HboneRequest } from '../../core/hbone/server.ts';
import { describeError } from '../../core/errors.ts';
import { formatSpiffe, sameIdentity } from '../../core/identity/spiffe.ts';
import { ResponseFlag } from '../../core/metrics.ts';
import { evaluateL4, type L4Connection } from '../../core/policy/l4.ts';
import { workloadIdentity, workloadSpiffe, type Service, type Workload } from '../../core/xds/model.ts';
import type { ProxyContext } from './context.ts';
import { baggageOf, connectTcp } from './upstream.ts';
import { ConnectionRecord, Reporter } from './telemetry.ts';

type Target =
  { ok: true; port: number; service: Service | undefined } | { ok: false; status: 400 | 503; reason: string };

export async function handleInbound(ctx: ProxyContext, req: HboneRequest): Promise<void> {
  const state = ctx.state();
  const local = state.workloadByIp(req.localAddress, ctx.network);
  const srcWorkload = state.workloadByIp(req.remoteAddress, ctx.network);
  // The source workload is only believed if its identity is the one the peer proved.
  const src =
    srcWorkload && sameIdentity(workloadIdentity(srcWorkload), req.peerIdentity) ? srcWorkload : undefined;
  const facts = {
    reporter: Reporter.Destination,
    src: formatHostPort(req.remoteAddress, req.remotePort),
    dst: req.rawAuthority,
    srcWorkload: src,
    srcIdentity: req.peerIdentity,
    dstWorkload: local,
    dstIdentity: local ? workloadSpiffe(local) : undefined,
    dstService: undefined,
    mtls: true,
  } as const;

  const refuse = (status: 400 | 401 | 503, flag: ResponseFlag, reason: string, policy?: string) => {
    req.reject(status);
    new ConnectionRecord(ctx.metrics, ctx.accessLog, facts).fail(flag, reason, policy);
  };

  if (!local || local.node !== ctx.nodeName) {
    return refuse(HboneStatus.Unavailable, ResponseFlag.Connect, `no local workload at ${req.localAddress}`);
  }
  const target = resolveTarget(ctx, local, req);
  if (!target.ok) return refuse(target.status, ResponseFlag.Connect, target.reason);

  const conn: L4Connection = {
    srcIp: req.remoteAddress,
    dstIp: req.localAddress,
    dstPort: target.port,
    srcIdentity: req.peerIdentity,
  };
  const decision = evaluateL4(state.policiesFor(local), conn);
  if (!decision.allowed) {
    return refuse(HboneStatus.Unauthorized, ResponseFlag.Deny, decision.reason, decision.policy);
  }

  let upstream;
  try {
    upstream = await connectTcp(
      ctx.dialer,
      req.localAddress,
      target.port,
      { pod: req.localAddress },
      ctx.connectTimeoutMs,
    );
  } catch (err) {
    return refuse(HboneStatus.Unavailable, ResponseFlag.Connect, describeError(err));
  }
  const record = new ConnectionRecord(ctx.metrics, ctx.accessLog, { ...facts, dstService: target.service });
  const untrack = ctx.connections.add({
    direction: 'inbound',
    l4: { workload: local, conn },
    view: () => ({
      src: facts.src,
      dst: formatHostPort(conn.dstIp, conn.dstPort),
      srcIdentity: formatSpiffe(req.peerIdentity),
      dstIdentity: facts.dstIdentity,
      bytesSent: upstream.bytesWritten,
      bytesReceived: upstream.bytesRead,
    }),
    destroy: () => upstream.destroy(),
  });
  const result = await req.accept(upstream, {
    baggage: baggageOf(local),
  });
  untrack();
  record.finish({
    flag: ResponseFlag.None,
    // From the application's side: what we wrote to it came from the client.
    bytesReceived: upstream.bytesWritten,
    bytesSent: upstream.bytesRead,
    error: result.error ? describeError(result.error) : undefined,
  });
}

function resolveTarget(ctx: ProxyContext, local: Workload, req: HboneRequest): Target {
  const a = req.authority;
  if (a.kind === 'ip') {
    // The tunnel must be for the pod it arrived at (reference/ztunnel.md §1.5 step 4).
    if (a.ip !== req.localAddress) {
      return {
        ok: false,
        status: HboneStatus.BadRequest,
        reason: `authority ${a.ip} is not the local address ${req.localAddress}`,
      };
    }
    if (ILLEGAL_PORTS.has(a.port))
      return { ok: false, status: HboneStatus.Unavailable, reason: `port ${a.port} is reserved` };
    return { ok: true, port: a.port, service: undefined };
  }
  const service = ctx.state().serviceByHostname(a.hostname, local.namespace);
  if (!service)
    return { ok: false, status: HboneStatus.Unavailable, reason: `unknown service ${a.hostname}` };
  const port =
    local.services.get(`${service.namespace}/${service.hostname}`)?.get(a.port) ?? service.ports.get(a.port);
  if (port === undefined || ILLEGAL_PORTS.has(port)) {
    return {
      ok: false,
      status: HboneStatus.Unavailable,
      reason: `service ${a.hostname} has no port ${a.port}`,
    };
  }
  return { ok: true, port, service };
}
