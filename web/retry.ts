import { XFChatError, isRetryable } from '../lib/client/index.js';

/** Longest wait between two automatic tries of a read (the list, the friends, the requests, history). */
const READ_RETRY_MAX_MS = 30_000;
/** The longest Retry-After such a read waits before it tries again by itself (a proxy's may be days ahead). */
const READ_RETRY_AFTER_MAX_MS = 3_600_000;

/**
 * How long to wait before a read that failed with `err` (its `attempt`th failure in a row, from 0) goes out again:
 * the server's Retry-After when it gives one (at most an hour, as the SDK waits), else 1 s, 2 s, 4 s... up to 30 s;
 * undefined for a failure that does not pass by itself (a refusal, a bug).
 */
export function readRetryWait(err: unknown, attempt: number): number | undefined {
  if (!(err instanceof XFChatError) || !isRetryable(err)) return undefined;
  const hinted = err.retryAfter !== undefined ? err.retryAfter * 1000 : 0;
  return hinted > 0
    ? Math.min(hinted, READ_RETRY_AFTER_MAX_MS)
    : Math.min(READ_RETRY_MAX_MS, 1000 * 2 ** attempt);
}
