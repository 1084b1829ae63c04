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

/** A line waits in memory for at most this long before it is written. */
const FLUSH_DELAY_MS = 10;
/** A write is made as soon as this much is waiting. */
const BUFFER_BYTES = 8 * 1024;
/** If stdout stops taking lines (a stuck reader), lines beyond this are dropped, not kept. */
const MAX_PENDING_BYTES = 32 * 1024 * 1024;

/** What pino writes to. */
interface LineSink {
  write(line: string): void;
}

let stdout: LineSink | undefined;

/**
 * stdout, batched: a write per line is a system call per request for the waypoint's access log
 * (12 % of its CPU under load, measured). The first line after a quiet spell arms a 10 ms timer and
 * everything logged until it fires (or 8 KiB, whichever comes first) goes out in one write, so a
 * line is never more than 10 ms late and an idle process sets no timers. Flushed synchronously when
 * the process exits.
 */
function batchedStdout(): LineSink {
  if (stdout) return stdout;
  const dest = pino.destination({
    dest: 1,
    sync: false,
    minLength: BUFFER_BYTES,
    maxLength: MAX_PENDING_BYTES,
  });
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    timer = undefined;
    dest.flush();
  };
  process.once('exit', () => {
    try {
      dest.flushSync();
    } catch {
      // stdout is gone (the reader exited): nothing can be written any more.
    }
  });
  stdout = {
    write(line) {
      dest.write(line);
      if (!timer) {
        timer = setTimeout(flush, FLUSH_DELAY_MS);
        timer.unref();
      }
    },
  };
  return stdout;
}

/**
 * The root logger of a program: JSON lines on stdout with a `component` field. Child loggers share
 * its level, so `/logging?level=` on the admin port changes them all at once.
 */
export function createLogger(component: string, level: LevelWithSilent = 'info'): Logger {
  return pino({ level, base: { component }, timestamp: pino.stdTimeFunctions.isoTime }, batchedStdout());
}

/** A logger that drops everything, for tests and benchmarks. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
