import { expect } from 'chai';
import type { Knex } from 'knex';
import { createRemovals } from '../../lib/messaging/removals.js';

/** A database that answers the participants' read with `row` (or no row), and counts the reads. */
function database(row: { removals: number; participants: string[] } | undefined) {
  const reads: unknown[][] = [];
  const knex = {
    raw(_sql: string, bindings: unknown[]) {
      reads.push(bindings);
      return Promise.resolve({ rows: row === undefined ? [] : [row] });
    },
  };
  return { knex: knex as unknown as Knex, reads };
}

/** What the node was told to keep. */
function notifier() {
  const kept: Array<{ conversationId: string; participants: string[]; removals: number }> = [];
  return {
    kept,
    notify: {
      keepParticipantsOnly(conversationId: string, participants: ReadonlySet<string>, removals: number) {
        kept.push({ conversationId, participants: [...participants].sort(), removals });
      },
    },
  };
}

describe('removals a node has heard of (lib/messaging/removals.ts)', () => {
  it('a write that read no more removals than were heard is delivered at once, with no read', () => {
    const db = database({ removals: 2, participants: ['a'] });
    const { notify, kept } = notifier();
    const removals = createRemovals(db.knex, notify);
    expect(removals.beforeDelivering('c1', 0)).to.equal(undefined);
    removals.heard('c1', 2);
    expect(removals.beforeDelivering('c1', 1)).to.equal(undefined);
    expect(removals.beforeDelivering('c1', 2)).to.equal(undefined);
    // A lower count heard late changes nothing.
    removals.heard('c1', 1);
    expect(removals.beforeDelivering('c1', 2)).to.equal(undefined);
    expect(db.reads).to.have.length(0);
    expect(kept).to.have.length(0);
  });

  it('a write that read a removal not heard of keeps only the participants, once, with the count read with them', async () => {
    // A later removal committed after the write: the participants read are those after it, and so is the count.
    const db = database({ removals: 3, participants: ['b', 'a'] });
    const { notify, kept } = notifier();
    const removals = createRemovals(db.knex, notify);
    removals.heard('c1', 1);
    await removals.beforeDelivering('c1', 2);
    expect(db.reads).to.deep.equal([['c1']]);
    expect(kept).to.deep.equal([{ conversationId: 'c1', participants: ['a', 'b'], removals: 3 }]);
    expect(removals.beforeDelivering('c1', 3)).to.equal(undefined);
    expect(removals.beforeDelivering('c1', 4)).to.not.equal(undefined);
  });

  it('a conversation gone keeps nobody, counted as the write read it', async () => {
    const { knex } = database(undefined);
    const { notify, kept } = notifier();
    const removals = createRemovals(knex, notify);
    await removals.beforeDelivering('gone', 1);
    expect(kept).to.deep.equal([{ conversationId: 'gone', participants: [], removals: 1 }]);
    expect(removals.beforeDelivering('gone', 1)).to.equal(undefined);
  });

  it('a failed read rejects and counts nothing heard: the next write reads again', async () => {
    let fail = true;
    const knex = {
      raw() {
        if (fail) return Promise.reject(new Error('connection lost'));
        return Promise.resolve({ rows: [{ removals: 1, participants: [] }] });
      },
    } as unknown as Knex;
    const { notify, kept } = notifier();
    const removals = createRemovals(knex, notify);
    let error: unknown;
    await removals.beforeDelivering('c1', 1)?.catch((err: unknown) => (error = err));
    expect(error).to.be.instanceOf(Error);
    expect(kept).to.have.length(0);
    fail = false;
    await removals.beforeDelivering('c1', 1);
    expect(kept).to.have.length(1);
  });

  it('past its bound it forgets the conversation counted first, which is read again', async () => {
    const db = database({ removals: 1, participants: [] });
    const { notify } = notifier();
    const removals = createRemovals(db.knex, notify, { maxConversations: 2 });
    removals.heard('a', 1);
    removals.heard('b', 1);
    removals.heard('c', 1);
    expect(removals.beforeDelivering('b', 1)).to.equal(undefined);
    expect(removals.beforeDelivering('c', 1)).to.equal(undefined);
    await removals.beforeDelivering('a', 1);
    expect(db.reads).to.deep.equal([['a']]);
  });
});
