/**
 * The ingress gateway's configuration: the waypoint's (identity, controller, CA, admin ports, drain
 * deadline: the same environment, waypoint/config.ts) plus what makes it a gateway — the pod's
 * labels, which say which Istio Gateways (by their `selector`) it serves, and the address its server
 * ports listen on. Built once, validated before anything binds, immutable afterwards.
 */
import { isIP } from 'node:net';
import { EnvReader } from '../../core/config/env.ts';
import { buildWaypointConfig, redactedWaypointConfig, WAYPOINT_ENV, type WaypointConfig } from '../config.ts';

export interface GatewayConfig extends WaypointConfig {
  /** The gateway pod's labels: it serves every Gateway whose selector they match. */
  readonly labels: Readonly<Record<string, string>>;
  /** Where the Gateway servers' ports listen: INSTANCE_IP, or AMBIT_GATEWAY_LISTEN_HOST. */
  readonly listenHost: string;
}

/** Every variable the gateway reads, with its default, for `--help` and the README. */
export const GATEWAY_ENV = {
  ...WAYPOINT_ENV,
  POD_NAMESPACE: '(required) the namespace of the gateway pod',
  GATEWAY_NAME: 'istio-ingressgateway (the gateway deployment: xDS node metadata, logs)',
  SERVICE_ACCOUNT: 'GATEWAY_NAME (the service account the gateway runs as: its identity upstream)',
  INSTANCE_IP: '(required) the pod IP; upstream HBONE starts from it',
  GATEWAY_LABELS: 'istio=ingressgateway (the pod labels, k=v,k=v: it serves the Gateways they select)',
  AMBIT_GATEWAY_LISTEN_HOST: 'INSTANCE_IP (where the Gateway servers listen; 0.0.0.0 for every address)',
} as const;

export type GatewayConfigResult = { ok: true; config: GatewayConfig } | { ok: false; errors: string[] };

const LABEL =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

/** `k=v,k=v` → labels; errors name the variable. */
export function parseLabels(text: string, name: string, errors: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of text.split(',').map((p) => p.trim())) {
    if (!pair) continue;
    const eq = pair.indexOf('=');
    const k = eq > 0 ? pair.slice(0, eq) : '';
    if (!k || !LABEL.test(k)) {
      errors.push(`${name}: "${pair}" is not key=value with a label key`);
      continue;
    }
    out[k] = pair.slice(eq + 1);
  }
  return out;
}

export function buildGatewayConfig(env: Readonly<Record<string, string | undefined>>): GatewayConfigResult {
  const base = buildWaypointConfig({ GATEWAY_NAME: 'istio-ingressgateway', ...env });
  const r = new EnvReader(env);
  const errors = base.ok ? [] : [...base.errors];
  const labels = parseLabels(r.string('GATEWAY_LABELS', 'istio=ingressgateway'), 'GATEWAY_LABELS', errors);
  if (Object.keys(labels).length === 0) errors.push('GATEWAY_LABELS: at least one label is required');
  const listenHost = r.optional('AMBIT_GATEWAY_LISTEN_HOST') ?? env.INSTANCE_IP ?? '';
  if (listenHost && !isIP(listenHost))
    errors.push(`AMBIT_GATEWAY_LISTEN_HOST: "${listenHost}" is not an IP address`);
  errors.push(...r.errors);
  if (!base.ok || errors.length > 0) return { ok: false, errors };
  return { ok: true, config: { ...base.config, labels, listenHost } };
}

/** The config as the admin port shows it: file paths, no key material, no inline token. */
export function redactedGatewayConfig(c: GatewayConfig): Record<string, unknown> {
  return redactedWaypointConfig(c);
}
