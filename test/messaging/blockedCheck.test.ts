import { expect } from 'chai';
import type { Knex } from 'knex';
import { openMigrated, type Opened } from '../helpers/migrations.js';
import { createTestDatabase } from '../helpers/postgres.js';

const MEMBERS = 1000;
const BLOCKS = 5000;
/** Other accounts, each of whom blocked one account: a blocks table of a service in use. */
const BYSTANDERS = 50_000;
const OTHER_CONVERSATIONS = 20_000;

/**
 * The block check of a typing event, and of an edit or a reaction in `xfchat_write()` (`xfchat_blocked()`). It
 * joined the conversation's other participants with the blocks of either side before it read the conversation's type:
 * once PL/pgSQL took its generic plan, a member of a group of 1000 who had blocked 5000 accounts paid 5 million rows of
 * join filter (0.4-1.5 s) at each typing event, edit or reaction, the conversation's lock held meanwhile
 * (migration 20261206400000_blocked_check_direct_first). What it reads is counted in buffers, not timed.
 */
describe('messaging: the block check reads a group’s type first', function () {
  this.timeout(120_000);
  let db: Opened;
  let knex: Knex;
  const id = async (username: string): Promise<string> =>
    (await knex<{ id: string; username: string }>('users').where({ username }).first('id'))!.id;

  before(async () => {
    db = openMigrated(await createTestDatabase());
    knex = db.knex;
    await knex.raw(
      `INSERT INTO users (username, display_name, password_hash)
       SELECT 'bc_' || g, 'bc ' || g, 'x' FROM generate_series(1, ?::int) g`,
      [MEMBERS + BLOCKS + BYSTANDERS + 2],
    );
  });
  after(async () => {
    await db?.close();
  });

  /** What a call reads, in buffers, under a generic plan (as PL/pgSQL plans a statement from its sixth call on). */
  async function buffersOf(
    conversationId: string,
    userId: string,
  ): Promise<{ blocked: boolean; buffers: number }> {
    return knex.transaction(async (trx) => {
      await trx.raw('SET LOCAL plan_cache_mode = force_generic_plan');
      let last = { blocked: false, buffers: 0 };
      for (let call = 0; call < 3; call++) {
        const { rows } = await trx.raw<{ rows: Array<{ 'QUERY PLAN': unknown }> }>(
          'EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT xfchat_blocked(?, ?)',
          [conversationId, userId],
        );
        const [explained] = rows[0]!['QUERY PLAN'] as Array<{ Plan: Record<string, number> }>;
        const { rows: answer } = await trx.raw<{ rows: Array<{ blocked: boolean }> }>(
          'SELECT xfchat_blocked(?, ?) AS blocked',
          [conversationId, userId],
        );
        last = {
          blocked: answer[0]!.blocked,
          buffers: explained!.Plan['Shared Hit Blocks']! + explained!.Plan['Shared Read Blocks']!,
        };
      }
      return last;
    });
  }

  it('answers false in a group of 1000 for a member who blocked 5000 accounts, reading a few buffers', async () => {
    const blocker = await id(`bc_${MEMBERS + BLOCKS + BYSTANDERS + 1}`);
    const [group] = await knex('conversations')
      .insert({ type: 'group', title: 'big' })
      .returning<Array<{ id: string }>>('id');
    const groupId = group!.id;
    await knex.raw(
      `INSERT INTO conversation_participants (conversation_id, user_id, role)
       SELECT ?::uuid, id, 'member' FROM users WHERE substr(username, 4)::int <= ?::int
       UNION ALL SELECT ?::uuid, ?::uuid, 'owner'`,
      [groupId, MEMBERS, groupId, blocker],
    );
    await knex.raw(
      `INSERT INTO blocks (blocker_id, blocked_id)
       SELECT ?::uuid, id FROM users WHERE substr(username, 4)::int BETWEEN ?::int AND ?::int`,
      [blocker, MEMBERS + 1, MEMBERS + BLOCKS],
    );
    await knex.raw(
      `WITH u AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM users WHERE id <> ?::uuid)
       INSERT INTO blocks (blocker_id, blocked_id)
       SELECT a.id, b.id FROM u a JOIN u b ON b.n = a.n + 13 ON CONFLICT DO NOTHING`,
      [blocker],
    );
    await knex.raw(
      `WITH u AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM users),
            c AS (
              INSERT INTO conversations (type, title, direct_key)
              SELECT CASE WHEN g % 2 = 0 THEN 'direct' ELSE 'group' END,
                     CASE WHEN g % 2 = 0 THEN NULL ELSE 'other ' || g END,
                     CASE WHEN g % 2 = 0 THEN 'dk' || g END
              FROM generate_series(1, ?::int) g RETURNING id),
            numbered AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM c)
       INSERT INTO conversation_participants (conversation_id, user_id, role)
       SELECT numbered.id, u.id, 'member' FROM numbered CROSS JOIN generate_series(0, 1) k
       JOIN u ON u.n = (numbered.n * 2 + k) % ?::int + 1`,
      [OTHER_CONVERSATIONS, MEMBERS + BLOCKS],
    );
    await knex.raw('ANALYZE');
    const checked = await buffersOf(groupId, blocker);
    expect(checked.blocked).to.equal(false);
    expect(checked.buffers, 'buffers one check reads').to.be.below(20);
  });

  it('still answers true in a direct conversation where either side blocked the other, false without a block', async () => {
    const [a, b, c] = [await id('bc_1'), await id('bc_2'), await id('bc_3')];
    const direct = async (x: string, y: string, key: string): Promise<string> => {
      const [row] = await knex('conversations')
        .insert({ type: 'direct', direct_key: key })
        .returning<Array<{ id: string }>>('id');
      const conversationId = row!.id;
      await knex('conversation_participants').insert([
        { conversation_id: conversationId, user_id: x, role: 'member' },
        { conversation_id: conversationId, user_id: y, role: 'member' },
      ]);
      return conversationId;
    };
    const ab = await direct(a, b, 'bc-ab');
    const ac = await direct(a, c, 'bc-ac');
    await knex('blocks')
      .insert({ blocker_id: b, blocked_id: a })
      .onConflict(['blocker_id', 'blocked_id'])
      .ignore();
    await knex('blocks').where({ blocker_id: a, blocked_id: c }).delete();
    await knex('blocks').where({ blocker_id: c, blocked_id: a }).delete();
    expect((await buffersOf(ab, a)).blocked, 'blocked by the other').to.equal(true);
    expect((await buffersOf(ab, b)).blocked, 'blocking the other').to.equal(true);
    expect((await buffersOf(ac, a)).blocked, 'no block').to.equal(false);
  });
});
