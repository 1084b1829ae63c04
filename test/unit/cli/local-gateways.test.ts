/**
 * `ambit local`'s gateway deployments (local-gateways.ts): which deployments Istio's Gateways want,
 * and the objects written for them read back by the controller's own YAML decoder and workload
 * translation — the egress gateway an HBONE workload behind a Service VIP, the ingress gateway out of
 * the mesh.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import {
  GATEWAYS_GENERATED_FILE,
  ISTIO_GATEWAY_KINDS,
  LocalGateways,
} from '../../../src/cli/local-gateways.ts';
import { buildSnapshot, decodeKubeYaml } from '../../../src/controller/files/kube-yaml.ts';
import { translate } from '../../../src/controller/translate/workloads.ts';

const TASK = new URL('../../fixtures/istio-tasks/egress-gateway.yaml', import.meta.url);
const SAMPLE_18 = new URL(
  '../../fixtures/kube/istio-samples/18-gateway-bookinfo-ingress.yaml',
  import.meta.url,
);

const docs = (text: string) => parseAllDocuments(text).map((d) => d.toJS() as unknown);
const want = (text: string) => ISTIO_GATEWAY_KINDS.flatMap((k) => k(docs(text)));

test("Istio's Gateways want the deployment their selector picks, on their server ports", async () => {
  const task = await readFile(TASK, 'utf8');
  const sample18 = await readFile(SAMPLE_18, 'utf8');
  assert.deepEqual(
    want(task).map((d) => [`${d.namespace}/${d.name}`, d.serviceAccount, d.slot, d.ambient, d.ports]),
    [
      [
        'istio-system/istio-egressgateway',
        'istio-egressgateway-service-account',
        2,
        true,
        [{ number: 80, protocol: 'HTTP' }],
      ],
    ],
  );
  assert.deepEqual(
    want(sample18).map((d) => [`${d.namespace}/${d.name}`, d.slot, d.ambient, d.ports]),
    [['istio-system/istio-ingressgateway', 1, false, [{ number: 8080, protocol: 'HTTP' }]]],
  );
  // A selector with a label neither deployment has picks neither; so does a Gateway API Gateway.
  assert.deepEqual(want(task.replace('istio: egressgateway', 'istio: egressgateway\n    zone: b')), []);
  assert.deepEqual(
    want(
      task.replace('networking.istio.io/v1\nkind: Gateway', 'gateway.networking.k8s.io/v1\nkind: Gateway'),
    ),
    [],
  );
});

test('the written objects: the egress gateway is an HBONE workload behind a VIP; the ingress gateway stays out', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-local-gw-'));
  try {
    await writeFile(join(dir, 'task.yaml'), await readFile(TASK, 'utf8'));
    await writeFile(join(dir, '18.yaml'), await readFile(SAMPLE_18, 'utf8'));
    const gws = await LocalGateways.prepare({
      kubeDir: dir,
      dir,
      prefix: '127.150',
      nodeName: 'node-1',
      main: '/nonexistent',
      controllerTls: '127.0.0.1:1',
      caCertPath: '/nonexistent',
      tokensPath: join(dir, 'tokens'),
      report: (line) => assert.fail(line),
    });
    assert.deepEqual(
      gws.list().map((g) => [g.name, g.podIp, g.serviceIp]),
      [
        ['istio-ingressgateway', '127.150.4.1', '127.150.104.1'],
        ['istio-egressgateway', '127.150.4.2', '127.150.104.2'],
      ],
    );
    const text = await readFile(join(dir, GATEWAYS_GENERATED_FILE), 'utf8');
    const decoded = decodeKubeYaml(text, GATEWAYS_GENERATED_FILE);
    assert.deepEqual(decoded.problems, []);
    const { config, problems } = translate(buildSnapshot(decoded.objects).snapshot, {
      clusterId: 'Kubernetes',
      trustDomain: 'cluster.local',
      clusterDomain: 'cluster.local',
      rootNamespace: 'istio-system',
    });
    assert.deepEqual(problems, []);
    const egress = config.workloads.find((w) => w.name === 'istio-egressgateway-local')!;
    assert.equal(egress.tunnelProtocol, 'HBONE');
    assert.equal(egress.serviceAccount, 'istio-egressgateway-service-account');
    assert.deepEqual(
      [...egress.services.keys()],
      ['istio-system/istio-egressgateway.istio-system.svc.cluster.local'],
    );
    assert.notEqual(
      config.workloads.find((w) => w.name === 'istio-ingressgateway-local')!.tunnelProtocol,
      'HBONE',
    );
    const svc = config.services.find(
      (s) => s.hostname === 'istio-egressgateway.istio-system.svc.cluster.local',
    )!;
    assert.deepEqual(
      svc.vips.map((v) => v.address),
      ['127.150.104.2'],
    );
    assert.deepEqual([...svc.ports], [[80, 80]]);
    await gws.close(() => Promise.resolve());
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
