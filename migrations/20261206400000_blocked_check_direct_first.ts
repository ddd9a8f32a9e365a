import type { Knex } from 'knex';
import { BLOCKED } from './20261130000050_message_writes.js';

/**
 * `xfchat_blocked()` (the block check of a typing event, and of an edit or a reaction in `xfchat_write()`) joined the
 * conversation's other participants with the blocks of either side on an `OR`, and looked at the conversation's type
 * last. Blocks matter only in direct conversations, but once PL/pgSQL took its generic plan (from a connection's
 * third call on) the join ran before the type was read: in a group of 1000 members, a member who had blocked 5000
 * accounts paid 5 million rows of join filter at each typing event, edit or reaction (0.4-1.5 s), and an edit or a
 * reaction held the conversation's lock meanwhile, so every send to that group waited as long. The type is now read
 * first, alone (a group answers false at once), and each participant's blocks are two index probes. The answer is
 * the same for every conversation and user. `down()` gives back the previous body.
 */
const BLOCKED_DIRECT_FIRST = `
  CREATE OR REPLACE FUNCTION xfchat_blocked(p_conversation uuid, p_user uuid) RETURNS boolean
  LANGUAGE plpgsql STABLE AS $$
  BEGIN
    IF NOT EXISTS (SELECT 1 FROM conversations WHERE id = p_conversation AND type = 'direct') THEN
      RETURN false;
    END IF;
    RETURN EXISTS (
      SELECT 1 FROM conversation_participants o
      WHERE o.conversation_id = p_conversation AND o.user_id <> p_user
        AND (EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = p_user AND b.blocked_id = o.user_id)
          OR EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = o.user_id AND b.blocked_id = p_user)));
  END
  $$;`;

export async function up(knex: Knex): Promise<void> {
  await knex.raw(BLOCKED_DIRECT_FIRST);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(BLOCKED.replace('CREATE FUNCTION', 'CREATE OR REPLACE FUNCTION'));
}
