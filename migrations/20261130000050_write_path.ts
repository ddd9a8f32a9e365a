import type { Knex } from 'knex';

/**
 * The message write path as one server-side function, so a group commit is one round trip in autocommit: the
 * node calls `xfchat_send(...)` once with every ready send of every conversation in the group, and PostgreSQL
 * locks, checks, numbers, inserts, moves read markers and (with other nodes listening) notifies, then commits.
 * PL/pgSQL caches the plans of its statements per connection, so nothing is planned again after the first calls.
 *
 * The first statement locks the conversations in id order (every writer on every node does, and so do
 * membership and block changes); the second, with a snapshot taken after the locks, sees everything committed
 * by whoever held them before: stored clientMsgIds, participants and blocks are checked under the lock.
 *
 * One result row per send, in input order: r_status 0 = stored now, 1 = stored before (or repeated within the
 * batch) with the same body, 2 = the same clientMsgId with another body, 3 = not a participant (or no such
 * conversation), 4 = a block stands between the two users of a direct conversation.
 *
 * With `p_notify_channel` set, committed messages are announced to the other nodes by NOTIFY in the same
 * transaction: delivered only if it commits, and even if the writing node dies right after. The payload carries
 * the messages when they fit in NOTIFY's 8000 bytes, and otherwise the seq ranges to read.
 *
 * fillfactor leaves room on each page so the per-commit UPDATEs of conversations and conversation_participants
 * (no indexed column changes) stay heap-only (HOT): no index entries, no page splits.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw('ALTER TABLE conversations SET (fillfactor = 70)');
  await knex.raw('ALTER TABLE conversation_participants SET (fillfactor = 70)');
  await knex.raw(`
    CREATE FUNCTION xfchat_send(
      p_conversation_ids uuid[],
      p_sender_ids uuid[],
      p_client_msg_ids text[],
      p_bodies text[],
      p_notify_channel text,
      p_node text
    ) RETURNS TABLE (r_ord integer, r_status smallint, r_id uuid, r_seq bigint, r_created_ms bigint)
    LANGUAGE plpgsql AS $fn$
    BEGIN
      PERFORM 1 FROM conversations c WHERE c.id = ANY (p_conversation_ids) ORDER BY c.id FOR NO KEY UPDATE;

      RETURN QUERY
      WITH input AS (
        SELECT s.conversation_id, s.sender_id, s.client_msg_id, s.body, s.ord::integer AS ord
        FROM unnest(p_conversation_ids, p_sender_ids, p_client_msg_ids, p_bodies)
          WITH ORDINALITY AS s(conversation_id, sender_id, client_msg_id, body, ord)
      ), senders AS (
        SELECT k.conversation_id, k.sender_id,
          EXISTS (
            SELECT 1 FROM conversation_participants p
            WHERE p.conversation_id = k.conversation_id AND p.user_id = k.sender_id
          ) AS member,
          EXISTS (
            SELECT 1 FROM conversations c
            JOIN conversation_participants o ON o.conversation_id = c.id AND o.user_id <> k.sender_id
            JOIN blocks b ON (b.blocker_id = k.sender_id AND b.blocked_id = o.user_id)
              OR (b.blocker_id = o.user_id AND b.blocked_id = k.sender_id)
            WHERE c.id = k.conversation_id AND c.type = 'direct'
          ) AS blocked
        FROM (SELECT DISTINCT i.conversation_id, i.sender_id FROM input i) k
      ), classified AS (
        SELECT i.conversation_id, i.sender_id, i.client_msg_id, i.body, i.ord, s.member, s.blocked,
          m.id AS stored_id, m.seq AS stored_seq, m.created_at AS stored_at, m.body AS stored_body,
          row_number() OVER w AS occurrence, first_value(i.body) OVER w AS first_body
        FROM input i
        JOIN senders s ON s.conversation_id = i.conversation_id AND s.sender_id = i.sender_id
        LEFT JOIN messages m ON m.conversation_id = i.conversation_id AND m.sender_id = i.sender_id
          AND m.client_msg_id = i.client_msg_id
        WINDOW w AS (PARTITION BY i.conversation_id, i.sender_id, i.client_msg_id ORDER BY i.ord)
      ), fresh AS (
        SELECT c.conversation_id, c.sender_id, c.client_msg_id, c.body,
          row_number() OVER (PARTITION BY c.conversation_id ORDER BY c.ord) AS k
        FROM classified c
        WHERE c.member AND NOT c.blocked AND c.stored_id IS NULL AND c.occurrence = 1
      ), counts AS (
        SELECT f.conversation_id, count(*) AS n FROM fresh f GROUP BY f.conversation_id
      ), reserved AS (
        UPDATE conversations c SET last_seq = c.last_seq + counts.n, last_activity_at = now()
        FROM counts WHERE c.id = counts.conversation_id
        RETURNING c.id, c.last_seq - counts.n AS base
      ), inserted AS (
        INSERT INTO messages (conversation_id, sender_id, seq, client_msg_id, body)
        SELECT f.conversation_id, f.sender_id, r.base + f.k, f.client_msg_id, f.body
        FROM fresh f JOIN reserved r ON r.id = f.conversation_id
        RETURNING messages.id, messages.conversation_id, messages.sender_id, messages.client_msg_id,
          messages.seq, messages.body, messages.created_at
      ), read_moved AS (
        UPDATE conversation_participants p SET last_read_seq = mine.seq
        FROM (
          SELECT n.conversation_id, n.sender_id, max(n.seq) AS seq FROM inserted n
          GROUP BY n.conversation_id, n.sender_id
        ) mine
        WHERE p.conversation_id = mine.conversation_id AND p.user_id = mine.sender_id
          AND p.last_read_seq < mine.seq
      ), announced AS (
        SELECT CASE WHEN p_notify_channel IS NULL OR NOT EXISTS (SELECT 1 FROM inserted) THEN NULL
          ELSE pg_notify(p_notify_channel, (
            SELECT CASE WHEN octet_length(full_form) <= 7900 THEN full_form ELSE ranges END
            FROM (
              SELECT json_build_object('n', p_node, 'm', json_agg(json_build_array(
                n.conversation_id, n.seq, n.id, n.sender_id, n.client_msg_id, n.body,
                (extract(epoch FROM n.created_at) * 1000)::bigint) ORDER BY n.conversation_id, n.seq))::text
                AS full_form,
                (SELECT json_build_object('n', p_node, 'r', json_agg(json_build_array(g.conversation_id, g.lo, g.hi)))
                  FROM (SELECT x.conversation_id, min(x.seq) AS lo, max(x.seq) AS hi FROM inserted x
                        GROUP BY x.conversation_id) g)::text AS ranges
              FROM inserted n
            ) forms
          ))
        END AS done
      )
      SELECT c.ord,
        (CASE
          WHEN NOT c.member THEN 3
          WHEN c.blocked THEN 4
          WHEN c.stored_id IS NOT NULL THEN CASE WHEN c.stored_body = c.body THEN 1 ELSE 2 END
          WHEN c.occurrence > 1 THEN CASE WHEN c.first_body = c.body THEN 1 ELSE 2 END
          ELSE 0
        END)::smallint,
        coalesce(n.id, c.stored_id),
        coalesce(n.seq, c.stored_seq),
        (extract(epoch FROM coalesce(n.created_at, c.stored_at)) * 1000)::bigint
      FROM classified c
      CROSS JOIN announced
      LEFT JOIN inserted n ON n.conversation_id = c.conversation_id AND n.sender_id = c.sender_id
        AND n.client_msg_id = c.client_msg_id
      ORDER BY c.ord;
    END
    $fn$`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP FUNCTION xfchat_send(uuid[], uuid[], text[], text[], text, text)');
  await knex.raw('ALTER TABLE conversation_participants RESET (fillfactor)');
  await knex.raw('ALTER TABLE conversations RESET (fillfactor)');
}
