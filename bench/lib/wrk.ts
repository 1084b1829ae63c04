/**
 * wrk (an independent HTTP/1.1 load generator, `apt-get install wrk`) as `npm run bench:e2e` and
 * `bench:waypoint` run it inside the client pod: the command line, one bounded run, and its report
 * decoded into numbers. Parsing is pure.
 */
import { spawnSync } from 'node:child_process';

/** How wrk is run: closed loop, keep-alive, bounded by `durationS` (wrk has no request count). */
export interface WrkOptions {
  readonly threads: number;
  readonly connections: number;
  readonly durationS: number;
  /** A request without a response for this long counts as a timeout. */
  readonly timeoutS: number;
}

export interface WrkResult {
  readonly requests: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  /** Socket errors (connect, read, write, timeout) plus non-2xx/3xx responses. */
  readonly errors: number;
}

export function wrkArgs(url: string, o: WrkOptions): string[] {
  return [
    `-t${o.threads}`,
    `-c${o.connections}`,
    `-d${o.durationS}s`,
    `--timeout`,
    `${o.timeoutS}s`,
    '--latency',
    url,
  ];
}

/** The installed version (`4.1.0`), or undefined when wrk is not installed. */
export function wrkVersion(): string | undefined {
  const r = spawnSync('wrk', ['--version'], { encoding: 'utf8', timeout: 5_000 });
  if (r.error) return undefined;
  return /wrk (\S+)/.exec(`${r.stdout}${r.stderr}`)?.[1] ?? 'wrk';
}

/** Runs a command to completion somewhere (e.g. inside a pod), killed after `timeoutMs`. */
export type CommandRunner = (
  cmd: string,
  args: readonly string[],
  timeoutMs: number,
) => Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;

/**
 * One wrk run through `run`, pinned to `cpu` if given and killed 5 s after it should have ended;
 * throws when wrk fails or counts any error.
 */
export async function runWrk(
  run: CommandRunner,
  url: string,
  o: WrkOptions,
  cpu?: number,
): Promise<WrkResult> {
  const args = wrkArgs(url, o);
  const [cmd, argv] = cpu === undefined ? ['wrk', args] : ['taskset', ['-c', `${cpu}`, 'wrk', ...args]];
  const out = await run(cmd, argv, (o.durationS + o.timeoutS + 5) * 1000);
  if (out.code !== 0) throw new Error(`wrk exited ${out.code ?? out.signal}: ${out.stderr.trim()}`);
  const x = parseWrk(out.stdout);
  if (x.errors > 0) throw new Error(`wrk counted ${x.errors} errors:\n${out.stdout.trim()}`);
  return x;
}

const UNIT_MS: Readonly<Record<string, number>> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Decodes wrk's report (`--latency`); throws with the report when a figure is missing. */
export function parseWrk(report: string): WrkResult {
  const num = (re: RegExp, what: string): RegExpExecArray => {
    const m = re.exec(report);
    if (!m) throw new Error(`wrk report has no ${what}:\n${report.trim()}`);
    return m;
  };
  const pct = (p: number) => {
    const m = num(new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s|m|h)\\s*$`, 'm'), `${p}% latency`);
    return Number(m[1]) * UNIT_MS[m[2]!]!;
  };
  const requests = Number(num(/^\s*(\d+) requests in /m, 'request count')[1]);
  const perSecond = Number(num(/^Requests\/sec:\s+([\d.]+)/m, 'Requests/sec')[1]);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(report);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(report);
  const errors =
    (socket ? socket.slice(1, 5).reduce((a, b) => a + Number(b), 0) : 0) + (non2xx ? Number(non2xx[1]) : 0);
  return { requests, perSecond, p50Ms: pct(50), p90Ms: pct(90), p99Ms: pct(99), errors };
}
