/**
 * The agent's clients of the controller: Delta ADS for config and the CA service for certificates,
 * over TLS when a root is given. Loaded only when the agent is configured to use them, so a
 * file-configured agent does not carry gRPC and protobuf in memory.
 */
import type { GrpcCaProvider } from '../core/identity/ca-client.ts';
import type { Logger } from '../core/log.ts';
import { TypeUrl } from '../core/proto/load.ts';
import { AdsClient } from '../core/xds/ads-client.ts';
import { controllerCaProvider, controllerChannel, readToken } from '../core/xds/controller-channel.ts';
import type { Authorization, MeshConfig } from '../core/xds/model.ts';
import { decodeAddress, decodeAuthorization, type AddressResource } from '../core/xds/workload-proto.ts';
import type { ZtunnelConfig } from './config.ts';

export { readToken };

export function caProvider(config: ZtunnelConfig): GrpcCaProvider {
  return controllerCaProvider(config);
}

/**
 * Config over Delta ADS: the Address and Authorization sets are kept whole and turned into one
 * MeshConfig per update.
 */
export function xdsConfigClient(
  config: ZtunnelConfig,
  log: Logger,
  onConfig: (config: MeshConfig) => void,
): AdsClient {
  const c = controllerChannel(config);
  let addresses: ReadonlyMap<string, unknown> = new Map();
  let policies: ReadonlyMap<string, unknown> = new Map();
  let scheduled = false;
  return new AdsClient({
    target: config.xdsAddress,
    credentials: c.credentials,
    channelOptions: c.options,
    node: {
      id: `ztunnel~${config.nodeName}`,
      metadata: { NODE_NAME: config.nodeName, CLUSTER_ID: config.clusterId },
    },
    types: [
      { typeUrl: TypeUrl.Address, decode: decodeAddress },
      { typeUrl: TypeUrl.Authorization, decode: decodeAuthorization },
    ],
    headers: (): Record<string, string> =>
      config.authToken
        ? { authorization: `Bearer ${readToken(config.authToken)}`, clusterid: config.clusterId }
        : {},
    log,
    onResources: (typeUrl, resources) => {
      if (typeUrl === TypeUrl.Address) addresses = resources;
      else policies = resources;
      // Address and Authorization arrive as separate responses; applying each alone would let the
      // agent act (and close connections) on a half-updated mesh. One config per event-loop turn.
      if (scheduled) return;
      scheduled = true;
      setImmediate(() => {
        scheduled = false;
        const all = [...addresses.values()] as AddressResource[];
        onConfig({
          workloads: all.flatMap((a) => (a.kind === 'workload' ? [a.workload] : [])),
          services: all.flatMap((a) => (a.kind === 'service' ? [a.service] : [])),
          policies: [...policies.values()] as Authorization[],
        });
      });
    },
  });
}
