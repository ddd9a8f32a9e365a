import type { Knex } from 'knex';

/**
 * Version 2 of the message path: the message lifecycle (replies, edits, deletes, reactions, a per-conversation
 * `version`) and every write of it as one server-side function, so a group commit is one round trip in autocommit.
 *
 * Schema:
 * - `conversations.version`: the conversation's change counter. Every new message, edit, delete and reaction
 *   change takes the next one; the message carries the version of its latest change (`messages.version`), and
 *   `messages (conversation_id, version)` answers "what changed since V". Existing rows start at version = seq.
 * - `messages.reply_to_seq` (an earlier seq of the same conversation), `edited_at`, `deleted_at` (a deleted
 *   message keeps its row and seq as a tombstone, with an empty body and no reactions).
 * - `message_reactions`: one row per (message, emoji, user).
 * - fillfactor leaves room on each page so the per-commit UPDATEs of conversations and conversation_participants
 *   (no indexed column changes) stay heap-only (HOT).
 *
 * `xfchat_write(...)` takes the ready sends and changes of every conversation in a group commit. Its first
 * statement locks the conversations in id order (membership and block changes lock them too); the later ones,
 * with snapshots taken after the locks, see everything committed by whoever held them before: stored
 * clientMsgIds, participants and blocks are checked under the lock. A conversation's batch holds either sends
 * (set-based, the hot path) or changes (one by one, in order), never both.
 *
 * Nodes sharing the database write the same conversations (their members are on different nodes). A group
 * commit waiting for one conversation another node holds would hold all of its own meanwhile, and the nodes'
 * commits would queue behind each other. So by default the lock skips (SKIP LOCKED) conversations another
 * transaction holds: their commands answer 8 (busy) and the node writes them again in a transaction that
 * waits for them (`p_wait`), in id order like every writer.
 *
 * Sends arrive without repeats (the node answers a clientMsgId repeated within one batch itself). One result
 * row per input, sends first then changes, each in input order. r_status: 0 done, 1 done before (a send
 * stored before with the same body, or since edited or deleted, whose first body is gone: answered in its
 * current state, also after a block, as it writes nothing; a change that changes nothing),
 * 2 the same clientMsgId with another body, 3 not found (not a participant, no such conversation or seq),
 * 4 blocked, 5 forbidden, 6 the message is deleted, 7 replyToSeq is not an earlier seq, 8 busy (the conversation
 * was locked by another transaction; nothing of it was written). A new message comes
 * back as fields; a stored one and every changed one as `r_message` (JSON in the contract's Message shape).
 *
 * With `p_notify_channel` set, the commit is announced to the other nodes by NOTIFY in the same transaction:
 * delivered only if it commits, and even if the writing node dies right after. The payloads carry the new
 * messages (in as many announcements as NOTIFY's 8000 bytes need; the seq ranges of conversations with a very
 * long message) and the seqs of changed messages.
 */

/**
 * The contract's Message as JSON, built in one place for every read that returns stored messages. PL/pgSQL, not
 * SQL: a SQL function with a sub-select is not inlined, and before PostgreSQL 18 it is planned again at every
 * statement that calls it; PL/pgSQL keeps its plans for the session.
 */
const MESSAGE_JSON = `
  CREATE FUNCTION xfchat_iso(t timestamptz) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
  $$;
  CREATE FUNCTION xfchat_message_json(m messages) RETURNS json LANGUAGE plpgsql STABLE AS $$
  BEGIN
    RETURN json_build_object(
      'id', m.id, 'conversationId', m.conversation_id, 'seq', m.seq, 'senderId', m.sender_id,
      'clientMsgId', m.client_msg_id, 'body', m.body, 'createdAt', xfchat_iso(m.created_at),
      'replyToSeq', m.reply_to_seq, 'editedAt', xfchat_iso(m.edited_at), 'deletedAt', xfchat_iso(m.deleted_at),
      'reactions', coalesce((
        SELECT json_agg(json_build_object('emoji', r.emoji, 'userIds', r.user_ids) ORDER BY r.first_at, r.emoji)
        FROM (
          SELECT x.emoji, json_agg(x.user_id ORDER BY x.created_at, x.user_id) AS user_ids,
            min(x.created_at) AS first_at
          FROM message_reactions x WHERE x.message_id = m.id GROUP BY x.emoji
        ) r), '[]'::json),
      'version', m.version);
  END
  $$;`;

/**
 * Whether a block stands between `user` and the other participant of a direct conversation. The send path of
 * `xfchat_write` has the same test inline (set-based, once per sender).
 */
export const BLOCKED = `
  CREATE FUNCTION xfchat_blocked(p_conversation uuid, p_user uuid) RETURNS boolean LANGUAGE plpgsql STABLE AS $$
  BEGIN
    RETURN EXISTS (
      SELECT 1 FROM conversations c
      JOIN conversation_participants o ON o.conversation_id = c.id AND o.user_id <> p_user
      JOIN blocks b ON (b.blocker_id = p_user AND b.blocked_id = o.user_id)
        OR (b.blocker_id = o.user_id AND b.blocked_id = p_user)
      WHERE c.id = p_conversation AND c.type = 'direct');
  END
  $$;`;

export const WRITE = `
  CREATE FUNCTION xfchat_write(
    p_conversation_ids uuid[], p_sender_ids uuid[], p_client_msg_ids text[], p_bodies text[], p_reply_to bigint[],
    p_change_kinds smallint[], p_change_conversation_ids uuid[], p_change_user_ids uuid[], p_change_seqs bigint[],
    p_change_texts text[],
    p_notify_channel text, p_node text, p_wait boolean
  ) RETURNS TABLE (
    r_ord integer, r_status smallint, r_id uuid, r_seq bigint, r_version bigint, r_created_ms bigint,
    r_message json
  )
  LANGUAGE plpgsql AS $fn$
  DECLARE
    sends integer := coalesce(cardinality(p_conversation_ids), 0);
    v_kind smallint;
    v_conversation uuid;
    v_user uuid;
    v_text text;
    v_type text;
    v_role text;
    v_message messages;
    v_version bigint;
    v_changed boolean;
    v_updates json[] := '{}';
    v_locked uuid[];
  BEGIN
    IF p_wait THEN
      PERFORM 1 FROM conversations c
      WHERE c.id = ANY (p_conversation_ids) OR c.id = ANY (p_change_conversation_ids)
      ORDER BY c.id FOR NO KEY UPDATE;
    ELSE
      -- Also leaves out conversations that do not exist: they answer busy, and the waiting retry finds them gone.
      SELECT coalesce(array_agg(l.id), '{}') INTO v_locked FROM (
        SELECT c.id FROM conversations c
        WHERE c.id = ANY (p_conversation_ids) OR c.id = ANY (p_change_conversation_ids)
        ORDER BY c.id FOR NO KEY UPDATE SKIP LOCKED
      ) l;
    END IF;

    IF sends > 0 THEN
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
          (SELECT c.last_seq FROM conversations c WHERE c.id = k.conversation_id) AS last_seq
        FROM (SELECT DISTINCT i.conversation_id, i.sender_id FROM input i) k
      ), classified AS (
        SELECT i.conversation_id, i.sender_id, i.client_msg_id, i.body, i.reply_to, i.ord, s.member, s.blocked,
          i.reply_to IS NOT NULL AND NOT i.reply_to BETWEEN 1 AND s.last_seq AS bad_reply, m AS stored,
          -- Once edited or deleted, the body sent first is gone: any repeat of the clientMsgId is then a replay.
          m.id IS NOT NULL AND (m.body = i.body OR m.edited_at IS NOT NULL OR m.deleted_at IS NOT NULL) AS replay
        FROM input i
        JOIN senders s ON s.conversation_id = i.conversation_id AND s.sender_id = i.sender_id
        LEFT JOIN messages m ON m.conversation_id = i.conversation_id AND m.sender_id = i.sender_id
          AND m.client_msg_id = i.client_msg_id
      ), fresh AS (
        SELECT c.conversation_id, c.sender_id, c.client_msg_id, c.body, c.reply_to,
          row_number() OVER (PARTITION BY c.conversation_id ORDER BY c.ord) AS k
        FROM classified c
        WHERE c.member AND NOT c.blocked AND (c.stored).id IS NULL AND NOT c.bad_reply
      ), counts AS (
        SELECT f.conversation_id, count(*) AS n FROM fresh f GROUP BY f.conversation_id
      ), reserved AS (
        UPDATE conversations c
        SET last_seq = c.last_seq + counts.n, version = c.version + counts.n, last_activity_at = now()
        FROM counts WHERE c.id = counts.conversation_id
        RETURNING c.id, c.last_seq - counts.n AS seq_base, c.version - counts.n AS version_base
      ), inserted AS (
        INSERT INTO messages (conversation_id, sender_id, seq, client_msg_id, body, reply_to_seq, version)
        SELECT f.conversation_id, f.sender_id, r.seq_base + f.k, f.client_msg_id, f.body, f.reply_to,
          r.version_base + f.k
        FROM fresh f JOIN reserved r ON r.id = f.conversation_id
        RETURNING messages.id, messages.conversation_id, messages.sender_id, messages.client_msg_id,
          messages.seq, messages.body, messages.reply_to_seq, messages.version, messages.created_at
      ), read_moved AS (
        UPDATE conversation_participants p SET last_read_seq = mine.seq
        FROM (
          SELECT n.conversation_id, n.sender_id, max(n.seq) AS seq FROM inserted n
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
      SELECT c.ord,
        (CASE
          WHEN NOT c.member THEN 3
          WHEN c.replay THEN 1
          WHEN c.blocked THEN 4
          WHEN (c.stored).id IS NOT NULL THEN 2
          WHEN c.bad_reply THEN 7
          ELSE 0
        END)::smallint,
        n.id, n.seq, n.version, floor(extract(epoch FROM n.created_at) * 1000)::bigint,
        CASE WHEN c.member AND c.replay THEN xfchat_message_json(c.stored) END
      FROM classified c
      CROSS JOIN announced
      LEFT JOIN inserted n ON n.conversation_id = c.conversation_id AND n.sender_id = c.sender_id
        AND n.client_msg_id = c.client_msg_id
      UNION ALL
      SELECT s.ord::integer, 8::smallint, NULL::uuid, NULL::bigint, NULL::bigint, NULL::bigint, NULL::json
      FROM unnest(p_conversation_ids) WITH ORDINALITY AS s(conversation_id, ord)
      WHERE NOT p_wait AND NOT s.conversation_id = ANY (v_locked)
      ORDER BY 1;
    END IF;

    FOR i IN 1 .. coalesce(cardinality(p_change_kinds), 0) LOOP
      v_kind := p_change_kinds[i];
      v_conversation := p_change_conversation_ids[i];
      v_user := p_change_user_ids[i];
      v_text := p_change_texts[i];
      r_ord := sends + i;
      r_id := NULL; r_seq := NULL; r_version := NULL; r_created_ms := NULL; r_message := NULL;
      IF NOT p_wait AND NOT v_conversation = ANY (v_locked) THEN
        r_status := 8; RETURN NEXT; CONTINUE;
      END IF;
      SELECT c.type, p.role INTO v_type, v_role
      FROM conversations c JOIN conversation_participants p ON p.conversation_id = c.id AND p.user_id = v_user
      WHERE c.id = v_conversation;
      IF NOT FOUND THEN
        r_status := 3; RETURN NEXT; CONTINUE;
      END IF;
      SELECT * INTO v_message FROM messages m WHERE m.conversation_id = v_conversation AND m.seq = p_change_seqs[i];
      IF NOT FOUND THEN
        r_status := 3; RETURN NEXT; CONTINUE;
      END IF;
      -- 1 edit, 2 delete, 3 add a reaction, 4 remove a reaction. A block stops all but deleting.
      IF v_kind <> 2 AND xfchat_blocked(v_conversation, v_user) THEN
        r_status := 4; RETURN NEXT; CONTINUE;
      END IF;
      IF (v_kind = 1 AND v_message.sender_id IS DISTINCT FROM v_user)
        OR (v_kind = 2 AND v_message.sender_id IS DISTINCT FROM v_user AND NOT (v_type = 'group' AND v_role = 'owner'))
      THEN
        r_status := 5; RETURN NEXT; CONTINUE;
      END IF;
      IF v_message.deleted_at IS NOT NULL THEN
        r_status := CASE WHEN v_kind = 2 THEN 1 ELSE 6 END;
        r_message := xfchat_message_json(v_message); RETURN NEXT; CONTINUE;
      END IF;
      v_changed := true;
      IF v_kind = 1 THEN
        v_changed := v_message.body <> v_text;
      ELSIF v_kind = 2 THEN
        DELETE FROM message_reactions x WHERE x.message_id = v_message.id;
      ELSIF v_kind = 3 THEN
        INSERT INTO message_reactions (message_id, emoji, user_id) VALUES (v_message.id, v_text, v_user)
        ON CONFLICT DO NOTHING;
        v_changed := FOUND;
      ELSE
        DELETE FROM message_reactions x WHERE x.message_id = v_message.id AND x.emoji = v_text AND x.user_id = v_user;
        v_changed := FOUND;
      END IF;
      IF v_changed THEN
        UPDATE conversations c SET version = c.version + 1
        WHERE c.id = v_conversation RETURNING c.version INTO v_version;
        UPDATE messages m SET version = v_version,
          body = CASE v_kind WHEN 1 THEN v_text WHEN 2 THEN '' ELSE m.body END,
          edited_at = CASE WHEN v_kind = 1 THEN now() ELSE m.edited_at END,
          deleted_at = CASE WHEN v_kind = 2 THEN now() ELSE m.deleted_at END
        WHERE m.id = v_message.id
        RETURNING * INTO v_message;
        v_updates := v_updates || json_build_array(v_conversation, v_message.seq);
      END IF;
      r_status := CASE WHEN v_changed THEN 0 ELSE 1 END;
      r_message := xfchat_message_json(v_message);
      RETURN NEXT;
    END LOOP;

    IF p_notify_channel IS NOT NULL AND cardinality(v_updates) > 0 THEN
      -- 100 changed messages an announcement keeps each well under NOTIFY's 8000 bytes.
      FOR i IN 0 .. (cardinality(v_updates) - 1) / 100 LOOP
        PERFORM pg_notify(p_notify_channel,
          json_build_object('n', p_node, 'u', to_json(v_updates[i * 100 + 1 : i * 100 + 100]))::text);
      END LOOP;
    END IF;
  END
  $fn$;`;

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    ALTER TABLE conversations ADD COLUMN version bigint NOT NULL DEFAULT 0;
    UPDATE conversations SET version = last_seq;
    ALTER TABLE messages
      ADD COLUMN reply_to_seq bigint,
      ADD COLUMN edited_at timestamptz,
      ADD COLUMN deleted_at timestamptz,
      ADD COLUMN version bigint NOT NULL DEFAULT 0;
    UPDATE messages SET version = seq;
    ALTER TABLE messages
      ADD CONSTRAINT messages_reply_to_check CHECK (reply_to_seq IS NULL OR reply_to_seq BETWEEN 1 AND seq - 1),
      DROP CONSTRAINT messages_body_check,
      ADD CONSTRAINT messages_body_check CHECK (CASE WHEN deleted_at IS NULL
        THEN char_length(body) BETWEEN 1 AND 4000 AND body ~ '[^[:space:]]' ELSE body = '' END);
    CREATE INDEX messages_conversation_version_idx ON messages (conversation_id, version);
    CREATE TABLE message_reactions (
      message_id uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
      emoji text NOT NULL CONSTRAINT message_reactions_emoji_check CHECK (char_length(emoji) BETWEEN 1 AND 16),
      user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
      -- The clock, not the transaction's start: reactions applied in one group commit keep the order they came in.
      created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
      PRIMARY KEY (message_id, emoji, user_id)
    );
    ALTER TABLE conversations SET (fillfactor = 70);
    ALTER TABLE conversation_participants SET (fillfactor = 70);
  `);
  await knex.raw(MESSAGE_JSON);
  await knex.raw(BLOCKED);
  await knex.raw(WRITE);
}

export async function down(knex: Knex): Promise<void> {
  // The twelve-argument xfchat_write() is release 0.2.0's (this migration's up() as shipped in it); a database
  // migrated since then has it from 20261203000000_upgrade_from_0_2_0. The thirteen-argument one is this up()'s
  // since: a database only 0.2.0 migrated has not got it.
  await knex.raw(`
    DROP FUNCTION IF EXISTS xfchat_write(uuid[], uuid[], text[], text[], bigint[], smallint[], uuid[], uuid[],
      bigint[], text[], text, text);
    DROP FUNCTION IF EXISTS xfchat_write(uuid[], uuid[], text[], text[], bigint[], smallint[], uuid[], uuid[], bigint[],
      text[], text, text, boolean);
    DROP FUNCTION xfchat_blocked(uuid, uuid);
    DROP FUNCTION xfchat_message_json(messages);
    DROP FUNCTION xfchat_iso(timestamptz);
    ALTER TABLE conversation_participants RESET (fillfactor);
    ALTER TABLE conversations RESET (fillfactor);
    DROP TABLE message_reactions;
    DROP INDEX messages_conversation_version_idx;
    -- A deleted message's body is '' (this migration's CHECK), which version 1's CHECK refuses: the old CHECK goes
    -- first, then the body is filled in, then version 1's CHECK comes back.
    ALTER TABLE messages DROP CONSTRAINT messages_body_check;
    UPDATE messages SET body = '(deleted)' WHERE deleted_at IS NOT NULL;
    ALTER TABLE messages
      ADD CONSTRAINT messages_body_check CHECK (char_length(body) BETWEEN 1 AND 4000 AND body ~ '[^[:space:]]'),
      DROP CONSTRAINT messages_reply_to_check,
      DROP COLUMN version,
      DROP COLUMN deleted_at,
      DROP COLUMN edited_at,
      DROP COLUMN reply_to_seq;
    ALTER TABLE conversations DROP COLUMN version;
  `);
}
