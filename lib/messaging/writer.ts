import type { Knex } from 'knex';
import { shuttingDown } from '../../actors/Mailbox.js';
import { AppError, isDbUnavailable, toAppError } from '../errors.js';
import type { Logger } from '../logger.js';
import {
  failAll,
  lookUpSends,
  insertMessages,
  lockConversations,
  outcomesFor,
  planBatch,
  type Plan,
  type SendOutcome,
} from './statements.js';
import type { ConversationBatch, SendCommand } from './types.js';

export type { SendOutcome };

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

interface Attempt {
  results: Map<Pending, SendOutcome[]>;
  /** New messages written. */
  persisted: number;
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
 * A transaction locks the conversation rows in id order (no deadlock between nodes), looks up the clientMsgIds
 * already stored, then writes every new message of every batch in one statement: five round trips whatever the
 * number of conversations. If that statement fails for one batch's sake (a CHECK, a trigger), the transaction is
 * redone with one SAVEPOINT per batch, so the failing batch is rolled back alone and gets error outcomes while the
 * others commit. If the transaction itself fails (connection lost, pool timeout), every batch in it gets an error
 * outcome and no seq moves: the rollback undoes the reservation.
 */
export function createGroupCommitWriter(options: GroupCommitWriterOptions): GroupCommitWriter {
  const { knex, logger } = options;
  const concurrency = Math.max(1, options.concurrency);
  const maxSends = options.maxSendsPerTransaction ?? 1000;
  const ready: Pending[] = [];
  let running = 0;
  let closed = false;
  let idleWaiters: Array<() => void> = [];

  /**
   * The next group, oldest first, up to `maxSends`. One batch per conversation: a second one of the same
   * conversation (possible only while an evicted actor finishes) waits for the next transaction, as do batches that
   * do not fit; both stay first in line.
   */
  function takeGroup(): Pending[] {
    const group: Pending[] = [];
    const left: Pending[] = [];
    const seen = new Set<string>();
    let sends = 0;
    for (const pending of ready) {
      const size = pending.batch.commands.length;
      const fits = group.length === 0 || sends + size <= maxSends;
      if (fits && !seen.has(pending.batch.conversationId)) {
        seen.add(pending.batch.conversationId);
        sends += size;
        group.push(pending);
      } else {
        left.push(pending);
      }
    }
    ready.length = 0;
    for (const pending of left) ready.push(pending);
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

  /**
   * One transaction over a group of batches. Fast path (`isolate` false): every new message of every batch in one
   * statement. Isolating (`isolate` true): each batch's statement in a SAVEPOINT of its own, so a failing batch is
   * rolled back alone and answered with its error while the others commit. A lost connection or a pool timeout
   * still fails the whole transaction.
   */
  async function attempt(batches: Pending[], isolate: boolean): Promise<Attempt> {
    return await knex.transaction(async (trx) => {
      const all = batches.map((p) => p.batch);
      const locked = await lockConversations(trx, all);
      const lookup = await lookUpSends(trx, all);
      const results = new Map<Pending, SendOutcome[]>();
      const toWrite: Array<{ pending: Pending; plans: Plan[]; fresh: SendCommand[] }> = [];
      for (const pending of batches) {
        if (!locked.has(pending.batch.conversationId)) {
          results.set(pending, failAll(pending.batch, new AppError('NOT_FOUND')));
          continue;
        }
        const { plans, fresh } = planBatch(pending.batch, lookup);
        if (fresh.length === 0) results.set(pending, outcomesFor(plans, []));
        else toWrite.push({ pending, plans, fresh });
      }
      let persisted = 0;
      if (!isolate) {
        const inserted = await insertMessages(
          trx,
          toWrite.map((w) => ({ conversationId: w.pending.batch.conversationId, fresh: w.fresh })),
        );
        for (const w of toWrite) {
          const rows = inserted.get(w.pending.batch.conversationId) ?? [];
          results.set(w.pending, outcomesFor(w.plans, rows));
          persisted += rows.length;
        }
        return { results, persisted };
      }
      for (const w of toWrite) {
        const conversationId = w.pending.batch.conversationId;
        try {
          const inserted = await trx.transaction((savepoint) =>
            insertMessages(savepoint, [{ conversationId, fresh: w.fresh }]),
          );
          const rows = inserted.get(conversationId) ?? [];
          results.set(w.pending, outcomesFor(w.plans, rows));
          persisted += rows.length;
        } catch (err) {
          if (isDbUnavailable(err)) throw err;
          // Each sender's error carries `err` as its cause and is logged where it is answered.
          logger.debug({ err, conversationId }, 'message batch rolled back alone');
          results.set(w.pending, failAll(w.pending.batch, toAppError(err)));
        }
      }
      return { results, persisted };
    });
  }

  async function runTransaction(group: Pending[]): Promise<void> {
    // Conversation rows are locked in id order in every transaction of every node: no deadlock between writers.
    const batches = [...group].sort((a, b) => (a.batch.conversationId < b.batch.conversationId ? -1 : 1));
    let outcome: Attempt;
    try {
      try {
        outcome = await attempt(batches, false);
      } catch (err) {
        // The shared statement failed for one batch's sake (a CHECK, a trigger): nothing was written, so do it
        // again batch by batch to find and refuse that one alone.
        if (batches.length === 1 || isDbUnavailable(err)) throw err;
        outcome = await attempt(batches, true);
      }
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
    for (const pending of batches) {
      pending.resolve(outcome.results.get(pending) ?? failAll(pending.batch, new AppError('INTERNAL')));
    }
    report(batches, outcome.persisted, true);
  }

  function report(batches: Pending[], persisted: number, committed: boolean): void {
    if (!options.onTransaction) return;
    const sends = batches.reduce((sum, p) => sum + p.batch.commands.length, 0);
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
      if (batch.commands.length === 0) return Promise.resolve([]);
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
