/**
 * The agent accepts, over xDS, a workload for a pod that is scheduled but has no IP yet (Istio's WDS
 * sends them; the controller does too, so that a pod is captured at its CNI ADD), while every other
 * problem is still rejected with its path.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeAddress, encodeWorkload } from '../../../src/core/xds/workload-proto.ts';
import { pod } from './inpod-fakes.ts';

test('a scheduled pod without addresses decodes, with no hostname made up', () => {
  const w = pod('new-pod', [], { canonicalName: 'new', workloadName: 'new' });
  const d = decodeAddress(encodeWorkload(w));
  assert.ok(d.ok, JSON.stringify(d));
  assert.equal(d.value.kind, 'workload');
  if (d.value.kind !== 'workload') return;
  assert.deepEqual(d.value.workload, w);
});

test('an address-less workload with another problem is still rejected, with the path', () => {
  const w = pod('p', ['10.0.0.5', 'fd00::5']);
  const bad = decodeAddress(encodeWorkload({ ...w, addresses: [], namespace: '' }));
  assert.equal(bad.ok, false);
  if (bad.ok) return;
  assert.deepEqual(
    bad.errors.map((e) => e.path),
    ['workload.namespace'],
  );
});
