/**
 * Kubernetes Gateway API ingress (issue 8 part 3): Gateways of class `ambit` and the HTTPRoutes
 * attached to them by `parentRefs` → the listeners and route configurations of the gateway proxy
 * that serves each Gateway (`ambit gateway`, the same program and resource shapes as for Istio's
 * `networking.istio.io` Gateways, gateway-translate.ts), and the status the Gateway API asks the
 * implementation to report. Pure.
 *
 * - Each Gateway is its own gateway group (l7-names.ts `gatewayGroup`): the labels of the pods made
 *   for it, `gateway.networking.k8s.io/gateway-name: <name>` (Istio's label for the pods it deploys
 *   for a Gateway) and `ambit.dev/gateway-namespace: <namespace>` (two Gateways of one name in two
 *   namespaces are two deployments).
 * - Listeners: HTTP listeners of one port share a route configuration `http.<port>` with one virtual
 *   host per host name; each HTTPS listener (`tls.mode: Terminate`) gets its own,
 *   `https.<port>.<listener>.<gateway>.<namespace>`, chosen by SNI (the listener's hostname). Its
 *   certificate is the first `certificateRefs` Secret, passed on as `credentialName`
 *   `<name>` (`<namespace>/<name>` for a Secret in another namespace, which needs a ReferenceGrant
 *   there). Other
 *   protocols and TLS Passthrough are not served (the listener is not accepted, and says why).
 *   Listeners that cannot share a port (HTTP and HTTPS, or two for one host name) conflict: the first
 *   (in listener order) keeps it.
 * - Routes attach as the Gateway API says: a parentRef names the Gateway and optionally a listener
 *   (`sectionName`) and `port`; the listener must allow the route's namespace (`allowedRoutes.
 *   namespaces`: Same by default, All, or a Selector on the namespace's labels) and kind; the route's
 *   hostnames are intersected with the listener's (`*.` wildcards match one or more labels): the
 *   virtual hosts are the intersections, and with no intersection the route is not attached there.
 *   Rules become Envoy routes with the GAMMA machinery (http-routes.ts: precedence, filters,
 *   weights, timeouts); backends are mesh Services, a Service in another namespace needing a
 *   ReferenceGrant, reached over HBONE with the gateway's identity.
 * - Status: each Gateway's Accepted and listeners (Accepted, ResolvedRefs, Conflicted, Programmed,
 *   attachedRoutes, supportedKinds), and each route's `parents` entry per parentRef naming one of
 *   these Gateways (Accepted, ResolvedRefs). Conditions carry no generation or time: the reconciler
 *   (reconcile/gateway-api-status.ts) adds those when it writes them.
 *
 * A Gateway with an error (what the API server's validation would refuse: a listener hostname that
 * is not one, HTTPS without certificates, an unknown `allowedRoutes.namespaces.from`) is rejected
 * whole, with field paths, so its last good version stays in force (translate/last-good.ts).
 */
import {
  GATEWAY_METADATA_FILTER,
  gatewayGroup,
  gatewayResourceName,
  type GatewayListenerFacts,
} from '../../../core/xds/l7-names.ts';
import { compare } from '../common.ts';
import {
  lookup,
  type Gateway,
  type GatewayListener,
  type LabelSelector,
  type Namespace,
  type ReferenceGrant,
  type StringMap,
} from '../kube-types.ts';
import { GATEWAY_NAME_LABEL } from '../waypoint-binding.ts';
import type { Listener, RouteConfiguration, VirtualHost } from './envoy-types.ts';
import { toStruct } from './gateway-translate.ts';
import {
  CORE_GROUP,
  GATEWAY_GROUP,
  type GatewayHttpRoute,
  type GatewayObjectRef,
  type GatewayParentRef,
} from './http-route-types.ts';
import { buildGatewayRoutes, type AttachedRule, type HttpRouteEnv } from './http-routes.ts';
import { httpListener } from './listeners.ts';
import { usesCors } from './routes.ts';
import type { L7Problem } from './types.ts';
import { checkWildcardDomain } from './values.ts';

/** The GatewayClass whose Gateways Ambit deploys and serves as ingress gateways. */
export const AMBIT_GATEWAY_CLASS = 'ambit';
/** The GatewayClass's `spec.controllerName` (waypoint/gatewayclasses.yaml); also in route status. */
export const AMBIT_GATEWAY_CONTROLLER = 'ambit.dev/gateway-controller';
/** With the gateway-name label, what the pods of one Gateway carry (and their gateway group). */
export const GATEWAY_NAMESPACE_LABEL = 'ambit.dev/gateway-namespace';
/** Ambit's `tls.options`: PEM files on the gateway's file system instead of a Secret (local mode). */
export const TLS_OPTION_CERTIFICATE = 'ambit.dev/server-certificate';
export const TLS_OPTION_PRIVATE_KEY = 'ambit.dev/private-key';

/**
 * The name of the Deployment, Service and ServiceAccount made for a Gateway: `<name>-<class>`, as
 * Istio's automated deployment names them (`<name>-istio`); so the gateway's identity is
 * `spiffe://<td>/ns/<namespace>/sa/<name>-ambit`.
 */
export function gatewayApiDeploymentName(gatewayName: string): string {
  return `${gatewayName}-${AMBIT_GATEWAY_CLASS}`;
}

/** The labels of a Gateway's gateway pods, which are also its gateway group. */
export function gatewayApiLabels(gw: { readonly namespace: string; readonly name: string }): StringMap {
  return { [GATEWAY_NAME_LABEL]: gw.name, [GATEWAY_NAMESPACE_LABEL]: gw.namespace };
}

/**
 * How a listener's certificate Secret is named to the gateway proxy (GatewayTlsFacts.credentialName,
 * core/xds/l7-names.ts): `<name>` in the Gateway's own namespace (where its gateway pods run),
 * `<namespace>/<name>` across namespaces (a reference a ReferenceGrant allows).
 */
export function gatewayApiCredentialName(gatewayNamespace: string, namespace: string, name: string): string {
  return namespace === gatewayNamespace ? name : `${namespace}/${name}`;
}

export interface GatewayApiInput {
  /** Every Gateway API Gateway; those of class `ambit` are translated. */
  readonly gateways: readonly Gateway[];
  readonly httpRoutes: readonly GatewayHttpRoute[];
  /** For `allowedRoutes.namespaces.selector`. */
  readonly namespaces: readonly Namespace[];
  readonly referenceGrants: readonly ReferenceGrant[];
  /** `namespace/name` of every Secret; undefined when Secrets are not read (then not checked). */
  readonly secrets?: ReadonlySet<string>;
}

/** A condition as the Gateway API writes it, less generation and time. */
export interface GatewayApiCondition {
  readonly type: string;
  readonly status: 'True' | 'False';
  readonly reason: string;
  readonly message: string;
}

export interface GatewayApiListenerStatus {
  readonly name: string;
  readonly attachedRoutes: number;
  readonly supportedKinds: readonly { readonly group: string; readonly kind: string }[];
  readonly conditions: readonly GatewayApiCondition[];
}

export interface GatewayApiGatewayStatus {
  readonly namespace: string;
  readonly name: string;
  /** Accepted (and, when not, why); Programmed is the reconciler's (it needs the Deployment). */
  readonly accepted: GatewayApiCondition;
  readonly listeners: readonly GatewayApiListenerStatus[];
  /** The listener ports the gateway's Service exposes (accepted listeners), sorted. */
  readonly ports: readonly { readonly name: string; readonly port: number }[];
}

export interface GatewayApiRouteParentStatus {
  /** As written, with defaults filled in (group, kind, namespace). */
  readonly parentRef: GatewayParentRef;
  readonly conditions: readonly GatewayApiCondition[];
}

export interface GatewayApiStatus {
  /** By `namespace/name`: every Gateway of class `ambit`. */
  readonly gateways: ReadonlyMap<string, GatewayApiGatewayStatus>;
  /** By `namespace/name`: every HTTPRoute with a parentRef naming one of them. */
  readonly routes: ReadonlyMap<string, readonly GatewayApiRouteParentStatus[]>;
}

export interface GatewayApiResult {
  readonly listeners: readonly Listener[];
  readonly routeConfigurations: readonly RouteConfiguration[];
  readonly problems: readonly L7Problem[];
  readonly status: GatewayApiStatus;
}

const HTTP_ROUTE_KIND = { group: GATEWAY_GROUP, kind: 'HTTPRoute' } as const;
const MAX_MESSAGE = 1000;

const cond = (type: string, ok: boolean, reason: string, message: string): GatewayApiCondition => ({
  type,
  status: ok ? 'True' : 'False',
  reason,
  message,
});

/** One listener as validated: what it serves, or why it does not. */
interface ListenerState {
  readonly gateway: Gateway;
  readonly listener: GatewayListener;
  readonly index: number;
  readonly protocol: 'HTTP' | 'HTTPS' | undefined;
  /** Why it is not accepted (reason, message); undefined: accepted. */
  notAccepted: { reason: string; message: string } | undefined;
  /** Why its references do not resolve; undefined: they do. */
  unresolved: { reason: string; message: string } | undefined;
  /** Why it conflicts with another listener; undefined: it does not. */
  conflicted: { reason: string; message: string } | undefined;
  readonly supportedKinds: { group: string; kind: string }[];
  tls: GatewayListenerFacts['tls'];
  /**
   * Its certificate Secret does not exist (yet): served all the same — the gateway waits for the
   * Secret over SDS and reports the listener not ready, and a Secret made later needs no new
   * translation — but not Programmed.
   */
  awaitingSecret: boolean;
  attached: number;
}

/** Everything resolved: Programmed. */
const usable = (s: ListenerState) =>
  s.protocol !== undefined && !s.notAccepted && !s.unresolved && !s.conflicted;
/** Given to the gateway (routes attach to it): usable, or only waiting for its Secret. */
const served = (s: ListenerState) =>
  s.protocol !== undefined && !s.notAccepted && !s.conflicted && (!s.unresolved || s.awaitingSecret);
const gwKey = (g: { namespace: string; name: string }) => `${g.namespace}/${g.name}`;
const listenerWhere = (s: ListenerState) =>
  `Gateway ${gwKey(s.gateway)} spec.listeners[${s.index}] (${s.listener.name})`;

export function translateGatewayApi(input: GatewayApiInput, meshEnv: HttpRouteEnv): GatewayApiResult {
  const grants = input.referenceGrants;
  const env: HttpRouteEnv = {
    ...meshEnv,
    referencePermitted: (route, ref) => referencePermitted(grants, route, ref),
  };
  const problems: L7Problem[] = [];
  const report = (
    kind: 'Gateway' | 'HTTPRoute',
    o: { namespace: string; name: string },
    severity: L7Problem['severity'],
    path: string,
    message: string,
  ) => problems.push({ severity, kind, namespace: o.namespace, name: o.name, path, message });

  const nsLabels = new Map(input.namespaces.map((n) => [n.name, n.labels]));
  const gateways = input.gateways
    .filter((g) => g.gatewayClassName === AMBIT_GATEWAY_CLASS)
    .sort(
      (a, b) => compare(a.creationTimestamp ?? '', b.creationTimestamp ?? '') || compare(gwKey(a), gwKey(b)),
    );

  const gatewayStatus = new Map<string, GatewayApiGatewayStatus>();
  const states = new Map<string, ListenerState[]>();
  for (const gw of gateways) {
    const errors: { path: string; message: string }[] = [];
    const listeners = gw.listeners.map((l, i) => listenerState(gw, l, i, input, grants, errors));
    for (const e of errors) report('Gateway', gw, 'error', e.path, e.message);
    if (errors.length > 0) {
      gatewayStatus.set(gwKey(gw), {
        namespace: gw.namespace,
        name: gw.name,
        accepted: cond(
          'Accepted',
          false,
          'Invalid',
          clip(errors.map((e) => `${e.path}: ${e.message}`).join('; ')),
        ),
        listeners: [],
        ports: [],
      });
      continue;
    }
    findConflicts(listeners);
    for (const s of listeners) {
      const why = s.notAccepted ?? s.conflicted ?? s.unresolved;
      if (why)
        report(
          'Gateway',
          gw,
          'warning',
          `spec.listeners[${s.index}]`,
          s.awaitingSecret
            ? `listener ${s.listener.name} is not ready: ${why.message}; the gateway serves it once the Secret exists`
            : `listener ${s.listener.name} is not served: ${why.message}`,
        );
    }
    states.set(gwKey(gw), listeners);
  }

  // ---- routes: which listeners each parentRef attaches to, with which host names ----
  const attachments = new Map<ListenerState, { route: GatewayHttpRoute; hosts: string[] }[]>();
  const routeStatus = new Map<string, GatewayApiRouteParentStatus[]>();
  for (const route of [...input.httpRoutes].sort((a, b) => compare(gwKey(a), gwKey(b)))) {
    const parents: GatewayApiRouteParentStatus[] = [];
    let resolved: GatewayApiCondition | undefined;
    route.parentRefs.forEach((ref, i) => {
      if (ref.group !== GATEWAY_GROUP || ref.kind !== 'Gateway') return;
      const listeners = states.get(`${ref.namespace}/${ref.name}`);
      const status = gatewayStatus.get(`${ref.namespace}/${ref.name}`);
      if (listeners === undefined && status === undefined) {
        const other = input.gateways.find((g) => g.namespace === ref.namespace && g.name === ref.name);
        report(
          'HTTPRoute',
          route,
          'warning',
          `spec.parentRefs[${i}].name`,
          other
            ? `Gateway ${ref.namespace}/${ref.name} is of class ${other.gatewayClassName}, which Ambit does not serve as an ingress (class ${AMBIT_GATEWAY_CLASS} does); this parent is ignored`
            : `Gateway ${ref.namespace}/${ref.name} does not exist; this parent has no effect`,
        );
        return;
      }
      resolved ??= backendsResolved(route, env, grants);
      const p = `spec.parentRefs[${i}]`;
      const accepted = attach(route, ref, listeners ?? [], nsLabels, attachments);
      if (!accepted.ok)
        report(
          'HTTPRoute',
          route,
          'warning',
          p,
          `not attached to Gateway ${ref.namespace}/${ref.name} (${accepted.reason}): ${accepted.message}`,
        );
      parents.push({
        parentRef: ref,
        conditions: [cond('Accepted', accepted.ok, accepted.reason, accepted.message), resolved],
      });
    });
    if (parents.length > 0) routeStatus.set(gwKey(route), parents);
  }

  // ---- resources and gateway status ----
  const listeners: Listener[] = [];
  const routeConfigurations: RouteConfiguration[] = [];
  for (const gw of gateways) {
    const list = states.get(gwKey(gw));
    if (list === undefined) continue;
    const group = gatewayGroup(gatewayApiLabels(gw));
    const http = new Map<number, ListenerState[]>();
    for (const s of list.filter(served)) {
      if (s.protocol === 'HTTP') {
        const l = http.get(s.listener.port);
        if (l) l.push(s);
        else http.set(s.listener.port, [s]);
        continue;
      }
      const name = gatewayResourceName(
        group,
        `https.${s.listener.port}.${s.listener.name}.${gw.name}.${gw.namespace}`,
      );
      const vhosts = virtualHosts([s], attachments, env);
      routeConfigurations.push({ name, virtual_hosts: vhosts });
      listeners.push(
        gatewayListener(name, vhosts, {
          port: s.listener.port,
          protocol: 'HTTPS',
          hosts: [s.listener.hostname || '*'],
          servers: [listenerWhere(s)],
          tls: s.tls,
        }),
      );
    }
    for (const [port, servers] of http) {
      const name = gatewayResourceName(group, `http.${port}`);
      const vhosts = virtualHosts(servers, attachments, env);
      routeConfigurations.push({ name, virtual_hosts: vhosts });
      listeners.push(
        gatewayListener(name, vhosts, {
          port,
          protocol: 'HTTP',
          hosts: [...new Set(servers.map((s) => s.listener.hostname || '*'))],
          servers: servers.map(listenerWhere),
          tls: undefined,
        }),
      );
    }
    const given = list.filter(served);
    gatewayStatus.set(gwKey(gw), {
      namespace: gw.namespace,
      name: gw.name,
      accepted:
        given.length > 0 || list.length === 0
          ? cond('Accepted', true, 'Accepted', 'Resource accepted')
          : cond('Accepted', false, 'ListenersNotValid', 'no listener of this Gateway can be served'),
      listeners: list.map(listenerStatus),
      ports: [...new Map(given.map((s) => [s.listener.port, s.listener.name]))]
        .map(([port, name]) => ({ name, port }))
        .sort((a, b) => a.port - b.port),
    });
  }
  return {
    listeners: listeners.sort((a, b) => compare(a.name, b.name)),
    routeConfigurations: routeConfigurations.sort((a, b) => compare(a.name, b.name)),
    problems,
    status: { gateways: gatewayStatus, routes: routeStatus },
  };
}

// ---- listeners ----

const LISTENER_HOSTNAME = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const FROM = ['Same', 'All', 'Selector'];
const SELECTOR_OPERATORS = ['In', 'NotIn', 'Exists', 'DoesNotExist'];

function listenerState(
  gw: Gateway,
  l: GatewayListener,
  index: number,
  input: GatewayApiInput,
  grants: readonly ReferenceGrant[],
  errors: { path: string; message: string }[],
): ListenerState {
  const p = `spec.listeners[${index}]`;
  const error = (path: string, message: string) => errors.push({ path: `${p}${path}`, message });
  if (
    l.hostname &&
    (l.hostname.length > 253 || !LISTENER_HOSTNAME.test(l.hostname) || checkWildcardDomain(l.hostname))
  )
    error('.hostname', `"${l.hostname}" is not a host name (lower-case DNS labels, "*." only first)`);
  const allowed = l.allowedRoutes;
  if (allowed?.from && !FROM.includes(allowed.from))
    error('.allowedRoutes.namespaces.from', `"${allowed.from}" must be one of ${FROM.join(', ')}`);
  if (allowed?.from === 'Selector' && allowed.selector === undefined)
    error('.allowedRoutes.namespaces.selector', 'is required when from is Selector');
  allowed?.selector?.matchExpressions.forEach((e, i) => {
    if (!SELECTOR_OPERATORS.includes(e.operator))
      error(
        `.allowedRoutes.namespaces.selector.matchExpressions[${i}].operator`,
        `"${e.operator}" must be one of ${SELECTOR_OPERATORS.join(', ')}`,
      );
  });
  const protocol = l.protocol === 'HTTP' || l.protocol === 'HTTPS' ? l.protocol : undefined;
  // The CRD's rule: "certificateRefs or options must be specified when mode is Terminate".
  if (l.protocol === 'HTTPS' && (l.tls === undefined || (l.tls.mode || 'Terminate') === 'Terminate'))
    if (!l.tls || (l.tls.certificateRefs.length === 0 && Object.keys(l.tls.options).length === 0))
      error(
        '.tls.certificateRefs',
        `a certificate is required for an HTTPS listener (mode Terminate): a Secret in certificateRefs, or the files in options ${TLS_OPTION_CERTIFICATE} and ${TLS_OPTION_PRIVATE_KEY}`,
      );
  if (l.protocol === 'HTTP' && l.tls !== undefined) error('.tls', 'must not be set on an HTTP listener');
  if (l.tls?.mode && l.tls.mode !== 'Terminate' && l.tls.mode !== 'Passthrough')
    error('.tls.mode', `"${l.tls.mode}" must be Terminate or Passthrough`);

  const state: ListenerState = {
    gateway: gw,
    listener: l,
    index,
    protocol,
    notAccepted: undefined,
    unresolved: undefined,
    conflicted: undefined,
    supportedKinds: [],
    tls: undefined,
    awaitingSecret: false,
    attached: 0,
  };
  if (protocol === undefined)
    state.notAccepted = {
      reason: 'UnsupportedProtocol',
      message: `protocol ${l.protocol} is not served by Ambit's gateway (HTTP and HTTPS are)`,
    };
  else if (protocol === 'HTTPS' && l.tls?.mode === 'Passthrough')
    state.notAccepted = {
      reason: 'UnsupportedProtocol',
      message:
        'TLS Passthrough is not served on an HTTPS listener (use protocol TLS, which Ambit does not serve yet)',
    };

  // Route kinds: HTTPRoute only (the default when none are listed).
  const kinds = allowed?.kinds ?? [];
  const invalidKinds: string[] = [];
  for (const k of kinds) {
    const group = k.group || GATEWAY_GROUP;
    if (group === GATEWAY_GROUP && k.kind === 'HTTPRoute') {
      if (!state.supportedKinds.length) state.supportedKinds.push({ ...HTTP_ROUTE_KIND });
    } else invalidKinds.push(`${group}/${k.kind}`);
  }
  if (kinds.length === 0 && protocol) state.supportedKinds.push({ ...HTTP_ROUTE_KIND });
  if (invalidKinds.length > 0)
    state.unresolved = {
      reason: 'InvalidRouteKinds',
      message: `route kinds ${invalidKinds.join(', ')} are not supported (HTTPRoute is)`,
    };

  if (protocol === 'HTTPS' && l.tls && !state.notAccepted) {
    const certPath = l.tls.options[TLS_OPTION_CERTIFICATE];
    const keyPath = l.tls.options[TLS_OPTION_PRIVATE_KEY];
    const ref = l.tls.certificateRefs[0];
    const refs = certificateRef(gw, ref, input, grants);
    if (certPath && keyPath) state.tls = tlsFacts(certPath, keyPath, '');
    else if (ref === undefined)
      state.unresolved ??= {
        reason: 'InvalidCertificateRef',
        message: `no certificateRefs, and options do not name both ${TLS_OPTION_CERTIFICATE} and ${TLS_OPTION_PRIVATE_KEY}`,
      };
    else if (refs.ok) state.tls = tlsFacts('', '', refs.credentialName);
    else {
      state.unresolved ??= refs.why;
      if (refs.credentialName !== undefined && state.unresolved === refs.why) {
        state.tls = tlsFacts('', '', refs.credentialName);
        state.awaitingSecret = true;
      }
    }
  }
  return state;
}

function tlsFacts(serverCertificate: string, privateKey: string, credentialName: string) {
  return {
    mode: 'SIMPLE',
    serverCertificate,
    privateKey,
    caCertificates: '',
    credentialName,
    subjectAltNames: [],
    minProtocolVersion: '',
    maxProtocolVersion: '',
  };
}

/** A listener's certificate Secret reference: usable, or why not (ResolvedRefs reason). */
function certificateRef(
  gw: Gateway,
  ref: { group: string; kind: string; namespace: string; name: string } | undefined,
  input: GatewayApiInput,
  grants: readonly ReferenceGrant[],
):
  | { ok: true; credentialName: string }
  | { ok: false; why: { reason: string; message: string }; credentialName?: string } {
  if (ref === undefined)
    return { ok: false, why: { reason: 'InvalidCertificateRef', message: 'no certificateRefs' } };
  const kind = ref.kind || 'Secret';
  const namespace = ref.namespace || gw.namespace;
  const what = `${ref.group ? `${ref.group}/` : ''}${kind} ${namespace}/${ref.name}`;
  if (ref.group !== CORE_GROUP || kind !== 'Secret')
    return {
      ok: false,
      why: {
        reason: 'InvalidCertificateRef',
        message: `certificateRefs[0]: ${what} is not a Secret (group "", kind Secret)`,
      },
    };
  if (
    namespace !== gw.namespace &&
    !granted(grants, namespace, GATEWAY_GROUP, 'Gateway', gw.namespace, CORE_GROUP, 'Secret', ref.name)
  )
    return {
      ok: false,
      why: {
        reason: 'RefNotPermitted',
        message: `certificateRefs[0]: Secret ${namespace}/${ref.name} is in another namespace and no ReferenceGrant there lets Gateways of ${gw.namespace} refer to it`,
      },
    };
  const credentialName = gatewayApiCredentialName(gw.namespace, namespace, ref.name);
  if (input.secrets && !input.secrets.has(`${namespace}/${ref.name}`))
    return {
      ok: false,
      why: {
        reason: 'InvalidCertificateRef',
        message: `certificateRefs[0]: Secret ${namespace}/${ref.name} does not exist`,
      },
      credentialName,
    };
  return { ok: true, credentialName };
}

/** Whether a ReferenceGrant in `toNamespace` lets `fromKind`s of `fromNamespace` refer to the object. */
export function granted(
  grants: readonly ReferenceGrant[],
  toNamespace: string,
  fromGroup: string,
  fromKind: string,
  fromNamespace: string,
  toGroup: string,
  toKind: string,
  toName: string,
): boolean {
  return grants.some(
    (g) =>
      g.namespace === toNamespace &&
      g.from.some((f) => f.group === fromGroup && f.kind === fromKind && f.namespace === fromNamespace) &&
      g.to.some((t) => t.group === toGroup && t.kind === toKind && (t.name === '' || t.name === toName)),
  );
}

/**
 * Listeners that cannot share a port: HTTP and HTTPS on one port (ProtocolConflict), or two
 * listeners of one protocol for the same host name (HostnameConflict). The first keeps it.
 */
function findConflicts(listeners: readonly ListenerState[]): void {
  const byPort = new Map<number, ListenerState[]>();
  for (const s of listeners) {
    if (s.protocol === undefined || s.notAccepted) continue;
    const others = byPort.get(s.listener.port) ?? [];
    const protocolClash = others.find((o) => o.protocol !== s.protocol);
    const hostClash = others.find(
      (o) => o.protocol === s.protocol && o.listener.hostname === s.listener.hostname,
    );
    if (protocolClash)
      s.conflicted = {
        reason: 'ProtocolConflict',
        message: `port ${s.listener.port} is already served as ${protocolClash.protocol} by listener ${protocolClash.listener.name}`,
      };
    else if (hostClash)
      s.conflicted = {
        reason: 'HostnameConflict',
        message: `listener ${hostClash.listener.name} already serves host name "${s.listener.hostname || '*'}" on port ${s.listener.port}`,
      };
    else byPort.set(s.listener.port, [...others, s]);
  }
}

function listenerStatus(s: ListenerState): GatewayApiListenerStatus {
  const programmed = usable(s);
  return {
    name: s.listener.name,
    attachedRoutes: s.attached,
    supportedKinds: s.supportedKinds,
    conditions: [
      s.notAccepted
        ? cond('Accepted', false, s.notAccepted.reason, s.notAccepted.message)
        : cond('Accepted', true, 'Accepted', 'Listener accepted'),
      s.unresolved
        ? cond('ResolvedRefs', false, s.unresolved.reason, s.unresolved.message)
        : cond('ResolvedRefs', true, 'ResolvedRefs', 'References resolved'),
      s.conflicted
        ? cond('Conflicted', true, s.conflicted.reason, s.conflicted.message)
        : cond('Conflicted', false, 'NoConflicts', 'No conflicts'),
      programmed
        ? cond('Programmed', true, 'Programmed', 'Listener programmed')
        : cond('Programmed', false, 'Invalid', (s.notAccepted ?? s.conflicted ?? s.unresolved)!.message),
    ],
  };
}

// ---- routes ----

/**
 * Attaches one parentRef of a route to the listeners it selects; the Accepted condition it gets.
 * Reasons in the order the Gateway API checks them: NoMatchingParent (no listener of that name or
 * port), NotAllowedByListeners (none allows the route's namespace or kind), NoMatchingListenerHostname.
 */
function attach(
  route: GatewayHttpRoute,
  ref: GatewayParentRef,
  listeners: readonly ListenerState[],
  nsLabels: ReadonlyMap<string, StringMap>,
  attachments: Map<ListenerState, { route: GatewayHttpRoute; hosts: string[] }[]>,
): { ok: boolean; reason: string; message: string } {
  const selected = listeners.filter(
    (s) =>
      (!ref.sectionName || s.listener.name === ref.sectionName) &&
      (ref.port === undefined || s.listener.port === ref.port),
  );
  if (selected.length === 0)
    return {
      ok: false,
      reason: 'NoMatchingParent',
      message:
        listeners.length === 0
          ? `Gateway ${ref.namespace}/${ref.name} is not accepted`
          : `Gateway ${ref.namespace}/${ref.name} has no listener${ref.sectionName ? ` named "${ref.sectionName}"` : ''}${ref.port !== undefined ? ` on port ${ref.port}` : ''}`,
    };
  const allowing = selected.filter((s) => served(s) && allows(s, route.namespace, nsLabels));
  if (allowing.length === 0)
    return {
      ok: false,
      reason: 'NotAllowedByListeners',
      message: `no listener (${selected.map((s) => s.listener.name).join(', ')}) that can serve allows HTTPRoutes from namespace ${route.namespace}`,
    };
  let any = false;
  for (const s of allowing) {
    const hosts = intersectHostnames(s.listener.hostname, route.hostnames);
    if (hosts.length === 0) continue;
    any = true;
    s.attached++;
    const list = attachments.get(s) ?? [];
    list.push({ route, hosts });
    attachments.set(s, list);
  }
  if (!any)
    return {
      ok: false,
      reason: 'NoMatchingListenerHostname',
      message: `no hostname of the route (${route.hostnames.join(', ')}) matches a listener's (${allowing.map((s) => `${s.listener.name}: ${s.listener.hostname || '*'}`).join(', ')})`,
    };
  return { ok: true, reason: 'Accepted', message: 'Route was valid' };
}

function allows(s: ListenerState, namespace: string, nsLabels: ReadonlyMap<string, StringMap>): boolean {
  if (!s.supportedKinds.some((k) => k.kind === 'HTTPRoute')) return false;
  const a = s.listener.allowedRoutes;
  switch (a?.from || 'Same') {
    case 'All':
      return true;
    case 'Selector':
      return a?.selector !== undefined && matchesSelector(a.selector, nsLabels.get(namespace) ?? {});
    default:
      return namespace === s.gateway.namespace;
  }
}

/** Kubernetes label selector semantics. */
export function matchesSelector(selector: LabelSelector, labels: StringMap): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels)) if (lookup(labels, k) !== v) return false;
  return selector.matchExpressions.every((e) => {
    const v = lookup(labels, e.key);
    switch (e.operator) {
      case 'In':
        return v !== undefined && e.values.includes(v);
      case 'NotIn':
        return v === undefined || !e.values.includes(v);
      case 'Exists':
        return v !== undefined;
      case 'DoesNotExist':
        return v === undefined;
      default:
        return false;
    }
  });
}

/**
 * The host names a route serves on a listener (the Gateway API's intersection): the route's
 * hostnames the listener's covers (a route wildcard narrowed to the listener's name when that is
 * more specific); with no listener hostname, the route's; with no route hostnames, the listener's;
 * with neither, `*`.
 */
export function intersectHostnames(listener: string, routeHosts: readonly string[]): string[] {
  if (routeHosts.length === 0) return [listener || '*'];
  if (!listener) return [...routeHosts];
  const out = new Set<string>();
  for (const h of routeHosts) {
    const i = intersectHostname(listener, h);
    if (i !== undefined) out.add(i);
  }
  return [...out];
}

function intersectHostname(listener: string, route: string): string | undefined {
  if (listener === route) return route;
  const lw = listener.startsWith('*.');
  const rw = route.startsWith('*.');
  // `*.example.com` covers every name ending in `.example.com` (one or more labels), not example.com.
  if (lw && route.endsWith(listener.slice(1))) return route;
  if (rw && listener.endsWith(route.slice(1))) return listener;
  return undefined;
}

/**
 * The route's ResolvedRefs condition: every backendRef must be a core Service (InvalidKind), in the
 * route's namespace or granted by a ReferenceGrant (RefNotPermitted), and in the mesh with that
 * port (BackendNotFound). The first reason found is given, the message names each bad backend.
 */
function backendsResolved(
  route: GatewayHttpRoute,
  env: HttpRouteEnv,
  grants: readonly ReferenceGrant[],
): GatewayApiCondition {
  const bad: { reason: string; message: string }[] = [];
  route.rules.forEach((rule, r) =>
    rule.backendRefs.forEach((b, k) => {
      const at = `spec.rules[${r}].backendRefs[${k}]`;
      if (b.group !== CORE_GROUP || b.kind !== 'Service')
        bad.push({
          reason: 'InvalidKind',
          message: `${at}: ${b.group ? `${b.group}/` : ''}${b.kind} is not a Service`,
        });
      else if (b.namespace !== route.namespace && !referencePermitted(grants, route, b))
        bad.push({
          reason: 'RefNotPermitted',
          message: `${at}: Service ${b.namespace}/${b.name} is in another namespace and no ReferenceGrant there allows it`,
        });
      else {
        const found = env.service(b);
        if ('problem' in found) bad.push({ reason: 'BackendNotFound', message: `${at}: ${found.problem}` });
      }
    }),
  );
  if (bad.length === 0) return cond('ResolvedRefs', true, 'ResolvedRefs', 'All references resolved');
  return cond('ResolvedRefs', false, bad[0]!.reason, clip(bad.map((b) => b.message).join('; ')));
}

/** A ReferenceGrant lets this route use a Service in another namespace. */
export function referencePermitted(
  grants: readonly ReferenceGrant[],
  route: GatewayHttpRoute,
  ref: GatewayObjectRef,
): boolean {
  return granted(
    grants,
    ref.namespace,
    GATEWAY_GROUP,
    'HTTPRoute',
    route.namespace,
    ref.group,
    ref.kind,
    ref.name,
  );
}

// ---- resources ----

/** Per host name, the rules of the routes attached to `servers` (one port) that serve it. */
function virtualHosts(
  servers: readonly ListenerState[],
  attachments: ReadonlyMap<ListenerState, readonly { route: GatewayHttpRoute; hosts: string[] }[]>,
  env: HttpRouteEnv,
): VirtualHost[] {
  const byHost = new Map<string, GatewayHttpRoute[]>();
  for (const s of servers)
    for (const { route, hosts } of attachments.get(s) ?? [])
      for (const h of hosts) {
        const list = byHost.get(h) ?? [];
        if (!list.includes(route)) list.push(route);
        byHost.set(h, list);
      }
  const port = servers[0]!.listener.port;
  return [...byHost]
    .sort((a, b) => compare(a[0], b[0]))
    .map(([host, routes]) => {
      const rules: AttachedRule[] = routes.flatMap((route) =>
        route.rules.map((rule, index) => ({ route, index, rule })),
      );
      return {
        name: `${host}:${port}`,
        domains: host === '*' ? ['*'] : [host, `${host}:*`],
        routes: buildGatewayRoutes(rules, port, env),
      };
    });
}

/** An API listener on RDS `name`, with the listener facts in its metadata (as gateway-translate.ts). */
function gatewayListener(
  name: string,
  vhosts: readonly VirtualHost[],
  facts: GatewayListenerFacts,
): Listener {
  return {
    ...httpListener(
      name,
      vhosts.some((v) => usesCors(v.routes)),
    ),
    address: { socket_address: { address: '0.0.0.0', port_value: facts.port } },
    metadata: { filter_metadata: { [GATEWAY_METADATA_FILTER]: toStruct(facts) } },
  } as Listener;
}

function clip(message: string): string {
  return message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE)}…` : message;
}
