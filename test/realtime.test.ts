import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import type { PublicMessage } from '../lib/protocol/index.js';
import {
  seqState,
  createGroup,
  expectOk,
  friendsOf,
  newUser,
  range,
  record,
  send,
  seqsOf,
  subscribe,
} from './helpers/chat.js';
import { isSubscribed } from '../lib/realtime/notifier.js';
import type { RunningServer } from '../lib/server.js';
import { directPair, useClientPool } from './client/fixtures.js';
import { expectAckError } from './helpers/errors.js';
import { useTwoNodes } from './helpers/nodes.js';
import type { ClientSocket } from './helpers/sockets.js';
import type { TestUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

describe('realtime messaging over two nodes', function () {
  const { a: nodeA, b: nodeB, pool } = useTwoNodes();

  async function storedSeqs(conversationId: string): Promise<number[]> {
    return (await seqState(nodeA.services.db.knex, conversationId)).seqs;
  }

  it('an ok ack means the message is committed: the row is there right after the ack', async () => {
    const owner = await newUser(nodeA);
    const group = await createGroup(nodeA.url, owner, await friendsOf(nodeA, owner, 1));
    const socket = await pool.open(nodeB.url, owner);
    for (let i = 0; i < 10; i += 1) {
      const clientMsgId = randomUUID();
      const ack = expectOk(await send(socket, group.id, `message ${i}`, clientMsgId));
      const row = (await nodeA.services.db
        .knex('messages')
        .where({ conversation_id: group.id, client_msg_id: clientMsgId })
        .first()) as { id: string; seq: number; body: string } | undefined;
      expect(row, `row of ack ${i}`).to.not.equal(undefined);
      expect(row!.id).to.equal(ack.message.id);
      expect(row!.seq).to.equal(ack.message.seq);
      expect(ack.duplicate).to.equal(false);
    }
  });

  it('keeps seq gap-free and delivers every message to every subscriber with 20 senders on two nodes', async function () {
    this.timeout(60_000);
    const owner = await newUser(nodeA);
    const members = await friendsOf(nodeA, owner, 20);
    const group = await createGroup(nodeA.url, owner, members);
    const sockets = await Promise.all(
      members.map((m, i) => pool.open(i % 2 === 0 ? nodeA.url : nodeB.url, m)),
    );
    const received = sockets.map((s) => record(s, 'message:new'));
    await Promise.all(sockets.map((s) => subscribe(s, group.id)));
    const perClient = 5;
    const total = members.length * perClient;
    const acks = await Promise.all(
      sockets.flatMap((s, i) => range(perClient).map((n) => send(s, group.id, `client ${i} message ${n}`))),
    );
    const sentSeqs = acks.map((a) => expectOk(a).message.seq).sort((a, b) => a - b);
    expect(sentSeqs).to.deep.equal(range(total));
    expect(await storedSeqs(group.id)).to.deep.equal(range(total));
    await waitFor(() => received.every((r) => r.length >= total), {
      what: 'every subscriber to receive every message',
      timeoutMs: 20_000,
    });
    for (const [i, messages] of received.entries()) {
      expect(messages, `subscriber ${i}`).to.have.length(total);
      expect(seqsOf(messages), `subscriber ${i}`).to.deep.equal(range(total));
    }
    // Per sender, the order of sending is the order of seq: one socket's sends go through one actor, FIFO.
    for (const [i, member] of members.entries()) {
      const mine = acks
        .map((a) => expectOk(a).message)
        .filter((m) => m.senderId === member.id)
        .sort((a, b) => a.seq - b.seq)
        .map((m) => m.body);
      expect(mine).to.deep.equal(range(perClient).map((n) => `client ${i} message ${n}`));
    }
  });

  it('retries with the same clientMsgId on the same node and on the other: one row, identical acks', async () => {
    const owner = await newUser(nodeA);
    const group = await createGroup(nodeA.url, owner, await friendsOf(nodeA, owner, 1));
    const onA = await pool.open(nodeA.url, owner);
    const onB = await pool.open(nodeB.url, owner);
    const clientMsgId = randomUUID();
    const first = expectOk(await send(onA, group.id, 'exactly once', clientMsgId));
    const sameNode = expectOk(await send(onA, group.id, 'exactly once', clientMsgId));
    const otherNode = expectOk(await send(onB, group.id, 'exactly once', clientMsgId));
    expect(first.duplicate).to.equal(false);
    expect(sameNode).to.deep.equal({ ok: true, message: first.message, duplicate: true });
    expect(otherNode).to.deep.equal({ ok: true, message: first.message, duplicate: true });
    const conflict = await send(onB, group.id, 'another body', clientMsgId);
    expectAckError(conflict, 'IDEMPOTENCY_CONFLICT');
    expect(await storedSeqs(group.id)).to.deep.equal([1]);
  });

  it('concurrent retries of one clientMsgId on both nodes make one message', async () => {
    const owner = await newUser(nodeA);
    const group = await createGroup(nodeA.url, owner, await friendsOf(nodeA, owner, 1));
    const sockets = [await pool.open(nodeA.url, owner), await pool.open(nodeB.url, owner)];
    const clientMsgId = randomUUID();
    const acks = await Promise.all(
      range(10).map((i) => send(sockets[i % 2]!, group.id, 'race', clientMsgId)),
    );
    const messages = acks.map((a) => expectOk(a));
    expect(new Set(messages.map((m) => m.message.id)).size).to.equal(1);
    expect(messages.filter((m) => !m.duplicate)).to.have.length(1);
    expect(await storedSeqs(group.id)).to.deep.equal([1]);
  });

  it('subscribers joining while messages flow miss nothing (history page + message:new)', async function () {
    this.timeout(30_000);
    const owner = await newUser(nodeA);
    const members = await friendsOf(nodeA, owner, 8);
    const group = await createGroup(nodeA.url, owner, members);
    const sender = await pool.open(nodeA.url, owner);
    const total = 120;
    const sending = (async () => {
      for (let n = 1; n <= total; n += 1) expectOk(await send(sender, group.id, `flow ${n}`));
    })();
    const views = await Promise.all(
      members.map(async (member, i) => {
        // Stagger the joins over the flow without sleeping: wait for the flow to reach a point.
        await waitFor(async () => (await storedSeqs(group.id)).length >= i * 12, { what: `flow point ${i}` });
        const socket = await pool.open(i % 2 === 0 ? nodeA.url : nodeB.url, member);
        const live = record(socket, 'message:new');
        const ack = await subscribe(socket, group.id, { limit: 200 });
        return { live, history: ack.messages };
      }),
    );
    await sending;
    for (const [i, view] of views.entries()) {
      await waitFor(() => seqsOf([...view.history, ...view.live]).length === total, {
        what: `subscriber ${i} to have every message`,
      });
      expect(seqsOf([...view.history, ...view.live]), `subscriber ${i}`).to.deep.equal(range(total));
    }
  });

  it('a reconnecting client catches up with afterSeq on the other node and misses nothing', async () => {
    const owner = await newUser(nodeA);
    const [member] = await friendsOf(nodeA, owner, 1);
    const group = await createGroup(nodeA.url, owner, [member!]);
    const sender = await pool.open(nodeA.url, owner);
    const first = await pool.open(nodeA.url, member!);
    const seen: PublicMessage[] = record(first, 'message:new');
    await subscribe(first, group.id);
    for (let n = 1; n <= 5; n += 1) expectOk(await send(sender, group.id, `before ${n}`));
    await waitFor(() => seen.length === 5, { what: 'the first five' });
    first.close();
    for (let n = 1; n <= 7; n += 1) expectOk(await send(sender, group.id, `while away ${n}`));
    const second = await pool.open(nodeB.url, member!);
    const live = record(second, 'message:new');
    const lastSeen = Math.max(...seen.map((m) => m.seq));
    const page = await subscribe(second, group.id, { afterSeq: lastSeen, limit: 3 });
    expect(page.messages.map((m) => m.seq)).to.deep.equal([6, 7, 8]);
    expect(page.hasMore).to.equal(true);
    expect(page.lastSeq).to.equal(12);
    const rest = await subscribe(second, group.id, { afterSeq: 8 });
    expect(rest.messages.map((m) => m.seq)).to.deep.equal([9, 10, 11, 12]);
    expect(rest.hasMore).to.equal(false);
    expectOk(await send(sender, group.id, 'after the catch-up'));
    // Node B may hear of a message sent while away only after the socket joined, and deliver it live too: a
    // client keeps each seq once (the contract's guarantee 4).
    await waitFor(() => live.some((m) => m.seq === 13), { what: 'the live message' });
    expect(seqsOf([...seen, ...page.messages, ...rest.messages, ...live])).to.deep.equal(range(13));
  });

  it('without afterSeq, subscribe returns the newest `limit` ascending, hasMore when older exist; limit is 1..200', async () => {
    const owner = await newUser(nodeA);
    const group = await createGroup(nodeA.url, owner, await friendsOf(nodeA, owner, 1));
    const socket = await pool.open(nodeB.url, owner);
    const empty = await subscribe(socket, group.id);
    expect(empty).to.deep.equal({ ok: true, messages: [], hasMore: false, lastSeq: 0, version: 0 });
    for (let n = 1; n <= 4; n += 1) expectOk(await send(socket, group.id, `m${n}`));
    const newest = await subscribe(socket, group.id, { limit: 3 });
    expect(newest.messages.map((m) => m.seq)).to.deep.equal([2, 3, 4]);
    expect(newest.hasMore).to.equal(true);
    const all = await subscribe(socket, group.id, { limit: 500 });
    expect(all.messages.map((m) => m.seq)).to.deep.equal([1, 2, 3, 4]);
    expect(all.hasMore).to.equal(false);
    // A number in a payload is a JSON number: not even a string of digits.
    for (const limit of [0, -1, 1.5, 'ten', '5']) {
      const ack = await socket.emitWithAck('conversation:subscribe', {
        conversationId: group.id,
        limit: limit as number,
      });
      expectAckError(ack, 'VALIDATION_FAILED', `limit ${String(limit)}`);
    }
  });

  it('carries a message near the body limit (4000 emoji, > 8000 bytes) from one node to the other', async () => {
    const owner = await newUser(nodeA);
    const [member] = await friendsOf(nodeA, owner, 1);
    const group = await createGroup(nodeA.url, owner, [member!]);
    const receiver = await pool.open(nodeB.url, member!);
    const received = record(receiver, 'message:new');
    await subscribe(receiver, group.id);
    const sender = await pool.open(nodeA.url, owner);
    const body = '😀'.repeat(3999) + '🎉';
    expect([...body]).to.have.length(4000);
    const ack = expectOk(await send(sender, group.id, body));
    expect(Buffer.byteLength(JSON.stringify(ack.message))).to.be.greaterThan(8000);
    await waitFor(() => received.length === 1, { what: 'the big message on the other node' });
    expect(received[0]).to.deep.equal(ack.message);
    const tooLong = await send(sender, group.id, body + '!');
    expectAckError(tooLong, 'VALIDATION_FAILED');
  });

  /**
   * A socket's subscribes and unsubscribes of one conversation take effect in the order it sent them, whatever each
   * waits for on the node (earlier subscribes, the socket's drain, the membership check): the last one decides
   * whether the socket gets the conversation's events (docs/messaging.md, "Reading").
   */
  describe('subscribe and unsubscribe of one socket, in the order sent', function () {
    const clients = useClientPool();
    let restoreChecks: (() => void) | undefined;
    afterEach(() => {
      restoreChecks?.();
      restoreChecks = undefined;
    });

    /**
     * Holds the node's first `count` membership checks of one user (every subscribe and unsubscribe makes one)
     * until the test releases them, in the order they were made; the later ones pass at once.
     */
    function holdChecks(node: RunningServer, userId: string, count: number): Array<() => void> {
      const { messages } = node.services;
      const check = messages.assertParticipant.bind(messages);
      const held: Array<() => void> = [];
      messages.assertParticipant = async (user, conversationId) => {
        if (user === userId && held.length < count) await new Promise<void>((release) => held.push(release));
        return check(user, conversationId);
      };
      restoreChecks = () => {
        messages.assertParticipant = check;
      };
      return held;
    }

    async function setUp(): Promise<{
      owner: TestUser;
      member: TestUser;
      id: string;
      ownerSocket: ClientSocket;
    }> {
      const owner = await newUser(nodeA);
      const [member] = await friendsOf(nodeA, owner, 1);
      const group = await createGroup(nodeA.url, owner, [member!]);
      const ownerSocket = await pool.open(nodeA.url, owner);
      await subscribe(ownerSocket, group.id);
      return { owner, member: member!, id: group.id, ownerSocket };
    }

    /** Sends one message from the owner and waits until the owner's own subscribed socket has it, then a bit more. */
    async function ownerSends(ownerSocket: ClientSocket, id: string, body: string): Promise<void> {
      const ownerSaw = record(ownerSocket, 'message:new');
      expectOk(await send(ownerSocket, id, body));
      await waitFor(() => ownerSaw.some((m) => m.body === body), { what: 'the owner to get its message' });
      // The member's socket, on the same node, would get its copy in the same turn; leave a margin anyway.
      await new Promise((resolve) => setTimeout(resolve, 300));
    }

    it('an unsubscribe emitted right after a subscribe wins: the socket gets no message:new afterwards', async () => {
      const { member, id, ownerSocket } = await setUp();
      const socket = await pool.open(nodeA.url, member);
      // A first event makes the node confirm the membership (as any earlier event of a real client would).
      expectOk(await socket.emitWithAck('conversation:unsubscribe', { conversationId: id }));
      const seen = record(socket, 'message:new');

      const [subscribed, unsubscribed] = await Promise.all([
        socket.emitWithAck('conversation:subscribe', { conversationId: id }),
        socket.emitWithAck('conversation:unsubscribe', { conversationId: id }),
      ]);
      // The subscribe overtaken by the unsubscribe is answered its page all the same.
      expectOk(subscribed);
      expectOk(unsubscribed);

      await ownerSends(ownerSocket, id, 'sent after the unsubscribe');
      expect(
        seen.map((m) => m.body),
        'message:new after an acked unsubscribe',
      ).to.deep.equal([]);
    });

    it('an unsubscribe emitted while that subscribe waits behind another one wins too', async () => {
      const { owner, member, id, ownerSocket } = await setUp();
      // A second conversation whose subscribe runs first, so the first one's waits in the socket's queue.
      const other = await createGroup(nodeA.url, owner, [member]);
      const socket = await pool.open(nodeA.url, member);
      expectOk(await socket.emitWithAck('conversation:unsubscribe', { conversationId: id }));
      const seen = record(socket, 'message:new');

      const acks = await Promise.all([
        socket.emitWithAck('conversation:subscribe', { conversationId: other.id }),
        socket.emitWithAck('conversation:subscribe', { conversationId: id }),
        socket.emitWithAck('conversation:unsubscribe', { conversationId: id }),
      ]);
      for (const ack of acks) expectOk(ack);

      await ownerSends(ownerSocket, id, 'sent after the unsubscribe');
      expect(seen.filter((m) => m.conversationId === id).map((m) => m.body)).to.deep.equal([]);
    });

    it('subscribe, unsubscribe, subscribe ends subscribed, even when the unsubscribe’s membership check is the slowest', async () => {
      const { member, id, ownerSocket } = await setUp();
      const socket = await pool.open(nodeA.url, member);
      const seen = record(socket, 'message:new');
      const held = holdChecks(nodeA, member.id, 2);

      const first = socket.emitWithAck('conversation:subscribe', { conversationId: id });
      await waitFor(() => held.length === 1, { what: 'the first subscribe’s membership check' });
      const unsubscribed = socket.emitWithAck('conversation:unsubscribe', { conversationId: id });
      await waitFor(() => held.length === 2, { what: 'the unsubscribe’s membership check' });
      const second = socket.emitWithAck('conversation:subscribe', { conversationId: id });
      // The subscribes are answered (the second once the first is) while the unsubscribe still waits.
      held[0]!();
      expectOk(await first);
      expectOk(await second);
      held[1]!();
      expectOk(await unsubscribed);

      await ownerSends(ownerSocket, id, 'sent after the second subscribe');
      expect(
        seen.map((m) => m.body),
        'the last word was a subscribe',
      ).to.deep.equal(['sent after the second subscribe']);
    });

    it('the SDK’s unsubscribe() while its subscribe is unanswered leaves the socket unsubscribed', async () => {
      const { alice, bob, conversationId } = await directPair(nodeA, clients);
      // A second conversation, whose subscribe is answered only once the first one's is (one at a time per socket).
      const other = await createGroup(nodeA.url, alice, [bob]);
      const client = clients.open(nodeA.url, { token: bob.token });
      await client.connect();
      const held = holdChecks(nodeA, bob.id, 1);

      const subscription = client.subscribe(conversationId, () => {});
      await waitFor(() => held.length === 1, { what: 'the subscribe on the node' });
      await subscription.unsubscribe();
      held[0]!();
      await client.subscribe(other.id, () => {}).whenReady();

      const bobsSockets = [...nodeA.services.io.of('/').sockets.values()].filter(
        (s) => s.data.userId === bob.id,
      );
      expect(bobsSockets).to.have.length(1);
      expect(isSubscribed(bobsSockets[0]!, other.id)).to.equal(true);
      expect(isSubscribed(bobsSockets[0]!, conversationId), 'subscribed after unsubscribe()').to.equal(false);
    });
  });
});
