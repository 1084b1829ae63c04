import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  addResult,
  cniPod,
  formatCniRequest,
  parseCniArgs,
  parseCniRequest,
  parseCniResponse,
  formatCniResponse,
  type CniRequest,
} from '../../../src/ztunnel/inpod/cni-protocol.ts';

const CONF = {
  cniVersion: '1.0.0',
  name: 'k8s-pod-network',
  type: 'ambit-cni',
  prevResult: {
    cniVersion: '1.0.0',
    interfaces: [{ name: 'eth0', sandbox: '/var/run/netns/cni-1234' }],
    ips: [
      { address: '10.201.1.2/24', gateway: '10.201.1.1', interface: 0 },
      { address: 'fd00:1::2/64', interface: 0 },
    ],
  },
};
const ENV = {
  CNI_COMMAND: 'ADD',
  CNI_CONTAINERID: 'c0ffee',
  CNI_NETNS: '/var/run/netns/cni-1234',
  CNI_IFNAME: 'eth0',
  CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=reviews-v1-abc;K8S_POD_UID=u-1',
};

function request(env: Record<string, string>, conf: unknown = CONF): CniRequest {
  const r = parseCniRequest(formatCniRequest(env, JSON.stringify(conf)));
  if (!r.ok) assert.fail(r.error);
  return r.value;
}

test('an ADD decodes to the pod, its netns and its IPs without prefix lengths', () => {
  const pod = cniPod(request(ENV));
  assert.deepEqual(pod, {
    ok: true,
    value: {
      containerId: 'c0ffee',
      namespace: 'default',
      name: 'reviews-v1-abc',
      uid: 'u-1',
      netns: '/var/run/netns/cni-1234',
      ips: ['10.201.1.2', 'fd00:1::2'],
    },
  });
});

test('ADD answers the previous result in the configuration version', () => {
  const r = addResult(request(ENV, { ...CONF, cniVersion: '1.1.0' }));
  assert.equal(r.exitCode, 0);
  assert.deepEqual(JSON.parse(r.stdout), { ...CONF.prevResult, cniVersion: '1.1.0' });
});

test('a DEL needs only the container id', () => {
  const pod = cniPod(request({ CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'c0ffee' }, {}));
  assert.equal(pod.ok && pod.value.containerId, 'c0ffee');
});

const badAdds: { name: string; env?: Record<string, string>; conf?: unknown; error: RegExp }[] = [
  { name: 'no container id', env: { ...ENV, CNI_CONTAINERID: '' }, error: /CNI_CONTAINERID/ },
  { name: 'no pod name', env: { ...ENV, CNI_ARGS: 'K8S_POD_NAMESPACE=default' }, error: /K8S_POD_NAME/ },
  { name: 'no netns', env: { ...ENV, CNI_NETNS: '' }, error: /CNI_NETNS/ },
  { name: 'not chained', conf: { cniVersion: '1.0.0' }, error: /chained after/ },
  { name: 'no IPs', conf: { ...CONF, prevResult: { ips: [] } }, error: /ips is empty/ },
  {
    name: 'an IP without prefix',
    conf: { ...CONF, prevResult: { ips: [{ address: '10.0.0.1' }] } },
    error: /ips\[0\]\.address/,
  },
];
for (const b of badAdds) {
  test(`ADD with ${b.name} is refused with the reason`, () => {
    const pod = cniPod(request(b.env ?? ENV, b.conf ?? CONF));
    assert.equal(pod.ok, false);
    if (!pod.ok) assert.match(pod.error, b.error);
  });
}

const badRequests: { name: string; raw: string; error: RegExp }[] = [
  { name: 'wrong magic', raw: 'HELLO\n\n{}', error: /not "AMBIT-CNI 1"/ },
  { name: 'no header end', raw: 'AMBIT-CNI 1\nCNI_COMMAND=ADD', error: /no blank line/ },
  { name: 'bad header', raw: 'AMBIT-CNI 1\nnonsense\n\n{}', error: /not NAME=value/ },
  { name: 'unknown command', raw: 'AMBIT-CNI 1\nCNI_COMMAND=EXPLODE\n\n{}', error: /not a CNI command/ },
  { name: 'config not JSON', raw: 'AMBIT-CNI 1\nCNI_COMMAND=ADD\n\n{nope', error: /not JSON/ },
  { name: 'config an array', raw: 'AMBIT-CNI 1\nCNI_COMMAND=ADD\n\n[1]', error: /not a JSON object/ },
];
for (const b of badRequests) {
  test(`a request with ${b.name} is rejected`, () => {
    const r = parseCniRequest(Buffer.from(b.raw));
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.error, b.error);
  });
}

test('CNI_ARGS: pairs split on ; and =, values may hold =', () => {
  assert.deepEqual(
    [...parseCniArgs('A=1; B = x=y ;junk;=z')],
    [
      ['A', '1'],
      ['B', 'x=y'],
    ],
  );
});

test('responses round-trip, and an answer without a code is an error', () => {
  const r = parseCniResponse(formatCniResponse({ exitCode: 1, stdout: '{"code":100}\nmore' }));
  assert.deepEqual(r, { ok: true, value: { exitCode: 1, stdout: '{"code":100}\nmore' } });
  assert.equal(parseCniResponse(Buffer.from('oops\n{}')).ok, false);
});
