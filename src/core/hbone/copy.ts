import { constants, type Http2Stream } from 'node:http2';
import type { Socket } from 'node:net';

export interface SpliceResult {
  /** The first error on either side, if the tunnel did not end cleanly. */
  readonly error: Error | undefined;
}

/**
 * Copies bytes both ways between a TCP socket and an HBONE stream until both directions are done.
 * A FIN on one side becomes END_STREAM on the other (and vice versa) while the other direction keeps
 * flowing: both sockets must be created with `allowHalfOpen: true`. Byte counts come from the TCP
 * socket's own counters, so the copy adds no per-chunk work.
 */
export function spliceTunnel(tcp: Socket, stream: Http2Stream): Promise<SpliceResult> {
  return new Promise((resolve) => {
    let error: Error | undefined;
    let open = 2;
    const closed = () => {
      if (--open === 0) resolve({ error });
    };
    tcp.once('close', (hadError) => {
      // The socket went away (app reset, policy or shutdown): the peer must hear of it, or the
      // tunnel would stay open with nothing behind it. RFC 9113 §8.5: CONNECT_ERROR for a TCP fault.
      // Not after a clean finish both ways: a reset could overtake our last DATA still queued.
      const finished = stream.writableEnded && stream.readableEnded;
      if (!stream.closed && !stream.destroyed && !finished) {
        stream.close(hadError ? constants.NGHTTP2_CONNECT_ERROR : constants.NGHTTP2_CANCEL);
      }
      closed();
    });
    stream.once('close', () => {
      const code = stream.rstCode ?? constants.NGHTTP2_NO_ERROR;
      if (code === constants.NGHTTP2_NO_ERROR || code === constants.NGHTTP2_CANCEL) {
        // An EOF (reference/ztunnel.md §2.2). After both END_STREAMs the pipes already ended the
        // socket; after an early reset the peer reads no more, so stop reading and close once our
        // writes are flushed.
        if (tcp.readableEnded) {
          if (!tcp.writableEnded) tcp.end();
        } else if (tcp.writableFinished) tcp.destroy();
        else if (tcp.writableEnded) tcp.once('finish', () => tcp.destroy());
        else tcp.end(() => tcp.destroy());
      } else {
        error ??= new Error(`stream reset with HTTP/2 error ${code}`);
        tcp.resetAndDestroy();
      }
      closed();
    });
    tcp.on('error', (err) => {
      error ??= err;
    });
    stream.on('error', (err: Error) => {
      error ??= err;
      tcp.destroy();
    });
    destroyWhenBothHalvesDone(tcp);
    tcp.pipe(stream);
    coalesceWrites(stream, tcp);
    stream.pipe(tcp);
  });
}

/** Copies bytes both ways between two TCP sockets (both `allowHalfOpen`), propagating half-close. */
export function spliceTcp(a: Socket, b: Socket): Promise<SpliceResult> {
  return new Promise((resolve) => {
    let error: Error | undefined;
    let open = 2;
    const closed = () => {
      if (--open === 0) resolve({ error });
    };
    for (const [x, y] of [
      [a, b],
      [b, a],
    ] as const) {
      x.once('close', closed);
      x.on('error', (err) => {
        error ??= err;
        y.destroy();
      });
      destroyWhenBothHalvesDone(x);
      x.pipe(y);
    }
  });
}

/** With `allowHalfOpen`, a socket is done once it both read EOF and finished writing. */
function destroyWhenBothHalvesDone(socket: Socket): void {
  socket.on('end', () => {
    if (socket.writableFinished) socket.destroy();
  });
  socket.on('finish', () => {
    if (socket.readableEnded) socket.destroy();
  });
}

/** Chunks at least this big mark a bulk transfer, worth batching; smaller ones go out at once. */
const COALESCE_MIN_BYTES = 8 * 1024;

/**
 * Batches the chunks `src` delivers within one event-loop turn of a bulk transfer into one `writev`
 * on `dst`. HTTP/2 DATA frames (16 KiB plus a 9-byte header) do not line up with 16 KiB TLS records,
 * so the stream hands over pairs like 16375 + 9 bytes; written one by one on a TCP_NODELAY socket
 * each became its own syscall and segment (bench/: 47.7k writes against 9.9k reads). Small chunks
 * (request/response traffic) are not held back: batching them cost a loop turn each and raised CPU
 * per request by a third (bench/, latency row). Registered before the pipe so the cork is in place
 * when the pipe writes.
 */
function coalesceWrites(src: Http2Stream, dst: Socket): void {
  const uncork = () => dst.uncork();
  src.on('data', (chunk: Buffer) => {
    if (!dst.writableCorked && chunk.length >= COALESCE_MIN_BYTES) {
      dst.cork();
      setImmediate(uncork);
    }
  });
}
