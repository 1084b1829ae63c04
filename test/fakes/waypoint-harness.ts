/**
 * What the in-process waypoint tests share: a waypoint config on test addresses (port 0 everywhere,
 * the CA in-process), the client side's HBONE pool, an insecure gRPC server for an ADS fake, one
 * serving the controller's translation of YAML, a pod's node agent, and a whole waypoint under test
 * (its ADS, the waypoint, the clients' pool, tunnels as an agent opens them).
 */
import assert from 'node:assert/strict';
import type { Server } from '@grpc/grpc-js';
import { Server as GrpcServer, ServerCredentials } from '@grpc/grpc-js';
import { buildSnapshot, decodeKubeYaml } from '../../src/controller/files/kube-yaml.ts';
import { encodeL7Resources, translateL7 } from '../../src/controller/translate/l7/index.ts';
import type { L7Result } from '../../src/controller/translate/l7/translate.ts';
import { translate } from '../../src/controller/translate/workloads.ts';
import { TypeUrl } from '../../src/core/proto/load.ts';
import { DeltaAdsServer } from '../../src/core/xds/ads-server.ts';
import { EnvoyTypeUrl } from '../../src/core/xds/l7-names.ts';
import {
  encodeService,
  encodeWorkload,
  serviceResourceName,
  workloadResourceName,
} from '../../src/core/xds/workload-proto.ts';
import { l7From, OPTIONS } from '../unit/controller/l7/helpers.ts';
import { HbonePool } from '../../src/core/hbone/pool.ts';
import type { WorkloadCertificate } from '../../src/core/identity/certificate.ts';
import type { Identity } from '../../src/core/identity/spiffe.ts';
import { connect as netConnect } from 'node:net';
import { systemClock } from '../../src/core/clock.ts';
import type { HboneConnectResult } from '../../src/core/hbone/pool.ts';
import { HboneServer, type HboneRequest } from '../../src/core/hbone/server.ts';
import { CertificateAuthority } from '../../src/core/identity/ca.ts';
import { LocalCaProvider, SecretManager } from '../../src/core/identity/secret-manager.ts';
import { silentLogger, type Logger } from '../../src/core/log.ts';
import { startWaypoint, type WaypointBound } from '../../src/waypoint/app.ts';
import type { WaypointConfig } from '../../src/waypoint/config.ts';

/** The trust domain of the in-process tests' CA and identities. */
export const TD = 'cluster.local';

/**
 * A running Pod on node-1 as YAML (a document of its own, `---` first): `labels` is the inside of
 * its labels' flow map (`app: x, version: v1`).
 */
export function podYaml(p: {
  name: string;
  namespace?: string;
  serviceAccount: string;
  ip: string;
  labels: string;
}): string {
  return `
---
apiVersion: v1
kind: Pod
metadata: { name: ${p.name}, namespace: ${p.namespace ?? 'default'}, labels: { ${p.labels} } }
spec: { nodeName: node-1, serviceAccountName: ${p.serviceAccount} }
status: { phase: Running, podIP: ${p.ip} }`;
}

/** Waypoint `waypoint` of namespace default on `instanceIp`, with `over` on top. */
export function waypointTestConfig(instanceIp: string, over: Partial<WaypointConfig> = {}): WaypointConfig {
  return {
    podName: 'waypoint-0',
    namespace: 'default',
    serviceAccount: 'waypoint',
    gatewayName: 'waypoint',
    instanceIp,
    hbone: { host: instanceIp, port: 0 },
    trustDomain: 'cluster.local',
    clusterId: 'Kubernetes',
    xdsAddress: '',
    caAddress: '',
    authToken: '',
    xdsRootCaPath: '',
    xdsHostname: 'istiod.istio-system.svc',
    caCertPath: '',
    caKeyPath: '',
    certTtlMs: 3600_000,
    admin: { host: '127.0.0.1', port: 0 },
    metrics: { host: '127.0.0.1', port: 0 },
    readiness: { host: '127.0.0.1', port: 0 },
    drainDeadlineMs: 2000,
    connectTimeoutMs: 2000,
    protocolDetectionTimeoutMs: 1000,
    logLevel: 'info',
    ...over,
  };
}

/** The client agent's side: an HBONE pool presenting the certificates `getCertificate` gives. */
export function clientPool(getCertificate: (id: Identity) => Promise<WorkloadCertificate>): HbonePool {
  return new HbonePool({
    getCertificate,
    log: silentLogger(),
    connectTimeoutMs: 2000,
    idleTimeoutMs: 60_000,
    maxStreamsPerConnection: 100,
  });
}

/** Binds `server` (plaintext) on a free loopback port; resolves with the port. */
export function bindInsecure(server: Server): Promise<number> {
  return new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
}

/** What startMeshAds serves, and how to stop it. */
export interface MeshAds {
  /** The loopback port of its insecure gRPC server (a waypoint's `xdsAddress`). */
  readonly port: number;
  /** Every NACK the waypoint sent, `<type URL>: <message>`. */
  readonly nacks: string[];
  readonly l7: L7Result;
  close(): void;
}

/**
 * The controller's translation of Kubernetes YAML (workloads and L7: its VirtualServices and
 * DestinationRules too, which must decode without a problem) served on a real Delta ADS server.
 */
export async function startMeshAds(yaml: string): Promise<MeshAds> {
  const decoded = decodeKubeYaml(yaml, 'mesh.yaml');
  assert.deepEqual(
    decoded.problems.filter((p) => p.severity === 'error'),
    [],
  );
  const objs = l7From(yaml);
  assert.deepEqual(objs.problems, []);
  const { snapshot } = buildSnapshot(decoded.objects);
  const t = translate(snapshot, OPTIONS);
  const l7 = translateL7(
    {
      snapshot,
      mesh: t.config,
      virtualServices: objs.virtualServices,
      destinationRules: objs.destinationRules,
    },
    OPTIONS,
  );
  const nacks: string[] = [];
  const ads = new DeltaAdsServer({
    log: silentLogger(),
    types: [TypeUrl.Address, ...Object.values(EnvoyTypeUrl)],
    onNack: (_id, typeUrl, message) => nacks.push(`${typeUrl}: ${message}`),
  });
  ads.set(
    TypeUrl.Address,
    new Map([
      ...t.config.workloads.map(
        (w) => [workloadResourceName(w), { version: '1', bytes: encodeWorkload(w) }] as const,
      ),
      ...t.config.services.map(
        (s) => [serviceResourceName(s), { version: '1', bytes: encodeService(s) }] as const,
      ),
    ]),
  );
  for (const [typeUrl, list] of encodeL7Resources(l7.resources))
    ads.set(typeUrl, new Map(list.map((r) => [r.name, { version: r.version, bytes: r.bytes }])));
  const server = new GrpcServer();
  server.addService(ads.definition(), ads.handlers());
  const port = await bindInsecure(server);
  return { port, nacks, l7, close: () => server.forceShutdown() };
}

/** The mesh CA of an in-process waypoint test, and the certificates it issues. */
export interface TestCa {
  readonly ca: CertificateAuthority;
  readonly secrets: SecretManager;
}

export async function startTestCa(): Promise<TestCa> {
  const ca = await CertificateAuthority.createSelfSigned(TD);
  const secrets = new SecretManager({
    provider: new LocalCaProvider(ca, 3600_000),
    clock: systemClock,
    log: silentLogger(),
  });
  return { ca, secrets };
}

/**
 * A pod's node agent, in process: HBONE on `<ip>:15008` as `default/<serviceAccount>`, each tunnel
 * handed in plain TCP to `<ip>:<the tunnel's port>` (half-close kept); 503 when nothing listens.
 * `onTunnel` sees each tunnel first. Resolves with how to stop it.
 */
export async function startPodAgent(
  tca: TestCa,
  ip: string,
  serviceAccount: string,
  onTunnel: (req: HboneRequest) => void = () => undefined,
): Promise<() => Promise<void>> {
  const hbone = await HboneServer.start({
    host: ip,
    port: 15008,
    certificate: await tca.secrets.get({ trustDomain: TD, namespace: 'default', serviceAccount }),
    trustDomain: TD,
    log: silentLogger(),
    onRequest: (req) => {
      onTunnel(req);
      const s = netConnect({ host: ip, port: req.authority.port, allowHalfOpen: true });
      s.once('connect', () => void req.accept(s));
      s.once('error', () => req.reject(503));
    },
  });
  return () => hbone.close(0);
}

/** A waypoint serving the controller's translation of YAML, and the pool its clients tunnel from. */
export interface TestWaypoint {
  readonly ads: MeshAds;
  readonly wp: WaypointBound;
  readonly pool: HbonePool;
  /** A CONNECT to the waypoint for `authority`, as the agent of default/`serviceAccount` at `srcIp` opens it. */
  tunnel(serviceAccount: string, srcIp: string, authority: string): Promise<HboneConnectResult>;
  /** Polls `serving` every 100 ms until it says true; fails after 10 s, naming the NACKs. */
  untilServing(what: string, serving: () => Promise<boolean>): Promise<void>;
  close(): Promise<void>;
}

/** Starts `startMeshAds(yaml)` and a waypoint on `ip` with `over` on its test config. */
export async function startTestWaypoint(
  tca: TestCa,
  yaml: string,
  ip: string,
  over: Partial<WaypointConfig>,
  log: Logger = silentLogger(),
): Promise<TestWaypoint> {
  const ads = await startMeshAds(yaml);
  const config = waypointTestConfig(ip, {
    podName: 'waypoint',
    xdsAddress: `127.0.0.1:${ads.port}`,
    drainDeadlineMs: 1000,
    ...over,
  });
  const wp = await startWaypoint(config, { certificates: new LocalCaProvider(tca.ca, 3600_000), log });
  const pool = clientPool((id) => tca.secrets.get(id));
  return {
    ads,
    wp,
    pool,
    tunnel: (serviceAccount, srcIp, authority) =>
      pool.connect(
        {
          srcIdentity: { trustDomain: TD, namespace: 'default', serviceAccount },
          srcIp,
          dstIp: ip,
          dstPort: wp.hbone()!.port,
          expectedIdentities: [wp.identity],
        },
        { authority, headers: {} },
      ),
    async untilServing(what, serving) {
      const deadline = Date.now() + 10_000;
      while (!(await serving().catch(() => false))) {
        assert.ok(Date.now() < deadline, `waypoint not serving ${what}; NACKs: ${ads.nacks.join('; ')}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async close() {
      pool.destroy();
      await wp.close();
      ads.close();
    },
  };
}
