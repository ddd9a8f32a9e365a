import { expect } from 'chai';
import { XFChatError, type ConnectionState, type XFChatClient } from '../../lib/client/index.js';
import { useNode } from '../helpers/nodes.js';
import { waitFor } from '../helpers/waitFor.js';
import { collector, directPair, failure, storedMessages, track, urlOf, useClientPool } from './fixtures.js';

/** Past SOCKET_MAX_BYTES (64 KiB by default): the server closes the connection of a message this long, unanswered. */
const OVERSIZED = 70_000;

/** The SDK client's own Socket.IO socket, to send what the SDK itself no longer sends. */
function rawSocket(client: XFChatClient): {
  emit(event: string, payload: unknown): void;
  on(event: 'connect', listener: () => void): void;
} {
  return (client as unknown as { connection: { socket: ReturnType<typeof rawSocket> } }).connection.socket;
}

/** The states a client goes through from now on. */
function statesOf(client: XFChatClient): ConnectionState[] {
  const states: ConnectionState[] = [];
  client.on('state', (state) => states.push(state));
  return states;
}

/**
 * docs/client.md: input the server would refuse is refused by the SDK before anything is sent, with a final
 * VALIDATION_FAILED (status 0). On the socket this matters beyond the round trip: a message past SOCKET_MAX_BYTES is
 * not answered but closes the connection, which the SDK took for a drop, reconnecting and sending it again for ever
 * (and every later send of the conversation waited behind it).
 */
describe('client SDK: what it sends on the socket is checked first', function () {
  const { server } = useNode();
  const pool = useClientPool();

  it('rejects a send of a body over 4000 characters at once, final (VALIDATION_FAILED, status 0), and the next send of the conversation goes through', async () => {
    const { alice, conversationId } = await directPair(server, pool);
    const a = pool.open(server.url, { token: alice.token });
    await a.connect();
    const states = statesOf(a);
    const oversized = track(a.send(conversationId, 'x'.repeat(OVERSIZED)));
    const next = a.send(conversationId, 'hello');
    // Before the check, the oversized send cut the connection, reconnected and was sent again, and never settled.
    await waitFor(() => oversized.settled(), { timeoutMs: 5000, what: 'the oversized send to settle' });
    expect(oversized.error()).to.include({ code: 'VALIDATION_FAILED', status: 0 });
    expect((await next).body).to.equal('hello');

    // Counted as the server counts: 4000 code points pass (an emoji is two UTF-16 units), 4001 do not.
    const over = await failure(a.send(conversationId, 'y'.repeat(4001)));
    expect([over.code, over.status, over.details]).to.deep.equal([
      'VALIDATION_FAILED',
      0,
      { body: 'must be 1-4000 characters' },
    ]);
    const emoji = await a.send(conversationId, '😀'.repeat(4000));
    expect(emoji.seq).to.equal(2);
    expect(states).to.deep.equal([]);
    expect((await storedMessages(server, conversationId)).map((m) => m.seq)).to.deep.equal([1, 2]);
  });

  it('refuses a conversation id that is not a UUID at once: subscribe() throws, send(), typing() and markRead() reject', async () => {
    const { alice } = await directPair(server, pool);
    const a = pool.open(server.url, { token: alice.token });
    await a.connect();
    const states = statesOf(a);
    const longId = 'z'.repeat(OVERSIZED);
    let thrown: unknown;
    try {
      // Before the check, its subscribe cut the connection at every (re)connection, for ever.
      a.subscribe(longId, () => undefined);
    } catch (err) {
      thrown = err;
    }
    expect(thrown, 'what subscribe() threw')
      .to.be.instanceOf(XFChatError)
      .and.include({ code: 'VALIDATION_FAILED', status: 0 });
    expect(a.subscription(longId)).to.equal(undefined);
    const calls = [
      a.send(longId, 'hello'),
      a.typing(longId),
      a.markRead(longId, 1),
      a.send('not-a-uuid', 'hi'),
    ];
    const outcomes = calls.map((call) => track(call));
    await waitFor(() => outcomes.every((o) => o.settled()), {
      timeoutMs: 5000,
      what: 'every call to settle',
    });
    expect(outcomes.map((o) => (o.error() as { code?: string } | undefined)?.code)).to.deep.equal([
      'VALIDATION_FAILED',
      'VALIDATION_FAILED',
      'VALIDATION_FAILED',
      'VALIDATION_FAILED',
    ]);
    expect(states).to.deep.equal([]);
  });

  it('backs off reconnecting when every connection is cut before anything on it is acknowledged', async () => {
    const { alice } = await directPair(server, pool);
    // A long-enough ceiling for the delays to grow: 100, 200, 400, 800, 1600 ms, each at least half of that.
    const a = pool.open(server.url, { token: alice.token, retryBaseMs: 100, retryMaxMs: 5000 });
    const socket = rawSocket(a);
    // What the SDK no longer sends, sent at every connection: the server closes it as soon as it reads it.
    socket.on('connect', () => socket.emit('typing', { conversationId: 'z'.repeat(OVERSIZED) }));
    const gaps: number[] = [];
    let downAt: number | undefined;
    a.on('state', (state) => {
      if (state === 'reconnecting') downAt = Date.now();
      if (state === 'connected' && downAt !== undefined) gaps.push(Date.now() - downAt);
    });
    await a.connect();
    await waitFor(() => gaps.length >= 5, { timeoutMs: 20_000, what: 'five reconnections' });
    a.close();
    // Without the backoff, each reconnection came after 50-150 ms, however many cuts in a row.
    expect(gaps[4], `gaps ${gaps.join(', ')} ms`).to.be.at.least(1500);
  });
});

/**
 * The server takes a UUID in any case and lower-cases it: every event and answer names the conversation in lower
 * case. The SDK keyed its subscriptions and send queues by the exact string given, so a subscription made with an
 * upper-case id got none of its events, never became ready, and read the history over REST again and again.
 */
describe('client SDK: a conversation id in upper case', function () {
  const { server } = useNode();
  const pool = useClientPool();

  it('delivers to a subscription made with an upper-case id, which becomes ready and is found by either case', async () => {
    const { alice, bob, conversationId } = await directPair(server, pool);
    let reads = 0;
    const counting: typeof fetch = (input, init) => {
      if (urlOf(input).includes('/messages')) reads += 1;
      return fetch(input, init);
    };
    const a = pool.open(server.url, { token: alice.token, fetch: counting });
    const b = pool.open(server.url, { token: bob.token });
    await Promise.all([a.connect(), b.connect()]);
    const upper = conversationId.toUpperCase();
    expect((await b.send(upper, 'before')).conversationId).to.equal(conversationId);

    const got = collector();
    const subscription = a.subscribe(upper, got.onMessage);
    const ready = track(subscription.whenReady());
    await waitFor(() => ready.settled(), { timeoutMs: 5000, what: 'the subscription to be ready' });
    expect(ready.error()).to.equal(undefined);
    expect(a.subscription(conversationId)).to.equal(subscription);
    expect(a.subscription(upper)).to.equal(subscription);
    expect(() => a.subscribe(conversationId, () => undefined))
      .to.throw()
      .with.property('code', 'ALREADY_SUBSCRIBED');

    await b.send(conversationId, 'live');
    await waitFor(() => got.messages.length === 2, { timeoutMs: 5000, what: 'the live message' });
    expect(got.seqs()).to.deep.equal([1, 2]);
    // Caught up by the subscribe's page and the live event: no read over REST.
    expect(reads).to.equal(0);
  });
});
