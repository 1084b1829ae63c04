/**
 * Waiting on child processes with a deadline, so that no e2e test can hang on a process that
 * never prints or never exits.
 */
import type { ChildProcess } from 'node:child_process';

/** Whether the process has exited (or was never started). */
export function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null || child.pid === undefined;
}

/** Resolves true once `child` has exited, or false when `timeoutMs` passes first. */
export function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (exited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      child.off('exit', onExit);
      resolve(ok);
    };
    const onExit = () => done(true);
    const timer = setTimeout(() => done(exited(child)), timeoutMs);
    child.once('exit', onExit);
  });
}

/**
 * Resolves with the first match of `pattern` in the child's stdout and stderr together, and rejects
 * (with all output so far) when the child exits first or `timeoutMs` passes.
 */
export function waitForOutput(
  child: ChildProcess,
  pattern: RegExp,
  timeoutMs: number,
): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let output = '';
    const finish = (err: Error | undefined, match?: RegExpExecArray) => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
      child.off('error', onError);
      if (err) reject(err);
      else resolve(match!);
    };
    const onData = (chunk: Buffer | string) => {
      output += chunk.toString();
      const m = pattern.exec(output);
      if (m) finish(undefined, m);
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null) =>
      finish(new Error(`process exited (${signal ?? code}) before printing ${pattern}; output:\n${output}`));
    const onError = (err: Error) => finish(err);
    const timer = setTimeout(
      () => finish(new Error(`no ${pattern} within ${timeoutMs} ms; output so far:\n${output}`)),
      timeoutMs,
    );
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
    child.once('error', onError);
  });
}

/** Polls `predicate` every `intervalMs` until it holds or `timeoutMs` passes; returns whether it held. */
export async function waitUntil(
  predicate: () => boolean,
  timeoutMs: number,
  intervalMs = 20,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  return true;
}
