import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseCaller } from '../../../src/controller/ca/tokens.ts';

const cases: [string, ReturnType<typeof parseCaller>][] = [
  ['node-1', { kind: 'node', node: 'node-1' }],
  ['sa:default/waypoint', { kind: 'workload', namespace: 'default', serviceAccount: 'waypoint' }],
  [
    'sa:istio-egress/waypoint.v2',
    { kind: 'workload', namespace: 'istio-egress', serviceAccount: 'waypoint.v2' },
  ],
  ['sa:default', undefined],
  ['sa:Default/x', undefined],
  ['sa:/x', undefined],
  ['sa:a/b/c', undefined],
];
for (const [who, want] of cases) {
  test(`tokens file: "${who}"`, () => assert.deepEqual(parseCaller(who), want));
}
