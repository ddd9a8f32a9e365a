import { randomUUID } from 'node:crypto';
import { getEventListeners } from 'node:events';
import { expect } from 'chai';
import { XFChatError, type ConnectionState } from '../../lib/client/index.js';
import { useNode } from '../helpers/nodes.js';
import { useProxies } from '../helpers/proxy.js';
import { waitFor } from '../helpers/waitFor.js';
import { collector, directPair, storedMessages, useClientPool } from './fixtures.js';

/**
 * How many signals `signal` keeps for `AbortSignal.any` (Node.js's internal set of dependants, which Node.js 20
 * never prunes while the signal lives); 0 if it has none.
 */
function dependantSignals(signal: AbortSignal): number {
  const symbol = Object.getOwnPropertySymbols(signal).find((s) => s.description === 'kDependantSignals');
  if (symbol === undefined) return 0;
  const dependants = (signal as unknown as Record<symbol, Set<unknown> | undefined>)[symbol];
  return dependants?.size ?? 0;
}

describe('client SDK: exactly-once sends', function () {
  const { server } = useNode();
  const pool = useClientPool();
  const proxies = useProxies();

  it('gives up at once on a final error and does not retry', async () => {
    const { alice, conversationId } = await directPair(server, pool);
    const a = pool.open(server.url, { token: alice.token });
    await a.connect();
    let retries = 0;
    const onRetry = () => retries++;
    // Refused by the SDK itself (the server's rule, checked before sending: status 0), and by the server.
    const blank = await a.send(conversationId, '   ', { onRetry }).catch((err: unknown) => err);
    expect(blank).to.be.instanceOf(XFChatError).and.include({ code: 'VALIDATION_FAILED', status: 0 });
    const noSuchReply = await a
      .send(conversationId, 'hello', { onRetry, replyToSeq: 99 })
      .catch((err: unknown) => err);
    expect(noSuchReply).to.be.instanceOf(XFChatError).and.include({ code: 'VALIDATION_FAILED', status: 400 });
    const elsewhere = await a.send(randomUUID(), 'hello', { onRetry }).catch((err: unknown) => err);
    expect(elsewhere).to.be.instanceOf(XFChatError).and.include({ code: 'NOT_FOUND', status: 404 });
    expect(retries).to.equal(0);
    expect(await storedMessages(server, conversationId)).to.deep.equal([]);
  });

  it('keeps nothing per send on a long-lived signal passed to every send (a screen’s), once the sends are over', async () => {
    const { alice, conversationId } = await directPair(server, pool);
    const a = pool.open(server.url, { token: alice.token });
    await a.connect();
    const screen = new AbortController();
    for (let i = 0; i < 100; i++) await a.send(conversationId, `m ${i}`, { signal: screen.signal });
    expect(dependantSignals(screen.signal), 'entries kept for AbortSignal.any').to.equal(0);
    expect(getEventListeners(screen.signal, 'abort'), 'abort listeners').to.have.length(0);
    // The signal still works: a send made after it aborted rejects with CLIENT_CLOSED and is never sent.
    screen.abort();
    const stopped = await a
      .send(conversationId, 'never', { signal: screen.signal })
      .catch((err: unknown) => err);
    expect(stopped).to.be.instanceOf(XFChatError).and.include({ code: 'CLIENT_CLOSED' });
    expect(await storedMessages(server, conversationId)).to.have.length(100);
  });

  it('stores a message exactly once when its ack is lost and the connection drops', async () => {
    const { alice, conversationId } = await directPair(server, pool);
    const proxy = await proxies.start(server.url);
    const a = pool.open(proxy.url, { token: alice.token });
    await a.connect();
    const states: ConnectionState[] = [];
    a.on('state', (state) => states.push(state));

    // The send reaches the server and is committed, but the ack never comes back.
    proxy.hold('downstream');
    const retries: string[] = [];
    const sending = a.send(conversationId, 'exactly once', { onRetry: ({ reason }) => retries.push(reason) });
    await waitFor(async () => (await storedMessages(server, conversationId)).length === 1, {
      what: 'the commit',
    });
    proxy.cut();

    const message = await sending;
    const rows = await storedMessages(server, conversationId);
    expect(rows).to.have.length(1);
    expect(rows[0]).to.deep.equal({
      id: message.id,
      seq: 1,
      clientMsgId: message.clientMsgId,
      body: 'exactly once',
    });
    expect(retries).to.deep.equal(['DISCONNECTED']);
    expect(states).to.deep.equal(['reconnecting', 'connected']);
  });

  it('retries a send whose request is held past the ack timeout; all copies store one message', async () => {
    const { alice, conversationId } = await directPair(server, pool);
    const proxy = await proxies.start(server.url);
    const a = pool.open(proxy.url, { token: alice.token, ackTimeoutMs: 200 });
    await a.connect();

    proxy.hold('upstream');
    const retries: string[] = [];
    const sending = a.send(conversationId, 'held', { onRetry: ({ reason }) => retries.push(reason) });
    await waitFor(() => retries.length >= 2, { what: 'two timeouts' });
    expect(await storedMessages(server, conversationId)).to.deep.equal([]);
    // Every copy (the first and each retry) now reaches the server at once, all with one clientMsgId.
    proxy.release();

    const message = await sending;
    expect(retries.every((reason) => reason === 'TIMEOUT')).to.equal(true);
    const rows = await storedMessages(server, conversationId);
    expect(rows.map((r) => r.id)).to.deep.equal([message.id]);
  });

  it('waits while offline and sends each message typed meanwhile exactly once and in order after reconnecting', async () => {
    const { alice, bob, conversationId } = await directPair(server, pool);
    const proxy = await proxies.start(server.url);
    const a = pool.open(proxy.url, { token: alice.token });
    await a.connect();
    const b = pool.open(server.url, { token: bob.token });
    await b.connect();
    const atB = collector();
    await b.subscribe(conversationId, atB.onMessage).whenReady();

    await proxy.stop();
    await waitFor(() => a.state === 'reconnecting', { what: 'the reconnecting state' });
    const sending = ['one', 'two', 'three'].map((body) => a.send(conversationId, body));
    await proxy.start();

    const sent = await Promise.all(sending);
    await waitFor(() => atB.messages.length === 3, { what: 'three messages at bob' });
    const rows = await storedMessages(server, conversationId);
    expect(rows.map((r) => r.body)).to.deep.equal(['one', 'two', 'three']);
    expect(rows.map((r) => r.id)).to.deep.equal(sent.map((m) => m.id));
    expect(atB.seqs()).to.deep.equal([1, 2, 3]);
  });
});
