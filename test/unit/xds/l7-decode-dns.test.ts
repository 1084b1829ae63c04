/**
 * DNS clusters (issue 8 part 2): a STRICT_DNS / LOGICAL_DNS Cluster, as istiod sends one for a
 * ServiceEntry resolved by DNS, through the real Envoy protobuf encoding: its load_assignment
 * decoded inline, host names allowed there (and only there), every error with its path.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  decodeClusterBytes,
  decodeClusterLoadAssignmentBytes,
  encodeEnvoy,
} from '../../../src/core/xds/l7-wire.ts';

const CLUSTER = 'envoy.config.cluster.v3.Cluster';
const CLA = 'envoy.config.endpoint.v3.ClusterLoadAssignment';

const endpoint = (address: string, port: number) => ({
  endpoint: { address: { socket_address: { address, port_value: port } } },
});

test('a STRICT_DNS cluster carries its host-name endpoints inline', () => {
  for (const type of ['STRICT_DNS', 'LOGICAL_DNS']) {
    const r = decodeClusterBytes(
      encodeEnvoy(CLUSTER, {
        name: 'outbound|80||edition.cnn.com',
        type,
        load_assignment: {
          cluster_name: 'outbound|80||edition.cnn.com',
          endpoints: [{ lb_endpoints: [endpoint('localhost', 8080), endpoint('192.0.2.1', 80)] }],
        },
      }),
    );
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(
      r.value.dnsAssignment?.endpoints.map((e) => `${e.address}:${e.port}`),
      ['localhost:8080', '192.0.2.1:80'],
    );
  }
});

test('bad DNS clusters are rejected with their paths; EDS assignments still take IP addresses only', () => {
  const bad = (wire: object) => {
    const r = decodeClusterBytes(encodeEnvoy(CLUSTER, wire));
    assert.equal(r.ok, false);
    return r.ok ? [] : r.errors.map((e) => `${e.path}: ${e.message}`);
  };
  assert.deepEqual(bad({ name: 'c', type: 'STRICT_DNS' }), [
    'load_assignment: is required for a STRICT_DNS cluster',
  ]);
  assert.deepEqual(
    bad({
      name: 'c',
      type: 'STRICT_DNS',
      load_assignment: { endpoints: [{ lb_endpoints: [endpoint('not a name!', 80)] }] },
    }),
    [
      'load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address: "not a name!" is not an IP address or host name',
    ],
  );
  assert.deepEqual(bad({ name: 'c', type: 'STATIC' }), [
    'type: must be EDS, STRICT_DNS, LOGICAL_DNS or ORIGINAL_DST, not STATIC',
  ]);
  const eds = decodeClusterLoadAssignmentBytes(
    encodeEnvoy(CLA, { cluster_name: 'c', endpoints: [{ lb_endpoints: [endpoint('localhost', 80)] }] }),
  );
  assert.equal(eds.ok, false);
});
