import { Router } from 'express';
import type { Services } from '../../services.js';
import { currentUser, requireAuth } from '../auth.js';
import { USERNAME, Validator } from '../validate.js';

/** Most users one prefix search answers. */
const SEARCH_MAX = 20;

/**
 * Finding people to befriend, behind bearer auth so the directory is not open to anonymous enumeration:
 * - `GET /users?q=<prefix>&limit=<n>`: `{users}`, at most 20 (`limit`, default 20, larger values clamped) whose
 *   username starts with the prefix, case-insensitively, by username; never the caller, nor anyone the caller
 *   blocked or who blocked the caller;
 * - `GET /users?username=<exact>`: `{user}`, matched case-insensitively; 404 USER_NOT_FOUND when there is none.
 */
export function userRoutes(services: Services): Router {
  const router = Router();
  router.get('/users', requireAuth(services), async (req, res) => {
    const v = new Validator(req.query);
    if (req.query.q !== undefined) {
      const prefix = v.string('q', { ...USERNAME, min: 1 });
      const limit = v.int('limit', { min: 1, max: SEARCH_MAX, optional: true, clampMax: true });
      v.done();
      const users = await services.social.searchUsers(currentUser(req).id, prefix!, limit ?? SEARCH_MAX);
      res.json({ users });
      return;
    }
    const username = v.string('username', USERNAME);
    v.done();
    res.json({ user: await services.social.findUser(username!) });
  });
  return router;
}
