import type { Knex } from 'knex';
import { AppError } from '../errors.js';
import { MESSAGE_COLUMNS, messageFromRow, type MessageRow } from '../models/Message.js';
import type { ConversationBatch, Outcome, SendCommand, Stored } from './types.js';

/**
 * The SQL of the group-commit writer and the pure decisions around it: which sends of a batch are new, which
 * replay a stored message, which conflict. Every statement takes the transaction it runs in.
 */

/** What became of one send: stored (new or an earlier one with the same clientMsgId), or an error. */
export type SendOutcome = Outcome<Stored>;

const keyOf = (conversationId: string, senderId: string | null, clientMsgId: string) =>
  `${conversationId}|${senderId ?? ''}|${clientMsgId}`;

/**
 * How each send of a batch will be answered: `existing` (stored before), `new` (index into the rows to insert),
 * a conflict, or `notMember` (the sender is no longer a participant). Decided after the conversation row is
 * locked, so no other writer and no membership change can come in between.
 */
export type Plan =
  | { kind: 'existing'; row: MessageRow }
  | { kind: 'new'; index: number; duplicate: boolean }
  | { kind: 'conflict' }
  | { kind: 'notMember' };

/** What the locked transaction found: messages already stored by clientMsgId, and which senders are members. */
export interface Lookup {
  stored: Map<string, MessageRow>;
  /** `conversationId|senderId` of every sender that is a participant now. */
  members: Set<string>;
}

const memberKey = (conversationId: string, senderId: string) => `${conversationId}|${senderId}`;

/** Splits a batch into new sends (`fresh`, to insert in order) and the answer planned for each send. */
export function planBatch(batch: ConversationBatch, lookup: Lookup): { plans: Plan[]; fresh: SendCommand[] } {
  const fresh: SendCommand[] = [];
  const firstInBatch = new Map<string, number>();
  const plans = batch.commands.map((send): Plan => {
    // The actor checked membership when it accepted the send; a removal committed since then (on any node)
    // is seen here, under the conversation lock that membership changes also take.
    if (!lookup.members.has(memberKey(batch.conversationId, send.senderId))) return { kind: 'notMember' };
    const key = keyOf(batch.conversationId, send.senderId, send.clientMsgId);
    const row = lookup.stored.get(key);
    if (row) return row.body === send.body ? { kind: 'existing', row } : { kind: 'conflict' };
    const earlier = firstInBatch.get(key);
    if (earlier !== undefined) {
      // The same clientMsgId twice in one batch is one message: the second is a retry of the first.
      return fresh[earlier]!.body === send.body
        ? { kind: 'new', index: earlier, duplicate: true }
        : { kind: 'conflict' };
    }
    firstInBatch.set(key, fresh.length);
    fresh.push(send);
    return { kind: 'new', index: fresh.length - 1, duplicate: false };
  });
  return { plans, fresh };
}

/** The new sends of one conversation, in seq order to be. */
export interface FreshBatch {
  conversationId: string;
  fresh: readonly SendCommand[];
}

/**
 * One statement for the new messages of any number of locked conversations: per conversation it reserves exactly
 * as many seqs as it has new messages (`UPDATE conversations SET last_seq = last_seq + n ... RETURNING last_seq`),
 * inserts them all in one multi-row INSERT, and moves each sender's own read marker forward. Returns the inserted
 * rows by conversation, in seq order (the order of `fresh`).
 */
export async function insertMessages(
  db: Knex | Knex.Transaction,
  batches: readonly FreshBatch[],
): Promise<Map<string, MessageRow[]>> {
  const columns = {
    conversationIds: [] as string[],
    senderIds: [] as string[],
    clientMsgIds: [] as string[],
    bodies: [] as string[],
    ordinals: [] as number[],
  };
  for (const { conversationId, fresh } of batches) {
    fresh.forEach((send, i) => {
      columns.conversationIds.push(conversationId);
      columns.senderIds.push(send.senderId);
      columns.clientMsgIds.push(send.clientMsgId);
      columns.bodies.push(send.body);
      columns.ordinals.push(i + 1);
    });
  }
  const result = await db.raw<{ rows: MessageRow[] }>(
    `WITH input AS (
       SELECT * FROM unnest(?::uuid[], ?::uuid[], ?::text[], ?::text[], ?::int[])
         AS s(conversation_id, sender_id, client_msg_id, body, ord)
     ), counts AS (
       SELECT conversation_id, count(*) AS n FROM input GROUP BY conversation_id
     ), reserved AS (
       UPDATE conversations c SET last_seq = c.last_seq + counts.n, last_activity_at = now()
       FROM counts WHERE c.id = counts.conversation_id
       RETURNING c.id, c.last_seq, counts.n
     ), inserted AS (
       INSERT INTO messages (conversation_id, sender_id, seq, client_msg_id, body)
       SELECT i.conversation_id, i.sender_id, r.last_seq - r.n + i.ord, i.client_msg_id, i.body
       FROM input i JOIN reserved r ON r.id = i.conversation_id
       RETURNING ${MESSAGE_COLUMNS}
     ), read_moved AS (
       UPDATE conversation_participants p SET last_read_seq = mine.seq
       FROM (SELECT conversation_id, sender_id, max(seq) AS seq FROM inserted GROUP BY conversation_id, sender_id) mine
       WHERE p.conversation_id = mine.conversation_id AND p.user_id = mine.sender_id AND p.last_read_seq < mine.seq
     )
     SELECT ${MESSAGE_COLUMNS} FROM inserted ORDER BY conversation_id, seq`,
    [columns.conversationIds, columns.senderIds, columns.clientMsgIds, columns.bodies, columns.ordinals],
  );
  if (result.rows.length !== columns.ordinals.length) {
    throw new Error(`expected ${columns.ordinals.length} inserted messages, got ${result.rows.length}`);
  }
  const byConversation = new Map<string, MessageRow[]>();
  for (const row of result.rows) {
    const list = byConversation.get(row.conversation_id) ?? [];
    list.push(row);
    byConversation.set(row.conversation_id, list);
  }
  return byConversation;
}

/** Each send's outcome, once `inserted` (the rows of `fresh`, in order) is known. */
export function outcomesFor(plans: Plan[], inserted: MessageRow[]): SendOutcome[] {
  return plans.map((plan): SendOutcome => {
    switch (plan.kind) {
      case 'existing':
        return { ok: true, value: { message: messageFromRow(plan.row), duplicate: true } };
      case 'conflict':
        return { ok: false, error: new AppError('IDEMPOTENCY_CONFLICT') };
      case 'notMember':
        return { ok: false, error: new AppError('NOT_FOUND') };
      case 'new':
        return {
          ok: true,
          value: { message: messageFromRow(inserted[plan.index]!), duplicate: plan.duplicate },
        };
    }
  });
}

/** The same error for every send of a batch. */
export const failAll = (batch: ConversationBatch, error: AppError): SendOutcome[] =>
  batch.commands.map(() => ({ ok: false, error }));

/**
 * Locks the batches' conversation rows in id order, so writers on several nodes never deadlock; returns the ids
 * that exist. NO KEY UPDATE is the lock the seq UPDATE takes anyway: it serializes writers and membership changes
 * of a conversation, but not the foreign-key checks of rows that merely reference it.
 */
export async function lockConversations(
  trx: Knex.Transaction,
  batches: readonly ConversationBatch[],
): Promise<Set<string>> {
  const ids = batches.map((b) => b.conversationId);
  const result = await trx.raw<{ rows: Array<{ id: string }> }>(
    'SELECT id FROM conversations WHERE id = ANY(?::uuid[]) ORDER BY id FOR NO KEY UPDATE',
    [ids],
  );
  return new Set(result.rows.map((r) => r.id));
}

/**
 * Messages already stored under the batches' clientMsgIds, and whether each sender is a participant, in one
 * statement after the lock: in READ COMMITTED it sees everything committed by whoever held the lock before us.
 */
export async function lookUpSends(
  trx: Knex.Transaction,
  batches: readonly ConversationBatch[],
): Promise<Lookup> {
  const conversationIds: string[] = [];
  const senderIds: string[] = [];
  const clientMsgIds: string[] = [];
  for (const batch of batches) {
    for (const send of batch.commands) {
      conversationIds.push(batch.conversationId);
      senderIds.push(send.senderId);
      clientMsgIds.push(send.clientMsgId);
    }
  }
  const result = await trx.raw<{
    rows: Array<Partial<MessageRow> & { k_conversation_id: string; k_sender_id: string; is_member: boolean }>;
  }>(
    `SELECT k.conversation_id AS k_conversation_id, k.sender_id AS k_sender_id, p.user_id IS NOT NULL AS is_member,
       m.id, m.conversation_id, m.sender_id, m.seq, m.client_msg_id, m.body, m.created_at
     FROM unnest(?::uuid[], ?::uuid[], ?::text[]) AS k(conversation_id, sender_id, client_msg_id)
     LEFT JOIN conversation_participants p ON p.conversation_id = k.conversation_id AND p.user_id = k.sender_id
     LEFT JOIN messages m ON m.conversation_id = k.conversation_id AND m.sender_id = k.sender_id
       AND m.client_msg_id = k.client_msg_id`,
    [conversationIds, senderIds, clientMsgIds],
  );
  const lookup: Lookup = { stored: new Map(), members: new Set() };
  for (const row of result.rows) {
    if (row.is_member) lookup.members.add(memberKey(row.k_conversation_id, row.k_sender_id));
    if (row.id !== undefined && row.id !== null) {
      const message = row as MessageRow;
      lookup.stored.set(keyOf(message.conversation_id, message.sender_id, message.client_msg_id), message);
    }
  }
  return lookup;
}
