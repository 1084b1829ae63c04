/**
 * Kubernetes Gateway API ingress in a cluster (issue 8 part 3), what the reconciler decides for
 * Gateways of class `ambit`, as Istio's automated deployment does for class `istio`. Pure.
 *
 * - Objects: waypoint/gateway-template.yaml rendered per Gateway as `<name>-ambit` (ServiceAccount,
 *   root-certificate ConfigMap, Deployment of `ambit gateway` with the pod labels it serves the
 *   Gateway by, Service of type LoadBalancer), the ports of the Service and the container filled in
 *   from the Gateway's HTTP and HTTPS listeners.
 * - Gateway status: Accepted and the listeners' conditions as the translation found them
 *   (translate/l7/gateway-api-translate.ts), Programmed once the Deployment has a ready replica, and
 *   the addresses of the LoadBalancer Service (`status.loadBalancer.ingress`), or until it has one,
 *   its host name `<name>-ambit.<ns>.svc.<domain>`.
 * - HTTPRoute status: one `parents` entry per parentRef naming an `ambit` Gateway, with Ambit's
 *   controllerName; the entries of other controllers are kept as they are.
 *
 * Every condition carries the object's generation; its lastTransitionTime changes only with its
 * status.
 */
import { buildSnapshot, decodeKubeObject } from '../files/kube-yaml.ts';
import type { HttpRouteEnv } from '../translate/l7/http-routes.ts';
import {
  AMBIT_GATEWAY_CLASS,
  AMBIT_GATEWAY_CONTROLLER,
  gatewayApiDeploymentName,
  gatewayApiLabels,
  type GatewayApiCondition,
  type GatewayApiGatewayStatus,
  type GatewayApiRouteParentStatus,
  type GatewayApiStatus,
  translateGatewayApi,
} from '../translate/l7/gateway-api-translate.ts';
import {
  canonicalJson,
  infrastructureMetadata,
  isObject,
  metadataOf,
  str,
  type KubeJson,
  type WaypointGateway,
} from './objects.ts';
import { readyReplicas } from './status.ts';
import {
  desiredObjects,
  renderTemplate,
  type DesiredWaypoints,
  type RenderOptions,
  type RenderResult,
} from './template.ts';

/** An ingress Gateway as the reconciler reads it: a waypoint Gateway's fields and its listeners. */
export interface IngressGateway extends WaypointGateway {
  readonly listeners: readonly { readonly name: string; readonly port: number; readonly protocol: string }[];
}

const SERVED = ['HTTP', 'HTTPS'];
const DNS_1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const MAX_LABEL_LENGTH = 63;

/** A Gateway of class `ambit` (with a name and uid), or undefined for any other. */
export function decodeIngressGateway(obj: KubeJson): IngressGateway | undefined {
  const meta = metadataOf(obj);
  const spec = isObject(obj.spec) ? obj.spec : {};
  if (str(spec.gatewayClassName) !== AMBIT_GATEWAY_CLASS) return undefined;
  const name = str(meta.name);
  const uid = str(meta.uid);
  if (!name || !uid) return undefined;
  const listeners = (Array.isArray(spec.listeners) ? spec.listeners : []).filter(isObject).map((l) => ({
    name: str(l.name),
    port: typeof l.port === 'number' ? l.port : 0,
    protocol: str(l.protocol),
  }));
  return {
    namespace: str(meta.namespace),
    name,
    uid,
    generation: typeof meta.generation === 'number' ? meta.generation : 0,
    className: AMBIT_GATEWAY_CLASS,
    infrastructure: infrastructureMetadata(obj),
    status: isObject(obj.status) ? obj.status : {},
    listeners,
  };
}

/** The listener ports the gateway serves (HTTP and HTTPS; the first listener of a port names it). */
export function ingressPorts(gw: IngressGateway): { name: string; port: number }[] {
  const ports = new Map<number, string>();
  for (const l of gw.listeners)
    if (SERVED.includes(l.protocol) && l.port >= 1 && l.port <= 65535 && !ports.has(l.port))
      ports.set(l.port, `${l.protocol.toLowerCase()}-${l.port}`);
  return [...ports].map(([port, name]) => ({ name, port })).sort((a, b) => a.port - b.port);
}

/** The template's objects for one ingress Gateway. */
export function renderIngressGateway(
  template: string,
  gw: IngressGateway,
  options: RenderOptions,
): RenderResult {
  const name = gatewayApiDeploymentName(gw.name);
  const errors: string[] = [];
  if (!DNS_1035_LABEL.test(name) || name.length > MAX_LABEL_LENGTH)
    errors.push(
      `metadata.name: "${gw.name}" cannot name the gateway's Service "${name}": it must be a DNS label (RFC 1035) of at most ${MAX_LABEL_LENGTH} characters starting with a letter`,
    );
  const ports = ingressPorts(gw);
  if (ports.length === 0) errors.push('spec.listeners: no HTTP or HTTPS listener, so nothing to deploy');
  if (errors.length > 0) return { ok: false, errors };
  const labels = gatewayApiLabels(gw);
  return renderTemplate(
    template,
    gw,
    {
      NAME: name,
      GATEWAY_NAME: gw.name,
      NAMESPACE: gw.namespace,
      IMAGE: options.image,
      SERVICE_ACCOUNT: name,
      GATEWAY_LABELS: Object.entries(labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
      CA_ROOT_CERT_BASE64: Buffer.from(options.caRootCertPem).toString('base64'),
    },
    options,
    (obj) => withPorts(obj, ports),
  );
}

/** The listener ports added to the Service's ports and the first container's. */
function withPorts(obj: KubeJson, ports: readonly { name: string; port: number }[]): KubeJson {
  const spec = isObject(obj.spec) ? obj.spec : undefined;
  if (obj.kind === 'Service' && spec) {
    const have = Array.isArray(spec.ports) ? spec.ports.filter(isObject) : [];
    const mine = ports.map((p) => ({ name: p.name, port: p.port, targetPort: p.port, protocol: 'TCP' }));
    return {
      ...obj,
      spec: { ...spec, ports: [...mine, ...have.filter((h) => !ports.some((p) => p.port === h.port))] },
    };
  }
  if (obj.kind === 'Deployment' && spec && isObject(spec.template) && isObject(spec.template.spec)) {
    const pod = spec.template.spec;
    const containers = Array.isArray(pod.containers) ? pod.containers.filter(isObject) : [];
    const [first, ...rest] = containers;
    if (!first) return obj;
    const have = Array.isArray(first.ports) ? first.ports.filter(isObject) : [];
    const mine = ports.map((p) => ({ name: p.name, containerPort: p.port, protocol: 'TCP' }));
    const container = {
      ...first,
      ports: [...mine, ...have.filter((h) => !ports.some((p) => p.port === h.containerPort))],
    };
    return {
      ...obj,
      spec: { ...spec, template: { ...spec.template, spec: { ...pod, containers: [container, ...rest] } } },
    };
  }
  return obj;
}

/** The desired objects of all ingress Gateways. */
export function desiredIngressGateways(
  template: string,
  gateways: readonly IngressGateway[],
  options: RenderOptions,
): DesiredWaypoints {
  return desiredObjects(gateways, (gw) => renderIngressGateway(template, gw, options));
}

export interface IngressObservation {
  readonly deployment?: KubeJson;
  readonly service?: KubeJson;
  /** Why its objects cannot be rendered. */
  readonly rejected?: readonly string[];
  /** Objects it needs that belong to someone else. */
  readonly conflicts?: readonly string[];
}

/** The status an ingress Gateway should have. */
export function ingressGatewayStatus(
  gw: IngressGateway,
  seen: IngressObservation,
  translated: GatewayApiGatewayStatus | undefined,
  options: { readonly clusterDomain: string; readonly nowMs: number },
): KubeJson {
  const name = gatewayApiDeploymentName(gw.name);
  const rejected = seen.rejected ?? [];
  const accepted: GatewayApiCondition =
    rejected.length > 0
      ? { type: 'Accepted', status: 'False', reason: 'Invalid', message: rejected.join('; ') }
      : (translated?.accepted ?? {
          type: 'Accepted',
          status: 'True',
          reason: 'Accepted',
          message: 'Resource accepted',
        });
  const programmed: GatewayApiCondition =
    accepted.status !== 'True'
      ? { type: 'Programmed', status: 'False', reason: 'Invalid', message: 'The Gateway is not accepted' }
      : seen.conflicts && seen.conflicts.length > 0
        ? { type: 'Programmed', status: 'False', reason: 'NoResources', message: seen.conflicts.join('; ') }
        : readyReplicas(seen.deployment) > 0
          ? {
              type: 'Programmed',
              status: 'True',
              reason: 'Programmed',
              message: `Resource programmed, assigned to service(s) ${name}.${gw.namespace}.svc.${options.clusterDomain}`,
            }
          : {
              type: 'Programmed',
              status: 'False',
              reason: 'NoResources',
              message: `Deployment ${gw.namespace}/${name} has no ready replica yet`,
            };
  const old = conditionsOf(gw.status);
  const others = old.filter((c) => c.type !== 'Accepted' && c.type !== 'Programmed');
  const oldListeners = new Map(
    (Array.isArray(gw.status.listeners) ? gw.status.listeners.filter(isObject) : []).map((l) => [
      str(l.name),
      l,
    ]),
  );
  const listeners = (translated?.listeners ?? []).map((l) => ({
    name: l.name,
    supportedKinds: l.supportedKinds,
    attachedRoutes: l.attachedRoutes,
    conditions: timed(
      l.conditions,
      conditionsOf(oldListeners.get(l.name) ?? {}),
      gw.generation,
      options.nowMs,
    ),
  }));
  return {
    ...gw.status,
    conditions: [...timed([accepted, programmed], old, gw.generation, options.nowMs), ...others],
    addresses:
      accepted.status === 'True'
        ? addresses(seen.service, `${name}.${gw.namespace}.svc.${options.clusterDomain}`)
        : [],
    ...(translated ? { listeners } : {}),
  };
}

/** The LoadBalancer's ingress addresses, else the Service's host name. */
function addresses(service: KubeJson | undefined, host: string): KubeJson[] {
  const status = service && isObject(service.status) ? service.status : {};
  const lb = isObject(status.loadBalancer) ? status.loadBalancer : {};
  const ingress = Array.isArray(lb.ingress) ? lb.ingress.filter(isObject) : [];
  const out: KubeJson[] = [];
  for (const i of ingress) {
    if (str(i.ip)) out.push({ type: 'IPAddress', value: str(i.ip) });
    else if (str(i.hostname)) out.push({ type: 'Hostname', value: str(i.hostname) });
  }
  return out.length > 0 ? out : [{ type: 'Hostname', value: host }];
}

/** An HTTPRoute's status with Ambit's parents replaced by `parents`, other controllers' kept. */
export function routeStatus(
  route: KubeJson,
  parents: readonly GatewayApiRouteParentStatus[],
  nowMs: number,
): KubeJson {
  const status = isObject(route.status) ? route.status : {};
  const generation =
    typeof metadataOf(route).generation === 'number' ? (metadataOf(route).generation as number) : 0;
  const old = (Array.isArray(status.parents) ? status.parents : []).filter(isObject);
  const ours = (p: KubeJson) => str(p.controllerName) === AMBIT_GATEWAY_CONTROLLER;
  const refKey = (r: KubeJson) => canonicalJson(r);
  const previous = new Map(
    old.filter(ours).map((p) => [refKey(isObject(p.parentRef) ? p.parentRef : {}), p]),
  );
  // A route no ambit Gateway concerns, now or before, keeps its status as it is.
  if (parents.length === 0 && !old.some(ours)) return status;
  const mine = parents.map((p) => {
    const parentRef = parentRefJson(p.parentRef);
    return {
      parentRef,
      controllerName: AMBIT_GATEWAY_CONTROLLER,
      conditions: timed(p.conditions, conditionsOf(previous.get(refKey(parentRef)) ?? {}), generation, nowMs),
    };
  });
  return { ...status, parents: [...old.filter((p) => !ours(p)), ...mine] };
}

/** A parentRef as the API writes it: group, kind, namespace, name, and sectionName/port when set. */
function parentRefJson(r: GatewayApiRouteParentStatus['parentRef']): KubeJson {
  return {
    group: r.group,
    kind: r.kind,
    namespace: r.namespace,
    name: r.name,
    ...(r.sectionName ? { sectionName: r.sectionName } : {}),
    ...(r.port !== undefined ? { port: r.port } : {}),
  };
}

function conditionsOf(o: KubeJson): KubeJson[] {
  return Array.isArray(o.conditions) ? o.conditions.filter(isObject) : [];
}

/** Conditions with observedGeneration and a lastTransitionTime kept while the status is unchanged. */
function timed(
  conditions: readonly GatewayApiCondition[],
  old: readonly KubeJson[],
  generation: number,
  nowMs: number,
): KubeJson[] {
  const now = new Date(nowMs).toISOString().replace(/\.\d{3}Z$/, 'Z');
  return conditions.map((c) => {
    const before = old.find((o) => o.type === c.type);
    return {
      type: c.type,
      status: c.status,
      reason: c.reason,
      message: c.message.length > 32_000 ? `${c.message.slice(0, 32_000)}…` : c.message,
      observedGeneration: generation,
      lastTransitionTime:
        before && before.status === c.status && typeof before.lastTransitionTime === 'string'
          ? before.lastTransitionTime
          : now,
    };
  });
}

/** What the API server holds that ingress status depends on, as listed (raw JSON). */
export interface GatewayApiObjects {
  readonly gateways: readonly KubeJson[];
  readonly httpRoutes: readonly KubeJson[];
  readonly namespaces: readonly KubeJson[];
  readonly services: readonly KubeJson[];
  readonly referenceGrants: readonly KubeJson[];
  /** Secrets (only their names are read); undefined when they cannot be listed (not checked then). */
  readonly secrets?: readonly KubeJson[];
}

/**
 * The Gateway and route status the translation finds for these objects, decoded as the controller's
 * sources decode them. A backend counts as found when its Service exists with that port.
 */
export function translateGatewayApiStatus(
  objects: GatewayApiObjects,
  clusterDomain: string,
): GatewayApiStatus {
  const decoded = [
    ...objects.gateways,
    ...objects.httpRoutes,
    ...objects.namespaces,
    ...objects.services,
    ...objects.referenceGrants,
  ].flatMap((o) => decodeKubeObject(o, 'api-server').objects);
  const { snapshot } = buildSnapshot(decoded);
  const services = new Map(snapshot.services.map((s) => [`${s.namespace}/${s.name}`, s]));
  const env: HttpRouteEnv = {
    report: () => undefined,
    service: (ref) => {
      const s = services.get(`${ref.namespace}/${ref.name}`);
      if (s === undefined)
        return { problem: `Service ${ref.namespace}/${ref.name} does not exist`, field: 'name' };
      if (!s.ports.some((p) => p.port === ref.port))
        return {
          problem: `Service ${ref.namespace}/${ref.name} has no port ${ref.port ?? '(none given)'}`,
          field: 'port',
        };
      return {
        name: `outbound|${ref.port}||${ref.name}.${ref.namespace}.svc.${clusterDomain}`,
        hashPolicy: undefined,
      };
    },
  };
  return translateGatewayApi(
    {
      gateways: snapshot.gateways,
      httpRoutes: snapshot.httpRoutes,
      namespaces: snapshot.namespaces,
      referenceGrants: snapshot.referenceGrants ?? [],
      ...(objects.secrets && {
        secrets: new Set(
          objects.secrets.map(
            (o) => `${str(metadataOf(o).namespace) || 'default'}/${str(metadataOf(o).name)}`,
          ),
        ),
      }),
    },
    env,
  ).status;
}

/** Checks the ingress gateway template before it is used, with a sample Gateway; its problems. */
export function checkGatewayTemplate(
  template: string,
  options: Omit<RenderOptions, 'blockOwnerDeletion'>,
): string[] {
  const sample: IngressGateway = {
    namespace: 'default',
    name: 'gateway',
    uid: '00000000-0000-0000-0000-000000000000',
    generation: 1,
    className: AMBIT_GATEWAY_CLASS,
    infrastructure: { labels: {}, annotations: {} },
    status: {},
    listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }],
  };
  const r = renderIngressGateway(template, sample, { ...options, blockOwnerDeletion: false });
  return r.ok ? [] : [...r.errors];
}

/**
 * The status of the GatewayClass `ambit` when it names Ambit's controller: Accepted (the Gateway
 * API's one required condition), or undefined for any other class (someone else's to report on).
 */
export function gatewayClassStatus(gatewayClass: KubeJson, nowMs: number): KubeJson | undefined {
  const spec = isObject(gatewayClass.spec) ? gatewayClass.spec : {};
  if (str(metadataOf(gatewayClass).name) !== AMBIT_GATEWAY_CLASS) return undefined;
  if (str(spec.controllerName) !== AMBIT_GATEWAY_CONTROLLER) return undefined;
  const status = isObject(gatewayClass.status) ? gatewayClass.status : {};
  const meta = metadataOf(gatewayClass);
  const generation = typeof meta.generation === 'number' ? meta.generation : 0;
  const old = conditionsOf(status);
  const accepted: GatewayApiCondition = {
    type: 'Accepted',
    status: 'True',
    reason: 'Accepted',
    message: `Handled by ${AMBIT_GATEWAY_CONTROLLER}: Ambit deploys an ingress gateway for each Gateway of this class`,
  };
  return {
    ...status,
    conditions: [...timed([accepted], old, generation, nowMs), ...old.filter((c) => c.type !== 'Accepted')],
  };
}
