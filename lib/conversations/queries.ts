import type { Knex } from 'knex';
import { Conversation } from '../models/Conversation.js';
import { Friendship } from '../models/Friendship.js';
import { Message } from '../models/Message.js';
import type { ConversationListItem } from '../protocol/index.js';

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

/** My conversations, most recent activity first: three statements (conversations, participants+users, last messages). */
export async function listConversations(knex: Knex, userId: string): Promise<ConversationListItem[]> {
  const conversations = await Conversation.query(knex)
    .select('conversations.*')
    .join('conversation_participants as me', 'me.conversation_id', 'conversations.id')
    .where('me.user_id', userId)
    .orderBy([
      { column: 'conversations.last_activity_at', order: 'desc' },
      { column: 'conversations.id', order: 'desc' },
    ])
    .withGraphFetched('participants.user');
  const withMessages = conversations.filter((c) => c.lastSeq > 0).map((c) => c.id);
  const lastMessages =
    withMessages.length === 0
      ? []
      : await Message.query(knex)
          .select('messages.*')
          .join('conversations', (j) =>
            j
              .on('conversations.id', 'messages.conversation_id')
              .andOn('conversations.last_seq', 'messages.seq'),
          )
          // Filtering on conversations.id lets the planner start from the few conversation rows and probe
          // messages by (conversation_id, seq); filtering on messages scanned every message of them.
          .whereIn('conversations.id', withMessages);
  const lastById = new Map(lastMessages.map((m) => [m.conversationId, m.toPublic()]));
  return conversations.map((c) => {
    const mine = c.participants?.find((p) => p.userId === userId);
    return {
      ...c.toPublic(),
      lastMessage: lastById.get(c.id) ?? null,
      unreadCount: Math.max(0, c.lastSeq - (mine?.lastReadSeq ?? 0)),
    };
  });
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
