import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger, LevelWithSilent };

export const LOG_LEVELS: readonly LevelWithSilent[] = [
  'trace',
  'debug',
  'info',
  'warn',
  'error',
  'fatal',
  'silent',
];

export function isLogLevel(value: string): value is LevelWithSilent {
  return (LOG_LEVELS as readonly string[]).includes(value);
}

/** Lines wait in memory for at most this long before they are written. */
const FLUSH_INTERVAL_MS = 100;
/** A write is made as soon as this much is waiting. */
const BUFFER_BYTES = 8 * 1024;
/** If stdout stops taking lines (a stuck reader), lines beyond this are dropped, not kept. */
const MAX_PENDING_BYTES = 32 * 1024 * 1024;

let stdout: ReturnType<typeof pino.destination> | undefined;

/**
 * stdout, buffered: a write per line is a system call per request for the waypoint's access log
 * (12 % of its CPU under load, measured), so lines are written in batches, at least every 100 ms
 * (Envoy flushes its access log every second), and synchronously when the process exits.
 */
function bufferedStdout(): ReturnType<typeof pino.destination> {
  if (stdout) return stdout;
  const dest = pino.destination({
    dest: 1,
    sync: false,
    minLength: BUFFER_BYTES,
    maxLength: MAX_PENDING_BYTES,
  });
  setInterval(() => dest.flush(), FLUSH_INTERVAL_MS).unref();
  process.once('exit', () => {
    try {
      dest.flushSync();
    } catch {
      // stdout is gone (the reader exited): nothing can be written any more.
    }
  });
  stdout = dest;
  return dest;
}

/**
 * The root logger of a program: JSON lines on stdout with a `component` field. Child loggers share
 * its level, so `/logging?level=` on the admin port changes them all at once.
 */
export function createLogger(component: string, level: LevelWithSilent = 'info'): Logger {
  return pino({ level, base: { component }, timestamp: pino.stdTimeFunctions.isoTime }, bufferedStdout());
}

/** A logger that drops everything, for tests and benchmarks. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
