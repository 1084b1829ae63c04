/**
 * `ambit waypoint apply|list|status|delete`: the waypoint Gateway of a namespace (class
 * `istio-waypoint`, listener `mesh` on 15008 HBONE, label `istio.io/waypoint-for`), as `istioctl
 * waypoint` writes it, in a cluster (kubeconfig) or in the local mesh's YAML directory
 * (`--local-dir`, where `ambit local` runs a waypoint for it).
 */
import { readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { LineCounter, parseAllDocuments, stringify, type Document } from 'yaml';
import { describeError } from '../core/errors.ts';
import {
  validateGateways,
  WAYPOINT_CLASSES,
  WAYPOINT_FOR_LABEL,
  waypointFor,
} from '../controller/translate/gateways.ts';
import type { TranslateProblem } from '../controller/translate/common.ts';
import {
  GATEWAY_NAME_LABEL,
  USE_WAYPOINT_LABEL,
  USE_WAYPOINT_NAMESPACE_LABEL,
} from '../controller/translate/waypoint-binding.ts';
import { GENERATED_FILE } from './local-waypoints.ts';
import {
  CliError,
  formatData,
  formatTable,
  parseOutputFormat,
  runCommand,
  type OutputFormat,
} from './output.ts';

type Json = Record<string, unknown>;

const WAYPOINT_FOR = ['service', 'workload', 'all', 'none'] as const;
const DEFAULT_LOCAL_DIR = '.ambit/local/kube';
const READY_TIMEOUT_MS = 1000;
const WAIT_TIMEOUT_MS = 60_000;
const WAIT_POLL_MS = 500;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export interface WaypointOptions {
  readonly namespace?: string;
  readonly name: string;
  readonly for: (typeof WAYPOINT_FOR)[number];
  readonly enrollNamespace?: boolean;
  readonly wait?: boolean;
  /** Local mode: the YAML directory `ambit local` watches. */
  readonly localDir?: string;
  readonly kubeconfig?: string;
  readonly output: OutputFormat;
}

/** The Gateway `istioctl waypoint generate` prints. */
export function waypointGateway(namespace: string, name: string, forWhat: string): Json {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name, namespace, labels: { [WAYPOINT_FOR_LABEL]: forWhat } },
    spec: {
      gatewayClassName: 'istio-waypoint',
      listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }],
    },
  };
}

interface Condition {
  readonly type: string;
  readonly status: string;
  readonly reason: string;
  readonly message: string;
}

/** What list and status show of one waypoint Gateway. */
interface GatewayView {
  readonly namespace: string;
  readonly name: string;
  readonly class: string;
  readonly for: string;
  readonly addresses: readonly string[];
  readonly conditions: readonly Condition[];
  /** Local mode: the file that defines it. */
  readonly file?: string;
  /** What uses it: `namespace <ns>`, `service <ns>/<name>`. */
  readonly usedBy?: readonly string[];
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}
function obj(v: unknown): Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {};
}
function labelsOf(o: Json): Json {
  return obj(obj(o.metadata).labels);
}

function programmed(v: GatewayView): string {
  return v.conditions.find((c) => c.type === 'Programmed')?.status ?? 'Unknown';
}

function listText(views: readonly GatewayView[], format: OutputFormat): string {
  if (format !== 'table') return formatData(format, views);
  if (views.length === 0) return 'no waypoints found\n';
  return formatTable(
    ['NAMESPACE', 'NAME', 'FOR', 'ADDRESS', 'PROGRAMMED'],
    views.map((v) => [v.namespace, v.name, v.for, v.addresses.join(',') || '-', programmed(v)]),
  );
}

function statusText(v: GatewayView, format: OutputFormat): string {
  if (format !== 'table') return formatData(format, v);
  const head = [
    `Gateway ${v.namespace}/${v.name}: class ${v.class}, for ${v.for}${v.file ? `, in ${v.file}` : ''}`,
    `address: ${v.addresses.join(', ') || 'none yet'}`,
    ...(v.usedBy
      ? [
          `used by: ${v.usedBy.join(', ') || `nothing yet (label a namespace or service ${USE_WAYPOINT_LABEL}=${v.name})`}`,
        ]
      : []),
    '',
  ];
  return (
    head.join('\n') +
    '\n' +
    formatTable(
      ['TYPE', 'STATUS', 'REASON', 'MESSAGE'],
      v.conditions.map((c) => [c.type, c.status, c.reason, c.message]),
    )
  );
}

// ---- local mode: the YAML directory of `ambit local` ----

interface LocalObject {
  readonly file: string;
  readonly kind: string;
  readonly apiVersion: string;
  readonly namespace: string;
  readonly name: string;
  readonly value: Json;
}

interface LocalDir {
  readonly dir: string;
  /** Every object of every `*.yaml`/`*.yml` file, files in name order (the order `ambit local` reads them). */
  readonly objects: readonly LocalObject[];
}

async function readLocalDir(dir: string): Promise<LocalDir> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((f) => /\.ya?ml$/.test(f)).sort();
  } catch (err) {
    throw new CliError(
      `cannot read the local mesh's directory ${dir}: ${describeError(err)} — has \`ambit local\` run (it creates <dir>/kube)? use --local-dir <dir>/kube`,
    );
  }
  const objects: LocalObject[] = [];
  for (const file of names) {
    const text = await readFile(join(dir, file), 'utf8').catch(() => '');
    for (const doc of parseAllDocuments(text)) {
      if (doc.errors.length > 0) continue; // the controller reports it, with its line
      const o = obj(doc.toJS());
      const kind = str(o.kind);
      const meta = obj(o.metadata);
      objects.push({
        file,
        kind,
        apiVersion: str(o.apiVersion),
        namespace: kind === 'Namespace' ? '' : str(meta.namespace) || 'default',
        name: str(meta.name),
        value: o,
      });
    }
  }
  return { dir, objects };
}

function isGateway(o: { kind: string; apiVersion: string }): boolean {
  return o.kind === 'Gateway' && o.apiVersion.startsWith('gateway.networking.k8s.io/');
}

function isWaypoint(o: Json): boolean {
  return WAYPOINT_CLASSES.includes(str(obj(o.spec).gatewayClassName));
}

function localFileName(namespace: string, name: string): string {
  return `waypoint-${namespace}-${name}.yaml`;
}

/** The waypoint's readiness, from the address `ambit local` gave its pod. */
async function localProgrammed(
  local: LocalDir,
  ns: string,
  name: string,
): Promise<{ address?: string; condition: Condition }> {
  const pod = local.objects.find(
    (o) =>
      o.file === GENERATED_FILE &&
      o.kind === 'Pod' &&
      o.namespace === ns &&
      str(labelsOf(o.value)[GATEWAY_NAME_LABEL]) === name,
  );
  const ip = str(obj(pod?.value.status).podIP);
  const cond = (status: string, reason: string, message: string): Condition => ({
    type: 'Programmed',
    status,
    reason,
    message,
  });
  if (!ip) {
    return {
      condition: cond(
        'False',
        'Pending',
        `\`ambit local\` has not started it: is it running on ${local.dir}'s parent directory?`,
      ),
    };
  }
  const url = `http://${ip}:15021/healthz/ready`;
  const answer = await fetch(url, { signal: AbortSignal.timeout(READY_TIMEOUT_MS) }).then(
    async (r) => ({ ok: r.ok, text: (await r.text()).trim() }),
    (err: unknown) => ({ ok: false, text: describeError(obj(err).cause ?? err) }),
  );
  return {
    address: `${ip}:15008`,
    condition: answer.ok
      ? cond('True', 'Programmed', `the waypoint answers ready on ${ip}:15021`)
      : cond('False', 'NotReady', `${url}: ${answer.text}`),
  };
}

/** Accepted, as the controller judges the Gateway: its decoding and validation problems. */
async function localAccepted(text: string, file: string, ns: string, name: string): Promise<Condition> {
  // Loaded here: the decoders are more than the other commands of this file need.
  const { decodeKubeYaml } = await import('../controller/files/kube-yaml.ts');
  const decoded = decodeKubeYaml(text, file);
  const gw = decoded.objects.find(
    (o) => o.object.kind === 'Gateway' && o.object.value.namespace === ns && o.object.value.name === name,
  );
  const problems: { severity: string; path: string; message: string }[] = decoded.problems.filter(
    (p) => p.kind === 'Gateway' && p.name === name,
  );
  if (gw?.object.kind === 'Gateway') {
    const found: TranslateProblem[] = [];
    validateGateways([gw.object.value], found);
    problems.push(...found);
  }
  const errors = problems.filter((p) => p.severity === 'error');
  const shown = errors.length > 0 ? errors : problems;
  return {
    type: 'Accepted',
    status: errors.length > 0 ? 'False' : 'True',
    reason: errors.length > 0 ? 'Invalid' : 'Accepted',
    message: shown.map((p) => `${p.path}: ${p.message}`).join('; ') || 'valid',
  };
}

function usedByLocal(local: LocalDir, ns: string, name: string): string[] {
  return local.objects
    .filter((o) => o.kind === 'Namespace' || o.kind === 'Service')
    .filter((o) => {
      const l = labelsOf(o.value);
      const home = o.kind === 'Namespace' ? o.name : o.namespace;
      const wpNs = str(l[USE_WAYPOINT_NAMESPACE_LABEL]) || home;
      return str(l[USE_WAYPOINT_LABEL]) === name && wpNs === ns;
    })
    .map((o) => (o.kind === 'Namespace' ? `namespace ${o.name}` : `service ${o.namespace}/${o.name}`));
}

/**
 * The traffic a waypoint Gateway takes, as the controller decides it: its own label as written,
 * else its GatewayClass's (when valid), else `service`.
 */
function trafficOf(gateway: Json, gatewayClass: Json | undefined): GatewayView['for'] {
  const className = str(obj(gateway.spec).gatewayClassName);
  const labels = (o: Json) => Object.fromEntries(Object.entries(labelsOf(o)).map(([k, v]) => [k, str(v)]));
  const classes = gatewayClass ? [{ name: className, labels: labels(gatewayClass) }] : [];
  return waypointFor({ gatewayClassName: className, labels: labels(gateway) }, classes) || 'service';
}

async function localView(local: LocalDir, g: LocalObject): Promise<GatewayView> {
  const text = await readFile(join(local.dir, g.file), 'utf8');
  const { address, condition } = await localProgrammed(local, g.namespace, g.name);
  return {
    namespace: g.namespace,
    name: g.name,
    class: str(obj(g.value.spec).gatewayClassName),
    for: trafficOf(
      g.value,
      local.objects.find(
        (o) => o.kind === 'GatewayClass' && o.name === str(obj(g.value.spec).gatewayClassName),
      )?.value,
    ),
    addresses: address ? [address] : [],
    conditions: [await localAccepted(text, join(local.dir, g.file), g.namespace, g.name), condition],
    file: join(local.dir, g.file),
    usedBy: usedByLocal(local, g.namespace, g.name),
  };
}

/**
 * Sets a label on the Namespace where it is defined: the first file (by name) that defines it, as
 * `ambit local` reads them, edited with the yaml Document API so comments and the other documents
 * stay as they were. A second definition elsewhere would be ignored by the controller.
 */
async function labelLocalNamespace(local: LocalDir, ns: string, key: string, value: string): Promise<string> {
  const def = localNamespace(local, ns);
  const path = join(local.dir, def.file);
  const text = await readFile(path, 'utf8');
  const docs = parseAllDocuments(text, { lineCounter: new LineCounter() }) as Document.Parsed[];
  const i = docs.findIndex((d) => {
    const o = obj(d.toJS());
    return str(o.kind) === 'Namespace' && str(obj(o.metadata).name) === ns;
  });
  const doc = docs[i]!;
  if (doc.getIn(['metadata', 'labels', key]) === value) return path;
  doc.setIn(['metadata', 'labels', key], value);
  // Only this document's text is replaced; the first document's range starts after the comments
  // that open the file, which its text (commentBefore) carries.
  const start = i === 0 ? 0 : doc.range[0];
  const next = text.slice(0, start) + doc.toString() + text.slice(doc.range[2]);
  await writeAtomically(path, next);
  return path;
}

/** The first definition of a Namespace, the one `ambit local` uses. */
function localNamespace(local: LocalDir, ns: string): LocalObject {
  const def = local.objects.find((o) => o.kind === 'Namespace' && o.name === ns);
  if (!def) {
    throw new CliError(
      `namespace ${ns} is not defined in ${local.dir}: add a Namespace object for it (with istio.io/dataplane-mode: ambient) first`,
    );
  }
  return def;
}

async function writeAtomically(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, text);
  await rename(tmp, path);
}

const LOCAL_HEADER =
  '# Written by `ambit waypoint apply` (as `istioctl waypoint apply` would create it); `ambit local`\n' +
  '# runs a waypoint for it. Remove it with `ambit waypoint delete`.\n';

async function localApply(opts: WaypointOptions & { localDir: string }, ns: string): Promise<string> {
  const local = await readLocalDir(opts.localDir);
  const file = localFileName(ns, opts.name);
  const elsewhere = local.objects.find(
    (o) => isGateway(o) && o.namespace === ns && o.name === opts.name && o.file !== file,
  );
  if (elsewhere) {
    throw new CliError(
      `Gateway ${ns}/${opts.name} is already defined in ${join(local.dir, elsewhere.file)}: edit it there, or remove it from there and apply again`,
    );
  }
  const path = join(local.dir, file);
  const text = LOCAL_HEADER + stringify(waypointGateway(ns, opts.name, opts.for));
  const before = await readFile(path, 'utf8').catch(() => undefined);
  const out: string[] = [];
  // Before writing: a namespace that cannot be enrolled must not leave a half-done apply.
  if (opts.enrollNamespace) localNamespace(local, ns);
  if (before !== text) await writeAtomically(path, text);
  out.push(`waypoint ${ns}/${opts.name} ${before === text ? 'unchanged' : 'applied'} (${path})`);
  if (opts.enrollNamespace) {
    const where = await labelLocalNamespace(local, ns, USE_WAYPOINT_LABEL, opts.name);
    out.push(`namespace ${ns} labeled with "${USE_WAYPOINT_LABEL}: ${opts.name}" (${where})`);
  }
  if (opts.wait) {
    await waitFor(async () => {
      const p = await localProgrammed(await readLocalDir(opts.localDir), ns, opts.name);
      return p.condition.status === 'True' ? undefined : p.condition.message;
    });
    out.push(`waypoint ${ns}/${opts.name} is ready`);
  }
  return out.join('\n') + '\n';
}

async function localList(opts: WaypointOptions & { localDir: string }): Promise<string> {
  const local = await readLocalDir(opts.localDir);
  const gateways = local.objects.filter(
    (o) =>
      isGateway(o) &&
      isWaypoint(o.value) &&
      o.file !== GENERATED_FILE &&
      (opts.namespace === undefined || o.namespace === opts.namespace),
  );
  return listText(await Promise.all(gateways.map((g) => localView(local, g))), opts.output);
}

async function localStatus(opts: WaypointOptions & { localDir: string }, ns: string): Promise<string> {
  const local = await readLocalDir(opts.localDir);
  const g = local.objects.find((o) => isGateway(o) && o.namespace === ns && o.name === opts.name);
  if (!g) throw notFound(ns, opts.name, local.dir);
  return statusText(await localView(local, g), opts.output);
}

async function localDelete(opts: WaypointOptions & { localDir: string }, ns: string): Promise<string> {
  const local = await readLocalDir(opts.localDir);
  const file = localFileName(ns, opts.name);
  const g = local.objects.find((o) => isGateway(o) && o.namespace === ns && o.name === opts.name);
  if (!g) throw notFound(ns, opts.name, local.dir);
  if (g.file !== file) {
    throw new CliError(
      `Gateway ${ns}/${opts.name} is defined in ${join(local.dir, g.file)}, not written by \`ambit waypoint apply\`: remove it from that file`,
    );
  }
  await rm(join(local.dir, file));
  const users = usedByLocal(local, ns, opts.name);
  return (
    `waypoint ${ns}/${opts.name} deleted (${join(local.dir, file)})\n` +
    (users.length > 0
      ? `note: ${users.join(', ')} still ${users.length === 1 ? 'has' : 'have'} ${USE_WAYPOINT_LABEL}=${opts.name}; their traffic now has no waypoint to go to: remove the label\n`
      : '')
  );
}

function notFound(ns: string, name: string, where: string): CliError {
  return new CliError(
    `no waypoint Gateway ${ns}/${name} in ${where} (list them with \`ambit waypoint list\`)`,
  );
}

// ---- cluster mode ----

async function clusterAdmin(opts: WaypointOptions) {
  const { WaypointAdmin } = await import('../controller/kube/waypoint-admin.ts');
  try {
    return WaypointAdmin.open({ path: opts.kubeconfig });
  } catch (err) {
    throw new CliError(describeError(err));
  }
}

function clusterView(g: Json, gatewayClass?: Json): GatewayView {
  const meta = obj(g.metadata);
  const status = obj(g.status);
  const conditions = (Array.isArray(status.conditions) ? status.conditions : []).map((c): Condition => {
    const o = obj(c);
    return { type: str(o.type), status: str(o.status), reason: str(o.reason), message: str(o.message) };
  });
  return {
    namespace: str(meta.namespace),
    name: str(meta.name),
    class: str(obj(g.spec).gatewayClassName),
    for: trafficOf(g, gatewayClass),
    addresses: (Array.isArray(status.addresses) ? status.addresses : []).map((a) => str(obj(a).value)),
    conditions:
      conditions.length > 0
        ? conditions
        : [
            {
              type: 'Programmed',
              status: 'Unknown',
              reason: 'Pending',
              message: 'no status yet: is the controller running?',
            },
          ],
  };
}

async function clusterApply(opts: WaypointOptions, ns: string): Promise<string> {
  const admin = await clusterAdmin(opts);
  const out: string[] = [];
  await kubeCall(async () => {
    if (opts.enrollNamespace && !(await admin.getNamespace(ns))) {
      throw new CliError(`namespace ${ns} does not exist: create it first (kubectl create namespace ${ns})`);
    }
    const want = waypointGateway(ns, opts.name, opts.for);
    const have = await admin.getGateway(ns, opts.name);
    if (!have) await admin.createGateway(ns, want);
    else {
      // Ours are the spec and the waypoint-for label; other labels, annotations and the status stay.
      const meta = obj(have.metadata);
      await admin.replaceGateway(ns, opts.name, {
        ...have,
        metadata: { ...meta, labels: { ...obj(meta.labels), ...labelsOf(want) } },
        spec: want.spec,
      });
    }
    out.push(`waypoint ${ns}/${opts.name} applied`);
    if (opts.enrollNamespace) {
      await admin.labelNamespace(ns, { [USE_WAYPOINT_LABEL]: opts.name });
      out.push(`namespace ${ns} labeled with "${USE_WAYPOINT_LABEL}: ${opts.name}"`);
    }
    if (opts.wait) {
      await waitFor(async () => {
        const g = await admin.getGateway(ns, opts.name);
        const c = g && clusterView(g).conditions.find((x) => x.type === 'Programmed');
        return c?.status === 'True' ? undefined : (c?.message ?? 'not programmed yet');
      });
      out.push(`waypoint ${ns}/${opts.name} is programmed`);
    }
  });
  return out.join('\n') + '\n';
}

async function clusterList(opts: WaypointOptions): Promise<string> {
  const admin = await clusterAdmin(opts);
  const gateways = (await kubeCall(() => admin.listGateways(opts.namespace))).filter(isWaypoint);
  const classNames = [...new Set(gateways.map((g) => str(obj(g.spec).gatewayClassName)))];
  const classes = new Map(
    await kubeCall(() =>
      Promise.all(classNames.map(async (c) => [c, await admin.getGatewayClass(c)] as const)),
    ),
  );
  return listText(
    gateways.map((g) => clusterView(g, classes.get(str(obj(g.spec).gatewayClassName)))),
    opts.output,
  );
}

async function clusterStatus(opts: WaypointOptions, ns: string): Promise<string> {
  const admin = await clusterAdmin(opts);
  return kubeCall(async () => {
    const g = await admin.getGateway(ns, opts.name);
    if (!g) throw notFound(ns, opts.name, 'the cluster');
    const nsLabels = labelsOf((await admin.getNamespace(ns)) ?? {});
    const enrolled =
      str(nsLabels[USE_WAYPOINT_LABEL]) === opts.name && !nsLabels[USE_WAYPOINT_NAMESPACE_LABEL];
    const cls = await admin.getGatewayClass(str(obj(g.spec).gatewayClassName));
    return statusText({ ...clusterView(g, cls), usedBy: enrolled ? [`namespace ${ns}`] : [] }, opts.output);
  });
}

async function clusterDelete(opts: WaypointOptions, ns: string): Promise<string> {
  const admin = await clusterAdmin(opts);
  return kubeCall(async () => {
    if (!(await admin.deleteGateway(ns, opts.name))) throw notFound(ns, opts.name, 'the cluster');
    const nsLabels = labelsOf((await admin.getNamespace(ns)) ?? {});
    return (
      `waypoint ${ns}/${opts.name} deleted\n` +
      (str(nsLabels[USE_WAYPOINT_LABEL]) === opts.name
        ? `note: namespace ${ns} still has ${USE_WAYPOINT_LABEL}=${opts.name}: kubectl label namespace ${ns} ${USE_WAYPOINT_LABEL}-\n`
        : '')
    );
  });
}

/** Runs Kubernetes calls; their errors (which name the call and say what to check) become CliErrors. */
async function kubeCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(describeError(err));
  }
}

async function waitFor(notYet: () => Promise<string | undefined>): Promise<void> {
  const deadline = Date.now() + WAIT_TIMEOUT_MS;
  for (;;) {
    const why = await notYet();
    if (why === undefined) return;
    if (Date.now() > deadline) throw new CliError(`gave up after ${WAIT_TIMEOUT_MS / 1000} s: ${why}`);
    await new Promise((r) => setTimeout(r, WAIT_POLL_MS));
  }
}

// ---- commands ----

function dnsLabel(what: string) {
  return (v: string): string => {
    if (!DNS_LABEL.test(v) || v.length > 63)
      throw new InvalidArgumentError(`"${v}" is not a valid ${what} (lower-case letters, digits and "-")`);
    return v;
  };
}

/** The subcommands of `ambit waypoint` (which itself runs a waypoint). */
export function registerWaypointCommands(waypoint: Command): void {
  const common = (cmd: Command, namespaceRequired: boolean) =>
    cmd
      .addOption(
        new Option(
          '-n, --namespace <ns>',
          namespaceRequired ? 'namespace of the waypoint' : 'only this namespace (default: all)',
        )
          .argParser(dnsLabel('namespace'))
          .default(namespaceRequired ? 'default' : undefined),
      )
      .addOption(
        new Option('--local-dir [dir]', `the local mesh's YAML directory instead of a cluster`).preset(
          DEFAULT_LOCAL_DIR,
        ),
      )
      .option('--kubeconfig <file>', 'kubeconfig of the cluster (default: $KUBECONFIG, ~/.kube/config)');
  const named = (cmd: Command) =>
    cmd.addOption(
      new Option('--name <name>', 'name of the Gateway').default('waypoint').argParser(dnsLabel('name')),
    );
  const output = (cmd: Command) =>
    cmd.addOption(
      new Option('-o, --output <format>', 'table, json or yaml')
        .default('table')
        .argParser(parseOutputFormat),
    );

  const run =
    (
      local: (o: WaypointOptions & { localDir: string }, ns: string) => Promise<string>,
      cluster: (o: WaypointOptions, ns: string) => Promise<string>,
    ) =>
    (opts: WaypointOptions) =>
      runCommand(() => {
        const ns = opts.namespace ?? 'default';
        return opts.localDir !== undefined
          ? local({ ...opts, localDir: opts.localDir }, ns)
          : cluster(opts, ns);
      });

  named(
    common(
      waypoint
        .command('apply')
        .description('write the waypoint Gateway of a namespace (and optionally enrol the namespace)'),
      true,
    ),
  )
    .addOption(
      new Option('--for <traffic>', 'traffic the waypoint takes (istio.io/waypoint-for)')
        .choices(WAYPOINT_FOR)
        .default('service'),
    )
    .option(
      '--enroll-namespace',
      `label the namespace ${USE_WAYPOINT_LABEL}=<name>: its services use the waypoint`,
    )
    .option('--wait', `wait until the waypoint is ready (at most ${WAIT_TIMEOUT_MS / 1000} s)`)
    .action(run(localApply, clusterApply));

  output(common(waypoint.command('list').description('list waypoint Gateways'), false)).action(
    run(localList, clusterList),
  );

  output(
    named(
      common(waypoint.command('status').description("a waypoint's conditions, address and readiness"), true),
    ),
  ).action(run(localStatus, clusterStatus));

  named(common(waypoint.command('delete').description('delete the waypoint Gateway'), true)).action(
    run(localDelete, clusterDelete),
  );
}
