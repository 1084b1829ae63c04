/**
 * `npm run bench:gateway` (issue 8): HTTPS through the ingress gateway into the mesh, beside nginx
 * terminating TLS in front of the same backend, measured in one run on loopback (no root):
 *
 *   gateway  client → `ambit gateway` (Istio Gateway, HTTPS SIMPLE, test CA made by openssl) →
 *            HBONE with the gateway's identity → the backend's node agent → backend
 *   nginx    client → nginx (one process, TLS termination, upstream keep-alive) → backend
 *
 * The mesh is `ambit local` (test/e2e/lib/local-mesh.ts) on 127.159/16 with the backend as one more
 * pod (`default/bench-http` on node-2, `<prefix>.2.50:8080`) behind Service `bench-http`, and a
 * Gateway selecting `istio: ingressgateway` with a VirtualService bound to it; its processes run with
 * LOG_LEVEL=warn (no access-log line per request, as nginx here logs none). The backend is a plain
 * Node `http` server in a child process of its own, answering every request with 2 bytes. Nothing is
 * pinned to a CPU: on a 2-vCPU machine wrk, the bench's open loop, the proxies and the backend share
 * both.
 *
 * Per path and round (paths alternate order between rounds): HTTPS/1.1 at saturation with wrk
 * (closed loop, keep-alive, bounded by its duration); then GETs open-loop at 1,000/s over 10
 * kept-alive TLS connections for p50/p99 (bench/lib/load.ts's openLoop, latency from the tick that
 * issued the request). Medians over rounds. Bounded: at most ROUNDS × 2 × (wrk duration + warm-up +
 * measure) seconds of load, each part with its own time limit.
 *
 * Environment: BENCH_QUICK=1 (short runs, one round), BENCH_ROUNDS=<n> (default 3), BENCH_KEEP=1
 * (keep the temp dir), BENCH_NGINX (another nginx binary; missing → n/a).
 */
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { makePki } from '../test/e2e/lib/curl.ts';
import { startLocalMesh, type LocalMesh } from '../test/e2e/lib/local-mesh.ts';
import { runBenchProgram, type ProcessGroup } from './lib/children.ts';
import { openLoop, type LatencyResult } from './lib/load.ts';
import { clockTicksPerSecond, machineFacts } from './lib/proc.ts';
import { median } from './lib/stats.ts';
import { httpResponseFramer } from './lib/waypoint-http-load.ts';
import { NGINX_BIN, nginxConfig, nginxVersion } from './lib/waypoint-proxies.ts';
import { runWrk, wrkVersion, type CommandRunner, type WrkResult } from './lib/wrk.ts';

const QUICK = process.env.BENCH_QUICK === '1';
const KEEP = process.env.BENCH_KEEP === '1';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? (QUICK ? 1 : 3));
const PREFIX = '127.159';
const BACKEND = { host: `${PREFIX}.2.50`, port: 8080 };
const GATEWAY = { host: `${PREFIX}.4.1`, port: 8443 };
const NGINX = { host: `${PREFIX}.5.1`, port: 8443 };
const HOST = 'bench.example.com';
const BACKEND_MAIN = fileURLToPath(new URL('./lib/http-backend-main.ts', import.meta.url));

const PARAMS = {
  rounds: ROUNDS,
  saturation: { threads: 1, connections: 16, durationS: QUICK ? 2 : 4, timeoutS: 2 },
  latency: {
    connections: 10,
    ratePerSecond: 1000,
    warmupMs: 1_000,
    measureMs: QUICK ? 2_000 : 5_000,
  },
  readyTimeoutMs: 30_000,
} as const;

type Path = 'gateway' | 'nginx';
const PATHS: readonly Path[] = ['gateway', 'nginx'];

interface PathRuns {
  saturation: WrkResult[];
  latency: LatencyResult[];
}

/** The backend pod, its Service, and the gateway routing bench.example.com (HTTPS) to it. */
function meshYaml(pki: string): string {
  return `apiVersion: v1
kind: ServiceAccount
metadata: { name: bench-http, namespace: default }
---
apiVersion: v1
kind: Pod
metadata:
  name: bench-http
  namespace: default
  labels: { app: bench-http }
spec:
  nodeName: node-2
  serviceAccountName: bench-http
  containers:
  - name: bench-http
    image: bench-http
    ports: [{ name: http, containerPort: ${BACKEND.port} }]
status: { phase: Running, podIP: ${BACKEND.host} }
---
apiVersion: v1
kind: Service
metadata: { name: bench-http, namespace: default }
spec:
  selector: { app: bench-http }
  clusterIP: ${PREFIX}.100.90
  ports: [{ name: http, port: ${BACKEND.port}, targetPort: ${BACKEND.port} }]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: bench-gateway, namespace: default }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: ${GATEWAY.port}, name: https, protocol: HTTPS }
    hosts: ['*']
    tls: { mode: SIMPLE, serverCertificate: ${pki}/bench.pem, privateKey: ${pki}/bench.key }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: bench-http, namespace: default }
spec:
  hosts: ['*']
  gateways: [bench-gateway]
  http:
  - route:
    - destination: { host: bench-http.default.svc.cluster.local, port: { number: ${BACKEND.port} } }
`;
}

/** nginx terminating TLS: the waypoint bench's config with `ssl` on the listener. */
function nginxTlsConfig(dir: string, pki: string): string {
  const plain = nginxConfig(dir, NGINX, BACKEND);
  const listen = `listen ${NGINX.host}:${NGINX.port} backlog=4096;`;
  if (!plain.includes(listen)) throw new Error('nginxConfig changed: no listen line to add TLS to');
  return plain.replace(
    listen,
    `listen ${NGINX.host}:${NGINX.port} ssl backlog=4096;
    ssl_certificate ${pki}/bench.pem;
    ssl_certificate_key ${pki}/bench.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:1m;`,
  );
}

/** One HTTPS GET; the status, or the error. */
async function probeHttps(t: { host: string; port: number }, ca: Buffer): Promise<string> {
  try {
    const s = await dialTls(t, ca);
    return await new Promise<string>((resolve) => {
      let got = '';
      const timer = setTimeout(() => {
        s.destroy();
        resolve(`no answer: ${got}`);
      }, 2_000);
      s.on('data', (b: Buffer) => {
        got += b.toString('latin1');
        if (got.includes('\r\n\r\n')) {
          clearTimeout(timer);
          s.destroy();
          resolve(got.slice(0, got.indexOf('\r\n')));
        }
      });
      s.on('error', (err: Error) => resolve(err.message));
      s.resume();
      s.write(`GET / HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
    });
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

/** A TLS connection (SNI bench.example.com, the test CA), paused once the handshake is done. */
function dialTls(t: { host: string; port: number }, ca: Buffer): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({
      host: t.host,
      port: t.port,
      servername: HOST,
      ca,
      ALPNProtocols: ['http/1.1'],
    });
    s.setNoDelay(true);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`TLS to ${t.host}:${t.port} timed out`));
    }, 5_000);
    s.once('error', (err: Error) => {
      clearTimeout(timer);
      reject(err);
    });
    s.once('secureConnect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      s.pause();
      resolve(s);
    });
  });
}

async function waitFor(what: string, f: () => Promise<string>, group: ProcessGroup): Promise<void> {
  const deadline = Date.now() + PARAMS.readyTimeoutMs;
  for (;;) {
    const status = await f();
    if (status.startsWith('HTTP/1.1 200')) return;
    if (Date.now() > deadline) throw new Error(`${what} not serving: ${status}\n${group.logTail('nginx')}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const runCommand: CommandRunner = (cmd, args, timeoutMs) =>
  new Promise((resolve) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs });
    resolve({ code: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: r.stderr ?? '' });
  });

let mesh: LocalMesh | undefined;

function table(runs: Record<Path, PathRuns>): string {
  const med = (xs: number[]) => (xs.length ? median(xs) : Number.NaN);
  const rows = PATHS.map((p) => ({
    path: p,
    rps: med(runs[p].saturation.map((r) => r.perSecond)),
    p50: med(runs[p].latency.map((r) => r.p50Ms)),
    p99: med(runs[p].latency.map((r) => r.p99Ms)),
    achieved: med(runs[p].latency.map((r) => r.achievedPerSecond)),
  }));
  const nginx = rows.find((r) => r.path === 'nginx')!;
  const f = (n: number, d = 2) => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
  const ratio = (a: number, b: number) =>
    Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${f(a / b)}x` : 'n/a';
  const lines = [
    '| path | HTTPS req/s (saturation) | vs nginx | p50 ms @1k/s | p99 ms @1k/s | p50 vs nginx | p99 vs nginx | achieved req/s |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.path} | ${f(r.rps, 0)} | ${ratio(r.rps, nginx.rps)} | ${f(r.p50)} | ${f(r.p99)} | ${ratio(r.p50, nginx.p50)} | ${ratio(r.p99, nginx.p99)} | ${f(r.achieved, 0)} |`,
    ),
  ];
  return lines.join('\n');
}

await runBenchProgram(
  {
    label: 'bench:gateway',
    keep: KEEP,
    stopGraceMs: 10_000,
    cleanup: () => mesh?.stop() ?? Promise.resolve(),
  },
  async ({ group, dir, loadAtStart }) => {
    const log = (msg: string) => process.stderr.write(`bench:gateway: ${msg}\n`);
    const wrk = wrkVersion();
    if (!wrk) {
      log('wrk is not installed (apt-get install wrk); nothing measured');
      return false;
    }
    const nginx = nginxVersion();
    const pki = join(dir, 'pki');
    await mkdir(pki, { recursive: true });
    await makePki(pki, [['bench', `DNS:${HOST}`]]);
    const ca = await readFile(join(pki, 'ca.pem'));

    group.spawn('backend', process.execPath, [BACKEND_MAIN, BACKEND.host, String(BACKEND.port)]);
    // As in bench:waypoint: no access-log line per request (nginx logs none either).
    process.env.LOG_LEVEL = 'warn';
    mesh = await startLocalMesh(PREFIX);
    await writeFile(join(mesh.dir, 'kube', 'bench-gateway.yaml'), meshYaml(pki));
    log('waiting for the gateway to serve HTTPS');
    await waitFor('the gateway', () => probeHttps(GATEWAY, ca), group);
    const active: Path[] = ['gateway'];
    if (nginx) {
      const nd = join(dir, 'nginx');
      await mkdir(nd, { recursive: true });
      await writeFile(join(nd, 'nginx.conf'), nginxTlsConfig(nd, pki));
      group.spawn('nginx', NGINX_BIN, [
        '-p',
        `${nd}/`,
        '-e',
        join(nd, 'nginx-error.log'),
        '-c',
        join(nd, 'nginx.conf'),
      ]);
      await waitFor('nginx', () => probeHttps(NGINX, ca), group);
      active.push('nginx');
    } else log(`nginx not found at ${NGINX_BIN}: its row is n/a`);

    const runs: Record<Path, PathRuns> = {
      gateway: { saturation: [], latency: [] },
      nginx: { saturation: [], latency: [] },
    };
    const target = { gateway: GATEWAY, nginx: NGINX } as const;
    const cpu = { pids: [], ticksPerSecond: clockTicksPerSecond() };
    const request = Buffer.from(`GET / HTTP/1.1\r\nHost: ${HOST}\r\nUser-Agent: ambit-bench\r\n\r\n`);
    for (let round = 0; round < PARAMS.rounds; round++) {
      const order = round % 2 === 0 ? active : [...active].reverse();
      for (const p of order) {
        const t = target[p];
        log(`round ${round + 1}/${PARAMS.rounds}: ${p} saturation`);
        runs[p].saturation.push(await runWrk(runCommand, `https://${t.host}:${t.port}/`, PARAMS.saturation));
        log(`round ${round + 1}/${PARAMS.rounds}: ${p} latency at ${PARAMS.latency.ratePerSecond}/s`);
        const conns = await Promise.all(
          Array.from({ length: PARAMS.latency.connections }, () => dialTls(t, ca)),
        );
        const r = await openLoop(conns, request, httpResponseFramer, { ...PARAMS.latency, cpu });
        if (r.unanswered > 0 || r.firstError)
          throw new Error(`${p}: ${r.unanswered} unanswered; ${r.firstError ?? ''}`);
        runs[p].latency.push(r);
      }
    }
    const facts = machineFacts();
    process.stdout.write(
      [
        '',
        `bench:gateway — HTTPS (HTTP/1.1 over TLS, keep-alive) through the ingress gateway into the mesh vs nginx terminating TLS; ${PARAMS.rounds} round(s), medians`,
        `  wrk ${wrk}, -t${PARAMS.saturation.threads} -c${PARAMS.saturation.connections} -d${PARAMS.saturation.durationS}s; latency open-loop ${PARAMS.latency.ratePerSecond}/s over ${PARAMS.latency.connections} connections for ${PARAMS.latency.measureMs / 1000} s; ${nginx ?? 'nginx n/a'}`,
        `  ${JSON.stringify(facts)}; load average at start ${loadAtStart.toFixed(2)}, now ${loadavg()[0]!.toFixed(2)}`,
        '',
        table(runs),
        '',
      ].join('\n'),
    );
    return true;
  },
);
