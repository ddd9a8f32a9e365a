import type { Knex } from 'knex';
import { lockWriteTables } from './20261202000000_message_ids_time_ordered.js';

/**
 * Brings a database migrated by release 0.2.0 to the schema a fresh database gets, and keeps 0.2.0's nodes
 * writing beside this release's during a rolling upgrade, and after a rollback to 0.2.0's migrations.
 *
 * `20261130000050_message_writes` shipped in 0.2.0 and was edited after the release. Knex never runs an applied
 * migration again, so a database migrated by 0.2.0 kept what that migration created then:
 * - `xfchat_write()` with twelve arguments. The later edits added `p_wait` (a thirteenth argument: conversations
 *   another transaction holds are skipped and written again), replays of edited or deleted messages, chunked
 *   announcements; 20261202100000 and 20261202200000 replace the thirteen-argument function, which a 0.2.0 database
 *   got from them (CREATE OR REPLACE of another signature creates it) beside the released one.
 * - `message_reactions.created_at` defaulting to `now()`, the transaction's start, so that the reactions of one
 *   group commit tie and come back in no set order; it is `clock_timestamp()`.
 *
 * The twelve-argument function is what a 0.2.0 node calls (as its named statement `xfchat_write_v1`). It becomes a
 * call of the current function that waits for its conversations' locks, as 0.2.0's function did, so a 0.2.0 node
 * never gets the busy answer (8) it does not know, and the reaction cap's answer (9) is given to it as forbidden (5),
 * which it knows: its writes keep every rule of this release. A fresh database gets the same function, so that every
 * database has one schema, whichever release created it.
 *
 * down() changes nothing back: what up() leaves suits every release. 0.2.0 calls the twelve-argument function, and
 * runs on a database rolled back to its migrations; a default of `clock_timestamp()` is what a fresh database had
 * before this migration, and only orders a 0.2.0 database's reactions better. 20261130000050's down() drops the
 * function with the rest of the write path.
 *
 * Never change what a migration a release has shipped does: change the schema in a new one, as this one does
 * (test/migrations.release.test.ts compares a database migrated from each release with a fresh one).
 */
/**
 * The twelve-argument function, calling the overload that takes 0.2.0's twelve arguments and `tail` (20261205100000
 * makes it call the current one).
 */
export const release020Write = (tail: string): string => `
  CREATE OR REPLACE FUNCTION xfchat_write(
    p_conversation_ids uuid[], p_sender_ids uuid[], p_client_msg_ids text[], p_bodies text[], p_reply_to bigint[],
    p_change_kinds smallint[], p_change_conversation_ids uuid[], p_change_user_ids uuid[], p_change_seqs bigint[],
    p_change_texts text[],
    p_notify_channel text, p_node text
  ) RETURNS TABLE (
    r_ord integer, r_status smallint, r_id uuid, r_seq bigint, r_version bigint, r_created_ms bigint,
    r_message json
  )
  LANGUAGE sql AS $fn$
    SELECT w.r_ord, (CASE WHEN w.r_status = 9 THEN 5 ELSE w.r_status END)::smallint, w.r_id, w.r_seq, w.r_version,
      w.r_created_ms, w.r_message
    FROM xfchat_write(p_conversation_ids, p_sender_ids, p_client_msg_ids, p_bodies, p_reply_to, p_change_kinds,
      p_change_conversation_ids, p_change_user_ids, p_change_seqs, p_change_texts, p_notify_channel, p_node,
      ${tail}) w
    ORDER BY w.r_ord
  $fn$;`;

/** As this migration makes it: a call of the thirteen-argument overload that waits for its locks. */
export const RELEASE_0_2_0_WRITE = release020Write('true');

export async function up(knex: Knex): Promise<void> {
  // Changing a default locks the table for a moment, and waits for whoever reads it (a pg_dump) while this batch
  // may already hold `messages` (20261202000000): only a 0.2.0 database needs it.
  const { rows } = await knex.raw<{ rows: Array<{ current: string | null }> }>(
    `SELECT pg_get_expr(d.adbin, d.adrelid) AS current
       FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
      WHERE d.adrelid = 'message_reactions'::regclass AND a.attname = 'created_at'`,
  );
  if (rows[0]?.current !== 'clock_timestamp()') {
    await lockWriteTables(knex);
    await knex.raw('ALTER TABLE message_reactions ALTER COLUMN created_at SET DEFAULT clock_timestamp()');
  }
  await knex.raw(RELEASE_0_2_0_WRITE);
}

export async function down(): Promise<void> {
  // Nothing to undo (see above): rolling this migration back only makes it pending again.
}
