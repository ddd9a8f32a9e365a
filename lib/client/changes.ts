import type { PublicMessage } from '../protocol/index.js';
import type { ChangesPage } from './api.js';
import { callSafely } from './emitter.js';
import { isRetryable, toXFChatError } from './errors.js';
import {
  abortedError,
  backoffDelay,
  delay,
  linkedAbort,
  retryAfterMs,
  type BackoffOptions,
  type Closing,
} from './retry.js';

export interface ChangeOptions {
  /** Stops retrying and aborts the request on its way: the promise rejects with CLIENT_CLOSED. */
  signal?: AbortSignal | undefined;
  /** Called before each retry, for UIs that show a pending state. */
  onRetry?: ((retry: { attempt: number; reason: string }) => void) | undefined;
}

export interface RetryDeps {
  backoff: BackoffOptions;
  /** The client's close(): it aborts the request on its way and the wait between attempts. */
  closing: Closing;
  /**
   * The end of the session the change was made in: it stops the change like close() does, with its reason
   * (UNAUTHORIZED), so that no retry goes out under the next session on the client.
   */
  sessionEnd?: Closing;
}

/**
 * Runs one REST change until it gets an answer. Edits, deletes and reactions are idempotent on the server (the
 * same edit again changes nothing, deleting twice is fine, a reaction is there or not), so a retry after a lost
 * answer cannot do anything twice. Retries what `isRetryable()` takes (NETWORK_ERROR, TIMEOUT, REQUEST_TIMEOUT,
 * DB_UNAVAILABLE, OVERLOADED, RATE_LIMITED) with backoff, and not before a `Retry-After`; any other error is final.
 */
export async function retryChange<T>(
  deps: RetryDeps,
  attempt: (signal: AbortSignal) => Promise<T>,
  options: ChangeOptions = {},
): Promise<T> {
  // One controller per call. The caller's signal, which many calls may share, gets one abort listener for all of them
  // (whenAborted in retry.ts), not one each: Node.js warns past ten.
  const link = linkedAbort(deps.closing, options.signal, deps.sessionEnd);
  try {
    for (let n = 0; ; n++) {
      if (link.signal.aborted) throw abortedError(link.signal);
      try {
        return await attempt(link.signal);
      } catch (err) {
        const error = toXFChatError(err);
        if (link.signal.aborted) throw abortedError(link.signal);
        if (!isRetryable(error)) throw error;
        callSafely(options.onRetry, { attempt: n + 1, reason: error.code });
        await delay(Math.max(backoffDelay(n, deps.backoff), retryAfterMs(error)), link.signal);
      }
    }
  } finally {
    link.release();
  }
}

/** Everything that changed in a conversation after a version, read to the end of the feed. */
export interface Changes {
  /** Each changed (or new) message once, in its current state, by version ascending. */
  messages: PublicMessage[];
  /** The conversation's version at the end of the read: pass it as `since` next time. */
  version: number;
}

/** Pages `GET .../changes` from `since` until `hasMore` is false; `fetchPage` reads one page (with its retries). */
export async function readAllChanges(
  fetchPage: (since: number) => Promise<ChangesPage>,
  since: number,
): Promise<Changes> {
  const bySeq = new Map<number, PublicMessage>();
  for (let cursor = since; ;) {
    const page = await fetchPage(cursor);
    for (const message of page.messages) {
      // A message changed again while paging shows up twice: keep its later state.
      const before = bySeq.get(message.seq);
      if (!before || before.version < message.version) bySeq.set(message.seq, message);
    }
    const last = page.messages.at(-1);
    if (!page.hasMore || last === undefined) {
      return { messages: [...bySeq.values()].sort((a, b) => a.version - b.version), version: page.version };
    }
    cursor = last.version;
  }
}
