/**
 * Reads the local config file and watches it. A change that does not decode is rejected with every
 * error (file, line, field path, reason) and the last good config stays in force.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { describeError } from '../errors.ts';
import { decodeLocalConfig } from './local-config.ts';
import type { MeshConfig } from './model.ts';
import { formatDecodeError } from './yaml-decoder.ts';

export type LoadResult = { ok: true; config: MeshConfig; text: string } | { ok: false; errors: string[] };

export async function loadLocalConfig(path: string): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    return { ok: false, errors: [`${path}: cannot read: ${describeError(err)}`] };
  }
  const r = decodeLocalConfig(text);
  if (!r.ok) return { ok: false, errors: r.errors.map((e) => formatDecodeError(path, e)) };
  return { ok: true, config: r.config, text };
}

export interface WatchHandlers {
  onConfig(config: MeshConfig): void;
  onRejected(errors: string[]): void;
}

/**
 * Watches the file's directory (editors often replace a file rather than write it in place) and
 * reloads after `debounceMs` of quiet. Unchanged content is ignored.
 */
export function watchLocalConfig(
  path: string,
  lastText: string,
  handlers: WatchHandlers,
  debounceMs = 100,
): () => void {
  let timer: NodeJS.Timeout | undefined;
  let last = lastText;
  let stopped = false;
  const reload = async () => {
    const r = await loadLocalConfig(path);
    if (stopped) return;
    if (!r.ok) return handlers.onRejected(r.errors);
    if (r.text === last) return;
    last = r.text;
    handlers.onConfig(r.config);
  };
  const name = basename(path);
  let watcher: FSWatcher | undefined = watch(dirname(path), (_event, file) => {
    if (file !== null && file !== name) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => void reload(), debounceMs);
  });
  watcher.on('error', () => undefined);
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    watcher?.close();
    watcher = undefined;
  };
}
