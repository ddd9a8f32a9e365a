import { AppError } from './errors.js';
import { RateLimiter } from './rateLimiter.js';

/**
 * The per-user budget of history and catch-up reads (RATE_LIMIT_READS_PER_SEC), shared by REST and Socket.IO:
 * both call the message service, which runs each read through here. A read is a page of up to 200 messages,
 * megabytes at worst, and a pool connection while it runs; so besides the rate, a user has at most
 * {@link READS_IN_FLIGHT_PER_USER} reads running on a node at once, and one user cannot take the pool from the
 * others. Per node, like every rate limit.
 */
export interface ReadBudget {
  /**
   * Runs one read of `userId` within the budget; RATE_LIMITED (with a retry-after) past the rate or while the
   * user already has the maximum of reads running. An allowed read costs one token, plus `weigh(result)` taken
   * after it (the bucket may go below zero: the user's next reads wait until it has refilled).
   */
  run<T>(userId: string, read: () => Promise<T>, weigh?: (result: T) => number): Promise<T>;
}

/**
 * The extra tokens an answer of `items` costs: one per {@link ITEMS_PER_TOKEN} items beyond the first page's
 * worth. A list a route answers whole (friends, requests, blocks) costs what as many pages of it would.
 */
export const ITEMS_PER_TOKEN = 200;
export const extraTokensFor = (items: number): number => Math.floor(items / ITEMS_PER_TOKEN);
/** {@link extraTokensFor} of a list answered whole: the `weigh` of its read. */
export const weighByLength = (list: readonly unknown[]): number => extraTokensFor(list.length);

/** Reads of one user running at once on a node. */
export const READS_IN_FLIGHT_PER_USER = 4;

export function createReadBudget(options: {
  /** Reads per user per second, bursts of twice that; 0 turns the budget off (rate and in-flight bound). */
  perSecond: number;
  maxInFlight?: number;
  now?: () => number;
}): ReadBudget {
  const maxInFlight = options.maxInFlight ?? READS_IN_FLIGHT_PER_USER;
  const limiter = new RateLimiter({
    ratePerSecond: options.perSecond,
    burst: options.perSecond * 2,
    ...(options.now ? { now: options.now } : {}),
  });
  const inFlight = new Map<string, number>();

  return {
    async run(userId, read, weigh) {
      if (limiter.disabled) return await read();
      const running = inFlight.get(userId) ?? 0;
      if (running >= maxInFlight) {
        throw new AppError('RATE_LIMITED', {
          message: 'Too many reads at once; retry later.',
          retryAfter: 1,
        });
      }
      const taken = limiter.take(userId);
      if (!taken.allowed) throw new AppError('RATE_LIMITED', { retryAfter: taken.retryAfterSeconds });
      inFlight.set(userId, running + 1);
      try {
        const result = await read();
        // Paid after the read, by the user's next reads: a large answer waits them out in proportion.
        if (weigh) limiter.charge(userId, weigh(result));
        return result;
      } finally {
        const left = (inFlight.get(userId) ?? 1) - 1;
        if (left <= 0) inFlight.delete(userId);
        else inFlight.set(userId, left);
      }
    },
  };
}
