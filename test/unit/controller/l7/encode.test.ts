/**
 * Encoding: every resource of a full translation (all the samples, plus TCP, HTTP/2, hashing, CORS,
 * mirrors, redirects and direct responses) becomes bytes that decode back, with an independently
 * loaded protobufjs root, to exactly the fields the translation set, typed configs included; and
 * versions are content hashes.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import protobuf from 'protobufjs';
import { encodeL7Resources, type EncodedResource } from '../../../../src/controller/translate/l7/encode.ts';
import { EnvoyTypeUrl } from '../../../../src/core/xds/l7-names.ts';
import { l7From, P, run, samples } from './helpers.ts';

const require = createRequire(import.meta.url);

/** A protobufjs root of its own, straight from the protos in @grpc/grpc-js-xds. */
function independentRoot(): protobuf.Root {
  const deps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
  const dirs = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(deps, d));
  const wellKnown = join(dirname(require.resolve('protobufjs/package.json')), 'google', 'protobuf');
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    if (target.startsWith('google/protobuf/')) {
      const f = join(wellKnown, target.slice('google/protobuf/'.length));
      return existsSync(f) ? f : target;
    }
    return dirs.map((d) => join(d, target)).find((f) => existsSync(f)) ?? target;
  };
  root.loadSync(
    [
      'envoy/config/listener/v3/listener.proto',
      'envoy/config/route/v3/route.proto',
      'envoy/config/cluster/v3/cluster.proto',
      'envoy/config/endpoint/v3/endpoint.proto',
      'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
      'envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto',
      'envoy/extensions/filters/http/fault/v3/fault.proto',
      'envoy/extensions/filters/http/cors/v3/cors.proto',
      'envoy/extensions/filters/http/router/v3/router.proto',
      'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
      'envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto',
      'envoy/extensions/load_balancing_policies/round_robin/v3/round_robin.proto',
      'envoy/extensions/load_balancing_policies/least_request/v3/least_request.proto',
      'envoy/extensions/load_balancing_policies/random/v3/random.proto',
      'envoy/extensions/load_balancing_policies/ring_hash/v3/ring_hash.proto',
      'envoy/extensions/load_balancing_policies/maglev/v3/maglev.proto',
    ],
    { keepCase: true },
  );
  root.resolveAll();
  return root;
}

const ROOT = independentRoot();

/** Decodes a message and every Any inside it, recursively: `{type_url, value: <decoded>}`. */
function decode(typeName: string, bytes: Uint8Array): unknown {
  const type = ROOT.lookupType(typeName);
  const obj = type.toObject(type.decode(bytes), {
    enums: String,
    longs: Number,
    bytes: String,
    defaults: false,
  });
  return expand(obj);
}

function expand(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(expand);
  if (typeof v !== 'object' || v === null) return v;
  const o = v as Record<string, unknown>;
  if (typeof o.type_url === 'string' && Object.keys(o).every((k) => k === 'type_url' || k === 'value')) {
    const value = typeof o.value === 'string' ? Buffer.from(o.value, 'base64') : new Uint8Array();
    return { type_url: o.type_url, value: decode(o.type_url.replace(/^.*\//, ''), value) };
  }
  return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, expand(x)]));
}

/** The translation's plain object in the same form: Any values decoded, other bytes as base64. */
function normalize(v: unknown): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  if (Array.isArray(v)) return v.map(normalize);
  if (typeof v !== 'object' || v === null) return v;
  const o = v as Record<string, unknown>;
  if (typeof o.type_url === 'string' && o.value instanceof Uint8Array)
    return { type_url: o.type_url, value: decode(o.type_url.replace(/^.*\//, ''), o.value) };
  // An empty list is nothing on the wire.
  return Object.fromEntries(
    Object.entries(o)
      .filter(([, x]) => !(Array.isArray(x) && x.length === 0))
      .map(([k, x]) => [k, normalize(x)]),
  );
}

/** Everything the translation can emit, in one run. */
function everything() {
  const extra = l7From(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: details }
spec:
  host: details
  trafficPolicy:
    loadBalancer: { consistentHash: { useSourceIp: true, maglev: { tableSize: 65537 } } }
    retryBudget: { percent: 10 }
    connectionPool: { http: { useClientProtocol: true, idleTimeout: 10s } }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: tcp-echo }
spec:
  hosts: [tcp-echo]
  tcp: [{ route: [{ destination: { host: tcp-echo, subset: v1 }, weight: 80 }, { destination: { host: tcp-echo, subset: v2 }, weight: 20 }] }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: productpage }
spec:
  hosts: [productpage]
  http:
  - match: [{ sourceLabels: { app: curl }, withoutHeaders: { x-debug: {} }, queryParams: { q: { prefix: a } } }]
    directResponse: { status: 200, body: { bytes: "aGVsbG8=" } }
  - match: [{ uri: { regex: "/p/[0-9]+" }, ignoreUriCase: true }]
    rewrite: { uriRegexRewrite: { match: "^/p/(.*)$", rewrite: "/product/\\\\1" }, authority: pp.internal }
    route: [{ destination: { host: productpage } }]
    retries: { attempts: 4, retryOn: "5xx,503", backoff: 50ms }
    fault: { abort: { grpcStatus: UNAVAILABLE, percentage: { value: 0.5 } } }
  - redirect: { scheme: https, derivePort: FROM_REQUEST_PORT, redirectCode: 308 }
`);
  const base = samples('01', '02', '05', '08', '10', '11', '14', '15', '16', '17');
  const prod = (o: { namespace: string; name: string }) =>
    ['ratings-route', 'reviews-route', 'bookinfo-ratings'].includes(o.name);
  const objs = {
    virtualServices: [
      ...base.virtualServices.map((v) => (prod(v) ? { ...v, namespace: 'prod' } : v)),
      ...extra.virtualServices,
    ],
    destinationRules: [
      ...base.destinationRules.map((d) => (prod(d) ? { ...d, namespace: 'prod' } : d)),
      ...extra.destinationRules,
    ],
  };
  return run(objs);
}

test('every resource round-trips: the bytes decode, with every typed config, to exactly what was translated', () => {
  const r = everything();
  const encoded = encodeL7Resources(r.resources);
  const plain = new Map<EnvoyTypeUrl, readonly object[]>([
    [EnvoyTypeUrl.Listener, r.resources.listeners],
    [EnvoyTypeUrl.RouteConfiguration, r.resources.routeConfigurations],
    [EnvoyTypeUrl.Cluster, r.resources.clusters],
    [EnvoyTypeUrl.ClusterLoadAssignment, r.resources.clusterLoadAssignments],
  ]);
  let count = 0;
  for (const [typeUrl, list] of encoded) {
    const objects = plain.get(typeUrl)!;
    assert.equal(list.length, objects.length);
    list.forEach((e, i) => {
      assert.equal(e.typeUrl, typeUrl);
      const decoded = decode(typeUrl.replace(/^.*\//, ''), e.bytes) as Record<string, unknown>;
      assert.deepEqual(decoded, normalize(objects[i]), `${typeUrl} ${e.name}`);
      assert.equal(decoded.name ?? decoded.cluster_name, e.name);
      count++;
    });
  }
  // Listeners, route configurations, clusters and assignments for the whole fixture mesh.
  assert.ok(count > 80, `${count} resources`);
  // Spot checks of typed configs, independently decoded.
  const listener = decode(
    'envoy.config.listener.v3.Listener',
    encoded.get(EnvoyTypeUrl.Listener)!.find((x) => x.name === `${P('ratings')}:9080`)!.bytes,
  ) as {
    api_listener: {
      api_listener: { type_url: string; value: { rds: unknown; http_filters: { name: string }[] } };
    };
  };
  assert.equal(
    listener.api_listener.api_listener.type_url,
    'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
  );
  assert.deepEqual(listener.api_listener.api_listener.value.rds, {
    route_config_name: `${P('ratings')}:9080`,
    config_source: { ads: {}, resource_api_version: 'V3' },
  });
  assert.deepEqual(
    listener.api_listener.api_listener.value.http_filters.map((f) => f.name),
    ['envoy.filters.http.fault', 'envoy.filters.http.cors', 'envoy.filters.http.router'],
  );
});

test('versions are content hashes: the same translation gives the same versions; a change changes only what it touches', () => {
  const versions = (list: Map<EnvoyTypeUrl, EncodedResource[]>) =>
    new Map([...list.values()].flat().map((e) => [`${e.typeUrl} ${e.name}`, e.version]));
  const a = versions(encodeL7Resources(everything().resources));
  const b = versions(encodeL7Resources(everything().resources));
  assert.deepEqual(a, b);
  for (const v of a.values()) assert.match(v, /^[0-9a-f]{16}$/);
  const changed = versions(encodeL7Resources(run(samples('02', '03')).resources));
  const base = versions(encodeL7Resources(run(samples('02')).resources));
  const differing = [...changed].filter(([k, v]) => base.get(k) !== v).map(([k]) => k);
  assert.deepEqual(differing, [
    'type.googleapis.com/envoy.config.route.v3.RouteConfiguration reviews.default.svc.cluster.local:9080',
  ]);
});
