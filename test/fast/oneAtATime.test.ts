import { expect } from 'chai';
import { setTimeout as sleep } from 'node:timers/promises';
import { oneAtATime } from '../../lib/conversations/conversationService.js';

/** A promise and the function that settles it. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

class Late extends Error {}

/** Whether `promise` has settled after the tasks ready now have run. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  promise.then(
    () => (done = true),
    () => (done = true),
  );
  await sleep(0);
  return done;
}

/**
 * The queue of a group's changes on a node (lib/conversations/conversationService.ts): one task of a key at a time,
 * in call order, and a task whose turn does not come in time answered late and never run.
 */
describe('oneAtATime', function () {
  it('runs the tasks of one key one at a time, in call order, and the tasks of other keys meanwhile', async () => {
    const inTurn = oneAtATime(10_000, () => new Late());
    const first = gate();
    const log: string[] = [];
    const a1 = inTurn('a', async () => {
      log.push('a1 start');
      await first.opened;
      log.push('a1 end');
      return 1;
    });
    const a2 = inTurn('a', () => {
      log.push('a2');
      return Promise.resolve(2);
    });
    const b1 = inTurn('b', () => {
      log.push('b1');
      return Promise.resolve(3);
    });
    expect(await b1).to.equal(3);
    expect(await settled(a2), 'the second task of "a" waits for the first').to.equal(false);
    first.open();
    expect([await a1, await a2]).to.deep.equal([1, 2]);
    expect(log).to.deep.equal(['a1 start', 'b1', 'a1 end', 'a2']);
  });

  it('answers late() to a task whose turn has not come in time, never runs it, and runs the next at once', async () => {
    const inTurn = oneAtATime(500, () => new Late());
    const holder = gate();
    const ran: string[] = [];
    const held = inTurn('g', async () => {
      await holder.opened;
      ran.push('held');
    });
    const lateOnes = [1, 2, 3].map((n) => inTurn('g', () => Promise.resolve(void ran.push(`late ${n}`))));
    for (const late of lateOnes) {
      let error: unknown;
      await late.catch((err: unknown) => (error = err));
      expect(error).to.be.instanceOf(Late);
    }
    // Queued after the late ones: it runs as soon as the task ahead ends, within its own 500 ms, the late ones
    // skipped.
    const next = inTurn('g', () => Promise.resolve(void ran.push('next')));
    holder.open();
    await held;
    await next;
    expect(ran).to.deep.equal(['held', 'next']);
  });

  it('goes on after a task that failed, which its caller alone is told of', async () => {
    const inTurn = oneAtATime(10_000, () => new Late());
    const failed = inTurn('g', () => Promise.reject(new Error('constraint')));
    const next = inTurn('g', () => Promise.resolve('ran'));
    let error: unknown;
    await failed.catch((err: unknown) => (error = err));
    expect((error as Error).message).to.equal('constraint');
    expect(await next).to.equal('ran');
  });
});
