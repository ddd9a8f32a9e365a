import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { Ack } from '../../lib/protocol/index.js';
import { createGroup, expectOk, friendsOf, newUser, record, rows, send, subscribe } from '../helpers/chat.js';
import type { ErrorResponse } from '../helpers/errors.js';
import { request } from '../helpers/http.js';
import { useTwoNodes } from '../helpers/nodes.js';
import { connectSocket } from '../helpers/sockets.js';
import type { TestUser } from '../helpers/users.js';
import { waitFor } from '../helpers/waitFor.js';

const NOT_FOUND = { error: { code: 'NOT_FOUND', message: 'Not found.' } } satisfies ErrorResponse;

/** A third user against every conversation path: the conversation's existence is never revealed. */
describe('IDOR: a non-participant against every conversation path', function () {
  this.timeout(30_000);
  const { a, b, pool } = useTwoNodes();
  let owner: TestUser;
  let member: TestUser;
  let stranger: TestUser;
  let conversationId: string;

  before(async () => {
    owner = await newUser(a);
    // The stranger is even the owner's friend: friendship alone grants nothing in a conversation.
    [member, stranger] = (await friendsOf(a, owner, 2)) as [TestUser, TestUser];
    conversationId = (await createGroup(a.url, owner, [member], 'private')).id;
    // A message at seq 1, so the message paths name one that exists.
    const first = await request(a.url, 'PUT', `/conversations/${conversationId}/messages/${randomUUID()}`, {
      token: owner.token,
      body: { body: 'the first message' },
    });
    expect(first.status).to.equal(201);
  });

  it('answers NOT_FOUND on every REST path, byte-identical to a conversation that does not exist', async () => {
    const id = conversationId;
    const paths: Array<[string, string, unknown]> = [
      ['GET', `/conversations/${id}`, undefined],
      ['PATCH', `/conversations/${id}`, { title: 'mine now' }],
      ['POST', `/conversations/${id}/participants`, { userId: stranger.id }],
      ['DELETE', `/conversations/${id}/participants/${member.id}`, undefined],
      ['DELETE', `/conversations/${id}/participants/${stranger.id}`, undefined],
      ['PUT', `/conversations/${id}/messages/${randomUUID()}`, { body: 'let me in' }],
      ['PUT', `/conversations/${id}/messages/${randomUUID()}`, { body: 'a reply', replyToSeq: 1 }],
      ['PATCH', `/conversations/${id}/messages/1`, { body: 'edited by a stranger' }],
      ['DELETE', `/conversations/${id}/messages/1`, undefined],
      ['PUT', `/conversations/${id}/messages/1/reactions/${encodeURIComponent('👍')}`, undefined],
      ['DELETE', `/conversations/${id}/messages/1/reactions/${encodeURIComponent('👨‍👩‍👧')}`, undefined],
      ['GET', `/conversations/${id}/changes?since=0`, undefined],
      ['GET', `/conversations/${id}/changes?since=0&limit=200`, undefined],
      ['GET', `/conversations/${id}/messages`, undefined],
      ['GET', `/conversations/${id}/messages?after=0&limit=200`, undefined],
      ['GET', `/conversations/${id}/messages?before=1000`, undefined],
      ['POST', `/conversations/${id}/read`, { seq: 1 }],
    ];
    for (const [method, path, body] of paths) {
      for (const node of [a, b]) {
        const mine = await request(node.url, method, path, { body, token: stranger.token });
        const missing = await request(node.url, method, path.replace(id, randomUUID()), {
          body,
          token: stranger.token,
        });
        expect(mine.status, `${method} ${path}`).to.equal(404);
        expect(mine.body, `${method} ${path}`).to.deep.equal(NOT_FOUND);
        expect(mine.text).to.equal(missing.text);
      }
    }
    const list = await request<{ conversations: Array<{ id: string }> }>(a.url, 'GET', '/conversations', {
      token: stranger.token,
    });
    expect(list.body.conversations.map((c) => c.id)).not.to.include(id);
  });

  it('answers NOT_FOUND to every socket event, and the stranger receives none of the conversation’s events', async () => {
    const [strangerA, strangerB] = [
      await connectSocket(a.url, stranger.token),
      await connectSocket(b.url, stranger.token),
    ];
    const ownerSocket = await connectSocket(a.url, owner.token);
    const memberSocket = await connectSocket(b.url, member.token);
    for (const socket of [strangerA, strangerB, ownerSocket, memberSocket]) pool.track(socket);
    const seen: string[] = [];
    for (const socket of [strangerA, strangerB]) socket.onAny((event: string) => seen.push(event));

    for (const socket of [strangerA, strangerB]) {
      const acks: Ack[] = [
        await socket.emitWithAck('conversation:subscribe', { conversationId }),
        await socket.emitWithAck('conversation:subscribe', { conversationId, afterSeq: 0, limit: 200 }),
        await socket.emitWithAck('conversation:unsubscribe', { conversationId }),
        await socket.emitWithAck('message:send', { conversationId, clientMsgId: randomUUID(), body: 'hi' }),
        await socket.emitWithAck('message:send', {
          conversationId,
          clientMsgId: randomUUID(),
          body: 'hi',
          replyToSeq: 1,
        }),
        await socket.emitWithAck('message:edit', { conversationId, seq: 1, body: 'mine' }),
        await socket.emitWithAck('message:delete', { conversationId, seq: 1 }),
        await socket.emitWithAck('reaction:add', { conversationId, seq: 1, emoji: '👍' }),
        await socket.emitWithAck('reaction:remove', { conversationId, seq: 1, emoji: '👍' }),
        await socket.emitWithAck('conversation:read', { conversationId, seq: 1 }),
        await socket.emitWithAck('typing', { conversationId }),
      ];
      for (const ack of acks) expect(ack).to.deep.equal({ ok: false, ...NOT_FOUND });
    }

    // The participants talk; their events reach each other across nodes, never the stranger.
    await subscribe(ownerSocket, conversationId);
    await subscribe(memberSocket, conversationId);
    const memberGot = record(memberSocket, 'message:new');
    const memberUpdates = record(memberSocket, 'message:updated');
    const sent = expectOk(await send(ownerSocket, conversationId, 'for members only'));
    const { seq } = sent.message;
    expectOk(
      await ownerSocket.emitWithAck('message:edit', { conversationId, seq, body: 'edited for members' }),
    );
    expectOk(await memberSocket.emitWithAck('reaction:add', { conversationId, seq, emoji: '🔒' }));
    expectOk(await ownerSocket.emitWithAck('typing', { conversationId }));
    expectOk(await memberSocket.emitWithAck('conversation:read', { conversationId, seq: sent.message.seq }));
    await waitFor(() => memberGot.some((m) => m.id === sent.message.id), {
      what: 'the member to get the message',
    });
    // The edit may reach the member's node after the member's own reaction there: it is then read in its newer
    // state, which the member already has (a change is delivered as the message's state, never twice). And the
    // reaction may be committed on the member's node before it hears of the message: the message then reaches the
    // member as its message:new in its current state, and its first state and the edit are passed over.
    await waitFor(
      () =>
        [...memberGot, ...memberUpdates].some(
          (m) => m.body === 'edited for members' && m.reactions.length === 1,
        ) && [...memberGot, ...memberUpdates].every((m) => m.id === sent.message.id),
      { what: 'the member to get the edit and the reaction' },
    );
    expect(memberGot).to.have.length(1);
    // One more round trip on each stranger socket, so anything in flight to them has arrived.
    for (const socket of [strangerA, strangerB]) await socket.emitWithAck('typing', { conversationId });
    expect(seen).to.deep.equal([]);

    const stored = await rows<{ sender_id: string }>(
      a.services.db.knex,
      'SELECT sender_id FROM messages WHERE conversation_id = ?',
      [conversationId],
    );
    expect(stored.map((r) => r.sender_id)).to.deep.equal([owner.id, owner.id]);
    const [first] = await rows<{ body: string; deleted_at: Date | null; version: number }>(
      a.services.db.knex,
      'SELECT body, deleted_at, version FROM messages WHERE conversation_id = ? AND seq = 1',
      [conversationId],
    );
    expect(first).to.deep.equal({ body: 'the first message', deleted_at: null, version: 1 });
    const reactions = await rows<{ user_id: string }>(
      a.services.db.knex,
      'SELECT r.user_id FROM message_reactions r JOIN messages m ON m.id = r.message_id WHERE m.conversation_id = ?',
      [conversationId],
    );
    expect(reactions.map((r) => r.user_id)).to.deep.equal([member.id]);
  });
});
