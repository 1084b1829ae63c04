/* Import direction (DESIGN.md §6): programs → core I/O edges → pure core → model → leaves. */
const programs = ['ztunnel', 'waypoint', 'controller', 'cli'];
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
    {
      name: 'core-never-imports-a-program',
      severity: 'error',
      from: { path: '^src/core/' },
      to: { path: `^src/(${programs.join('|')})/` },
    },
    ...programs
      .filter((p) => p !== 'cli')
      .map((p) => ({
        name: `${p}-imports-no-other-program`,
        severity: 'error',
        from: { path: `^src/${p}/` },
        to: { path: `^src/(${programs.filter((q) => q !== p).join('|')})/` },
      })),
    {
      name: 'src-never-imports-tests-or-bench',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench)/' },
    },
    {
      name: 'only-controller-kube-talks-to-kubernetes',
      severity: 'error',
      from: { pathNot: '^src/controller/kube/' },
      to: { path: 'node_modules/@kubernetes/client-node' },
    },
    {
      name: 'pure-core-does-no-io',
      comment: 'state/, policy/, xds model and the HBONE protocol helpers are pure: data in, data out',
      severity: 'error',
      from: { path: '^src/core/(state|policy)/|^src/core/hbone/protocol\\.ts$|^src/core/xds/model\\.ts$' },
      to: {
        path: '^(tls|http2|http|https|fs|fs/promises|dgram|child_process)$|node_modules/(pino|prom-client|@grpc)',
      },
    },
    {
      name: 'leaves-import-only-leaves',
      severity: 'error',
      from: { path: '^src/core/(errors|clock)\\.ts$' },
      to: { path: '^src/', pathNot: '^src/core/(errors|clock)\\.ts$' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
