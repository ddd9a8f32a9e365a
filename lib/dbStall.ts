/**
 * Telling a PostgreSQL that has stopped answering (a stopped server, a network that drops packets without a reset)
 * from one that is only slow, so that a node answers `DB_UNAVAILABLE` at once instead of at each statement's query
 * timeout (`DB_STATEMENT_TIMEOUT_MS` + 1 s).
 *
 * The signal is the app pool's own traffic: statements have waited `stallMs` and nothing at all has come back from
 * PostgreSQL for as long (a slow server still answers the other statements; a long query beside an idle pool does
 * not answer, so the silence alone is not enough). Then a probe on a fresh connection (connect and `SELECT 1`) must
 * fail too before the node calls the database stalled. While it is stalled the probe runs again every check, and
 * the first answer, from the probe or from any statement, ends it.
 */

/** How often the watch looks at the statements in flight (and probes while stalled). */
export const STALL_CHECK_EVERY_MS = 1000;

export interface StallWatchOptions {
  /** DB_STALL_TIMEOUT_MS: how long statements may wait with no answer at all; 0 turns the watch off. */
  stallMs: number;
  /** Resolves true when PostgreSQL answers a fresh connection (an error PostgreSQL sends is an answer too). */
  probe: () => Promise<boolean>;
  /** The database has stopped answering: `silentMs` since the last answer, with `waiting` statements in flight. */
  onStall: (facts: { silentMs: number; waiting: number }) => void;
  /** It answers again, `stalledMs` after it was found stalled. */
  onRecover: (facts: { stalledMs: number }) => void;
  now?: () => number;
}

/**
 * What names a statement in flight from `begin` to `end`: something the caller already holds for it (Knex's query
 * uid, the named statement's config), so that watching allocates nothing per statement.
 */
export type StatementKey = string | object;

export class StallWatch {
  /** When each statement in flight began. */
  private readonly inFlight = new Map<StatementKey, number>();
  private lastAnswerAt: number;
  private stalledAt: number | undefined;
  private probing = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly now: () => number;

  constructor(private readonly options: StallWatchOptions) {
    this.now = options.now ?? (() => performance.now());
    this.lastAnswerAt = this.now();
  }

  /** True from a failed probe after the silence until PostgreSQL answers again. */
  get stalled(): boolean {
    return this.stalledAt !== undefined;
  }

  /** Checks every STALL_CHECK_EVERY_MS (the timer keeps no process alive); nothing when the watch is off. */
  start(): void {
    if (this.options.stallMs <= 0 || this.timer) return;
    this.timer = setInterval(() => void this.check(), STALL_CHECK_EVERY_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** A statement was sent; `end(key, ...)` once it settles. */
  begin(key: StatementKey): void {
    this.inFlight.set(key, this.now());
  }

  /**
   * The statement settled: `answered` when PostgreSQL sent its result or an error of its own. Once per begin.
   * Returns how long it was in flight, in ms (the slow-query log's duration), or undefined for a key not in flight.
   */
  end(key: StatementKey, answered: boolean): number | undefined {
    const startedAt = this.inFlight.get(key);
    if (startedAt === undefined) return undefined;
    this.inFlight.delete(key);
    if (answered) this.answered();
    return this.now() - startedAt;
  }

  /** PostgreSQL answered something on the pool (a result, an error of its own, a ping). */
  answered(): void {
    this.lastAnswerAt = this.now();
    this.recover();
  }

  /** One look: probes when the silence has lasted, or while stalled. Exposed for tests; never rejects. */
  async check(): Promise<void> {
    if (this.options.stallMs <= 0 || this.probing) return;
    const now = this.now();
    if (!this.stalled) {
      const oldest = this.oldestInFlight();
      const silentMs = now - this.lastAnswerAt;
      if (oldest === undefined || now - oldest < this.options.stallMs || silentMs < this.options.stallMs)
        return;
    }
    this.probing = true;
    let answers: boolean;
    try {
      answers = await this.options.probe();
    } catch {
      answers = false;
    } finally {
      this.probing = false;
    }
    if (answers) {
      this.answered();
      return;
    }
    // A statement may have been answered while the probe ran: that settles it.
    if (this.stalled || this.now() - this.lastAnswerAt < this.options.stallMs) return;
    this.stalledAt = this.now();
    this.options.onStall({ silentMs: this.stalledAt - this.lastAnswerAt, waiting: this.inFlight.size });
  }

  private recover(): void {
    if (this.stalledAt === undefined) return;
    const stalledMs = this.now() - this.stalledAt;
    this.stalledAt = undefined;
    this.options.onRecover({ stalledMs });
  }

  private oldestInFlight(): number | undefined {
    let oldest: number | undefined;
    for (const startedAt of this.inFlight.values())
      if (oldest === undefined || startedAt < oldest) oldest = startedAt;
    return oldest;
  }
}

/** What a node answers while its database is stalled, at once: `DB_UNAVAILABLE` (lib/errors.ts). */
export class DatabaseStalledError extends Error {
  override readonly name = 'DatabaseStalledError';
  constructor() {
    super('PostgreSQL is not answering');
  }
}
