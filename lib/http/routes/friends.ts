import { Router } from 'express';
import { restSchemas } from '../../protocol/schemas.js';
import type { Services } from '../../services.js';
import { weighByLength } from '../../readBudget.js';
import { parse, pathId } from '../../validation.js';
import { currentUser, requireAuth } from '../auth.js';
import type { LookupBudget } from './users.js';

/**
 * Friend requests and friendships (`/friends/...`), all behind bearer auth. Path ids that are not UUIDs are
 * 404 NOT_FOUND, like ids that do not exist.
 */
export function friendRoutes(services: Services, takeLookup: LookupBudget): Router {
  const { social } = services;
  const router = Router();
  router.use('/friends', requireAuth(services));

  router.post('/friends/requests', async (req, res) => {
    const { username } = parse(restSchemas.friendRequest, req.body);
    // By username: it tells whether the name exists, as a lookup does.
    takeLookup(currentUser(req).id);
    const { request, created } = await social.sendRequest(currentUser(req).id, username);
    res.status(created ? 201 : 200).json({ request });
  });

  router.get('/friends/requests', async (req, res) => {
    const { direction } = parse(restSchemas.friendRequestList, req.query);
    const me = currentUser(req).id;
    // Answered whole, like the friends below: within the read budget, a long list costing what its pages would.
    const requests = await services.messages.withinReadBudget(
      me,
      () => social.listRequests(me, direction),
      weighByLength,
    );
    res.json({ requests });
  });

  router.post('/friends/requests/:id/accept', async (req, res) => {
    const request = await social.acceptRequest(currentUser(req).id, pathId(req.params.id));
    res.json({ request });
  });

  router.post('/friends/requests/:id/decline', async (req, res) => {
    const request = await social.declineRequest(currentUser(req).id, pathId(req.params.id));
    res.json({ request });
  });

  router.delete('/friends/requests/:id', async (req, res) => {
    await social.cancelRequest(currentUser(req).id, pathId(req.params.id));
    res.status(204).end();
  });

  router.get('/friends', async (req, res) => {
    const me = currentUser(req).id;
    const friends = await services.messages.withinReadBudget(me, () => social.listFriends(me), weighByLength);
    res.json({ friends });
  });

  router.delete('/friends/:userId', async (req, res) => {
    await social.removeFriend(currentUser(req).id, pathId(req.params.userId));
    res.status(204).end();
  });

  return router;
}
