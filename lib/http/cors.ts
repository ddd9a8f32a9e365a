import type { RequestHandler } from 'express';
import { AppError } from '../errors.js';
import { isOriginAllowed } from '../requestOrigin.js';

/** Request headers a browser client may send cross-origin. */
const ALLOWED_HEADERS = 'Authorization, Content-Type, X-Request-Id';
const ALLOWED_METHODS = 'GET, POST, PUT, PATCH, DELETE, OPTIONS';
/** Response headers a browser client may read: the request id for support, Retry-After for 429/503. */
const EXPOSED_HEADERS = 'X-Request-Id, Retry-After';
/** Seconds a browser may cache a preflight answer. */
const PREFLIGHT_MAX_AGE = 600;

/**
 * CORS for the REST API. Allowed origins get the CORS headers and preflights a 204; a browser Origin outside
 * the policy gets 403 FORBIDDEN, so a page on another site cannot even trigger a request that changes state.
 */
export function corsMiddleware(options: { origins: readonly string[]; trustProxy: number }): RequestHandler {
  return (req, res, next) => {
    const origin = req.headers.origin;
    if (origin === undefined) {
      next();
      return;
    }
    res.vary('Origin');
    if (!isOriginAllowed(req, options.origins, options.trustProxy)) {
      next(new AppError('FORBIDDEN', { message: 'This origin is not allowed.' }));
      return;
    }
    res.setHeader('Access-Control-Allow-Origin', origin);
    res.setHeader('Access-Control-Expose-Headers', EXPOSED_HEADERS);
    if (req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined) {
      res.setHeader('Access-Control-Allow-Methods', ALLOWED_METHODS);
      res.setHeader('Access-Control-Allow-Headers', ALLOWED_HEADERS);
      res.setHeader('Access-Control-Max-Age', String(PREFLIGHT_MAX_AGE));
      res.status(204).end();
      return;
    }
    next();
  };
}
