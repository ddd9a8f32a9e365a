import { toXFChatError, type XFChatError } from './errors.js';
import { abortedError, closedError, whenAborted } from './retry.js';

/** One send in the queue: how to settle its caller's promise early, and the signal of its run once started. */
interface Entry {
  fail: (error: XFChatError) => void;
}

/**
 * One queue per conversation: each send starts only once the previous send of the same conversation has
 * settled (acknowledged, or failed for good), so messages are stored in call order.
 *
 * Why not pipeline several sends of a conversation: the server assigns seq in the order it accepts sends, and
 * it may refuse one of them for a moment (RATE_LIMITED, OVERLOADED, DB_UNAVAILABLE, a lost ack) while it accepts
 * the next; the retried one would then land after it. Only one unacknowledged send per conversation keeps call
 * order across retries, timeouts and reconnections. Different conversations still send in parallel.
 *
 * Every send belongs to the session it was made in: {@link failAll} (the session ended) settles each one, queued or
 * running, at once, and none of them ever runs or retries afterwards, so nothing typed under one account is sent
 * under the next one logged in on the same client.
 */
export class SendQueue {
  /** The last task of each conversation; it never rejects (its outcome goes to the caller's promise). */
  private readonly tails = new Map<string, Promise<void>>();
  /** Every send not settled yet, queued or running. */
  private readonly entries = new Set<Entry>();
  private closed = false;

  /**
   * Runs `task` after every earlier task of `key`, with a signal that aborts (its reason the error) when the queue is
   * closed or failed. A task whose `signal` aborts while it waits for its turn rejects with CLIENT_CLOSED at once
   * and never runs.
   */
  enqueue<T>(key: string, task: (stop: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.closed) return Promise.reject(closedError());
    if (signal?.aborted) return Promise.reject(abortedError(signal));
    return new Promise<T>((resolve, reject) => {
      const stop = new AbortController();
      let settled = false;
      let unwatch = (): void => undefined;
      const settle = (outcome: () => void) => {
        if (settled) return;
        settled = true;
        this.entries.delete(entry);
        unwatch();
        outcome();
      };
      const entry: Entry = {
        fail: (error) => {
          settle(() => reject(error));
          if (!stop.signal.aborted) stop.abort(error);
        },
      };
      // Waiting for its turn: an abort settles it at once. Running: the task follows its own signal.
      if (signal) unwatch = whenAborted(signal, () => entry.fail(abortedError(signal)));
      this.entries.add(entry);
      const run = async (): Promise<void> => {
        unwatch();
        if (settled) return;
        try {
          const value = await task(stop.signal);
          settle(() => resolve(value));
        } catch (err) {
          settle(() => reject(toXFChatError(err)));
        }
      };
      const tail = (this.tails.get(key) ?? Promise.resolve()).then(run);
      this.tails.set(key, tail);
      void tail.then(() => {
        if (this.tails.get(key) === tail) this.tails.delete(key);
      });
    });
  }

  /**
   * Settles every send not settled yet with `error`, the running ones too (their tasks are aborted and never try
   * again). Later sends start afresh: they wait for none of these.
   */
  failAll(error: XFChatError): void {
    for (const entry of [...this.entries]) entry.fail(error);
    this.tails.clear();
  }

  /** Rejects every send with CLIENT_CLOSED, and any later one at once. */
  close(): void {
    this.closed = true;
    this.failAll(closedError());
  }
}
