/**
 * Turns measurements into the printed table and the JSON rows: pure functions of plain data.
 */
import type { ConnectionRateResult, LatencyResult, ThroughputResult } from './load.ts';

export const PATHS = ['direct', 'node-tls-pipe', 'haproxy', 'ambit'] as const;
export type PathName = (typeof PATHS)[number];

/** RSS of the path's processes before and after opening `connections` idle ones, twice over. */
export interface IdleResult {
  readonly connections: number;
  readonly rssBeforeBytes: number;
  readonly rssAfterFirstBytes: number;
  readonly rssAfterSecondBytes: number;
  /** The first batch: includes one-time growth (heap, JIT code) the first connections trigger. */
  readonly perConnectionKiB: number;
  /** The second batch on top of the first: the marginal cost. */
  readonly nextPerConnectionKiB: number;
}

/**
 * Everything measured on one path; a missing field was not measured (see `errors`). Where a test
 * runs several times, `…Runs` holds every run and the plain field the median one.
 */
export interface PathResults {
  /** Why the whole path was skipped, e.g. HAProxy not installed. */
  readonly skipped?: string;
  /** Processes whose CPU and memory count as the path's cost (none for direct). */
  readonly pids: readonly number[];
  throughputRuns?: ThroughputResult[];
  throughput?: ThroughputResult;
  connectionRuns?: ConnectionRateResult[];
  connections?: ConnectionRateResult;
  latency?: LatencyResult;
  idle?: IdleResult;
  /** Resident memory of `pids` once the path is up, and after every test. */
  rssStartBytes?: number;
  rssEndBytes?: number;
  /** Test name → error message, for tests that failed on this path. */
  readonly errors: Record<string, string>;
}

export type AllResults = Readonly<Record<PathName, PathResults>>;

const GIB = 1024 ** 3;
const MIB = 1024 ** 2;

type Target =
  | { readonly kind: 'ratio-at-least'; readonly value: number; readonly text: string }
  | { readonly kind: 'at-most'; readonly value: number; readonly text: string };

interface RowSpec {
  readonly metric: string;
  readonly digits: number;
  readonly value: (p: PathResults, all: AllResults) => number | undefined;
  /** Whether a ratio ambit/baseline means anything for this row. */
  readonly ratio: boolean;
  readonly target?: Target;
}

const added = (pick: (l: LatencyResult) => number) => (p: PathResults, all: AllResults) => {
  if (p === all.direct || !p.latency || !all.direct.latency) return undefined;
  return pick(p.latency) - pick(all.direct.latency);
};
const proxied = (f: (p: PathResults) => number | undefined) => (p: PathResults, all: AllResults) =>
  p === all.direct ? undefined : f(p);

export const ROWS: readonly RowSpec[] = [
  {
    metric: 'throughput, 1 connection (Gbit/s)',
    digits: 2,
    value: (p) => p.throughput?.gbitPerSecond,
    ratio: true,
    target: { kind: 'ratio-at-least', value: 0.35, text: '≥ 0.35× haproxy' },
  },
  {
    metric: 'proxy CPU per GiB, 1 connection (CPU-s)',
    digits: 2,
    value: proxied((p) => (p.throughput ? p.throughput.cpuSeconds / (p.throughput.bytes / GIB) : undefined)),
    ratio: true,
  },
  {
    metric: 'new connections/s, 16 concurrent',
    digits: 0,
    value: (p) => p.connections?.perSecond,
    ratio: true,
    target: { kind: 'ratio-at-least', value: 0.35, text: '≥ 0.35× haproxy' },
  },
  {
    metric: 'connect + 1-byte echo p50, 16 concurrent (ms)',
    digits: 2,
    value: (p) => p.connections?.p50Ms,
    ratio: true,
  },
  {
    metric: 'latency p50 at 1000 req/s (ms)',
    digits: 3,
    value: (p) => p.latency?.p50Ms,
    ratio: true,
  },
  {
    metric: 'latency p99 at 1000 req/s (ms)',
    digits: 3,
    value: (p) => p.latency?.p99Ms,
    ratio: true,
  },
  {
    metric: 'added latency p50 vs direct (ms)',
    digits: 3,
    value: added((l) => l.p50Ms),
    ratio: true,
    target: { kind: 'at-most', value: 0.5, text: '≤ 0.5 ms' },
  },
  {
    metric: 'added latency p99 vs direct (ms)',
    digits: 3,
    value: added((l) => l.p99Ms),
    ratio: true,
    target: { kind: 'at-most', value: 1.5, text: '≤ 1.5 ms' },
  },
  {
    metric: 'proxy CPU per 1000 req/s (vCPU)',
    digits: 3,
    value: proxied((p) => p.latency?.cpuSecondsPer1000),
    ratio: true,
    target: { kind: 'at-most', value: 0.06, text: '≤ 0.06 (both agents)' },
  },
  {
    metric: 'memory per idle connection (KiB)',
    digits: 1,
    value: proxied((p) => p.idle?.perConnectionKiB),
    ratio: true,
    target: { kind: 'at-most', value: 16, text: '≤ 16 KiB' },
  },
  {
    metric: 'memory per idle connection, next 1000 (KiB)',
    digits: 1,
    value: proxied((p) => p.idle?.nextPerConnectionKiB),
    ratio: true,
  },
  {
    metric: 'proxy RSS when up (MiB)',
    digits: 0,
    value: proxied((p) => (p.rssStartBytes === undefined ? undefined : p.rssStartBytes / MIB)),
    ratio: true,
  },
  {
    metric: 'proxy RSS after all tests (MiB)',
    digits: 0,
    value: proxied((p) => (p.rssEndBytes === undefined ? undefined : p.rssEndBytes / MIB)),
    ratio: true,
  },
];

export type Verdict = 'PASS' | 'MISS' | 'n/a';

export interface Row {
  readonly metric: string;
  /** Per path: the number, or undefined when not applicable or not measured. */
  readonly values: Readonly<Record<PathName, number | undefined>>;
  /** ambit / baseline, and which baseline (haproxy when it was measured, else direct). */
  readonly ratio: { readonly value: number; readonly base: 'haproxy' | 'direct' } | undefined;
  readonly target: string;
  readonly verdict: Verdict;
  readonly digits: number;
}

export function buildRows(all: AllResults): Row[] {
  return ROWS.map((spec) => {
    const values = Object.fromEntries(
      PATHS.map((name) => {
        const v = all[name].skipped ? undefined : spec.value(all[name], all);
        return [name, v !== undefined && Number.isFinite(v) ? v : undefined];
      }),
    ) as Record<PathName, number | undefined>;
    const ambit = values.ambit;
    let ratio: Row['ratio'];
    if (spec.ratio && ambit !== undefined) {
      for (const base of ['haproxy', 'direct'] as const) {
        const b = values[base];
        if (b !== undefined && b > 0 && ambit >= 0) {
          ratio = { value: ambit / b, base };
          break;
        }
      }
    }
    let verdict: Verdict = 'n/a';
    if (spec.target?.kind === 'at-most' && ambit !== undefined) {
      verdict = ambit <= spec.target.value ? 'PASS' : 'MISS';
    } else if (spec.target?.kind === 'ratio-at-least' && ratio?.base === 'haproxy') {
      verdict = ratio.value >= spec.target.value ? 'PASS' : 'MISS';
    }
    return {
      metric: spec.metric,
      values,
      ratio,
      target: spec.target?.text ?? '',
      verdict: spec.target ? verdict : ('' as Verdict),
      digits: spec.digits,
    };
  });
}

function cell(all: AllResults, path: PathName, row: Row): string {
  const p = all[path];
  if (p.skipped) return path === 'haproxy' ? 'n/a' : 'skipped';
  const v = row.values[path];
  if (v !== undefined) return v.toFixed(row.digits);
  if (path === 'direct' && row.values.ambit !== undefined) return '—';
  return Object.keys(p.errors).length > 0 ? 'error' : '—';
}

/** The table as aligned text, with a header and the notes that explain its cells. */
export function formatTable(all: AllResults, rows: readonly Row[]): string {
  const header = ['metric', ...PATHS, 'ambit ratio', 'target', 'result'];
  const body = rows.map((r) => [
    r.metric,
    ...PATHS.map((p) => cell(all, p, r)),
    r.ratio ? `${r.ratio.value.toFixed(2)}× ${r.ratio.base}` : '—',
    r.target,
    r.verdict,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === 0 || i >= header.length - 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ');
  const out = [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)];
  const notes: string[] = [];
  if (all.haproxy.skipped) notes.push(`haproxy: ${all.haproxy.skipped}`);
  for (const name of PATHS) {
    for (const [test, error] of Object.entries(all[name].errors)) notes.push(`${name} ${test}: ${error}`);
  }
  return [...out.map((l) => l.trimEnd()), ...(notes.length ? ['', ...notes] : [])].join('\n');
}
