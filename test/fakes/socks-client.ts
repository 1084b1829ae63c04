/**
 * A minimal SOCKS5 client for tests that need byte-level control (curl is used where it fits).
 */
import { connect, isIP, type Socket } from 'node:net';

export class SocksError extends Error {
  readonly reply: number;
  constructor(reply: number) {
    super(`SOCKS reply ${reply}`);
    this.reply = reply;
  }
}

/**
 * Connects through a SOCKS5 server to `host:port`; resolves with the tunnelled socket, paused (bytes
 * that arrived with the reply are unshifted): call `resume()` or use `readAll`.
 */
export function socksConnect(
  socks: { host: string; port: number },
  host: string,
  port: number,
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: socks.host, port: socks.port, allowHalfOpen: true, noDelay: true });
    let stage = 0;
    let buf = Buffer.alloc(0);
    s.once('error', reject);
    s.once('connect', () => {
      s.write(Buffer.from([5, 1, 0]));
    });
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (stage === 0) {
        if (buf.length < 2) return;
        if (buf[1] !== 0) return reject(new Error('SOCKS server refused no-auth'));
        buf = buf.subarray(2);
        stage = 1;
        s.write(request(host, port));
      }
      if (stage === 1) {
        if (buf.length < 10) return;
        s.off('data', onData);
        s.off('error', reject);
        if (buf[1] !== 0) {
          s.destroy();
          return reject(new SocksError(buf[1]!));
        }
        const rest = buf.subarray(10);
        s.pause();
        if (rest.length > 0) s.unshift(rest);
        resolve(s);
      }
    };
    s.on('data', onData);
    s.once('close', () => reject(new Error('SOCKS server closed the connection')));
  });
}

function request(host: string, port: number): Buffer {
  const p = [port >> 8, port & 0xff];
  if (isIP(host) === 4) return Buffer.from([5, 1, 0, 1, ...host.split('.').map(Number), ...p]);
  if (isIP(host) === 6) throw new Error('IPv6 not needed by these tests');
  const name = Buffer.from(host, 'latin1');
  return Buffer.concat([Buffer.from([5, 1, 0, 3, name.length]), name, Buffer.from(p)]);
}

/** Reads a socket to its end. */
export function readAll(s: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('error', reject);
    s.resume();
  });
}
