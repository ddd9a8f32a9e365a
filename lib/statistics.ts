import type { Knex } from 'knex';

/** Below this many rows a table is left to autovacuum (see below). */
const FEWEST_ROWS = 1000;

/**
 * Analyzes the tables of 1000 rows or more that were never analyzed, and returns their names. A database restored
 * from a dump or moved by pg_upgrade (before PostgreSQL 18) has no statistics until autovacuum gets to it;
 * PostgreSQL plans without them meanwhile, and a connection keeps those plans until the next ANALYZE. One measured
 * case: `xfchat_write()`'s idempotency probe read `messages` through the (conversation_id, version) index, every
 * message of the conversation, instead of the unique (conversation_id, sender_id, client_msg_id) one: four times
 * the CPU per send with 1000 messages a conversation, and more as conversations grow.
 *
 * Tables under 1000 rows are left to autovacuum: planned without statistics they cost little, and analyzed while
 * tiny they are planned as tiny, so the foreign-key checks of every insert scan them (the bench's storage
 * baselines lost a fifth of their rate so).
 */
export async function analyzeTablesWithoutStatistics(knex: Knex): Promise<string[]> {
  const candidates = await knex.raw<{ rows: Array<{ relname: string }> }>(
    `SELECT s.relname FROM pg_stat_user_tables s
      WHERE s.schemaname = current_schema() AND s.last_analyze IS NULL AND s.last_autoanalyze IS NULL
        AND s.relname NOT IN ('knex_migrations', 'knex_migrations_lock')
      ORDER BY s.relname`,
  );
  const analyzed: string[] = [];
  for (const { relname } of candidates.rows) {
    const sample = await knex.raw<{ rows: Array<{ rows: string }> }>(
      'SELECT count(*) AS rows FROM (SELECT 1 FROM ?? LIMIT ?) t',
      [relname, FEWEST_ROWS],
    );
    if (Number(sample.rows[0]?.rows ?? 0) < FEWEST_ROWS) continue;
    await knex.raw('ANALYZE ??', [relname]);
    analyzed.push(relname);
  }
  return analyzed;
}
