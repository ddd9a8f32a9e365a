import type { Knex } from 'knex';
import { limitLockWait } from './20261202000000_message_ids_time_ordered.js';

/**
 * `friend_requests.created_at` is dated by the statement that writes the row (`statement_timestamp()`), as
 * memberships are (20261205100000_joined_when_written.ts) and as answers to requests are (`responded_at`, set by
 * lib/social/friendRequests.ts).
 *
 * Why: a request locks its pair of users before it writes its row, and may wait for those locks; dated at its
 * transaction's start, a request that waited longer than the margin the check after a lost LISTEN connection looks
 * back by (lib/realtime/revalidation.ts) and committed in the gap was never told to the recipient's sockets on that
 * node. The order of the pending lists does not change otherwise.
 *
 * Taken after `conversation_participants` (the migration before, in the same transaction when both are pending),
 * the order in which writers that touch both take them (an account's deletion reads the memberships, then deletes
 * the requests): no lock is taken in another order.
 */
export async function up(knex: Knex): Promise<void> {
  // A moment's exclusive lock, which waits for whoever reads the table: given up after a few seconds, as elsewhere.
  await limitLockWait(knex);
  await knex.raw('ALTER TABLE friend_requests ALTER COLUMN created_at SET DEFAULT statement_timestamp()');
}

/** The previous default: the transaction's start. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw('ALTER TABLE friend_requests ALTER COLUMN created_at SET DEFAULT now()');
}
