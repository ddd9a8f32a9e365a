import { expect } from 'chai';
import { ConversationActor } from '../../actors/ConversationActor.js';
import type { ConversationBatch, SendOutcome } from '../../actors/GroupCommitWriter.js';
import { AppError } from '../../lib/errors.js';
import { createLogger } from '../../lib/logger.js';
import type { PublicMessage } from '../../lib/models/Message.js';
import { waitFor } from '../helpers/waitFor.js';

const logger = createLogger('silent');

/** Stores sends in memory like the real writer (seq per conversation, duplicates by clientMsgId), gated by hand. */
function fakeWriter() {
  const stored = new Map<string, PublicMessage>();
  const batches: ConversationBatch[] = [];
  const events: string[] = [];
  const gates: Array<() => void> = [];
  let seq = 0;
  let failNext: AppError | undefined;
  return {
    stored,
    batches,
    events,
    gates,
    failNextWith(error: AppError) {
      failNext = error;
    },
    async write(batch: ConversationBatch): Promise<SendOutcome[]> {
      batches.push(batch);
      await new Promise<void>((resolve) => gates.push(resolve));
      if (failNext) {
        const error = failNext;
        failNext = undefined;
        return batch.sends.map(() => ({ ok: false, error }));
      }
      events.push('commit');
      return batch.sends.map((send): SendOutcome => {
        const existing = stored.get(send.clientMsgId);
        if (existing) return { ok: true, message: existing, duplicate: true };
        seq += 1;
        const message: PublicMessage = {
          id: `id${seq}`,
          conversationId: batch.conversationId,
          seq,
          senderId: send.senderId,
          clientMsgId: send.clientMsgId,
          body: send.body,
          createdAt: new Date().toISOString(),
        };
        stored.set(send.clientMsgId, message);
        return { ok: true, message, duplicate: false };
      });
    },
  };
}

describe('actors/ConversationActor', () => {
  function setup(members: string[] = ['alice', 'bob'], capacity = 100) {
    const writer = fakeWriter();
    const published: PublicMessage[] = [];
    const memberSets = { current: new Set(members), loads: 0 };
    const actor = new ConversationActor({
      conversationId: 'c1',
      writer,
      logger,
      mailboxCapacity: capacity,
      loadMembers: () => {
        memberSets.loads += 1;
        return Promise.resolve(new Set(memberSets.current));
      },
      publish: (message) => {
        writer.events.push(`publish ${message.seq}`);
        published.push(message);
      },
    });
    return { writer, published, actor, memberSets };
  }

  it('writes a lone send at once, and batches the sends that queue behind it', async () => {
    const { writer, actor } = setup();
    const first = actor.send({ senderId: 'alice', clientMsgId: 'a1', body: 'one' });
    await waitFor(() => writer.batches.length === 1, { what: 'the first batch' });
    const rest = ['a2', 'a3', 'a4'].map((id) => actor.send({ senderId: 'bob', clientMsgId: id, body: id }));
    await waitFor(() => actor.queued === 3, { what: 'three queued sends' });
    writer.gates[0]!();
    await first;
    await waitFor(() => writer.batches.length === 2, { what: 'the second batch' });
    expect(writer.batches[1]!.sends.map((s) => s.clientMsgId)).to.deep.equal(['a2', 'a3', 'a4']);
    writer.gates[1]!();
    const results = await Promise.all(rest);
    expect(results.map((r) => r.message.seq)).to.deep.equal([2, 3, 4]);
  });

  it('acks after the commit and broadcasts new messages in seq order, never duplicates', async () => {
    const { writer, actor, published } = setup();
    const first = actor.send({ senderId: 'alice', clientMsgId: 'x', body: 'hi' });
    await waitFor(() => writer.gates.length === 1);
    expect(published).to.have.length(0);
    writer.gates[0]!();
    const result = await first;
    expect(result.duplicate).to.equal(false);
    expect(writer.events).to.deep.equal(['commit', 'publish 1']);
    const again = actor.send({ senderId: 'alice', clientMsgId: 'x', body: 'hi' });
    await waitFor(() => writer.gates.length === 2);
    writer.gates[1]!();
    const replay = await again;
    expect(replay.duplicate).to.equal(true);
    expect(replay.message).to.deep.equal(result.message);
    expect(published.map((m) => m.seq)).to.deep.equal([1]);
  });

  it('answers NOT_FOUND to a non-participant without queueing anything', async () => {
    const { writer, actor } = setup(['alice']);
    const err = await actor
      .send({ senderId: 'mallory', clientMsgId: 'm', body: 'hi' })
      .catch((e: unknown) => e);
    expect((err as AppError).code).to.equal('NOT_FOUND');
    expect(writer.batches).to.have.length(0);
  });

  it('answers OVERLOADED at once when its mailbox is full', async () => {
    const { writer, actor } = setup(['alice'], 2);
    const accepted = [actor.send({ senderId: 'alice', clientMsgId: 'm0', body: 'b' })];
    await waitFor(() => writer.batches.length === 1);
    accepted.push(actor.send({ senderId: 'alice', clientMsgId: 'm1', body: 'b' }));
    accepted.push(actor.send({ senderId: 'alice', clientMsgId: 'm2', body: 'b' }));
    await waitFor(() => actor.queued === 2);
    const err = await actor
      .send({ senderId: 'alice', clientMsgId: 'm3', body: 'b' })
      .catch((e: unknown) => e);
    expect((err as AppError).code).to.equal('OVERLOADED');
    writer.gates[0]!();
    await waitFor(() => writer.gates.length === 2);
    writer.gates[1]!();
    expect((await Promise.all(accepted)).map((r) => r.message.clientMsgId)).to.deep.equal(['m0', 'm1', 'm2']);
  });

  it('rejects every send of a failed batch with its error code and broadcasts nothing', async () => {
    const { writer, actor, published } = setup();
    writer.failNextWith(new AppError('DB_UNAVAILABLE'));
    const send = actor.send({ senderId: 'alice', clientMsgId: 'f', body: 'b' });
    await waitFor(() => writer.gates.length === 1);
    writer.gates[0]!();
    const err = await send.catch((e: unknown) => e);
    expect((err as AppError).code).to.equal('DB_UNAVAILABLE');
    expect(published).to.have.length(0);
  });

  it('caches participants until invalidated, then reads them again', async () => {
    const { actor, memberSets } = setup(['alice']);
    expect(await actor.isMember('alice')).to.equal(true);
    expect(await actor.isMember('bob')).to.equal(false);
    expect(memberSets.loads).to.equal(1);
    memberSets.current.add('bob');
    expect(await actor.isMember('bob')).to.equal(false);
    actor.invalidateMembership();
    expect(await actor.isMember('bob')).to.equal(true);
    expect(memberSets.loads).to.equal(2);
  });

  it('does not cache a participant set that was loading when an invalidation arrived', async () => {
    let release!: (members: Set<string>) => void;
    let loads = 0;
    const actor = new ConversationActor({
      conversationId: 'c1',
      writer: fakeWriter(),
      logger,
      mailboxCapacity: 10,
      loadMembers: () => {
        loads += 1;
        if (loads === 1) return new Promise((resolve) => (release = resolve));
        return Promise.resolve(new Set(['alice', 'bob']));
      },
      publish: () => undefined,
    });
    const stale = actor.isMember('bob');
    actor.invalidateMembership();
    release(new Set(['alice']));
    expect(await stale).to.equal(false);
    // The stale set was not kept: the next check reads again and sees bob.
    expect(await actor.isMember('bob')).to.equal(true);
    expect(loads).to.equal(2);
  });
});
