import type { Knex } from 'knex';
import type { ConversationRegistry } from '../../actors/ConversationRegistry.js';
import { AppError } from '../errors.js';
import type { Notifier } from '../notifier.js';
import type { PublicMessage } from '../protocol/index.js';
import { RateLimiter } from '../rateLimiter.js';
import { createReadBudget } from '../readBudget.js';
import type { Membership } from './membership.js';
import type { Removals } from './removals.js';
import {
  PAGE_MAX_BYTES,
  readChanges,
  readHistory,
  type ChangesPage,
  type HistoryPage,
  type HistoryWindow,
} from './reads.js';
import type { MessageActor, MessageCommand, Stored } from './types.js';

export type { ChangesPage, HistoryPage, HistoryWindow };

/** A send as the interfaces hand it over, validated. */
export interface SendInput {
  conversationId: string;
  clientMsgId: string;
  body: string;
  replyToSeq?: number | null | undefined;
}

/** A change as the interfaces hand it over, validated: what to do to which message. */
export type ChangeInput =
  | { kind: 'edit'; seq: number; body: string }
  | { kind: 'delete'; seq: number }
  | { kind: 'react' | 'unreact'; seq: number; emoji: string };

/**
 * Messages, read markers and typing, for REST and Socket.IO alike: both interfaces call the same methods, so
 * the same checks (participant, per-user rate limit) and the same actor apply to either.
 */
export interface MessageService {
  /** NOT_FOUND unless `userId` takes part in the conversation. */
  assertParticipant(userId: string, conversationId: string): Promise<void>;
  /**
   * Resolves once the message is committed. RATE_LIMITED, NOT_FOUND, OVERLOADED, IDEMPOTENCY_CONFLICT, ...
   * `sessionId`: the session the send came in on (UNAUTHORIZED once it has ended, checked in the write's
   * transaction: lib/messaging/types.ts); null for a write of no session.
   */
  send(userId: string, input: SendInput, sessionId: string | null): Promise<Stored>;
  /**
   * Edits, deletes or reacts to a stored message through the conversation's actor, like a send: resolves with
   * the message's state once committed (`duplicate` when nothing changed). FORBIDDEN, MESSAGE_DELETED, BLOCKED,
   * NOT_FOUND, UNAUTHORIZED (`sessionId` has ended), ...
   */
  change(
    userId: string,
    conversationId: string,
    input: ChangeInput,
    sessionId: string | null,
  ): Promise<{ message: PublicMessage }>;
  /**
   * A page of history. `reader` names the subscriber the page is for (a socket that has just joined the
   * conversation's room): what this node delivers to it afterwards leaves out the states its page gave.
   */
  history(
    userId: string,
    conversationId: string,
    window: HistoryWindow,
    reader?: string,
  ): Promise<HistoryPage>;
  /**
   * Runs another big read of the user's (a page of conversations with their participants) within the same
   * budget as history pages: RATE_LIMITED past it.
   */
  withinReadBudget<T>(userId: string, read: () => Promise<T>, weigh?: (result: T) => number): Promise<T>;
  /** Every message changed (or created) after version `since`, by version. */
  changes(userId: string, conversationId: string, since: number, limit: number): Promise<ChangesPage>;
  /**
   * Moves my read marker forward to `seq` (clamped to the conversation's last seq; never backwards) and tells
   * the subscribers when it moved. With `sessionId`, UNAUTHORIZED once that session has ended (checked in the
   * same statement), whether or not this node has heard of the end.
   */
  markRead(userId: string, conversationId: string, seq: number, sessionId?: string | null): Promise<void>;
  /**
   * Tells the subscribers (not the typist's own sockets), at most once per interval. With `sessionId`,
   * UNAUTHORIZED once that session has ended (checked with the blocks, for a typing that would go out).
   */
  typing(userId: string, conversationId: string, sessionId?: string | null): Promise<void>;
  /**
   * Who may act in the conversation changed (a block, heard on the control bus): its typings that went out are
   * forgotten, so the next of each is checked again instead of answered `{ok}` within the 2 s interval.
   */
  forgetTypings(conversationId: string): void;
  /** The node stops: the `conversation:read` events held back for their interval go out no more. */
  stop(): void;
}

export interface MessageServiceDeps {
  knex: Knex;
  notify: Notifier;
  membership: Membership;
  /**
   * Before a read marker or a typing goes to the conversation's room: a removal it read the count of, committed
   * before it but not heard of on this node yet, takes the removed user's sockets out of the room first.
   */
  removals: Pick<Removals, 'beforeDelivering'>;
  registry: ConversationRegistry<MessageActor>;
  /** Sends per user per second, bursts of twice that; 0 = off. */
  messagesPerSecond: number;
  /** History and catch-up reads per user per second (REST and Socket.IO together), bursts of twice that; 0 = off. */
  readsPerSecond: number;
  /**
   * Told of every history page read, in the same turn as it is read (before any delivery can run): what the reader
   * was given, for catching up after a lost LISTEN and for leaving out of a subscriber's events what its page gave.
   */
  onPageRead?: (conversationId: string, page: HistoryPage, reader: string | undefined) => void;
  /**
   * A subscriber's page (`reader` given to history()) is about to be read. Every `onPageReading` is followed by
   * one `onPageRead` or, when the read failed, one `onPageNotRead`.
   */
  onPageReading?: (conversationId: string) => void;
  onPageNotRead?: (conversationId: string) => void;
  /**
   * Told of every send or change refused before it reached the conversation's actor (RATE_LIMITED,
   * NOT_FOUND, OVERLOADED while draining, DB_UNAVAILABLE from the membership check...), with the error its
   * caller gets. A mailbox's own refusal (OVERLOADED when full) is the actor's to report.
   */
  onRejected?: (err: unknown) => void;
  /**
   * A read marker moved, but the removals could not be checked before telling the room (the database failed): the
   * room was told as it stands. For the log.
   */
  onNotChecked?: (err: unknown, conversationId: string) => void;
  /** A held `conversation:read` could not be told (the read of its marker failed): it went out to nobody. */
  onReadNotTold?: (err: unknown, conversationId: string) => void;
  /** The most a page of messages carries as JSON (lib/messaging/reads.ts). @default PAGE_MAX_BYTES */
  pageMaxBytes?: number;
  /**
   * At most one `conversation:read` per user and conversation goes out from this node in this time; the moves in
   * between go out as one, at its end, with the marker as then stored. @default 500
   */
  readIntervalMs?: number;
  /** At most one `typing` per user and conversation in this time. @default 2000 */
  typingIntervalMs?: number;
  now?: () => number;
}

/** Above this many remembered typists, entries older than the interval are swept. */
const TYPING_SWEEP_AT = 10_000;
/**
 * Typing events of one user that go out, a second, over all conversations (bursts of {@link TYPING_BURST}):
 * someone types in one conversation at a time, and each costs a query and a write to every subscriber of the
 * conversation (a member of many big groups could otherwise make thousands of writes a second). Past it, typing
 * is acked and dropped, like a repeat within a conversation's interval.
 */
/**
 * Whether the session a socket event came in on is live, for the events that store or tell something outside the
 * write functions (which check it under the conversation's lock): true without a session. Its bindings are
 * {@link sessionLiveBindings}.
 */
const SESSION_LIVE_SQL =
  '(?::uuid IS NULL OR EXISTS (SELECT 1 FROM sessions WHERE id = ?::uuid AND user_id = ?))';
const sessionLiveBindings = (sessionId: string | null | undefined, userId: string) =>
  [sessionId ?? null, sessionId ?? null, userId] as const;

const TYPING_PER_SECOND = 2;
const TYPING_BURST = 5;

export function createMessageService(deps: MessageServiceDeps): MessageService {
  const { knex, notify, membership, registry } = deps;
  const now = deps.now ?? (() => performance.now());
  const typingIntervalMs = deps.typingIntervalMs ?? 2000;
  const pageMaxBytes = deps.pageMaxBytes ?? PAGE_MAX_BYTES;
  // One limiter for both interfaces, so REST and Socket.IO sends of a user share one budget.
  const sendLimiter = new RateLimiter({
    ratePerSecond: deps.messagesPerSecond,
    burst: deps.messagesPerSecond * 2,
    now,
  });
  const reads = createReadBudget({ perSecond: deps.readsPerSecond, now });
  /**
   * A read checks membership in its own statement; one refused there though the cache said yes came in the moment
   * between a removal on another node and the notice of it here: the cache forgets the conversation at once.
   */
  const forgetIfRemoved = async <T>(conversationId: string, read: () => Promise<T>): Promise<T> => {
    try {
      return await read();
    } catch (err) {
      if (err instanceof AppError && err.code === 'NOT_FOUND') membership.invalidate(conversationId);
      throw err;
    }
  };
  /**
   * Per user and conversation, when its last `conversation:read` went out from this node, the highest seq it told,
   * and whether an event is held back (its timer pending, or the read of its marker under way). Each marker that
   * moves is stored; what goes to every subscriber of the conversation is at most one event an interval: a client
   * moving its marker one seq at a time, as fast as it can, costs the group two events a second. The held event
   * carries the marker as stored when it goes out, not the seq held (so it is never below what another node told
   * before, or what the user's own send implied, its `message:new`), and nothing below what this node told goes
   * out. The interval starts again when the held event has gone, and is timed by the monotonic clock (a wall clock
   * set back would hold the event as long).
   */
  const readIntervalMs = deps.readIntervalMs ?? 500;
  interface ReadTold {
    at: number;
    told: number;
    /**
     * The membership `told` is of (its participant row's joined_at): a user removed and added again starts over at
     * 0, and her moves below her marker of before are told. Compared at each move and each held read, so a removal
     * this node never heard of (its LISTEN connection down) counts as well.
     */
    joined: string;
    busy: boolean;
    held: boolean;
    timer?: ReturnType<typeof setTimeout>;
  }
  const readsTold = new Map<string, ReadTold>();
  let stopped = false;
  function tellRead(event: { conversationId: string; userId: string; seq: number; joined: string }): void {
    const key = `${event.userId}:${event.conversationId}`;
    const t = performance.now();
    let entry = readsTold.get(key);
    if (entry === undefined) {
      if (readsTold.size >= TYPING_SWEEP_AT) {
        for (const [k, v] of readsTold) if (!v.busy && t - v.at >= readIntervalMs) readsTold.delete(k);
      }
      entry = { at: t - readIntervalMs, told: 0, joined: event.joined, busy: false, held: false };
      readsTold.set(key, entry);
    }
    if (entry.joined !== event.joined) {
      entry.joined = event.joined;
      entry.told = 0;
    }
    if (!entry.busy && t - entry.at >= readIntervalMs) {
      entry.at = t;
      if (event.seq > entry.told) {
        entry.told = event.seq;
        notify.readMoved({ conversationId: event.conversationId, userId: event.userId, seq: event.seq });
      }
      return;
    }
    entry.held = true;
    if (!entry.busy) holdRead(entry, event);
  }
  /** Sends the held event at the end of the interval: the marker as then stored, if above what was told. */
  function holdRead(entry: ReadTold, event: { conversationId: string; userId: string }): void {
    entry.busy = true;
    entry.timer = setTimeout(
      () => {
        entry.timer = undefined;
        entry.held = false;
        if (stopped) return;
        knex
          .raw<{ rows: Array<{ last_read_seq: number; joined: string }> }>(
            `SELECT last_read_seq, joined_at::text AS joined FROM conversation_participants
             WHERE conversation_id = ? AND user_id = ?`,
            [event.conversationId, event.userId],
          )
          .then((result) => {
            const row = result.rows[0];
            // Gone: the user left the conversation meanwhile, and its room hears of them no more.
            if (stopped || row === undefined) return;
            if (row.joined !== entry.joined) {
              entry.joined = row.joined;
              entry.told = 0;
            }
            const stored = Number(row.last_read_seq);
            if (stored <= entry.told) return;
            entry.told = stored;
            notify.readMoved({ conversationId: event.conversationId, userId: event.userId, seq: entry.told });
          })
          .catch((err: unknown) => {
            if (!stopped) deps.onReadNotTold?.(err, event.conversationId);
          })
          .finally(() => {
            entry.at = performance.now();
            entry.busy = false;
            // Moves made while the marker was read are held for the next interval.
            if (entry.held && !stopped) holdRead(entry, event);
          });
      },
      Math.max(0, entry.at + readIntervalMs - performance.now()),
    );
    // In Node.js a held event alone does not keep the process running.
    (entry.timer as { unref?: () => void }).unref?.();
  }
  const lastTyping = new Map<string, number>();
  const typingBudget = new RateLimiter({ ratePerSecond: TYPING_PER_SECOND, burst: TYPING_BURST, now });
  /**
   * Counts the changes of who may act heard on the control bus (forgetTypings): a typing whose check ran while one
   * of its conversation came (a block committed after the check read) checks again before it goes out. Changes of
   * other conversations do not count against its looks.
   */
  let typingChanges = 0;
  /** Per conversation, the count at its latest change heard; at most {@link TYPING_CHANGES_KEPT} of them. */
  const typingChangedAt = new Map<string, number>();
  /** The count when `typingChangedAt` was last emptied: a conversation not in it may have changed up to then. */
  let typingChangesForgotten = 0;
  const TYPING_CHANGES_KEPT = 10_000;
  /** Whether a change of the conversation was heard since the count was `since`. */
  const typingChangedSince = (conversationId: string, since: number): boolean =>
    (typingChangedAt.get(conversationId) ?? typingChangesForgotten) > since;
  /**
   * At most this many looks at the blocks for one typing while its conversation keeps changing; a typing whose last
   * look is still overtaken by a change goes nowhere (nothing is stored: it is as if throttled).
   */
  const TYPING_CHECKS = 3;

  /** Whether this typist's typing was sent less than the interval ago. */
  function typingThrottled(key: string): boolean {
    const last = lastTyping.get(key);
    return last !== undefined && now() - last < typingIntervalMs;
  }

  /** Takes this interval's slot (at once, so concurrent repeats are throttled) and returns its time. */
  function takeTypingSlot(key: string): number {
    const t = now();
    if (lastTyping.size >= TYPING_SWEEP_AT) {
      for (const [k, at] of lastTyping) if (t - at >= typingIntervalMs) lastTyping.delete(k);
    }
    lastTyping.set(key, t);
    return t;
  }

  /** Gives the slot back when the typing was not sent. */
  function releaseTypingSlot(key: string, takenAt: number): void {
    if (lastTyping.get(key) === takenAt) lastTyping.delete(key);
  }

  /**
   * Per user and conversation, the entry of the user's latest write into the actor's mailbox, settled once it is
   * queued (or refused): the next write of that user there waits for it, not for its commit.
   */
  const entries = new Map<string, Promise<void>>();

  /**
   * Every write of a user, whatever its interface and kind, counts against one per-user budget, and is checked
   * for membership before any actor exists (probing random ids leaves nothing behind); the writer checks again
   * under the conversation lock. A user's writes to one conversation enter its actor in the order they were
   * made: a socket's events arrive in order, but the membership check may take a database round trip, and two
   * of those can answer in either order (an edit emitted right behind its send would otherwise find nothing).
   */
  async function submit(userId: string, conversationId: string, command: MessageCommand): Promise<Stored> {
    const taken = sendLimiter.take(userId);
    if (!taken.allowed) {
      const limited = new AppError('RATE_LIMITED', { retryAfter: taken.retryAfterSeconds });
      deps.onRejected?.(limited);
      throw limited;
    }
    const key = `${userId}:${conversationId}`;
    const before = entries.get(key);
    const queued = (async () => {
      await before;
      await membership.assert(conversationId, userId);
      const actor = await registry.get(conversationId);
      // Posted to the mailbox now; wrapped so that awaiting `queued` does not wait for the commit.
      return { stored: actor.submit(command) };
    })();
    // The next write needs this one queued or refused, nothing more; a refusal is this caller's, thrown below.
    const entered = queued.then(
      () => undefined,
      () => undefined,
    );
    entries.set(key, entered);
    void entered.then(() => {
      if (entries.get(key) === entered) entries.delete(key);
    });
    let posted: { stored: Promise<Stored> };
    try {
      posted = await queued;
    } catch (err) {
      deps.onRejected?.(err);
      throw err;
    }
    return await posted.stored;
  }

  return {
    assertParticipant: (userId, conversationId) => membership.assert(conversationId, userId),

    send(userId, input, sessionId) {
      return submit(userId, input.conversationId, {
        kind: 'send',
        sessionId,
        senderId: userId,
        clientMsgId: input.clientMsgId,
        body: input.body,
        replyToSeq: input.replyToSeq ?? null,
      });
    },

    async change(userId, conversationId, input, sessionId) {
      const { message } = await submit(userId, conversationId, { ...input, userId, sessionId });
      return { message };
    },

    history(userId, conversationId, window, reader) {
      // Within the user's read budget, checked first: probing ids costs budget too.
      return reads.run(userId, async () => {
        await membership.assert(conversationId, userId);
        if (reader !== undefined) deps.onPageReading?.(conversationId);
        let page: HistoryPage;
        try {
          page = await forgetIfRemoved(conversationId, () =>
            readHistory(knex, conversationId, userId, window, pageMaxBytes),
          );
        } catch (err) {
          if (reader !== undefined) deps.onPageNotRead?.(conversationId);
          throw err;
        }
        deps.onPageRead?.(conversationId, page, reader);
        return page;
      });
    },

    withinReadBudget(userId, read, weigh) {
      return reads.run(userId, read, weigh);
    },

    changes(userId, conversationId, since, limit) {
      return reads.run(userId, async () => {
        await membership.assert(conversationId, userId);
        return await forgetIfRemoved(conversationId, () =>
          readChanges(knex, conversationId, userId, since, limit, pageMaxBytes),
        );
      });
    },

    async markRead(userId, conversationId, seq, sessionId) {
      await membership.assert(conversationId, userId);
      // With the session's check in the same statement, as a write's is in its transaction: a session ended on
      // another node, before this one heard of it, moves no marker.
      const result = await knex.raw<{
        rows: Array<{
          live: boolean;
          member: boolean;
          moved: number | null;
          joined: string | null;
          removals: number | null;
        }>;
      }>(
        `WITH live AS (
           SELECT ${SESSION_LIVE_SQL} AS ok
         ), moved AS (
           UPDATE conversation_participants p SET last_read_seq = LEAST(?::bigint, c.last_seq)
           FROM conversations c, live
           WHERE live.ok AND c.id = p.conversation_id AND p.conversation_id = ? AND p.user_id = ?
             AND p.last_read_seq < LEAST(?::bigint, c.last_seq)
           RETURNING p.last_read_seq, p.joined_at, c.removals
         )
         SELECT (SELECT ok FROM live) AS live,
           EXISTS (SELECT FROM conversation_participants WHERE conversation_id = ? AND user_id = ?) AS member,
           m.last_read_seq AS moved, m.joined_at::text AS joined, m.removals
         FROM (SELECT 1) one LEFT JOIN moved m ON true`,
        [...sessionLiveBindings(sessionId, userId), seq, conversationId, userId, seq, conversationId, userId],
      );
      const row = result.rows[0];
      if (row?.live !== true) throw new AppError('UNAUTHORIZED');
      // Removed on another node, before this one heard of it (its cache still lists the user): a non-participant's
      // marker is refused, as anywhere else, not answered as one that did not move (READS hunt).
      if (!row.member) {
        membership.invalidate(conversationId);
        throw new AppError('NOT_FOUND');
      }
      if (row.moved === null) return;
      // A participant removed before this marker moved, on a node that has not told this one yet, hears it not.
      // The marker has moved, and a marker has no catch-up: when the check fails (the database), it is reported and
      // the room is told as it stands, which a removed user's socket may still be in.
      try {
        await deps.removals.beforeDelivering(conversationId, row.removals ?? 0);
      } catch (err) {
        deps.onNotChecked?.(err, conversationId);
      }
      tellRead({ conversationId, userId, seq: Number(row.moved), joined: row.joined ?? '' });
    },

    stop() {
      stopped = true;
      for (const entry of readsTold.values()) if (entry.timer !== undefined) clearTimeout(entry.timer);
      readsTold.clear();
    },

    forgetTypings(conversationId) {
      typingChanges += 1;
      if (typingChangedAt.size >= TYPING_CHANGES_KEPT && !typingChangedAt.has(conversationId)) {
        typingChangedAt.clear();
        typingChangesForgotten = typingChanges;
      }
      typingChangedAt.set(conversationId, typingChanges);
      const suffix = `:${conversationId}`;
      for (const key of lastTyping.keys()) if (key.endsWith(suffix)) lastTyping.delete(key);
    },

    async typing(userId, conversationId, sessionId) {
      await membership.assert(conversationId, userId);
      const key = `${userId}:${conversationId}`;
      // A repeat within the interval of a typing that was sent, or one past the user's budget over all
      // conversations, goes nowhere; it is checked all the same, so that a block or an ended session refuses it as
      // it refuses any typing. Only one that goes out takes the interval's slot and spends the budget: a refused one
      // (a block) must not silence the user's typings in other conversations, nor the first after an unblock.
      const goesOut = !typingThrottled(key) && typingBudget.peek(userId).allowed;
      const takenAt = goesOut ? takeTypingSlot(key) : undefined;
      const release = () => {
        if (takenAt !== undefined) releaseTypingSlot(key, takenAt);
      };
      let blocked: boolean;
      let live: boolean;
      let member: boolean;
      let overtaken: boolean;
      let removals: number;
      try {
        for (let look = 1; ; look += 1) {
          const since = typingChanges;
          // The session in the same statement, as a read marker's: one ended on another node goes out to nobody.
          // With the conversation's count of removals, for the check before delivering (as a read marker's).
          // And whether the typist still takes part: removed on another node before this one heard of it, the
          // cache still lists them, and their typing reached the group (READS hunt).
          const result = await knex.raw<{
            rows: Array<{ blocked: boolean; live: boolean; member: boolean; removals: number | null }>;
          }>(
            `SELECT xfchat_blocked(?, ?) AS blocked, ${SESSION_LIVE_SQL} AS live,
               EXISTS (SELECT FROM conversation_participants WHERE conversation_id = ? AND user_id = ?) AS member,
               (SELECT removals FROM conversations WHERE id = ?) AS removals`,
            [
              conversationId,
              userId,
              ...sessionLiveBindings(sessionId, userId),
              conversationId,
              userId,
              conversationId,
            ],
          );
          blocked = result.rows[0]?.blocked ?? false;
          live = result.rows[0]?.live ?? false;
          member = result.rows[0]?.member ?? false;
          removals = result.rows[0]?.removals ?? 0;
          // A block heard while the look ran may have committed after it read: look again.
          overtaken = typingChangedSince(conversationId, since);
          if (!overtaken || look === TYPING_CHECKS || !live || blocked || !member) break;
        }
      } catch (err) {
        release();
        throw err;
      }
      if (!live) {
        release();
        throw new AppError('UNAUTHORIZED');
      }
      if (!member) {
        release();
        membership.invalidate(conversationId);
        throw new AppError('NOT_FOUND');
      }
      if (blocked) {
        release();
        throw new AppError('BLOCKED');
      }
      if (!goesOut) return;
      if (overtaken) {
        release();
        return;
      }
      // Typings checked at once may together pass the budget that each saw: the ones past it go nowhere.
      if (!typingBudget.take(userId).allowed) {
        release();
        return;
      }
      try {
        await deps.removals.beforeDelivering(conversationId, removals);
      } catch (err) {
        release();
        throw err;
      }
      notify.typing({ conversationId, userId });
    },
  };
}
