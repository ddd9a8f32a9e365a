import { createDatabase } from '../../lib/db.js';
import { createMigrator } from '../../lib/migrations.js';
import { loadDatabaseConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { adminQuery, startTestPostgres, stopTestPostgres, TEMPLATE_DB, urlFor } from './postgres.js';

/** Starts the run's PostgreSQL and migrates the template every test database is cloned from. */
export async function mochaGlobalSetup(): Promise<void> {
  await startTestPostgres();
  await adminQuery(`CREATE DATABASE "${TEMPLATE_DB}"`);
  const config = loadDatabaseConfig({ DATABASE_URL: urlFor(TEMPLATE_DB) });
  const db = createDatabase(config, createLogger('silent'));
  try {
    await createMigrator(db.knex, config, createLogger('silent')).latest();
  } finally {
    await db.close();
  }
}

export async function mochaGlobalTeardown(): Promise<void> {
  await stopTestPostgres();
}
