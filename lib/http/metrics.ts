import { Router, type Request, type RequestHandler } from 'express';
import type { Metrics } from '../metrics.js';

/** Methods outside this set are counted as "OTHER", so a client cannot invent label values. */
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/**
 * The matched route pattern (`/conversations/:id/messages`), never the raw URL: ids in paths would make one
 * time series per conversation. Requests that matched no route share one label.
 */
function routeLabel(req: Request): string {
  const route: unknown = (req as { route?: unknown }).route;
  const pattern: unknown =
    typeof route === 'object' && route !== null ? (route as { path?: unknown }).path : undefined;
  if (typeof pattern !== 'string') return '(unmatched)';
  return `${req.baseUrl}${pattern}` || '/';
}

/** The status of a request whose client went away before its answer was begun (nginx's "client closed request"). */
export const CLIENT_CLOSED_STATUS = '499';

/**
 * Counts every request and times it, labelled by method, route pattern and status: when its answer is written
 * whole, or when its connection closes before (the client gave up: the slowest requests, which the latency alerts
 * are for), with the status it was answering, or 499 if none was begun.
 */
export function httpMetrics(metrics: Metrics): RequestHandler {
  return (req, res, next) => {
    const started = performance.now();
    let counted = false;
    const count = () => {
      if (counted) return;
      counted = true;
      const labels = {
        method: METHODS.has(req.method) ? req.method : 'OTHER',
        route: routeLabel(req),
        status: res.writableFinished || res.headersSent ? String(res.statusCode) : CLIENT_CLOSED_STATUS,
      };
      metrics.httpRequests.inc(labels);
      metrics.httpDuration.observe(labels, (performance.now() - started) / 1000);
    };
    res.once('finish', count);
    res.once('close', count);
    next();
  };
}

/** `GET /metrics`: the Prometheus text format. Operators keep it behind their firewall (see docs/operations.md). */
export function metricsRoutes(metrics: Metrics): Router {
  const router = Router();
  router.get('/metrics', async (_req, res) => {
    const { contentType, body } = await metrics.render();
    res.setHeader('Content-Type', contentType);
    res.setHeader('Cache-Control', 'no-store');
    res.send(body);
  });
  return router;
}
