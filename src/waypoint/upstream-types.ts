/**
 * What one request to an endpoint is and gives back, shared by upstream.ts and the HTTP/1.1 client
 * (http1-upstream.ts), and the header list both read responses into.
 */
import type { Readable, Writable } from 'node:stream';

/** Header names (lower-case) with their values in order. */
export type HeaderList = Map<string, string[]>;

export interface RequestHead {
  readonly method: string;
  /** Path with query. */
  readonly path: string;
  readonly authority: string;
  /** Without pseudo-headers, `host` and hop-by-hop headers. */
  readonly headers: HeaderList;
}

export type FailureKind = 'connect-failure' | 'reset' | 'refused-stream';

export type AttemptResult =
  | {
      readonly kind: 'response';
      readonly status: number;
      readonly headers: HeaderList;
      /** The head ended the stream (h2c): no body, no trailers, e.g. a gRPC trailers-only reply. */
      readonly endStream: boolean;
      /** The response body; ends (or closes early on a reset) when the upstream is done. */
      readonly body: Readable;
      /** The response trailers, once `body` has ended. */
      trailers(): HeaderList | undefined;
    }
  | {
      readonly kind: 'failure';
      readonly failure: FailureKind;
      readonly error: string;
      /** HTTP/1.1: the request went out on a kept-alive connection the peer had already closed. */
      readonly staleConnection: boolean;
      /** Envoy's transport failure reason (a TLS handshake that failed), for the 503 body. */
      readonly transportFailureReason?: string | undefined;
    };

export interface Attempt {
  /** Where the request body goes; undefined if the attempt already failed. */
  readonly requestBody: Writable | undefined;
  readonly result: Promise<AttemptResult>;
  /** Ends the request body (request trailers are not forwarded). */
  end(): void;
  /** Abandons the attempt: the upstream request or stream is reset. */
  abort(): void;
}

/** Lower-cased headers from Node's `[name, value, name, value…]`, skipping pseudo-headers. */
export function fromRawHeaders(raw: readonly string[]): HeaderList {
  const out: HeaderList = new Map();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (name.startsWith(':')) continue;
    const list = out.get(name);
    if (list) list.push(raw[i + 1]!);
    else out.set(name, [raw[i + 1]!]);
  }
  return out;
}
