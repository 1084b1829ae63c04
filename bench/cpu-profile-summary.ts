/**
 * `node bench/cpu-profile-summary.ts <file.cpuprofile> [skip-seconds] [rows]`: where a V8 CPU profile's
 * busy time went, by function, self and inclusive. Made for the agents' profiles from
 * BENCH_CPU_PROF; `skip-seconds` drops the start-up (module loading) from the totals.
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: {
    readonly functionName: string;
    readonly url: string;
    readonly lineNumber: number;
  };
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Self and inclusive microseconds per function, and the idle time, from `skipUs` on. */
export function summarize(p: CpuProfile, skipUs: number) {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const key = (n: ProfileNode) => {
    const where = n.callFrame.url.replace(/^.*\/(node_modules\/[^/]+|src|bench)\//, '$1/');
    return `${n.callFrame.functionName || '(anonymous)'} ${where}:${n.callFrame.lineNumber + 1}`;
  };
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let elapsedUs = 0;
  let totalUs = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i] ?? 0;
    elapsedUs += dt;
    if (elapsedUs < skipUs) continue;
    totalUs += dt;
    const leaf = byId.get(p.samples[i]!);
    if (!leaf) continue;
    self.set(key(leaf), (self.get(key(leaf)) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
      const k = key(byId.get(id)!);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + dt);
    }
  }
  const idleUs = [...self].filter(([k]) => k.startsWith('(idle)')).reduce((s, [, v]) => s + v, 0);
  return { totalUs, idleUs, self, inclusive };
}

function main(): void {
  const [file, skip = '0', rows = '30'] = process.argv.slice(2);
  if (!file) {
    process.stderr.write(
      'usage: node bench/cpu-profile-summary.ts <file.cpuprofile> [skip-seconds] [rows]\n',
    );
    process.exitCode = 2;
    return;
  }
  const s = summarize(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, Number(skip) * 1e6);
  const busyUs = s.totalUs - s.idleUs;
  const top = (m: Map<string, number>) =>
    [...m]
      .filter(([k]) => !k.startsWith('(idle)') && !k.startsWith('(root)'))
      .sort((a, b) => b[1] - a[1])
      .slice(0, Number(rows))
      .map(([k, v]) => `${((100 * v) / busyUs).toFixed(1).padStart(6)} %  ${k}`);
  process.stdout.write(
    [
      `${file}: ${(s.totalUs / 1e6).toFixed(2)} s sampled, ${(busyUs / 1e6).toFixed(2)} s busy`,
      '(program) is native code with no JavaScript on the stack: nghttp2, OpenSSL, libuv, syscalls.',
      '',
      'self time, % of busy',
      ...top(s.self),
      '',
      'inclusive time, % of busy',
      ...top(s.inclusive),
      '',
    ].join('\n'),
  );
}

main();
