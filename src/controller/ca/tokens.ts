/**
 * Bootstrap tokens for local mode: a file of `<token> <node>` lines, one per node agent. (In a
 * cluster the controller asks the API server's TokenReview instead.)
 */
import { readFile } from 'node:fs/promises';
import { timingSafeEqual } from 'node:crypto';
import type { TokenAuthority } from './ca-service.ts';

export class FileTokenAuthority implements TokenAuthority {
  private readonly path: string;

  constructor(path: string) {
    this.path = path;
  }

  /** Read on every call, so tokens can be added or revoked by editing the file. */
  async nodeOf(token: string): Promise<string | undefined> {
    const text = await readFile(this.path, 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      const [t, node] = line.trim().split(/\s+/);
      if (!t || !node || t.startsWith('#')) continue;
      const a = Buffer.from(t);
      const b = Buffer.from(token);
      if (a.length === b.length && timingSafeEqual(a, b)) return node;
    }
    return undefined;
  }
}
