import type { Knex } from 'knex';
import { SEND_ONE_ACTIVITY_FORWARD } from './20261204200000_activity_never_moves_back.js';
import { WRITE_SIGNATURE } from './20261204000000_removals_known_to_writes.js';
import { WRITE_REPLIES_IN_ORDER } from './20261206000000_replies_in_send_order.js';

/**
 * A message's `created_at` was the column's default, `now()`: the write transaction's start. Two writers of one
 * conversation (two nodes, or a node's transactions side by side) take its lock in turn, and the one that started
 * first may write second: a message then came before the one below its seq (300 ms before, behind a wait for
 * another conversation's lock), and the history read out of time order (its day separators, its "sent at"). Edits and
 * deletions took `now()` too: of two edits of one message, the one that won could carry the earlier time.
 *
 * A message now takes the conversation's activity time, which its write sets under the lock to the clock then, never
 * below the stored one (20261204200000_activity_never_moves_back): within a conversation `created_at` never goes
 * back as `seq` grows (the messages of one commit share it), whichever writer started first and even when the
 * database's clock is stepped back. An edit or a deletion takes the clock under the lock (`clock_timestamp()`), never
 * before the message's creation or its last edit.
 *
 * Both write functions keep their arguments and answers; `down()` gives back the previous ones.
 */

/** Every occurrence of `from` in `text`, exactly `count` of them, replaced by `to`. */
function replaceEach(
  text: string,
  [from, to, what]: readonly [string, string, string],
  count: number,
): string {
  const parts = text.split(from);
  if (parts.length !== count + 1) throw new Error(`the previous function does not read as expected: ${what}`);
  return parts.join(to);
}

const RESERVED_AT: readonly [string, string, string] = [
  'RETURNING c.id, c.last_seq - counts.n AS seq_base, c.version - counts.n AS version_base, c.removals\n',
  'RETURNING c.id, c.last_seq - counts.n AS seq_base, c.version - counts.n AS version_base, c.removals,\n' +
    '          c.last_activity_at AS created_at\n',
  'the seqs reserved',
];
const INSERTED_AT: readonly [string, string, string] = [
  `        INSERT INTO messages (conversation_id, sender_id, seq, client_msg_id, body, reply_to_seq, version)
        SELECT f.conversation_id, f.sender_id, r.seq_base + f.k, f.client_msg_id, f.body, f.reply_to,
          r.version_base + f.k
`,
  `        INSERT INTO messages (conversation_id, sender_id, seq, client_msg_id, body, reply_to_seq, version,
          created_at)
        SELECT f.conversation_id, f.sender_id, r.seq_base + f.k, f.client_msg_id, f.body, f.reply_to,
          r.version_base + f.k, r.created_at
`,
  'the messages inserted',
];
/** A change's time: the clock under the lock, never before the message's creation or its last edit. */
const CHANGE_TIME = 'GREATEST(clock_timestamp(), m.created_at, m.edited_at)';
const CHANGED_AT: readonly [string, string, string] = [
  `          edited_at = CASE WHEN v_kind = 1 THEN now() ELSE m.edited_at END,
          deleted_at = CASE WHEN v_kind = 2 THEN now() ELSE m.deleted_at END
`,
  `          edited_at = CASE WHEN v_kind = 1 THEN ${CHANGE_TIME} ELSE m.edited_at END,
          deleted_at = CASE WHEN v_kind = 2 THEN ${CHANGE_TIME} ELSE m.deleted_at END
`,
  'the changes',
];

/** `xfchat_write()` timing messages by their conversation's activity, changes under the lock (exported for tests). */
export const WRITE_TIMED_UNDER_LOCK = replaceEach(
  // The statement of sends is there twice: for calls without a reply and for those with one.
  replaceEach(replaceEach(WRITE_REPLIES_IN_ORDER, RESERVED_AT, 2), INSERTED_AT, 2),
  CHANGED_AT,
  1,
);

/** `xfchat_send_one()` likewise. */
export const SEND_ONE_TIMED_UNDER_LOCK = replaceEach(
  replaceEach(
    SEND_ONE_ACTIVITY_FORWARD,
    [
      '      RETURNING c.last_seq, c.version, c.removals\n',
      '      RETURNING c.last_seq, c.version, c.removals, c.last_activity_at\n',
      'the seq reserved',
    ],
    1,
  ),
  [
    `      INSERT INTO messages (conversation_id, sender_id, seq, client_msg_id, body, reply_to_seq, version)
      SELECT p_conversation, p_sender, r.last_seq, p_client_msg_id, p_body, p_reply_to, r.version FROM reserved r
`,
    `      INSERT INTO messages (conversation_id, sender_id, seq, client_msg_id, body, reply_to_seq, version, created_at)
      SELECT p_conversation, p_sender, r.last_seq, p_client_msg_id, p_body, p_reply_to, r.version, r.last_activity_at
      FROM reserved r
`,
    'the message inserted',
  ],
  1,
);

const SEND_ONE_SIGNATURE = 'xfchat_send_one(uuid, uuid, text, text, bigint, boolean, uuid)';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION ${WRITE_SIGNATURE}`);
  await knex.raw(WRITE_TIMED_UNDER_LOCK);
  await knex.raw(`DROP FUNCTION ${SEND_ONE_SIGNATURE}`);
  await knex.raw(SEND_ONE_TIMED_UNDER_LOCK);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION ${WRITE_SIGNATURE}`);
  await knex.raw(WRITE_REPLIES_IN_ORDER);
  await knex.raw(`DROP FUNCTION ${SEND_ONE_SIGNATURE}`);
  await knex.raw(SEND_ONE_ACTIVITY_FORWARD);
}
