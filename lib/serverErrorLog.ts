import type { AppError } from './errors.js';
import type { Logger } from './logger.js';

/** How often each code of a load or an outage is logged, at most. */
export const SERVER_ERROR_LOG_INTERVAL_MS = 10_000;

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
  const { intervalMs = SERVER_ERROR_LOG_INTERVAL_MS, now = Date.now } = options;
  const lastLine = new Map<string, { at: number; suppressed: number }>();
  return (log, error, fields, message) => {
    const entry = { err: error.cause ?? error, code: error.code, ...fields };
    if (error.code === 'INTERNAL') {
      log.error(entry, message);
      return;
    }
    const at = now();
    const last = lastLine.get(error.code);
    if (last && at - last.at < intervalMs) {
      last.suppressed++;
      return;
    }
    log.warn({ ...entry, suppressed: last?.suppressed ?? 0 }, message);
    lastLine.set(error.code, { at, suppressed: 0 });
  };
}
