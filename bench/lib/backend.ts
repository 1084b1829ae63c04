/**
 * The server every path ends at. The first byte of a connection picks its behaviour, so one port
 * serves every test and each proxy needs a single frontend:
 *
 * - `e` echo: every byte (the `e` included) is written back, for connection and latency tests;
 * - `s` sink: bytes after the `s` are counted and one byte goes back per MiB received, so the
 *   sender measures what really arrived rather than what its kernel buffered.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export const Mode = { Echo: 0x65, Sink: 0x73 } as const;
export const SINK_ACK_EVERY_BYTES = 1024 * 1024;

export async function startBackend(
  host: string,
  port: number,
): Promise<{ server: Server; address: AddressInfo }> {
  const server = createServer({ noDelay: true }, serve);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, backlog: 4096 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return { server, address: server.address() as AddressInfo };
}

function serve(socket: Socket): void {
  socket.on('error', () => socket.destroy());
  socket.once('data', (first: Buffer) => {
    if (first[0] === Mode.Sink) {
      let received = first.length - 1;
      let acked = 0;
      const ack = () => {
        const due = Math.floor(received / SINK_ACK_EVERY_BYTES) - acked;
        if (due > 0) {
          acked += due;
          socket.write(Buffer.alloc(due, 1));
        }
      };
      ack();
      socket.on('data', (chunk: Buffer) => {
        received += chunk.length;
        ack();
      });
      return;
    }
    socket.write(first);
    socket.pipe(socket);
  });
}
