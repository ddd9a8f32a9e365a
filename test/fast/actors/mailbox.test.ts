import { expect } from 'chai';
import { Mailbox } from '../../../actors/Mailbox.js';
import { AppError } from '../../../lib/errors.js';
import { waitFor } from '../../helpers/waitFor.js';

/** A promise the test resolves by hand, to hold a batch "in flight" as long as it likes. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

function overloaded(fn: () => void): AppError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(AppError);
    expect((err as AppError).code).to.equal('OVERLOADED');
    return err as AppError;
  }
  throw new Error('expected OVERLOADED');
}

describe('actors/Mailbox', () => {
  it('processes commands in FIFO order, one at a time', async () => {
    const seen: number[] = [];
    let running = 0;
    let maxRunning = 0;
    const gates: Array<() => void> = [];
    const mailbox = new Mailbox<number>({
      capacity: 100,
      process: async (next) => {
        const [n] = next.take();
        running += 1;
        maxRunning = Math.max(maxRunning, running);
        seen.push(n!);
        const gate = deferred();
        gates.push(gate.resolve);
        await gate.promise;
        running -= 1;
      },
      onError: (err) => {
        throw err;
      },
    });
    for (let i = 1; i <= 5; i += 1) mailbox.post(i);
    // The first started at once (no timer); the others wait behind it.
    expect(seen).to.deep.equal([1]);
    expect(mailbox.queued).to.equal(4);
    for (let i = 0; i < 5; i += 1) {
      await waitFor(() => gates.length === i + 1, { what: `command ${i + 1} to start` });
      expect(running).to.equal(1);
      gates[i]!();
    }
    await mailbox.whenIdle();
    expect(seen).to.deep.equal([1, 2, 3, 4, 5]);
    expect(maxRunning).to.equal(1);
    expect(mailbox.idle).to.equal(true);
  });

  it('hands the commands that queued up during a batch to the next one, up to maxBatch', async () => {
    const batches: number[][] = [];
    const first = deferred();
    const mailbox = new Mailbox<number>({
      capacity: 100,
      maxBatch: 3,
      process: async (next) => {
        batches.push(next.take());
        if (batches.length === 1) await first.promise;
      },
      onError: (err) => {
        throw err;
      },
    });
    mailbox.post(1);
    for (let i = 2; i <= 6; i += 1) mailbox.post(i);
    expect(batches).to.deep.equal([[1]]);
    first.resolve();
    await mailbox.whenIdle();
    expect(batches).to.deep.equal([[1], [2, 3, 4], [5, 6]]);
  });

  it('answers OVERLOADED at once when full, and accepts again once there is room', async () => {
    const gate = deferred();
    const done: number[] = [];
    const mailbox = new Mailbox<number>({
      capacity: 2,
      process: async (next) => {
        const [n] = next.take();
        await gate.promise;
        done.push(n!);
      },
      onError: (err) => {
        throw err;
      },
    });
    mailbox.post(1); // running, not queued
    mailbox.post(2);
    mailbox.post(3);
    expect(mailbox.queued).to.equal(2);
    overloaded(() => mailbox.post(4));
    expect(mailbox.queued).to.equal(2);
    gate.resolve();
    await mailbox.whenIdle();
    expect(done).to.deep.equal([1, 2, 3]);
    mailbox.post(5);
    await mailbox.whenIdle();
    expect(done).to.deep.equal([1, 2, 3, 5]);
  });

  it('close() refuses new commands and resolves only after every accepted one is processed', async () => {
    const gate = deferred();
    const done: number[] = [];
    const mailbox = new Mailbox<number>({
      capacity: 10,
      process: async (next) => {
        const [n] = next.take();
        await gate.promise;
        done.push(n!);
      },
      onError: (err) => {
        throw err;
      },
    });
    mailbox.post(1);
    mailbox.post(2);
    let closed = false;
    const closing = mailbox.close().then(() => {
      closed = true;
    });
    const refusal = overloaded(() => mailbox.post(3));
    expect(refusal.message).to.match(/shutting down/);
    await new Promise((resolve) => setImmediate(resolve));
    expect(closed).to.equal(false);
    gate.resolve();
    await closing;
    expect(done).to.deep.equal([1, 2]);
    await mailbox.close(); // idempotent
  });

  it('reports a failing batch to onError and goes on with the next', async () => {
    const errors: unknown[] = [];
    const done: number[] = [];
    const mailbox = new Mailbox<number>({
      capacity: 10,
      process: (next) => {
        const [n] = next.take();
        if (n === 1) return Promise.reject(new Error('boom'));
        done.push(n!);
        return Promise.resolve();
      },
      onError: (err) => errors.push(err),
    });
    mailbox.post(1);
    mailbox.post(2);
    await mailbox.whenIdle();
    expect(errors).to.have.length(1);
    expect((errors[0] as Error).message).to.equal('boom');
    expect(done).to.deep.equal([2]);
  });

  it('forms a batch when it is taken: commands posted until then join it', async () => {
    const batches: number[][] = [];
    const ready = deferred();
    const mailbox = new Mailbox<number>({
      capacity: 100,
      maxBatch: 4,
      process: async (next) => {
        // Waits for its turn (a writer's next transaction) before taking its commands.
        if (batches.length === 0) {
          expect(next.size()).to.equal(1);
          await ready.promise;
          expect(next.size()).to.equal(4);
        }
        batches.push(next.take());
        expect(next.take(), 'taken once').to.equal(batches.at(-1));
      },
      onError: (err) => {
        throw err;
      },
    });
    for (let i = 1; i <= 5; i += 1) mailbox.post(i);
    ready.resolve();
    await mailbox.whenIdle();
    expect(batches).to.deep.equal([[1, 2, 3, 4], [5]]);
  });

  it('ends a batch before the first command its batch rule refuses, asking the rule once per command', async () => {
    const batches: number[][] = [];
    const asked: number[] = [];
    const ready = deferred();
    const mailbox = new Mailbox<number>({
      capacity: 100,
      maxBatch: 10,
      // A batch of odd numbers or of even ones, and never the same number twice.
      batchRule: () => {
        const seen = new Set<number>();
        let parity: number | undefined;
        return (n) => {
          asked.push(n);
          parity ??= n % 2;
          if (n % 2 !== parity || seen.has(n)) return false;
          seen.add(n);
          return true;
        };
      },
      process: async (next) => {
        if (batches.length === 0) {
          expect(next.size()).to.equal(1);
          await ready.promise;
          expect(next.size()).to.equal(3);
          expect(next.size()).to.equal(3);
        }
        batches.push(next.take());
      },
      onError: (err) => {
        throw err;
      },
    });
    mailbox.post(1);
    for (const n of [3, 5, 3, 7, 2, 4, 4]) mailbox.post(n);
    ready.resolve();
    await mailbox.whenIdle();
    expect(batches).to.deep.equal([[1, 3, 5], [3, 7], [2, 4], [4]]);
    // Each command once per batch it was considered for: the refused one again as the next batch's first.
    expect(asked).to.deep.equal([1, 3, 5, 3, 3, 7, 2, 2, 4, 4, 4]);
  });

  it('takes a batch its processor never took and reports it, instead of processing it again for ever', async () => {
    const errors: unknown[] = [];
    let calls = 0;
    const mailbox = new Mailbox<number>({
      capacity: 10,
      maxBatch: 2,
      process: () => {
        calls += 1;
        return Promise.resolve();
      },
      onError: (err) => errors.push(err),
    });
    mailbox.post(1);
    mailbox.post(2);
    await mailbox.whenIdle();
    expect(calls).to.equal(1);
    expect(errors.map((e) => (e as Error).message)).to.deep.equal(['a batch of 2 commands was never taken']);
  });
});
