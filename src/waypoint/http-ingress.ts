/**
 * HTTP on a tunnelled stream: the waypoint terminates each HBONE CONNECT and reads HTTP/1.1 or
 * HTTP/2 cleartext (h2c, which gRPC uses) from it, told apart by the client's first bytes (HTTP/2's
 * connection preface starts `PRI * HTTP/2.0`; no HTTP/1 request does). Node's own servers parse both:
 * each tunnel gets a server object whose handler knows the tunnel's facts (who the client is, which
 * service it asked for), so nothing has to map requests back to connections.
 */
import { createServer as createHttp1Server, type IncomingMessage, type ServerResponse } from 'node:http';
import {
  createServer as createHttp2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
} from 'node:http2';
import type { Duplex } from 'node:stream';
import { asHttpSocket } from './stream-socket.ts';

export type IngressRequest = IncomingMessage | Http2ServerRequest;
export type IngressResponse = ServerResponse | Http2ServerResponse;

/** Handles one request; `protocol` is what the client speaks, `http/1.1` or `h2c`. */
export type IngressHandler = (
  req: IngressRequest,
  res: IngressResponse,
  protocol: 'http/1.1' | 'h2c',
) => void;

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
/** No request line is this long before its first bytes tell us the protocol. */
const SNIFF_BYTES = 3;

export interface IngressOptions {
  /** An HTTP/1.1 connection idle (between requests) this long is closed. */
  readonly keepAliveTimeoutMs: number;
  /** Request headers must arrive within this. */
  readonly headersTimeoutMs: number;
  readonly maxHeaderBytes: number;
}

/**
 * Serves HTTP on `stream` until the client closes it. Returns a function that ends it: HTTP/2 gets
 * GOAWAY (requests in flight finish), HTTP/1.1 closes once the request in flight is answered.
 */
export function serveHttp(stream: Duplex, handler: IngressHandler, opts: IngressOptions): () => void {
  asHttpSocket(stream);
  let stop: () => void = () => stream.end();
  let seen = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    seen = Buffer.concat([seen, chunk]);
    if (seen.length < SNIFF_BYTES && H2_PREFACE.subarray(0, seen.length).equals(seen)) return;
    stream.off('data', onData);
    stream.pause();
    stream.unshift(seen);
    const isH2 = H2_PREFACE.subarray(0, Math.min(SNIFF_BYTES, seen.length)).equals(
      seen.subarray(0, SNIFF_BYTES),
    );
    if (isH2) {
      const server = createHttp2Server({ maxSessionMemory: 64 }, (req, res) => handler(req, res, 'h2c'));
      let session: Http2Session | undefined;
      server.on('session', (s) => (session = s));
      stop = () => (session ? session.close() : stream.end());
      server.emit('connection', stream);
    } else {
      const inFlight = new Set<ServerResponse>();
      let closing = false;
      const server = createHttp1Server(
        {
          keepAliveTimeout: opts.keepAliveTimeoutMs,
          headersTimeout: opts.headersTimeoutMs,
          requestTimeout: 0,
          maxHeaderSize: opts.maxHeaderBytes,
        },
        (req, res) => {
          inFlight.add(res);
          if (closing) res.shouldKeepAlive = false;
          res.once('close', () => {
            inFlight.delete(res);
            if (closing && inFlight.size === 0) stream.end();
          });
          handler(req, res, 'http/1.1');
        },
      );
      // Malformed HTTP ends this tunnel only, after an answer (Node's default would destroy the stream,
      // which resets it instead of ending it).
      server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
        if (!socket.writable) return void socket.destroy();
        const status =
          err.code === 'HPE_HEADER_OVERFLOW'
            ? '431 Request Header Fields Too Large'
            : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
              ? '408 Request Timeout'
              : '400 Bad Request';
        socket.end(`HTTP/1.1 ${status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
      });
      // Ends the connection once the response in flight (if any) is sent; a response whose head is
      // not out yet says `connection: close`.
      stop = () => {
        closing = true;
        for (const res of inFlight) if (!res.headersSent) res.shouldKeepAlive = false;
        if (inFlight.size === 0) stream.end();
      };
      server.emit('connection', stream);
    }
    stream.resume();
  };
  stream.on('data', onData);
  return () => stop();
}
