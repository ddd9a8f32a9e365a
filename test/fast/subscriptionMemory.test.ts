import { expect } from 'chai';
import type { MessagesApi } from '../../lib/client/api.js';
import type { Connection } from '../../lib/client/connection.js';
import { Emitter } from '../../lib/client/emitter.js';
import { Subscription } from '../../lib/client/subscription.js';
import type { PublicMessage } from '../../lib/protocol/index.js';

const CONVERSATION = '00000000-0000-4000-8000-000000000001';

function message(seq: number, version: number, body = `m${seq}`): PublicMessage {
  return {
    id: `id-${seq}`,
    conversationId: CONVERSATION,
    seq,
    senderId: null,
    clientMsgId: `c-${seq}`,
    body,
    createdAt: new Date(0).toISOString(),
    replyToSeq: null,
    editedAt: null,
    deletedAt: null,
    reactions: [],
    version,
  };
}

/**
 * A subscription over a connection that is always up and answers the subscribe with `lastSeq`/`version` and no
 * page (as for `afterSeq: lastSeq`); REST is never needed while events arrive in order.
 */
async function subscribed(lastSeq: number, version: number) {
  const delivered: PublicMessage[] = [];
  const updates: PublicMessage[] = [];
  const connection = {
    events: new Emitter(),
    connected: true,
    waitConnected: () => Promise.resolve(),
    request: (event: string) => {
      if (event !== 'conversation:subscribe') throw new Error(`unexpected ${event}`);
      return Promise.resolve({ messages: [], lastSeq, version });
    },
  };
  const messages = {
    after: () => Promise.reject(new Error('no gap expected')),
    changes: () => Promise.reject(new Error('no feed read expected')),
  };
  const subscription = new Subscription(
    CONVERSATION,
    (m) => delivered.push(m),
    { afterSeq: lastSeq, onUpdate: (m) => updates.push(m) },
    {
      connection: connection as unknown as Connection,
      messages: messages as unknown as MessagesApi,
      backoff: { baseMs: 1, maxMs: 1 },
      onEnded: () => undefined,
    },
  );
  await subscription.whenReady();
  /** How many message states the subscription remembers (its `known` map). */
  const remembered = () => (subscription as unknown as { known: Map<number, number> }).known.size;
  return { subscription, delivered, updates, remembered };
}

describe('client/subscription: what a long-lived subscription remembers', () => {
  it('stays bounded over 50,000 new messages and their edits, and delivers each message and each new state once', async () => {
    const { subscription, delivered, updates, remembered } = await subscribed(0, 0);
    let version = 0;
    let peak = 0;
    for (let seq = 1; seq <= 50_000; seq += 1) {
      subscription.handleNew(message(seq, ++version));
      // Every tenth message is edited right away.
      if (seq % 10 === 0) subscription.handleUpdated(message(seq, ++version, 'edited'));
      peak = Math.max(peak, remembered());
    }
    expect(delivered.map((m) => m.seq)).to.deep.equal(Array.from({ length: 50_000 }, (_, i) => i + 1));
    expect(updates).to.have.length(5_000);
    expect(subscription.version).to.equal(version);
    expect(peak).to.be.below(2_100);
    subscription.end(undefined);
  });

  it('after forgetting, still drops old and repeated states and hands over a new one once', async () => {
    const { subscription, delivered, updates, remembered } = await subscribed(0, 0);
    let version = 0;
    for (let seq = 1; seq <= 5_000; seq += 1) subscription.handleNew(message(seq, ++version));
    expect(remembered()).to.be.below(1_100);
    // Message 3's first state again (a late event), then a state of message 3 at or below what was handed over.
    subscription.handleNew(message(3, 3));
    subscription.handleUpdated(message(3, 3, 'stale'));
    expect(delivered).to.have.length(5_000);
    expect(updates).to.have.length(0);
    // A new edit of message 3: handed over once, however often it arrives; an older one after it is dropped.
    const edit = message(3, ++version, 'edited');
    subscription.handleUpdated(edit);
    subscription.handleUpdated(edit);
    subscription.handleUpdated(message(3, version - 1, 'older'));
    expect(updates).to.deep.equal([edit]);
    subscription.end(undefined);
  });

  it('keeps a change made before subscribing to an older message: a staler one of it is still dropped', async () => {
    // Subscribed at version 100 after seq 50: a change at version 90 of message 10, made before subscribing, is
    // handed over; the same message's version 80 arriving later (after many messages) is older and dropped.
    const { subscription, updates } = await subscribed(50, 100);
    const before = message(10, 90, 'edited before subscribing');
    subscription.handleUpdated(before);
    let version = 100;
    for (let seq = 51; seq <= 3_050; seq += 1) subscription.handleNew(message(seq, ++version));
    subscription.handleUpdated(message(10, 80, 'older'));
    // A change before subscribing to another older message was never handed over: it still is.
    const other = message(11, 85, 'other edit before subscribing');
    subscription.handleUpdated(other);
    expect(updates).to.deep.equal([before, other]);
    subscription.end(undefined);
  });
});
