import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import { AppError, toAppError, toHttp } from '../errors.js';
import { createServerErrorLog } from '../serverErrorLog.js';
import { notAJsonObject } from '../validation.js';

/** Unknown routes: the same JSON envelope as every other error. */
export const notFoundHandler: RequestHandler = (_req, _res, next) => {
  next(new AppError('NOT_FOUND', { message: 'No such route.' }));
};

/** What Express, its router and body-parser attach to the errors they raise (http-errors). */
interface HttpErrorShape {
  type?: unknown;
  /** body-parser's: the body as read, when it failed to parse it. */
  body?: unknown;
  /** Ours (app.ts): the charset a body was not well-formed in. */
  charset?: unknown;
  status?: unknown;
  statusCode?: unknown;
  /** Headers the answer to the error should carry (the file server's 416: a Content-Range with the file's length). */
  headers?: unknown;
}

function isJson(text: unknown): boolean {
  if (typeof text !== 'string') return false;
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

function clientStatus(e: HttpErrorShape): number | undefined {
  const status = typeof e.status === 'number' ? e.status : e.statusCode;
  return typeof status === 'number' && status >= 400 && status < 500 ? status : undefined;
}

/**
 * Maps the errors Express raises before a handler runs (an undecodable body or path) to catalog codes. Only our
 * handlers throw AppError; an error that carries a 4xx status comes from Express itself, body-parser or the
 * router, and means the request could not be read: it is the client's, never INTERNAL.
 */
function fromRequestDecoding(err: unknown): AppError | undefined {
  if (typeof err !== 'object' || err === null || err instanceof AppError) return undefined;
  const e = err as HttpErrorShape;
  const status = clientStatus(e);
  if (e.type === 'entity.parse.failed') {
    // JSON, but not an object or array (`null`, `"x"`, `3`): body-parser's strict mode refuses it.
    if (isJson(e.body)) return notAJsonObject(err);
    return new AppError('VALIDATION_FAILED', {
      message: 'The request body is not valid JSON.',
      details: { body: 'invalid JSON' },
      cause: err,
    });
  }
  if (e.type === 'encoding.invalid') {
    const charset = typeof e.charset === 'string' ? e.charset : 'UTF-8';
    return new AppError('VALIDATION_FAILED', {
      message: `The request body is not valid ${charset}.`,
      details: { body: `invalid ${charset}` },
      cause: err,
    });
  }
  if (status === undefined) return undefined;
  // The router fails to decode a path parameter with a URIError (a bad percent-encoding such as "%E0%A4%A").
  if (err instanceof URIError) {
    return new AppError('VALIDATION_FAILED', {
      message: 'The request path is not valid percent-encoding.',
      details: { path: 'invalid percent-encoding' },
      cause: err,
    });
  }
  if (status === 413) return new AppError('PAYLOAD_TOO_LARGE', { cause: err });
  // An unknown Content-Encoding, or a JSON charset other than UTF-8/16/32.
  if (status === 415) return new AppError('UNSUPPORTED_MEDIA_TYPE', { cause: err });
  // Anything else: a body that does not match its Content-Encoding (zlib fails), an aborted or miscounted body.
  return new AppError('VALIDATION_FAILED', {
    message: 'The request body cannot be read.',
    details: { body: 'cannot be decoded' },
    cause: err,
  });
}

/** An error answered with an HTTP status of its own, not its code's. */
interface Refusal {
  error: AppError;
  status: number;
  /** Headers of the refusal itself. */
  headers: Record<string, string>;
}

/**
 * The file server's refusals of a request's conditions (the web app's files, lib/http/webStatic.ts): a Range past the
 * file's end (416) or a failed If-Match or If-Unmodified-Since (412). They keep their own status, which range and
 * conditional clients (download managers, caches) act on, under VALIDATION_FAILED, the catalog's code for a request
 * that cannot be answered as sent; `details` names the header.
 */
function fromFileConditions(err: unknown): Refusal | undefined {
  if (typeof err !== 'object' || err === null || err instanceof AppError) return undefined;
  const e = err as HttpErrorShape;
  const status = clientStatus(e);
  if (status === 416) {
    const range =
      typeof e.headers === 'object' && e.headers !== null
        ? (e.headers as Record<string, unknown>)['Content-Range']
        : undefined;
    return {
      error: new AppError('VALIDATION_FAILED', {
        message: 'The requested range is not satisfiable.',
        details: { range: 'not satisfiable' },
        cause: err,
      }),
      status,
      // RFC 9110: a 416 says the representation's length (`bytes */<size>`), for the client's next Range.
      headers: typeof range === 'string' ? { 'Content-Range': range } : {},
    };
  }
  if (status === 412) {
    return {
      error: new AppError('VALIDATION_FAILED', {
        message: 'A precondition of the request does not hold.',
        details: { precondition: 'failed' },
        cause: err,
      }),
      status,
      headers: {},
    };
  }
  return undefined;
}

/**
 * Headers the file server sets for the file before it may still fail (a refused Range or condition, a read error):
 * they describe the file, not the error's JSON answer. The API's `Cache-Control: no-store` is kept.
 */
const FILE_HEADERS = [
  'Content-Type',
  'Content-Length',
  'Content-Range',
  'Content-Disposition',
  'ETag',
  'Last-Modified',
  'Accept-Ranges',
] as const;

/** How long the rest of a refused body is read (and thrown away) after the answer before the connection closes. */
const REFUSED_BODY_DRAIN_MS = 1000;

/**
 * The one place an error becomes an HTTP response, one per app (node). Server errors are logged with the request id
 * (via pino-http's req.log; those of load and outages once per code every 10 s, counted per node:
 * lib/serverErrorLog.ts) and answered with the catalog's generic message only; client errors are not logged beyond
 * pino-http's debug line.
 */
export function createErrorMiddleware(): ErrorRequestHandler {
  const logServerError = createServerErrorLog();
  return (err: unknown, req, res, _next) => {
    const refusal = fromFileConditions(err);
    if (refusal !== undefined) {
      answerError(refusal.error, req, res, refusal);
      return;
    }
    const appError = fromRequestDecoding(err) ?? toAppError(err);
    if (appError.status >= 500) logServerError(req.log, appError, {}, 'request failed');
    answerError(appError, req, res);
  };
}

function answerError(appError: AppError, req: Request, res: Response, refusal?: Refusal): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const { body } = toHttp(appError);
  const status = refusal?.status ?? appError.status;
  // The JSON envelope, not what the file server had started to answer (res.json keeps a Content-Type already set).
  for (const name of FILE_HEADERS) res.removeHeader(name);
  if (res.getHeader('Cache-Control') !== 'no-store') res.removeHeader('Cache-Control');
  for (const [name, value] of Object.entries(refusal?.headers ?? {})) res.setHeader(name, value);
  // A body refused before it was read whole (too large, undecodable): Node reads the rest of it to keep the
  // connection, however long it is. It gets a moment to, so the client can read this answer (closing at once would
  // reset the connection under a client still sending), then the connection is closed.
  if (!req.complete) {
    res.once('finish', () => {
      const timer = setTimeout(() => {
        if (!req.complete) req.socket.destroy();
      }, REFUSED_BODY_DRAIN_MS);
      timer.unref();
      req.once('end', () => clearTimeout(timer));
    });
  }
  if (appError.retryAfter !== undefined) res.setHeader('Retry-After', String(Math.ceil(appError.retryAfter)));
  res.status(status).json(body);
}
