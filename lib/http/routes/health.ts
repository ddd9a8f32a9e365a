import { Router } from 'express';
import type { Database } from '../../db.js';

/** How long /readyz waits for PostgreSQL before answering 503. */
const READY_TIMEOUT_MS = 2000;
/** How long a ping's answer serves the probes after it. */
const READY_REUSE_MS = 1000;

/**
 * `/healthz` while the process runs; `/readyz` when PostgreSQL answers and the node is not stopping (a node
 * draining after SIGTERM answers 503, so that a load balancer sends it nothing new).
 */
export function healthRoutes(db: Database, stopping: () => boolean = () => false): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  // Probes share one ping: the one on its way, or the last one for a second after it answered. Anyone may call
  // /readyz, and each ping takes a connection of the pool that requests wait for (300 probes at once were 300
  // acquires and 300 statements).
  let inFlight: Promise<boolean> | undefined;
  let last: { ok: boolean; at: number } | undefined;
  const ping = (): Promise<boolean> => {
    if (last !== undefined && performance.now() - last.at < READY_REUSE_MS) return Promise.resolve(last.ok);
    inFlight ??= db
      .ping(READY_TIMEOUT_MS)
      .then((ok) => {
        last = { ok, at: performance.now() };
        return ok;
      })
      .finally(() => {
        inFlight = undefined;
      });
    return inFlight;
  };
  router.get('/readyz', async (_req, res) => {
    // Looked at again once the ping is back: a probe on its way when the node began stopping is not ready.
    const ok = !stopping() && (await ping()) && !stopping();
    res.status(ok ? 200 : 503).json({ status: ok ? 'ready' : 'unavailable' });
  });
  return router;
}
