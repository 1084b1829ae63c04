/**
 * `npm run bench:waypoint`'s table: pure functions of the measurements. Each row has a figure per
 * path (median over rounds); ratio and "added" rows compare with nginx or direct; the targets of
 * issue 5 apply to the waypoint column.
 */
import type { LatencyResult } from './load.ts';
import { median } from './stats.ts';
import type { WrkResult } from './wrk.ts';

/** `waypoint-tcp` is the waypoint's path over a TCP route: its HBONE transport without HTTP. */
export const WAYPOINT_PATHS = [
  'direct',
  'node-proxy',
  'nginx',
  'haproxy',
  'waypoint',
  'waypoint-tcp',
] as const;
export type WaypointPath = (typeof WAYPOINT_PATHS)[number];

/** One wrk run at saturation, with the proxy's CPU over it. */
export interface SaturationRun extends WrkResult {
  /** CPU seconds of the path's proxy process per 1,000 requests; undefined for direct. */
  readonly proxyCpuPer1000: number | undefined;
}

/** Every run of every test on one path; a test that failed has an entry in `errors`. */
export interface PathRuns {
  /** Why the path was not measured at all (e.g. nginx not installed). */
  skipped?: string;
  readonly saturation: SaturationRun[];
  readonly latency: LatencyResult[];
  /** RSS of the path's proxy process after each round's tests. */
  readonly rssBytes: number[];
  /** RSS of both agents after each round's tests (the waypoint paths only). */
  readonly agentsRssBytes: number[];
  /** Test name → error message. */
  readonly errors: Record<string, string>;
}

export type WaypointResults = Readonly<Record<WaypointPath, PathRuns>>;

export function emptyRuns(): PathRuns {
  return { saturation: [], latency: [], rssBytes: [], agentsRssBytes: [], errors: {} };
}

/** CPU part name the bench meters beside the waypoint alone. */
export const WITH_AGENTS = 'waypointAndAgents';

/** Issue 5's targets for the waypoint path. */
export const TARGETS = {
  throughputVsNginx: 0.4,
  addedP50Ms: 1,
  addedP99Ms: 3,
  waypointCpuPer1000: 0.15,
} as const;

const MIB = 1024 ** 2;

type Value = (p: PathRuns, all: WaypointResults, path: WaypointPath) => number | undefined;

interface RowSpec {
  readonly metric: string;
  readonly test: 'saturation' | 'latency' | 'rss';
  readonly digits: number;
  readonly value: Value;
  /** Printed after the figure (`×`). */
  readonly suffix?: string;
  /** A "+" in front of non-negative figures (differences). */
  readonly signed?: boolean;
  /** The target, checked on the waypoint's figure. */
  readonly target?: { readonly text: string; readonly pass: (v: number) => boolean };
}

const medianOf = (xs: readonly number[]) => {
  const finite = xs.filter(Number.isFinite);
  return finite.length > 0 ? median(finite) : undefined;
};
const reqPerSecond = (p: PathRuns) => medianOf(p.saturation.map((r) => r.perSecond));
const p50 = (p: PathRuns) => medianOf(p.latency.map((r) => r.p50Ms));
const p99 = (p: PathRuns) => medianOf(p.latency.map((r) => r.p99Ms));
const ratio = (a: number | undefined, b: number | undefined) =>
  a !== undefined && b !== undefined && b > 0 ? a / b : undefined;
const minus = (a: number | undefined, b: number | undefined) =>
  a !== undefined && b !== undefined ? a - b : undefined;
const proxied =
  (v: Value): Value =>
  (p, all, path) =>
    path === 'direct' ? undefined : v(p, all, path);
const waypointOnly =
  (v: Value): Value =>
  (p, all, path) =>
    path === 'waypoint' || path === 'waypoint-tcp' ? v(p, all, path) : undefined;

const ROWS: readonly RowSpec[] = [
  {
    metric: 'HTTP/1.1 req/s at saturation (wrk)',
    test: 'saturation',
    digits: 0,
    value: reqPerSecond,
  },
  {
    metric: '  ÷ direct',
    test: 'saturation',
    digits: 2,
    suffix: '×',
    value: (p, all) => ratio(reqPerSecond(p), reqPerSecond(all.direct)),
  },
  {
    metric: '  ÷ nginx',
    test: 'saturation',
    digits: 2,
    suffix: '×',
    value: (p, all) => ratio(reqPerSecond(p), reqPerSecond(all.nginx)),
    target: {
      text: `≥ ${TARGETS.throughputVsNginx.toFixed(2)}×`,
      pass: (v) => v >= TARGETS.throughputVsNginx,
    },
  },
  {
    metric: 'p50 at 1,000 req/s (ms)',
    test: 'latency',
    digits: 3,
    value: p50,
  },
  {
    metric: '  added: path − direct (ms)',
    test: 'latency',
    digits: 3,
    signed: true,
    value: proxied((p, all) => minus(p50(p), p50(all.direct))),
    target: { text: `≤ ${TARGETS.addedP50Ms} ms`, pass: (v) => v <= TARGETS.addedP50Ms },
  },
  {
    metric: 'p99 at 1,000 req/s (ms)',
    test: 'latency',
    digits: 3,
    value: p99,
  },
  {
    metric: '  added: path − direct (ms)',
    test: 'latency',
    digits: 3,
    signed: true,
    value: proxied((p, all) => minus(p99(p), p99(all.direct))),
    target: { text: `≤ ${TARGETS.addedP99Ms} ms`, pass: (v) => v <= TARGETS.addedP99Ms },
  },
  {
    metric: 'proxy CPU per 1,000 req at 1,000 req/s (vCPU)',
    test: 'latency',
    digits: 3,
    value: proxied((p) => medianOf(p.latency.map((r) => r.cpuSecondsPer1000))),
    target: { text: `≤ ${TARGETS.waypointCpuPer1000}`, pass: (v) => v <= TARGETS.waypointCpuPer1000 },
  },
  {
    metric: '  waypoint + both agents (vCPU)',
    test: 'latency',
    digits: 3,
    value: waypointOnly((p) => medianOf(p.latency.map((r) => r.cpuPartsPer1000[WITH_AGENTS] ?? NaN))),
  },
  {
    metric: 'proxy CPU per 1,000 req at saturation (vCPU)',
    test: 'saturation',
    digits: 3,
    value: proxied((p) => medianOf(p.saturation.map((r) => r.proxyCpuPer1000 ?? NaN))),
  },
  {
    metric: 'proxy RSS after load (MiB)',
    test: 'rss',
    digits: 0,
    value: proxied((p) => medianOf(p.rssBytes.map((b) => b / MIB))),
  },
  {
    metric: '  both agents (MiB)',
    test: 'rss',
    digits: 0,
    value: waypointOnly((p) => medianOf(p.agentsRssBytes.map((b) => b / MIB))),
  },
];

export type Verdict = 'PASS' | 'MISS' | 'n/a' | '';

export interface WaypointRow {
  readonly metric: string;
  readonly values: Readonly<Record<WaypointPath, number | undefined>>;
  readonly cells: Readonly<Record<WaypointPath, string>>;
  readonly target: string;
  readonly verdict: Verdict;
}

export function buildWaypointRows(all: WaypointResults): WaypointRow[] {
  return ROWS.map((spec) => {
    const values = Object.fromEntries(
      WAYPOINT_PATHS.map((path) => {
        const p = all[path];
        const v = p.skipped ? undefined : spec.value(p, all, path);
        return [path, v !== undefined && Number.isFinite(v) ? v : undefined];
      }),
    ) as Record<WaypointPath, number | undefined>;
    const cells = Object.fromEntries(
      WAYPOINT_PATHS.map((path) => {
        const v = values[path];
        const p = all[path];
        if (v !== undefined)
          return [path, `${spec.signed && v >= 0 ? '+' : ''}${v.toFixed(spec.digits)}${spec.suffix ?? ''}`];
        if (p.skipped) return [path, 'n/a'];
        return [path, p.errors[spec.test] ? 'error' : '—'];
      }),
    ) as Record<WaypointPath, string>;
    const w = values.waypoint;
    const verdict: Verdict = !spec.target
      ? ''
      : w === undefined
        ? 'n/a'
        : spec.target.pass(w)
          ? 'PASS'
          : 'MISS';
    return { metric: spec.metric, values, cells, target: spec.target?.text ?? '', verdict };
  });
}

/** The table as aligned text, followed by a note per skipped path and failed test. */
export function formatWaypointTable(all: WaypointResults, rows: readonly WaypointRow[]): string {
  const header = ['metric', ...WAYPOINT_PATHS, 'target (waypoint)', 'result'];
  const body = rows.map((r) => [r.metric, ...WAYPOINT_PATHS.map((p) => r.cells[p]), r.target, r.verdict]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const numeric = (i: number) => i > 0 && i <= WAYPOINT_PATHS.length;
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (numeric(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const notes: string[] = [];
  for (const path of WAYPOINT_PATHS) {
    const p = all[path];
    if (p.skipped) notes.push(`${path}: ${p.skipped}`);
    for (const [test, error] of Object.entries(p.errors)) notes.push(`${path} ${test}: ${error}`);
  }
  return [
    line(header),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...body.map(line),
    ...(notes.length ? ['', ...notes] : []),
  ].join('\n');
}

/** One line: the waypoint's figures against the targets. */
export function waypointSummary(rows: readonly WaypointRow[]): string {
  const targeted = rows.filter((r) => r.target);
  const passed = targeted.filter((r) => r.verdict === 'PASS').length;
  const what = ['throughput ÷ nginx', 'added p50', 'added p99', 'waypoint CPU per 1,000 req'];
  return (
    `waypoint targets: ${passed}/${targeted.length} met — ` +
    targeted
      .map((r, i) => `${what[i] ?? r.metric.trim()} ${r.cells.waypoint} (${r.target}) ${r.verdict}`)
      .join(', ')
  );
}
