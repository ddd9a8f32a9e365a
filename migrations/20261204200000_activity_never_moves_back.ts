import type { Knex } from 'knex';
import { rewrite } from './20261203130000_session_checked_under_lock.js';
import { SEND_ONE_ANSWERING_REMOVALS, WRITE_SIGNATURE } from './20261204000000_removals_known_to_writes.js';
import { WRITE_ANNOUNCING_BY_ITEM_SIZE } from './20261204100000_announced_by_item_size.js';

/**
 * A conversation's `last_activity_at` was set to `now()`, the write transaction's start. Two writers of one
 * conversation (two nodes, or a node's transactions side by side) take its lock in turn, and the one that started
 * first may commit second: the conversation's activity then went back by the time it waited, and `GET
 * /conversations`, which pages by (last_activity_at, id), could show it on a later page again. The time is now taken
 * under the lock (`clock_timestamp()`), and never below the stored one (a clock stepped back keeps it where it was):
 * the activity of a conversation only moves forward. The column has no index, so the update stays heap-only.
 *
 * Both write functions keep their arguments and answers; `down()` gives back the previous ones.
 */
const ACTIVITY: readonly [string, string, string] = [
  'last_activity_at = now()',
  'last_activity_at = GREATEST(c.last_activity_at, clock_timestamp())',
  'the activity time',
];

/** `xfchat_write()` moving the activity time forward only (exported for its tests). */
export const WRITE_ACTIVITY_FORWARD = rewrite(WRITE_ANNOUNCING_BY_ITEM_SIZE, [ACTIVITY]);
/** `xfchat_send_one()` likewise. */
export const SEND_ONE_ACTIVITY_FORWARD = rewrite(SEND_ONE_ANSWERING_REMOVALS, [ACTIVITY]);

const SEND_ONE_SIGNATURE = 'xfchat_send_one(uuid, uuid, text, text, bigint, boolean, uuid)';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION ${WRITE_SIGNATURE}`);
  await knex.raw(WRITE_ACTIVITY_FORWARD);
  await knex.raw(`DROP FUNCTION ${SEND_ONE_SIGNATURE}`);
  await knex.raw(SEND_ONE_ACTIVITY_FORWARD);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION ${WRITE_SIGNATURE}`);
  await knex.raw(WRITE_ANNOUNCING_BY_ITEM_SIZE);
  await knex.raw(`DROP FUNCTION ${SEND_ONE_SIGNATURE}`);
  await knex.raw(SEND_ONE_ANSWERING_REMOVALS);
}
