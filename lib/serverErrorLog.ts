import type { AppError } from './errors.js';
import type { Logger } from './logger.js';

/** How often each code of a load or an outage is logged, at most. */
export const SERVER_ERROR_LOG_INTERVAL_MS = 10_000;

/** Keys a throttle keeps before it forgets those whose interval is over (its keys are codes: a bounded set). */
const MAX_KEYS = 256;

/**
 * Which lines of a kind that arrives by the thousand (an answer of load or of an outage, a failed pool acquire, a
 * transport ended) are written: the first of each key, then at most one every `intervalMs`. `take(key)` returns
 * how many lines of that key were left out since its last one (0 for the first), to write with the line as
 * `suppressed`, or `undefined`: leave this one out (it is counted). Keys must come from a bounded set (codes,
 * reasons), never from a client's input.
 */
export interface LogThrottle {
  take(key: string): number | undefined;
}

export function createLogThrottle(options: { intervalMs?: number; now?: () => number } = {}): LogThrottle {
  const { intervalMs = SERVER_ERROR_LOG_INTERVAL_MS, now = () => performance.now() } = options;
  const lastLine = new Map<string, { at: number; suppressed: number }>();
  return {
    take(key) {
      const at = now();
      const last = lastLine.get(key);
      if (last && at - last.at < intervalMs) {
        last.suppressed++;
        return undefined;
      }
      if (!last && lastLine.size >= MAX_KEYS) {
        for (const [old, entry] of lastLine) if (at - entry.at >= intervalMs) lastLine.delete(old);
      }
      lastLine.set(key, { at, suppressed: 0 });
      return last?.suppressed ?? 0;
    },
  };
}

/**
 * Logs a server error (5xx) that a client is answered with. `INTERNAL` is a defect: every one is logged, at error.
 * The others come from load or an outage (`OVERLOADED`, `DB_UNAVAILABLE`) and arrive by the thousand while it
 * lasts, each with the same cause: one line per code every {@link SERVER_ERROR_LOG_INTERVAL_MS}, at warn, with
 * `suppressed`, how many of that code went unlogged since its last line. Without this, one client filling a
 * mailbox, or a minute of PostgreSQL away, wrote megabytes of identical stack traces.
 */
export type ServerErrorLog = (
  log: Logger,
  error: AppError,
  fields: Record<string, unknown>,
  message: string,
) => void;

export function createServerErrorLog(
  options: { intervalMs?: number; now?: () => number } = {},
): ServerErrorLog {
  const throttle = createLogThrottle(options);
  return (log, error, fields, message) => {
    const entry = { err: error.cause ?? error, code: error.code, ...fields };
    if (error.code === 'INTERNAL') {
      log.error(entry, message);
      return;
    }
    const suppressed = throttle.take(error.code);
    if (suppressed !== undefined) log.warn({ ...entry, suppressed }, message);
  };
}
