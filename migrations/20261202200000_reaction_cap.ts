import type { Knex } from 'knex';
import { WRITE_WITH_REPLIES_WITHIN } from './20261202100000_replies_within_a_commit.js';

/**
 * At most 20 different emoji on one message (`MAX_REACTIONS_PER_MESSAGE` in lib/protocol/schemas.ts; a change of
 * it is a new migration). Without a cap one user could put thousands of distinct emoji on a message: the message
 * grew to hundreds of kilobytes, and every reaction change sent all of it to every subscriber.
 *
 * `xfchat_write()` checks the cap when it adds a reaction (change kind 3), after the checks it already makes (a
 * participant, the message exists, no block, not deleted): an emoji already on the message, by anyone, is always
 * added; a new one that would be the 21st answers the new status 9 and writes nothing (no row, no version). The
 * count is read under the conversation's lock, which every write of reactions takes first, in a snapshot taken
 * after it: two nodes adding different emoji at once are applied one after the other, and the second sees the
 * first's row. A message already above the cap (reacted to before this migration) keeps its reactions.
 *
 * Statuses as documented in migrations/20261130000050_message_writes.ts, and 9: the message has as many
 * different reactions as it may (the node answers FORBIDDEN).
 */
const ADD_REACTION = `      ELSIF v_kind = 3 THEN
        INSERT INTO message_reactions (message_id, emoji, user_id) VALUES (v_message.id, v_text, v_user)
`;

const ADD_REACTION_CAPPED = `      ELSIF v_kind = 3 THEN
        IF NOT EXISTS (
            SELECT 1 FROM message_reactions x WHERE x.message_id = v_message.id AND x.emoji = v_text
          ) AND (
            SELECT count(DISTINCT x.emoji) FROM message_reactions x WHERE x.message_id = v_message.id
          ) >= 20
        THEN
          r_status := 9; RETURN NEXT; CONTINUE;
        END IF;
        INSERT INTO message_reactions (message_id, emoji, user_id) VALUES (v_message.id, v_text, v_user)
`;

/** The function this migration creates: the previous one with the reaction branch replaced (it occurs once). */
function capped(): string {
  const at = WRITE_WITH_REPLIES_WITHIN.indexOf(ADD_REACTION);
  if (at < 0 || WRITE_WITH_REPLIES_WITHIN.indexOf(ADD_REACTION, at + 1) >= 0) {
    throw new Error('xfchat_write() does not read as expected: the branch that adds a reaction');
  }
  return (
    WRITE_WITH_REPLIES_WITHIN.slice(0, at) +
    ADD_REACTION_CAPPED +
    WRITE_WITH_REPLIES_WITHIN.slice(at + ADD_REACTION.length)
  );
}

/** `xfchat_write()` with the cap (exported for its tests). */
export const WRITE_WITH_REACTION_CAP = capped();

export async function up(knex: Knex): Promise<void> {
  await knex.raw(WRITE_WITH_REACTION_CAP);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(WRITE_WITH_REPLIES_WITHIN);
}
