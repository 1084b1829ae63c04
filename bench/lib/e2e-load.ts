/**
 * What `npm run bench:e2e` and `npm run bench:waypoint` ask of the load generator in the client pod:
 * the data-path benchmark's measurements (load.ts), a closed-loop ping-pong over one persistent
 * connection, and open-loop HTTP/1.1 (waypoint-http-load.ts). Every operation is bounded in count and
 * in time.
 */
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Mode } from './backend.ts';
import { dial, LOAD_OPS, type CpuProbe, type Target } from './load.ts';
import { cpuDelta, totalCpuTimes } from './proc.ts';
import { percentile } from './stats.ts';
import { httpLatency } from './waypoint-http-load.ts';

export interface PingPongOptions {
  /** Bytes each way per round trip. */
  readonly messageBytes: number;
  /** Round trips before measuring (JIT, congestion window, the tunnel's first stream). */
  readonly warmupRoundTrips: number;
  readonly maxRoundTrips: number;
  /** Stops measuring after this long even if `maxRoundTrips` is not reached. */
  readonly maxMs: number;
  /** Processes whose CPU counts as the path's cost (the agents; none for direct). */
  readonly cpu: CpuProbe;
}

export interface PingPongResult {
  /** Measured round trips (warm-up excluded). */
  readonly roundTrips: number;
  readonly seconds: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** CPU of the probed processes over the measured round trips. */
  readonly cpuSeconds: number;
}

/** A round trip that takes longer than this fails the run: the path is broken, not slow. */
const ROUND_TRIP_TIMEOUT_MS = 5_000;

/**
 * One connection in the backend's echo mode; each round trip writes `messageBytes` and waits for all
 * of them to come back before the next (closed loop, one message in flight), so a sample is exactly
 * the path's request/response latency.
 */
export async function pingPong(t: Target, o: PingPongOptions): Promise<PingPongResult> {
  const s = await dial(t);
  try {
    const echo = echoer(s);
    await echo(Buffer.from([Mode.Echo]));
    const payload = Buffer.alloc(o.messageBytes, 0x70);
    for (let i = 0; i < o.warmupRoundTrips; i++) await echo(payload);
    const samples: number[] = [];
    const cpuStart = totalCpuTimes(o.cpu.pids, o.cpu.ticksPerSecond);
    const start = performance.now();
    const deadline = start + o.maxMs;
    let now = start;
    while (samples.length < o.maxRoundTrips && now < deadline) {
      await echo(payload);
      const end = performance.now();
      samples.push(end - now);
      now = end;
    }
    const cpu = cpuDelta(cpuStart, totalCpuTimes(o.cpu.pids, o.cpu.ticksPerSecond));
    const seconds = (now - start) / 1000;
    return {
      roundTrips: samples.length,
      seconds,
      perSecond: samples.length / seconds,
      p50Ms: percentile(samples, 50),
      p90Ms: percentile(samples, 90),
      p99Ms: percentile(samples, 99),
      maxMs: percentile(samples, 100),
      cpuSeconds: cpu.user + cpu.system,
    };
  } finally {
    s.destroy();
  }
}

/**
 * Returns `echo(b)`: writes `b` and resolves once as many bytes came back. One listener set stays on
 * the socket for the whole run, so a round trip costs no listener churn.
 */
function echoer(s: Socket): (b: Buffer) => Promise<void> {
  let waiting: { want: number; got: number; resolve: () => void; reject: (e: Error) => void } | undefined;
  let failure: Error | undefined;
  let timer: NodeJS.Timeout | undefined;
  const fail = (err: Error) => {
    failure ??= err;
    const w = waiting;
    waiting = undefined;
    clearTimeout(timer);
    w?.reject(failure);
  };
  s.on('data', (chunk: Buffer) => {
    if (!waiting) return fail(new Error(`${chunk.length} bytes arrived that nobody asked for`));
    waiting.got += chunk.length;
    if (waiting.got < waiting.want) return;
    if (waiting.got > waiting.want) return fail(new Error('the echo returned more bytes than sent'));
    const w = waiting;
    waiting = undefined;
    clearTimeout(timer);
    w.resolve();
  });
  s.on('error', fail);
  s.on('end', () => fail(new Error('connection ended during ping-pong')));
  s.resume();
  return (b) =>
    new Promise((resolve, reject) => {
      if (failure) return reject(failure);
      waiting = { want: b.length, got: 0, resolve, reject };
      timer = setTimeout(
        () => fail(new Error(`no echo within ${ROUND_TRIP_TIMEOUT_MS} ms`)),
        ROUND_TRIP_TIMEOUT_MS,
      );
      s.write(b);
    });
}

/** What the bench may ask the load generator in the client pod to do. */
export const E2E_LOAD_OPS = { ...LOAD_OPS, pingPong, httpLatency };
export type E2eLoadOps = typeof E2E_LOAD_OPS;
