import { toXFChatError } from './errors.js';
import { closedError } from './retry.js';

/**
 * One queue per conversation: each send starts only once the previous send of the same conversation has
 * settled (acknowledged, or failed for good), so messages are stored in call order.
 *
 * Why not pipeline several sends of a conversation: the server assigns seq in the order it accepts sends, and
 * it may refuse one of them for a moment (RATE_LIMITED, OVERLOADED, DB_UNAVAILABLE, a lost ack) while it accepts
 * the next; the retried one would then land after it. Only one unacknowledged send per conversation keeps call
 * order across retries, timeouts and reconnections. Different conversations still send in parallel.
 */
export class SendQueue {
  /** The last task of each conversation; it never rejects (its outcome goes to the caller's promise). */
  private readonly tails = new Map<string, Promise<void>>();
  /** The abort controllers of the tasks running now, one per conversation at most. */
  private readonly running = new Set<AbortController>();
  private closed = false;

  /**
   * Runs `task` after every earlier task of `key`, with a signal that aborts when the queue is closed. A task
   * whose `signal` aborts while it waits for its turn rejects with CLIENT_CLOSED at once and never runs.
   */
  enqueue<T>(key: string, task: (stop: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.closed || signal?.aborted) return Promise.reject(closedError());
    return new Promise<T>((resolve, reject) => {
      let skipped = false;
      const onAbort = () => {
        skipped = true;
        reject(closedError());
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const run = async (): Promise<void> => {
        signal?.removeEventListener('abort', onAbort);
        if (skipped) return;
        const stop = new AbortController();
        if (this.closed) stop.abort();
        this.running.add(stop);
        try {
          resolve(await task(stop.signal));
        } catch (err) {
          reject(toXFChatError(err));
        } finally {
          this.running.delete(stop);
        }
      };
      const tail = (this.tails.get(key) ?? Promise.resolve()).then(run);
      this.tails.set(key, tail);
      void tail.then(() => {
        if (this.tails.get(key) === tail) this.tails.delete(key);
      });
    });
  }

  /** Aborts the running tasks; the queued ones start with an aborted signal, so each rejects at once. */
  close(): void {
    this.closed = true;
    for (const stop of this.running) stop.abort();
  }
}
