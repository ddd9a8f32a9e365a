import { expect } from 'chai';
import type { Ack } from '../lib/protocol/index.js';
import { createGroup, expectOk, friendsOf, newUser, record, send, subscribe } from './helpers/chat.js';
import { request } from './helpers/http.js';
import { useTwoNodes } from './helpers/nodes.js';
import type { TestUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

/**
 * Contract guarantee 7: only participants read a conversation. A `conversation:subscribe` checks membership, then
 * (after a round trip: the session check) joins the conversation's room, then reads its page, whose own check
 * refuses a removed user. A removal this node tells between the membership check and the join has taken the
 * user's sockets out of the room already; the join must not put the socket back in, where it would hear the
 * group's messages and read markers until the page's check refused it. Two gates widen the two round trips.
 */
describe('a subscribe racing the subscriber’s removal (two nodes)', function () {
  this.timeout(60_000);
  const { a, b, pool } = useTwoNodes();

  it('does not join the room after the node told the removal: nothing written after it reaches the removed user', async () => {
    const owner = await newUser(a);
    const [x, y] = (await friendsOf(a, owner, 2)) as [TestUser, TestUser];
    const group = await createGroup(a.url, owner, [x, y]);
    const ownerSocket = await pool.open(a.url, owner);
    await subscribe(ownerSocket, group.id);
    const xSocket = await pool.open(b.url, x);
    const xMessages = record(xSocket, 'message:new');
    const xReads = record(xSocket, 'conversation:read');
    const xRemoved = record(xSocket, 'conversation:removed');
    // A participant's socket on node b: whatever would reach x's socket there, had it joined, reaches this one in
    // the same emit (the message by the announcements' channel, the read marker through the adapter).
    const witness = await pool.open(b.url, owner);
    await subscribe(witness, group.id);
    const witnessMessages = record(witness, 'message:new');
    const witnessReads = record(witness, 'conversation:read');

    const service = b.services.messages;
    const realAssert = service.assertParticipant.bind(service);
    const realHistory = service.history.bind(service);
    let checked!: () => void;
    const membershipChecked = new Promise<void>((resolve) => (checked = resolve));
    let releaseCheck!: () => void;
    const afterCheck = new Promise<void>((resolve) => (releaseCheck = resolve));
    let pageStarted!: () => void;
    const pageReading = new Promise<void>((resolve) => (pageStarted = resolve));
    let releasePage!: () => void;
    const afterPage = new Promise<void>((resolve) => (releasePage = resolve));
    const isX = (userId: string, conversationId: string) => userId === x.id && conversationId === group.id;
    // The membership check answers, then a slow round trip (the session check) follows it...
    service.assertParticipant = async (userId, conversationId) => {
      await realAssert(userId, conversationId);
      if (!isX(userId, conversationId)) return;
      checked();
      await afterCheck;
    };
    // ... and, had the socket joined, a slow page read.
    service.history = async (userId, conversationId, window, reader) => {
      if (isX(userId, conversationId)) {
        pageStarted();
        await afterPage;
      }
      return await realHistory(userId, conversationId, window, reader);
    };
    try {
      const answer = xSocket.emitWithAck('conversation:subscribe', {
        conversationId: group.id,
      }) as Promise<Ack>;
      await membershipChecked;
      // The owner removes x on node a; node b tells x's socket.
      const removed = await request(a.url, 'DELETE', `/conversations/${group.id}/participants/${x.id}`, {
        token: owner.token,
      });
      expect(removed.status).to.equal(204);
      await waitFor(() => xRemoved.length > 0, { what: 'conversation:removed on x' });
      releaseCheck();
      // The subscribe is answered, or it joined and reads its page.
      await Promise.race([answer, pageReading]);
      // After the removal: the owner writes, and y reads it.
      expectOk(await send(ownerSocket, group.id, 'after x was removed'));
      const ySocket = await pool.open(a.url, y);
      expectOk(await ySocket.emitWithAck('conversation:read', { conversationId: group.id, seq: 1 }));
      await waitFor(() => witnessMessages.length === 1 && witnessReads.length === 1, {
        what: 'the message and the read marker on node b',
      });
      releasePage();
      const ack = await answer;
      expect(ack.ok ? 'ok' : ack.error.code).to.equal('NOT_FOUND');
      expect({ messages: xMessages, reads: xReads }).to.deep.equal({ messages: [], reads: [] });
    } finally {
      releaseCheck();
      releasePage();
      service.assertParticipant = realAssert;
      service.history = realHistory;
    }
  });
});
