import type { Knex } from 'knex';
import type { Logger } from '../logger.js';

/**
 * PostgreSQL's clock, as this node estimates it.
 *
 * Nodes compare times that another node produced: a token's `iat` and `exp` (signed by whichever node logged the
 * user in), the expiry of the rate-limit counters every node shares, the start of a gap in cross-node notices
 * against rows stamped with the database's `now()`. Each node takes those times from this clock rather than its
 * own, so a node whose clock is off by seconds or minutes (no NTP, a VM resumed from a pause) still agrees with the
 * others and with the database. The offset is the database's time minus this node's, measured over a round trip
 * (the best of a few samples: its error is at most half the shortest round trip), at startup and then every
 * {@link CLOCK_SYNC_INTERVAL_MS}, and at once when the wall clock jumps against the monotonic one. The clock counts on
 * from each measurement by the node's monotonic clock, not its wall clock: a wall clock stepped between two
 * measurements (NTP correcting a drift, a VM's clock set after a resume) put the node's tokens and limits off by the
 * step until the next one (a step back of an hour refused every token for up to a minute). The monotonic clock
 * stands still while the machine is suspended: the jump that the wall clock then makes has the clock measured again
 * (within a second of the resume).
 */
export interface DatabaseClock {
  /** Milliseconds since the epoch by PostgreSQL's clock, as last measured and counted on since. */
  now(): number;
  /** PostgreSQL's clock minus this node's wall clock, in milliseconds, as last measured (0 before the first sync). */
  readonly offsetMs: number;
  /** Measures the offset again; rejects (keeping the last offset) when PostgreSQL does not answer. */
  sync(): Promise<number>;
  /**
   * Whether the wall clock has moved apart from the monotonic one by more than {@link CLOCK_JUMP_MS} since the last
   * measurement: stepped, or the machine suspended (the monotonic clock stands still while it sleeps, and so would
   * this clock until measured again).
   */
  jumped(): boolean;
}

/** How often a node measures its clock against PostgreSQL's. */
export const CLOCK_SYNC_INTERVAL_MS = 60_000;
/** An offset larger than this is logged as a warning (clocks should agree within milliseconds with NTP). */
export const CLOCK_WARN_OFFSET_MS = 2_000;
/** A move of the wall clock against the monotonic one past this is a jump: the clock is measured again at once. */
export const CLOCK_JUMP_MS = 1_000;
/** How often the clocks are compared for a jump (no query). */
const JUMP_CHECK_MS = 1_000;
/** Round trips per measurement; the shortest one's reading is kept. */
const SAMPLES = 3;

/** PostgreSQL's `clock_timestamp()` (the real time of the statement, not of its transaction) in ms. */
export async function databaseTimeMs(knex: Knex): Promise<number> {
  const result = await knex.raw<{ rows: Array<{ now_ms: number }> }>(
    'SELECT extract(epoch FROM clock_timestamp())::float8 * 1000 AS now_ms',
  );
  const row = result.rows[0];
  if (row === undefined) throw new Error('clock_timestamp() returned no row');
  return Number(row.now_ms);
}

/**
 * A clock that reads `databaseTime` to learn its offset. `localNow` is this node's wall clock (Date.now; tests give a
 * shifted one to play a node whose clock is off), `elapsed` its monotonic one (performance.now()), by which it
 * counts between measurements.
 */
export function createDatabaseClock(
  databaseTime: () => Promise<number>,
  localNow: () => number = Date.now,
  elapsed: () => number = () => performance.now(),
): DatabaseClock {
  let offsetMs = 0;
  // PostgreSQL's time at elapsed() = 0; before the first measurement, the wall clock's.
  let base = localNow() - elapsed();
  // The wall clock less the monotonic one, at the last measurement: a change of it is a jump.
  let wallLessElapsed = base;
  return {
    // Whole milliseconds, as Date.now() counts.
    now: () => Math.floor(elapsed() + base),
    get offsetMs() {
      return offsetMs;
    },
    async sync() {
      let best: { roundTrip: number; base: number; offset: number; wallLess: number } | undefined;
      for (let i = 0; i < SAMPLES; i += 1) {
        const [sent, sentWall] = [elapsed(), localNow()];
        const remote = await databaseTime();
        const [received, receivedWall] = [elapsed(), localNow()];
        const roundTrip = received - sent;
        const sample = {
          roundTrip,
          base: remote - (sent + received) / 2,
          offset: remote - (sentWall + receivedWall) / 2,
          // The jump check's reference, as of this sample: a jump after it (a suspend while the measurement goes
          // on) still shows, and is measured again.
          wallLess: sentWall - sent,
        };
        if (best === undefined || roundTrip < best.roundTrip) best = sample;
      }
      if (best !== undefined) {
        base = best.base;
        offsetMs = Math.round(best.offset);
        wallLessElapsed = best.wallLess;
      }
      return offsetMs;
    },
    jumped: () => Math.abs(localNow() - elapsed() - wallLessElapsed) > CLOCK_JUMP_MS,
  };
}

/**
 * Measures `clock` now (rejecting when PostgreSQL does not answer: the node cannot start without it), then every
 * `everyMs` in the background. An offset past {@link CLOCK_WARN_OFFSET_MS} is logged as a warning each time it is
 * measured (the node keeps working by PostgreSQL's clock, but its logs, its own timers and anything that reads the
 * machine's clock are off); a failed measurement keeps the last offset and is logged at debug.
 */
export async function startClockSync(
  clock: DatabaseClock,
  logger: Logger,
  everyMs: number = CLOCK_SYNC_INTERVAL_MS,
): Promise<{ close(): void }> {
  const report = (offsetMs: number) => {
    if (Math.abs(offsetMs) <= CLOCK_WARN_OFFSET_MS) return;
    logger.warn(
      { offsetMs },
      `this machine's clock is ${(Math.abs(offsetMs) / 1000).toFixed(1)} s ${offsetMs < 0 ? 'ahead of' : 'behind'} ` +
        "PostgreSQL's: run NTP on every node and on PostgreSQL's host (the node counts tokens and limits by " +
        "PostgreSQL's clock meanwhile)",
    );
  };
  report(await clock.sync());
  let measuring = false;
  // After a failed measurement, the next one a jump asks for waits twice as long as the last (PostgreSQL away).
  let retryAt = 0;
  let retryDelay = JUMP_CHECK_MS;
  const measure = () => {
    if (measuring) return;
    measuring = true;
    clock
      .sync()
      .then(
        (offsetMs) => {
          retryAt = 0;
          retryDelay = JUMP_CHECK_MS;
          report(offsetMs);
        },
        (err: unknown) => {
          retryAt = performance.now() + retryDelay;
          retryDelay = Math.min(retryDelay * 2, everyMs);
          logger.debug({ err }, 'measuring the clock against PostgreSQL failed');
        },
      )
      .finally(() => (measuring = false));
  };
  const timer = setInterval(measure, everyMs);
  // A jump (a step of the machine's clock, a resume from a suspend) is measured at once, not at the next minute.
  const jumps = setInterval(
    () => {
      if (clock.jumped() && performance.now() >= retryAt) measure();
    },
    Math.min(JUMP_CHECK_MS, everyMs),
  );
  timer.unref();
  jumps.unref();
  return {
    close: () => {
      clearInterval(timer);
      clearInterval(jumps);
    },
  };
}
