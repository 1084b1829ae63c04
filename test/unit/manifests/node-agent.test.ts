/**
 * Issue 7: the node-agent DaemonSet as Istio's ztunnel chart sets ztunnel (reference/istio-api.md
 * §4.2), with the CNI plugin installed by its init container, and an environment the agent's config
 * reader accepts. Each requirement is its own assertion, so a drift names what drifted.
 */
import assert from 'node:assert/strict';
import { dirname } from 'node:path';
import { test } from 'node:test';
import { buildZtunnelConfig, ZTUNNEL_ENV } from '../../../src/ztunnel/config.ts';
import {
  container,
  envOf,
  find,
  loadAll,
  podSpec,
  projectedToken,
  readRepoFile,
  volumeAt,
} from './manifests.ts';

const all = loadAll();
const ds = find(all, 'DaemonSet', 'ztunnel', 'daemonset/ambit/node-agent.yaml');
const spec = podSpec(ds);
const agent = container(ds, 'ztunnel');
const install = container(ds, 'install-cni', true);
const env = envOf(agent);

function agentConfig() {
  const built = buildZtunnelConfig(env);
  assert.ok(
    built.ok,
    `the agent's config reader refuses the manifest's environment: ${JSON.stringify(built)}`,
  );
  return built.config;
}

test('the agent runs `ambit ztunnel` in-pod, in the pod network (not hostNetwork, not hostPID)', () => {
  assert.deepEqual(agent.args, ['ztunnel']);
  assert.notEqual(spec.hostNetwork, true);
  assert.notEqual(spec.hostPID, true);
  assert.equal(agentConfig().inpod, true);
});

test('the agent has NET_ADMIN, SYS_ADMIN and NET_RAW, as root, and no other capability', () => {
  const sc = agent.securityContext;
  assert.deepEqual([...(sc?.capabilities?.add ?? [])].sort(), ['NET_ADMIN', 'NET_RAW', 'SYS_ADMIN']);
  assert.deepEqual(sc?.capabilities?.drop, ['ALL']);
  assert.equal(sc?.privileged, false);
  assert.equal(sc?.runAsUser, 0);
  assert.equal(sc?.readOnlyRootFilesystem, true);
});

test('the CNI socket is on the host at /var/run/ambit, the same path inside the agent and for the plugin', () => {
  const cfg = agentConfig();
  assert.equal(dirname(cfg.cniSocketPath), '/var/run/ambit');
  assert.equal(volumeAt(ds, agent, cfg.cniSocketPath).volume.hostPath?.path, '/var/run/ambit');
  // The plugin runs on the host and dials the socket by its host path.
  assert.equal(envOf(install).AMBIT_CNI_SOCKET, cfg.cniSocketPath);
});

test("the host's named network namespaces are visible, including ones created after the agent started", () => {
  const mount = agent.volumeMounts?.find((m) => m.mountPath === '/var/run/netns');
  assert.equal(mount?.mountPropagation, 'HostToContainer');
  assert.equal(volumeAt(ds, agent, '/var/run/netns').volume.hostPath?.path, '/var/run/netns');
});

test('the init container installs the CNI plugin into the host CNI dirs with the image installer', () => {
  assert.deepEqual(install.command, ['/usr/local/bin/ambit-cni-install']);
  const e = envOf(install);
  assert.equal(volumeAt(ds, install, e.CNI_BIN_DIR ?? '').volume.hostPath?.path, '/opt/cni/bin');
  assert.equal(volumeAt(ds, install, e.CNI_NET_DIR ?? '').volume.hostPath?.path, '/etc/cni/net.d');
  assert.ok(['open', 'closed'].includes(e.AMBIT_CNI_FAIL_POLICY ?? ''), 'failPolicy must be open or closed');
  // It needs no capability: root writing root-owned host dirs.
  assert.deepEqual(install.securityContext?.capabilities, { drop: ['ALL'] });
});

test('the init container sets only variables the installer reads', () => {
  const script = readRepoFile('daemonset/cni-install.sh');
  const read = new Set([...script.matchAll(/^([A-Z_][A-Z0-9_]*)="\$\{\1:-/gm)].map((m) => m[1]!));
  assert.ok(read.size >= 5, `found only ${[...read].join(', ')} in the installer`);
  for (const name of Object.keys(envOf(install))) {
    assert.ok(read.has(name), `the installer does not read ${name}`);
  }
});

test('a projected token with the CA audience, and no other service-account token', () => {
  assert.equal(spec.automountServiceAccountToken, false);
  const cfg = agentConfig();
  const { volume, rest } = volumeAt(ds, agent, cfg.authToken);
  const token = projectedToken(volume, rest);
  assert.ok(token, `AUTH_TOKEN ${cfg.authToken} is not a projected service-account token`);
  assert.equal(token.audience, 'istio-ca');
});

test('the CA root certificate comes from a ConfigMap, never from the CA Secret', () => {
  const cfg = agentConfig();
  const { volume, rest } = volumeAt(ds, agent, cfg.xdsRootCaPath);
  assert.equal(volume.configMap?.name, 'ambit-ca-root-cert');
  assert.equal(rest, 'root-cert.pem');
  assert.ok(!(spec.volumes ?? []).some((v) => v.secret), 'the agent mounts a Secret');
});

test('system-node-critical, every taint tolerated, Linux nodes only', () => {
  assert.equal(spec.priorityClassName, 'system-node-critical');
  assert.ok(
    (spec.tolerations ?? []).some((t) => t.operator === 'Exists' && !t.key && !t.effect),
    'no toleration of every taint ({operator: Exists})',
  );
  assert.deepEqual(spec.nodeSelector, { 'kubernetes.io/os': 'linux' });
});

test('rolling update: the new agent starts before the old one stops (maxSurge 1, maxUnavailable 0)', () => {
  assert.deepEqual(ds.spec?.updateStrategy, {
    type: 'RollingUpdate',
    rollingUpdate: { maxSurge: 1, maxUnavailable: 0 },
  });
});

test("readiness is probed on the agent's readiness port, /healthz/ready", () => {
  const cfg = agentConfig();
  assert.equal(agent.readinessProbe?.httpGet?.path, '/healthz/ready');
  assert.equal(agent.readinessProbe?.httpGet?.port, 15021);
  assert.equal(cfg.readiness.port, 15021);
  assert.notEqual(cfg.readiness.host, '127.0.0.1', 'the kubelet probes the pod IP');
  assert.ok(agent.ports?.some((p) => p.containerPort === cfg.readiness.port));
  assert.ok(agent.ports?.some((p) => p.containerPort === cfg.metrics.port));
});

test('the grace period outlasts the drain deadline', () => {
  const graceMs = (spec.terminationGracePeriodSeconds ?? 30) * 1000;
  assert.ok(graceMs > agentConfig().drainDeadlineMs, `${graceMs} ms <= ${agentConfig().drainDeadlineMs} ms`);
});

test('resource requests for the agent', () => {
  assert.ok(agent.resources?.requests?.cpu);
  assert.ok(agent.resources?.requests?.memory);
});

test('the pods are labelled out of the mesh', () => {
  const labels = ds.spec?.template.metadata?.labels;
  assert.equal(labels?.['istio.io/dataplane-mode'], 'none');
  assert.equal(labels?.['sidecar.istio.io/inject'], 'false');
});

test('every variable set on the agent is one it reads (ZTUNNEL_ENV)', () => {
  for (const name of Object.keys(env)) assert.ok(name in ZTUNNEL_ENV, `the agent does not read ${name}`);
});
