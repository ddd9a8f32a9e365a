import type { Knex } from 'knex';
import { loadDatabaseConfig } from '../../lib/config.js';
import { createDatabase, type Database } from '../../lib/db.js';
import { createLogger } from '../../lib/logger.js';
import { createMigrator, type Migrator } from '../../lib/migrations.js';

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
