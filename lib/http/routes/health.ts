import { Router } from 'express';
import type { Database } from '../../db.js';

/** How long /readyz waits for PostgreSQL before answering 503. */
const READY_TIMEOUT_MS = 2000;

/**
 * `/healthz` while the process runs; `/readyz` when PostgreSQL answers and the node is not stopping (a node
 * draining after SIGTERM answers 503, so that a load balancer sends it nothing new).
 */
export function healthRoutes(db: Database, stopping: () => boolean = () => false): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', async (_req, res) => {
    const ok = !stopping() && (await db.ping(READY_TIMEOUT_MS));
    res.status(ok ? 200 : 503).json({ status: ok ? 'ready' : 'unavailable' });
  });
  return router;
}
