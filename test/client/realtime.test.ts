import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import {
  isRetryable,
  XFChatError,
  type ConnectionState,
  type PublicMessage,
  type XFChatClient,
} from '../../lib/client/index.js';
import { useNode } from '../helpers/nodes.js';
import { useProxies, type FaultProxy } from '../helpers/proxy.js';
import { startTestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/waitFor.js';
import { collector, directPair, failure, useClientPool } from './fixtures.js';

/** What a subscription hands over: messages (to onMessage), the seqs of updates, and its start-overs (onReset). */
function startOverWatch() {
  const got = collector();
  const updates: number[] = [];
  const resets: Array<{ lastSeq: number; version: number }> = [];
  const options = {
    onUpdate: (m: PublicMessage) => updates.push(m.seq),
    onReset: (state: { lastSeq: number; version: number }) => resets.push(state),
  };
  return { got, updates, resets, options };
}

/**
 * A fetch that holds its answers to `GET .../changes` until release(): the server has read the page, and the client
 * gets it whenever the test says.
 */
function heldChanges() {
  const held: Array<() => void> = [];
  let holding = true;
  let answered = 0;
  let handedOver = 0;
  const holdingFetch: typeof fetch = async (input, init) => {
    const response = await fetch(input, init);
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    if (holding && url.includes('/changes')) {
      answered += 1;
      // Read whole now: once handed over, the client has it in memory and nothing of the network is left to wait for.
      const body = await response.arrayBuffer();
      await new Promise<void>((resolve) => held.push(resolve));
      handedOver += 1;
      return new Response(body, { status: response.status, headers: response.headers });
    }
    return response;
  };
  const release = () => {
    holding = false;
    for (const resolve of held.splice(0)) resolve();
  };
  /** Resolves once every held page has been handed to the client, and the client has had time to take it in. */
  const handedOverAll = async () => {
    await waitFor(() => handedOver === answered, { what: 'the held pages to be handed over' });
    await new Promise((resolve) => setTimeout(resolve, 100));
  };
  return { fetch: holdingFetch, answered: () => answered, release, handedOverAll };
}

describe('client SDK: realtime', function () {
  const node = useNode();
  const { server } = node;
  const pool = useClientPool();
  const proxies = useProxies();

  it('connects, subscribes, and delivers live messages in order to both sides', async () => {
    const { alice, bob, conversationId } = await directPair(server, pool);
    const a = pool.open(server.url, { token: alice.token });
    const b = pool.open(server.url, { token: bob.token });
    const states: ConnectionState[] = [];
    a.on('state', (state) => states.push(state));
    await Promise.all([a.connect(), b.connect()]);
    expect(states).to.deep.equal(['connecting', 'connected']);

    const atA = collector();
    const atB = collector();
    await a.subscribe(conversationId, atA.onMessage).whenReady();
    await b.subscribe(conversationId, atB.onMessage).whenReady();
    const sent = [await a.send(conversationId, 'hi bob'), await b.send(conversationId, 'hi alice')];
    expect(sent.map((m) => m.seq)).to.deep.equal([1, 2]);
    await waitFor(() => atA.messages.length === 2 && atB.messages.length === 2, {
      what: 'both messages at both',
    });
    expect(atA.messages).to.deep.equal(sent);
    expect(atB.messages).to.deep.equal(sent);
  });

  it('rejects a typing() on its way at close() with CLIENT_CLOSED, not a retryable DISCONNECTED', async () => {
    const { alice, conversationId } = await directPair(server, pool);
    const proxy = await proxies.start(server.url);
    const a = pool.open(proxy.url, { token: alice.token });
    await a.connect();
    // The ack does not come back yet.
    proxy.hold('downstream');
    const typing = a.typing(conversationId);
    await new Promise((resolve) => setTimeout(resolve, 100));
    a.close();
    const error = await failure(typing);
    expect({ code: error.code, retryable: isRetryable(error) }).to.deep.equal({
      code: 'CLIENT_CLOSED',
      retryable: false,
    });
  });

  it('refuses a bad token: connect() rejects UNAUTHORIZED and the state is disconnected', async () => {
    const client = pool.open(server.url, { token: 'not-a-token' });
    let error: unknown;
    await client.connect().catch((err: unknown) => (error = err));
    expect(error).to.be.instanceOf(XFChatError);
    expect(error).to.include({ code: 'UNAUTHORIZED', status: 401 });
    expect(client.state).to.equal('disconnected');
  });

  it('fills a gap over REST, ignores duplicates, and delivers in seq order exactly once', async () => {
    const { alice, bob, conversationId } = await directPair(server, pool);
    const a = pool.open(server.url, { token: alice.token });
    const b = pool.open(server.url, { token: bob.token });
    await Promise.all([a.connect(), b.connect()]);
    const atA = collector();
    const subscription = a.subscribe(conversationId, atA.onMessage);
    await subscription.whenReady();
    const first = await b.send(conversationId, 'first');
    await waitFor(() => atA.messages.length === 1, { what: 'the first message' });

    // Messages 2 and 3 are committed without any event (as if their broadcasts were lost) ...
    const { knex } = server.services.db;
    await knex('messages').insert(
      [2, 3].map((seq) => ({
        conversation_id: conversationId,
        sender_id: bob.id,
        seq,
        client_msg_id: `lost-${seq}`,
        body: `lost ${seq}`,
      })),
    );
    await knex('conversations').where({ id: conversationId }).update({ last_seq: 3 });
    // ... an old one is broadcast again (a duplicate) ...
    server.services.notify.messagesCommitted([first]);
    // ... and message 4 arrives live: seq 4 after 1 is a gap.
    const fourth = await b.send(conversationId, 'fourth');
    expect(fourth.seq).to.equal(4);

    await waitFor(() => atA.messages.length >= 4, { what: 'the gap filled' });
    await subscription.whenReady();
    expect(atA.seqs()).to.deep.equal([1, 2, 3, 4]);
    expect(atA.messages.map((m) => m.body)).to.deep.equal(['first', 'lost 2', 'lost 3', 'fourth']);
    expect(subscription.lastSeq).to.equal(4);
  });

  /** Alice connected through a proxy (to cut her off), Bob straight; `atA` collects what Alice's subscription gets. */
  async function aliceBehindProxy() {
    const { alice, bob, conversationId } = await directPair(server, pool);
    const proxy = await proxies.start(server.url);
    const a = pool.open(proxy.url, { token: alice.token });
    const b = pool.open(server.url, { token: bob.token });
    await Promise.all([a.connect(), b.connect()]);
    return { a, b, proxy, conversationId, atA: collector() };
  }

  /** Alice's connection goes; Bob sends three messages while she is reconnecting. */
  async function sentWhileAway(a: XFChatClient, b: XFChatClient, proxy: FaultProxy, conversationId: string) {
    await proxy.stop();
    await waitFor(() => a.state === 'reconnecting', { what: 'the reconnecting state' });
    for (const body of ['away 1', 'away 2', 'away 3']) await b.send(conversationId, body);
  }

  it('re-subscribes after a reconnect and catches up on what was sent while it was away', async () => {
    const { a, b, proxy, conversationId, atA } = await aliceBehindProxy();
    await a.subscribe(conversationId, atA.onMessage).whenReady();
    await b.send(conversationId, 'before');
    await waitFor(() => atA.messages.length === 1, { what: 'the first message' });

    await sentWhileAway(a, b, proxy, conversationId);
    expect(atA.messages).to.have.length(1);
    await proxy.start();

    await waitFor(() => atA.messages.length === 4, { what: 'the catch-up' });
    await b.send(conversationId, 'after');
    await waitFor(() => atA.messages.length === 5, { what: 'live again' });
    expect(atA.messages.map((m) => m.body)).to.deep.equal(['before', 'away 1', 'away 2', 'away 3', 'after']);
    expect(atA.seqs()).to.deep.equal([1, 2, 3, 4, 5]);
  });

  it('answers whenReady() while the connection is down only once it is back and caught up', async () => {
    const { a, b, proxy, conversationId, atA } = await aliceBehindProxy();
    const sub = a.subscribe(conversationId, atA.onMessage);
    await sub.whenReady();

    await sentWhileAway(a, b, proxy, conversationId);
    let readyAt: number | undefined;
    const ready = sub.whenReady().then(() => (readyAt = sub.lastSeq ?? -1));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(readyAt, 'answered while offline').to.equal(undefined);
    await proxy.start();
    await ready;
    expect(readyAt).to.equal(3);
  });

  // READY: whenReady() called once the connection is back but while the re-subscribe's ack was still on its way
  // resolved at once (the first subscription's `last` was set and `needSubscribe` cleared before the request went
  // out): the app was told "caught up" before the messages sent while it was away had reached it.
  it('answers whenReady() called during the re-subscribe after a reconnection only once that subscribe has caught up', async () => {
    const { a, b, proxy, conversationId, atA } = await aliceBehindProxy();
    const sub = a.subscribe(conversationId, atA.onMessage);
    await sub.whenReady();
    await b.send(conversationId, 'before');
    await waitFor(() => atA.messages.length === 1, { what: 'the first message' });

    await sentWhileAway(a, b, proxy, conversationId);
    // Back: the app hears 'connected'; what the node answers from then on (the re-subscribe's ack) is held on its way.
    const off = a.on('state', (state) => {
      if (state === 'connected') proxy.hold('downstream');
    });
    await proxy.start();
    await waitFor(() => a.state === 'connected', { what: 'the reconnection' });
    off();
    await new Promise((resolve) => setTimeout(resolve, 100));

    let deliveredAtReady: number | undefined;
    const ready = sub.whenReady().then(() => (deliveredAtReady = atA.messages.length));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(deliveredAtReady, 'answered while the re-subscribe was on its way').to.equal(undefined);
    proxy.release();
    await ready;
    expect(deliveredAtReady, 'messages delivered when whenReady() resolved').to.equal(4);
    expect(atA.messages.map((m) => m.body)).to.deep.equal(['before', 'away 1', 'away 2', 'away 3']);
  });

  it('starts a subscription from afterSeq, or from the newest page without it', async () => {
    const { alice, conversationId } = await directPair(server, pool);
    const a = pool.open(server.url, { token: alice.token });
    for (let i = 1; i <= 6; i++) await a.messages.put(conversationId, `pre-${i}`, `pre ${i}`);
    await a.connect();
    const fromFour = collector();
    const sub = a.subscribe(conversationId, fromFour.onMessage, { afterSeq: 4 });
    await sub.whenReady();
    expect(fromFour.seqs()).to.deep.equal([5, 6]);
    await sub.unsubscribe();

    const newest = collector();
    await a.subscribe(conversationId, newest.onMessage, { limit: 3 }).whenReady();
    expect(newest.seqs()).to.deep.equal([4, 5, 6]);
    // Catching up from afterSeq with more than one page: the rest comes over REST, still in order.
    await a.subscription(conversationId)!.unsubscribe();
    const paged = collector();
    await a.subscribe(conversationId, paged.onMessage, { afterSeq: 0, limit: 2 }).whenReady();
    expect(paged.seqs()).to.deep.equal([1, 2, 3, 4, 5, 6]);
  });

  it('starts over when afterSeq is beyond the conversation’s last seq: onReset with the server’s state, then the newest messages', async () => {
    const { alice, conversationId } = await directPair(server, pool);
    const a = pool.open(server.url, { token: alice.token });
    for (let i = 1; i <= 3; i++) await a.messages.put(conversationId, `pre-${i}`, `pre ${i}`);
    await a.connect();
    const { got, updates, resets, options } = startOverWatch();
    const sub = a.subscribe(conversationId, got.onMessage, { afterSeq: 100, ...options });
    await sub.whenReady();
    expect(resets).to.deep.equal([{ lastSeq: 3, version: 3 }]);
    expect(got.seqs()).to.deep.equal([1, 2, 3]);
    expect(sub.lastSeq).to.equal(3);
    await a.send(conversationId, 'after');
    await waitFor(() => got.messages.length === 4, { what: 'the new message' });
    expect(got.seqs()).to.deep.equal([1, 2, 3, 4]);
    expect(updates).to.deep.equal([]);
    expect(sub.version).to.equal(4);
    // A sinceVersion beyond the conversation's version is a store ahead of the server too.
    await sub.unsubscribe();
    const again = startOverWatch();
    await a
      .subscribe(conversationId, again.got.onMessage, { afterSeq: 4, sinceVersion: 40, ...again.options })
      .whenReady();
    expect(again.resets).to.deep.equal([{ lastSeq: 4, version: 4 }]);
    expect(again.got.seqs()).to.deep.equal([1, 2, 3, 4]);
  });

  it('starts over when its server lost what it delivered (a restore to an earlier point): new seqs go to onMessage, not onUpdate', async () => {
    const { alice, bob, conversationId } = await directPair(server, pool);
    // Alice's node is restarted on the restored database, as operators do; Bob writes through the suite's node.
    let alicesNode = await startTestServer(node.databaseUrl);
    try {
      const a = pool.open(alicesNode.url, { token: alice.token });
      const b = pool.open(server.url, { token: bob.token });
      await Promise.all([a.connect(), b.connect()]);
      const { got, updates, resets, options } = startOverWatch();
      const sub = a.subscribe(conversationId, got.onMessage, { afterSeq: 0, ...options });
      await sub.whenReady();
      for (let i = 1; i <= 5; i++) await b.send(conversationId, `before ${i}`);
      await waitFor(() => got.messages.length === 5, { what: 'five messages' });
      const { port } = alicesNode;
      await alicesNode.close();
      // The database as a restore to an earlier point leaves it: messages 3-5 and their versions never happened.
      const { knex } = server.services.db;
      await knex('messages').where({ conversation_id: conversationId }).where('seq', '>', 2).delete();
      await knex('conversations').where({ id: conversationId }).update({ last_seq: 2, version: 2 });
      alicesNode = await startTestServer(node.databaseUrl, { PORT: String(port) });
      await waitFor(() => resets.length === 1, { what: 'the subscription to start over' });
      expect(resets).to.deep.equal([{ lastSeq: 2, version: 2 }]);
      await sub.whenReady();
      expect(got.messages.slice(5).map((m) => m.body)).to.deep.equal(['before 1', 'before 2']);
      const next = await b.send(conversationId, 'after the restore');
      expect(next.seq).to.equal(3);
      await waitFor(() => got.messages.at(-1)?.body === 'after the restore', { what: 'the new seq 3' });
      expect(updates).to.deep.equal([]);
      expect(sub.lastSeq).to.equal(3);
      expect(sub.version).to.equal(3);
    } finally {
      await alicesNode.close();
    }
  });

  it('rejects whenReady() of a subscription made before a connect() refused for want of a login, and carries on after one', async () => {
    const { alice, conversationId } = await directPair(server, pool);
    const client = pool.open(server.url);
    const errors: string[] = [];
    const got = collector();
    const sub = client.subscribe(conversationId, got.onMessage, { onError: (err) => errors.push(err.code) });
    const ready = sub.whenReady().catch((err: unknown) => err);
    const refused = await client.connect().catch((err: unknown) => err);
    expect(refused).to.be.instanceOf(XFChatError).and.include({ code: 'UNAUTHORIZED' });
    expect((refused as XFChatError).message)
      .to.match(/log/i)
      .and.not.match(/session has ended/);
    expect(await ready)
      .to.be.instanceOf(XFChatError)
      .and.include({ code: 'UNAUTHORIZED' });
    expect(errors).to.deep.equal([]);
    expect(sub.isActive).to.equal(true);
    // Signed in and connected, the same subscription starts.
    client.token = alice.token;
    await client.connect();
    await sub.whenReady();
    await client.send(conversationId, 'now signed in');
    await waitFor(() => got.messages.length === 1, { what: 'the message' });
  });

  it('ends a subscription with NOT_FOUND for a conversation the user is not in', async () => {
    const { alice } = await directPair(server, pool);
    const a = pool.open(server.url, { token: alice.token });
    await a.connect();
    const errors: XFChatError[] = [];
    const subscription = a.subscribe(randomUUID(), () => undefined, { onError: (err) => errors.push(err) });
    const outcome = await subscription.whenReady().catch((err: unknown) => err);
    expect(outcome).to.be.instanceOf(XFChatError).and.include({ code: 'NOT_FOUND' });
    expect(errors.map((e) => e.code)).to.deep.equal(['NOT_FOUND']);
    expect(subscription.isActive).to.equal(false);
  });

  it('ends the subscription of a participant who is removed, and tells the app', async () => {
    const { alice, bob } = await directPair(server, pool);
    const a = pool.open(server.url, { token: alice.token });
    const b = pool.open(server.url, { token: bob.token });
    await Promise.all([a.connect(), b.connect()]);
    const added: string[] = [];
    b.on('conversation:added', (conversation) => added.push(conversation.id));
    const group = await a.conversations.createGroup('Book club', [bob.id]);
    await waitFor(() => added.includes(group.id), { what: 'conversation:added at bob' });

    const errors: string[] = [];
    const removed: string[] = [];
    b.on('conversation:removed', (event) => removed.push(event.conversationId));
    const subscription = b.subscribe(group.id, () => undefined, { onError: (err) => errors.push(err.code) });
    await subscription.whenReady();
    await a.conversations.removeParticipant(group.id, bob.id);
    await waitFor(() => removed.includes(group.id), { what: 'conversation:removed at bob' });
    expect(subscription.isActive).to.equal(false);
    expect(errors).to.deep.equal(['NOT_FOUND']);
    expect(b.subscription(group.id)).to.equal(undefined);
  });

  /**
   * Alice's subscription (its changes pages held) to a conversation whose message 1 was edited after the version it
   * resumes from, once the page bringing that edit has been read by the server.
   */
  async function subscribedWithEditOnItsWay() {
    const { alice, bob, conversationId } = await directPair(server, pool);
    const b = pool.open(server.url, { token: bob.token });
    const first = await b.messages.put(conversationId, 'c1', 'hello');
    const { version: sinceVersion } = await b.messages.changes(conversationId, 0);
    await b.messages.edit(conversationId, first.seq, 'hello, edited');
    const gate = heldChanges();
    const a = pool.open(server.url, { token: alice.token, fetch: gate.fetch });
    await a.connect();
    const updates: string[] = [];
    const subscription = a.subscribe(conversationId, () => undefined, {
      afterSeq: first.seq,
      sinceVersion,
      onUpdate: (m) => updates.push(m.body),
    });
    await waitFor(() => gate.answered() > 0, { what: 'the changes page to be read' });
    return { a, subscription, gate, updates };
  }

  it('calls onUpdate no more after unsubscribe(), even with a changes page read before it', async () => {
    const { subscription, gate, updates } = await subscribedWithEditOnItsWay();
    await subscription.unsubscribe();
    expect(subscription.isActive).to.equal(false);
    gate.release();
    // A subscription that took the page in would hand the edit over: wait until it has the page, however slow the
    // machine (a fixed 300 ms from the release passed without looking when the page came later).
    await gate.handedOverAll();
    expect(updates).to.deep.equal([]);
  });

  it('hands nothing of the ended session to onUpdate after logout(), even a changes page read before it', async () => {
    const { a, subscription, gate, updates } = await subscribedWithEditOnItsWay();
    await a.logout();
    expect(subscription.isActive).to.equal(false);
    gate.release();
    await gate.handedOverAll();
    expect(updates).to.deep.equal([]);
  });

  it('chats live between two nodes: alice on one, bob on the other', async () => {
    const second = await startTestServer(node.databaseUrl);
    try {
      const { alice, bob, conversationId } = await directPair(server, pool);
      const a = pool.open(server.url, { token: alice.token });
      const b = pool.open(second.url, { token: bob.token });
      await Promise.all([a.connect(), b.connect()]);
      const atA = collector();
      const atB = collector();
      await a.subscribe(conversationId, atA.onMessage).whenReady();
      await b.subscribe(conversationId, atB.onMessage).whenReady();
      const typing: string[] = [];
      b.on('typing', (event) => typing.push(event.userId));

      await a.typing(conversationId);
      const sent: PublicMessage[] = [];
      for (let i = 0; i < 5; i++) sent.push(await (i % 2 === 0 ? a : b).send(conversationId, `msg ${i}`));
      await waitFor(() => atA.messages.length === 5 && atB.messages.length === 5, { what: 'all messages' });
      expect(atA.messages).to.deep.equal(sent);
      expect(atB.messages).to.deep.equal(sent);
      // typing and message:new take different cross-node paths: neither waits for the other.
      await waitFor(() => typing.length === 1, { what: 'typing on node B' });
      expect(typing).to.deep.equal([alice.id]);
    } finally {
      pool.closeAll();
      await second.close();
    }
  });

  it('disconnects on logout and reports the refused token on the next attempt', async () => {
    const { alice } = await directPair(server, pool);
    const a = pool.open(server.url, { token: alice.token });
    const other = pool.open(server.url, { token: alice.token });
    await Promise.all([a.connect(), other.connect()]);
    const refused: string[] = [];
    other.on('unauthorized', (err) => refused.push(err.code));

    await a.logout();
    expect(a.state).to.equal('disconnected');
    // The server drops the user's other sockets; the SDK tries once more and hears UNAUTHORIZED.
    await waitFor(() => refused.length === 1, { what: 'the refused token' });
    expect(other.state).to.equal('disconnected');
  });
});

describe('client SDK: a connection the server refuses', function () {
  const { server } = useNode({ env: { MAX_SOCKETS_PER_USER: '1' } });
  const pool = useClientPool();

  it('tells why at each refused try (connectRefused: the server’s code and message), keeps trying, and connects once it may', async () => {
    const { alice } = await directPair(server, pool);
    const first = pool.open(server.url, { token: alice.token });
    await first.connect();
    const second = pool.open(server.url, { token: alice.token });
    const states: ConnectionState[] = [];
    const refusals: XFChatError[] = [];
    second.on('state', (state) => states.push(state));
    second.on('connectRefused', (err) => refusals.push(err));
    const connected = second.connect();
    await waitFor(() => refusals.length >= 2, { what: 'two refused tries' });
    expect(refusals[0]).to.be.instanceOf(XFChatError).and.include({
      code: 'RATE_LIMITED',
      status: 429,
      message: 'Too many connections for this user.',
    });
    expect(second.state).to.equal('connecting');

    // One of the user's sockets closes: the next try gets through.
    first.close();
    await connected;
    expect(states).to.deep.equal(['connecting', 'connected']);
  });
});

type Listener = (...args: never[]) => void;

/** The SDK client's own Socket.IO socket: what the server still pushes to it, what the client emits on it. */
function rawSocket(client: XFChatClient): {
  on(event: string, listener: Listener): void;
  off(event: string): void;
  listeners(event: string): Listener[];
  emit(event: string, ...args: unknown[]): unknown;
} {
  return (client as unknown as { connection: { socket: ReturnType<typeof rawSocket> } }).connection.socket;
}

/** Every event the client emits from now on, with the code of the server's refusal when it answered one. */
function emitsOf(client: XFChatClient): Array<{ event: string; refused?: string }> {
  const socket = rawSocket(client);
  const emit = socket.emit.bind(socket);
  const emits: Array<{ event: string; refused?: string }> = [];
  socket.emit = (event: string, ...args: unknown[]) => {
    const entry: { event: string; refused?: string } = { event };
    emits.push(entry);
    const ack = args.at(-1);
    if (typeof ack === 'function') {
      // The ack socket.io calls with the answer (after an error slot when it has a timeout, as the SDK's do).
      const seen = (...answer: unknown[]) => {
        const body = answer.at(-1) as { ok?: boolean; error?: { code?: string } } | undefined;
        if (body?.ok === false) entry.refused = body.error?.code;
        return (ack as (...a: unknown[]) => unknown)(...answer);
      };
      args[args.length - 1] = Object.assign(seen, { withError: (ack as { withError?: boolean }).withError });
    }
    return emit(event, ...args);
  };
  return emits;
}

/**
 * Holds the `conversation:removed` events the client's socket receives, as if still on their way, until release()
 * hands them to the client.
 */
function holdRemovals(client: XFChatClient): { held: unknown[]; release: () => void } {
  const socket = rawSocket(client);
  const listeners = socket.listeners('conversation:removed');
  const held: unknown[] = [];
  socket.off('conversation:removed');
  socket.on('conversation:removed', (event: never) => held.push(event));
  const release = () => {
    socket.off('conversation:removed');
    for (const listener of listeners) socket.on('conversation:removed', listener);
    for (const event of held.splice(0)) for (const listener of listeners) listener(event as never);
  };
  return { held, release };
}

/** What a promise came to: `resolved`, or `rejected CODE`. */
function outcomeOf(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => 'resolved',
    (err: unknown) => `rejected ${(err as XFChatError).code}`,
  );
}

/**
 * docs/client.md: `unsubscribe()` stops the subscription, and the server stops sending its events. A refusal for now
 * (RATE_LIMITED: the socket's event budget is spent) ended the subscription all the same and rejected: a second
 * unsubscribe() sent nothing, and the server kept pushing the conversation to the socket for as long as it lived.
 */
describe('client SDK: an unsubscribe the server refuses for now', function () {
  // One event a second per socket, bursts of two.
  const { server } = useNode({ env: { SOCKET_EVENTS_PER_SEC: '1' } });
  const pool = useClientPool();

  /** Spends the event budget of the client's socket (typing is the cheapest event) until the server refuses one. */
  async function spendBudget(client: XFChatClient, conversationId: string): Promise<void> {
    let refusal: string | undefined;
    for (let i = 0; i < 10 && refusal === undefined; i++)
      refusal = await client.typing(conversationId).then(
        () => undefined,
        (err: unknown) => (err as XFChatError).code,
      );
    expect(refusal).to.equal('RATE_LIMITED');
  }

  /** Alice subscribed to her conversation with Bob, her socket's event budget spent. */
  async function subscribedOutOfBudget() {
    const { alice, bob, conversationId } = await directPair(server, pool);
    const a = pool.open(server.url, { token: alice.token });
    const b = pool.open(server.url, { token: bob.token });
    await Promise.all([a.connect(), b.connect()]);
    const subscription = a.subscribe(conversationId, () => undefined);
    await subscription.whenReady();
    await spendBudget(a, conversationId);
    const pushed: number[] = [];
    rawSocket(a).on('message:new', (m: PublicMessage) => pushed.push(m.seq));
    return { a, b, conversationId, subscription, pushed };
  }

  it('retries it until the server confirms: unsubscribe() resolves, and nothing more is pushed to the socket', async () => {
    const { b, conversationId, subscription, pushed } = await subscribedOutOfBudget();
    // Before, it rejected with the server's RATE_LIMITED, the subscription ended all the same.
    const outcome = await subscription.unsubscribe().then(
      () => 'resolved',
      (err: unknown) => `rejected ${(err as XFChatError).code}`,
    );
    expect(outcome).to.equal('resolved');
    expect(subscription.isActive).to.equal(false);

    // Bob's own subscription hears the message from the same room: by then, a push to Alice's socket was on its way.
    const atB = collector();
    await b.subscribe(conversationId, atB.onMessage).whenReady();
    await b.send(conversationId, 'after the unsubscribe');
    await waitFor(() => atB.messages.length === 1, { what: 'the message at bob' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(pushed).to.deep.equal([]);
  });

  /**
   * The unsubscribe is emitted at once, and the new subscription made before its refusal comes back: once refused,
   * the retry must not go out (it would take the socket out of the room the new subscribe joins). Checked on what
   * the client emits, not on what the server does in the end: the new subscribe, refused for the spent budget too,
   * is retried as well, and may join after a stray unsubscribe as well as before it.
   */
  it('never undoes a subscribe made again while it waits to retry: the new subscription gets the conversation live', async () => {
    const { a, b, conversationId, subscription, pushed } = await subscribedOutOfBudget();
    const emits = emitsOf(a);
    const unsubscribing = subscription.unsubscribe();
    const got = collector();
    const again = a.subscribe(conversationId, got.onMessage);
    await again.whenReady();
    await unsubscribing;
    expect(emits.filter((e) => e.event === 'conversation:unsubscribe')).to.deep.equal([
      { event: 'conversation:unsubscribe', refused: 'RATE_LIMITED' },
    ]);
    await b.send(conversationId, 'to the new subscription');
    await waitFor(() => got.messages.length === 1, { what: 'the message at the new subscription' });
    expect(pushed).to.deep.equal([1]);
  });

  /**
   * Alice was removed from the group while her unsubscribe waited to be retried (its `conversation:removed` still
   * on its way): the retry is answered NOT_FOUND, as the server takes the socket out of the room before it checks
   * the membership. The unsubscribe is done all the same; it rejected NOT_FOUND.
   */
  it('resolves when the user was removed from the conversation before the retry (NOT_FOUND: the socket is out)', async () => {
    const { alice, bob, conversationId } = await directPair(server, pool);
    const b = pool.open(server.url, { token: bob.token });
    const group = await b.conversations.createGroup('Book club', [alice.id]);
    const a = pool.open(server.url, { token: alice.token });
    await a.connect();
    const subscription = a.subscribe(group.id, () => undefined);
    await subscription.whenReady();
    const removals = holdRemovals(a);
    await b.conversations.removeParticipant(group.id, alice.id);
    await waitFor(() => removals.held.length === 1, { what: 'conversation:removed at alice' });
    await spendBudget(a, conversationId);
    const emits = emitsOf(a);
    expect(await outcomeOf(subscription.unsubscribe())).to.equal('resolved');
    expect(emits.filter((e) => e.event === 'conversation:unsubscribe').map((e) => e.refused)).to.deep.equal([
      'RATE_LIMITED',
      'NOT_FOUND',
    ]);
    removals.release();
    expect(a.subscription(group.id)).to.equal(undefined);
  });
});

/**
 * The web app's "Leave group": `conversations.leave()` over REST, then `unsubscribe()` of the subscription still there
 * when the server's `conversation:removed` has not arrived yet. The server answers NOT_FOUND (it takes the socket out
 * of the room, then finds no membership): the unsubscribe is done, yet it rejected, and the page showed "Not found.".
 */
describe('client SDK: unsubscribe() of a conversation left meanwhile', function () {
  const { server } = useNode();
  const pool = useClientPool();

  it('resolves: the server took the socket out of the room all the same', async () => {
    const { alice, bob } = await directPair(server, pool);
    const b = pool.open(server.url, { token: bob.token });
    const group = await b.conversations.createGroup('Book club', [alice.id]);
    const a = pool.open(server.url, { token: alice.token });
    await a.connect();
    const errors: string[] = [];
    const subscription = a.subscribe(group.id, () => undefined, { onError: (err) => errors.push(err.code) });
    await subscription.whenReady();
    const removals = holdRemovals(a);
    const removed: string[] = [];
    a.on('conversation:removed', (event) => removed.push(event.conversationId));
    await a.conversations.leave(group.id);
    await waitFor(() => removals.held.length === 1, { what: 'conversation:removed at alice' });
    const emits = emitsOf(a);
    expect(await outcomeOf(subscription.unsubscribe())).to.equal('resolved');
    expect(emits).to.deep.equal([{ event: 'conversation:unsubscribe', refused: 'NOT_FOUND' }]);
    // The event, once it arrives, finds the subscription ended already: the app hears it, with no onError.
    removals.release();
    expect(removed).to.deep.equal([group.id]);
    expect(errors).to.deep.equal([]);
    expect(subscription.isActive).to.equal(false);
  });
});
