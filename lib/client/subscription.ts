import type { PublicMessage, SubscribeRequest } from '../protocol/index.js';
import type { MessagesApi } from './api.js';
import type { Connection } from './connection.js';
import { XFChatError, isRetryable, toXFChatError } from './errors.js';
import { callSafely } from './emitter.js';
import { backoffDelay, pause, type BackoffOptions } from './retry.js';

export interface SubscribeOptions {
  /**
   * Deliver only messages with seq > afterSeq (e.g. the last one the caller already has). Without it, the
   * first delivery is the newest `limit` messages.
   */
  afterSeq?: number;
  /** How many messages the server returns per catch-up page. @default the server's (50) */
  limit?: number;
  /** A final failure (e.g. NOT_FOUND: not a participant, or removed): the subscription has ended. */
  onError?: (error: XFChatError) => void;
}

/** Largest page the contract serves; gap fills use it to need as few round trips as possible. */
const FILL_PAGE = 200;

export interface SubscriptionDeps {
  connection: Connection;
  messages: MessagesApi;
  backoff: BackoffOptions;
  /** Called once the subscription ends, so the client can forget it. */
  onEnded: () => void;
}

/**
 * One conversation's live message stream, delivered in seq order, each message exactly once.
 *
 * `last` is the seq of the last message delivered. Anything at or below it is a duplicate; anything above
 * `last + 1` waits in `pending` while the gap is filled over REST (`GET .../messages?after=last`). Every
 * (re)connection re-subscribes with `afterSeq: last`, so messages sent while offline are caught up too.
 */
export class Subscription {
  private last: number | undefined;
  /** Newest seq the server reported; messages up to it must be fetched even if no event announced them. */
  private target = 0;
  private readonly pending = new Map<number, PublicMessage>();
  private needSubscribe = true;
  private running = false;
  private active = true;
  private failure: XFChatError | undefined;
  private readonly stop = new AbortController();
  private readonly waiters: Array<{ resolve: () => void; reject: (err: XFChatError) => void }> = [];
  private readonly offConnect: () => void;

  constructor(
    readonly conversationId: string,
    private readonly onMessage: (message: PublicMessage) => void,
    private readonly options: SubscribeOptions,
    private readonly deps: SubscriptionDeps,
  ) {
    this.offConnect = deps.connection.events.on('connect', () => {
      this.needSubscribe = true;
      this.kick();
    });
    this.kick();
  }

  /** The seq of the last message delivered; undefined until the first catch-up has answered. */
  get lastSeq(): number | undefined {
    return this.last;
  }

  /** Whether the subscription is still running. */
  get isActive(): boolean {
    return this.active;
  }

  /**
   * Resolves once the subscription is established and caught up (every message up to the server's last seq
   * at that moment has been delivered); rejects if it ended with an error first.
   */
  whenReady(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.isCaughtUp()) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** A `message:new` for this conversation (called by the client). @internal */
  handleNew(message: PublicMessage): void {
    if (!this.active) return;
    this.accept([message]);
    this.kick();
  }

  /** Stops delivering and tells the server (when connected) to stop sending this conversation's events. */
  async unsubscribe(): Promise<void> {
    if (!this.active) return;
    this.end(undefined);
    if (!this.deps.connection.connected) return;
    try {
      await this.deps.connection.request('conversation:unsubscribe', { conversationId: this.conversationId });
    } catch (err) {
      const error = toXFChatError(err);
      // The server forgets a dropped socket's rooms by itself: nothing left to undo.
      if (error.code !== 'DISCONNECTED' && error.code !== 'NOT_CONNECTED' && error.code !== 'CLIENT_CLOSED')
        throw error;
    }
  }

  /** Ends the subscription locally, e.g. after `conversation:removed` or close() (called by the client). @internal */
  end(error: XFChatError | undefined): void {
    if (!this.active) return;
    this.active = false;
    this.failure = error ?? new XFChatError('CLIENT_CLOSED', 'The subscription was closed.');
    this.stop.abort();
    this.offConnect();
    this.pending.clear();
    for (const waiter of this.waiters.splice(0)) waiter.reject(this.failure);
    this.deps.onEnded();
    if (error) callSafely(this.options.onError, error);
  }

  private isCaughtUp(): boolean {
    return (
      this.last !== undefined && !this.needSubscribe && this.pending.size === 0 && this.last >= this.target
    );
  }

  /** Queues messages by seq, then delivers the contiguous run after `last`. */
  private accept(messages: readonly PublicMessage[]): void {
    for (const message of messages) {
      if (message.conversationId !== this.conversationId) continue;
      if (this.last !== undefined && message.seq <= this.last) continue;
      this.pending.set(message.seq, message);
      if (message.seq > this.target) this.target = message.seq;
    }
    const last = this.last;
    if (last === undefined) return;
    // Events buffered before the first catch-up may predate where delivery starts.
    for (const seq of this.pending.keys()) if (seq <= last) this.pending.delete(seq);
    let cursor = last;
    for (let next = this.pending.get(cursor + 1); next && this.active; next = this.pending.get(cursor + 1)) {
      this.pending.delete(next.seq);
      cursor = next.seq;
      this.last = cursor;
      callSafely(this.onMessage, next);
    }
  }

  /** Runs the catch-up loop unless it is already running (it re-checks its conditions before it stops). */
  private kick(): void {
    if (this.running || !this.active || this.isCaughtUp()) return;
    this.running = true;
    void this.run().finally(() => {
      this.running = false;
      this.kick();
    });
  }

  /** Subscribes and fills gaps until caught up; retries transient failures with backoff; never rejects. */
  private async run(): Promise<void> {
    let attempt = 0;
    while (this.active && !this.isCaughtUp()) {
      let progressed = false;
      const subscribing = this.needSubscribe;
      try {
        if (subscribing) {
          await this.deps.connection.waitConnected(this.stop.signal);
          this.needSubscribe = false;
          await this.subscribeOnce();
          progressed = true;
        } else {
          progressed = await this.fillGap();
          // The server has nothing after `last` although newer seqs were seen: start over with a subscribe.
          if (!progressed) this.needSubscribe = true;
        }
      } catch (err) {
        const error = toXFChatError(err);
        if (!this.active || error.code === 'CLIENT_CLOSED') return;
        if (!isRetryable(error)) {
          this.end(error);
          return;
        }
        // A subscribe the server refused (RATE_LIMITED, OVERLOADED, ...) did not subscribe: try it again, not a
        // REST catch-up that would leave the socket without live events.
        if (
          subscribing ||
          error.code === 'DISCONNECTED' ||
          error.code === 'NOT_CONNECTED' ||
          error.code === 'TIMEOUT'
        )
          this.needSubscribe = true;
      }
      if (progressed) attempt = 0;
      else await pause(backoffDelay(attempt++, this.deps.backoff), this.stop.signal);
    }
    if (this.active) for (const waiter of this.waiters.splice(0)) waiter.resolve();
  }

  private async subscribeOnce(): Promise<void> {
    const request: SubscribeRequest = { conversationId: this.conversationId };
    const afterSeq = this.last ?? this.options.afterSeq;
    if (afterSeq !== undefined) request.afterSeq = afterSeq;
    if (this.options.limit !== undefined) request.limit = this.options.limit;
    const result = await this.deps.connection.request('conversation:subscribe', request);
    if (this.last === undefined) {
      // Without afterSeq the server sent the newest page: delivery starts at its first message.
      const first = result.messages[0];
      this.last = afterSeq ?? (first ? first.seq - 1 : result.lastSeq);
    }
    if (result.lastSeq > this.target) this.target = result.lastSeq;
    this.accept(result.messages);
  }

  /** One page of `GET .../messages?after=last`; false if it brought nothing new. */
  private async fillGap(): Promise<boolean> {
    const before = this.last ?? 0;
    const page = await this.deps.messages.after(this.conversationId, before, FILL_PAGE);
    this.accept(page.messages);
    return (this.last ?? 0) > before;
  }
}
