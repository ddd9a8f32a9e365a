import { Router } from 'express';
import { AppError } from '../../errors.js';
import { User } from '../../models/User.js';
import { restSchemas, USER_SEARCH_MAX } from '../../protocol/schemas.js';
import { RateLimiter } from '../../rateLimiter.js';
import type { Services } from '../../services.js';
import { parse, pathId } from '../../validation.js';
import { currentSessionId, currentUser, requireAuth } from '../auth.js';
import { clientIp } from './auth.js';

/**
 * Users, all behind bearer auth, so the directory is not open to anonymous enumeration:
 * - `GET /users?q=<prefix>&limit=<n>`: `{users}`, at most 20 (`limit`, default 20, larger values clamped) whose
 *   username starts with the prefix, case-insensitively, by username; never the caller, nor anyone the caller
 *   blocked or who blocked the caller;
 * - `GET /users?username=<exact>`: `{user}`, matched case-insensitively; 404 USER_NOT_FOUND when there is none;
 * - `GET /users/:id`: any user by id, deleted ones included (as "Deleted user"), so a client can name the sender
 *   of an old message;
 * - `GET /users/me` (as `GET /auth/me`), `PATCH /users/me {displayName}` and `DELETE /users/me {password}`.
 * Searches and lookups by name share one budget per user with friend requests ({@link createLookupBudget}), so
 * an account cannot walk the directory either.
 */
/**
 * The per-user budget of lookups by name (RATE_LIMIT_LOOKUPS_PER_MIN, bursts of the same number): user searches,
 * lookups by username, and friend requests, which name their addressee by username and so tell whether it
 * exists. Takes one; RATE_LIMITED past the budget.
 */
export type LookupBudget = (userId: string) => void;

export function createLookupBudget(perMinute: number): LookupBudget {
  const lookups = new RateLimiter({ ratePerSecond: perMinute / 60, burst: perMinute });
  return (userId) => {
    const taken = lookups.take(userId);
    if (!taken.allowed) throw new AppError('RATE_LIMITED', { retryAfter: taken.retryAfterSeconds });
  };
}

export function userRoutes(services: Services, takeLookup: LookupBudget): Router {
  const router = Router();
  const bearer = requireAuth(services);

  router.get('/users', bearer, async (req, res) => {
    // Checked before it is counted, as every budgeted request: a malformed one costs nothing.
    if (req.query.q !== undefined) {
      const { q, limit = USER_SEARCH_MAX } = parse(restSchemas.userSearch, req.query);
      takeLookup(currentUser(req).id);
      res.json({ users: await services.social.searchUsers(currentUser(req).id, q, limit) });
      return;
    }
    const { username } = parse(restSchemas.userLookup, req.query);
    takeLookup(currentUser(req).id);
    res.json({ user: await services.social.findUser(username) });
  });

  router.get('/users/me', bearer, (req, res) => {
    res.json({ user: currentUser(req).toPublic() });
  });

  router.patch('/users/me', bearer, async (req, res) => {
    const { displayName } = parse(restSchemas.updateProfile, req.body);
    // A new name is told to every friend and co-participant (thousands of rooms, a large cross-node notice).
    takeLookup(currentUser(req).id);
    res.json({ user: await services.auth.updateDisplayName(currentUser(req).id, displayName) });
  });

  router.delete('/users/me', bearer, async (req, res) => {
    const { password } = parse(restSchemas.deleteAccount, req.body);
    await services.auth.deleteAccount(currentUser(req), currentSessionId(req), password, {
      ip: clientIp(req),
    });
    res.status(204).end();
  });

  // After /users/me: "me" is not a UUID, and the routes above answer it first.
  router.get('/users/:id', bearer, async (req, res) => {
    const user = await User.query(services.db.knex).modify('public').findById(pathId(req.params.id));
    if (!user) throw new AppError('USER_NOT_FOUND');
    res.json({ user: user.toPublic() });
  });

  return router;
}
