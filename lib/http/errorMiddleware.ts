import type { ErrorRequestHandler, RequestHandler } from 'express';
import { AppError, toAppError, toHttp } from '../errors.js';

/** Unknown routes: the same JSON envelope as every other error. */
export const notFoundHandler: RequestHandler = (_req, _res, next) => {
  next(new AppError('NOT_FOUND', { message: 'No such route.' }));
};

interface BodyParserError {
  type?: unknown;
  status?: unknown;
}

/** Maps body-parser's own failures (bad JSON, too large) to catalog codes. */
function fromBodyParser(err: unknown): AppError | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as BodyParserError;
  if (e.type === 'entity.too.large') return new AppError('PAYLOAD_TOO_LARGE', { cause: err });
  if (e.type === 'entity.parse.failed') {
    return new AppError('VALIDATION_FAILED', {
      message: 'The request body is not valid JSON.',
      details: { body: 'invalid JSON' },
      cause: err,
    });
  }
  if (typeof e.type === 'string' && typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
    return new AppError('VALIDATION_FAILED', { message: 'The request body cannot be read.', cause: err });
  }
  return undefined;
}

/**
 * The one place an error becomes an HTTP response. Internal errors are logged with the request id (via
 * pino-http's req.log) and answered with the catalog's generic message only.
 */
export const errorMiddleware: ErrorRequestHandler = (err: unknown, req, res, _next) => {
  const appError = fromBodyParser(err) ?? toAppError(err);
  if (appError.status >= 500) {
    req.log.error({ err: appError.cause ?? appError, code: appError.code }, 'request failed');
  }
  if (res.headersSent) {
    res.end();
    return;
  }
  const { status, body } = toHttp(appError);
  if (appError.retryAfter !== undefined) res.setHeader('Retry-After', String(Math.ceil(appError.retryAfter)));
  res.status(status).json(body);
};
