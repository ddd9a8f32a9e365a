import type { Knex } from 'knex';
import { rewrite } from './20261203130000_session_checked_under_lock.js';
import { WRITE_ANSWERING_REMOVALS, WRITE_SIGNATURE } from './20261204000000_removals_known_to_writes.js';

/**
 * With `MESSAGE_ANNOUNCE=commit`, `xfchat_write()` announces a commit's new messages inside its transaction: each
 * conversation's messages whole when its largest item (the message as the announcement carries it, JSON) is at most
 * 3500 bytes, and by its seq range otherwise. The range side asked something else, whether a body was over 3000
 * bytes, so a conversation whose item outgrew 3500 bytes through JSON's escapes (a body of 1700 `"` is 1701 bytes
 * and a 3400-byte item) was announced neither way: the other nodes' subscribers got it only when a later message of
 * the conversation showed the gap. (And one with a body of 3000-3500 bytes whose item fit was announced both ways,
 * read twice.) Both sides now ask the same question of the same item. Announcing after the commit (the default,
 * lib/messaging/fanout.ts) always had one rule.
 *
 * The function keeps its arguments and answers; `down()` gives back the previous one.
 */

/** `xfchat_write()` announcing a conversation by its range exactly when its messages do not go whole (for tests). */
export const WRITE_ANNOUNCING_BY_ITEM_SIZE = rewrite(WRITE_ANSWERING_REMOVALS, [
  [
    '            HAVING max(octet_length(x.body)) > 3000\n',
    `            HAVING max(octet_length(json_build_array(x.conversation_id, x.seq, x.id, x.sender_id,
              x.client_msg_id, x.body, floor(extract(epoch FROM x.created_at) * 1000)::bigint,
              x.reply_to_seq, x.version)::text)) > 3500
`,
    'the conversations announced by their range',
  ],
]);

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION ${WRITE_SIGNATURE}`);
  await knex.raw(WRITE_ANNOUNCING_BY_ITEM_SIZE);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION ${WRITE_SIGNATURE}`);
  await knex.raw(WRITE_ANSWERING_REMOVALS);
}
