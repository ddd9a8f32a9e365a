import { Router } from 'express';
import { restSchemas, USER_SEARCH_MAX } from '../../protocol/schemas.js';
import type { Services } from '../../services.js';
import { parse } from '../../validation.js';
import { currentUser, requireAuth } from '../auth.js';

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
    if (req.query.q !== undefined) {
      const { q, limit = USER_SEARCH_MAX } = parse(restSchemas.userSearch, req.query);
      res.json({ users: await services.social.searchUsers(currentUser(req).id, q, limit) });
      return;
    }
    const { username } = parse(restSchemas.userLookup, req.query);
    res.json({ user: await services.social.findUser(username) });
  });
  return router;
}
