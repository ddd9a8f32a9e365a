import { Router } from 'express';
import type { Services } from '../../services.js';
import { validationError } from '../../errors.js';
import { currentUser, requireAuth } from '../auth.js';
import { restSchemas } from '../../protocol/schemas.js';
import { weighByLength } from '../../readBudget.js';
import { parse, pathId } from '../../validation.js';
import type { LookupBudget } from './users.js';

/**
 * `POST /blocks {userId}`, `DELETE /blocks/:userId`, `GET /blocks`, behind bearer auth. Blocking and unblocking
 * are idempotent (204 either way). A body `userId` that is not a UUID is 400 VALIDATION_FAILED; a path one is
 * 404 NOT_FOUND. Blocking takes from the lookup budget, the list from the read budget.
 */
export function blockRoutes(services: Services, takeLookup: LookupBudget): Router {
  const { social } = services;
  const router = Router();
  router.use('/blocks', requireAuth(services));

  router.post('/blocks', async (req, res) => {
    const { userId } = parse(restSchemas.block, req.body);
    const me = currentUser(req).id;
    // Refused for what it is, before the budget: a VALIDATION_FAILED costs nothing (docs/api.md).
    if (userId === me) throw validationError({ userId: 'cannot block yourself' });
    // Each block lengthens a list the node answers whole, and tells whether a user id exists.
    takeLookup(me);
    await social.block(me, userId);
    res.status(204).end();
  });

  router.delete('/blocks/:userId', async (req, res) => {
    await social.unblock(currentUser(req).id, pathId(req.params.userId));
    res.status(204).end();
  });

  router.get('/blocks', async (req, res) => {
    const me = currentUser(req).id;
    const blocked = await services.messages.withinReadBudget(me, () => social.listBlocked(me), weighByLength);
    res.json({ blocked });
  });

  return router;
}
