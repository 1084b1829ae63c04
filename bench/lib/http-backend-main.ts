/**
 * The HTTP backend of `npm run bench:gateway`, run as a process of its own: `node
 * http-backend-main.ts <host> <port>`. Every request gets 200 with a 2-byte body and Content-Length,
 * kept alive; it runs until killed.
 */
import { createServer } from 'node:http';

const [host, port] = process.argv.slice(2);
const BODY = Buffer.from('ok');
const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length });
  res.end(BODY);
});
server.listen({ host, port: Number(port), backlog: 4096 }, () => {
  process.stderr.write(`bench backend on ${host}:${port}\n`);
});
