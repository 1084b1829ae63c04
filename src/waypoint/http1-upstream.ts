/**
 * The waypoint's HTTP/1.1 client to its endpoints: one llhttp parser per connection (an HBONE
 * CONNECT stream, a TCP connection or a TLS socket), the request head written by hand in one write,
 * kept-alive connections reused last-in first-out. It replaces `http.Agent` + `ClientRequest`,
 * whose per-request machinery (agent queues and events, OutgoingMessage's header store, a socket
 * wrapper per tunnel) was a fifth of the waypoint's CPU (bench/waypoint.ts profile); what it keeps is
 * Node's own parser, reached through `_http_common` as `_http_client` does.
 *
 * Framing follows Node's client: the body goes as is when the head has a content-length, chunked
 * when it has none and a body comes, and a bodyless POST/PUT/PATCH says `content-length: 0`. A
 * connection is reused only after a whole exchange that both sides keep alive, and closed after
 * `maxRequestsPerConnection` responses or when idle for `idleTimeoutMs`.
 */
import { createRequire } from 'node:module';
import { Readable, Writable, type Duplex } from 'node:stream';
import { describeError } from '../core/errors.ts';
import {
  fromRawHeaders,
  type Attempt,
  type AttemptResult,
  type FailureKind,
  type HeaderList,
  type RequestHead,
} from './upstream-types.ts';

interface Parser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | Error;
  finish(): undefined | Error;
  close(): void;
  [key: number]: unknown;
}
interface HttpCommon {
  HTTPParser: {
    new (): Parser;
    RESPONSE: number;
    kOnHeaders: number;
    kOnHeadersComplete: number;
    kOnBody: number;
    kOnMessageComplete: number;
    kLenientNone: number;
  };
  _checkIsHttpToken(v: string): boolean;
  _checkInvalidHeaderChar(v: string): boolean;
}
const common = createRequire(import.meta.url)('_http_common') as HttpCommon;
const { HTTPParser } = common;

/** Methods whose bodyless requests Node's client sends with `content-length: 0`. */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

/** A request head as HTTP/1.1 text, or why it cannot be sent. Pure. */
export function formatRequestHead(
  head: RequestHead,
): { ok: true; text: string; contentLength: boolean } | { ok: false; error: string } {
  if (!common._checkIsHttpToken(head.method)) return { ok: false, error: `invalid method ${head.method}` };
  if (common._checkInvalidHeaderChar(head.path) || /[\s]/.test(head.path))
    return { ok: false, error: 'invalid characters in the path' };
  if (common._checkInvalidHeaderChar(head.authority))
    return { ok: false, error: 'invalid characters in the authority' };
  let text = `${head.method} ${head.path} HTTP/1.1\r\nhost: ${head.authority}\r\n`;
  let contentLength = false;
  for (const [name, values] of head.headers) {
    if (!common._checkIsHttpToken(name)) return { ok: false, error: `invalid header name ${name}` };
    if (name === 'content-length') contentLength = true;
    for (const v of values) {
      if (common._checkInvalidHeaderChar(v))
        return { ok: false, error: `invalid characters in header ${name}` };
      text += `${name}: ${v}\r\n`;
    }
  }
  return { ok: true, text, contentLength };
}

/** How connections to one endpoint are opened and kept. */
export interface Http1PoolOptions {
  /** Opens a byte stream to the endpoint (rejects with UpstreamConnectFailed). */
  readonly connect: () => Promise<Duplex>;
  /** 0: unlimited; 1: no keep-alive. */
  readonly maxRequestsPerConnection: number;
  /** 0: never. */
  readonly idleTimeoutMs: number;
}

/** The connections to one endpoint (with one set of connection settings). */
export class Http1Pool {
  private readonly opts: Http1PoolOptions;
  private readonly idle: Http1Connection[] = [];
  private readonly all = new Set<Http1Connection>();
  private retired = false;

  constructor(opts: Http1PoolOptions) {
    this.opts = opts;
  }

  /** Connections open now, and how many carry a request. */
  get size(): number {
    return this.all.size;
  }
  get busy(): number {
    return this.all.size - this.idle.length;
  }

  /** Starts one exchange: on an idle connection (the newest), or a new one. */
  start(head: RequestHead): Attempt {
    const formatted = formatRequestHead(head);
    if (!formatted.ok) return failedAttempt('reset', `invalid upstream request: ${formatted.error}`);
    const exchange = new Exchange(head.method, formatted.text, formatted.contentLength);
    const conn = this.idle.pop();
    if (conn) {
      conn.run(exchange);
      return exchange.attempt();
    }
    this.opts.connect().then(
      (stream) => {
        if (exchange.aborted) {
          // Never used: keep it for the next request.
          const c = this.adopt(stream);
          this.release(c);
          return;
        }
        this.adopt(stream).run(exchange);
      },
      (err: unknown) => exchange.connectFailed(describeError(err), err),
    );
    return exchange.attempt();
  }

  /** Closes idle connections now and busy ones when their exchange ends. */
  retire(): void {
    this.retired = true;
    for (const c of this.idle.splice(0)) c.destroy();
  }

  /** Closes every connection now. */
  destroy(): void {
    this.retired = true;
    this.idle.length = 0;
    for (const c of this.all) c.destroy();
  }

  private adopt(stream: Duplex): Http1Connection {
    const conn = new Http1Connection(stream, {
      release: (c) => this.release(c),
      gone: (c) => {
        this.all.delete(c);
        const i = this.idle.indexOf(c);
        if (i >= 0) this.idle.splice(i, 1);
      },
    });
    this.all.add(conn);
    return conn;
  }

  /** A connection whose exchange completed and that may carry another. */
  private release(conn: Http1Connection): void {
    const max = this.opts.maxRequestsPerConnection;
    if (this.retired || (max > 0 && conn.served >= max)) return conn.destroy();
    conn.idleFor(this.opts.idleTimeoutMs);
    this.idle.push(conn);
  }
}

interface ConnectionEvents {
  release(c: Http1Connection): void;
  gone(c: Http1Connection): void;
}

/** One kept-alive HTTP/1.1 connection and its parser. */
class Http1Connection {
  served = 0;
  private readonly stream: Duplex;
  private readonly parser: Parser;
  private readonly events: ConnectionEvents;
  private exchange: Exchange | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private finished = false;
  /** Header lines (name, value, …) delivered before headers-complete, or trailers after it. */
  private pending: string[] = [];

  constructor(stream: Duplex, events: ConnectionEvents) {
    this.stream = stream;
    this.events = events;
    this.parser = new HTTPParser();
    this.parser.initialize(HTTPParser.RESPONSE, {}, 0, HTTPParser.kLenientNone);
    const p = this.parser;
    p[HTTPParser.kOnHeaders] = (headers: string[]) => {
      for (const h of headers) this.pending.push(h);
    };
    p[HTTPParser.kOnHeadersComplete] = (
      _major: number,
      _minor: number,
      headers: string[] | undefined,
      _method: unknown,
      _url: unknown,
      status: number,
      _message: string,
      _upgrade: boolean,
      keepAlive: boolean,
    ): number => {
      const raw = headers ?? this.pending;
      this.pending = [];
      return this.exchange ? this.exchange.onHead(status, raw, keepAlive) : 0;
    };
    p[HTTPParser.kOnBody] = (chunk: Buffer) => {
      if (this.exchange && !this.exchange.onBody(chunk)) this.stream.pause();
    };
    p[HTTPParser.kOnMessageComplete] = () => {
      const trailers = this.pending;
      this.pending = [];
      const x = this.exchange;
      if (!x || x.informational()) return;
      this.exchange = undefined;
      this.served++;
      const reusable = x.complete(trailers) && !this.closed;
      if (reusable) {
        // The parser is still inside execute(): hand the connection back once it has returned.
        queueMicrotask(() => (this.closed ? undefined : this.events.release(this)));
      } else this.destroy();
    };
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('end', () => this.onEnd());
    stream.on('error', (err) => this.onClose(describeError(err)));
    stream.on('close', () => this.onClose('upstream closed'));
  }

  /** Sends `x` on this connection. */
  run(x: Exchange): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    this.exchange = x;
    // The last response's reader may have paused the stream and then let its body go.
    this.stream.resume();
    x.bind(
      this.stream,
      this.served > 0,
      () => this.destroy(),
      () => this.stream.resume(),
    );
  }

  /** Closes the connection after `ms` unused (0: never). */
  idleFor(ms: number): void {
    if (ms > 0) {
      this.idleTimer = setTimeout(() => this.destroy(), ms);
      this.idleTimer.unref();
    }
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.stream.destroy();
    this.finishWith('upstream connection closed');
  }

  private onData(chunk: Buffer): void {
    if (this.finished) return;
    if (!this.exchange) {
      // Bytes nobody asked for: the connection cannot be trusted with another request.
      this.destroy();
      return;
    }
    this.exchange.receivedBytes = true;
    const r = this.parser.execute(chunk);
    if (r instanceof Error) {
      this.exchange?.fail(`upstream sent malformed HTTP: ${r.message}`);
      this.destroy();
    }
  }

  private onEnd(): void {
    if (this.finished) return;
    // A body delimited by the connection's end completes here.
    const r = this.parser.finish();
    if (r instanceof Error) this.exchange?.fail(`upstream sent malformed HTTP: ${r.message}`);
    this.destroy();
  }

  private onClose(why: string): void {
    if (!this.closed) {
      this.closed = true;
      if (this.idleTimer) clearTimeout(this.idleTimer);
      this.stream.destroy();
    }
    this.finishWith(why);
  }

  private finishWith(why: string): void {
    if (this.finished) return;
    this.finished = true;
    const x = this.exchange;
    this.exchange = undefined;
    x?.fail(why);
    // Never while the parser is running (this may be one of its callbacks): that frees it under itself.
    setImmediate(() => this.parser.close());
    this.events.gone(this);
  }
}

type Phase = 'connecting' | 'sent' | 'response' | 'done';

/** One request and its response on a connection. */
class Exchange {
  aborted = false;
  receivedBytes = false;
  private readonly method: string;
  private readonly headText: string;
  private readonly hasContentLength: boolean;
  private phase: Phase = 'connecting';
  private resolve!: (r: AttemptResult) => void;
  private readonly result: Promise<AttemptResult>;
  private stream: Duplex | undefined;
  private reused = false;
  private destroyConnection: () => void = () => undefined;
  private headSent = false;
  private chunked = false;
  private requestEnded = false;
  /** Writes and an end that came before the connection did. */
  private early: { chunk: Buffer; cb: (err?: Error | null) => void }[] = [];
  /** The request body has ended (the writable finished). */
  private endEarly = false;
  private body: Readable | undefined;
  private trailerList: HeaderList | undefined;
  private info = false;
  private keepAlive = true;
  private readonly writable: Writable;

  constructor(method: string, headText: string, hasContentLength: boolean) {
    this.method = method;
    this.headText = headText;
    this.hasContentLength = hasContentLength;
    this.result = new Promise((r) => (this.resolve = r));
    this.writable = new Writable({
      write: (chunk: Buffer, _enc, cb) => this.write(chunk, cb),
      // After every buffered write: the end goes out behind the body.
      final: (cb) => {
        this.endEarly = true;
        this.end();
        cb();
      },
    });
    // A write after an abort must not throw at the forwarder.
    this.writable.on('error', () => undefined);
  }

  attempt(): Attempt {
    return {
      requestBody: this.writable,
      result: this.result,
      end: () => {
        if (!this.writable.writableEnded) this.writable.end();
      },
      abort: () => this.abort(),
    };
  }

  connectFailed(error: string, _cause: unknown): void {
    this.settle({
      kind: 'failure',
      failure: 'connect-failure',
      error,
      staleConnection: false,
      transportFailureReason: (_cause as { transportFailureReason?: string } | undefined)
        ?.transportFailureReason,
    });
    this.phase = 'done';
  }

  bind(stream: Duplex, reused: boolean, destroy: () => void, resumeReading: () => void): void {
    this.stream = stream;
    this.reused = reused;
    this.destroyConnection = destroy;
    this.resumeReading = resumeReading;
    this.phase = 'sent';
    for (const w of this.early.splice(0)) this.write(w.chunk, w.cb);
    if (this.endEarly) this.end();
  }

  informational(): boolean {
    if (!this.info) return false;
    this.info = false;
    return true;
  }

  /** The response head; returns 1 to tell the parser a HEAD response has no body. */
  onHead(status: number, raw: string[], keepAlive: boolean): number {
    if (status < 200 && status !== 101) {
      this.info = true;
      return 0;
    }
    this.keepAlive = keepAlive;
    this.phase = 'response';
    const body = new Readable({ read: () => this.resumeReading() });
    body.on('error', () => undefined);
    this.body = body;
    const headers = fromRawHeaders(raw);
    this.settle({
      kind: 'response',
      status,
      headers,
      endStream: false,
      body,
      trailers: () => this.trailerList,
    });
    return this.method === 'HEAD' ? 1 : 0;
  }

  /** False when the reader wants no more for now. */
  onBody(chunk: Buffer): boolean {
    return this.body ? this.body.push(chunk) : true;
  }

  /** The response is whole; true if the connection may carry another exchange. */
  complete(trailers: string[]): boolean {
    if (trailers.length) this.trailerList = fromRawHeaders(trailers);
    this.phase = 'done';
    this.body?.push(null);
    // A request still being sent (an early answer) leaves the connection in an unknown state.
    return this.keepAlive && this.requestEnded && !this.aborted;
  }

  /** The connection went away (or sent garbage) before the exchange was done. */
  fail(why: string): void {
    if (this.phase === 'done') return;
    const before = this.phase !== 'response';
    this.phase = 'done';
    if (before)
      this.settle({
        kind: 'failure',
        failure: 'reset',
        error: why,
        staleConnection: this.reused && !this.receivedBytes,
      });
    else this.body?.destroy(new Error(why));
  }

  private resumeReading: () => void = () => undefined;

  private write(chunk: Buffer, cb: (err?: Error | null) => void): void {
    if (this.aborted || this.phase === 'done' || this.requestEnded) return cb();
    if (!this.stream) {
      this.early.push({ chunk, cb });
      return;
    }
    if (chunk.length === 0) return cb();
    if (!this.headSent) this.sendHead(false);
    if (this.chunked) {
      this.stream.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
      this.stream.write(chunk);
      this.stream.write('\r\n', 'latin1', cb);
    } else this.stream.write(chunk, cb);
  }

  /** Ends the request once the writable has ended (`endEarly`) and the connection is there. */
  private end(): void {
    if (this.requestEnded || this.aborted || !this.endEarly || !this.stream) return;
    this.requestEnded = true;
    if (!this.headSent) this.sendHead(true);
    else if (this.chunked) this.stream.write('0\r\n\r\n', 'latin1');
  }

  /** Writes the head: `last` when no body follows. */
  private sendHead(last: boolean): void {
    this.headSent = true;
    let text = this.headText;
    if (!this.hasContentLength) {
      if (!last) {
        this.chunked = true;
        text += 'transfer-encoding: chunked\r\n';
      } else if (BODY_METHODS.has(this.method)) text += 'content-length: 0\r\n';
    }
    this.stream!.write(`${text}\r\n`, 'latin1');
  }

  private abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    if (this.phase !== 'done') {
      this.phase = 'done';
      this.settle({ kind: 'failure', failure: 'reset', error: 'aborted', staleConnection: false });
      this.body?.destroy();
      if (this.stream) this.destroyConnection();
    }
    this.writable.destroy();
  }

  private settle(r: AttemptResult): void {
    const resolve = this.resolve;
    this.resolve = () => undefined;
    resolve(r);
  }
}

/** An attempt that failed before anything was sent. */
export function failedAttempt(failure: FailureKind, error: string, reason?: string): Attempt {
  return {
    requestBody: undefined,
    result: Promise.resolve({
      kind: 'failure',
      failure,
      error,
      staleConnection: false,
      transportFailureReason: reason,
    }),
    end: () => undefined,
    abort: () => undefined,
  };
}
