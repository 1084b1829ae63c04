/**
 * An identity can only be used by its workload (issue 6, "identity checks everywhere"): spoofing
 * attempts against real agents and the real controller CA.
 *
 * - Data plane: a client with a valid certificate for another identity, sending from the address of
 *   a mesh workload, is attributed and authorized as the identity in its certificate; an impostor
 *   server with a valid certificate for the wrong identity, or a self-signed one with the right SAN,
 *   is refused by the client agent; a self-signed client certificate naming a real workload is
 *   refused by the server agent.
 * - CA: a revoked node token gets nothing; a node agent gets no certificate for another node's pod,
 *   neither by naming it nor by slipping it into the CSR under its own pod's name.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  credentials,
  makeGenericClientConstructor,
  Metadata,
  status,
  type ServiceError,
} from '@grpc/grpc-js';
import { startController, type ControllerBound } from '../../src/controller/app.ts';
import { HbonePool } from '../../src/core/hbone/pool.ts';
import { HboneServer } from '../../src/core/hbone/server.ts';
import { GrpcCaProvider } from '../../src/core/identity/ca-client.ts';
import type { WorkloadCertificate } from '../../src/core/identity/certificate.ts';
import { createCsr } from '../../src/core/identity/csr.ts';
import { LocalCaProvider } from '../../src/core/identity/secret-manager.ts';
import { formatSpiffe, type Identity } from '../../src/core/identity/spiffe.ts';
import { derToPem, ECDSA_SHA256, P256_KEY, subtle, x509 } from '../../src/core/identity/x509.ts';
import { silentLogger } from '../../src/core/log.ts';
import { caServiceDefinition, type CertificateResponse } from '../../src/core/proto/ca-service.ts';
import { captureLogger } from '../fakes/capture-log.ts';
import { ECHO_PORT, meshYaml, startTestMesh, waitFor, type TestMesh } from '../fakes/mesh.ts';
import { readAll, socksConnect, type SocksError } from '../fakes/socks-client.ts';

const captured = captureLogger('info');
let mesh: TestMesh;
let issuer: LocalCaProvider;

const id = (sa: string, namespace = 'default'): Identity => ({
  trustDomain: 'cluster.local',
  namespace,
  serviceAccount: sa,
});

/** A pod the mesh config places on a node no agent serves: whoever listens on its :15008 is an impostor. */
const victimIp = () => `${mesh.prefix}.2.20`;
const withVictim = (extra = '') =>
  meshYaml(mesh.prefix, extra).replace(
    '\nservices:\n',
    `
- uid: test//Pod/default/victim
  name: victim
  namespace: default
  serviceAccount: victim
  workloadIps: [${victimIp()}]
  protocol: HBONE
  node: node-z
services:
`,
  );

before(async () => {
  mesh = await startTestMesh({ log: captured.log });
  issuer = new LocalCaProvider(mesh.ca, 3600_000);
  await writeFile(mesh.configPath, withVictim());
  await waitFor(
    () => mesh.a.state().workloadByIp(victimIp()) !== undefined,
    3000,
    () => 'config not applied',
  );
});
after(async () => {
  await mesh.close();
});

/** A certificate that signs itself, with the SAN of `identity`; it trusts our roots as a peer. */
async function selfSigned(identity: Identity): Promise<WorkloadCertificate> {
  const keys = await subtle.generateKey(P256_KEY, true, ['sign', 'verify']);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '0a0b0c',
    name: 'O=cluster.local',
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3600_000),
    keys,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: formatSpiffe(identity) }], true),
    ],
  });
  return {
    identity,
    keyPem: derToPem(await subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY'),
    chainPem: [cert.toString('pem')],
    rootsPem: mesh.ca.trustBundlePem,
    notBeforeMs: now - 60_000,
    notAfterMs: now + 3600_000,
    serialNumber: cert.serialNumber,
  };
}

/** An impostor listening on the victim's HBONE port with `cert`; counts the CONNECTs it receives. */
async function impostor(
  cert: WorkloadCertificate,
): Promise<{ requests: () => number; close: () => Promise<void> }> {
  let requests = 0;
  const server = await HboneServer.start({
    host: victimIp(),
    port: 15008,
    certificate: cert,
    trustDomain: 'cluster.local',
    log: silentLogger(),
    onRequest: (req) => {
      requests++;
      req.reject(503);
    },
  });
  return { requests: () => requests, close: () => server.close(0) };
}

/** A CONNECT from the client pod's address, presenting `cert`, to the server pod: the status or the error. */
async function connectAs(cert: WorkloadCertificate): Promise<number | Error> {
  const pool = new HbonePool({
    getCertificate: async () => cert,
    log: silentLogger(),
    connectTimeoutMs: 2000,
    idleTimeoutMs: 10_000,
    maxStreamsPerConnection: 100,
  });
  try {
    const r = await pool.connect(
      {
        srcIdentity: cert.identity,
        srcIp: mesh.ip.client,
        dstIp: mesh.ip.server,
        dstPort: 15008,
        expectedIdentities: [formatSpiffe(id('server'))],
      },
      { authority: `${mesh.ip.server}:${ECHO_PORT}`, headers: {} },
    );
    if (!r.ok) return r.status;
    r.stream.destroy();
    return 200;
  } catch (err) {
    return err as Error;
  } finally {
    pool.destroy();
  }
}

const accessLines = (pred: (l: Record<string, unknown>) => boolean) =>
  captured.lines.filter((l) => l.scope === 'access' && l.msg === 'connection complete' && pred(l));

const onlyClient = `policies:
- name: only-client
  namespace: default
  scope: Namespace
  action: Deny
  rules: [[[{notPrincipals: [{Exact: cluster.local/ns/default/sa/client}]}]]]
`;

test('a valid certificate for another identity, from a mesh pod’s address, is that identity', async () => {
  const attacker = await issuer.fetch(id('attacker'));
  // Without a policy the tunnel is accepted, but as "attacker": the client pod's address lends it
  // neither the client's identity nor its workload.
  assert.equal(await connectAs(attacker), 200);
  const attackerSpiffe = formatSpiffe(id('attacker'));
  await waitFor(
    () => accessLines((l) => l.direction === 'inbound' && l.srcIdentity === attackerSpiffe).length > 0,
    3000,
  );
  const accepted = accessLines((l) => l.direction === 'inbound' && l.srcIdentity === attackerSpiffe)[0]!;
  assert.equal(accepted.srcWorkload, undefined);
  assert.equal(accepted.src?.toString().startsWith(mesh.ip.client), true);

  // A DENY for everyone but the client: the attacker is refused with 401, the real client is not.
  await writeFile(mesh.configPath, withVictim(onlyClient));
  await waitFor(
    () => mesh.b.state().config.policies.length === 1,
    3000,
    () => 'policy not applied',
  );
  assert.equal(await connectAs(attacker), 401);
  const s = await socksConnect(mesh.socks, mesh.ip.server, ECHO_PORT);
  s.end('real client');
  assert.equal((await readAll(s)).toString(), 'real client');

  // The denial: an access-log line naming the policy and the identity, and the metric.
  await waitFor(() => accessLines((l) => l.policy === 'default/only-client').length > 0, 3000);
  const denied = accessLines((l) => l.policy === 'default/only-client')[0]!;
  assert.equal(denied.srcIdentity, attackerSpiffe);
  assert.equal(denied.responseFlags, 'DENY');
  assert.equal(denied.direction, 'inbound');
  assert.equal(denied.level, 40);
  assert.match(String(denied.error), /explicitly denied by default\/only-client/);
  const metrics = await (
    await fetch(`http://${mesh.b.metrics.address}:${mesh.b.metrics.port}/metrics`)
  ).text();
  assert.match(
    metrics,
    /istio_tcp_connections_failed_total\{reporter="destination"[^}]*source_principal="spiffe:\/\/cluster\.local\/ns\/default\/sa\/attacker"[^}]*response_flags="DENY"[^}]*\} 1/,
  );

  await writeFile(mesh.configPath, withVictim());
  await waitFor(
    () => mesh.b.state().config.policies.length === 0,
    3000,
    () => 'policy not removed',
  );
});

const impostors: { name: string; cert: () => Promise<WorkloadCertificate>; error: RegExp }[] = [
  {
    name: 'a valid certificate that names another identity',
    cert: () => issuer.fetch(id('impostor')),
    error:
      /server identity spiffe:\/\/cluster\.local\/ns\/default\/sa\/impostor is not the expected spiffe:\/\/cluster\.local\/ns\/default\/sa\/victim/,
  },
  {
    name: 'a self-signed certificate that names the right identity',
    cert: () => selfSigned(id('victim')),
    error: /self.signed|unable to verify|SELF_SIGNED/i,
  },
];

for (const c of impostors) {
  test(`the client agent refuses a server with ${c.name}`, async () => {
    const fake = await impostor(await c.cert());
    try {
      await assert.rejects(
        socksConnect(mesh.socks, victimIp(), ECHO_PORT),
        (e: unknown) => (e as SocksError).reply === 1,
      );
      assert.equal(fake.requests(), 0, 'no CONNECT reached the impostor');
      await waitFor(
        () =>
          accessLines(
            (l) =>
              l.direction === 'outbound' &&
              String(l.dst).startsWith(victimIp()) &&
              c.error.test(String(l.error)),
          ).length > 0,
        3000,
        () => JSON.stringify(accessLines((l) => l.direction === 'outbound').slice(-2)),
      );
    } finally {
      await fake.close();
    }
  });
}

test('the server agent refuses a self-signed client certificate that names a real workload', async () => {
  const before = captured.lines.length;
  const r = await connectAs(await selfSigned(id('client')));
  assert.ok(r instanceof Error, `expected a refused handshake, got ${String(r)}`);
  await waitFor(
    () =>
      captured.lines
        .slice(before)
        .some(
          (l) =>
            l.msg === 'hbone peer rejected' &&
            /client certificate rejected: .*SELF_SIGNED/i.test(String(l.error)),
        ),
    3000,
  );
  // Nothing was attributed to the client workload.
  assert.deepEqual(
    accessLines((l) => l.direction === 'inbound').filter(
      (l) => captured.lines.indexOf(l) >= before && l.srcWorkload === 'client',
    ),
    [],
  );
});

// ---- The controller's CA ----

const KUBE = `
apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: curl, namespace: default}
spec: {nodeName: node-1, serviceAccountName: curl}
status: {phase: Running, podIP: 10.0.1.2}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: default}
spec: {nodeName: node-2, serviceAccountName: db}
status: {phase: Running, podIP: 10.0.2.2}
`;

async function withController(
  fn: (c: { target: string; tokensPath: string }) => Promise<void>,
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-spoof-'));
  const kube = join(dir, 'kube');
  let controller: ControllerBound | undefined;
  try {
    await writeFile(join(dir, 'ca-cert.pem'), mesh.ca.rootCertPem);
    await writeFile(join(dir, 'ca-key.pem'), mesh.ca.rootKeyPem);
    await writeFile(join(dir, 'tokens'), 'token-one node-1\ntoken-two node-2\n');
    await mkdir(kube);
    await writeFile(join(kube, 'mesh.yaml'), KUBE);
    controller = await startController(
      {
        configDir: kube,
        kubeconfigPath: '',
        inCluster: false,
        grpcAddr: { host: '127.0.0.1', port: 0 },
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
        defaultCertTtlMs: 3600_000,
        maxCertTtlMs: 7200_000,
        logLevel: 'silent',
      },
      { log: silentLogger() },
    );
    await controller.ready;
    await fn({ target: `127.0.0.1:${controller.grpc.port}`, tokensPath: join(dir, 'tokens') });
  } finally {
    await controller?.close();
    await rm(dir, { recursive: true, force: true });
  }
}

const provider = (target: string, token: string) =>
  new GrpcCaProvider({
    target,
    credentials: credentials.createInsecure(),
    token: () => token,
    clusterId: 'Kubernetes',
    ttlMs: 3600_000,
    timeoutMs: 3000,
  });

test('a revoked node token gets no certificate, and a node agent none for another node’s pod', async () => {
  await withController(async ({ target, tokensPath }) => {
    const one = provider(target, 'token-one');
    try {
      // Its own pod: issued.
      assert.deepEqual((await one.fetch(id('curl'))).identity, id('curl'));
      // Another node's pod, named outright.
      await assert.rejects(
        one.fetch(id('db')),
        /PERMISSION_DENIED|no pod with identity .*sa\/db is scheduled on node node-1/,
      );

      // Its own pod's name in ImpersonatedIdentity, another node's pod in the CSR.
      const Ctor = makeGenericClientConstructor(caServiceDefinition(), 'IstioCertificateService');
      const raw = new Ctor(target, credentials.createInsecure()) as unknown as {
        CreateCertificate(
          req: unknown,
          md: Metadata,
          cb: (err: ServiceError | null, res?: CertificateResponse) => void,
        ): void;
        close(): void;
      };
      const md = new Metadata();
      md.set('authorization', 'Bearer token-one');
      const { csrPem } = await createCsr(id('db'));
      const smuggled = await new Promise<ServiceError | CertificateResponse>((resolve) =>
        raw.CreateCertificate(
          {
            csr: csrPem,
            validity_duration: 3600,
            metadata: { ImpersonatedIdentity: formatSpiffe(id('curl')) },
          },
          md,
          (err, res) => resolve(err ?? res!),
        ),
      ).finally(() => raw.close());
      assert.ok('code' in smuggled, 'refused');
      assert.equal(smuggled.code, status.INVALID_ARGUMENT);
      assert.match(smuggled.details, /sa\/db, which is not the caller's identity/);

      // The token is revoked by removing its line: the next request is refused.
      await writeFile(tokensPath, 'token-two node-2\n');
      await assert.rejects(one.fetch(id('curl')), /the bearer token is not valid/);
      // The other node's token still works, for its own pod only.
      const two = provider(target, 'token-two');
      try {
        assert.deepEqual((await two.fetch(id('db'))).identity, id('db'));
        await assert.rejects(two.fetch(id('curl')), /is scheduled on node node-2/);
      } finally {
        two.close();
      }
    } finally {
      one.close();
    }
  });
});
