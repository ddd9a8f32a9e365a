import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { recordRemoval } from '../../lib/conversations/queries.js';
import type { Database } from '../../lib/db.js';
import { createLogger } from '../../lib/logger.js';
import type { Announcement } from '../../lib/messaging/announcements.js';
import { MESSAGES_CHANNEL } from '../../lib/messaging/statements.js';
import type { MessageCommand } from '../../lib/messaging/types.js';
import { createGroupCommitWriter } from '../../lib/messaging/writer.js';
import type { Ack, ServerToClientEvents } from '../../lib/protocol/index.js';
import type { PublicConversation, PublicMessage } from '../../lib/protocol/index.js';
import type { RunningServer } from '../../lib/server.js';
import { request, type JsonResponse } from './http.js';
import type { ErrorResponse } from './errors.js';
import type { ClientSocket } from './sockets.js';
import { insertFriendship, insertUser, type TestUser } from './users.js';

/** Helpers for conversation and message tests: users with friendships, conversations over REST, sockets. */

/** `count` new users, each a friend of `owner`. */
export async function friendsOf(server: RunningServer, owner: TestUser, count: number): Promise<TestUser[]> {
  const { knex } = server.services.db;
  const users = await Promise.all(
    Array.from({ length: count }, () => insertUser(knex, server.services.config)),
  );
  await Promise.all(users.map((u) => insertFriendship(knex, owner.id, u.id)));
  return users;
}

/** A new user. */
export function newUser(server: RunningServer): Promise<TestUser> {
  return insertUser(server.services.db.knex, server.services.config);
}

/** A group created over REST by `owner` with `members` (who must be the owner's friends). */
export async function createGroup(
  url: string,
  owner: TestUser,
  members: readonly TestUser[],
  title = 'a group',
): Promise<PublicConversation> {
  const res = await request<{ conversation: PublicConversation }>(url, 'POST', '/conversations', {
    token: owner.token,
    body: { type: 'group', title, participantIds: members.map((m) => m.id) },
  });
  if (res.status !== 201) throw new Error(`creating a group: ${res.status} ${res.text}`);
  return res.body.conversation;
}

/**
 * Sets a conversation's history to `count` messages from `senderId` with one multi-row INSERT: each `body` if given
 * (a big one, for the tests of what a node holds for a socket), else `message <seq>`.
 */
export async function seedMessages(
  knex: Knex,
  conversationId: string,
  senderId: string,
  count: number,
  body?: string,
): Promise<void> {
  await knex.raw(
    `INSERT INTO messages (conversation_id, sender_id, seq, client_msg_id, body)
     SELECT ?, ?, g, 'seed-' || g, coalesce(?::text, 'message ' || g) FROM generate_series(1, ?::int) AS g`,
    [conversationId, senderId, body ?? null, count],
  );
  await knex('conversations').where({ id: conversationId }).update({ last_seq: count });
}

/** Rows of a query with bindings: tests read PostgreSQL directly to check what is stored. */
export async function rows<T>(
  knex: Knex,
  query: string,
  bindings: readonly Knex.RawBinding[] = [],
): Promise<T[]> {
  const result = await knex.raw<{ rows: T[] }>(query, bindings);
  return result.rows;
}

/** A conversation's last_seq and the seqs stored for it, ascending. */
export async function seqState(
  knex: Knex,
  conversationId: string,
): Promise<{ lastSeq: number; seqs: number[] }> {
  const [conversation] = await rows<{ last_seq: number }>(
    knex,
    'SELECT last_seq FROM conversations WHERE id = ?',
    [conversationId],
  );
  const stored = await rows<{ seq: number }>(
    knex,
    'SELECT seq FROM messages WHERE conversation_id = ? ORDER BY seq',
    [conversationId],
  );
  return { lastSeq: conversation?.last_seq ?? -1, seqs: stored.map((r) => r.seq) };
}

/**
 * Commits commands in one conversation as a node that announces nothing would (another node that does not count
 * this one yet, or one whose announcements are still on their way): the messages, or a thrown error if one is
 * refused.
 */
export async function commitUnannounced(
  db: Pick<Database, 'connections'>,
  conversationId: string,
  commands: MessageCommand[],
): Promise<PublicMessage[]> {
  const writer = createGroupCommitWriter({
    connections: db.connections,
    logger: createLogger('silent'),
    maxConcurrency: 1,
  });
  try {
    const outcomes = await writer.write({ conversationId, commands });
    return outcomes.map((o) => {
      if (!o.ok) throw new Error('command refused');
      return o.value.message;
    });
  } finally {
    await writer.close();
  }
}

/** Another node's announcement of its writes (see commitUnannounced), arriving now on the channel the nodes use. */
export async function announceAsAnotherNode(knex: Knex, announcement: Announcement): Promise<void> {
  await knex.raw('SELECT pg_notify(?, ?)', [MESSAGES_CHANNEL, JSON.stringify(announcement)]);
}

/**
 * Removes `userId` from the conversation as a removal writes it (the count of removals, the record the socket check
 * reads after a gap), with no event at all: as a node whose LISTEN connection was down misses it. Answers the
 * removal's count.
 */
export async function removeWithNoEvent(knex: Knex, conversationId: string, userId: string): Promise<number> {
  return await knex.transaction(async (trx) => {
    await trx('conversation_participants')
      .where({ conversation_id: conversationId, user_id: userId })
      .delete();
    const [counted] = await trx('conversations')
      .where('id', conversationId)
      .increment('removals', 1)
      .returning<Array<{ removals: number }>>('removals');
    if (counted === undefined) throw new Error(`no conversation ${conversationId}`);
    await recordRemoval(trx, conversationId, userId, counted.removals);
    return counted.removals;
  });
}

/** Every event of one kind a socket receives, in arrival order. */
export function record<E extends keyof ServerToClientEvents>(
  socket: ClientSocket,
  event: E,
): Array<Parameters<ServerToClientEvents[E]>[0]> {
  const seen: Array<Parameters<ServerToClientEvents[E]>[0]> = [];
  // socket.io-client's typed `on` cannot relate a generic E to its listener; the payload type is E's own.
  (socket.on as (e: string, listener: (payload: Parameters<ServerToClientEvents[E]>[0]) => void) => void)(
    event,
    (payload) => seen.push(payload),
  );
  return seen;
}

/** The ok side of an ack, or a thrown error naming the code. */
export function expectOk<T extends object>(ack: Ack<T>): { ok: true } & T {
  if (!ack.ok) throw new Error(`expected an ok ack, got ${JSON.stringify(ack)}`);
  return ack;
}

/** Subscribes and returns the ok ack. */
export async function subscribe(
  socket: ClientSocket,
  conversationId: string,
  options: { afterSeq?: number; limit?: number } = {},
) {
  return expectOk(await socket.emitWithAck('conversation:subscribe', { conversationId, ...options }));
}

/** Sends one message and returns the ack (ok or not). */
export function send(socket: ClientSocket, conversationId: string, body: string, clientMsgId = randomUUID()) {
  return socket.emitWithAck('message:send', { conversationId, clientMsgId, body });
}

/** Seqs 1..n. */
export const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);

/** The distinct seqs of some messages, ascending. */
export const seqsOf = (messages: readonly PublicMessage[]): number[] =>
  [...new Set(messages.map((m) => m.seq))].sort((a, b) => a - b);

/** `PUT /conversations/:id/messages/:clientMsgId` over real HTTP. */
export function putMessage(
  url: string,
  user: TestUser,
  conversationId: string,
  clientMsgId: string,
  body: unknown,
): Promise<JsonResponse<{ message: PublicMessage } & Partial<ErrorResponse>>> {
  return request<{ message: PublicMessage } & Partial<ErrorResponse>>(
    url,
    'PUT',
    `/conversations/${conversationId}/messages/${clientMsgId}`,
    { token: user.token, body },
  );
}
