import { expect } from 'chai';
import {
  openBenchDatabase,
  vacuumWrittenTables,
  WRITTEN_TABLES,
  type BenchDatabase,
} from '../bench/database.js';
import { seedLargeHistory, type Seeded } from '../bench/seed.js';
import { checkJwtSecret } from '../lib/auth/secretFingerprint.js';
import { loadDatabaseConfig } from '../lib/config.js';
import { createDatabase } from '../lib/db.js';
import { createLogger } from '../lib/logger.js';
import { createTestDatabase } from './helpers/postgres.js';
import { UUID_V4, UUID_V7 } from './helpers/uuid.js';

interface TableStats {
  relname: string;
  vacuum_count: string;
  analyze_count: string;
}

async function tableStats(database: BenchDatabase): Promise<Map<string, TableStats>> {
  const rows = await database.query<TableStats>(
    `SELECT relname, vacuum_count, analyze_count FROM pg_stat_user_tables
     WHERE relname = ANY($1::text[])`,
    [WRITTEN_TABLES],
  );
  return new Map(rows.map((row) => [row.relname, row]));
}

describe('bench database: the vacuum before each phase', function () {
  this.timeout(60_000);
  let database: BenchDatabase;

  before(async () => {
    database = await openBenchDatabase(await createTestDatabase(), () => {});
  });

  after(async () => {
    await database.close();
  });

  it('vacuums and analyzes every table the phases write, once per call', async () => {
    const [user] = await database.query<{ id: string }>(
      `INSERT INTO users (username, password_hash, display_name) VALUES ('vacuumed', 'x', 'V') RETURNING id`,
    );
    const [conversation] = await database.query<{ id: string }>(
      `INSERT INTO conversations (type) VALUES ('group') RETURNING id`,
    );
    await database.query('INSERT INTO conversation_participants (conversation_id, user_id) VALUES ($1, $2)', [
      conversation!.id,
      user!.id,
    ]);
    // A phase's traffic: a seq bumped per message (a dead row version each time), messages, a read marker moved.
    for (let seq = 1; seq <= 20; seq++) {
      await database.query('UPDATE conversations SET last_seq = $2 WHERE id = $1', [conversation!.id, seq]);
      await database.query(
        `INSERT INTO messages (conversation_id, sender_id, seq, client_msg_id, body) VALUES ($1, $2, $3, $4, 'b')`,
        [conversation!.id, user!.id, seq, `c-${seq}`],
      );
    }
    await database.query(
      'UPDATE conversation_participants SET last_read_seq = 20 WHERE conversation_id = $1',
      [conversation!.id],
    );
    const before = await tableStats(database);

    const ms = await vacuumWrittenTables(database);

    const after = await tableStats(database);
    expect(ms).to.be.greaterThan(0);
    for (const table of WRITTEN_TABLES) {
      const was = before.get(table);
      const now = after.get(table);
      expect(now, table).to.not.equal(undefined);
      expect(Number(now!.vacuum_count), `${table} vacuumed`).to.equal(Number(was?.vacuum_count ?? 0) + 1);
      expect(Number(now!.analyze_count), `${table} analyzed`).to.equal(Number(was?.analyze_count ?? 0) + 1);
    }
  });
});

describe('bench seed: a large history by SQL', function () {
  this.timeout(60_000);

  it('gives each conversation consecutive seqs from 1, its members taking turns, and sets last_seq and version', async () => {
    const db = createDatabase(
      loadDatabaseConfig({ DATABASE_URL: await createTestDatabase() }),
      createLogger('silent'),
    );
    try {
      const { knex } = db;
      const users = await knex('users')
        .insert(
          ['ann', 'bob', 'cid'].map((name) => ({ username: name, password_hash: 'x', display_name: name })),
        )
        .returning<Array<{ id: string }>>('id');
      const conversations = await knex('conversations')
        .insert([{ type: 'group' }, { type: 'group' }])
        .returning<Array<{ id: string }>>('id');
      const seeded: Seeded = {
        users: users.map((u) => ({ id: u.id, token: '' })),
        conversations: [
          { id: conversations[0]!.id, members: [0, 1] },
          { id: conversations[1]!.id, members: [2, 0, 1] },
        ],
      };
      // Three statements a conversation (100 + 100 + 50), so the parts must join up.
      await seedLargeHistory(knex, seeded, 250, 'hello', 'counter', 100);

      for (const conversation of seeded.conversations) {
        const rows = await knex('messages').where({ conversation_id: conversation.id }).orderBy('seq').select<
          Array<{
            seq: string;
            version: string;
            sender_id: string;
            client_msg_id: string;
            body: string;
            id: string;
          }>
        >('seq', 'version', 'sender_id', 'client_msg_id', 'body', 'id');
        expect(rows.map((r) => Number(r.seq))).to.deep.equal(Array.from({ length: 250 }, (_, i) => i + 1));
        rows.forEach((row, i) => {
          expect(Number(row.version)).to.equal(i + 1);
          expect(row.sender_id).to.equal(
            seeded.users[conversation.members[i % conversation.members.length]!]!.id,
          );
          expect(row.client_msg_id).to.equal(`history-${i + 1}`);
          expect(row.body).to.equal('hello');
          // The schema's default: time-ordered ids.
          expect(row.id).to.match(UUID_V7);
        });
        const stored = await knex('conversations')
          .where({ id: conversation.id })
          .first<{ last_seq: string; version: string }>('last_seq', 'version');
        expect([Number(stored.last_seq), Number(stored.version)]).to.deep.equal([250, 250]);
      }

      // The other kinds of clientMsgId: time-ordered ones in seq order, random ones.
      const more = await knex('conversations')
        .insert([{ type: 'group' }, { type: 'group' }])
        .returning<Array<{ id: string }>>('id');
      const kinds = [
        ['uuid7', more[0]!.id],
        ['uuid4', more[1]!.id],
      ] as const;
      for (const [kind, id] of kinds) {
        await seedLargeHistory(
          knex,
          { ...seeded, conversations: [{ id, members: [0] }] },
          30,
          'hi',
          kind,
          20,
        );
      }
      const idsOf = async (conversationId: string) =>
        (await knex('messages')
          .where({ conversation_id: conversationId })
          .orderBy('seq')
          .pluck('client_msg_id')) as string[];
      const ordered = await idsOf(more[0]!.id);
      expect(ordered).to.have.length(30);
      for (const id of ordered) expect(id).to.match(/^00000000-0000-7000-8000-[0-9a-f]{12}$/);
      expect(ordered).to.deep.equal([...ordered].sort());
      const random = await idsOf(more[1]!.id);
      expect(new Set(random).size).to.equal(30);
      for (const id of random) expect(id).to.match(UUID_V4);
    } finally {
      await db.close();
    }
  });
});

describe('bench database: a BENCH_DATABASE_URL used by an earlier run', function () {
  this.timeout(60_000);

  it('forgets the JWT_SECRET an earlier run recorded: each run’s nodes take a secret of their own', async () => {
    const url = await createTestDatabase();
    const first = await openBenchDatabase(url, () => {});
    await first.close();
    const db = createDatabase(loadDatabaseConfig({ DATABASE_URL: url }), createLogger('silent'));
    try {
      expect(await checkJwtSecret(db.knex, 'an earlier run’s secret, 32 characters or more')).to.equal(
        'stored',
      );
      const second = await openBenchDatabase(url, () => {});
      await second.close();
      expect(await checkJwtSecret(db.knex, 'this run’s secret, also 32 characters or more')).to.equal(
        'stored',
      );
    } finally {
      await db.close();
    }
  });
});
