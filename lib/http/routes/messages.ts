import type { Router } from 'express';
import type { HistoryWindow } from '../../conversations/messageService.js';
import { validationError } from '../../errors.js';
import type { Services } from '../../services.js';
import { currentUser } from '../auth.js';
import { CLIENT_MSG_ID, MESSAGE_BODY, pathId, Validator } from '../validate.js';

const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 200;
const MAX_SEQ = Number.MAX_SAFE_INTEGER;

/** `?after=N` / `?before=N` (not both) and `limit` (1..200, default 50, larger clamped). */
function historyWindow(query: unknown): HistoryWindow {
  const v = new Validator(query);
  const after = v.int('after', { min: 0, max: MAX_SEQ, optional: true });
  const before = v.int('before', { min: 1, max: MAX_SEQ, optional: true });
  const limit = v.int('limit', { min: 1, max: MAX_LIMIT, optional: true, clampMax: true }) ?? DEFAULT_LIMIT;
  v.done();
  if (after !== undefined && before !== undefined) {
    throw validationError({ before: 'cannot be combined with after' });
  }
  if (after !== undefined) return { kind: 'after', seq: after, limit };
  if (before !== undefined) return { kind: 'before', seq: before, limit };
  return { kind: 'newest', limit };
}

/**
 * Messages over REST, added to the conversations router (behind its bearer auth): the idempotent PUT goes
 * through the same actor (and the same per-user rate limit) as Socket.IO's `message:send`; history pages; read
 * markers.
 */
export function addMessageRoutes(router: Router, services: Services): void {
  const { messages } = services;

  router.put('/conversations/:id/messages/:clientMsgId', async (req, res) => {
    const conversationId = pathId(req.params.id);
    const path = new Validator(req.params);
    const clientMsgId = path.string('clientMsgId', CLIENT_MSG_ID);
    path.done();
    const v = new Validator(req.body);
    const body = v.string('body', MESSAGE_BODY);
    v.done();
    const sent = await messages.send(currentUser(req).id, {
      conversationId,
      clientMsgId: clientMsgId!,
      body: body!,
    });
    // A replay answers the stored message with 200: nothing new was written.
    res.status(sent.duplicate ? 200 : 201).json({ message: sent.message });
  });

  router.get('/conversations/:id/messages', async (req, res) => {
    const conversationId = pathId(req.params.id);
    const window = historyWindow(req.query);
    const page = await messages.history(currentUser(req).id, conversationId, window);
    res.json({ messages: page.messages, hasMore: page.hasMore });
  });

  router.post('/conversations/:id/read', async (req, res) => {
    const conversationId = pathId(req.params.id);
    const v = new Validator(req.body);
    const seq = v.int('seq', { min: 0, max: MAX_SEQ });
    v.done();
    await messages.markRead(currentUser(req).id, conversationId, seq!);
    res.status(204).end();
  });
}
