/**
 * `npm run bench:e2e` (issue 4; needs root): pod → pod across the two node namespaces of the in-pod
 * test bed (test/e2e/lib/inpod-mesh.ts), the same two pods measured in one run both ways:
 *
 *   direct    client pod (node-1) → veth → node-1 → hub bridge → node-2 → veth → server pod
 *   captured  the same pods and veths, captured: iptables in the client pod → agent node-1 (its
 *             listener inside the client pod) → HBONE (mTLS, HTTP/2 CONNECT) → agent node-2 (15008
 *             inside the server pod) → the server
 *
 * The pods stay where they are; only their label `istio.io/dataplane-mode: none` comes and goes, and
 * the bench waits until both pods' rules and listeners match and a probe shows who the server sees.
 * Rounds alternate the order (direct, captured | captured, direct | …) so drift on a shared machine
 * lands on both alike and the mesh is toggled once per round. The servers run in the server pod and
 * the load generator in the client pod, each its own process (bench/lib/pod-worker.ts); this process
 * only orchestrates. Nothing is written to the repository.
 *
 * Each node gets a vCPU of its own: node-1's agent and the client pod's processes run on CPU 0, node-2's
 * agent and the server pod's on CPU 1, as two machines would (without it, whether the scheduler puts
 * client and server on one vCPU or two moves the direct round trip between 35 and 110 µs from run to
 * run). The controller, idle while measuring, is left alone.
 *
 * Environment: BENCH_QUICK=1 shortens every test and runs one round, BENCH_ROUNDS=<n> sets the
 * rounds (default 3), BENCH_PIN=0 leaves every process to the scheduler, BENCH_CPU_PROF=<dir> runs
 * both agents with --cpu-prof (profiles written when they stop), BENCH_KEEP=1 keeps the temp dir with
 * the helpers' logs.
 */
import { readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { InpodMesh, inpodSkipReason, APP_PORTS, type PodName } from '../test/e2e/lib/inpod-mesh.ts';
import { ProcessGroup } from './lib/children.ts';
import {
  buildE2eRows,
  emptyResults,
  formatE2eTable,
  summaryLine,
  type E2eResults,
  type Mode,
} from './lib/e2e-report.ts';
import type { CpuProbe, Target } from './lib/load.ts';
import { forkInPod, type PodWorker } from './lib/pod-worker.ts';
import { clockTicksPerSecond } from './lib/proc.ts';
import { parseWrk, wrkArgs } from './lib/wrk.ts';

const MiB = 1024 * 1024;
const QUICK = process.env.BENCH_QUICK === '1';
const KEEP = process.env.BENCH_KEEP === '1';
const CPU_PROF_DIR = process.env.BENCH_CPU_PROF ? resolve(process.env.BENCH_CPU_PROF) : undefined;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? (QUICK ? 1 : 3));
const PIN = process.env.BENCH_PIN !== '0' && cpus().length >= 2;
/** The CPU of each node's processes when pinned. */
const NODE_CPU = { 'node-1': 0, 'node-2': 1 } as const;

/** Every test is bounded both in count and in time. */
const PARAMS = {
  rounds: ROUNDS,
  throughput: {
    warmup: { maxBytes: 256 * MiB, maxMs: 1_000 },
    maxBytes: 1024 * MiB,
    maxMs: QUICK ? 2_000 : 5_000,
  },
  pingPong: {
    messageBytes: 64,
    warmupRoundTrips: 500,
    maxRoundTrips: QUICK ? 2_000 : 10_000,
    maxMs: QUICK ? 1_500 : 5_000,
  },
  connections: {
    concurrency: 1,
    warmup: { maxConnections: 200, maxMs: 1_000 },
    maxConnections: QUICK ? 300 : 2_000,
    maxMs: QUICK ? 1_500 : 5_000,
  },
  /** wrk is bounded by its duration (it has no request count), and killed 5 s after it should have ended. */
  http: {
    threads: 1,
    connections: 8,
    durationS: QUICK ? 1 : 3,
    timeoutS: 2,
    warmupS: 1,
  },
  /** Pause between tests so one test's leftovers (TIME_WAIT, GC) do not land on the next. */
  settleMs: 300,
  captureTimeoutMs: 30_000,
  modeProbeAttempts: 20,
  stopGraceMs: 5_000,
} as const;

/** Ports of the servers in the server pod (the pod app already holds 8080–8082). */
const PORTS = { backend: 9000, http: 9001 } as const;
/** The client pod (node-1) and the server pod (node-2) of the test bed's layout. */
const PODS: readonly PodName[] = ['client', 'echo-b'];
type TestName = 'throughput' | 'pingPong' | 'connections' | 'http';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err)).split('\n')[0]!;
const pct = (part: number, whole: number) => (whole > 0 ? `${((100 * part) / whole).toFixed(0)} %` : '—');
const log = (msg: string) => process.stderr.write(`bench:e2e: ${msg}\n`);

function wrkVersion(): string | undefined {
  const r = spawnSync('wrk', ['--version'], { encoding: 'utf8', timeout: 5_000 });
  if (r.error) return undefined;
  return /wrk (\S+)/.exec(`${r.stdout}${r.stderr}`)?.[1] ?? 'wrk';
}

/** Pins every thread of a running process to one CPU. */
function pin(pid: number, cpu: number): void {
  const r = spawnSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], {
    encoding: 'utf8',
    timeout: 5_000,
  });
  if (r.error || r.status !== 0)
    throw new Error(`taskset -a -p -c ${cpu} ${pid} failed: ${r.error?.message ?? r.stderr.trim()}`);
}

/** `ip netns exec` execs in place, so an agent's child pid is the agent's Node process itself. */
function checkIsNode(pid: number): void {
  const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  if (comm === 'ip') throw new Error(`pid ${pid} is still \`ip\`, not the agent: CPU would be misread`);
}

async function runBench(group: ProcessGroup, meshRef: { mesh?: InpodMesh }): Promise<boolean> {
  const started = Date.now();
  if (!Number.isInteger(PARAMS.rounds) || PARAMS.rounds < 1)
    throw new Error(`BENCH_ROUNDS must be a positive integer, not ${process.env.BENCH_ROUNDS}`);
  const loadBefore = loadavg()[0]!;
  if (loadBefore > 0.5)
    log(`warning: 1-minute load average is ${loadBefore.toFixed(2)}; other work on this machine adds noise`);
  if (CPU_PROF_DIR) await mkdir(CPU_PROF_DIR, { recursive: true });

  log('building the test bed: controller, two node namespaces, agents in in-pod mode, pods not captured');
  const mesh = (meshRef.mesh = await InpodMesh.start({
    agentEnv: {
      // As bench/run.ts: an access-log line per connection would be the agents' busiest work here.
      LOG_LEVEL: 'warn',
      ...(CPU_PROF_DIR ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${CPU_PROF_DIR}` } : {}),
    },
    uncaptured: PODS,
  }));
  const client = mesh.client;
  const server = mesh.echoB;
  const agentPids = [...mesh.agents.values()].map((a) => a.child.pid!);
  agentPids.forEach(checkIsNode);
  const cpuOf = (node: string) => (PIN ? NODE_CPU[node as keyof typeof NODE_CPU] : undefined);
  if (PIN) for (const a of mesh.agents.values()) pin(a.child.pid!, cpuOf(a.node.name)!);
  const cpu: Record<Mode, CpuProbe> = {
    direct: { pids: [], ticksPerSecond: clockTicksPerSecond() },
    captured: { pids: agentPids, ticksPerSecond: clockTicksPerSecond() },
  };

  log(`starting the servers in ${server.name} and the load generator in ${client.name}`);
  const serverCpu = cpuOf(server.node.name);
  const clientCpu = cpuOf(client.node.name);
  const listen = (port: number) => ({ host: '0.0.0.0', port });
  await forkInPod(group, 'backend', server.netns, 'backend', listen(PORTS.backend), serverCpu);
  const wrk = wrkVersion();
  if (wrk) await forkInPod(group, 'http', server.netns, 'http', listen(PORTS.http), serverCpu);
  const loadgen: PodWorker = await forkInPod(group, 'loadgen', client.netns, 'loadgen', {}, clientCpu);
  const target: Target = { host: server.ip, port: PORTS.backend };
  const url = `http://${server.ip}:${PORTS.http}/`;

  const results: E2eResults = { direct: emptyResults(), captured: emptyResults() };
  if (!wrk) results.direct.httpSkipped = results.captured.httpSkipped = 'n/a (apt-get install wrk)';

  /** Who the server sees proves the mode: the client pod, or its own address (the agent dials in-pod). */
  const checkMode = async (mode: Mode) => {
    const want = mode === 'captured' ? server.ip : client.ip;
    let seen = '';
    for (let i = 0; i < PARAMS.modeProbeAttempts; i++) {
      seen = (await mesh.whoami(client, server.ip, APP_PORTS.whoami)).peer;
      if (seen === want) return;
      await sleep(250);
    }
    throw new Error(`${mode}: the server still sees ${seen}, not ${want}`);
  };
  let current: Mode = 'direct';
  const enter = async (mode: Mode) => {
    if (mode !== current) {
      const t0 = Date.now();
      await mesh.setCaptured(PODS, mode === 'captured', PARAMS.captureTimeoutMs);
      current = mode;
      log(`${mode === 'captured' ? 'captured' : 'released'} both pods in ${Date.now() - t0} ms`);
    }
    await checkMode(mode);
  };

  /** Runs one test; a failure is recorded against the mode, which then skips that test. */
  const attempt = async (mode: Mode, test: TestName, fn: () => Promise<void>) => {
    const r = results[mode];
    if (r.errors[test]) return;
    try {
      await fn();
    } catch (err) {
      r.errors[test] = errorText(err);
      log(`  ${mode} ${test} failed: ${errorText(err)}`);
    }
    await sleep(PARAMS.settleMs);
  };

  const measure = async (mode: Mode, round: number) => {
    const r = results[mode];
    const pad = mode.padEnd(8);
    const t = PARAMS.throughput;
    await attempt(mode, 'throughput', async () => {
      if (round === 0) await loadgen.call('throughput', target, { ...t.warmup, cpu: cpu[mode] });
      const x = await loadgen.call('throughput', target, {
        maxBytes: t.maxBytes,
        maxMs: t.maxMs,
        cpu: cpu[mode],
      });
      r.throughput.push(x);
      log(
        `  ${pad} throughput ${(x.bytes / MiB / x.seconds).toFixed(0)} MiB/s (${x.bytes / MiB} MiB)` +
          (mode === 'captured'
            ? `, agents ${(x.cpuSeconds / (x.bytes / 1024 / MiB)).toFixed(2)} CPU-s/GiB ` +
              `(${pct(x.cpuSystemSeconds, x.cpuSeconds)} in the kernel)`
            : ''),
      );
    });
    await attempt(mode, 'pingPong', async () => {
      const x = await loadgen.call('pingPong', target, { ...PARAMS.pingPong, cpu: cpu[mode] });
      r.pingPong.push(x);
      log(
        `  ${pad} request/response p50 ${x.p50Ms.toFixed(3)} ms, p99 ${x.p99Ms.toFixed(3)} ms ` +
          `(${x.roundTrips} round trips, ${x.perSecond.toFixed(0)}/s)` +
          (mode === 'captured'
            ? `, agents ${((x.cpuSeconds / x.roundTrips) * 1e6).toFixed(0)} µs CPU each`
            : ''),
      );
    });
    const c = PARAMS.connections;
    await attempt(mode, 'connections', async () => {
      const o = { concurrency: c.concurrency, cpu: cpu[mode] };
      if (round === 0) await loadgen.call('connectionRate', target, { ...o, ...c.warmup });
      const x = await loadgen.call('connectionRate', target, {
        ...o,
        maxConnections: c.maxConnections,
        maxMs: c.maxMs,
      });
      if (x.errors > 0) throw new Error(`${x.errors} failed connections, first: ${x.firstError}`);
      r.connections.push(x);
      log(
        `  ${pad} connect + first byte p50 ${x.p50Ms.toFixed(3)} ms, p99 ${x.p99Ms.toFixed(3)} ms ` +
          `(${x.connections} connections, ${x.perSecond.toFixed(0)}/s)` +
          (mode === 'captured'
            ? `, agents ${((x.cpuSeconds / x.connections) * 1e6).toFixed(0)} µs CPU each ` +
              `(${pct(x.cpuSystemSeconds, x.cpuSeconds)} in the kernel)`
            : ''),
      );
    });
    if (!wrk) return;
    const h = PARAMS.http;
    await attempt(mode, 'http', async () => {
      const run = async (durationS: number) => {
        const args = wrkArgs(url, { ...h, durationS });
        const [cmd, argv] =
          clientCpu === undefined ? ['wrk', args] : ['taskset', ['-c', `${clientCpu}`, 'wrk', ...args]];
        const out = await mesh.topo.run(client, cmd, argv, {
          timeoutMs: (durationS + h.timeoutS + 5) * 1000,
        });
        if (out.code !== 0) throw new Error(`wrk exited ${out.code ?? out.signal}: ${out.stderr.trim()}`);
        const x = parseWrk(out.stdout);
        if (x.errors > 0) throw new Error(`wrk counted ${x.errors} errors:\n${out.stdout.trim()}`);
        return x;
      };
      if (round === 0) await run(h.warmupS);
      const x = await run(h.durationS);
      r.http.push(x);
      log(
        `  ${pad} HTTP ${x.perSecond.toFixed(0)} req/s, p50 ${x.p50Ms.toFixed(3)} ms, p99 ${x.p99Ms.toFixed(3)} ms`,
      );
    });
  };

  for (let round = 0; round < PARAMS.rounds; round++) {
    const order: Mode[] = round % 2 === 0 ? ['direct', 'captured'] : ['captured', 'direct'];
    log(`round ${round + 1}/${PARAMS.rounds}`);
    for (const mode of order) {
      await enter(mode);
      await measure(mode, round);
    }
  }

  const rows = buildE2eRows(results, wrk ? `wrk ${PARAMS.http.connections} connections` : 'wrk');
  const elapsedS = (Date.now() - started) / 1000;
  process.stdout.write(
    `\nAmbit in-pod benchmark — ${cpus().length} vCPU, Linux ${release()}, Node ${process.version}` +
      `${wrk ? `, wrk ${wrk}` : ''}; ${PARAMS.rounds} round${PARAMS.rounds === 1 ? '' : 's'}, ` +
      `${elapsedS.toFixed(0)} s${QUICK ? ' (BENCH_QUICK)' : ''}\n` +
      `${client.name} on ${client.node.name} (${client.ip}) → ${server.name} on ${server.node.name} ` +
      `(${server.ip}:${PORTS.backend}); ` +
      (PIN ? 'node-1 (agent, client pod) on CPU 0, node-2 (agent, server pod) on CPU 1; ' : 'unpinned; ') +
      'medians over rounds.\ndirect: the pods not captured; captured: both pods captured, HBONE through both agents.\n\n' +
      formatE2eTable(results, rows) +
      `\n\n${summaryLine(rows)}\n`,
  );
  return Object.values(results).every((m) => Object.keys(m.errors).length === 0);
}

async function main(): Promise<void> {
  const skip = inpodSkipReason();
  if (skip) {
    process.stdout.write(`bench:e2e: skipped: ${skip}\n`);
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), 'ambit-bench-e2e-'));
  const group = new ProcessGroup(dir);
  const meshRef: { mesh?: InpodMesh } = {};
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      await group.stopAll(PARAMS.stopGraceMs);
      await meshRef.mesh?.close();
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
    const ok = await runBench(group, meshRef);
    if (!ok) process.exitCode = 1;
  } catch (err) {
    process.stderr.write(
      `bench:e2e: failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exitCode = 1;
  } finally {
    await cleanup();
  }
}

await main();
