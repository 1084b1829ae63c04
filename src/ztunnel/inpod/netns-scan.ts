/**
 * Finding pods' network namespaces without the CNI: pods that started while the agent was down (the
 * plugin let them through) or before Ambit was installed. Candidates are the named namespaces in
 * /var/run/netns (where containerd and `ip netns` keep them) and every process's /proc/<pid>/ns/net,
 * de-duplicated by inode, less the agent's own and the host's. A candidate holds a pod's IP if a
 * socket made inside it can bind that IP and an interface other than loopback carries it.
 * The agent pins each namespace it looks into (and keeps pinned the ones it adopts) by holding it
 * open, so the path it tests, and later uses, cannot come to name another namespace meanwhile.
 */
import { closeSync, openSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { ipFamily } from '../../core/ip.ts';
import { netnsId, openTcpSocket, type NetnsId } from '../../core/netns/index.ts';
import { sameIp } from './pod-match.ts';

/** A network namespace held open by the agent. */
export interface PinnedNetns {
  /** A path to it that stays valid while it is pinned (also for child processes such as nsenter). */
  readonly path: string;
  readonly id: NetnsId;
  /** Releases it; the namespace goes once nothing else holds it. */
  release(): void;
}

export const NAMED_NETNS_DIR = '/var/run/netns';
/** Namespaces looked at between turns of the event loop while listing. */
const LIST_BATCH = 64;

/** Opens and pins the namespace at `path`. Throws (ENOENT …) if it is not there. */
export function pinNetns(path: string): PinnedNetns {
  const fd = openSync(path, 'r');
  try {
    const pinned = `/proc/${process.pid}/fd/${fd}`;
    const id = netnsId(pinned);
    let released = false;
    return {
      path: pinned,
      id,
      release: () => {
        if (released) return;
        released = true;
        closeSync(fd);
      },
    };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

export function netnsKey(id: NetnsId): string {
  return `${id.dev}:${id.ino}`;
}

/** The key of the namespace at `path` now, or undefined if there is none (gone, not a namespace). */
export function netnsKeyAt(path: string): string | undefined {
  try {
    return netnsKey(netnsId(path));
  } catch {
    return undefined;
  }
}

/**
 * The agent's own namespace and the host's (pid 1's): never a pod's, whatever addresses they carry.
 * The host's is unknown when the agent cannot see pid 1 (no hostPID): then it is not a candidate
 * either, since /proc holds only the agent's own processes.
 */
export function excludedNetns(): Set<string> {
  const out = new Set<string>();
  for (const path of ['/proc/self/ns/net', '/proc/1/ns/net']) {
    const key = netnsKeyAt(path);
    if (key !== undefined) out.add(key);
  }
  return out;
}

/** Every distinct network namespace on the node but the agent's and the host's, by a path that reaches it now. */
export async function listNetns(): Promise<Map<string, string>> {
  const excluded = excludedNetns();
  const out = new Map<string, string>();
  const consider = (path: string) => {
    const key = netnsKeyAt(path); // undefined: gone since it was listed (a process exited)
    if (key !== undefined && !excluded.has(key) && !out.has(key)) out.set(key, path);
  };
  const paths = [
    ...(await readdir(NAMED_NETNS_DIR).catch(() => [])).map((name) => `${NAMED_NETNS_DIR}/${name}`),
    ...(await readdir('/proc')).filter((pid) => /^\d+$/.test(pid)).map((pid) => `/proc/${pid}/ns/net`),
  ];
  // A stat per process: on a node with thousands of them, give the event loop a turn now and then.
  for (const [i, path] of paths.entries()) {
    if (i > 0 && i % LIST_BATCH === 0) await yieldToLoop();
    consider(path);
  }
  return out;
}

/** Whether the namespace at `path` can bind `ip` (it owns it, on some interface, loopback included). */
export function netnsHasIp(path: string, ip: string): boolean {
  const family = ipFamily(ip);
  if (family !== 4 && family !== 6) return false;
  try {
    closeSync(openTcpSocket(path, { family, bind: { address: ip, port: 0 } }));
    return true;
  } catch {
    // EADDRNOTAVAIL: not here. Anything else (the namespace went away) is also "not here".
    return false;
  }
}

/** What a scan found. */
export interface ScanResult {
  /** IP → the one namespace that owns it, pinned (namespaces owning several IPs are shared). */
  readonly owners: Map<string, PinnedNetns>;
  /** IPs several namespaces own, with their paths: refused, since either could be the pod. */
  readonly ambiguous: Map<string, string[]>;
}

/** The scan's effects, injectable for tests. */
export interface ScanDeps {
  listNetns(): Promise<Map<string, string>>;
  excluded(): Set<string>;
  pinNetns(path: string): PinnedNetns;
  /** The cheap test (a bind), run for every candidate and IP. */
  hasIp(netnsPath: string, ip: string): boolean;
  /** The addresses on the namespace's interfaces other than loopback (redirect.ts). */
  interfaceAddresses(netnsPath: string): Promise<string[]>;
}

/**
 * Finds the namespace that owns each of `ips`, skipping those `skip` says the agent already follows.
 * Each candidate is pinned first and tested through the pinned path (a /proc/<pid> path may name
 * another namespace by the time it is used); a candidate that passes the bind test must also carry
 * the IP on an interface other than loopback. The event loop gets a turn between candidates, so a
 * node with thousands of processes does not stall the agent's traffic.
 */
export async function scanOwners(
  ips: readonly string[],
  skip: (key: string) => boolean,
  deps: ScanDeps,
): Promise<ScanResult> {
  const candidates = await deps.listNetns();
  const excluded = deps.excluded();
  const found = new Map<string, { pinned: PinnedNetns; path: string }[]>();
  const kept = new Set<PinnedNetns>();
  const seen = new Set<string>();
  for (const [listedKey, path] of candidates) {
    if (skip(listedKey) || excluded.has(listedKey)) continue;
    await yieldToLoop();
    let pinned: PinnedNetns;
    try {
      pinned = deps.pinNetns(path);
    } catch {
      continue; // gone since it was listed
    }
    const key = netnsKey(pinned.id);
    if (seen.has(key) || skip(key) || excluded.has(key)) {
      pinned.release();
      continue;
    }
    seen.add(key);
    const bindable = ips.filter((ip) => deps.hasIp(pinned.path, ip));
    let owned: string[] = [];
    if (bindable.length > 0) {
      const onInterfaces = await deps.interfaceAddresses(pinned.path).catch(() => [] as string[]);
      owned = bindable.filter((ip) => onInterfaces.some((a) => sameIp(a, ip)));
    }
    if (owned.length === 0) {
      pinned.release();
      continue;
    }
    for (const ip of owned) found.set(ip, [...(found.get(ip) ?? []), { pinned, path }]);
    kept.add(pinned);
  }
  const owners = new Map<string, PinnedNetns>();
  const ambiguous = new Map<string, string[]>();
  for (const [ip, list] of found) {
    if (list.length === 1) owners.set(ip, list[0]!.pinned);
    else
      ambiguous.set(
        ip,
        list.map((p) => p.path),
      );
  }
  const used = new Set(owners.values());
  for (const p of kept) if (!used.has(p)) p.release();
  return { owners, ambiguous };
}
