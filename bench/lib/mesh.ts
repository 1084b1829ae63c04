/**
 * Ambit under test: two node agents as child processes (`ambit ztunnel`, started the way `ambit local`
 * starts them), a client workload on node-a reached through its SOCKS5 listener and a server workload
 * on node-b. Addresses live in 127.77/16, away from the local mesh's 127.10.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import type { ProcessGroup } from './children.ts';

const AMBIT_MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const READY_TIMEOUT_MS = 30_000;

export interface MeshLayout {
  readonly clientPodIp: string;
  readonly serverPodIp: string;
  readonly nodeA: { readonly name: string; readonly ip: string };
  readonly nodeB: { readonly name: string; readonly ip: string };
  readonly socks: { readonly host: string; readonly port: number };
}

export const CLIENT_WORKLOAD = 'default/bench-client';

/** The LocalConfig: two HBONE workloads, no services, no policies. */
export function benchMeshYaml(l: MeshLayout): string {
  const workload = (name: string, sa: string, ip: string, node: string) => [
    `- uid: bench//Pod/default/${name}`,
    `  name: ${name}`,
    '  namespace: default',
    `  serviceAccount: ${sa}`,
    `  workloadIps: [${ip}]`,
    '  protocol: HBONE',
    `  node: ${node}`,
    `  workloadName: ${name}`,
    '  workloadType: deployment',
    `  canonicalName: ${name}`,
    '  canonicalRevision: v1',
  ];
  return [
    '# Written by bench/run.ts.',
    'workloads:',
    ...workload('bench-client', 'bench-client', l.clientPodIp, l.nodeA.name),
    ...workload('bench-server', 'bench-server', l.serverPodIp, l.nodeB.name),
    '',
  ].join('\n');
}

export interface Agent {
  readonly name: string;
  readonly child: ChildProcess;
  readonly readiness: string;
}

export interface MeshOptions {
  readonly dir: string;
  readonly caCertPath: string;
  readonly caKeyPath: string;
  /** When set, agents run with `--cpu-prof` and write their profiles here on exit. */
  readonly cpuProfDir: string | undefined;
}

/** Starts both agents and resolves once both report ready. */
export async function startMesh(group: ProcessGroup, l: MeshLayout, o: MeshOptions): Promise<Agent[]> {
  const meshFile = join(o.dir, 'mesh.yaml');
  await writeFile(meshFile, benchMeshYaml(l));
  const agents: Agent[] = [];
  for (const node of [l.nodeA, l.nodeB]) {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      NODE_NAME: node.name,
      LOCAL_XDS_PATH: meshFile,
      AMBIT_CA_CERT_FILE: o.caCertPath,
      AMBIT_CA_KEY_FILE: o.caKeyPath,
      AMBIT_ADMIN_ADDR: `${node.ip}:15000`,
      AMBIT_METRICS_ADDR: `${node.ip}:15020`,
      AMBIT_READINESS_ADDR: `${node.ip}:15021`,
      AMBIT_SOCKS5: node === l.nodeA ? `${l.socks.host}:${l.socks.port}=${CLIENT_WORKLOAD}` : '',
      // Open tunnels at the end of the run need not hold the shutdown up for the default 5 s.
      CONNECTION_TERMINATION_DEADLINE: '1s',
      LOG_LEVEL: 'warn',
    };
    const prof = o.cpuProfDir
      ? ['--cpu-prof', `--cpu-prof-dir=${o.cpuProfDir}`, `--cpu-prof-name=${node.name}.cpuprofile`]
      : [];
    const child = group.spawn(node.name, process.execPath, [...prof, AMBIT_MAIN, 'ztunnel'], { env });
    agents.push({ name: node.name, child, readiness: `http://${node.ip}:15021/healthz/ready` });
  }
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (const a of agents) {
    for (;;) {
      if (a.child.exitCode !== null || a.child.signalCode !== null) {
        throw new Error(
          `agent ${a.name} exited (${a.child.exitCode ?? a.child.signalCode}):\n${group.logTail(a.name)}`,
        );
      }
      const r = await fetch(a.readiness, { signal: AbortSignal.timeout(2_000) }).then(
        async (res) => ({ ok: res.ok, text: await res.text() }),
        (err: unknown) => ({ ok: false, text: err instanceof Error ? err.message : String(err) }),
      );
      if (r.ok) break;
      if (Date.now() > deadline) {
        throw new Error(
          `agent ${a.name} not ready after ${READY_TIMEOUT_MS} ms: ${r.text.trim()}\n${group.logTail(a.name)}`,
        );
      }
      await new Promise((res) => setTimeout(res, 100));
    }
  }
  return agents;
}
