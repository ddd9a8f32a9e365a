import type { Logger } from '../lib/logger.js';
import { Mailbox, type NextBatch } from './Mailbox.js';

/** What became of one command: its result, or the error its caller gets. */
export type Outcome<R> = { ok: true; value: R } | { ok: false; error: Error };

export interface ConversationActorOptions<C, R> {
  conversationId: string;
  /**
   * Writes the conversation's next batch of commands, in order, and answers one outcome per command. It takes
   * the batch (`next.take()`) when it is ready to write it: commands submitted until then join it. Called with at
   * most one batch in flight per actor, which is what keeps a conversation's order. A rejection fails the whole
   * batch with that error.
   */
  write: (conversationId: string, next: NextBatch<C>) => Promise<readonly Outcome<R>[]>;
  /** A child logger carrying the conversation id. */
  logger: Logger;
  /** Commands that may wait before OVERLOADED. */
  mailboxCapacity: number;
  /** Commands handed to `write` at once. @default 500 */
  maxBatch?: number;
  /** Makes the check of one batch being formed (see Mailbox's `batchRule`). */
  batchRule?: () => (command: C) => boolean;
  /**
   * Whether a batch that failed whole with this error also fails the commands that queued behind it, with the same
   * error, instead of writing them next: for an outage (the database unreachable), where the next batch would wait
   * as long again for the same answer, and every caller was promised one within that wait.
   * @default never
   */
  failsWaiting?: (error: Error) => boolean;
  /**
   * Called as each accepted command is answered, with the `performance.now()` of its acceptance and, when it
   * failed, the error its caller gets (ack latency metrics).
   */
  onAnswered?: (acceptedAt: number, ok: boolean, error?: Error) => void;
  /** Called for a command the mailbox refused (OVERLOADED: full, or draining), which never entered it. */
  onRefused?: (error: Error) => void;
  now?: () => number;
}

interface Queued<C, R> {
  command: C;
  acceptedAt: number;
  resolve: (result: R) => void;
  reject: (error: Error) => void;
}

/**
 * The sole writer of one conversation on this node. Commands wait in a bounded mailbox; while one batch is being
 * written, newcomers queue up and go together as the next batch, so each conversation has at most one batch in
 * flight and its order is kept. Every command is answered only after `write` has settled (after the commit).
 *
 * The actor knows nothing of messages: `C` and `R` are the messaging layer's command and result types.
 */
export class ConversationActor<C, R> {
  readonly id: string;
  private readonly mailbox: Mailbox<Queued<C, R>>;
  private readonly now: () => number;
  private lastActivityAt: number;

  constructor(private readonly options: ConversationActorOptions<C, R>) {
    this.id = options.conversationId;
    this.now = options.now ?? (() => performance.now());
    this.lastActivityAt = this.now();
    const { batchRule } = options;
    this.mailbox = new Mailbox<Queued<C, R>>({
      capacity: options.mailboxCapacity,
      maxBatch: options.maxBatch ?? 500,
      batchRule:
        batchRule &&
        (() => {
          const rule = batchRule();
          return (queued) => rule(queued.command);
        }),
      process: (next) => this.writeBatch(next),
      // The actor's logger carries the conversation id.
      onError: (err) => options.logger.error({ err }, 'conversation actor batch failed'),
    });
  }

  /** Commands waiting in the mailbox (not counting the batch being written). */
  get queued(): number {
    return this.mailbox.queued;
  }

  /** Since when nothing has been queued or written; undefined while busy. */
  idleSince(): number | undefined {
    return this.mailbox.idle ? this.lastActivityAt : undefined;
  }

  /**
   * Queues a command and resolves with its result once written (or rejects: OVERLOADED at once when the mailbox
   * is full or draining, the writer's error otherwise).
   */
  submit(command: C): Promise<R> {
    this.lastActivityAt = this.now();
    return new Promise<R>((resolve, reject) => {
      try {
        this.mailbox.post({ command, acceptedAt: performance.now(), resolve, reject });
      } catch (err) {
        // OVERLOADED, thrown synchronously: the command was never accepted.
        this.options.onRefused?.(err as Error);
        throw err;
      }
    });
  }

  /** Stops accepting commands and resolves once every accepted one is answered. Idempotent. */
  drain(): Promise<void> {
    return this.mailbox.close();
  }

  private async writeBatch(next: NextBatch<Queued<C, R>>): Promise<void> {
    let items: Array<Queued<C, R>> | undefined;
    const commands: NextBatch<C> = {
      size: () => next.size(),
      take: () => (items ??= next.take()).map((item) => item.command),
    };
    let outcomes: readonly Outcome<R>[];
    try {
      outcomes = await this.options.write(this.id, commands);
    } catch (err) {
      const error = err as Error;
      outcomes = (items ??= next.take()).map(() => ({ ok: false, error }));
    }
    // A write that settled without taking its batch answers each command "no outcome".
    const answered = (items ??= next.take());
    answered.forEach((item, i) => {
      const outcome: Outcome<R> = outcomes[i] ?? {
        ok: false,
        error: new Error(`no outcome for command ${i} of ${answered.length}`),
      };
      if (outcome.ok) {
        this.options.onAnswered?.(item.acceptedAt, true);
        item.resolve(outcome.value);
      } else {
        this.options.onAnswered?.(item.acceptedAt, false, outcome.error);
        item.reject(outcome.error);
      }
    });
    const outage = failedWhole(outcomes);
    if (outage !== undefined && this.options.failsWaiting?.(outage) === true) {
      for (const item of this.mailbox.takeWaiting()) {
        this.options.onAnswered?.(item.acceptedAt, false, outage);
        item.reject(outage);
      }
    }
    this.lastActivityAt = this.now();
  }
}

/** The error of a batch whose every command failed with the same one, if it did. */
function failedWhole<R>(outcomes: readonly Outcome<R>[]): Error | undefined {
  const first = outcomes[0];
  if (first === undefined || first.ok) return undefined;
  return outcomes.every((outcome) => !outcome.ok && outcome.error === first.error) ? first.error : undefined;
}
