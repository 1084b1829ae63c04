/**
 * `ambit analyze`, the real CLI: Istio's samples pass (exit 0), and broken copies of them fail
 * (exit 1) with each error's file, line, object, field path and hint.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ambit } from '../fakes/ambit-cli.ts';

const fixtures = fileURLToPath(new URL('../fixtures/', import.meta.url));
const l7Samples = join(fixtures, 'l7/istio-samples');
const kubeSamples = join(fixtures, 'kube/istio-samples');
/** The mesh (Services, Pods) the L7 samples refer to, and the subsets most of them route to. */
const mesh = join(fixtures, 'l7/mesh.yaml');
const subsets = join(l7Samples, '02-dr-bookinfo-subsets.yaml');

let dir: string;

async function samples(d: string): Promise<string[]> {
  return (await readdir(d)).filter((f) => f.endsWith('.yaml')).map((f) => join(d, f));
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ambit-cli-analyze-'));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('every Istio sample passes on its own: exit 0, no errors', async () => {
  const files = [...(await samples(l7Samples)), ...(await samples(kubeSamples))];
  assert.ok(files.length >= 20, `only ${files.length} samples`);
  for (const file of files) {
    const r = await ambit('analyze', '-f', file);
    assert.equal(r.code, 0, `${file}:\n${r.stdout}${r.stderr}`);
    assert.doesNotMatch(r.stdout, /^Error/m, file);
    assert.match(r.stdout, /analyzing 1 file\.\n$/);
  }
});

test('every L7 sample passes against the mesh it is written for (its Services and subsets)', async () => {
  for (const file of await samples(l7Samples)) {
    const text = await readFile(file, 'utf8');
    // The samples that bring their own DestinationRule define the subsets they use.
    const context = /kind: DestinationRule/.test(text) ? [mesh] : [mesh, subsets];
    const r = await ambit('analyze', ...context.flatMap((f) => ['-f', f]), '-f', file);
    assert.equal(r.code, 0, `${file}:\n${r.stdout}${r.stderr}`);
    assert.doesNotMatch(r.stdout, /^Error/m, file);
  }
});

/** A broken copy of a sample: `from` replaced by `to`, written to the test's directory. */
async function broken(
  name: string,
  sample: string,
  from: string | RegExp,
  to: string,
): Promise<{ file: string; line: number }> {
  const text = await readFile(sample, 'utf8');
  const next = text.replace(from, to);
  assert.notEqual(next, text, `${sample}: nothing to replace`);
  const file = join(dir, `${name}.yaml`);
  await writeFile(file, next);
  const line = next.slice(0, next.indexOf(to)).split('\n').length;
  return { file, line };
}

const cases = [
  {
    what: 'a weight over 100',
    sample: join(l7Samples, '03-vs-reviews-90-10.yaml'),
    from: 'weight: 90',
    to: 'weight: 150',
    object: 'VirtualService default/reviews',
    path: 'spec.http[0].route[0].weight',
    reason: /150 must be between 0 and 100/,
    hint: /weights of one route should add up to 100/,
  },
  {
    what: 'a bad regex',
    sample: join(l7Samples, '04-vs-reviews-jason-v2.yaml'),
    from: 'exact: jason',
    to: 'regex: "(jason+)+"',
    object: 'VirtualService default/reviews',
    path: 'spec.http[0].match[0].headers.end-user.regex',
    reason: /nested unbounded repetition/,
    hint: /RE2 syntax/,
  },
  {
    what: 'an unknown subset',
    sample: join(l7Samples, '03-vs-reviews-90-10.yaml'),
    from: 'subset: v2',
    to: 'subset: v9',
    object: 'VirtualService default/reviews',
    path: 'spec.http[0].route[1].destination.subset',
    reason: /subset "v9" is not defined by the DestinationRule for reviews\.default\.svc\.cluster\.local/,
    hint: /define it in a DestinationRule for reviews\.default\.svc\.cluster\.local/,
  },
  {
    what: 'a negative duration',
    sample: join(l7Samples, '08-vs-reviews-timeout.yaml'),
    from: 'timeout: 0.5s',
    to: 'timeout: -0.5s',
    object: 'VirtualService default/reviews',
    path: 'spec.http[0].timeout',
    reason: /"-0\.5s" must not be negative/,
    hint: /durations are Go-style/,
  },
  {
    what: 'a Gateway listener with a bad port',
    sample: join(kubeSamples, '19-waypoint-gateway.yaml'),
    from: 'port: 15008',
    to: 'port: 70000',
    object: 'Gateway default/waypoint',
    path: 'spec.listeners[0].port',
    reason: /70000 is not a port number \(1-65535\)/,
    hint: /a waypoint listens on \{name: mesh, port: 15008, protocol: HBONE\}/,
  },
];

for (const c of cases) {
  test(`${c.what}: found with its file, line, object and field path; exit 1`, async () => {
    const { file, line } = await broken(c.what.replace(/\W+/g, '-'), c.sample, c.from, c.to);
    // The Gateway sample defines its namespace itself; the L7 ones are checked against the mesh.
    const context = c.object.startsWith('Gateway') ? [] : [mesh, subsets];
    const r = await ambit('analyze', ...context.flatMap((f) => ['-f', f]), '-f', file);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const lines = r.stdout.split('\n');
    const at = lines.findIndex((l) => l.startsWith(`Error [${file}:${line}] ${c.object} ${c.path}: `));
    assert.ok(at >= 0, `no error at ${file}:${line} ${c.path} in:\n${r.stdout}`);
    assert.match(lines[at]!, c.reason);
    assert.match(lines[at + 1]!, /^ {4}hint: /);
    assert.match(lines[at + 1]!, c.hint);
    assert.match(r.stdout, /✘ \d+ errors? and \d+ warnings? found when analyzing \d+ files?\.\n$/);
  });
}

test('-o json: the same findings as data, with file, line, object, path and hint', async () => {
  const c = cases.find((x) => x.what === 'an unknown subset')!;
  const { file, line } = await broken('json-subset', c.sample, c.from, c.to);
  const r = await ambit('analyze', '-f', mesh, '-f', subsets, '-f', file, '-o', 'json');
  assert.equal(r.code, 1, r.stderr);
  const report = JSON.parse(r.stdout) as { files: string[]; errors: number; findings: unknown[] };
  assert.deepEqual(report.files, [mesh, subsets, file]);
  assert.equal(report.errors, 1);
  assert.deepEqual(report.findings, [
    {
      severity: 'Error',
      file,
      line,
      kind: 'VirtualService',
      namespace: 'default',
      name: 'reviews',
      path: c.path,
      message:
        'subset "v9" is not defined by the DestinationRule for reviews.default.svc.cluster.local (default/reviews); requests routed there get 503 (as in Istio)',
      hint: 'define it in a DestinationRule for reviews.default.svc.cluster.local: spec.subsets: [{name: v9, labels: {version: v9}}]',
    },
  ]);
});

test('warnings alone exit 0; a missing file is an error that names it', async () => {
  const r = await ambit('analyze', '-f', join(l7Samples, '02-dr-bookinfo-subsets.yaml'));
  assert.equal(r.code, 0);
  assert.match(
    r.stdout,
    /^Warning \[.*02-dr-bookinfo-subsets\.yaml:\d+\] DestinationRule default\/reviews spec\.host: /m,
  );
  assert.match(r.stdout, /! 0 errors and 4 warnings found when analyzing 1 file\.\n$/);
  const missing = await ambit('analyze', '-f', join(dir, 'nope.yaml'));
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^error: cannot read .*nope\.yaml: ENOENT/);
  const none = await ambit('analyze');
  assert.match(none.stderr, /required option '-f, --file <dir\|file\.\.\.>' not specified/);
});
