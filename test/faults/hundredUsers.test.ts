import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { PublicMessage } from '../../lib/protocol/index.js';
import { expectOk, record, subscribe } from '../helpers/chat.js';
import { directConversation, expectStoredExactlyAsAcked } from '../helpers/faults.js';
import { useTwoNodes } from '../helpers/nodes.js';
import { insertFriendship, insertUser, type TestUser } from '../helpers/users.js';
import { waitFor } from '../helpers/waitFor.js';

const USERS = 100;
const MESSAGES_EACH = 5;

describe('100 concurrent users on two nodes', function () {
  this.timeout(60_000);
  const { a, b, pool } = useTwoNodes();

  it('all sends are acked, stored once and gap-free, and reach both partners across nodes', async () => {
    const { knex } = a.services.db;
    const users: TestUser[] = await Promise.all(
      Array.from({ length: USERS }, () => insertUser(knex, a.services.config)),
    );
    const pairs = Array.from({ length: USERS / 2 }, (_, i) => [users[2 * i]!, users[2 * i + 1]!] as const);
    await Promise.all(pairs.map(([x, y]) => insertFriendship(knex, x.id, y.id)));
    const conversations = await Promise.all(pairs.map(([x, y]) => directConversation(a.url, x, y)));

    // Partners sit on different nodes: every conversation crosses the postgres adapter.
    const clients = await Promise.all(
      users.map(async (user, i) => {
        const socket = await pool.open((i % 2 === 0 ? a : b).url, user);
        const conversationId = conversations[Math.floor(i / 2)]!;
        await subscribe(socket, conversationId);
        return { user, socket, conversationId, received: record(socket, 'message:new') };
      }),
    );

    const acked = new Map<string, Map<string, PublicMessage>>();
    await Promise.all(
      clients.map(async ({ socket, conversationId }) => {
        const sends = Array.from({ length: MESSAGES_EACH }, async (_, m) => {
          const clientMsgId = randomUUID();
          const ack = expectOk(
            await socket.emitWithAck('message:send', { conversationId, clientMsgId, body: `m${m}` }),
          );
          const forConversation = acked.get(conversationId) ?? new Map<string, PublicMessage>();
          acked.set(conversationId, forConversation.set(clientMsgId, ack.message));
        });
        await Promise.all(sends);
      }),
    );

    for (const conversationId of conversations) {
      expect(acked.get(conversationId)?.size).to.equal(2 * MESSAGES_EACH);
      await expectStoredExactlyAsAcked(knex, conversationId, acked.get(conversationId)!);
    }
    // Each user sees all 10 messages of their conversation: their own and their partner's from the other node.
    await waitFor(
      () => clients.every(({ received }) => new Set(received.map((m) => m.id)).size === 2 * MESSAGES_EACH),
      { timeoutMs: 20_000, what: 'every message:new to arrive' },
    );
  });
});
