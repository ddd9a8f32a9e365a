import type { Knex } from 'knex';
import type { PublicConversation, PublicMessage, Reaction } from '../../lib/protocol/index.js';
import type { RunningServer } from '../../lib/server.js';
import { createGroup, friendsOf, newUser, rows } from './chat.js';
import type { ErrorResponse } from './errors.js';
import { request, type JsonResponse } from './http.js';
import type { TestUser } from './users.js';

/** Helpers of the message lifecycle tests: its REST calls, and the stored state read straight from SQL. */

type Reply<T> = JsonResponse<T & Partial<ErrorResponse>>;

const messagePath = (conversationId: string, seq: number | string) =>
  `/conversations/${conversationId}/messages/${seq}`;

/** An owner, two members (the owner's friends) and their group, made on `server`. */
export async function ownerAndTwoMembers(server: RunningServer): Promise<{
  owner: TestUser;
  alice: TestUser;
  bob: TestUser;
  id: string;
  conversation: PublicConversation;
}> {
  const owner = await newUser(server);
  const [alice, bob] = (await friendsOf(server, owner, 2)) as [TestUser, TestUser];
  const conversation = await createGroup(server.url, owner, [alice, bob]);
  return { owner, alice, bob, id: conversation.id, conversation };
}

/** One message as a fresh history read on `baseUrl` shows it to `user`. */
export async function currentMessage(
  baseUrl: string,
  user: TestUser,
  conversationId: string,
  seq: number,
): Promise<PublicMessage> {
  const res = await request<{ messages: PublicMessage[] }>(
    baseUrl,
    'GET',
    `/conversations/${conversationId}/messages?after=${seq - 1}&limit=1`,
    { token: user.token },
  );
  const message = res.body.messages[0];
  if (message?.seq !== seq) throw new Error(`no message ${seq}: ${res.text}`);
  return message;
}

/** `PATCH /conversations/:id/messages/:seq {body}`. */
export function editMessage(
  url: string,
  user: TestUser,
  conversationId: string,
  seq: number | string,
  body: unknown,
): Promise<Reply<{ message: PublicMessage }>> {
  return request(url, 'PATCH', messagePath(conversationId, seq), { token: user.token, body: { body } });
}

/** `DELETE /conversations/:id/messages/:seq`. */
export function deleteMessage(
  url: string,
  user: TestUser,
  conversationId: string,
  seq: number | string,
): Promise<Reply<object>> {
  return request(url, 'DELETE', messagePath(conversationId, seq), { token: user.token });
}

/** `PUT` (add) or `DELETE` (remove) `/conversations/:id/messages/:seq/reactions/:emoji`, the emoji URL-encoded. */
export function reaction(
  url: string,
  user: TestUser,
  method: 'PUT' | 'DELETE',
  conversationId: string,
  seq: number | string,
  emoji: string,
): Promise<Reply<object>> {
  const path = `${messagePath(conversationId, seq)}/reactions/${encodeURIComponent(emoji)}`;
  return request(url, method, path, { token: user.token });
}

export interface ChangesPage {
  messages: PublicMessage[];
  version: number;
  hasMore: boolean;
}

/** `GET /conversations/:id/changes?since=&limit=` (a raw query string when `since` is a string). */
export function changes(
  url: string,
  user: TestUser,
  conversationId: string,
  since: number | string,
  limit?: number,
): Promise<Reply<ChangesPage>> {
  const query =
    typeof since === 'string' ? since : `?since=${since}${limit === undefined ? '' : `&limit=${limit}`}`;
  return request(url, 'GET', `/conversations/${conversationId}/changes${query}`, { token: user.token });
}

/** Every message of a conversation over REST, in seq order (pages of 200). */
export async function fullHistory(
  url: string,
  user: TestUser,
  conversationId: string,
): Promise<PublicMessage[]> {
  const all: PublicMessage[] = [];
  for (let after = 0; ;) {
    const res = await request<{ messages: PublicMessage[]; hasMore: boolean }>(
      url,
      'GET',
      `/conversations/${conversationId}/messages?after=${after}&limit=200`,
      { token: user.token },
    );
    if (res.status !== 200) throw new Error(`history: ${res.status} ${res.text}`);
    all.push(...res.body.messages);
    after = all.at(-1)?.seq ?? after;
    if (!res.body.hasMore) return all;
  }
}

/** A stored message as its columns and reaction rows say, assembled here without the server's JSON function. */
export interface StoredMessage {
  seq: number;
  senderId: string | null;
  body: string;
  replyToSeq: number | null;
  edited: boolean;
  deleted: boolean;
  editedAt: string | null;
  deletedAt: string | null;
  version: number;
  reactions: Reaction[];
}

interface MessageRow {
  id: string;
  seq: number;
  sender_id: string | null;
  body: string;
  reply_to_seq: number | null;
  edited_at: string | null;
  deleted_at: string | null;
  version: number;
}

interface ReactionRow {
  message_id: string;
  emoji: string;
  user_id: string;
}

/**
 * The messages of a conversation straight from the tables, in seq order. Reactions are grouped by emoji in the
 * order of each emoji's first reaction, users in the order they reacted (the reaction rows' insertion times).
 */
export async function storedState(knex: Knex, conversationId: string): Promise<StoredMessage[]> {
  const messages = await rows<MessageRow>(
    knex,
    `SELECT id, seq, sender_id, body, reply_to_seq, version,
       to_char(edited_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS edited_at,
       to_char(deleted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS deleted_at
     FROM messages WHERE conversation_id = ? ORDER BY seq`,
    [conversationId],
  );
  const reactions = await rows<ReactionRow>(
    knex,
    `SELECT r.message_id, r.emoji, r.user_id FROM message_reactions r
     JOIN messages m ON m.id = r.message_id
     WHERE m.conversation_id = ? ORDER BY r.created_at, r.user_id`,
    [conversationId],
  );
  const byMessage = new Map<string, Map<string, string[]>>();
  for (const r of reactions) {
    const emojis = byMessage.get(r.message_id) ?? new Map<string, string[]>();
    byMessage.set(r.message_id, emojis);
    emojis.set(r.emoji, [...(emojis.get(r.emoji) ?? []), r.user_id]);
  }
  return messages.map((m) => ({
    seq: m.seq,
    senderId: m.sender_id,
    body: m.body,
    replyToSeq: m.reply_to_seq,
    edited: m.edited_at !== null,
    deleted: m.deleted_at !== null,
    editedAt: m.edited_at,
    deletedAt: m.deleted_at,
    version: m.version,
    reactions: [...(byMessage.get(m.id) ?? new Map<string, string[]>())].map(([emoji, userIds]) => ({
      emoji,
      userIds,
    })),
  }));
}

/** The same fields of messages as the API shows them, to compare with {@link storedState}. */
export function asStored(messages: readonly PublicMessage[]): StoredMessage[] {
  return messages.map((m) => ({
    seq: m.seq,
    senderId: m.senderId,
    body: m.body,
    replyToSeq: m.replyToSeq,
    edited: m.editedAt !== null,
    deleted: m.deletedAt !== null,
    editedAt: m.editedAt,
    deletedAt: m.deletedAt,
    version: m.version,
    reactions: m.reactions,
  }));
}

/** A conversation's counters as stored. */
export async function counters(
  knex: Knex,
  conversationId: string,
): Promise<{ lastSeq: number; version: number }> {
  const [row] = await rows<{ last_seq: number; version: number }>(
    knex,
    'SELECT last_seq, version FROM conversations WHERE id = ?',
    [conversationId],
  );
  if (!row) throw new Error(`no conversation ${conversationId}`);
  return { lastSeq: row.last_seq, version: row.version };
}

/** A small deterministic generator of numbers in [0, 1), so a failing run or interleaving can be run again. */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
