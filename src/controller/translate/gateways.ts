/**
 * Gateway validation. Nothing consumes Gateways yet (turning a waypoint Gateway into a waypoint is a
 * later issue); they are read into the snapshot, and what a waypoint will need is checked here so a
 * mistake shows up as soon as the object is written. Pure: problems out.
 *
 * Checks: the Gateway API's own rules for the fields read (class, listener names, ports, protocols,
 * addresses), the `istio.io/waypoint-for` label's values (on Gateways and GatewayClasses), and, for
 * the waypoint classes, the HBONE listener istiod expects (istio-api.md §3.2).
 */
import { ipFamily } from '../../core/ip.ts';
import { isDnsName, reporter, validPort, type TranslateProblem } from './common.ts';
import {
  lookup,
  type Gateway,
  type GatewayAddressEntry,
  type GatewayClass,
  type StringMap,
} from './kube-types.ts';

export const WAYPOINT_CLASSES = ['istio-waypoint', 'ambit-waypoint'];
export const WAYPOINT_FOR_LABEL = 'istio.io/waypoint-for';
const WAYPOINT_FOR = ['service', 'workload', 'all', 'none'];
/** Gateway API SectionName. */
const SECTION_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const HBONE_PORT = 15008;

/**
 * The traffic a waypoint Gateway takes (istio-api.md §3.2): its own `istio.io/waypoint-for` label
 * as written, else its GatewayClass's when that is valid (an invalid one is reported by
 * validateGatewayClasses and ignored), else `service`.
 */
export function waypointFor(
  gw: Pick<Gateway, 'labels' | 'gatewayClassName'>,
  classes: readonly GatewayClass[],
): string {
  const own = lookup(gw.labels, WAYPOINT_FOR_LABEL);
  if (own !== undefined) return own;
  const cls = classes.find((c) => c.name === gw.gatewayClassName);
  const inherited = cls && lookup(cls.labels, WAYPOINT_FOR_LABEL);
  return inherited !== undefined && WAYPOINT_FOR.includes(inherited) ? inherited : 'service';
}

/** Reports every problem of every Gateway; Gateways stay in the snapshot either way. */
export function validateGateways(gateways: readonly Gateway[], problems: TranslateProblem[]): void {
  for (const gw of gateways) validateGateway(gw, problems);
}

/**
 * Reports an invalid `istio.io/waypoint-for` on a GatewayClass. The value is then ignored (waypointFor
 * falls back to the default), not replaced by a last good one: last-good.ts does not hold classes.
 */
export function validateGatewayClasses(classes: readonly GatewayClass[], problems: TranslateProblem[]): void {
  for (const cls of classes) {
    const report = reporter(problems, 'GatewayClass', { namespace: '', name: cls.name });
    checkWaypointFor(cls.labels, (path, message) =>
      report(
        'error',
        path,
        `${message}; ignored: the class's Gateways without the label take service traffic`,
      ),
    );
  }
}

function checkWaypointFor(labels: StringMap, error: (path: string, message: string) => void): void {
  const value = lookup(labels, WAYPOINT_FOR_LABEL);
  if (value !== undefined && !WAYPOINT_FOR.includes(value))
    error(`metadata.labels["${WAYPOINT_FOR_LABEL}"]`, `"${value}" must be one of ${WAYPOINT_FOR.join(', ')}`);
}

function validateGateway(gw: Gateway, problems: TranslateProblem[]): void {
  const report = reporter(problems, 'Gateway', gw);
  const error = (path: string, message: string) => report('error', path, message);
  if (!gw.gatewayClassName) error('spec.gatewayClassName', 'is required');
  checkWaypointFor(gw.labels, error);
  if (gw.listeners.length === 0) error('spec.listeners', 'at least one listener is required');
  gw.listeners.forEach((l, i) => {
    const path = `spec.listeners[${i}]`;
    if (!l.name) error(`${path}.name`, 'is required');
    else if (!SECTION_NAME.test(l.name) || l.name.length > 253)
      error(`${path}.name`, `"${l.name}" is not a valid listener name (lower-case DNS labels)`);
    else if (gw.listeners.findIndex((m) => m.name === l.name) < i)
      error(`${path}.name`, `"${l.name}" is used by another listener`);
    if (!validPort(l.port)) error(`${path}.port`, `${l.port} is not a port number (1-65535)`);
    if (!l.protocol) error(`${path}.protocol`, 'is required');
  });
  checkAddresses(gw.addresses, 'spec.addresses', error);
  checkAddresses(gw.statusAddresses, 'status.addresses', error);
  if (
    WAYPOINT_CLASSES.includes(gw.gatewayClassName) &&
    gw.listeners.length > 0 &&
    !gw.listeners.some((l) => l.port === HBONE_PORT && l.protocol === 'HBONE')
  )
    report(
      'warning',
      'spec.listeners',
      `a waypoint needs a listener {name: mesh, port: ${HBONE_PORT}, protocol: HBONE}; without it nothing can reach the waypoint`,
    );
}

function checkAddresses(
  list: readonly GatewayAddressEntry[],
  path: string,
  error: (path: string, message: string) => void,
): void {
  list.forEach((a, i) => {
    const p = `${path}[${i}]`;
    const type = a.type || 'IPAddress';
    if (type === 'IPAddress' && ipFamily(a.value) === 0)
      error(`${p}.value`, `"${a.value}" is not an IP address`);
    else if (type === 'Hostname' && !isDnsName(a.value.replace(/^\*\./, 'x.')))
      error(`${p}.value`, `"${a.value}" is not a host name`);
    // A domain-prefixed type (example.com/custom) is implementation-specific: its value is opaque.
    else if (type !== 'IPAddress' && type !== 'Hostname' && !type.includes('/'))
      error(`${p}.type`, `"${a.type}" must be IPAddress, Hostname or a domain-prefixed type`);
  });
}
