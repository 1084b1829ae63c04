/**
 * `npm run bench:xds` (also the end of `npm run bench`): how fast the controller gets a change to
 * every subscribed agent, and what it costs in memory. For 1,000 and 10,000 workloads and 10 and 100
 * subscribers: the time from writing a new Pod (a new file in the watched directory, as `kubectl
 * apply -f` of one more manifest would be) until every subscriber holds it (file watch, debounce,
 * translation of the whole mesh, encoding and Delta ADS to all), median of 5; the time until the
 * fresh subscribers are synced; and the controller's RSS at the end and at its peak (VmHWM, reached
 * during the first sync). Targets (issue 3): under 1 s to 100 agents at 10,000 workloads, under
 * 500 MB (judged on the peak).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { CertificateAuthority } from '../src/core/identity/ca.ts';
import { ProcessGroup } from './lib/children.ts';
import { readFileSync } from 'node:fs';
import { rssBytes } from './lib/proc.ts';
import { median } from './lib/stats.ts';

const MAIN = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
const SUBSCRIBERS = fileURLToPath(new URL('./lib/xds-subscribers.ts', import.meta.url));
const CASES = [
  { workloads: 1_000, subscribers: 10 },
  { workloads: 1_000, subscribers: 100 },
  { workloads: 10_000, subscribers: 10 },
  { workloads: 10_000, subscribers: 100 },
] as const;
const CHANGES = 5;
const TIMEOUT_MS = 30_000;
const TARGET = { pushMs: 1_000, rssMiB: 500 };

function kubeYaml(workloads: number): string {
  const docs = [
    'apiVersion: v1\nkind: Namespace\nmetadata: {name: default, labels: {istio.io/dataplane-mode: ambient}}',
  ];
  const services = Math.max(1, Math.floor(workloads / 10));
  for (let s = 0; s < services; s++) {
    docs.push(
      `apiVersion: v1\nkind: Service\nmetadata: {name: svc-${s}, namespace: default}\nspec: {selector: {app: app-${s}}, clusterIP: 10.96.${s >> 8}.${s & 255}, ports: [{name: http, port: 80, targetPort: 8080}]}`,
    );
  }
  for (let w = 0; w < workloads; w++) {
    docs.push(
      `apiVersion: v1\nkind: Pod\nmetadata: {name: pod-${w}, namespace: default, labels: {app: app-${w % services}}}\nspec: {nodeName: node-${w % 50}, serviceAccountName: sa-${w % services}, containers: [{name: c, image: i}]}\nstatus: {phase: Running, podIP: 10.${(w >> 16) & 255}.${(w >> 8) & 255}.${w & 255}}`,
    );
  }
  return docs.join('\n---\n') + '\n';
}

function waitMessage<T>(child: ChildProcess, match: (m: T) => boolean, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.off('message', onMessage);
      reject(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMessage = (m: T) => {
      if (!match(m)) return;
      clearTimeout(timer);
      child.off('message', onMessage);
      resolve(m);
    };
    child.on('message', onMessage);
  });
}

async function waitReady(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (
      await fetch(url).then(
        (r) => r.ok,
        () => false,
      )
    )
      return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} not ready within ${timeoutMs} ms`);
}

interface CaseResult {
  workloads: number;
  subscribers: number;
  syncMs: number;
  pushMs: number;
  rssMiB: number;
  peakRssMiB: number;
}

/** The most resident memory the process has had (VmHWM): the first sync's peak, not just the end. */
function peakRssBytes(pid: number): number {
  const m = /^VmHWM:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmHWM in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

async function runCase(dir: string, c: (typeof CASES)[number], index: number): Promise<CaseResult> {
  const group = new ProcessGroup(dir);
  const kube = join(dir, `kube-${index}`);
  await import('node:fs/promises').then((fs) => fs.mkdir(kube));
  await writeFile(join(kube, 'mesh.yaml'), kubeYaml(c.workloads));
  const port = 25010 + index;
  const admin = `127.0.0.1:${port + 100}`;
  try {
    group.spawn(`controller-${index}`, process.execPath, [MAIN, 'controller'], {
      env: {
        ...process.env,
        AMBIT_CONFIG_DIR: kube,
        AMBIT_GRPC_ADDR: `127.0.0.1:${port}`,
        AMBIT_CONTROLLER_ADMIN_ADDR: admin,
        AMBIT_CA_CERT_FILE: join(dir, 'ca-cert.pem'),
        AMBIT_CA_KEY_FILE: join(dir, 'ca-key.pem'),
        AMBIT_TOKENS_FILE: join(dir, 'tokens'),
        LOG_LEVEL: 'warn',
      },
    });
    await waitReady(`http://${admin}/ready`, TIMEOUT_MS);
    const started = Date.now();
    const subs = group.spawn(
      `subscribers-${index}`,
      process.execPath,
      [SUBSCRIBERS, `127.0.0.1:${port}`, String(c.subscribers)],
      { ipc: true },
    );
    const synced = await waitMessage<{ kind: string; atMs: number }>(
      subs,
      (m) => m.kind === 'synced',
      TIMEOUT_MS,
    );
    const times: number[] = [];
    for (let i = 0; i < CHANGES; i++) {
      const name = `marker-${i}`;
      const uid = `Kubernetes//Pod/default/${name}`;
      const arrived = waitMessage<{ kind: string; name: string; atMs: number }>(
        subs,
        (m) => m.kind === 'arrived' && m.name === uid,
        TIMEOUT_MS,
      );
      subs.send({ kind: 'watch', name: uid });
      const t0 = Date.now();
      await writeFile(
        join(kube, `${name}.yaml`),
        `apiVersion: v1\nkind: Pod\nmetadata: {name: ${name}, namespace: default, labels: {app: app-0}}\nspec: {nodeName: node-0, containers: [{name: c, image: i}]}\nstatus: {phase: Running, podIP: 10.250.0.${i + 1}}\n`,
      );
      const a = await arrived;
      times.push(a.atMs - t0);
      await new Promise((r) => setTimeout(r, 300));
    }
    const controllerPid = (group as unknown as { children: Map<string, ChildProcess> }).children.get(
      `controller-${index}`,
    )!.pid!;
    return {
      ...c,
      syncMs: synced.atMs - started,
      pushMs: median(times),
      rssMiB: rssBytes(controllerPid) / (1024 * 1024),
      peakRssMiB: peakRssBytes(controllerPid) / (1024 * 1024),
    };
  } catch (err) {
    throw new Error(
      `${(err as Error).message}\n--- controller ---\n${group.logTail(`controller-${index}`)}\n--- subscribers ---\n${group.logTail(`subscribers-${index}`)}`,
    );
  } finally {
    await group.stopAll(5_000);
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-bench-xds-'));
  try {
    const ca = await CertificateAuthority.createSelfSigned('cluster.local');
    await writeFile(join(dir, 'ca-cert.pem'), ca.rootCertPem);
    await writeFile(join(dir, 'ca-key.pem'), ca.rootKeyPem);
    await writeFile(join(dir, 'tokens'), 'bench-token node-0\n');
    const results: CaseResult[] = [];
    for (const [i, c] of CASES.entries()) {
      process.stderr.write(`bench:xds: ${c.workloads} workloads, ${c.subscribers} subscribers…\n`);
      results.push(await runCase(dir, c, i));
    }
    const rows = results.map((r) => {
      const atTarget = r.workloads === 10_000 && r.subscribers === 100;
      const verdict = atTarget
        ? r.pushMs < TARGET.pushMs && r.peakRssMiB < TARGET.rssMiB
          ? 'PASS'
          : 'MISS'
        : '';
      return [
        String(r.workloads),
        String(r.subscribers),
        r.syncMs.toFixed(0),
        r.pushMs.toFixed(0),
        r.rssMiB.toFixed(0),
        r.peakRssMiB.toFixed(0),
        atTarget ? `< ${TARGET.pushMs} ms, < ${TARGET.rssMiB} MiB` : '',
        verdict,
      ];
    });
    const header = [
      'workloads',
      'subscribers',
      'first sync (ms)',
      'change → all hold it (ms, median of 5)',
      'controller RSS (MiB)',
      'peak RSS (MiB)',
      'target',
      'result',
    ];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
    process.stdout.write(
      `\nAmbit controller xDS push benchmark (file watch + ${100} ms debounce included)\n\n`,
    );
    process.stdout.write(line(header) + '\n' + widths.map((w) => '-'.repeat(w)).join('  ') + '\n');
    for (const r of rows) process.stdout.write(line(r) + '\n');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
