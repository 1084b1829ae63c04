/** `ambit ztunnel`: builds the config, starts the agent, drains on SIGTERM. */
import { describeError } from '../core/errors.ts';
import { createLogger } from '../core/log.ts';
import { startZtunnel } from './app.ts';
import { buildZtunnelConfig } from './config.ts';

export async function runZtunnel(env: Readonly<Record<string, string | undefined>>): Promise<number> {
  const built = buildZtunnelConfig(env);
  if (!built.ok) {
    process.stderr.write(`ambit ztunnel: invalid configuration:\n  ${built.errors.join('\n  ')}\n`);
    return 2;
  }
  const log = createLogger('ztunnel', built.config.logLevel);
  let agent;
  try {
    agent = await startZtunnel(built.config, { log, processMetrics: true });
  } catch (err) {
    log.fatal({ error: describeError(err) }, 'ztunnel failed to start');
    process.stderr.write(`ambit ztunnel: ${describeError(err)}\n`);
    return 1;
  }
  const stop = (signal: string) => {
    log.info({ signal }, 'signal received');
    void agent.close();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  await agent.done;
  return 0;
}
