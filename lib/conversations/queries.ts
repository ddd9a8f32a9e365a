import type { Knex } from 'knex';
import { Conversation } from '../models/Conversation.js';
import { Friendship } from '../models/Friendship.js';
import type { ConversationListItem, PublicMessage } from '../protocol/index.js';

/**
 * Reads of the conversation service. Each takes its knex (or a transaction) explicitly and runs a fixed number
 * of statements whatever the number of conversations: no N+1.
 */

/**
 * Runs a read of several statements in one snapshot, so that its answer shows one state: without it, a message
 * committed between two statements could give a lastSeq of 1 with a last message of seq 2, or a participant's
 * lastReadSeq above lastSeq. On a fresh knex that is a read-only REPEATABLE READ transaction (knex opens it with one
 * `BEGIN TRANSACTION ISOLATION LEVEL repeatable read READ ONLY`; the snapshot is taken at the first statement). A
 * transaction given by the caller is kept, with its own isolation.
 */
function inOneSnapshot<T>(knex: Knex, read: (trx: Knex) => Promise<T>): Promise<T> {
  if (knex.isTransaction) return read(knex);
  return knex.transaction(read, { isolationLevel: 'repeatable read', readOnly: true });
}

/** The conversation with its participants and their users, or undefined: three statements, one snapshot. */
export async function loadConversation(
  knex: Knex,
  conversationId: string,
): Promise<Conversation | undefined> {
  return await inOneSnapshot(
    knex,
    async (trx) =>
      await Conversation.query(trx).findById(conversationId).withGraphFetched('participants.user'),
  );
}

/** The conversation if `userId` takes part in it; undefined otherwise (missing and hidden look the same). */
export async function loadVisibleConversation(
  knex: Knex,
  conversationId: string,
  userId: string,
): Promise<Conversation | undefined> {
  const conversation = await loadConversation(knex, conversationId);
  return conversation?.participants?.some((p) => p.userId === userId) ? conversation : undefined;
}

/** Where a page of my conversations starts: after this one (its activity in microseconds, and its id). */
export interface ListCursor {
  activityUs: string;
  id: string;
}

export interface ConversationList {
  conversations: ConversationListItem[];
  /** Where the next page starts, or null on the last page. */
  next: ListCursor | null;
}

/**
 * The participants a page of my conversations carries at most (each item carries every participant of its
 * conversation): a page ends before the conversation that would bring it above this, so `limit` is a maximum.
 * A page always carries its first conversation, whatever its size.
 */
export const LIST_PARTICIPANTS_BUDGET = 2000;

/**
 * The page statement. It starts from my memberships (the participants' user index) and probes conversations by
 * primary key, one membership at a time (a LATERAL sub-select with LIMIT 1 is never flattened into a join the
 * planner could turn into a hash join over a scan of every conversation), so it costs in proportion to my
 * conversations, not to the table. There is deliberately no index on last_activity_at: every message commit
 * changes it, and an index on it would end those updates' heap-only (HOT) path.
 *
 * The candidates are the `limit` + 1 next conversations, numbered in order. The walk counts their participants
 * one after the other (each by the participants' primary key) and stops after the first that no longer fits
 * the budget, so it counts at most the budget and one conversation more. The kept ones come back in order, each
 * with the number of candidates: more candidates than kept rows, and another page follows.
 */
const PAGE_SQL = (after: boolean) => `
  WITH RECURSIVE ahead AS MATERIALIZED (
    SELECT c.* FROM conversation_participants me
    CROSS JOIN LATERAL (SELECT * FROM conversations WHERE conversations.id = me.conversation_id LIMIT 1) c
    WHERE me.user_id = ?
    ${
      after
        ? "AND (c.last_activity_at, c.id) < (timestamptz 'epoch' + ?::bigint * interval '1 microsecond', ?::uuid)"
        : ''
    }
    ORDER BY c.last_activity_at DESC, c.id DESC
    LIMIT ?
  ), candidates AS MATERIALIZED (
    SELECT ahead.*, row_number() OVER (ORDER BY ahead.last_activity_at DESC, ahead.id DESC) AS n FROM ahead
  ), walk (n, carried) AS (
    SELECT 0::bigint, 0::bigint
    UNION ALL
    SELECT c.n, w.carried + (SELECT count(*) FROM conversation_participants p WHERE p.conversation_id = c.id)
    FROM walk w JOIN candidates c ON c.n = w.n + 1
    WHERE c.n <= ? AND (w.n = 0 OR w.carried <= ?)
  )
  SELECT c.id, c.type, c.title, c.created_by, c.direct_key, c.last_seq, c.version, c.last_activity_at,
         c.created_at, c.updated_at,
         (extract(epoch FROM c.last_activity_at) * 1000000)::bigint::text AS activity_us,
         (SELECT count(*) FROM candidates) AS candidates
  FROM walk w JOIN candidates c ON c.n = w.n
  WHERE w.n = 1 OR w.carried <= ?
  ORDER BY w.n`;

interface PageRow {
  id: string;
  activity_us: string;
  candidates: number;
  [column: string]: unknown;
}

/**
 * One page of my conversations, most recent activity first (ties by id): four statements whatever the page
 * size (the page, the participants of its conversations, their users, the last messages), in one snapshot. A
 * page ends early when its conversations' participants would pass LIST_PARTICIPANTS_BUDGET. The cursor compares
 * in microseconds, PostgreSQL's own precision, so a page never skips or repeats a conversation.
 */
export async function listConversations(
  knex: Knex,
  userId: string,
  page: { limit: number; after?: ListCursor | undefined },
): Promise<ConversationList> {
  return await inOneSnapshot(knex, (trx) => listPage(trx, userId, page));
}

async function listPage(
  knex: Knex,
  userId: string,
  page: { limit: number; after?: ListCursor | undefined },
): Promise<ConversationList> {
  const after = page.after ? [page.after.activityUs, page.after.id] : [];
  const { rows } = await knex.raw<{ rows: PageRow[] }>(PAGE_SQL(page.after !== undefined), [
    userId,
    ...after,
    page.limit + 1,
    page.limit,
    LIST_PARTICIPANTS_BUDGET,
    LIST_PARTICIPANTS_BUDGET,
  ]);
  const more = (rows[0]?.candidates ?? 0) > rows.length;
  const conversations = rows.map(({ activity_us: _activity, candidates: _candidates, ...columns }) =>
    Conversation.fromDatabaseJson(columns),
  );
  if (conversations.length > 0) {
    // Objection's two statements for the kept conversations only: their participants, then those users.
    await Conversation.fetchGraph(conversations, 'participants.user', { transaction: knex });
  }
  const withMessages = conversations.filter((c) => c.lastSeq > 0).map((c) => c.id);
  const lastMessages =
    withMessages.length === 0
      ? []
      : // Starting from the few conversation rows, the planner probes messages by (conversation_id, seq).
        (
          await knex.raw<{ rows: Array<{ message: PublicMessage }> }>(
            `SELECT xfchat_message_json(m) AS message FROM conversations c
             JOIN messages m ON m.conversation_id = c.id AND m.seq = c.last_seq
             WHERE c.id = ANY(?::uuid[])`,
            [withMessages],
          )
        ).rows.map((r) => r.message);
  const lastById = new Map(lastMessages.map((m) => [m.conversationId, m]));
  const last = rows.at(-1);
  return {
    conversations: conversations.map((c) => {
      const mine = c.participants?.find((p) => p.userId === userId);
      return {
        ...c.toPublic(),
        lastMessage: lastById.get(c.id) ?? null,
        unreadCount: Math.max(0, c.lastSeq - (mine?.lastReadSeq ?? 0)),
      };
    }),
    next: more && last ? { activityUs: last.activity_us, id: last.id } : null,
  };
}

/** Of `userIds`, those who are not `userId`'s friends (unknown ids included). */
export async function nonFriendsOf(
  knex: Knex,
  userId: string,
  userIds: readonly string[],
): Promise<string[]> {
  if (userIds.length === 0) return [];
  const rows = await Friendship.query(knex)
    .where((q) => {
      void q.where('user_low', userId).whereIn('user_high', userIds);
    })
    .orWhere((q) => {
      void q.where('user_high', userId).whereIn('user_low', userIds);
    });
  const friends = new Set(rows.map((r) => (r.userLow === userId ? r.userHigh : r.userLow)));
  return userIds.filter((id) => !friends.has(id));
}

/**
 * Of the given (user, conversation) pairs, those whose user no longer takes part in the conversation: one
 * statement for any number of pairs. Each with the conversation's count of removals as the statement read it
 * (undefined if the conversation is gone), which counts the removal that took the user out.
 */
export async function departedParticipants(
  knex: Knex,
  pairs: ReadonlyArray<{ userId: string; conversationId: string }>,
): Promise<Array<{ userId: string; conversationId: string; removals: number | undefined }>> {
  if (pairs.length === 0) return [];
  const result = await knex.raw<{
    rows: Array<{ user_id: string; conversation_id: string; removals: number | null }>;
  }>(
    `SELECT q.user_id, q.conversation_id, c.removals
       FROM unnest(?::uuid[], ?::uuid[]) AS q(user_id, conversation_id)
       LEFT JOIN conversations c ON c.id = q.conversation_id
      WHERE NOT EXISTS (SELECT 1 FROM conversation_participants p
                         WHERE p.conversation_id = q.conversation_id AND p.user_id = q.user_id)`,
    [pairs.map((p) => p.userId), pairs.map((p) => p.conversationId)],
  );
  return result.rows.map((r) => ({
    userId: r.user_id,
    conversationId: r.conversation_id,
    removals: r.removals ?? undefined,
  }));
}

/**
 * Records, in the removal's transaction, that `userId` left the conversation as its `removals`th removal: a node
 * that missed the removal's event tells it from here ({@link removedSince}). Deletes a few records older than a day
 * on the way, skipping any another removal holds (no waiting, whatever the conversations). Dated by the clock
 * when it is written, under the conversation's lock, not when the transaction began (`now()`): a removal that
 * waited for the lock longer than the check's margin would be dated before a gap it committed in.
 */
export async function recordRemoval(
  trx: Knex.Transaction,
  conversationId: string,
  userId: string,
  removals: number,
): Promise<void> {
  await trx.raw(
    `WITH pruned AS (
       DELETE FROM participant_removals
        WHERE (conversation_id, removals) IN (
          SELECT conversation_id, removals FROM participant_removals
           WHERE removed_at < now() - interval '1 day'
           ORDER BY removed_at LIMIT 20 FOR UPDATE SKIP LOCKED)
     )
     INSERT INTO participant_removals (conversation_id, removals, user_id, removed_at)
     VALUES (?, ?, ?, clock_timestamp())`,
    [conversationId, removals, userId],
  );
}

/**
 * The conversations that any of `userIds` was removed from at or after `since` and is not a participant of now,
 * newest first, at most `limit`: each with the count of its latest removal of that user. One statement, on the
 * records' user index.
 */
export async function removedSince(
  knex: Knex,
  userIds: readonly string[],
  since: Date,
  limit: number,
): Promise<Array<{ userId: string; conversationId: string; removals: number }>> {
  if (userIds.length === 0) return [];
  const { rows } = await knex.raw<{
    rows: Array<{ user_id: string; conversation_id: string; removals: number }>;
  }>(
    `SELECT user_id, conversation_id, max(removals) AS removals
       FROM participant_removals r
      WHERE r.user_id = ANY (?::uuid[]) AND r.removed_at >= ?
        AND NOT EXISTS (SELECT 1 FROM conversation_participants p
                         WHERE p.conversation_id = r.conversation_id AND p.user_id = r.user_id)
      GROUP BY user_id, conversation_id
      ORDER BY max(removed_at) DESC LIMIT ?`,
    [[...userIds], since, limit],
  );
  return rows.map((r) => ({ userId: r.user_id, conversationId: r.conversation_id, removals: r.removals }));
}

/**
 * The conversations that any of `userIds` joined at or after `since` (also by creating one), newest first, at most
 * `limit` memberships: each with its participants and their users, which of `userIds` joined it then, and its
 * count of removals as read with them. Three statements; the memberships come from the participants' user index.
 */
export async function joinedSince(
  knex: Knex,
  userIds: readonly string[],
  since: Date,
  limit: number,
): Promise<Array<{ conversation: Conversation; userIds: string[]; removals: number }>> {
  if (userIds.length === 0) return [];
  // The joins and the conversations in one snapshot: each conversation shows the users who joined it.
  return await inOneSnapshot(knex, (trx) => joinedConversations(trx, userIds, since, limit));
}

async function joinedConversations(
  knex: Knex,
  userIds: readonly string[],
  since: Date,
  limit: number,
): Promise<Array<{ conversation: Conversation; userIds: string[]; removals: number }>> {
  const { rows } = await knex.raw<{
    rows: Array<{ user_id: string; conversation_id: string; removals: number }>;
  }>(
    `SELECT p.user_id, p.conversation_id, c.removals FROM conversation_participants p
       JOIN conversations c ON c.id = p.conversation_id
      WHERE p.user_id = ANY (?::uuid[]) AND p.joined_at >= ?
      ORDER BY p.joined_at DESC LIMIT ?`,
    [[...userIds], since, limit],
  );
  const joined = new Map<string, { userIds: string[]; removals: number }>();
  for (const row of rows) {
    const seen = joined.get(row.conversation_id);
    if (seen) seen.userIds.push(row.user_id);
    else joined.set(row.conversation_id, { userIds: [row.user_id], removals: row.removals });
  }
  if (joined.size === 0) return [];
  const conversations = await Conversation.query(knex)
    .findByIds([...joined.keys()])
    .withGraphFetched('participants.user');
  return conversations.map((conversation) => ({
    conversation,
    userIds: joined.get(conversation.id)?.userIds ?? [],
    removals: joined.get(conversation.id)?.removals ?? 0,
  }));
}
