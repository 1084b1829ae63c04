/**
 * CA root rotation without dropping traffic (issue 6, part 4): two real node agents get their
 * certificates from the real controller CA, with short lifetimes so they renew every few seconds.
 * The operator's three steps, each a rewrite of the CA files and a controller restart (it is
 * stateless; in a cluster, a rollout):
 *
 *   1. the new root is added to the bundle (the CA certificate file holds old, then new);
 *   2. the new root signs (new first, with its key), the old one still trusted;
 *   3. the old root is removed.
 *
 * Each step waits until both agents hold certificates of that step. Throughout, one long-lived
 * tunnel stays open and keeps echoing, and new connections — each over a new HBONE connection, so a
 * new mutual TLS handshake, since the pool carries one stream per connection here — must all
 * succeed. At the end a leaf of the old root is refused.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startController, type ControllerBound } from '../../src/controller/app.ts';
import type { ControllerConfig } from '../../src/controller/config.ts';
import { HbonePool } from '../../src/core/hbone/pool.ts';
import { CertificateAuthority } from '../../src/core/identity/ca.ts';
import type { WorkloadCertificate } from '../../src/core/identity/certificate.ts';
import type { Clock } from '../../src/core/clock.ts';
import {
  LocalCaProvider,
  SecretManager,
  type CertificateProvider,
} from '../../src/core/identity/secret-manager.ts';
import { formatSpiffe, type Identity } from '../../src/core/identity/spiffe.ts';
import { silentLogger } from '../../src/core/log.ts';
import { startZtunnel, type ZtunnelBound } from '../../src/ztunnel/app.ts';
import { agentConfig, ECHO_PORT, meshYaml, testPrefix, waitFor } from '../fakes/mesh.ts';
import { readAll, socksConnect } from '../fakes/socks-client.ts';

/** Certificates live 6 s (renewed at half life, ~3 s): each step settles within a few seconds. */
const CERT_TTL_MS = 6000;
const prefix = testPrefix();
const ip = { client: `${prefix}.1.2`, server: `${prefix}.2.2` };

let dir: string;
let oldRoot: CertificateAuthority;
let newRoot: CertificateAuthority;
let controller: ControllerBound | undefined;
let grpcPort = 0;
const agents: ZtunnelBound[] = [];
let echo: Server;

const KUBE = `
apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default}
spec: {nodeName: node-a, serviceAccountName: client}
status: {phase: Running, podIP: ${ip.client}}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: default}
spec: {nodeName: node-b, serviceAccountName: server}
status: {phase: Running, podIP: ${ip.server}}
`;

function controllerConfig(): ControllerConfig {
  return {
    configDir: join(dir, 'kube'),
    kubeconfigPath: '',
    inCluster: false,
    grpcAddr: { host: '127.0.0.1', port: grpcPort },
    grpcTlsAddr: undefined,
    proxylessXdsAddr: undefined,
    servingDnsNames: [],
    adminAddr: { host: '127.0.0.1', port: 0 },
    caCertPath: join(dir, 'ca-cert.pem'),
    caKeyPath: join(dir, 'ca-key.pem'),
    tokensPath: join(dir, 'tokens'),
    agentServiceAccounts: [],
    tokenAudiences: [],
    trustDomain: 'cluster.local',
    clusterId: 'Kubernetes',
    clusterDomain: 'cluster.local',
    rootNamespace: 'istio-system',
    debounceMs: 20,
    defaultCertTtlMs: CERT_TTL_MS,
    maxCertTtlMs: 3600_000,
    logLevel: 'silent',
  };
}

/** Writes the CA files (the first certificate signs, with `signer`'s key) and restarts the controller. */
async function rollCa(signer: CertificateAuthority, trusted: CertificateAuthority[]): Promise<void> {
  await writeFile(join(dir, 'ca-cert.pem'), trusted.map((r) => r.rootCertPem.trim()).join('\n') + '\n');
  await writeFile(join(dir, 'ca-key.pem'), signer.rootKeyPem);
  await controller?.close();
  controller = await startController(controllerConfig(), { log: silentLogger() });
  await controller.ready;
  grpcPort = controller.grpc.port;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ambit-rotation-'));
  oldRoot = await CertificateAuthority.createSelfSigned('cluster.local');
  newRoot = await CertificateAuthority.createSelfSigned('cluster.local');
  await mkdir(join(dir, 'kube'));
  await writeFile(join(dir, 'kube', 'mesh.yaml'), KUBE);
  await writeFile(join(dir, 'tokens'), 'token-a node-a\ntoken-b node-b\n');
  await writeFile(join(dir, 'mesh.yaml'), meshYaml(prefix));
  await rollCa(oldRoot, [oldRoot]);
  echo = createServer({ allowHalfOpen: true }, (s: Socket) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  await new Promise<void>((r) => echo.listen({ host: ip.server, port: ECHO_PORT }, r));
  for (const [node, token, socks] of [
    ['node-b', 'token-b', false],
    ['node-a', 'token-a', true],
  ] as const) {
    agents.push(
      await startZtunnel(
        {
          ...agentConfig(prefix, node, dir, socks),
          caAddress: `127.0.0.1:${grpcPort}`,
          authToken: token,
          certTtlMs: CERT_TTL_MS,
          // One stream per HBONE connection: every new tunnel is a new mutual TLS handshake.
          poolMaxStreamsPerConnection: 1,
          poolIdleTimeoutMs: 100,
        },
        { log: silentLogger() },
      ),
    );
  }
  await waitFor(
    () => agents.every((a) => a.pending().length === 0),
    10_000,
    () => agents.flatMap((a) => a.pending()).join(', '),
  );
});

after(async () => {
  await Promise.all(agents.map((a) => a.close()));
  await controller?.close();
  await new Promise((r) => echo.close(r));
  await rm(dir, { recursive: true, force: true });
});

interface HeldCertificate {
  identity: string;
  leaf: X509Certificate;
  roots: X509Certificate[];
}

/** What an agent presents and trusts now, from its admin config dump. */
async function held(agent: ZtunnelBound): Promise<HeldCertificate[]> {
  const dump = (await (
    await fetch(`http://${agent.admin.address}:${agent.admin.port}/config_dump`)
  ).json()) as {
    certificates: { identity: string; certChain: { pem: string }[]; rootCerts: { pem: string }[] }[];
  };
  const x = (b64: string) => new X509Certificate(Buffer.from(b64, 'base64').toString());
  return dump.certificates
    .filter((c) => c.certChain.length > 0)
    .map((c) => ({
      identity: c.identity,
      leaf: x(c.certChain[0]!.pem),
      roots: c.rootCerts.map((r) => x(r.pem)),
    }));
}

const fingerprints = (certs: X509Certificate[]) =>
  certs
    .map((c) => c.fingerprint256)
    .sort()
    .join(',');

/** Waits until every certificate of both agents is signed by `signer` and trusts exactly `trusted`. */
async function settled(signer: CertificateAuthority, trusted: CertificateAuthority[]): Promise<void> {
  const signerCert = new X509Certificate(signer.rootCertPem);
  const want = fingerprints(trusted.map((r) => new X509Certificate(r.rootCertPem)));
  let last: HeldCertificate[] = [];
  const deadline = Date.now() + 4 * CERT_TTL_MS;
  for (;;) {
    last = (await Promise.all(agents.map(held))).flat();
    if (
      last.length >= 2 &&
      last.every((h) => h.leaf.verify(signerCert.publicKey) && fingerprints(h.roots) === want)
    )
      return;
    if (Date.now() > deadline) {
      assert.fail(
        `certificates did not settle: ${last.map((h) => `${h.identity}: ${h.roots.length} roots`).join('; ')}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** One new connection through both agents: open, echo, close. */
async function probe(socks: { host: string; port: number }, n: number): Promise<void> {
  const s = await socksConnect(socks, ip.server, ECHO_PORT);
  const text = `probe ${n}`;
  s.end(text);
  assert.equal((await readAll(s)).toString(), text);
}

test('the CA root rotates in three steps while traffic flows', async () => {
  const socks = { host: agents[1]!.socks5[0]!.address, port: agents[1]!.socks5[0]!.port };
  // The long-lived tunnel, opened under the old root.
  const tunnel = await socksConnect(socks, ip.server, ECHO_PORT);
  tunnel.on('error', () => undefined);
  tunnel.resume();
  const ping = async (text: string) => {
    const got = new Promise<string>((r) => tunnel.once('data', (c: Buffer) => r(c.toString())));
    tunnel.write(text);
    assert.equal(await got, text, 'the long-lived tunnel still echoes');
  };
  await ping('under the old root');

  // New connections, one after another, all through the rotation.
  let probes = 0;
  const failures: string[] = [];
  let stop = false;
  const loop = (async () => {
    while (!stop) {
      try {
        await probe(socks, probes);
      } catch (err) {
        failures.push(`probe ${probes}: ${(err as Error).message}`);
      }
      probes++;
      await new Promise((r) => setTimeout(r, 50));
    }
  })();

  try {
    await rollCa(oldRoot, [oldRoot, newRoot]);
    await settled(oldRoot, [oldRoot, newRoot]);
    await ping('new root trusted');

    await rollCa(newRoot, [newRoot, oldRoot]);
    await settled(newRoot, [newRoot, oldRoot]);
    await ping('new root signs');

    await rollCa(newRoot, [newRoot]);
    await settled(newRoot, [newRoot]);
    await ping('old root removed');
  } finally {
    stop = true;
    await loop;
  }
  assert.deepEqual(failures, [], 'every new connection succeeded');
  assert.ok(probes > 20, `only ${probes} connections were tried`);
  tunnel.end();

  // The old root is no longer trusted: a leaf it signs is refused in the handshake.
  const stale = await new LocalCaProvider(oldRoot, 3600_000).fetch(identity('client'));
  const pool = new HbonePool({
    getCertificate: async () => ({ ...stale, rootsPem: newRoot.trustBundlePem }),
    log: silentLogger(),
    connectTimeoutMs: 2000,
    idleTimeoutMs: 1000,
    maxStreamsPerConnection: 1,
  });
  try {
    await assert.rejects(
      pool.connect(
        {
          srcIdentity: identity('client'),
          srcIp: ip.client,
          dstIp: ip.server,
          dstPort: 15008,
          expectedIdentities: [formatSpiffe(identity('server'))],
        },
        { authority: `${ip.server}:${ECHO_PORT}`, headers: {} },
      ),
    );
  } finally {
    pool.destroy();
  }
});

const identity = (sa: string): Identity => ({
  trustDomain: 'cluster.local',
  namespace: 'default',
  serviceAccount: sa,
});

class ManualClock implements Clock {
  now = 1_000_000;
  nowMs(): number {
    return this.now;
  }
  setTimer(): () => void {
    return () => undefined;
  }
}

test('when one certificate arrives with new roots, the node re-issues its other identities at once', async () => {
  let ca = oldRoot;
  const fetched: string[] = [];
  const provider: CertificateProvider = {
    fetch: async (id) => {
      fetched.push(id.serviceAccount);
      return new LocalCaProvider(ca, 3600_000).fetch(id);
    },
  };
  const clock = new ManualClock();
  const secrets = new SecretManager({ provider, clock, log: silentLogger() });
  try {
    const a = await secrets.get(identity('a'));
    await secrets.get(identity('b'));
    assert.deepEqual(fetched, ['a', 'b']);

    // The CA now trusts both roots; a new identity's first certificate shows it.
    ca = await CertificateAuthority.fromPem(
      `${oldRoot.rootCertPem}${newRoot.rootCertPem}`,
      oldRoot.rootKeyPem,
    );
    clock.now += 10_000;
    const c = await secrets.get(identity('c'));
    assert.equal(c.rootsPem.match(/BEGIN CERTIFICATE/g)?.length, 2);
    const twoRoots = (sa: string) =>
      secrets.current(identity(sa))?.rootsPem.match(/BEGIN CERTIFICATE/g)?.length === 2;
    await waitFor(
      () => twoRoots('a') && twoRoots('b'),
      3000,
      () => fetched.join(','),
    );
    assert.deepEqual(fetched.slice(3).sort(), ['a', 'b']);
    const reissued = secrets.current(identity('a')) as WorkloadCertificate;
    assert.notEqual(reissued.serialNumber, a.serialNumber);
    assert.equal(reissued.rootsPem.match(/BEGIN CERTIFICATE/g)?.length, 2);

    // Right after, another change does not re-issue them again (two CA replicas that disagree
    // must not make the agent fetch in a loop).
    ca = oldRoot;
    await secrets.get(identity('d'));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(fetched.length, 6);
  } finally {
    secrets.close();
  }
});
