import { XFChatError } from './errors.js';

/** Backoff settings for retries: exponential from `baseMs`, capped at `maxMs`, with jitter. */
export interface BackoffOptions {
  /** @default 250 */
  baseMs: number;
  /** @default 5000 */
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 250, maxMs: 5000 };

/**
 * The longest wait setTimeout takes (2^31-1 ms, about 24.9 days). A longer one (Infinity included) fires after 1 ms
 * instead, Node.js and browsers alike: every timer of the SDK waits at most this long.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** `ms` as a wait setTimeout keeps: at most {@link MAX_TIMER_MS}, and 0 for a negative one or NaN. */
export function timerMs(ms: number): number {
  return ms > 0 ? Math.min(ms, MAX_TIMER_MS) : 0;
}

/**
 * The longest `Retry-After` the SDK waits before it retries by itself (one hour). A longer one (a proxy's maintenance
 * page, say) is waited for an hour, then the request is tried again; the error's `retryAfter` keeps what was said.
 */
export const MAX_RETRY_AFTER_MS = 3_600_000;

/** The wait a failure's `retryAfter` (seconds) asks for, in ms, at most {@link MAX_RETRY_AFTER_MS}; 0 without one. */
export function retryAfterMs(error: XFChatError): number {
  const seconds = error.retryAfter ?? 0;
  return seconds > 0 ? Math.min(seconds * 1000, MAX_RETRY_AFTER_MS) : 0;
}

/**
 * The wait before retry number `attempt` (0-based). Half of it is random so that many clients cut off by the
 * same outage do not all come back in the same millisecond.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = DEFAULT_BACKOFF): number {
  const ceiling = Math.min(options.maxMs, options.baseMs * 2 ** Math.min(attempt, 20));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/** The error a wait or request rejects with once the client is closed. */
export function closedError(): XFChatError {
  return new XFChatError('CLIENT_CLOSED', 'The client was closed.');
}

/**
 * The error an operation rejects with when the caller's `signal` aborts: CLIENT_CLOSED (the SDK's code for "stopped
 * by its caller"), or the signal's reason when that is already an XFChatError (the SDK aborts its own signals so).
 */
export function abortedError(signal: AbortSignal): XFChatError {
  const reason: unknown = signal.reason;
  if (reason instanceof XFChatError) return reason;
  return new XFChatError('CLIENT_CLOSED', 'The operation was aborted.', { cause: reason });
}

/**
 * The client's close(), or the end of one session, for everything that must stop then. Hooks live in a Set rather
 * than as abort listeners on one shared AbortSignal: Node.js prints MaxListenersExceededWarning once a signal has
 * more than ten listeners, as it would with a dozen requests or retries waiting at once.
 */
export class Closing {
  private readonly hooks = new Set<(reason: XFChatError) => void>();
  private reason: XFChatError | undefined;

  get closed(): boolean {
    return this.reason !== undefined;
  }

  /** What close() was given, once closed. */
  get error(): XFChatError | undefined {
    return this.reason;
  }

  /** Calls `hook` once at close() (at once if already closed); returns a function that removes it. */
  onClose(hook: (reason: XFChatError) => void): () => void {
    if (this.reason !== undefined) {
      hook(this.reason);
      return () => undefined;
    }
    this.hooks.add(hook);
    return () => this.hooks.delete(hook);
  }

  /** Runs every hook once with `reason` (CLIENT_CLOSED unless given). Idempotent. */
  close(reason: XFChatError = closedError()): void {
    if (this.reason !== undefined) return;
    this.reason = reason;
    const hooks = [...this.hooks];
    this.hooks.clear();
    for (const hook of hooks) hook(reason);
  }
}

/** The hooks {@link whenAborted} runs when a signal aborts, and the one abort listener that runs them. */
interface AbortHooks {
  hooks: Set<() => void>;
  listener: () => void;
}

const abortHooks = new WeakMap<AbortSignal, AbortHooks>();

/**
 * Calls `hook` when `signal` (not aborted yet) aborts, until the returned function removes it. However many hooks a
 * signal has, they share one abort listener, removed with the last hook: an application passes one signal (a
 * screen's) to a dozen calls at once, and an AbortSignal with more than ten listeners makes Node.js print
 * MaxListenersExceededWarning.
 */
export function whenAborted(signal: AbortSignal, hook: () => void): () => void {
  let entry = abortHooks.get(signal);
  if (entry === undefined) {
    const hooks = new Set<() => void>();
    const listener = () => {
      abortHooks.delete(signal);
      for (const run of [...hooks]) run();
    };
    entry = { hooks, listener };
    abortHooks.set(signal, entry);
    signal.addEventListener('abort', listener, { once: true });
  }
  const { hooks, listener } = entry;
  // Each call its own entry: the same function given twice runs twice, and each remover takes out its own.
  const own = () => hook();
  hooks.add(own);
  return () => {
    hooks.delete(own);
    if (hooks.size > 0 || abortHooks.get(signal)?.hooks !== hooks) return;
    abortHooks.delete(signal);
    signal.removeEventListener('abort', listener);
  };
}

/**
 * An AbortController for one operation that aborts with CLIENT_CLOSED when the client closes, with
 * {@link abortedError} when the caller's `signal` aborts, and with the reason of `sessionEnd` (UNAUTHORIZED) when the
 * session the operation was made in ends; `release()` removes the links once the operation is over. The caller's
 * signal gets no listener of its own per operation (see {@link whenAborted}).
 */
export function linkedAbort(
  closing: Closing,
  signal: AbortSignal | undefined,
  sessionEnd?: Closing,
): { signal: AbortSignal; abort: (reason: XFChatError) => void; release: () => void } {
  const controller = new AbortController();
  const abort = (reason: XFChatError) => {
    if (!controller.signal.aborted) controller.abort(reason);
  };
  const offClose = closing.onClose(abort);
  const offSessionEnd = sessionEnd?.onClose(abort);
  let offSignal: (() => void) | undefined;
  if (signal?.aborted) abort(abortedError(signal));
  else if (signal !== undefined) offSignal = whenAborted(signal, () => abort(abortedError(signal)));
  return {
    signal: controller.signal,
    abort,
    release: () => {
      offClose();
      offSessionEnd?.();
      offSignal?.();
    },
  };
}

/**
 * Settles like `work`, or rejects with the signal's reason as soon as it aborts, even if `work` (an application's
 * own `fetch` option, or a token refresh other calls share, say) does not honour the signal; `work` goes on.
 */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as XFChatError);
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * Resolves after `ms` (at most {@link MAX_TIMER_MS}), or rejects as soon as `signal` aborts (with
 * {@link abortedError}). The abort listener is removed either way, so a long-lived signal does not collect listeners.
 */
export function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(abortedError(signal));
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortedError(signal));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, timerMs(ms));
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * A source of time-ordered clientMsgIds: UUIDs of version 7 (RFC 9562), whose first 48 bits are the Unix time in
 * milliseconds and the next 12 a counter within the millisecond (starting at a random value below 2048), so that
 * one source's ids sort in the order it made them, also when the clock steps back (the source keeps to the last
 * millisecond it used and counts on) or the counter passes 4095 (at least 2048 ids fit in a millisecond; it then
 * moves on to the next). The other 62 bits are random.
 *
 * Why time order: the server keeps each clientMsgId in a unique index led by the conversation and the sender, so a
 * random id goes to a random page of that sender's part of it; on a long conversation that is a page read and,
 * after each checkpoint, a whole page in PostgreSQL's WAL for each message (docs/performance.md, "Time-ordered
 * clientMsgIds").
 */
export function clientMsgIdSource(now: () => number = Date.now): () => string {
  let lastMs = -1;
  let counter = 0;
  // Random bytes fetched 4 kB at a time, 10 an id (a counter's start and the last 8 bytes): one call of the
  // system's generator per 409 ids.
  const pool = new Uint8Array(4096);
  let used = pool.length;
  const bytes = new Uint8Array(16);
  return () => {
    if (used + 10 > pool.length) {
      globalThis.crypto.getRandomValues(pool);
      used = 0;
    }
    let ms = now();
    if (ms > lastMs) {
      counter = ((pool[used]! & 0x07) << 8) | pool[used + 1]!;
    } else {
      ms = lastMs;
      counter += 1;
      if (counter > 0xfff) {
        ms += 1;
        counter = 0;
      }
    }
    lastMs = ms;
    for (let i = 5; i >= 0; i--) {
      bytes[i] = ms % 256;
      ms = Math.floor(ms / 256);
    }
    bytes[6] = 0x70 | (counter >> 8);
    bytes[7] = counter & 0xff;
    bytes.set(pool.subarray(used + 2, used + 10), 8);
    used += 10;
    bytes[8] = (bytes[8]! & 0x3f) | 0x80;
    let id = '';
    for (let i = 0; i < 16; i++) {
      id += HEX[bytes[i]!]!;
      if (i === 3 || i === 5 || i === 7 || i === 9) id += '-';
    }
    return id;
  };
}

const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'));

/**
 * A fresh clientMsgId: a time-ordered UUID (clientMsgIdSource), from `crypto.getRandomValues`, which plain-http
 * pages off localhost have too (unlike `crypto.randomUUID`).
 */
export const newClientMsgId: () => string = clientMsgIdSource();

/**
 * Resolves after `ms` (at most {@link MAX_TIMER_MS}), or early (never rejecting) when `signal` aborts: for loops that
 * check their own state.
 */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, timerMs(ms));
    signal.addEventListener('abort', done, { once: true });
  });
}
