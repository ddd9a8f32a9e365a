import { expect } from 'chai';
import { sweepPeriodically } from '../../lib/periodic.js';
import { waitFor } from '../helpers/waitFor.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A node's sweeps of expired rows (sessions, auth limit counters) come every interval, the first time within one
 * interval of the start: with the interval's timer alone, a node restarted more often than the interval never swept.
 * Real timers, short intervals; only lower bounds of time are asserted (a busy machine runs timers late, never early).
 */
describe('sweepPeriodically (lib/periodic.ts)', function () {
  it('sweeps first at firstAfterMs plus a random share of the rest of the interval, then every interval', async function () {
    const start = performance.now();
    const at: number[] = [];
    const stop = sweepPeriodically(() => at.push(performance.now() - start), 100, {
      firstAfterMs: 40,
      random: () => 0.5,
    });
    try {
      await waitFor(() => at.length >= 3, { what: 'three sweeps', timeoutMs: 5000 });
    } finally {
      stop();
    }
    // 40 + 0.5 * (100 - 40) = 70 ms, then 100 ms apart (a timer may fire up to 1 ms before its rounded time). Each is
    // measured from the start, not from the sweep before: Node arms the next run from the time it read before calling
    // the sweep, so a pause of this process between that and the sweep's own reading (a GC) shortened the measured gap
    // to the next one (97.7 ms with a 3 ms pause there), though no sweep came early.
    expect(at[0], 'the first sweep').to.be.at.least(69);
    expect(at[1], 'the second sweep').to.be.at.least(70 + 100 - 2);
    expect(at[2], 'the third sweep').to.be.at.least(70 + 200 - 3);
  });

  it('sweeps the first time within the interval however late the random draw', async function () {
    const start = performance.now();
    let first: number | undefined;
    const stop = sweepPeriodically(() => (first ??= performance.now() - start), 100, {
      firstAfterMs: 40,
      random: () => 0.999,
    });
    try {
      await waitFor(() => first !== undefined, { what: 'the first sweep', timeoutMs: 5000 });
    } finally {
      stop();
    }
    expect(first).to.be.at.least(98);
  });

  it('by default sweeps first a minute after the start at the earliest, and never past the interval', function () {
    const delays: number[] = [];
    const realSetTimeout = globalThis.setTimeout;
    // Only the delays are read: the timers are the real ones, stopped at once.
    (globalThis as { setTimeout: unknown }).setTimeout = (fn: () => void, ms: number) => {
      delays.push(ms);
      return realSetTimeout(fn, ms);
    };
    const stops: Array<() => void> = [];
    try {
      for (const random of [() => 0, () => 0.999_999]) {
        stops.push(sweepPeriodically(() => undefined, 600_000, { random }));
        stops.push(sweepPeriodically(() => undefined, 30_000, { random }));
      }
    } finally {
      globalThis.setTimeout = realSetTimeout;
      for (const stop of stops) stop();
    }
    expect(delays).to.deep.equal([60_000, 30_000, 599_999, 30_000]);
  });

  it('sweeps no more once stopped, whether stopped before the first sweep or after it', async function () {
    let early = 0;
    const stopEarly = sweepPeriodically(() => early++, 50, { firstAfterMs: 20 });
    stopEarly();
    let late = 0;
    const stopLate = sweepPeriodically(() => late++, 50, { firstAfterMs: 20 });
    await waitFor(() => late >= 2, { what: 'two sweeps', timeoutMs: 5000 });
    stopLate();
    stopLate();
    const seen = late;
    await sleep(200);
    expect({ early, late }).to.deep.equal({ early: 0, late: seen });
  });
});
