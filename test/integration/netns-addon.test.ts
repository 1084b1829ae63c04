/**
 * The netns addon against the real kernel: sockets opened in namespaces this test makes, iptables
 * REDIRECT and TPROXY rules inside them, and the error and fd-leak paths. Needs root; skips with a
 * message elsewhere. Every namespace is created here, named ambit-t<pid>-<n>, and deleted when its
 * test ends however it ends; no traffic leaves them.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { connect, Socket, type AddressInfo, type Server } from 'node:net';
import { test, type TestContext } from 'node:test';
import { ErrorCode } from '../../src/core/errors.ts';
import {
  connectInNetns,
  listenInNetns,
  netnsAddonAvailable,
  netnsId,
  NetnsSyscallError,
  openTcpSocket,
  originalDestination,
  setMark,
  socketFd,
} from '../../src/core/netns/index.ts';

const skipReason =
  process.platform !== 'linux'
    ? 'network namespaces need Linux'
    : process.getuid?.() !== 0
      ? 'needs root (ip netns, veth, iptables): run as root, as CI does'
      : !netnsAddonAvailable()
        ? 'the netns addon is not built: run npm ci (needs python3, make, g++)'
        : undefined;

/** The test thread's own namespace, read before any call could have moved it. */
const HOME_NETNS = skipReason ? undefined : netnsId('/proc/thread-self/ns/net');
/** The capture rules' bypass mark (DESIGN.md §5). */
const BYPASS_MARK = 0x539;
const MISSING_NETNS = `/run/netns/ambit-t${process.pid}-missing`;

function run(cmd: string, args: readonly string[], input?: string): string {
  try {
    return execFileSync(cmd, args, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new Error(`${cmd} ${args.join(' ')} failed: ${stderr.trim()}`, { cause: err });
  }
}

interface Netns {
  readonly name: string;
  readonly path: string;
  /** `ip -n <name> ...` */
  ip(...args: string[]): string;
  /** A command run inside the namespace, e.g. iptables-restore with `input`. */
  exec(cmd: string, args: readonly string[], input?: string): string;
}

let netnsCount = 0;

/** A fresh namespace with lo up, deleted after the test whether it passed or not. */
function makeNetns(t: TestContext): Netns {
  const name = `ambit-t${process.pid}-${++netnsCount}`;
  run('ip', ['netns', 'add', name]);
  t.after(() => {
    try {
      run('ip', ['netns', 'del', name]);
    } catch (err) {
      t.diagnostic(`cleanup: ${String(err)}`);
    }
  });
  const ns: Netns = {
    name,
    path: `/run/netns/${name}`,
    ip: (...args) => run('ip', ['-n', name, ...args]),
    exec: (cmd, args, input) => run('ip', ['netns', 'exec', name, cmd, ...args], input),
  };
  ns.ip('link', 'set', 'lo', 'up');
  return ns;
}

/** Closes the server when the test ends. */
function closeAfter(t: TestContext, server: Server): Server {
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return server;
}

/** A listener in `ns` that answers every connection with `answer(socket)` and closes it. */
async function answeringListener(
  t: TestContext,
  nsPath: string | null,
  opts: Parameters<typeof listenInNetns>[1],
  answer: (s: Socket) => string,
): Promise<{ server: Server; port: number; accepted: Socket[] }> {
  const server = closeAfter(t, await listenInNetns(nsPath, opts));
  const accepted: Socket[] = [];
  server.on('connection', (s: Socket) => {
    accepted.push(s);
    s.on('error', () => undefined);
    s.end(answer(s));
  });
  return { server, port: (server.address() as AddressInfo).port, accepted };
}

function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Waits for 'connect', then reads until the peer ends. */
function connectAndRead(s: Socket): Promise<{ connected: boolean; data: string }> {
  return within(
    5000,
    'connection',
    new Promise<{ connected: boolean; data: string }>((resolve, reject) => {
      let connected = false;
      let data = '';
      s.setEncoding('utf8');
      s.once('connect', () => (connected = true));
      s.on('data', (d: string) => (data += d));
      s.once('error', reject);
      s.once('close', () => resolve({ connected, data }));
    }),
  ).finally(() => s.destroy());
}

function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

const describeLocal = (s: Socket) => `${s.localAddress}:${s.localPort}`;

test('a listener opened in a netns is reachable from inside it and not from the test’s own netns', async (t) => {
  if (skipReason) return t.skip(skipReason);
  const ns = makeNetns(t);
  const { server, port, accepted } = await answeringListener(
    t,
    ns.path,
    { family: 4, address: '127.0.0.1', port: 0 },
    () => 'hello from the pod',
  );
  assert.deepEqual(server.address(), { address: '127.0.0.1', family: 'IPv4', port });
  assert.notEqual(port, 0);
  assert.match(
    ns.exec('ss', ['-Htln']),
    new RegExp(`127\\.0\\.0\\.1:${port}\\b`),
    'the listener is in the netns',
  );

  const inside = connectInNetns(ns.path, { family: 4 }, { host: '127.0.0.1', port });
  const got = await connectAndRead(inside);
  assert.deepEqual(got, { connected: true, data: 'hello from the pod' });
  assert.equal(accepted.length, 1);

  // From the test's own namespace the same address and port lead elsewhere (usually nowhere). A
  // connection that does succeed must have reached some other process, never this listener.
  const outcome = await within(
    5000,
    'connect from the own netns',
    new Promise<string>((resolve) => {
      const s = connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        setTimeout(() => resolve('connected'), 200);
      });
      s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    }),
  );
  if (outcome !== 'connected') assert.equal(outcome, 'ECONNREFUSED');
  assert.equal(accepted.length, 1, 'the own-netns connection must not reach the pod listener');
});

const redirectCases = [
  {
    name: 'IPv4',
    listen: { family: 4, address: '127.0.0.1' },
    client: 4,
    dst: '10.77.0.1',
    iptables: 'iptables',
  },
  {
    name: 'IPv6',
    listen: { family: 6, address: '::1' },
    client: 6,
    dst: 'fd00:77::1',
    iptables: 'ip6tables',
  },
  // An IPv4 connection accepted by a dual-stack IPv6 listener: conntrack holds it as IPv4.
  {
    name: 'IPv4 on a dual-stack IPv6 listener',
    listen: { family: 6, address: '::', v6Only: false },
    client: 4,
    dst: '10.77.0.1',
    iptables: 'iptables',
  },
] as const;

for (const c of redirectCases) {
  test(`SO_ORIGINAL_DST reads back the destination an iptables REDIRECT replaced (${c.name})`, async (t) => {
    if (skipReason) return t.skip(skipReason);
    const ns = makeNetns(t);
    // The destination is an address on lo with nothing listening on port 8080: only the redirect
    // can make the connection succeed.
    ns.ip(
      'addr',
      'add',
      c.client === 4 ? `${c.dst}/32` : `${c.dst}/128`,
      'dev',
      'lo',
      ...(c.client === 6 ? ['nodad'] : []),
    );
    let original: unknown;
    const { port, accepted } = await answeringListener(t, ns.path, { ...c.listen, port: 0 }, (s) => {
      original = originalDestination(s);
      return 'captured';
    });
    ns.exec(c.iptables, [
      '-t',
      'nat',
      '-A',
      'OUTPUT',
      '-p',
      'tcp',
      '--dport',
      '8080',
      '-j',
      'REDIRECT',
      '--to-ports',
      String(port),
    ]);

    const client = connectInNetns(ns.path, { family: c.client }, { host: c.dst, port: 8080 });
    assert.deepEqual(await connectAndRead(client), { connected: true, data: 'captured' });
    assert.deepEqual(original, { address: c.dst, port: 8080 });
    assert.equal(accepted[0]?.localPort, port, 'the connection was redirected to the listener');
  });
}

test('SO_MARK 0x539 makes the capture rule RETURN, so the marked connection reaches the real destination', async (t) => {
  if (skipReason) return t.skip(skipReason);
  const ns = makeNetns(t);
  ns.ip('addr', 'add', '10.77.0.1/32', 'dev', 'lo');
  await answeringListener(t, ns.path, { family: 4, address: '10.77.0.1', port: 8080 }, () => 'real');
  const capture = await answeringListener(
    t,
    ns.path,
    { family: 4, address: '127.0.0.1', port: 0 },
    () => 'captured',
  );
  ns.exec(
    'iptables-restore',
    [],
    [
      '*nat',
      ':OUTPUT ACCEPT [0:0]',
      `-A OUTPUT -p tcp -m mark --mark 0x${BYPASS_MARK.toString(16)} -j RETURN`,
      `-A OUTPUT -p tcp -d 10.77.0.1 --dport 8080 -j REDIRECT --to-ports ${capture.port}`,
      'COMMIT',
      '',
    ].join('\n'),
  );
  const to = { host: '10.77.0.1', port: 8080 };

  const plain = await connectAndRead(connectInNetns(ns.path, { family: 4 }, to));
  assert.equal(plain.data, 'captured');
  const otherMark = await connectAndRead(connectInNetns(ns.path, { family: 4, mark: BYPASS_MARK - 1 }, to));
  assert.equal(otherMark.data, 'captured');
  const marked = await connectAndRead(connectInNetns(ns.path, { family: 4, mark: BYPASS_MARK }, to));
  assert.equal(marked.data, 'real');

  // setMark on a socket before it connects does the same.
  const fd = openTcpSocket(ns.path, { family: 4 });
  setMark(fd, BYPASS_MARK);
  const s = new Socket({ fd });
  s.connect(to);
  assert.equal((await connectAndRead(s)).data, 'real');
  assert.equal(capture.accepted.length, 2);
});

test('an IP_TRANSPARENT listener receives TPROXY’d connections from another netns, local address = original destination', async (t) => {
  if (skipReason) return t.skip(skipReason);
  const client = makeNetns(t);
  const node = makeNetns(t);
  client.ip('link', 'add', 'vc', 'type', 'veth', 'peer', 'name', 'vn', 'netns', node.name);
  client.ip('addr', 'add', '10.78.0.1/24', 'dev', 'vc');
  client.ip('link', 'set', 'vc', 'up');
  client.ip('route', 'add', '10.99.0.0/24', 'via', '10.78.0.2');
  node.ip('addr', 'add', '10.78.0.2/24', 'dev', 'vn');
  node.ip('link', 'set', 'vn', 'up');
  node.ip('rule', 'add', 'fwmark', '0x1/0x1', 'lookup', '100');
  node.ip('route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '100');

  const { port, accepted } = await answeringListener(
    t,
    node.path,
    { family: 4, address: '0.0.0.0', port: 0, transparent: true },
    (s) => `${describeLocal(s)} from ${s.remoteAddress}`,
  );
  node.exec(
    'iptables-restore',
    [],
    [
      '*mangle',
      ':PREROUTING ACCEPT [0:0]',
      `-A PREROUTING -p tcp -d 10.99.0.5 --dport 9090 -j TPROXY --on-port ${port} --tproxy-mark 0x1/0x1`,
      'COMMIT',
      '',
    ].join('\n'),
  );

  const s = connectInNetns(client.path, { family: 4 }, { host: '10.99.0.5', port: 9090 });
  const got = await connectAndRead(s);
  assert.deepEqual(got, { connected: true, data: '10.99.0.5:9090 from 10.78.0.1' });
  assert.equal(accepted.length, 1);
  assert.equal(accepted[0]?.localAddress, '10.99.0.5');
  assert.equal(accepted[0]?.localPort, 9090);
});

test('failures are typed errors naming the syscall, the errno and what to check', async (t) => {
  if (skipReason) return t.skip(skipReason);
  const ns = makeNetns(t);
  const missing = {
    code: ErrorCode.NetnsSyscallFailed,
    errno: 'ENOENT',
    syscall: 'open',
    netnsPath: MISSING_NETNS,
    message: new RegExp(`^open netns ${MISSING_NETNS} failed: ENOENT: has the pod gone`),
  };
  assert.throws(() => openTcpSocket(MISSING_NETNS, { family: 4 }), missing);
  assert.throws(() => openTcpSocket(MISSING_NETNS, { family: 4 }), NetnsSyscallError);
  await assert.rejects(listenInNetns(MISSING_NETNS, { family: 4, address: '0.0.0.0', port: 0 }), missing);
  assert.throws(() => connectInNetns(MISSING_NETNS, { family: 4 }, { host: '127.0.0.1', port: 1 }), missing);
  assert.throws(() => netnsId(MISSING_NETNS), {
    errno: 'ENOENT',
    syscall: 'stat',
    message: new RegExp(`^stat netns ${MISSING_NETNS} failed: ENOENT: has the pod gone`),
  });

  // A namespace file of another kind.
  assert.throws(() => openTcpSocket('/proc/self/ns/uts', { family: 4 }), {
    code: ErrorCode.NetnsSyscallFailed,
    errno: 'EINVAL',
    syscall: 'setns',
    message: /^setns into \/proc\/self\/ns\/uts failed: EINVAL: the path is not a network namespace file$/,
  });

  // bind fails after the socket exists: in use, and a foreign address without IP_TRANSPARENT.
  const server = closeAfter(t, await listenInNetns(ns.path, { family: 4, address: '127.0.0.1', port: 0 }));
  const { port } = server.address() as AddressInfo;
  assert.throws(
    () => openTcpSocket(ns.path, { family: 4, bind: { address: '127.0.0.1', port }, listen: 1 }),
    {
      errno: 'EADDRINUSE',
      syscall: 'bind',
      netnsPath: ns.path,
      message: new RegExp(
        `^bind 127\\.0\\.0\\.1:${port} in netns ${ns.path} failed: EADDRINUSE: is another socket`,
      ),
    },
  );
  const foreign = { address: '192.0.2.9', port: 0 };
  assert.throws(() => openTcpSocket(ns.path, { family: 4, bind: foreign }), {
    errno: 'EADDRNOTAVAIL',
    message: /only a transparent socket may bind a foreign one/,
  });
  closeSync(openTcpSocket(ns.path, { family: 4, bind: foreign, transparent: true }));

  // Bad options: every problem named, nothing opened.
  const bad = { family: 5, mark: -1, reuseport: true, bind: { address: 'localhost', port: 70000 } };
  assert.throws(
    () => openTcpSocket(ns.path, bad as never),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, ErrorCode.NetnsInvalidOption);
      for (const m of [
        'reuseport: unknown option',
        'family: must be 4 or 6',
        'mark: must be an integer 0..0xffffffff',
        'bind.address: localhost is not a numeric IP address',
        'bind.port: must be an integer 0..65535',
      ]) {
        assert.ok(err.message.includes(m), `${err.message} should say ${m}`);
      }
      return true;
    },
  );
  assert.throws(() => openTcpSocket(ns.path, { family: 4, listen: 5 }), { message: /listen: needs bind/ });
  assert.throws(() => openTcpSocket(ns.path, { family: 4, v6Only: true }), {
    message: /v6Only: applies to family 6/,
  });
  await assert.rejects(listenInNetns(ns.path, { family: 4, address: '::1', port: 0 }), {
    code: ErrorCode.NetnsInvalidOption,
    message: /address: ::1 is not an IPv4 address/,
  });
  assert.throws(() => connectInNetns(ns.path, { family: 4 }, { host: 'localhost', port: 80 }), {
    code: ErrorCode.NetnsInvalidOption,
    message: /host: localhost is not a numeric IP address/,
  });

  // Calls on something that is not a socket.
  const file = openSync('/proc/self/stat', 'r');
  try {
    assert.throws(() => setMark(file, BYPASS_MARK), {
      errno: 'ENOTSOCK',
      syscall: 'setsockopt',
      option: 'SO_MARK',
    });
  } finally {
    closeSync(file);
  }
  const closed = new Socket();
  assert.throws(() => socketFd(closed), {
    code: ErrorCode.NetnsInvalidOption,
    message: /no file descriptor/,
  });
  assert.throws(() => originalDestination(closed), { code: ErrorCode.NetnsInvalidOption });
});

test('without the capabilities, setns and SO_MARK fail with EPERM and name the capability', async (t) => {
  if (skipReason) return t.skip(skipReason);
  try {
    run('setpriv', ['--version']);
  } catch {
    return t.skip('needs setpriv (util-linux) to drop capabilities in a child process');
  }
  const ns = makeNetns(t);
  // A child without the capability in its bounding set: root, but unable to regain it.
  const attempt = (drop: string, call: string) =>
    JSON.parse(
      run('setpriv', [
        '--bounding-set',
        drop,
        process.execPath,
        '--input-type=module',
        '-e',
        [
          `import * as netns from ${JSON.stringify(new URL('../../src/core/netns/index.ts', import.meta.url).href)};`,
          `try { ${call}; console.log('{}'); }`,
          'catch (e) { console.log(JSON.stringify({ code: e.code, errno: e.errno, syscall: e.syscall, message: e.message })); }',
        ].join('\n'),
      ]),
    ) as unknown;
  assert.deepEqual(attempt('-sys_admin', `netns.openTcpSocket(${JSON.stringify(ns.path)}, { family: 4 })`), {
    code: ErrorCode.NetnsSyscallFailed,
    errno: 'EPERM',
    syscall: 'setns',
    message: `setns into ${ns.path} failed: EPERM: the agent needs CAP_SYS_ADMIN`,
  });
  assert.deepEqual(
    attempt(
      '-net_admin,-net_raw',
      `netns.openTcpSocket(${JSON.stringify(ns.path)}, { family: 4, mark: 0x539 })`,
    ),
    {
      code: ErrorCode.NetnsSyscallFailed,
      errno: 'EPERM',
      syscall: 'setsockopt',
      message: `setsockopt SO_MARK in netns ${ns.path} failed: EPERM: SO_MARK needs CAP_NET_ADMIN (or CAP_NET_RAW)`,
    },
  );
});

test('netnsId tells whether two paths are the same namespace', async (t) => {
  if (skipReason) return t.skip(skipReason);
  const ns = makeNetns(t);
  const other = makeNetns(t);
  const sleeper = spawn('ip', ['netns', 'exec', ns.name, 'sleep', '30'], { stdio: 'ignore' });
  t.after(() => sleeper.kill());
  const pid = sleeper.pid!;
  // `ip netns exec` enters the namespace, then execs sleep in the same process.
  await within(
    5000,
    'sleep to start',
    (async () => {
      while (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'sleep')
        await new Promise((r) => setTimeout(r, 10));
    })(),
  );
  assert.deepEqual(netnsId(`/proc/${pid}/ns/net`), netnsId(ns.path));
  assert.notDeepEqual(netnsId(ns.path), netnsId(other.path));
  assert.notDeepEqual(netnsId(ns.path), netnsId('/proc/self/ns/net'));
});

test('no fd leaks and the thread always returns to its own netns, on success and on every error path', async (t) => {
  if (skipReason) return t.skip(skipReason);
  const ns = makeNetns(t);
  const busy = closeAfter(t, await listenInNetns(ns.path, { family: 4, address: '127.0.0.1', port: 0 }));
  const busyPort = (busy.address() as AddressInfo).port;
  assert.deepEqual(netnsId('/proc/thread-self/ns/net'), HOME_NETNS);
  assert.notDeepEqual(netnsId(ns.path), HOME_NETNS);
  const before = fdCount();
  for (let i = 0; i < 200; i++) {
    const family = i % 2 === 0 ? 4 : 6;
    closeSync(
      openTcpSocket(ns.path, {
        family,
        reuseAddr: true,
        mark: BYPASS_MARK,
        bind: { address: family === 4 ? '127.0.0.1' : '::1', port: 0 },
        listen: 8,
      }),
    );
    closeSync(openTcpSocket(null, { family }));
    assert.throws(() => openTcpSocket(MISSING_NETNS, { family }), { errno: 'ENOENT' });
    assert.throws(() => openTcpSocket('/proc/self/ns/uts', { family }), { errno: 'EINVAL' });
    assert.throws(
      () => openTcpSocket(ns.path, { family: 4, bind: { address: '127.0.0.1', port: busyPort } }),
      {
        errno: 'EADDRINUSE',
      },
    );
    if (i % 10 === 0) {
      const server = await listenInNetns(ns.path, {
        family,
        address: family === 4 ? '127.0.0.1' : '::1',
        port: 0,
      });
      await new Promise((r) => server.close(r));
    }
  }
  assert.equal(fdCount(), before);
  assert.deepEqual(netnsId('/proc/thread-self/ns/net'), HOME_NETNS);
});
