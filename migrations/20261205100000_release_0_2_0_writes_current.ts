import type { Knex } from 'knex';
import { RELEASE_0_2_0_WRITE, release020Write } from './20261203000000_upgrade_from_0_2_0.js';

/**
 * The twelve-argument `xfchat_write()` that a 0.2.0 node calls (20261203000000_upgrade_from_0_2_0) called the
 * thirteen-argument overload, which the later rewrites of the write path left as it was: they replace the current
 * one, with fifteen arguments (20261203130000 added the sessions). So during a rolling upgrade a 0.2.0 node's writes
 * missed two of this release's rules: a message whose announced item outgrew the NOTIFY limit through its escapes
 * (1700 `"` in a body of 1700 bytes) was announced neither whole nor by its range, and the other nodes' subscribers
 * never heard of it (20261204100000_announced_by_item_size); and a conversation's activity time could move back
 * (20261204200000_activity_never_moves_back).
 *
 * It now calls the current overload: it waits for its conversations' locks (`p_wait`), checks no session (a 0.2.0
 * node does not name one), and answers the columns and statuses 0.2.0 knows (the reaction cap's 9 as forbidden, 5;
 * nothing of the removals' count). A later rewrite of the write path keeps the fifteen arguments, or changes this
 * call with it. `down()` gives back the previous call.
 */
const RELEASE_0_2_0_WRITE_CURRENT = release020Write('true, NULL::uuid[], NULL::uuid[]');

export async function up(knex: Knex): Promise<void> {
  await knex.raw(RELEASE_0_2_0_WRITE_CURRENT);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(RELEASE_0_2_0_WRITE);
}
