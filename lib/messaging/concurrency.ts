/**
 * How many group commits the writer runs at once, adapted to PostgreSQL's load (TCP Vegas' idea): the shortest
 * commit seen lately is what a commit costs with nobody waiting; a commit that takes much longer waited behind
 * others. While commits stay near that floor and every slot was busy, one more commit at once is worth it; once
 * they take well over it, PostgreSQL is queueing, so fewer commits run at once and each carries more messages
 * (a group grows with whatever became ready while the others ran).
 */
export interface AdaptiveLimitOptions {
  /** The most commits at once (DB_WRITE_CONCURRENCY, below the pool size). */
  max: number;
  /** @default 1 */
  min?: number;
  /** Commits estimated to be waiting below which the limit grows. @default 1 */
  alpha?: number;
  /** Commits estimated to be waiting above which the limit shrinks. @default 3 */
  beta?: number;
  /** The floor is forgotten after this many samples, so a lasting change of the machine is learned. @default 500 */
  floorWindow?: number;
}

export class AdaptiveLimit {
  private current: number;
  private floor = Number.POSITIVE_INFINITY;
  private nextFloor = Number.POSITIVE_INFINITY;
  private samples = 0;
  private readonly min: number;
  private readonly max: number;
  private readonly alpha: number;
  private readonly beta: number;
  private readonly floorWindow: number;

  constructor(options: AdaptiveLimitOptions) {
    this.max = Math.max(1, options.max);
    this.min = Math.min(this.max, Math.max(1, options.min ?? 1));
    this.alpha = options.alpha ?? 1;
    this.beta = options.beta ?? 3;
    this.floorWindow = options.floorWindow ?? 500;
    this.current = this.min;
  }

  /** Commits allowed at once now. */
  get limit(): number {
    return this.current;
  }

  /**
   * Records one finished commit: how long it took, and how many were running when it started (itself
   * included). Failed commits say nothing about load and are not recorded.
   */
  record(durationMs: number, runningAtStart: number): void {
    const duration = Math.max(durationMs, 0.001);
    this.samples += 1;
    this.nextFloor = Math.min(this.nextFloor, duration);
    if (this.samples % this.floorWindow === 0) {
      this.floor = this.nextFloor;
      this.nextFloor = Number.POSITIVE_INFINITY;
    } else {
      this.floor = Math.min(this.floor, duration);
    }
    const waiting = this.current * (1 - this.floor / duration);
    if (waiting < this.alpha && runningAtStart >= this.current) {
      this.current = Math.min(this.max, this.current + 1);
    } else if (waiting > this.beta) {
      this.current = Math.max(this.min, this.current - 1);
    }
  }
}
