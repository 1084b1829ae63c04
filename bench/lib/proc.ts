/**
 * What the kernel says a process used: CPU time from /proc/<pid>/stat and resident memory from
 * /proc/<pid>/status. Linux only, as the benchmark is.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, release } from 'node:os';

/** Fallback when `getconf` is missing: the value on every mainstream Linux build. */
const DEFAULT_CLOCK_TICKS_PER_SECOND = 100;

/** Units of the utime/stime fields (`getconf CLK_TCK`). */
export function clockTicksPerSecond(): number {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isInteger(n) && n > 0 ? n : DEFAULT_CLOCK_TICKS_PER_SECOND;
  } catch {
    return DEFAULT_CLOCK_TICKS_PER_SECOND;
  }
}

/** CPU seconds a process has used so far, all threads (V8's GC and libuv's pool included). */
export interface CpuTimes {
  readonly user: number;
  readonly system: number;
}

/**
 * Field 2 of /proc/<pid>/stat is the command in parentheses and may hold spaces, so fields are
 * counted from the last ')': utime and stime are fields 14 and 15.
 */
export function cpuTimes(pid: number, ticksPerSecond: number): CpuTimes {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[14 - 3]);
  const stime = Number(fields[15 - 3]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`cannot parse /proc/${pid}/stat`);
  return { user: utime / ticksPerSecond, system: stime / ticksPerSecond };
}

/** Resident set size in bytes (VmRSS). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

/** Summed over several processes. */
export function totalCpuTimes(pids: readonly number[], ticksPerSecond: number): CpuTimes {
  let user = 0;
  let system = 0;
  for (const pid of pids) {
    const t = cpuTimes(pid, ticksPerSecond);
    user += t.user;
    system += t.system;
  }
  return { user, system };
}

/** `b - a`. */
export function cpuDelta(a: CpuTimes, b: CpuTimes): CpuTimes {
  return { user: b.user - a.user, system: b.system - a.system };
}

export function totalRssBytes(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + rssBytes(pid), 0);
}

/** What the machine is, for a benchmark's results file. */
export function machineFacts() {
  return { vcpus: cpus().length, cpuModel: cpus()[0]?.model, kernel: release(), node: process.version };
}
