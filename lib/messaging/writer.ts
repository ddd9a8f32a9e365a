import { shuttingDown, type NextBatch } from '../../actors/Mailbox.js';
import {
  type AppError,
  isDbUnavailable,
  lockWaitEnded,
  outcomeLeftUnknown,
  SQLSTATE,
  sqlState,
  toAppError,
} from '../errors.js';
import type { Logger } from '../logger.js';
import { AdaptiveLimit } from './concurrency.js';
import type { PoolConnections, StatementTarget } from '../db.js';
import { BUSY, writeBatches, type Announce } from './statements.js';
import type { ConversationBatch, MessageCommand, Outcome, Stored } from './types.js';

export type WriteOutcome = Outcome<Stored>;

/** Reported after every transaction, for metrics and tests. */
export interface TransactionReport {
  /** Conversation batches the transaction answered (busy ones are not). */
  batches: number;
  /**
   * Commands in them, sends and changes alike, whatever their answer (a duplicate, a refusal such as
   * FORBIDDEN, a batch that failed alone).
   */
  sends: number;
  /** New messages committed: sends that created a message, never changes (0 when the transaction failed). */
  persisted: number;
  /** Batches whose conversation another transaction held: written again in a transaction that waits. */
  busy: number;
  committed: boolean;
  /**
   * Started beside running transactions that had all taken three times a usual transaction's time (a stalled WAL
   * flush, a backend off its core), instead of after them.
   */
  heldUp: boolean;
}

export interface GroupCommitWriterOptions {
  connections: PoolConnections;
  logger: Logger;
  /** The most transactions at once; the writer adapts below it. Keep it below the pool size. */
  maxConcurrency: number;
  /**
   * The most transactions at once that wait for conversations other transactions hold, beside those: 1, or 2 (a
   * second beside one waiting long, see {@link MAX_LOCK_WAITS}) when the pool has a connection to spare for it.
   * @default 2
   */
  maxLockWaits?: 1 | 2;
  /** Sends per transaction; a batch is never split, so one larger than this runs alone. @default 1000 */
  maxSendsPerTransaction?: number;
  /** Asked before each transaction: announce its messages to other nodes (undefined when alone). */
  announce?: () => Promise<Announce | undefined>;
  /**
   * After each transaction that committed, with what it answered and how `announce` said to announce it: the
   * node announces it now unless the transaction did.
   */
  onCommitted?: (written: readonly Written[], announce: Announce | undefined) => void;
  /**
   * A call sent to PostgreSQL failed as an outage does (the connection lost, no answer in time): whether it
   * committed is unknown, and if it did, later than the node gave up on it. Its senders were answered
   * `DB_UNAVAILABLE`; the node must still deliver and announce what it may have committed (fanout's
   * `outcomeUnknown`).
   */
  onOutcomeUnknown?: (conversationIds: readonly string[]) => void;
  onTransaction?: (report: TransactionReport) => void;
}

/** One batch a transaction committed, and its outcomes. */
export interface Written {
  batch: ConversationBatch;
  outcomes: readonly WriteOutcome[];
}

/**
 * What {@link GroupCommitWriter.write} takes: a batch, or a conversation's next batch, taken when a transaction
 * takes it (the commands the conversation queued until then are in it).
 */
export type WriteRequest = ConversationBatch | { conversationId: string; next: NextBatch<MessageCommand> };

interface Pending {
  request: WriteRequest;
  resolve: (outcomes: WriteOutcome[]) => void;
  /** Skipped once because another transaction held its conversation: the next try waits for the lock. */
  wait: boolean;
}

/** A pending batch a transaction took. */
interface Taken extends Pending {
  batch: ConversationBatch;
}

const sizeOf = (request: WriteRequest): number =>
  'next' in request ? request.next.size() : request.commands.length;

/** The batch of a request, taken now if it was not yet. */
function batchOf(request: WriteRequest): ConversationBatch {
  return 'next' in request
    ? { conversationId: request.conversationId, commands: request.next.take() }
    : request;
}

/**
 * Commits the ready batches of many conversations in one transaction, so at load many messages share one
 * commit (one WAL flush) instead of paying for one each.
 */
export interface GroupCommitWriter {
  /**
   * Writes one conversation's batch. Never rejects: every command gets an outcome, in order. The caller keeps
   * at most one batch in flight per conversation, which keeps each conversation's order. A batch given as
   * `next` is taken when a transaction takes it, so what the conversation queues meanwhile goes with it.
   */
  write(request: WriteRequest): Promise<WriteOutcome[]>;
  /** Batches waiting for a transaction slot. */
  readonly waiting: number;
  /** Transactions allowed at once right now (adapted to load). */
  readonly concurrency: number;
  /** Refuses new batches and waits for the running and waiting ones. Idempotent. */
  close(): Promise<void>;
  /**
   * Refuses new batches, answers those waiting for a transaction `OVERLOADED` (nothing of them is stored), and
   * waits for the running ones only (a shutdown whose drain timed out). Idempotent.
   */
  abandon(): Promise<void>;
}

/** Sends waiting that justify a transaction beside one already running. */
const PARALLEL_BACKLOG = 256;
/**
 * A transaction running this many times longer than the usual commit, and at least {@link STALL_MIN_MS}, is held
 * up (a slow WAL flush, a backend off its core): whatever waits then starts beside it rather than after it.
 */
const STALL_FACTOR = 3;
const STALL_MIN_MS = 5;
/**
 * Sends waiting, this many times a usual transaction's and at least {@link SPLIT_MIN_SENDS}, are a pile (what
 * arrived during a stall): they go in parallel transactions of about a usual one's size, at least a quarter of
 * SPLIT_MIN_SENDS each, as free slots allow.
 */
const SPLIT_FACTOR = 4;
const SPLIT_MIN_SENDS = 128;
/**
 * Transactions at once that wait for conversations other transactions hold, beside the ordinary ones (whose number
 * the adaptive limit sets): such a wait can last as long as the holder's transaction, so it must not take a slot
 * the other conversations' writes need. One waits for all the conversations skipped so far; a second starts only
 * when the first has waited {@link LOCK_WAIT_PATIENCE_MS} (its holder stuck: a transaction left open), for the
 * conversations skipped since, which would otherwise wait as long (up to the statement timeout) though theirs were
 * held for a moment. (At most: see `maxLockWaits`.)
 */
const MAX_LOCK_WAITS = 2;
/** How long the lock waits running must all have waited before another starts beside them (MAX_LOCK_WAITS). */
export const LOCK_WAIT_PATIENCE_MS = 1000;

const failAll = (batch: ConversationBatch, error: AppError): WriteOutcome[] =>
  batch.commands.map(() => ({ ok: false, error }));

/**
 * The writer. No timer: whatever is ready when a transaction slot frees goes into the next transaction, so a
 * lone message is written at once and a burst is grouped. A slot frees when its call returns, before its
 * senders are answered, so PostgreSQL writes the next group while this node answers the last. A transaction is
 * one call of `xfchat_write()` (one round trip). If that call fails for one batch's sake (a CHECK, a trigger),
 * each batch of the group is written again alone, so the failing batch fails alone while the others commit; if
 * it fails because PostgreSQL is away (connection lost, pool timeout), every batch in it gets that error and
 * nothing was written; when no connection came at all, so do the batches waiting for a transaction.
 *
 * A transaction skips the conversations another one holds (a membership change, another node): those batches
 * go back to the head of the line and are written next in a transaction that waits for their locks, with the
 * other skipped ones only, so one contended conversation never holds up a whole group. That transaction runs
 * beside the ordinary ones, outside their limit (one at a time, a second beside one waiting long:
 * {@link MAX_LOCK_WAITS}): held conversations never hold up the others' writes, and one stuck holds up for about a
 * second at most the conversations held for a moment after it. While this node announces to others, every
 * transaction waits for its locks instead.
 */
export function createGroupCommitWriter(options: GroupCommitWriterOptions): GroupCommitWriter {
  const { connections, logger } = options;
  const limit = new AdaptiveLimit({ max: options.maxConcurrency });
  const maxSends = options.maxSendsPerTransaction ?? 1000;
  const maxLockWaits = Math.min(MAX_LOCK_WAITS, options.maxLockWaits ?? MAX_LOCK_WAITS);
  let ready: Pending[] = [];
  /** The batches in `ready` that wait for other transactions' locks. */
  let readyWaits = 0;
  let running = 0;
  /** Running transactions that wait for other transactions' locks. */
  let runningWaits = 0;
  /** When each of them started (performance.now()), newest last. */
  const waitStarts: number[] = [];
  /** Set while a pump is due when the newest lock wait running has waited LOCK_WAIT_PATIENCE_MS. */
  let patienceTimer: NodeJS.Timeout | undefined;
  /** When each running transaction that does not wait for locks started (performance.now()), newest last. */
  const ordinaryStarts: number[] = [];
  /** Sends in a usual transaction: an exponential average over about the last 40. */
  let usualSends = 0;
  /**
   * How long a usual transaction takes, from its start to its call's return, waits for other nodes' locks
   * included (unlike the adaptive limit's times): an exponential average over about the last 40; 0 before the
   * first.
   */
  let usualMs = 0;
  let closed = false;
  /** Set by abandon(): nothing more starts; what waits for a transaction is answered at once. */
  let abandoned = false;
  /** Whether the last transaction announced its messages to other nodes. */
  let announcing = false;
  let idleWaiters: Array<() => void> = [];

  /**
   * The next group of batches that wait for locks (`wait`) or of the others, oldest first, up to `cap` sends.
   * Batches skipped before wait for their locks in a group of their own, so the others are not held up, except
   * while announcing: every transaction waits for its locks then (see runTransaction), so any batch may join. One
   * batch per conversation: a second one of the same conversation (possible only while an evicted actor finishes)
   * waits for the next transaction, as do batches that do not fit; both stay first in line.
   */
  function takeGroup(cap: number, wait: boolean): Taken[] {
    const group: Taken[] = [];
    const left: Pending[] = [];
    const seen = new Set<string>();
    let sends = 0;
    for (const pending of ready) {
      const size = sizeOf(pending.request);
      const fits = group.length === 0 || sends + size <= cap;
      const together = announcing || pending.wait === wait;
      const { conversationId } = pending.request;
      if (fits && together && !seen.has(conversationId)) {
        seen.add(conversationId);
        if (pending.wait) readyWaits -= 1;
        const batch = batchOf(pending.request);
        sends += batch.commands.length;
        // Taken once: a retry (busy) writes the same commands.
        group.push({ ...pending, request: batch, batch });
      } else {
        left.push(pending);
      }
    }
    ready = left;
    return group;
  }

  /** Whether at least `count` sends wait for a transaction (counted only as far as needed: it runs per write). */
  function sendsWaiting(count: number): boolean {
    let sends = 0;
    for (const pending of ready) {
      sends += sizeOf(pending.request);
      if (sends >= count) return true;
    }
    return false;
  }

  /**
   * Why to start a transaction now, if at all. Beside one that is running, another starts only for a backlog, when
   * the running ones write batches skipped before, which wait for another transaction's locks, or when every
   * one running is held up. A WAL flush that stalls for 50 ms holds every send that arrives meanwhile; after
   * it, one commit would carry the whole pile, and the sends that arrived during that commit would wait for
   * the next, so one stall of the disk showed in the acks twice over. Started during the stall, each such
   * transaction writes what arrived since the last one started and commits with the stalled one, as soon as
   * the flush is done. Otherwise the next group grows while the running one commits: fewer, larger commits cost
   * PostgreSQL less per message, and parallel ones pay off only when one backend's core cannot keep up with
   * what is waiting. Batches that wait for locks start in a transaction beside the ordinary ones, outside their
   * limit ({@link MAX_LOCK_WAITS}).
   */
  function whyStart(): 'free' | 'backlog' | 'held up' | 'locks' | undefined {
    if (readyWaits > 0 && !announcing && lockWaitStartsIn() === 0) return 'locks';
    // While announcing, any batch joins any group; otherwise only batches that wait for nothing go next.
    if (ready.length === (announcing ? 0 : readyWaits)) return undefined;
    const ordinary = running - runningWaits;
    if (ordinary >= limit.limit) return undefined;
    if (ordinary === 0) return 'free';
    if (sendsWaiting(PARALLEL_BACKLOG)) return 'backlog';
    return heldUp() ? 'held up' : undefined;
  }

  /**
   * In how many ms another lock wait may start (0: now): at once when none runs, else when every one running has
   * waited LOCK_WAIT_PATIENCE_MS; never while `maxLockWaits` run.
   */
  function lockWaitStartsIn(): number {
    if (runningWaits >= maxLockWaits) return Number.POSITIVE_INFINITY;
    const newest = waitStarts.at(-1);
    return newest === undefined ? 0 : Math.max(0, newest + LOCK_WAIT_PATIENCE_MS - performance.now());
  }

  /** Whether every ordinary transaction running has taken far longer than commits usually do. */
  function heldUp(): boolean {
    const since = ordinaryStarts.at(-1);
    if (since === undefined) return false;
    return performance.now() - since > Math.max(STALL_MIN_MS, STALL_FACTOR * usualMs);
  }

  /**
   * Into how many transactions the sends waiting go now, and how many sends each takes: one with all of them,
   * unless they are a pile (see SPLIT_FACTOR) and slots are free. In one transaction, a pile would keep every send
   * that arrives while it runs waiting as long.
   */
  function split(): { count: number; share: number } {
    const free = limit.limit - (running - runningWaits);
    if (free < 2) return { count: 1, share: maxSends };
    let waiting = 0;
    for (const pending of ready) waiting += sizeOf(pending.request);
    const pile = Math.max(SPLIT_MIN_SENDS, SPLIT_FACTOR * usualSends);
    if (waiting < pile) return { count: 1, share: maxSends };
    const count = Math.min(free, Math.ceil((waiting * SPLIT_FACTOR) / pile));
    return { count, share: Math.min(maxSends, Math.ceil(waiting / count)) };
  }

  function pump(): void {
    if (abandoned) {
      failReady(shuttingDown());
      return;
    }
    for (let why = whyStart(); why !== undefined; why = whyStart()) {
      if (why === 'locks') {
        start(takeGroup(maxSends, true), false);
        continue;
      }
      const { count, share } = split();
      // The last takes the rest (batches are never split, so the shares come out uneven).
      for (let i = 0; i < count && ready.length > (announcing ? 0 : readyWaits); i++)
        start(takeGroup(i === count - 1 ? maxSends : share, false), why === 'held up');
    }
    // Batches waiting for a lock wait behind one that runs: looked at again once it has waited long.
    const startsIn = readyWaits > 0 && !announcing ? lockWaitStartsIn() : Number.POSITIVE_INFINITY;
    if (patienceTimer === undefined && startsIn > 0 && startsIn !== Number.POSITIVE_INFINITY) {
      // Unreferenced: the writes it serves keep the node up, not the timer.
      patienceTimer = setTimeout(() => {
        patienceTimer = undefined;
        pump();
      }, startsIn).unref();
    }
  }

  function start(group: Taken[], heldUp: boolean): void {
    let sends = 0;
    for (const pending of group) sends += pending.batch.commands.length;
    usualSends += (sends - usualSends) * 0.05;
    // While announcing every transaction waits for its locks, and counts as an ordinary one.
    const waits = !announcing && group.some((pending) => pending.wait);
    running += 1;
    const startedAt = performance.now();
    if (waits) {
      runningWaits += 1;
      waitStarts.push(startedAt);
    } else ordinaryStarts.push(startedAt);
    let slotFreed = false;
    const freeSlot = (): void => {
      if (slotFreed) return;
      slotFreed = true;
      running -= 1;
      if (waits) {
        runningWaits -= 1;
        waitStarts.splice(waitStarts.indexOf(startedAt), 1);
      } else ordinaryStarts.splice(ordinaryStarts.indexOf(startedAt), 1);
      pump();
    };
    void runTransaction(group, freeSlot, heldUp).finally(() => {
      freeSlot();
      if (running === 0 && ready.length === 0) {
        const waiters = idleWaiters;
        idleWaiters = [];
        for (const resolve of waiters) resolve();
      }
    });
  }

  /** Answers every batch waiting for a transaction with `error`. */
  function failReady(error: AppError): void {
    const waiting = ready;
    ready = [];
    readyWaits = 0;
    for (const pending of waiting) pending.resolve(failAll(batchOf(pending.request), error));
  }

  /**
   * Each batch in a call of its own: a batch that fails is answered with its error, the others commit. Each call
   * commits by itself, so an outage met on the way (the connection lost, a timeout) ends only the batch it met and
   * those not tried yet: the batches written before it are committed, and keep their outcomes to be acked and
   * delivered.
   */
  async function writeEachAlone(
    client: StatementTarget,
    batches: ConversationBatch[],
    announce: Announce | undefined,
    wait: boolean,
  ): Promise<Array<WriteOutcome[] | typeof BUSY>> {
    const outcomes: Array<WriteOutcome[] | typeof BUSY> = [];
    let outage: AppError | undefined;
    for (const batch of batches) {
      if (outage) {
        outcomes.push(failAll(batch, outage));
        continue;
      }
      try {
        outcomes.push(...(await writeBatches(client, [batch], announce, wait)));
      } catch (err) {
        // Each sender's error carries `err` as its cause and is logged where it is answered. A lock not had in time
        // (an operator's lock_timeout) is this batch's alone; the others are tried.
        if (isDbUnavailable(err) && sqlState(err) !== SQLSTATE.lockNotAvailable) {
          outage = toAppError(err);
          if (outcomeLeftUnknown(err)) outcomeUnknown([batch]);
        } else logger.debug({ err, conversationId: batch.conversationId }, 'message batch refused alone');
        outcomes.push(failAll(batch, outage ?? toAppError(err)));
      }
    }
    return outcomes;
  }

  async function runTransaction(group: Taken[], freeSlot: () => void, heldUp: boolean): Promise<void> {
    const batches = group.map((p) => p.batch);
    // While announcing, every transaction waits for its locks: the other nodes write the same conversations, so
    // skipping held ones splits most groups. With MESSAGE_ANNOUNCE=commit the commits are one at a time anyway
    // (PostgreSQL serializes the commits of transactions that NOTIFY); after the commit, skipping made two nodes'
    // commits a third to a half smaller and them no faster (docs/performance.md, "Skipping held conversations").
    const wait = announcing || group.some((pending) => pending.wait);
    const started = performance.now();
    let outcomes: Array<WriteOutcome[] | typeof BUSY>;
    let announce: Announce | undefined;
    let acquiring = false;
    let sent = false;
    try {
      announce = await options.announce?.();
      announcing = announce !== undefined;
      acquiring = true;
      const client = await connections.acquire();
      acquiring = false;
      sent = true;
      try {
        const target = connections.observed(client);
        try {
          outcomes = await writeBatches(target, batches, announce, wait);
          const took = performance.now() - started;
          usualMs = usualMs === 0 ? took : usualMs + (took - usualMs) * 0.05;
          // A wait for another transaction's locks says nothing about PostgreSQL's load.
          if (!wait) limit.record(took);
        } catch (err) {
          if (batches.length > 1 && wait && lockWaitEnded(err)) {
            // A wait for several held conversations outlasted the statement timeout (or an operator's lock_timeout):
            // one of them is held that long (a stuck transaction), not necessarily all. Nothing was written; each is
            // tried again alone, without waiting: those free by now commit, those still held get the timeout's
            // DB_UNAVAILABLE.
            const timedOut = toAppError(err);
            const alone = await writeEachAlone(target, batches, announce, false);
            outcomes = batches.map((batch, i) => {
              const answers = alone[i];
              return answers === undefined || answers === BUSY ? failAll(batch, timedOut) : answers;
            });
          } else {
            // The shared call failed for one batch's sake (a CHECK, a trigger): nothing was written, so write
            // each batch alone to find and refuse that one.
            if (batches.length === 1 || isDbUnavailable(err)) throw err;
            outcomes = await writeEachAlone(target, batches, announce, wait);
          }
        }
      } finally {
        connections.release(client);
      }
    } catch (err) {
      const error = toAppError(err);
      // Logged where each sender is answered (with `err` as the cause); here only which batches it took down.
      logger.debug(
        { err, conversations: batches.map((b) => b.conversationId) },
        'message transaction failed',
      );
      group.forEach((pending) => pending.resolve(failAll(pending.batch, error)));
      report({ batches, persisted: 0, busy: 0, committed: false, heldUp });
      if (sent && outcomeLeftUnknown(err)) outcomeUnknown(batches);
      // No connection came for the whole acquire timeout (the pool exhausted, PostgreSQL away): the batches waiting
      // for a slot would each wait as long again for their own. They are answered with this error now, so every
      // send is answered within the acquire timeout (guarantee 6), as the actors answer what waits behind a batch.
      if (acquiring && isDbUnavailable(err)) failReady(error);
      return;
    }
    const busy: Pending[] = [];
    const done: Array<{ pending: Taken; answers: WriteOutcome[] }> = [];
    group.forEach((pending, i) => {
      const answers = outcomes[i] ?? failAll(pending.batch, toAppError(new Error('no outcome for a batch')));
      if (answers === BUSY) busy.push({ ...pending, wait: true });
      else done.push({ pending, answers });
    });
    // First in line again, in their order; then the next transaction starts with what is ready, before this one's
    // senders are answered: PostgreSQL runs it while this node answers and delivers.
    if (busy.length > 0) {
      ready = [...busy, ...ready];
      readyWaits += busy.length;
    }
    freeSlot();
    let persisted = 0;
    const written: Written[] = [];
    for (const { pending, answers } of done) {
      // New messages only: a change that changed something is no duplicate either, but it creates nothing.
      answers.forEach((outcome, i) => {
        if (outcome.ok && !outcome.value.duplicate && pending.batch.commands[i]?.kind === 'send')
          persisted += 1;
      });
      written.push({ batch: pending.batch, outcomes: answers });
      pending.resolve(answers);
    }
    try {
      options.onCommitted?.(written, announce);
    } catch (err) {
      // Committed and answered; the other nodes' subscribers catch up when the hole shows or lasts.
      logger.error({ err }, 'announcing a commit failed');
    }
    report({ batches: written.map((w) => w.batch), persisted, busy: busy.length, committed: true, heldUp });
  }

  function outcomeUnknown(batches: readonly ConversationBatch[]): void {
    try {
      options.onOutcomeUnknown?.(batches.map((b) => b.conversationId));
    } catch (err) {
      logger.error({ err }, 'onOutcomeUnknown observer threw');
    }
  }

  function report(
    what: Omit<TransactionReport, 'batches' | 'sends'> & { batches: readonly ConversationBatch[] },
  ): void {
    if (!options.onTransaction) return;
    let sends = 0;
    for (const batch of what.batches) sends += batch.commands.length;
    try {
      options.onTransaction({ ...what, batches: what.batches.length, sends });
    } catch (err) {
      logger.warn({ err }, 'onTransaction observer threw');
    }
  }

  return {
    write(request) {
      if (closed) return Promise.resolve(failAll(batchOf(request), shuttingDown()));
      if (sizeOf(request) === 0) {
        batchOf(request);
        return Promise.resolve([]);
      }
      return new Promise((resolve) => {
        ready.push({ request, resolve, wait: false });
        pump();
      });
    },
    get waiting() {
      return ready.length;
    },
    get concurrency() {
      return limit.limit;
    },
    close() {
      closed = true;
      if (running === 0 && ready.length === 0) return Promise.resolve();
      return new Promise((resolve) => idleWaiters.push(resolve));
    },
    abandon() {
      abandoned = true;
      failReady(shuttingDown());
      return this.close();
    },
  };
}
