/**
 * An HTTP/2 stream (an HBONE tunnel) made fit to carry Node's HTTP/1.1 and h2c machinery, which
 * expects a socket:
 *
 * - `setKeepAlive`, `setNoDelay`, `ref` and `unref` are no-ops (a stream has no socket of its own;
 *   the tunnel's TCP connection already has no-delay and keepalive).
 * - Writes that Node gathers into one `writev` go down as buffers only, without empty ones. Node 24's
 *   Http2Stream corrupts such a batch when it mixes a string with an empty chunk — which is exactly
 *   what `http` writes for a response or request without a body (the head as a latin1 string, then
 *   `''`): the peer reads freed memory where the status line was.
 */
import type { Duplex } from 'node:stream';

interface Chunk {
  readonly chunk: Buffer | string;
  readonly encoding: BufferEncoding | 'buffer';
}
type Writev = (
  this: Duplex,
  chunks: Chunk[] & { allBuffers?: boolean },
  cb: (err?: Error | null) => void,
) => void;

const patched = new WeakSet<Duplex>();

/** Returns `stream`, patched in place (once). */
export function asHttpSocket<T extends Duplex>(stream: T): T {
  if (patched.has(stream)) return stream;
  patched.add(stream);
  const s = stream as unknown as Record<string, unknown>;
  const self = () => stream;
  for (const m of ['setKeepAlive', 'setNoDelay', 'ref', 'unref']) if (typeof s[m] !== 'function') s[m] = self;
  const writev = s._writev as Writev | undefined;
  if (typeof writev === 'function') {
    s._writev = function (this: Duplex, chunks: Chunk[], cb: (err?: Error | null) => void) {
      const buffers: Chunk[] & { allBuffers?: boolean } = [];
      for (const c of chunks) {
        const b = typeof c.chunk === 'string' ? Buffer.from(c.chunk, c.encoding as BufferEncoding) : c.chunk;
        if (b.length > 0) buffers.push({ chunk: b, encoding: 'buffer' });
      }
      buffers.allBuffers = true;
      if (buffers.length === 0) return process.nextTick(cb);
      return writev.call(this, buffers, cb);
    } satisfies Writev;
  }
  return stream;
}
