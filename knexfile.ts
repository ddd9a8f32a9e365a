/**
 * Knex configuration for those who prefer the knex CLI. The server itself migrates at startup and
 * `npm run migrate -- latest|rollback|status` does the same through lib/migrations.ts; both use this schema and the
 * same extension-free migration names, so the three agree. Run the CLI through tsx (docs/operations.md):
 * `node --import tsx node_modules/knex/bin/cli.js --knexfile knexfile.ts migrate:status`.
 */
import type { Knex } from 'knex';
import { loadDatabaseConfig } from './lib/config.js';
import { pgConnectionConfig } from './lib/db.js';
import { BUNDLED_MIGRATIONS_DIR, knexCliMigrations } from './lib/migrations.js';

const database = loadDatabaseConfig();

const config: Knex.Config = {
  client: 'pg',
  connection: pgConnectionConfig(database, 'xfchat-knex-cli') as Knex.PgConnectionConfig,
  pool: { min: 0, max: 2 },
  migrations: knexCliMigrations(database.migrationsDir ?? BUNDLED_MIGRATIONS_DIR),
};

export default config;
