/**
 * The redirection rules inside a pod's network namespace (DESIGN.md §5; reference/ztunnel.md §1.4),
 * as `iptables-restore` input, and the reading of `iptables-save` output to tell whether a pod already
 * carries them. Pure: the edge that runs the commands is `redirect.ts`.
 *
 * What the rules do, per address family:
 * - nat OUTPUT: TCP the pod sends is REDIRECTed to the agent's outbound listener (15001), except
 *   loopback traffic, traffic to the probe address, and the agent's own sockets (mark 0x539).
 * - mangle PREROUTING: TCP arriving from outside the pod is TPROXYed to the agent's plaintext inbound
 *   listener (15006), except HBONE (15008, the agent's own listener takes it), loopback, the probe
 *   address and packets of the agent's own connections. TPROXY marks the packet 0x111 so the policy
 *   route (`fwmark 0x111 lookup 133` → `local default dev lo`) delivers it to the local socket.
 */
import { ipFamily } from '../../core/ip.ts';

/** Marks the agent's own sockets so the pod's rules let them pass (Istio's PACKET_MARK). */
export const AGENT_MARK = 0x539;
/** Set by TPROXY on captured inbound packets; the policy route below sends them to the local socket. */
export const TPROXY_MARK = 0x111;
/** Only these bits of the mark are ours; other CNIs may use the rest. */
export const MARK_MASK = 0xfff;
/** The routing table the TPROXY policy rule looks up. */
export const TPROXY_ROUTE_TABLE = 133;
/** Priority of that `ip rule` (below the main table's 32766). */
export const TPROXY_RULE_PRIORITY = 32764;
/** The kubelet's probe source after Istio's node-side SNAT; always exempt (reference/ztunnel.md §1.4). */
export const ISTIO_PROBE_ADDRESS = '169.254.7.127';

export const CAPTURE_PORTS = { outbound: 15001, inboundPlaintext: 15006, inboundHbone: 15008 } as const;

/** Our chains; every table gets the two, hooked from the built-in chain of the same role. */
export const CHAINS = { prerouting: 'AMBIT_PRERT', output: 'AMBIT_OUTPUT' } as const;

export interface RuleOptions {
  readonly family: 4 | 6;
  /** Sources (CIDRs or addresses) whose connections into the pod are not captured: health probes. */
  readonly probeSources: readonly string[];
}

const LOOPBACK = { 4: '127.0.0.1/32', 6: '::1/128' } as const;

const hex = (n: number) => `0x${n.toString(16)}`;

/** The hook rules in the built-in chains, as `iptables-save` prints them. */
export function hookRules(): Record<'mangle' | 'nat', readonly string[]> {
  const hooks = [`-A PREROUTING -j ${CHAINS.prerouting}`, `-A OUTPUT -j ${CHAINS.output}`];
  return { mangle: hooks, nat: hooks };
}

/** The rules inside our chains, per table, for one address family, in `iptables-save` form. */
export function chainRules(opts: RuleOptions): Record<'mangle' | 'nat', readonly string[]> {
  const agent = `${hex(AGENT_MARK)}/${hex(MARK_MASK)}`;
  const tproxy = `${hex(TPROXY_MARK)}/${hex(MARK_MASK)}`;
  const loopback = LOOPBACK[opts.family];
  const probes = [
    ...(opts.family === 4 ? [ISTIO_PROBE_ADDRESS + '/32'] : []),
    ...opts.probeSources.filter((s) => ipFamily(s.split('/')[0] ?? '') === opts.family).map(withPrefix),
  ];
  const P = CHAINS.prerouting;
  const O = CHAINS.output;
  const mangle = [
    // Health probes reach the application directly.
    ...probes.map((s) => `-A ${P} -s ${s} -p tcp -j ACCEPT`),
    // Packets to the pod itself over loopback (the agent connecting to the app, the app to itself).
    `-A ${P} ! -d ${loopback} -i lo -p tcp -j ACCEPT`,
    // HBONE goes to the agent's 15008 listener as it is.
    `-A ${P} -p tcp -m tcp --dport ${CAPTURE_PORTS.inboundHbone} -j ACCEPT`,
    // Packets of connections already set up (replies to the agent's own connections among them).
    `-A ${P} -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
    // Everything else inbound: to the plaintext listener, unless it is the agent's own or bound for
    // loopback (where nat OUTPUT sent the pod's outbound connections, to 15001).
    `-A ${P} ! -d ${loopback} -p tcp -m mark ! --mark ${agent} -j TPROXY --on-port ${CAPTURE_PORTS.inboundPlaintext} --tproxy-mark ${tproxy}`,
  ];
  const nat = [
    ...probes.map((s) => `-A ${O} -d ${s} -p tcp -j ACCEPT`),
    `-A ${O} ! -d ${loopback} -o lo -j ACCEPT`,
    `-A ${O} ! -d ${loopback} -p tcp -m mark ! --mark ${agent} -j REDIRECT --to-ports ${CAPTURE_PORTS.outbound}`,
  ];
  return { mangle, nat };
}

function withPrefix(s: string): string {
  if (s.includes('/')) return s;
  return ipFamily(s) === 6 ? `${s}/128` : `${s}/32`;
}

/** What `iptables-save` shows of our rules in one netns and family. */
export interface InstalledRules {
  /** Our chains exist in each table. */
  readonly chains: Record<'mangle' | 'nat', boolean>;
  /** Hook rules present in each table. */
  readonly hooks: Record<'mangle' | 'nat', readonly string[]>;
  /** Rules inside our chains in each table. */
  readonly rules: Record<'mangle' | 'nat', readonly string[]>;
}

/** Reads our chains, hooks and rules out of `iptables-save` output (all tables: it prints only the last of several `-t`). */
export function parseSaved(text: string): InstalledRules {
  const ours = new Set<string>(Object.values(CHAINS));
  const out = {
    chains: { mangle: false, nat: false },
    hooks: { mangle: [] as string[], nat: [] as string[] },
    rules: { mangle: [] as string[], nat: [] as string[] },
  };
  let table: 'mangle' | 'nat' | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) {
      const t = line.slice(1);
      table = t === 'mangle' || t === 'nat' ? t : undefined;
      continue;
    }
    if (!table) continue;
    if (line.startsWith(':')) {
      if (ours.has(line.slice(1).split(' ')[0] ?? '')) out.chains[table] = true;
      continue;
    }
    if (!line.startsWith('-A ')) continue;
    const chain = line.split(' ')[1] ?? '';
    if (ours.has(chain)) out.rules[table].push(line);
    else if (/ -j AMBIT_(PRERT|OUTPUT)$/.test(line)) out.hooks[table].push(line);
  }
  return out;
}

/** Whether the installed rules are exactly the ones `opts` asks for (a pod we can adopt as it is). */
export function rulesMatch(installed: InstalledRules, opts: RuleOptions): boolean {
  const want = chainRules(opts);
  const hooks = hookRules();
  return (['mangle', 'nat'] as const).every(
    (t) =>
      installed.chains[t] &&
      sameList(installed.hooks[t], hooks[t]) &&
      sameList(installed.rules[t].map(normalise), want[t].map(normalise)),
  );
}

/**
 * `iptables-restore --noflush` input that makes the pod's rules exactly `opts`: declaring our chains
 * flushes them, and the hooks are added only where missing (adding twice would capture twice) and a
 * duplicate left by an earlier crash is removed.
 */
export function installScript(installed: InstalledRules, opts: RuleOptions): string {
  const rules = chainRules(opts);
  const hooks = hookRules();
  const lines: string[] = [];
  for (const t of ['mangle', 'nat'] as const) {
    lines.push(`*${t}`);
    for (const c of Object.values(CHAINS)) lines.push(`:${c} - [0:0]`);
    for (const h of hooks[t]) {
      const count = installed.hooks[t].filter((x) => x === h).length;
      if (count === 0) lines.push(h);
      for (let i = 1; i < count; i++) lines.push(h.replace(/^-A /, '-D '));
    }
    lines.push(...rules[t], 'COMMIT');
  }
  return lines.join('\n') + '\n';
}

/** `iptables-restore --noflush` input that removes every trace of our rules; '' when none are there. */
export function removeScript(installed: InstalledRules): string {
  const lines: string[] = [];
  for (const t of ['mangle', 'nat'] as const) {
    if (!installed.chains[t] && installed.hooks[t].length === 0) continue;
    lines.push(`*${t}`);
    for (const h of installed.hooks[t]) lines.push(h.replace(/^-A /, '-D '));
    if (installed.chains[t]) {
      // Declaring a chain flushes it; then it can be deleted.
      for (const c of Object.values(CHAINS)) lines.push(`:${c} - [0:0]`);
      for (const c of Object.values(CHAINS)) lines.push(`-X ${c}`);
    }
    lines.push('COMMIT');
  }
  return lines.length ? lines.join('\n') + '\n' : '';
}

/**
 * `iptables-restore --noflush` input that unhooks our chains (the jumps from the built-in chains)
 * but leaves the chains and their rules; '' when no hook is there. From then on the pod's new
 * connections are not captured, while connections the nat REDIRECT already set up keep their
 * translation: the kernel drops the translation of every such connection (with the iptables-nft
 * backend) as soon as the REDIRECT rule itself goes, so a FIN the agent then sends on one of them
 * would never reach the application. Unhook, close the captured connections, then remove the rest.
 */
export function unhookScript(installed: InstalledRules): string {
  const lines: string[] = [];
  for (const t of ['mangle', 'nat'] as const) {
    if (installed.hooks[t].length === 0) continue;
    lines.push(`*${t}`, ...installed.hooks[t].map((h) => h.replace(/^-A /, '-D ')), 'COMMIT');
  }
  return lines.length ? lines.join('\n') + '\n' : '';
}

/**
 * iptables-save prints matches in its own canonical way (`-m tcp` added, masks shortened); compare
 * on the parts that carry meaning.
 */
function normalise(rule: string): string {
  return (
    rule
      .replace(/ -m tcp/g, '')
      .replace(/ -m mark/g, '')
      .replace(/\/0xffffffff/g, '')
      // The default listening address TPROXY fills in.
      .replace(/ --on-ip (0\.0\.0\.0|::)(?= )/, '')
      .replace(/\s+/g, ' ')
      .trim()
  );
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
