import type { Knex } from 'knex';
import { AppError, isDbUnavailable, toAppError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { toPublicMessage, type PublicMessage } from '../lib/models/Message.js';

/** One message a participant asked to send; already validated and authorized. */
export interface SendRequest {
  senderId: string;
  clientMsgId: string;
  body: string;
}

/** What became of one send: stored (new or an earlier one with the same clientMsgId), or an error. */
export type SendOutcome =
  { ok: true; message: PublicMessage; duplicate: boolean } | { ok: false; error: AppError };

/** The ready sends of one conversation, in the order they were accepted. */
export interface ConversationBatch {
  conversationId: string;
  sends: readonly SendRequest[];
}

/** Reported after every transaction, for metrics and tests. */
export interface TransactionReport {
  /** Conversation batches in the transaction. */
  batches: number;
  /** Sends in them, duplicates included. */
  sends: number;
  /** New messages committed (0 when the transaction failed). */
  persisted: number;
  committed: boolean;
}

export interface GroupCommitWriterOptions {
  knex: Knex;
  logger: Logger;
  /** Transactions running at once; keep it below the pool size so reads still get connections. */
  concurrency: number;
  /** Sends per transaction; a batch is never split, so one larger than this runs alone. @default 1000 */
  maxSendsPerTransaction?: number;
  onTransaction?: (report: TransactionReport) => void;
}

interface Pending {
  batch: ConversationBatch;
  resolve: (outcomes: SendOutcome[]) => void;
}

interface MessageRow {
  id: string;
  conversation_id: string;
  sender_id: string | null;
  seq: number;
  client_msg_id: string;
  body: string;
  created_at: Date;
}

const MESSAGE_COLUMNS = 'id, conversation_id, sender_id, seq, client_msg_id, body, created_at';

function fromRow(row: MessageRow): PublicMessage {
  return toPublicMessage({
    id: row.id,
    conversationId: row.conversation_id,
    senderId: row.sender_id,
    seq: row.seq,
    clientMsgId: row.client_msg_id,
    body: row.body,
    createdAt: row.created_at,
  });
}

const keyOf = (conversationId: string, senderId: string | null, clientMsgId: string) =>
  `${conversationId}|${senderId ?? ''}|${clientMsgId}`;

/**
 * How each send of a batch will be answered: `existing` (stored before), `new` (index into the rows to insert)
 * or a conflict. Decided after the conversation row is locked, so no other writer can add a row in between.
 */
type Plan =
  | { kind: 'existing'; row: MessageRow }
  | { kind: 'new'; index: number; duplicate: boolean }
  | { kind: 'conflict' };

function planBatch(
  batch: ConversationBatch,
  stored: Map<string, MessageRow>,
): { plans: Plan[]; fresh: SendRequest[] } {
  const fresh: SendRequest[] = [];
  const firstInBatch = new Map<string, number>();
  const plans = batch.sends.map((send): Plan => {
    const key = keyOf(batch.conversationId, send.senderId, send.clientMsgId);
    const row = stored.get(key);
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

/**
 * Reserves `fresh.length` seqs on the locked conversation row, inserts the messages in one multi-row INSERT and
 * moves each sender's own read marker forward: one statement, so one round trip per conversation.
 */
async function insertBatch(
  db: Knex | Knex.Transaction,
  conversationId: string,
  fresh: SendRequest[],
): Promise<MessageRow[]> {
  const n = fresh.length;
  const result = await db.raw<{ rows: MessageRow[] }>(
    `WITH reserved AS (
       UPDATE conversations SET last_seq = last_seq + ?, last_activity_at = now() WHERE id = ? RETURNING last_seq
     ), inserted AS (
       INSERT INTO messages (conversation_id, sender_id, seq, client_msg_id, body)
       SELECT ?, s.sender_id, reserved.last_seq - ? + s.ord, s.client_msg_id, s.body
       FROM reserved, unnest(?::uuid[], ?::text[], ?::text[]) WITH ORDINALITY AS s(sender_id, client_msg_id, body, ord)
       RETURNING ${MESSAGE_COLUMNS}
     ), read_moved AS (
       UPDATE conversation_participants p SET last_read_seq = mine.seq
       FROM (SELECT sender_id, max(seq) AS seq FROM inserted GROUP BY sender_id) mine
       WHERE p.conversation_id = ? AND p.user_id = mine.sender_id AND p.last_read_seq < mine.seq
     )
     SELECT ${MESSAGE_COLUMNS} FROM inserted ORDER BY seq`,
    [
      n,
      conversationId,
      conversationId,
      n,
      fresh.map((s) => s.senderId),
      fresh.map((s) => s.clientMsgId),
      fresh.map((s) => s.body),
      conversationId,
    ],
  );
  if (result.rows.length !== n) throw new Error(`expected ${n} inserted messages, got ${result.rows.length}`);
  return result.rows;
}

function outcomesFor(plans: Plan[], inserted: MessageRow[]): SendOutcome[] {
  return plans.map((plan): SendOutcome => {
    switch (plan.kind) {
      case 'existing':
        return { ok: true, message: fromRow(plan.row), duplicate: true };
      case 'conflict':
        return { ok: false, error: new AppError('IDEMPOTENCY_CONFLICT') };
      case 'new':
        return { ok: true, message: fromRow(inserted[plan.index]!), duplicate: plan.duplicate };
    }
  });
}

const failAll = (batch: ConversationBatch, error: AppError): SendOutcome[] =>
  batch.sends.map(() => ({ ok: false, error }));

/**
 * Commits the ready batches of many conversations in one transaction, so at load many messages share one
 * commit (one WAL flush) instead of paying for one each.
 */
export interface GroupCommitWriter {
  /**
   * Writes one conversation's batch. Never rejects: every send gets an outcome, in order. The caller keeps at
   * most one batch in flight per conversation, which keeps each conversation's order.
   */
  write(batch: ConversationBatch): Promise<SendOutcome[]>;
  /** Batches waiting for a transaction slot. */
  readonly waiting: number;
  /** Refuses new batches and waits for the running and waiting ones. Idempotent. */
  close(): Promise<void>;
}

/**
 * The writer. No timer: whatever is ready when a transaction slot frees goes into the next transaction, so a
 * lone message is written at once and a burst is grouped.
 *
 * In a transaction, conversation rows are locked in id order (no deadlock between nodes), then every batch is
 * checked for clientMsgIds already stored, then each batch is written inside a SAVEPOINT of its own: a batch
 * whose insert fails (a CHECK, a trigger) rolls back alone and gets error outcomes, the others commit. If the
 * transaction itself fails, every batch in it gets an error outcome and no seq moves (the rollback undoes it).
 */
export function createGroupCommitWriter(options: GroupCommitWriterOptions): GroupCommitWriter {
  const { knex, logger } = options;
  const concurrency = Math.max(1, options.concurrency);
  const maxSends = options.maxSendsPerTransaction ?? 1000;
  const ready: Pending[] = [];
  let running = 0;
  let closed = false;
  let idleWaiters: Array<() => void> = [];

  /** The next group: oldest first, one batch per conversation (a second one waits for the next transaction). */
  function takeGroup(): Pending[] {
    const group: Pending[] = [];
    const seen = new Set<string>();
    let sends = 0;
    for (let i = 0; i < ready.length;) {
      const pending = ready[i]!;
      const size = pending.batch.sends.length;
      if (group.length > 0 && sends + size > maxSends) break;
      if (seen.has(pending.batch.conversationId)) {
        i += 1;
        continue;
      }
      seen.add(pending.batch.conversationId);
      sends += size;
      group.push(pending);
      ready.splice(i, 1);
    }
    return group;
  }

  function pump(): void {
    while (running < concurrency && ready.length > 0) {
      const group = takeGroup();
      running += 1;
      void runTransaction(group).finally(() => {
        running -= 1;
        pump();
        if (running === 0 && ready.length === 0) {
          const waiters = idleWaiters;
          idleWaiters = [];
          for (const resolve of waiters) resolve();
        }
      });
    }
  }

  async function runTransaction(group: Pending[]): Promise<void> {
    const batches = [...group].sort((a, b) => (a.batch.conversationId < b.batch.conversationId ? -1 : 1));
    const results = new Map<Pending, SendOutcome[]>();
    let persisted = 0;
    try {
      await knex.transaction(async (trx) => {
        const locked = await lockConversations(trx, batches);
        const stored = await findStored(trx, batches);
        const isolate = batches.length > 1;
        for (const pending of batches) {
          const { batch } = pending;
          if (!locked.has(batch.conversationId)) {
            results.set(pending, failAll(batch, new AppError('NOT_FOUND')));
            continue;
          }
          const { plans, fresh } = planBatch(batch, stored);
          if (fresh.length === 0) {
            results.set(pending, outcomesFor(plans, []));
            continue;
          }
          try {
            const inserted = isolate
              ? await trx.transaction((savepoint) => insertBatch(savepoint, batch.conversationId, fresh))
              : await insertBatch(trx, batch.conversationId, fresh);
            results.set(pending, outcomesFor(plans, inserted));
            persisted += inserted.length;
          } catch (err) {
            // Only this batch's savepoint is rolled back; a lost connection still fails the whole transaction.
            if (!isolate || isDbUnavailable(err)) throw err;
            const error = toAppError(err);
            logger.error(
              { err, conversationId: batch.conversationId },
              'message batch failed; rolled back alone',
            );
            results.set(pending, failAll(batch, error));
          }
        }
      });
    } catch (err) {
      const error = toAppError(err);
      if (error.code === 'DB_UNAVAILABLE')
        logger.warn({ err }, 'message transaction failed: database unavailable');
      else logger.error({ err }, 'message transaction failed');
      for (const pending of batches) pending.resolve(failAll(pending.batch, error));
      report(batches, 0, false);
      return;
    }
    for (const pending of batches)
      pending.resolve(results.get(pending) ?? failAll(pending.batch, new AppError('INTERNAL')));
    report(batches, persisted, true);
  }

  function report(batches: Pending[], persisted: number, committed: boolean): void {
    if (!options.onTransaction) return;
    const sends = batches.reduce((sum, p) => sum + p.batch.sends.length, 0);
    try {
      options.onTransaction({ batches: batches.length, sends, persisted, committed });
    } catch (err) {
      logger.warn({ err }, 'onTransaction observer threw');
    }
  }

  return {
    write(batch) {
      if (closed) {
        return Promise.resolve(
          failAll(
            batch,
            new AppError('OVERLOADED', { message: 'The server is shutting down; retry later.' }),
          ),
        );
      }
      if (batch.sends.length === 0) return Promise.resolve([]);
      return new Promise((resolve) => {
        ready.push({ batch, resolve });
        pump();
      });
    },
    get waiting() {
      return ready.length;
    },
    close() {
      closed = true;
      if (running === 0 && ready.length === 0) return Promise.resolve();
      return new Promise((resolve) => idleWaiters.push(resolve));
    },
  };
}

/** Locks the batches' conversation rows in id order (the caller sorted them); returns the ids that exist. */
async function lockConversations(trx: Knex.Transaction, batches: Pending[]): Promise<Set<string>> {
  const ids = batches.map((p) => p.batch.conversationId);
  const result = await trx.raw<{ rows: Array<{ id: string }> }>(
    'SELECT id FROM conversations WHERE id = ANY(?::uuid[]) ORDER BY id FOR UPDATE',
    [ids],
  );
  return new Set(result.rows.map((r) => r.id));
}

/**
 * Messages already stored under the batches' clientMsgIds. A statement of its own after the lock: in READ
 * COMMITTED it sees everything committed by the writer that held the lock before us.
 */
async function findStored(trx: Knex.Transaction, batches: Pending[]): Promise<Map<string, MessageRow>> {
  const conversationIds: string[] = [];
  const senderIds: string[] = [];
  const clientMsgIds: string[] = [];
  for (const { batch } of batches) {
    for (const send of batch.sends) {
      conversationIds.push(batch.conversationId);
      senderIds.push(send.senderId);
      clientMsgIds.push(send.clientMsgId);
    }
  }
  const result = await trx.raw<{ rows: MessageRow[] }>(
    `SELECT m.id, m.conversation_id, m.sender_id, m.seq, m.client_msg_id, m.body, m.created_at
     FROM unnest(?::uuid[], ?::uuid[], ?::text[]) AS k(conversation_id, sender_id, client_msg_id)
     JOIN messages m ON m.conversation_id = k.conversation_id AND m.sender_id = k.sender_id
       AND m.client_msg_id = k.client_msg_id`,
    [conversationIds, senderIds, clientMsgIds],
  );
  return new Map(
    result.rows.map((row) => [keyOf(row.conversation_id, row.sender_id, row.client_msg_id), row]),
  );
}
