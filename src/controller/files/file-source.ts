/**
 * The local-mode source of Kubernetes objects: every `*.yaml` / `*.yml` file in one directory (not
 * its subdirectories), merged into one snapshot, re-read after any change. This is the I/O edge;
 * decoding is kube-yaml.ts's.
 */
import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { describeError } from '../../core/errors.ts';
import type { KubeSnapshot } from '../translate/kube-types.ts';
import { buildSnapshot, decodeKubeYaml, type DecodedObject, type KubeYamlProblem } from './kube-yaml.ts';

export interface KubeDirResult {
  readonly snapshot: KubeSnapshot;
  readonly problems: readonly KubeYamlProblem[];
  /** `kind: Secret` documents, as plain objects (gateway certificates, served over SDS). */
  readonly secrets: readonly unknown[];
}

const YAML_FILE = /\.ya?ml$/;

/**
 * Reads the directory once. Files are read in name order, which decides which of two definitions of
 * the same object wins (the first). An unreadable directory or file is a problem, not a throw.
 */
export async function loadKubeDir(dir: string): Promise<KubeDirResult> {
  return (await readDir(dir, new Map())).result;
}

type DecodeCache = Map<
  string,
  { digest: string; decoded: ReturnType<typeof decodeKubeYaml>; secrets: readonly unknown[] }
>;

const SECRET_DOC = /^kind:\s*["']?Secret["']?\s*$/m;

/** The Secret documents of a file (`v1`, `kind: Secret`); parsed only when the text has one. */
function secretDocuments(text: string): unknown[] {
  if (!SECRET_DOC.test(text)) return [];
  return parseAllDocuments(text).flatMap((doc) => {
    if (!('toJS' in doc) || doc.errors.length > 0) return [];
    const obj = doc.toJS() as { apiVersion?: unknown; kind?: unknown } | null;
    return obj && obj.kind === 'Secret' && obj.apiVersion === 'v1' ? [obj] : [];
  });
}

/**
 * The result plus a fingerprint of every file's content, so the watcher can tell a real change from
 * a touch. `cache` keeps each file's decoding by content: after a change only the changed files are
 * parsed again (YAML parsing is most of the cost: about 1.5 s for a 10,000-object file on these
 * machines). Contents are compared by digest, so no file's text outlives its read.
 */
async function readDir(
  dir: string,
  cache: DecodeCache,
): Promise<{ result: KubeDirResult; fingerprint: string }> {
  const problems: KubeYamlProblem[] = [];
  const unreadable = (file: string, err: unknown): KubeYamlProblem => ({
    severity: 'error',
    file,
    line: 0,
    kind: '',
    namespace: '',
    name: '',
    path: '',
    message: `cannot read: ${describeError(err)}`,
  });
  let names: string[];
  try {
    names = (await readdir(dir, { withFileTypes: true }))
      .filter((e) => (e.isFile() || e.isSymbolicLink()) && YAML_FILE.test(e.name))
      .map((e) => e.name)
      .sort();
  } catch (err) {
    const result = { snapshot: buildSnapshot([]).snapshot, problems: [unreadable(dir, err)], secrets: [] };
    return { result, fingerprint: `error:${describeError(err)}` };
  }
  const objects: DecodedObject[] = [];
  const secrets: unknown[] = [];
  const fingerprint = createHash('sha256');
  for (const name of names) {
    const file = join(dir, name);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      // Removed between readdir and now (an editor's save, a rename): the next event re-reads.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      problems.push(unreadable(file, err));
      fingerprint.update(`${name}\0error\0\0`);
      continue;
    }
    const digest = createHash('sha256').update(text).digest('hex');
    fingerprint.update(`${name}\0${digest}\0\0`);
    const cached = cache.get(file);
    const hit = cached?.digest === digest ? cached : undefined;
    const decoded = hit?.decoded ?? decodeKubeYaml(text, file);
    const fileSecrets = hit?.secrets ?? secretDocuments(text);
    cache.set(file, { digest, decoded, secrets: fileSecrets });
    objects.push(...decoded.objects);
    secrets.push(...fileSecrets);
    problems.push(...decoded.problems);
  }
  const seen = new Set(names.map((n) => join(dir, n)));
  for (const file of cache.keys()) if (!seen.has(file)) cache.delete(file);
  const built = buildSnapshot(objects);
  problems.push(...built.problems);
  return {
    result: { snapshot: built.snapshot, problems, secrets },
    fingerprint: fingerprint.digest('hex'),
  };
}

export interface WatchKubeDirOptions {
  /** Called with the first read, then after every change that alters a file's content. */
  onSnapshot(snapshot: KubeSnapshot, problems: readonly KubeYamlProblem[]): void;
  /** Quiet time after the last change before re-reading (editors write in several steps). */
  readonly debounceMs?: number;
  /** Every Secret document of the directory, before each onSnapshot call. */
  readonly onSecrets?: (secrets: readonly unknown[]) => void;
}

export interface KubeDirWatch {
  /** Resolves after the first onSnapshot call. */
  readonly ready: Promise<void>;
  close(): void;
}

/**
 * Watches the directory itself rather than each file: editors often save by writing a new file and
 * renaming it over the old one, which a per-file watch would lose. Reads never overlap; a change
 * during a read schedules one more. Content that did not change (a touch, a save without edits) is
 * not reported again.
 */
export function watchKubeDir(dir: string, options: WatchKubeDirOptions): KubeDirWatch {
  const debounceMs = options.debounceMs ?? 100;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let reading = false;
  let again = false;
  let last: string | undefined;
  const cache: DecodeCache = new Map();

  const reload = async (): Promise<void> => {
    if (reading) {
      again = true;
      return;
    }
    reading = true;
    try {
      do {
        again = false;
        const { result, fingerprint } = await readDir(dir, cache);
        if (closed) return;
        if (fingerprint === last) continue;
        last = fingerprint;
        options.onSecrets?.(result.secrets);
        options.onSnapshot(result.snapshot, result.problems);
      } while (again && !closed);
    } finally {
      reading = false;
    }
  };

  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dir, (_event, file) => {
      if (closed || (file !== null && !YAML_FILE.test(file))) return;
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => void reload(), debounceMs);
    });
    // A watch error (say, the directory was removed) must not crash the controller; the last
    // snapshot stays in force.
    watcher.on('error', () => undefined);
  } catch {
    // The directory does not exist (yet): the first read reports it.
  }

  const ready = reload();
  return {
    ready,
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      watcher?.close();
      watcher = undefined;
    },
  };
}
