import type { Knex } from 'knex';
import { limitLockWait } from './20261202000000_message_ids_time_ordered.js';

/**
 * `participant_removals`: each removal of a participant from a group (a removal by the owner, a leave, an account's
 * deletion), written in the removal's transaction with the conversation's count of removals
 * (`conversations.removals`, which numbers them) and the time.
 *
 * Why: a removal reaches the other nodes as one control bus event. A node whose LISTEN connection was down then
 * checks its sockets against the database when it listens again (lib/realtime/revalidation.ts), but a membership
 * that is gone leaves no row to find: a removed user whose sockets there followed the conversation's room were found
 * through the room, and one whose sockets did not (a client showing its list of conversations) never heard
 * `conversation:removed`. The check now tells every user with a socket on the node the removals made since the gap
 * began, from this table.
 *
 * Rows older than a day are deleted by later removals (a few at a time, skipping rows another removal holds); the
 * check looks back over a gap of the LISTEN connections, seconds to minutes.
 *
 * The foreign key to `conversations` (a deleted conversation takes its rows along) locks that one table, which a
 * node of the previous release writing meanwhile takes first in its transactions too: no lock is taken in another
 * order. `user_id` has none: accounts are never deleted as rows (`deleted_at`), and one would lock `users` as well.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('participant_removals', (t) => {
    t.uuid('conversation_id').notNullable().references('id').inTable('conversations').onDelete('CASCADE');
    t.bigInteger('removals').notNullable();
    t.uuid('user_id').notNullable();
    t.timestamp('removed_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['conversation_id', 'removals']);
    t.index(['user_id', 'removed_at']);
    t.index(['removed_at']);
  });
}

/**
 * Drops the table: the nodes of the previous release neither write nor read it. Its foreign key locks `conversations`
 * too, which every write takes: behind a long transaction, the rollback fails after the limit instead of holding
 * the writes that queue behind its lock.
 */
export async function down(knex: Knex): Promise<void> {
  await limitLockWait(knex);
  await knex.schema.dropTable('participant_removals');
}
