/**
 * Output of the operator commands: aligned tables (as `istioctl ztunnel-config` prints them), the
 * same data as JSON or YAML for scripts, and errors the user can act on.
 */
import { InvalidArgumentError } from 'commander';
import { stringify } from 'yaml';

export const OUTPUT_FORMATS = ['table', 'json', 'yaml'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** Columns padded to their widest cell and separated by two spaces; the last column is not padded. */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

/** `value` as JSON or YAML text (for `-o json|yaml`). */
export function formatData(format: Exclude<OutputFormat, 'table'>, value: unknown): string {
  return format === 'json' ? JSON.stringify(value, null, 2) + '\n' : stringify(value);
}

/** Commander's parser for `-o`: one of OUTPUT_FORMATS, or an error that lists them. */
export function parseOutputFormat(value: string): OutputFormat {
  if ((OUTPUT_FORMATS as readonly string[]).includes(value)) return value as OutputFormat;
  throw new InvalidArgumentError(`must be one of ${OUTPUT_FORMATS.join(', ')} `);
}

/** A duration for an AGE column, as kubectl prints one: `45s`, `12m`, `3h`, `2d`. */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172_800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

/** A problem the user must fix (an agent not running, a bad argument): printed without a stack. */
export class CliError extends Error {
  override readonly name = 'CliError';
}

/**
 * Runs a command's body: its text goes to stdout; a CliError is printed as `error: …` and sets exit
 * code 1 (anything else is a bug, and keeps its stack).
 */
export async function runCommand(body: () => Promise<string>): Promise<void> {
  try {
    process.stdout.write(await body());
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    process.stderr.write(`error: ${err.message}\n`);
    process.exitCode = 1;
  }
}
