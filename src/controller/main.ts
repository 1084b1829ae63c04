/** `ambit controller`: builds the config, starts the controller, stops on SIGTERM. */
import { describeError } from '../core/errors.ts';
import { createLogger } from '../core/log.ts';
import { startController } from './app.ts';
import { buildControllerConfig } from './config.ts';

export async function runController(env: Readonly<Record<string, string | undefined>>): Promise<number> {
  const built = buildControllerConfig(env);
  if (!built.ok) {
    process.stderr.write(`ambit controller: invalid configuration:\n  ${built.errors.join('\n  ')}\n`);
    return 2;
  }
  const log = createLogger('controller', built.config.logLevel);
  let controller;
  try {
    controller = await startController(built.config, { log, processMetrics: true });
  } catch (err) {
    log.fatal({ error: describeError(err) }, 'controller failed to start');
    process.stderr.write(`ambit controller: ${describeError(err)}\n`);
    return 1;
  }
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'signal received');
      void controller.close().then(resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return 0;
}
