import { expect } from 'chai';
import { XFChatClient, XFChatError, isRetryable } from '../../lib/client/index.js';
import { CATCH_UP_IN_FLIGHT } from '../../lib/client/pace.js';
import { useNode } from '../helpers/nodes.js';
import { insertFriendship, uniqueUsername } from '../helpers/users.js';
import { failure, urlOf, useClientPool } from './fixtures.js';

const PASSWORD = 'correct horse battery';

/** A fetch that answers `/auth/refresh` `429 RATE_LIMITED` with `Retry-After: 30` while `on`, counting those. */
function refreshRateLimited(): { fetch: typeof fetch; on: boolean; refreshes: number } {
  const state = {
    on: false,
    refreshes: 0,
    fetch: ((input, init) => {
      if (state.on && urlOf(input).endsWith('/auth/refresh')) {
        state.refreshes += 1;
        const body = { error: { code: 'RATE_LIMITED', message: 'Too many requests; retry later.' } };
        return Promise.resolve(
          new Response(JSON.stringify(body), {
            status: 429,
            headers: { 'content-type': 'application/json', 'retry-after': '30' },
          }),
        );
      }
      return fetch(input, init);
    }) as typeof fetch,
  };
  return state;
}

describe('client: what the SDK makes of Retry-After and of a 408', function () {
  const { server } = useNode();
  const pool = useClientPool();

  /** Alice and Bob, friends, with their direct conversation and one message in it; Alice's client uses `fetchImpl`. */
  async function setUp(fetchImpl: typeof fetch) {
    const alice = pool.open(server.url, { fetch: fetchImpl });
    const a = await alice.signup({ username: uniqueUsername('hints'), password: PASSWORD });
    const bob = pool.open(server.url);
    const b = await bob.signup({ username: uniqueUsername('hints'), password: PASSWORD });
    await insertFriendship(server.services.db.knex, a.user.id, b.user.id);
    const conversation = await alice.conversations.createDirect(b.user.id);
    const message = await alice.messages.put(conversation.id, 'hints-1', 'react to me');
    return { alice, conversationId: conversation.id, seq: message.seq };
  }

  it('keeps a proxy’s Retry-After given as an HTTP-date (RFC 9110), and waits it before retrying a change', async () => {
    // A load balancer in maintenance: 503, an HTML page, "come back in two minutes" as a date.
    const until = new Date(Date.now() + 120_000).toUTCString();
    let attempts = 0;
    const maintenance: typeof fetch = (input, init) => {
      if (urlOf(input).includes('/reactions/')) {
        attempts += 1;
        return Promise.resolve(
          new Response('<html><body><h1>503 Service Unavailable</h1>Back soon.</body></html>', {
            status: 503,
            headers: { 'content-type': 'text/html', 'retry-after': until },
          }),
        );
      }
      if (urlOf(input).endsWith('/auth/me')) {
        return Promise.resolve(
          new Response('<html>maintenance</html>', {
            status: 503,
            headers: { 'content-type': 'text/html', 'retry-after': until },
          }),
        );
      }
      return fetch(input, init);
    };
    const { alice, conversationId, seq } = await setUp(maintenance);

    // The error carries what the proxy said: about 120 seconds.
    const error = await failure(alice.me());
    expect(error).to.be.instanceOf(XFChatError).and.include({ code: 'NETWORK_ERROR', status: 503 });
    expect(error.retryAfter, 'retryAfter of a Retry-After HTTP-date two minutes ahead').to.be.a('number');
    expect(error.retryAfter!).to.be.within(100, 121);

    // A change waits it out rather than knocking every few hundred ms on a server in maintenance.
    const controller = new AbortController();
    const reacting = alice
      .react(conversationId, seq, '👍', { signal: controller.signal })
      .catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    controller.abort();
    await reacting;
    expect(attempts, 'attempts within 2 s of a "come back in 2 minutes"').to.equal(1);
  });

  it('retries a change answered 408 REQUEST_TIMEOUT (nothing was done; docs/errors.md: send the request again)', async () => {
    let timedOut = 0;
    const slowUplink: typeof fetch = (input, init) => {
      // The first reaction request trickled in past HTTP_IDLE_TIMEOUT_MS: the server answered 408 and did nothing.
      if (urlOf(input).includes('/reactions/') && timedOut === 0) {
        timedOut += 1;
        return Promise.resolve(
          new Response(
            JSON.stringify({
              error: { code: 'REQUEST_TIMEOUT', message: 'The request did not arrive whole in time.' },
            }),
            { status: 408, headers: { 'content-type': 'application/json', connection: 'close' } },
          ),
        );
      }
      return fetch(input, init);
    };
    const { alice, conversationId, seq } = await setUp(slowUplink);
    let retries = 0;
    const reacted = await alice.react(conversationId, seq, '👍', { onRetry: () => (retries += 1) }).then(
      () => 'stored',
      (err: unknown) => `rejected ${(err as XFChatError).code}`,
    );
    expect(reacted, 'a reaction whose first request got 408').to.equal('stored');
    expect(retries).to.equal(1);
    const error = new XFChatError('REQUEST_TIMEOUT', 'The request did not arrive whole in time.');
    expect(isRetryable(error), 'isRetryable(REQUEST_TIMEOUT)').to.equal(true);
    const [stored] = (await alice.messages.after(conversationId, 0)).messages;
    expect(stored!.reactions.map((r) => r.emoji)).to.deep.equal(['👍']);
  });
  it('waits the Retry-After of a refresh refused RATE_LIMITED before it refreshes again', async function () {
    this.timeout(30_000);
    const limited = refreshRateLimited();
    limited.on = true;
    // Default retry settings, as an application has them.
    const client = new XFChatClient({ baseUrl: server.url, fetch: limited.fetch });
    const errors: XFChatError[] = [];
    client.on('refreshError', (e) => errors.push(e));
    try {
      await client.signup({ username: uniqueUsername('hints'), password: PASSWORD });
      client.token = 'refused'; // the access token is refused: the next call refreshes
      expect(await failure(client.me())).to.include({ code: 'RATE_LIMITED', retryAfter: 30 });
      expect(limited.refreshes).to.equal(1);
      await new Promise((resolve) => setTimeout(resolve, 5000));
      expect(limited.refreshes, 'refreshes within 5 s of "Retry-After: 30"').to.equal(1);
    } finally {
      client.close();
    }
  });
  it('renews a token the handshake refused no more often than the refresh answer’s Retry-After allows', async function () {
    this.timeout(30_000);
    const limited = refreshRateLimited();
    // Default retry settings, as an application has them.
    const client = new XFChatClient({ baseUrl: server.url, fetch: limited.fetch });
    try {
      await client.signup({ username: uniqueUsername('hints'), password: PASSWORD });
      limited.on = true;
      // The access token is no longer taken (a laptop slept past its expiry): the handshake is refused and the SDK
      // renews it in the background while connect() waits.
      client.token = 'refused';
      void client.connect().catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 6000));
      expect(limited.refreshes, 'refreshes within 6 s of "Retry-After: 30"').to.equal(1);
    } finally {
      client.close();
    }
  });
});

/**
 * A subscription whose subscribe was refused RATE_LIMITED tried again after its own backoff (a quarter of a second
 * at first), not the Retry-After the server gave: hundreds of subscriptions catching up at once were refused
 * thousands of times (SYNC hunt). It waits at least what the server asks.
 */
describe('client: a subscription refused RATE_LIMITED', function () {
  this.timeout(60_000);
  const { server } = useNode({ env: { RATE_LIMIT_READS_PER_SEC: '1' } });
  const pool = useClientPool();

  /** Alice, in `count` groups Bob made, and her client's connection (whose requests a test can watch). */
  async function aliceInGroups(count: number) {
    const alice = pool.open(server.url);
    const a = await alice.signup({ username: uniqueUsername('subwait'), password: PASSWORD });
    const bob = pool.open(server.url);
    const b = await bob.signup({ username: uniqueUsername('subwait'), password: PASSWORD });
    await insertFriendship(server.services.db.knex, a.user.id, b.user.id);
    const ids: string[] = [];
    for (let i = 0; i < count; i++) ids.push((await bob.conversations.createGroup(`g${i}`, [a.user.id])).id);
    const connection = (
      alice as unknown as { connection: { request: (...args: unknown[]) => Promise<unknown> } }
    ).connection;
    return { alice, ids, connection };
  }

  it('waits the Retry-After before it subscribes again', async () => {
    const { alice, ids, connection } = await aliceInGroups(4);
    // Every subscribe of Alice's, when it went out and how it ended.
    const original = connection.request.bind(connection);
    const tries: Array<{ id: string; at: number; retryAfter: number | undefined }> = [];
    connection.request = async (...args: unknown[]) => {
      const entry = { id: '', at: Date.now(), retryAfter: undefined as number | undefined };
      if (args[0] === 'conversation:subscribe') {
        entry.id = (args[1] as { conversationId: string }).conversationId;
        tries.push(entry);
      }
      try {
        return await original(...args);
      } catch (err) {
        if (err instanceof XFChatError && err.code === 'RATE_LIMITED') entry.retryAfter = err.retryAfter ?? 0;
        throw err;
      }
    };
    await alice.connect();
    const subscriptions = ids.map((id) => alice.subscribe(id, () => undefined));
    await Promise.all(subscriptions.map((s) => s.whenReady()));
    const early: string[] = [];
    for (const [i, refused] of tries.entries()) {
      if (refused.retryAfter === undefined) continue;
      const next = tries.slice(i + 1).find((t) => t.id === refused.id);
      if (next && next.at - refused.at < refused.retryAfter * 1000 - 50)
        early.push(`${next.at - refused.at} ms after a refusal asking ${refused.retryAfter} s`);
    }
    expect(
      tries.some((t) => t.retryAfter !== undefined),
      'a refusal to look at',
    ).to.equal(true);
    expect(early).to.deep.equal([]);
  });

  // Each subscription waited its own Retry-After, but the others of the client went on meanwhile, and after each
  // wait all of them went out together again: at 300 conversations, about six refusals each (SYNC hunt). They take
  // turns now: a few at a time, and none while the last refusal's Retry-After runs.
  it('holds back every subscription of the client while a refusal’s Retry-After runs, and sends a few at a time', async () => {
    const { alice, ids, connection } = await aliceInGroups(12);
    const original = connection.request.bind(connection);
    const sent: number[] = [];
    const refusals: Array<{ at: number; retryAfter: number }> = [];
    let inFlight = 0;
    let mostInFlight = 0;
    connection.request = async (...args: unknown[]) => {
      if (args[0] !== 'conversation:subscribe') return original(...args);
      sent.push(Date.now());
      mostInFlight = Math.max(mostInFlight, ++inFlight);
      try {
        return await original(...args);
      } catch (err) {
        if (err instanceof XFChatError && err.code === 'RATE_LIMITED')
          refusals.push({ at: Date.now(), retryAfter: err.retryAfter ?? 0 });
        throw err;
      } finally {
        inFlight -= 1;
      }
    };
    await alice.connect();
    const subscriptions = ids.map((id) => alice.subscribe(id, () => undefined));
    await Promise.all(subscriptions.map((s) => s.whenReady()));
    expect(refusals.length, 'a refusal to look at').to.be.above(0);
    const early = refusals.flatMap(({ at, retryAfter }) =>
      sent
        .filter((t) => t > at && t < at + retryAfter * 1000 - 50)
        .map((t) => `${t - at} ms into ${retryAfter} s`),
    );
    expect(early, 'subscribes sent while a Retry-After ran').to.deep.equal([]);
    expect(mostInFlight, 'subscribes on their way at once').to.be.at.most(CATCH_UP_IN_FLIGHT);
  });
});
