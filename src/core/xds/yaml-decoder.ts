/**
 * A small toolkit for decoding YAML into typed data while collecting every error with its field path
 * and line, so a broken file is reported in full (STYLE.md §3).
 */
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node as YamlNode, type Scalar } from 'yaml';

export interface DecodeError {
  /** Field path, e.g. `workloads[2].workloadIps[0]`. */
  readonly path: string;
  /** 1-based line in the source, 0 when unknown. */
  readonly line: number;
  readonly message: string;
}

export function formatDecodeError(file: string, e: DecodeError): string {
  return `${file}:${e.line}: ${e.path || '(root)'}: ${e.message}`;
}

export class YamlDecoder {
  readonly errors: DecodeError[] = [];
  private readonly lines: LineCounter;

  constructor(lines: LineCounter) {
    this.lines = lines;
  }

  /** Parses one YAML document; syntax errors are recorded and the root is undefined. */
  static parse(text: string): { decoder: YamlDecoder; root: YamlNode | undefined } {
    const lines = new LineCounter();
    const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
    const decoder = new YamlDecoder(lines);
    for (const e of doc.errors) {
      decoder.errors.push({
        path: '',
        line: lines.linePos(e.pos[0]).line,
        message: e.message.split('\n')[0]!,
      });
    }
    if (doc.errors.length > 0) return { decoder, root: undefined };
    return { decoder, root: (doc.contents as YamlNode | null) ?? undefined };
  }

  error(node: YamlNode | undefined, path: string, message: string): void {
    const pos = node?.range?.[0];
    this.errors.push({ path, line: pos === undefined ? 0 : this.lines.linePos(pos).line, message });
  }

  /** The entries of a mapping, rejecting keys not in `known` (unknown fields are errors). */
  map(node: YamlNode | undefined, path: string, known: readonly string[]): Map<string, YamlNode> | undefined {
    if (!isMap(node)) {
      this.error(node, path, 'must be a mapping');
      return undefined;
    }
    const out = new Map<string, YamlNode>();
    for (const pair of node.items) {
      const keyNode = pair.key as YamlNode;
      const key = isScalar(keyNode) ? String(keyNode.value) : undefined;
      if (key === undefined) {
        this.error(keyNode, path, 'keys must be scalars');
        continue;
      }
      if (!known.includes(key)) {
        this.error(keyNode, join(path, key), `unknown field (known: ${known.join(', ')})`);
        continue;
      }
      out.set(key, pair.value as YamlNode);
    }
    return out;
  }

  /** A mapping with free-form keys (e.g. port maps). */
  entries(node: YamlNode | undefined, path: string): [string, YamlNode, YamlNode][] {
    if (node === undefined || (isScalar(node) && node.value === null)) return [];
    if (!isMap(node)) {
      this.error(node, path, 'must be a mapping');
      return [];
    }
    return node.items.map((pair) => {
      const k = pair.key as YamlNode;
      return [isScalar(k) ? String(k.value) : '', pair.value as YamlNode, k];
    });
  }

  list(node: YamlNode | undefined, path: string): YamlNode[] {
    if (node === undefined || (isScalar(node) && node.value === null)) return [];
    if (!isSeq(node)) {
      this.error(node, path, 'must be a list');
      return [];
    }
    return node.items as YamlNode[];
  }

  string(node: YamlNode | undefined, path: string, fallback = ''): string {
    if (node === undefined || (isScalar(node) && node.value === null)) return fallback;
    if (!isScalar(node) || typeof node.value !== 'string') {
      this.error(node, path, 'must be a string');
      return fallback;
    }
    return (node as Scalar<string>).value;
  }

  requiredString(node: YamlNode | undefined, path: string, parent: YamlNode | undefined): string {
    if (node === undefined) {
      this.error(parent, path, 'is required');
      return '';
    }
    const v = this.string(node, path);
    if (v === '') this.error(node, path, 'must not be empty');
    return v;
  }

  bool(node: YamlNode | undefined, path: string, fallback: boolean): boolean {
    if (node === undefined) return fallback;
    if (!isScalar(node) || typeof node.value !== 'boolean') {
      this.error(node, path, 'must be true or false');
      return fallback;
    }
    return node.value;
  }

  /** An integer in [min, max], from a number or a numeric string (YAML map keys are often strings). */
  integer(node: YamlNode | undefined, path: string, min: number, max: number, fallback: number): number {
    if (node === undefined) return fallback;
    const v = isScalar(node) ? node.value : undefined;
    const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
      this.error(node, path, `must be an integer from ${min} to ${max}`);
      return fallback;
    }
    return n;
  }

  oneOf<T extends string>(node: YamlNode | undefined, path: string, allowed: readonly T[], fallback: T): T {
    if (node === undefined) return fallback;
    const v = isScalar(node) ? node.value : undefined;
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
      this.error(node, path, `must be one of ${allowed.join(', ')}`);
      return fallback;
    }
    return v as T;
  }
}

export function join(path: string, key: string | number): string {
  return typeof key === 'number' ? `${path}[${key}]` : path ? `${path}.${key}` : key;
}
