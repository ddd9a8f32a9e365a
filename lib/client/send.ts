import type { PublicMessage, SendRequest } from '../protocol/index.js';
import type { Connection } from './connection.js';
import { isRetryable, toXFChatError } from './errors.js';
import { callSafely } from './emitter.js';
import {
  abortedError,
  backoffDelay,
  delay,
  retryAfterMs,
  whenAborted,
  type BackoffOptions,
} from './retry.js';

export interface SendOptions {
  /** Reuse an id (e.g. one saved in an outbox before a page reload); a new UUID otherwise. */
  clientMsgId?: string | undefined;
  /** The seq of an earlier message of the conversation this one answers (VALIDATION_FAILED otherwise). */
  replyToSeq?: number | null | undefined;
  /** Stops retrying: the promise rejects with CLIENT_CLOSED. */
  signal?: AbortSignal | undefined;
  /** Called before each retry, for UIs that show "sending..." states. */
  onRetry?: ((retry: { attempt: number; reason: string }) => void) | undefined;
}

export interface SendDeps {
  connection: Connection;
  backoff: BackoffOptions;
  /**
   * Aborted by the client's close() (reason CLIENT_CLOSED) or by the end of the session the send was made in: the
   * send stops at once and never tries again, and rejects with the signal's reason.
   */
  closeSignal: AbortSignal;
}

/** The connection problems that need a new connection, not a pause, before the next attempt. */
const CONNECTION_CODES = new Set(['DISCONNECTED', 'NOT_CONNECTED']);

/**
 * Sends one message with a fixed clientMsgId until the server acknowledges it. Because the server stores a
 * clientMsgId at most once (and answers a repeat with the stored message), retrying after a timeout, a drop
 * or a reconnect to another node cannot create a second message. Retries wait for the connection and back
 * off on DB_UNAVAILABLE, OVERLOADED and RATE_LIMITED; any other error (validation, permission, conflict, the
 * token refused) is final and rejects.
 */
export async function sendWithRetry(
  deps: SendDeps,
  conversationId: string,
  body: string,
  clientMsgId: string,
  options: SendOptions = {},
): Promise<PublicMessage> {
  const { signal, dispose } = options.signal
    ? eitherSignal(options.signal, deps.closeSignal)
    : { signal: deps.closeSignal, dispose: () => undefined };
  try {
    return await sendUntilAcknowledged(deps, conversationId, body, clientMsgId, options, signal);
  } finally {
    dispose();
  }
}

/**
 * A signal that aborts when either does (with its reason), through hooks that `dispose()` removes once the send is
 * over, so that a long-lived signal (a screen's, passed to every send made there) keeps nothing per send. Hooks, not
 * a listener per send: sends to a dozen conversations at once under one signal would give it a dozen listeners, and
 * Node.js warns past ten ({@link whenAborted}). Not `AbortSignal.any`: Node.js 20 keeps an entry per call on each
 * source signal for as long as that signal lives.
 */
export function eitherSignal(a: AbortSignal, b: AbortSignal): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const from = (source: AbortSignal) => () => {
    if (!controller.signal.aborted) controller.abort(source.reason);
  };
  if (a.aborted) from(a)();
  else if (b.aborted) from(b)();
  if (controller.signal.aborted) return { signal: controller.signal, dispose: () => undefined };
  const offA = whenAborted(a, from(a));
  const offB = whenAborted(b, from(b));
  return {
    signal: controller.signal,
    dispose: () => {
      offA();
      offB();
    },
  };
}

async function sendUntilAcknowledged(
  deps: SendDeps,
  conversationId: string,
  body: string,
  clientMsgId: string,
  options: SendOptions,
  signal: AbortSignal,
): Promise<PublicMessage> {
  for (let attempt = 0; ; attempt++) {
    if (signal.aborted) throw abortedError(signal);
    await deps.connection.waitConnected(signal, true);
    // Connected, but the session may have ended in the meantime: never send under another one.
    if (signal.aborted) throw abortedError(signal);
    try {
      const request: SendRequest = { conversationId, clientMsgId, body };
      if (options.replyToSeq !== undefined) request.replyToSeq = options.replyToSeq;
      const result = await deps.connection.request('message:send', request);
      return result.message;
    } catch (err) {
      const error = toXFChatError(err);
      if (signal.aborted) throw abortedError(signal);
      if (!isRetryable(error)) throw error;
      callSafely(options.onRetry, { attempt: attempt + 1, reason: error.code });
      // After a drop, waitConnected() is the wait; otherwise back off so an overloaded server can recover.
      if (!CONNECTION_CODES.has(error.code)) {
        const wait = Math.max(backoffDelay(attempt, deps.backoff), retryAfterMs(error));
        await delay(wait, signal);
      }
    }
  }
}
