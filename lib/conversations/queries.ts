import type { Knex } from 'knex';
import { Conversation, type PublicConversation } from '../models/Conversation.js';
import { Friendship } from '../models/Friendship.js';
import {
  MESSAGE_COLUMNS,
  Message,
  messageFromRow,
  type MessageRow,
  type PublicMessage,
} from '../models/Message.js';
import { Participant } from '../models/Participant.js';

/**
 * Reads shared by the conversation and message services. Each takes its knex (or a transaction) explicitly and
 * runs a fixed number of statements whatever the number of conversations: no N+1.
 */

/** Every participant's user id (the actors' membership cache is filled from this). */
export async function loadMemberIds(knex: Knex, conversationId: string): Promise<Set<string>> {
  const rows = await Participant.query(knex).select('user_id').where('conversation_id', conversationId);
  return new Set(rows.map((r) => r.userId));
}

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

/** A conversation in a list: the Conversation shape plus the last message and my unread count. */
export interface ConversationListItem extends PublicConversation {
  lastMessage: PublicMessage | null;
  unreadCount: number;
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

/** Which slice of history to read. */
export type HistoryWindow =
  | { kind: 'after'; seq: number; limit: number }
  | { kind: 'before'; seq: number; limit: number }
  | { kind: 'newest'; limit: number };

export interface HistoryPage {
  /** Ascending by seq. */
  messages: PublicMessage[];
  /** after: newer messages remain; before/newest: older ones exist. */
  hasMore: boolean;
  /** The conversation's last seq, read in the same statement (the same snapshot) as the messages. */
  lastSeq: number;
}

interface HistoryRow extends Omit<MessageRow, 'id'> {
  last_seq: number;
  /** Null when the page is empty (the LEFT JOIN's one row carries only last_seq). */
  id: string | null;
}

/**
 * One page of history by (conversation_id, seq) on the unique index. It reads one row more than asked to know
 * `hasMore`, and the conversation's last_seq in the same statement, so both come from one snapshot.
 */
export async function readHistory(
  knex: Knex,
  conversationId: string,
  window: HistoryWindow,
): Promise<HistoryPage> {
  const ascending = window.kind === 'after';
  const condition = window.kind === 'after' ? 'AND seq > ?' : window.kind === 'before' ? 'AND seq < ?' : '';
  const bindings: Array<string | number> = [conversationId];
  if (window.kind !== 'newest') bindings.push(window.seq);
  bindings.push(window.limit + 1, conversationId);
  const result = await knex.raw<{ rows: HistoryRow[] }>(
    `SELECT c.last_seq, m.id, m.conversation_id, m.sender_id, m.seq, m.client_msg_id, m.body, m.created_at
     FROM conversations c
     LEFT JOIN LATERAL (
       SELECT ${MESSAGE_COLUMNS} FROM messages
       WHERE conversation_id = ? ${condition}
       ORDER BY seq ${ascending ? 'ASC' : 'DESC'} LIMIT ?
     ) m ON true
     WHERE c.id = ?`,
    bindings,
  );
  const lastSeq = result.rows[0]?.last_seq ?? 0;
  const rows = result.rows.filter((r): r is HistoryRow & { id: string } => r.id !== null);
  const hasMore = rows.length > window.limit;
  const page = rows.slice(0, window.limit).map(messageFromRow);
  if (!ascending) page.reverse();
  return { messages: page, hasMore, lastSeq };
}
