import { toXFChatError, type XFChatError } from './errors.js';
import { pause, retryAfterMs } from './retry.js';

/** How many catch-up reads of one client may be on their way at once. */
export const CATCH_UP_IN_FLIGHT = 8;

/** The longest a refusal holds back the reads of the other subscriptions (a proxy may ask for an hour). */
const MAX_SHARED_HOLD_MS = 30_000;

/**
 * The pace of one client's catch-up reads (the subscribes, history pages and changes pages of its subscriptions),
 * shared by all of them: at most `inFlight` on their way at once, and none sent while the server's last `Retry-After`
 * of a `RATE_LIMITED` or `OVERLOADED` runs. Each subscription alone waited what the server asked, but hundreds
 * catching up at once (an app that follows every conversation, back from a night away) still went out together,
 * and again together after each wait: the read budget let a few dozen through, and the others were refused, about
 * six times each at 300 (SYNC hunt). Together they take turns, and a refusal holds back every one of them.
 */
export class CatchUpPace {
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  /**
   * No read goes out before this time, on the monotonic clock (performance.now()): a wall-clock time would stretch
   * the hold by however far the clock is set back meanwhile (NTP stepping a laptop's clock after a resume), an hour
   * for an hour.
   */
  private heldUntil = 0;

  constructor(private readonly inFlight = CATCH_UP_IN_FLIGHT) {}

  /**
   * Runs `read` in its turn and returns what it does. When `signal` aborts first (the subscription ended), `read`
   * is not run and `aborted()` is thrown.
   */
  async run<T>(signal: AbortSignal, aborted: () => XFChatError, read: () => Promise<T>): Promise<T> {
    if (signal.aborted) throw aborted();
    // Left the queue (the subscription ended while it waited): it held no place, and frees none.
    if (!(await this.turn(signal))) throw aborted();
    try {
      for (let wait = this.holdLeft(); wait > 0; wait = this.holdLeft()) {
        await pause(wait, signal);
        if (signal.aborted) break;
      }
      if (signal.aborted) throw aborted();
      return await read();
    } catch (err) {
      const error = toXFChatError(err);
      if (error.code === 'RATE_LIMITED' || error.code === 'OVERLOADED') this.hold(retryAfterMs(error));
      throw err;
    } finally {
      this.running -= 1;
      this.waiting.shift()?.();
    }
  }

  /** How long the hold still runs, in ms (0 or less once over). */
  private holdLeft(): number {
    return this.heldUntil - performance.now();
  }

  /**
   * Holds every read back for `ms` from now, at most {@link MAX_SHARED_HOLD_MS} (a longer hold already running
   * stays): the refused read itself waits all of a longer `Retry-After`, the others try again sooner.
   */
  private hold(ms: number): void {
    this.heldUntil = Math.max(this.heldUntil, performance.now() + Math.min(ms, MAX_SHARED_HOLD_MS));
  }

  /**
   * Resolves true once a read may go out (counted in `running`), or false when `signal` aborts first: it leaves the
   * queue then, holding no place.
   */
  private turn(signal: AbortSignal): Promise<boolean> {
    if (this.running < this.inFlight && this.waiting.length === 0) {
      this.running += 1;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const go = () => {
        signal.removeEventListener('abort', leave);
        this.running += 1;
        resolve(true);
      };
      const leave = () => {
        const at = this.waiting.indexOf(go);
        if (at >= 0) this.waiting.splice(at, 1);
        resolve(false);
      };
      this.waiting.push(go);
      signal.addEventListener('abort', leave, { once: true });
    });
  }
}
