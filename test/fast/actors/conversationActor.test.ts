import { expect } from 'chai';
import { ConversationActor, type Outcome } from '../../../actors/ConversationActor.js';
import { AppError } from '../../../lib/errors.js';
import { createLogger } from '../../../lib/logger.js';
import { waitFor } from '../../helpers/waitFor.js';

const logger = createLogger('silent');

interface Command {
  key: string;
}

/** Stores commands in memory (a counter as seq, duplicates by key), each batch gated by hand. */
function fakeWriter() {
  const stored = new Map<string, number>();
  const batches: Array<readonly Command[]> = [];
  const events: string[] = [];
  const gates: Array<() => void> = [];
  let seq = 0;
  let failNext: AppError | undefined;
  let throwNext: Error | undefined;
  return {
    batches,
    events,
    gates,
    failNextWith(error: AppError) {
      failNext = error;
    },
    throwNextWith(error: Error) {
      throwNext = error;
    },
    async write(_conversationId: string, commands: readonly Command[]): Promise<Array<Outcome<number>>> {
      batches.push(commands);
      await new Promise<void>((resolve) => gates.push(resolve));
      if (throwNext) {
        const error = throwNext;
        throwNext = undefined;
        throw error;
      }
      if (failNext) {
        const error = failNext;
        failNext = undefined;
        return commands.map(() => ({ ok: false, error }));
      }
      events.push('commit');
      return commands.map((command): Outcome<number> => {
        if (command.key === 'bad') return { ok: false, error: new AppError('IDEMPOTENCY_CONFLICT') };
        const existing = stored.get(command.key);
        if (existing !== undefined) return { ok: true, value: existing };
        seq += 1;
        stored.set(command.key, seq);
        return { ok: true, value: seq };
      });
    },
  };
}

describe('actors/ConversationActor', () => {
  function setup(capacity = 100, failsWaiting?: (error: Error) => boolean) {
    const writer = fakeWriter();
    const answered: boolean[] = [];
    const actor = new ConversationActor<Command, number>({
      conversationId: 'c1',
      write: (id, next) => writer.write(id, next.take()),
      logger,
      mailboxCapacity: capacity,
      onAnswered: (_at, ok) => answered.push(ok),
      ...(failsWaiting ? { failsWaiting } : {}),
    });
    return { writer, actor, answered };
  }

  it('writes a lone command at once, and batches the commands that queue behind it', async () => {
    const { writer, actor } = setup();
    const first = actor.submit({ key: 'a1' });
    await waitFor(() => writer.batches.length === 1, { what: 'the first batch' });
    const rest = ['a2', 'a3', 'a4'].map((key) => actor.submit({ key }));
    await waitFor(() => actor.queued === 3, { what: 'three queued commands' });
    writer.gates[0]!();
    expect(await first).to.equal(1);
    await waitFor(() => writer.batches.length === 2, { what: 'the second batch' });
    expect(writer.batches[1]!.map((c) => c.key)).to.deep.equal(['a2', 'a3', 'a4']);
    writer.gates[1]!();
    expect(await Promise.all(rest)).to.deep.equal([2, 3, 4]);
  });

  it('answers nothing before the write settles, then each command with its own outcome', async () => {
    const { writer, actor, answered } = setup();
    let settled = false;
    const ok = actor.submit({ key: 'x' }).finally(() => (settled = true));
    await waitFor(() => writer.gates.length === 1);
    const conflict = actor.submit({ key: 'bad' }).catch((e: unknown) => e);
    await new Promise((resolve) => setImmediate(resolve));
    expect(settled).to.equal(false);
    writer.gates[0]!();
    expect(await ok).to.equal(1);
    await waitFor(() => writer.gates.length === 2);
    writer.gates[1]!();
    expect(((await conflict) as AppError).code).to.equal('IDEMPOTENCY_CONFLICT');
    expect(answered).to.deep.equal([true, false]);
  });

  it('answers OVERLOADED at once when its mailbox is full, and keeps every accepted command', async () => {
    const { writer, actor } = setup(2);
    const accepted = [actor.submit({ key: 'm0' })];
    await waitFor(() => writer.batches.length === 1);
    accepted.push(actor.submit({ key: 'm1' }), actor.submit({ key: 'm2' }));
    await waitFor(() => actor.queued === 2);
    const err = await actor.submit({ key: 'm3' }).catch((e: unknown) => e);
    expect((err as AppError).code).to.equal('OVERLOADED');
    writer.gates[0]!();
    await waitFor(() => writer.gates.length === 2);
    writer.gates[1]!();
    expect(await Promise.all(accepted)).to.deep.equal([1, 2, 3]);
  });

  it('rejects every command of a failed batch with its error, and of a write that throws with that error', async () => {
    const { writer, actor } = setup();
    writer.failNextWith(new AppError('DB_UNAVAILABLE'));
    const failed = actor.submit({ key: 'f' }).catch((e: unknown) => e);
    await waitFor(() => writer.gates.length === 1);
    writer.gates[0]!();
    expect(((await failed) as AppError).code).to.equal('DB_UNAVAILABLE');

    const boom = new Error('writer bug');
    writer.throwNextWith(boom);
    const thrown = actor.submit({ key: 'g' }).catch((e: unknown) => e);
    await waitFor(() => writer.gates.length === 2);
    writer.gates[1]!();
    expect(await thrown).to.equal(boom);
    // The actor goes on after both.
    const next = actor.submit({ key: 'h' });
    await waitFor(() => writer.gates.length === 3);
    writer.gates[2]!();
    expect(await next).to.equal(1);
  });

  it('answers the commands queued behind a batch that failed whole with an outage at once, with that error', async () => {
    const outage = (error: Error) => error instanceof AppError && error.code === 'DB_UNAVAILABLE';
    const { writer, actor, answered } = setup(100, outage);
    const first = actor.submit({ key: 'a' }).catch((e: unknown) => e);
    await waitFor(() => writer.batches.length === 1, { what: 'the first batch' });
    const queued = ['b', 'c'].map((key) => actor.submit({ key }).catch((e: unknown) => e));
    await waitFor(() => actor.queued === 2, { what: 'two queued commands' });
    const down = new AppError('DB_UNAVAILABLE');
    writer.failNextWith(down);
    writer.gates[0]!();
    expect(await first).to.equal(down);
    // Not written next: answered with the batch's error, as soon as it came.
    expect(await Promise.all(queued)).to.deep.equal([down, down]);
    expect(writer.batches).to.have.length(1);
    expect(answered).to.deep.equal([false, false, false]);
    expect(actor.idleSince()).to.be.a('number');
    // A command after it is written as usual.
    const later = actor.submit({ key: 'd' });
    await waitFor(() => writer.gates.length === 2, { what: 'the next batch' });
    writer.gates[1]!();
    expect(await later).to.equal(1);
  });

  it('writes what queued behind a failed batch when its error is not an outage, or when it failed in part', async () => {
    const outage = (error: Error) => error instanceof AppError && error.code === 'DB_UNAVAILABLE';
    const { writer, actor } = setup(100, outage);
    const first = actor.submit({ key: 'a' }).catch((e: unknown) => e);
    await waitFor(() => writer.batches.length === 1, { what: 'the first batch' });
    const queued = actor.submit({ key: 'b' });
    await waitFor(() => actor.queued === 1, { what: 'a queued command' });
    writer.failNextWith(new AppError('VALIDATION_FAILED'));
    writer.gates[0]!();
    expect(((await first) as AppError).code).to.equal('VALIDATION_FAILED');
    await waitFor(() => writer.gates.length === 2, { what: 'the queued command written' });
    writer.gates[1]!();
    expect(await queued).to.equal(1);
    // A batch in which one command failed and another committed is no outage either.
    const inFlight = actor.submit({ key: 'x' });
    await waitFor(() => writer.gates.length === 3, { what: 'a batch in flight' });
    const mixed = [actor.submit({ key: 'bad' }).catch((e: unknown) => e), actor.submit({ key: 'c' })];
    await waitFor(() => actor.queued === 2, { what: 'two commands queued' });
    writer.gates[2]!();
    await inFlight;
    await waitFor(() => writer.gates.length === 4, { what: 'the mixed batch' });
    expect(writer.batches[3]).to.deep.equal([{ key: 'bad' }, { key: 'c' }]);
    const behind = actor.submit({ key: 'e' });
    await waitFor(() => actor.queued === 1, { what: 'a command behind the mixed batch' });
    writer.gates[3]!();
    expect(((await mixed[0]) as AppError).code).to.equal('IDEMPOTENCY_CONFLICT');
    expect(await mixed[1]).to.be.a('number');
    await waitFor(() => writer.gates.length === 5, { what: 'the command behind it written' });
    writer.gates[4]!();
    expect(await behind).to.be.a('number');
  });

  it('is idle only with nothing queued or in flight, and drain() finishes what it accepted', async () => {
    const { writer, actor } = setup();
    expect(actor.idleSince()).to.be.a('number');
    const pending = actor.submit({ key: 'd1' });
    expect(actor.idleSince()).to.equal(undefined);
    await waitFor(() => writer.gates.length === 1);
    const draining = actor.drain();
    expect(((await actor.submit({ key: 'late' }).catch((e: unknown) => e)) as AppError).code).to.equal(
      'OVERLOADED',
    );
    writer.gates[0]!();
    await draining;
    expect(await pending).to.equal(1);
    expect(actor.idleSince()).to.be.a('number');
  });
});
