/**
 * `npm run bench`: Ambit's data path against the baselines a user would compare it with, measured in
 * one run on this machine and printed as one table (see bench/README.md for what each row means).
 *
 *   direct         load generator → backend
 *   node-tls-pipe  load generator → Node TCP→TLS proxy → Node TLS→TCP proxy → backend (mTLS, one TLS
 *                  connection per client connection)
 *   haproxy        load generator → HAProxy (mode tcp, nbthread 1) → backend
 *   ambit          load generator → SOCKS5 → agent node-a → HBONE (mTLS, HTTP/2 CONNECT) → agent node-b
 *                  → backend
 *
 * The backend, the load generator and each proxy are separate processes; the bench process itself
 * only orchestrates. Environment: BENCH_QUICK=1 shortens every test (for trying the harness),
 * BENCH_TESTS=idle,throughput,connections,latency picks tests, BENCH_CPU_PROF=<dir> runs the agents
 * with --cpu-prof (profiles written when they stop), BENCH_KEEP=1 keeps the temp dir and its logs,
 * BENCH_HAPROXY=<path> uses another haproxy binary.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CertificateAuthority } from '../src/core/identity/ca.ts';
import { LocalCaProvider } from '../src/core/identity/secret-manager.ts';
import { formatSpiffe, type Identity } from '../src/core/identity/spiffe.ts';
import { ProcessGroup, type Worker } from './lib/children.ts';
import { haproxyVersion, startHaproxy } from './lib/haproxy.ts';
import type { CpuProbe, Target } from './lib/load.ts';
import { startMesh, type MeshLayout } from './lib/mesh.ts';
import { clockTicksPerSecond, totalRssBytes } from './lib/proc.ts';
import {
  buildRows,
  formatTable,
  PATHS,
  type AllResults,
  type PathName,
  type PathResults,
} from './lib/report.ts';
import { median } from './lib/stats.ts';

const MiB = 1024 * 1024;
const QUICK = process.env.BENCH_QUICK === '1';
const KEEP = process.env.BENCH_KEEP === '1';
const CPU_PROF_DIR = process.env.BENCH_CPU_PROF ? resolve(process.env.BENCH_CPU_PROF) : undefined;
const TESTS = ['idle', 'throughput', 'connections', 'latency'] as const;
/** BENCH_TESTS=latency,idle runs only those (e.g. to profile one workload); default all. */
const SELECTED = new Set(
  process.env.BENCH_TESTS ? process.env.BENCH_TESTS.split(',').map((t) => t.trim()) : TESTS,
);
const RESULTS_FILE = join(dirname(fileURLToPath(import.meta.url)), 'results', 'latest.json');

/** Every test is bounded both in count and in time. */
const PARAMS = {
  throughput: {
    warmup: { maxBytes: 256 * MiB, maxMs: 1_000 },
    runs: QUICK ? 1 : 3,
    maxBytes: 1024 * MiB,
    maxMs: QUICK ? 2_000 : 5_000,
  },
  connections: {
    concurrency: 16,
    warmupMs: QUICK ? 300 : 1_000,
    runs: QUICK ? 1 : 3,
    maxMs: QUICK ? 1_500 : 2_000,
    maxConnections: 100_000,
  },
  latency: {
    connections: 10,
    ratePerSecond: 1_000,
    warmupMs: QUICK ? 300 : 1_000,
    measureMs: QUICK ? 1_500 : 6_000,
    requestBytes: 100,
  },
  idle: { connections: 1_000, dialConcurrency: 50, settleMs: 1_000 },
  /** Pause between measurements so one path's leftovers (TIME_WAIT, GC) do not land on the next. */
  settleMs: 300,
  stopGraceMs: 5_000,
} as const;

/** Addresses in 127.77/16 (the local mesh uses 127.10). */
const NET = {
  backend: { host: '127.77.2.2', port: 9000 },
  tlsPipeClient: { host: '127.77.3.1', port: 9000 },
  tlsPipeServer: { host: '127.77.3.2', port: 9443 },
  haproxy: { host: '127.77.4.1', port: 9000 },
  mesh: {
    clientPodIp: '127.77.1.2',
    serverPodIp: '127.77.2.2',
    nodeA: { name: 'node-a', ip: '127.77.0.1' },
    nodeB: { name: 'node-b', ip: '127.77.0.2' },
    socks: { host: '127.77.0.1', port: 1080 },
  } satisfies MeshLayout,
} as const;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err)).split('\n')[0]!;
const pct = (part: number, whole: number) => (whole > 0 ? `${((100 * part) / whole).toFixed(0)} %` : '—');
const log = (msg: string) => process.stderr.write(`bench: ${msg}\n`);

interface PathUnderTest {
  readonly name: PathName;
  readonly target: Target;
  readonly results: PathResults;
}

async function issueCertificate(provider: LocalCaProvider, identity: Identity, caPem: string) {
  const cert = await provider.fetch(identity);
  return { keyPem: cert.keyPem, certPem: cert.chainPem.join('\n'), caPem };
}

async function runBench(group: ProcessGroup, dir: string): Promise<boolean> {
  const started = Date.now();
  const ticksPerSecond = clockTicksPerSecond();
  if (CPU_PROF_DIR) await mkdir(CPU_PROF_DIR, { recursive: true });
  const unknown = [...SELECTED].filter((t) => !(TESTS as readonly string[]).includes(t));
  if (unknown.length > 0)
    throw new Error(`BENCH_TESTS: unknown ${unknown.join(', ')}; known: ${TESTS.join(', ')}`);
  const loadBefore = loadavg()[0]!;
  if (loadBefore > 0.5) {
    log(`warning: 1-minute load average is ${loadBefore.toFixed(2)}; other work on this machine adds noise`);
  }

  log('creating the CA and certificates');
  const ca = await CertificateAuthority.createSelfSigned('cluster.local');
  const caCertPath = join(dir, 'ca-cert.pem');
  const caKeyPath = join(dir, 'ca-key.pem');
  await writeFile(caCertPath, ca.rootCertPem);
  await writeFile(caKeyPath, ca.rootKeyPem, { mode: 0o600 });
  const provider = new LocalCaProvider(ca, 24 * 3600_000);
  const pipeServerId = {
    trustDomain: 'cluster.local',
    namespace: 'bench',
    serviceAccount: 'tls-pipe-server',
  };
  const pipeClientId = {
    trustDomain: 'cluster.local',
    namespace: 'bench',
    serviceAccount: 'tls-pipe-client',
  };

  log('starting the backend, the TLS pipe, HAProxy and the agents');
  await group.fork('backend', 'backend', NET.backend);
  const pipeServer = await group.fork('tls-pipe-server', 'tls-pipe-server', {
    listen: NET.tlsPipeServer,
    upstream: NET.backend,
    creds: await issueCertificate(provider, pipeServerId, ca.trustBundlePem),
  });
  const pipeClient = await group.fork('tls-pipe-client', 'tls-pipe-client', {
    listen: NET.tlsPipeClient,
    upstream: NET.tlsPipeServer,
    creds: await issueCertificate(provider, pipeClientId, ca.trustBundlePem),
    expectedServerSan: formatSpiffe(pipeServerId),
  });
  const haproxyVer = haproxyVersion();
  const haproxy = haproxyVer ? await startHaproxy(group, dir, NET.haproxy, NET.backend) : undefined;
  const agents = await startMesh(group, NET.mesh, { dir, caCertPath, caKeyPath, cpuProfDir: CPU_PROF_DIR });
  const loadgen: Worker = await group.fork('loadgen', 'loadgen', {});

  const paths: PathUnderTest[] = [
    { name: 'direct', target: NET.backend, results: { pids: [], errors: {} } },
    {
      name: 'node-tls-pipe',
      target: NET.tlsPipeClient,
      results: { pids: [pipeClient.pid, pipeServer.pid], errors: {} },
    },
    {
      name: 'haproxy',
      target: NET.haproxy,
      results: haproxy
        ? { pids: [haproxy.pid!], errors: {} }
        : { pids: [], errors: {}, skipped: 'n/a (apt-get install haproxy)' },
    },
    {
      name: 'ambit',
      target: { ...NET.mesh.socks, socks: { ip: NET.backend.host, port: NET.backend.port } },
      results: { pids: agents.map((a) => a.child.pid!), errors: {} },
    },
  ];
  const cpu = (p: PathUnderTest): CpuProbe => ({ pids: p.results.pids, ticksPerSecond });

  /**
   * Runs `fn` on every live path, `rounds` times over. Rounds are interleaved (all paths, then all
   * paths again) so that a burst of other work on the machine lands on every path alike. A failure
   * is recorded against its path, which then sits out the rest of the test.
   */
  const eachPath = async (
    test: string,
    title: string,
    rounds: number,
    fn: (p: PathUnderTest, round: number) => Promise<void>,
  ): Promise<PathUnderTest[]> => {
    const live = () =>
      paths.filter((p) => !p.results.skipped && !p.results.errors[test] && !p.results.errors.probe);
    if (test !== 'probe' && !SELECTED.has(test)) return [];
    if (title) log(title);
    for (let round = 0; round < rounds; round++) {
      for (const p of live()) {
        try {
          await fn(p, round);
        } catch (err) {
          p.results.errors[test] = errorText(err);
          log(`  ${p.name} ${test} failed: ${errorText(err)}`);
        }
        await sleep(PARAMS.settleMs);
      }
    }
    return live();
  };
  /** The run whose `key` is the median (runs are odd in number). */
  const medianRun = <T>(runs: readonly T[], key: (r: T) => number): T => {
    const mid = median(runs.map(key));
    return runs.find((r) => key(r) === mid)!;
  };

  await eachPath('probe', '', 1, async (p) => {
    await loadgen.call('probe', p.target);
    if (p.results.pids.length > 0) p.results.rssStartBytes = totalRssBytes(p.results.pids);
  });

  // First, while no load has grown the processes' heaps: slack left by earlier tests would hide
  // the cost of new connections.
  await eachPath('idle', '1/4 memory per idle connection', 1, async (p) => {
    if (p.results.pids.length === 0) return;
    const { connections: n, dialConcurrency } = PARAMS.idle;
    const open = async () => {
      const r = await loadgen.call('openIdle', p.target, n, dialConcurrency);
      if (r.errors > 0) throw new Error(`${r.errors} idle connections failed, first: ${r.firstError}`);
      await sleep(PARAMS.idle.settleMs);
      return totalRssBytes(p.results.pids);
    };
    const before = totalRssBytes(p.results.pids);
    try {
      const first = await open();
      const second = await open();
      p.results.idle = {
        connections: n,
        rssBeforeBytes: before,
        rssAfterFirstBytes: first,
        rssAfterSecondBytes: second,
        perConnectionKiB: (first - before) / n / 1024,
        nextPerConnectionKiB: (second - first) / n / 1024,
      };
      log(
        `  ${p.name.padEnd(14)} ${p.results.idle.perConnectionKiB.toFixed(1)} KiB per connection ` +
          `(next ${n}: ${p.results.idle.nextPerConnectionKiB.toFixed(1)} KiB)`,
      );
    } finally {
      await loadgen.call('closeIdle');
    }
  });

  const t = PARAMS.throughput;
  const throughputDone = await eachPath(
    'throughput',
    `2/4 throughput, one long connection (median of ${t.runs})`,
    1 + t.runs,
    async (p, round) => {
      if (round === 0) return void (await loadgen.call('throughput', p.target, { ...t.warmup, cpu: cpu(p) }));
      const r = await loadgen.call('throughput', p.target, {
        maxBytes: t.maxBytes,
        maxMs: t.maxMs,
        cpu: cpu(p),
      });
      (p.results.throughputRuns ??= []).push(r);
    },
  );
  for (const p of throughputDone) {
    const runs = p.results.throughputRuns ?? [];
    const chosen = (p.results.throughput = medianRun(runs, (r) => r.gbitPerSecond));
    log(
      `  ${p.name.padEnd(14)} ${runs.map((r) => r.gbitPerSecond.toFixed(2)).join(' / ')} Gbit/s` +
        (p.results.pids.length > 0
          ? `, ${(chosen.cpuSeconds / (chosen.bytes / 1024 ** 3)).toFixed(2)} proxy CPU-s/GiB ` +
            `(${pct(chosen.cpuSystemSeconds, chosen.cpuSeconds)} in the kernel)`
          : ''),
    );
  }

  const c = PARAMS.connections;
  const connectionsDone = await eachPath(
    'connections',
    `3/4 new connections per second, ${c.concurrency} concurrent (median of ${c.runs})`,
    1 + c.runs,
    async (p, round) => {
      const o = { concurrency: c.concurrency, maxConnections: c.maxConnections, cpu: cpu(p) };
      const r = await loadgen.call('connectionRate', p.target, {
        ...o,
        maxMs: round === 0 ? c.warmupMs : c.maxMs,
      });
      if (r.errors > 0) throw new Error(`${r.errors} failed connections, first: ${r.firstError}`);
      if (round > 0) (p.results.connectionRuns ??= []).push(r);
    },
  );
  for (const p of connectionsDone) {
    const runs = p.results.connectionRuns ?? [];
    const r = (p.results.connections = medianRun(runs, (x) => x.perSecond));
    log(
      `  ${p.name.padEnd(14)} ${runs.map((x) => x.perSecond.toFixed(0)).join(' / ')} conn/s` +
        (p.results.pids.length > 0
          ? `, ${((r.cpuSeconds / r.connections) * 1e6).toFixed(0)} µs proxy CPU per connection ` +
            `(${pct(r.cpuSystemSeconds, r.cpuSeconds)} in the kernel)`
          : ''),
    );
  }

  await eachPath('latency', '4/4 latency and CPU at 1,000 requests per second', 1, async (p) => {
    const r = await loadgen.call('latency', p.target, { ...PARAMS.latency, cpu: cpu(p) });
    if (r.unanswered > 0) p.results.errors.latency = `${r.unanswered} requests unanswered`;
    p.results.latency = r;
    log(
      `  ${p.name.padEnd(14)} p50 ${r.p50Ms.toFixed(3)} ms, p99 ${r.p99Ms.toFixed(3)} ms, ` +
        `${r.achievedPerSecond.toFixed(0)} req/s` +
        (p.results.pids.length > 0
          ? `, ${r.cpuSecondsPer1000.toFixed(3)} proxy CPU-s per 1000 requests ` +
            `(${pct(r.cpuSystemSeconds, r.cpuSeconds)} in the kernel)`
          : ''),
    );
  });

  for (const p of paths) {
    if (p.results.pids.length > 0 && !p.results.skipped)
      p.results.rssEndBytes = totalRssBytes(p.results.pids);
  }
  const all = Object.fromEntries(paths.map((p) => [p.name, p.results])) as unknown as AllResults;
  const rows = buildRows(all);
  const elapsedS = (Date.now() - started) / 1000;
  process.stdout.write(
    `\nAmbit data-path benchmark — ${cpus().length} vCPU, Linux ${release()}, Node ${process.version}, ` +
      `${haproxyVer ?? 'HAProxy not installed'}; ${elapsedS.toFixed(0)} s${QUICK ? ' (BENCH_QUICK)' : ''}\n` +
      'Ratios are ambit ÷ haproxy (÷ direct when HAProxy is missing). CPU and memory count every proxy process\n' +
      'of a path: both agents for ambit, both Node processes for the TLS pipe, the one HAProxy process.\n\n' +
      formatTable(all, rows) +
      '\n',
  );

  await mkdir(dirname(RESULTS_FILE), { recursive: true });
  await writeFile(
    RESULTS_FILE,
    JSON.stringify(
      {
        generatedAt: new Date().toISOString(),
        loadAverage1m: { atStart: loadBefore, atEnd: loadavg()[0] },
        machine: {
          vcpus: cpus().length,
          cpuModel: cpus()[0]?.model,
          kernel: release(),
          node: process.version,
        },
        haproxy: haproxyVer ?? null,
        quick: QUICK,
        elapsedSeconds: elapsedS,
        parameters: PARAMS,
        paths: Object.fromEntries(PATHS.map((n) => [n, all[n]])),
        table: rows.map((r) => ({
          metric: r.metric,
          ...r.values,
          ratio: r.ratio ?? null,
          target: r.target || null,
          result: r.verdict || null,
        })),
      },
      null,
      2,
    ) + '\n',
  );
  log(`results written to ${RESULTS_FILE}`);
  return paths.every((p) => Object.keys(p.results.errors).length === 0);
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-bench-'));
  const group = new ProcessGroup(dir);
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      await group.stopAll(PARAMS.stopGraceMs);
      if (KEEP) log(`kept ${dir}`);
      else await rm(dir, { recursive: true, force: true });
      if (CPU_PROF_DIR) log(`agent CPU profiles in ${CPU_PROF_DIR}`);
    })());
  process.once('exit', () => {
    group.killAllNow();
    if (!KEEP) rmSync(dir, { recursive: true, force: true });
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      log(`${signal}: stopping`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  try {
    const ok = await runBench(group, dir);
    if (!ok) process.exitCode = 1;
  } catch (err) {
    process.stderr.write(
      `bench: failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exitCode = 1;
  } finally {
    await cleanup();
  }
}

await main();
