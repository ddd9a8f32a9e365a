import type { Knex } from 'knex';
import { AppError } from './errors.js';

/**
 * The table of the counters every node shares: `key`, `points`, `expire` (milliseconds since the epoch), the layout
 * of rate-limiter-flexible's RateLimiterPostgres, which the first releases used (made by a migration).
 */
export const CLUSTER_LIMITS_TABLE = 'auth_rate_limits';

/** A counter's state after a change or a read. */
export class CounterState {
  constructor(
    /** Points counted in the current window. */
    readonly consumedPoints: number,
    /** Points left before the limit. */
    readonly remainingPoints: number,
    /** Milliseconds until the window ends (-1: it never does). */
    readonly msBeforeNext: number,
    /**
     * Which window of the key this is: its end by PostgreSQL's clock (null: none, or one that never ends). A new
     * window of the same key ends later, so a point taken in one window can be given back to that window only.
     */
    readonly window: string | null = null,
  ) {}
}

/** A counter's window holds more than its limit: what {@link ClusterCounter.consume} throws. */
export class LimitReached extends Error {
  constructor(readonly state: CounterState) {
    super('rate limit reached');
    this.name = 'LimitReached';
  }
}

/** PostgreSQL's time in milliseconds, read in the statement itself: nodes' own clocks never count. */
const NOW_MS = '(extract(epoch FROM clock_timestamp()) * 1000)::bigint';

interface CounterRow {
  points: number;
  expire: string | null;
  now_ms: string;
}

/**
 * A counter shared by every node, in PostgreSQL: for limits where a per-node count would multiply a client's budget
 * by the number of nodes. Each `keyPrefix` is a counter of its own; a key holds `points` per window of
 * `durationSeconds`, which starts with the window's first point.
 *
 * Time is PostgreSQL's, taken in each statement: a window's end is written by one node and compared by another, and
 * a node whose clock is off would otherwise end other nodes' windows early (a lockout lifted) or late. Keys and
 * rows are those rate-limiter-flexible's RateLimiterPostgres wrote (`prefix:key`), so nodes of a release that used
 * it share their counters with these.
 */
export class ClusterCounter {
  readonly points: number;
  private readonly durationMs: number;

  constructor(
    private readonly knex: Knex,
    private readonly options: { keyPrefix: string; points: number; durationSeconds: number },
  ) {
    this.points = options.points;
    this.durationMs = options.durationSeconds * 1000;
  }

  /** Counts `points` (1 by default); throws LimitReached once the window holds more than the limit. */
  async consume(key: string, points = 1): Promise<CounterState> {
    const state = await this.change(key, points, this.durationMs, false);
    if (state.consumedPoints > this.points) throw new LimitReached(state);
    return state;
  }

  /** Counts `points` without a refusal. */
  penalty(key: string, points = 1): Promise<CounterState> {
    return this.change(key, points, this.durationMs, false);
  }

  /**
   * Gives `points` back, never below zero. A key without a live window (it ended, or was deleted in between) is
   * left alone: a window started by a reward would open below zero and allow more than the limit. With `window`
   * (the {@link CounterState.window} of the change that took the points), only to that window: points taken in a
   * window that has ended since are not given to the next one, which would then allow more than the limit.
   */
  async reward(key: string, points = 1, window?: string | null): Promise<CounterState> {
    const sameWindow = window === undefined ? '' : ' AND r.expire IS NOT DISTINCT FROM ?::bigint';
    const result = await this.knex.raw<{ rows: CounterRow[] }>(
      `WITH t AS (SELECT ${NOW_MS} AS now_ms)
       UPDATE ${CLUSTER_LIMITS_TABLE} AS r SET points = GREATEST(r.points - ?::integer, 0)
         FROM t
        WHERE r.key = ? AND (r.expire IS NULL OR r.expire > t.now_ms)${sameWindow}
       RETURNING r.points, r.expire, t.now_ms`,
      window === undefined ? [points, this.rowKey(key)] : [points, this.rowKey(key), window],
    );
    const row = result.rows[0];
    return row === undefined ? new CounterState(0, this.points, 0) : this.stateOf(row);
  }

  /** Past the limit for `seconds`, whatever the window held. */
  block(key: string, seconds: number): Promise<CounterState> {
    return this.change(key, this.points + 1, seconds * 1000, true);
  }

  /** Sets the key to `points` for a window of `seconds`. */
  set(key: string, points: number, seconds: number): Promise<CounterState> {
    return this.change(key, points, seconds * 1000, true);
  }

  /**
   * Sets the key to `points` for a window of `seconds` only while the account `userId` is live: in the same
   * statement, its row share-locked, so a deletion of that account (which locks the row, forgets its name's keys
   * and frees the name, in one transaction) is waited for, and after it nothing is set. By id, not by name: a freed
   * name taken again by someone else is another account. True if it was set.
   */
  async setWhileUserLive(key: string, points: number, seconds: number, userId: string): Promise<boolean> {
    const result = await this.knex.raw<{ rows: unknown[] }>(
      `WITH live AS (
         SELECT 1 FROM users WHERE id = ? AND deleted_at IS NULL FOR SHARE
       )
       INSERT INTO ${CLUSTER_LIMITS_TABLE} AS r (key, points, expire)
       SELECT ?, ?, ${NOW_MS} + ?::bigint WHERE EXISTS (SELECT 1 FROM live)
       ON CONFLICT (key) DO UPDATE SET points = excluded.points, expire = excluded.expire
       RETURNING 1`,
      [userId, this.rowKey(key), points, seconds * 1000],
    );
    return result.rows.length > 0;
  }

  /** The key's current window, or null when it has none. */
  async get(key: string): Promise<CounterState | null> {
    const result = await this.knex.raw<{ rows: CounterRow[] }>(
      `SELECT points, expire, ${NOW_MS} AS now_ms FROM ${CLUSTER_LIMITS_TABLE}
        WHERE key = ? AND (expire IS NULL OR expire > ${NOW_MS})`,
      [this.rowKey(key)],
    );
    const row = result.rows[0];
    return row === undefined ? null : this.stateOf(row);
  }

  /** Forgets the key; true if it had a row. */
  async delete(key: string): Promise<boolean> {
    return (await this.knex(CLUSTER_LIMITS_TABLE).where('key', this.rowKey(key)).delete()) > 0;
  }

  private rowKey(key: string): string {
    return `${this.options.keyPrefix}:${key}`;
  }

  /**
   * Adds `points` to the key's window, or starts a new one of `durationMs` when it has none or it ended (`force`:
   * always). One statement, so nodes counting the same key at once never lose a point.
   */
  private async change(
    key: string,
    points: number,
    durationMs: number,
    force: boolean,
  ): Promise<CounterState> {
    const result = await this.knex.raw<{ rows: CounterRow[] }>(
      `WITH t AS (SELECT ${NOW_MS} AS now_ms)
       INSERT INTO ${CLUSTER_LIMITS_TABLE} AS r (key, points, expire)
       SELECT ?, ?, CASE WHEN ?::bigint > 0 THEN t.now_ms + ?::bigint END FROM t
       ON CONFLICT (key) DO UPDATE SET
         points = CASE WHEN ?::boolean OR r.expire <= (SELECT now_ms FROM t) THEN excluded.points
                       ELSE r.points + excluded.points END,
         expire = CASE WHEN ?::boolean OR r.expire <= (SELECT now_ms FROM t) THEN excluded.expire
                       ELSE r.expire END
       RETURNING r.points, r.expire, (SELECT now_ms FROM t) AS now_ms`,
      [this.rowKey(key), points, durationMs, durationMs, force, force],
    );
    const row = result.rows[0];
    if (row === undefined) throw new Error('the counter upsert returned no row');
    return this.stateOf(row);
  }

  private stateOf(row: CounterRow): CounterState {
    // The window's points: only this change's when the window started with it (as rate-limiter-flexible counted).
    const consumed = row.points;
    const msBeforeNext = row.expire === null ? -1 : Math.max(Number(row.expire) - Number(row.now_ms), 0);
    return new CounterState(consumed, Math.max(this.points - consumed, 0), msBeforeNext, row.expire);
  }
}

/** A counter shared by every node (see {@link ClusterCounter}). */
export function clusterLimiter(
  knex: Knex,
  options: { keyPrefix: string; points: number; durationSeconds: number },
): ClusterCounter {
  return new ClusterCounter(knex, options);
}

/**
 * A token bucket shared by every node, in PostgreSQL: `points` at once, then one more every `durationSeconds /
 * points` (30 a minute: 30 at once, then one every 2 s). Unlike a {@link ClusterCounter}'s windows, which start
 * afresh, a client cannot take a window's points at its end and the next window's at once (twice the limit within
 * seconds).
 *
 * The row keeps the bucket's "theoretical arrival time" (GCRA) in `expire`: when it would be full again, by
 * PostgreSQL's clock; a row past it is a full bucket, and the sweep deletes it. One statement per point, so nodes
 * taking points of the same key at once never lose one.
 */
export class ClusterBucket {
  private readonly intervalMs: number;
  private readonly burstMs: number;

  constructor(
    private readonly knex: Knex,
    private readonly options: { keyPrefix: string; points: number; durationSeconds: number },
  ) {
    // Whole milliseconds (the column's unit), rounded up: never more than `points` per duration.
    this.intervalMs = Math.ceil((options.durationSeconds * 1000) / options.points);
    // Room for exactly `points` at once.
    this.burstMs = this.intervalMs * options.points;
  }

  /** Takes one point; RATE_LIMITED (with the seconds until the next one) when the bucket is empty. */
  async take(key: string): Promise<void> {
    const rowKey = `${this.options.keyPrefix}:${key}`;
    const taken = await this.knex.raw<{ rows: Array<{ expire: string }> }>(
      `WITH t AS (SELECT ${NOW_MS} AS now_ms)
       INSERT INTO ${CLUSTER_LIMITS_TABLE} AS r (key, points, expire)
       SELECT ?, 0, t.now_ms + ?::bigint FROM t
       ON CONFLICT (key) DO UPDATE SET expire = GREATEST(r.expire, (SELECT now_ms FROM t)) + ?::bigint
        WHERE GREATEST(r.expire, (SELECT now_ms FROM t)) + ?::bigint - (SELECT now_ms FROM t) <= ?::bigint
       RETURNING r.expire`,
      [rowKey, this.intervalMs, this.intervalMs, this.intervalMs, this.burstMs],
    );
    if (taken.rows.length > 0) return;
    // Empty: the next point comes once the arrival time, plus one more, is within the burst again.
    const { rows } = await this.knex.raw<{ rows: Array<{ wait_ms: string | null }> }>(
      `SELECT expire + ?::bigint - ?::bigint - ${NOW_MS} AS wait_ms FROM ${CLUSTER_LIMITS_TABLE} WHERE key = ?`,
      [this.intervalMs, this.burstMs, rowKey],
    );
    const waitMs = Number(rows[0]?.wait_ms ?? 0);
    throw new AppError('RATE_LIMITED', { retryAfter: Math.max(1, Math.ceil(waitMs / 1000)) });
  }
}

/** Deletes the rows whose window ended, by PostgreSQL's clock. */
export async function sweepClusterLimits(knex: Knex): Promise<void> {
  await knex.raw(`DELETE FROM ${CLUSTER_LIMITS_TABLE} WHERE expire < ${NOW_MS}`);
}

/** Retry-After in whole seconds, at least 1. */
export function retryAfterSeconds(res: CounterState): number {
  return Math.max(1, Math.ceil(res.msBeforeNext / 1000));
}

/**
 * Takes one point; RATE_LIMITED past the limit, the store's own error (DB_UNAVAILABLE, ...) otherwise. Answers the
 * window the point went to (for {@link ClusterCounter.reward}).
 */
export async function takePoint(limiter: ClusterCounter, key: string): Promise<string | null> {
  try {
    return (await limiter.consume(key)).window;
  } catch (err) {
    if (err instanceof LimitReached) {
      throw new AppError('RATE_LIMITED', { retryAfter: retryAfterSeconds(err.state) });
    }
    throw err;
  }
}
