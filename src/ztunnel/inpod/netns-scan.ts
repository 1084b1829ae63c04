/**
 * Finding pods' network namespaces without the CNI: pods that started while the agent was down (the
 * plugin let them through) or before Ambit was installed. Candidates are the named namespaces in
 * /var/run/netns (where containerd and `ip netns` keep them) and every process's /proc/<pid>/ns/net,
 * de-duplicated by inode; a candidate holds a pod's IP if a socket made inside it can bind that IP.
 * The agent pins each namespace it adopts by keeping it open, so it cannot vanish or be reused under
 * the agent while the pod lives.
 */
import { closeSync, openSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { ipFamily } from '../../core/ip.ts';
import { netnsId, openTcpSocket, type NetnsId } from '../../core/netns/index.ts';

/** A network namespace held open by the agent. */
export interface PinnedNetns {
  /** A path to it that stays valid while it is pinned (also for child processes such as nsenter). */
  readonly path: string;
  readonly id: NetnsId;
  /** Releases it; the namespace goes once nothing else holds it. */
  release(): void;
}

export const NAMED_NETNS_DIR = '/var/run/netns';

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

/** Every distinct network namespace on the node but the agent's own, by a path that reaches it now. */
export async function listNetns(): Promise<Map<string, string>> {
  const own = netnsKey(netnsId('/proc/self/ns/net'));
  const out = new Map<string, string>();
  const consider = (path: string) => {
    try {
      const key = netnsKey(netnsId(path));
      if (key !== own && !out.has(key)) out.set(key, path);
    } catch {
      // Gone since it was listed (a process exited), or not a namespace.
    }
  };
  for (const name of await readdir(NAMED_NETNS_DIR).catch(() => [])) consider(`${NAMED_NETNS_DIR}/${name}`);
  for (const pid of await readdir('/proc')) if (/^\d+$/.test(pid)) consider(`/proc/${pid}/ns/net`);
  return out;
}

/** Whether the namespace at `path` owns `ip` (a socket inside it can bind that address). */
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

/** For each IP, the namespace (key and path) that owns it, among those listed. */
export function findOwners(
  candidates: ReadonlyMap<string, string>,
  ips: readonly string[],
): Map<string, { key: string; path: string }> {
  const out = new Map<string, { key: string; path: string }>();
  for (const ip of ips) {
    for (const [key, path] of candidates) {
      if (netnsHasIp(path, ip)) {
        out.set(ip, { key, path });
        break;
      }
    }
  }
  return out;
}
