import { AppError } from '../errors.js';
import { RateLimiter } from '../rateLimiter.js';

/**
 * The abuse limits of signup and login (RATE_LIMIT_AUTH_PER_MIN): per client IP for both, and per username
 * (case-insensitively) for login, so a password guesser is slowed down whichever IPs it spreads over.
 * Buckets are per node; see {@link RateLimiter}.
 */
export interface AuthLimits {
  /** Counts one signup or login attempt from `ip`; throws RATE_LIMITED (with Retry-After) past the limit. */
  takeIp(ip: string): void;
  /** Counts one login attempt for `username`; throws RATE_LIMITED past the limit. */
  takeUsername(username: string): void;
}

/** Limits of `perMinute` attempts per minute with a burst of `perMinute`; 0 turns them off. */
export function createAuthLimits(perMinute: number, now?: () => number): AuthLimits {
  const options = { ratePerSecond: perMinute / 60, burst: perMinute, ...(now ? { now } : {}) };
  const byIp = new RateLimiter(options);
  const byUsername = new RateLimiter(options);

  function take(limiter: RateLimiter, key: string): void {
    const result = limiter.take(key);
    if (!result.allowed) throw new AppError('RATE_LIMITED', { retryAfter: result.retryAfterSeconds });
  }

  return {
    takeIp: (ip) => take(byIp, ip),
    // Lower-cased: usernames match case-insensitively, so "Alice" and "alice" share one bucket.
    takeUsername: (username) => take(byUsername, username.toLowerCase()),
  };
}
