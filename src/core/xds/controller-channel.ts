/**
 * How a program reaches the controller (the node agent and the waypoint alike): one gRPC channel
 * setting for xDS and the CA — TLS to the controller's 15012 when a root is given, the server then
 * checked against ALT_XDS_HOSTNAME — and the bearer token, read from a file on every use so a
 * rotated token is picked up.
 */
import { readFileSync } from 'node:fs';
import { credentials, type ChannelCredentials } from '@grpc/grpc-js';
import { GrpcCaProvider } from '../identity/ca-client.ts';

export interface ControllerChannel {
  readonly credentials: ChannelCredentials;
  readonly options: Record<string, string>;
}

/** The parts of a program's configuration that say how to reach the controller. */
export interface ControllerAccess {
  /** Root certificate (PEM file) of the controller's TLS port; '' for plaintext. */
  readonly xdsRootCaPath: string;
  /** The name the controller's certificate must carry (we dial an address). */
  readonly xdsHostname: string;
  /** `host:port` of the CA service. */
  readonly caAddress: string;
  /** Bearer token: a file path (read on every use) or the token itself. */
  readonly authToken: string;
  /** Sent to the CA as `clusterid`. */
  readonly clusterId: string;
  readonly certTtlMs: number;
  /** The CA call's deadline. */
  readonly connectTimeoutMs: number;
}

/** TLS to the controller (15012) when a root is given: the server must present `xdsHostname`. */
export function controllerChannel(
  c: Pick<ControllerAccess, 'xdsRootCaPath' | 'xdsHostname'>,
): ControllerChannel {
  if (!c.xdsRootCaPath) return { credentials: credentials.createInsecure(), options: {} };
  return {
    credentials: credentials.createSsl(readFileSync(c.xdsRootCaPath)),
    options: {
      'grpc.ssl_target_name_override': c.xdsHostname,
      'grpc.default_authority': c.xdsHostname,
    },
  };
}

/** AUTH_TOKEN is a path to a token file (read on each use, so rotation works) or the token itself. */
export function readToken(value: string): string {
  if (!value.includes('/')) return value;
  try {
    return readFileSync(value, 'utf8').trim();
  } catch {
    return '';
  }
}

/** The CA service as a certificate provider, over the controller channel, with the bearer token. */
export function controllerCaProvider(c: ControllerAccess): GrpcCaProvider {
  const ch = controllerChannel(c);
  return new GrpcCaProvider({
    target: c.caAddress,
    credentials: ch.credentials,
    channelOptions: ch.options,
    token: () => readToken(c.authToken),
    clusterId: c.clusterId,
    ttlMs: c.certTtlMs,
    timeoutMs: c.connectTimeoutMs,
  });
}
