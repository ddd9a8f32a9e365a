import type { Knex } from 'knex';
import { Conversation } from '../models/Conversation.js';
import { Friendship } from '../models/Friendship.js';
import type { ConversationListItem, PublicMessage } from '../protocol/index.js';

/**
 * Reads of the conversation service. Each takes its knex (or a transaction) explicitly and runs a fixed number
 * of statements whatever the number of conversations: no N+1.
 */

/** The conversation with its participants and their users, or undefined. */
export async function loadConversation(
  knex: Knex,
  conversationId: string,
): Promise<Conversation | undefined> {
  return await Conversation.query(knex).findById(conversationId).withGraphFetched('participants.user');
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
 * One page of my conversations, most recent activity first (ties by id): three statements whatever the page
 * size (conversations, participants with their users, last messages). The cursor compares in microseconds,
 * PostgreSQL's own precision, so a page never skips or repeats a conversation.
 */
export async function listConversations(
  knex: Knex,
  userId: string,
  page: { limit: number; after?: ListCursor | undefined },
): Promise<ConversationList> {
  const query = Conversation.query(knex)
    .select(
      'conversations.*',
      knex.raw('(extract(epoch FROM conversations.last_activity_at) * 1000000)::bigint::text AS activity_us'),
    )
    .join('conversation_participants as me', 'me.conversation_id', 'conversations.id')
    .where('me.user_id', userId)
    .orderBy([
      { column: 'conversations.last_activity_at', order: 'desc' },
      { column: 'conversations.id', order: 'desc' },
    ])
    .limit(page.limit + 1)
    .withGraphFetched('participants.user');
  if (page.after) {
    void query.whereRaw(
      "(conversations.last_activity_at, conversations.id) < (timestamptz 'epoch' + ?::bigint * interval '1 microsecond', ?)",
      [page.after.activityUs, page.after.id],
    );
  }
  const rows = (await query) as Array<Conversation & { activityUs: string }>;
  const conversations = rows.slice(0, page.limit);
  const last = conversations.at(-1);
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
  return {
    conversations: conversations.map((c) => {
      const mine = c.participants?.find((p) => p.userId === userId);
      return {
        ...c.toPublic(),
        lastMessage: lastById.get(c.id) ?? null,
        unreadCount: Math.max(0, c.lastSeq - (mine?.lastReadSeq ?? 0)),
      };
    }),
    next: rows.length > page.limit && last ? { activityUs: last.activityUs, id: last.id } : null,
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
 * statement for any number of pairs.
 */
export async function departedParticipants(
  knex: Knex,
  pairs: ReadonlyArray<{ userId: string; conversationId: string }>,
): Promise<Array<{ userId: string; conversationId: string }>> {
  if (pairs.length === 0) return [];
  const result = await knex.raw<{ rows: Array<{ user_id: string; conversation_id: string }> }>(
    `SELECT q.user_id, q.conversation_id
       FROM unnest(?::uuid[], ?::uuid[]) AS q(user_id, conversation_id)
      WHERE NOT EXISTS (SELECT 1 FROM conversation_participants p
                         WHERE p.conversation_id = q.conversation_id AND p.user_id = q.user_id)`,
    [pairs.map((p) => p.userId), pairs.map((p) => p.conversationId)],
  );
  return result.rows.map((r) => ({ userId: r.user_id, conversationId: r.conversation_id }));
}
