import { expect } from 'chai';
import { loadDatabaseConfig } from '../lib/config.js';
import { createDatabase, type Database, type Knex } from '../lib/db.js';
import { createLogger } from '../lib/logger.js';
import { analyzeTablesWithoutStatistics } from '../lib/statistics.js';
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

describe('planner statistics at startup', function () {
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
});
