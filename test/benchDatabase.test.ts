import { expect } from 'chai';
import {
  openBenchDatabase,
  vacuumWrittenTables,
  WRITTEN_TABLES,
  type BenchDatabase,
} from '../bench/database.js';
import { createTestDatabase } from './helpers/postgres.js';

interface TableStats {
  relname: string;
  vacuum_count: string;
  analyze_count: string;
}

async function tableStats(database: BenchDatabase): Promise<Map<string, TableStats>> {
  const rows = await database.query<TableStats>(
    `SELECT relname, vacuum_count, analyze_count FROM pg_stat_user_tables
     WHERE relname = ANY($1::text[])`,
    [WRITTEN_TABLES],
  );
  return new Map(rows.map((row) => [row.relname, row]));
}

describe('bench database: the vacuum before each phase', function () {
  this.timeout(60_000);
  let database: BenchDatabase;

  before(async () => {
    database = await openBenchDatabase(await createTestDatabase(), () => {});
  });

  after(async () => {
    await database.close();
  });

  it('vacuums and analyzes every table the phases write, once per call', async () => {
    const [user] = await database.query<{ id: string }>(
      `INSERT INTO users (username, password_hash, display_name) VALUES ('vacuumed', 'x', 'V') RETURNING id`,
    );
    const [conversation] = await database.query<{ id: string }>(
      `INSERT INTO conversations (type) VALUES ('group') RETURNING id`,
    );
    await database.query('INSERT INTO conversation_participants (conversation_id, user_id) VALUES ($1, $2)', [
      conversation!.id,
      user!.id,
    ]);
    // A phase's traffic: a seq bumped per message (a dead row version each time), messages, a read marker moved.
    for (let seq = 1; seq <= 20; seq++) {
      await database.query('UPDATE conversations SET last_seq = $2 WHERE id = $1', [conversation!.id, seq]);
      await database.query(
        `INSERT INTO messages (conversation_id, sender_id, seq, client_msg_id, body) VALUES ($1, $2, $3, $4, 'b')`,
        [conversation!.id, user!.id, seq, `c-${seq}`],
      );
    }
    await database.query(
      'UPDATE conversation_participants SET last_read_seq = 20 WHERE conversation_id = $1',
      [conversation!.id],
    );
    const before = await tableStats(database);

    const ms = await vacuumWrittenTables(database);

    const after = await tableStats(database);
    expect(ms).to.be.greaterThan(0);
    for (const table of WRITTEN_TABLES) {
      const was = before.get(table);
      const now = after.get(table);
      expect(now, table).to.not.equal(undefined);
      expect(Number(now!.vacuum_count), `${table} vacuumed`).to.equal(Number(was?.vacuum_count ?? 0) + 1);
      expect(Number(now!.analyze_count), `${table} analyzed`).to.equal(Number(was?.analyze_count ?? 0) + 1);
    }
  });
});
