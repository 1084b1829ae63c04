import type { Http2Session } from 'node:http2';
import { H2 } from './protocol.ts';

/**
 * Sends an HTTP/2 PING every `intervalMs`; a PING unanswered for `timeoutMs` closes the session
 * (reference/ztunnel.md §2.2). Returns a function that stops it; it also stops when the session closes.
 */
export function startKeepalive(
  session: Http2Session,
  onTimeout: () => void,
  intervalMs: number = H2.pingIntervalMs,
  timeoutMs: number = H2.pingTimeoutMs,
): () => void {
  let outstandingSince: number | undefined;
  const timer = setInterval(
    () => {
      if (session.destroyed || session.closed) return stop();
      if (outstandingSince !== undefined) {
        if (Date.now() - outstandingSince >= timeoutMs) {
          stop();
          onTimeout();
        }
        return;
      }
      outstandingSince = Date.now();
      const sent = session.ping((err) => {
        if (!err) outstandingSince = undefined;
      });
      if (!sent) outstandingSince = undefined;
    },
    Math.min(intervalMs, timeoutMs),
  );
  timer.unref();
  const stop = () => clearInterval(timer);
  session.once('close', stop);
  return stop;
}
