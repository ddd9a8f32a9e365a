import { Router } from 'express';
import type { Database } from '../../db.js';

/** How long /readyz waits for PostgreSQL before answering 503. */
const READY_TIMEOUT_MS = 2000;

export function healthRoutes(db: Database): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', async (_req, res) => {
    const ok = await db.ping(READY_TIMEOUT_MS);
    res.status(ok ? 200 : 503).json({ status: ok ? 'ready' : 'unavailable' });
  });
  return router;
}
