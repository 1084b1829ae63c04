/**
 * VirtualService and DestinationRule in the YAML source (issue 5): decoded by the L7 decoder in every
 * API version Istio serves, invalid ones skipped with file, line, object and field path, the rest
 * kept; a warning keeps the object; duplicates are reported like any other kind.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeKubeObject, decodeKubeSnapshot } from '../../../src/controller/files/kube-yaml.ts';

/** One YAML line per argument, so a case's expected line numbers can be read off its source. */
const doc = (...lines: string[]): string => lines.join('\n') + '\n';

/** The problems as `severity line kind ns/name path` strings (messages are the decoder's, tested there). */
function problems(text: string): string[] {
  return decodeKubeSnapshot(text, 'x.yaml').problems.map(
    (p) => `${p.severity} ${p.line} ${p.kind} ${p.namespace}/${p.name} ${p.path}`,
  );
}

const DR = doc(
  'apiVersion: networking.istio.io/VERSION',
  'kind: DestinationRule',
  'metadata: {name: reviews, namespace: bookinfo}',
  'spec:',
  '  host: reviews',
  '  subsets:',
  '  - {name: v1, labels: {version: v1}}',
  '  - {name: v2, labels: {version: v2}}',
);

test('a DestinationRule in each of v1, v1beta1 and v1alpha3 decodes to the same object', () => {
  const decoded = ['v1', 'v1beta1', 'v1alpha3'].map((v) => {
    const r = decodeKubeSnapshot(DR.replace('VERSION', v), 'x.yaml');
    assert.deepEqual(r.problems, [], v);
    return r.snapshot.destinationRules;
  });
  assert.equal(decoded[0]!.length, 1);
  assert.deepEqual(
    decoded[0]![0]!.subsets.map((s) => [s.name, s.labels]),
    [
      ['v1', { version: 'v1' }],
      ['v2', { version: 'v2' }],
    ],
  );
  assert.deepEqual(decoded[1], decoded[0]);
  assert.deepEqual(decoded[2], decoded[0]);
});

test('a VirtualService decodes with its routes and weights; other kinds beside it are kept', () => {
  const r = decodeKubeSnapshot(
    doc(
      'apiVersion: v1',
      'kind: ServiceAccount',
      'metadata: {name: sa}',
      '---',
      'apiVersion: networking.istio.io/v1',
      'kind: VirtualService',
      'metadata: {name: reviews}',
      'spec:',
      '  hosts: [reviews]',
      '  http:',
      '  - route:',
      '    - {destination: {host: reviews, subset: v1}, weight: 90}',
      '    - {destination: {host: reviews, subset: v2}, weight: 10}',
    ),
    'x.yaml',
  );
  assert.deepEqual(r.problems, []);
  const [vs] = r.snapshot.virtualServices;
  assert.equal(vs?.namespace, 'default');
  assert.deepEqual(
    vs?.http[0]?.route.map((d) => [d.destination.subset, d.weight]),
    [
      ['v1', 90],
      ['v2', 10],
    ],
  );
  assert.equal(r.snapshot.serviceAccounts.length, 1);
});

test('an invalid VirtualService is skipped with every error at the line of its field; the next object is kept', () => {
  const text = doc(
    'apiVersion: networking.istio.io/v1',
    'kind: VirtualService',
    'metadata: {name: bad, namespace: shop}',
    'spec:',
    '  hosts: [reviews]',
    '  http:',
    '  - match:',
    '    - uri: {regex: "a(b"}',
    '    route:',
    '    - destination: {host: reviews}',
    '      weight: 150',
    '    timout: 1s',
    '---',
    'apiVersion: networking.istio.io/v1',
    'kind: VirtualService',
    'metadata: {name: good, namespace: shop}',
    'spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}',
  );
  assert.deepEqual(problems(text).sort(), [
    'error 11 VirtualService shop/bad spec.http[0].route[0].weight',
    'error 12 VirtualService shop/bad spec.http[0].timout',
    'error 8 VirtualService shop/bad spec.http[0].match[0].uri.regex',
  ]);
  const r = decodeKubeSnapshot(text, 'x.yaml');
  assert.deepEqual(
    r.snapshot.virtualServices.map((v) => v.name),
    ['good'],
  );
  assert.ok(r.problems.every((p) => p.file === 'x.yaml' && p.message !== ''));
});

test('a field that is missing is reported at its parent; a path with a quoted key is followed', () => {
  assert.deepEqual(
    problems(
      doc(
        'apiVersion: networking.istio.io/v1',
        'kind: DestinationRule',
        'metadata: {name: dr}',
        'spec:',
        '  subsets:',
        '  - {labels: {version: v1}}',
      ),
    ),
    [
      // host is required: reported where spec is; the subset's name, on the subset's line.
      'error 5 DestinationRule default/dr spec.host',
      'error 6 DestinationRule default/dr spec.subsets[0].name',
    ],
  );
  const quoted = problems(
    doc(
      'apiVersion: networking.istio.io/v1',
      'kind: VirtualService',
      'metadata: {name: q}',
      'spec:',
      '  hosts: [reviews]',
      '  http:',
      '  - match:',
      '    - headers:',
      '        "a.b/c": {regex: "x(y"}',
      '    route: [{destination: {host: reviews}}]',
    ),
  );
  // The name is not a header name, and the regex does not compile: both on the key's line.
  assert.deepEqual(quoted, [
    'error 9 VirtualService default/q spec.http[0].match[0].headers["a.b/c"]',
    'error 9 VirtualService default/q spec.http[0].match[0].headers["a.b/c"].regex',
  ]);
});

test('a warning keeps the object; the same object twice is reported once, with the first kept', () => {
  const vs = doc(
    'apiVersion: networking.istio.io/v1',
    'kind: VirtualService',
    'metadata: {name: reviews}',
    'spec:',
    '  hosts: [reviews]',
    '  http: [{route: [{destination: {host: reviews}}], mirrorPercent: 50, mirror: {host: reviews}}]',
  );
  const r = decodeKubeSnapshot(vs + '---\n' + vs, 'x.yaml');
  assert.equal(r.snapshot.virtualServices.length, 1);
  const kinds = r.problems.map((p) => `${p.severity} ${p.line} ${p.path}`);
  assert.ok(kinds.includes('warning 6 spec.http[0].mirrorPercent'), kinds.join(' | '));
  assert.ok(
    r.problems.some(
      (p) => p.severity === 'error' && p.line === 8 && /already defined at x.yaml:1/.test(p.message),
    ),
    kinds.join(' | '),
  );
});

test("the API server's JSON decodes the same, with line 0", () => {
  const obj = {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: 'bad', namespace: 'shop', creationTimestamp: '2026-01-02T03:04:05Z' },
    spec: { hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews' }, weight: -1 }] }] },
  };
  const r = decodeKubeObject(obj, '/apis/networking.istio.io/v1/virtualservices');
  assert.deepEqual(
    r.problems.map((p) => `${p.severity} ${p.line} ${p.path}`),
    ['error 0 spec.http[0].route[0].weight'],
  );
  const ok = decodeKubeObject(
    { ...obj, spec: { hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews' } }] }] } },
    'api',
  );
  assert.deepEqual(ok.problems, []);
  const [decoded] = ok.objects;
  assert.equal(decoded?.object.kind, 'VirtualService');
  assert.equal(
    decoded?.object.kind === 'VirtualService' && decoded.object.value.creationTimestamp,
    '2026-01-02T03:04:05Z',
  );
});

test('YAML anchors and aliases inside a VirtualService are followed', () => {
  const r = decodeKubeSnapshot(
    doc(
      'apiVersion: networking.istio.io/v1',
      'kind: VirtualService',
      'metadata: {name: a}',
      'spec:',
      '  hosts: [reviews]',
      '  http:',
      '  - match: [{headers: {x-user: {exact: jason}}}]',
      '    route: &to-reviews [{destination: {host: reviews}}]',
      '  - route: *to-reviews',
    ),
    'x.yaml',
  );
  assert.deepEqual(r.problems, []);
  assert.deepEqual(
    r.snapshot.virtualServices[0]?.http.map((h) => h.route.map((d) => d.destination.host)),
    [['reviews'], ['reviews']],
  );
});
