import type { Knex } from 'knex';
import { WRITE } from './20261130000050_message_writes.js';

/**
 * `xfchat_write()` numbers its new messages without joining CTEs to each other.
 *
 * Before, the insert took each new message's seq from the seq-reserving UPDATE's RETURNING (a join of the fresh
 * sends to the reserved conversations), and the answer took each message's id and seq from the INSERT's RETURNING
 * (a join of every send to the inserted rows). PostgreSQL estimates a CTE at one row, so both joins were nested
 * loops that compared every send with every conversation, or every other send, of the call: about a tenth of
 * PostgreSQL's CPU at 46 messages a commit (docs/performance.md), and 20 ms of a 78 ms call at 1000 sends over 200
 * conversations.
 *
 * Now a fresh send's seq and version are the conversation's last ones, as read after its lock (the checks already
 * read them there for replyToSeq), plus its place among the conversation's fresh sends of the call; the function
 * also picks each new message's id, and its createdAt is the transaction's timestamp, as the column's default.
 * The UPDATE still adds the same counts to the same rows under the same lock, so seqs stay gap-free; no join of one
 * CTE to another is left in the statement.
 *
 * Only the sends' statement changes: the function is the earlier one with that statement replaced, and `down()`
 * puts the earlier one back.
 */
const SENDS_STATEMENT = `
      RETURN QUERY
      WITH input AS (
        SELECT s.conversation_id, s.sender_id, s.client_msg_id, s.body, s.reply_to, s.ord::integer AS ord
        FROM unnest(p_conversation_ids, p_sender_ids, p_client_msg_ids, p_bodies, p_reply_to)
          WITH ORDINALITY AS s(conversation_id, sender_id, client_msg_id, body, reply_to, ord)
        WHERE p_wait OR s.conversation_id = ANY (v_locked)
      ), senders AS (
        SELECT k.conversation_id, k.sender_id,
          EXISTS (
            SELECT 1 FROM conversation_participants p
            WHERE p.conversation_id = k.conversation_id AND p.user_id = k.sender_id
          ) AS member,
          -- xfchat_blocked() inlined: a PL/pgSQL call per sender costs about a tenth of a small commit.
          EXISTS (
            SELECT 1 FROM conversations c
            JOIN conversation_participants o ON o.conversation_id = c.id AND o.user_id <> k.sender_id
            JOIN blocks b ON (b.blocker_id = k.sender_id AND b.blocked_id = o.user_id)
              OR (b.blocker_id = o.user_id AND b.blocked_id = k.sender_id)
            WHERE c.id = k.conversation_id AND c.type = 'direct'
          ) AS blocked,
          -- Read after the lock: no other transaction changes them until this one ends.
          c.last_seq, c.version AS last_version
        FROM (SELECT DISTINCT i.conversation_id, i.sender_id FROM input i) k
        LEFT JOIN conversations c ON c.id = k.conversation_id
      ), classified AS (
        SELECT i.conversation_id, i.sender_id, i.client_msg_id, i.body, i.reply_to, i.ord, s.member, s.blocked,
          i.reply_to IS NOT NULL AND NOT i.reply_to BETWEEN 1 AND s.last_seq AS bad_reply, m AS stored,
          -- Once edited or deleted, the body sent first is gone: any repeat of the clientMsgId is then a replay.
          m.id IS NOT NULL AND (m.body = i.body OR m.edited_at IS NOT NULL OR m.deleted_at IS NOT NULL) AS replay,
          s.last_seq, s.last_version
        FROM input i
        JOIN senders s ON s.conversation_id = i.conversation_id AND s.sender_id = i.sender_id
        LEFT JOIN messages m ON m.conversation_id = i.conversation_id AND m.sender_id = i.sender_id
          AND m.client_msg_id = i.client_msg_id
      ), numbered AS (
        -- k: a fresh send's place among its conversation's fresh sends, in input order.
        SELECT c.*,
          CASE WHEN c.fresh THEN gen_random_uuid() END AS new_id,
          CASE WHEN c.fresh
            THEN count(*) FILTER (WHERE c.fresh) OVER (PARTITION BY c.conversation_id ORDER BY c.ord)
          END AS k
        FROM (
          SELECT x.*, coalesce(x.member AND NOT x.blocked AND (x.stored).id IS NULL AND NOT x.bad_reply, false)
            AS fresh
          FROM classified x
        ) c
      ), counts AS (
        SELECT n.conversation_id, count(*) AS n FROM numbered n WHERE n.fresh GROUP BY n.conversation_id
      ), reserved AS (
        UPDATE conversations c
        SET last_seq = c.last_seq + counts.n, version = c.version + counts.n, last_activity_at = now()
        FROM counts WHERE c.id = counts.conversation_id
      ), inserted AS (
        INSERT INTO messages (id, conversation_id, sender_id, seq, client_msg_id, body, reply_to_seq, version)
        SELECT n.new_id, n.conversation_id, n.sender_id, n.last_seq + n.k, n.client_msg_id, n.body, n.reply_to,
          n.last_version + n.k
        FROM numbered n
        WHERE n.fresh
        RETURNING messages.id, messages.conversation_id, messages.sender_id, messages.client_msg_id,
          messages.seq, messages.body, messages.reply_to_seq, messages.version, messages.created_at
      ), read_moved AS (
        UPDATE conversation_participants p SET last_read_seq = mine.seq
        FROM (
          SELECT n.conversation_id, n.sender_id, max(n.last_seq + n.k) AS seq FROM numbered n WHERE n.fresh
          GROUP BY n.conversation_id, n.sender_id
        ) mine
        WHERE p.conversation_id = mine.conversation_id AND p.user_id = mine.sender_id
          AND p.last_read_seq < mine.seq
      ), announced AS (
        -- NOTIFY carries at most 8000 bytes: the new messages go in as many announcements as they need, by
        -- conversation and seq; a conversation with a message too big for one is announced by its seq range,
        -- and the other nodes read it (at most 100 ranges an announcement).
        SELECT count(pg_notify(p_notify_channel, a.payload)) AS done
        FROM (
          SELECT json_build_object('n', p_node, 'm', json_agg(w.item ORDER BY w.conversation_id, w.seq))::text
            AS payload
          FROM (
            SELECT f.conversation_id, f.seq, f.item,
              sum(f.bytes) OVER (ORDER BY f.conversation_id, f.seq) / 3500 AS part
            FROM (
              SELECT n.conversation_id, n.seq, n.item, octet_length(n.item::text) AS bytes,
                max(octet_length(n.item::text)) OVER (PARTITION BY n.conversation_id) AS largest
              FROM (
                SELECT x.conversation_id, x.seq, json_build_array(x.conversation_id, x.seq, x.id, x.sender_id,
                  x.client_msg_id, x.body, floor(extract(epoch FROM x.created_at) * 1000)::bigint,
                  x.reply_to_seq, x.version) AS item
                FROM inserted x
              ) n
            ) f
            WHERE f.largest <= 3500
          ) w
          GROUP BY w.part
          UNION ALL
          SELECT json_build_object('n', p_node, 'r', json_agg(json_build_array(g.conversation_id, g.lo, g.hi)))::text
          FROM (
            SELECT x.conversation_id, min(x.seq) AS lo, max(x.seq) AS hi,
              (row_number() OVER (ORDER BY x.conversation_id) - 1) / 100 AS part
            FROM inserted x
            GROUP BY x.conversation_id
            HAVING max(octet_length(x.body)) > 3000
          ) g
          GROUP BY g.part
        ) a
        WHERE p_notify_channel IS NOT NULL
      )
      SELECT n.ord,
        (CASE
          WHEN NOT n.member THEN 3
          WHEN n.replay THEN 1
          WHEN n.blocked THEN 4
          WHEN (n.stored).id IS NOT NULL THEN 2
          WHEN n.bad_reply THEN 7
          ELSE 0
        END)::smallint,
        n.new_id, n.last_seq + n.k, n.last_version + n.k,
        -- created_at defaults to CURRENT_TIMESTAMP, the transaction's timestamp: now().
        CASE WHEN n.fresh THEN floor(extract(epoch FROM now()) * 1000)::bigint END,
        CASE WHEN n.member AND n.replay THEN xfchat_message_json(n.stored) END
      FROM numbered n
      CROSS JOIN announced
      UNION ALL
      SELECT s.ord::integer, 8::smallint, NULL::uuid, NULL::bigint, NULL::bigint, NULL::bigint, NULL::json
      FROM unnest(p_conversation_ids) WITH ORDINALITY AS s(conversation_id, ord)
      WHERE NOT p_wait AND NOT s.conversation_id = ANY (v_locked)
      ORDER BY 1;`;

/** The earlier function's text with its sends' statement replaced (the markers are in that migration's text). */
function withSendsStatement(statement: string): string {
  const start = WRITE.indexOf('\n      RETURN QUERY\n      WITH input AS (');
  const end = WRITE.indexOf('      ORDER BY 1;', start);
  if (start < 0 || end < 0)
    throw new Error("xfchat_write's sends statement not found in the earlier migration");
  return WRITE.slice(0, start) + statement + WRITE.slice(end + '      ORDER BY 1;'.length);
}

const orReplace = (sql: string): string =>
  sql.replace('CREATE FUNCTION xfchat_write(', 'CREATE OR REPLACE FUNCTION xfchat_write(');

export async function up(knex: Knex): Promise<void> {
  await knex.raw(orReplace(withSendsStatement(SENDS_STATEMENT)));
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(orReplace(WRITE));
}
