/**
 * Issue 7 part 2: rendering waypoint/template.yaml for a Gateway — the shipped template's objects with
 * every placeholder replaced, the labels, owner reference and rendered hash; the hash follows every
 * input that changes an object; what makes a Gateway or a template unusable, with where.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  decodeWaypointGateway,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  RENDERED_HASH_ANNOTATION,
  type KubeJson,
  type WaypointGateway,
} from '../../../src/controller/reconcile/objects.ts';
import {
  checkTemplate,
  desiredWaypoints,
  renderedHash,
  renderWaypoint,
  type RenderOptions,
} from '../../../src/controller/reconcile/template.ts';

const TEMPLATE = readFileSync(new URL('../../../waypoint/template.yaml', import.meta.url), 'utf8');
const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const OPTIONS: RenderOptions = {
  image: 'registry.example.com/ambit:0.1.0',
  caRootCertPem: PEM,
  blockOwnerDeletion: false,
};

function gateway(
  extra: { name?: string; labels?: Record<string, string>; spec?: KubeJson; uid?: string } = {},
): KubeJson {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: {
      name: extra.name ?? 'waypoint',
      namespace: 'bookinfo',
      uid: extra.uid ?? 'gw-uid-1',
      generation: 3,
      labels: extra.labels ?? { 'istio.io/waypoint-for': 'service' },
    },
    spec: {
      gatewayClassName: 'istio-waypoint',
      listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }],
      ...extra.spec,
    },
  };
}

function decoded(raw: KubeJson): WaypointGateway {
  const gw = decodeWaypointGateway(raw);
  assert.ok(gw);
  return gw;
}

function render(raw: KubeJson, options: RenderOptions = OPTIONS): KubeJson[] {
  const r = renderWaypoint(TEMPLATE, decoded(raw), options);
  assert.ok(r.ok, JSON.stringify(r));
  return [...r.objects];
}

const byKind = (objects: KubeJson[], kind: string) => objects.find((o) => o.kind === kind)!;
const meta = (o: KubeJson) =>
  o.metadata as KubeJson & { labels: Record<string, string>; annotations: Record<string, string> };

test('decode: only Gateways of a waypoint class, with a name and a uid', () => {
  const cases: [string, KubeJson, boolean][] = [
    ['istio-waypoint', gateway(), true],
    ['ambit-waypoint', gateway({ spec: { gatewayClassName: 'ambit-waypoint' } }), true],
    ['another class', gateway({ spec: { gatewayClassName: 'istio' } }), false],
    ['no class', gateway({ spec: { gatewayClassName: undefined } }), false],
    ['no uid', gateway({ uid: '' }), false],
  ];
  for (const [what, raw, want] of cases) assert.equal(decodeWaypointGateway(raw) !== undefined, want, what);
  assert.equal(decoded(gateway()).generation, 3);
});

test("the shipped template: its four objects, in order, in the Gateway's namespace, placeholders filled", () => {
  const objects = render(gateway());
  assert.deepEqual(
    objects.map((o) => `${String(o.kind)}/${String(meta(o).namespace)}/${String(meta(o).name)}`),
    [
      'ServiceAccount/bookinfo/waypoint',
      'ConfigMap/bookinfo/waypoint-ca-root-cert',
      'Deployment/bookinfo/waypoint',
      'Service/bookinfo/waypoint',
    ],
  );
  assert.doesNotMatch(JSON.stringify(objects), /\$\{/);
  const deployment = byKind(objects, 'Deployment') as {
    spec: { template: { spec: KubeJson; metadata: KubeJson } };
  };
  const pod = deployment.spec.template.spec as {
    serviceAccountName: string;
    containers: { image: string; env: { name: string; value?: string }[] }[];
  };
  assert.equal(pod.serviceAccountName, 'waypoint');
  assert.equal(pod.containers[0]!.image, OPTIONS.image);
  assert.equal(pod.containers[0]!.env.find((e) => e.name === 'GATEWAY_NAME')?.value, 'waypoint');
  const cm = byKind(objects, 'ConfigMap') as { binaryData: Record<string, string> };
  assert.equal(Buffer.from(cm.binaryData['root-cert.pem']!, 'base64').toString(), PEM);
});

test('every object: gateway-name and managed-by labels, one controller owner reference, a hash', () => {
  for (const o of render(gateway())) {
    const m = meta(o);
    assert.equal(m.labels['gateway.networking.k8s.io/gateway-name'], 'waypoint');
    assert.equal(m.labels[MANAGED_BY_LABEL], MANAGED_BY);
    assert.deepEqual(m.ownerReferences, [
      {
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'Gateway',
        name: 'waypoint',
        uid: 'gw-uid-1',
        controller: true,
      },
    ]);
    assert.match(m.annotations[RENDERED_HASH_ANNOTATION]!, /^[0-9a-f]{16}$/);
  }
  const blocking = render(gateway(), { ...OPTIONS, blockOwnerDeletion: true });
  assert.equal((meta(blocking[0]!).ownerReferences as KubeJson[])[0]!.blockOwnerDeletion, true);
});

test("the Gateway's labels (or spec.infrastructure's) go on every object and the pods, never over the template's", () => {
  const objects = render(
    gateway({
      labels: {
        team: 'reviews',
        'kubectl.kubernetes.io/last-applied-configuration': 'x',
        'app.kubernetes.io/part-of': 'other',
      },
    }),
  );
  const svc = meta(byKind(objects, 'Service'));
  assert.equal(svc.labels.team, 'reviews');
  assert.equal(svc.labels['kubectl.kubernetes.io/last-applied-configuration'], undefined);
  assert.equal(svc.labels['app.kubernetes.io/part-of'], 'ambit', "the template's own label wins");
  const podLabels = (
    (byKind(objects, 'Deployment').spec as KubeJson).template as {
      metadata: { labels: Record<string, string> };
    }
  ).metadata.labels;
  assert.equal(podLabels.team, 'reviews');
  assert.equal(podLabels['istio.io/dataplane-mode'], 'none');

  const infra = render(
    gateway({
      labels: { team: 'reviews' },
      spec: { infrastructure: { labels: { cost: 'l7' }, annotations: { note: 'hi' } } },
    }),
  );
  const m = meta(byKind(infra, 'Deployment'));
  assert.equal(m.labels.cost, 'l7');
  assert.equal(m.labels.team, undefined, 'spec.infrastructure replaces the Gateway labels');
  assert.equal(m.annotations.note, 'hi');
});

test('the hash changes with every input that changes an object, and only then', () => {
  const hashes = (raw: KubeJson, options = OPTIONS, template = TEMPLATE) => {
    const r = renderWaypoint(template, decoded(raw), options);
    assert.ok(r.ok);
    return r.objects.map(renderedHash);
  };
  const base = hashes(gateway());
  assert.deepEqual(hashes(gateway()), base, 'deterministic');
  const deploymentIndex = 2;
  const cases: [string, string[], number[]][] = [
    ['another image', hashes(gateway(), { ...OPTIONS, image: 'ambit:0.2.0' }), [deploymentIndex]],
    ['another CA root', hashes(gateway(), { ...OPTIONS, caRootCertPem: PEM + PEM }), [1]],
    ['a Gateway label', hashes(gateway({ labels: { team: 'x' } })), [0, 1, 2, 3]],
    ['a recreated Gateway (new uid)', hashes(gateway({ uid: 'gw-uid-2' })), [0, 1, 2, 3]],
    [
      'a template edit',
      hashes(gateway(), OPTIONS, TEMPLATE.replace('cpu: 100m', 'cpu: 200m')),
      [deploymentIndex],
    ],
    ['a comment in the template', hashes(gateway(), OPTIONS, `# note\n${TEMPLATE}`), []],
  ];
  for (const [what, got, changed] of cases) {
    const diff = got.flatMap((h, i) => (h === base[i] ? [] : [i]));
    assert.deepEqual(diff, changed, what);
  }
});

test('a Gateway that cannot name a Service, or whose name is not a YAML string, is rejected with why', () => {
  const cases: [string, RegExp][] = [
    ['9waypoint', /metadata\.name: "9waypoint" cannot name the waypoint's Service/],
    ['w'.repeat(64), /at most 63 characters/],
    ['on', /\$\{NAME\}: "on" does not read back as the same string in YAML/],
  ];
  for (const [name, want] of cases) {
    const r = renderWaypoint(TEMPLATE, decoded(gateway({ name })), OPTIONS);
    assert.ok(!r.ok, name);
    assert.match(r.errors.join('\n'), want, name);
  }
  const image = renderWaypoint(TEMPLATE, decoded(gateway()), { ...OPTIONS, image: 'a #b' });
  assert.ok(!image.ok);
  assert.match(image.errors[0]!, /^\$\{IMAGE\}/);
});

test('template problems name the document and the field', () => {
  const doc = (body: string) =>
    `apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: \${NAME}\n---\n${body}`;
  const cases: [string, string, RegExp][] = [
    ['unknown placeholder', doc('kind: Service ${NOPE}'), /unknown placeholder \$\{NOPE\}/],
    [
      'a kind not managed',
      doc('apiVersion: v1\nkind: Secret\nmetadata: {name: x}'),
      /template document 2 \(Secret\): kind: "Secret" is not one the reconciler manages/,
    ],
    [
      'wrong apiVersion',
      doc(
        'apiVersion: apps/v1beta1\nkind: Deployment\nmetadata: {name: x}\nspec: {selector: {}, template: {spec: {containers: [{name: a}]}}}',
      ),
      /document 2 \(Deployment\): apiVersion: "apps\/v1beta1" must be apps\/v1/,
    ],
    [
      'another namespace',
      doc('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: kube-system}'),
      /metadata\.namespace: "kube-system" must be the Gateway's, "default"/,
    ],
    [
      'a Deployment without containers',
      doc(
        'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {selector: {}, template: {spec: {containers: []}}}',
      ),
      /spec\.template\.spec\.containers: at least one container/,
    ],
    [
      'a Service without ports',
      doc('apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {}'),
      /spec\.ports: at least one port/,
    ],
    [
      'a name twice',
      doc('apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: "${NAME}"}'),
      /ServiceAccount\/waypoint is defined twice/,
    ],
    [
      'a label not a string',
      doc('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, labels: {a: 1}}'),
      /metadata\.labels: must map strings to strings/,
    ],
    ['bad YAML', doc('kind: [unclosed'), /template document 2: /],
    ['empty', '# nothing\n', /holds no objects/],
  ];
  for (const [what, template, want] of cases) {
    const problems = checkTemplate(template, OPTIONS);
    assert.ok(problems.length > 0, what);
    assert.match(problems.join('\n'), want, what);
  }
  assert.deepEqual(checkTemplate(TEMPLATE, OPTIONS), [], 'the shipped template is usable');
});

test('the desired set: every waypoint Gateway that renders; the others rejected by namespace/name', () => {
  const good = decoded(gateway());
  const bad = decoded(gateway({ name: 'on' }));
  const other = decoded({
    ...gateway({ name: 'second' }),
    metadata: { ...(gateway().metadata as KubeJson), name: 'second', namespace: 'prod', uid: 'u2' },
  });
  const d = desiredWaypoints(TEMPLATE, [good, bad, other], OPTIONS);
  assert.equal(d.objects.length, 8);
  assert.deepEqual([...d.rejected.keys()], ['bookinfo/on']);
});
