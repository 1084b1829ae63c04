/**
 * The waypoint's config over a real Delta ADS stream (core/xds/ads-server.ts as the controller):
 * workload addresses and the four Envoy L7 types on one stream, readiness until the first sync,
 * the bearer token, a NACK that keeps the last good route configuration, and later updates.
 */
import assert from 'node:assert/strict';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { Server } from '@grpc/grpc-js';
import { systemClock } from '../../src/core/clock.ts';
import type { HbonePool } from '../../src/core/hbone/pool.ts';
import { HboneServer } from '../../src/core/hbone/server.ts';
import { CertificateAuthority } from '../../src/core/identity/ca.ts';
import { LocalCaProvider, SecretManager } from '../../src/core/identity/secret-manager.ts';
import { formatSpiffe } from '../../src/core/identity/spiffe.ts';
import { silentLogger } from '../../src/core/log.ts';
import { TypeUrl } from '../../src/core/proto/load.ts';
import { DeltaAdsServer, type ServedResource } from '../../src/core/xds/ads-server.ts';
import { clusterName, EnvoyTypeUrl, listenerName } from '../../src/core/xds/l7-names.ts';
import { anyOf, encodeEnvoy } from '../../src/core/xds/l7-wire.ts';
import {
  encodeService,
  encodeWorkload,
  serviceResourceName,
  workloadResourceName,
} from '../../src/core/xds/workload-proto.ts';
import { startWaypoint, type WaypointBound } from '../../src/waypoint/app.ts';
import { asHttpSocket } from '../../src/waypoint/stream-socket.ts';
import { testPrefix, waitFor } from '../fakes/mesh.ts';
import { service, waypointByHost, workload } from '../fixtures/mesh-config.ts';
import { bindInsecure, clientPool, waypointTestConfig } from '../fakes/waypoint-harness.ts';

const P = testPrefix();
const IP = { client: `${P}.31.2`, pod: `${P}.32.2`, waypoint: `${P}.35.1`, vip: `${P}.130.3` };
const TD = 'cluster.local';
const HOST = 'ratings.default.svc.cluster.local';
const ROUTES = listenerName(HOST, 9080);
const CLUSTER = clusterName(9080, '', HOST);
const TOKEN = 'waypoint-token';

const T = {
  Listener: 'envoy.config.listener.v3.Listener',
  RouteConfiguration: 'envoy.config.route.v3.RouteConfiguration',
  Cluster: 'envoy.config.cluster.v3.Cluster',
  Cla: 'envoy.config.endpoint.v3.ClusterLoadAssignment',
  Hcm: 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
  Fault: 'envoy.extensions.filters.http.fault.v3.HTTPFault',
  Cors: 'envoy.extensions.filters.http.cors.v3.Cors',
  Router: 'envoy.extensions.filters.http.router.v3.Router',
};

const served = (version: string, bytes: Uint8Array): ServedResource => ({ version, bytes });

const LISTENER = encodeEnvoy(T.Listener, {
  name: ROUTES,
  api_listener: {
    api_listener: anyOf(T.Hcm, {
      stat_prefix: ROUTES,
      rds: { route_config_name: ROUTES, config_source: { ads: {}, resource_api_version: 'V3' } },
      http_filters: [
        { name: 'envoy.filters.http.fault', typed_config: anyOf(T.Fault, {}) },
        { name: 'envoy.filters.http.cors', typed_config: anyOf(T.Cors, {}) },
        { name: 'envoy.filters.http.router', typed_config: anyOf(T.Router, {}) },
      ],
    }),
  },
});

function routes(action: object, regex?: string): Uint8Array {
  return encodeEnvoy(T.RouteConfiguration, {
    name: ROUTES,
    virtual_hosts: [
      {
        name: ROUTES,
        domains: ['*'],
        routes: [
          { name: 'r', match: regex === undefined ? { prefix: '/' } : { safe_regex: { regex } }, ...action },
        ],
      },
    ],
  });
}

const CLUSTER_BYTES = encodeEnvoy(T.Cluster, {
  name: CLUSTER,
  type: 'EDS',
  eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' }, service_name: CLUSTER },
  connect_timeout: { seconds: 2 },
  lb_policy: 'ROUND_ROBIN',
});

const CLA_BYTES = encodeEnvoy(T.Cla, {
  cluster_name: CLUSTER,
  endpoints: [
    { lb_endpoints: [{ endpoint: { address: { socket_address: { address: IP.pod, port_value: 9080 } } } }] },
  ],
});

const WORKLOADS = [
  workload({ name: 'client', addresses: [IP.client], serviceAccount: 'client', canonicalName: 'client' }),
  workload({
    name: 'ratings-v1',
    addresses: [IP.pod],
    serviceAccount: 'ratings',
    canonicalName: 'ratings',
    canonicalRevision: 'v1',
    services: { [`default/${HOST}`]: { 9080: 9080 } },
  }),
  workload({ name: 'waypoint', addresses: [IP.waypoint], serviceAccount: 'waypoint' }),
  // Scheduled, no IP yet: the controller sends such pods; the waypoint takes them without a NACK.
  workload({ name: 'pending', serviceAccount: 'ratings' }),
];
const SERVICES = [
  service({
    name: 'ratings',
    vips: [IP.vip],
    ports: { 9080: 9080 },
    waypoint: waypointByHost('default', 'waypoint.default.svc.cluster.local'),
  }),
];

let grpcServer: Server;
let ads: DeltaAdsServer;
let wp: WaypointBound;
let pool: HbonePool;
const nacks: string[] = [];
const tokens: string[] = [];
let openGate!: () => void;
const gate = new Promise<void>((r) => (openGate = r));
const closers: (() => Promise<void>)[] = [];

before(async () => {
  const ca = await CertificateAuthority.createSelfSigned(TD);
  const secrets = new SecretManager({
    provider: new LocalCaProvider(ca, 3600_000),
    clock: systemClock,
    log: silentLogger(),
  });
  // The pod: an HTTP app behind its agent's HBONE listener.
  const app = createHttpServer((req, res) => {
    req.resume();
    req.on('end', () => res.end(`ratings-v1 ${req.url}`));
  });
  await new Promise<void>((r) => app.listen({ host: IP.pod, port: 9080 }, r));
  closers.push(() => new Promise((r) => app.close(() => r())));
  const hbone = await HboneServer.start({
    host: IP.pod,
    port: 15008,
    certificate: await secrets.get({ trustDomain: TD, namespace: 'default', serviceAccount: 'ratings' }),
    trustDomain: TD,
    log: silentLogger(),
    onRequest: (req) => {
      const s: Socket = netConnect({ host: IP.pod, port: 9080, allowHalfOpen: true });
      s.once('connect', () => void req.accept(s));
      s.once('error', () => req.reject(503));
    },
  });
  closers.push(() => hbone.close(0));

  ads = new DeltaAdsServer({
    log: silentLogger(),
    types: [TypeUrl.Address, ...Object.values(EnvoyTypeUrl)],
    onNack: (_id, typeUrl, message) => nacks.push(`${typeUrl}: ${message}`),
    // Held until the test opens it, so readiness can be seen waiting for the first sync.
    authorize: async (md) => {
      tokens.push(String(md.get('authorization')[0] ?? ''));
      await gate;
      return undefined;
    },
  });
  ads.set(
    TypeUrl.Address,
    new Map([
      ...WORKLOADS.map((w) => [workloadResourceName(w), served('1', encodeWorkload(w))] as const),
      ...SERVICES.map((s) => [serviceResourceName(s), served('1', encodeService(s))] as const),
    ]),
  );
  ads.set(EnvoyTypeUrl.Listener, new Map([[ROUTES, served('1', LISTENER)]]));
  ads.set(
    EnvoyTypeUrl.RouteConfiguration,
    new Map([[ROUTES, served('1', routes({ route: { cluster: CLUSTER, timeout: { seconds: 0 } } }))]]),
  );
  ads.set(EnvoyTypeUrl.Cluster, new Map([[CLUSTER, served('1', CLUSTER_BYTES)]]));
  ads.set(EnvoyTypeUrl.ClusterLoadAssignment, new Map([[CLUSTER, served('1', CLA_BYTES)]]));
  grpcServer = new Server();
  grpcServer.addService(ads.definition(), ads.handlers());
  const port = await bindInsecure(grpcServer);

  const config = waypointTestConfig(IP.waypoint, {
    xdsAddress: `127.0.0.1:${port}`,
    authToken: TOKEN,
    drainDeadlineMs: 1000,
    logLevel: 'silent',
  });
  wp = await startWaypoint(config, { certificates: new LocalCaProvider(ca, 3600_000), log: silentLogger() });
  pool = clientPool((id) => secrets.get(id));
});

after(async () => {
  pool.destroy();
  await wp.close();
  grpcServer.forceShutdown();
  for (const c of closers) await c();
});

async function get(path: string): Promise<{ status: number; body: string }> {
  const r = await pool.connect(
    {
      srcIdentity: { trustDomain: TD, namespace: 'default', serviceAccount: 'client' },
      srcIp: IP.client,
      dstIp: IP.waypoint,
      dstPort: wp.hbone()!.port,
      expectedIdentities: [wp.identity],
    },
    { authority: `${IP.vip}:9080`, headers: {} },
  );
  if (!r.ok) throw Object.assign(new Error(r.reason), { status: r.status });
  const stream = asHttpSocket(r.stream);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { createConnection: () => stream, path, headers: { host: `${HOST}:9080` } },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function readiness(): Promise<{ status: number; text: string }> {
  const r = await fetch(`http://127.0.0.1:${wp.readiness.port}/healthz/ready`);
  return { status: r.status, text: await r.text() };
}

test('not ready until the first xDS sync; then ready, with the bearer token sent', async () => {
  await waitFor(() => tokens.length > 0, 3000);
  const waiting = await readiness();
  assert.equal(waiting.status, 500);
  assert.match(waiting.text, /xds from 127\.0\.0\.1:\d+ \(not synced yet\)/);
  assert.equal(tokens[0], `Bearer ${TOKEN}`);
  openGate();
  await waitFor(
    () => wp.pending().length === 0,
    5000,
    () => wp.pending().join(', '),
  );
  assert.deepEqual(await readiness(), { status: 200, text: 'ready\n' });
  await waitFor(() => wp.state().config.workloads.length === WORKLOADS.length, 3000);
  assert.deepEqual(nacks, []);
});

test('a request routed by the config that came over xDS reaches the pod', async () => {
  assert.deepEqual(await get('/ratings/1'), { status: 200, body: 'ratings-v1 /ratings/1' });
});

test('a bad route configuration is NACKed with its errors; the last good one stays in force', async () => {
  ads.set(
    EnvoyTypeUrl.RouteConfiguration,
    new Map([[ROUTES, served('2', routes({ route: { cluster: CLUSTER } }, '[unclosed'))]]),
  );
  await waitFor(() => nacks.length > 0, 3000);
  assert.match(
    nacks[0]!,
    new RegExp(`RouteConfiguration: ${ROUTES}: virtual_hosts\\[0\\]\\.routes\\[0\\]\\.match`),
  );
  assert.deepEqual(await get('/still'), { status: 200, body: 'ratings-v1 /still' });
  const metrics = await (await fetch(`http://127.0.0.1:${wp.metrics.port}/metrics`)).text();
  assert.match(
    metrics,
    /ambit_config_rejected_total\{type_url="type.googleapis.com\/envoy.config.route.v3.RouteConfiguration"\} 1/,
  );
});

test('a later good update applies; removing the listener refuses new tunnels', async () => {
  ads.set(
    EnvoyTypeUrl.RouteConfiguration,
    new Map([
      [
        ROUTES,
        served('3', routes({ direct_response: { status: 200, body: { inline_string: 'from xds v3' } } })),
      ],
    ]),
  );
  await waitFor(
    () => wp.l7().routeTable(ROUTES)?.config.virtualHosts[0]?.routes[0]?.action.kind === 'direct-response',
    3000,
  );
  assert.deepEqual(await get('/x'), { status: 200, body: 'from xds v3' });
  ads.set(EnvoyTypeUrl.Listener, new Map());
  await waitFor(() => !wp.l7().hasListener(ROUTES), 3000);
  await assert.rejects(get('/x'), (e: { status?: number }) => e.status === 503);
  const dump = (await (await fetch(`http://127.0.0.1:${wp.admin.port}/config_dump`)).json()) as {
    identity: string;
    xds: { synced: boolean };
    routeConfigurations: { name: string }[];
  };
  assert.equal(
    dump.identity,
    formatSpiffe({ trustDomain: TD, namespace: 'default', serviceAccount: 'waypoint' }),
  );
  assert.equal(dump.xds.synced, true);
  assert.deepEqual(
    dump.routeConfigurations.map((r) => r.name),
    [ROUTES],
  );
});
