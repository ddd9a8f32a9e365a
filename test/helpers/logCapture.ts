import type { LogLevel } from '../../lib/config.js';
import { createLogger, type Logger } from '../../lib/logger.js';

export interface LogCapture {
  readonly logger: Logger;
  /** Every line written so far, as written (JSON text). */
  text(): string;
  /** Every line, parsed. */
  entries(): Array<Record<string, unknown>>;
}

/** A real pino logger whose output is kept in memory, so a test can read exactly what an operator would. */
export function captureLogs(level: LogLevel = 'debug'): LogCapture {
  const lines: string[] = [];
  const logger = createLogger(level, { write: (line: string) => void lines.push(line) });
  return {
    logger,
    text: () => lines.join(''),
    entries: () =>
      lines
        .join('')
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}
