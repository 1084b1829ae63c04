/** `ambit gateway`: builds the config, starts the ingress gateway, drains on SIGTERM. */
import { describeError } from '../../core/errors.ts';
import { createLogger } from '../../core/log.ts';
import { startGateway } from './app.ts';
import { buildGatewayConfig } from './config.ts';

export async function runGateway(env: Readonly<Record<string, string | undefined>>): Promise<number> {
  const built = buildGatewayConfig(env);
  if (!built.ok) {
    process.stderr.write(`ambit gateway: invalid configuration:\n  ${built.errors.join('\n  ')}\n`);
    return 2;
  }
  const log = createLogger('gateway', built.config.logLevel);
  let gateway;
  try {
    gateway = await startGateway(built.config, { log, processMetrics: true });
  } catch (err) {
    log.fatal({ error: describeError(err) }, 'gateway failed to start');
    process.stderr.write(`ambit gateway: ${describeError(err)}\n`);
    return 1;
  }
  const stop = (signal: string) => {
    log.info({ signal }, 'signal received');
    void gateway.close();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  await gateway.done;
  return 0;
}
