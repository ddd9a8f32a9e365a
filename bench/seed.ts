import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import type { ClientMsgIdKind } from './loadProtocol.js';
import { signAccessToken, type AuthConfig } from '../lib/auth/tokens.js';
import { Conversation } from '../lib/models/Conversation.js';
import { Friendship } from '../lib/models/Friendship.js';

/** A seeded user: what the load generator needs to connect as it. */
export interface SeededUser {
  id: string;
  token: string;
}

/** A seeded conversation; `members` index into the users array. */
export interface SeededConversation {
  id: string;
  members: number[];
}

export interface Seeded {
  users: SeededUser[];
  conversations: SeededConversation[];
}

/** Rows per INSERT statement while seeding: far below PostgreSQL's 65535 bind parameters. */
const CHUNK = 500;

async function insertChunked(knex: Knex, table: string, rows: readonly object[]): Promise<void> {
  for (let i = 0; i < rows.length; i += CHUNK) await knex(table).insert(rows.slice(i, i + CHUNK));
}

/**
 * Inserts `userCount` users, split into conversations of `conversationSize` (direct ones for 2, groups
 * otherwise), with the friendships the API would have required, straight into the database; tokens are signed
 * exactly as login does. Usernames carry a run-unique prefix, so scenarios never collide.
 */
export async function seedConversations(
  knex: Knex,
  auth: AuthConfig,
  userCount: number,
  conversationSize: number,
): Promise<Seeded> {
  const prefix = `b${randomBytes(4).toString('hex')}`;
  const userRows = await knex('users')
    .insert(
      Array.from({ length: userCount }, (_, i) => ({
        username: `${prefix}_${i}`,
        display_name: `${prefix}_${i}`,
        // Not a real hash: these users only ever authenticate with the token signed below.
        password_hash: 'bench-user-no-password',
      })),
    )
    .returning<Array<{ id: string }>>(['id']);
  // One session per user, as a login would start (without a refresh token: the bench never refreshes).
  const sessionRows = await knex('sessions')
    .insert(userRows.map((row) => ({ user_id: row.id })))
    .returning<Array<{ id: string; user_id: string }>>(['id', 'user_id']);
  const sessionOf = new Map(sessionRows.map((row) => [row.user_id, row.id]));
  const users = userRows.map((row) => ({
    id: row.id,
    token: signAccessToken({ userId: row.id, sessionId: sessionOf.get(row.id)! }, auth, Date.now()).token,
  }));

  const friendships: Array<{ user_low: string; user_high: string }> = [];
  const conversationRows: object[] = [];
  const membersOf: number[][] = [];
  for (let start = 0; start + conversationSize <= userCount; start += conversationSize) {
    const members = Array.from({ length: conversationSize }, (_, k) => start + k);
    const ids = members.map((m) => users[m]!.id);
    const owner = ids[0]!;
    for (const other of ids.slice(1)) {
      const pair = Friendship.pair(owner, other);
      friendships.push({ user_low: pair.userLow, user_high: pair.userHigh });
    }
    conversationRows.push(
      conversationSize === 2
        ? { type: 'direct', created_by: owner, direct_key: Conversation.directKeyFor(owner, ids[1]!) }
        : { type: 'group', created_by: owner, title: `${prefix} group ${start / conversationSize}` },
    );
    membersOf.push(members);
  }
  await insertChunked(knex, 'friendships', friendships);

  const conversations: SeededConversation[] = [];
  const participantRows: object[] = [];
  for (let i = 0; i < conversationRows.length; i += CHUNK) {
    const inserted = await knex('conversations')
      .insert(conversationRows.slice(i, i + CHUNK))
      .returning<Array<{ id: string }>>(['id']);
    inserted.forEach((row, k) => {
      const members = membersOf[i + k]!;
      conversations.push({ id: row.id, members });
      members.forEach((m, position) =>
        participantRows.push({
          conversation_id: row.id,
          user_id: users[m]!.id,
          role: position === 0 ? 'owner' : 'member',
        }),
      );
    });
  }
  await insertChunked(knex, 'conversation_participants', participantRows);
  return { users, conversations };
}

/** Messages each conversation of the main phases starts with (seedHistory). */
export const SEEDED_HISTORY = 20;

/**
 * Gives every conversation of `seeded` a history of `perConversation` messages (its members taking turns), then
 * analyzes `messages`. A database in use has both; a new one has neither until autovacuum analyzes it, and the
 * plans its connections cache before that stay: without column statistics the write path's idempotency check
 * reads every message of the conversation (docs/operations.md, Recovery), and a phase measured then runs at about
 * half rate. The bench measures the database in use. Only `messages`: analyzed while they hold a few dozen rows,
 * `users` and `conversations` are planned as the tiny tables they are, and the foreign-key checks of every insert
 * scan them, which took a fifth to a quarter off the storage baselines B1 and B2 (and so flattered goal 2).
 */
export async function seedHistory(
  knex: Knex,
  seeded: Seeded,
  perConversation = SEEDED_HISTORY,
): Promise<void> {
  const rows: object[] = [];
  for (const conversation of seeded.conversations) {
    for (let seq = 1; seq <= perConversation; seq++) {
      const member = conversation.members[(seq - 1) % conversation.members.length]!;
      rows.push({
        conversation_id: conversation.id,
        sender_id: seeded.users[member]!.id,
        seq,
        version: seq,
        client_msg_id: `seeded-${seq}`,
        body: `seeded message ${seq}`,
      });
    }
  }
  await insertChunked(knex, 'messages', rows);
  await knex('conversations')
    .whereIn(
      'id',
      seeded.conversations.map((c) => c.id),
    )
    .update({ last_seq: perConversation, version: perConversation });
  await knex.raw('ANALYZE messages');
}

/** Messages one statement of seedLargeHistory inserts, by default. */
const LARGE_HISTORY_CHUNK = 200_000;

/**
 * The clientMsgIds of seedLargeHistory's messages, as SQL of the message's seq `g`, in the generator's manner
 * (ClientMsgIdKind): in seq order for `counter` and `uuid7` (version-7 UUIDs of the epoch's first millisecond, before
 * every real one), random UUIDs for `uuid4`.
 */
const HISTORY_CLIENT_MSG_IDS: Record<ClientMsgIdKind, string> = {
  counter: "'history-' || g",
  uuid4: 'gen_random_uuid()::text',
  uuid7: "'00000000-0000-7000-8000-' || lpad(to_hex(g), 12, '0')",
};

/**
 * Gives every conversation of `seeded` `perConversation` messages of `body` (its members taking turns), by SQL on
 * the server, with the ids the schema's default gives and clientMsgIds of the `clientMsgIds` kind, and sets each
 * conversation's last_seq and version: a large history in seconds, where seedHistory's inserts from here would take
 * hours. No ANALYZE: the caller decides.
 */
export async function seedLargeHistory(
  knex: Knex,
  seeded: Seeded,
  perConversation: number,
  body: string,
  clientMsgIds: ClientMsgIdKind,
  chunk = LARGE_HISTORY_CHUNK,
): Promise<void> {
  for (const conversation of seeded.conversations) {
    const senders = conversation.members.map((member) => seeded.users[member]!.id);
    for (let from = 0; from < perConversation; from += chunk) {
      const to = Math.min(perConversation, from + chunk);
      await knex.raw(
        `INSERT INTO messages (conversation_id, sender_id, seq, version, client_msg_id, body)
         SELECT ?, (?::uuid[])[1 + (g - 1) % ?], g, g, ${HISTORY_CLIENT_MSG_IDS[clientMsgIds]}, ?
         FROM generate_series(?::bigint, ?::bigint) g`,
        // An array literal: knex would spread a JavaScript array into one binding per element.
        [conversation.id, `{${senders.join(',')}}`, senders.length, body, from + 1, to],
      );
    }
    await knex('conversations')
      .where({ id: conversation.id })
      .update({ last_seq: perConversation, version: perConversation });
  }
}
