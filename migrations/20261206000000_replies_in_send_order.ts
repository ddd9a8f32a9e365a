import type { Knex } from 'knex';
import { rewrite } from './20261203130000_session_checked_under_lock.js';
import { WRITE_ACTIVITY_FORWARD } from './20261204200000_activity_never_moves_back.js';
import { WRITE_SIGNATURE } from './20261204000000_removals_known_to_writes.js';

/**
 * A reply to a seq taken earlier in the same group commit (20261202100000_replies_within_a_commit) was checked
 * against the conversation's last seq plus the number of sends before it certain to be stored, as if those held the
 * commit's lowest seqs. A reply within the commit placed before a plain send takes a seq too, and shifted the ones
 * after it: of five sends queued together (A, a reply to A, B, a reply to B, a reply to the first reply), the reply
 * to B, a stored message, was refused `VALIDATION_FAILED`, and the reply to the reply was taken. The answer hung on
 * how the sends were batched, where a conversation's writes apply in the order they were made.
 *
 * Now the sends of a commit are checked in their order: a reply names any seq below its own, the seq of a send of
 * the same commit included (a reply within it too) when that send is stored. The replies whose seq is not known
 * before the call, rare (a client learns a seq from an ack or `message:new`, after the commit, so only one that
 * counts seqs ahead sends them), are walked one after another per conversation, each counting the sends certain to
 * be stored before it and the replies taken before it. A call without any reply runs the statement as before.
 * `down()` gives back the previous function.
 */
const CHECKED_IN_ORDER: readonly [string, string, string] = [
  `      ), classified AS (
        SELECT l.conversation_id, l.sender_id, l.client_msg_id, l.body, l.reply_to, l.ord, l.member, l.blocked,
          l.stored, l.replay, l.live,
          NOT l.reply_known AND NOT l.reply_to BETWEEN 1 AND l.last_seq + count(*) FILTER (
            WHERE l.live AND l.member AND NOT l.blocked AND (l.stored).id IS NULL AND l.reply_known
          ) OVER (PARTITION BY l.conversation_id ORDER BY l.ord ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
            AS bad_reply
        FROM looked_up l
`,
  `      ), counted AS (
        -- A send to write but for its reply, whose seq is not known before the call; and the sends before each one
        -- that are certain to be stored (a reply, if any, to a seq known before the call).
        SELECT l.*,
          l.live AND l.member AND NOT l.blocked AND (l.stored).id IS NULL AND NOT l.reply_known AS reply_within,
          l.last_seq + count(*) FILTER (
            WHERE l.live AND l.member AND NOT l.blocked AND (l.stored).id IS NULL AND l.reply_known
          ) OVER (PARTITION BY l.conversation_id ORDER BY l.ord ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
            AS certain_below
        FROM looked_up l
      ), replies_within AS (
        SELECT w.conversation_id, w.ord, w.reply_to, w.certain_below,
          row_number() OVER (PARTITION BY w.conversation_id ORDER BY w.ord) AS n
        FROM counted w
        WHERE w.reply_within
      ), walked AS (
        -- One after another: each reply names a seq below its own, which the replies taken before it moved up.
        SELECT w.conversation_id, w.n, w.ord, (w.reply_to BETWEEN 1 AND w.certain_below)::integer AS taken,
          w.reply_to BETWEEN 1 AND w.certain_below AS ok
        FROM replies_within w
        WHERE w.n = 1
        UNION ALL
        SELECT w.conversation_id, w.n, w.ord, p.taken + (w.reply_to BETWEEN 1 AND w.certain_below + p.taken)::integer,
          w.reply_to BETWEEN 1 AND w.certain_below + p.taken
        FROM walked p
        JOIN replies_within w ON w.conversation_id = p.conversation_id AND w.n = p.n + 1
      ), classified AS (
        SELECT l.conversation_id, l.sender_id, l.client_msg_id, l.body, l.reply_to, l.ord, l.member, l.blocked,
          l.stored, l.replay, l.live, NOT l.reply_known AND NOT coalesce(k.ok, false) AS bad_reply
        FROM counted l
        LEFT JOIN walked k ON k.conversation_id = l.conversation_id AND k.ord = l.ord
`,
  'the check of replies',
];

const RECURSIVE: readonly [string, string, string] = [
  '      WITH input AS (',
  '      WITH RECURSIVE input AS (',
  'the statement of sends',
];

const SENDS_START = '    IF sends > 0 THEN\n';
const SENDS_END = '      ORDER BY 1;\n';

/**
 * `xfchat_write()` checking the replies of a commit in the order of its sends (exported for its tests). A call
 * whose sends name no reply (most) runs the statement of sends as it was, to the letter: the walk costs nothing
 * where there is nothing to walk, not even its planning.
 */
export const WRITE_REPLIES_IN_ORDER = ((): string => {
  const text = WRITE_ACTIVITY_FORWARD;
  const start = text.indexOf(SENDS_START);
  const end = text.indexOf(SENDS_END, start) + SENDS_END.length;
  if (start < 0 || text.indexOf(SENDS_START, start + 1) >= 0 || end < SENDS_END.length) {
    throw new Error('xfchat_write() does not read as expected: the statement of sends');
  }
  const statement = text.slice(start + SENDS_START.length, end);
  return [
    text.slice(0, start),
    '    IF sends > 0 AND NOT EXISTS (SELECT 1 FROM unnest(p_reply_to) AS x(reply_to) WHERE x.reply_to IS NOT NULL) THEN\n',
    statement,
    '    ELSIF sends > 0 THEN\n',
    rewrite(statement, [RECURSIVE, CHECKED_IN_ORDER]),
    text.slice(end),
  ].join('');
})();

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION ${WRITE_SIGNATURE}`);
  await knex.raw(WRITE_REPLIES_IN_ORDER);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION ${WRITE_SIGNATURE}`);
  await knex.raw(WRITE_ACTIVITY_FORWARD);
}
