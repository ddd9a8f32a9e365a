import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import { loadDatabaseConfig } from '../lib/config.js';
import { BUNDLED_MIGRATIONS_DIR, createDatabase, type Database } from '../lib/db.js';
import { createLogger } from '../lib/logger.js';
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
];

function open(url: string): Database {
  return createDatabase(loadDatabaseConfig({ DATABASE_URL: url }), createLogger('silent'));
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

  function track(db: Database): Database {
    opened.push(db);
    return db;
  }

  after(async () => {
    await Promise.all(opened.map((db) => db.close()));
  });

  describe('latest, rollback, latest on an empty database', () => {
    let db: Database;
    before(async () => {
      db = track(open(await createEmptyDatabase()));
    });

    it('starts with no tables and every migration pending', async () => {
      expect(await existingTables(db)).to.deep.equal([]);
      const status = await db.migrationStatus();
      expect(status.applied).to.deep.equal([]);
      expect(status.pending).to.deep.equal(await bundledMigrationNames());
    });

    it('latest creates every contract table', async () => {
      const { newlyApplied, status } = await db.migrateLatest();
      const names = await bundledMigrationNames();
      expect(newlyApplied).to.deep.equal(names);
      expect(status).to.deep.equal({ applied: names, pending: [] });
      expect(await existingTables(db)).to.deep.equal([...CONTRACT_TABLES].sort());
    });

    it('messages has the columns of the contract', async () => {
      const columns = (await db
        .knex('information_schema.columns')
        .select('column_name')
        .where({ table_schema: 'public', table_name: 'messages' })) as Array<{ column_name: string }>;
      expect(columns.map((c) => c.column_name)).to.include.members([
        'conversation_id',
        'seq',
        'sender_id',
        'client_msg_id',
        'body',
      ]);
    });

    it('migrationStatus records names without a file extension', async () => {
      const status = await db.migrationStatus();
      expect(status.pending).to.deep.equal([]);
      expect(status.applied.length).to.be.greaterThan(0);
      for (const name of status.applied) {
        expect(name).to.match(/^\d{14}_[a-z0-9_]+$/);
        expect(path.extname(name)).to.equal('');
      }
      const recorded = (await db.knex('knex_migrations').pluck('name')) as string[];
      expect(recorded.sort()).to.deep.equal(status.applied);
    });

    it('latest again is a no-op', async () => {
      const { newlyApplied, status } = await db.migrateLatest();
      expect(newlyApplied).to.deep.equal([]);
      expect(status.pending).to.deep.equal([]);
    });

    it('rollback drops every contract table', async () => {
      const rolledBack = await db.rollback();
      expect(rolledBack).to.deep.equal(await bundledMigrationNames());
      expect(await existingTables(db)).to.deep.equal([]);
      const status = await db.migrationStatus();
      expect(status.applied).to.deep.equal([]);
      expect(status.pending).to.deep.equal(await bundledMigrationNames());
    });

    it('latest after rollback recreates them', async () => {
      const { newlyApplied } = await db.migrateLatest();
      expect(newlyApplied).to.deep.equal(await bundledMigrationNames());
      expect(await existingTables(db)).to.deep.equal([...CONTRACT_TABLES].sort());
    });
  });

  describe('concurrency', () => {
    it('two nodes migrating a fresh database at once both succeed, and each migration runs once', async () => {
      const url = await createEmptyDatabase();
      const a = track(open(url));
      const b = track(open(url));
      const [ra, rb] = await Promise.all([a.migrateLatest(), b.migrateLatest()]);
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
      await a.migrateLatest();
      const b = track(open(url));
      const { newlyApplied } = await b.migrateLatest();
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
