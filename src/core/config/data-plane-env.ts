/**
 * What both data-plane programs (the node agent and the waypoint) read from the environment in the
 * same way: where certificates come from, the admin/metrics/readiness addresses and the log level.
 * Each reader adds its problems to the EnvReader, with the same messages wherever it is used.
 */
import { isLogLevel, type LevelWithSilent } from '../log.ts';
import { parseHostPort, type EnvReader, type HostPort } from './env.ts';

export interface CaSource {
  /** `host:port` of the CA service; '' to sign with the CA in the PEM files. */
  readonly caAddress: string;
  /** Bearer token for xDS and the CA: a file path or the token itself. */
  readonly authToken: string;
  readonly caCertPath: string;
  readonly caKeyPath: string;
}

/**
 * CA_ADDRESS with AUTH_TOKEN, or AMBIT_CA_CERT_FILE and AMBIT_CA_KEY_FILE. `signs` says what the
 * local CA would sign, for the message when neither is given.
 */
export function readCaSource(r: EnvReader, signs: string): CaSource {
  const caAddress = r.optional('CA_ADDRESS');
  if (caAddress && !parseHostPort(caAddress).ok) r.errors.push(`CA_ADDRESS: "${caAddress}" is not host:port`);
  const authToken = r.optional('AUTH_TOKEN');
  if (caAddress && !authToken)
    r.errors.push('AUTH_TOKEN: is required with CA_ADDRESS (a token file or the token)');
  const caCertPath = r.optional('AMBIT_CA_CERT_FILE');
  const caKeyPath = r.optional('AMBIT_CA_KEY_FILE');
  if (!caAddress && (!caCertPath || !caKeyPath)) {
    r.errors.push(
      `AMBIT_CA_CERT_FILE, AMBIT_CA_KEY_FILE: both are required without CA_ADDRESS (the CA that signs ${signs})`,
    );
  }
  return {
    caAddress: caAddress ?? '',
    authToken: authToken ?? '',
    caCertPath: caCertPath ?? '',
    caKeyPath: caKeyPath ?? '',
  };
}

/** AMBIT_ADMIN_ADDR, AMBIT_METRICS_ADDR and AMBIT_READINESS_ADDR, with ztunnel's default ports. */
export function readEndpointAddresses(r: EnvReader): {
  admin: HostPort;
  metrics: HostPort;
  readiness: HostPort;
} {
  const addr = (name: string, fallback: string): HostPort => {
    const f = parseHostPort(fallback);
    if (!f.ok) throw new Error(`bad built-in default ${fallback}`);
    return r.parsed(name, f.value, parseHostPort);
  };
  return {
    admin: addr('AMBIT_ADMIN_ADDR', '127.0.0.1:15000'),
    metrics: addr('AMBIT_METRICS_ADDR', '0.0.0.0:15020'),
    readiness: addr('AMBIT_READINESS_ADDR', '0.0.0.0:15021'),
  };
}

/** LOG_LEVEL, `info` by default (and after an error). */
export function readLogLevel(r: EnvReader): LevelWithSilent {
  const raw = r.string('LOG_LEVEL', 'info');
  if (isLogLevel(raw)) return raw;
  r.errors.push(`LOG_LEVEL: "${raw}" is not one of trace, debug, info, warn, error, fatal, silent`);
  return 'info';
}

/** A config as an admin port shows it: file paths, but no key material and no inline token. */
export function redactSecrets<C extends { caKeyPath: string; authToken: string }>(
  c: C,
): Record<string, unknown> {
  // A token given inline is a secret; a path to it is not.
  const inlineToken = c.authToken !== '' && !c.authToken.includes('/');
  return {
    ...c,
    caKeyPath: c.caKeyPath ? '<redacted>' : '',
    authToken: inlineToken ? '<redacted>' : c.authToken,
  };
}
