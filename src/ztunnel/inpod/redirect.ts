/**
 * Installs, checks and removes a pod's redirection rules (rules.ts) inside its network namespace, with
 * the real tools: `iptables-save`/`iptables-restore --noflush` (and the ip6tables pair) and `ip rule`/
 * `ip route` for the TPROXY policy route, each run in the pod's netns through `nsenter --net=<path>`.
 * Each `iptables-restore` applies one family's tables atomically, but a pod's redirection takes
 * several commands (per family: the tables, then the policy rule and route), so a failure part-way
 * can leave some in place: whoever tried to install them must call `removeRedirection`, which reads
 * what is there and removes it, whatever state the pod was left in.
 */
import { spawn } from 'node:child_process';
import { AmbitError, ErrorCode } from '../../core/errors.ts';
import {
  installScript,
  MARK_MASK,
  parseSaved,
  removeScript,
  rulesMatch,
  TPROXY_MARK,
  TPROXY_ROUTE_TABLE,
  TPROXY_RULE_PRIORITY,
  unhookScript,
  type RuleOptions,
} from './rules.ts';

/** A single command may take this long (iptables waits for the xtables lock). */
const COMMAND_TIMEOUT_MS = 10_000;

export interface RedirectOptions {
  /** The address families the pod has addresses in. */
  readonly families: readonly (4 | 6)[];
  /** Probe sources exempt from capture (the kubelet's, after the node's SNAT). */
  readonly probeSources: readonly string[];
}

/** What `ensureRedirection` found and did. */
export interface RedirectResult {
  /** The rules were already exactly right: the pod was adopted as it was. */
  readonly adopted: boolean;
}

const TOOLS = {
  4: { save: 'iptables-save', restore: 'iptables-restore', ip: ['-4'], any: '0.0.0.0/0' },
  6: { save: 'ip6tables-save', restore: 'ip6tables-restore', ip: ['-6'], any: '::/0' },
} as const;

/**
 * Makes the pod's rules and policy route exactly what `opts` asks for. Idempotent: a pod whose rules
 * are already in place (a restarted agent taking its pods up again) is left untouched.
 */
export async function ensureRedirection(netnsPath: string, opts: RedirectOptions): Promise<RedirectResult> {
  let adopted = true;
  for (const family of opts.families) {
    const t = TOOLS[family];
    const ruleOpts: RuleOptions = { family, probeSources: opts.probeSources };
    const installed = parseSaved(await run(netnsPath, t.save, []));
    if (!rulesMatch(installed, ruleOpts)) {
      adopted = false;
      await run(netnsPath, t.restore, ['--noflush'], installScript(installed, ruleOpts));
    }
    if (!(await hasPolicyRoute(netnsPath, family))) {
      adopted = false;
      await run(netnsPath, 'ip', [
        ...t.ip,
        'rule',
        'add',
        'fwmark',
        `0x${TPROXY_MARK.toString(16)}/0x${MARK_MASK.toString(16)}`,
        'pref',
        String(TPROXY_RULE_PRIORITY),
        'lookup',
        String(TPROXY_ROUTE_TABLE),
      ]);
    }
    // `replace` is idempotent by itself.
    await run(netnsPath, 'ip', [
      ...t.ip,
      'route',
      'replace',
      'local',
      t.any,
      'dev',
      'lo',
      'table',
      String(TPROXY_ROUTE_TABLE),
    ]);
  }
  return { adopted };
}

/**
 * Whether any trace of our redirection is in the namespace (our chains or hooks, in either family):
 * how the agent recognises a pod it once captured.
 */
export async function hasRedirection(netnsPath: string): Promise<boolean> {
  for (const family of [4, 6] as const) {
    const saved = parseSaved(await run(netnsPath, TOOLS[family].save, []));
    if (removeScript(saved) !== '') return true;
  }
  return false;
}

/** The addresses of the namespace's interfaces other than loopback (`ip -o addr`). */
export async function interfaceAddresses(netnsPath: string): Promise<string[]> {
  return parseIpAddr(await run(netnsPath, 'ip', ['-o', 'addr', 'show']));
}

/** `ip -o addr show` output → the addresses on interfaces other than `lo`. */
export function parseIpAddr(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    // "2: eth0    inet 10.201.1.2/32 scope global eth0\       valid_lft forever …"
    const m = /^\d+:\s+(\S+?)(?:@\S+)?\s+inet6?\s+([0-9a-fA-F.:]+)\/\d+/.exec(line);
    if (m && m[1] !== 'lo') out.push(m[2]!);
  }
  return out;
}

/**
 * Stops capturing the pod's new connections, leaving the rest of the rules (and with them the
 * translation of connections already captured, rules.ts `unhookScript`) for `removeRedirection`.
 */
export async function unhookRedirection(netnsPath: string): Promise<void> {
  for (const family of [4, 6] as const) {
    const t = TOOLS[family];
    const script = unhookScript(parseSaved(await run(netnsPath, t.save, [])));
    if (script) await run(netnsPath, t.restore, ['--noflush'], script);
  }
}

/** Removes every trace of our rules and the policy route; a pod left as if never enrolled. */
export async function removeRedirection(netnsPath: string): Promise<void> {
  for (const family of [4, 6] as const) {
    const t = TOOLS[family];
    const script = removeScript(parseSaved(await run(netnsPath, t.save, [])));
    if (script) await run(netnsPath, t.restore, ['--noflush'], script);
    while (await hasPolicyRoute(netnsPath, family)) {
      await run(netnsPath, 'ip', [...t.ip, 'rule', 'del', 'pref', String(TPROXY_RULE_PRIORITY)]);
    }
    // A family the pod never had rules in has no table to flush: that is already the goal.
    await run(netnsPath, 'ip', [...t.ip, 'route', 'flush', 'table', String(TPROXY_ROUTE_TABLE)]).catch(
      (err: unknown) => {
        if (!(err instanceof Error && err.message.includes('FIB table does not exist'))) throw err;
      },
    );
  }
}

async function hasPolicyRoute(netnsPath: string, family: 4 | 6): Promise<boolean> {
  const out = await run(netnsPath, 'ip', [
    ...TOOLS[family].ip,
    'rule',
    'show',
    'pref',
    String(TPROXY_RULE_PRIORITY),
  ]);
  return out.includes(`lookup ${TPROXY_ROUTE_TABLE}`);
}

/** Runs `cmd` inside the netns at `netnsPath`; resolves with stdout, rejects with the command and stderr. */
function run(netnsPath: string, cmd: string, args: readonly string[], input?: string): Promise<string> {
  const line = `nsenter --net=${netnsPath} ${cmd} ${args.join(' ')}`.trim();
  return new Promise((resolve, reject) => {
    const child = spawn('nsenter', [`--net=${netnsPath}`, cmd, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: COMMAND_TIMEOUT_MS,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) =>
      reject(
        new AmbitError(ErrorCode.CaptureFailed, `${line}: ${e.message}`, {
          cause: e,
          hint: 'the agent needs nsenter (util-linux), iptables and iproute2 installed',
        }),
      ),
    );
    child.on('close', (code, signal) => {
      if (code === 0) return resolve(Buffer.concat(out).toString());
      const stderr = Buffer.concat(err).toString().trim();
      reject(
        new AmbitError(
          ErrorCode.CaptureFailed,
          `${line} failed (${signal ? `signal ${signal}` : `exit ${code}`}): ${stderr || 'no output'}`,
          { hint: 'the agent needs CAP_NET_ADMIN and CAP_SYS_ADMIN, and the pod netns must still exist' },
        ),
      );
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });
}
