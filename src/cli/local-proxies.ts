/**
 * What `ambit local` does alike for each L7 proxy it runs (waypoints, the ingress gateway): read the
 * mesh's YAML documents, give the proxy a bootstrap token for its own service account, and run its
 * program on a loopback pod address with the controller's TLS port for xDS and the CA.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { appendFile, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';

/** Where the proxies reach the controller, and where their tokens go. */
export interface LocalControlPlane {
  /** `src/cli/main.ts`, run with this Node. */
  readonly main: string;
  /** The controller's TLS address (xDS and CA). */
  readonly controllerTls: string;
  readonly caCertPath: string;
  /** The CA's tokens file (`<token> sa:<ns>/<sa>` lines, re-read on every request). */
  readonly tokensPath: string;
}

/**
 * Every YAML document of the directory's files, as plain data, skipping the files `ambit local`
 * writes itself (`*.generated.yaml`) and documents that do not parse (the controller reports those,
 * with their line numbers).
 */
export async function meshDocuments(dir: string): Promise<unknown[]> {
  const files = (await readdir(dir))
    .filter((f) => /\.ya?ml$/.test(f) && !f.endsWith('.generated.yaml'))
    .sort();
  const docs: unknown[] = [];
  for (const f of files) {
    const text = await readFile(join(dir, f), 'utf8').catch(() => '');
    for (const doc of parseAllDocuments(text)) if (doc.errors.length === 0) docs.push(doc.toJS());
  }
  return docs;
}

/** A fresh token for `namespace/serviceAccount`, written to `tokenFile` and to the tokens file. */
export async function workloadToken(
  cp: LocalControlPlane,
  tokenFile: string,
  namespace: string,
  serviceAccount: string,
): Promise<void> {
  const token = randomBytes(24).toString('hex');
  await writeFile(tokenFile, token + '\n', { mode: 0o600 });
  await appendFile(cp.tokensPath, `${token} sa:${namespace}/${serviceAccount}\n`);
}

/**
 * Runs `ambit <program>` on pod address `ip` (admin 15000, metrics 15020, readiness 15021) with
 * `env` on top; its output goes to `logFile`, and its stderr also to `report`, prefixed `[label]`.
 */
export function spawnProxy(
  cp: LocalControlPlane,
  program: string,
  ip: string,
  tokenFile: string,
  env: Readonly<Record<string, string>>,
  logFile: string,
  label: string,
  report: (line: string) => void,
): ChildProcess {
  const child = spawn(process.execPath, [cp.main, program], {
    env: {
      ...(process.env as Record<string, string>),
      ...env,
      INSTANCE_IP: ip,
      XDS_ADDRESS: cp.controllerTls,
      CA_ADDRESS: cp.controllerTls,
      XDS_ROOT_CA: cp.caCertPath,
      AUTH_TOKEN: tokenFile,
      AMBIT_ADMIN_ADDR: `${ip}:15000`,
      AMBIT_METRICS_ADDR: `${ip}:15020`,
      AMBIT_READINESS_ADDR: `${ip}:15021`,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = createWriteStream(logFile, { flags: 'a' });
  child.stdout.pipe(out);
  child.stderr.pipe(out);
  child.stderr.on('data', (b: Buffer) => report(`[${label}] ${b.toString()}`));
  return child;
}

/** The objects a cluster holds for one proxy deployment, as `ambit local` writes them. */
export interface ProxyObjects {
  readonly namespace: string;
  readonly name: string;
  readonly serviceAccount: string;
  /** The pod's labels, which the Service selects. */
  readonly labels: Readonly<Record<string, string>>;
  /** Labels of the Service itself. */
  readonly serviceLabels: Readonly<Record<string, string>>;
  readonly serviceIp: string;
  /** The Service ports, each its own target port. */
  readonly ports: readonly { readonly name: string; readonly port: number }[];
  readonly podIp: string;
  readonly nodeName: string;
  /** `istio.io/dataplane-mode` of the pod: `none` for a proxy that speaks HBONE itself. */
  readonly dataplaneMode: 'ambient' | 'none';
  readonly container: string;
}

/**
 * ServiceAccount, Service (with its cluster IP) and a running Pod (with its address): what the
 * controller needs to know a proxy as a workload behind a VIP. YAML documents, `---` between them.
 */
export function proxyObjectsYaml(o: ProxyObjects): string {
  const lines = (labels: Readonly<Record<string, string>>) =>
    Object.entries(labels).map(([k, v]) => `    ${k}: ${v}`);
  return [
    'apiVersion: v1',
    'kind: ServiceAccount',
    'metadata:',
    `  name: ${o.serviceAccount}`,
    `  namespace: ${o.namespace}`,
    '---',
    'apiVersion: v1',
    'kind: Service',
    'metadata:',
    `  name: ${o.name}`,
    `  namespace: ${o.namespace}`,
    ...(Object.keys(o.serviceLabels).length > 0 ? ['  labels:', ...lines(o.serviceLabels)] : []),
    'spec:',
    '  selector:',
    ...lines(o.labels),
    `  clusterIP: ${o.serviceIp}`,
    '  ports:',
    ...o.ports.flatMap((p) => [`  - name: ${p.name}`, `    port: ${p.port}`, `    targetPort: ${p.port}`]),
    '---',
    'apiVersion: v1',
    'kind: Pod',
    'metadata:',
    `  name: ${o.name}-local`,
    `  namespace: ${o.namespace}`,
    '  labels:',
    ...lines(o.labels),
    `    service.istio.io/canonical-name: ${o.name}`,
    o.dataplaneMode === 'none'
      ? '    # The proxy speaks HBONE itself: the node agent must not take its traffic.'
      : '    # In the mesh: its node agent takes HBONE for it and hands it the connections.',
    `    istio.io/dataplane-mode: ${o.dataplaneMode}`,
    'spec:',
    `  nodeName: ${o.nodeName}`,
    `  serviceAccountName: ${o.serviceAccount}`,
    '  containers:',
    `  - name: ${o.container}`,
    '    image: ambit',
    '    ports:',
    ...o.ports.flatMap((p) => [`    - name: ${p.name}`, `      containerPort: ${p.port}`]),
    'status:',
    '  phase: Running',
    `  podIP: ${o.podIp}`,
  ].join('\n');
}
