/**
 * Helpers both proxy directions share: plain TCP connects with a deadline, and the `baggage` that
 * describes a workload.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { AmbitError, describeError, ErrorCode } from '../../core/errors.ts';
import { formatBaggage, formatHostPort, TCP_KEEPALIVE_MS } from '../../core/hbone/protocol.ts';
import type { Workload } from '../../core/xds/model.ts';
import type { DialFrom, Dialer } from './context.ts';

/** Dials from the agent's own network namespace (local mode, and anything not for a captured pod). */
export const hostDialer: Dialer = {
  dial: (host, port, from) =>
    netConnect({
      host,
      port,
      localAddress: from.localAddress,
      allowHalfOpen: true,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: TCP_KEEPALIVE_MS,
    }),
};

/**
 * A TCP connection (half-open allowed, no Nagle, keepalive on) that resolves once connected; a
 * failure is an AmbitError whose `cause` carries the errno (`ECONNREFUSED`, …).
 */
export function connectTcp(
  dialer: Dialer,
  host: string,
  port: number,
  from: DialFrom,
  timeoutMs: number,
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const where = formatHostPort(host, port);
    let s: Socket;
    try {
      s = dialer.dial(host, port, from);
    } catch (err) {
      reject(
        new AmbitError(ErrorCode.UpstreamConnectFailed, `connect to ${where} failed: ${describeError(err)}`, {
          cause: err,
        }),
      );
      return;
    }
    const timer = setTimeout(() => {
      s.destroy();
      reject(new AmbitError(ErrorCode.UpstreamConnectFailed, `connect to ${where} timed out`));
    }, timeoutMs);
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(
        new AmbitError(ErrorCode.UpstreamConnectFailed, `connect to ${where} failed: ${describeError(err)}`, {
          cause: err,
        }),
      );
    };
    s.once('error', onError);
    s.once('connect', () => {
      clearTimeout(timer);
      s.off('error', onError);
      resolve(s);
    });
  });
}

const baggages = new WeakMap<Workload, string>();

/** The `baggage` header describing a workload (reference/ztunnel.md §2.3), built once per workload. */
export function baggageOf(w: Workload): string {
  let b = baggages.get(w);
  if (b === undefined) {
    b = formatBaggage({
      cluster: w.clusterId,
      namespace: w.namespace,
      workloadType: w.workloadType,
      workloadName: w.workloadName || w.name,
      service: w.canonicalName,
      version: w.canonicalRevision,
    });
    baggages.set(w, b);
  }
  return b;
}
