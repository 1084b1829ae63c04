/**
 * The install manifests as the tests read them: every YAML document of daemonset/ and waypoint/ (the
 * waypoint template rendered with sample values), parsed as Kubernetes parses YAML (1.1: a leading 0 is
 * octal, `yes` is true), with helpers to find objects and to read a container's environment.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ICustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition';
import type { IDaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import type { IClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import type { IRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import type { IService } from 'kubernetes-models/v1/Service';
import type { IVolume } from 'kubernetes-models/v1/Volume';
import type { IGateway } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/Gateway';
import type { IGatewayClass } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/GatewayClass';
import { parseAllDocuments } from 'yaml';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** A manifest object as parsed: its kind's fields are typed once {@link find} has picked it. */
export interface KubeObject {
  readonly apiVersion?: unknown;
  readonly kind?: unknown;
  readonly metadata?: {
    readonly name?: string;
    readonly namespace?: string;
    readonly labels?: Record<string, string>;
  };
  readonly [field: string]: unknown;
}

/**
 * The kinds the tests read field by field, with the models' own types: schemas.test.ts checks every
 * object against its kind's schema, so reading it as its type is sound.
 */
export interface Kinds {
  CustomResourceDefinition: ICustomResourceDefinition;
  DaemonSet: IDaemonSet;
  Deployment: IDeployment;
  PodDisruptionBudget: IPodDisruptionBudget;
  ClusterRole: IClusterRole;
  Role: IRole;
  ConfigMap: IConfigMap;
  Service: IService;
  Gateway: IGateway;
  GatewayClass: IGatewayClass;
}
export type Workload = IDeployment | IDaemonSet;

export interface Loaded {
  /** Path from the repository root, e.g. `daemonset/ambit/node-agent.yaml`. */
  readonly file: string;
  /** Index of the document in its file. */
  readonly index: number;
  readonly obj: KubeObject;
}

/** The values the template is rendered with in tests; the controller supplies real ones. */
export const TEMPLATE_VALUES: Readonly<Record<string, string>> = {
  NAME: 'waypoint',
  NAMESPACE: 'bookinfo',
  IMAGE: 'registry.example.com/ambit:0.1.0',
  SERVICE_ACCOUNT: 'bookinfo-waypoint',
  CA_ROOT_CERT_BASE64: Buffer.from('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n').toString(
    'base64',
  ),
};

export const TEMPLATE_FILE = 'waypoint/template.yaml';

/** The ingress gateway template (Gateway API class `ambit`) and the values it is rendered with in tests. */
export const GATEWAY_TEMPLATE_FILE = 'waypoint/gateway-template.yaml';
export const GATEWAY_TEMPLATE_VALUES: Readonly<Record<string, string>> = {
  NAME: 'web-ambit',
  GATEWAY_NAME: 'web',
  NAMESPACE: 'bookinfo',
  IMAGE: 'registry.example.com/ambit:0.1.0',
  SERVICE_ACCOUNT: 'web-ambit',
  GATEWAY_LABELS: 'gateway.networking.k8s.io/gateway-name=web,ambit.dev/gateway-namespace=bookinfo',
  CA_ROOT_CERT_BASE64: TEMPLATE_VALUES.CA_ROOT_CERT_BASE64!,
};

/** `${KEY}` → value; throws on a placeholder with no value, so a new one cannot go unnoticed. */
export function renderTemplate(text: string, values: Readonly<Record<string, string>>): string {
  return text.replace(/\$\{([A-Z0-9_]+)\}/g, (_m, key: string) => {
    const v = values[key];
    if (v === undefined) throw new Error(`${TEMPLATE_FILE}: no value for placeholder \${${key}}`);
    return v;
  });
}

/** Every `${KEY}` in a text, in order of first use. */
export function placeholders(text: string): string[] {
  return [...new Set([...text.matchAll(/\$\{([A-Z0-9_]+)\}/g)].map((m) => m[1]!))];
}

/** Parses a multi-document YAML text the way Kubernetes does; throws with the file on any error. */
export function parseYaml(text: string, file: string): KubeObject[] {
  const docs = parseAllDocuments(text, { version: '1.1' });
  if (!Array.isArray(docs)) return [];
  const out: KubeObject[] = [];
  for (const d of docs) {
    if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
    const v: unknown = d.toJS();
    if (v !== null && v !== undefined) out.push(v as KubeObject);
  }
  return out;
}

function yamlFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir))
    .sort()
    .flatMap((name) => {
      const path = join(dir, name);
      if (statSync(join(ROOT, path)).isDirectory()) return yamlFiles(path);
      return /\.ya?ml$/.test(name) ? [path] : [];
    });
}

/** Kustomize's own files, not Kubernetes objects. */
const isKustomization = (file: string) => /(^|\/)kustomization\.ya?ml$/.test(file);

/**
 * Every object of daemonset/ and waypoint/, the templates rendered with {@link TEMPLATE_VALUES} and
 * {@link GATEWAY_TEMPLATE_VALUES}.
 */
export function loadAll(): Loaded[] {
  return ['daemonset', 'waypoint']
    .flatMap(yamlFiles)
    .filter((f) => !isKustomization(f))
    .flatMap((file) => {
      const raw = readFileSync(join(ROOT, file), 'utf8');
      const text =
        file === TEMPLATE_FILE
          ? renderTemplate(raw, TEMPLATE_VALUES)
          : file === GATEWAY_TEMPLATE_FILE
            ? renderTemplate(raw, GATEWAY_TEMPLATE_VALUES)
            : raw;
      return parseYaml(text, file).map((obj, index) => ({
        file: relative(ROOT, join(ROOT, file)),
        index,
        obj,
      }));
    });
}

export function readRepoFile(path: string): string {
  return readFileSync(join(ROOT, path), 'utf8');
}

/** The one object of a kind and name; throws (failing the test) when there is not exactly one. */
export function find<K extends keyof Kinds>(
  all: readonly Loaded[],
  kind: K,
  name: string,
  file?: string,
): Kinds[K] {
  const hits = all.filter(
    (l) => l.obj.kind === kind && l.obj.metadata?.name === name && (file === undefined || l.file === file),
  );
  if (hits.length !== 1)
    throw new Error(`expected one ${kind} ${name}${file ? ` in ${file}` : ''}, found ${hits.length}`);
  return hits[0]!.obj as unknown as Kinds[K];
}

/** Every object of a kind. */
export function findAll<K extends keyof Kinds>(all: readonly Loaded[], kind: K): Kinds[K][] {
  return all.filter((l) => l.obj.kind === kind).map((l) => l.obj as unknown as Kinds[K]);
}

export const describeObj = (l: Loaded) =>
  `${l.file}#${l.index} ${String(l.obj.kind)} ${l.obj.metadata?.namespace ? `${l.obj.metadata.namespace}/` : ''}${String(l.obj.metadata?.name)}`;

/** The pod template's spec of a Deployment or DaemonSet. */
export function podSpec(workload: Workload): IPodSpec {
  const spec = workload.spec?.template.spec;
  if (!spec) throw new Error(`${String(workload.metadata?.name)} has no pod spec`);
  return spec;
}

export function container(workload: Workload, name: string, init = false): IContainer {
  const list = (init ? podSpec(workload).initContainers : podSpec(workload).containers) ?? [];
  const c = list.find((x) => x.name === name);
  if (!c)
    throw new Error(`${String(workload.metadata?.name)} has no ${init ? 'init ' : ''}container ${name}`);
  return c;
}

/** Samples for the values Kubernetes fills in from the pod (the downward API). */
const FIELD_SAMPLES: Readonly<Record<string, string>> = {
  'spec.nodeName': 'node-1',
  'metadata.name': 'pod-1',
  'metadata.namespace': TEMPLATE_VALUES.NAMESPACE!,
  'status.podIP': '10.244.1.7',
  'spec.serviceAccountName': TEMPLATE_VALUES.SERVICE_ACCOUNT!,
};

/** A container's environment as the program would see it (downward-API values sampled). */
export function envOf(c: IContainer): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of c.env ?? []) {
    const field = e.valueFrom?.fieldRef?.fieldPath;
    if (e.value !== undefined) out[e.name] = e.value;
    else if (field !== undefined) {
      const sample = FIELD_SAMPLES[field];
      if (sample === undefined) throw new Error(`no sample for fieldRef ${field}`);
      out[e.name] = sample;
    } else throw new Error(`env ${e.name}: only value and fieldRef are expected`);
  }
  return out;
}

/** The volume mounted at the longest mount path that is a prefix of `path`, with the rest of the path. */
export function volumeAt(workload: Workload, c: IContainer, path: string): { volume: IVolume; rest: string } {
  const mounts = (c.volumeMounts ?? [])
    .filter((m) => path === m.mountPath || path.startsWith(`${m.mountPath}/`))
    .sort((a, b) => b.mountPath.length - a.mountPath.length);
  const m = mounts[0];
  if (!m) throw new Error(`${c.name}: no volume is mounted at ${path}`);
  const volume = (podSpec(workload).volumes ?? []).find((v) => v.name === m.name);
  if (!volume) throw new Error(`${c.name}: volume ${m.name} is mounted but not defined`);
  return { volume, rest: path.slice(m.mountPath.length).replace(/^\//, '') };
}

/** The service-account token a projected volume holds at `path`, if it does. */
export function projectedToken(volume: IVolume, path: string) {
  return volume.projected?.sources?.find((s) => s.serviceAccountToken?.path === path)?.serviceAccountToken;
}

/** Every container of every Deployment/DaemonSet, init containers included. */
export function allContainers(
  all: readonly Loaded[],
): { where: string; workload: Workload; c: IContainer; init: boolean }[] {
  return all
    .filter((l) => l.obj.kind === 'Deployment' || l.obj.kind === 'DaemonSet')
    .flatMap((l) => {
      const workload = l.obj as unknown as Workload;
      const spec = podSpec(workload);
      return [
        ...(spec.initContainers ?? []).map((c) => ({ c, init: true })),
        ...spec.containers.map((c) => ({ c, init: false })),
      ].map(({ c, init }) => ({ where: `${describeObj(l)} container ${c.name}`, workload, c, init }));
    });
}
