import type { Knex } from 'knex';
import { limitLockWait } from './20261202000000_message_ids_time_ordered.js';

/**
 * Every friend request of a user, pending or answered, found by index. Answered requests are kept (they are the
 * history of who asked whom), so `friend_requests` grows with the deployment's age; the partial indexes of the
 * initial schema cover only pending requests, and an account deletion, which removes the user's requests of
 * every status in both directions, scanned the whole table inside its transaction (100 ms a million rows).
 *
 * Building an index blocks writes to `friend_requests` (not reads) while it runs: a second or so a million rows.
 */
export async function up(knex: Knex): Promise<void> {
  await limitLockWait(knex);
  await knex.raw('CREATE INDEX friend_requests_from_user_idx ON friend_requests (from_user_id)');
  await knex.raw('CREATE INDEX friend_requests_to_user_idx ON friend_requests (to_user_id)');
}

export async function down(knex: Knex): Promise<void> {
  // Behind a long transaction on the table, the rollback fails after the limit instead of holding everyone.
  await limitLockWait(knex);
  await knex.raw('DROP INDEX friend_requests_to_user_idx');
  await knex.raw('DROP INDEX friend_requests_from_user_idx');
}
