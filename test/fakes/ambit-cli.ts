/**
 * Runs the real `ambit` CLI (src/cli/main.ts under this Node) as a child process, for the CLI
 * tests, and splits its tables.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const AMBIT_MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

export interface AmbitRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export function ambit(...args: string[]): Promise<AmbitRun> {
  return new Promise((resolve) => {
    execFile(process.execPath, [AMBIT_MAIN, ...args], { timeout: 90_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** The rows of a printed table, each split on its column gaps (two or more spaces). */
export function tableRows(table: string): string[][] {
  return table
    .trimEnd()
    .split('\n')
    .map((l) => l.split(/ {2,}/));
}
