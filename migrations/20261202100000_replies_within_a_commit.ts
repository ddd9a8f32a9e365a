import type { Knex } from 'knex';
import { WRITE } from './20261130000050_message_writes.js';

/**
 * A reply to a message written in the same group commit. `xfchat_write()` checked each send's `replyToSeq`
 * against the conversation's last seq before the call, so of three sends queued back to back (X, A, and B
 * replying to A's seq) B was refused whenever the three went in one transaction, and accepted when A had
 * committed first: the answer hung on the batching, where a conversation's writes are meant to apply in the
 * order they were made (an edit of A queued behind it already found A).
 *
 * Now a reply may also name a seq taken earlier in the same call, counting only the sends before it that are
 * certain to be stored (a member, no block, not a repeat, and a reply, if any, to a seq stored before the call).
 * That is a lower bound of the seqs the call gives before the reply's own, so an accepted reply always names an
 * earlier, stored message (`messages_reply_to_check` holds) and no send's outcome depends on a later one's. A
 * reply to a send that is itself a reply within the call is refused, as before; a client learns a seq from an
 * ack or from `message:new`, both after the commit, so only a client that counts seqs ahead meets either case.
 */
const LOOKED_UP = `      ), classified AS (
        SELECT i.conversation_id, i.sender_id, i.client_msg_id, i.body, i.reply_to, i.ord, s.member, s.blocked,
          i.reply_to IS NOT NULL AND NOT i.reply_to BETWEEN 1 AND s.last_seq AS bad_reply, m AS stored,`;

const LOOKED_UP_NOW = `      ), looked_up AS (
        SELECT i.conversation_id, i.sender_id, i.client_msg_id, i.body, i.reply_to, i.ord, s.member, s.blocked,
          s.last_seq, i.reply_to IS NULL OR i.reply_to BETWEEN 1 AND s.last_seq AS reply_known, m AS stored,`;

const JOINED = `        LEFT JOIN messages m ON m.conversation_id = i.conversation_id AND m.sender_id = i.sender_id
          AND m.client_msg_id = i.client_msg_id
`;

const CLASSIFIED = `${JOINED}      ), classified AS (
        SELECT l.conversation_id, l.sender_id, l.client_msg_id, l.body, l.reply_to, l.ord, l.member, l.blocked,
          l.stored, l.replay,
          NOT l.reply_known AND NOT l.reply_to BETWEEN 1 AND l.last_seq + count(*) FILTER (
            WHERE l.member AND NOT l.blocked AND (l.stored).id IS NULL AND l.reply_known
          ) OVER (PARTITION BY l.conversation_id ORDER BY l.ord ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
            AS bad_reply
        FROM looked_up l
`;

/** `xfchat_write()` as the earlier migration created it, with these pieces replaced (each must occur once). */
function rewrite(replacements: Array<[string, string]>): string {
  let sql = WRITE.replace('CREATE FUNCTION xfchat_write(', 'CREATE OR REPLACE FUNCTION xfchat_write(');
  for (const [from, to] of replacements) {
    const at = sql.indexOf(from);
    if (at < 0 || sql.indexOf(from, at + 1) >= 0) {
      throw new Error(`xfchat_write() does not read as expected: ${from.trim().split('\n')[0]}`);
    }
    sql = sql.slice(0, at) + to + sql.slice(at + from.length);
  }
  return sql;
}

/** The function this migration creates (exported for its tests). */
export const WRITE_WITH_REPLIES_WITHIN = rewrite([
  [LOOKED_UP, LOOKED_UP_NOW],
  [JOINED, CLASSIFIED],
]);

export async function up(knex: Knex): Promise<void> {
  await knex.raw(WRITE_WITH_REPLIES_WITHIN);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(rewrite([]));
}
