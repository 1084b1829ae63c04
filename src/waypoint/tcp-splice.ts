/**
 * Copying a TCP service's bytes between the client's HBONE stream and the upstream: another HBONE
 * stream (an endpoint in the mesh) or a TCP socket (an endpoint outside it, core/hbone/copy.ts).
 * Each direction ends on its own: the client's END_STREAM becomes the upstream's END_STREAM (or FIN)
 * while the other direction keeps flowing, so a client that has finished sending still reads the
 * server's answer. A reset on one side resets the other.
 */
import { constants, type Http2Stream } from 'node:http2';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { spliceTunnel, type SpliceResult } from '../core/hbone/copy.ts';

/**
 * Copies both ways until both directions are done; each side is an HTTP/2 stream (HBONE) or a socket
 * (a gateway's client, an endpoint outside the mesh).
 */
export function spliceToUpstream(downstream: Duplex, upstream: Duplex): Promise<SpliceResult> {
  if (downstream instanceof Socket)
    return upstream instanceof Socket
      ? spliceSockets(downstream, upstream)
      : spliceTunnel(downstream, upstream as Http2Stream);
  return upstream instanceof Socket
    ? spliceTunnel(upstream, downstream as Http2Stream)
    : spliceStreams(downstream as Http2Stream, upstream as Http2Stream);
}

/** Two sockets back to back, each FIN passed on (half-close kept); an error destroys both. */
function spliceSockets(a: Socket, b: Socket): Promise<SpliceResult> {
  let error: Error | undefined;
  const fail = (err: Error) => {
    error ??= err;
    a.destroy();
    b.destroy();
  };
  const closed = (s: Socket) => new Promise<void>((resolve) => s.once('close', () => resolve()));
  a.on('error', fail).pipe(b);
  b.on('error', fail).pipe(a);
  return Promise.all([closed(a), closed(b)]).then(() => ({ error }));
}

/**
 * Two HTTP/2 CONNECT streams back to back. A stream that closes before it finished both ways (a
 * reset) closes the other: CANCEL for the peer's EOF-like codes (NO_ERROR, CANCEL, as
 * reference/ztunnel.md §2.2 treats them), CONNECT_ERROR (RFC 9113 §8.5) for any other.
 */
export function spliceStreams(a: Http2Stream, b: Http2Stream): Promise<SpliceResult> {
  return new Promise((resolve) => {
    let error: Error | undefined;
    let open = 2;
    for (const [x, y] of [
      [a, b],
      [b, a],
    ] as const) {
      x.on('error', (err: Error) => {
        error ??= err;
      });
      x.once('close', () => {
        const code = x.rstCode ?? constants.NGHTTP2_NO_ERROR;
        const eof = code === constants.NGHTTP2_NO_ERROR || code === constants.NGHTTP2_CANCEL;
        if (!eof) error ??= new Error(`stream reset with HTTP/2 error ${code}`);
        const finished = y.writableEnded && y.readableEnded;
        if (!y.closed && !y.destroyed && !finished) {
          y.close(eof ? constants.NGHTTP2_CANCEL : constants.NGHTTP2_CONNECT_ERROR);
        }
        if (--open === 0) resolve({ error });
      });
      x.pipe(y);
    }
  });
}

/** Ends a stream or socket at once (idle timeout, drain deadline): a reset, not a graceful close. */
export function abortDuplex(s: Duplex): void {
  if (s instanceof Socket) s.destroy();
  else {
    const h2 = s as Http2Stream;
    if (!h2.closed && !h2.destroyed) h2.close(constants.NGHTTP2_CANCEL);
  }
}
