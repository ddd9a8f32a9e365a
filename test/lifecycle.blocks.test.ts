import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import type { Ack } from '../lib/protocol/index.js';
import {
  createGroup,
  expectOk,
  friendsOf,
  newUser,
  putMessage,
  record,
  send,
  subscribe,
} from './helpers/chat.js';
import { expectAckError, expectError } from './helpers/errors.js';
import { useTwoNodes } from './helpers/nodes.js';
import { directConversation } from './helpers/faults.js';
import { request } from './helpers/http.js';
import { changes, counters, deleteMessage, editMessage, fullHistory, reaction } from './helpers/lifecycle.js';
import type { ClientSocket } from './helpers/sockets.js';
import type { TestUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

/** Blocks (version 2): a block closes a direct conversation to writing, except deletes; groups are unaffected. */
describe('message lifecycle and blocks', function () {
  this.timeout(30_000);
  const { a, b, pool } = useTwoNodes();

  const knex = () => a.services.db.knex;
  const block = (by: TestUser, target: TestUser) =>
    request(a.url, 'POST', '/blocks', { token: by.token, body: { userId: target.id } });
  const unblock = (by: TestUser, target: TestUser) =>
    request(b.url, 'DELETE', `/blocks/${target.id}`, { token: by.token });

  interface Side {
    user: TestUser;
    socket: ClientSocket;
    url: string;
    /** The seq of a message this side sent before the block. */
    own: number;
  }

  /** Alice (on node a) and Bob (on node b), friends with a direct conversation and one message each. */
  async function directPair() {
    const alice = await newUser(a);
    const [bob] = (await friendsOf(a, alice, 1)) as [TestUser];
    const id = await directConversation(a.url, alice, bob);
    const aliceSocket = await pool.open(a.url, alice);
    const bobSocket = await pool.open(b.url, bob);
    const aliceFirst = randomUUID();
    expectOk(await send(aliceSocket, id, 'from alice', aliceFirst));
    expectOk(await send(bobSocket, id, 'from bob'));
    await reaction(a.url, alice, 'PUT', id, 2, '👍');
    const sides: [Side, Side] = [
      { user: alice, socket: aliceSocket, url: a.url, own: 1 },
      { user: bob, socket: bobSocket, url: b.url, own: 2 },
    ];
    return { alice, bob, id, sides, aliceFirst };
  }

  /** Everything a side can write, each answered BLOCKED, over REST and Socket.IO. */
  async function expectWritesBlocked(side: Side, id: string, otherSeq: number): Promise<void> {
    const { user, socket, url, own } = side;
    const who = user.username;
    expectError(await putMessage(url, user, id, randomUUID(), { body: 'hello?' }), 403, 'BLOCKED');
    expectError(await editMessage(url, user, id, own, 'edited?'), 403, 'BLOCKED');
    expectError(await reaction(url, user, 'PUT', id, otherSeq, '🙂'), 403, 'BLOCKED');
    expectError(await reaction(url, user, 'DELETE', id, 2, '👍'), 403, 'BLOCKED');
    const acks: Array<[string, Ack]> = [
      ['send', await send(socket, id, 'hello?')],
      ['edit', await socket.emitWithAck('message:edit', { conversationId: id, seq: own, body: 'edited?' })],
      ['react', await socket.emitWithAck('reaction:add', { conversationId: id, seq: otherSeq, emoji: '🙂' })],
      ['unreact', await socket.emitWithAck('reaction:remove', { conversationId: id, seq: 2, emoji: '👍' })],
      ['typing', await socket.emitWithAck('typing', { conversationId: id })],
      // Typing again at once is refused as well, not answered as a throttled repeat.
      ['typing again', await socket.emitWithAck('typing', { conversationId: id })],
    ];
    for (const [what, ack] of acks) expectAckError(ack, 'BLOCKED', `${who}: ${what}`);
  }

  it('after a block, neither side can send, edit, react or type in their direct conversation (BLOCKED), on either node', async () => {
    const { alice, bob, id, sides } = await directPair();
    const [aliceSide, bobSide] = sides;
    const typingAtBob = record(bobSide.socket, 'typing');
    await subscribe(bobSide.socket, id);
    const before = await counters(knex(), id);
    const history = await fullHistory(a.url, alice, id);

    expect((await block(alice, bob)).status).to.equal(204);
    await expectWritesBlocked(aliceSide, id, 2);
    await expectWritesBlocked(bobSide, id, 1);
    expect(await counters(knex(), id)).to.deep.equal(before);
    expect(await fullHistory(b.url, bob, id)).to.deep.equal(history);

    // Blocking the other way too changes nothing; each side's own block keeps it closed.
    expect((await block(bob, alice)).status).to.equal(204);
    await expectWritesBlocked(bobSide, id, 1);
    expect((await unblock(alice, bob)).status).to.equal(204);
    await expectWritesBlocked(aliceSide, id, 2);
    expect(typingAtBob).to.deep.equal([]);
  });

  it('history stays readable under a block, and each side may still delete its own messages', async () => {
    const { alice, bob, id, sides } = await directPair();
    const [aliceSide, bobSide] = sides;
    expect((await block(bob, alice)).status).to.equal(204);

    for (const side of sides) {
      const { user, url, socket } = side;
      const read = await request<{ messages: unknown[] }>(url, 'GET', `/conversations/${id}/messages`, {
        token: user.token,
      });
      expect(read.status).to.equal(200);
      expect(read.body.messages).to.have.length(2);
      expect((await request(url, 'GET', `/conversations/${id}`, { token: user.token })).status).to.equal(200);
      expect((await changes(url, user, id, 0)).body.messages).to.have.length(2);
      expect(await subscribe(socket, id)).to.deep.include({ lastSeq: 2, version: 3 });
    }
    // Another's message stays theirs to delete.
    expectError(await deleteMessage(a.url, alice, id, 2), 403, 'FORBIDDEN');

    const updatesAtAlice = record(aliceSide.socket, 'message:updated');
    expect((await deleteMessage(a.url, alice, id, 1)).status).to.equal(204);
    expect(await bobSide.socket.emitWithAck('message:delete', { conversationId: id, seq: 2 })).to.deep.equal({
      ok: true,
    });
    const after = await fullHistory(b.url, bob, id);
    expect(after.map((m) => [m.seq, m.body, m.reactions, m.deletedAt !== null])).to.deep.equal([
      [1, '', [], true],
      [2, '', [], true],
    ]);
    expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 2, version: 5 });
    await waitFor(() => updatesAtAlice.length === 2, { what: 'both deletes at alice' });
    expect(updatesAtAlice.map((m) => m.seq)).to.deep.equal([1, 2]);
  });

  it('a send stored before the block, retried after it, answers the stored message (nothing new is written)', async () => {
    const { alice, bob, id, sides, aliceFirst } = await directPair();
    expect((await block(bob, alice)).status).to.equal(204);
    const replay = expectOk(await send(sides[0].socket, id, 'from alice', aliceFirst));
    expect(replay.duplicate).to.equal(true);
    expect(replay.message).to.deep.include({ seq: 1, body: 'from alice' });
    const viaRest = await putMessage(b.url, alice, id, aliceFirst, { body: 'from alice' });
    expect(viaRest.status).to.equal(200);
    expect(viaRest.body.message).to.deep.equal(replay.message);
    // The same clientMsgId with another body is a new message: refused.
    expectAckError(await send(sides[0].socket, id, 'something else', aliceFirst), 'BLOCKED');
    expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 2, version: 3 });
  });

  it('unblocking restores sending, editing, reacting and typing for both sides', async () => {
    const { alice, bob, id, sides } = await directPair();
    expect((await block(alice, bob)).status).to.equal(204);
    await expectWritesBlocked(sides[0], id, 2);
    await expectWritesBlocked(sides[1], id, 1);
    expect((await unblock(alice, bob)).status).to.equal(204);

    const [aliceSide, bobSide] = sides;
    const typingAtAlice = record(aliceSide.socket, 'typing');
    const typingAtBob = record(bobSide.socket, 'typing');
    await subscribe(aliceSide.socket, id);
    await subscribe(bobSide.socket, id);
    for (const [side, otherSeq] of [
      [aliceSide, 2],
      [bobSide, 1],
    ] as const) {
      const { user, socket, url, own } = side;
      expect((await putMessage(url, user, id, randomUUID(), { body: 'again' })).status).to.equal(201);
      expectOk(await send(socket, id, 'and again'));
      expect((await editMessage(url, user, id, own, `${user.username} edited`)).status).to.equal(200);
      expect((await reaction(url, user, 'PUT', id, otherSeq, '🤝')).status).to.equal(204);
      expect(
        await socket.emitWithAck('reaction:remove', { conversationId: id, seq: otherSeq, emoji: '🤝' }),
      ).to.deep.equal({ ok: true });
      expect(await socket.emitWithAck('typing', { conversationId: id })).to.deep.equal({ ok: true });
    }
    await waitFor(() => typingAtAlice.length === 1 && typingAtBob.length === 1, { what: 'typing both ways' });
    expect(typingAtAlice).to.deep.equal([{ conversationId: id, userId: bob.id }]);
    expect(typingAtBob).to.deep.equal([{ conversationId: id, userId: alice.id }]);
    expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 6, version: 3 + 2 * 5 });
  });

  it('answers a typing BLOCKED on every node as soon as the block is heard, within 2 s of one that went out', async () => {
    /** One try on a new pair: how long from the typings to the last BLOCKED. */
    const attempt = async (): Promise<number> => {
      const { alice, bob, id, sides } = await directPair();
      const [aliceSide, bobSide] = sides;
      const typed = performance.now();
      // Both typed a moment ago: their next typings within 2 s would be answered from each node's memory.
      expect(await aliceSide.socket.emitWithAck('typing', { conversationId: id })).to.deep.equal({
        ok: true,
      });
      expect(await bobSide.socket.emitWithAck('typing', { conversationId: id })).to.deep.equal({ ok: true });
      // Bob blocks Alice (on node a, Alice's node; Bob's node b hears it by the control bus).
      expect((await block(bob, alice)).status).to.equal(204);
      for (const side of sides) {
        await waitFor(
          async () => {
            const ack = await side.socket.emitWithAck('typing', { conversationId: id });
            return !ack.ok && ack.error.code === 'BLOCKED';
          },
          { what: `${side.user.username}'s typing to be BLOCKED`, timeoutMs: 1500, intervalMs: 20 },
        );
      }
      return performance.now() - typed;
    };
    // A try that took 2 s or more (a block slow to commit on a loaded machine) shows nothing either way: the
    // typings had been forgotten by then. A node answering from its memory takes that long every time.
    const tries: number[] = [];
    while (tries.length < 3 && !tries.some((ms) => ms < 2000)) tries.push(await attempt());
    expect(
      Math.min(...tries),
      `within the 2 s the typings were remembered (tries: ${tries.join(', ')} ms)`,
    ).to.be.below(2000);
  });

  it('in a group, a block between two members changes nothing', async () => {
    const owner = await newUser(a);
    const [alice, bob] = (await friendsOf(a, owner, 2)) as [TestUser, TestUser];
    const { id } = await createGroup(a.url, owner, [alice, bob]);
    expect((await block(alice, bob)).status).to.equal(204);
    expect((await block(owner, alice)).status).to.equal(204);
    const aliceSocket = await pool.open(a.url, alice);
    const bobSocket = await pool.open(b.url, bob);
    const typingAtBob = record(bobSocket, 'typing');
    await subscribe(bobSocket, id);
    expectOk(await send(aliceSocket, id, 'alice in the group'));
    expect((await putMessage(b.url, bob, id, randomUUID(), { body: 'bob in the group' })).status).to.equal(
      201,
    );
    expect((await putMessage(a.url, owner, id, randomUUID(), { body: 'owner' })).status).to.equal(201);
    expectOk(await aliceSocket.emitWithAck('message:edit', { conversationId: id, seq: 1, body: 'edited' }));
    expect((await editMessage(b.url, bob, id, 2, 'bob edited')).status).to.equal(200);
    expect(
      await aliceSocket.emitWithAck('reaction:add', { conversationId: id, seq: 2, emoji: '👋' }),
    ).to.deep.equal({
      ok: true,
    });
    expect((await reaction(b.url, bob, 'PUT', id, 1, '👋')).status).to.equal(204);
    expect((await reaction(a.url, owner, 'PUT', id, 1, '👋')).status).to.equal(204);
    expect(await aliceSocket.emitWithAck('typing', { conversationId: id })).to.deep.equal({ ok: true });
    expect((await deleteMessage(a.url, owner, id, 1)).status).to.equal(204);
    await waitFor(() => typingAtBob.length === 1, { what: 'typing from alice' });
    expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 3, version: 9 });
  });
});
