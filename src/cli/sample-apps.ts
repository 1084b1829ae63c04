/**
 * The local mesh's sample workloads: small HTTP servers (bookinfo's names) and a TCP echo server,
 * each bound to its own loopback "pod" address. They know nothing of the mesh.
 */
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
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
];

export const SAMPLE_SERVICES = [
  { app: 'productpage', port: 9080, vip: 1 },
  { app: 'details', port: 9080, vip: 2 },
  { app: 'reviews', port: 9080, vip: 3 },
  { app: 'ratings', port: 9080, vip: 4 },
  { app: 'tcp-echo', port: 9000, vip: 5 },
] as const;

export function podIp(prefix: string, app: SampleApp): string {
  return `${prefix}.${app.podSuffix[0]}.${app.podSuffix[1]}`;
}

/** Starts the servers; resolves once all listen. */
export async function startSampleApps(prefix: string): Promise<{ close(): Promise<void> }> {
  const servers: (HttpServer | TcpServer)[] = [];
  for (const app of SAMPLE_APPS) {
    if (app.kind === 'client') continue;
    const ip = podIp(prefix, app);
    const server =
      app.kind === 'http'
        ? createHttpServer((req, res) => {
            const body = JSON.stringify({
              app: app.app,
              version: app.version,
              pod: app.name,
              podIp: ip,
              node: app.node,
              method: req.method,
              path: req.url,
              // What the server saw: the connection comes from its node agent, not from the client.
              peer: `${req.socket.remoteAddress}:${req.socket.remotePort}`,
            });
            res.writeHead(200, {
              'content-type': 'application/json',
              'content-length': Buffer.byteLength(body) + 1,
            });
            res.end(body + '\n');
          })
        : createTcpServer({ allowHalfOpen: true }, (socket) => {
            // Like Istio's tcp-echo sample: prefixes each line with "hello".
            let pending = '';
            socket.setEncoding('utf8');
            socket.on('data', (chunk: string) => {
              pending += chunk;
              let nl;
              while ((nl = pending.indexOf('\n')) >= 0) {
                socket.write(`hello ${pending.slice(0, nl)}\n`);
                pending = pending.slice(nl + 1);
              }
            });
            socket.on('end', () => (pending ? socket.end(`hello ${pending}\n`) : socket.end()));
            socket.on('error', () => socket.destroy());
          });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: ip, port: app.port }, () => resolve());
    });
    servers.push(server);
  }
  return {
    close: () =>
      Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((r) => {
              s.close(() => r());
              if ('closeAllConnections' in s) s.closeAllConnections();
            }),
        ),
      ).then(() => undefined),
  };
}

/**
 * The sample mesh as Kubernetes objects, for the controller: the `default` namespace enrolled
 * in ambient mode, a Pod (with its node and IP, as the API server would report them) and a
 * ServiceAccount per workload, a Service per app, and the ratings AuthorizationPolicy.
 */
export function sampleKubeYaml(prefix: string): string {
  const docs: string[] = [
    `apiVersion: v1
kind: Namespace
metadata:
  name: default
  labels:
    istio.io/dataplane-mode: ambient`,
  ];
  for (const sa of [...new Set(SAMPLE_APPS.map((a) => a.serviceAccount))]) {
    docs.push(`apiVersion: v1
kind: ServiceAccount
metadata:
  name: ${sa}
  namespace: default`);
  }
  for (const a of SAMPLE_APPS) {
    docs.push(`apiVersion: v1
kind: Pod
metadata:
  name: ${a.name}
  namespace: default
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
  name: ${s.app}
  namespace: default
spec:
  selector:
    app: ${s.app}
  clusterIP: ${prefix}.100.${s.vip}
  ports:
  - name: ${s.app === 'tcp-echo' ? 'tcp' : 'http'}
    port: ${s.port}
    targetPort: ${s.port}`);
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
