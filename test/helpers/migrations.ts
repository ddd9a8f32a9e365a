import type { Knex } from 'knex';
import pg from 'pg';
import { loadDatabaseConfig } from '../../lib/config.js';
import { createDatabase, type Database } from '../../lib/db.js';
import { createLogger } from '../../lib/logger.js';
import { createMigrator, MIGRATION_LOCK_KEY, type Migrator } from '../../lib/migrations.js';
import { waitFor } from './waitFor.js';

/** A database connection and the migrator over it. */
export type Opened = Database & { migrations: Migrator };

/** Opens `url` with the migrations of `migrationsDir` (the bundled ones unless given). */
export function openMigrated(url: string, migrationsDir?: string): Opened {
  const config = loadDatabaseConfig({
    DATABASE_URL: url,
    ...(migrationsDir === undefined ? {} : { MIGRATIONS_DIR: migrationsDir }),
  });
  const logger = createLogger('silent');
  const db = createDatabase(config, logger);
  return Object.assign(db, { migrations: createMigrator(db.knex, config, logger) });
}

/** A user and a group of theirs, with the counters its messages will need, written straight to the tables. */
export async function groupOfOne(
  knex: Knex,
  counters: { lastSeq: number; version: number },
): Promise<{ userId: string; conversationId: string }> {
  const [user] = await knex('users')
    .insert({ username: 'writer', password_hash: 'x', display_name: 'Writer' })
    .returning<Array<{ id: string }>>('id');
  const [conversation] = await knex('conversations')
    .insert({
      type: 'group',
      title: 't',
      created_by: user!.id,
      last_seq: counters.lastSeq,
      version: counters.version,
    })
    .returning<Array<{ id: string }>>('id');
  await knex('conversation_participants').insert({
    conversation_id: conversation!.id,
    user_id: user!.id,
    role: 'owner',
  });
  return { userId: user!.id, conversationId: conversation!.id };
}

/** The migration lock, held by a session of its own: {@link holdMigrationLock}. */
export interface MigrationLockHold {
  /** Until a session of the database waits for the lock. */
  waiterSeen(what: string): Promise<void>;
  /** Lets the lock go; the session stays. */
  release(): Promise<void>;
  /** Ends the session (and the lock, if still held). */
  end(): Promise<void>;
}

/** Takes the migration lock of `url`'s database in a session of its own, as a node or `xfchat migrate` would. */
export async function holdMigrationLock(url: string): Promise<MigrationLockHold> {
  const holder = new pg.Client({ connectionString: url });
  await holder.connect();
  try {
    await holder.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
  } catch (err) {
    await holder.end();
    throw err;
  }
  const database = new URL(url).pathname.slice(1);
  return {
    waiterSeen: (what) =>
      waitFor(
        async () =>
          (
            await holder.query<{ n: number }>(
              `SELECT count(*)::int AS n FROM pg_stat_activity
               WHERE datname = $1 AND wait_event_type = 'Lock' AND wait_event = 'advisory'`,
              [database],
            )
          ).rows[0]!.n > 0,
        { what },
      ).then(() => undefined),
    release: async () => {
      await holder.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
    },
    end: () => holder.end(),
  };
}
