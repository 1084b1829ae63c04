#!/usr/bin/env node
/** `ambit`: one CLI for every program (DESIGN.md §1). */
import { Command, Option } from 'commander';
import { ZTUNNEL_ENV } from '../ztunnel/config.ts';
import { CONTROLLER_ENV } from '../controller/config.ts';
import { WAYPOINT_ENV } from '../waypoint/config.ts';
import { GATEWAY_ENV } from '../waypoint/gateway/config.ts';
import { registerConfigCommands } from './config-cmd.ts';
import { registerWaypointCommands } from './waypoint-cmd.ts';
import { parseOutputFormat, type OutputFormat } from './output.ts';
import { VERSION, versionText } from './version.ts';

const program = new Command('ambit')
  .description('Ambit: an ambient-mode service mesh (node agent, waypoints, controller)')
  .version(VERSION, '-v, --version')
  // `ambit waypoint` runs the waypoint with its flags, and `ambit waypoint apply ...` manages
  // Gateways with others: each command's options are read only up to its subcommand's name.
  .enablePositionalOptions()
  .showSuggestionAfterError();

type Flag = readonly [flags: string, description: string, env: string];

/**
 * A program's command: each flag sets the environment variable it names (flags win over the
 * environment), the help lists every variable the program reads, and the program is loaded only when
 * it runs (an agent does not carry the controller's Kubernetes client).
 */
function programCommand(
  name: string,
  description: string,
  envHelp: Readonly<Record<string, string>>,
  flags: readonly Flag[],
  run: (env: NodeJS.ProcessEnv) => Promise<number>,
): Command {
  const cmd = program.command(name).description(description);
  const toEnv = flags.map(([f, d, env]) => {
    const o = new Option(f, d);
    cmd.addOption(o);
    return [o.attributeName(), env] as const;
  });
  cmd
    .addHelpText(
      'after',
      `\nEnvironment (flags win):\n${Object.entries(envHelp)
        .map(([k, v]) => `  ${k.padEnd(34)} ${v}`)
        .join('\n')}`,
    )
    .action(async (opts: Record<string, string | undefined>) => {
      const env: NodeJS.ProcessEnv = { ...process.env };
      for (const [attr, name] of toEnv) if (opts[attr] !== undefined) env[name] = opts[attr];
      process.exitCode = await run(env);
    });
  return cmd;
}

/** The admin, metrics and readiness listeners every data-plane program has. */
const STATUS_FLAGS: readonly Flag[] = [
  ['--admin <host:port>', 'admin listener (AMBIT_ADMIN_ADDR)', 'AMBIT_ADMIN_ADDR'],
  ['--metrics <host:port>', 'Prometheus listener (AMBIT_METRICS_ADDR)', 'AMBIT_METRICS_ADDR'],
  ['--readiness <host:port>', 'readiness listener (AMBIT_READINESS_ADDR)', 'AMBIT_READINESS_ADDR'],
];
/** Where the waypoint and the gateway get their certificate: the CA service, or a CA in files. */
const PROXY_CA_FLAGS: readonly Flag[] = [
  ['--ca <host:port>', 'CA service (CA_ADDRESS)', 'CA_ADDRESS'],
  ['--token <file-or-token>', 'bearer token for xDS and the CA (AUTH_TOKEN)', 'AUTH_TOKEN'],
  [
    '--ca-cert <file>',
    'CA certificate PEM, instead of a CA service (AMBIT_CA_CERT_FILE)',
    'AMBIT_CA_CERT_FILE',
  ],
  ['--ca-key <file>', 'CA private key PEM (AMBIT_CA_KEY_FILE)', 'AMBIT_CA_KEY_FILE'],
];
const LOG_LEVEL_FLAG: Flag = [
  '--log-level <level>',
  'trace, debug, info, warn, error (LOG_LEVEL)',
  'LOG_LEVEL',
];

programCommand(
  'ztunnel',
  'run the node agent',
  ZTUNNEL_ENV,
  [
    ['--node <name>', 'node name; workloads on this node are local (NODE_NAME)', 'NODE_NAME'],
    ['--local-config <file>', 'workloads/services/policies YAML (LOCAL_XDS_PATH)', 'LOCAL_XDS_PATH'],
    ['--xds <host:port>', 'controller to get config from, instead of a file (XDS_ADDRESS)', 'XDS_ADDRESS'],
    ['--ca <host:port>', 'CA service (CA_ADDRESS)', 'CA_ADDRESS'],
    ['--token <file-or-token>', 'bearer token for xDS and the CA (AUTH_TOKEN)', 'AUTH_TOKEN'],
    ['--ca-cert <file>', 'CA certificate PEM (AMBIT_CA_CERT_FILE)', 'AMBIT_CA_CERT_FILE'],
    ['--ca-key <file>', 'CA private key PEM (AMBIT_CA_KEY_FILE)', 'AMBIT_CA_KEY_FILE'],
    ['--trust-domain <domain>', 'SPIFFE trust domain (TRUST_DOMAIN)', 'TRUST_DOMAIN'],
    ...STATUS_FLAGS,
    [
      '--socks5 <host:port=workload>',
      'SOCKS5 listener speaking for a workload, comma-separated (AMBIT_SOCKS5)',
      'AMBIT_SOCKS5',
    ],
    LOG_LEVEL_FLAG,
  ],
  async (env) => (await import('../ztunnel/main.ts')).runZtunnel(env),
);

const waypoint = programCommand(
  'waypoint',
  'run a waypoint (L7 routing for the services bound to a Gateway), or manage waypoint Gateways: apply, list, status, delete',
  WAYPOINT_ENV,
  [
    ['--namespace <ns>', 'namespace of the waypoint pod and its Gateway (POD_NAMESPACE)', 'POD_NAMESPACE'],
    ['--gateway <name>', 'the waypoint Gateway this pod serves (GATEWAY_NAME)', 'GATEWAY_NAME'],
    ['--service-account <sa>', 'service account the waypoint runs as (SERVICE_ACCOUNT)', 'SERVICE_ACCOUNT'],
    ['--ip <address>', 'pod IP; HBONE listens on <ip>:15008 (INSTANCE_IP)', 'INSTANCE_IP'],
    ['--xds <host:port>', 'controller to get config from (XDS_ADDRESS)', 'XDS_ADDRESS'],
    ...PROXY_CA_FLAGS,
    ['--trust-domain <domain>', 'SPIFFE trust domain (TRUST_DOMAIN)', 'TRUST_DOMAIN'],
    ...STATUS_FLAGS,
    LOG_LEVEL_FLAG,
  ],
  async (env) => (await import('../waypoint/main.ts')).runWaypoint(env),
);

programCommand(
  'gateway',
  'run an ingress gateway (the Istio Gateways whose selector matches its labels, and their VirtualServices)',
  GATEWAY_ENV,
  [
    ['--namespace <ns>', 'namespace of the gateway pod (POD_NAMESPACE)', 'POD_NAMESPACE'],
    ['--name <name>', 'the gateway deployment (GATEWAY_NAME)', 'GATEWAY_NAME'],
    ['--labels <k=v,...>', 'the pod labels Gateway selectors match (GATEWAY_LABELS)', 'GATEWAY_LABELS'],
    ['--service-account <sa>', 'service account the gateway runs as (SERVICE_ACCOUNT)', 'SERVICE_ACCOUNT'],
    ['--ip <address>', 'pod IP; upstream HBONE starts from it (INSTANCE_IP)', 'INSTANCE_IP'],
    [
      '--listen <address>',
      'where Gateway server ports listen (AMBIT_GATEWAY_LISTEN_HOST)',
      'AMBIT_GATEWAY_LISTEN_HOST',
    ],
    ['--xds <host:port>', 'controller to get config from (XDS_ADDRESS)', 'XDS_ADDRESS'],
    ...PROXY_CA_FLAGS,
    ...STATUS_FLAGS,
    LOG_LEVEL_FLAG,
  ],
  async (env) => (await import('../waypoint/gateway/main.ts')).runGateway(env),
);
registerWaypointCommands(
  waypoint
    .enablePositionalOptions()
    .addHelpText(
      'after',
      '\nManage waypoint Gateways (in a cluster, or with --local-dir in the local mesh):\n' +
        '  ambit waypoint apply -n default --enroll-namespace\n' +
        '  ambit waypoint status -n default --local-dir',
    ),
);

programCommand(
  'controller',
  'run the controller: Kubernetes YAML → workload xDS, and the CA service',
  CONTROLLER_ENV,
  [
    ['--config-dir <dir>', 'directory of Kubernetes YAML (AMBIT_CONFIG_DIR)', 'AMBIT_CONFIG_DIR'],
    ['--grpc <host:port>', 'xDS and CA listener, plaintext (AMBIT_GRPC_ADDR)', 'AMBIT_GRPC_ADDR'],
    [
      '--admin <host:port>',
      'metrics and debug listener (AMBIT_CONTROLLER_ADMIN_ADDR)',
      'AMBIT_CONTROLLER_ADMIN_ADDR',
    ],
    ['--ca-cert <file>', 'CA certificate PEM (AMBIT_CA_CERT_FILE)', 'AMBIT_CA_CERT_FILE'],
    ['--ca-key <file>', 'CA private key PEM (AMBIT_CA_KEY_FILE)', 'AMBIT_CA_KEY_FILE'],
    [
      '--tokens <file>',
      'node agent tokens, "<token> <node>" per line (AMBIT_TOKENS_FILE)',
      'AMBIT_TOKENS_FILE',
    ],
    LOG_LEVEL_FLAG,
  ],
  async (env) => (await import('../controller/main.ts')).runController(env),
);

program
  .command('local')
  .description('run a whole mesh on this machine: a CA, two node agents and sample workloads (npm start)')
  .option('--dir <dir>', 'state directory (CA, mesh.yaml, logs)', '.ambit/local')
  .option('--prefix <a.b>', 'first two octets of the loopback addresses to use', '127.10')
  .option('--socks-port <port>', 'SOCKS5 port on 127.0.0.1 for the client workload', '15080')
  .option('--reset', 'rewrite mesh.yaml from the built-in sample')
  .action(async (opts: { dir: string; prefix: string; socksPort: string; reset?: boolean }) => {
    const { runLocalMesh } = await import('./local.ts');
    process.exitCode = await runLocalMesh({
      dir: opts.dir,
      prefix: opts.prefix,
      socksPort: Number(opts.socksPort),
      reset: opts.reset === true,
    });
  });

registerConfigCommands(program);

program
  .command('analyze')
  .description("check Kubernetes/Istio YAML with the controller's own validation (like istioctl analyze)")
  .requiredOption('-f, --file <dir|file...>', 'YAML files or directories; together they form one mesh')
  .option('-R, --recursive', 'also read the subdirectories of directories')
  .addOption(
    new Option('-o, --output <format>', 'table, json or yaml').default('table').argParser(parseOutputFormat),
  )
  .addHelpText(
    'after',
    '\nExit code 1 when there are errors; warnings alone exit 0. Pass the Services a rule refers to\n' +
      'with it (e.g. -f .ambit/local/kube -f my-rule.yaml) so references can be checked.',
  )
  .action(async (opts: { file: string[]; recursive?: boolean; output: OutputFormat }) => {
    const { analyze, analysisExitCode, formatAnalysis } = await import('./analyze.ts');
    const { runCommand } = await import('./output.ts');
    await runCommand(async () => {
      const result = await analyze(opts.file, { recursive: opts.recursive === true, env: process.env });
      process.exitCode = analysisExitCode(result);
      return formatAnalysis(result, opts.output);
    });
  });

program
  .command('version')
  .description('print the version of ambit and of Node.js')
  .addOption(
    new Option('-o, --output <format>', 'table, json or yaml').default('table').argParser(parseOutputFormat),
  )
  .action((opts: { output: OutputFormat }) => {
    process.stdout.write(versionText(opts.output));
  });

await program.parseAsync(process.argv);
