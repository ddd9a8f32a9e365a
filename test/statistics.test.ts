import { expect } from 'chai';
import { loadDatabaseConfig } from '../lib/config.js';
import { createDatabase, type Database, type Knex } from '../lib/db.js';
import { createLogger } from '../lib/logger.js';
import { analyzeTablesWithoutStatistics, autovacuumGaps } from '../lib/statistics.js';
import { captureLogs } from './helpers/logCapture.js';
import { createTestDatabase } from './helpers/postgres.js';
import { startTestServer } from './helpers/server.js';
import { uniqueUsername } from './helpers/users.js';

const TABLES = ['users', 'conversations', 'conversation_participants', 'messages', 'blocks'];

/** As after a restore: 1000 messages, a few rows elsewhere, none in blocks, no statistics; no autovacuum. */
async function restoredDatabase(): Promise<{ url: string; db: Database }> {
  const url = await createTestDatabase();
  const db = createDatabase(loadDatabaseConfig({ DATABASE_URL: url }), createLogger('silent'));
  const { knex } = db;
  for (const table of TABLES) await knex.raw('ALTER TABLE ?? SET (autovacuum_enabled = false)', [table]);
  const [a, b] = [await insertUserRow(knex), await insertUserRow(knex)];
  const conversation = (
    await knex.raw<{ rows: Array<{ id: string }> }>(
      `INSERT INTO conversations (type, title) VALUES ('group', 'restored') RETURNING id`,
    )
  ).rows[0]!.id;
  await knex('conversation_participants').insert([
    { conversation_id: conversation, user_id: a, role: 'owner' },
    { conversation_id: conversation, user_id: b },
  ]);
  await knex.raw(
    `INSERT INTO messages (conversation_id, sender_id, seq, client_msg_id, body, version)
     SELECT ?::uuid, ?::uuid, s, 'm' || s, 'message ' || s, s FROM generate_series(1, 1000) s`,
    [conversation, a],
  );
  return { url, db };
}

async function insertUserRow(knex: Knex): Promise<string> {
  const username = uniqueUsername();
  const inserted = await knex.raw<{ rows: Array<{ id: string }> }>(
    `INSERT INTO users (username, display_name, password_hash) VALUES (?, ?, 'not-a-real-hash') RETURNING id`,
    [username, username],
  );
  return inserted.rows[0]!.id;
}

async function reltuples(db: Database, table: string): Promise<number> {
  const result = await db.knex.raw<{ rows: Array<{ reltuples: number }> }>(
    'SELECT reltuples FROM pg_class WHERE oid = ?::regclass',
    [table],
  );
  return Number(result.rows[0]!.reltuples);
}

describe('database upkeep at startup: planner statistics and autovacuum', function () {
  this.timeout(60_000);
  const opened: Array<{ close(): Promise<void> }> = [];

  after(async () => {
    await Promise.all(opened.map((resource) => resource.close()));
  });

  it('analyzes the never analyzed tables of 1000 rows or more, and leaves the small and empty ones alone', async () => {
    const { db } = await restoredDatabase();
    opened.push(db);
    const [smallBefore, emptyBefore] = [await reltuples(db, 'users'), await reltuples(db, 'blocks')];
    expect(await analyzeTablesWithoutStatistics(db.knex)).to.deep.equal(['messages']);
    expect(await reltuples(db, 'messages')).to.equal(1000);
    expect(await reltuples(db, 'users')).to.equal(smallBefore);
    expect(await reltuples(db, 'blocks')).to.equal(emptyBefore);
  });

  it('a node starting on such a database analyzes them before it takes traffic', async () => {
    const { url, db } = await restoredDatabase();
    opened.push(db);
    const server = await startTestServer(url);
    opened.push(server);
    expect(await reltuples(db, 'messages')).to.equal(1000);
  });

  it('names the tables that turn autovacuum off, whatever the spelling, and reports the server setting as set', async () => {
    const { db } = await restoredDatabase();
    opened.push(db);
    const { knex } = db;
    await knex.raw('ALTER TABLE friendships SET (autovacuum_enabled = off)');
    await knex.raw('ALTER TABLE sessions SET (autovacuum_enabled = true)');
    const settings = await knex.raw<{ rows: Array<{ autovacuum: string; track_counts: string }> }>(
      `SELECT current_setting('autovacuum') AS autovacuum, current_setting('track_counts') AS track_counts`,
    );
    const { autovacuum, track_counts } = settings.rows[0]!;

    const gaps = await autovacuumGaps(knex);
    expect(gaps.tablesOff).to.deep.equal([...TABLES, 'friendships'].sort());
    expect(gaps.serverOff).to.equal(!(autovacuum === 'on' && track_counts === 'on'));

    for (const table of [...TABLES, 'friendships'])
      await knex.raw('ALTER TABLE ?? RESET (autovacuum_enabled)', [table]);
    expect((await autovacuumGaps(knex)).tablesOff).to.deep.equal([]);
  });

  it('a node starting where autovacuum is off for some tables warns, naming them', async () => {
    const { url, db } = await restoredDatabase();
    opened.push(db);
    const logs = captureLogs('warn');
    const server = await startTestServer(url, {}, logs.logger);
    opened.push(server);
    const warning = logs.entries().find((entry) => Array.isArray(entry.autovacuumOff));
    expect(warning?.autovacuumOff).to.deep.equal([...TABLES].sort());
    expect(String(warning?.msg)).to.match(
      /^\[STARTUP\] autovacuum is off for blocks, conversation_participants, /,
    );
  });

  it('a node warns when autovacuum cannot run on the server (track_counts off here), and not when it runs', async () => {
    const url = await createTestDatabase();
    const serverWarnings = async (databaseUrl: string): Promise<number> => {
      const logs = captureLogs('warn');
      const server = await startTestServer(databaseUrl, {}, logs.logger);
      try {
        return logs.entries().filter((entry) => entry.autovacuum === 'off').length;
      } finally {
        await server.close();
      }
    };
    const db = createDatabase(loadDatabaseConfig({ DATABASE_URL: url }), createLogger('silent'));
    opened.push(db);
    const settings = await db.knex.raw<{ rows: Array<{ on: boolean }> }>(
      `SELECT current_setting('autovacuum') = 'on' AND current_setting('track_counts') = 'on' AS on`,
    );
    // The machine's own setting decides the first: CI runs this suite on a server with autovacuum off too.
    expect(await serverWarnings(url)).to.equal(settings.rows[0]!.on ? 0 : 1);
    // For the database's new sessions (DATABASE_URL takes no `options` parameter; a superuser setting, as in CI).
    await db.knex.raw(`ALTER DATABASE ?? SET track_counts = off`, [new URL(url).pathname.slice(1)]);
    expect(await serverWarnings(url)).to.equal(1);
  });
});
