import type { Knex } from 'knex';
import { setBounded } from '../boundedMap.js';
import { AppError } from '../errors.js';
import { RateLimiter } from '../rateLimiter.js';

/**
 * Who takes part in which conversation, as this node has seen it: a cache of confirmed (conversation, user)
 * pairs in front of a one-row lookup. Only confirmations are cached, so a non-participant costs one primary-key
 * probe whether the conversation exists or not (timing reveals nothing), and a big group is never loaded whole.
 * Lookups that find nothing are what a client probing random ids causes (every event of every socket of a user
 * could be one): each takes a token of the user's own bucket (`missesPerSecond`, bursts of twice that; 0 = off),
 * and while it is empty the answer is RATE_LIMITED without a lookup, whatever the conversation. The token is taken
 * before the lookup and given back when it finds the user, so lookups sent at once never outnumber the tokens; one
 * that finds the bucket empty while lookups of the same user run waits for them (a member's give theirs back)
 * before it is refused.
 *
 * Entries are dropped by `invalidate()` (membership.changed on the control bus, from any node) and all of them
 * by `invalidateAll()` (after the bus reconnects, when events may have been missed). The writer checks
 * membership again under the conversation lock, so a stale entry can delay a refusal, never let a write through.
 */
export interface Membership {
  /** NOT_FOUND unless `userId` takes part in the conversation. */
  assert(conversationId: string, userId: string): Promise<void>;
  invalidate(conversationId: string): void;
  invalidateAll(): void;
  /** Conversations with cached entries (for tests and gauges). */
  readonly size: number;
}

interface Entry {
  members: Set<string>;
  /** Bumped by every invalidation, so a lookup that started before it is not cached after it. */
  generation: number;
}

/**
 * Past this many cached conversations the one cached first is dropped for each new one: a bound, not a policy.
 * (Starting over at the bound sent a lookup for every conversation in use at once.)
 */
const MAX_CACHED_CONVERSATIONS = 100_000;

export function createMembership(
  knex: Knex,
  options: { missesPerSecond?: number; now?: () => number; maxConversations?: number } = {},
): Membership {
  const maxConversations = options.maxConversations ?? MAX_CACHED_CONVERSATIONS;
  const cache = new Map<string, Entry>();
  let generation = 0;
  const misses = new RateLimiter({
    ratePerSecond: options.missesPerSecond ?? 0,
    burst: (options.missesPerSecond ?? 0) * 2,
    ...(options.now ? { now: options.now } : {}),
  });

  /** Per user, the lookups running with a token of theirs: each settles after its token's fate is decided. */
  const running = new Map<string, Set<Promise<void>>>();

  /**
   * Whether `userId` takes part: a lookup paid with a token of theirs, given back when it finds them. While their
   * bucket is empty, waits for their running lookups (their tokens may come back); with none running, RATE_LIMITED.
   */
  async function lookUpCounted(conversationId: string, userId: string): Promise<boolean> {
    for (;;) {
      const budget = misses.take(userId);
      if (budget.allowed) break;
      const theirs = running.get(userId);
      if (theirs === undefined) throw new AppError('RATE_LIMITED', { retryAfter: budget.retryAfterSeconds });
      await Promise.all(theirs);
    }
    // Counted as running at once (no await since the token was taken): a lookup waiting above sees it.
    let settle!: () => void;
    const settled = new Promise<void>((resolve) => (settle = resolve));
    const theirs = running.get(userId) ?? new Set<Promise<void>>();
    running.set(userId, theirs.add(settled));
    let missed = false;
    try {
      const found = await lookUp(conversationId, userId);
      missed = !found;
      return found;
    } finally {
      // Only a lookup that found nothing is paid for (one that failed found nothing either way).
      if (!missed) misses.giveBack(userId);
      theirs.delete(settled);
      if (theirs.size === 0) running.delete(userId);
      settle();
    }
  }

  async function lookUp(conversationId: string, userId: string): Promise<boolean> {
    const result = await knex.raw<{ rows: unknown[] }>(
      'SELECT 1 FROM conversation_participants WHERE conversation_id = ? AND user_id = ?',
      [conversationId, userId],
    );
    return result.rows.length > 0;
  }

  return {
    async assert(conversationId, userId) {
      const entry = cache.get(conversationId);
      if (entry?.members.has(userId)) return;
      const seenAt = entry?.generation ?? generation;
      if (!(await lookUpCounted(conversationId, userId))) throw new AppError('NOT_FOUND');
      const current = cache.get(conversationId);
      if (current) {
        if (current.generation === seenAt) current.members.add(userId);
        return;
      }
      if (seenAt !== generation) return;
      setBounded(cache, conversationId, { members: new Set([userId]), generation }, maxConversations);
    },
    invalidate(conversationId) {
      generation += 1;
      cache.delete(conversationId);
    },
    invalidateAll() {
      generation += 1;
      cache.clear();
    },
    get size() {
      return cache.size;
    },
  };
}
