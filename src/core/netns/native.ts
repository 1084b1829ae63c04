/**
 * The netns addon (addon.cc) loaded and typed: options checked before the call, and the addon's
 * raw `{ syscall, errno }` failures turned into typed errors that name the errno and say what to
 * check. DESIGN.md §5.
 */
import { createRequire } from 'node:module';
import { getSystemErrorName } from 'node:util';
import { AmbitError, ErrorCode } from '../errors.ts';
import { ipFamily } from '../ip.ts';

export type IpFamily = 4 | 6;

/** An IP address and port, as the addon and `net` report them. */
export interface SocketAddress {
  readonly address: string;
  readonly port: number;
}

/** How to open a TCP socket with `openTcpSocket`. Every option is applied before `bind`. */
export interface TcpSocketOptions {
  /** AF_INET (4) or AF_INET6 (6). */
  readonly family: IpFamily;
  /** SO_MARK (needs CAP_NET_ADMIN): the pod's capture rules skip packets marked 0x539. */
  readonly mark?: number;
  /** IP_TRANSPARENT / IPV6_TRANSPARENT (needs CAP_NET_ADMIN): accept TPROXY'd connections, bind any address. */
  readonly transparent?: boolean;
  /** SO_REUSEADDR. */
  readonly reuseAddr?: boolean;
  /** SO_REUSEPORT. */
  readonly reusePort?: boolean;
  /** IPV6_V6ONLY (family 6 only); unset leaves the namespace's default (net.ipv6.bindv6only). */
  readonly v6Only?: boolean;
  /** bind() to this numeric address (of `family`) and port; port 0 picks one. */
  readonly bind?: SocketAddress;
  /** listen() with this backlog (1..65535); needs `bind`. */
  readonly listen?: number;
}

/** A namespace file's identity: two paths name the same namespace when both fields match. */
export interface NetnsId {
  readonly dev: number;
  readonly ino: number;
}

/** What addon.cc exports on Linux. */
interface Binding {
  openTcpSocket(netnsPath: string | null, opts: TcpSocketOptions): number;
  originalDst(fd: number, family: IpFamily): SocketAddress;
  setMark(fd: number, mark: number): void;
  netnsId(path: string): NetnsId;
}

/** A failed system call in the addon, with the errno's name (`EPERM`) rather than its number. */
export class NetnsSyscallError extends AmbitError {
  /** The errno's name, e.g. `EPERM`, `ENOENT`. */
  readonly errno: string;
  /** The system call that failed: open, setns, socket, setsockopt, bind, listen, getsockopt, stat. */
  readonly syscall: string;
  /** The namespace the call was made for; null for the agent's own. */
  readonly netnsPath: string | null;
  /** The socket option, for setsockopt and getsockopt, e.g. `SO_MARK`. */
  readonly option: string | undefined;

  constructor(
    fields: { errno: string; syscall: string; netnsPath: string | null; option: string | undefined },
    message: string,
    options: { hint?: string; cause?: unknown },
  ) {
    super(ErrorCode.NetnsSyscallFailed, message, options);
    this.name = 'NetnsSyscallError';
    this.errno = fields.errno;
    this.syscall = fields.syscall;
    this.netnsPath = fields.netnsPath;
    this.option = fields.option;
  }
}

/** Resolved from this file, so it holds wherever the repository is checked out. */
const ADDON_PATH = '../../../build/Release/ambit_netns.node';
const NOT_BUILT_HINT = 'run npm ci (needs python3, make, g++)';

let loaded: { readonly binding: Binding } | { readonly error: AmbitError } | undefined;

function load(): { readonly binding: Binding } | { readonly error: AmbitError } {
  if (loaded) return loaded;
  if (process.platform !== 'linux') {
    loaded = {
      error: new AmbitError(
        ErrorCode.NetnsAddonUnavailable,
        `network namespaces exist only on Linux (this is ${process.platform})`,
        { hint: 'run the node agent on a Linux node' },
      ),
    };
    return loaded;
  }
  try {
    const binding = createRequire(import.meta.url)(ADDON_PATH) as Partial<Binding>;
    if (typeof binding.openTcpSocket !== 'function') {
      throw new Error(`${ADDON_PATH} exports no openTcpSocket`);
    }
    loaded = { binding: binding as Binding };
  } catch (err) {
    loaded = {
      error: new AmbitError(ErrorCode.NetnsAddonUnavailable, 'the netns addon is not built', {
        hint: NOT_BUILT_HINT,
        cause: err,
      }),
    };
  }
  return loaded;
}

function binding(): Binding {
  const l = load();
  if ('error' in l) throw l.error;
  return l.binding;
}

/** Whether the addon loads here (Linux, and built by `npm ci`). */
export function netnsAddonAvailable(): boolean {
  return 'binding' in load();
}

/**
 * Opens a non-blocking, close-on-exec TCP socket inside the network namespace at `netnsPath`
 * (null: the agent's own) and returns its fd, which the caller owns: adopt it with
 * `net.Server.listen({ fd })` or `new net.Socket({ fd })`, or close it.
 */
export function openTcpSocket(netnsPath: string | null, opts: TcpSocketOptions): number {
  checkNetnsPath(netnsPath);
  const issues = tcpSocketOptionIssues(opts);
  if (issues.length > 0) throw invalidOptions(issues);
  const b = binding();
  try {
    return b.openTcpSocket(netnsPath, opts);
  } catch (err) {
    throw translate(err, opts.bind ? formatAddress(opts.bind) : undefined);
  }
}

/**
 * Where a connection accepted after an iptables REDIRECT or DNAT was going: SO_ORIGINAL_DST, or
 * IP6T_SO_ORIGINAL_DST for family 6. `family` is the connection's, not necessarily the socket's.
 */
export function originalDst(fd: number, family: IpFamily): SocketAddress {
  const issues = [...fdIssues(fd), ...familyIssues(family, 'family')];
  if (issues.length > 0) throw invalidOptions(issues);
  const b = binding();
  try {
    return b.originalDst(fd, family);
  } catch (err) {
    throw translate(err);
  }
}

/** Sets SO_MARK on a socket (needs CAP_NET_ADMIN). */
export function setMark(fd: number, mark: number): void {
  const issues = [...fdIssues(fd), ...markIssues(mark, 'mark')];
  if (issues.length > 0) throw invalidOptions(issues);
  const b = binding();
  try {
    b.setMark(fd, mark);
  } catch (err) {
    throw translate(err);
  }
}

/** The device and inode of a namespace file (`/var/run/netns/x`, `/proc/<pid>/ns/net`). */
export function netnsId(path: string): NetnsId {
  if (typeof path !== 'string' || path === '') throw invalidOptions(['netnsPath: must be a non-empty path']);
  const b = binding();
  try {
    return b.netnsId(path);
  } catch (err) {
    throw translate(err);
  }
}

/** `1.2.3.4:80`, `[::1]:80`. */
export function formatAddress(a: SocketAddress): string {
  return ipFamily(a.address) === 6 ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/** An invalid-option error listing every problem found. */
export function invalidOptions(issues: readonly string[]): AmbitError {
  return new AmbitError(ErrorCode.NetnsInvalidOption, `invalid netns socket options: ${issues.join('; ')}`);
}

function checkNetnsPath(netnsPath: unknown): void {
  if (netnsPath === null) return;
  if (typeof netnsPath !== 'string' || netnsPath === '') {
    throw invalidOptions(['netnsPath: must be a non-empty path or null']);
  }
}

const TCP_SOCKET_OPTIONS = new Set([
  'family',
  'mark',
  'transparent',
  'reuseAddr',
  'reusePort',
  'v6Only',
  'bind',
  'listen',
]);

function tcpSocketOptionIssues(opts: TcpSocketOptions): string[] {
  if (typeof opts !== 'object' || opts === null) return ['opts: must be an object'];
  const issues: string[] = [];
  for (const key of Object.keys(opts)) {
    if (!TCP_SOCKET_OPTIONS.has(key)) issues.push(`${key}: unknown option`);
  }
  issues.push(...familyIssues(opts.family, 'family'));
  if (opts.mark !== undefined) issues.push(...markIssues(opts.mark, 'mark'));
  for (const key of ['transparent', 'reuseAddr', 'reusePort', 'v6Only'] as const) {
    if (opts[key] !== undefined && typeof opts[key] !== 'boolean') issues.push(`${key}: must be a boolean`);
  }
  if (opts.v6Only !== undefined && opts.family !== 6) issues.push('v6Only: applies to family 6 only');
  if (opts.bind !== undefined) issues.push(...addressIssues(opts.bind, opts.family, 'bind'));
  if (opts.listen !== undefined) {
    if (!isIntegerIn(opts.listen, 1, 65535)) issues.push('listen: must be a backlog 1..65535');
    if (opts.bind === undefined) issues.push('listen: needs bind');
  }
  return issues;
}

export function familyIssues(family: unknown, path: string): string[] {
  return family === 4 || family === 6 ? [] : [`${path}: must be 4 or 6`];
}

export function markIssues(mark: unknown, path: string): string[] {
  return isIntegerIn(mark, 0, 0xffffffff) ? [] : [`${path}: must be an integer 0..0xffffffff`];
}

export function portIssues(port: unknown, path: string): string[] {
  return isIntegerIn(port, 0, 65535) ? [] : [`${path}: must be an integer 0..65535`];
}

/** A numeric address of the given family (no DNS names, no zone ids) and a port. */
export function addressIssues(a: SocketAddress, family: unknown, path: string): string[] {
  if (typeof a !== 'object' || a === null) return [`${path}: must be { address, port }`];
  const issues = ipIssues(a.address, family, `${path}.address`);
  issues.push(...portIssues(a.port, `${path}.port`));
  return issues;
}

export function ipIssues(address: unknown, family: unknown, path: string): string[] {
  if (typeof address !== 'string' || ipFamily(address) === 0) {
    return [`${path}: ${String(address)} is not a numeric IP address`];
  }
  if ((family === 4 || family === 6) && ipFamily(address) !== family) {
    return [`${path}: ${address} is not an IPv${family} address`];
  }
  return [];
}

function fdIssues(fd: unknown): string[] {
  return isIntegerIn(fd, 0, 0x7fffffff) ? [] : ['fd: must be a non-negative integer'];
}

function isIntegerIn(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

/** The fields addon.cc puts on the Errors it throws. */
interface RawSyscallError {
  syscall: string;
  errno: number;
  netnsPath: string | null;
  option?: string;
  file?: string;
}

function isRawSyscallError(err: unknown): err is Error & RawSyscallError {
  return (
    err instanceof Error &&
    typeof (err as Partial<RawSyscallError>).syscall === 'string' &&
    typeof (err as Partial<RawSyscallError>).errno === 'number'
  );
}

/** The addon's failure as a typed error; `bindAddress` names the address in a bind failure. */
function translate(err: unknown, bindAddress?: string): AmbitError {
  if (!isRawSyscallError(err)) {
    // The addon checks its arguments again and throws a TypeError; the checks above should have
    // caught the same thing first.
    const message = err instanceof Error ? err.message : String(err);
    return new AmbitError(ErrorCode.NetnsInvalidOption, `invalid netns socket options: ${message}`, {
      cause: err,
    });
  }
  const errno = getSystemErrorName(-err.errno);
  const { syscall, netnsPath, option, file } = err;
  const inNetns = netnsPath === null ? '' : ` in netns ${netnsPath}`;
  let what: string;
  switch (syscall) {
    case 'open':
      what = file === netnsPath ? `open netns ${netnsPath}` : `open ${file ?? '?'}${inNetns}`;
      break;
    case 'setns':
      what = `setns into ${netnsPath ?? '?'}`;
      break;
    case 'stat':
      what = `stat netns ${netnsPath ?? '?'}`;
      break;
    case 'bind':
      what = `bind ${bindAddress ?? ''}${inNetns}`;
      break;
    default:
      what = `${syscall}${option ? ` ${option}` : ''}${inNetns}`;
  }
  const hint = hintFor(syscall, errno, option, syscall === 'stat' || file === netnsPath);
  return new NetnsSyscallError(
    { errno, syscall, netnsPath, option },
    `${what} failed: ${errno}`,
    hint ? { hint, cause: err } : { cause: err },
  );
}

/** What the operator should check, for the failures that have a usual cause. */
function hintFor(
  syscall: string,
  errno: string,
  option: string | undefined,
  isNetnsFile: boolean,
): string | undefined {
  switch (`${syscall} ${errno}`) {
    case 'open ENOENT':
    case 'stat ENOENT':
      return isNetnsFile
        ? 'has the pod gone, or is the host netns directory not mounted into the agent?'
        : 'is /proc mounted?';
    case 'open EACCES':
    case 'open EPERM':
    case 'stat EACCES':
      return 'the agent must run as root to read namespace files';
    case 'setns EPERM':
      return 'the agent needs CAP_SYS_ADMIN';
    case 'setns EINVAL':
      return 'the path is not a network namespace file';
    case 'socket EAFNOSUPPORT':
      return 'is IPv6 disabled in the namespace?';
    case 'socket EMFILE':
    case 'socket ENFILE':
      return 'out of file descriptors: raise the limit or look for a leak';
    case 'setsockopt EPERM':
      return `${option ?? 'the option'} needs CAP_NET_ADMIN (or CAP_NET_RAW)`;
    case 'bind EADDRINUSE':
      return 'is another socket bound to it? SO_REUSEPORT shares a port only among sockets that all set it';
    case 'bind EADDRNOTAVAIL':
      return 'is the address configured in the namespace? only a transparent socket may bind a foreign one';
    case 'bind EACCES':
      return 'ports below 1024 need CAP_NET_BIND_SERVICE';
    case 'getsockopt ENOENT':
      return 'the connection was not redirected (no REDIRECT/DNAT conntrack entry): is the capture rule in place?';
    case 'getsockopt ENOPROTOOPT':
      return 'is connection tracking (nf_conntrack) loaded for this IP family?';
    case 'getsockopt EBADF':
    case 'getsockopt ENOTSOCK':
    case 'setsockopt EBADF':
    case 'setsockopt ENOTSOCK':
      return 'the fd is not an open socket: was it already closed?';
    default:
      return undefined;
  }
}
