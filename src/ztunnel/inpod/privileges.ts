/**
 * In-pod mode's start-up check (reference/ztunnel.md §1.6 "Startup checks"): the agent must be able
 * to enter network namespaces, mark its sockets and run the tools that write a pod's rules. Failing
 * here, with what to fix, beats failing on the first pod.
 */
import { accessSync, closeSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { AmbitError, describeError, ErrorCode } from '../../core/errors.ts';
import { netnsAddonAvailable, openTcpSocket } from '../../core/netns/index.ts';
import { AGENT_MARK } from './rules.ts';

const TOOLS = ['nsenter', 'iptables-save', 'iptables-restore', 'ip6tables-save', 'ip6tables-restore', 'ip'];

export function checkInpodPrivileges(env: NodeJS.ProcessEnv = process.env): void {
  if (!netnsAddonAvailable()) {
    throw new AmbitError(ErrorCode.CaptureFailed, 'in-pod mode needs the netns addon, which is not built', {
      hint: 'run npm ci on Linux with python3, make and g++ installed',
    });
  }
  const probe = (what: string, hint: string, open: () => number) => {
    try {
      closeSync(open());
    } catch (err) {
      throw new AmbitError(ErrorCode.CaptureFailed, `in-pod mode cannot ${what}: ${describeError(err)}`, {
        cause: err,
        hint,
      });
    }
  };
  probe('mark its sockets (SO_MARK)', 'the agent needs CAP_NET_ADMIN (or CAP_NET_RAW)', () =>
    openTcpSocket(null, { family: 4, mark: AGENT_MARK }),
  );
  probe('enter a network namespace (setns)', 'the agent needs CAP_SYS_ADMIN', () =>
    openTcpSocket('/proc/self/ns/net', { family: 4 }),
  );
  const path = (env.PATH ?? '').split(delimiter);
  const missing = TOOLS.filter(
    (t) =>
      !path.some((dir) => {
        try {
          accessSync(join(dir, t), constants.X_OK);
          return true;
        } catch {
          return false;
        }
      }),
  );
  if (missing.length > 0) {
    throw new AmbitError(ErrorCode.CaptureFailed, `in-pod mode needs ${missing.join(', ')} on PATH`, {
      hint: 'install util-linux (nsenter), iptables and iproute2',
    });
  }
}
