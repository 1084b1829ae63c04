/**
 * Open-loop HTTP/1.1 for `npm run bench:waypoint`: GETs at a fixed rate over kept-alive connections,
 * latency measured as load.ts's {@link openLoop} measures the echo (from the tick that issued the
 * request, so queueing counts). wrk is closed-loop and cannot hold a rate; h2load can (`--rps`) but
 * prints no percentiles. Responses are framed by Content-Length, which every path here keeps (the
 * bench server sets it; the proxies and the waypoint pass it on); anything else fails the connection.
 */
import {
  dial,
  openLoop,
  type LatencyResult,
  type OpenLoopOptions,
  type ResponseFramer,
  type Target,
} from './load.ts';

/** The most header bytes a response may have before it counts as malformed. */
const MAX_HEAD_BYTES = 64 * 1024;
const HEAD_END = Buffer.from('\r\n\r\n');

/**
 * Counts complete HTTP/1.1 responses in a byte stream: a head up to the blank line, then exactly
 * Content-Length body bytes. A status other than 2xx, chunked bodies and oversized heads throw.
 */
export function httpResponseFramer(): ResponseFramer {
  let head: Buffer | undefined;
  let bodyLeft = 0;
  return {
    feed(chunk) {
      let done = 0;
      let rest = chunk;
      for (;;) {
        if (bodyLeft > 0) {
          const take = Math.min(bodyLeft, rest.length);
          bodyLeft -= take;
          rest = rest.subarray(take);
          if (bodyLeft > 0) return done;
          done++;
        }
        if (rest.length === 0) return done;
        head = head ? Buffer.concat([head, rest]) : rest;
        const end = head.indexOf(HEAD_END);
        if (end < 0) {
          if (head.length > MAX_HEAD_BYTES)
            throw new Error(`no end of the response head in ${head.length} bytes`);
          return done;
        }
        bodyLeft = contentLength(head.toString('latin1', 0, end));
        rest = head.subarray(end + HEAD_END.length);
        head = undefined;
        if (bodyLeft === 0) done++;
      }
    },
  };
}

/** The body length a response head announces; throws for what this client does not read. */
export function contentLength(head: string): number {
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(head);
  if (!status) throw new Error(`not an HTTP/1.x response: ${JSON.stringify(head.slice(0, 80))}`);
  if (!status[1]!.startsWith('2'))
    throw new Error(`status ${status[1]}: ${JSON.stringify(head.slice(0, 200))}`);
  if (/^transfer-encoding:/im.test(head)) throw new Error('chunked response: only Content-Length is read');
  const length = /^content-length:\s*(\d+)\s*$/im.exec(head);
  if (!length) throw new Error(`response without Content-Length: ${JSON.stringify(head.slice(0, 200))}`);
  return Number(length[1]);
}

export interface HttpLatencyOptions extends OpenLoopOptions {
  readonly connections: number;
  /** Request path, e.g. `/`. */
  readonly path: string;
}

/** `GET <path>` at a fixed rate to `t` (Host: its address), HTTP/1.1 keep-alive. */
export async function httpLatency(t: Target, o: HttpLatencyOptions): Promise<LatencyResult> {
  const conns = await Promise.all(Array.from({ length: o.connections }, () => dial(t)));
  const request = Buffer.from(
    `GET ${o.path} HTTP/1.1\r\nHost: ${t.host}:${t.port}\r\nUser-Agent: ambit-bench\r\n\r\n`,
  );
  return openLoop(conns, request, httpResponseFramer, o);
}
