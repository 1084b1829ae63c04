import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LastGoodObjects, type Rejection } from '../../../src/controller/translate/last-good.ts';
import { AMBIENT, pod, service, snapshot } from './objects.ts';

const error = (kind: string, namespace: string, name: string): Rejection => ({
  severity: 'error',
  kind,
  namespace,
  name,
});

/** One controller round as app.ts runs it: substitute what the source left out, then commit. */
function round(
  lg: LastGoodObjects,
  s: ReturnType<typeof snapshot>,
  leftOut: Rejection[],
  failed: Rejection[] = [],
) {
  const first = lg.substitute(s, leftOut, 'left-out');
  const second = lg.substitute(first.snapshot, failed, 'failed');
  lg.commit(second.snapshot, leftOut, failed);
  return { snapshot: second.snapshot, kept: [...first.kept, ...second.kept] };
}

test('an object the source rejects is served in its last good version, until it is fixed or deleted', () => {
  const lg = new LastGoodObjects();
  const v1 = pod({ podIPs: ['10.0.0.1'] });
  const other = service();
  round(lg, snapshot({ namespaces: [AMBIENT], pods: [v1], services: [other] }), []);

  // The pod's update does not decode: the source leaves it out and names it.
  const bad = round(lg, snapshot({ namespaces: [AMBIENT], services: [other] }), [
    error('Pod', 'default', 'reviews-v1-abc'),
  ]);
  assert.deepEqual(bad.snapshot.pods, [v1]);
  assert.deepEqual(bad.kept, [{ kind: 'Pod', namespace: 'default', name: 'reviews-v1-abc' }]);
  // Still rejected next round: still the last good one.
  assert.deepEqual(
    round(lg, snapshot({ namespaces: [AMBIENT], services: [other] }), [
      error('Pod', 'default', 'reviews-v1-abc'),
    ]).snapshot.pods,
    [v1],
  );

  // Fixed: the new version is served and becomes the good one.
  const v2 = pod({ podIPs: ['10.0.0.2'] });
  assert.deepEqual(round(lg, snapshot({ pods: [v2] }), []).snapshot.pods, [v2]);
  assert.deepEqual(
    round(lg, snapshot({}), [error('Pod', 'default', 'reviews-v1-abc')]).snapshot.pods,
    [v2],
    'the newest good version is the one kept',
  );

  // Deleted (absent and not rejected): gone, and not brought back by a later rejection.
  assert.deepEqual(round(lg, snapshot({}), []).snapshot.pods, []);
  assert.deepEqual(round(lg, snapshot({}), [error('Pod', 'default', 'reviews-v1-abc')]).snapshot.pods, []);
});

test('never good: a rejected object stays skipped; warnings and unnamed problems keep nothing', () => {
  const lg = new LastGoodObjects();
  const r = round(lg, snapshot({}), [
    error('Pod', 'default', 'new'),
    { severity: 'warning', kind: 'Service', namespace: 'default', name: 'reviews' },
    error('', '', ''),
    error('Deployment', 'default', 'x'),
  ]);
  assert.deepEqual(r.snapshot, snapshot({}));
  assert.deepEqual(r.kept, []);
});

test('a rejected duplicate definition leaves the present one in place, and edits to it are taken', () => {
  const lg = new LastGoodObjects();
  const ns1 = { name: 'default', labels: { a: '1' } };
  round(lg, snapshot({ namespaces: [ns1] }), []);
  const ns2 = { name: 'default', labels: { a: '2' } };
  // The source reports the second definition (Namespace names have no namespace) and keeps the first.
  const r = round(lg, snapshot({ namespaces: [ns2] }), [error('Namespace', '', 'default')]);
  assert.deepEqual(r.snapshot.namespaces, [ns2]);
  assert.deepEqual(r.kept, []);
  // ns2 is now the good version.
  assert.deepEqual(
    round(lg, snapshot({ namespaces: [] }), [error('Namespace', '', 'default')]).snapshot.namespaces,
    [ns2],
  );
});

test('an object its translation rejects is swapped for its last good version', () => {
  const lg = new LastGoodObjects();
  const good = service({ clusterIPs: ['10.96.0.1'] });
  round(lg, snapshot({ services: [good] }), []);
  const broken = service({ clusterIPs: ['not-an-ip'] });
  const r = round(lg, snapshot({ services: [broken] }), [], [error('Service', 'default', good.name)]);
  assert.deepEqual(r.snapshot.services, [good]);
  assert.deepEqual(r.kept, [{ kind: 'Service', namespace: 'default', name: good.name }]);
  // With no good version, the translation's rejection stands (the object stays as it is).
  const fresh = new LastGoodObjects();
  const r2 = round(fresh, snapshot({ services: [broken] }), [], [error('Service', 'default', good.name)]);
  assert.deepEqual(r2.snapshot.services, [broken]);
});
