import path from 'node:path';
import { readdir } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Knex } from 'knex';
import pg from 'pg';
import type { DatabaseConfig } from './config.js';
import { pgConnectionConfig } from './db.js';
import type { Logger } from './logger.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** Running from TypeScript (tsx) or from the built JavaScript in dist/: migrations share our extension. */
const ownExtension = path.extname(fileURLToPath(import.meta.url));
export const BUNDLED_MIGRATIONS_DIR = path.resolve(here, '..', 'migrations');

/** Any key works as long as every node uses the same one: it serializes concurrent startups' migrations. */
const MIGRATION_LOCK_KEY = 727_246_001;

export interface MigrationStatus {
  applied: string[];
  pending: string[];
}

/** The schema's migrations (migrations/), applied through the app's knex. */
export interface Migrator {
  /** Applies pending migrations under an advisory lock, so nodes starting together do not race. */
  latest(): Promise<{ newlyApplied: string[]; status: MigrationStatus }>;
  status(): Promise<MigrationStatus>;
  /** Rolls back the last batch, newest migration first. */
  rollback(): Promise<string[]>;
  /** The migrations of the last applied batch (what `rollback` would undo), newest first. */
  lastBatch(): Promise<string[]>;
}

interface MigrationModule {
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
}

/**
 * Lists migrations by name without extension, so a database migrated from TypeScript (dev, tests) and one
 * migrated by the built JavaScript (production) record the same names.
 */
class FolderMigrationSource implements Knex.MigrationSource<string> {
  constructor(private readonly directory: string) {}

  async getMigrations(): Promise<string[]> {
    const files = await readdir(this.directory);
    return files
      .filter((f) => f.endsWith(ownExtension) && !f.endsWith('.d.ts'))
      .map((f) => f.slice(0, -ownExtension.length))
      .sort();
  }

  getMigrationName(migration: string): string {
    return migration;
  }

  async getMigration(migration: string): Promise<MigrationModule> {
    const url = pathToFileURL(path.join(this.directory, `${migration}${ownExtension}`)).href;
    return (await import(url)) as MigrationModule;
  }
}

function migrationConfig(config: DatabaseConfig): Knex.MigratorConfig {
  return {
    migrationSource: new FolderMigrationSource(config.migrationsDir ?? BUNDLED_MIGRATIONS_DIR),
    tableName: 'knex_migrations',
  };
}

export function createMigrator(knex: Knex, config: DatabaseConfig, logger: Logger): Migrator {
  const migrations = migrationConfig(config);

  async function withMigrationLock<T>(work: () => Promise<T>): Promise<T> {
    // A connection of its own holds the session-level lock while knex migrates through the pool.
    // Waiting for another node's migrations is not a slow statement: neither PostgreSQL's statement_timeout nor
    // the driver's query timeout (DB_STATEMENT_TIMEOUT_MS) applies to this connection.
    const lockClient = new pg.Client({
      ...pgConnectionConfig(config, 'xfchat-migrate-lock'),
      statement_timeout: undefined,
      query_timeout: undefined,
    });
    lockClient.on('error', (err) => logger.warn({ err }, 'migration lock connection error'));
    await lockClient.connect();
    try {
      await lockClient.query('SET statement_timeout = 0');
      const { rows } = await lockClient.query<{ locked: boolean }>(
        'SELECT pg_try_advisory_lock($1) AS locked',
        [MIGRATION_LOCK_KEY],
      );
      if (!rows[0]?.locked) {
        logger.info('waiting for the migration lock (another node or `xfchat migrate` holds it)');
        await lockClient.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
      }
      return await work();
    } finally {
      // Ending the session releases the lock.
      await lockClient.end();
    }
  }

  async function status(): Promise<MigrationStatus> {
    const [completed, pending] = (await knex.migrate.list(migrations)) as [Array<{ name: string }>, string[]];
    return { applied: completed.map((m) => m.name), pending };
  }

  return {
    latest() {
      return withMigrationLock(async () => {
        const [, newlyApplied] = (await knex.migrate.latest(migrations)) as [number, string[]];
        return { newlyApplied, status: await status() };
      });
    },
    status,
    async lastBatch() {
      if (!(await knex.schema.hasTable('knex_migrations'))) return [];
      const rows = await knex<{ name: string }>('knex_migrations')
        .select('name')
        .where('batch', knex('knex_migrations').max('batch'))
        .orderBy('id', 'desc');
      return rows.map((row) => row.name);
    },
    rollback() {
      return withMigrationLock(async () => {
        const [, rolledBack] = (await knex.migrate.rollback(migrations)) as [number, string[]];
        return rolledBack;
      });
    },
  };
}
