import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import type { Knex } from 'knex';
import pg from 'pg';
import type { Database } from '../lib/db.js';
import { BUNDLED_MIGRATIONS_DIR, MIGRATION_LOCK_KEY } from '../lib/migrations.js';
import * as sessionsMigration from '../migrations/20261130000100_sessions.js';
import * as messageIdsMigration from '../migrations/20261202000000_message_ids_time_ordered.js';
import * as removalsMigration from '../migrations/20261204000000_removals_known_to_writes.js';
import * as friendRequestsMigration from '../migrations/20261203110000_friend_requests_by_user.js';
import * as participantRemovalsMigration from '../migrations/20261205000000_participant_removals.js';
import { groupOfOne, openMigrated, type Opened } from './helpers/migrations.js';
import { adminQuery, createEmptyDatabase, untilAStatementWaitsForALock } from './helpers/postgres.js';
import { millisOfV7, UUID_V4, UUID_V7 } from './helpers/uuid.js';
import { waitFor } from './helpers/waitFor.js';

const CONTRACT_TABLES = [
  'users',
  'conversations',
  'conversation_participants',
  'messages',
  'friend_requests',
  'friendships',
  'blocks',
  'socket_io_attachments',
  'sessions',
  'refresh_tokens',
  'auth_rate_limits',
  'cluster_settings',
];

/** Which of the contract tables exist in the public schema. */
async function existingTables(db: Database): Promise<string[]> {
  const rows = (await db
    .knex('information_schema.tables')
    .select('table_name')
    .where({ table_schema: 'public' })
    .whereIn('table_name', CONTRACT_TABLES)
    .orderBy('table_name')) as Array<{ table_name: string }>;
  return rows.map((r) => r.table_name);
}

async function bundledMigrationNames(): Promise<string[]> {
  return (await readdir(BUNDLED_MIGRATIONS_DIR))
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => path.basename(f, '.ts'))
    .sort();
}

describe('migrations', function () {
  this.timeout(60_000);
  const opened: Database[] = [];

  function track(db: Opened): Opened {
    opened.push(db);
    return db;
  }

  after(async () => {
    await Promise.all(opened.map((db) => db.close()));
  });

  /** A fresh empty database of its own, so no test depends on another's steps. */
  async function emptyDatabase(): Promise<Opened> {
    return track(openMigrated(await createEmptyDatabase()));
  }

  describe('latest and rollback', () => {
    it('an empty database has no tables and every migration pending', async () => {
      const db = await emptyDatabase();
      expect(await existingTables(db)).to.deep.equal([]);
      const status = await db.migrations.status();
      expect(status.applied).to.deep.equal([]);
      expect(status.pending).to.deep.equal(await bundledMigrationNames());
    });

    it('latest creates every contract table, rollback drops them, latest recreates them', async () => {
      const db = await emptyDatabase();
      const names = await bundledMigrationNames();

      const first = await db.migrations.latest();
      expect(first.newlyApplied).to.deep.equal(names);
      expect(first.status).to.deep.equal({ applied: names, pending: [], newer: [] });
      expect(await existingTables(db)).to.deep.equal([...CONTRACT_TABLES].sort());

      // One batch: every migration rolled back, newest first.
      expect(await db.migrations.rollback()).to.deep.equal([...names].reverse());
      expect(await existingTables(db)).to.deep.equal([]);
      expect(await db.migrations.status()).to.deep.equal({ applied: [], pending: names, newer: [] });

      const again = await db.migrations.latest();
      expect(again.newlyApplied).to.deep.equal(names);
      expect(await existingTables(db)).to.deep.equal([...CONTRACT_TABLES].sort());
    });

    it('rolls every migration back and up again with edited, deleted, answered and reacted messages in place', async () => {
      const db = await emptyDatabase();
      const names = await bundledMigrationNames();
      await db.migrations.latest();
      const { knex } = db;
      const { userId, conversationId } = await groupOfOne(knex, { lastSeq: 3, version: 5 });
      const message = (seq: number, body: string, extra: Record<string, unknown> = {}) => ({
        conversation_id: conversationId,
        sender_id: userId,
        seq,
        version: seq,
        client_msg_id: `m${seq}`,
        body,
        ...extra,
      });
      const [, answered] = await knex('messages')
        .insert([
          message(1, '', { deleted_at: new Date(), version: 4 }),
          message(2, 'edited', { reply_to_seq: 1, edited_at: new Date(), version: 5 }),
          message(3, 'plain'),
        ])
        .returning<Array<{ id: string }>>('id');
      await knex('message_reactions').insert({ message_id: answered!.id, emoji: '👍', user_id: userId });

      expect(await db.migrations.rollback()).to.deep.equal([...names].reverse());
      expect(await existingTables(db)).to.deep.equal([]);
      expect((await db.migrations.latest()).newlyApplied).to.deep.equal(names);
      expect(await existingTables(db)).to.deep.equal([...CONTRACT_TABLES].sort());
    });

    it('the message lifecycle migration goes down with a deleted message in place, as version 1 shows one', async () => {
      const db = await emptyDatabase();
      await db.migrations.latest();
      const { knex } = db;
      const { userId, conversationId } = await groupOfOne(knex, { lastSeq: 1, version: 2 });
      await knex('messages').insert({
        conversation_id: conversationId,
        sender_id: userId,
        seq: 1,
        version: 2,
        client_msg_id: 'gone',
        body: '',
        deleted_at: new Date(),
      });
      // Down to just before it, one migration at a time, newest first.
      const names = await bundledMigrationNames();
      const lifecycle = names.indexOf('20261130000050_message_writes');
      for (const name of names.slice(lifecycle).reverse()) {
        const migration = (await import(path.join(BUNDLED_MIGRATIONS_DIR, `${name}.ts`))) as {
          down(knex: Knex): Promise<void>;
        };
        await migration.down(knex);
      }
      expect(await knex('messages').pluck('body')).to.deep.equal(['(deleted)']);
    });

    it('waits for the migration lock as long as another holds it, whatever lock_timeout the database sets', async () => {
      const url = await createEmptyDatabase();
      await adminQuery(`ALTER DATABASE "${new URL(url).pathname.slice(1)}" SET lock_timeout = '100ms'`);
      const db = track(openMigrated(url));
      // Another node (or xfchat migrate) holds the lock; pg_advisory_lock() obeys lock_timeout.
      const other = new pg.Client({ connectionString: url });
      await other.connect();
      try {
        await other.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
        let settled: string | undefined;
        const latest = db.migrations.latest().then(
          () => (settled = 'ok'),
          (err: unknown) => (settled = String(err)),
        );
        await untilAStatementWaitsForALock(db.knex, 'the wait for the migration lock');
        // Five times the database's lock_timeout, counted from the wait's start.
        await new Promise((resolve) => setTimeout(resolve, 500));
        // Seen by PostgreSQL: the wait is still on. (A process slowed past the timer reads a lock_timeout's error
        // only after it: `settled` alone could pass though the wait had ended at 100 ms.)
        const { rows } = await other.query(
          `SELECT 1 FROM pg_stat_activity
           WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event <> 'object'`,
        );
        expect(rows.length, 'statements waiting for a lock after 500 ms').to.be.at.least(1);
        expect(settled, 'settled while the lock was held').to.equal(undefined);
        await other.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
        await latest;
        expect(settled).to.equal('ok');
        expect((await db.migrations.status()).pending).to.deep.equal([]);
      } finally {
        await other.end();
      }
    });

    it('latest on an up-to-date database is a no-op', async () => {
      const db = await emptyDatabase();
      await db.migrations.latest();
      const { newlyApplied, status } = await db.migrations.latest();
      expect(newlyApplied).to.deep.equal([]);
      expect(status.pending).to.deep.equal([]);
    });

    it('migrationStatus reports names without a file extension, as knex_migrations records them', async () => {
      const db = await emptyDatabase();
      await db.migrations.latest();
      const status = await db.migrations.status();
      expect(status.pending).to.deep.equal([]);
      expect(status.applied).to.deep.equal(await bundledMigrationNames());
      for (const name of status.applied) {
        expect(name).to.match(/^\d{14}_[a-z0-9_]+$/);
        expect(path.extname(name)).to.equal('');
      }
      const recorded = (await db.knex('knex_migrations').orderBy('id').pluck('name')) as string[];
      expect(recorded).to.deep.equal(status.applied);
    });

    it('MIGRATIONS_DIR may hold .js migrations beside .ts ones: both run, in name order, each once', async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'xfchat-migrations-'));
      try {
        const migration = (table: string) =>
          `export async function up(knex) { await knex.raw('CREATE TABLE ${table} (id int)'); }\n` +
          `export async function down(knex) { await knex.raw('DROP TABLE ${table}'); }\n`;
        await writeFile(path.join(dir, '20200101000000_first.js'), migration('first_js'));
        await writeFile(path.join(dir, '20200102000000_second.ts'), migration('second_ts'));
        // A migration beside its compiled copy runs once, from this process's own kind (TypeScript here).
        await writeFile(path.join(dir, '20200103000000_third.ts'), migration('third_ts'));
        await writeFile(path.join(dir, '20200103000000_third.js'), migration('third_js'));
        const db = track(openMigrated(await createEmptyDatabase(), dir));
        expect((await db.migrations.status()).pending).to.deep.equal([
          '20200101000000_first',
          '20200102000000_second',
          '20200103000000_third',
        ]);
        await db.migrations.latest();
        const tables = await Promise.all(
          ['first_js', 'second_ts', 'third_ts', 'third_js'].map((t) => db.knex.schema.hasTable(t)),
        );
        expect(tables).to.deep.equal([true, true, true, false]);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('the sessions migration goes down and up again with sessions and a deleted account in place', async () => {
      const db = await emptyDatabase();
      await db.migrations.latest();
      const { knex } = db;
      const [alive] = await knex('users')
        .insert({ username: 'alive', password_hash: 'x', display_name: 'Alive' })
        .returning<Array<{ id: string }>>('id');
      const [gone] = await knex('users')
        .insert({ username: null, password_hash: null, display_name: 'Deleted user', deleted_at: new Date() })
        .returning<Array<{ id: string }>>('id');
      await knex('sessions').insert({ user_id: alive!.id });
      // A deleted account must have neither name nor hash; a live one both.
      const refused = await knex('users')
        .insert({ username: null, password_hash: 'x', display_name: 'Half' })
        .then(
          () => 'inserted',
          (err: { constraint?: string }) => err.constraint,
        );
      expect(refused).to.equal('users_deleted_shape');

      await sessionsMigration.down(knex);
      // Version 1's picture of a deleted account: no row (its messages would keep sender_id NULL).
      expect(await knex('users').pluck('id')).to.deep.equal([alive!.id]);
      expect(await knex('users').where({ id: gone!.id }).first()).to.equal(undefined);
      expect(await knex('users').pluck('token_version')).to.deep.equal([0]);

      await sessionsMigration.up(knex);
      expect(Number((await knex('sessions').count({ n: '*' }))[0]!.n)).to.equal(0);
      expect((await existingTables(db)).length).to.equal(CONTRACT_TABLES.length);
    });

    it("the removals migration: a node's named statements of the functions before it keep answering across it, and after down", async () => {
      const db = await emptyDatabase();
      await db.migrations.latest();
      const { knex } = db;
      const { userId, conversationId } = await groupOfOne(knex, { lastSeq: 0, version: 0 });
      await removalsMigration.down(knex);
      // A node started before the migration: its statements, prepared on its connection, name seven columns.
      const client = await db.connections.acquire();
      try {
        const send = () =>
          client.query({
            name: 'previous_send_one',
            text: `SELECT r_ord, r_status, r_id, r_seq, r_version, r_created_ms, r_message
                   FROM xfchat_send_one($1::uuid, $2::uuid, $3::text, $4::text, $5::bigint, $6::boolean, $7::uuid)`,
            values: [conversationId, userId, randomUUID(), 'hello', null, true, null],
          });
        const answered = (result: { rows: Array<Record<string, unknown>> }) =>
          result.rows.map((row) => [row.r_status, row.r_seq, Object.keys(row).length]);
        expect(answered(await send())).to.deep.equal([[0, 1, 7]]);

        await removalsMigration.up(knex);
        expect(answered(await send())).to.deep.equal([[0, 2, 7]]);
        const { rows } = await client.query<{ r_seq: number; r_removals: number }>({
          text: `SELECT r_seq, r_removals
                 FROM xfchat_send_one($1::uuid, $2::uuid, $3::text, $4::text, $5::bigint, $6::boolean, $7::uuid)`,
          values: [conversationId, userId, randomUUID(), 'hello', null, true, null],
        });
        expect(rows).to.deep.equal([{ r_seq: 3, r_removals: 0 }]);

        await removalsMigration.down(knex);
        expect(answered(await send())).to.deep.equal([[0, 4, 7]]);
      } finally {
        db.connections.release(client);
      }
      await removalsMigration.up(knex);
    });

    it('messages has the columns of the contract', async () => {
      const db = await emptyDatabase();
      await db.migrations.latest();
      const columns = (await db
        .knex('information_schema.columns')
        .where({ table_schema: 'public', table_name: 'messages' })
        .pluck('column_name')) as string[];
      expect(columns).to.include.members(['conversation_id', 'seq', 'sender_id', 'client_msg_id', 'body']);
    });
  });

  describe('message ids', () => {
    /** A user and a group conversation to write messages into, straight into the tables. */
    async function conversationOf(knex: Knex): Promise<{ conversation: string; user: string }> {
      const [user] = await knex('users')
        .insert({ username: 'writer', password_hash: 'x', display_name: 'Writer' })
        .returning<Array<{ id: string }>>('id');
      const [conversation] = await knex('conversations')
        .insert({ type: 'group', title: 'ids', created_by: user!.id })
        .returning<Array<{ id: string }>>('id');
      return { conversation: conversation!.id, user: user!.id };
    }

    /** Inserts `count` messages after seq `from` in one statement; their ids in seq order. */
    async function insertMessages(
      knex: Knex,
      to: { conversation: string; user: string },
      from: number,
      count: number,
    ) {
      const rows = await knex('messages')
        .insert(
          Array.from({ length: count }, (_, i) => ({
            conversation_id: to.conversation,
            sender_id: to.user,
            seq: from + i + 1,
            client_msg_id: `c${from + i + 1}`,
            body: 'hello',
            version: from + i + 1,
          })),
        )
        .returning<Array<{ id: string; seq: string }>>(['id', 'seq']);
      return rows.sort((a, b) => Number(a.seq) - Number(b.seq)).map((row) => row.id);
    }

    async function databaseMillis(knex: Knex): Promise<number> {
      const { rows } = await knex.raw<{ rows: Array<{ ms: string }> }>(
        'SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms',
      );
      return Number(rows[0]!.ms);
    }

    it('new messages get time-ordered ids (UUID version 7); down gives back random ones (version 4)', async () => {
      const db = await emptyDatabase();
      await db.migrations.latest();
      const { knex } = db;
      const to = await conversationOf(knex);

      const before = await databaseMillis(knex);
      const first = await insertMessages(knex, to, 0, 50);
      await new Promise((resolve) => setTimeout(resolve, 5));
      const second = await insertMessages(knex, to, 50, 50);
      const after = await databaseMillis(knex);
      for (const id of [...first, ...second]) {
        expect(id).to.match(UUID_V7);
        expect(millisOfV7(id)).to.be.within(before, after);
      }
      // A later statement's ids sort after an earlier one's: new rows go to the index's right-hand edge.
      expect(second.every((id) => first.every((earlier) => id > earlier))).to.equal(true);

      await messageIdsMigration.down(knex);
      const random = await insertMessages(knex, to, 100, 20);
      for (const id of random) expect(id).to.match(UUID_V4);
      const { rows } = await knex.raw<{ rows: Array<{ n: number }> }>(
        "SELECT count(*)::int AS n FROM pg_proc WHERE proname = 'xfchat_uuid_v7'",
      );
      expect(rows[0]!.n).to.equal(0);

      await messageIdsMigration.up(knex);
      for (const id of await insertMessages(knex, to, 120, 20)) expect(id).to.match(UUID_V7);
    });

    it('gives up after a few seconds when a transaction holds messages, instead of queueing every write behind it', async () => {
      const db = await emptyDatabase();
      await db.migrations.latest();
      const { knex } = db;
      const reader = await knex.transaction();
      try {
        // A long reader: it holds the table's lightest lock until it ends.
        await reader.raw('SELECT count(*) FROM messages');
        const started = Date.now();
        const failed = await knex
          .transaction((trx) => messageIdsMigration.down(trx))
          .then(
            () => undefined,
            (err: { code?: string }) => err.code,
          );
        expect(failed).to.equal('55P03'); // lock_not_available
        expect(Date.now() - started).to.be.within(2500, 15_000);
      } finally {
        await reader.rollback();
      }
      // Nothing of it stayed: the default is still the time-ordered one.
      const to = await conversationOf(knex);
      for (const id of await insertMessages(knex, to, 0, 5)) expect(id).to.match(UUID_V7);
    });

    it('the rollbacks of participant_removals and friend_requests_by_user give up behind a long transaction too', async () => {
      const db = await emptyDatabase();
      await db.migrations.latest();
      const { knex } = db;
      for (const [table, migration] of [
        ['conversations', participantRemovalsMigration],
        ['friend_requests', friendRequestsMigration],
      ] as const) {
        const reader = await knex.transaction();
        try {
          await reader.raw(`SELECT count(*) FROM ${table}`);
          const failed = await knex
            .transaction((trx) => migration.down(trx))
            .then(
              () => undefined,
              (err: { code?: string }) => err.code,
            );
          expect(failed, table).to.equal('55P03'); // lock_not_available
        } finally {
          await reader.rollback();
        }
      }
    });

    it('the version for PostgreSQL before 18 builds version-7 ids in millisecond and sub-millisecond order', async () => {
      const db = await emptyDatabase();
      const { knex } = db;
      // Whichever server the tests run on: this is the function every PostgreSQL before 18 gets.
      await knex.raw(messageIdsMigration.PORTABLE_UUID_V7);
      const generate = async (): Promise<string[]> => {
        const { rows } = await knex.raw<{ rows: Array<{ id: string }> }>(
          'SELECT xfchat_uuid_v7()::text AS id FROM generate_series(1, 200)',
        );
        return rows.map((row) => row.id);
      };
      const before = await databaseMillis(knex);
      const first = await generate();
      await new Promise((resolve) => setTimeout(resolve, 5));
      const second = await generate();
      const after = await databaseMillis(knex);
      expect(new Set([...first, ...second]).size).to.equal(400);
      for (const id of [...first, ...second]) {
        expect(id).to.match(UUID_V7);
        expect(millisOfV7(id)).to.be.within(before, after);
      }
      expect(second.every((id) => first.every((earlier) => id > earlier))).to.equal(true);
      // The 12 bits after the version are the fraction of the millisecond: ids a microsecond or more apart are in
      // order, so within one statement the prefixes (time, version, fraction) never go backwards.
      const prefixes = first.map((id) => id.replaceAll('-', '').slice(0, 16));
      expect(prefixes).to.deep.equal([...prefixes].sort());
    });
  });

  describe('concurrency', () => {
    it('two nodes migrating a fresh database at once both succeed, and each migration runs once', async () => {
      const url = await createEmptyDatabase();
      const a = track(openMigrated(url));
      const b = track(openMigrated(url));
      const [ra, rb] = await Promise.all([a.migrations.latest(), b.migrations.latest()]);
      const names = await bundledMigrationNames();
      // The advisory lock serializes them: one applies everything, the other finds nothing to do.
      expect([...ra.newlyApplied, ...rb.newlyApplied].sort()).to.deep.equal(names);
      expect([ra.newlyApplied.length, rb.newlyApplied.length]).to.include(0);
      expect(ra.status).to.deep.equal({ applied: names, pending: [], newer: [] });
      expect(rb.status).to.deep.equal({ applied: names, pending: [], newer: [] });
      const recorded = (await a.knex('knex_migrations').pluck('name')) as string[];
      expect(recorded.sort()).to.deep.equal(names);
      expect(await existingTables(a)).to.deep.equal([...CONTRACT_TABLES].sort());
    });

    it('releases the lock: a later migrateLatest on another connection does not wait', async () => {
      const url = await createEmptyDatabase();
      const a = track(openMigrated(url));
      await a.migrations.latest();
      const b = track(openMigrated(url));
      const { newlyApplied } = await b.migrations.latest();
      expect(newlyApplied).to.deep.equal([]);
      // The lock session ends with the migration; the server drops its lock as that backend exits.
      await waitFor(
        async () => {
          const held = await a.knex.raw<{ rows: Array<{ n: number }> }>(
            "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
          );
          return held.rows[0]!.n === 0;
        },
        { what: 'the migration advisory lock to be released' },
      );
    });
  });
});
