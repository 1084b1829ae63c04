/**
 * Sockets inside pod network namespaces (DESIGN.md §5). The addon only opens the socket in the
 * namespace and reads or sets what Node cannot; Node's own `net` adopts the fd, so the result is an
 * ordinary `net.Server` or `net.Socket` that lives in the pod's namespace while the agent stays in
 * its own.
 */
import { closeSync } from 'node:fs';
import { createServer, Socket, type Server } from 'node:net';
import { AmbitError, ErrorCode } from '../errors.ts';
import { ipFamily } from '../ip.ts';
import {
  familyIssues,
  invalidOptions,
  ipIssues,
  markIssues,
  openTcpSocket,
  originalDst,
  portIssues,
  type IpFamily,
  type SocketAddress,
} from './native.ts';

export {
  formatAddress,
  netnsAddonAvailable,
  netnsId,
  NetnsSyscallError,
  openTcpSocket,
  originalDst,
  setMark,
  type IpFamily,
  type NetnsId,
  type SocketAddress,
  type TcpSocketOptions,
} from './native.ts';

/** Node's own default listen backlog. */
const DEFAULT_BACKLOG = 511;

export interface ListenInNetnsOptions {
  /** IPv4 (4) or IPv6 (6); `address` must be of this family. */
  readonly family: IpFamily;
  /** A numeric address (`0.0.0.0`, `::`, or one in the namespace; any, when transparent). */
  readonly address: string;
  /** The port; 0 picks one, which `server.address()` then reports. */
  readonly port: number;
  /** IP_TRANSPARENT / IPV6_TRANSPARENT: accept connections TPROXY delivers for other addresses. */
  readonly transparent?: boolean;
  /** SO_MARK on the listening socket. */
  readonly mark?: number;
  /** SO_REUSEPORT. */
  readonly reusePort?: boolean;
  /** IPV6_V6ONLY (family 6): set it to listen on `::` and `0.0.0.0` with the same port. */
  readonly v6Only?: boolean;
  /** listen() backlog; Node's 511 by default. */
  readonly backlog?: number;
  /**
   * Accepted sockets stay writable after the peer's FIN (as `net.createServer({ allowHalfOpen })`);
   * a proxy needs this to carry a half-close through.
   */
  readonly allowHalfOpen?: boolean;
}

export interface ConnectInNetnsOptions {
  /** IPv4 (4) or IPv6 (6); the destination and `localAddress` must be of this family. */
  readonly family: IpFamily;
  /** SO_MARK: lets the agent's own connection pass the pod's capture rules. */
  readonly mark?: number;
  /** Bind to this numeric address (port chosen by the kernel) before connecting. */
  readonly localAddress?: string;
  /** IP_TRANSPARENT: allows `localAddress` to be one the namespace does not own (a client's). */
  readonly transparent?: boolean;
  /** The socket stays writable after the peer's FIN (as `net.connect({ allowHalfOpen })`). */
  readonly allowHalfOpen?: boolean;
}

/** Where `connectInNetns` connects: a numeric IP address (no DNS, see there) and a port. */
export interface ConnectDestination {
  readonly host: string;
  readonly port: number;
}

const LISTEN_OPTIONS = new Set([
  'family',
  'address',
  'port',
  'transparent',
  'mark',
  'reusePort',
  'v6Only',
  'backlog',
  'allowHalfOpen',
]);
const CONNECT_OPTIONS = new Set(['family', 'mark', 'localAddress', 'transparent', 'allowHalfOpen']);

/**
 * A TCP listener inside the namespace at `netnsPath` (null: the agent's own), bound and listening
 * by the time the promise resolves. SO_REUSEADDR is set, as Node sets it on its own listeners.
 */
export async function listenInNetns(netnsPath: string | null, opts: ListenInNetnsOptions): Promise<Server> {
  const issues = optionIssues(opts, LISTEN_OPTIONS);
  issues.push(...ipIssues(opts.address, opts.family, 'address'), ...portIssues(opts.port, 'port'));
  const { backlog = DEFAULT_BACKLOG } = opts;
  if (!(Number.isInteger(backlog) && backlog >= 1 && backlog <= 65535)) {
    issues.push('backlog: must be an integer 1..65535');
  }
  if (issues.length > 0) throw invalidOptions(issues);
  const fd = openTcpSocket(netnsPath, {
    family: opts.family,
    reuseAddr: true,
    ...(opts.transparent !== undefined && { transparent: opts.transparent }),
    ...(opts.mark !== undefined && { mark: opts.mark }),
    ...(opts.reusePort !== undefined && { reusePort: opts.reusePort }),
    ...(opts.v6Only !== undefined && { v6Only: opts.v6Only }),
    bind: { address: opts.address, port: opts.port },
    listen: backlog,
  });
  // The addon has already bound and listened, so little is left to fail in Node's listen({ fd }): it
  // wraps the fd in a TCP handle, and its own listen() call only restates the backlog. Once wrapped,
  // the fd belongs to the server and closes with it.
  const server = createServer({ allowHalfOpen: opts.allowHalfOpen === true });
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => {
      // What fails is wrapping the fd (uv_tcp_open), which leaves it ours: close it, or every failed
      // pod start would leak a listening socket in the pod. (Had the handle taken it, it is closed
      // already and this fails with EBADF.)
      try {
        closeSync(fd);
      } catch {
        // closed with the handle
      }
      const message = `cannot adopt the listener fd ${fd}${where(netnsPath)}`;
      reject(new AmbitError(ErrorCode.BindFailed, message, { cause: err }));
    };
    server.once('error', onError);
    server.listen({ fd, backlog }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  return server;
}

/**
 * A TCP connection made from inside the namespace at `netnsPath` (null: the agent's own), as a
 * `net.Socket` that is connecting when returned: wait for 'connect' or 'error' as with
 * `net.connect`.
 *
 * The socket is opened (and bound, with `localAddress`) in the namespace, wrapped with
 * `new net.Socket({ fd })`, and connected with `socket.connect()`. Node connects a wrapped fd
 * through the handle it already has (libuv's uv_tcp_connect keeps an existing fd), so the SYN leaves
 * from the pod's namespace and 'connect', timeouts and errors behave as for any socket. One catch
 * decides the shape of this function: the wrapper starts reading at once, and an unconnected TCP
 * socket polls as hung up, so if a turn of the event loop passed before connect() the read would
 * fail with ENOTCONN and destroy the socket. `socket.connect()` to a numeric address issues connect()
 * on the next tick, before the loop polls; a host name would wait for a DNS lookup and lose that
 * race. Hence numeric hosts only, and the connect happens here rather than being left to the caller.
 */
export function connectInNetns(
  netnsPath: string | null,
  opts: ConnectInNetnsOptions,
  to: ConnectDestination,
): Socket {
  const issues = optionIssues(opts, CONNECT_OPTIONS);
  if (opts.localAddress !== undefined) {
    issues.push(...ipIssues(opts.localAddress, opts.family, 'localAddress'));
  }
  if (typeof to !== 'object' || to === null) throw invalidOptions(['to: must be { host, port }']);
  issues.push(...ipIssues(to.host, opts.family, 'host'), ...portIssues(to.port, 'port'));
  if (to.port === 0) issues.push('port: cannot connect to port 0');
  if (issues.length > 0) throw invalidOptions(issues);
  const fd = openTcpSocket(netnsPath, {
    family: opts.family,
    ...(opts.mark !== undefined && { mark: opts.mark }),
    ...(opts.transparent !== undefined && { transparent: opts.transparent }),
    ...(opts.localAddress !== undefined && { bind: { address: opts.localAddress, port: 0 } }),
  });
  let socket: Socket;
  try {
    socket = new Socket({ fd, allowHalfOpen: opts.allowHalfOpen === true });
  } catch (err) {
    closeSync(fd); // not adopted: still ours to close
    const message = `cannot adopt the socket fd ${fd}${where(netnsPath)}`;
    throw new AmbitError(ErrorCode.UpstreamConnectFailed, message, { cause: err });
  }
  socket.connect({ host: to.host, port: to.port });
  return socket;
}

/** The file descriptor under a plain TCP `net.Socket` (not a TLS or HTTP/2 wrap). */
export function socketFd(socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    throw new AmbitError(ErrorCode.NetnsInvalidOption, 'the socket has no file descriptor', {
      hint: 'is it closed or destroyed, or a TLS socket rather than the TCP socket beneath it?',
    });
  }
  return fd;
}

/**
 * Where an accepted connection was going before the namespace's iptables REDIRECT sent it to us.
 * An IPv4 connection accepted by a dual-stack IPv6 listener (`::ffff:a.b.c.d`) is asked as IPv4,
 * since connection tracking holds it as IPv4.
 */
export function originalDestination(socket: Socket): SocketAddress {
  const local = socket.localAddress;
  if (local === undefined) {
    throw new AmbitError(ErrorCode.NetnsInvalidOption, 'the socket has no local address', {
      hint: 'is it connected?',
    });
  }
  const family: IpFamily = ipFamily(local) === 4 || isIpv4Mapped(local) ? 4 : 6;
  return originalDst(socketFd(socket), family);
}

function isIpv4Mapped(address: string): boolean {
  return address.toLowerCase().startsWith('::ffff:') && ipFamily(address.slice(7)) === 4;
}

/**
 * Unknown keys, the family, the mark and the flags: what listen and connect options share. Throws
 * at once if `opts` is not an object, since nothing else can then be checked.
 */
function optionIssues(opts: object, known: ReadonlySet<string>): string[] {
  if (typeof opts !== 'object' || opts === null) throw invalidOptions(['opts: must be an object']);
  const o = opts as Record<string, unknown>;
  const issues: string[] = [];
  for (const key of Object.keys(o)) if (!known.has(key)) issues.push(`${key}: unknown option`);
  issues.push(...familyIssues(o.family, 'family'));
  if (o.mark !== undefined) issues.push(...markIssues(o.mark, 'mark'));
  for (const key of ['transparent', 'reusePort', 'v6Only', 'allowHalfOpen']) {
    if (o[key] !== undefined && typeof o[key] !== 'boolean') issues.push(`${key}: must be a boolean`);
  }
  if (o.v6Only !== undefined && o.family !== 6) issues.push('v6Only: applies to family 6 only');
  return issues;
}

function where(netnsPath: string | null): string {
  return netnsPath === null ? '' : ` in netns ${netnsPath}`;
}
