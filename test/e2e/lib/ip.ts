/**
 * The edge between the e2e test bed and iproute2: running `ip` (singly or as a batch), and the few
 * namespace facts read straight from the kernel (which namespaces exist, which processes live in one).
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';

/** Where `ip netns add` mounts a namespace; a namespace's path is this directory plus its name. */
export const NETNS_DIR = '/var/run/netns';

/** Upper bound on one `ip` invocation; a batch that builds a whole topology takes well under 100 ms. */
const IP_TIMEOUT_MS = 15_000;

/** An `ip` command that exited non-zero, timed out or could not start. */
export class IpCommandError extends Error {
  /** Stable code for callers that match on it. */
  readonly code = 'ERR_AMBIT_E2E_IP';
  /** The command line as run (for a batch, the failing line when `ip` names it). */
  readonly command: string;
  /** What `ip` wrote to stderr. */
  readonly stderr: string;

  constructor(command: string, stderr: string, detail: string, cause?: unknown) {
    super(`\`${command}\` ${detail}${stderr ? `: ${stderr.trim()}` : ''}`, { cause });
    this.name = 'IpCommandError';
    this.command = command;
    this.stderr = stderr;
  }
}

/** Options for {@link ip} and {@link ipBatch}. */
export interface IpOptions {
  /** Run inside this namespace (`ip -n NAME`). */
  readonly netns?: string;
  /** In a batch, keep going after a failing line (`ip -force`); the call still throws at the end. */
  readonly force?: boolean;
}

function describe(args: readonly string[], lines?: readonly string[], stderr = ''): string {
  const head = `ip ${args.join(' ')}`;
  if (!lines) return head;
  // `ip -batch -` reports the 1-based line of the first failure as "Command failed -:N".
  const n = /Command failed -:(\d+)/.exec(stderr)?.[1];
  const line = n === undefined ? undefined : lines[Number(n) - 1];
  if (line !== undefined) return `${head} <<< line ${n}: ${line}`;
  // Argument errors make `ip` exit without naming the line: show the batch (it is short).
  const all = lines.join('; ');
  return `${head} <<< ${all.length > 2_000 ? `${all.slice(0, 2_000)}…` : all}`;
}

function argv(args: readonly string[], opts: IpOptions, batch: boolean): string[] {
  return [
    ...(opts.netns ? ['-n', opts.netns] : []),
    ...(opts.force ? ['-force'] : []),
    ...(batch ? ['-batch', '-'] : []),
    ...args,
  ];
}

function runIp(fullArgs: string[], input: string | undefined, lines?: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', fullArgs, { stdio: ['pipe', 'pipe', 'pipe'], timeout: IP_TIMEOUT_MS });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('error', (err) =>
      reject(
        new IpCommandError(describe(fullArgs, lines), stderr, 'could not run (is iproute2 installed?)', err),
      ),
    );
    child.on('close', (code, signal) => {
      if (code === 0) resolve(stdout);
      else {
        const detail = signal ? `was killed by ${signal} (timeout ${IP_TIMEOUT_MS} ms?)` : `exited ${code}`;
        reject(new IpCommandError(describe(fullArgs, lines, stderr), stderr, detail));
      }
    });
    child.stdin.on('error', () => {}); // EPIPE when ip exits early; the exit code tells the story.
    child.stdin.end(input ?? '');
  });
}

/** Runs one `ip` command and resolves with its stdout; throws {@link IpCommandError} on failure. */
export function ip(args: readonly string[], opts: IpOptions = {}): Promise<string> {
  return runIp(argv(args, opts, false), undefined);
}

/**
 * Runs many `ip` commands in one process (`ip -batch -`): one fork instead of dozens, which is most
 * of the cost of building a topology. Lines are `ip` arguments without the leading `ip`.
 */
export async function ipBatch(lines: readonly string[], opts: IpOptions = {}): Promise<void> {
  if (lines.length === 0) return;
  await runIp(argv([], opts, true), `${lines.join('\n')}\n`, lines);
}

/** Synchronous {@link ipBatch}, for `process.on('exit')` where nothing asynchronous runs. */
export function ipBatchSync(lines: readonly string[], opts: IpOptions = {}): void {
  if (lines.length === 0) return;
  const fullArgs = argv([], opts, true);
  const r = spawnSync('ip', fullArgs, {
    input: `${lines.join('\n')}\n`,
    encoding: 'utf8',
    timeout: IP_TIMEOUT_MS,
  });
  if (r.error) throw new IpCommandError(describe(fullArgs, lines), '', 'could not run', r.error);
  if (r.status !== 0) {
    throw new IpCommandError(describe(fullArgs, lines, r.stderr), r.stderr, `exited ${r.status}`);
  }
}

/** The names of every mounted network namespace (`ip netns list`, read without forking). */
export function listNetns(): string[] {
  try {
    return readdirSync(NETNS_DIR);
  } catch {
    return []; // The directory appears with the first `ip netns add`.
  }
}

/** The path `setns(2)` and `ip netns exec` use for a namespace. */
export function netnsPath(name: string): string {
  return `${NETNS_DIR}/${name}`;
}

/**
 * Pids of every process whose network namespace is one of `names` (what `ip netns pids` does, for
 * many namespaces in one pass over /proc). Processes we did not spawn count too: anything left
 * inside keeps a deleted namespace, and the veth links in it, alive.
 */
export function pidsInNetns(names: readonly string[]): number[] {
  const wanted = new Set<string>();
  for (const name of names) {
    try {
      const st = statSync(netnsPath(name));
      wanted.add(`${st.dev}:${st.ino}`);
    } catch {
      // Already gone.
    }
  }
  if (wanted.size === 0) return [];
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const st = statSync(`/proc/${entry}/ns/net`);
      if (wanted.has(`${st.dev}:${st.ino}`)) pids.push(Number(entry));
    } catch {
      // The process exited while we looked.
    }
  }
  return pids;
}

/** Whether a process is running: it exists and is not a zombie waiting for its parent to reap it. */
export function pidAlive(pid: number): boolean {
  try {
    // "pid (comm) S ...": the state follows the last ')', since comm may contain anything.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}
