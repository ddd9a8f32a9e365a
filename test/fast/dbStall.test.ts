import { expect } from 'chai';
import { DatabaseStalledError, StallWatch } from '../../lib/dbStall.js';
import { isDbUnavailable, toAppError } from '../../lib/errors.js';

/** A watch on a clock the test moves, with a probe whose answer the test sets, recording what it reports. */
function watchWith(stallMs: number) {
  let now = 0;
  let probeAnswers = false;
  let probes = 0;
  const events: string[] = [];
  const watch = new StallWatch({
    stallMs,
    now: () => now,
    probe: () => {
      probes++;
      return Promise.resolve(probeAnswers);
    },
    onStall: ({ silentMs, waiting }) => events.push(`stall silent=${silentMs} waiting=${waiting}`),
    onRecover: ({ stalledMs }) => events.push(`recover after=${stalledMs}`),
  });
  return {
    watch,
    events,
    probes: () => probes,
    advance: (ms: number) => (now += ms),
    probeAnswers: (answers: boolean) => (probeAnswers = answers),
  };
}

/** A statement that was sent and answered at once. */
function answered(watch: StallWatch, key: string): void {
  watch.begin(key);
  watch.end(key, true);
}

describe('database stall watch (lib/dbStall.ts)', () => {
  it('stalls only once statements have waited the timeout, nothing answered for as long, and the probe failed', async () => {
    const t = watchWith(5000);
    t.watch.begin('stuck');
    t.advance(4999);
    await t.watch.check();
    expect(t.probes(), 'no probe before the timeout').to.equal(0);
    t.advance(1);
    await t.watch.check();
    expect(t.probes()).to.equal(1);
    expect(t.watch.stalled).to.equal(true);
    expect(t.events).to.deep.equal(['stall silent=5000 waiting=1']);
    t.watch.end('stuck', false);
    expect(t.watch.stalled, 'a statement that failed without an answer ends nothing').to.equal(true);
  });

  it('does not stall while other statements are answered (a slow query beside a busy pool)', async () => {
    const t = watchWith(5000);
    t.watch.begin('long'); // a long query
    for (let i = 0; i < 10; i++) {
      t.advance(1000);
      answered(t.watch, `short ${i}`); // a short one
      await t.watch.check();
    }
    expect(t.probes()).to.equal(0);
    expect(t.watch.stalled).to.equal(false);
  });

  it('does not stall when the probe is answered (a long query beside an idle pool)', async () => {
    const t = watchWith(1000);
    t.probeAnswers(true);
    t.watch.begin('long');
    t.advance(3000);
    await t.watch.check();
    expect(t.probes()).to.equal(1);
    expect(t.watch.stalled).to.equal(false);
    expect(t.events).to.deep.equal([]);
    // The probe's answer counts: no new probe until the silence has lasted the timeout again.
    t.advance(999);
    await t.watch.check();
    expect(t.probes()).to.equal(1);
  });

  it('never probes with nothing in flight, however long the silence', async () => {
    const t = watchWith(1000);
    answered(t.watch, 'short');
    t.advance(60_000);
    await t.watch.check();
    expect(t.probes()).to.equal(0);
  });

  it('while stalled, probes at every check and recovers at the first answer, from the probe or a statement', async () => {
    const t = watchWith(1000);
    t.watch.begin('stuck');
    t.advance(1000);
    await t.watch.check();
    expect(t.watch.stalled).to.equal(true);
    t.watch.end('stuck', false);
    t.advance(1000);
    await t.watch.check();
    expect(t.probes(), 'probed again while stalled, with nothing in flight').to.equal(2);
    expect(t.watch.stalled).to.equal(true);
    t.probeAnswers(true);
    t.advance(1000);
    await t.watch.check();
    expect(t.watch.stalled).to.equal(false);
    expect(t.events).to.deep.equal(['stall silent=1000 waiting=1', 'recover after=2000']);

    // Stalled again, then a statement's answer ends it before any probe does.
    t.probeAnswers(false);
    t.watch.begin('long');
    t.advance(1000);
    await t.watch.check();
    expect(t.watch.stalled).to.equal(true);
    t.advance(500);
    answered(t.watch, 'short');
    expect(t.watch.stalled).to.equal(false);
    expect(t.events.at(-1)).to.equal('recover after=500');
  });

  it('does not stall when a statement was answered while the probe ran', async () => {
    let now = 0;
    let release: (answers: boolean) => void = () => undefined;
    const stalls: number[] = [];
    const watch = new StallWatch({
      stallMs: 1000,
      now: () => now,
      probe: () => new Promise<boolean>((resolve) => (release = resolve)),
      onStall: ({ silentMs }) => stalls.push(silentMs),
      onRecover: () => undefined,
    });
    watch.begin('long');
    now = 1000;
    const checking = watch.check();
    // A second check while the first probes starts no second probe.
    await watch.check();
    now = 1500;
    answered(watch, 'short');
    release(false);
    await checking;
    expect(watch.stalled).to.equal(false);
    expect(stalls).to.deep.equal([]);
  });

  it('treats a probe that throws as no answer', async () => {
    const events: string[] = [];
    let now = 0;
    const watch = new StallWatch({
      stallMs: 1000,
      now: () => now,
      probe: () => Promise.reject(new Error('boom')),
      onStall: () => events.push('stall'),
      onRecover: () => events.push('recover'),
    });
    watch.begin('long');
    now = 1000;
    await watch.check();
    expect(events).to.deep.equal(['stall']);
  });

  it('is off at 0: never probes, never stalls', async () => {
    const t = watchWith(0);
    t.watch.begin('long');
    t.advance(3_600_000);
    await t.watch.check();
    expect(t.probes()).to.equal(0);
    expect(t.watch.stalled).to.equal(false);
  });

  it("answers DB_UNAVAILABLE for a stalled database's refusal", () => {
    const err = new DatabaseStalledError();
    expect(isDbUnavailable(err)).to.equal(true);
    expect(toAppError(err).code).to.equal('DB_UNAVAILABLE');
  });
});
