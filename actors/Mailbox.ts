import { AppError } from '../lib/errors.js';

/** The answer to work offered while the node drains for shutdown: retry, on this node later or another now. */
export function shuttingDown(): AppError {
  return new AppError('OVERLOADED', { message: 'The server is shutting down; retry later.' });
}

/**
 * The next batch of a mailbox, formed when whoever processes it is ready for it: commands posted until then join
 * it (up to `maxBatch`, and only those its `batchRule` admits).
 */
export interface NextBatch<T> {
  /** How many commands the batch holds if taken now (or holds, once taken). */
  size(): number;
  /** Takes the batch out of the mailbox; later calls answer the same commands. */
  take(): T[];
}

export interface MailboxOptions<T> {
  /** Commands that may wait (not counting the batch being processed) before `post` answers OVERLOADED. */
  capacity: number;
  /**
   * The most commands handed to `process` at once. 1 gives strict one-command-at-a-time; an actor that batches
   * passes more, and still never has two batches running together.
   * @default 1
   */
  maxBatch?: number;
  /**
   * Makes the check of one batch being formed: it is asked about each command in queue order, the first one
   * included (which always joins), and the batch ends before the first command it refuses. It may keep state: it
   * sees each command once, and a new one is made for the next batch.
   * @default every command joins
   */
  batchRule?: () => (command: T) => boolean;
  /**
   * Handles the next commands, oldest first: takes them (`next.take()`) when it is ready to, and settles after
   * handling them. Never called again before the previous call settles. A call that settles without taking its
   * batch has it taken and reported to `onError`, unhandled: processors must take what they are given.
   */
  process: (next: NextBatch<T>) => Promise<void>;
  /** `process` is expected to handle its own failures; anything it still throws lands here, never unhandled. */
  onError: (err: unknown) => void;
}

/**
 * A bounded FIFO that runs one batch of commands at a time. There is no timer: when nothing is running, a posted
 * command starts processing at once; while a batch runs, newcomers wait and form the next batch. A batch is
 * formed when its processor takes it, so commands posted while the processor waits to start (the group-commit
 * writer's next transaction) join it.
 */
export class Mailbox<T> {
  private readonly queue: T[] = [];
  private readonly maxBatch: number;
  private running = false;
  private closed = false;
  /** The next batch as formed so far: its rule, how many commands joined, and whether one was refused. */
  private forming:
    { rule: ((command: T) => boolean) | undefined; length: number; ended: boolean } | undefined;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly options: MailboxOptions<T>) {
    this.maxBatch = Math.max(1, options.maxBatch ?? 1);
  }

  /** Commands waiting, not counting the batch being processed. */
  get queued(): number {
    return this.queue.length;
  }

  /** True while a batch is being processed. */
  get busy(): boolean {
    return this.running;
  }

  /** Nothing waiting and nothing running. */
  get idle(): boolean {
    return !this.running && this.queue.length === 0;
  }

  /**
   * Accepts a command, or throws OVERLOADED at once when the mailbox is full or closed (backpressure, not
   * buffering: the caller answers its client instead of waiting).
   */
  post(command: T): void {
    if (this.closed)
      throw new AppError('OVERLOADED', { message: 'The server is shutting down; retry later.' });
    if (this.queue.length >= this.options.capacity) throw new AppError('OVERLOADED');
    this.queue.push(command);
    if (!this.running) void this.run();
  }

  /** Takes every waiting command out (not the batch being processed), oldest first, to be answered elsewhere. */
  takeWaiting(): T[] {
    this.forming = undefined;
    return this.queue.splice(0);
  }

  /** Stops accepting; resolves once every command accepted before is processed. Idempotent. */
  close(): Promise<void> {
    this.closed = true;
    return this.whenIdle();
  }

  /** Resolves when nothing is waiting or running. */
  whenIdle(): Promise<void> {
    if (this.idle) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * How many of the queued commands go in the next batch. Formed as commands arrive and asked for, each command
   * checked once, until the batch is taken.
   */
  private batchLength(): number {
    this.forming ??= { rule: this.options.batchRule?.(), length: 0, ended: false };
    const forming = this.forming;
    const limit = Math.min(this.maxBatch, this.queue.length);
    while (!forming.ended && forming.length < limit) {
      const joins = forming.rule === undefined || forming.rule(this.queue[forming.length] as T);
      if (joins || forming.length === 0) forming.length += 1;
      else forming.ended = true;
    }
    return Math.min(forming.length, limit);
  }

  /** Takes the next batch out of the queue. */
  private takeBatch(): T[] {
    const batch = this.queue.splice(0, this.batchLength());
    this.forming = undefined;
    return batch;
  }

  private async run(): Promise<void> {
    this.running = true;
    while (this.queue.length > 0) {
      let batch: T[] | undefined;
      const next: NextBatch<T> = {
        size: () => batch?.length ?? this.batchLength(),
        take: () => (batch ??= this.takeBatch()),
      };
      try {
        await this.options.process(next);
      } catch (err) {
        this.options.onError(err);
      }
      if (batch === undefined) {
        // Never taken: processing it again would loop for ever.
        const dropped = next.take();
        this.options.onError(new Error(`a batch of ${dropped.length} commands was never taken`));
      }
    }
    this.running = false;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
