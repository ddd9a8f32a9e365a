import type { Knex } from 'knex';
import { lockWriteTables } from './20261202000000_message_ids_time_ordered.js';
import {
  rewrite,
  SEND_ONE_CHECKING_SESSION,
  WRITE_CHECKING_SESSIONS,
} from './20261203130000_session_checked_under_lock.js';

/**
 * Each write tells the node how many participants its conversation has lost so far, so the node can tell a
 * removal it has not heard of yet: `conversations.removals`, counted by every removal in its transaction
 * (lib/conversations/conversationService.ts, which also sends the count with the removal's `membership.changed`),
 * and a column `r_removals` more in the answers of `xfchat_write()` and `xfchat_send_one()`: the count as the
 * write read it under the conversation's lock, on each new or changed message's row (NULL on the others).
 *
 * Why: a node delivers the messages it writes to its own subscribers at their commit, not when it hears of them.
 * Another node's removal of a participant reaches it on the control bus, in commit order with the other nodes'
 * messages, but its own writes do not wait for that: a message it wrote in the moments after another node's
 * removal, before its control connection had read the removal, reached the removed user's sockets there (15
 * messages to 3 of 180 removed sockets in an audit across three nodes under load). Now a write that reads a count
 * above what the node has heard makes it take every socket of a non-participant out of the conversation's room
 * before delivering (lib/messaging/removals.ts).
 *
 * The functions keep their arguments and are created again with the new column: a node's named statements name
 * the columns they read, so one started before this migration keeps reading the same ones (PostgreSQL plans its
 * prepared statement again). Nodes of 0.2.0 call the older overloads, which stay. `down()` gives back the previous
 * functions and drops the column.
 */

/** Every new or changed message's row carries the conversation's removals as read under its lock. */
const RETURNS_REMOVALS: readonly [string, string, string] = [
  '    r_message json\n  )',
  '    r_message json, r_removals bigint\n  )',
  'the answers',
];

/** `xfchat_write()` answering the conversation's removals (exported for its tests). */
export const WRITE_ANSWERING_REMOVALS = rewrite(WRITE_CHECKING_SESSIONS, [
  RETURNS_REMOVALS,
  [
    'RETURNING c.id, c.last_seq - counts.n AS seq_base, c.version - counts.n AS version_base',
    'RETURNING c.id, c.last_seq - counts.n AS seq_base, c.version - counts.n AS version_base, c.removals',
    'the reserved seqs',
  ],
  [
    `        CASE WHEN c.live AND c.member AND c.replay THEN xfchat_message_json(c.stored) END
      FROM classified c
      CROSS JOIN announced
      LEFT JOIN inserted n ON n.conversation_id = c.conversation_id AND n.sender_id = c.sender_id
        AND n.client_msg_id = c.client_msg_id
`,
    `        CASE WHEN c.live AND c.member AND c.replay THEN xfchat_message_json(c.stored) END,
        r.removals
      FROM classified c
      CROSS JOIN announced
      LEFT JOIN inserted n ON n.conversation_id = c.conversation_id AND n.sender_id = c.sender_id
        AND n.client_msg_id = c.client_msg_id
      LEFT JOIN reserved r ON r.id = n.conversation_id
`,
    'the sends answered',
  ],
  ['NULL::bigint, NULL::json\n', 'NULL::bigint, NULL::json, NULL::bigint\n', 'the busy sends'],
  [
    'r_created_ms := NULL; r_message := NULL;',
    'r_created_ms := NULL; r_message := NULL; r_removals := NULL;',
    'each change starts blank',
  ],
  [
    'SELECT c.type, p.role INTO v_type, v_role\n',
    'SELECT c.type, p.role, c.removals INTO v_type, v_role, r_removals\n',
    'the change reads the conversation',
  ],
]);

/** `xfchat_send_one()` answering the conversation's removals. */
export const SEND_ONE_ANSWERING_REMOVALS = rewrite(SEND_ONE_CHECKING_SESSION, [
  RETURNS_REMOVALS,
  ['RETURNING c.last_seq, c.version\n', 'RETURNING c.last_seq, c.version, c.removals\n', 'the reserved seq'],
  [
    `      NULL::json
    FROM inserted n;`,
    `      NULL::json, r.removals
    FROM inserted n, reserved r;`,
    'the send answered',
  ],
]);

export const WRITE_SIGNATURE = `xfchat_write(uuid[], uuid[], text[], text[], bigint[], smallint[], uuid[], uuid[], bigint[],
  text[], text, text, boolean, uuid[], uuid[])`;
const SEND_ONE_SIGNATURE = 'xfchat_send_one(uuid, uuid, text, text, bigint, boolean, uuid)';

export async function up(knex: Knex): Promise<void> {
  // In the writers' order, with a limit on the wait (20261202000000).
  await lockWriteTables(knex);
  await knex.raw('ALTER TABLE conversations ADD COLUMN removals bigint NOT NULL DEFAULT 0');
  await knex.raw(`DROP FUNCTION ${WRITE_SIGNATURE}`);
  await knex.raw(WRITE_ANSWERING_REMOVALS);
  await knex.raw(`DROP FUNCTION ${SEND_ONE_SIGNATURE}`);
  await knex.raw(SEND_ONE_ANSWERING_REMOVALS);
}

export async function down(knex: Knex): Promise<void> {
  await lockWriteTables(knex);
  await knex.raw(`DROP FUNCTION ${WRITE_SIGNATURE}`);
  await knex.raw(WRITE_CHECKING_SESSIONS);
  await knex.raw(`DROP FUNCTION ${SEND_ONE_SIGNATURE}`);
  await knex.raw(SEND_ONE_CHECKING_SESSION);
  await knex.raw('ALTER TABLE conversations DROP COLUMN removals');
}
