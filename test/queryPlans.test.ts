import { expect } from 'chai';
import type { Knex } from 'knex';
import pg from 'pg';
import { loadDatabaseConfig } from '../lib/config.js';
import { listConversations } from '../lib/conversations/queries.js';
import { readChanges, readHistory } from '../lib/messaging/reads.js';
import { createMembership } from '../lib/messaging/membership.js';
import { createDatabase, type Database } from '../lib/db.js';
import { createLogger } from '../lib/logger.js';
import { removeTies } from '../lib/auth/profile.js';
import { listPending } from '../lib/social/friendRequests.js';
import { createTestDatabase } from './helpers/postgres.js';
import { captureQueries, type CapturedQuery } from './helpers/queries.js';

/**
 * The hot queries use their indexes. Each query is captured as the code really issues it (knex 'query' events
 * around a call of the real function), then EXPLAINed with its own bindings on a seeded, ANALYZEd database
 * large enough that a sequential scan would be the planner's choice only if no index fits.
 */

const USERS = 5000;
const CONVERSATIONS = 5000;
const MEMBERS_PER_CONVERSATION = 3;
const MESSAGES_PER_CONVERSATION = 20;
const BIG_CONVERSATION_MESSAGES = 5000;
const FRIEND_REQUESTS = 10_000;
/** Conversations without participants, so that a user with a few hundred memberships has few of a big table. */
const EXTRA_CONVERSATIONS = 20_000;
/** The memberships of the busy user: 2 % of the conversations, where a hash join over a scan could look cheap. */
const BUSY_MEMBERSHIPS = 500;

/** Tables big enough that a Seq Scan on them would be a missing index, not a sensible plan. */
const BIG_TABLES = [
  'messages',
  'conversations',
  'conversation_participants',
  'friend_requests',
  'users',
  'sessions',
];
/** Sessions of each user: every write checks its sender's (migrations/20261203130000_session_checked_under_lock.ts). */
const SESSIONS_PER_USER = 2;

/**
 * The text plan of one captured statement with its own bindings. The captured SQL is the driver's ($1, $2, ...),
 * so it goes to node-postgres as is. EXPLAIN without ANALYZE runs nothing.
 */
async function explain(client: pg.Client, statement: CapturedQuery): Promise<string> {
  const result = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${statement.sql}`, [
    ...statement.bindings,
  ]);
  return result.rows.map((r) => r['QUERY PLAN']).join('\n');
}

/** Asserts no statement seq-scans a big table and that, together, the plans name every expected index. */
async function expectIndexed(
  client: pg.Client,
  statements: CapturedQuery[],
  indexes: string[],
): Promise<string[]> {
  expect(statements, 'the function issued no statement').to.not.be.empty;
  const plans: string[] = [];
  for (const statement of statements) {
    const plan = await explain(client, statement);
    plans.push(plan);
    for (const table of BIG_TABLES) {
      expect(plan, `Seq Scan on ${table} in\n${statement.sql}\n${plan}`).to.not.match(
        new RegExp(`Seq Scan on ${table}\\b`),
      );
    }
  }
  const all = plans.join('\n');
  for (const index of indexes) expect(all, `plan should use ${index}:\n${all}`).to.contain(index);
  return plans;
}

describe('query plans of the hot queries (seeded and analyzed)', function () {
  this.timeout(120_000);
  let db: Database;
  let knex: Knex;
  let client: pg.Client;
  let user: string;
  let busyUser: string;
  let bigConversation: string;
  let session: string;

  before(async function () {
    const url = await createTestDatabase();
    db = createDatabase(loadDatabaseConfig({ DATABASE_URL: url }), createLogger('silent'));
    knex = db.knex;
    client = new pg.Client({ connectionString: url });
    await client.connect();
    await knex.raw(
      `INSERT INTO users (username, display_name, password_hash)
       SELECT 'qp_' || g, 'qp_' || g, ? FROM generate_series(1, ?::int) g`,
      ['not-a-real-hash', USERS],
    );
    await knex.raw(
      `INSERT INTO conversations (type, title)
       SELECT 'group', 'g' || g FROM generate_series(1, ?::int) g`,
      [CONVERSATIONS],
    );
    // Each conversation gets consecutive users (wrapping), so every user is in about 3 conversations.
    await knex.raw(
      `WITH c AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM conversations),
            u AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM users)
       INSERT INTO conversation_participants (conversation_id, user_id, role)
       SELECT c.id, u.id, CASE WHEN k = 0 THEN 'owner' ELSE 'member' END
       FROM c CROSS JOIN generate_series(0, ?::int - 1) k
       JOIN u ON u.n = (c.n * ?::int + k) % ?::int`,
      [MEMBERS_PER_CONVERSATION, MEMBERS_PER_CONVERSATION, USERS],
    );
    await knex.raw(
      `INSERT INTO messages (conversation_id, sender_id, seq, client_msg_id, body, version)
       SELECT p.conversation_id, p.user_id, s, 'm' || s, 'message ' || s, s
       FROM conversation_participants p CROSS JOIN generate_series(1, ?::int) s WHERE p.role = 'owner'`,
      [MESSAGES_PER_CONVERSATION],
    );
    const [first] = (
      await knex.raw<{ rows: Array<{ conversation_id: string; user_id: string }> }>(
        `SELECT conversation_id, user_id FROM conversation_participants WHERE role = 'owner' ORDER BY conversation_id LIMIT 1`,
      )
    ).rows;
    bigConversation = first!.conversation_id;
    user = first!.user_id;
    await knex.raw(
      'INSERT INTO sessions (user_id) SELECT u.id FROM users u CROSS JOIN generate_series(1, ?::int)',
      [SESSIONS_PER_USER],
    );
    session = (await knex('sessions').where({ user_id: user }).first<{ id: string }>('id')).id;
    // One long conversation, so history pages come from deep inside a big index range.
    await knex.raw(
      `INSERT INTO messages (conversation_id, sender_id, seq, client_msg_id, body, version)
       SELECT ?::uuid, ?::uuid, s, 'm' || s, 'message ' || s, s FROM generate_series(?::int + 1, ?::int) s`,
      [bigConversation, user, MESSAGES_PER_CONVERSATION, BIG_CONVERSATION_MESSAGES],
    );
    await knex.raw(
      `UPDATE conversations c SET last_seq = m.max_seq, version = m.max_seq
       FROM (SELECT conversation_id, max(seq) AS max_seq FROM messages GROUP BY conversation_id) m
       WHERE m.conversation_id = c.id`,
    );
    // Friend requests between distinct pairs, most of them answered long ago, a few pending.
    await knex.raw(
      `WITH u AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM users)
       INSERT INTO friend_requests (from_user_id, to_user_id, status)
       SELECT a.id, b.id, CASE WHEN g % 20 = 0 THEN 'pending' ELSE 'declined' END
       FROM generate_series(0, ?::int - 1) g
       JOIN u a ON a.n = g % ?::int
       JOIN u b ON b.n = (g % ?::int + 1 + g / ?::int) % ?::int`,
      [FRIEND_REQUESTS, USERS, USERS, USERS, USERS],
    );
    // A user in BUSY_MEMBERSHIPS of EXTRA_CONVERSATIONS more groups, each with a second participant.
    await knex.raw(
      `INSERT INTO conversations (type, title, last_activity_at)
       SELECT 'group', 'extra ' || g, now() - g * interval '1 second' FROM generate_series(1, ?::int) g`,
      [EXTRA_CONVERSATIONS],
    );
    const [busy] = (
      await knex.raw<{ rows: Array<{ id: string }> }>(
        `INSERT INTO users (username, display_name, password_hash) VALUES ('qp_busy', 'qp_busy', ?) RETURNING id`,
        ['not-a-real-hash'],
      )
    ).rows;
    busyUser = busy!.id;
    await knex.raw(
      `WITH picked AS (SELECT id FROM conversations WHERE title LIKE 'extra %' ORDER BY random() LIMIT ?::int)
       INSERT INTO conversation_participants (conversation_id, user_id, role)
       SELECT id, ?::uuid, 'owner' FROM picked
       UNION ALL SELECT id, (SELECT id FROM users WHERE username = 'qp_1'), 'member' FROM picked`,
      [BUSY_MEMBERSHIPS, busyUser],
    );
    await knex.raw('ANALYZE');
  });

  after(async function () {
    await client?.end();
    await db?.close();
  });

  it('history after a seq reads the (conversation_id, seq) index', async function () {
    let page: Awaited<ReturnType<typeof readHistory>> | undefined;
    const statements = await captureQueries(knex, async () => {
      page = await readHistory(knex, bigConversation, user, { kind: 'after', seq: 2500, limit: 50 });
    });
    expect(page!.messages.map((m) => m.seq)).to.deep.equal(Array.from({ length: 50 }, (_, i) => 2501 + i));
    const [plan] = await expectIndexed(client, statements, [
      'messages_conversation_seq_unique',
      'conversations_pkey',
    ]);
    // The LIMIT is applied on the index scan, not after sorting the whole conversation.
    expect(plan).to.not.match(/Sort\b/);
  });

  it('history before a seq (and the newest page) read the index backwards', async function () {
    const statements = await captureQueries(knex, async () => {
      const before = await readHistory(knex, bigConversation, user, { kind: 'before', seq: 100, limit: 20 });
      expect(before.messages.map((m) => m.seq)).to.deep.equal(Array.from({ length: 20 }, (_, i) => 80 + i));
      const newest = await readHistory(knex, bigConversation, user, { kind: 'newest', limit: 20 });
      expect(newest.messages.at(-1)?.seq).to.equal(BIG_CONVERSATION_MESSAGES);
    });
    const plans = await expectIndexed(client, statements, ['messages_conversation_seq_unique']);
    for (const plan of plans) {
      expect(plan, plan).to.match(/Index Scan Backward using messages_conversation_seq_unique/);
      expect(plan).to.not.match(/Sort\b/);
    }
  });

  it('changes since a version read the (conversation_id, version) index', async function () {
    const statements = await captureQueries(knex, async () => {
      const page = await readChanges(knex, bigConversation, user, 4000, 50);
      expect(page.messages.map((m) => m.version)).to.deep.equal(
        Array.from({ length: 50 }, (_, i) => 4001 + i),
      );
    });
    // An ordered index scan or a bitmap scan of the matching range and a sort of it, as the estimate says.
    await expectIndexed(client, statements, ['messages_conversation_version_idx']);
  });

  it('my conversations list starts from the participant user index', async function () {
    let items: Awaited<ReturnType<typeof listConversations>>['conversations'] = [];
    const statements = await captureQueries(knex, async () => {
      items = (await listConversations(knex, user, { limit: 50 })).conversations;
    });
    expect(items.length).to.be.within(1, MEMBERS_PER_CONVERSATION + 1);
    expect(items.every((c) => c.lastMessage !== null)).to.equal(true);
    // The page, its participants, their users, the last messages: four statements whatever the page.
    expect(statements).to.have.length(4);
    await expectIndexed(client, statements, [
      'conversation_participants_user_idx',
      'conversations_pkey',
      'conversation_participants_pkey',
      'users_pkey',
    ]);
  });

  it('my conversations list costs my memberships, not the table: no scan of conversations for a busy user', async function () {
    let pages: Array<Awaited<ReturnType<typeof listConversations>>> = [];
    const statements = await captureQueries(knex, async () => {
      const first = await listConversations(knex, busyUser, { limit: 50 });
      const second = await listConversations(knex, busyUser, { limit: 50, after: first.next ?? undefined });
      pages = [first, second];
    });
    for (const page of pages) {
      expect(page.conversations).to.have.length(50);
      expect(page.next).to.not.equal(null);
    }
    const [first, second] = pages.map((page) => page.conversations.map((c) => c.id));
    expect(new Set([...first!, ...second!]).size).to.equal(100);
    // No message yet: the page, its participants and their users, twice.
    expect(statements).to.have.length(6);
    const plans = await expectIndexed(client, statements, [
      'conversation_participants_user_idx',
      'conversations_pkey',
      'conversation_participants_pkey',
      'users_pkey',
    ]);
    // Each page statement starts from my memberships and probes conversations by primary key, one at a time.
    const pagePlans = plans.filter((plan) => plan.includes('conversation_participants_user_idx'));
    expect(pagePlans).to.have.length(2);
    for (const plan of pagePlans) {
      expect(plan, plan).to.match(/Index Scan using conversations_pkey on conversations\b/);
    }
  });

  it('the membership check reads the participants primary key', async function () {
    const statements = await captureQueries(knex, async () => {
      await createMembership(knex).assert(bigConversation, user);
    });
    expect(statements).to.have.length(1);
    // A one-row probe on either index that leads with the pair (the primary key or the user's index).
    const [plan] = await expectIndexed(client, statements, []);
    expect(plan).to.match(/Index (Only )?Scan using conversation_participants_(pkey|user_idx)/);
  });

  /**
   * The scan statistics of one call of a write function, in its own transaction, rolled back: the function's
   * statements run inside PostgreSQL, so they are counted there. `call` returns each row's [status, seq].
   */
  const writeScans = async (
    call: () => Promise<Array<[number, number]>>,
    expected: Array<[number, number]>,
  ) => {
    await client.query('BEGIN');
    try {
      expect(await call()).to.deep.equal(expected);
      const tables = await client.query<{ relname: string; seq_scan: string }>(
        'SELECT relname, seq_scan FROM pg_stat_xact_user_tables WHERE relname = ANY($1)',
        [BIG_TABLES],
      );
      const indexes = await client.query<{ name: string; scans: string }>(
        `SELECT i AS name, pg_stat_get_xact_numscans(i::regclass) AS scans
         FROM unnest($1::text[]) i`,
        [
          [
            'conversations_pkey',
            'messages_client_msg_unique',
            'conversation_participants_pkey',
            'conversation_participants_user_idx',
            'sessions_pkey',
          ],
        ],
      );
      const scans = Object.fromEntries(indexes.rows.map((r) => [r.name, Number(r.scans)]));
      return {
        seqScans: Object.fromEntries(tables.rows.map((r) => [r.relname, Number(r.seq_scan)])),
        indexScans: {
          conversations_pkey: scans.conversations_pkey ?? 0,
          messages_client_msg_unique: scans.messages_client_msg_unique ?? 0,
          // The membership check finds (conversation, user) through either index, as the statistics decide.
          'conversation_participants_pkey or _user_idx':
            (scans.conversation_participants_pkey ?? 0) + (scans.conversation_participants_user_idx ?? 0),
          sessions_pkey: scans.sessions_pkey ?? 0,
        },
      };
    } finally {
      await client.query('ROLLBACK');
    }
  };

  /** The first calls get custom plans, later ones PL/pgSQL's cached generic plan: both must hold. */
  const expectIndexedCalls = async (
    call: () => Promise<Array<[number, number]>>,
    expected: Array<[number, number]>,
  ) => {
    for (let n = 0; n < 7; n += 1) {
      const { seqScans, indexScans } = await writeScans(call, expected);
      for (const table of BIG_TABLES) expect(seqScans[table] ?? 0, `Seq Scan on ${table}`).to.equal(0);
      for (const [index, count] of Object.entries(indexScans)) expect(count, index).to.be.above(0);
    }
  };

  it('the write path (xfchat_write) locks, checks, numbers and inserts through indexes, never a scan', async function () {
    const bodies = ['planned', 'and planned again'];
    await expectIndexedCalls(
      async () => {
        const sent = await client.query<{ r_status: number; r_seq: string }>(
          `SELECT r_status, r_seq FROM xfchat_write($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[],
             '{}', '{}', '{}', '{}', '{}', NULL, NULL, false, $6::uuid[], '{}')`,
          [
            bodies.map(() => bigConversation),
            bodies.map(() => user),
            bodies.map((_, i) => `query-plan-${i}`),
            bodies,
            bodies.map(() => null),
            bodies.map(() => session),
          ],
        );
        return sent.rows.map((r): [number, number] => [r.r_status, Number(r.r_seq)]);
      },
      bodies.map((_, i): [number, number] => [0, BIG_CONVERSATION_MESSAGES + 1 + i]),
    );
  });

  it('the write of a lone send (xfchat_send_one) goes through the same indexes, never a scan', async function () {
    await expectIndexedCalls(async () => {
      const sent = await client.query<{ r_status: number; r_seq: string }>(
        `SELECT r_status, r_seq
         FROM xfchat_send_one($1::uuid, $2::uuid, $3::text, $4::text, $5::bigint, false, $6::uuid)`,
        [bigConversation, user, 'query-plan-one', 'planned alone', null, session],
      );
      return sent.rows.map((r): [number, number] => [r.r_status, Number(r.r_seq)]);
    }, [[0, BIG_CONVERSATION_MESSAGES + 1]]);
  });

  it('an account deletion finds the user’s friend requests of every status by index, both ways', async function () {
    const statements = await captureQueries(knex, async () => {
      // Captured, then undone: EXPLAIN below runs nothing.
      await knex
        .transaction(async (trx) => {
          await removeTies(trx, user);
          throw new Error('undo');
        })
        .catch((err: unknown) => {
          if (!(err instanceof Error) || err.message !== 'undo') throw err;
        });
    });
    await expectIndexed(
      client,
      statements.filter((s) => s.sql.includes('friend_requests')),
      ['friend_requests_from_user_idx', 'friend_requests_to_user_idx'],
    );
  });

  it('pending friend requests, both directions, read their partial indexes', async function () {
    const [pending] = (
      await knex.raw<{ rows: Array<{ from_user_id: string; to_user_id: string }> }>(
        `SELECT from_user_id, to_user_id FROM friend_requests WHERE status = 'pending' LIMIT 1`,
      )
    ).rows;
    const statements = await captureQueries(knex, async () => {
      const incoming = await listPending(knex, pending!.to_user_id, 'incoming');
      expect(incoming.some((r) => r.fromUserId === pending!.from_user_id)).to.equal(true);
      const outgoing = await listPending(knex, pending!.from_user_id, 'outgoing');
      expect(outgoing.some((r) => r.toUserId === pending!.to_user_id)).to.equal(true);
    });
    await expectIndexed(client, statements, [
      'friend_requests_incoming_pending_idx',
      'friend_requests_outgoing_pending_idx',
      'users_pkey',
    ]);
  });
});
