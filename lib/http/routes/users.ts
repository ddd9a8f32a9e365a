import { Router } from 'express';
import { AppError } from '../../errors.js';
import { RateLimiter } from '../../rateLimiter.js';
import type { Services } from '../../services.js';
import { currentUser, requireAuth } from '../auth.js';
import { restSchemas } from '../../protocol/schemas.js';
import { parse } from '../../validation.js';

/**
 * `GET /users?username=<exact>`: find a user to befriend, matched case-insensitively; 404 USER_NOT_FOUND when
 * there is none. Behind bearer auth, so the directory is not open to anonymous enumeration, and limited per user
 * (RATE_LIMIT_LOOKUPS_PER_MIN, bursts of the same number) so an account cannot walk it either.
 */
export function userRoutes(services: Services): Router {
  const perMinute = services.config.limits.lookupsPerMinute;
  const lookups = new RateLimiter({ ratePerSecond: perMinute / 60, burst: perMinute });
  const router = Router();
  router.get('/users', requireAuth(services), async (req, res) => {
    const taken = lookups.take(currentUser(req).id);
    if (!taken.allowed) throw new AppError('RATE_LIMITED', { retryAfter: taken.retryAfterSeconds });
    const { username } = parse(restSchemas.userLookup, req.query);
    res.json({ user: await services.social.findUser(username) });
  });
  return router;
}
