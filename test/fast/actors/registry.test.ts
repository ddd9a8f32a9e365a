import { expect } from 'chai';
import { ConversationActor, type Outcome } from '../../../actors/ConversationActor.js';
import { ConversationRegistry, type RegistryActor } from '../../../actors/ConversationRegistry.js';
import { AppError } from '../../../lib/errors.js';
import { createLogger } from '../../../lib/logger.js';
import { waitFor } from '../../helpers/waitFor.js';

const logger = createLogger('silent');

class FakeActor implements RegistryActor {
  busy = false;
  drained = false;
  constructor(readonly id: string) {}
  idleSince(): number | undefined {
    return this.busy ? undefined : 0;
  }
  drain(): Promise<void> {
    this.drained = true;
    return Promise.resolve();
  }
}

/** A write function the test releases by hand: every batch waits until `release()`, then gets seqs. */
function gatedWriter() {
  const batches: Array<readonly string[]> = [];
  let open: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  let seq = 0;
  return {
    batches,
    release() {
      open();
    },
    async write(_conversationId: string, keys: readonly string[]): Promise<Array<Outcome<string>>> {
      batches.push(keys);
      await gate;
      return keys.map((key) => {
        seq += 1;
        return { ok: true, value: `${key}@${seq}` };
      });
    },
  };
}

describe('actors/ConversationRegistry', () => {
  const registries: Array<ConversationRegistry<RegistryActor>> = [];
  afterEach(async () => {
    await Promise.all(registries.splice(0).map((r) => r.drain()));
  });

  function registry<A extends RegistryActor>(
    spawn: (id: string) => Promise<A>,
    options: { idleMs?: number; sweepIntervalMs?: number } = {},
  ): ConversationRegistry<A> {
    const r = new ConversationRegistry<A>({ spawn, logger, ...options });
    registries.push(r);
    return r;
  }

  it('spawns once for concurrent callers of the same id (single flight)', async () => {
    let spawns = 0;
    const r = registry(async (id) => {
      spawns += 1;
      await new Promise((resolve) => setTimeout(resolve, 20));
      return new FakeActor(id);
    });
    const actors = await Promise.all(Array.from({ length: 20 }, () => r.get('c1')));
    expect(spawns).to.equal(1);
    expect(new Set(actors).size).to.equal(1);
    expect(r.size).to.equal(1);
    expect(await r.get('c1')).to.equal(actors[0]);
    await r.get('c2');
    expect(spawns).to.equal(2);
  });

  it('keeps nothing when a spawn fails, so the next get tries again', async () => {
    let attempts = 0;
    const r = registry((id) => {
      attempts += 1;
      return attempts === 1 ? Promise.reject(new AppError('NOT_FOUND')) : Promise.resolve(new FakeActor(id));
    });
    const [a, b] = await Promise.allSettled([r.get('c1'), r.get('c1')]);
    expect(a.status).to.equal('rejected');
    expect(b.status).to.equal('rejected');
    expect(attempts).to.equal(1);
    expect(r.size).to.equal(0);
    expect((await r.get('c1')).id).to.equal('c1');
    expect(attempts).to.equal(2);
  });

  it('evicts idle actors and keeps busy ones', async () => {
    const r = registry((id) => Promise.resolve(new FakeActor(id)), { idleMs: 40, sweepIntervalMs: 10 });
    const idle = await r.get('idle');
    const busy = await r.get('busy');
    busy.busy = true;
    await waitFor(() => r.find('idle') === undefined, { what: 'the idle actor to be evicted' });
    expect(r.find('busy')).to.equal(busy);
    busy.busy = false;
    await waitFor(() => r.size === 0, { what: 'the no longer busy actor to be evicted' });
    // A later get spawns a fresh actor.
    expect(await r.get('idle')).not.to.equal(idle);
  });

  it('drain() refuses new work and finishes every send already accepted into a mailbox', async () => {
    const writer = gatedWriter();
    const r = registry((id) =>
      Promise.resolve(
        new ConversationActor<string, string>({
          conversationId: id,
          write: (conversationId, next) => writer.write(conversationId, next.take()),
          logger,
          mailboxCapacity: 10,
        }),
      ),
    );
    const actor = await r.get('c1');
    const sends = ['m1', 'm2', 'm3'].map((key) => actor.submit(key));
    await waitFor(() => writer.batches.length === 1 && actor.queued === 2, {
      what: 'one batch in flight, two queued',
    });
    let drained = false;
    const draining = r.drain().then(() => {
      drained = true;
    });
    const refusedGet = await r.get('c2').catch((err: unknown) => err);
    expect((refusedGet as AppError).code).to.equal('OVERLOADED');
    const refusedSend = await actor.submit('late').catch((err: unknown) => err);
    expect((refusedSend as AppError).code).to.equal('OVERLOADED');
    expect(drained).to.equal(false);
    writer.release();
    const results = await Promise.all(sends);
    await draining;
    expect(results).to.deep.equal(['m1@1', 'm2@2', 'm3@3']);
    // The two that queued behind the first went as one batch.
    expect(writer.batches.map((b) => b.length)).to.deep.equal([1, 2]);
    expect(drained).to.equal(true);
  });
});
