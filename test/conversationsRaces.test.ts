import { expect } from 'chai';
import pg from 'pg';
import type { PublicConversation } from '../lib/protocol/index.js';
import type { ErrorResponse } from './helpers/errors.js';
import { request, type JsonResponse } from './helpers/http.js';
import { useNode } from './helpers/nodes.js';
import { statementsWaitingForALock, statementsWaitingForALockIn } from './helpers/postgres.js';
import { insertFriendship, insertUser, type TestUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

/**
 * Who may be put in a conversation is checked against friendships and blocks that another node may be changing at
 * that very moment (an unfriending, a block, an account deletion). Each case here holds such a change open in a
 * transaction of its own, as the changing node would, and checks that the conversation waits for it and then sees
 * it, rather than reading the friendship as it was.
 */
describe('conversations racing a change of friendship', function () {
  this.timeout(30_000);
  const node = useNode();
  const { server } = node;
  const knex = () => server.services.db.knex;

  async function friends(): Promise<{ me: TestUser; friend: TestUser }> {
    const me = await insertUser(knex(), server.services.config);
    const friend = await insertUser(knex(), server.services.config);
    await insertFriendship(knex(), me.id, friend.id);
    return { me, friend };
  }

  /**
   * Runs `work` (the node's request) while `change` is held open, uncommitted, in a transaction that took the locks
   * the node's own change takes; commits `change` once the request waits for it, and returns the request's answer.
   * A request that answers without waiting read the friendship as it was: the race is lost.
   */
  async function whileUncommitted<T>(
    change: (client: pg.Client) => Promise<void>,
    work: () => Promise<JsonResponse<T>>,
  ): Promise<{ answer: JsonResponse<T>; waited: boolean }> {
    const client = new pg.Client({ connectionString: node.databaseUrl });
    await client.connect();
    try {
      await client.query('BEGIN');
      await change(client);
      const answer = work();
      const database = new URL(node.databaseUrl).pathname.slice(1);
      const waiting = async () => (await statementsWaitingForALockIn(database)) > 0;
      const first = await Promise.race([
        answer.then(() => 'answered' as const),
        waitFor(waiting, { what: 'the request to wait for the change' }).then(() => 'waiting' as const),
      ]);
      await client.query('COMMIT');
      return { answer: await answer, waited: first === 'waiting' };
    } finally {
      await client.end();
    }
  }

  /** What an unfriending does: both users' rows locked (in id order), then the friendship deleted. */
  const unfriend = (a: string, b: string) => async (client: pg.Client) => {
    await client.query('SELECT id FROM users WHERE id = ANY($1::uuid[]) ORDER BY id FOR NO KEY UPDATE', [
      [a, b],
    ]);
    await client.query(
      'DELETE FROM friendships WHERE (user_low, user_high) = (LEAST($1::uuid, $2::uuid), GREATEST($1::uuid, $2::uuid))',
      [a, b],
    );
  };

  it('a group made with someone whose unfriending commits meanwhile is refused NOT_FRIENDS, and not created', async () => {
    const { me, friend } = await friends();
    const { answer, waited } = await whileUncommitted(unfriend(me.id, friend.id), () =>
      request<ErrorResponse>(server.url, 'POST', '/conversations', {
        token: me.token,
        body: { type: 'group', title: 'race', participantIds: [friend.id] },
      }),
    );
    expect(waited, 'the creation waited for the unfriending').to.equal(true);
    expect(answer.status).to.equal(403);
    expect(answer.body.error.code).to.equal('NOT_FRIENDS');
    const groups = await knex()('conversations')
      .where({ created_by: me.id, type: 'group' })
      .count<{ n: string }[]>({ n: '*' });
    expect(Number(groups[0]!.n)).to.equal(0);
  });

  it('a member added while an account deletion is uncommitted waits for it, and is refused', async () => {
    const { me, friend } = await friends();
    const group = await request<{ conversation: PublicConversation }>(server.url, 'POST', '/conversations', {
      token: me.token,
      body: { type: 'group', title: 'before', participantIds: [] },
    });
    expect(group.status).to.equal(201);
    // The deletion's transaction: the user's row locked for update, its friendships gone.
    const deletion = async (client: pg.Client) => {
      await client.query('SELECT id FROM users WHERE id = $1 FOR UPDATE', [friend.id]);
      await client.query('DELETE FROM friendships WHERE user_low = $1 OR user_high = $1', [friend.id]);
      await client.query(
        'UPDATE users SET deleted_at = now(), username = NULL, password_hash = NULL WHERE id = $1',
        [friend.id],
      );
    };
    const { answer, waited } = await whileUncommitted(deletion, () =>
      request<ErrorResponse>(
        server.url,
        'POST',
        `/conversations/${group.body.conversation.id}/participants`,
        {
          token: me.token,
          body: { userId: friend.id },
        },
      ),
    );
    expect(waited, 'the add waited for the deletion').to.equal(true);
    expect(answer.status).to.equal(403);
    expect(answer.body.error.code).to.equal('NOT_FRIENDS');
    const member = await knex()('conversation_participants').where({
      conversation_id: group.body.conversation.id,
      user_id: friend.id,
    });
    expect(member).to.have.length(0);
  });

  it('a direct conversation made while a block is uncommitted waits for it, and is refused BLOCKED', async () => {
    const { me, friend } = await friends();
    const block = async (client: pg.Client) => {
      await unfriend(me.id, friend.id)(client);
      await client.query('INSERT INTO blocks (blocker_id, blocked_id) VALUES ($1, $2)', [friend.id, me.id]);
    };
    const { answer, waited } = await whileUncommitted(block, () =>
      request<ErrorResponse>(server.url, 'POST', '/conversations', {
        token: me.token,
        body: { type: 'direct', userId: friend.id },
      }),
    );
    expect(waited, 'the creation waited for the block').to.equal(true);
    expect(answer.status).to.equal(403);
    expect(answer.body.error.code).to.equal('BLOCKED');
  });
});

describe('an addition answered after a removal of the same user', function () {
  this.timeout(30_000);
  // A small pool on the adding node, so that its connections can be kept busy for a moment.
  const { server, second } = useNode({ second: {}, env: { DB_POOL_SIZE: '4' } });

  it('is answered 201 with the participant it wrote, even when the removal commits right after it', async () => {
    const { knex } = server.services.db;
    const owner = await insertUser(knex, server.services.config);
    const member = await insertUser(knex, server.services.config);
    await insertFriendship(knex, owner.id, member.id);
    const created = await request<{ conversation: PublicConversation }>(
      server.url,
      'POST',
      '/conversations',
      {
        token: owner.token,
        body: { type: 'group', title: 'Plans', participantIds: [] },
      },
    );
    const groupId = created.body.conversation.id;
    const admin = second.services.db.knex;
    const lockWaiters = () => statementsWaitingForALock(admin);
    // The group's row held, so that the addition (this node) and then the removal (the second) queue behind it.
    const holder = await admin.transaction();
    let busy: Promise<unknown> | undefined;
    let add: Promise<JsonResponse<{ participant: { userId: string } }>> | undefined;
    let remove: Promise<JsonResponse<unknown>> | undefined;
    try {
      await holder.raw('SELECT id FROM conversations WHERE id = ? FOR NO KEY UPDATE', [groupId]);
      add = request(server.url, 'POST', `/conversations/${groupId}/participants`, {
        token: owner.token,
        body: { userId: member.id },
      });
      await waitFor(async () => (await lockWaiters()) === 1, { what: 'the addition waiting' });
      remove = request(second.url, 'DELETE', `/conversations/${groupId}/participants/${member.id}`, {
        token: owner.token,
      });
      await waitFor(async () => (await lockWaiters()) === 2, { what: 'the removal waiting' });
      // The adding node's other connections busy: a read it made after its commit would come after the removal.
      busy = Promise.all(Array.from({ length: 3 }, () => knex.raw('SELECT pg_sleep(0.5)')));
      await waitFor(
        async () =>
          (
            await admin.raw<{ rows: Array<{ n: number }> }>(
              `SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' AND state = 'active'`,
            )
          ).rows[0]!.n === 3,
        { what: 'the pool busy' },
      );
    } finally {
      await holder.commit();
    }
    const [added, removed] = await Promise.all([add, remove]);
    await busy;
    expect(removed.status, removed.text).to.equal(204);
    expect(added.status, added.text).to.equal(201);
    expect(added.body.participant.userId).to.equal(member.id);
  });
});
