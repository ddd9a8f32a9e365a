import type { Knex } from 'knex';
import type { GroupCommitWriter, WriteOutcome } from '../../lib/messaging/writer.js';
import { rows } from './chat.js';
import { untilAStatementWaitsForALock } from './postgres.js';

/** The set-ups of the group-commit writer's tests (test/messaging/writer*.test.ts). */

/** A new group of two, `owner` and `member`, written straight into the tables. */
export async function insertGroup(knex: Knex, owner: string, member: string): Promise<string> {
  const [row] = await rows<{ id: string }>(
    knex,
    "INSERT INTO conversations (type, title) VALUES ('group', 't') RETURNING id",
  );
  await knex('conversation_participants').insert([
    { conversation_id: row!.id, user_id: owner, role: 'owner' },
    { conversation_id: row!.id, user_id: member, role: 'member' },
  ]);
  return row!.id;
}

/**
 * A transaction holding the conversations' rows, as another node's group commit (or a membership change) would:
 * commit it to let them go, or {@link letGo}.
 */
export async function holdConversations(knex: Knex, ...ids: string[]): Promise<Knex.Transaction> {
  const hold = await knex.transaction();
  try {
    for (const id of ids) await hold.raw('SELECT id FROM conversations WHERE id = ? FOR NO KEY UPDATE', [id]);
  } catch (err) {
    await hold.rollback();
    throw err;
  }
  return hold;
}

/** Rolls back the holds not yet ended. */
export async function letGo(...holds: Array<Knex.Transaction | undefined>): Promise<void> {
  for (const hold of holds) if (hold !== undefined && !hold.isCompleted()) await hold.rollback();
}

/** Writes one message of `senderId` into a conversation through `writer`: its body is its clientMsgId. */
export const sender =
  (writer: GroupCommitWriter, senderId: string) =>
  (conversationId: string, clientMsgId: string): Promise<WriteOutcome[]> =>
    writer.write({
      conversationId,
      commands: [{ kind: 'send', senderId, clientMsgId, body: clientMsgId, replyToSeq: null }],
    });

/**
 * Until a transaction of this database waits for a lock: the writer's, on a conversation the test holds (not a commit
 * waiting for the NOTIFY queue lock; see untilAStatementWaitsForALock).
 */
export const lockWaitSeen = (knex: Knex) =>
  untilAStatementWaitsForALock(knex, 'the writer to wait for the held conversation');
