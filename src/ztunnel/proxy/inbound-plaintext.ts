/**
 * Inbound plaintext (reference/ztunnel.md §1.5 "Inbound plaintext (15006)"): a connection from outside
 * the mesh that the pod's TPROXY rule delivered to the agent. The socket's local address is where the
 * client was going (TPROXY keeps it). L4 policy runs with no peer identity, so PeerAuthentication
 * STRICT (a DENY of connections without one) refuses it; there is no status channel, so a refusal
 * just closes the connection.
 */
import type { Socket } from 'node:net';
import { describeError } from '../../core/errors.ts';
import { spliceTcp } from '../../core/hbone/copy.ts';
import { formatHostPort, ILLEGAL_PORTS } from '../../core/hbone/protocol.ts';
import { ResponseFlag } from '../../core/metrics.ts';
import { evaluateL4, type L4Connection } from '../../core/policy/l4.ts';
import { workloadSpiffe, type Workload } from '../../core/xds/model.ts';
import type { ProxyContext } from './context.ts';
import { ConnectionRecord, Reporter } from './telemetry.ts';
import { connectTcp } from './upstream.ts';

/**
 * `local` is the pod's workload as the mesh knows it now, with the pod's own addresses if the mesh
 * config has none for it yet (inpod/pod-proxy.ts `currentWorkload`).
 */
export async function handleInboundPlaintext(
  ctx: ProxyContext,
  client: Socket,
  local: Workload,
): Promise<void> {
  const dstIp = client.localAddress ?? '';
  const dstPort = client.localPort ?? 0;
  const srcIp = client.remoteAddress ?? '';
  const state = ctx.state();
  const facts = {
    reporter: Reporter.Destination,
    src: formatHostPort(srcIp, client.remotePort ?? 0),
    dst: formatHostPort(dstIp, dstPort),
    srcWorkload: undefined,
    srcIdentity: undefined,
    dstWorkload: local,
    dstIdentity: workloadSpiffe(local),
    dstService: undefined,
    mtls: false,
  } as const;
  const refuse = (flag: ResponseFlag, reason: string, policy?: string) => {
    client.resetAndDestroy();
    new ConnectionRecord(ctx.metrics, ctx.accessLog, facts).fail(flag, reason, policy);
  };
  // A connection to one of the agent's own ports would loop back into it.
  if (ILLEGAL_PORTS.has(dstPort)) return refuse(ResponseFlag.Connect, `port ${dstPort} is reserved`);
  if (!local.addresses.includes(dstIp))
    return refuse(ResponseFlag.Connect, `${dstIp} is not an address of ${local.namespace}/${local.name}`);

  const conn: L4Connection = { srcIp, dstIp, dstPort, srcIdentity: undefined };
  const decision = evaluateL4(state.policiesFor(local), conn);
  if (!decision.allowed) return refuse(ResponseFlag.Deny, decision.reason, decision.policy);

  let upstream: Socket;
  try {
    upstream = await connectTcp(ctx.dialer, dstIp, dstPort, { pod: dstIp }, ctx.connectTimeoutMs);
  } catch (err) {
    return refuse(ResponseFlag.Connect, describeError(err));
  }
  const record = new ConnectionRecord(ctx.metrics, ctx.accessLog, facts);
  const untrack = ctx.connections.add({
    direction: 'inbound',
    l4: { workload: local, conn },
    view: () => ({
      src: facts.src,
      dst: formatHostPort(dstIp, dstPort),
      srcIdentity: undefined,
      dstIdentity: facts.dstIdentity,
      bytesSent: client.bytesRead,
      bytesReceived: client.bytesWritten,
    }),
    destroy: () => {
      client.destroy();
      upstream.destroy();
    },
  });
  const result = await spliceTcp(client, upstream);
  untrack();
  record.finish({
    flag: ResponseFlag.None,
    bytesReceived: client.bytesRead,
    bytesSent: client.bytesWritten,
    error: result.error ? describeError(result.error) : undefined,
  });
}
