/**
 * `ambit local` (`npm start`): a whole mesh on loopback with no Kubernetes and no root. A CA, two node
 * agents (child processes, one per "node" address) and sample workloads on their own 127.x addresses.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeError } from '../core/errors.ts';
import { CertificateAuthority } from '../core/identity/ca.ts';
import { gatewayApiKind } from './local-gateway-api.ts';
import { ISTIO_GATEWAY_KINDS, LocalGateways } from './local-gateways.ts';
import { LocalWaypoints } from './local-waypoints.ts';
import { podIp, SAMPLE_APPS, SAMPLE_SERVICES, sampleKubeYaml, startSampleApps } from './sample-apps.ts';

export interface LocalMeshOptions {
  readonly dir: string;
  /** First two octets of every address the mesh uses, e.g. "127.10". */
  readonly prefix: string;
  readonly socksPort: number;
  readonly reset: boolean;
}

const NODES = [
  { name: 'node-1', octet: 1 },
  { name: 'node-2', octet: 2 },
] as const;
const READY_TIMEOUT_MS = 30_000;
/** Agents drain for up to 5 s (CONNECTION_TERMINATION_DEADLINE); after this they are killed. */
const STOP_GRACE_MS = 10_000;

export async function runLocalMesh(opts: LocalMeshOptions): Promise<number> {
  if (!/^127\.\d{1,3}$/.test(opts.prefix)) {
    process.stderr.write(`ambit local: --prefix must look like 127.N (got "${opts.prefix}")\n`);
    return 2;
  }
  const dir = resolve(opts.dir);
  await mkdir(dir, { recursive: true });
  const caCert = join(dir, 'ca-cert.pem');
  const caKey = join(dir, 'ca-key.pem');
  if (!existsSync(caCert) || !existsSync(caKey)) {
    const ca = await CertificateAuthority.createSelfSigned('cluster.local');
    await writeFile(caCert, ca.rootCertPem);
    await writeFile(caKey, ca.rootKeyPem, { mode: 0o600 });
  }
  await chmod(caKey, 0o600);
  // The mesh is Kubernetes YAML the controller watches, as a cluster would hold it.
  const kubeDir = join(dir, 'kube');
  await mkdir(kubeDir, { recursive: true });
  const meshFile = join(kubeDir, 'mesh.yaml');
  if (opts.reset || !existsSync(meshFile)) await writeFile(meshFile, sampleKubeYaml(opts.prefix));
  // One bootstrap token per node agent: the CA gives each only its own node's pods' identities.
  const tokensFile = join(dir, 'tokens');
  const tokenFiles = Object.fromEntries(NODES.map((n) => [n.name, join(dir, `${n.name}.token`)]));
  const tokens = NODES.map((n) => ({ node: n.name, token: randomBytes(24).toString('hex') }));
  await writeFile(tokensFile, tokens.map((t) => `${t.token} ${t.node}`).join('\n') + '\n', { mode: 0o600 });
  for (const t of tokens) await writeFile(tokenFiles[t.node]!, t.token + '\n', { mode: 0o600 });

  let apps;
  const appsLog = createWriteStream(join(dir, 'apps.log'), { flags: 'a' });
  try {
    apps = await startSampleApps(opts.prefix, (r) =>
      appsLog.write(JSON.stringify({ time: new Date().toISOString(), ...r }) + '\n'),
    );
  } catch (err) {
    process.stderr.write(
      `ambit local: cannot start the sample workloads: ${describeError(err)}\n` +
        `  is another local mesh running with --prefix ${opts.prefix}? Try --prefix 127.11\n`,
    );
    return 1;
  }

  const main = fileURLToPath(new URL('./main.ts', import.meta.url));
  const controllerIp = `${opts.prefix}.0.100`;
  const controllerGrpc = `${controllerIp}:15010`;
  // Agents use the TLS port, verifying the controller's certificate against the mesh root.
  const controllerTls = `${controllerIp}:15012`;
  // What the waypoints and gateways run with: the controller, the CA's tokens, where logs go.
  const proxies = {
    kubeDir,
    dir,
    prefix: opts.prefix,
    main,
    controllerTls,
    caCertPath: caCert,
    tokensPath: tokensFile,
    nodeName: NODES[0].name,
    report: (line: string) => process.stderr.write(line),
  };
  // Before the controller starts, so its first view already holds the waypoints' addresses.
  const waypoints = await LocalWaypoints.prepare(proxies);
  // Istio's ingress and egress gateways, and one per Gateway API Gateway of class ambit.
  const gateways = await LocalGateways.prepare(proxies, [...ISTIO_GATEWAY_KINDS, gatewayApiKind]);
  const controllerLog = join(dir, 'controller.log');
  let controller: ChildProcess | undefined;
  let stopping = false;
  // Like a Deployment, the controller is restarted if it dies; agents keep their last config meanwhile.
  const startControllerProcess = () => {
    const child = spawn(process.execPath, [main, 'controller'], {
      env: {
        ...(process.env as Record<string, string>),
        AMBIT_CONFIG_DIR: kubeDir,
        AMBIT_GRPC_ADDR: controllerGrpc,
        AMBIT_GRPC_TLS_ADDR: controllerTls,
        AMBIT_CONTROLLER_ADMIN_ADDR: `${controllerIp}:15014`,
        AMBIT_CA_CERT_FILE: caCert,
        AMBIT_CA_KEY_FILE: caKey,
        AMBIT_TOKENS_FILE: tokensFile,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out = createWriteStream(controllerLog, { flags: 'a' });
    child.stdout.pipe(out);
    child.stderr.pipe(out);
    child.stderr.on('data', (b: Buffer) => process.stderr.write(`[controller] ${b.toString()}`));
    void writeFile(join(dir, 'controller.pid'), `${child.pid}\n`);
    child.once('exit', (code, signal) => {
      if (stopping) return;
      process.stderr.write(
        `ambit local: controller exited (${code ?? signal}); restarting in 1 s (agents keep serving)\n`,
      );
      setTimeout(() => {
        if (!stopping) controller = startControllerProcess();
      }, 1000);
    });
    return child;
  };
  controller = startControllerProcess();
  // Agents start once the controller serves, so their first xDS dial succeeds.
  if ((await waitReady(`http://${controllerIp}:15014/ready`, Date.now() + READY_TIMEOUT_MS)) !== undefined) {
    process.stderr.write(`ambit local: the controller did not come up; see ${controllerLog}\n`);
    controller.kill('SIGTERM');
    await waypoints.close(stopChild);
    await gateways.close(stopChild);
    await apps.close();
    return 1;
  }
  await waypoints.run();
  await gateways.run();
  const client = SAMPLE_APPS.find((a) => a.kind === 'client')!;
  const agents: {
    name: string;
    child: ChildProcess;
    readiness: string;
    admin: string;
    metrics: string;
    log: string;
  }[] = [];
  for (const node of NODES) {
    const ip = `${opts.prefix}.0.${node.octet}`;
    const log = join(dir, `${node.name}.log`);
    const env: Record<string, string> = {
      ...(process.env as Record<string, string>),
      NODE_NAME: node.name,
      XDS_ADDRESS: controllerTls,
      CA_ADDRESS: controllerTls,
      XDS_ROOT_CA: caCert,
      AUTH_TOKEN: tokenFiles[node.name]!,
      AMBIT_ADMIN_ADDR: `${ip}:15000`,
      AMBIT_METRICS_ADDR: `${ip}:15020`,
      AMBIT_READINESS_ADDR: `${ip}:15021`,
      AMBIT_SOCKS5:
        node.name === client.node ? `127.0.0.1:${opts.socksPort}=${client.namespace}/${client.name}` : '',
    };
    const child = spawn(process.execPath, [main, 'ztunnel'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = createWriteStream(log, { flags: 'a' });
    child.stdout.pipe(out);
    child.stderr.pipe(out);
    child.stderr.on('data', (b: Buffer) => process.stderr.write(`[${node.name}] ${b.toString()}`));
    agents.push({
      name: node.name,
      child,
      readiness: `http://${ip}:15021/healthz/ready`,
      admin: `http://${ip}:15000`,
      metrics: `http://${ip}:15020/metrics`,
      log,
    });
  }

  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nstopping: draining the node agents…\n');
    // Every child is waited for, and killed if it does not stop in time: nothing is left behind.
    await Promise.all([
      waypoints.close(stopChild),
      gateways.close(stopChild),
      ...[...agents.map((a) => a.child), ...(controller ? [controller] : [])].map(stopChild),
    ]);
    await apps.close();
    process.exit(code);
  };
  process.once('SIGINT', () => void stop(0));
  process.once('SIGTERM', () => void stop(0));
  for (const a of agents) {
    a.child.once('exit', (code) => {
      if (stopping) return;
      process.stderr.write(`ambit local: agent ${a.name} exited (${code}); see ${a.log}\n`);
      void stop(1);
    });
  }

  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (const a of agents) {
    const notReady = await waitReady(a.readiness, deadline, () => stopping);
    if (notReady !== undefined) {
      process.stderr.write(`ambit local: ${a.name} not ready: ${notReady.trim()}\n  see ${a.log}\n`);
      await stop(1);
      return 1;
    }
  }

  for (const w of waypoints.list()) {
    const notReady = await waitReady(w.readiness, deadline, () => stopping);
    if (notReady !== undefined) {
      process.stderr.write(
        `ambit local: waypoint ${w.namespace}/${w.name} not ready: ${notReady.trim()}\n  see ${w.log}\n`,
      );
      await stop(1);
      return 1;
    }
  }

  // A gateway server that cannot serve (say, a missing certificate) is reported, not fatal.
  for (const g of gateways.list()) {
    const notReady = await waitReady(g.readiness, deadline, () => stopping);
    if (notReady !== undefined)
      process.stderr.write(
        `ambit local: ${g.role} ${g.namespace}/${g.name} not ready: ${notReady.trim()}\n  see ${g.log}\n`,
      );
  }

  const socks = `127.0.0.1:${opts.socksPort}`;
  const svc = (app: string) => `${app}.default.svc.cluster.local`;
  const lines = [
    '',
    'Ambit local mesh is up.',
    '',
    `  CA (trust domain cluster.local)  ${caCert}`,
    `  mesh (Kubernetes YAML, edit me)  ${meshFile}`,
    `  controller    xDS + CA over TLS ${controllerTls} (plaintext ${controllerGrpc})  debug http://${controllerIp}:15014/debug/config_dump  log ${controllerLog}`,
    ...agents.map((a) => `  ${a.name.padEnd(6)} agent  admin ${a.admin}  metrics ${a.metrics}  log ${a.log}`),
    ...waypoints
      .list()
      .map(
        (w) =>
          `  waypoint ${w.namespace}/${w.name}  ${w.podIp}:15008  admin ${w.admin}  metrics ${w.metrics}  log ${w.log}`,
      ),
    ...gateways
      .list()
      .flatMap((g) => [
        `  ${g.role} ${g.namespace}/${g.name}  ${g.ports.map((p) => `${g.podIp}:${p.number}`).join(' ')}  service ${g.serviceIp}  admin ${g.admin}  metrics ${g.metrics}  log ${g.log}`,
        ...(g.name === 'istio-ingressgateway'
          ? [
              `    e.g. curl -H 'Host: bookinfo.example.com' http://${g.podIp}:${g.ports[0]!.number}/productpage`,
            ]
          : []),
      ]),
    `  what each workload received: ${join(dir, 'apps.log')}`,
    '',
    '  workloads:',
    ...SAMPLE_APPS.map(
      (a) =>
        `    ${`${a.namespace}/${a.name}`.padEnd(24)} ${podIp(opts.prefix, a).padEnd(14)} ${a.node}  sa=${a.serviceAccount}`,
    ),
    '  services:',
    ...SAMPLE_SERVICES.map(
      (s) =>
        `    ${`${s.name}.${s.namespace}.svc.cluster.local`.padEnd(38)} ${opts.prefix}.100.${s.vip}:${[s.port, ...(s.extraPort ? [s.extraPort] : [])].join(',')}`,
    ),
    '',
    `Try it (SOCKS5 on ${socks} speaks for default/curl on node-1):`,
    '',
    `  curl --socks5-hostname ${socks} http://${svc('reviews')}:9080/`,
    `  curl --socks5-hostname ${socks} http://ratings:9080/            # short names work`,
    `  echo world | curl -s --max-time 1 --socks5-hostname ${socks} telnet://${svc('tcp-echo')}:9000`,
    `  curl -s ${agents[0]!.metrics} | grep istio_tcp`,
    `  curl -s ${agents[0]!.admin}/config_dump`,
    '',
    'L7 through a waypoint: add one to a namespace and send its services through it (a waypoint starts',
    `for every Gateway of class istio-waypoint in ${kubeDir}), then add VirtualServices and DestinationRules`,
    "there too (Istio's bookinfo samples work unchanged):",
    `  npm run -s ambit -- waypoint apply -n default --enroll-namespace --wait --local-dir ${kubeDir}`,
    `  curl --socks5-hostname ${socks} -H 'end-user: jason' http://${svc('reviews')}:9080/`,
    `  curl --socks5-hostname ${socks} http://${svc('httpbin')}:8000/status/418`,
    '',
    `Gateways: an Istio Gateway selecting istio: ingressgateway (or egressgateway), or a Gateway API Gateway of`,
    `class ambit, in ${kubeDir} starts one (Istio's bookinfo-gateway.yaml unchanged, then):`,
    `  curl -H 'Host: bookinfo.example.com' http://${opts.prefix}.4.1:8080/productpage`,
    '',
    "Each request goes SOCKS5 → node-1 agent → HBONE (mTLS, HTTP/2 CONNECT) → the server's agent → the pod.",
    'Press Ctrl-C to stop.',
    '',
  ];
  process.stdout.write(lines.join('\n'));
  await new Promise(() => undefined);
  return 0;
}

/**
 * Polls a readiness URL until it answers 200 (undefined), or the deadline passes or `abandon` says
 * so (the last answer or error, to show the user).
 */
async function waitReady(
  url: string,
  deadline: number,
  abandon: () => boolean = () => false,
): Promise<string | undefined> {
  for (;;) {
    const r = await fetch(url).then(
      async (res) => ({ ok: res.ok, text: await res.text() }),
      (e: unknown) => ({ ok: false, text: describeError(e) }),
    );
    if (r.ok) return undefined;
    if (Date.now() > deadline || abandon()) return r.text;
    await new Promise((res) => setTimeout(res, 100));
  }
}

/** SIGTERM, then SIGKILL after a grace period; resolves once the child has exited. */
function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
