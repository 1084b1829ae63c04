/**
 * The local mesh's sample workloads: small HTTP servers (bookinfo's and httpbin's names) and a TCP echo
 * server, each bound to its own loopback "pod" address. They know nothing of the mesh.
 *
 * Every HTTP app answers like a tiny httpbin, so the Istio samples' behaviour can be seen with curl:
 * a JSON body naming the pod that answered (app, version) and echoing the request (method, path, host,
 * headers); `/status/<code>` answers with that status; `/delay/<seconds>` waits first (at most 10 s);
 * `/response-headers?name=value` sets those response headers.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';

export interface SampleApp {
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly app: string;
  readonly version: string;
  readonly node: 'node-1' | 'node-2';
  /** Last octet pair of the pod address, e.g. [1, 2] → <prefix>.1.2 */
  readonly podSuffix: readonly [number, number];
  readonly port: number;
  readonly kind: 'http' | 'tcp-echo' | 'client';
}

/** Bookinfo-shaped workloads spread over two nodes, plus a client and a TCP echo service. */
export const SAMPLE_APPS: readonly SampleApp[] = [
  {
    name: 'curl',
    namespace: 'default',
    serviceAccount: 'curl',
    app: 'curl',
    version: 'v1',
    node: 'node-1',
    podSuffix: [1, 2],
    port: 0,
    kind: 'client',
  },
  {
    name: 'productpage-v1',
    namespace: 'default',
    serviceAccount: 'bookinfo-productpage',
    app: 'productpage',
    version: 'v1',
    node: 'node-1',
    podSuffix: [1, 3],
    port: 9080,
    kind: 'http',
  },
  {
    name: 'details-v1',
    namespace: 'default',
    serviceAccount: 'bookinfo-details',
    app: 'details',
    version: 'v1',
    node: 'node-1',
    podSuffix: [1, 4],
    port: 9080,
    kind: 'http',
  },
  {
    name: 'reviews-v1',
    namespace: 'default',
    serviceAccount: 'bookinfo-reviews',
    app: 'reviews',
    version: 'v1',
    node: 'node-1',
    podSuffix: [1, 5],
    port: 9080,
    kind: 'http',
  },
  {
    name: 'reviews-v2',
    namespace: 'default',
    serviceAccount: 'bookinfo-reviews',
    app: 'reviews',
    version: 'v2',
    node: 'node-2',
    podSuffix: [2, 2],
    port: 9080,
    kind: 'http',
  },
  {
    name: 'reviews-v3',
    namespace: 'default',
    serviceAccount: 'bookinfo-reviews',
    app: 'reviews',
    version: 'v3',
    node: 'node-2',
    podSuffix: [2, 3],
    port: 9080,
    kind: 'http',
  },
  {
    name: 'ratings-v1',
    namespace: 'default',
    serviceAccount: 'bookinfo-ratings',
    app: 'ratings',
    version: 'v1',
    node: 'node-2',
    podSuffix: [2, 4],
    port: 9080,
    kind: 'http',
  },
  {
    name: 'httpbin-v1',
    namespace: 'default',
    serviceAccount: 'httpbin',
    app: 'httpbin',
    version: 'v1',
    node: 'node-1',
    podSuffix: [1, 6],
    port: 8000,
    kind: 'http',
  },
  {
    name: 'httpbin-v2',
    namespace: 'default',
    serviceAccount: 'httpbin',
    app: 'httpbin',
    version: 'v2',
    node: 'node-2',
    podSuffix: [2, 6],
    port: 8000,
    kind: 'http',
  },
  // A second copy of ratings and reviews in namespace prod, the namespace many of Istio's reference
  // examples name (ratings.prod.svc.cluster.local).
  {
    name: 'ratings-v1',
    namespace: 'prod',
    serviceAccount: 'bookinfo-ratings',
    app: 'ratings',
    version: 'v1',
    node: 'node-1',
    podSuffix: [1, 7],
    port: 9080,
    kind: 'http',
  },
  {
    name: 'ratings-v2',
    namespace: 'prod',
    serviceAccount: 'bookinfo-ratings',
    app: 'ratings',
    version: 'v2',
    node: 'node-2',
    podSuffix: [2, 7],
    port: 9080,
    kind: 'http',
  },
  {
    name: 'reviews-v1',
    namespace: 'prod',
    serviceAccount: 'bookinfo-reviews',
    app: 'reviews',
    version: 'v1',
    node: 'node-1',
    podSuffix: [1, 8],
    port: 9080,
    kind: 'http',
  },
  {
    name: 'reviews-v2',
    namespace: 'prod',
    serviceAccount: 'bookinfo-reviews',
    app: 'reviews',
    version: 'v2',
    node: 'node-2',
    podSuffix: [2, 8],
    port: 9080,
    kind: 'http',
  },
  {
    name: 'tcp-echo-v1',
    namespace: 'default',
    serviceAccount: 'tcp-echo',
    app: 'tcp-echo',
    version: 'v1',
    node: 'node-2',
    podSuffix: [2, 5],
    port: 9000,
    kind: 'tcp-echo',
  },
  {
    name: 'tcp-echo-v2',
    namespace: 'default',
    serviceAccount: 'tcp-echo',
    app: 'tcp-echo',
    version: 'v2',
    node: 'node-1',
    podSuffix: [1, 9],
    port: 9000,
    kind: 'tcp-echo',
  },
];

export interface SampleService {
  readonly name: string;
  readonly namespace: string;
  /** The pods' `app` label the Service selects. */
  readonly app: string;
  /** Set for bookinfo's per-version Services (`reviews-v1`), which also select on `version`. */
  readonly version?: string;
  readonly port: number;
  /** A second Service port onto the same container port. */
  readonly extraPort?: number;
  /** Last octet of the cluster IP, <prefix>.100.<vip>. */
  readonly vip: number;
}

export const SAMPLE_SERVICES: readonly SampleService[] = [
  { name: 'productpage', namespace: 'default', app: 'productpage', port: 9080, vip: 1 },
  { name: 'details', namespace: 'default', app: 'details', port: 9080, vip: 2 },
  { name: 'reviews', namespace: 'default', app: 'reviews', port: 9080, vip: 3 },
  { name: 'ratings', namespace: 'default', app: 'ratings', port: 9080, vip: 4 },
  { name: 'tcp-echo', namespace: 'default', app: 'tcp-echo', port: 9000, vip: 5 },
  { name: 'httpbin', namespace: 'default', app: 'httpbin', port: 8000, vip: 6 },
  // Bookinfo's per-version Services, for Gateway API routes.
  { name: 'reviews-v1', namespace: 'default', app: 'reviews', version: 'v1', port: 9080, vip: 7 },
  { name: 'reviews-v2', namespace: 'default', app: 'reviews', version: 'v2', port: 9080, vip: 8 },
  { name: 'reviews-v3', namespace: 'default', app: 'reviews', version: 'v3', port: 9080, vip: 9 },
  { name: 'ratings', namespace: 'prod', app: 'ratings', port: 9080, extraPort: 8080, vip: 10 },
  { name: 'reviews', namespace: 'prod', app: 'reviews', port: 9080, vip: 11 },
];

/** What an app saw of one request, for `<dir>/apps.log`. */
export interface AppRequest {
  readonly pod: string;
  readonly method: string;
  readonly path: string;
  readonly host: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

const MAX_DELAY_S = 10;
const TCP_ECHO_WORDS: Readonly<Record<string, string>> = { v1: 'one', v2: 'two' };

export function podIp(prefix: string, app: SampleApp): string {
  return `${prefix}.${app.podSuffix[0]}.${app.podSuffix[1]}`;
}

/** Starts the servers; resolves once all listen. */
export async function startSampleApps(
  prefix: string,
  onRequest: (r: AppRequest) => void = () => undefined,
): Promise<{ close(): Promise<void> }> {
  const servers: (HttpServer | TcpServer)[] = [];
  const timers = new Set<NodeJS.Timeout>();
  for (const app of SAMPLE_APPS) {
    if (app.kind === 'client') continue;
    const ip = podIp(prefix, app);
    const server =
      app.kind === 'http'
        ? createHttpServer((req, res) => {
            const url = new URL(req.url ?? '/', 'http://x');
            onRequest({
              pod: app.name,
              method: req.method ?? '',
              path: req.url ?? '',
              host: req.headers.host ?? '',
              headers: req.headers,
            });
            const answer = httpbinAnswer(url);
            const body = JSON.stringify({
              app: app.app,
              version: app.version,
              pod: app.name,
              podIp: ip,
              node: app.node,
              method: req.method,
              path: req.url,
              host: req.headers.host,
              headers: plainHeaders(req),
              // What the server saw: the connection comes from its node agent, not from the client.
              peer: `${req.socket.remoteAddress}:${req.socket.remotePort}`,
            });
            const send = () => {
              timers.delete(timer);
              if (res.destroyed) return;
              res.writeHead(answer.status, {
                ...answer.headers,
                'content-type': 'application/json',
                'content-length': Buffer.byteLength(body) + 1,
              });
              res.end(body + '\n');
            };
            const timer = setTimeout(send, answer.delayMs);
            timers.add(timer);
            // Drain the request body so keep-alive connections carry on.
            req.resume();
          })
        : createTcpServer({ allowHalfOpen: true }, (socket) => {
            // Like Istio's tcp-echo sample (v1 runs `tcp-echo 9000 one`, v2 `… two`): each line comes
            // back prefixed with the version's word.
            const word = TCP_ECHO_WORDS[app.version] ?? 'hello';
            let pending = '';
            socket.setEncoding('utf8');
            socket.on('data', (chunk: string) => {
              pending += chunk;
              let nl;
              while ((nl = pending.indexOf('\n')) >= 0) {
                socket.write(`${word} ${pending.slice(0, nl)}\n`);
                pending = pending.slice(nl + 1);
              }
            });
            socket.on('end', () => (pending ? socket.end(`${word} ${pending}\n`) : socket.end()));
            socket.on('error', () => socket.destroy());
          });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: ip, port: app.port }, () => resolve());
    });
    servers.push(server);
  }
  return {
    close: () => {
      for (const t of timers) clearTimeout(t);
      return Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((r) => {
              s.close(() => r());
              if ('closeAllConnections' in s) s.closeAllConnections();
            }),
        ),
      ).then(() => undefined);
    },
  };
}

/** httpbin's `/status/<code>`, `/delay/<seconds>` and `/response-headers?k=v`; otherwise 200 now. */
function httpbinAnswer(url: URL): { status: number; delayMs: number; headers: Record<string, string> } {
  const status = /^\/status\/([1-5]\d\d)$/.exec(url.pathname);
  const delay = /^\/delay\/(\d+(?:\.\d+)?)$/.exec(url.pathname);
  const headers: Record<string, string> = {};
  if (url.pathname === '/response-headers') {
    for (const [k, v] of url.searchParams) if (/^[A-Za-z0-9-]+$/.test(k)) headers[k] = v;
  }
  return {
    status: status ? Number(status[1]) : 200,
    delayMs: delay ? Math.min(Number(delay[1]), MAX_DELAY_S) * 1000 : 0,
    headers,
  };
}

function plainHeaders(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) out[k] = String(v);
  return out;
}

/**
 * The sample mesh as Kubernetes objects, for the controller: the `default` namespace enrolled
 * in ambient mode, a Pod (with its node and IP, as the API server would report them) and a
 * ServiceAccount per workload, a Service per app, and the ratings AuthorizationPolicy.
 */
export function sampleKubeYaml(prefix: string): string {
  const docs: string[] = [...new Set(SAMPLE_APPS.map((a) => a.namespace))].map(
    (ns) => `apiVersion: v1
kind: Namespace
metadata:
  name: ${ns}
  labels:
    istio.io/dataplane-mode: ambient`,
  );
  for (const sa of [...new Set(SAMPLE_APPS.map((a) => `${a.namespace}/${a.serviceAccount}`))]) {
    const [namespace, name] = sa.split('/');
    docs.push(`apiVersion: v1
kind: ServiceAccount
metadata:
  name: ${name}
  namespace: ${namespace}`);
  }
  for (const a of SAMPLE_APPS) {
    docs.push(`apiVersion: v1
kind: Pod
metadata:
  name: ${a.name}
  namespace: ${a.namespace}
  labels:
    app: ${a.app}
    version: ${a.version}
spec:
  nodeName: ${a.node}
  serviceAccountName: ${a.serviceAccount}
  containers:
  - name: ${a.app}
    image: ${a.app}:${a.version}${a.port ? `\n    ports:\n    - name: ${a.kind === 'http' ? 'http' : 'tcp'}\n      containerPort: ${a.port}` : ''}
status:
  phase: Running
  podIP: ${podIp(prefix, a)}`);
  }
  for (const s of SAMPLE_SERVICES) {
    docs.push(`apiVersion: v1
kind: Service
metadata:
  name: ${s.name}
  namespace: ${s.namespace}
spec:
  selector:
    app: ${s.app}${s.version ? `\n    version: ${s.version}` : ''}
  clusterIP: ${prefix}.100.${s.vip}
  ports:
  - name: ${s.app === 'tcp-echo' ? 'tcp' : 'http'}
    port: ${s.port}
    targetPort: ${s.port}${s.extraPort ? `\n  - name: http-alt\n    port: ${s.extraPort}\n    targetPort: ${s.port}` : ''}`);
  }
  docs.push(`# Only workloads in the default namespace may reach ratings (enforced by the node agent).
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ratings-from-default
  namespace: default
spec:
  selector:
    matchLabels:
      app: ratings
  action: ALLOW
  rules:
  - from:
    - source:
        namespaces: [default]`);
  return docs.join('\n---\n') + '\n';
}
