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
      from: {
        path: [
          '^src/core/(state|policy)/',
          '^src/core/hbone/protocol\\.ts$',
          '^src/core/xds/model\\.ts$',
          '^src/core/xds/l7-(model|decode|decode-common|decode-cluster|regex)\\.ts$',
          '^src/waypoint/(router|cluster-picker|header-mutations|xxhash64)\\.ts$',
        ],
      },
      to: {
        path: '^(tls|http2|http|https|fs|fs/promises|dgram|child_process)$|node_modules/(pino|prom-client|@grpc)',
      },
    },
    {
      name: 'waypoint-l7-core-is-pure',
      comment:
        'the L7 model, its decoders, the router and the cluster picker take data and return data: no sockets, files or protobuf runtime (l7-wire.ts is their edge)',
      severity: 'error',
      from: {
        path: [
          '^src/core/xds/l7-(model|decode|decode-common|decode-cluster|regex)\\.ts$',
          '^src/waypoint/(router|cluster-picker|header-mutations|xxhash64)\\.ts$',
        ],
      },
      to: {
        path: '^(node:)?(net|tls|http2|http|https|fs|fs/promises|dgram|child_process|module)$|node_modules/protobufjs',
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
