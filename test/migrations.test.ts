import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import { loadDatabaseConfig } from '../lib/config.js';
import { createDatabase, type Database } from '../lib/db.js';
import { BUNDLED_MIGRATIONS_DIR, createMigrator, type Migrator } from '../lib/migrations.js';
import { createLogger } from '../lib/logger.js';
import * as sessionsMigration from '../migrations/20261130000100_sessions.js';
import { createEmptyDatabase } from './helpers/postgres.js';
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
];

/** A database connection and the migrator over it. */
type Opened = Database & { migrations: Migrator };

function open(url: string): Opened {
  const config = loadDatabaseConfig({ DATABASE_URL: url });
  const logger = createLogger('silent');
  const db = createDatabase(config, logger);
  return Object.assign(db, { migrations: createMigrator(db.knex, config, logger) });
}

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
    return track(open(await createEmptyDatabase()));
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
      expect(first.status).to.deep.equal({ applied: names, pending: [] });
      expect(await existingTables(db)).to.deep.equal([...CONTRACT_TABLES].sort());

      // One batch: every migration rolled back, newest first.
      expect(await db.migrations.rollback()).to.deep.equal([...names].reverse());
      expect(await existingTables(db)).to.deep.equal([]);
      expect(await db.migrations.status()).to.deep.equal({ applied: [], pending: names });

      const again = await db.migrations.latest();
      expect(again.newlyApplied).to.deep.equal(names);
      expect(await existingTables(db)).to.deep.equal([...CONTRACT_TABLES].sort());
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

  describe('concurrency', () => {
    it('two nodes migrating a fresh database at once both succeed, and each migration runs once', async () => {
      const url = await createEmptyDatabase();
      const a = track(open(url));
      const b = track(open(url));
      const [ra, rb] = await Promise.all([a.migrations.latest(), b.migrations.latest()]);
      const names = await bundledMigrationNames();
      // The advisory lock serializes them: one applies everything, the other finds nothing to do.
      expect([...ra.newlyApplied, ...rb.newlyApplied].sort()).to.deep.equal(names);
      expect([ra.newlyApplied.length, rb.newlyApplied.length]).to.include(0);
      expect(ra.status).to.deep.equal({ applied: names, pending: [] });
      expect(rb.status).to.deep.equal({ applied: names, pending: [] });
      const recorded = (await a.knex('knex_migrations').pluck('name')) as string[];
      expect(recorded.sort()).to.deep.equal(names);
      expect(await existingTables(a)).to.deep.equal([...CONTRACT_TABLES].sort());
    });

    it('releases the lock: a later migrateLatest on another connection does not wait', async () => {
      const url = await createEmptyDatabase();
      const a = track(open(url));
      await a.migrations.latest();
      const b = track(open(url));
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
