import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { expectOk, putMessage, record, rows, send, subscribe } from './helpers/chat.js';
import { expectAckError } from './helpers/errors.js';
import { ownerAndTwoMembers } from './helpers/lifecycle.js';
import { useNode } from './helpers/nodes.js';
import { connectSocket, type ClientSocket } from './helpers/sockets.js';
import { disconnected } from './helpers/events.js';
import { request } from './helpers/http.js';
import { waitFor } from './helpers/waitFor.js';
import { insertSession, type TestUser } from './helpers/users.js';
import { signAccessToken } from '../lib/auth/tokens.js';

/**
 * A session that ends on another node is refused by this node's writes before this node hears of it: each send
 * and change names its session, and the write checks it under the conversation's lock
 * (migrations/20261203130000_session_checked_under_lock.ts). Here the session's row is deleted straight from the
 * database, as another node's logout deletes it, and nothing tells this node: its socket stays open, as it does in
 * the moments before the notice arrives.
 */
describe('writes and reads of a session that has ended, before the node hears of it', function () {
  this.timeout(30_000);
  const { server, pool } = useNode();
  const knex = () => server.services.db.knex;

  async function state(conversationId: string) {
    const [conversation] = await rows<{ last_seq: string; version: string }>(
      knex(),
      'SELECT last_seq, version FROM conversations WHERE id = ?',
      [conversationId],
    );
    const messages = await rows<{ seq: string; body: string; deleted_at: Date | null }>(
      knex(),
      'SELECT seq, body, deleted_at FROM messages WHERE conversation_id = ? ORDER BY seq',
      [conversationId],
    );
    const [reactions] = await rows<{ n: string }>(
      knex(),
      'SELECT count(*) AS n FROM message_reactions r JOIN messages m ON m.id = r.message_id WHERE m.conversation_id = ?',
      [conversationId],
    );
    return {
      lastSeq: Number(conversation?.last_seq),
      version: Number(conversation?.version),
      messages: messages.map((m) => ({ seq: Number(m.seq), body: m.body, deleted: m.deleted_at !== null })),
      reactions: Number(reactions?.n),
    };
  }

  /**
   * A socket of a new session of `user`'s, whose session row is then deleted as another node's logout deletes it:
   * nothing tells this node. With what it hears recorded.
   */
  async function socketOfEndedSession(
    user: TestUser,
    attempt = 1,
  ): Promise<{
    socket: ClientSocket;
    ended: ReturnType<typeof record<'session:ended'>>;
    gone: Promise<string>;
  }> {
    const sessionId = await insertSession(knex(), user.id);
    const token = signAccessToken(
      { userId: user.id, sessionId },
      server.services.config.auth,
      Date.now(),
    ).token;
    const socket = pool.track(await connectSocket(server.url, token));
    const ended = record(socket, 'session:ended');
    const gone = disconnected(socket);
    await knex()('sessions').where({ id: sessionId }).delete();
    // The node looks at a new socket's session once more as it joins the socket to its rooms, a query that may run
    // after the deletion above: then the node has heard, and the socket ends at once. Past that look, nothing tells
    // the node; a socket it ended so is replaced by another.
    await new Promise((resolve) => setTimeout(resolve, 300));
    if (!socket.connected && attempt < 5) return socketOfEndedSession(user, attempt + 1);
    expect(socket.connected, 'the node has not heard').to.equal(true);
    return { socket, ended, gone };
  }

  /** The refused socket then ends, as the session's notice would have ended it. */
  async function expectEnded({ ended, gone }: Awaited<ReturnType<typeof socketOfEndedSession>>) {
    expect(await gone).to.equal('io server disconnect');
    expect(ended).to.deep.equal([{ reason: 'revoked' }]);
  }

  it('refuses its socket’s sends, edits, deletes and reactions with UNAUTHORIZED and stores nothing, then ends the socket; others write on, gap-free', async () => {
    const { alice, bob, id } = await ownerAndTwoMembers(server);
    const live = pool.track(await connectSocket(server.url, alice.token));
    const first = expectOk(await send(live, id, 'before the logout')).message;
    expect(first.seq).to.equal(1);
    const before = await state(id);

    const attempts: Array<[string, (socket: ClientSocket) => Promise<Parameters<typeof expectAckError>[0]>]> =
      [
        ['send', (socket) => send(socket, id, 'after the logout', randomUUID())],
        [
          'edit',
          (socket) =>
            socket.emitWithAck('message:edit', { conversationId: id, seq: 1, body: 'edited after' }),
        ],
        [
          'reaction',
          (socket) => socket.emitWithAck('reaction:add', { conversationId: id, seq: 1, emoji: '👍' }),
        ],
        ['delete', (socket) => socket.emitWithAck('message:delete', { conversationId: id, seq: 1 })],
        // A replay of a message stored before the session ended is refused too: the session learns nothing more.
        [
          'replay',
          (socket) =>
            socket.emitWithAck('message:send', {
              conversationId: id,
              clientMsgId: first.clientMsgId,
              body: first.body,
            }),
        ],
      ];
    for (const [what, attempt] of attempts) {
      const ending = await socketOfEndedSession(alice);
      expectAckError(await attempt(ending.socket), 'UNAUTHORIZED', what);
      await expectEnded(ending);
    }
    expect(await state(id)).to.deep.equal(before);
    // The session that is live keeps its socket.
    expect(live.connected).to.equal(true);

    // Bob's session is live: his send takes the next seq, and alice's refused send took none.
    const bobs = await putMessage(server.url, bob, id, randomUUID(), { body: 'bob after' });
    expect(bobs.status).to.equal(201);
    expect(bobs.body.message.seq).to.equal(2);
    const after = await state(id);
    expect(after.lastSeq).to.equal(2);
    expect(after.messages.map((m) => m.seq)).to.deep.equal([1, 2]);
  });

  it('refuses its socket’s read marker with UNAUTHORIZED: the marker stays, nobody is told, the socket ends', async () => {
    const { owner, alice, id } = await ownerAndTwoMembers(server);
    const ownerSocket = pool.track(await connectSocket(server.url, owner.token));
    const socket = pool.track(await connectSocket(server.url, alice.token));
    await subscribe(ownerSocket, id);
    for (const body of ['one', 'two', 'three']) expectOk(await send(ownerSocket, id, body));
    const reads = record(ownerSocket, 'conversation:read');
    // Live, it moves the marker and tells the others.
    expectOk(await socket.emitWithAck('conversation:read', { conversationId: id, seq: 1 }));
    await waitFor(() => reads.length === 1, { what: 'the first read marker' });

    const ending = await socketOfEndedSession(alice);
    expectAckError(
      await ending.socket.emitWithAck('conversation:read', { conversationId: id, seq: 3 }),
      'UNAUTHORIZED',
      'read marker',
    );
    await expectEnded(ending);
    const [row] = await rows<{ last_read_seq: string }>(
      knex(),
      'SELECT last_read_seq FROM conversation_participants WHERE conversation_id = ? AND user_id = ?',
      [id, alice.id],
    );
    expect(Number(row?.last_read_seq)).to.equal(1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(reads.map((r) => r.seq)).to.deep.equal([1]);
  });

  it('refuses its socket’s typing with UNAUTHORIZED: nobody is told, the socket ends', async () => {
    const { owner, alice, id } = await ownerAndTwoMembers(server);
    const ownerSocket = pool.track(await connectSocket(server.url, owner.token));
    await subscribe(ownerSocket, id);
    const typings = record(ownerSocket, 'typing');

    const ending = await socketOfEndedSession(alice);
    expectAckError(
      await ending.socket.emitWithAck('typing', { conversationId: id }),
      'UNAUTHORIZED',
      'typing',
    );
    await expectEnded(ending);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(typings).to.deep.equal([]);
  });

  it('refuses its socket’s typing with UNAUTHORIZED within the 2 s after a typing of the user’s live session', async () => {
    const { owner, alice, id } = await ownerAndTwoMembers(server);
    const ownerSocket = pool.track(await connectSocket(server.url, owner.token));
    await subscribe(ownerSocket, id);
    const typings = record(ownerSocket, 'typing');
    const phone = pool.track(await connectSocket(server.url, alice.token));

    const ending = await socketOfEndedSession(alice);
    // The live session's typing goes out and starts the user's 2 s in this conversation...
    expect(await phone.emitWithAck('typing', { conversationId: id })).to.deep.equal({ ok: true });
    await waitFor(() => typings.length === 1, { what: "the live session's typing" });
    // ... and the ended session's, inside them, is refused all the same.
    expectAckError(
      await ending.socket.emitWithAck('typing', { conversationId: id }),
      'UNAUTHORIZED',
      'typing',
    );
    await expectEnded(ending);
    expect(typings).to.have.length(1);
  });

  it('gives its socket’s subscribe no page: the socket ends as the session’s notice would have ended it (REST answers 401)', async () => {
    const { owner, alice, id } = await ownerAndTwoMembers(server);
    const socket = pool.track(await connectSocket(server.url, alice.token));
    expectOk(await send(pool.track(await connectSocket(server.url, owner.token)), id, 'before the end'));

    await knex()('sessions').where({ id: alice.sessionId }).delete();
    expect(socket.connected, 'the node has not heard').to.equal(true);
    const ended = record(socket, 'session:ended');
    const pages = record(socket, 'message:new');
    const gone = disconnected(socket);
    const acks: unknown[] = [];
    socket.emit('conversation:subscribe', { conversationId: id }, (ack: unknown) => acks.push(ack));
    expect(await gone).to.equal('io server disconnect');
    expect(ended).to.deep.equal([{ reason: 'revoked' }]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(acks, 'no page answered').to.deep.equal([]);
    expect(pages).to.deep.equal([]);
    const rest = await request(server.url, 'GET', `/conversations/${id}/messages`, { token: alice.token });
    expect(rest.status).to.equal(401);
  });
});
