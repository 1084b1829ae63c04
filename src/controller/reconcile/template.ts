/**
 * The objects the controller makes for each waypoint Gateway, from waypoint/template.yaml. Pure:
 * text and data in, objects or every problem (with its document and field path) out.
 *
 * The template's rules (its header): each `${KEY}` is replaced as plain text, comments included, and
 * every value is one YAML scalar. So each value is checked to read back as the same string first: a
 * Gateway named `on` or `123` would otherwise become a boolean or a number in the objects. Then the
 * text is parsed as Kubernetes parses YAML (1.1), each object is checked as far as the reconciler
 * relies on it, and each gets the gateway-name and managed-by labels, the Gateway's infrastructure
 * labels and annotations, an owner reference to the Gateway, and the hash of all that as rendered
 * (so a change is found without comparing fields the API server defaults).
 */
import { createHash } from 'node:crypto';
import { parse, parseAllDocuments } from 'yaml';
import {
  canonicalJson,
  GATEWAY_NAME_LABEL,
  isObject,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  metadataOf,
  OWNED_API_VERSIONS,
  OWNED_KINDS,
  ownerReference,
  RENDERED_HASH_ANNOTATION,
  str,
  stringMap,
  type KubeJson,
  type OwnedKind,
  type WaypointGateway,
} from './objects.ts';

export interface RenderOptions {
  /** The Ambit image the waypoint runs: the controller's own. */
  readonly image: string;
  /** The CA's trust bundle (PEM), which the waypoint verifies the controller with. */
  readonly caRootCertPem: string;
  /** Set blockOwnerDeletion on owner references (needs RBAC on gateways/finalizers). */
  readonly blockOwnerDeletion: boolean;
}

export type RenderResult =
  | { readonly ok: true; readonly objects: readonly KubeJson[] }
  | { readonly ok: false; readonly errors: readonly string[] };

/** Kubernetes Service names (RFC 1035 labels): the waypoint's Service carries the Gateway's name. */
const DNS_1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const MAX_LABEL_LENGTH = 63;
const PLACEHOLDER = /\$\{([A-Z0-9_]+)\}/g;

/** The template's objects for one Gateway. */
export function renderWaypoint(template: string, gw: WaypointGateway, options: RenderOptions): RenderResult {
  const errors: string[] = [];
  if (!DNS_1035_LABEL.test(gw.name) || gw.name.length > MAX_LABEL_LENGTH) {
    errors.push(
      `metadata.name: "${gw.name}" cannot name the waypoint's Service: it must be a DNS label (RFC 1035) of at most ${MAX_LABEL_LENGTH} characters starting with a letter`,
    );
  }
  if (errors.length > 0) return { ok: false, errors };
  return renderTemplate(
    template,
    gw,
    {
      NAME: gw.name,
      NAMESPACE: gw.namespace,
      IMAGE: options.image,
      // Istio's choice: the waypoint's identity is spiffe://<td>/ns/<ns>/sa/<gateway name>.
      SERVICE_ACCOUNT: gw.name,
      CA_ROOT_CERT_BASE64: Buffer.from(options.caRootCertPem).toString('base64'),
    },
    options,
  );
}

/**
 * A template's objects for one Gateway with `values` for its placeholders, each checked to read back
 * as the same string, every object checked and decorated (labels, owner reference, rendered hash).
 */
export function renderTemplate(
  template: string,
  gw: WaypointGateway,
  values: Readonly<Record<string, string>>,
  options: RenderOptions,
  /** Changes an object before it is decorated (and hashed): what placeholders cannot say. */
  complete: (obj: KubeJson) => KubeJson = (obj) => obj,
): RenderResult {
  const errors: string[] = [];
  for (const [key, value] of Object.entries(values)) {
    if (!readsBackAsString(value))
      errors.push(`\${${key}}: "${value}" does not read back as the same string in YAML`);
  }
  if (errors.length > 0) return { ok: false, errors };
  const text = template.replace(PLACEHOLDER, (whole, key: string) => {
    const v = values[key];
    if (v === undefined) errors.push(`template: unknown placeholder ${whole}`);
    return v ?? whole;
  });
  if (errors.length > 0) return { ok: false, errors };

  const objects: KubeJson[] = [];
  const seen = new Set<string>();
  parseAllDocuments(text, { version: '1.1' }).forEach((doc, i) => {
    const where = `template document ${i + 1}`;
    if (doc.errors.length > 0) {
      for (const e of doc.errors) errors.push(`${where}: ${e.message}`);
      return;
    }
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) return;
    const problems = checkObject(value, gw.namespace);
    if (problems.length > 0) {
      const kind = isObject(value) && typeof value.kind === 'string' ? ` (${value.kind})` : '';
      for (const p of problems) errors.push(`${where}${kind}: ${p}`);
      return;
    }
    const obj = value as KubeJson;
    const key = `${String(obj.kind)}/${str(metadataOf(obj).name)}`;
    if (seen.has(key)) errors.push(`${where}: ${key} is defined twice`);
    seen.add(key);
    objects.push(decorate(complete(obj), gw, options));
  });
  if (objects.length === 0 && errors.length === 0) errors.push('template: holds no objects');
  return errors.length > 0 ? { ok: false, errors } : { ok: true, objects };
}

export interface DesiredWaypoints {
  /** Every object of every Gateway that rendered, in template order per Gateway. */
  readonly objects: readonly KubeJson[];
  /** `namespace/name` of each Gateway that did not render, with why. */
  readonly rejected: ReadonlyMap<string, readonly string[]>;
}

/** The desired objects of all waypoint Gateways. */
export function desiredWaypoints(
  template: string,
  gateways: readonly WaypointGateway[],
  options: RenderOptions,
): DesiredWaypoints {
  return desiredObjects(gateways, (gw) => renderWaypoint(template, gw, options));
}

/** Every Gateway's objects as `render` makes them, and why each that did not render did not. */
export function desiredObjects<G extends WaypointGateway>(
  gateways: readonly G[],
  render: (gw: G) => RenderResult,
): DesiredWaypoints {
  const objects: KubeJson[] = [];
  const rejected = new Map<string, readonly string[]>();
  for (const gw of gateways) {
    const r = render(gw);
    if (r.ok) objects.push(...r.objects);
    else rejected.set(`${gw.namespace}/${gw.name}`, r.errors);
  }
  return { objects, rejected };
}

/** Checks a template before it is used, with sample values; returns its problems. */
export function checkTemplate(
  template: string,
  options: Omit<RenderOptions, 'blockOwnerDeletion'>,
): string[] {
  const sample: WaypointGateway = {
    namespace: 'default',
    name: 'waypoint',
    uid: '00000000-0000-0000-0000-000000000000',
    generation: 1,
    className: 'istio-waypoint',
    infrastructure: { labels: {}, annotations: {} },
    status: {},
  };
  const r = renderWaypoint(template, sample, { ...options, blockOwnerDeletion: false });
  return r.ok ? [] : [...r.errors];
}

/** The hash an object was rendered with (its annotation), or '' for none. */
export function renderedHash(obj: KubeJson): string {
  return stringMap(metadataOf(obj).annotations)[RENDERED_HASH_ANNOTATION] ?? '';
}

/** What the reconciler relies on, by field path. */
function checkObject(value: unknown, namespace: string): string[] {
  if (!isObject(value)) return ['is not a YAML mapping'];
  const problems: string[] = [];
  const kind = value.kind;
  if (typeof kind !== 'string' || !(OWNED_KINDS as readonly string[]).includes(kind)) {
    problems.push(
      `kind: ${JSON.stringify(kind)} is not one the reconciler manages (${OWNED_KINDS.join(', ')})`,
    );
    return problems;
  }
  const want = OWNED_API_VERSIONS[kind as OwnedKind];
  if (value.apiVersion !== want)
    problems.push(`apiVersion: ${JSON.stringify(value.apiVersion)} must be ${want}`);
  if (!isObject(value.metadata)) return [...problems, 'metadata: is required'];
  const meta = value.metadata;
  if (typeof meta.name !== 'string' || meta.name === '')
    problems.push('metadata.name: must be a non-empty string');
  if (meta.namespace !== undefined && meta.namespace !== namespace)
    problems.push(
      `metadata.namespace: ${JSON.stringify(meta.namespace)} must be the Gateway's, "${namespace}"`,
    );
  for (const field of ['labels', 'annotations'] as const) {
    const m = meta[field];
    if (m === undefined) continue;
    if (!isObject(m) || Object.values(m).some((v) => typeof v !== 'string'))
      problems.push(`metadata.${field}: must map strings to strings`);
  }
  const spec = value.spec;
  if (kind === 'Deployment') {
    if (!isObject(spec)) problems.push('spec: is required');
    else {
      if (!isObject(spec.selector)) problems.push('spec.selector: is required');
      const podTemplate = spec.template;
      const pod = isObject(podTemplate) ? podTemplate.spec : undefined;
      if (!isObject(pod) || !Array.isArray(pod.containers) || pod.containers.length === 0)
        problems.push('spec.template.spec.containers: at least one container is required');
      if (isObject(podTemplate) && podTemplate.metadata !== undefined && !isObject(podTemplate.metadata))
        problems.push('spec.template.metadata: must be a mapping');
    }
  }
  if (kind === 'Service' && (!isObject(spec) || !Array.isArray(spec.ports) || spec.ports.length === 0))
    problems.push('spec.ports: at least one port is required');
  return problems;
}

/** Labels, annotations, owner reference and the rendered hash. */
function decorate(obj: KubeJson, gw: WaypointGateway, options: RenderOptions): KubeJson {
  const meta = metadataOf(obj);
  const infra = gw.infrastructure;
  const labels = {
    ...infra.labels,
    ...stringMap(meta.labels),
    [GATEWAY_NAME_LABEL]: gw.name,
    [MANAGED_BY_LABEL]: MANAGED_BY,
  };
  const annotations = { ...infra.annotations, ...stringMap(meta.annotations) };
  delete annotations[RENDERED_HASH_ANNOTATION];
  let spec = obj.spec;
  if (obj.kind === 'Deployment' && isObject(spec) && isObject(spec.template)) {
    // The pods carry the Gateway's infrastructure labels too (Gateway API: "all resources").
    const podMeta = isObject(spec.template.metadata) ? spec.template.metadata : {};
    spec = {
      ...spec,
      template: {
        ...spec.template,
        metadata: {
          ...podMeta,
          labels: { ...infra.labels, ...stringMap(podMeta.labels) },
          annotations: { ...infra.annotations, ...stringMap(podMeta.annotations) },
        },
      },
    };
  }
  const rendered: KubeJson = {
    ...obj,
    metadata: {
      ...meta,
      namespace: gw.namespace,
      labels,
      annotations,
      ownerReferences: [ownerReference(gw, options.blockOwnerDeletion)],
    },
    ...(spec !== undefined && { spec }),
  };
  const hash = createHash('sha256').update(canonicalJson(rendered)).digest('hex').slice(0, 16);
  (rendered.metadata as KubeJson).annotations = { ...annotations, [RENDERED_HASH_ANNOTATION]: hash };
  return rendered;
}

function readsBackAsString(value: string): boolean {
  try {
    return parse(value, { version: '1.1' }) === value;
  } catch {
    return false;
  }
}
