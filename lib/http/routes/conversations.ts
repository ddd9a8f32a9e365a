import { Router } from 'express';
import { PAGE_LIMIT, restSchemas } from '../../protocol/schemas.js';
import type { Services } from '../../services.js';
import { parse, pathId } from '../../validation.js';
import { currentUser, requireAuth } from '../auth.js';
import { addMessageRoutes } from './messages.js';

/**
 * Conversations and participants (`/conversations...`), behind bearer auth. A path id that is not a UUID, or a
 * conversation the caller does not take part in, is 404 NOT_FOUND: existence is never revealed. The message
 * routes (lib/http/routes/messages.ts) share this router and its auth.
 */
export function conversationRoutes(services: Services): Router {
  const { conversations, messages } = services;
  const router = Router();
  router.use('/conversations', requireAuth(services));

  router.post('/conversations', async (req, res) => {
    const me = currentUser(req).id;
    const input = parse(restSchemas.createConversation, req.body);
    if (input.type === 'direct') {
      const { conversation, created } = await conversations.createDirect(me, input.userId);
      res.status(created ? 201 : 200).json({ conversation });
      return;
    }
    const conversation = await conversations.createGroup(me, input.title, input.participantIds);
    res.status(201).json({ conversation });
  });

  // A page of conversations carries every participant of each, 2000 at most unless its first conversation alone
  // has more (LIST_PARTICIPANTS_BUDGET): within the user's read budget, like a page of history.
  router.get('/conversations', async (req, res) => {
    const { limit = PAGE_LIMIT.default, cursor } = parse(restSchemas.conversationList, req.query);
    const me = currentUser(req).id;
    res.json(await messages.withinReadBudget(me, () => conversations.list(me, { limit, cursor })));
  });

  // The routes of one conversation look at the caller's membership first, as the message routes do: a
  // non-participant costs one primary-key probe, whether the conversation exists or not, and no lock or load of it
  // (timing reveals nothing), within the budget of lookups that find nothing (RATE_LIMITED past it). The service
  // checks again under the conversation's lock, so a stale confirmation lets nothing through.
  router.get('/conversations/:id', async (req, res) => {
    const me = currentUser(req).id;
    const conversationId = pathId(req.params.id);
    const conversation = await messages.withinReadBudget(me, async () => {
      await messages.assertParticipant(me, conversationId);
      return await conversations.get(me, conversationId);
    });
    res.json({ conversation });
  });

  router.patch('/conversations/:id', async (req, res) => {
    const me = currentUser(req).id;
    const conversationId = pathId(req.params.id);
    const { title } = parse(restSchemas.renameConversation, req.body);
    await messages.assertParticipant(me, conversationId);
    res.json({ conversation: await conversations.rename(me, conversationId, title) });
  });

  router.post('/conversations/:id/participants', async (req, res) => {
    const me = currentUser(req).id;
    const conversationId = pathId(req.params.id);
    const { userId } = parse(restSchemas.addParticipant, req.body);
    await messages.assertParticipant(me, conversationId);
    const participant = await conversations.addParticipant(me, conversationId, userId);
    res.status(201).json({ participant });
  });

  router.delete('/conversations/:id/participants/:userId', async (req, res) => {
    const me = currentUser(req).id;
    const conversationId = pathId(req.params.id);
    const userId = pathId(req.params.userId);
    await messages.assertParticipant(me, conversationId);
    await conversations.removeParticipant(me, conversationId, userId);
    res.status(204).end();
  });

  addMessageRoutes(router, services);
  return router;
}
