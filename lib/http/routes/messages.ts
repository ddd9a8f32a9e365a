import type { Router } from 'express';
import type { HistoryWindow } from '../../messaging/service.js';
import { PAGE_LIMIT, restSchemas, type RestInput } from '../../protocol/schemas.js';
import type { Services } from '../../services.js';
import { parse, pathId } from '../../validation.js';
import { currentSessionId, currentUser } from '../auth.js';

/** `?after=N` / `?before=N` (not both) and `limit` (1..200, default 50, larger clamped). */
function historyWindow({ after, before, limit = PAGE_LIMIT.default }: RestInput<'history'>): HistoryWindow {
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
    const { clientMsgId } = parse(restSchemas.sendPath, req.params);
    const { body, replyToSeq } = parse(restSchemas.sendBody, req.body);
    const sent = await messages.send(
      currentUser(req).id,
      { conversationId, clientMsgId, body, replyToSeq },
      currentSessionId(req),
    );
    // A replay answers the stored message with 200: nothing new was written.
    res.status(sent.duplicate ? 200 : 201).json({ message: sent.message });
  });

  router.get('/conversations/:id/messages', async (req, res) => {
    const conversationId = pathId(req.params.id);
    const window = historyWindow(parse(restSchemas.history, req.query));
    const page = await messages.history(currentUser(req).id, conversationId, window);
    // lastSeq and version are read in the page's snapshot: a client holding a seq above lastSeq (or a version above
    // version) is ahead of the server, whose database was restored to an earlier point (docs/api.md, "Guarantees").
    res.json({
      messages: page.messages,
      hasMore: page.hasMore,
      lastSeq: page.lastSeq,
      version: page.version,
    });
  });

  router.patch('/conversations/:id/messages/:seq', async (req, res) => {
    const conversationId = pathId(req.params.id);
    const { seq } = parse(restSchemas.messagePath, req.params);
    const { body } = parse(restSchemas.editBody, req.body);
    res.json(
      await messages.change(
        currentUser(req).id,
        conversationId,
        { kind: 'edit', seq, body },
        currentSessionId(req),
      ),
    );
  });

  router.delete('/conversations/:id/messages/:seq', async (req, res) => {
    const conversationId = pathId(req.params.id);
    const { seq } = parse(restSchemas.messagePath, req.params);
    await messages.change(
      currentUser(req).id,
      conversationId,
      { kind: 'delete', seq },
      currentSessionId(req),
    );
    res.status(204).end();
  });

  for (const [method, kind] of [
    ['put', 'react'],
    ['delete', 'unreact'],
  ] as const) {
    // An empty emoji (`.../reactions/`) is refused as the socket refuses it, not answered as an unknown route.
    router[method]('/conversations/:id/messages/:seq/reactions{/:emoji}', async (req, res) => {
      const conversationId = pathId(req.params.id);
      const schema = kind === 'react' ? restSchemas.reactionPath : restSchemas.reactionRemovalPath;
      const { seq, emoji } = parse(schema, {
        ...req.params,
        emoji: req.params.emoji ?? '',
      });
      await messages.change(currentUser(req).id, conversationId, { kind, seq, emoji }, currentSessionId(req));
      res.status(204).end();
    });
  }

  router.get('/conversations/:id/changes', async (req, res) => {
    const conversationId = pathId(req.params.id);
    const { since, limit = PAGE_LIMIT.default } = parse(restSchemas.changes, req.query);
    res.json(await messages.changes(currentUser(req).id, conversationId, since, limit));
  });

  router.post('/conversations/:id/read', async (req, res) => {
    const conversationId = pathId(req.params.id);
    const { seq } = parse(restSchemas.read, req.body);
    await messages.markRead(currentUser(req).id, conversationId, seq, currentSessionId(req));
    res.status(204).end();
  });
}
