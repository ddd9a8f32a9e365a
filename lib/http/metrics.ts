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

/** Counts every request and times it, labelled by method, route pattern and status. */
export function httpMetrics(metrics: Metrics): RequestHandler {
  return (req, res, next) => {
    const started = performance.now();
    res.once('finish', () => {
      const labels = {
        method: METHODS.has(req.method) ? req.method : 'OTHER',
        route: routeLabel(req),
        status: String(res.statusCode),
      };
      metrics.httpRequests.inc(labels);
      metrics.httpDuration.observe(labels, (performance.now() - started) / 1000);
    });
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
