#!/usr/bin/env node
/** `ambit`: one CLI for every program (DESIGN.md §1). */
import { Command } from 'commander';
import { ZTUNNEL_ENV } from '../ztunnel/config.ts';
import { CONTROLLER_ENV } from '../controller/config.ts';
import { WAYPOINT_ENV } from '../waypoint/config.ts';

const VERSION = '0.1.0';

const program = new Command('ambit')
  .description('Ambit: an ambient-mode service mesh (node agent, waypoints, controller)')
  .version(VERSION, '-v, --version');

program
  .command('ztunnel')
  .description('run the node agent')
  .option('--node <name>', 'node name; workloads on this node are local (NODE_NAME)')
  .option('--local-config <file>', 'workloads/services/policies YAML (LOCAL_XDS_PATH)')
  .option('--xds <host:port>', 'controller to get config from, instead of a file (XDS_ADDRESS)')
  .option('--ca <host:port>', 'CA service (CA_ADDRESS)')
  .option('--token <file-or-token>', 'bearer token for xDS and the CA (AUTH_TOKEN)')
  .option('--ca-cert <file>', 'CA certificate PEM (AMBIT_CA_CERT_FILE)')
  .option('--ca-key <file>', 'CA private key PEM (AMBIT_CA_KEY_FILE)')
  .option('--trust-domain <domain>', 'SPIFFE trust domain (TRUST_DOMAIN)')
  .option('--admin <host:port>', 'admin listener (AMBIT_ADMIN_ADDR)')
  .option('--metrics <host:port>', 'Prometheus listener (AMBIT_METRICS_ADDR)')
  .option('--readiness <host:port>', 'readiness listener (AMBIT_READINESS_ADDR)')
  .option(
    '--socks5 <host:port=workload>',
    'SOCKS5 listener speaking for a workload, comma-separated (AMBIT_SOCKS5)',
  )
  .option('--log-level <level>', 'trace, debug, info, warn, error (LOG_LEVEL)')
  .addHelpText(
    'after',
    `\nEnvironment (flags win):\n${Object.entries(ZTUNNEL_ENV)
      .map(([k, v]) => `  ${k.padEnd(34)} ${v}`)
      .join('\n')}`,
  )
  .action(async (opts: Record<string, string | undefined>) => {
    const flags: Record<string, string | undefined> = {
      NODE_NAME: opts.node,
      LOCAL_XDS_PATH: opts.localConfig,
      XDS_ADDRESS: opts.xds,
      CA_ADDRESS: opts.ca,
      AUTH_TOKEN: opts.token,
      AMBIT_CA_CERT_FILE: opts.caCert,
      AMBIT_CA_KEY_FILE: opts.caKey,
      TRUST_DOMAIN: opts.trustDomain,
      AMBIT_ADMIN_ADDR: opts.admin,
      AMBIT_METRICS_ADDR: opts.metrics,
      AMBIT_READINESS_ADDR: opts.readiness,
      AMBIT_SOCKS5: opts.socks5,
      LOG_LEVEL: opts.logLevel,
    };
    const env = {
      ...process.env,
      ...Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined)),
    };
    // Each program is loaded only when run: an agent does not carry the controller's Kubernetes client.
    const { runZtunnel } = await import('../ztunnel/main.ts');
    process.exitCode = await runZtunnel(env);
  });

program
  .command('waypoint')
  .description(
    'run a waypoint: L7 routing (VirtualService, DestinationRule) for the services bound to a Gateway',
  )
  .option('--namespace <ns>', 'namespace of the waypoint pod and its Gateway (POD_NAMESPACE)')
  .option('--gateway <name>', 'the waypoint Gateway this pod serves (GATEWAY_NAME)')
  .option('--service-account <sa>', 'service account the waypoint runs as (SERVICE_ACCOUNT)')
  .option('--ip <address>', 'pod IP; HBONE listens on <ip>:15008 (INSTANCE_IP)')
  .option('--xds <host:port>', 'controller to get config from (XDS_ADDRESS)')
  .option('--ca <host:port>', 'CA service (CA_ADDRESS)')
  .option('--token <file-or-token>', 'bearer token for xDS and the CA (AUTH_TOKEN)')
  .option('--ca-cert <file>', 'CA certificate PEM, instead of a CA service (AMBIT_CA_CERT_FILE)')
  .option('--ca-key <file>', 'CA private key PEM (AMBIT_CA_KEY_FILE)')
  .option('--trust-domain <domain>', 'SPIFFE trust domain (TRUST_DOMAIN)')
  .option('--admin <host:port>', 'admin listener (AMBIT_ADMIN_ADDR)')
  .option('--metrics <host:port>', 'Prometheus listener (AMBIT_METRICS_ADDR)')
  .option('--readiness <host:port>', 'readiness listener (AMBIT_READINESS_ADDR)')
  .option('--log-level <level>', 'trace, debug, info, warn, error (LOG_LEVEL)')
  .addHelpText(
    'after',
    `\nEnvironment (flags win):\n${Object.entries(WAYPOINT_ENV)
      .map(([k, v]) => `  ${k.padEnd(34)} ${v}`)
      .join('\n')}`,
  )
  .action(async (opts: Record<string, string | undefined>) => {
    const flags: Record<string, string | undefined> = {
      POD_NAMESPACE: opts.namespace,
      GATEWAY_NAME: opts.gateway,
      SERVICE_ACCOUNT: opts.serviceAccount,
      INSTANCE_IP: opts.ip,
      XDS_ADDRESS: opts.xds,
      CA_ADDRESS: opts.ca,
      AUTH_TOKEN: opts.token,
      AMBIT_CA_CERT_FILE: opts.caCert,
      AMBIT_CA_KEY_FILE: opts.caKey,
      TRUST_DOMAIN: opts.trustDomain,
      AMBIT_ADMIN_ADDR: opts.admin,
      AMBIT_METRICS_ADDR: opts.metrics,
      AMBIT_READINESS_ADDR: opts.readiness,
      LOG_LEVEL: opts.logLevel,
    };
    const env = {
      ...process.env,
      ...Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined)),
    };
    const { runWaypoint } = await import('../waypoint/main.ts');
    process.exitCode = await runWaypoint(env);
  });

program
  .command('controller')
  .description('run the controller: Kubernetes YAML → workload xDS, and the CA service')
  .option('--config-dir <dir>', 'directory of Kubernetes YAML (AMBIT_CONFIG_DIR)')
  .option('--grpc <host:port>', 'xDS and CA listener, plaintext (AMBIT_GRPC_ADDR)')
  .option('--admin <host:port>', 'metrics and debug listener (AMBIT_CONTROLLER_ADMIN_ADDR)')
  .option('--ca-cert <file>', 'CA certificate PEM (AMBIT_CA_CERT_FILE)')
  .option('--ca-key <file>', 'CA private key PEM (AMBIT_CA_KEY_FILE)')
  .option('--tokens <file>', 'node agent tokens, "<token> <node>" per line (AMBIT_TOKENS_FILE)')
  .option('--log-level <level>', 'trace, debug, info, warn, error (LOG_LEVEL)')
  .addHelpText(
    'after',
    `\nEnvironment (flags win):\n${Object.entries(CONTROLLER_ENV)
      .map(([k, v]) => `  ${k.padEnd(34)} ${v}`)
      .join('\n')}`,
  )
  .action(async (opts: Record<string, string | undefined>) => {
    const flags: Record<string, string | undefined> = {
      AMBIT_CONFIG_DIR: opts.configDir,
      AMBIT_GRPC_ADDR: opts.grpc,
      AMBIT_CONTROLLER_ADMIN_ADDR: opts.admin,
      AMBIT_CA_CERT_FILE: opts.caCert,
      AMBIT_CA_KEY_FILE: opts.caKey,
      AMBIT_TOKENS_FILE: opts.tokens,
      LOG_LEVEL: opts.logLevel,
    };
    const env = {
      ...process.env,
      ...Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined)),
    };
    const { runController } = await import('../controller/main.ts');
    process.exitCode = await runController(env);
  });

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

program
  .command('version')
  .description('print the version')
  .action(() => console.log(`ambit ${VERSION} (node ${process.version})`));

await program.parseAsync(process.argv);
