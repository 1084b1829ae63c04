/**
 * What the in-process waypoint tests share: a waypoint config on test addresses (port 0 everywhere,
 * the CA in-process), the client side's HBONE pool, and an insecure gRPC server for an ADS fake.
 */
import type { Server } from '@grpc/grpc-js';
import { ServerCredentials } from '@grpc/grpc-js';
import { HbonePool } from '../../src/core/hbone/pool.ts';
import type { WorkloadCertificate } from '../../src/core/identity/certificate.ts';
import type { Identity } from '../../src/core/identity/spiffe.ts';
import { silentLogger } from '../../src/core/log.ts';
import type { WaypointConfig } from '../../src/waypoint/config.ts';

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
