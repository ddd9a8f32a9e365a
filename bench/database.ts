import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { loadDatabaseConfig } from '../lib/config.js';
import { JWT_SECRET_SETTING } from '../lib/auth/secretFingerprint.js';
import { createDatabase } from '../lib/db.js';
import { createMigrator } from '../lib/migrations.js';
import { startEmbeddedPostgres, type EmbeddedPostgresHandle } from '../lib/dev/embeddedPostgres.js';
import { createLogger } from '../lib/logger.js';

/** The PostgreSQL every phase of one bench run shares: the baselines and XFChat measure the same server. */
export interface BenchDatabase {
  /** The migrated database the servers and baselines use. */
  readonly url: string;
  /** The postmaster's pid when it runs on this machine (embedded), for CPU accounting. */
  readonly postmasterPid: number | undefined;
  /** True when pg_stat_statements can count queries. */
  readonly statStatements: boolean;
  /** Server version and the settings that decide commit cost. */
  readonly settings: Record<string, string>;
  /** Runs one statement on a short-lived connection (bindings only). */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<R[]>;
  close(): Promise<void>;
}

const REPORTED_SETTINGS = [
  'server_version',
  'max_connections',
  'shared_buffers',
  'synchronous_commit',
  'fsync',
  'autovacuum',
  'wal_sync_method',
  'commit_delay',
  'full_page_writes',
];

/**
 * Starts an embedded PostgreSQL in a temporary folder (removed at close), or uses BENCH_DATABASE_URL as is, then
 * migrates it with the project's own migrations. pg_stat_statements is preloaded in the embedded server. If
 * anything fails once the embedded server runs (a migration, a Ctrl-C that stopped PostgreSQL meanwhile), the
 * server is stopped and the folder removed before the error is thrown: the caller has nothing to close.
 */
export async function openBenchDatabase(
  externalUrl: string | undefined,
  log: (line: string) => void,
): Promise<BenchDatabase> {
  let embedded: EmbeddedPostgresHandle | undefined;
  let dataRoot: string | undefined;
  let url: string;
  let postmasterPid: number | undefined;
  if (externalUrl) {
    url = externalUrl;
  } else {
    dataRoot = await mkdtemp(path.join(os.tmpdir(), 'xfchat-bench-pg-'));
    // mkdtemp makes it 0700; PostgreSQL runs as its own OS user when we are root and must reach data/.
    await chmod(dataRoot, 0o755);
    const dataDir = path.join(dataRoot, 'data');
    log(`starting embedded PostgreSQL in ${dataDir}`);
    try {
      embedded = await startEmbeddedPostgres({
        dataDir,
        persistent: false,
        // Two nodes at pool 50 plus the baselines' connections need more than the default 100. No autovacuum:
        // the bench vacuums before each phase instead (vacuumWrittenTables), so that no maintenance of an earlier
        // phase's rows lands inside a later phase's measured window.
        postgresFlags: [
          '-c',
          'shared_preload_libraries=pg_stat_statements',
          '-c',
          'max_connections=300',
          '-c',
          'autovacuum=off',
        ],
      });
    } catch (err) {
      await rm(dataRoot, { recursive: true, force: true });
      throw err;
    }
    url = embedded.adminUrl;
  }
  const stop = async () => {
    if (embedded) await embedded.stop();
    if (dataRoot) await rm(dataRoot, { recursive: true, force: true });
  };
  try {
    if (dataRoot) {
      const pidFile = await readFile(path.join(dataRoot, 'data', 'postmaster.pid'), 'utf8');
      postmasterPid = Number(pidFile.split('\n')[0]);
    }
    return await prepare(url, postmasterPid, stop, log);
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Migrates the database at `url` and reads what the bench reports of it; `stop` is what closing it does (stops the
 * embedded server and removes its folder; nothing for BENCH_DATABASE_URL).
 */
async function prepare(
  url: string,
  postmasterPid: number | undefined,
  stop: () => Promise<void>,
  log: (line: string) => void,
): Promise<BenchDatabase> {
  const databaseConfig = loadDatabaseConfig({ DATABASE_URL: url });
  const db = createDatabase(databaseConfig, createLogger('warn'));
  try {
    await createMigrator(db.knex, databaseConfig, createLogger('warn')).latest();
    // The bench's nodes take a JWT_SECRET of their own each run (bench/nodes.ts); a node with another secret than
    // the one a database records refuses to start, so a BENCH_DATABASE_URL forgets the last run's.
    await db.knex('cluster_settings').where('name', JWT_SECRET_SETTING).delete();
  } finally {
    await db.close();
  }

  async function query<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      return (await client.query<R>(sql, params)).rows;
    } finally {
      await client.end();
    }
  }

  let statStatements = false;
  try {
    await query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    await query('SELECT pg_stat_statements_reset()');
    statStatements = true;
  } catch (err) {
    log(`pg_stat_statements unavailable (${(err as Error).message}); query counts will be round-trips`);
  }

  const settings: Record<string, string> = {};
  const rows = await query<{ name: string; setting: string; unit: string | null }>(
    'SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1::text[])',
    [REPORTED_SETTINGS],
  );
  for (const row of rows) settings[row.name] = row.unit ? `${row.setting} ${row.unit}` : row.setting;

  let closing: Promise<void> | undefined;
  return {
    url,
    postmasterPid,
    statStatements,
    settings,
    query,
    close() {
      closing ??= stop();
      return closing;
    },
  };
}

/** The tables every phase writes (messages and their conversations' seqs and read markers). */
export const WRITTEN_TABLES = ['messages', 'conversations', 'conversation_participants'] as const;

/**
 * `VACUUM (ANALYZE)` of the tables the phases write, run before each phase: the dead row versions and the new rows
 * of the earlier phases are dealt with outside every measured window, and each phase starts from a database in the
 * same state (as pgbench vacuums its tables before a run). With autovacuum on, a worker visits the database every
 * `autovacuum_naptime` and vacuumed `messages` for about a second in some phases' windows and not in others'.
 * Answers how long it took, in ms.
 */
export async function vacuumWrittenTables(db: BenchDatabase): Promise<number> {
  const started = performance.now();
  await db.query(`VACUUM (ANALYZE) ${WRITTEN_TABLES.join(', ')}`);
  return performance.now() - started;
}

/** Total statements PostgreSQL executed in `url`'s database so far (pg_stat_statements), or undefined. */
export async function statementCount(db: BenchDatabase): Promise<number | undefined> {
  if (!db.statStatements) return undefined;
  const rows = await db.query<{ calls: string | null }>(
    `SELECT sum(calls)::text AS calls FROM pg_stat_statements s
       JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()`,
  );
  return Number(rows[0]?.calls ?? 0);
}

/** Cumulative statement counts of the bench database, from pg_stat_statements (updated as statements end). */
export interface StatementCounters {
  /**
   * `SELECT pg_notify(...)` statements: XFChat's announcements and control events (a statement may carry
   * several), and Socket.IO broadcasts through @socket.io/postgres-adapter (one each).
   */
  notify: number;
  /**
   * Write transactions: `COMMIT`s (an explicit transaction, as N and older XFChat trees issue) plus calls of
   * `xfchat_write()` and of `xfchat_send_one()` (a group commit of one send), each a whole group commit in
   * autocommit.
   */
  commit: number;
  /** Statements that insert into messages: one per transaction on the writer's fast path, one per batch otherwise. */
  insert: number;
  total: number;
  /** WAL written by the whole server so far (`pg_current_wal_insert_lsn()`, in bytes): commit records included. */
  walBytes: number;
  /**
   * Full-page images in the WAL of the statements counted (pg_stat_statements' `wal_fpi`): the first change of
   * a page after a checkpoint logs the whole 8 kB page.
   */
  fullPageImages: number;
}

/** The counters now, or undefined without pg_stat_statements. Deltas around a phase give per-message costs. */
export async function statementCounters(db: BenchDatabase): Promise<StatementCounters | undefined> {
  if (!db.statStatements) return undefined;
  const rows = await db.query<Record<keyof StatementCounters, string>>(
    `SELECT coalesce(sum(calls) FILTER (WHERE query ILIKE '%pg_notify%'), 0)::text AS notify,
            coalesce(sum(calls) FILTER (WHERE query = 'COMMIT' OR query ~* 'FROM xfchat_(write|send_one)\\('), 0)::text
              AS commit,
            coalesce(sum(calls) FILTER (WHERE query ILIKE '%INSERT INTO messages%' OR query ~* 'FROM xfchat_(write|send_one)\\('),
              0)::text AS insert,
            coalesce(sum(calls), 0)::text AS total,
            (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::text AS "walBytes",
            coalesce(sum(wal_fpi), 0)::text AS "fullPageImages"
       FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
      WHERE d.datname = current_database()`,
  );
  const row = rows[0];
  return {
    notify: Number(row?.notify ?? 0),
    commit: Number(row?.commit ?? 0),
    insert: Number(row?.insert ?? 0),
    total: Number(row?.total ?? 0),
    walBytes: Number(row?.walBytes ?? 0),
    fullPageImages: Number(row?.fullPageImages ?? 0),
  };
}

/** One row of the statements that took the most database time over the run. */
export interface TopStatement {
  query: string;
  calls: number;
  totalMs: number;
  meanMs: number;
}

/** The `limit` statements with the most total execution time in the bench database (pg_stat_statements). */
export async function topStatements(db: BenchDatabase, limit = 12): Promise<TopStatement[]> {
  if (!db.statStatements) return [];
  const rows = await db.query<{ query: string; calls: string; total: number; mean: number }>(
    `SELECT query, calls::text AS calls, total_exec_time AS total, mean_exec_time AS mean
       FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
      WHERE d.datname = current_database()
      ORDER BY total_exec_time DESC LIMIT $1`,
    [limit],
  );
  return rows.map((r) => ({
    query: r.query.replace(/\s+/g, ' ').slice(0, 160),
    calls: Number(r.calls),
    totalMs: Math.round(r.total),
    meanMs: Math.round(r.mean * 1000) / 1000,
  }));
}
