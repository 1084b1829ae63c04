/**
 * A waypoint on the in-pod test bed (issue 5): the waypoint runs in a pod of its own on node-1 (not
 * captured), Service demo/web is bound to it with `istio.io/use-waypoint`, and a captured client pod
 * makes plain HTTP requests to web's cluster IP with no proxy settings. Its agent carries them over
 * HBONE to the waypoint, which applies web's VirtualService (80/20 by subset over echo-a and echo-b)
 * and forwards each request over its own HBONE to the chosen pod's agent. Needs root; skips with the
 * reason elsewhere.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { APP_PORTS, InpodMesh, inpodSkipReason } from './lib/inpod-mesh.ts';

const WEB_VIP = '10.96.0.20';
const URL_WEB = `http://${WEB_VIP}/`;
const SPLIT = { v1: 80, v2: 20 } as const;
const REQUESTS = 1000;

const WEB_YAML = `---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: demo, labels: { istio.io/use-waypoint: waypoint } }
spec:
  selector: { app: echo }
  clusterIP: ${WEB_VIP}
  ports: [{ name: http, port: 80, targetPort: ${APP_PORTS.http} }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: web, namespace: demo }
spec:
  host: web
  subsets:
  - { name: v1, labels: { version: v1 } }
  - { name: v2, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: web, namespace: demo }
spec:
  hosts: [web]
  http:
  - route:
    - { destination: { host: web, subset: v1 }, weight: ${SPLIT.v1} }
    - { destination: { host: web, subset: v2 }, weight: ${SPLIT.v2} }
`;

/** What the 8083 app answers: who it is and what it received. */
interface AppAnswer {
  readonly pod: string;
  readonly headers: Readonly<Record<string, string>>;
}

/** Sum of a counter's samples whose labels include every `key="value"` in `labels`. */
function counterSum(metrics: string, name: string, labels: readonly string[]): number {
  return metrics
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) && labels.every((x) => l.includes(x)))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

describe(
  'a waypoint in its own pod, captured client → agent → waypoint → agent → pod',
  {
    skip: inpodSkipReason(),
  },
  () => {
    let mesh: InpodMesh;

    before(async () => {
      mesh = await InpodMesh.start({ waypoint: { name: 'waypoint' }, extraYaml: WEB_YAML });
      // The agents learn web's waypoint binding and the waypoint its routes from the controller; a
      // request that carries the waypoint's x-request-id shows both have.
      const deadline = Date.now() + 20_000;
      let last = '';
      for (;;) {
        const r = await mesh.http(mesh.client, URL_WEB);
        last = r.stdout;
        if (r.stdout.endsWith('\n200') && r.stdout.includes('x-request-id')) break;
        if (Date.now() > deadline)
          throw new Error(`web never answered through the waypoint: ${last}\n${mesh.outputs()}`);
        await new Promise((res) => setTimeout(res, 250));
      }
    });

    after(async () => {
      await mesh?.close();
    });

    test('a plain HTTP request to the bound Service passes the waypoint and reaches an echo pod', async () => {
      const before = counterSum(await metrics(), 'istio_requests_total', ['reporter="waypoint"']);
      const r = await mesh.http(mesh.client, URL_WEB);
      assert.ok(r.stdout.endsWith('\n200'), r.stdout);
      const answer = JSON.parse(r.stdout.slice(0, r.stdout.lastIndexOf('\n'))) as AppAnswer;
      assert.ok([mesh.echoA.ip, mesh.echoB.ip].includes(answer.pod), `answered by ${answer.pod}`);
      // Headers only the waypoint adds (the client's curl sends neither).
      assert.ok(answer.headers['x-request-id'], JSON.stringify(answer.headers));
      assert.equal(answer.headers['x-forwarded-proto'], 'http');
      const text = await metrics();
      const after = counterSum(text, 'istio_requests_total', ['reporter="waypoint"']);
      assert.equal(
        after - before,
        1,
        text
          .split('\n')
          .filter((l) => l.startsWith('istio_requests_total'))
          .join('\n'),
      );
      assert.ok(
        counterSum(text, 'istio_requests_total', [
          'reporter="waypoint"',
          'destination_service_name="web"',
          'response_code="200"',
        ]) >= 1,
      );
    });

    test(`the VirtualService splits ${SPLIT.v1}/${SPLIT.v2} by subset over ${REQUESTS} requests`, async () => {
      const out = await mesh.inPod(mesh.client, ['http-many', URL_WEB, String(REQUESTS), '4'], 25_000);
      const r = JSON.parse(out) as {
        status: Record<string, number>;
        byPod: Record<string, number>;
        failed: number;
        firstError?: string;
      };
      assert.equal(r.failed, 0, r.firstError);
      assert.deepEqual(r.status, { 200: REQUESTS });
      const v1 = r.byPod[mesh.echoA.ip] ?? 0;
      const v2 = r.byPod[mesh.echoB.ip] ?? 0;
      assert.equal(v1 + v2, REQUESTS, JSON.stringify(r.byPod));
      // Within 5 standard deviations of the binomial (p = 0.8: 800 ± 63).
      const p = SPLIT.v1 / (SPLIT.v1 + SPLIT.v2);
      const sd = Math.sqrt(REQUESTS * p * (1 - p));
      assert.ok(
        Math.abs(v1 - REQUESTS * p) <= 5 * sd,
        `v1 (echo-a) got ${v1} of ${REQUESTS}, want ${REQUESTS * p} ± ${(5 * sd).toFixed(0)}`,
      );
    });

    async function metrics(): Promise<string> {
      const r = await mesh.http(mesh.waypoint!.pod, mesh.waypoint!.metricsUrl);
      assert.ok(r.stdout.endsWith('\n200'), `waypoint metrics: ${r.stdout.slice(-300)}`);
      return r.stdout;
    }
  },
);
