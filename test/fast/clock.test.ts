import { expect } from 'chai';
import { createDatabaseClock, startClockSync } from '../../lib/cluster/clock.js';
import { createLogger } from '../../lib/logger.js';
import { waitFor } from '../helpers/waitFor.js';

describe('cluster/clock: PostgreSQL’s clock as a node estimates it', () => {
  it('takes the offset of the shortest round trip, and counts by it', async () => {
    let local = 1_000_000;
    // The database runs 90 s behind this machine; the second of three round trips is the shortest.
    const roundTrips = [40, 2, 30];
    const clock = createDatabaseClock(
      () => {
        const trip = roundTrips.shift() ?? 10;
        local += trip / 2;
        const remote = local - 90_000;
        local += trip / 2;
        return Promise.resolve(remote);
      },
      () => local,
      () => local,
    );
    expect(await clock.sync()).to.equal(-90_000);
    expect(clock.now()).to.equal(local - 90_000);
  });

  it('counts on by the monotonic clock: a step of the wall clock between measurements leaves it as it was', async () => {
    let elapsed = 5_000;
    // PostgreSQL's time, and the machine's wall clock: the same until the step.
    const database = () => 1_800_000_000_000 + elapsed;
    let step = 0;
    const clock = createDatabaseClock(
      () => Promise.resolve(database()),
      () => database() + step,
      () => elapsed,
    );
    expect(await clock.sync()).to.equal(0);
    // The machine's clock set back an hour (an NTP step), then a second goes by.
    step = -3_600_000;
    elapsed += 1000;
    expect(clock.now(), 'PostgreSQL’s time, a second later').to.equal(database());
    // Measured again, the offset tells how far the wall clock is off; the time stays PostgreSQL's.
    expect(await clock.sync()).to.equal(3_600_000);
    expect(clock.now()).to.equal(database());
  });

  it('takes a suspend (the monotonic clock stood still) as a jump, and is right again once measured', async () => {
    let elapsed = 5_000;
    let database = 1_800_000_000_000;
    const clock = createDatabaseClock(
      () => Promise.resolve(database),
      () => database,
      () => elapsed,
    );
    await clock.sync();
    expect(clock.jumped()).to.equal(false);
    // The machine sleeps 30 s: the wall clock and PostgreSQL's go on, the monotonic one does not.
    database += 30_000;
    elapsed += 1;
    expect(clock.jumped(), 'the wall clock moved 30 s against the monotonic one').to.equal(true);
    expect(clock.now(), 'until measured again').to.be.below(database);
    await clock.sync();
    expect(clock.jumped()).to.equal(false);
    expect(clock.now()).to.equal(database);
  });

  it('measures again within a second when the wall clock jumps, not at the next minute', async () => {
    let step = 0;
    let readings = 0;
    const clock = createDatabaseClock(
      () => {
        readings += 1;
        return Promise.resolve(Date.now());
      },
      () => Date.now() + step,
    );
    const sync = await startClockSync(clock, createLogger('silent'), 60_000);
    try {
      const atStart = readings;
      expect(clock.offsetMs).to.be.within(-50, 50);
      // The machine's clock set back an hour.
      step = -3_600_000;
      expect(clock.jumped()).to.equal(true);
      await waitFor(() => readings > atStart && !clock.jumped(), {
        what: 'a measurement after the jump',
        timeoutMs: 3000,
      });
      expect(clock.offsetMs).to.be.within(3_600_000 - 50, 3_600_000 + 50);
    } finally {
      sync.close();
    }
  });

  it('measures again until closed, and not after', async () => {
    let syncs = 0;
    const clock = createDatabaseClock(() => {
      syncs += 1;
      return Promise.resolve(Date.now());
    });
    const sync = await startClockSync(clock, createLogger('silent'), 5);
    // Three more measures, every 5 ms. (In a fixed 40 ms, a loaded machine's stall of the process left the
    // interval fewer turns.)
    await waitFor(() => syncs > 3, { what: 'three measures after the first', intervalMs: 5 });
    sync.close();
    const after = syncs;
    await new Promise((resolve) => setTimeout(resolve, 40));
    expect(syncs).to.be.at.most(after + 3);
    const settled = syncs;
    await new Promise((resolve) => setTimeout(resolve, 40));
    expect(syncs).to.equal(settled);
  });
});

describe('cluster/clock: a suspend during a measurement of the database clock', function () {
  this.timeout(20_000);

  it('is measured again within a second (the clock agrees with PostgreSQL 2.5 s after the resume)', async () => {
    // How far the wall clock and PostgreSQL's are ahead of the monotonic one's start (the suspend adds to it).
    let suspended = 0;
    let calls = 0;
    let suspendOnCall = 0;
    const database = () => Date.now() + suspended;
    const clock = createDatabaseClock(
      async () => {
        calls += 1;
        if (calls === suspendOnCall) {
          // The machine sleeps 30 s right after the first sample of this measurement: the wall clock and
          // PostgreSQL's go on, the monotonic one does not.
          suspended += 30_000;
        }
        // The later samples' round trips are longer (a loaded database): the first one is the shortest.
        if (suspendOnCall !== 0 && calls >= suspendOnCall) await new Promise((r) => setTimeout(r, 20));
        return database();
      },
      () => Date.now() + suspended,
    );
    const sync = await startClockSync(clock, createLogger('silent'), 60_000);
    try {
      expect(Math.abs(clock.now() - database())).to.be.below(100);
      // The minute's measurement runs (as the interval runs it); the suspend comes after its first sample.
      suspendOnCall = calls + 2;
      await clock.sync().catch(() => undefined);
      // Within a second of the resume the clock is measured again; 2.5 s given.
      await new Promise((r) => setTimeout(r, 2500));
      const state = {
        offBy: database() - clock.now(),
        jumped: clock.jumped(),
        databaseReadings: calls,
      };
      expect(
        Math.abs(state.offBy),
        `clock vs PostgreSQL 2.5 s after the resume: ${JSON.stringify(state)}`,
      ).to.be.below(1000);
    } finally {
      sync.close();
    }
  });
});

describe('cluster/clock: measurements a jump asks for while PostgreSQL does not answer', function () {
  this.timeout(20_000);

  it('come less and less often (each failure doubles the wait), not every second', async () => {
    let step = 0;
    let readings = 0;
    let answering = true;
    const clock = createDatabaseClock(
      () => {
        readings += 1;
        return answering ? Promise.resolve(Date.now()) : Promise.reject(new Error('PostgreSQL away'));
      },
      () => Date.now() + step,
    );
    const sync = await startClockSync(clock, createLogger('silent'), 60_000);
    try {
      answering = false;
      step = -3_600_000;
      const atJump = readings;
      // Tries after about 0, 1, 3 s (waits of 1 s, then 2 s, then 4 s): three in 4.5 s, not five.
      await new Promise((r) => setTimeout(r, 4500));
      expect(readings - atJump, 'measurements tried in 4.5 s').to.be.within(2, 3);
      expect(clock.jumped()).to.equal(true);
    } finally {
      sync.close();
    }
  });
});

describe('cluster/clock: the back-off of measurements once PostgreSQL is back', () => {
  it('a jump after a successful measurement is measured within a second, not after the stale back-off', async () => {
    let mono = 1_000;
    let suspended = 0;
    let answering = true;
    const wallBase = 1_800_000_000_000;
    const database = () => wallBase + mono + suspended;
    const clock = createDatabaseClock(
      () => (answering ? Promise.resolve(database()) : Promise.reject(new Error('PostgreSQL away'))),
      () => wallBase + mono + suspended,
      () => mono,
    );
    const intervals: Array<() => void> = [];
    const realSetInterval = globalThis.setInterval;
    const realClearInterval = globalThis.clearInterval;
    const realNow = performance.now.bind(performance);
    performance.now = () => mono;
    const flush = () => new Promise<void>((resolve) => setImmediate(resolve));
    try {
      globalThis.setInterval = ((fn: () => void) => {
        intervals.push(fn);
        return { unref() {}, ref() {} };
      }) as unknown as typeof setInterval;
      globalThis.clearInterval = () => undefined;
      const sync = await startClockSync(clock, createLogger('silent'), 60_000);
      globalThis.setInterval = realSetInterval;
      globalThis.clearInterval = realClearInterval;
      const [minute, jumpCheck] = intervals;
      expect(intervals).to.have.length(2);
      const tick = async (fn: () => void, advance: number) => {
        mono += advance;
        fn();
        await flush();
        await flush();
      };
      // Timers and the monotonic clock driven by hand.
      // A suspend while PostgreSQL is away: four jump-asked measurements fail (waits of 1, 2, 4, then 8 s).
      answering = false;
      suspended += 10_000;
      await tick(jumpCheck!, 1000);
      await tick(jumpCheck!, 1000);
      await tick(jumpCheck!, 2000);
      await tick(jumpCheck!, 4000);
      // PostgreSQL answers again; the minute's measurement succeeds a second later.
      answering = true;
      await tick(minute!, 1000);
      expect(Math.abs(clock.now() - database()), 'right after the minute measurement').to.be.below(5);
      expect(clock.jumped()).to.equal(false);
      // The machine is suspended 30 s again and resumes; PostgreSQL answers.
      suspended += 30_000;
      expect(clock.jumped()).to.equal(true);
      await tick(jumpCheck!, 1000);
      expect(
        database() - clock.now(),
        'a second after the resume (PostgreSQL answering): measured again',
      ).to.be.below(1000);
      sync.close();
    } finally {
      globalThis.setInterval = realSetInterval;
      globalThis.clearInterval = realClearInterval;
      performance.now = realNow;
    }
  });
});
