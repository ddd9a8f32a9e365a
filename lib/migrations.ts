import path from 'node:path';
import { readdir } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Knex } from 'knex';
import pg from 'pg';
import type { DatabaseConfig } from './config.js';
import { pgConnectionConfig } from './db.js';
import type { Logger } from './logger.js';
import { StartupError } from './startupErrors.js';
import { LOADABLE_MIGRATION_EXTENSIONS, migrationName } from './migrationFiles.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const BUNDLED_MIGRATIONS_DIR = path.resolve(here, '..', 'migrations');

/** Any key works as long as every node uses the same one: it serializes concurrent startups' migrations. */
export const MIGRATION_LOCK_KEY = 727_246_001;

export interface MigrationStatus {
  applied: string[];
  pending: string[];
  /**
   * Applied migrations this release does not have: a newer release migrated the database (a rolling upgrade,
   * or this release's code rolled back before the schema). Releases keep their migrations compatible with the
   * previous release, so this one runs on it; rolling them back needs the release that has them.
   */
  newer: string[];
}

/** The schema's migrations (migrations/), applied through the app's knex. */
export interface Migrator {
  /** Applies pending migrations under an advisory lock, so nodes starting together do not race. */
  /**
   * `stop`: a stop asked for while starting (SIGTERM): the wait for another holder's migration lock gives up, with a
   * {@link StartupError}, instead of holding the node until that holder is done.
   */
  latest(stop?: AbortSignal): Promise<{ newlyApplied: string[]; status: MigrationStatus }>;
  status(): Promise<MigrationStatus>;
  /** Rolls back the last batch, newest migration first. */
  rollback(): Promise<string[]>;
  /** The migrations of the last applied batch (what `rollback` would undo), newest first. */
  lastBatch(): Promise<string[]>;
  /**
   * Why `rollback` would refuse the last batch (it holds migrations of a newer release, which only that release can
   * undo), or undefined if it would roll it back.
   */
  rollbackRefusal(): Promise<string | undefined>;
}

/** A migration as Knex lists it: its name (without extension) under `file`, where the knex CLI prints it from. */
interface MigrationEntry {
  file: string;
}

interface MigrationModule {
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
}

/**
 * Lists migrations by name without extension, so a database migrated from TypeScript (dev, tests) and one
 * migrated by the built JavaScript (production) record the same names. A folder may hold `.js` migrations, and
 * `.ts` ones where this process can load them ({@link LOADABLE_MIGRATION_EXTENSIONS}); of two files of one name, the
 * one of this process's own kind is run (a migration beside its compiled copy).
 */
class FolderMigrationSource implements Knex.MigrationSource<MigrationEntry> {
  /** Each migration's file, by name, as last listed. */
  private files = new Map<string, string>();

  constructor(private readonly directory: string) {}

  /** The migrations' names, sorted. */
  async names(): Promise<string[]> {
    const rank = (file: string) => LOADABLE_MIGRATION_EXTENSIONS.indexOf(path.extname(file));
    const files = new Map<string, string>();
    for (const file of await readdir(this.directory)) {
      const migration = migrationName(file);
      if (migration === undefined) continue;
      const listed = files.get(migration.name);
      if (listed === undefined || rank(file) < rank(listed)) files.set(migration.name, file);
    }
    this.files = files;
    return [...files.keys()].sort();
  }

  async getMigrations(): Promise<MigrationEntry[]> {
    return (await this.names()).map((name) => ({ file: name }));
  }

  /**
   * With Knex's list check off, Knex looks up a migration the database has applied and the folder has not (a
   * newer release's, in a rollback by the knex CLI) and hands over `undefined`: refused with the reason.
   */
  getMigrationName(migration: MigrationEntry | undefined): string {
    if (migration === undefined) throw this.notHere();
    return migration.file;
  }

  async getMigration(migration: MigrationEntry | undefined): Promise<MigrationModule> {
    if (migration === undefined) throw this.notHere();
    if (!this.files.has(migration.file)) await this.names();
    const file = this.files.get(migration.file);
    if (file === undefined) throw new Error(`migration ${migration.file} is not in ${this.directory}`);
    return (await import(pathToFileURL(path.join(this.directory, file)).href)) as MigrationModule;
  }

  private notHere(): Error {
    return new Error(
      `the database has migrations that are not in ${this.directory} (a newer release's): roll them back with the release that applied them`,
    );
  }
}

const MIGRATIONS_TABLE = 'knex_migrations';

function migrationConfig(source: FolderMigrationSource): Knex.MigratorConfig {
  return {
    migrationSource: source,
    tableName: MIGRATIONS_TABLE,
    // Knex refuses to migrate (or to start at all) when the database has applied migrations that are not in the
    // folder: a node of the previous release could then not start, nor restart, once the first node of a newer
    // one had migrated. Those are reported as `newer` instead (see MigrationStatus).
    disableMigrationsListValidation: true,
  };
}

/**
 * The migrations of `directory` as `xfchat migrate` and the server see them (names without extension, the same
 * table, newer releases' migrations allowed), for the knex CLI (knexfile.ts).
 */
export function knexCliMigrations(directory: string): Knex.MigratorConfig {
  return migrationConfig(new FolderMigrationSource(directory));
}

/**
 * `onLockWait`: called when the migration lock is held elsewhere and the migrator waits for it (the CLI says so on
 * stderr; a node logs it).
 */
export function createMigrator(
  knex: Knex,
  config: DatabaseConfig,
  logger: Logger,
  onLockWait: () => void = () =>
    logger.info('waiting for the migration lock (another node or `xfchat migrate` holds it)'),
): Migrator {
  const source = new FolderMigrationSource(config.migrationsDir ?? BUNDLED_MIGRATIONS_DIR);
  const migrations = migrationConfig(source);

  async function withMigrationLock<T>(work: () => Promise<T>, stop?: AbortSignal): Promise<T> {
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
    let ended: Promise<void> | undefined;
    // Ending the session releases the lock, or ends the wait for it.
    const end = () => (ended ??= lockClient.end());
    const stopped = () =>
      new StartupError(
        'stopped by a signal while waiting for the migration lock (another node or xfchat migrate holds it): nothing was started',
      );
    const onStop = () => {
      end().catch((err: unknown) => logger.warn({ err }, 'ending the migration lock connection failed'));
    };
    try {
      // The wait is as long as the migration takes: neither a statement_timeout nor a lock_timeout of the
      // database's or the role's ends it (pg_advisory_lock() obeys both).
      await lockClient.query('SET statement_timeout = 0');
      await lockClient.query('SET lock_timeout = 0');
      const { rows } = await lockClient.query<{ locked: boolean }>(
        'SELECT pg_try_advisory_lock($1) AS locked',
        [MIGRATION_LOCK_KEY],
      );
      if (!rows[0]?.locked) {
        onLockWait();
        if (stop?.aborted) throw stopped();
        stop?.addEventListener('abort', onStop, { once: true });
        try {
          await lockClient.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
        } catch (err) {
          if (stop?.aborted) throw stopped();
          throw err;
        } finally {
          stop?.removeEventListener('abort', onStop);
        }
      }
      await freeStaleKnexLock();
      return await work();
    } finally {
      await end();
    }
  }

  /**
   * Knex's own lock row, left set by a migration process that stopped half-way (a rollback interrupted by Ctrl-C:
   * Knex commits the row before the first `down()` and clears it after the last), after which every `latest` and
   * every node's start refused with "Migration table is already locked". Holding the advisory lock, this process
   * is the only xfchat one migrating, so the row is stale: cleared. (The knex CLI, knexfile.ts, takes no advisory
   * lock: run it with no node starting and no `xfchat migrate`.)
   */
  async function freeStaleKnexLock(): Promise<void> {
    const lockTable = `${MIGRATIONS_TABLE}_lock`;
    if (!(await knex.schema.hasTable(lockTable))) return;
    const freed = await knex(lockTable).where('is_locked', 1).update({ is_locked: 0 });
    if (freed > 0)
      logger.warn({ table: lockTable }, 'cleared the migration lock a stopped migration left set');
  }

  async function lastBatch(): Promise<string[]> {
    if (!(await knex.schema.hasTable('knex_migrations'))) return [];
    const rows = await knex<{ name: string }>('knex_migrations')
      .select('name')
      .where('batch', knex('knex_migrations').max('batch'))
      .orderBy('id', 'desc');
    return rows.map((row) => row.name);
  }

  async function rollbackRefusal(): Promise<string | undefined> {
    const newer = (await status()).newer;
    const unknown = (await lastBatch()).filter((name) => newer.includes(name));
    if (unknown.length === 0) return undefined;
    return `the last batch has migrations this release does not have (${unknown.join(', ')}): roll them back with the release that applied them`;
  }

  async function status(): Promise<MigrationStatus> {
    // Knex's list() creates its two tables when they are missing: a database nothing migrated yet is answered
    // without it, so that `xfchat migrate status` writes nothing (and works with a read-only role).
    if (!(await knex.schema.hasTable('knex_migrations'))) {
      return { applied: [], pending: await source.names(), newer: [] };
    }
    const [completed, pending] = (await knex.migrate.list(migrations)) as [
      Array<{ name: string }>,
      MigrationEntry[],
    ];
    const applied = completed.map((m) => m.name);
    const known = new Set(await source.names());
    return {
      applied,
      pending: pending.map((m) => m.file),
      newer: applied.filter((name) => !known.has(name)),
    };
  }

  return {
    latest(stop) {
      return withMigrationLock(async () => {
        const [, newlyApplied] = (await knex.migrate.latest(migrations)) as [number, string[]];
        const now = await status();
        if (now.newer.length > 0) {
          logger.warn(
            { newer: now.newer },
            'the database has migrations of a newer release: running on it (releases keep their migrations compatible with the previous one)',
          );
        }
        return { newlyApplied, status: now };
      }, stop);
    },
    status,
    lastBatch,
    rollbackRefusal,
    rollback() {
      return withMigrationLock(async () => {
        // Nothing applied (a database nothing migrated yet): Knex's rollback would create its two tables first.
        if ((await lastBatch()).length === 0) return [];
        const refusal = await rollbackRefusal();
        if (refusal !== undefined) throw new Error(refusal);
        const [, rolledBack] = (await knex.migrate.rollback(migrations)) as [number, string[]];
        return rolledBack;
      });
    },
  };
}
