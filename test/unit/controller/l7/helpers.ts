/**
 * Shared by the L7 translation tables: the fixture mesh (test/fixtures/l7/mesh.yaml through the
 * controller's own YAML decoder and workload translation), the Istio samples decoded, and lookups
 * that show resources with every nested Any decoded (`@type` + fields), as Envoy's config dump does.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { buildSnapshot, decodeKubeYaml } from '../../../../src/controller/files/kube-yaml.ts';
import type { KubeSnapshot } from '../../../../src/controller/translate/kube-types.ts';
import { decodeL7Object, isL7Object } from '../../../../src/controller/translate/l7/decode.ts';
import { expandAny } from '../../../../src/controller/translate/l7/encode.ts';
import type {
  Cluster,
  ClusterLoadAssignment,
  Route,
} from '../../../../src/controller/translate/l7/envoy-types.ts';
import { translateL7, type L7Result } from '../../../../src/controller/translate/l7/translate.ts';
import type {
  DestinationRule,
  L7Problem,
  VirtualService,
} from '../../../../src/controller/translate/l7/types.ts';
import { translate, type TranslateOptions } from '../../../../src/controller/translate/workloads.ts';
import type { MeshConfig } from '../../../../src/core/xds/model.ts';

export const OPTIONS: TranslateOptions = {
  clusterId: 'Kubernetes',
  trustDomain: 'cluster.local',
  clusterDomain: 'cluster.local',
  rootNamespace: 'istio-system',
};

const FIXTURES = new URL('../../../fixtures/l7/', import.meta.url);

/** A Kubernetes snapshot from YAML text, and the workload translation of it. */
export function meshFrom(text: string): { snapshot: KubeSnapshot; mesh: MeshConfig } {
  const decoded = decodeKubeYaml(text, 'fixture.yaml');
  const errors = decoded.problems.filter((p) => p.severity === 'error');
  assert.deepEqual(errors, [], 'fixture YAML decodes');
  const { snapshot } = buildSnapshot(decoded.objects);
  const { config, problems } = translate(snapshot, OPTIONS);
  assert.deepEqual(problems, [], 'fixture translates');
  return { snapshot, mesh: config };
}

let fixture: { snapshot: KubeSnapshot; mesh: MeshConfig } | undefined;

/** The fixture mesh (bookinfo, httpbin, tcp-echo in default; ratings, reviews in prod). */
export function fixtureMesh(): { snapshot: KubeSnapshot; mesh: MeshConfig } {
  fixture ??= meshFrom(readFileSync(new URL('mesh.yaml', FIXTURES), 'utf8'));
  return fixture;
}

export interface L7Objects {
  readonly virtualServices: VirtualService[];
  readonly destinationRules: DestinationRule[];
  readonly problems: L7Problem[];
}

/** The VirtualServices and DestinationRules of YAML text (other kinds skipped), with decode problems. */
export function l7From(text: string): L7Objects {
  const out: L7Objects = { virtualServices: [], destinationRules: [], problems: [] };
  const docs = parseAllDocuments(text);
  for (const doc of Array.isArray(docs) ? docs : []) {
    const obj: unknown = doc.toJS();
    if (!isL7Object(obj)) continue;
    const d = decodeL7Object(obj);
    out.problems.push(...d.problems);
    if (d.value?.kind === 'VirtualService') out.virtualServices.push(d.value.value);
    if (d.value?.kind === 'DestinationRule') out.destinationRules.push(d.value.value);
  }
  return out;
}

/** The named samples (e.g. '02', '04'), concatenated; they must decode without a problem. */
export function samples(...prefixes: string[]): L7Objects {
  const texts = prefixes.map((p) => {
    const dir = new URL('istio-samples/', FIXTURES);
    const file = readdirSync(dir).find((f) => f.startsWith(`${p}-`));
    assert.ok(file, `sample ${p} exists`);
    return readFileSync(new URL(file, dir), 'utf8');
  });
  const objs = l7From(texts.join('\n---\n'));
  assert.deepEqual(objs.problems, [], `samples ${prefixes.join(', ')} decode cleanly`);
  return objs;
}

/** translateL7 over the fixture mesh (or another). */
export function run(
  objs: Pick<L7Objects, 'virtualServices' | 'destinationRules'>,
  over: {
    mesh?: { snapshot: KubeSnapshot; mesh: MeshConfig };
    waypointNamespaces?: Map<string, string>;
  } = {},
): L7Result {
  const m = over.mesh ?? fixtureMesh();
  return translateL7(
    {
      snapshot: m.snapshot,
      mesh: m.mesh,
      virtualServices: objs.virtualServices,
      destinationRules: objs.destinationRules,
      ...(over.waypointNamespaces ? { waypointNamespaces: over.waypointNamespaces } : {}),
    },
    OPTIONS,
  );
}

/** A resource (or part) with every Any decoded, and bytes as base64: what the tables compare. */
export function json<T>(value: T): unknown {
  return expandAny(value);
}

export function routesOf(r: L7Result, name: string): Route[] {
  const rc = r.resources.routeConfigurations.find((c) => c.name === name);
  assert.ok(rc, `route configuration ${name} exists`);
  return [...rc.virtual_hosts[0]!.routes];
}

export function clusterOf(r: L7Result, name: string): Cluster {
  const c = r.resources.clusters.find((x) => x.name === name);
  assert.ok(c, `cluster ${name} exists`);
  return c;
}

export function endpointsOf(r: L7Result, name: string): ClusterLoadAssignment {
  const c = r.resources.clusterLoadAssignments.find((x) => x.cluster_name === name);
  assert.ok(c, `load assignment ${name} exists`);
  return c;
}

/** The pod IPs of a load assignment, with their health. */
export function addressesOf(r: L7Result, name: string): string[] {
  return endpointsOf(r, name).endpoints.flatMap((l) =>
    l.lb_endpoints.map(
      (e) =>
        `${e.endpoint.address.socket_address.address}:${e.endpoint.address.socket_address.port_value}` +
        (e.health_status === 'HEALTHY' ? '' : ` ${e.health_status}`),
    ),
  );
}

export const H = (name: string) => `${name}.default.svc.cluster.local`;
export const P = (name: string) => `${name}.prod.svc.cluster.local`;
