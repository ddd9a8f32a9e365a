import { expect } from 'chai';
import { createGate } from '../../lib/auth/passwords.js';
import { AppError } from '../../lib/errors.js';

/** A task that runs until the test ends it. */
function task() {
  let finish!: () => void;
  let started = false;
  const done = new Promise<void>((resolve) => (finish = resolve));
  return {
    run: async () => {
      started = true;
      await done;
      return 'done';
    },
    started: () => started,
    finish,
  };
}

describe('password check gate', () => {
  it('runs at most `running` at once, queues `waiting`, refuses the rest with OVERLOADED, and runs the queue in order', async () => {
    const gate = createGate({ running: 2, waiting: 2 });
    const tasks = Array.from({ length: 5 }, task);
    const results = tasks.map((t) =>
      gate.run(t.run).then(
        (value) => value,
        (err: unknown) => err,
      ),
    );
    await new Promise((resolve) => setImmediate(resolve));
    expect(tasks.map((t) => t.started())).to.deep.equal([true, true, false, false, false]);
    const refused = await results[4];
    expect(refused).to.be.instanceOf(AppError);
    expect((refused as AppError).code).to.equal('OVERLOADED');
    expect((refused as AppError).retryAfter).to.equal(1);

    tasks[1]!.finish();
    expect(await results[1]).to.equal('done');
    await new Promise((resolve) => setImmediate(resolve));
    expect(tasks.map((t) => t.started())).to.deep.equal([true, true, true, false, false]);

    tasks[0]!.finish();
    tasks[2]!.finish();
    await Promise.all([results[0], results[2]]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(tasks[3]!.started()).to.equal(true);
    tasks[3]!.finish();
    expect(await results[3]).to.equal('done');
  });

  it('frees its place when a task fails', async () => {
    const gate = createGate({ running: 1, waiting: 0 });
    const failed = gate.run(() => Promise.reject(new Error('argon2 failed')));
    await failed.then(
      () => expect.fail('resolved'),
      (err: unknown) => expect((err as Error).message).to.equal('argon2 failed'),
    );
    expect(await gate.run(() => Promise.resolve(7))).to.equal(7);
  });
});
