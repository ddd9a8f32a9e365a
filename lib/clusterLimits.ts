import type { Knex } from 'knex';
import { RateLimiterPostgres, RateLimiterRes } from 'rate-limiter-flexible';
import { AppError } from './errors.js';

/** The table of the counters every node shares (rate-limiter-flexible's layout; made by a migration). */
export const CLUSTER_LIMITS_TABLE = 'auth_rate_limits';

/**
 * A counter shared by every node, in PostgreSQL (rate-limiter-flexible): for limits where a per-node count
 * would multiply a client's budget by the number of nodes. Each `keyPrefix` is a counter of its own.
 */
export function clusterLimiter(
  knex: Knex,
  options: { keyPrefix: string; points: number; durationSeconds: number },
): RateLimiterPostgres {
  return new RateLimiterPostgres({
    storeClient: knex,
    storeType: 'knex',
    tableName: CLUSTER_LIMITS_TABLE,
    // The migration made the table: no DDL at run time. Expired rows are swept by the auth limits' timer
    // (lib/auth/authLimits.ts), which close() stops; the library's own would outlive the pool.
    tableCreated: true,
    clearExpiredByTimeout: false,
    keyPrefix: options.keyPrefix,
    points: options.points,
    duration: options.durationSeconds,
  });
}

/** Retry-After in whole seconds, at least 1. */
export function retryAfterSeconds(res: RateLimiterRes): number {
  return Math.max(1, Math.ceil(res.msBeforeNext / 1000));
}

/** Takes one point; RATE_LIMITED past the limit, the store's own error (DB_UNAVAILABLE, ...) otherwise. */
export async function takePoint(limiter: RateLimiterPostgres, key: string): Promise<void> {
  try {
    await limiter.consume(key);
  } catch (err) {
    if (err instanceof RateLimiterRes) {
      throw new AppError('RATE_LIMITED', { retryAfter: retryAfterSeconds(err) });
    }
    throw err;
  }
}
