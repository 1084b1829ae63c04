/**
 * The load generator's measurements. Each runs in the load-generator process, is bounded in time and
 * count, and samples the CPU of the processes under test itself, so the window is exactly the
 * measured one.
 */
import { connect as netConnect, isIPv4, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Mode, SINK_ACK_EVERY_BYTES } from './backend.ts';
import { cpuDelta, totalCpuTimes } from './proc.ts';
import { percentile } from './stats.ts';

/** How the load generator reaches the backend. */
export interface Target {
  /** The address to connect to: the backend itself, a proxy's listener, or a SOCKS5 listener. */
  readonly host: string;
  readonly port: number;
  /** When set, `host:port` is a SOCKS5 listener and this is the CONNECT destination. */
  readonly socks?: { readonly ip: string; readonly port: number };
}

/** The processes whose CPU is attributed to the path under test. */
export interface CpuProbe {
  readonly pids: readonly number[];
  readonly ticksPerSecond: number;
}

/** CPU the probed processes used over a window: total, and the kernel's part of it. */
export interface CpuUse {
  readonly cpuSeconds: number;
  readonly cpuSystemSeconds: number;
}

/** Starts a window now; calling the result ends it. */
function cpuMeter(probe: CpuProbe): () => CpuUse {
  const start = totalCpuTimes(probe.pids, probe.ticksPerSecond);
  return () => {
    const d = cpuDelta(start, totalCpuTimes(probe.pids, probe.ticksPerSecond));
    return { cpuSeconds: d.user + d.system, cpuSystemSeconds: d.system };
  };
}

const DIAL_TIMEOUT_MS = 5_000;
const SOCKS_REPLY_BYTES = 2 + 10;

/** SOCKS5 greeting (no auth) and CONNECT to an IPv4 address, in one write. */
export function socksConnectRequest(ip: string, port: number): Buffer {
  if (!isIPv4(ip)) throw new Error(`SOCKS target ${ip} is not IPv4`);
  const octets = ip.split('.').map(Number);
  return Buffer.from([0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x01, ...octets, port >> 8, port & 0xff]);
}

/**
 * Connects, and through SOCKS5 when the target says so; resolves with the socket paused (attach a
 * 'data' listener, then `resume()`).
 */
export function dial(t: Target): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host: t.host, port: t.port, noDelay: true });
    const timer = setTimeout(() => fail(new Error(`dial ${t.host}:${t.port} timed out`)), DIAL_TIMEOUT_MS);
    function fail(err: Error) {
      clearTimeout(timer);
      s.destroy();
      reject(err);
    }
    const onEnd = () => fail(new Error('SOCKS5 listener closed the connection'));
    const ok = () => {
      clearTimeout(timer);
      s.off('error', fail);
      s.off('end', onEnd);
      s.pause();
      resolve(s);
    };
    s.once('error', fail);
    s.once('connect', () => {
      if (!t.socks) return ok();
      let got: Buffer = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        got = got.length === 0 ? chunk : Buffer.concat([got, chunk]);
        if (got.length < SOCKS_REPLY_BYTES) return;
        s.off('data', onData);
        if (got[0] !== 0x05 || got[1] !== 0x00 || got[2] !== 0x05 || got[3] !== 0x00) {
          return fail(
            new Error(`SOCKS5 refused: reply ${got.subarray(0, SOCKS_REPLY_BYTES).toString('hex')}`),
          );
        }
        if (got.length > SOCKS_REPLY_BYTES) s.unshift(got.subarray(SOCKS_REPLY_BYTES));
        ok();
      };
      s.on('data', onData);
      s.once('end', onEnd);
      s.write(socksConnectRequest(t.socks.ip, t.socks.port));
    });
  });
}

/** Writes `bytes` and resolves once as many bytes came back (the backend's echo mode). */
function exchange(s: Socket, payload: Buffer, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = 0;
    const done = (err?: Error) => {
      clearTimeout(timer);
      s.off('data', onData);
      s.off('error', done);
      s.off('end', onEnd);
      s.pause();
      if (err) reject(err);
      else resolve();
    };
    const onData = (chunk: Buffer) => {
      got += chunk.length;
      if (got >= payload.length) done();
    };
    const onEnd = () => done(new Error('connection ended before the echo'));
    const timer = setTimeout(() => done(new Error('echo timed out')), timeoutMs);
    s.on('data', onData);
    s.once('error', done);
    s.once('end', onEnd);
    s.write(payload);
    s.resume();
  });
}

const ECHO_BYTE = Buffer.from([Mode.Echo]);

/** Opens a connection in echo mode (one byte there and back), so the whole path is up. */
async function dialEcho(t: Target): Promise<Socket> {
  const s = await dial(t);
  try {
    await exchange(s, ECHO_BYTE, DIAL_TIMEOUT_MS);
  } catch (err) {
    s.destroy();
    throw err;
  }
  return s;
}

/** One echo round trip on a fresh connection: proves a path works before measuring it. */
export async function probe(t: Target): Promise<void> {
  const s = await dialEcho(t);
  s.destroy();
}

export interface ThroughputOptions {
  readonly maxBytes: number;
  readonly maxMs: number;
  readonly cpu: CpuProbe;
}

export interface ThroughputResult extends CpuUse {
  /** Bytes the backend acknowledged (whole MiB). */
  readonly bytes: number;
  readonly seconds: number;
  readonly gbitPerSecond: number;
}

/** One connection in sink mode: writes as fast as the path takes, stops at `maxBytes` or `maxMs`. */
export async function throughput(t: Target, o: ThroughputOptions): Promise<ThroughputResult> {
  const s = await dial(t);
  const chunk = Buffer.alloc(256 * 1024, 0x61);
  const wantAcks = Math.floor(o.maxBytes / SINK_ACK_EVERY_BYTES);
  const cpu = cpuMeter(o.cpu);
  const start = performance.now();
  return new Promise((resolve, reject) => {
    let acks = 0;
    let lastAckAt = start;
    let written = 0;
    let done = false;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const used = cpu();
      s.destroy();
      if (err) return reject(err);
      const seconds = (lastAckAt - start) / 1000;
      const bytes = acks * SINK_ACK_EVERY_BYTES;
      resolve({ bytes, seconds, gbitPerSecond: seconds > 0 ? (bytes * 8) / seconds / 1e9 : 0, ...used });
    };
    const timer = setTimeout(() => finish(), o.maxMs);
    s.on('data', (c: Buffer) => {
      acks += c.length;
      lastAckAt = performance.now();
      if (acks >= wantAcks) finish();
    });
    s.on('error', (err) => finish(err));
    s.once('close', () => finish(new Error(`connection closed after ${acks} MiB`)));
    const pump = () => {
      while (!done && written < o.maxBytes) {
        written += chunk.length;
        if (!s.write(chunk)) return;
      }
    };
    s.on('drain', pump);
    s.write(Buffer.from([Mode.Sink]));
    pump();
    s.resume();
  });
}

export interface ConnectionRateOptions {
  readonly concurrency: number;
  readonly maxMs: number;
  readonly maxConnections: number;
  readonly cpu: CpuProbe;
}

export interface ConnectionRateResult extends CpuUse {
  readonly connections: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  readonly seconds: number;
  readonly perSecond: number;
  /** Open → 1-byte echo → close, per connection. */
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/** `concurrency` loops of open → send 1 byte → read 1 byte → close. */
export async function connectionRate(t: Target, o: ConnectionRateOptions): Promise<ConnectionRateResult> {
  const MAX_ERRORS = 100;
  const cpu = cpuMeter(o.cpu);
  const start = performance.now();
  const deadline = start + o.maxMs;
  const samples: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const loop = async () => {
    while (
      performance.now() < deadline &&
      samples.length + errors < o.maxConnections &&
      errors < MAX_ERRORS
    ) {
      const t0 = performance.now();
      try {
        const s = await dialEcho(t);
        s.destroy();
        samples.push(performance.now() - t0);
      } catch (err) {
        errors++;
        firstError ??= err instanceof Error ? err.message : String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, loop));
  const seconds = (performance.now() - start) / 1000;
  return {
    connections: samples.length,
    errors,
    firstError,
    seconds,
    perSecond: samples.length / seconds,
    p50Ms: percentile(samples, 50),
    p99Ms: percentile(samples, 99),
    ...cpu(),
  };
}

export interface LatencyOptions extends OpenLoopOptions {
  readonly connections: number;
  readonly requestBytes: number;
}

/** The schedule and the CPU windows of an open-loop run (see {@link openLoop}). */
export interface OpenLoopOptions {
  readonly ratePerSecond: number;
  /** Requests sent before this are not recorded (JIT, windows, caches). */
  readonly warmupMs: number;
  readonly measureMs: number;
  /** The processes under test. */
  readonly cpu: CpuProbe;
  /** More groups of processes metered over the same window, by name (e.g. a path's parts). */
  readonly cpuParts?: Readonly<Record<string, CpuProbe>>;
}

export interface LatencyResult extends CpuUse {
  readonly requests: number;
  /** Requests per second actually completed in the measured window. */
  readonly achievedPerSecond: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** CPU seconds of the processes under test per 1,000 requests (= vCPU at 1,000 req/s). */
  readonly cpuSecondsPer1000: number;
  /** The same for each of `cpuParts`. */
  readonly cpuPartsPer1000: Readonly<Record<string, number>>;
  readonly unanswered: number;
  /** The first response that could not be read (the connection was dropped), if any. */
  readonly firstError?: string;
}

/** Counts the responses that the bytes arriving on one connection complete. */
export interface ResponseFramer {
  /** Takes the next bytes; returns how many responses they completed. Throws on a malformed response. */
  feed(chunk: Buffer): number;
}

/** Responses of exactly `bytes` bytes (the backend's echo of a request that size). */
export function fixedSizeFramer(bytes: number): ResponseFramer {
  let got = 0;
  return {
    feed(chunk) {
      got += chunk.length;
      const n = Math.floor(got / bytes);
      got -= n * bytes;
      return n;
    },
  };
}

/** Open-loop echo requests of `requestBytes` (see {@link openLoop}). */
export async function latency(t: Target, o: LatencyOptions): Promise<LatencyResult> {
  const conns = await Promise.all(Array.from({ length: o.connections }, () => dialEcho(t)));
  return openLoop(conns, Buffer.alloc(o.requestBytes, 0x62), () => fixedSizeFramer(o.requestBytes), o);
}

/**
 * Open-loop requests at a fixed rate over persistent connections, round-robin, one in flight per
 * connection (later ones queue behind it). A request is due at `start + i / rate`; a timer tick hands
 * every due request to its connection, and its latency runs from that tick to the end of its response,
 * so time spent queued behind a slow response counts (no coordinated omission) while the timer's own
 * lateness does not. Takes ownership of `conns` (paused sockets) and destroys them at the end.
 */
export async function openLoop(
  conns: readonly Socket[],
  request: Buffer,
  framer: () => ResponseFramer,
  o: OpenLoopOptions,
): Promise<LatencyResult> {
  const DRAIN_TIMEOUT_MS = 5_000;
  const samples: number[] = [];
  const intervalMs = 1000 / o.ratePerSecond;
  const total = Math.floor(((o.warmupMs + o.measureMs) / 1000) * o.ratePerSecond);
  const firstMeasured = Math.floor((o.warmupMs / 1000) * o.ratePerSecond);
  let outstanding = 0;
  let cpu: (() => CpuUse) | undefined;
  let cpuParts: [string, () => CpuUse][] = [];
  let measureStart = Number.NaN;
  let firstError: string | undefined;

  type Request = { readonly at: number; readonly measured: boolean };
  const state = conns.map((s) => ({ s, queue: [] as Request[], framer: framer() }));
  let onIdle: (() => void) | undefined;
  for (const c of state) {
    c.s.on('data', (chunk: Buffer) => {
      let done: number;
      try {
        done = c.framer.feed(chunk);
      } catch (err) {
        firstError ??= err instanceof Error ? err.message : String(err);
        c.s.destroy();
        return;
      }
      for (; done > 0 && c.queue.length > 0; done--) {
        const r = c.queue.shift()!;
        if (r.measured) samples.push(performance.now() - r.at);
        outstanding--;
        if (c.queue.length > 0) c.s.write(request);
      }
      if (outstanding === 0) onIdle?.();
    });
    c.s.on('error', () => undefined);
    c.s.resume();
  }

  const start = performance.now();
  let issued = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      while (issued < total && start + issued * intervalMs <= now) {
        const measured = issued >= firstMeasured;
        if (measured && !cpu) {
          cpu = cpuMeter(o.cpu);
          cpuParts = Object.entries(o.cpuParts ?? {}).map(([name, probe]) => [name, cpuMeter(probe)]);
          measureStart = now;
        }
        const c = state[issued % state.length]!;
        c.queue.push({ at: now, measured });
        outstanding++;
        if (c.queue.length === 1) c.s.write(request);
        issued++;
      }
      if (issued >= total) {
        clearInterval(timer);
        resolve();
      }
    };
    const timer = setInterval(tick, 1);
  });
  const sentEnd = performance.now();
  if (outstanding > 0) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, DRAIN_TIMEOUT_MS);
      onIdle = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
  const used = cpu?.() ?? { cpuSeconds: Number.NaN, cpuSystemSeconds: Number.NaN };
  const per1000 = (seconds: number) => (samples.length > 0 ? (seconds / samples.length) * 1000 : Number.NaN);
  const cpuPartsPer1000 = Object.fromEntries(cpuParts.map(([name, m]) => [name, per1000(m().cpuSeconds)]));
  const unanswered = outstanding;
  for (const c of conns) c.destroy();
  const windowSeconds = (sentEnd - measureStart) / 1000;
  return {
    requests: samples.length,
    achievedPerSecond: samples.length / windowSeconds,
    p50Ms: percentile(samples, 50),
    p90Ms: percentile(samples, 90),
    p99Ms: percentile(samples, 99),
    maxMs: percentile(samples, 100),
    ...used,
    cpuSecondsPer1000: per1000(used.cpuSeconds),
    cpuPartsPer1000,
    unanswered,
    ...(firstError !== undefined ? { firstError } : {}),
  };
}

/** Idle connections held open between `openIdle` and `closeIdle`. */
const idle: Socket[] = [];

export interface IdleResult {
  readonly opened: number;
  readonly errors: number;
  readonly firstError: string | undefined;
}

/** Opens `count` more connections in echo mode (one byte each way, so every tunnel is up) and keeps them. */
export async function openIdle(t: Target, count: number, concurrency: number): Promise<IdleResult> {
  const before = idle.length;
  let next = 0;
  let errors = 0;
  let firstError: string | undefined;
  const loop = async () => {
    while (next < count && errors < 10) {
      next++;
      try {
        const s = await dialEcho(t);
        s.on('error', () => undefined);
        idle.push(s);
      } catch (err) {
        errors++;
        firstError ??= err instanceof Error ? err.message : String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  return { opened: idle.length - before, errors, firstError };
}

export function closeIdle(): number {
  const n = idle.length;
  for (const s of idle.splice(0)) s.destroy();
  return n;
}

/** What the benchmark may ask the load-generator process to do. */
export const LOAD_OPS = { probe, throughput, connectionRate, latency, openIdle, closeIdle };
export type LoadOps = typeof LOAD_OPS;
