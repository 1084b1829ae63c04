/**
 * Istio Gateways (issue 8): decoding with field paths, and the translation of sample 18 and of
 * conflicting servers into gateway listeners and route configurations.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { buildSnapshot, decodeKubeYaml } from '../../../src/controller/files/kube-yaml.ts';
import { decodeIstioGateway } from '../../../src/controller/translate/l7/gateway-decode.ts';
import { translateL7 } from '../../../src/controller/translate/l7/translate.ts';
import { fixtureMesh, OPTIONS } from './l7/helpers.ts';

const SAMPLE_18 = readFileSync(
  new URL('../../fixtures/kube/istio-samples/18-gateway-bookinfo-ingress.yaml', import.meta.url),
  'utf8',
);

function translateYaml(text: string) {
  const decoded = decodeKubeYaml(text, 'gw.yaml');
  const b = buildSnapshot(decoded.objects).snapshot;
  const { snapshot, mesh } = fixtureMesh();
  const r = translateL7(
    {
      snapshot: { ...snapshot, istioGateways: b.istioGateways },
      mesh,
      virtualServices: b.virtualServices,
      destinationRules: [],
    },
    OPTIONS,
  );
  return { decodeProblems: decoded.problems, result: r };
}

test('sample 18: one HTTP listener and route configuration http.8080 for istio=ingressgateway', () => {
  const { decodeProblems, result } = translateYaml(SAMPLE_18);
  assert.deepEqual(decodeProblems, []);
  const gw = result.resources.routeConfigurations.filter((r) => r.name.startsWith('gateway/'));
  assert.deepEqual(
    gw.map((r) => r.name),
    ['gateway/istio=ingressgateway/http.8080'],
  );
  const vh = gw[0]!.virtual_hosts;
  assert.deepEqual(
    vh.map((v) => [v.name, v.domains]),
    [['*:8080', ['*']]],
  );
  assert.deepEqual(
    vh[0]!.routes.map((r) => [r.match.path ?? r.match.prefix, r.route?.cluster]),
    [
      ['/productpage', 'outbound|9080||productpage.default.svc.cluster.local'],
      ['/static', 'outbound|9080||productpage.default.svc.cluster.local'],
      ['/login', 'outbound|9080||productpage.default.svc.cluster.local'],
      ['/logout', 'outbound|9080||productpage.default.svc.cluster.local'],
      ['/api/v1/products', 'outbound|9080||productpage.default.svc.cluster.local'],
    ],
  );
  // Bound to the gateway only: the mesh's productpage routes are the default ones.
  const mesh = result.resources.routeConfigurations.find(
    (r) => r.name === 'productpage.default.svc.cluster.local:9080',
  );
  assert.deepEqual(
    mesh?.virtual_hosts[0]?.routes.map((r) => r.name),
    ['default'],
  );
  assert.ok(result.resources.listeners.some((l) => l.name === 'gateway/istio=ingressgateway/http.8080'));
});

const gateway = (servers: string) => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'Gateway',
  metadata: { name: 'g', namespace: 'default' },
  spec: { selector: { istio: 'ingressgateway' }, servers: JSON.parse(servers) as unknown },
});

test('decode: each problem with its field path', () => {
  const cases: [string, string, RegExp][] = [
    ['[]', 'spec.servers', /at least one server/],
    [
      '[{"port":{"number":70000,"name":"h","protocol":"HTTP"},"hosts":["*"]}]',
      'spec.servers[0].port.number',
      /port/,
    ],
    ['[{"port":{"number":80,"protocol":"HTTP"},"hosts":["*"]}]', 'spec.servers[0].port.name', /required/],
    [
      '[{"port":{"number":80,"name":"h","protocol":"FTP"},"hosts":["*"]}]',
      'spec.servers[0].port.protocol',
      /must be one of/,
    ],
    [
      '[{"port":{"number":80,"name":"h","protocol":"HTTP"},"hosts":[]}]',
      'spec.servers[0].hosts',
      /at least one host/,
    ],
    [
      '[{"port":{"number":80,"name":"h","protocol":"HTTP"},"hosts":["a/b/c"]}]',
      'spec.servers[0].hosts[0]',
      /namespace/,
    ],
    [
      '[{"port":{"number":443,"name":"s","protocol":"HTTPS"},"hosts":["*"]}]',
      'spec.servers[0].tls',
      /TLS settings/,
    ],
    [
      '[{"port":{"number":443,"name":"s","protocol":"HTTPS"},"hosts":["*"],"tls":{"mode":"SIMPLE"}}]',
      'spec.servers[0].tls.serverCertificate',
      /required/,
    ],
    [
      '[{"port":{"number":443,"name":"s","protocol":"HTTPS"},"hosts":["*"],"tls":{"mode":"MUTUAL","serverCertificate":"c","privateKey":"k"}}]',
      'spec.servers[0].tls.caCertificates',
      /required/,
    ],
    [
      '[{"port":{"number":443,"name":"s","protocol":"HTTPS"},"hosts":["*"],"tls":{"mode":"PASSTHROUGH"}}]',
      'spec.servers[0].tls.mode',
      /needs protocol TLS/,
    ],
    [
      '[{"port":{"number":80,"name":"h","protocol":"HTTP"},"hosts":["*"],"tls":{"mod":"x"}}]',
      'spec.servers[0].tls.mod',
      /unknown field/,
    ],
  ];
  for (const [servers, path, message] of cases) {
    const d = decodeIstioGateway(gateway(servers));
    assert.equal(d.value, undefined, path);
    const p = d.problems.find((x) => x.path === path);
    assert.ok(p, `${path}: ${JSON.stringify(d.problems)}`);
    assert.match(p.message, message);
    assert.equal(p.kind, 'Gateway');
  }
});

test('conflicting servers on one port are rejected naming both; the first keeps serving', () => {
  const { result } = translateYaml(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: a, namespace: default, creationTimestamp: "2020-01-01T00:00:00Z" }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: 8443, name: https, protocol: HTTPS }
    hosts: [a.example.com]
    tls: { mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem }
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: b, namespace: default, creationTimestamp: "2021-01-01T00:00:00Z" }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: 8443, name: http, protocol: HTTP }
    hosts: ["*"]
  - port: { number: 8443, name: https-b, protocol: HTTPS }
    hosts: [a.example.com]
    tls: { mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem }
`);
  const errors = result.problems.filter((p) => p.kind === 'Gateway' && p.severity === 'error');
  assert.deepEqual(
    errors.map((e) => [e.name, e.path]),
    [
      ['b', 'spec.servers[0].port.number'],
      ['b', 'spec.servers[1].hosts[0]'],
    ],
  );
  assert.match(
    errors[0]!.message,
    /Gateway default\/a spec.servers\[0\].*Gateway default\/b spec.servers\[0\]/,
  );
  assert.match(
    errors[1]!.message,
    /Gateway default\/a spec.servers\[0\].*Gateway default\/b spec.servers\[1\]/,
  );
  assert.deepEqual(
    result.resources.listeners.filter((l) => l.name.startsWith('gateway/')).map((l) => l.name),
    ['gateway/istio=ingressgateway/https.8443.https.a.default'],
  );
});
