/**
 * Token buckets keyed by a string (an IP, a username, a user id), in memory on each node. Limits are per node:
 * behind a load balancer of N nodes a client can reach N times the rate, which is the usual trade for not
 * putting a shared counter on the message path.
 */
export interface RateLimiterOptions {
  /** Tokens added per second. */
  ratePerSecond: number;
  /** Bucket size: the burst allowed after a quiet period. */
  burst: number;
  /**
   * Buckets untouched for this long are dropped, and so, sooner, are buckets that have refilled (a full bucket is
   * what a key without one gets). @default 10 minutes
   */
  idleMs?: number;
  /**
   * Milliseconds by a clock that never steps (performance.now() by default): a wall clock set back an hour took an
   * hour's refill from every bucket, and refused everyone for as long.
   */
  now?: () => number;
}

export interface TakeResult {
  allowed: boolean;
  /** When not allowed: seconds until one token is available. */
  retryAfterSeconds: number;
}

/** The shortest interval between two walks of the buckets (each walk is O(keys), inside a caller's request). */
const MIN_SWEEP_EVERY_MS = 5_000;

interface Bucket {
  tokens: number;
  updatedAt: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly now: () => number;
  private readonly idleMs: number;
  /** How often the buckets are walked for ones to drop: the time an empty bucket takes to refill, within bounds. */
  private readonly sweepEveryMs: number;
  private lastSweep: number;

  constructor(private readonly options: RateLimiterOptions) {
    this.now = options.now ?? (() => performance.now());
    this.idleMs = options.idleMs ?? 10 * 60_000;
    const refillMs = options.ratePerSecond > 0 ? (options.burst / options.ratePerSecond) * 1000 : this.idleMs;
    this.sweepEveryMs = Math.min(this.idleMs, Math.max(MIN_SWEEP_EVERY_MS, refillMs));
    this.lastSweep = this.now();
  }

  /** Keys with a bucket of their own (the others are full). */
  get size(): number {
    return this.buckets.size;
  }

  /** Drops a key's bucket (its owner is gone: a closed connection). */
  forget(key: string): void {
    this.buckets.delete(key);
  }

  /** A limiter that always allows: the configured rate 0 means "off". */
  get disabled(): boolean {
    return this.options.ratePerSecond <= 0;
  }

  take(key: string, cost = 1): TakeResult {
    return this.check(key, cost, true);
  }

  /**
   * Takes `cost` tokens whatever is left, so the bucket may go below zero: a cost known only after the work (the
   * size of an answer) is paid by the key's next requests, which wait until the bucket has refilled.
   */
  charge(key: string, cost: number): void {
    if (this.disabled || cost <= 0) return;
    this.check(key, 0, true);
    const bucket = this.buckets.get(key);
    if (bucket) bucket.tokens -= cost;
  }

  /**
   * Gives back `cost` tokens taken for work that turned out not to count (never above the burst): a budget of
   * refusals takes its token before the work, so that requests made at once cannot all pass one look at it.
   */
  giveBack(key: string, cost = 1): void {
    if (this.disabled) return;
    const bucket = this.buckets.get(key);
    if (bucket) bucket.tokens = Math.min(this.options.burst, bucket.tokens + cost);
  }

  /** Whether `take(key, cost)` would be allowed now, taking nothing. */
  peek(key: string, cost = 1): TakeResult {
    return this.check(key, cost, false);
  }

  private check(key: string, cost: number, consume: boolean): TakeResult {
    if (this.disabled) return { allowed: true, retryAfterSeconds: 0 };
    const now = this.now();
    this.sweep(now);
    const { ratePerSecond, burst } = this.options;
    const bucket = this.buckets.get(key) ?? { tokens: burst, updatedAt: now };
    bucket.tokens = this.refilled(bucket, now);
    bucket.updatedAt = now;
    // Only a change is kept: a look (peek) at a key without a bucket leaves none behind, as anyone may make keys.
    if (consume) this.buckets.set(key, bucket);
    if (bucket.tokens >= cost) {
      if (consume) bucket.tokens -= cost;
      return { allowed: true, retryAfterSeconds: 0 };
    }
    return {
      allowed: false,
      retryAfterSeconds: Math.max(1, Math.ceil((cost - bucket.tokens) / ratePerSecond)),
    };
  }

  private refilled(bucket: Bucket, now: number): number {
    const { ratePerSecond, burst } = this.options;
    // A clock that went back (one given in `now`) refills nothing, and takes nothing either.
    return Math.min(burst, bucket.tokens + (Math.max(0, now - bucket.updatedAt) / 1000) * ratePerSecond);
  }

  private sweep(now: number): void {
    if (now - this.lastSweep < this.sweepEveryMs) return;
    this.lastSweep = now;
    const { burst } = this.options;
    for (const [key, bucket] of this.buckets) {
      if (now - bucket.updatedAt > this.idleMs || this.refilled(bucket, now) >= burst)
        this.buckets.delete(key);
    }
  }
}
