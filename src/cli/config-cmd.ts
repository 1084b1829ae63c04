/**
 * `ambit config workloads|services|certificates|policies|connections`: what one node agent holds,
 * read from its admin port (`/config_dump`, `/connections`), as tables like `istioctl ztunnel-config`
 * prints them, or as JSON/YAML.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { describeError } from '../core/errors.ts';
import { parseHostPort, type HostPort } from '../core/config/env.ts';
import {
  CliError,
  formatAge,
  formatData,
  formatTable,
  parseOutputFormat,
  runCommand,
  type OutputFormat,
} from './output.ts';

const DEFAULT_ADMIN = '127.0.0.1:15000';
const FETCH_TIMEOUT_MS = 5000;

/** The parts of `/config_dump` the tables read (src/ztunnel/app.ts `configDump`). */
interface ConfigDump {
  readonly workloads?: readonly DumpWorkload[];
  readonly services?: readonly DumpService[];
  readonly policies?: readonly DumpPolicy[];
  readonly certificates?: readonly DumpCertificate[];
}

interface DumpWaypoint {
  readonly destination?: { kind?: string; address?: string; namespace?: string; hostname?: string };
}

interface DumpWorkload {
  readonly name: string;
  readonly namespace: string;
  readonly addresses?: readonly string[];
  readonly node?: string;
  readonly tunnelProtocol?: string;
  readonly waypoint?: DumpWaypoint;
  readonly healthy?: boolean;
  /** `namespace/hostname` → {servicePort: targetPort} */
  readonly services?: Readonly<Record<string, unknown>>;
}

interface DumpService {
  readonly name: string;
  readonly namespace: string;
  readonly hostname: string;
  readonly vips?: readonly { network?: string; address: string }[];
  readonly ports?: Readonly<Record<string, number>>;
  readonly waypoint?: DumpWaypoint;
}

interface DumpPolicy {
  readonly name: string;
  readonly namespace: string;
  readonly scope: string;
  readonly action: string;
  readonly rules?: readonly unknown[];
  readonly dryRun?: boolean;
}

interface DumpCertificate {
  readonly identity: string;
  readonly state: string;
  readonly certChain?: readonly { expirationTime?: string }[];
}

/** One entry of `/connections`. */
interface DumpConnection {
  readonly direction: string;
  readonly src?: string;
  readonly dst?: string;
  readonly srcIdentity?: string;
  readonly dstIdentity?: string;
  readonly bytesSent?: number;
  readonly bytesReceived?: number;
  readonly ageMs?: number;
}

interface TableDef<T> {
  readonly description: string;
  readonly path: '/config_dump' | '/connections';
  /** The items of the table from the endpoint's JSON. */
  readonly items: (body: unknown) => readonly T[];
  readonly namespaceOf?: (item: T) => string;
  readonly headers: readonly string[];
  readonly row: (item: T, all: { workloads: readonly DumpWorkload[] }) => string[];
}

const NONE = 'None';

function waypointName(w: DumpWaypoint | undefined): string {
  const d = w?.destination;
  if (!d) return NONE;
  return d.kind === 'hostname' ? (d.hostname ?? '?') : (d.address ?? '?');
}

/** `spiffe://cluster.local/ns/default/sa/x` without its scheme, to keep the column narrow. */
function shortIdentity(id: string | undefined): string {
  return id ? id.replace(/^spiffe:\/\//, '') : '-';
}

const dump = (body: unknown) => (body ?? {}) as ConfigDump;

const TABLES = {
  workloads: {
    description: 'workloads the agent knows: address, node, tunnel protocol and waypoint',
    path: '/config_dump',
    items: (b) => dump(b).workloads ?? [],
    namespaceOf: (w) => w.namespace,
    headers: ['NAMESPACE', 'NAME', 'IP', 'NODE', 'PROTOCOL', 'WAYPOINT'],
    // istioctl calls a workload without HBONE "TCP".
    row: (w) => [
      w.namespace,
      w.name,
      w.addresses?.join(',') || NONE,
      w.node || NONE,
      w.tunnelProtocol === 'HBONE' ? 'HBONE' : 'TCP',
      waypointName(w.waypoint),
    ],
  } satisfies TableDef<DumpWorkload>,
  services: {
    description: 'services: VIPs, ports (service→target), healthy/all endpoints and waypoint',
    path: '/config_dump',
    items: (b) => dump(b).services ?? [],
    namespaceOf: (s) => s.namespace,
    headers: ['NAMESPACE', 'NAME', 'VIP', 'PORTS', 'ENDPOINTS', 'WAYPOINT'],
    row: (s, { workloads }) => {
      const key = `${s.namespace}/${s.hostname}`;
      const endpoints = workloads.filter((w) => w.services && Object.hasOwn(w.services, key));
      return [
        s.namespace,
        s.hostname,
        s.vips?.map((v) => (v.network ? `${v.network}/${v.address}` : v.address)).join(',') || NONE,
        Object.entries(s.ports ?? {})
          .map(([port, target]) => (Number(port) === target ? port : `${port}->${target}`))
          .join(',') || NONE,
        `${endpoints.filter((w) => w.healthy !== false).length}/${endpoints.length}`,
        waypointName(s.waypoint),
      ];
    },
  } satisfies TableDef<DumpService>,
  certificates: {
    description: "the workload certificates the agent holds, with each one's state and expiry",
    path: '/config_dump',
    items: (b) => dump(b).certificates ?? [],
    headers: ['IDENTITY', 'STATE', 'NOT-AFTER'],
    row: (c) => [c.identity, c.state, c.certChain?.[0]?.expirationTime ?? '-'],
  } satisfies TableDef<DumpCertificate>,
  policies: {
    description: 'L4 authorization policies (converted AuthorizationPolicies and PeerAuthentications)',
    path: '/config_dump',
    items: (b) => dump(b).policies ?? [],
    namespaceOf: (p) => p.namespace,
    headers: ['NAMESPACE', 'NAME', 'ACTION', 'SCOPE', 'RULES'],
    row: (p) => [
      p.namespace,
      p.name,
      p.dryRun ? `${p.action} (dry-run)` : p.action,
      p.scope,
      String(p.rules?.length ?? 0),
    ],
  } satisfies TableDef<DumpPolicy>,
  connections: {
    description: 'connections open now through the agent, with their identities and bytes so far',
    path: '/connections',
    items: (b) => (Array.isArray(b) ? (b as DumpConnection[]) : []),
    headers: ['DIRECTION', 'SRC', 'DST', 'IDENTITIES', 'BYTES SENT/RECEIVED', 'AGE'],
    row: (c) => [
      c.direction,
      c.src ?? '-',
      c.dst ?? '-',
      c.srcIdentity || c.dstIdentity
        ? `${shortIdentity(c.srcIdentity)} -> ${shortIdentity(c.dstIdentity)}`
        : '-',
      c.bytesSent === undefined ? '-' : `${c.bytesSent}/${c.bytesReceived ?? 0}`,
      c.ageMs === undefined ? '-' : formatAge(c.ageMs),
    ],
  } satisfies TableDef<DumpConnection>,
} as const;

export type ConfigTable = keyof typeof TABLES;

async function fetchAdmin(admin: HostPort, path: string): Promise<unknown> {
  const where = admin.host.includes(':') ? `[${admin.host}]:${admin.port}` : `${admin.host}:${admin.port}`;
  let res: Response;
  try {
    res = await fetch(`http://${where}${path}`, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
  } catch (err) {
    const code = (err as { cause?: { code?: unknown } }).cause?.code;
    const why =
      code === 'ECONNREFUSED'
        ? 'connection refused'
        : (err as Error).name === 'TimeoutError'
          ? `no answer within ${FETCH_TIMEOUT_MS / 1000} s`
          : describeError((err as { cause?: unknown }).cause ?? err);
    throw new CliError(
      `cannot reach the agent's admin port ${where}: ${why} — is \`ambit ztunnel\` running? ` +
        `use --admin <host:port> (the local mesh's agents: <prefix>.0.1:15000 and <prefix>.0.2:15000, e.g. 127.10.0.1:15000)`,
    );
  }
  const text = await res.text();
  if (res.status === 404) {
    throw new CliError(
      `the admin port ${where} does not serve ${path}: is it a node agent's (\`ambit ztunnel\`) admin port?`,
    );
  }
  if (res.status !== 200) throw new CliError(`${where}${path} answered ${res.status}: ${text.trim()}`);
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new CliError(`${where}${path} did not answer JSON: is it an ambit agent's admin port?`);
  }
}

interface ConfigOptions {
  readonly admin: HostPort;
  readonly output: OutputFormat;
  readonly namespace?: string;
}

async function showTable<T>(def: TableDef<T>, opts: ConfigOptions): Promise<string> {
  const body = await fetchAdmin(opts.admin, def.path);
  const ns = opts.namespace;
  const items = def.items(body).filter((i) => ns === undefined || def.namespaceOf?.(i) === ns);
  if (opts.output !== 'table') return formatData(opts.output, items);
  const workloads = def.path === '/config_dump' ? (dump(body).workloads ?? []) : [];
  return formatTable(
    def.headers,
    items.map((i) => def.row(i, { workloads })),
  );
}

function parseAdmin(value: string): HostPort {
  const r = parseHostPort(value);
  if (!r.ok) throw new InvalidArgumentError(`${r.error}; e.g. 127.0.0.1:15000`);
  return r.value;
}

/** `ambit config <table>` for every table. */
export function registerConfigCommands(program: Command): void {
  const config = program
    .command('config')
    .description("show a node agent's state from its admin port (workloads, services, certificates, ...)");
  for (const [name, def] of Object.entries(TABLES) as [ConfigTable, TableDef<unknown>][]) {
    const cmd = config
      .command(name)
      .description(def.description)
      .addOption(
        new Option('--admin <host:port>', "the agent's admin address")
          .default(parseAdmin(DEFAULT_ADMIN), DEFAULT_ADMIN)
          .argParser(parseAdmin),
      )
      .addOption(
        new Option('-o, --output <format>', 'table, json or yaml')
          .default('table')
          .argParser(parseOutputFormat),
      );
    if (def.namespaceOf) cmd.option('-n, --namespace <ns>', 'only this namespace');
    cmd.action((opts: ConfigOptions) => runCommand(() => showTable(def, opts)));
  }
}
