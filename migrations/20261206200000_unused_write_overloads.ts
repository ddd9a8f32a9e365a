import type { Knex } from 'knex';
import { SEND_ONE } from './20261201000000_send_one.js';
import { WRITE_WITH_REACTION_CAP } from './20261202200000_reaction_cap.js';

/**
 * The rewrites of the write path from 20261203130000_session_checked_under_lock on made new overloads of
 * `xfchat_write()` (fifteen arguments now) and `xfchat_send_one()` (seven) and left the ones before them in place:
 * `xfchat_write()` with thirteen arguments, which 0.2.0's twelve-argument call used until
 * 20261205100000_release_0_2_0_writes_current, and `xfchat_send_one()` with six. Nothing calls them since; they
 * still wrote by the rules of their time (a conversation's activity time could move back, a session was not
 * checked), so an operator or a script calling one by mistake wrote past this release's checks. They are dropped.
 * `down()` creates them again as they were.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION xfchat_write(uuid[], uuid[], text[], text[], bigint[], smallint[], uuid[], uuid[],
    bigint[], text[], text, text, boolean)`);
  await knex.raw('DROP FUNCTION xfchat_send_one(uuid, uuid, text, text, bigint, boolean)');
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(WRITE_WITH_REACTION_CAP);
  await knex.raw(SEND_ONE);
}
