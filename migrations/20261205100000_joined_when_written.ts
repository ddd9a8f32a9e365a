import type { Knex } from 'knex';
import { limitLockWait } from './20261202000000_message_ids_time_ordered.js';

/**
 * `conversation_participants.joined_at` is dated by the statement that writes the row (`statement_timestamp()`),
 * not by the start of its transaction (`now()`).
 *
 * Why: an addition takes the conversation's lock before it writes its row, and may wait for that lock. Dated at its
 * transaction's start, a row written after a long wait looked older than it was: a node whose LISTEN connection
 * was down looks for the additions made since the gap began (less a margin of seconds, lib/realtime/revalidation.ts)
 * and missed one that had waited longer than the margin and committed in the gap; the heir of a group's ownership
 * ("who joined first") was chosen by the same date. The rows of one statement (a new group's members) still share
 * one date, so ties are broken by user id as before.
 *
 * A column default is changed in the catalogue alone (no row is rewritten), and the nodes of the previous release,
 * which write the column through its default, date their rows the same way at once. In a batch that holds
 * `conversations` already (an upgrade from 0.2.0), the table is taken after it, as writes take them (a write locks
 * its conversation, then reads its members).
 */
export async function up(knex: Knex): Promise<void> {
  // A moment's exclusive lock, which waits for whoever reads the table: given up after a few seconds, as elsewhere.
  await limitLockWait(knex);
  await knex.raw(
    'ALTER TABLE conversation_participants ALTER COLUMN joined_at SET DEFAULT statement_timestamp()',
  );
}

/** The previous default: the transaction's start. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw('ALTER TABLE conversation_participants ALTER COLUMN joined_at SET DEFAULT now()');
}
