import type { Knex } from 'knex';
import { WRITE_WITH_REACTION_CAP } from './20261202200000_reaction_cap.js';
import { SEND_ONE } from './20261201000000_send_one.js';

/**
 * Every send and change names the session it came in on, and is refused when that session has ended, checked in the
 * write's own transaction after the conversation's lock: `xfchat_write(..., p_session_ids, p_change_session_ids)`
 * and `xfchat_send_one(..., p_session)`, overloads of the previous functions with those arguments added.
 *
 * Before, only the node checked the session: when the token was checked, and when it heard that the session had
 * ended (a logout, a deletion, a refresh token used twice) on another node. A socket's send taken in the moments
 * between the `204` there and the notice here was still stored, acknowledged and delivered, after the session had
 * ended (up to 43 ms after the `204` in an audit across three nodes; from a "Deleted user" after a deletion). An
 * ended session's row is deleted in the transaction that ends it (`sessions`, migrations/20261130000100_sessions.ts),
 * and each statement of these functions reads a snapshot taken after the lock: a write whose checks run after that
 * transaction committed (every write the node takes after the `204`) sees the row gone and answers the new status
 * 10 (the node answers `UNAUTHORIZED`), writing nothing. A null session is not checked (a write of no session).
 *
 * Statuses as documented in migrations/20261130000050_message_writes.ts and 20261202200000_reaction_cap.ts, and 10:
 * the command's session has ended. It comes first: an ended session learns nothing else of the conversation (for a
 * lone send, of a conversation that exists; one that does not answers 3 there, as before).
 *
 * The previous functions stay for the nodes of the previous release, which run beside these during a rolling
 * upgrade (the node names each statement's version: lib/messaging/statements.ts); `down()` drops the overloads.
 */

/** Exactly one occurrence of `from` in `text` replaced by `to`: the function reads as this migration expects. */
function replaceOnce(text: string, from: string, to: string, what: string): string {
  const at = text.indexOf(from);
  if (at < 0 || text.indexOf(from, at + 1) >= 0) {
    throw new Error(`the previous function does not read as expected: ${what}`);
  }
  return text.slice(0, at) + to + text.slice(at + from.length);
}

/** Applies each [from, to, what] in order (later migrations rewrite these functions the same way). */
export function rewrite(text: string, edits: ReadonlyArray<readonly [string, string, string]>): string {
  return edits.reduce((current, [from, to, what]) => replaceOnce(current, from, to, what), text);
}

const SESSION_LIVE = (session: string, user: string) =>
  `EXISTS (SELECT 1 FROM sessions x WHERE x.id = ${session} AND x.user_id = ${user})`;

/** `xfchat_write()` with the sessions' check (exported for its tests). */
export const WRITE_CHECKING_SESSIONS = rewrite(WRITE_WITH_REACTION_CAP, [
  [
    'p_notify_channel text, p_node text, p_wait boolean\n',
    'p_notify_channel text, p_node text, p_wait boolean,\n    p_session_ids uuid[], p_change_session_ids uuid[]\n',
    'the arguments',
  ],
  [
    `SELECT s.conversation_id, s.sender_id, s.client_msg_id, s.body, s.reply_to, s.ord::integer AS ord
        FROM unnest(p_conversation_ids, p_sender_ids, p_client_msg_ids, p_bodies, p_reply_to)
          WITH ORDINALITY AS s(conversation_id, sender_id, client_msg_id, body, reply_to, ord)`,
    `SELECT s.conversation_id, s.sender_id, s.client_msg_id, s.body, s.reply_to, s.ord::integer AS ord,
          s.session_id
        FROM unnest(p_conversation_ids, p_sender_ids, p_client_msg_ids, p_bodies, p_reply_to, p_session_ids)
          WITH ORDINALITY AS s(conversation_id, sender_id, client_msg_id, body, reply_to, session_id, ord)`,
    'the unnested sends',
  ],
  [
    `SELECT i.conversation_id, i.sender_id, i.client_msg_id, i.body, i.reply_to, i.ord, s.member, s.blocked,`,
    `SELECT i.conversation_id, i.sender_id, i.client_msg_id, i.body, i.reply_to, i.ord, s.member, s.blocked,
          i.session_id IS NULL OR ${SESSION_LIVE('i.session_id', 'i.sender_id')} AS live,`,
    'the looked-up sends',
  ],
  [
    `SELECT l.conversation_id, l.sender_id, l.client_msg_id, l.body, l.reply_to, l.ord, l.member, l.blocked,
          l.stored, l.replay,`,
    `SELECT l.conversation_id, l.sender_id, l.client_msg_id, l.body, l.reply_to, l.ord, l.member, l.blocked,
          l.stored, l.replay, l.live,`,
    'the classified sends',
  ],
  [
    'WHERE l.member AND NOT l.blocked AND (l.stored).id IS NULL AND l.reply_known',
    'WHERE l.live AND l.member AND NOT l.blocked AND (l.stored).id IS NULL AND l.reply_known',
    'the earlier sends a reply may name',
  ],
  [
    'WHERE c.member AND NOT c.blocked AND (c.stored).id IS NULL AND NOT c.bad_reply',
    'WHERE c.live AND c.member AND NOT c.blocked AND (c.stored).id IS NULL AND NOT c.bad_reply',
    'the sends to store',
  ],
  ['WHEN NOT c.member THEN 3', 'WHEN NOT c.live THEN 10\n          WHEN NOT c.member THEN 3', 'the statuses'],
  [
    'CASE WHEN c.member AND c.replay THEN',
    'CASE WHEN c.live AND c.member AND c.replay THEN',
    'the replayed message',
  ],
  [
    `        r_status := 8; RETURN NEXT; CONTINUE;
      END IF;
`,
    `        r_status := 8; RETURN NEXT; CONTINUE;
      END IF;
      IF p_change_session_ids[i] IS NOT NULL AND NOT ${SESSION_LIVE('p_change_session_ids[i]', 'v_user')} THEN
        r_status := 10; RETURN NEXT; CONTINUE;
      END IF;
`,
    'the busy change',
  ],
]);

/** `xfchat_send_one()` with the session's check (exported for the next version). */
export const SEND_ONE_CHECKING_SESSION = rewrite(SEND_ONE, [
  [
    'p_reply_to bigint, p_wait boolean\n',
    'p_reply_to bigint, p_wait boolean, p_session uuid\n',
    'the arguments',
  ],
  ['    v_member boolean;\n', '    v_member boolean;\n    v_live boolean;\n', 'the variables'],
  [
    `    SELECT c.last_seq,
      EXISTS (`,
    `    SELECT c.last_seq,
      p_session IS NULL OR ${SESSION_LIVE('p_session', 'p_sender')},
      EXISTS (`,
    'the checks',
  ],
  ['INTO v_last, v_member, v_blocked,', 'INTO v_last, v_live, v_member, v_blocked,', 'the checks read'],
  [
    `    IF NOT FOUND OR NOT v_member THEN`,
    `    IF FOUND AND NOT v_live THEN
      r_status := 10; RETURN NEXT; RETURN;
    END IF;
    IF NOT FOUND OR NOT v_member THEN`,
    'the first refusal',
  ],
]);

export async function up(knex: Knex): Promise<void> {
  await knex.raw(WRITE_CHECKING_SESSIONS);
  await knex.raw(SEND_ONE_CHECKING_SESSION);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION xfchat_write(uuid[], uuid[], text[], text[], bigint[], smallint[], uuid[], uuid[],
    bigint[], text[], text, text, boolean, uuid[], uuid[])`);
  await knex.raw('DROP FUNCTION xfchat_send_one(uuid, uuid, text, text, bigint, boolean, uuid)');
}
