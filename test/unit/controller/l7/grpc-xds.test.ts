/**
 * The resources pass `@grpc/grpc-js-xds`'s own validation (its xds-resource-type decoders, the code
 * a proxyless gRPC client runs on every LDS/RDS/CDS/EDS resource), so gRPC clients accept what the
 * waypoint gets. Its deep imports are not a public API: if a release moves them, this test says so.
 *
 * Known, by design: gRPC clients reject a RouteConfiguration holding a redirect or direct response
 * (they cannot follow either), and never ask for the Listener of a TCP port.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { encodeL7Resources } from '../../../../src/controller/translate/l7/encode.ts';
import { EnvoyTypeUrl } from '../../../../src/core/xds/l7-names.ts';
import { H, l7From, run, samples } from './helpers.ts';

const require = createRequire(import.meta.url);

interface DecodeResult {
  name: string;
  value?: object;
  error?: string;
}
interface ResourceType {
  get(): { decode(context: unknown, resource: { type_url: string; value: Buffer }): DecodeResult };
}

function grpcXds(): Record<EnvoyTypeUrl, ResourceType> {
  (require('@grpc/grpc-js-xds') as { register(): void }).register(); // HTTP filters and LB policies
  const load = (file: string, name: string) =>
    (require(`@grpc/grpc-js-xds/build/src/xds-resource-type/${file}.js`) as Record<string, ResourceType>)[
      name
    ]!;
  return {
    [EnvoyTypeUrl.Listener]: load('listener-resource-type', 'ListenerResourceType'),
    [EnvoyTypeUrl.RouteConfiguration]: load('route-config-resource-type', 'RouteConfigurationResourceType'),
    [EnvoyTypeUrl.Cluster]: load('cluster-resource-type', 'ClusterResourceType'),
    [EnvoyTypeUrl.ClusterLoadAssignment]: load('endpoint-resource-type', 'EndpointResourceType'),
  };
}

const CONTEXT = { server: {}, bootstrap: { certificateProviders: {} } };

test('@grpc/grpc-js-xds accepts every Listener, RouteConfiguration, Cluster and ClusterLoadAssignment a gRPC client would fetch', () => {
  const types = grpcXds();
  const objs = samples('02', '03', '05', '06', '08', '10', '11', '16');
  const extra = l7From(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: details }
spec:
  host: details
  trafficPolicy: { loadBalancer: { consistentHash: { httpHeaderName: x-user, maglev: { tableSize: 65537 } } } }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: details }
spec:
  hosts: [details]
  http:
  - match: [{ headers: { x-user: { regex: "[a-z]+" } }, sourceNamespace: prod }]
    route: [{ destination: { host: details } }]
    corsPolicy: { allowOrigins: [{ prefix: "https://" }], allowMethods: [GET] }
    retries: { attempts: 3, retryOn: unavailable, perTryTimeout: 1s }
    timeout: 5s
  - route: [{ destination: { host: details } }]
    retries: { attempts: 0 }
`);
  const r = run({
    virtualServices: [...objs.virtualServices, ...extra.virtualServices],
    destinationRules: [...objs.destinationRules, ...extra.destinationRules],
  });
  let checked = 0;
  for (const [typeUrl, list] of encodeL7Resources(r.resources)) {
    for (const e of list) {
      // gRPC clients only speak HTTP: the Listener of a TCP port is the waypoint's alone.
      if (
        typeUrl === EnvoyTypeUrl.Listener &&
        r.resources.listeners.find((l) => l.name === e.name)?.api_listener === undefined
      )
        continue;
      const result = types[typeUrl].get().decode(CONTEXT, { type_url: typeUrl, value: Buffer.from(e.bytes) });
      assert.equal(result.error, undefined, `${e.name}: ${result.error ?? ''}`);
      assert.equal(result.name, e.name);
      checked++;
    }
  }
  const { listeners, routeConfigurations, clusters, clusterLoadAssignments } = r.resources;
  assert.equal(
    checked,
    listeners.filter((l) => l.api_listener).length +
      routeConfigurations.length +
      clusters.length +
      clusterLoadAssignments.length,
  );
});

test('gRPC clients reject a route configuration with a redirect or a direct response (they can follow neither)', () => {
  const types = grpcXds();
  const r = run(
    l7From(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: details }
spec:
  hosts: [details]
  http: [{ redirect: { authority: elsewhere.example } }]`),
  );
  const rc = encodeL7Resources(r.resources)
    .get(EnvoyTypeUrl.RouteConfiguration)!
    .find((e) => e.name === `${H('details')}:9080`)!;
  const result = types[EnvoyTypeUrl.RouteConfiguration]
    .get()
    .decode(CONTEXT, { type_url: EnvoyTypeUrl.RouteConfiguration, value: Buffer.from(rc.bytes) });
  assert.match(result.error ?? '', /unsupported action: redirect/);
});
