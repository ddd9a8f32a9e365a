import { Router } from 'express';
import { restSchemas } from '../../protocol/schemas.js';
import type { Services } from '../../services.js';
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
    res.json({ requests: await social.listRequests(currentUser(req).id, direction) });
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
    res.json({ friends: await social.listFriends(currentUser(req).id) });
  });

  router.delete('/friends/:userId', async (req, res) => {
    await social.removeFriend(currentUser(req).id, pathId(req.params.userId));
    res.status(204).end();
  });

  return router;
}
