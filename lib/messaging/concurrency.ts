/**
 * How many group commits the writer runs at once, adapted to PostgreSQL's load: the gradient of Netflix's
 * concurrency-limits (Gradient2), simplified. A commit's time is compared with the long-run average of commit
 * times: while the recent ones stay within `tolerance` of it, the limit grows towards `max` (more commits at once,
 * lower latency); when they take longer than that, PostgreSQL is queueing, and the limit shrinks in proportion, so
 * fewer commits run at once and each carries more messages (a group takes whatever became ready meanwhile). The
 * long-run average follows lasting changes, so a machine that is simply slower is not mistaken for congestion.
 *
 * Commit times grow with the number of messages in a commit too; comparing averages with averages (not with the
 * quickest commit seen) keeps a load of big commits from being read as congestion.
 */
export interface AdaptiveLimitOptions {
  /** The most commits at once (DB_WRITE_CONCURRENCY, below the pool size). */
  max: number;
  /** @default 1 */
  min?: number;
  /** How much slower than the long-run average recent commits may be before the limit shrinks. @default 1.5 */
  tolerance?: number;
  /** Samples in the long-run average (an exponential average over about that many). @default 200 */
  longWindow?: number;
  /** Samples in the recent average. @default 10 */
  shortWindow?: number;
}

export class AdaptiveLimit {
  private current: number;
  private longRtt = 0;
  private shortRtt = 0;
  private samples = 0;
  private readonly min: number;
  private readonly max: number;
  private readonly tolerance: number;
  private readonly longFactor: number;
  private readonly shortFactor: number;

  constructor(options: AdaptiveLimitOptions) {
    this.max = Math.max(1, options.max);
    this.min = Math.min(this.max, Math.max(1, options.min ?? 1));
    this.tolerance = options.tolerance ?? 1.5;
    this.longFactor = 2 / ((options.longWindow ?? 200) + 1);
    this.shortFactor = 2 / ((options.shortWindow ?? 10) + 1);
    this.current = this.max;
  }

  /** Commits allowed at once now. */
  get limit(): number {
    return Math.floor(this.current);
  }

  /** Records one finished commit's duration. Failed commits say nothing about load and are not recorded. */
  record(durationMs: number): void {
    const rtt = Math.max(durationMs, 0.001);
    this.samples += 1;
    if (this.samples === 1) {
      this.longRtt = rtt;
      this.shortRtt = rtt;
    } else {
      this.longRtt += (rtt - this.longRtt) * this.longFactor;
      this.shortRtt += (rtt - this.shortRtt) * this.shortFactor;
    }
    // After a burst the long average still remembers slow commits; let it come down faster than it went up.
    if (this.longRtt > 2 * this.shortRtt) this.longRtt *= 0.95;
    const gradient = Math.max(0.5, Math.min(1, (this.tolerance * this.longRtt) / this.shortRtt));
    // One more than the gradient allows, so the limit probes upwards while commits stay usual.
    const next = this.current * gradient + 1;
    // Smoothed, so one slow commit does not halve the limit.
    this.current = Math.min(this.max, Math.max(this.min, this.current * 0.8 + next * 0.2));
  }
}
