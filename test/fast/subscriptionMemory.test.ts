import { CatchUpPace } from '../../lib/client/pace.js';
import { expect } from 'chai';
import type { ChangesPage, MessagesApi } from '../../lib/client/api.js';
import type { Connection } from '../../lib/client/connection.js';
import { Emitter } from '../../lib/client/emitter.js';
import { XFChatError } from '../../lib/client/errors.js';
import { Subscription, type SubscribeOptions } from '../../lib/client/subscription.js';
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
      pace: new CatchUpPace(),
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

interface SubscribeAck {
  messages: PublicMessage[];
  lastSeq: number;
  version: number;
}

/** Lets every promise already settled run its continuations (the fakes below answer in microtasks). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i += 1) await new Promise((resolve) => setImmediate(resolve));
}

/**
 * A subscription over a connection that is always up, whose subscribe acks and changes pages wait until the test
 * gives them. `heard` lists what reached the app, in order; `requests` every socket request it made. `inCallback`
 * runs inside each app callback (to unsubscribe from there, say).
 */
function heldAnswers(
  options: Pick<SubscribeOptions, 'afterSeq' | 'sinceVersion'>,
  inCallback: (what: string, subscription: Subscription) => void = () => undefined,
) {
  const heard: string[] = [];
  const requests: string[] = [];
  const acks: Array<(ack: SubscribeAck) => void> = [];
  const pages: Array<(page: ChangesPage) => void> = [];
  const connection = {
    events: new Emitter(),
    connected: true,
    waitConnected: () => Promise.resolve(),
    request: (event: string) => {
      requests.push(event);
      if (event === 'conversation:unsubscribe') return Promise.resolve({ ok: true });
      return new Promise<SubscribeAck>((resolve) => acks.push(resolve));
    },
  };
  const messages = {
    after: () => Promise.reject(new Error('no gap expected')),
    changes: () => new Promise<ChangesPage>((resolve) => pages.push(resolve)),
  };
  const hear = (what: string) => {
    heard.push(what);
    inCallback(what, subscription);
  };
  const subscription: Subscription = new Subscription(
    CONVERSATION,
    (m) => hear(`onMessage ${m.seq}`),
    {
      ...options,
      onUpdate: (m) => hear(`onUpdate ${m.seq} v${m.version}`),
      onReset: (server) => hear(`onReset ${server.lastSeq}`),
      onError: (error) => hear(`onError ${error.code}`),
    },
    {
      connection: connection as unknown as Connection,
      messages: messages as unknown as MessagesApi,
      backoff: { baseMs: 1, maxMs: 1 },
      pace: new CatchUpPace(),
      onEnded: () => undefined,
    },
  );
  return { subscription, heard, requests, acks, pages };
}

describe('client/subscription: nothing reaches the app once it ended', () => {
  it('sends no subscribe when unsubscribe() comes before the catch-up has started', async () => {
    const { subscription, heard, requests } = heldAnswers({});
    await subscription.unsubscribe();
    await settle();
    expect(requests).to.deep.equal(['conversation:unsubscribe']);
    expect(heard).to.deep.equal([]);
  });

  it('drops a subscribe ack that arrives after unsubscribe(): no onReset or onMessage, and no second subscribe', async () => {
    // afterSeq 5 on a conversation whose last seq is 1: a live subscription would start over (onReset, then the
    // newest messages).
    const { subscription, heard, requests, acks } = heldAnswers({ afterSeq: 5 });
    await settle();
    expect(acks).to.have.length(1);
    await subscription.unsubscribe();
    acks[0]!({ messages: [message(1, 1)], lastSeq: 1, version: 1 });
    await settle();
    expect(heard).to.deep.equal([]);
    expect(requests).to.deep.equal(['conversation:subscribe', 'conversation:unsubscribe']);
    expect(subscription.isActive).to.equal(false);
  });

  it('drops a changes page that arrives after the subscription ended with NOT_FOUND: onError once, no onUpdate', async () => {
    // sinceVersion 1 below the ack's version 3: the changes since are read from the feed.
    const { subscription, heard, acks, pages } = heldAnswers({ afterSeq: 1, sinceVersion: 1 });
    await settle();
    acks[0]!({ messages: [], lastSeq: 1, version: 3 });
    await settle();
    expect(pages).to.have.length(1);
    // As at `conversation:removed` while the page is on its way.
    subscription.end(new XFChatError('NOT_FOUND', 'You are no longer a participant of this conversation.'));
    pages[0]!({ messages: [message(1, 3, 'edited')], version: 3, hasMore: false });
    await settle();
    expect(heard).to.deep.equal(['onError NOT_FOUND']);
    const ready = await subscription.whenReady().catch((err: unknown) => err);
    expect(ready).to.be.instanceOf(XFChatError).and.include({ code: 'NOT_FOUND' });
  });

  it('hands over nothing more of a page once the app unsubscribes from its own onUpdate', async () => {
    const { subscription, heard, acks, pages } = heldAnswers(
      { afterSeq: 2, sinceVersion: 2 },
      (what, sub) => {
        if (what.startsWith('onUpdate')) void sub.unsubscribe();
      },
    );
    await settle();
    acks[0]!({ messages: [], lastSeq: 2, version: 4 });
    await settle();
    pages[0]!({ messages: [message(1, 3, 'edited'), message(2, 4, 'edited')], version: 4, hasMore: false });
    await settle();
    expect(heard).to.deep.equal(['onUpdate 1 v3']);
    expect(subscription.isActive).to.equal(false);
  });

  it('subscribes no more once the app unsubscribes from its own onReset', async () => {
    const { heard, requests, acks } = heldAnswers({ afterSeq: 5 }, (what, sub) => {
      if (what.startsWith('onReset')) void sub.unsubscribe();
    });
    await settle();
    acks[0]!({ messages: [message(1, 1)], lastSeq: 1, version: 1 });
    await settle();
    expect(heard).to.deep.equal(['onReset 1']);
    expect(requests).to.deep.equal(['conversation:subscribe', 'conversation:unsubscribe']);
  });
});
