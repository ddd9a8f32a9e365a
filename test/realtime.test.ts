import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import type { PublicMessage } from '../lib/realtime/protocol.js';
import type { RunningServer } from '../lib/server.js';
import {
  seqState,
  createGroup,
  errorCodeOf,
  expectOk,
  friendsOf,
  newUser,
  range,
  record,
  send,
  seqsOf,
  SocketPool,
  subscribe,
} from './helpers/chat.js';
import { request } from './helpers/http.js';
import { createTestDatabase } from './helpers/postgres.js';
import { startTestServer } from './helpers/server.js';
import type { ClientSocket } from './helpers/sockets.js';
import { waitFor } from './helpers/waitFor.js';

describe('realtime messaging over two nodes', function () {
  let nodeA: RunningServer;
  let nodeB: RunningServer;
  const pool = new SocketPool();

  before(async () => {
    const databaseUrl = await createTestDatabase();
    nodeA = await startTestServer(databaseUrl);
    nodeB = await startTestServer(databaseUrl);
  });

  afterEach(() => pool.closeAll());

  after(async () => {
    await Promise.all([nodeA?.close(), nodeB?.close()]);
  });

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
    expect(errorCodeOf(conflict)).to.equal('IDEMPOTENCY_CONFLICT');
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
    await waitFor(() => live.length === 1, { what: 'the live message' });
    expect(seqsOf([...seen, ...page.messages, ...rest.messages, ...live])).to.deep.equal(range(13));
  });

  it('without afterSeq, subscribe returns the newest `limit` ascending, hasMore when older exist; limit is 1..200', async () => {
    const owner = await newUser(nodeA);
    const group = await createGroup(nodeA.url, owner, await friendsOf(nodeA, owner, 1));
    const socket = await pool.open(nodeB.url, owner);
    const empty = await subscribe(socket, group.id);
    expect(empty).to.deep.equal({ ok: true, messages: [], hasMore: false, lastSeq: 0 });
    for (let n = 1; n <= 4; n += 1) expectOk(await send(socket, group.id, `m${n}`));
    const newest = await subscribe(socket, group.id, { limit: 3 });
    expect(newest.messages.map((m) => m.seq)).to.deep.equal([2, 3, 4]);
    expect(newest.hasMore).to.equal(true);
    const all = await subscribe(socket, group.id, { limit: 500 });
    expect(all.messages.map((m) => m.seq)).to.deep.equal([1, 2, 3, 4]);
    expect(all.hasMore).to.equal(false);
    for (const limit of [0, -1, 1.5, 'ten']) {
      const ack = await socket.emitWithAck('conversation:subscribe', {
        conversationId: group.id,
        limit,
      } as never);
      expect(errorCodeOf(ack), `limit ${String(limit)}`).to.equal('VALIDATION_FAILED');
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
    expect(errorCodeOf(tooLong)).to.equal('VALIDATION_FAILED');
  });

  it('hides a conversation from a non-participant on every socket path, and sends it none of its events', async () => {
    const owner = await newUser(nodeA);
    const [member] = await friendsOf(nodeA, owner, 1);
    const group = await createGroup(nodeA.url, owner, [member!]);
    const outsider = await newUser(nodeA);
    const outsiderSockets = [await pool.open(nodeA.url, outsider), await pool.open(nodeB.url, outsider)];
    const outsiderEvents = outsiderSockets.flatMap((s) => [
      record(s, 'message:new'),
      record(s, 'typing'),
      record(s, 'conversation:read'),
    ]);
    for (const socket of outsiderSockets) {
      const conversationId = group.id;
      expect(errorCodeOf(await socket.emitWithAck('conversation:subscribe', { conversationId }))).to.equal(
        'NOT_FOUND',
      );
      expect(errorCodeOf(await socket.emitWithAck('conversation:unsubscribe', { conversationId }))).to.equal(
        'NOT_FOUND',
      );
      expect(errorCodeOf(await send(socket, conversationId, 'let me in'))).to.equal('NOT_FOUND');
      expect(errorCodeOf(await socket.emitWithAck('conversation:read', { conversationId, seq: 1 }))).to.equal(
        'NOT_FOUND',
      );
      expect(errorCodeOf(await socket.emitWithAck('typing', { conversationId }))).to.equal('NOT_FOUND');
      // An id that names nothing looks the same.
      expect(
        errorCodeOf(await socket.emitWithAck('conversation:subscribe', { conversationId: randomUUID() })),
      ).to.equal('NOT_FOUND');
    }
    const memberSocket = await pool.open(nodeB.url, member!);
    const memberSaw = record(memberSocket, 'message:new');
    const memberTyping = record(memberSocket, 'typing');
    const memberReads = record(memberSocket, 'conversation:read');
    await subscribe(memberSocket, group.id);
    const ownerSocket = await pool.open(nodeA.url, owner);
    const sent = expectOk(await send(ownerSocket, group.id, 'members only'));
    expectOk(await ownerSocket.emitWithAck('typing', { conversationId: group.id }));
    expectOk(
      await memberSocket.emitWithAck('conversation:read', {
        conversationId: group.id,
        seq: sent.message.seq,
      }),
    );
    await waitFor(() => memberSaw.length === 1 && memberTyping.length === 1 && memberReads.length === 1, {
      what: 'the member to get the message, typing and read events',
    });
    expect(outsiderEvents.every((events) => events.length === 0)).to.equal(true);
    expect(await storedSeqs(group.id)).to.deep.equal([1]);
  });

  it('a removed participant stops receiving message:new on every node', async () => {
    const owner = await newUser(nodeA);
    const [stays, leaves] = await friendsOf(nodeA, owner, 2);
    const group = await createGroup(nodeA.url, owner, [stays!, leaves!]);
    const watchers = [await pool.open(nodeA.url, stays!), await pool.open(nodeB.url, stays!)];
    const leaving = [await pool.open(nodeA.url, leaves!), await pool.open(nodeB.url, leaves!)];
    const watcherSaw = watchers.map((s) => record(s, 'message:new'));
    const leavingSaw = leaving.map((s) => record(s, 'message:new'));
    const removedEvents = leaving.map((s) => record(s, 'conversation:removed'));
    await Promise.all([...watchers, ...leaving].map((s) => subscribe(s, group.id)));
    const ownerSocket = await pool.open(nodeA.url, owner);
    expectOk(await send(ownerSocket, group.id, 'before'));
    await waitFor(() => [...watcherSaw, ...leavingSaw].every((r) => r.length === 1), {
      what: 'everyone to get 1',
    });

    const res = await request(nodeB.url, 'DELETE', `/conversations/${group.id}/participants/${leaves!.id}`, {
      token: owner.token,
    });
    expect(res.status).to.equal(204);
    await waitFor(() => removedEvents.every((r) => r.length === 1), {
      what: 'conversation:removed on both nodes',
    });
    expect(removedEvents.map((r) => r[0])).to.deep.equal([
      { conversationId: group.id },
      { conversationId: group.id },
    ]);

    for (let n = 1; n <= 3; n += 1) expectOk(await send(ownerSocket, group.id, `after ${n}`));
    await waitFor(() => watcherSaw.every((r) => r.length === 4), {
      what: 'the remaining member on both nodes',
    });
    expect(leavingSaw.map((r) => r.length)).to.deep.equal([1, 1]);
    for (const socket of leaving) {
      expect(
        errorCodeOf(await socket.emitWithAck('conversation:subscribe', { conversationId: group.id })),
      ).to.equal('NOT_FOUND');
      expect(errorCodeOf(await send(socket, group.id, 'still here?'))).to.equal('NOT_FOUND');
    }
  });

  it('typing reaches the other subscribers but none of the typist sockets, at most once per interval', async () => {
    const owner = await newUser(nodeA);
    const [member] = await friendsOf(nodeA, owner, 1);
    const group = await createGroup(nodeA.url, owner, [member!]);
    const typist = await pool.open(nodeA.url, owner);
    const typistOther = await pool.open(nodeB.url, owner);
    const observer = await pool.open(nodeA.url, member!);
    const typistSaw = [record(typist, 'typing'), record(typistOther, 'typing')];
    const observerSaw = record(observer, 'typing');
    await Promise.all([typist, typistOther, observer].map((s) => subscribe(s, group.id)));
    expectOk(await typist.emitWithAck('typing', { conversationId: group.id }));
    // Throttled: still ok, but not broadcast again.
    expectOk(await typist.emitWithAck('typing', { conversationId: group.id }));
    expectOk(await observer.emitWithAck('typing', { conversationId: group.id }));
    await waitFor(() => typistSaw.every((r) => r.length === 1), {
      what: 'the typist sockets to see the member typing',
    });
    await waitFor(() => observerSaw.length >= 1, { what: 'the observer to see the typist' });
    expect(observerSaw).to.deep.equal([{ conversationId: group.id, userId: owner.id }]);
    expect(typistSaw.map((r) => r[0])).to.deep.equal([
      { conversationId: group.id, userId: member!.id },
      { conversationId: group.id, userId: member!.id },
    ]);
  });

  it('read markers only move forward, never past lastSeq, and are broadcast to subscribers', async () => {
    const owner = await newUser(nodeA);
    const [member] = await friendsOf(nodeA, owner, 1);
    const group = await createGroup(nodeA.url, owner, [member!]);
    const ownerSocket = await pool.open(nodeA.url, owner);
    const reads = record(ownerSocket, 'conversation:read');
    await subscribe(ownerSocket, group.id);
    for (let n = 1; n <= 5; n += 1) expectOk(await send(ownerSocket, group.id, `m${n}`));
    const memberSocket = await pool.open(nodeB.url, member!);
    expectOk(await memberSocket.emitWithAck('conversation:read', { conversationId: group.id, seq: 3 }));
    expectOk(await memberSocket.emitWithAck('conversation:read', { conversationId: group.id, seq: 2 }));
    expectOk(await memberSocket.emitWithAck('conversation:read', { conversationId: group.id, seq: 99 }));
    await waitFor(() => reads.length === 2, { what: 'two read events' });
    expect(reads).to.deep.equal([
      { conversationId: group.id, userId: member!.id, seq: 3 },
      { conversationId: group.id, userId: member!.id, seq: 5 },
    ]);
    const res = await request<{
      conversation: { participants: Array<{ userId: string; lastReadSeq: number }> };
    }>(nodeA.url, 'GET', `/conversations/${group.id}`, { token: member!.token });
    const marker = res.body.conversation.participants.find((p) => p.userId === member!.id);
    expect(marker?.lastReadSeq).to.equal(5);
  });

  it('answers any malformed payload with an error ack and keeps the socket working', async () => {
    const owner = await newUser(nodeA);
    const group = await createGroup(nodeA.url, owner, await friendsOf(nodeA, owner, 1));
    const socket: ClientSocket = await pool.open(nodeA.url, owner);
    const raw = socket as unknown as { emitWithAck(event: string, ...args: unknown[]): Promise<unknown> };
    const events = [
      'conversation:subscribe',
      'conversation:unsubscribe',
      'message:send',
      'conversation:read',
      'typing',
    ];
    for (const event of events) {
      for (const payload of [
        null,
        'text',
        42,
        [],
        {},
        { conversationId: 'not-a-uuid' },
        { conversationId: 7 },
      ]) {
        const ack = (await raw.emitWithAck(event, payload)) as { ok: boolean; error?: { code: string } };
        expect(ack.ok, `${event} ${JSON.stringify(payload)}`).to.equal(false);
        expect(ack.error?.code, `${event} ${JSON.stringify(payload)}`).to.equal('VALIDATION_FAILED');
      }
      // Only a callback, no payload at all.
      const bare = (await raw.emitWithAck(event)) as { ok: boolean; error?: { code: string } };
      expect(bare.error?.code).to.equal('VALIDATION_FAILED');
      // No callback: nothing to answer, and nothing breaks.
      (socket as unknown as { emit(event: string, payload: unknown): void }).emit(event, {
        conversationId: group.id,
      });
    }
    const badSends = [
      { conversationId: group.id, clientMsgId: 'has space', body: 'x' },
      { conversationId: group.id, clientMsgId: 'x'.repeat(65), body: 'x' },
      { conversationId: group.id, clientMsgId: 'ok', body: '   \n\t ' },
      { conversationId: group.id, clientMsgId: 'ok', body: '' },
      { conversationId: group.id, clientMsgId: 'ok', body: 'nul \u0000 inside' },
      { conversationId: group.id, clientMsgId: 'ok', body: 42 },
    ];
    for (const payload of badSends) {
      const ack = await socket.emitWithAck('message:send', payload as never);
      expect(errorCodeOf(ack), JSON.stringify(payload)).to.equal('VALIDATION_FAILED');
    }
    expect(socket.connected).to.equal(true);
    expectOk(await send(socket, group.id, 'still fine'));
    expect(await storedSeqs(group.id)).to.deep.equal([1]);
  });
});
