/**
 * Issue 7: the Dockerfile and the manifests agree — the image has what the manifests run (the CLI
 * entrypoint, the CNI installer and plugin at the paths the DaemonSet uses, the tools the node agent
 * runs) and runs as the user the manifests expect — and the build context holds what the build copies.
 * (No Docker engine runs here, so the image itself is not built by the tests.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  allContainers,
  container,
  find,
  GATEWAY_TEMPLATE_FILE,
  loadAll,
  podSpec,
  readRepoFile,
  TEMPLATE_FILE,
} from './manifests.ts';

const dockerfile = readRepoFile('Dockerfile');
const pkg = JSON.parse(readRepoFile('package.json')) as {
  version: string;
  bin: Record<string, string>;
  devDependencies: Record<string, string>;
};
const all = loadAll();
/** Instructions with continuation lines joined, comments dropped. */
const instructions = dockerfile
  .replace(/\\\n/g, ' ')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));
const stages = instructions
  .join('\n')
  .split(/^FROM /m)
  .slice(1);
const runtime = stages[stages.length - 1]!;
/** The Debian packages a stage installs. */
const aptPackages = (stage: string) =>
  /apt-get install -y --no-install-recommends ([^&\n]+)/.exec(stage)?.[1]?.trim().split(/\s+/) ?? [];

test('multi-stage on Node 24 slim, the Node major the package pins', () => {
  assert.ok(instructions.includes('ARG NODE_IMAGE=node:24-slim'));
  assert.equal(stages.length, 2);
  const major = /^(\d+)/.exec(pkg.devDependencies.node ?? '')?.[1];
  assert.equal(major, '24', 'the node devDependency and the base image must agree');
});

test('the build stage compiles the addon and the CNI plugin with npm ci (python3, make, g++)', () => {
  const build = stages[0]!;
  for (const p of ['python3', 'make', 'g++']) assert.ok(aptPackages(build).includes(p), p);
  assert.match(build, /RUN npm ci --omit=dev/);
  assert.match(build, /test -f build\/Release\/ambit_netns\.node/);
  assert.match(build, /test -x build\/Release\/ambit-cni/);
});

test("the entrypoint is the CLI, and each program's args are one of its commands", () => {
  assert.match(runtime, /^ENTRYPOINT \["node", "src\/cli\/main\.ts"\]$/m);
  assert.equal(pkg.bin.ambit, 'src/cli/main.ts');
  const main = readRepoFile('src/cli/main.ts');
  for (const { where, c, init } of allContainers(all)) {
    if (init) continue;
    const cmd = (c.args as string[])[0]!;
    assert.ok(main.includes(`'${cmd}',`), `${where}: \`ambit ${cmd}\` is not a command of src/cli/main.ts`);
  }
});

test('the CNI installer and plugin are where the DaemonSet and the installer look for them', () => {
  const ds = find(all, 'DaemonSet', 'ztunnel');
  const install = container(ds, 'install-cni', true);
  assert.match(
    runtime,
    new RegExp(`^COPY --chmod=0755 daemonset/cni-install\\.sh ${(install.command as string[])[0]!}$`, 'm'),
  );
  const script = readRepoFile('daemonset/cni-install.sh');
  const binary = /^AMBIT_CNI_BINARY="\$\{AMBIT_CNI_BINARY:-([^}]+)\}"$/m.exec(script)?.[1];
  assert.equal(binary, '/app/build/Release/ambit-cni');
  assert.match(runtime, /^WORKDIR \/app$/m);
  assert.match(
    runtime,
    /^COPY --from=build \/app\/build\/Release\/ambit_netns\.node \/app\/build\/Release\/ambit-cni build\/Release\/$/m,
  );
});

test("the runtime has the node agent's tools (nsenter, iptables, ip) and the installer's jq", () => {
  for (const p of ['util-linux', 'iptables', 'iproute2', 'jq'])
    assert.ok(aptPackages(runtime).includes(p), p);
});

test('the image runs as the non-root user the controller and waypoint pods name; the agent overrides it to root', () => {
  const m = /^USER (\d+):(\d+)$/m.exec(runtime);
  assert.ok(m, 'USER must be numeric uid:gid (runAsNonRoot can only check a number)');
  for (const [name, file] of [
    ['ambit-controller', 'daemonset/ambit/controller.yaml'],
    ['waypoint', TEMPLATE_FILE],
    ['web-ambit', GATEWAY_TEMPLATE_FILE],
  ] as const) {
    const sc = podSpec(find(all, 'Deployment', name, file)).securityContext;
    assert.equal(String(sc?.runAsUser), m[1], name);
    assert.equal(String(sc?.runAsGroup), m[2], name);
  }
  assert.equal(container(find(all, 'DaemonSet', 'ztunnel'), 'ztunnel').securityContext?.runAsUser, 0);
});

test("the manifests' image is ambit:<package version>", () => {
  for (const { where, c } of allContainers(all)) {
    // ${IMAGE}: the controller's own.
    if (where.startsWith(TEMPLATE_FILE) || where.startsWith(GATEWAY_TEMPLATE_FILE)) continue;
    assert.equal(c.image, `ambit:${pkg.version}`, where);
  }
});

test('.dockerignore lets in exactly what the Dockerfile copies from the context', () => {
  const lines = readRepoFile('.dockerignore')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  assert.equal(lines[0], '*', 'everything is excluded first (node_modules/ and build/ hold host binaries)');
  const allowed = lines.slice(1).map((l) => l.replace(/^!/, '').replace(/\/$/, ''));
  const copied = instructions
    .filter((l) => l.startsWith('COPY ') && !l.includes('--from='))
    .flatMap((l) =>
      l
        .replace(/^COPY (--\S+ )*/, '')
        .split(/\s+/)
        .slice(0, -1),
    )
    .map((p) => p.replace(/\/$/, ''));
  for (const p of copied) {
    assert.ok(
      allowed.some((a) => p === a || p.startsWith(`${a}/`)),
      `${p} is copied but .dockerignore leaves it out`,
    );
  }
});
