/**
 * `ambit version`: the package version (from package.json, which the image carries) and the Node.js
 * that runs it. No git at run time: the image has neither git nor the repository's history.
 */
import pkg from '../../package.json' with { type: 'json' };
import type { OutputFormat } from './output.ts';
import { formatData } from './output.ts';

export const VERSION: string = pkg.version;

/** What `ambit version` prints. */
export function versionText(format: OutputFormat): string {
  const info = { version: VERSION, node: process.version, platform: `${process.platform}/${process.arch}` };
  if (format !== 'table') return formatData(format, info);
  return `ambit ${info.version} (node ${info.node}, ${info.platform})\n`;
}
