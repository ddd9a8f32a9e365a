import { expect } from 'chai';
import knexFactory, { type Knex } from 'knex';
import { randomUUID } from 'node:crypto';
import { createGroup, friendsOf, newUser, putMessage } from './helpers/chat.js';
import { directConversation } from './helpers/faults.js';
import { request } from './helpers/http.js';
import { useNode } from './helpers/nodes.js';
import { insertFriendship, type TestUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

/**
 * Every transaction takes users' rows before conversations. A block takes both users' rows, then the pair's direct
 * conversation; a message transaction that waits for its locks holds several conversations, in id order. An
 * addition to a group that took the group first and the new member's row then closed a cycle: the write held the
 * direct conversation and waited for the group, the addition held the group and waited for the user, the block held
 * the user and waited for the direct conversation. PostgreSQL broke the deadlock by failing one of them, and a block
 * or an addition answered 500.
 */
describe('lock order: a block, a group addition and a message write at once', function () {
  this.timeout(60_000);
  const node = useNode();
  const { server } = node;
  let side: Knex;

  before(() => {
    side = knexFactory({ client: 'pg', connection: node.databaseUrl, pool: { min: 0, max: 5 } });
  });
  after(() => side.destroy());

  const waiters = async (): Promise<string[]> =>
    (
      await side.raw<{ rows: Array<{ query: string }> }>(
        `SELECT query FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event <> 'object'`,
      )
    ).rows.map((r) => r.query);

  async function hold(conversationId: string): Promise<Knex.Transaction> {
    const trx = await side.transaction();
    await trx.raw('SELECT 1 FROM conversations WHERE id = ? FOR NO KEY UPDATE', [conversationId]);
    return trx;
  }

  it('wait for each other, and all go through: no deadlock, no 500', async () => {
    const owner = await newUser(server);
    const [member] = (await friendsOf(server, owner, 1)) as [TestUser];
    const group = await createGroup(server.url, owner, [member]);
    const other = await createGroup(server.url, owner, [member], 'elsewhere');
    // Alice and Bob's direct conversation, with an id below the group's (the writer locks in id order).
    let alice!: TestUser;
    let bob!: TestUser;
    let direct: string;
    for (;;) {
      alice = await newUser(server);
      [bob] = (await friendsOf(server, alice, 1)) as [TestUser];
      direct = await directConversation(server.url, alice, bob);
      if (direct < group.id) break;
    }
    await insertFriendship(side, owner.id, alice.id);

    const z = await hold(other.id);
    const x = await hold(direct);
    const y = await hold(group.id);
    const pending: Array<Promise<unknown>> = [];
    try {
      // Three sends: the first waits for `other`; the two others, skipped, then wait together in id order.
      pending.push(putMessage(server.url, owner, other.id, randomUUID(), { body: 'e' }));
      await waitFor(async () => (await waiters()).length === 1, { what: 'the first transaction to wait' });
      pending.push(putMessage(server.url, bob, direct, randomUUID(), { body: 'd' }));
      pending.push(putMessage(server.url, owner, group.id, randomUUID(), { body: 'g' }));
      await new Promise((r) => setTimeout(r, 300));
      await z.commit();
      await waitFor(async () => (await waiters()).some((q) => q.includes('xfchat_write')), {
        what: 'the direct conversation and the group to be waited for together',
      });
      const blocking = request(server.url, 'POST', '/blocks', {
        token: alice.token,
        body: { userId: bob.id },
      });
      await waitFor(async () => (await waiters()).length === 2, { what: 'the block to wait' });
      const adding = request(server.url, 'POST', `/conversations/${group.id}/participants`, {
        token: owner.token,
        body: { userId: alice.id },
      });
      await waitFor(async () => (await waiters()).length === 3, { what: 'the addition to wait' });
      await y.commit();
      await new Promise((r) => setTimeout(r, 100));
      await x.commit();
      const [blocked, added] = await Promise.all([blocking, adding]);
      await Promise.all(pending);
      expect([blocked.status, blocked.text], 'the block').to.deep.equal([204, '']);
      expect(added.status, `the addition: ${added.text}`).to.equal(201);
    } finally {
      for (const t of [x, y, z]) if (!t.isCompleted()) await t.rollback();
    }
  });
});
