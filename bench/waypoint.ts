/**
 * `npm run bench:waypoint` (issue 5; needs root): HTTP/1.1 through the waypoint on the in-pod test bed
 * (test/e2e/lib/inpod-mesh.ts with its `waypoint` option), beside single-hop HTTP proxies, all between
 * the same two pods in one run:
 *
 *   direct      client pod (node-1) → server pod (node-2), nothing captured
 *   node-proxy  client pod → a minimal Node `http` reverse proxy in the proxy pod → server pod
 *   nginx       client pod → nginx (one process, upstream keep-alive) in the proxy pod → server pod
 *   haproxy     client pod → HAProxy `mode http` (one thread) in the proxy pod → server pod
 *   waypoint    both pods captured: client → agent node-1 → HBONE → waypoint (in the proxy pod) →
 *               HBONE with its own identity → agent node-2 → server, to Service demo/bench-http
 *               (bound with `istio.io/use-waypoint`)
 *   waypoint-tcp the same hops to Service demo/bench-tcp, whose port is named `tcp`: the waypoint
 *               proxies the bytes (tcp_proxy) without reading HTTP. It measures what the HBONE
 *               transport alone costs in this run, so the HTTP layer's share is waypoint − waypoint-tcp.
 *
 * The proxy pod is the waypoint's own pod (on node-2, never captured); the baselines listen there on
 * ports of their own, so every proxy hop crosses the same veths. Only the client and server pods'
 * label `istio.io/dataplane-mode: none` comes and goes (as in bench/e2e.ts), so rounds run the paths
 * in alternating order (direct … waypoint | waypoint … direct) and capture flips once per round.
 *
 * Per path and round: HTTP/1.1 at saturation (wrk in the client pod, keep-alive, median of rounds),
 * with the proxy's CPU over the run; then GETs open-loop at 1,000/s over 10 kept-alive connections
 * (bench/lib/waypoint-http-load.ts) for p50/p99 and the CPU per 1,000 requests of the proxy (the
 * waypoint alone, and with both agents); then RSS. Node-1's processes (its agent, the client pod's) run
 * on CPU 0, node-2's (its agent, the server and proxy pods') on CPU 1, as on two machines. On node-2
 * the waypoint shares a CPU with the server agent, which at 1,000 req/s is lighter than the client
 * agent plus the load generator; BENCH_WAYPOINT_NODE=node-1 moves the proxy pod to the client's node.
 *
 * Environment: BENCH_QUICK=1 (short runs, one round), BENCH_ROUNDS=<n> (default 3), BENCH_PIN=0 (no
 * pinning), BENCH_WAYPOINT_NODE=node-1, BENCH_CPU_PROF=<dir> (the waypoint and both agents run with --cpu-prof; profiles are
 * written when they stop), BENCH_KEEP=1 (keep the temp dir: configs and every helper's log),
 * BENCH_NGINX / BENCH_HAPROXY (other binaries; missing → n/a).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  APP_PORTS,
  InpodMesh,
  inpodSkipReason,
  POD_VERSIONS,
  type PodName,
} from '../test/e2e/lib/inpod-mesh.ts';
import { runBenchProgram, type BenchContext } from './lib/children.ts';
import { haproxyVersion } from './lib/haproxy.ts';
import type { CpuProbe, Target } from './lib/load.ts';
import { assertExecedInPlace, forkInPod, pinProcess, type PodWorker } from './lib/pod-worker.ts';
import { clockTicksPerSecond, cpuDelta, machineFacts, totalCpuTimes, totalRssBytes } from './lib/proc.ts';
import { nginxVersion, startHaproxyHttp, startNginx, type ProxyPlacement } from './lib/waypoint-proxies.ts';
import {
  buildWaypointRows,
  emptyRuns,
  formatWaypointTable,
  waypointSummary,
  WAYPOINT_PATHS,
  WITH_AGENTS,
  type WaypointPath,
  type WaypointResults,
} from './lib/waypoint-report.ts';
import { runWrk, wrkVersion, type WrkOptions } from './lib/wrk.ts';

const QUICK = process.env.BENCH_QUICK === '1';
const KEEP = process.env.BENCH_KEEP === '1';
const CPU_PROF_DIR = process.env.BENCH_CPU_PROF ? resolve(process.env.BENCH_CPU_PROF) : undefined;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? (QUICK ? 1 : 3));
const PIN = process.env.BENCH_PIN !== '0' && cpus().length >= 2;
const NODE_CPU = { 'node-1': 0, 'node-2': 1 } as const;
const RESULTS_FILE = join(dirname(fileURLToPath(import.meta.url)), 'results', 'waypoint.json');

/** Every test is bounded both in count and in time. */
const PARAMS = {
  rounds: ROUNDS,
  /** wrk is bounded by its duration and killed 5 s after it should have ended. */
  saturation: { threads: 1, connections: 16, durationS: QUICK ? 2 : 4, timeoutS: 2, warmupS: 1 },
  /** Open loop; at most (warm-up + measured) × rate requests, then ≤ 5 s to drain. */
  latency: {
    connections: 10,
    ratePerSecond: 1000,
    warmupMs: 1_000,
    measureMs: QUICK ? 2_000 : 6_000,
    path: '/',
  },
  settleMs: 300,
  captureTimeoutMs: 30_000,
  probeAttempts: 40,
  probeIntervalMs: 250,
  stopGraceMs: 5_000,
} as const;

/** The server in the server pod, and the baselines' ports in the proxy pod. */
const PORTS = { server: 9001, 'node-proxy': 8001, nginx: 8002, haproxy: 8003 } as const;
const BOUND_VIP = '10.96.0.30';
/** Service demo/bench-tcp: the same pod and waypoint, a port named `tcp`. */
const TCP_VIP = '10.96.0.31';
const WAYPOINT = 'waypoint';
/** BENCH_WAYPOINT_NODE=node-1 puts the proxy pod beside the client instead of the server. */
const WAYPOINT_NODE = process.env.BENCH_WAYPOINT_NODE === 'node-1' ? 'node-1' : 'node-2';
/** The pods whose capture flips: the client (node-1) and the server (node-2). */
const PODS: readonly PodName[] = ['client', 'echo-b'];

/** The bench's Services, bound to the waypoint, selecting the server pod only: HTTP and TCP. */
const boundService = (name: string, vip: string, portName: 'http' | 'tcp') => `---
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: demo, labels: { istio.io/use-waypoint: ${WAYPOINT} } }
spec:
  selector: { app: echo, version: ${POD_VERSIONS['echo-b']} }
  clusterIP: ${vip}
  ports: [{ name: ${portName}, port: 80, targetPort: ${PORTS.server} }]
`;
const BOUND_SERVICE_YAML =
  boundService('bench-http', BOUND_VIP, 'http') + boundService('bench-tcp', TCP_VIP, 'tcp');
/** The waypoint counts a connection of the TCP path in this series (Istio's TCP metrics). */
const TCP_PATH_SERIES =
  /^istio_tcp_connections_opened_total\{[^}]*destination_service="bench-tcp\.demo\.svc\.cluster\.local"[^}]*\} ([1-9]\d*)/m;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err)).split('\n')[0]!;
const log = (msg: string) => process.stderr.write(`bench:waypoint: ${msg}\n`);

interface PathUnderTest {
  readonly name: WaypointPath;
  readonly target: Target;
  /** The proxy process (none for direct). */
  readonly proxyPids: readonly number[];
  /** Both agents (the waypoint path only). */
  readonly agentPids: readonly number[];
}

async function runBench(
  { group, dir, loadAtStart: loadBefore }: BenchContext,
  meshRef: { mesh?: InpodMesh },
): Promise<boolean> {
  const started = Date.now();
  if (!Number.isInteger(PARAMS.rounds) || PARAMS.rounds < 1)
    throw new Error(`BENCH_ROUNDS must be a positive integer, not ${process.env.BENCH_ROUNDS}`);
  if (CPU_PROF_DIR) await mkdir(CPU_PROF_DIR, { recursive: true });
  const profEnv: Record<string, string> = CPU_PROF_DIR
    ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${CPU_PROF_DIR}` }
    : {};

  log(`building the test bed: controller, two node namespaces, agents, a waypoint pod on ${WAYPOINT_NODE}`);
  const mesh = (meshRef.mesh = await InpodMesh.start({
    // As bench/e2e.ts: an access-log line per connection or request would be the busiest work here.
    agentEnv: { LOG_LEVEL: 'warn', ...profEnv },
    uncaptured: PODS,
    waypoint: { name: WAYPOINT, node: WAYPOINT_NODE, env: { LOG_LEVEL: 'warn', ...profEnv } },
    extraYaml: BOUND_SERVICE_YAML,
  }));
  const { client, echoB: server } = mesh;
  const proxyPod = mesh.waypoint!.pod;
  /** The CPU of a node's processes when pinned. */
  const cpuOf = (node: { name: string }) => (PIN ? NODE_CPU[node.name as keyof typeof NODE_CPU] : undefined);
  const agentPids = [...mesh.agents.values()].map((a) => a.child.pid!);
  const waypointPid = mesh.waypoint!.child.pid!;
  [...agentPids, waypointPid].forEach(assertExecedInPlace);
  log(`waypoint pid ${waypointPid}, agents ${agentPids.join(', ')} (CPU profiles are named by pid)`);
  if (PIN) {
    for (const a of mesh.agents.values()) pinProcess(a.child.pid!, cpuOf(a.node)!);
    pinProcess(waypointPid, cpuOf(proxyPod.node)!);
  }

  log(`server in ${server.name}, load generator in ${client.name}, proxies in the waypoint's pod`);
  const serverAt = { host: server.ip, port: PORTS.server };
  await forkInPod(
    group,
    'http',
    server.netns,
    'http',
    { host: '0.0.0.0', port: PORTS.server },
    cpuOf(server.node),
  );
  const loadgen: PodWorker = await forkInPod(
    group,
    'loadgen',
    client.netns,
    'loadgen',
    {},
    cpuOf(client.node),
  );
  const urlOf = (t: Target) => `http://${t.host}:${t.port}${PARAMS.latency.path}`;
  /** One GET from the client pod; the response head and body, or undefined unless 200. */
  const get = async (t: Target) => {
    const r = await mesh.topo.run(client, 'curl', ['-s', '-i', '-m', '3', '-w', '\n%{http_code}', urlOf(t)], {
      timeoutMs: 5_000,
    });
    return r.stdout.endsWith('\n200') ? r.stdout : undefined;
  };

  const results: WaypointResults = Object.fromEntries(WAYPOINT_PATHS.map((p) => [p, emptyRuns()])) as never;
  const wrk = wrkVersion();
  const nginx = nginxVersion();
  const haproxy = haproxyVersion();
  const paths: PathUnderTest[] = [{ name: 'direct', target: serverAt, proxyPids: [], agentPids: [] }];
  const proxyAt = (port: number): Target => ({ host: proxyPod.ip, port });
  const baseline = async (name: 'node-proxy' | 'nginx' | 'haproxy', start: () => Promise<number>) => {
    try {
      const pid = await start();
      assertExecedInPlace(pid);
      paths.push({ name, target: proxyAt(PORTS[name]), proxyPids: [pid], agentPids: [] });
    } catch (err) {
      results[name].skipped = `could not start: ${errorText(err)}`;
      log(`${name}: ${results[name].skipped}`);
    }
  };
  /** Where a baseline runs: the proxy pod; it serves once a GET through it answers 200. */
  const readyAt = (port: number): ProxyPlacement => ({
    group,
    dir,
    netns: proxyPod.netns,
    cpu: cpuOf(proxyPod.node),
    ready: async () => (await get(proxyAt(port))) !== undefined,
  });
  await baseline('node-proxy', async () => {
    const listen = { host: proxyPod.ip, port: PORTS['node-proxy'] };
    const w = await forkInPod(
      group,
      'node-proxy',
      proxyPod.netns,
      'http-proxy',
      { listen, upstream: serverAt },
      cpuOf(proxyPod.node),
    );
    return w.pid;
  });
  if (nginx)
    await baseline(
      'nginx',
      async () => (await startNginx(readyAt(PORTS.nginx), proxyAt(PORTS.nginx), serverAt)).pid!,
    );
  else results.nginx.skipped = 'n/a (not installed: apt-get install nginx-light)';
  if (haproxy)
    await baseline(
      'haproxy',
      async () => (await startHaproxyHttp(readyAt(PORTS.haproxy), proxyAt(PORTS.haproxy), serverAt)).pid!,
    );
  else results.haproxy.skipped = 'n/a (not installed: apt-get install haproxy)';
  paths.push(
    { name: 'waypoint', target: { host: BOUND_VIP, port: 80 }, proxyPids: [waypointPid], agentPids },
    { name: 'waypoint-tcp', target: { host: TCP_VIP, port: 80 }, proxyPids: [waypointPid], agentPids },
  );
  paths.sort((a, b) => WAYPOINT_PATHS.indexOf(a.name) - WAYPOINT_PATHS.indexOf(b.name));

  /** Capture on or off, proven by who the server sees, and the path answering (through the waypoint). */
  let captured = false;
  const enter = async (p: PathUnderTest) => {
    const want = p.name === 'waypoint' || p.name === 'waypoint-tcp';
    if (want !== captured) {
      const t0 = Date.now();
      await mesh.setCaptured(PODS, want, PARAMS.captureTimeoutMs);
      captured = want;
      log(`${want ? 'captured' : 'released'} both pods in ${Date.now() - t0} ms`);
    }
    const peer = want ? server.ip : client.ip;
    let last = '';
    for (let i = 0; i < PARAMS.probeAttempts; i++) {
      const seen = (await mesh.whoami(client, server.ip, APP_PORTS.whoami).catch(() => ({ peer: '' }))).peer;
      const head = seen === peer ? await get(p.target) : undefined;
      if (head && (await throughTheWaypoint(p, head))) return;
      last = `server sees ${seen}, want ${peer}; response ${head ? 'without the waypoint' : 'not 200'}`;
      await sleep(PARAMS.probeIntervalMs);
    }
    throw new Error(`${p.name}: path not ready: ${last}`);
  };

  /**
   * A 200 came by the path's own hops: on the HTTP path the waypoint's response header says so; on the
   * TCP path (nothing in the bytes) the waypoint's metrics, read inside its pod, count the connection.
   */
  async function throughTheWaypoint(p: PathUnderTest, head: string): Promise<boolean> {
    if (p.name === 'waypoint') return /^x-envoy-upstream-service-time:/im.test(head);
    if (p.name !== 'waypoint-tcp') return true;
    const metrics = await mesh.topo.run(
      proxyPod,
      'curl',
      ['-sS', '--max-time', '2', mesh.waypoint!.metricsUrl],
      {
        timeoutMs: 5_000,
      },
    );
    return TCP_PATH_SERIES.test(metrics.stdout);
  }

  const attempt = async (p: PathUnderTest, test: string, fn: () => Promise<void>) => {
    const r = results[p.name];
    if (r.errors[test]) return;
    try {
      await fn();
    } catch (err) {
      r.errors[test] = errorText(err);
      log(`  ${p.name} ${test} failed: ${errorText(err)}`);
    }
    await sleep(PARAMS.settleMs);
  };

  const ticks = clockTicksPerSecond();
  const probe = (pids: readonly number[]): CpuProbe => ({ pids, ticksPerSecond: ticks });
  const runIn = (cmd: string, args: readonly string[], timeoutMs: number) =>
    mesh.topo.run(client, cmd, args, { timeoutMs });

  const measure = async (p: PathUnderTest, round: number) => {
    const r = results[p.name];
    const pad = p.name.padEnd(10);
    if (wrk) {
      await attempt(p, 'saturation', async () => {
        const o: WrkOptions = PARAMS.saturation;
        const warmupS = PARAMS.saturation.warmupS;
        if (round === 0)
          await runWrk(runIn, urlOf(p.target), { ...o, durationS: warmupS }, cpuOf(client.node));
        const before = totalCpuTimes(p.proxyPids, ticks);
        const x = await runWrk(runIn, urlOf(p.target), o, cpuOf(client.node));
        const used = cpuDelta(before, totalCpuTimes(p.proxyPids, ticks));
        const proxyCpuPer1000 =
          p.proxyPids.length > 0 ? ((used.user + used.system) / x.requests) * 1000 : undefined;
        r.saturation.push({ ...x, proxyCpuPer1000 });
        log(
          `  ${pad} saturation ${x.perSecond.toFixed(0)} req/s (p50 ${x.p50Ms.toFixed(2)} ms)` +
            (proxyCpuPer1000 !== undefined ? `, proxy ${proxyCpuPer1000.toFixed(3)} CPU-s per 1,000` : ''),
        );
      });
    }
    await attempt(p, 'latency', async () => {
      const x = await loadgen.call('httpLatency', p.target, {
        ...PARAMS.latency,
        cpu: probe(p.proxyPids),
        cpuParts: p.agentPids.length > 0 ? { [WITH_AGENTS]: probe([...p.proxyPids, ...p.agentPids]) } : {},
      });
      if (x.firstError) throw new Error(x.firstError);
      if (x.unanswered > 0) throw new Error(`${x.unanswered} requests unanswered`);
      r.latency.push(x);
      const parts = x.cpuPartsPer1000[WITH_AGENTS];
      log(
        `  ${pad} at ${x.achievedPerSecond.toFixed(0)} req/s: p50 ${x.p50Ms.toFixed(3)} ms, p99 ${x.p99Ms.toFixed(3)} ms` +
          (p.proxyPids.length > 0 ? `, proxy ${x.cpuSecondsPer1000.toFixed(3)} vCPU` : '') +
          (parts !== undefined ? `, with agents ${parts.toFixed(3)} vCPU` : ''),
      );
    });
    await attempt(p, 'rss', async () => {
      if (p.proxyPids.length > 0) r.rssBytes.push(totalRssBytes(p.proxyPids));
      if (p.agentPids.length > 0) r.agentsRssBytes.push(totalRssBytes(p.agentPids));
    });
  };

  for (let round = 0; round < PARAMS.rounds; round++) {
    const order = round % 2 === 0 ? paths : [...paths].reverse();
    log(`round ${round + 1}/${PARAMS.rounds}`);
    for (const p of order) {
      try {
        await enter(p);
      } catch (err) {
        results[p.name].errors.probe = errorText(err);
        log(`  ${errorText(err)}`);
        continue;
      }
      await measure(p, round);
    }
  }

  const rows = buildWaypointRows(results);
  const elapsedS = (Date.now() - started) / 1000;
  const tools = [wrk && `wrk ${wrk}`, nginx, haproxy?.replace(/^HAProxy version (\S+).*/, 'HAProxy $1')]
    .filter(Boolean)
    .join(', ');
  const notes = wrk ? '' : '\nsaturation rows: n/a (apt-get install wrk)';
  process.stdout.write(
    `\nAmbit waypoint benchmark — ${cpus().length} vCPU, Linux ${release()}, Node ${process.version}` +
      `${tools ? `, ${tools}` : ''}; ${PARAMS.rounds} round${PARAMS.rounds === 1 ? '' : 's'}, ` +
      `${elapsedS.toFixed(0)} s${QUICK ? ' (BENCH_QUICK)' : ''}; load average ${loadBefore.toFixed(2)} → ${loadavg()[0]!.toFixed(2)}\n` +
      `${client.name} (${client.ip}, node-1) → ${server.name} (${server.ip}:${PORTS.server}, node-2); ` +
      `proxies in the waypoint's pod (${proxyPod.ip}, ${proxyPod.node.name}); ` +
      (PIN ? 'node-1 on CPU 0, node-2 on CPU 1; ' : 'unpinned; ') +
      `medians over rounds.\nsaturation: wrk ${PARAMS.saturation.connections} connections, ${PARAMS.saturation.durationS} s; ` +
      `latency: ${PARAMS.latency.ratePerSecond} req/s open loop over ${PARAMS.latency.connections} connections, ` +
      `${PARAMS.latency.measureMs / 1000} s measured; CPU per 1,000 req at 1,000 req/s = vCPU.\n\n` +
      formatWaypointTable(results, rows) +
      `${notes}\n\n${waypointSummary(rows)}\n`,
  );
  await mkdir(dirname(RESULTS_FILE), { recursive: true });
  await writeFile(
    RESULTS_FILE,
    JSON.stringify(
      {
        generatedAt: new Date().toISOString(),
        loadAverage1m: { atStart: loadBefore, atEnd: loadavg()[0] },
        machine: machineFacts(),
        tools: { wrk: wrk ?? null, nginx: nginx ?? null, haproxy: haproxy ?? null },
        quick: QUICK,
        pinned: PIN,
        elapsedSeconds: elapsedS,
        parameters: PARAMS,
        paths: results,
        table: rows.map((r) => ({
          metric: r.metric,
          ...r.values,
          target: r.target || null,
          result: r.verdict || null,
        })),
      },
      null,
      2,
    ) + '\n',
  );
  log(`results written to ${RESULTS_FILE}`);
  return WAYPOINT_PATHS.every((p) => Object.keys(results[p].errors).length === 0);
}

async function main(): Promise<void> {
  const skip = inpodSkipReason();
  if (skip) {
    process.stdout.write(`bench:waypoint: skipped: ${skip}\n`);
    return;
  }
  const meshRef: { mesh?: InpodMesh } = {};
  await runBenchProgram(
    {
      label: 'bench:waypoint',
      keep: KEEP,
      stopGraceMs: PARAMS.stopGraceMs,
      cleanup: async () => {
        await meshRef.mesh?.close();
        if (CPU_PROF_DIR) log(`CPU profiles of the waypoint and the agents in ${CPU_PROF_DIR}`);
      },
    },
    (ctx) => runBench(ctx, meshRef),
  );
}

await main();
