/** `ambit waypoint`: builds the config, starts the waypoint, drains on SIGTERM. */
import { describeError } from '../core/errors.ts';
import { createLogger } from '../core/log.ts';
import { startWaypoint } from './app.ts';
import { buildWaypointConfig } from './config.ts';

export async function runWaypoint(env: Readonly<Record<string, string | undefined>>): Promise<number> {
  const built = buildWaypointConfig(env);
  if (!built.ok) {
    process.stderr.write(`ambit waypoint: invalid configuration:\n  ${built.errors.join('\n  ')}\n`);
    return 2;
  }
  const log = createLogger('waypoint', built.config.logLevel);
  let waypoint;
  try {
    waypoint = await startWaypoint(built.config, { log, processMetrics: true });
  } catch (err) {
    log.fatal({ error: describeError(err) }, 'waypoint failed to start');
    process.stderr.write(`ambit waypoint: ${describeError(err)}\n`);
    return 1;
  }
  const stop = (signal: string) => {
    log.info({ signal }, 'signal received');
    void waypoint.close();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  await waypoint.done;
  return 0;
}
