import { expect } from 'chai';
import type { Ack } from '../lib/protocol/index.js';
import { randomUUID } from 'node:crypto';
import {
  seqState,
  createGroup,
  expectOk,
  friendsOf,
  newUser,
  record,
  send,
  subscribe,
} from './helpers/chat.js';
import { expectAckError } from './helpers/errors.js';
import { useTwoNodes } from './helpers/nodes.js';
import { request } from './helpers/http.js';
import type { ClientSocket } from './helpers/sockets.js';
import { waitFor } from './helpers/waitFor.js';

describe('realtime access control, typing and read markers over two nodes', function () {
  const { a: nodeA, b: nodeB, pool } = useTwoNodes();

  async function storedSeqs(conversationId: string): Promise<number[]> {
    return (await seqState(nodeA.services.db.knex, conversationId)).seqs;
  }

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
      expectAckError(await socket.emitWithAck('conversation:subscribe', { conversationId }), 'NOT_FOUND');
      expectAckError(await socket.emitWithAck('conversation:unsubscribe', { conversationId }), 'NOT_FOUND');
      expectAckError(await send(socket, conversationId, 'let me in'), 'NOT_FOUND');
      expectAckError(await socket.emitWithAck('conversation:read', { conversationId, seq: 1 }), 'NOT_FOUND');
      expectAckError(await socket.emitWithAck('typing', { conversationId }), 'NOT_FOUND');
      // An id that names nothing looks the same.
      expectAckError(
        await socket.emitWithAck('conversation:subscribe', { conversationId: randomUUID() }),
        'NOT_FOUND',
      );
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
      expectAckError(
        await socket.emitWithAck('conversation:subscribe', { conversationId: group.id }),
        'NOT_FOUND',
      );
      expectAckError(await send(socket, group.id, 'still here?'), 'NOT_FOUND');
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

  it('typing of one user goes out at most 5 at once over all conversations (2 a second after), the rest acked and dropped', async () => {
    const owner = await newUser(nodeA);
    const [member] = await friendsOf(nodeA, owner, 1);
    const groups = await Promise.all(
      Array.from({ length: 8 }, (_, i) => createGroup(nodeA.url, owner, [member!], `typing ${i}`)),
    );
    const typist = await pool.open(nodeA.url, owner);
    const observer = await pool.open(nodeA.url, member!);
    const observerSaw = record(observer, 'typing');
    const observerMessages = record(observer, 'message:new');
    await Promise.all(groups.map((g) => subscribe(observer, g.id)));
    // Eight conversations at once, each the first typing of its interval: the burst of five goes out.
    const started = performance.now();
    const acks = await Promise.all(groups.map((g) => typist.emitWithAck('typing', { conversationId: g.id })));
    const seconds = (performance.now() - started) / 1000;
    for (const ack of acks) expectOk(ack);
    // A message sent after them reaches the observer's socket after every typing written to it before.
    expectOk(await send(typist, groups[0]!.id, 'marker'));
    await waitFor(() => observerMessages.length === 1, { what: 'the marker message' });
    // The budget refills two a second: one more may have come back between the first and the last (more, if the
    // eight took longer than half a second to be answered: a stalled machine).
    expect(observerSaw.length)
      .to.be.at.least(5)
      .and.at.most(5 + Math.max(1, Math.ceil(2 * seconds)));
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
        const ack = (await raw.emitWithAck(event, payload)) as Ack;
        expectAckError(ack, 'VALIDATION_FAILED', `${event} ${JSON.stringify(payload)}`);
      }
      // Only a callback, no payload at all.
      expectAckError((await raw.emitWithAck(event)) as Ack, 'VALIDATION_FAILED');
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
      expectAckError(ack, 'VALIDATION_FAILED', JSON.stringify(payload));
    }
    expect(socket.connected).to.equal(true);
    expectOk(await send(socket, group.id, 'still fine'));
    expect(await storedSeqs(group.id)).to.deep.equal([1]);
  });
});
