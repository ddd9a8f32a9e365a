import net from 'node:net';
import { expect } from 'chai';
import { XFChatError, type XFChatClient } from '../../lib/client/index.js';
import { useNode } from '../helpers/nodes.js';
import { insertFriendship, uniqueUsername } from '../helpers/users.js';
import { waitFor } from '../helpers/waitFor.js';
import { failure, heldRefreshes, track, urlOf, useClientPool } from './fixtures.js';

const PASSWORD = 'correct horse battery';
const NO_CONVERSATION = '00000000-0000-0000-0000-000000000000';

/** What nginx answers while the node behind it restarts. */
function html502(): Response {
  return new Response('<html><body><h1>502 Bad Gateway</h1></body></html>', {
    status: 502,
    headers: { 'content-type': 'text/html' },
  });
}

describe('client SDK: REST requests that hang, fail on the way, or meet a proxy', function () {
  const { server } = useNode();
  const pool = useClientPool();

  /** A server that accepts connections and never answers (a frozen node, a half-open connection). */
  async function blackhole(): Promise<{ url: string; close: () => Promise<void> }> {
    const sockets = new Set<net.Socket>();
    const hole = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => hole.listen(0, '127.0.0.1', resolve));
    const { port } = hole.address() as net.AddressInfo;
    return {
      url: `http://127.0.0.1:${port}`,
      close: async () => {
        for (const socket of sockets) socket.destroy();
        await new Promise<void>((resolve, reject) => hole.close((err) => (err ? reject(err) : resolve())));
      },
    };
  }

  it('aborts requests that get no answer: close() with CLIENT_CLOSED, the caller’s signal, and the request timeout with TIMEOUT', async () => {
    const hole = await blackhole();
    try {
      const client = pool.open(hole.url, { token: 'any' });
      const me = track(client.me());
      const controller = new AbortController();
      const reacting = track(client.react(NO_CONVERSATION, 1, '👍', { signal: controller.signal }));
      controller.abort();
      await waitFor(() => reacting.settled(), { what: 'the aborted reaction to settle' });
      expect(reacting.error()).to.be.instanceOf(XFChatError).and.include({ code: 'CLIENT_CLOSED' });
      client.close();
      await waitFor(() => me.settled(), { what: 'me() to settle after close()' });
      expect(me.error()).to.be.instanceOf(XFChatError).and.include({ code: 'CLIENT_CLOSED' });

      const impatient = pool.open(hole.url, { token: 'any', requestTimeoutMs: 200 });
      const timedOut = track(impatient.me());
      await waitFor(() => timedOut.settled(), { what: 'me() to time out' });
      expect(timedOut.error()).to.be.instanceOf(XFChatError).and.include({ code: 'TIMEOUT', status: 0 });
    } finally {
      await hole.close();
    }
  });

  it('lets a dozen changes wait between retries without a MaxListenersExceededWarning', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    try {
      // Every reaction's first two attempts fail as if the network were down.
      const attempts = new Map<string, number>();
      const flaky: typeof fetch = (input, init) => {
        const url = urlOf(input);
        if (url.includes('/reactions/')) {
          const n = (attempts.get(url) ?? 0) + 1;
          attempts.set(url, n);
          if (n <= 2) return Promise.reject(new TypeError('fetch failed'));
        }
        return fetch(input, init);
      };
      const client = pool.open(server.url, { fetch: flaky });
      const alice = await client.signup({ username: uniqueUsername('sdkq'), password: PASSWORD });
      const bob = pool.open(server.url);
      const bobUser = await bob.signup({ username: uniqueUsername('sdkq'), password: PASSWORD });
      await insertFriendship(server.services.db.knex, alice.user.id, bobUser.user.id);
      const conversation = await client.conversations.createDirect(bobUser.user.id);
      const message = await client.messages.put(conversation.id, 'm1', 'react to me');
      const emoji = ['😀', '😁', '😂', '🤣', '😃', '😄', '😅', '😆', '😉', '😊', '😋', '😎'];
      await Promise.all(emoji.map((e) => client.react(conversation.id, message.seq, e)));
      const [stored] = (await client.messages.after(conversation.id, 0)).messages;
      expect(stored!.reactions.map((r) => r.emoji).sort()).to.deep.equal([...emoji].sort());
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.map((w) => `${w.name}: ${w.message}`)).to.deep.equal([]);
  });

  /** A signed-up client whose requests to paths containing `failing` get one HTML 502 each. */
  async function behindProxy(failing: string[]): Promise<{ client: XFChatClient; id: string }> {
    const seen = new Set<string>();
    const proxyFetch: typeof fetch = (input, init) => {
      const url = urlOf(input);
      const match = failing.find((part) => url.includes(part));
      if (match !== undefined && !seen.has(match)) {
        seen.add(match);
        return Promise.resolve(html502());
      }
      return fetch(input, init);
    };
    const client = pool.open(server.url, { fetch: proxyFetch });
    const { user } = await client.signup({ username: uniqueUsername('sdkp'), password: PASSWORD });
    return { client, id: user.id };
  }

  it('treats a proxy’s 502 without the error envelope as a network error: retried where those are', async () => {
    const alice = await behindProxy(['/auth/me', '/reactions/', '/changes']);
    const bob = pool.open(server.url);
    const { user } = await bob.signup({ username: uniqueUsername('sdkp'), password: PASSWORD });
    await insertFriendship(server.services.db.knex, alice.id, user.id);
    const { id: conversationId } = await alice.client.conversations.createDirect(user.id);

    // A call that is not retried reports it as NETWORK_ERROR with the status the proxy gave.
    expect(await failure(alice.client.me())).to.include({ code: 'NETWORK_ERROR', status: 502 });
    const message = await alice.client.messages.put(conversationId, 'p1', 'hello');
    const retries: string[] = [];
    await alice.client.react(conversationId, message.seq, '👍', { onRetry: (r) => retries.push(r.reason) });
    expect(retries).to.deep.equal(['NETWORK_ERROR']);

    // A subscription whose catch-up read meets the 502 carries on.
    await alice.client.connect();
    const errors: string[] = [];
    const delivered: number[] = [];
    const subscription = alice.client.subscribe(conversationId, (m) => delivered.push(m.seq), {
      afterSeq: 0,
      sinceVersion: 0,
      onError: (err) => errors.push(err.code),
    });
    await subscription.whenReady();
    await bob.messages.put(conversationId, 'p2', 'still there?');
    await waitFor(() => delivered.length === 2, { what: 'both messages' });
    expect(delivered).to.deep.equal([1, 2]);
    expect(errors).to.deep.equal([]);
    expect(subscription.isActive).to.equal(true);
  });

  it('retries a read marker that meets a failure on its way, like a change', async () => {
    const alice = await behindProxy(['/read']);
    const bob = pool.open(server.url);
    const { user } = await bob.signup({ username: uniqueUsername('sdkp'), password: PASSWORD });
    await insertFriendship(server.services.db.knex, alice.id, user.id);
    const { id: conversationId } = await alice.client.conversations.createDirect(user.id);
    await bob.messages.put(conversationId, 'r1', 'one');
    await bob.messages.put(conversationId, 'r2', 'two');
    const retries: string[] = [];
    await alice.client.markRead(conversationId, 2, { onRetry: (r) => retries.push(r.reason) });
    expect(retries).to.deep.equal(['NETWORK_ERROR']);
    const conversation = await alice.client.conversations.get(conversationId);
    expect(conversation.participants.find((p) => p.userId === alice.id)?.lastReadSeq).to.equal(2);
  });

  it('keeps a 500 without the envelope and a 502 with it as what they are', async () => {
    const odd: typeof fetch = (input) =>
      Promise.resolve(
        urlOf(input).includes('/auth/me')
          ? new Response('oops', { status: 500 })
          : new Response(JSON.stringify({ error: { code: 'OVERLOADED', message: 'Busy.' } }), {
              status: 502,
            }),
      );
    const client = pool.open(server.url, { token: 'any', fetch: odd });
    expect(await failure(client.me())).to.include({ code: 'BAD_RESPONSE', status: 500 });
    expect(await failure(client.friends.list())).to.include({ code: 'OVERLOADED', status: 502 });
  });

  /** A JSON answer with `status`, as something in between might give it. */
  function json(body: unknown, status = 200): Response {
    return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
  }

  it('fails a 2xx that is not the contract’s answer (empty, or JSON of another shape) with BAD_RESPONSE', async () => {
    let broken = false;
    const odd: typeof fetch = (input, init) => {
      const url = urlOf(input);
      if (!broken) return fetch(input, init);
      if (url.endsWith('/auth/me')) return Promise.resolve(new Response('', { status: 200 }));
      if (url.includes('/conversations')) return Promise.resolve(json({}));
      if (url.includes('/users?')) return Promise.resolve(json({ users: [null] }));
      if (url.endsWith('/friends')) return Promise.resolve(json([]));
      if (url.endsWith('/blocks')) return Promise.resolve(new Response(null, { status: 204 }));
      return fetch(input, init);
    };
    const client = pool.open(server.url, { fetch: odd });
    await client.signup({ username: uniqueUsername('sdkb'), password: PASSWORD });
    broken = true;
    expect(await failure(client.me())).to.include({ code: 'BAD_RESPONSE', status: 200 });
    expect(await failure(client.conversations.list())).to.include({ code: 'BAD_RESPONSE', status: 200 });
    expect(await failure(client.users.search('a'))).to.include({ code: 'BAD_RESPONSE', status: 200 });
    expect(await failure(client.friends.list())).to.include({ code: 'BAD_RESPONSE', status: 200 });
    // A call that reads no answer (the contract's 204) takes an empty one.
    expect(await client.blocks.block(NO_CONVERSATION)).to.equal(undefined);
  });

  it('retries a timed refresh answered with an empty 200 (BAD_RESPONSE), and keeps refreshing on schedule', async () => {
    let emptyRefreshes = 1;
    const odd: typeof fetch = async (input, init) => {
      const url = urlOf(input);
      if (url.endsWith('/auth/refresh') && emptyRefreshes > 0) {
        emptyRefreshes--;
        return new Response('', { status: 200 });
      }
      const response = await fetch(input, init);
      if (!url.endsWith('/auth/signup')) return response;
      // The token lasts 15 minutes; the client is told 4 s, so its timed refresh comes after 1.5 s.
      const auth = (await response.json()) as Record<string, unknown>;
      return json({ ...auth, expiresIn: 4 }, response.status);
    };
    const tokens: string[] = [];
    const client = pool.open(server.url, { fetch: odd, onTokens: (t) => tokens.push(t.refreshToken) });
    const refreshErrors: XFChatError[] = [];
    client.on('refreshError', (error) => refreshErrors.push(error));
    const { user } = await client.signup({ username: uniqueUsername('sdkb'), password: PASSWORD });
    await waitFor(() => tokens.length === 2, { what: 'the refresh after the empty answer' });
    expect(refreshErrors.map((e) => [e.code, e.status])).to.deep.equal([['BAD_RESPONSE', 200]]);
    expect(client.refreshToken).to.equal(tokens[1]);
    expect((await client.me()).id).to.equal(user.id);
  });

  /** A client whose refreshes, once `hold` is set, get no answer (until close() aborts them). */
  async function slowRefreshes(): Promise<{ client: XFChatClient; state: { hold: boolean; held: number } }> {
    const { fetch: slow, state } = heldRefreshes();
    const client = pool.open(server.url, { fetch: slow });
    await client.signup({ username: uniqueUsername('sdkr'), password: PASSWORD });
    return { client, state };
  }

  it('ends a call waiting for a slow refresh when its signal aborts (CLIENT_CLOSED), and the refresh goes on for the others', async () => {
    const { client, state } = await slowRefreshes();
    const { id: conversationId } = await client.conversations.createGroup('g', []);
    const message = await client.messages.put(conversationId, crypto.randomUUID(), 'hello');
    state.hold = true;
    client.token = 'stale'; // the next call is answered UNAUTHORIZED and refreshes
    const controller = new AbortController();
    const editing = track(client.edit(conversationId, message.seq, 'hello!', { signal: controller.signal }));
    const reading = track(client.me());
    await waitFor(() => state.held === 1, { what: 'the refresh to start' });
    controller.abort();
    // The refresh never answers: only the signal can settle the edit.
    await waitFor(() => editing.settled(), { what: 'the aborted edit to settle', timeoutMs: 5000 });
    expect(editing.error()).to.be.instanceOf(XFChatError).and.include({ code: 'CLIENT_CLOSED' });
    expect(reading.settled(), 'me(), which no signal aborted, still waits for the refresh').to.equal(false);
    client.close();
    await waitFor(() => reading.settled(), { what: 'me() to settle at close()' });
    expect(reading.error()).to.be.instanceOf(XFChatError).and.include({ code: 'CLIENT_CLOSED' });
  });

  it('waits a Retry-After longer than a timer can wait (it would fire after 1 ms) instead of retrying in a loop', async () => {
    let longAttempts = 0;
    let shortAttempts = 0;
    const limited = (retryAfter: string) =>
      new Response(JSON.stringify({ error: { code: 'RATE_LIMITED', message: 'Too many requests.' } }), {
        status: 429,
        headers: { 'content-type': 'application/json', 'retry-after': retryAfter },
      });
    const rateLimited: typeof fetch = (input) => {
      if (urlOf(input).includes('/messages/1/')) {
        longAttempts += 1;
        return Promise.resolve(limited('3000000'));
      }
      shortAttempts += 1;
      return Promise.resolve(shortAttempts === 1 ? limited('1') : new Response(null, { status: 204 }));
    };
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.name);
    process.on('warning', onWarning);
    try {
      const client = pool.open('http://127.0.0.1:9', { token: 'any', fetch: rateLimited });
      const controller = new AbortController();
      const waiting = track(client.react(NO_CONVERSATION, 1, '👍', { signal: controller.signal }));
      // The witness: a change asked to wait 1 s has waited it and gone through; the other is still waiting.
      await client.react(NO_CONVERSATION, 2, '👍');
      expect(shortAttempts).to.equal(2);
      expect(longAttempts, 'attempts of the change asked to wait 3000000 s').to.equal(1);
      expect(waiting.settled()).to.equal(false);
      controller.abort();
      await waitFor(() => waiting.settled(), { what: 'the aborted change to settle' });
      expect(waiting.error()).to.be.instanceOf(XFChatError).and.include({ code: 'CLIENT_CLOSED' });
      expect(warnings).to.not.include('TimeoutOverflowWarning');
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('takes requestTimeoutMs: Infinity as no timeout (longer than a timer waits), not one of 1 ms', async () => {
    const client = pool.open(server.url, { requestTimeoutMs: Number.POSITIVE_INFINITY });
    const { user } = await client.signup({ username: uniqueUsername('sdkr'), password: PASSWORD });
    expect((await client.me()).id).to.equal(user.id);
  });

  it('treats a gateway’s JSON error of its own code (not the contract’s) as a network error for a 5xx, else BAD_RESPONSE', async () => {
    const failing = new Map<string, number>();
    const foreign: typeof fetch = (input, init) => {
      const url = urlOf(input);
      for (const [part, status] of failing) {
        if (!url.includes(part)) continue;
        failing.delete(part);
        const body = {
          error: { code: 'ServiceUnavailable', message: 'The service is temporarily unavailable.' },
        };
        return Promise.resolve(json(body, status));
      }
      return fetch(input, init);
    };
    const client = pool.open(server.url, { fetch: foreign });
    await client.signup({ username: uniqueUsername('sdkg'), password: PASSWORD });
    const { id: conversationId } = await client.conversations.createGroup('g', []);
    const message = await client.messages.put(conversationId, crypto.randomUUID(), 'hello');

    failing.set('/auth/me', 503);
    expect(await failure(client.me())).to.include({ code: 'NETWORK_ERROR', status: 503 });
    failing.set('/auth/me', 429);
    expect(await failure(client.me())).to.include({ code: 'BAD_RESPONSE', status: 429 });
    // A change meets the 503 once: it retries it, as any network error, and goes through.
    failing.set('/reactions/', 503);
    const retries: string[] = [];
    await client.react(conversationId, message.seq, '👍', { onRetry: (r) => retries.push(r.reason) });
    expect(retries).to.deep.equal(['NETWORK_ERROR']);
  });
});
