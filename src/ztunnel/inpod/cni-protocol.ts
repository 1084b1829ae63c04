/**
 * What the `ambit-cni` plugin (cni/ambit-cni.cc) and the node agent say to each other over the agent's
 * unix socket, and the CNI semantics around it (CNI spec 1.1: a chained plugin gets the previous
 * plugin's result in `prevResult` and must print it back on ADD). Pure.
 *
 * The plugin is a dumb relay so that all decisions live here, in one language, under test:
 *
 *     request  = "AMBIT-CNI 1\n" *("NAME=value\n") "\n" <the plugin's stdin, to EOF>
 *     response = <exit code> "\n" <what the plugin prints on stdout, to EOF>
 *
 * The names are the CNI_* variables the runtime set. Values never hold a newline (CNI forbids it in
 * the ones we read).
 */

export const CNI_MAGIC = 'AMBIT-CNI 1';
/** The CNI versions the plugin accepts (it only relays; none of them changes what it prints). */
export const CNI_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
/** A request larger than this is refused: a net conf with a prevResult is a few KiB. */
export const MAX_REQUEST_BYTES = 1 << 20;

/** CNI error codes the agent answers with (CNI spec "Error"). 100+ are plugin-specific. */
export const CniErrorCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  InvalidEnvironment: 4,
  DecodingFailure: 6,
  TryAgainLater: 11,
  CaptureFailed: 100,
} as const;

export interface CniRequest {
  readonly command: 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'GC' | 'STATUS';
  readonly containerId: string;
  readonly netns: string;
  readonly ifName: string;
  /** CNI_ARGS as key/value pairs (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`, `K8S_POD_UID`, …). */
  readonly args: ReadonlyMap<string, string>;
  /** The network configuration the runtime passed on stdin, parsed. */
  readonly conf: Readonly<Record<string, unknown>>;
}

/** The pod a CNI ADD or DEL is about, as the agent registers it. */
export interface CniPod {
  readonly containerId: string;
  readonly namespace: string;
  readonly name: string;
  /** `K8S_POD_UID` when the runtime passes it (containerd and CRI-O do). */
  readonly uid: string;
  /** The pod's network namespace, e.g. `/var/run/netns/cni-…` (containerd) or `/proc/<pid>/ns/net`. */
  readonly netns: string;
  /** The pod's IPs from the previous plugin's result, without prefix lengths. */
  readonly ips: readonly string[];
}

export interface CniResponse {
  readonly exitCode: number;
  readonly stdout: string;
}

export type Parsed<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

const COMMANDS = new Set(['ADD', 'DEL', 'CHECK', 'VERSION', 'GC', 'STATUS']);

/** Decodes one request as the plugin sent it. */
export function parseCniRequest(raw: Buffer): Parsed<CniRequest> {
  const text = raw.toString('utf8');
  const headerEnd = text.indexOf('\n\n');
  if (headerEnd < 0) return { ok: false, error: 'request has no blank line after its header' };
  const [magic, ...lines] = text.slice(0, headerEnd).split('\n');
  if (magic !== CNI_MAGIC) return { ok: false, error: `request starts with "${magic}", not "${CNI_MAGIC}"` };
  const env = new Map<string, string>();
  for (const line of lines) {
    const eq = line.indexOf('=');
    if (eq <= 0) return { ok: false, error: `header line "${line}" is not NAME=value` };
    env.set(line.slice(0, eq), line.slice(eq + 1));
  }
  const command = env.get('CNI_COMMAND') ?? '';
  if (!COMMANDS.has(command)) return { ok: false, error: `CNI_COMMAND "${command}" is not a CNI command` };
  const stdin = text.slice(headerEnd + 2);
  let conf: unknown = {};
  if (stdin.trim()) {
    try {
      conf = JSON.parse(stdin);
    } catch (err) {
      return { ok: false, error: `network configuration is not JSON: ${(err as Error).message}` };
    }
  }
  if (typeof conf !== 'object' || conf === null || Array.isArray(conf))
    return { ok: false, error: 'network configuration is not a JSON object' };
  return {
    ok: true,
    value: {
      command: command as CniRequest['command'],
      containerId: env.get('CNI_CONTAINERID') ?? '',
      netns: env.get('CNI_NETNS') ?? '',
      ifName: env.get('CNI_IFNAME') ?? '',
      args: parseCniArgs(env.get('CNI_ARGS') ?? ''),
      conf: conf as Record<string, unknown>,
    },
  };
}

/** `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=x` → map. */
export function parseCniArgs(raw: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of raw.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) out.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  return out;
}

/** The pod an ADD or DEL names; an ADD must say which pod and netns, and carry its IPs. */
export function cniPod(req: CniRequest): Parsed<CniPod> {
  const namespace = req.args.get('K8S_POD_NAMESPACE') ?? '';
  const name = req.args.get('K8S_POD_NAME') ?? '';
  if (!req.containerId) return { ok: false, error: 'CNI_CONTAINERID is not set' };
  if (req.command === 'DEL') {
    return {
      ok: true,
      value: { containerId: req.containerId, namespace, name, uid: '', netns: req.netns, ips: [] },
    };
  }
  if (!namespace || !name)
    return {
      ok: false,
      error: 'CNI_ARGS has no K8S_POD_NAMESPACE/K8S_POD_NAME (is the runtime Kubernetes?)',
    };
  if (!req.netns) return { ok: false, error: 'CNI_NETNS is not set' };
  const ips = prevResultIps(req.conf.prevResult);
  if (!ips.ok) return ips;
  return {
    ok: true,
    value: {
      containerId: req.containerId,
      namespace,
      name,
      uid: req.args.get('K8S_POD_UID') ?? '',
      netns: req.netns,
      ips: ips.value,
    },
  };
}

/** `prevResult.ips[].address` ("10.0.0.5/24") without the prefix length. */
function prevResultIps(prev: unknown): Parsed<string[]> {
  if (typeof prev !== 'object' || prev === null)
    return {
      ok: false,
      error: 'prevResult is missing: ambit-cni must be chained after the pod network plugin',
    };
  const ips = (prev as { ips?: unknown }).ips;
  if (!Array.isArray(ips) || ips.length === 0) return { ok: false, error: 'prevResult.ips is empty' };
  const out: string[] = [];
  for (const [i, entry] of ips.entries()) {
    const address = (entry as { address?: unknown } | null)?.address;
    if (typeof address !== 'string' || !address.includes('/'))
      return { ok: false, error: `prevResult.ips[${i}].address is not an address/prefix` };
    out.push(address.slice(0, address.indexOf('/')));
  }
  return { ok: true, value: out };
}

/** A chained plugin's success on ADD: the previous result, in the configuration's version. */
export function addResult(req: CniRequest): CniResponse {
  const prev = req.conf.prevResult;
  const version = typeof req.conf.cniVersion === 'string' ? req.conf.cniVersion : '1.0.0';
  const result =
    typeof prev === 'object' && prev !== null ? { ...prev, cniVersion: version } : { cniVersion: version };
  return { exitCode: 0, stdout: JSON.stringify(result) };
}

/** Success with nothing to print (DEL, CHECK, GC, STATUS). */
export const EMPTY_SUCCESS: CniResponse = { exitCode: 0, stdout: '' };

/** The answer to VERSION. */
export function versionResult(req: CniRequest | undefined): CniResponse {
  const version = typeof req?.conf.cniVersion === 'string' ? req.conf.cniVersion : '1.1.0';
  return { exitCode: 0, stdout: JSON.stringify({ cniVersion: version, supportedVersions: CNI_VERSIONS }) };
}

/** A CNI error result (spec "Error": code, msg, details), printed with a non-zero exit. */
export function cniError(code: number, msg: string, details = ''): CniResponse {
  return {
    exitCode: 1,
    stdout: JSON.stringify({ cniVersion: '1.0.0', code, msg, ...(details ? { details } : {}) }),
  };
}

export function formatCniResponse(r: CniResponse): Buffer {
  return Buffer.from(`${r.exitCode}\n${r.stdout}`);
}

/** Encodes a request as the plugin does (the test harness plays the plugin's part with it). */
export function formatCniRequest(env: Readonly<Record<string, string>>, stdin: string): Buffer {
  const header = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  return Buffer.from([CNI_MAGIC, ...header, '', stdin].join('\n'));
}

export function parseCniResponse(raw: Buffer): Parsed<CniResponse> {
  const text = raw.toString('utf8');
  const nl = text.indexOf('\n');
  const code = Number(nl < 0 ? text : text.slice(0, nl));
  if (!Number.isInteger(code))
    return { ok: false, error: `response "${text.slice(0, 40)}" has no exit code` };
  return { ok: true, value: { exitCode: code, stdout: nl < 0 ? '' : text.slice(nl + 1) } };
}
