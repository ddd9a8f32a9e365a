import { Router } from 'express';
import type { Services } from '../../services.js';
import { requireAuth } from '../auth.js';
import { restSchemas } from '../../protocol/schemas.js';
import { parse } from '../../validation.js';

/**
 * `GET /users?username=<exact>`: find a user to befriend, matched case-insensitively; 404 USER_NOT_FOUND when
 * there is none. Behind bearer auth, so the directory is not open to anonymous enumeration.
 */
export function userRoutes(services: Services): Router {
  const router = Router();
  router.get('/users', requireAuth(services), async (req, res) => {
    const { username } = parse(restSchemas.userLookup, req.query);
    res.json({ user: await services.social.findUser(username) });
  });
  return router;
}
