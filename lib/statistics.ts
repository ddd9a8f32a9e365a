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

/** Where autovacuum does not run for this schema's tables. */
export interface AutovacuumGaps {
  /** Off for the whole server (`autovacuum` or `track_counts` off). */
  serverOff: boolean;
  /** This schema's tables that turn it off themselves (`autovacuum_enabled = false`), by name. */
  tablesOff: string[];
}

/**
 * Where autovacuum does not run. Without it `messages` and `conversations` (whose row is updated at every commit)
 * bloat, the planner's statistics are never refreshed, and PostgreSQL eventually stops accepting writes to
 * prevent transaction ID wraparound; the node warns at startup.
 */
export async function autovacuumGaps(knex: Knex): Promise<AutovacuumGaps> {
  const result = await knex.raw<{ rows: Array<{ server_on: boolean; tables_off: string[] }> }>(
    `SELECT current_setting('autovacuum')::boolean AND current_setting('track_counts')::boolean AS server_on,
       coalesce((
         SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_class c
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
           AND EXISTS (
             SELECT 1 FROM pg_options_to_table(c.reloptions) o
             WHERE o.option_name = 'autovacuum_enabled' AND NOT o.option_value::boolean
           )
       ), '{}') AS tables_off`,
  );
  const row = result.rows[0];
  return { serverOff: row?.server_on !== true, tablesOff: row?.tables_off ?? [] };
}
