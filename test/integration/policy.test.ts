/**
 * L4 AuthorizationPolicy in the node agent, end to end through two agents.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { ECHO_PORT, meshYaml, startTestMesh, waitFor, type TestMesh } from '../fakes/mesh.ts';
import type { SocksError } from '../fakes/socks-client.ts';
import { readAll, socksConnect } from '../fakes/socks-client.ts';

let mesh: TestMesh;
before(async () => {
  mesh = await startTestMesh();
});
after(async () => {
  await mesh.close();
});

const denyClient = `policies:
- name: deny-client
  namespace: default
  scope: Namespace
  action: Deny
  rules: [[[{principals: [{Exact: cluster.local/ns/default/sa/client}]}]]]
`;

async function applied(agentHasPolicies: () => boolean): Promise<void> {
  await waitFor(agentHasPolicies, 3000, () => 'config not applied');
}

test('a policy change closes an open connection that is now denied, end to end', async () => {
  const s = await socksConnect(mesh.socks, mesh.ip.server, ECHO_PORT);
  s.write('before');
  s.resume();
  const first = await new Promise<string>((r) => s.once('data', (c: Buffer) => r(c.toString())));
  assert.equal(first, 'before');
  const ended = new Promise((r) => s.once('end', r));

  await writeFile(mesh.configPath, meshYaml(mesh.prefix, denyClient));
  await applied(() => mesh.b.state().config.policies.length === 1);
  // The client's own socket ends: the denial reached it through the tunnel, not just the app side.
  await ended;
  s.end();
  await waitFor(() => mesh.a.openConnections() === 0 && mesh.b.openConnections() === 0, 3000);

  // New connections are refused: HBONE 401 → SOCKS "not allowed by ruleset" (2).
  await assert.rejects(
    socksConnect(mesh.socks, mesh.ip.server, ECHO_PORT),
    (e: unknown) => (e as SocksError).reply === 2,
  );
  const metrics = await (
    await fetch(`http://${mesh.b.metrics.address}:${mesh.b.metrics.port}/metrics`)
  ).text();
  assert.match(
    metrics,
    /istio_tcp_connections_failed_total\{reporter="destination"[^}]*response_flags="DENY"[^}]*\} [1-9]/,
  );

  // Lifting the policy lets traffic through again.
  await writeFile(mesh.configPath, meshYaml(mesh.prefix));
  await applied(() => mesh.b.state().config.policies.length === 0);
  const again = await socksConnect(mesh.socks, mesh.ip.server, ECHO_PORT);
  again.end('after');
  assert.equal((await readAll(again)).toString(), 'after');
});
