import type { PublicMessage, SubscribeRequest } from '../protocol/index.js';
import type { MessagesApi } from './api.js';
import type { Connection } from './connection.js';
import { conversationKey } from './checks.js';
import { XFChatError, isRetryable, toXFChatError } from './errors.js';
import { callSafely } from './emitter.js';
import { type CatchUpPace } from './pace.js';
import { backoffDelay, closedError, pause, retryAfterMs, type BackoffOptions } from './retry.js';

export interface SubscribeOptions {
  /**
   * Deliver only messages with seq > afterSeq (e.g. the last one the caller already has). Without it, the
   * first delivery is the newest page: the newest `limit` messages, or fewer past the server's 1 MiB a page
   * (older ones may exist all the same).
   */
  afterSeq?: number | undefined;
  /**
   * Resume from a version kept earlier (e.g. {@link Subscription.version} saved with the messages the app
   * stores): the first catch-up also reads every change after it, so edits, deletes and reactions made since
   * reach `onUpdate`. Without it, changes count from the moment of subscribing.
   */
  sinceVersion?: number | undefined;
  /** How many messages the server returns per catch-up page (history and changes). @default the server's (50) */
  limit?: number | undefined;
  /**
   * A message already delivered by `onMessage` (or older than where delivery started) changed: an edit, a
   * delete (`deletedAt` set, `body` empty, no reactions) or a reaction. It carries the message's whole current
   * state; each state is handed over once, and never one older than a state handed over before (by version).
   */
  onUpdate?: ((message: PublicMessage) => void) | undefined;
  /** A final failure (e.g. NOT_FOUND: not a participant, or removed): the subscription has ended. */
  onError?: ((error: XFChatError) => void) | undefined;
  /**
   * The server holds less of the conversation than this subscription delivered (or than the `afterSeq` or
   * `sinceVersion` given): its database was restored to an earlier point, so messages and changes after that
   * point are gone and their seqs and versions will be given to new ones. Drop what you hold of the conversation:
   * the subscription starts over as one without `afterSeq`, delivering the newest messages to `onMessage`. The
   * argument is the server's state (its last seq and version). A restore is seen this way only while the server
   * is still behind what the subscription had; once new messages pass it, nothing tells them apart.
   */
  onReset?: ((server: { lastSeq: number; version: number }) => void) | undefined;
}

/** Largest page the contract serves; gap fills use it to need as few round trips as possible. */
const FILL_PAGE = 200;
/**
 * Versions seen beyond a hole (one not seen yet) that are kept before the hole is settled with a read of the
 * changes feed. A hole is normally an event still on its way from another node, or two changes of one message
 * another node announced as one.
 */
const MAX_SEEN_BEYOND_HOLE = 256;
/**
 * `known` is pruned once it holds this many more states than it kept after the last pruning (amortized: a
 * pruning walks the map once).
 */
const PRUNE_SLACK = 1024;
/**
 * How long a hole may stay before it is settled with a read of the changes feed. An event on its way arrives in
 * milliseconds; a hole that stays is a change announced only as part of a later state (two changes of one message
 * read once, or a message a node caught up in its current state), and would otherwise hold `version` back.
 */
const HOLE_SETTLE_MS = 2000;

export interface SubscriptionDeps {
  connection: Connection;
  messages: MessagesApi;
  backoff: BackoffOptions;
  /** The pace of the client's catch-up reads, shared by its subscriptions. */
  pace: CatchUpPace;
  /** Called once the subscription ends, so the client can forget it. */
  onEnded: () => void;
  /** Whether the client follows the conversation again (a newer subscription): an unsubscribe must not go out then. */
  resubscribed?: () => boolean;
}

/**
 * One conversation's live message stream: new messages delivered in seq order, each exactly once, and the
 * changes of delivered messages (edits, deletes, reactions) as their current state, never an older one.
 *
 * New messages: `last` is the seq of the last message delivered. Anything above `last + 1` waits in `pending`
 * while the gap is filled over REST (`GET .../messages?after=last`). Every (re)connection re-subscribes with
 * `afterSeq: last`, so messages sent while offline are caught up too.
 *
 * Changes: every message carries the conversation version of its latest change. `known` holds the version of
 * each message's state handed to the app; a state with a version at or below it is old and dropped. `synced`
 * is the version up to which every change has been seen: it starts at the subscribe ack's version and moves
 * with the versions of the messages seen, as long as none is missing. After a reconnection, `GET .../changes
 * ?since=synced` (paged to the end) brings whatever changed while offline.
 *
 * `known` stays small: once every change up to `synced` has been seen, a state with a version in
 * (`start`, `synced`] is one already handed over or superseded by one handed over, and so is any state up to
 * `synced` of a message delivered by onMessage (its first delivery was read after subscribing). Such entries are
 * dropped and `forgotten` remembers up to where: a state at or below it, of a message without an entry, is old.
 * What stays are the states above `synced` and the changes made before subscribing that were handed over for
 * messages older than where delivery started (for those, a missing entry means "never handed over").
 */
export class Subscription {
  private last: number | undefined;
  /** Newest seq the server reported; messages up to it must be fetched even if no event announced them. */
  private target = 0;
  private readonly pending = new Map<number, PublicMessage>();
  /** Per seq, the version of the state handed to the app (by onMessage or onUpdate). */
  private readonly known = new Map<number, number>();
  /** The version the subscription started from (sinceVersion, or the first subscribe ack's). */
  private start: number | undefined;
  /** Where delivery started: messages above this seq are delivered by onMessage. */
  private startSeq: number | undefined;
  /** Entries of `known` up to this version were dropped (see `forgettable()`). */
  private forgotten: number | undefined;
  /** `known`'s size after the last pruning. */
  private keptAfterPrune = 0;
  /** Started over after the server was found behind: the caller's afterSeq and sinceVersion no longer apply. */
  private startedOver = false;
  /** Every change up to this version has been seen; undefined until the first subscribe ack. */
  private synced: number | undefined;
  /** Versions seen above `synced`, waiting for the ones in between. */
  private readonly seenAbove = new Set<number>();
  /** The changes feed must be read from `synced` (after a reconnection, or to settle a hole). */
  private needChanges = false;
  /** Looks again at a hole after HOLE_SETTLE_MS, with the `synced` it was armed at. */
  private holeTimer: { timer: ReturnType<typeof setTimeout>; synced: number } | undefined;
  private needSubscribe = true;
  /**
   * A subscribe is on its way (waiting for its turn or for its ack): the subscription is not caught up until it has
   * answered. `needSubscribe` is cleared when it goes out (a reconnection meanwhile must set it again), and `last`
   * is still the first subscription's, so without this whenReady() answered at once during a re-subscribe.
   */
  private subscribeInFlight = false;
  private running = false;
  private active = true;
  private failure: XFChatError | undefined;
  /** The server being told by unsubscribe(), until it confirmed or that no longer matters. */
  private unsubscribing: Promise<void> | undefined;
  private readonly stop = new AbortController();
  private readonly waiters: Array<{ resolve: () => void; reject: (err: XFChatError) => void }> = [];
  private readonly offConnect: () => void;
  private readonly offState: () => void;
  private readonly offUnauthorized: () => void;

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
    // Down: what is sent meanwhile reaches no socket of this client, so the subscription is not caught up (nor is
    // whenReady() answered) until it has subscribed again on the next connection.
    this.offState = deps.connection.events.on('state', (state) => {
      if (state !== 'connected') this.needSubscribe = true;
    });
    // The connection stopped for want of a usable token: whoever waits for whenReady() hears it now. The
    // subscription itself carries on with the next connect() (after a new login, say).
    this.offUnauthorized = deps.connection.events.on('unauthorized', (error) => {
      if (!this.isCaughtUp()) for (const waiter of this.waiters.splice(0)) waiter.reject(error);
    });
    this.kick();
  }

  /** The seq of the last message delivered; undefined until the first catch-up has answered. */
  get lastSeq(): number | undefined {
    return this.last;
  }

  /**
   * The conversation version up to which every change has reached this subscription (the subscribe ack's
   * version, then the versions of the messages seen since, none missing); undefined until the first subscribe
   * ack. Kept with the app's messages, it is the `sinceVersion` to resume from.
   */
  get version(): number | undefined {
    return this.synced;
  }

  /** Whether the subscription is still running. */
  get isActive(): boolean {
    return this.active;
  }

  /**
   * Resolves once the subscription is established and caught up (every message up to the server's last seq
   * at that moment has been delivered, and after a reconnection or from `sinceVersion` every change read from
   * the feed). From a disconnection until the next connection's re-subscribe has answered, it waits. It rejects if
   * the subscription ended with an error first, and with UNAUTHORIZED if the connection stops first because its
   * token is refused or nobody is logged in (the subscription stays active and carries on at the next connect():
   * call whenReady() again then).
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

  /**
   * A message's current state after a change: a `message:updated`, or the answer to the app's own edit
   * (called by the client). @internal
   */
  handleUpdated(message: PublicMessage): void {
    if (!this.active) return;
    this.accept([message]);
    this.kick();
  }

  /**
   * Stops delivering at once (nothing reaches the callbacks any more) and tells the server, when connected, to stop
   * sending this conversation's events to the socket. Resolves once the server has confirmed, or once that no longer
   * matters: the connection dropped (the server forgets a dropped socket's subscriptions), the client closed, or the
   * app subscribed to the conversation again. A refusal for now (`RATE_LIMITED`: the socket's event budget is spent,
   * `OVERLOADED`, `DB_UNAVAILABLE`, `TIMEOUT`) is retried on the same connection after Retry-After or a backoff.
   * `NOT_FOUND` resolves too: the user left the conversation or was removed meanwhile, and the server took the socket
   * out of its room all the same. Another final refusal rejects. Calling it again returns the same promise.
   */
  unsubscribe(): Promise<void> {
    if (this.unsubscribing !== undefined) return this.unsubscribing;
    if (!this.active) return Promise.resolve();
    this.end(undefined);
    this.unsubscribing = this.tellUnsubscribed();
    return this.unsubscribing;
  }

  /** Sends `conversation:unsubscribe` until the server confirms, while the connection it started on is up. */
  private async tellUnsubscribed(): Promise<void> {
    const { connection } = this.deps;
    if (!connection.connected) return;
    const started = connection.connectionNumber;
    for (let attempt = 0; ; attempt++) {
      let wait: number;
      try {
        await connection.request('conversation:unsubscribe', { conversationId: this.conversationId });
        return;
      } catch (err) {
        const error = toXFChatError(err);
        // The server forgets a dropped socket's rooms by itself: nothing left to undo. NOT_FOUND is as moot: the
        // server takes the socket out of the room before it checks the membership, so the user left or was removed
        // meanwhile (the app's own leave, say, before its `conversation:removed` arrived) and the socket is out.
        if (
          error.code === 'DISCONNECTED' ||
          error.code === 'NOT_CONNECTED' ||
          error.code === 'CLIENT_CLOSED' ||
          error.code === 'NOT_FOUND'
        )
          return;
        if (!isRetryable(error)) throw error;
        wait = Math.max(backoffDelay(attempt, this.deps.backoff), retryAfterMs(error));
      }
      // The wait ends early when the connection drops or the client closes (no timer outlives close()).
      const dropped = new AbortController();
      const offState = connection.events.on('state', () => dropped.abort());
      await pause(wait, dropped.signal);
      offState();
      // Moot once this socket is gone; and a newer subscription's subscribe must stay the last word.
      if (
        !connection.connected ||
        connection.connectionNumber !== started ||
        this.deps.resubscribed?.() === true
      )
        return;
    }
  }

  /**
   * Ends the subscription locally, e.g. after `conversation:removed`, the session's end or close() (called by the
   * client). From here on nothing reaches the app's callbacks, `onError` with `error` aside: an answer still on its
   * way (a subscribe ack, a page of history or changes) is dropped when it arrives. @internal
   */
  end(error: XFChatError | undefined): void {
    if (!this.active) return;
    this.active = false;
    this.failure = error ?? new XFChatError('CLIENT_CLOSED', 'The subscription was closed.');
    this.stop.abort();
    if (this.holeTimer) clearTimeout(this.holeTimer.timer);
    this.holeTimer = undefined;
    this.offConnect();
    this.offState();
    this.offUnauthorized();
    this.pending.clear();
    for (const waiter of this.waiters.splice(0)) waiter.reject(this.failure);
    this.deps.onEnded();
    if (error) callSafely(this.options.onError, error);
  }

  private isCaughtUp(): boolean {
    return (
      this.last !== undefined &&
      !this.needSubscribe &&
      !this.subscribeInFlight &&
      !this.needChanges &&
      this.pending.size === 0 &&
      this.last >= this.target
    );
  }

  /**
   * Takes in messages from any source (events, pages, the changes feed): one not delivered yet is queued by seq
   * (its newest state), a delivered one is an update; then the contiguous run after `last` is delivered.
   */
  private accept(messages: readonly PublicMessage[]): void {
    if (!this.active) return;
    for (const message of messages) {
      if (conversationKey(message.conversationId) !== this.conversationId) continue;
      this.see(message.version);
      if (this.last !== undefined && message.seq <= this.last) {
        this.update(message);
        continue;
      }
      const queued = this.pending.get(message.seq);
      if (!queued || queued.version < message.version) this.pending.set(message.seq, message);
      if (message.seq > this.target) this.target = message.seq;
    }
    const last = this.last;
    if (last === undefined) return;
    // Events buffered before the first catch-up may concern messages before where delivery starts.
    for (const [seq, message] of this.pending) {
      if (seq > last) continue;
      this.pending.delete(seq);
      this.update(message);
    }
    let cursor = last;
    for (let next = this.pending.get(cursor + 1); next && this.active; next = this.pending.get(cursor + 1)) {
      this.pending.delete(next.seq);
      cursor = next.seq;
      this.last = cursor;
      this.known.set(next.seq, next.version);
      callSafely(this.onMessage, next);
    }
    this.prune();
  }

  /** Hands a delivered message's newer state to the app; an older or already known state is dropped. */
  private update(message: PublicMessage): void {
    // Ended (by the app's own callback, say, while a batch is handed over): nothing more reaches the app.
    if (!this.active) return;
    let known = this.known.get(message.seq);
    // Without an entry, a state up to `forgotten` that could have had one dropped is old (see the class comment).
    if (known === undefined && this.forgotten !== undefined && message.version <= this.forgotten)
      if (this.forgettable(message.seq, message.version)) known = this.forgotten;
    if (known !== undefined && known >= message.version) return;
    this.known.set(message.seq, message.version);
    callSafely(this.options.onUpdate, message);
  }

  /**
   * Whether an entry (seq, version) may be dropped once `synced` covers its version: a version above the start, or
   * a message delivered by onMessage. A change made before subscribing, handed over for a message older than
   * where delivery started, is kept.
   */
  private forgettable(seq: number, version: number): boolean {
    if (this.start === undefined || this.startSeq === undefined) return false;
    return version > this.start || seq > this.startSeq;
  }

  /**
   * Drops the forgettable entries of `known` at or below `synced` once it has grown by PRUNE_SLACK since the last
   * pruning. Runs only at the end of accept(): within a batch, `synced` may cover a state not taken in yet.
   */
  private prune(): void {
    const { synced } = this;
    if (synced === undefined || this.known.size < this.keptAfterPrune + PRUNE_SLACK) return;
    for (const [seq, version] of this.known)
      if (version <= synced && this.forgettable(seq, version)) this.known.delete(seq);
    this.forgotten = synced;
    this.keptAfterPrune = this.known.size;
  }

  /** Records a version seen and moves `synced` over every version now seen without a hole. */
  private see(version: number): void {
    if (this.synced === undefined || version > this.synced) this.seenAbove.add(version);
    this.advance();
  }

  private advance(): void {
    if (this.synced === undefined) return;
    for (const version of this.seenAbove) if (version <= this.synced) this.seenAbove.delete(version);
    while (this.seenAbove.delete(this.synced + 1)) this.synced += 1;
    // A hole that stays while many later versions arrive, or for HOLE_SETTLE_MS, is settled by reading the feed.
    if (this.seenAbove.size > MAX_SEEN_BEYOND_HOLE) this.needChanges = true;
    else if (this.seenAbove.size > 0 && this.holeTimer === undefined && this.active) this.armHoleTimer();
  }

  private armHoleTimer(): void {
    const synced = this.synced;
    if (synced === undefined) return;
    const timer = setTimeout(() => {
      this.holeTimer = undefined;
      if (!this.active || this.seenAbove.size === 0) return;
      // `synced` moved meanwhile: the hole there now is younger; look at it again later.
      if (this.synced !== synced) {
        this.armHoleTimer();
        return;
      }
      this.needChanges = true;
      this.kick();
    }, HOLE_SETTLE_MS);
    this.holeTimer = { timer, synced };
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
      /** What the server asked to wait before the next try (RATE_LIMITED, OVERLOADED), if it did. */
      let askedWaitMs = 0;
      const subscribing = this.needSubscribe;
      try {
        if (subscribing) {
          await this.deps.connection.waitConnected(this.stop.signal);
          // Ended meanwhile (already connected, the wait did not see the stop): subscribe no more.
          if (!this.active) return;
          this.needSubscribe = false;
          await this.subscribeInTurn();
          progressed = true;
        } else if (this.needChanges) {
          await this.inTurn(() => this.readChanges());
          progressed = true;
        } else {
          progressed = await this.inTurn(() => this.fillGap());
          // The server has nothing after `last` although newer seqs were seen: start over with a subscribe.
          if (!progressed) this.needSubscribe = true;
        }
      } catch (err) {
        const error = toXFChatError(err);
        if (!this.active) return;
        // Final errors end the subscription, CLIENT_CLOSED too (the client closed under a subscription still
        // active): returning instead would let kick() start it again at once, for ever.
        if (!isRetryable(error)) {
          this.end(error);
          return;
        }
        // The server's Retry-After, not only the backoff: hundreds of subscriptions catching up at once were tried
        // again within a quarter of a second and refused again, thousands of times (SYNC hunt).
        askedWaitMs = retryAfterMs(error);
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
      else await pause(Math.max(backoffDelay(attempt++, this.deps.backoff), askedWaitMs), this.stop.signal);
    }
    if (this.active) for (const waiter of this.waiters.splice(0)) waiter.resolve();
  }

  /** Runs one catch-up read in the client's pace (it throws the subscription's end if that comes first). */
  private inTurn<T>(read: () => Promise<T>): Promise<T> {
    return this.deps.pace.run(this.stop.signal, () => this.failure ?? closedError(), read);
  }

  /** Runs one subscribe in the client's pace, marked in flight (not caught up) until it has answered or failed. */
  private async subscribeInTurn(): Promise<void> {
    this.subscribeInFlight = true;
    try {
      await this.inTurn(() => this.subscribeOnce());
    } finally {
      this.subscribeInFlight = false;
    }
  }

  private async subscribeOnce(): Promise<void> {
    const request: SubscribeRequest = { conversationId: this.conversationId };
    const given: Pick<SubscribeOptions, 'afterSeq' | 'sinceVersion'> = this.startedOver ? {} : this.options;
    const afterSeq = this.last ?? given.afterSeq;
    if (afterSeq !== undefined) request.afterSeq = afterSeq;
    if (this.options.limit !== undefined) request.limit = this.options.limit;
    const result = await this.deps.connection.request('conversation:subscribe', request);
    // The subscription ended while the ack was on its way: nothing of it reaches the app (no onReset either).
    if (!this.active) return;
    const heldVersion = this.synced ?? given.sinceVersion;
    if (
      (afterSeq !== undefined && result.lastSeq < afterSeq) ||
      (heldVersion !== undefined && result.version < heldVersion)
    ) {
      this.startOver(result);
      // The app may have unsubscribed in onReset.
      if (!this.active) return;
      await this.subscribeOnce();
      return;
    }
    if (this.last === undefined) {
      // Without afterSeq the server sent the newest page: delivery starts at its first message. (An afterSeq beyond
      // the conversation's last seq started over above.)
      const first = result.messages[0];
      this.last = afterSeq === undefined ? (first ? first.seq - 1 : result.lastSeq) : afterSeq;
      this.startSeq = this.last;
    }
    if (this.synced === undefined) {
      // The page is the state at the ack's version, and every later change arrives as an event.
      const since = given.sinceVersion;
      this.synced = since ?? result.version;
      this.start = this.synced;
      if (since !== undefined && since < result.version) this.needChanges = true;
      this.advance();
    } else {
      // Back after a disconnection: what changed meanwhile is in the feed after `synced`.
      this.needChanges = true;
    }
    if (result.lastSeq > this.target) this.target = result.lastSeq;
    this.accept(result.messages);
  }

  /**
   * The server is behind what this subscription holds (a database restored to an earlier point): forgets every
   * seq and version it knew, tells the app (onReset), and goes on as a new subscription without afterSeq.
   */
  private startOver(server: { lastSeq: number; version: number }): void {
    if (!this.active) return;
    this.startedOver = true;
    this.last = undefined;
    this.target = 0;
    this.pending.clear();
    this.known.clear();
    this.synced = undefined;
    this.seenAbove.clear();
    this.needChanges = false;
    if (this.holeTimer) clearTimeout(this.holeTimer.timer);
    this.holeTimer = undefined;
    this.start = undefined;
    this.startSeq = undefined;
    this.forgotten = undefined;
    this.keptAfterPrune = 0;
    callSafely(this.options.onReset, { lastSeq: server.lastSeq, version: server.version });
  }

  /**
   * One page of `GET .../changes?since=synced`. Every message of the page is taken in (new ones queued by seq,
   * delivered ones as updates); `synced` moves to the page's last version, or to the conversation's version at
   * the end of the feed.
   */
  private async readChanges(): Promise<void> {
    const since = this.synced ?? 0;
    const page = await this.deps.messages.changes(
      this.conversationId,
      since,
      this.options.limit ?? FILL_PAGE,
    );
    // Ended while the page was on its way: it is dropped, nothing reaches the app.
    if (!this.active) return;
    this.accept(page.messages);
    const last = page.messages.at(-1);
    const reached = page.hasMore && last !== undefined ? last.version : page.version;
    if (this.synced === undefined || reached > this.synced) this.synced = reached;
    if (!page.hasMore) this.needChanges = false;
    this.advance();
  }

  /** One page of `GET .../messages?after=last`; false if it brought nothing new. */
  private async fillGap(): Promise<boolean> {
    const before = this.last ?? 0;
    const page = await this.deps.messages.after(this.conversationId, before, FILL_PAGE);
    // Ended while the page was on its way: it is dropped, nothing reaches the app.
    if (!this.active) return false;
    this.accept(page.messages);
    return (this.last ?? 0) > before;
  }
}
