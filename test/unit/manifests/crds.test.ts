/**
 * Issue 7: the compact CRDs define every Istio and Gateway API kind the controller reads, at the
 * version it reads them (v1), as structural schemas the API server accepts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { findAll, loadAll, readRepoFile } from './manifests.ts';

const crds = findAll(loadAll(), 'CustomResourceDefinition');

/** The custom resources (group, plural, version) the controller watches (src/controller/kube/source.ts). */
function watchedCustomResources(): { group: string; version: string; plural: string }[] {
  const source = readRepoFile('src/controller/kube/source.ts');
  return [...source.matchAll(/path: '\/apis\/([^/']+)\/([^/']+)\/([^/']+)'/g)]
    .map((m) => ({ group: m[1]!, version: m[2]!, plural: m[3]! }))
    .filter((r) => r.group.endsWith('.istio.io') || r.group === 'gateway.networking.k8s.io');
}

test('every Istio and Gateway API kind the controller watches has a CRD serving its version', () => {
  const watched = watchedCustomResources();
  assert.ok(watched.length >= 6);
  for (const { group, version, plural } of watched) {
    const crd = crds.find((c) => c.metadata?.name === `${plural}.${group}`);
    assert.ok(crd, `no CRD for ${plural}.${group}`);
    assert.ok(
      crd.spec.versions.some((v) => v.name === version && v.served),
      `${plural}.${group} ${version}`,
    );
  }
});

test('the CRDs Ambit ships: the six Istio kinds and GatewayClass, Gateway, HTTPRoute and ReferenceGrant', () => {
  assert.deepEqual(crds.map((c) => c.metadata?.name).sort(), [
    'authorizationpolicies.security.istio.io',
    'destinationrules.networking.istio.io',
    'gatewayclasses.gateway.networking.k8s.io',
    'gateways.gateway.networking.k8s.io',
    'gateways.networking.istio.io',
    'httproutes.gateway.networking.k8s.io',
    'peerauthentications.security.istio.io',
    'referencegrants.gateway.networking.k8s.io',
    'serviceentries.networking.istio.io',
    'virtualservices.networking.istio.io',
  ]);
});

test('each CRD is well formed: name = plural.group, one storage version (v1), structural schemas, status subresource', () => {
  for (const c of crds) {
    const name = c.metadata?.name ?? '';
    const n = c.spec.names;
    assert.equal(name, `${n.plural}.${c.spec.group}`);
    assert.equal(n.listKind, `${n.kind}List`);
    assert.equal(c.spec.scope, n.kind === 'GatewayClass' ? 'Cluster' : 'Namespaced');
    assert.deepEqual(
      c.spec.versions.filter((v) => v.storage).map((v) => v.name),
      ['v1'],
      name,
    );
    for (const v of c.spec.versions) {
      const schema = v.schema?.openAPIV3Schema;
      // Structural: a type at the root and on every property; unknown fields kept only below them.
      assert.equal(schema?.type, 'object', name);
      for (const [field, s] of Object.entries(schema?.properties ?? {})) {
        assert.equal(s.type, 'object', `${name} ${v.name} ${field}`);
        assert.equal(s['x-kubernetes-preserve-unknown-fields'], true, `${name} ${v.name} ${field}`);
      }
      assert.deepEqual(v.subresources, { status: {} }, name);
    }
  }
});

test('the CRD files say the official CRDs are to be preferred', () => {
  for (const f of ['daemonset/crds/istio.yaml', 'daemonset/crds/gateway-api.yaml']) {
    assert.match(readRepoFile(f), /Prefer the official CRDs/, f);
  }
});
