/**
 * Bootstrap tokens for local mode: a file of `<token> <who>` lines, where `<who>` is a node name (a
 * node agent's token) or `sa:<namespace>/<service account>` (a workload's token, e.g. a waypoint's).
 * (In a cluster the controller asks the API server's TokenReview instead.)
 */
import { readFile } from 'node:fs/promises';
import { timingSafeEqual } from 'node:crypto';
import type { Caller, TokenAuthority } from './ca-service.ts';

export class FileTokenAuthority implements TokenAuthority {
  private readonly path: string;

  constructor(path: string) {
    this.path = path;
  }

  /** Read on every call, so tokens can be added or revoked by editing the file. */
  async callerOf(token: string): Promise<Caller | undefined> {
    const text = await readFile(this.path, 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      const [t, who] = line.trim().split(/\s+/);
      if (!t || !who || t.startsWith('#')) continue;
      const a = Buffer.from(t);
      const b = Buffer.from(token);
      if (a.length === b.length && timingSafeEqual(a, b)) return parseCaller(who);
    }
    return undefined;
  }
}

/** `node-1` → a node agent; `sa:<ns>/<name>` → a workload; anything else malformed → undefined. */
export function parseCaller(who: string): Caller | undefined {
  if (!who.startsWith('sa:')) return { kind: 'node', node: who };
  const m = /^sa:([a-z0-9-]+)\/([a-z0-9.-]+)$/.exec(who);
  return m ? { kind: 'workload', namespace: m[1]!, serviceAccount: m[2]! } : undefined;
}
