/**
 * `npm run bench:e2e`'s table and summary line: pure functions of the measurements.
 */
import type { PingPongResult } from './e2e-load.ts';
import type { ConnectionRateResult, ThroughputResult } from './load.ts';
import { median } from './stats.ts';
import type { WrkResult } from './wrk.ts';

export const MODES = ['direct', 'captured'] as const;
export type Mode = (typeof MODES)[number];

/** Every run of every test on one mode; a test that failed has an entry in `errors`. */
export interface ModeResults {
  readonly throughput: ThroughputResult[];
  readonly pingPong: PingPongResult[];
  readonly connections: ConnectionRateResult[];
  readonly http: WrkResult[];
  /** Why the HTTP test did not run at all (wrk missing), for every mode alike. */
  httpSkipped?: string;
  /** Test name → error message. */
  readonly errors: Record<string, string>;
}

export type E2eResults = Readonly<Record<Mode, ModeResults>>;

export function emptyResults(): ModeResults {
  return { throughput: [], pingPong: [], connections: [], http: [], errors: {} };
}

const MIB = 1024 ** 2;
const GIB = 1024 ** 3;

/** Median over the runs of one figure; undefined when there are no runs. */
const med =
  <T>(pick: (m: ModeResults) => readonly T[], f: (r: T) => number) =>
  (m: ModeResults): number | undefined => {
    const runs = pick(m);
    return runs.length > 0 ? median(runs.map(f)) : undefined;
  };

interface RowSpec {
  readonly metric: string;
  /** Which test the row comes from, for the cell of a failed test. */
  readonly test: keyof Omit<ModeResults, 'errors' | 'httpSkipped'>;
  readonly digits: number;
  readonly value: (m: ModeResults) => number | undefined;
  /** A latency: the difference captured − direct is printed as well as the ratio. */
  readonly latency?: boolean;
  /** Only meaningful for the captured path (the agents' CPU). */
  readonly capturedOnly?: boolean;
}

const ROWS: readonly RowSpec[] = [
  {
    metric: 'bulk throughput, 1 connection (MiB/s)',
    test: 'throughput',
    digits: 0,
    value: med(
      (m) => m.throughput,
      (r) => r.bytes / MIB / r.seconds,
    ),
  },
  {
    metric: 'agents CPU per GiB moved (CPU-s)',
    test: 'throughput',
    digits: 2,
    capturedOnly: true,
    value: med(
      (m) => m.throughput,
      (r) => r.cpuSeconds / (r.bytes / GIB),
    ),
  },
  {
    metric: 'request/response p50, 1 connection (ms)',
    test: 'pingPong',
    digits: 3,
    latency: true,
    value: med(
      (m) => m.pingPong,
      (r) => r.p50Ms,
    ),
  },
  {
    metric: 'request/response p99, 1 connection (ms)',
    test: 'pingPong',
    digits: 3,
    latency: true,
    value: med(
      (m) => m.pingPong,
      (r) => r.p99Ms,
    ),
  },
  {
    metric: 'round trips/s, 1 connection',
    test: 'pingPong',
    digits: 0,
    value: med(
      (m) => m.pingPong,
      (r) => r.perSecond,
    ),
  },
  {
    metric: 'agents CPU per round trip (µs)',
    test: 'pingPong',
    digits: 0,
    capturedOnly: true,
    value: med(
      (m) => m.pingPong,
      (r) => (r.cpuSeconds / r.roundTrips) * 1e6,
    ),
  },
  {
    metric: 'connect + first byte p50, sequential (ms)',
    test: 'connections',
    digits: 3,
    latency: true,
    value: med(
      (m) => m.connections,
      (r) => r.p50Ms,
    ),
  },
  {
    metric: 'connect + first byte p99, sequential (ms)',
    test: 'connections',
    digits: 3,
    latency: true,
    value: med(
      (m) => m.connections,
      (r) => r.p99Ms,
    ),
  },
  {
    metric: 'new connections/s, sequential',
    test: 'connections',
    digits: 0,
    value: med(
      (m) => m.connections,
      (r) => r.perSecond,
    ),
  },
  {
    metric: 'agents CPU per connection (µs)',
    test: 'connections',
    digits: 0,
    capturedOnly: true,
    value: med(
      (m) => m.connections,
      (r) => (r.cpuSeconds / r.connections) * 1e6,
    ),
  },
  {
    metric: 'HTTP/1.1 req/s, wrk (req/s)',
    test: 'http',
    digits: 0,
    value: med(
      (m) => m.http,
      (r) => r.perSecond,
    ),
  },
  {
    metric: 'HTTP/1.1 p50, wrk (ms)',
    test: 'http',
    digits: 3,
    latency: true,
    value: med(
      (m) => m.http,
      (r) => r.p50Ms,
    ),
  },
  {
    metric: 'HTTP/1.1 p99, wrk (ms)',
    test: 'http',
    digits: 3,
    latency: true,
    value: med(
      (m) => m.http,
      (r) => r.p99Ms,
    ),
  },
];

export interface E2eRow {
  readonly metric: string;
  readonly values: Readonly<Record<Mode, number | undefined>>;
  /** captured ÷ direct. */
  readonly ratio: number | undefined;
  /** captured − direct, for latencies. */
  readonly added: number | undefined;
  readonly digits: number;
  readonly cells: Readonly<Record<Mode, string>>;
}

export function buildE2eRows(all: E2eResults, wrkLabel: string): E2eRow[] {
  return ROWS.map((spec) => {
    const values = Object.fromEntries(
      MODES.map((mode) => {
        if (spec.capturedOnly && mode === 'direct') return [mode, undefined];
        const v = spec.value(all[mode]);
        return [mode, v !== undefined && Number.isFinite(v) ? v : undefined];
      }),
    ) as Record<Mode, number | undefined>;
    const cells = Object.fromEntries(
      MODES.map((mode) => {
        const v = values[mode];
        if (v !== undefined) return [mode, v.toFixed(spec.digits)];
        if (spec.test === 'http' && all[mode].httpSkipped) return [mode, 'n/a'];
        return [mode, all[mode].errors[spec.test] ? 'error' : '—'];
      }),
    ) as Record<Mode, string>;
    const { direct, captured } = values;
    const both = direct !== undefined && captured !== undefined;
    return {
      metric: spec.metric.replace('wrk', wrkLabel),
      values,
      ratio: both && direct > 0 ? captured / direct : undefined,
      added: both && spec.latency ? captured - direct : undefined,
      digits: spec.digits,
      cells,
    };
  });
}

/** The table as aligned text, followed by a note per failed test. */
export function formatE2eTable(all: E2eResults, rows: readonly E2eRow[]): string {
  const header = ['metric', ...MODES, 'captured ÷ direct', 'captured − direct'];
  const body = rows.map((r) => [
    r.metric,
    ...MODES.map((m) => r.cells[m]),
    r.ratio !== undefined ? `${r.ratio.toFixed(2)}×` : '—',
    r.added !== undefined ? `${r.added >= 0 ? '+' : ''}${r.added.toFixed(r.digits)} ms` : '',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const out = [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)];
  const notes: string[] = [];
  if (all.direct.httpSkipped) notes.push(`HTTP rows: ${all.direct.httpSkipped}`);
  for (const mode of MODES)
    for (const [test, error] of Object.entries(all[mode].errors)) notes.push(`${mode} ${test}: ${error}`);
  return [...out.map((l) => l.trimEnd()), ...(notes.length ? ['', ...notes] : [])].join('\n');
}

/** One line: the ratios that matter, or why they are missing. */
export function summaryLine(rows: readonly E2eRow[]): string {
  const r = (prefix: string) => rows.find((x) => x.metric.startsWith(prefix))?.ratio;
  const x = (v: number | undefined) => (v === undefined ? 'n/a' : `${v.toFixed(2)}×`);
  return (
    `captured ÷ direct: throughput ${x(r('bulk throughput'))}, ` +
    `request/response p50 ${x(r('request/response p50'))} / p99 ${x(r('request/response p99'))}, ` +
    `connect + first byte p50 ${x(r('connect + first byte p50'))} / p99 ${x(r('connect + first byte p99'))}` +
    (r('HTTP/1.1 req/s') !== undefined ? `, HTTP req/s ${x(r('HTTP/1.1 req/s'))}` : '')
  );
}
