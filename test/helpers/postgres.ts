import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Knex } from 'knex';
import pg from 'pg';
import { waitFor } from './waitFor.js';
import { startEmbeddedPostgres, type EmbeddedPostgresHandle } from '../../lib/dev/embeddedPostgres.js';

/**
 * One PostgreSQL server per test run: the one TEST_DATABASE_URL points at (its role needs CREATEDB), or an
 * embedded one started here. Every test file gets databases of its own, cloned from a migrated template.
 */
interface TestPostgres {
  adminUrl: string;
  embedded: EmbeddedPostgresHandle | undefined;
  dataDir: string | undefined;
}

let current: TestPostgres | undefined;
const runId = `${process.pid}_${Date.now().toString(36)}`;
export const TEMPLATE_DB = `xfchat_tpl_${runId}`;
const created: string[] = [];

export function adminUrl(): string {
  if (!current) throw new Error('test PostgreSQL is not started (test/helpers/globalSetup.ts)');
  return current.adminUrl;
}

export function urlFor(database: string): string {
  const url = new URL(adminUrl());
  url.pathname = `/${database}`;
  return url.toString();
}

export async function adminQuery(sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: adminUrl() });
  await client.connect();
  try {
    return await client.query(sql, params);
  } finally {
    await client.end();
  }
}

export async function startTestPostgres(): Promise<void> {
  const external = process.env.TEST_DATABASE_URL;
  if (external) {
    current = { adminUrl: external, embedded: undefined, dataDir: undefined };
    return;
  }
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'xfchat-test-pg-'));
  // mkdtemp makes it 0700 for root; PostgreSQL runs as the `postgres` OS user and must reach data/ inside.
  await chmod(dataDir, 0o755);
  const embedded = await startEmbeddedPostgres({ dataDir: path.join(dataDir, 'data'), persistent: false });
  current = { adminUrl: embedded.adminUrl, embedded, dataDir };
}

export async function stopTestPostgres(): Promise<void> {
  if (!current) return;
  if (current.embedded) {
    await current.embedded.stop();
    if (current.dataDir) await rm(current.dataDir, { recursive: true, force: true });
  } else {
    for (const name of [...created, TEMPLATE_DB]) {
      await adminQuery(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    }
  }
  current = undefined;
}

function newName(prefix: string): string {
  return `${prefix}_${runId}_${Math.random().toString(36).slice(2, 8)}`;
}

/** A new empty database (no schema). Identifiers cannot be bound; the name is generated here, never input. */
export async function createEmptyDatabase(): Promise<string> {
  const name = newName('xfchat_empty');
  await adminQuery(`CREATE DATABASE "${name}"`);
  created.push(name);
  return urlFor(name);
}

/** A new database with the current schema, cloned from the migrated template. */
export async function createTestDatabase(): Promise<string> {
  const name = newName('xfchat_test');
  await adminQuery(`CREATE DATABASE "${name}" TEMPLATE "${TEMPLATE_DB}"`);
  created.push(name);
  return urlFor(name);
}

/**
 * How many statements on `knex`'s database wait for a lock (one that a transaction of the test holds). A commit
 * waiting for PostgreSQL's one NOTIFY queue lock (wait_event 'object': every change that tells the other nodes takes
 * it) is no such wait, though on a loaded machine it is seen waiting too; every lock-wait query of the tests leaves
 * it out so (those on other connections, or that name their statement, write the same condition).
 */
export async function statementsWaitingForALock(knex: Knex): Promise<number> {
  const { rows } = await knex.raw<{ rows: Array<{ n: number }> }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity
     WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event <> 'object'`,
  );
  return rows[0]?.n ?? 0;
}

/**
 * The same count for the database named `database`, read on the admin connection (`adminQuery`): for tests whose own
 * connections may be the ones waiting, or gone.
 */
export async function statementsWaitingForALockIn(database: string): Promise<number> {
  const { rows } = await adminQuery(
    `SELECT count(*)::int AS n FROM pg_stat_activity
     WHERE datname = $1 AND wait_event_type = 'Lock' AND wait_event <> 'object'`,
    [database],
  );
  return (rows[0] as { n: number } | undefined)?.n ?? 0;
}

/** Until `count` statements on `knex`'s database wait for a lock (`statementsWaitingForALock`). */
export async function untilAStatementWaitsForALock(knex: Knex, what: string, count = 1): Promise<void> {
  await waitFor(async () => (await statementsWaitingForALock(knex)) >= count, { what });
}

/**
 * Runs `start` while a transaction of the test holds the row lock `lock` takes, lets it wait for that lock
 * `waitMs`, and lets it through: answers `start`'s result and PostgreSQL's clock as the lock was released.
 */
export async function letThroughAfterAWait<T>(
  knex: Knex,
  lock: (trx: Knex.Transaction) => Promise<unknown>,
  start: () => Promise<T>,
  waitMs = 200,
): Promise<{ released: Date; result: T }> {
  const holder = await knex.transaction();
  let started: Promise<T> | undefined;
  let released: Date | undefined;
  try {
    await lock(holder);
    started = start();
    // Settled below; a failure before then is not an unhandled rejection.
    started.catch(() => undefined);
    await untilAStatementWaitsForALock(knex, 'the statement to wait for the lock');
    await new Promise((resolve) => setTimeout(resolve, waitMs));
    const [clock] = (await holder.raw<{ rows: Array<{ now: Date }> }>('SELECT clock_timestamp() AS now'))
      .rows;
    released = clock?.now;
  } finally {
    await holder.commit();
  }
  if (started === undefined || released === undefined) throw new Error('the lock was not held');
  return { released, result: await started };
}
