import { pino, type LogFn, type Logger } from 'pino';
import type { LogLevel } from './config.js';
import { safeLogObject, safeMessage, serializeError } from './logSafety.js';

export type { Logger };

/**
 * The root logger. Child loggers carry requestId / socketId / conversationId.
 * Every line is made safe on its way out (lib/logSafety.ts): errors are `{type, message, code, stack}` only,
 * driver objects, sockets and other live objects are never dumped, secret-named keys are redacted at any depth,
 * and a line stays within about 8 KB. The redact paths below are a second net for the top-level keys.
 */
export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { pid: process.pid },
    serializers: { err: serializeError },
    formatters: { log: safeLogObject },
    hooks: {
      logMethod(this: Logger, args: Parameters<LogFn>, method: LogFn) {
        const safe = args.map((arg: unknown) => (typeof arg === 'string' ? safeMessage(arg) : arg));
        return method.apply(this, safe as Parameters<LogFn>);
      },
    },
    redact: {
      paths: [
        'password',
        '*.password',
        'token',
        '*.token',
        'refreshToken',
        '*.refreshToken',
        'currentPassword',
        '*.currentPassword',
        'newPassword',
        '*.newPassword',
        'jwtSecret',
        '*.jwtSecret',
        'req.headers.authorization',
        'req.headers.cookie',
      ],
      censor: '[redacted]',
    },
  };
  return destination ? pino(options, destination) : pino(options);
}
