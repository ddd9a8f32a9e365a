import type { Knex } from 'knex';
import { AppError, isDbUnavailable, toAppError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import {
  failAll,
  findStored,
  insertBatch,
  lockConversations,
  outcomesFor,
  planBatch,
  type ConversationBatch,
  type SendOutcome,
} from './batchStatements.js';
import { shuttingDown } from './Mailbox.js';

export type { ConversationBatch, SendOutcome, SendRequest } from './batchStatements.js';

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
        const locked = await lockConversations(
          trx,
          batches.map((p) => p.batch),
        );
        const stored = await findStored(
          trx,
          batches.map((p) => p.batch),
        );
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
            // Each sender's error carries `err` as its cause and is logged where it is answered; this adds context.
            logger.debug({ err, conversationId: batch.conversationId }, 'message batch rolled back alone');
            results.set(pending, failAll(batch, toAppError(err)));
          }
        }
      });
    } catch (err) {
      const error = toAppError(err);
      // Logged where each sender is answered (with `err` as the cause); here only which batches it took down.
      logger.debug(
        { err, conversations: batches.map((p) => p.batch.conversationId) },
        'message transaction failed',
      );
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
        return Promise.resolve(failAll(batch, shuttingDown()));
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
