/**
 * `ambit analyze -f <dir|file>...`: the controller's own decoders and translation run over YAML
 * files, every problem printed with its file, line, object, field path, reason and a hint, as
 * `istioctl analyze` does. Nothing is applied anywhere.
 *
 * The objects of all the files form one mesh, as the files of `ambit local`'s directory do: a
 * VirtualService is checked against the Services and DestinationRules given with it, and an object
 * defined in two files is taken from the first (in the order given, a directory's files by name).
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isCollection, isNode, LineCounter, parseAllDocuments, type Document } from 'yaml';
import { DEFAULT_TRUST_DOMAIN } from '../core/identity/spiffe.ts';
import { describeError } from '../core/errors.ts';
import {
  buildSnapshot,
  decodeKubeYaml,
  namespaceOf,
  type DecodedObject,
  type KubeYamlProblem,
} from '../controller/files/kube-yaml.ts';
import { translateL7 } from '../controller/translate/l7/index.ts';
import {
  translate,
  type TranslateOptions,
  type TranslateProblem,
} from '../controller/translate/workloads.ts';
import { CliError, formatData, type OutputFormat } from './output.ts';

const YAML_FILE = /\.ya?ml$/;

export const Severity = { Error: 'Error', Warning: 'Warning', Info: 'Info' } as const;
export type Severity = (typeof Severity)[keyof typeof Severity];

/** One problem, located (line 0: not tied to a line, e.g. an unreadable file), with what to do about it. */
export type Finding = Omit<KubeYamlProblem, 'severity'> & {
  readonly severity: Severity;
  readonly hint: string | undefined;
};

export interface AnalyzeResult {
  readonly files: readonly string[];
  readonly findings: readonly Finding[];
}

/**
 * Severity as `istioctl analyze` ranks the problem where it differs from the controller's. The
 * controller applies a route to an undefined subset (its requests get 503, as in Istio), so for it
 * that is a warning; istioctl reports it as an error (IST0101), and so does analyze.
 */
function analyzerSeverity(p: { kind: string; path: string; severity: string }): Severity {
  if (p.severity === 'error') return Severity.Error;
  if (p.severity === 'info') return Severity.Info;
  if (p.kind === 'VirtualService' && /\.subset$/.test(p.path)) return Severity.Error;
  return Severity.Warning;
}

/** What to do about a problem, by its field path and reason; undefined when the reason says it all. */
const HINTS: readonly {
  readonly path?: RegExp;
  readonly message?: RegExp;
  readonly hint: (m: RegExpExecArray | null) => string;
}[] = [
  {
    message: /subset "([^"]*)" is not defined by (?:the|any) DestinationRule for ([^\s;(]+)/,
    hint: (m) =>
      `define it in a DestinationRule for ${m![2]}: spec.subsets: [{name: ${m![1]}, labels: {version: ${m![1]}}}]`,
  },
  {
    path: /\.weight$/,
    hint: () => "a destination's weight is 0..100, and the weights of one route should add up to 100",
  },
  {
    path: /\.regex$/,
    hint: () =>
      'use RE2 syntax (no backreferences or lookaround) without a repeated group that itself repeats, e.g. "(ab)+" not "(a+)+"',
  },
  {
    message: /duration|must not be negative|"-\d/,
    path: /(timeout|Timeout|interval|Interval|delay|Delay|Time|ttl)$/,
    hint: () => 'durations are Go-style and not negative: "500ms", "1.5s", "2m", "1h"',
  },
  {
    path: /^spec\.listeners\[\d+\]\.port$/,
    hint: () => 'ports are 1-65535; a waypoint listens on {name: mesh, port: 15008, protocol: HBONE}',
  },
  {
    path: /^spec\.listeners$/,
    hint: () => 'add the listener `ambit waypoint apply` writes: {name: mesh, port: 15008, protocol: HBONE}',
  },
  {
    message: /already defined at /,
    hint: () =>
      "the first definition is used (files in the order given, a directory's by name): remove or rename the other",
  },
  {
    message: /is not a Service or ServiceEntry in the mesh/,
    hint: () =>
      "create the Service (or a ServiceEntry for an outside host), and pass its file to analyze too; short names are looked up in the rule's namespace",
  },
  {
    message: /^YAML syntax/,
    hint: () => 'check the indentation and quoting at this line',
  },
  {
    message: /unknown field/,
    hint: () => 'check the spelling against the Istio or Kubernetes API reference',
  },
];

function hintFor(path: string, message: string): string | undefined {
  for (const h of HINTS) {
    if (h.path && !h.path.test(path)) continue;
    const m = h.message ? h.message.exec(message) : null;
    if (h.message && !m) continue;
    return h.hint(m);
  }
  return undefined;
}

/** The YAML files named: files as given, directories' `*.yaml`/`*.yml` by name (recursively with `recursive`). */
async function expandPaths(paths: readonly string[], recursive: boolean): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, top: boolean) => {
    const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
    );
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = join(dir, e.name);
      if (e.isDirectory()) {
        if (recursive) await walk(p, false);
      } else if (YAML_FILE.test(e.name)) out.push(p);
    }
    if (top && out.length === 0 && !recursive)
      throw new CliError(`no *.yaml or *.yml files in ${dir} (use -R to look in its subdirectories)`);
  };
  for (const p of paths) {
    let isDir: boolean;
    try {
      isDir = (await stat(p)).isDirectory();
    } catch (err) {
      throw new CliError(`cannot read ${p}: ${describeError(err)}`);
    }
    if (isDir) await walk(p, true);
    else out.push(p);
  }
  return out;
}

/** Finds objects' YAML nodes by kind, namespace and name, to turn a field path into a line. */
class Locator {
  private readonly docs = new Map<string, { lines: LineCounter; docs: Document.Parsed[] }>();

  add(file: string, text: string): void {
    const lines = new LineCounter();
    this.docs.set(file, {
      lines,
      docs: parseAllDocuments(text, { lineCounter: lines }) as Document.Parsed[],
    });
  }

  /** The line of `path` inside the object, or of the deepest part of it that exists; else `fallback`. */
  line(o: DecodedObject, path: string, fallback: number): number {
    const parsed = this.docs.get(o.file);
    if (!parsed) return fallback;
    const steps = pathSteps(path);
    for (const doc of parsed.docs) {
      for (const root of objectNodes(doc)) {
        if (!isCollection(root) || !root.range || parsed.lines.linePos(root.range[0]).line !== o.line)
          continue;
        for (let n = steps.length; n > 0; n--) {
          const node: unknown = root.getIn(steps.slice(0, n), true);
          if (isNode(node) && node.range) return parsed.lines.linePos(node.range[0]).line;
        }
        return o.line;
      }
    }
    return fallback;
  }
}

/** A document's object nodes: the root, or a List's items. */
function objectNodes(doc: Document.Parsed): unknown[] {
  const root = doc.contents;
  if (!isCollection(root)) return [];
  const items = root.get('items', true);
  return root.get('kind') !== undefined && String(root.get('kind')).endsWith('List') && isCollection(items)
    ? items.items
    : [root];
}

/** `spec.http[0].match[1].headers["x.y"].exact` → ['spec', 'http', 0, 'match', 1, 'headers', 'x.y', 'exact']. */
function pathSteps(path: string): (string | number)[] {
  const steps: (string | number)[] = [];
  const re = /\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]|\.?([^.[\]]+)/g;
  for (const m of path.matchAll(re)) {
    if (m[1] !== undefined) steps.push(Number(m[1]));
    else if (m[2] !== undefined) steps.push(JSON.parse(`"${m[2]}"`) as string);
    else if (m[3] !== undefined) steps.push(m[3]);
  }
  return steps;
}

/** The options the controller translates with, from the same environment variables and defaults. */
function translateOptions(env: NodeJS.ProcessEnv): TranslateOptions {
  return {
    clusterId: env.CLUSTER_ID || 'Kubernetes',
    trustDomain: env.TRUST_DOMAIN || DEFAULT_TRUST_DOMAIN,
    clusterDomain: env.CLUSTER_DOMAIN || 'cluster.local',
    rootNamespace: env.ROOT_NAMESPACE || 'istio-system',
  };
}

export async function analyze(
  paths: readonly string[],
  opts: { recursive: boolean; env: NodeJS.ProcessEnv },
): Promise<AnalyzeResult> {
  const files = await expandPaths(paths, opts.recursive);
  const locator = new Locator();
  const objects: DecodedObject[] = [];
  const decodeProblems: KubeYamlProblem[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new CliError(`cannot read ${file}: ${describeError(err)}`);
    }
    const decoded = decodeKubeYaml(text, file);
    objects.push(...decoded.objects);
    decodeProblems.push(...decoded.problems);
    locator.add(file, text);
  }
  const built = buildSnapshot(objects);
  const options = translateOptions(opts.env);
  const t = translate(built.snapshot, options);
  const l7 = translateL7(
    {
      snapshot: built.snapshot,
      mesh: t.config,
      virtualServices: built.snapshot.virtualServices,
      destinationRules: built.snapshot.destinationRules,
    },
    options,
  );

  // The translation names objects, not files: find the definition it used (the first one).
  const byObject = new Map<string, DecodedObject>();
  for (const o of objects) {
    const key = `${o.object.kind}/${namespaceOf(o.object)}/${o.object.value.name}`;
    if (!byObject.has(key)) byObject.set(key, o);
  }
  const located = (
    p: TranslateProblem | (typeof l7.problems)[number] | (typeof l7.authzProblems)[number],
  ): Finding => {
    const o = byObject.get(`${p.kind}/${p.namespace}/${p.name}`);
    return finding({
      ...p,
      file: o?.file ?? '',
      line: o ? locator.line(o, p.path, o.line) : 0,
    });
  };
  const findings = [
    ...[...decodeProblems, ...built.problems].map(finding),
    ...[...t.problems, ...l7.problems, ...l7.authzProblems].map(located),
  ];
  const order = new Map(files.map((f, i) => [f, i]));
  findings.sort(
    (a, b) =>
      (order.get(a.file) ?? files.length) - (order.get(b.file) ?? files.length) ||
      a.line - b.line ||
      a.path.localeCompare(b.path),
  );
  return { files, findings };
}

function finding(p: KubeYamlProblem | (Omit<KubeYamlProblem, 'severity'> & { severity: string })): Finding {
  return {
    severity: analyzerSeverity(p),
    file: p.file,
    line: p.line,
    kind: p.kind,
    namespace: p.namespace,
    name: p.name,
    path: p.path,
    message: p.message,
    hint: hintFor(p.path, p.message),
  };
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** The report: one entry per finding, then a summary line (istioctl's ✔ / ✘). */
export function formatAnalysis(result: AnalyzeResult, format: OutputFormat): string {
  const count = (s: Severity) => result.findings.filter((f) => f.severity === s).length;
  const errors = count(Severity.Error);
  const warnings = count(Severity.Warning);
  if (format !== 'table')
    return formatData(format, { files: result.files, errors, warnings, findings: result.findings });
  const lines = result.findings.map((f) => {
    const where = f.file ? `${f.file}${f.line ? `:${f.line}` : ''}` : '(no file)';
    const obj = f.kind ? ` ${f.kind} ${f.namespace ? `${f.namespace}/` : ''}${f.name}` : '';
    const text = `${f.severity} [${where}]${obj}${f.path ? ` ${f.path}` : ''}: ${f.message}`;
    return f.hint ? `${text}\n    hint: ${f.hint}` : text;
  });
  const files = plural(result.files.length, 'file');
  lines.push(
    errors + warnings === 0
      ? `✔ No validation issues found when analyzing ${files}.`
      : `${errors > 0 ? '✘' : '!'} ${plural(errors, 'error')} and ${plural(warnings, 'warning')} found when analyzing ${files}.`,
  );
  return lines.join('\n') + '\n';
}

/** Exit code: 1 when any error was found, else 0 (warnings do not fail). */
export function analysisExitCode(result: AnalyzeResult): number {
  return result.findings.some((f) => f.severity === Severity.Error) ? 1 : 0;
}
