/**
 * Decodes Kubernetes YAML (many documents per file, `kind: List` expanded) into the controller's
 * plain kube types, the same objects a cluster would hold. Pure: text in, objects and problems out.
 *
 * Every problem carries its file, line, object and field path. A bad object is skipped and the rest
 * kept, so one typo does not hide a whole directory. Fields we do not read are ignored, as the API
 * server's informers would hand them to us, except inside the spec of Istio's own kinds
 * (AuthorizationPolicy, PeerAuthentication, ServiceEntry): a misspelt security field (say
 * `notPrincipal`, or `portLevelMTLS`) silently widening a policy is worse than a rejection, and the
 * API server's strict field validation would refuse it too.
 *
 * VirtualService and DestinationRule are decoded and validated by the L7 translation's own decoder
 * (translate/l7/decode.ts, which reads plain data), and Gateway API HTTPRoute by its HTTPRoute
 * decoder (translate/l7/decode-http-route.ts); their field paths are mapped back to lines here.
 */
import { Composer, Document, isMap, isScalar, isSeq, LineCounter, Parser, type Node as YamlNode } from 'yaml';
import { join, YamlDecoder } from '../../core/xds/yaml-decoder.ts';
import { decodeHttpRoute } from '../translate/l7/decode-http-route.ts';
import { decodeL7Object, type Decoded } from '../translate/l7/decode.ts';
import { decodeIstioGateway } from '../translate/l7/gateway-decode.ts';
import type { GatewayHttpRoute } from '../translate/l7/http-route-types.ts';
import type { DestinationRule, VirtualService } from '../translate/l7/types.ts';
import type {
  AuthorizationPolicy,
  AuthzCondition,
  AuthzOperation,
  AuthzRule,
  AuthzSource,
  ContainerPort,
  EndpointSlice,
  EndpointSlicePort,
  Gateway,
  GatewayAddressEntry,
  GatewayAllowedRoutes,
  GatewayClass,
  GatewayListener,
  GatewayListenerTls,
  GatewayObjectReference,
  IstioGateway,
  KubeSnapshot,
  LabelSelector,
  Namespace,
  OwnerReference,
  PeerAuthentication,
  Pod,
  PolicyTargetRef,
  PortMtls,
  ReferenceGrant,
  Service,
  ServiceAccount,
  ServiceEntry,
  ServiceEntryPort,
  ServicePort,
  SliceEndpoint,
  StringMap,
  WorkloadEntry,
} from '../translate/kube-types.ts';

export interface KubeYamlProblem {
  /**
   * `error`: the object (or document) was skipped; `warning`: it was kept, with a consequence the
   * user must know about; `info`: a kind we do not read was ignored.
   */
  readonly severity: 'error' | 'warning' | 'info';
  readonly file: string;
  /** 1-based line in the file, 0 when unknown. */
  readonly line: number;
  /** The object's kind, namespace and name, each empty when it could not be read. */
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  /** Field path within the object, e.g. `spec.ports[0].targetPort`; empty for the whole object. */
  readonly path: string;
  readonly message: string;
}

export type KubeObject =
  | { readonly kind: 'Namespace'; readonly value: Namespace }
  | { readonly kind: 'Pod'; readonly value: Pod }
  | { readonly kind: 'Service'; readonly value: Service }
  | { readonly kind: 'EndpointSlice'; readonly value: EndpointSlice }
  | { readonly kind: 'ServiceAccount'; readonly value: ServiceAccount }
  | { readonly kind: 'ServiceEntry'; readonly value: ServiceEntry }
  | { readonly kind: 'AuthorizationPolicy'; readonly value: AuthorizationPolicy }
  | { readonly kind: 'PeerAuthentication'; readonly value: PeerAuthentication }
  | { readonly kind: 'Gateway'; readonly value: Gateway }
  | { readonly kind: 'GatewayClass'; readonly value: GatewayClass }
  | { readonly kind: 'VirtualService'; readonly value: VirtualService }
  | { readonly kind: 'DestinationRule'; readonly value: DestinationRule }
  | { readonly kind: 'HTTPRoute'; readonly value: GatewayHttpRoute }
  | { readonly kind: 'ReferenceGrant'; readonly value: ReferenceGrant }
  | { readonly kind: typeof ISTIO_GATEWAY; readonly value: IstioGateway };

/**
 * The kind under which an Istio (`networking.istio.io`) Gateway is held, told apart from a Gateway
 * API Gateway of the same name (kubectl's resource.group spelling).
 */
export const ISTIO_GATEWAY = 'Gateway.networking.istio.io';

/** The kinds without a namespace: their objects and problems have namespace ''. */
const CLUSTER_SCOPED: readonly string[] = ['Namespace', 'GatewayClass'];

/** An object's namespace, '' for a cluster-scoped kind. */
export function namespaceOf(object: KubeObject): string {
  return 'namespace' in object.value ? object.value.namespace : '';
}

/** One decoded object and where it came from. */
export interface DecodedObject {
  readonly file: string;
  readonly line: number;
  readonly object: KubeObject;
}

export interface DecodeResult {
  readonly objects: readonly DecodedObject[];
  readonly problems: readonly KubeYamlProblem[];
}

/** `file:line: Kind ns/name: path: message`, for logs and `ambit analyze`. */
export function formatKubeYamlProblem(p: KubeYamlProblem): string {
  const obj = p.kind ? ` ${p.kind} ${p.namespace ? `${p.namespace}/` : ''}${p.name}:` : '';
  return `${p.file}:${p.line}:${obj} ${p.path ? `${p.path}: ` : ''}${p.message}`;
}

const DEFAULT_NAMESPACE = 'default';
const ISTIO_SECURITY = ['security.istio.io/v1', 'security.istio.io/v1beta1'];
const ISTIO_NETWORKING = [
  'networking.istio.io/v1',
  'networking.istio.io/v1beta1',
  'networking.istio.io/v1alpha3',
];
const GATEWAY_API = ['gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1'];
/**
 * Kinds Istio users apply that the controller does not read yet (Gateway API routes other than
 * HTTPRoute, cross-namespace grants, VM entries, JWT rules): ignoring them is worth a clearer note.
 */
const LATER_KINDS: readonly string[] = [
  'GRPCRoute',
  'TCPRoute',
  'TLSRoute',
  'WorkloadEntry',
  'RequestAuthentication',
];
/** Decoded by the L7 translation's decoder. */
const L7_KINDS = ['VirtualService', 'DestinationRule'];

/**
 * Decodes every document of one file. Documents are parsed one at a time (what parseAllDocuments
 * does, without keeping them all): a file of 10,000 objects held as YAML trees at once left the
 * controller's heap at about 270 MB, which V8 kept after the trees were garbage; one document at a
 * time, 110–180 MB.
 */
export function decodeKubeYaml(text: string, file: string): DecodeResult {
  const lines = new LineCounter();
  const docs = new Composer({ uniqueKeys: true }).compose(new Parser(lines.addNewLine).parse(text));
  const objects: DecodedObject[] = [];
  const problems: KubeYamlProblem[] = [];
  const none = { kind: '', namespace: '', name: '' };
  for (const doc of docs) {
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        problems.push({
          severity: 'error',
          file,
          line: lines.linePos(e.pos[0]).line,
          ...none,
          path: '',
          message: `YAML syntax: ${e.message.split('\n')[0]!}`,
        });
      }
      continue;
    }
    const root = (doc.contents as YamlNode | null) ?? undefined;
    if (root === undefined || (isScalar(root) && root.value === null)) continue; // an empty document
    decodeTopLevel(root, doc, file, lines, objects, problems);
  }
  return { objects, problems };
}

/**
 * Decodes one object as the API server serves it (parsed JSON), with the same decoder as YAML so both
 * sources report the same problems. `source` takes the place of the file name; `line` is always 0.
 */
export function decodeKubeObject(obj: unknown, source: string): DecodeResult {
  // By default a value reached twice becomes a YAML alias, which the decoder does not follow;
  // parsed JSON never shares values, but a caller's object might.
  const doc = new Document(obj, { aliasDuplicateObjects: false });
  const root = doc.contents;
  const objects: DecodedObject[] = [];
  const problems: KubeYamlProblem[] = [];
  if (root === null) {
    const id = { kind: '', namespace: '', name: '' };
    problems.push(problem(source, id, { path: '', line: 0, message: 'must be an object' }));
  } else decodeObject(root, doc, source, new LineCounter(), objects, problems);
  return { objects, problems };
}

function decodeTopLevel(
  root: YamlNode,
  doc: Document,
  file: string,
  lines: LineCounter,
  objects: DecodedObject[],
  problems: KubeYamlProblem[],
): void {
  const d = new YamlDecoder(lines);
  const top = fields(d, root, '');
  const kind = d.string(top.get('kind'), 'kind');
  if (d.errors.length === 0 && (kind === 'List' || (kind.endsWith('List') && top.has('items')))) {
    const items = d.list(top.get('items'), 'items');
    if (d.errors.length === 0) {
      for (const item of items) decodeObject(item, doc, file, lines, objects, problems);
      return;
    }
  }
  if (d.errors.length > 0) {
    problems.push(...d.errors.map((e) => problem(file, { kind: '', namespace: '', name: '' }, e)));
    return;
  }
  decodeObject(root, doc, file, lines, objects, problems);
}

interface ObjectId {
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
}

function problem(
  file: string,
  id: ObjectId,
  e: { path: string; line: number; message: string },
  severity: 'error' | 'info' = 'error',
): KubeYamlProblem {
  return { severity, file, line: e.line, ...id, path: e.path, message: e.message };
}

/** `doc` is the node's document: the L7 decoder reads plain data, aliases resolved through it. */
function decodeObject(
  node: YamlNode,
  doc: Document,
  file: string,
  lines: LineCounter,
  objects: DecodedObject[],
  problems: KubeYamlProblem[],
): void {
  const d = new YamlDecoder(lines);
  const line = node.range ? lines.linePos(node.range[0]).line : 0;
  const top = fields(d, node, '');
  const meta = fields(d, top.get('metadata'), 'metadata');
  const apiVersion = d.string(top.get('apiVersion'), 'apiVersion');
  const kind = d.string(top.get('kind'), 'kind');
  const name = d.string(meta.get('name'), 'metadata.name');
  const id = { kind, namespace: d.string(meta.get('namespace'), 'metadata.namespace'), name };
  if (d.errors.length > 0) {
    problems.push(...d.errors.map((e) => problem(file, id, e)));
    return;
  }
  if (!apiVersion || !kind) {
    problems.push(problem(file, id, { path: '', line, message: 'apiVersion and kind are required' }));
    return;
  }
  if (ISTIO_NETWORKING.includes(apiVersion) && L7_KINDS.includes(kind)) {
    decodeL7(node, doc, file, lines, line, objects, problems, decodeL7Object);
    return;
  }
  if (ISTIO_NETWORKING.includes(apiVersion) && kind === 'Gateway') {
    decodeL7(node, doc, file, lines, line, objects, problems, (obj) => {
      const d = decodeIstioGateway(obj);
      return { value: d.value && { kind: ISTIO_GATEWAY, value: d.value }, problems: d.problems };
    });
    return;
  }
  if (GATEWAY_API.includes(apiVersion) && kind === 'HTTPRoute') {
    decodeL7(node, doc, file, lines, line, objects, problems, (obj) => {
      const d = decodeHttpRoute(obj);
      return { value: d.value && { kind: 'HTTPRoute', value: d.value }, problems: d.problems };
    });
    return;
  }
  // Gateway certificates: read apart from the snapshot (file-source.ts, controller/xds/secrets.ts).
  if (apiVersion === 'v1' && kind === 'Secret') return;
  const decoded = decodeKind(d, apiVersion, kind, top, meta);
  if (decoded === 'unknown') {
    const later = LATER_KINDS.includes(kind) ? ' yet' : '';
    problems.push(
      problem(
        file,
        id,
        { path: '', line, message: `${apiVersion} ${kind} is not read by the controller${later}; ignored` },
        'info',
      ),
    );
    return;
  }
  if (!name) d.error(top.get('metadata') ?? node, 'metadata.name', 'is required');
  if (d.errors.length > 0 || decoded === undefined) {
    const ns = CLUSTER_SCOPED.includes(kind) ? '' : id.namespace || DEFAULT_NAMESPACE;
    problems.push(...d.errors.map((e) => problem(file, { ...id, namespace: ns }, e)));
    return;
  }
  objects.push({ file, line, object: decoded });
}

/**
 * A VirtualService, DestinationRule or HTTPRoute, by the L7 decoder `decode`. A rejected object is
 * reported with its errors only: its warnings would say it was applied.
 */
function decodeL7(
  node: YamlNode,
  doc: Document,
  file: string,
  lines: LineCounter,
  line: number,
  objects: DecodedObject[],
  problems: KubeYamlProblem[],
  decode: (obj: unknown) => Decoded<KubeObject>,
): void {
  const decoded = decode(node.toJS(doc));
  for (const p of decoded.problems) {
    if (decoded.value === undefined && p.severity !== 'error') continue;
    problems.push({
      severity: p.severity,
      file,
      line: lineAt(node, p.path, lines) || line,
      kind: p.kind,
      namespace: p.namespace,
      name: p.name,
      path: p.path,
      message: p.message,
    });
  }
  if (decoded.value) objects.push({ file, line, object: decoded.value });
}

/** One step of a field path as the L7 decoder writes them: `.key`, `[2]` or `["x.y"]`. */
const PATH_STEP = /\.?([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]/y;

/**
 * The line of the node a field path names, or of the deepest part of it that exists (a missing
 * field is reported where its parent is); 0 when unknown.
 */
function lineAt(root: YamlNode, path: string, lines: LineCounter): number {
  let node: YamlNode | undefined = root;
  let found: YamlNode = root;
  PATH_STEP.lastIndex = 0;
  while (node !== undefined && PATH_STEP.lastIndex < path.length) {
    const m = PATH_STEP.exec(path);
    if (!m) break;
    const [, field, index, quoted] = m;
    if (index !== undefined)
      node = isSeq(node) ? (node.items[Number(index)] as YamlNode | undefined) : undefined;
    else {
      const key = field ?? (JSON.parse(quoted!) as string);
      const pair = isMap(node)
        ? node.items.find((p) => isScalar(p.key) && String(p.key.value) === key)
        : undefined;
      node = (pair?.value ?? pair?.key ?? undefined) as YamlNode | undefined;
    }
    if (node) found = node;
  }
  const pos = found.range?.[0];
  return pos === undefined ? 0 : lines.linePos(pos).line;
}

function decodeKind(
  d: YamlDecoder,
  apiVersion: string,
  kind: string,
  top: Map<string, YamlNode>,
  meta: Map<string, YamlNode>,
): KubeObject | 'unknown' | undefined {
  const name = d.string(meta.get('name'), 'metadata.name');
  const namespace = d.string(meta.get('namespace'), 'metadata.namespace') || DEFAULT_NAMESPACE;
  const labels = stringMap(d, meta.get('labels'), 'metadata.labels');
  const annotations = stringMap(d, meta.get('annotations'), 'metadata.annotations');
  if (apiVersion === 'v1') {
    switch (kind) {
      case 'Namespace':
        return { kind, value: { name, labels } };
      case 'ServiceAccount':
        return { kind, value: { namespace, name } };
      case 'Pod':
        return { kind, value: pod(d, top, meta, { namespace, name, labels, annotations }) };
      case 'Service':
        return { kind, value: service(d, top, { namespace, name, labels }) };
    }
  }
  if (apiVersion === 'discovery.k8s.io/v1' && kind === 'EndpointSlice') {
    return { kind, value: endpointSlice(d, top, { namespace, name, labels }) };
  }
  if (ISTIO_SECURITY.includes(apiVersion) && kind === 'AuthorizationPolicy') {
    return { kind, value: authorizationPolicy(d, top.get('spec'), { namespace, name, annotations }) };
  }
  if (ISTIO_SECURITY.includes(apiVersion) && kind === 'PeerAuthentication') {
    const creationTimestamp = d.string(meta.get('creationTimestamp'), 'metadata.creationTimestamp');
    return { kind, value: peerAuthentication(d, top.get('spec'), { namespace, name, creationTimestamp }) };
  }
  if (ISTIO_NETWORKING.includes(apiVersion) && kind === 'ServiceEntry') {
    return { kind, value: serviceEntry(d, top.get('spec'), { namespace, name, labels, annotations }) };
  }
  if (GATEWAY_API.includes(apiVersion) && kind === 'Gateway') {
    const creationTimestamp = d.string(meta.get('creationTimestamp'), 'metadata.creationTimestamp');
    const base = { namespace, name, labels, annotations, ...(creationTimestamp && { creationTimestamp }) };
    return { kind, value: gateway(d, top, base) };
  }
  if (GATEWAY_API.includes(apiVersion) && kind === 'GatewayClass') {
    return { kind, value: { name, labels } };
  }
  if (GATEWAY_API.includes(apiVersion) && kind === 'ReferenceGrant') {
    return { kind, value: referenceGrant(d, top.get('spec'), { namespace, name }) };
  }
  return 'unknown';
}

function pod(
  d: YamlDecoder,
  top: Map<string, YamlNode>,
  meta: Map<string, YamlNode>,
  base: { namespace: string; name: string; labels: StringMap; annotations: StringMap },
): Pod {
  const spec = fields(d, top.get('spec'), 'spec');
  const status = fields(d, top.get('status'), 'status');
  const ownerReferences = d
    .list(meta.get('ownerReferences'), 'metadata.ownerReferences')
    .map((n, i): OwnerReference => {
      const p = join('metadata.ownerReferences', i);
      const f = fields(d, n, p);
      return {
        apiVersion: d.string(f.get('apiVersion'), join(p, 'apiVersion')),
        kind: d.requiredString(f.get('kind'), join(p, 'kind'), n),
        name: d.requiredString(f.get('name'), join(p, 'name'), n),
        controller: d.bool(f.get('controller'), join(p, 'controller'), false),
      };
    });
  const containerPorts: ContainerPort[] = [];
  d.list(spec.get('containers'), 'spec.containers').forEach((c, i) => {
    const cp = join('spec.containers', i);
    const cf = fields(d, c, cp);
    d.list(cf.get('ports'), join(cp, 'ports')).forEach((n, j) => {
      const p = join(join(cp, 'ports'), j);
      const f = fields(d, n, p);
      containerPorts.push({
        name: d.string(f.get('name'), join(p, 'name')),
        containerPort: integer(d, f.get('containerPort'), join(p, 'containerPort'), n),
        protocol: d.string(f.get('protocol'), join(p, 'protocol'), 'TCP'),
      });
    });
  });
  // status.podIPs is authoritative when present (dual stack); status.podIP is its first entry.
  const podIPs = d.list(status.get('podIPs'), 'status.podIPs').map((n, i) => {
    const p = join('status.podIPs', i);
    return d.requiredString(fields(d, n, p).get('ip'), join(p, 'ip'), n);
  });
  const podIP = d.string(status.get('podIP'), 'status.podIP');
  if (podIPs.length === 0 && podIP) podIPs.push(podIP);
  let ready: boolean | undefined;
  d.list(status.get('conditions'), 'status.conditions').forEach((n, i) => {
    const p = join('status.conditions', i);
    const f = fields(d, n, p);
    if (d.string(f.get('type'), join(p, 'type')) === 'Ready')
      ready = d.string(f.get('status'), join(p, 'status')) === 'True';
  });
  return {
    ...base,
    uid: d.string(meta.get('uid'), 'metadata.uid'),
    nodeName: d.string(spec.get('nodeName'), 'spec.nodeName'),
    // `serviceAccount` is the deprecated alias the API server still fills in.
    serviceAccountName:
      d.string(spec.get('serviceAccountName'), 'spec.serviceAccountName') ||
      d.string(spec.get('serviceAccount'), 'spec.serviceAccount'),
    podIPs,
    phase: d.string(status.get('phase'), 'status.phase') || undefined,
    ready,
    ownerReferences,
    hostNetwork: d.bool(spec.get('hostNetwork'), 'spec.hostNetwork', false),
    containerPorts,
  };
}

function service(
  d: YamlDecoder,
  top: Map<string, YamlNode>,
  base: { namespace: string; name: string; labels: StringMap },
): Service {
  const spec = fields(d, top.get('spec'), 'spec');
  const clusterIPs = stringList(d, spec.get('clusterIPs'), 'spec.clusterIPs');
  const clusterIP = d.string(spec.get('clusterIP'), 'spec.clusterIP');
  if (clusterIPs.length === 0 && clusterIP) clusterIPs.push(clusterIP);
  const ports = d.list(spec.get('ports'), 'spec.ports').map((n, i): ServicePort => {
    const p = join('spec.ports', i);
    const f = fields(d, n, p);
    return {
      name: d.string(f.get('name'), join(p, 'name')),
      port: integer(d, f.get('port'), join(p, 'port'), n),
      targetPort: intOrString(d, f.get('targetPort'), join(p, 'targetPort')),
      protocol: d.string(f.get('protocol'), join(p, 'protocol'), 'TCP'),
      appProtocol: d.string(f.get('appProtocol'), join(p, 'appProtocol')),
    };
  });
  return {
    ...base,
    type: d.string(spec.get('type'), 'spec.type', 'ClusterIP'),
    selector: stringMap(d, spec.get('selector'), 'spec.selector'),
    clusterIPs,
    ports,
  };
}

const SPEC_FIELDS = ['selector', 'targetRef', 'targetRefs', 'action', 'provider', 'rules'];
const SOURCE_FIELDS = [
  'principals',
  'notPrincipals',
  'requestPrincipals',
  'notRequestPrincipals',
  'namespaces',
  'notNamespaces',
  'serviceAccounts',
  'notServiceAccounts',
  'ipBlocks',
  'notIpBlocks',
  'remoteIpBlocks',
  'notRemoteIpBlocks',
] as const;
const OPERATION_FIELDS = [
  'hosts',
  'notHosts',
  'ports',
  'notPorts',
  'methods',
  'notMethods',
  'paths',
  'notPaths',
] as const;

function authorizationPolicy(
  d: YamlDecoder,
  node: YamlNode | undefined,
  base: { namespace: string; name: string; annotations: StringMap },
): AuthorizationPolicy {
  const spec = strictFields(d, node, 'spec', SPEC_FIELDS);
  const targetRefs = [
    ...(isNull(spec.get('targetRef')) ? [] : [targetRef(d, spec.get('targetRef'), 'spec.targetRef')]),
    ...d
      .list(spec.get('targetRefs'), 'spec.targetRefs')
      .map((n, i) => targetRef(d, n, join('spec.targetRefs', i))),
  ];
  // The provider only matters to CUSTOM, which ztunnel does not enforce; check its shape only.
  strictFields(d, spec.get('provider'), 'spec.provider', ['name']);
  const rules = d.list(spec.get('rules'), 'spec.rules').map((n, i): AuthzRule => {
    const p = join('spec.rules', i);
    const f = strictFields(d, n, p, ['from', 'to', 'when']);
    return {
      from: d.list(f.get('from'), join(p, 'from')).map((e, j) => {
        const ep = join(join(p, 'from'), j);
        const s = strictFields(d, e, ep, ['source']).get('source');
        return isNull(s) ? undefined : source(d, s, join(ep, 'source'));
      }),
      to: d.list(f.get('to'), join(p, 'to')).map((e, j) => {
        const ep = join(join(p, 'to'), j);
        const o = strictFields(d, e, ep, ['operation']).get('operation');
        return isNull(o) ? undefined : operation(d, o, join(ep, 'operation'));
      }),
      when: d.list(f.get('when'), join(p, 'when')).map((e, j): AuthzCondition => {
        const ep = join(join(p, 'when'), j);
        const c = strictFields(d, e, ep, ['key', 'values', 'notValues']);
        return {
          key: d.string(c.get('key'), join(ep, 'key')),
          values: stringList(d, c.get('values'), join(ep, 'values')),
          notValues: stringList(d, c.get('notValues'), join(ep, 'notValues')),
        };
      }),
    };
  });
  return {
    ...base,
    selector: selector(d, spec.get('selector')),
    targetRefs,
    action: d.string(spec.get('action'), 'spec.action'),
    rules,
  };
}

function targetRef(d: YamlDecoder, node: YamlNode | undefined, path: string): PolicyTargetRef {
  const f = strictFields(d, node, path, ['group', 'kind', 'name', 'namespace']);
  return {
    group: d.string(f.get('group'), join(path, 'group')),
    kind: d.requiredString(f.get('kind'), join(path, 'kind'), node),
    name: d.requiredString(f.get('name'), join(path, 'name'), node),
    namespace: d.string(f.get('namespace'), join(path, 'namespace')),
  };
}

function source(d: YamlDecoder, node: YamlNode, path: string): AuthzSource {
  const f = strictFields(d, node, path, SOURCE_FIELDS);
  const out = Object.fromEntries(
    SOURCE_FIELDS.map((k) => [k, stringList(d, f.get(k), join(path, k))] as const),
  );
  return out as Record<(typeof SOURCE_FIELDS)[number], string[]>;
}

function operation(d: YamlDecoder, node: YamlNode, path: string): AuthzOperation {
  const f = strictFields(d, node, path, OPERATION_FIELDS);
  const out = Object.fromEntries(
    OPERATION_FIELDS.map((k) => [k, stringList(d, f.get(k), join(path, k))] as const),
  );
  return out as Record<(typeof OPERATION_FIELDS)[number], string[]>;
}

function endpointSlice(
  d: YamlDecoder,
  top: Map<string, YamlNode>,
  base: { namespace: string; name: string; labels: StringMap },
): EndpointSlice {
  // An EndpointSlice has no spec: addressType, endpoints and ports sit at the top level.
  const endpoints = d.list(top.get('endpoints'), 'endpoints').map((n, i): SliceEndpoint => {
    const p = join('endpoints', i);
    const f = fields(d, n, p);
    const conditions = fields(d, f.get('conditions'), join(p, 'conditions'));
    const ready = conditions.get('ready');
    const ref = f.get('targetRef');
    let targetRef: SliceEndpoint['targetRef'];
    if (!isNull(ref)) {
      const rp = join(p, 'targetRef');
      const r = fields(d, ref, rp);
      targetRef = {
        kind: d.string(r.get('kind'), join(rp, 'kind')),
        namespace: d.string(r.get('namespace'), join(rp, 'namespace')),
        name: d.string(r.get('name'), join(rp, 'name')),
        uid: d.string(r.get('uid'), join(rp, 'uid')),
      };
    }
    return {
      addresses: stringList(d, f.get('addresses'), join(p, 'addresses')),
      ready: isNull(ready) ? undefined : d.bool(ready, join(join(p, 'conditions'), 'ready'), true),
      targetRef,
      nodeName: d.string(f.get('nodeName'), join(p, 'nodeName')),
    };
  });
  const ports = d.list(top.get('ports'), 'ports').map((n, i): EndpointSlicePort => {
    const p = join('ports', i);
    const f = fields(d, n, p);
    return {
      name: d.string(f.get('name'), join(p, 'name')),
      port: optionalInteger(d, f.get('port'), join(p, 'port')),
      protocol: d.string(f.get('protocol'), join(p, 'protocol'), 'TCP'),
      appProtocol: d.string(f.get('appProtocol'), join(p, 'appProtocol')),
    };
  });
  return { ...base, addressType: d.string(top.get('addressType'), 'addressType'), endpoints, ports };
}

const PEER_AUTHENTICATION_FIELDS = ['selector', 'mtls', 'portLevelMtls'];

function peerAuthentication(
  d: YamlDecoder,
  node: YamlNode | undefined,
  base: { namespace: string; name: string; creationTimestamp: string },
): PeerAuthentication {
  const spec = strictFields(d, node, 'spec', PEER_AUTHENTICATION_FIELDS);
  const mode = (n: YamlNode | undefined, path: string) =>
    d.string(strictFields(d, n, path, ['mode']).get('mode'), join(path, 'mode'));
  const sel = selector(d, spec.get('selector'));
  const topMode = mode(spec.get('mtls'), 'spec.mtls');
  const portLevelMtls: PortMtls[] = [];
  for (const [key, value, keyNode] of d.entries(spec.get('portLevelMtls'), 'spec.portLevelMtls')) {
    const path = join('spec.portLevelMtls', key);
    // Map keys are port numbers: YAML reads `8080:` as a number, JSON carries `"8080"`.
    if (!/^\d{1,10}$/.test(key)) {
      d.error(keyNode, path, 'the key must be a port number');
      continue;
    }
    portLevelMtls.push({ port: Number(key), mode: mode(value, path) });
  }
  return { ...base, selector: sel, mode: topMode, portLevelMtls };
}

const SERVICE_ENTRY_FIELDS = [
  'hosts',
  'addresses',
  'ports',
  'location',
  'resolution',
  'endpoints',
  'workloadSelector',
  'exportTo',
  'subjectAltNames',
];
const SERVICE_ENTRY_PORT_FIELDS = ['number', 'protocol', 'name', 'targetPort'];
const WORKLOAD_ENTRY_FIELDS = [
  'address',
  'ports',
  'labels',
  'network',
  'locality',
  'weight',
  'serviceAccount',
];
const UINT32_MAX = 2 ** 32 - 1;

function serviceEntry(
  d: YamlDecoder,
  node: YamlNode | undefined,
  base: { namespace: string; name: string; labels: StringMap; annotations: StringMap },
): ServiceEntry {
  const spec = strictFields(d, node, 'spec', SERVICE_ENTRY_FIELDS);
  const ports = d.list(spec.get('ports'), 'spec.ports').map((n, i): ServiceEntryPort => {
    const p = join('spec.ports', i);
    const f = strictFields(d, n, p, SERVICE_ENTRY_PORT_FIELDS);
    return {
      number: integer(d, f.get('number'), join(p, 'number'), n),
      protocol: d.string(f.get('protocol'), join(p, 'protocol')),
      name: d.string(f.get('name'), join(p, 'name')),
      targetPort: optionalInteger(d, f.get('targetPort'), join(p, 'targetPort')),
    };
  });
  const endpoints = d.list(spec.get('endpoints'), 'spec.endpoints').map((n, i): WorkloadEntry => {
    const p = join('spec.endpoints', i);
    const f = strictFields(d, n, p, WORKLOAD_ENTRY_FIELDS);
    const portsPath = join(p, 'ports');
    const weight = f.get('weight');
    return {
      address: d.string(f.get('address'), join(p, 'address')),
      ports: Object.fromEntries(
        d
          .entries(f.get('ports'), portsPath)
          .map(([k, v]) => [k, d.integer(v, join(portsPath, k), 0, UINT32_MAX, 0)] as const),
      ),
      labels: stringMap(d, f.get('labels'), join(p, 'labels')),
      network: d.string(f.get('network'), join(p, 'network')),
      locality: d.string(f.get('locality'), join(p, 'locality')),
      weight: isNull(weight) ? undefined : d.integer(weight, join(p, 'weight'), 0, UINT32_MAX, 0),
      serviceAccount: d.string(f.get('serviceAccount'), join(p, 'serviceAccount')),
    };
  });
  const ws = spec.get('workloadSelector');
  // exportTo is not used in ambient (istio-api.md §3.6); its shape is still checked.
  stringList(d, spec.get('exportTo'), 'spec.exportTo');
  return {
    ...base,
    hosts: stringList(d, spec.get('hosts'), 'spec.hosts'),
    addresses: stringList(d, spec.get('addresses'), 'spec.addresses'),
    ports,
    location: d.string(spec.get('location'), 'spec.location'),
    resolution: d.string(spec.get('resolution'), 'spec.resolution'),
    endpoints,
    workloadSelector: isNull(ws)
      ? undefined
      : stringMap(
          d,
          strictFields(d, ws, 'spec.workloadSelector', ['labels']).get('labels'),
          'spec.workloadSelector.labels',
        ),
    subjectAltNames: stringList(d, spec.get('subjectAltNames'), 'spec.subjectAltNames'),
  };
}

function gateway(
  d: YamlDecoder,
  top: Map<string, YamlNode>,
  base: {
    namespace: string;
    name: string;
    labels: StringMap;
    annotations: StringMap;
    creationTimestamp?: string;
  },
): Gateway {
  const spec = fields(d, top.get('spec'), 'spec');
  const status = fields(d, top.get('status'), 'status');
  const gatewayClassName = d.string(spec.get('gatewayClassName'), 'spec.gatewayClassName');
  const listeners = d.list(spec.get('listeners'), 'spec.listeners').map((n, i): GatewayListener => {
    const p = join('spec.listeners', i);
    const f = fields(d, n, p);
    return {
      name: d.string(f.get('name'), join(p, 'name')),
      hostname: d.string(f.get('hostname'), join(p, 'hostname')),
      port: optionalInteger(d, f.get('port'), join(p, 'port')) ?? 0,
      protocol: d.string(f.get('protocol'), join(p, 'protocol')),
      ...(isNull(f.get('tls')) ? {} : { tls: listenerTls(d, f.get('tls'), join(p, 'tls')) }),
      ...(isNull(f.get('allowedRoutes'))
        ? {}
        : { allowedRoutes: allowedRoutes(d, f.get('allowedRoutes'), join(p, 'allowedRoutes')) }),
    };
  });
  const addresses = (node: YamlNode | undefined, path: string) =>
    d.list(node, path).map((n, i): GatewayAddressEntry => {
      const p = join(path, i);
      const f = fields(d, n, p);
      return {
        type: d.string(f.get('type'), join(p, 'type')),
        value: d.string(f.get('value'), join(p, 'value')),
      };
    });
  return {
    ...base,
    gatewayClassName,
    listeners,
    addresses: addresses(spec.get('addresses'), 'spec.addresses'),
    statusAddresses: addresses(status.get('addresses'), 'status.addresses'),
  };
}

function objectReference(d: YamlDecoder, node: YamlNode | undefined, path: string): GatewayObjectReference {
  const f = fields(d, node, path);
  return {
    group: d.string(f.get('group'), join(path, 'group')),
    kind: d.string(f.get('kind'), join(path, 'kind')),
    namespace: d.string(f.get('namespace'), join(path, 'namespace')),
    name: d.requiredString(f.get('name'), join(path, 'name'), node),
  };
}

function listenerTls(d: YamlDecoder, node: YamlNode | undefined, path: string): GatewayListenerTls {
  const f = fields(d, node, path);
  const refs = join(path, 'certificateRefs');
  return {
    mode: d.string(f.get('mode'), join(path, 'mode')),
    certificateRefs: d
      .list(f.get('certificateRefs'), refs)
      .map((n, i) => objectReference(d, n, join(refs, i))),
    options: stringMap(d, f.get('options'), join(path, 'options')),
  };
}

function labelSelector(d: YamlDecoder, node: YamlNode, path: string): LabelSelector {
  const f = fields(d, node, path);
  const exprs = join(path, 'matchExpressions');
  return {
    matchLabels: stringMap(d, f.get('matchLabels'), join(path, 'matchLabels')),
    matchExpressions: d.list(f.get('matchExpressions'), exprs).map((n, i) => {
      const p = join(exprs, i);
      const e = fields(d, n, p);
      return {
        key: d.requiredString(e.get('key'), join(p, 'key'), n),
        operator: d.requiredString(e.get('operator'), join(p, 'operator'), n),
        values: stringList(d, e.get('values'), join(p, 'values')),
      };
    }),
  };
}

function allowedRoutes(d: YamlDecoder, node: YamlNode | undefined, path: string): GatewayAllowedRoutes {
  const f = fields(d, node, path);
  const ns = fields(d, f.get('namespaces'), join(path, 'namespaces'));
  const sel = ns.get('selector');
  const kinds = join(path, 'kinds');
  return {
    from: d.string(ns.get('from'), join(path, 'namespaces.from')),
    selector: isNull(sel) ? undefined : labelSelector(d, sel, join(path, 'namespaces.selector')),
    kinds: d.list(f.get('kinds'), kinds).map((n, i) => {
      const k = fields(d, n, join(kinds, i));
      return {
        group: d.string(k.get('group'), join(join(kinds, i), 'group')),
        kind: d.requiredString(k.get('kind'), join(join(kinds, i), 'kind'), n),
      };
    }),
  };
}

function referenceGrant(
  d: YamlDecoder,
  node: YamlNode | undefined,
  base: { namespace: string; name: string },
): ReferenceGrant {
  const spec = fields(d, node, 'spec');
  const from = d.list(spec.get('from'), 'spec.from').map((n, i) => {
    const p = join('spec.from', i);
    const f = fields(d, n, p);
    return {
      group: d.string(f.get('group'), join(p, 'group')),
      kind: d.requiredString(f.get('kind'), join(p, 'kind'), n),
      namespace: d.requiredString(f.get('namespace'), join(p, 'namespace'), n),
    };
  });
  const to = d.list(spec.get('to'), 'spec.to').map((n, i) => {
    const p = join('spec.to', i);
    const f = fields(d, n, p);
    return {
      group: d.string(f.get('group'), join(p, 'group')),
      kind: d.requiredString(f.get('kind'), join(p, 'kind'), n),
      name: d.string(f.get('name'), join(p, 'name')),
    };
  });
  return { ...base, from, to };
}

/** `spec.selector.matchLabels` of an Istio policy; undefined when there is no selector. */
function selector(d: YamlDecoder, node: YamlNode | undefined): StringMap | undefined {
  if (isNull(node)) return undefined;
  return stringMap(
    d,
    strictFields(d, node, 'spec.selector', ['matchLabels']).get('matchLabels'),
    'spec.selector.matchLabels',
  );
}

// ---- small readers on top of YamlDecoder ----

function isNull(node: YamlNode | undefined): node is undefined {
  return node === undefined || (isScalar(node) && node.value === null);
}

/** A mapping whose unknown keys are ignored; absent or null is an empty mapping. */
function fields(d: YamlDecoder, node: YamlNode | undefined, path: string): Map<string, YamlNode> {
  return new Map(d.entries(node, path).map(([k, v]) => [k, v]));
}

/** A mapping whose unknown keys are errors; absent or null is an empty mapping. */
function strictFields(
  d: YamlDecoder,
  node: YamlNode | undefined,
  path: string,
  known: readonly string[],
): Map<string, YamlNode> {
  if (isNull(node)) return new Map<string, YamlNode>();
  return d.map(node, path, known) ?? new Map<string, YamlNode>();
}

/** Labels, annotations, selectors: string values only, as the API server requires. */
function stringMap(d: YamlDecoder, node: YamlNode | undefined, path: string): StringMap {
  return Object.fromEntries(d.entries(node, path).map(([k, v]) => [k, d.string(v, join(path, k))]));
}

/** A list of strings; integers are accepted and kept as text (Istio's ports are strings). */
function stringList(d: YamlDecoder, node: YamlNode | undefined, path: string): string[] {
  return d.list(node, path).map((n, i) => {
    if (isScalar(n) && typeof n.value === 'number' && Number.isInteger(n.value)) return String(n.value);
    return d.string(n, join(path, i));
  });
}

/** A required integer; its range is the translation's business. */
function integer(d: YamlDecoder, node: YamlNode | undefined, path: string, parent: YamlNode): number {
  if (node === undefined) {
    d.error(parent, path, 'is required');
    return 0;
  }
  return d.integer(node, path, -(2 ** 31), 2 ** 31 - 1, 0);
}

/** An optional integer; its range is the translation's business. */
function optionalInteger(d: YamlDecoder, node: YamlNode | undefined, path: string): number | undefined {
  if (isNull(node)) return undefined;
  return d.integer(node, path, -(2 ** 31), UINT32_MAX, 0);
}

/** Kubernetes IntOrString; a string of digits is taken as the number it spells. */
function intOrString(d: YamlDecoder, node: YamlNode | undefined, path: string): number | string | undefined {
  if (isNull(node)) return undefined;
  const v = isScalar(node) ? node.value : undefined;
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'string') return /^\d+$/.test(v) ? Number(v) : v;
  d.error(node, path, 'must be an integer or a port name');
  return undefined;
}

// ---- merging files into one snapshot ----

/**
 * The objects of many files as one snapshot. The first definition of an object (by kind, namespace
 * and name, in the order given) wins; later ones are reported and skipped.
 */
export function buildSnapshot(objects: readonly DecodedObject[]): {
  snapshot: KubeSnapshot;
  problems: KubeYamlProblem[];
} {
  const seen = new Map<string, DecodedObject>();
  const problems: KubeYamlProblem[] = [];
  const out = {
    namespaces: [] as Namespace[],
    pods: [] as Pod[],
    services: [] as Service[],
    endpointSlices: [] as EndpointSlice[],
    serviceAccounts: [] as ServiceAccount[],
    serviceEntries: [] as ServiceEntry[],
    authorizationPolicies: [] as AuthorizationPolicy[],
    peerAuthentications: [] as PeerAuthentication[],
    gateways: [] as Gateway[],
    gatewayClasses: [] as GatewayClass[],
    virtualServices: [] as VirtualService[],
    destinationRules: [] as DestinationRule[],
    httpRoutes: [] as GatewayHttpRoute[],
    istioGateways: [] as IstioGateway[],
    referenceGrants: [] as ReferenceGrant[],
  };
  for (const o of objects) {
    const { kind } = o.object;
    const namespace = namespaceOf(o.object);
    const name = o.object.value.name;
    const key = `${kind}/${namespace}/${name}`;
    const first = seen.get(key);
    if (first) {
      problems.push({
        severity: 'error',
        file: o.file,
        line: o.line,
        kind,
        namespace,
        name,
        path: '',
        message: `already defined at ${first.file}:${first.line}; this definition is ignored`,
      });
      continue;
    }
    seen.set(key, o);
    switch (o.object.kind) {
      case 'Namespace':
        out.namespaces.push(o.object.value);
        break;
      case 'Pod':
        out.pods.push(o.object.value);
        break;
      case 'Service':
        out.services.push(o.object.value);
        break;
      case 'ServiceAccount':
        out.serviceAccounts.push(o.object.value);
        break;
      case 'EndpointSlice':
        out.endpointSlices.push(o.object.value);
        break;
      case 'ServiceEntry':
        out.serviceEntries.push(o.object.value);
        break;
      case 'AuthorizationPolicy':
        out.authorizationPolicies.push(o.object.value);
        break;
      case 'PeerAuthentication':
        out.peerAuthentications.push(o.object.value);
        break;
      case 'Gateway':
        out.gateways.push(o.object.value);
        break;
      case 'GatewayClass':
        out.gatewayClasses.push(o.object.value);
        break;
      case 'VirtualService':
        out.virtualServices.push(o.object.value);
        break;
      case 'DestinationRule':
        out.destinationRules.push(o.object.value);
        break;
      case 'HTTPRoute':
        out.httpRoutes.push(o.object.value);
        break;
      case ISTIO_GATEWAY:
        out.istioGateways.push(o.object.value);
        break;
      case 'ReferenceGrant':
        out.referenceGrants.push(o.object.value);
        break;
    }
  }
  return { snapshot: out, problems };
}

/** One file's text as a snapshot. */
export function decodeKubeSnapshot(
  text: string,
  file: string,
): { snapshot: KubeSnapshot; problems: KubeYamlProblem[] } {
  const decoded = decodeKubeYaml(text, file);
  const built = buildSnapshot(decoded.objects);
  return { snapshot: built.snapshot, problems: [...decoded.problems, ...built.problems] };
}
