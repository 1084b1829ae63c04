/**
 * A two-node mesh in one process for integration tests: a CA, two agents ("node-a", "node-b") bound
 * on port 0 where they can be, and plain servers on the pods' loopback addresses.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificateAuthority } from '../../src/core/identity/ca.ts';
import { LocalCaProvider } from '../../src/core/identity/secret-manager.ts';
import { silentLogger, type Logger } from '../../src/core/log.ts';
import { startZtunnel, type ZtunnelBound } from '../../src/ztunnel/app.ts';
import type { ZtunnelConfig } from '../../src/ztunnel/config.ts';

/** A loopback /16 unique to this test process, so parallel test files do not collide on :15008. */
export function testPrefix(): string {
  return `127.${30 + (process.pid % 200)}`;
}

export interface TestMesh {
  readonly prefix: string;
  readonly dir: string;
  readonly ca: CertificateAuthority;
  readonly configPath: string;
  readonly a: ZtunnelBound;
  readonly b: ZtunnelBound;
  /** SOCKS5 listener of node-a, speaking for default/client. */
  readonly socks: { host: string; port: number };
  /** Pod IPs. */
  readonly ip: { client: string; server: string; server2: string; plain: string; vip: string };
  close(): Promise<void>;
}

export const ECHO_PORT = 9000;
export const SINK_PORT = 9001;
export const SHA_PORT = 9002;
/** A server that says "bye" and closes its side first, then records what the client still sends. */
export const CLOSER_PORT = 9003;
export const closerReceived: string[] = [];

/**
 * The mesh YAML: client on node-a; server (HBONE) and server2 (HBONE) on node-b behind service
 * `echo` (VIP .100.1, port 80 → 9000); `plain` is an out-of-mesh (TCP) workload on node-b.
 */
export function meshYaml(prefix: string, extra = ''): string {
  return `
workloads:
- uid: test//Pod/default/client
  name: client
  namespace: default
  serviceAccount: client
  workloadIps: [${prefix}.1.2]
  protocol: HBONE
  node: node-a
- uid: test//Pod/default/server
  name: server
  namespace: default
  serviceAccount: server
  workloadIps: [${prefix}.2.2]
  protocol: HBONE
  node: node-b
  canonicalName: echo
  canonicalRevision: v1
  services:
    default/echo.default.svc.cluster.local: {80: ${ECHO_PORT}}
- uid: test//Pod/default/server2
  name: server2
  namespace: default
  serviceAccount: server
  workloadIps: [${prefix}.2.3]
  protocol: HBONE
  node: node-b
  services:
    default/echo.default.svc.cluster.local: {80: ${ECHO_PORT}}
- uid: test//Pod/default/plain
  name: plain
  namespace: default
  workloadIps: [${prefix}.2.9]
  protocol: TCP
  node: node-b
services:
- name: echo
  namespace: default
  hostname: echo.default.svc.cluster.local
  vips: [/${prefix}.100.1]
  ports: {80: ${ECHO_PORT}}
${extra}`;
}

/** An agent config for a test node: port 0 everywhere it can be, short timeouts, silent logs. */
export function agentConfig(prefix: string, node: string, dir: string, socks: boolean): ZtunnelConfig {
  const any = { host: `${prefix}.0.${node === 'node-a' ? 1 : 2}`, port: 0 };
  return {
    nodeName: node,
    trustDomain: 'cluster.local',
    network: '',
    localConfigPath: join(dir, 'mesh.yaml'),
    xdsAddress: '',
    caAddress: '',
    authToken: '',
    clusterId: 'Kubernetes',
    xdsRootCaPath: '',
    xdsHostname: 'istiod.istio-system.svc',
    caCertPath: join(dir, 'ca-cert.pem'),
    caKeyPath: join(dir, 'ca-key.pem'),
    certTtlMs: 3600_000,
    admin: any,
    metrics: any,
    readiness: any,
    socks5: socks ? [{ host: '127.0.0.1', port: 0, workload: 'default/client' }] : [],
    drainDeadlineMs: 2000,
    connectTimeoutMs: 2000,
    socksHandshakeTimeoutMs: 2000,
    poolMaxStreamsPerConnection: 100,
    poolIdleTimeoutMs: 60_000,
    logLevel: 'silent',
    inpod: false,
    cniSocketPath: '',
    probeSources: [],
  };
}

/** Starts plain servers on the server pods: echo, sink (counts), sha256 (answers the digest at EOF). */
async function startApps(prefix: string): Promise<Server[]> {
  const servers: Server[] = [];
  const listen = async (host: string, port: number, handler: (s: Socket) => void) => {
    const srv = createServer({ allowHalfOpen: true }, handler);
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen({ host, port }, resolve);
    });
    servers.push(srv);
  };
  for (const ip of [`${prefix}.2.2`, `${prefix}.2.3`, `${prefix}.2.9`]) {
    // Echo keeps the other direction open after the client's FIN until it has echoed everything.
    await listen(ip, ECHO_PORT, (s) => {
      s.on('error', () => s.destroy());
      s.pipe(s);
    });
    await listen(ip, SHA_PORT, (s) => {
      const h = createHash('sha256');
      s.on('error', () => s.destroy());
      s.on('data', (c: Buffer) => h.update(c));
      s.on('end', () => s.end(h.digest('hex')));
    });
    await listen(ip, CLOSER_PORT, (s) => {
      const chunks: Buffer[] = [];
      s.on('error', () => s.destroy());
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('end', () => closerReceived.push(Buffer.concat(chunks).toString()));
      s.end('bye');
    });
  }
  return servers;
}

export async function startTestMesh(
  options: {
    extraYaml?: string;
    log?: Logger;
    /** Default true: wait until both agents are ready. */
    waitReady?: boolean;
    /** Workload certificate lifetime (default 1 h). */
    certTtlMs?: number;
  } = {},
): Promise<TestMesh> {
  const prefix = testPrefix();
  const dir = await mkdtemp(join(tmpdir(), 'ambit-test-'));
  const ca = await CertificateAuthority.createSelfSigned('cluster.local');
  await writeFile(join(dir, 'ca-cert.pem'), ca.rootCertPem);
  await writeFile(join(dir, 'ca-key.pem'), ca.rootKeyPem);
  const configPath = join(dir, 'mesh.yaml');
  await writeFile(configPath, meshYaml(prefix, options.extraYaml));
  const servers = await startApps(prefix);
  const log = options.log ?? silentLogger();
  const certificates = new LocalCaProvider(ca, options.certTtlMs ?? 3600_000);
  const b = await startZtunnel(agentConfig(prefix, 'node-b', dir, false), { log, certificates });
  const a = await startZtunnel(agentConfig(prefix, 'node-a', dir, true), { log, certificates });
  if (options.waitReady !== false) {
    await waitFor(
      () => a.pending().length === 0 && b.pending().length === 0,
      5000,
      () => [...a.pending(), ...b.pending()].join(', '),
    );
  }
  const socks = a.socks5[0]!;
  return {
    prefix,
    dir,
    ca,
    configPath,
    a,
    b,
    socks: { host: socks.address, port: socks.port },
    ip: {
      client: `${prefix}.1.2`,
      server: `${prefix}.2.2`,
      server2: `${prefix}.2.3`,
      plain: `${prefix}.2.9`,
      vip: `${prefix}.100.1`,
    },
    close: async () => {
      await Promise.all([a.close(), b.close()]);
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export async function waitFor(
  cond: () => boolean,
  timeoutMs: number,
  what: () => string = () => '',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function addressOf(a: AddressInfo): string {
  return `${a.address}:${a.port}`;
}
