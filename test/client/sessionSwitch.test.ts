import { expect } from 'chai';
import { XFChatError, type ConnectionState, type XFChatClient } from '../../lib/client/index.js';
import { useNode } from '../helpers/nodes.js';
import { useProxies, type FaultProxy } from '../helpers/proxy.js';
import { insertFriendship, uniqueUsername } from '../helpers/users.js';
import { waitFor } from '../helpers/waitFor.js';
import { failure, heldRefreshes, storedMessages, track, urlOf, useClientPool } from './fixtures.js';

const PASSWORD = 'correct horse battery';

describe('client SDK: another session on the same client (login, signup, resume)', function () {
  const { server } = useNode();
  const pool = useClientPool();
  const proxies = useProxies();

  interface Person {
    id: string;
    username: string;
    /** The refresh token of a session of this person's, ended on no client. */
    stored: string;
  }

  /** A new user, signed up on a client of its own that is closed again (its session stays valid). */
  async function person(): Promise<Person> {
    const client = pool.open(server.url);
    const username = uniqueUsername('sdksw');
    const { user, refreshToken } = await client.signup({ username, password: PASSWORD });
    client.close();
    return { id: user.id, username, stored: refreshToken };
  }

  /** Alice and Bob, friends in a group Alice made, and a client where Alice is logged in. */
  async function aliceAndBob(
    options: { proxy?: FaultProxy; fetch?: typeof fetch } = {},
  ): Promise<{ client: XFChatClient; alice: Person; bob: Person; groupId: string }> {
    const alice = await person();
    const bob = await person();
    await insertFriendship(server.services.db.knex, alice.id, bob.id);
    const { proxy } = options;
    const restFetch = options.fetch ?? fetch;
    // Through a proxy, the socket goes through it while REST goes straight to the node.
    const client = proxy
      ? pool.open(proxy.url, {
          fetch: (input, init) => restFetch(urlOf(input).replace(proxy.url, server.url), init),
        })
      : pool.open(server.url, { fetch: restFetch });
    await client.login(alice.username, PASSWORD);
    const group = await client.conversations.createGroup('shared', [bob.id]);
    return { client, alice, bob, groupId: group.id };
  }

  it('never sends what alice typed as bob: her pending sends reject with UNAUTHORIZED when bob logs in', async () => {
    const proxy = await proxies.start(server.url);
    const { client, alice, bob, groupId } = await aliceAndBob({ proxy });
    await client.connect();
    const errors: string[] = [];
    const subscription = client.subscribe(groupId, () => undefined, { onError: (e) => errors.push(e.code) });
    await subscription.whenReady();

    // The first send is on its way (held between client and node), the others wait for their turn.
    proxy.hold('upstream');
    const sends = Array.from({ length: 40 }, (_, i) => track(client.send(groupId, `alice typed ${i}`)));
    // Bob signs in on the same client (an app's "switch account") while they are pending.
    await client.login(bob.username, PASSWORD);
    proxy.release();
    await waitFor(() => sends.every((s) => s.settled()), { what: 'every send of alice to settle' });
    for (const send of sends)
      expect(send.error()).to.be.instanceOf(XFChatError).and.include({ code: 'UNAUTHORIZED' });
    // Her subscription ended with her session, as at a logout; so did the connection.
    expect(subscription.isActive).to.equal(false);
    expect(await failure(subscription.whenReady())).to.include({ code: 'CLIENT_CLOSED' });
    expect(errors).to.deep.equal([]);
    expect(client.state).to.equal('disconnected');

    // Connected again, bob's own messages go out as his.
    await client.connect();
    const mine = await client.send(groupId, 'typed by bob');
    expect(mine.senderId).to.equal(bob.id);
    const rows = await server.services.db
      .knex('messages')
      .where({ conversation_id: groupId })
      .orderBy('seq')
      .select('sender_id', 'body');
    const asBob = rows.filter((r: { sender_id: string }) => r.sender_id === bob.id);
    expect(asBob.map((r: { body: string }) => r.body)).to.deep.equal(['typed by bob']);
    // The one in flight may or may not have been stored before the switch: as alice's, if at all.
    const asAlice = rows.filter((r: { sender_id: string }) => r.sender_id === alice.id);
    expect([[], ['alice typed 0']]).to.deep.include(asAlice.map((r: { body: string }) => r.body));
  });

  it('stops a retrying change of alice’s at the switch, so that bob’s token never makes it', async () => {
    let reactionsFail = true;
    const flaky: typeof fetch = (input, init) =>
      reactionsFail && urlOf(input).includes('/reactions/')
        ? Promise.reject(new TypeError('fetch failed'))
        : fetch(input, init);
    const { client, bob, groupId } = await aliceAndBob({ fetch: flaky });
    const message = await client.messages.put(groupId, 'c1', 'react to me');
    const retries: string[] = [];
    const reacting = track(
      client.react(groupId, message.seq, '👍', { onRetry: (r) => retries.push(r.reason) }),
    );
    await waitFor(() => retries.length >= 1, { what: 'the reaction to be retrying' });

    await client.login(bob.username, PASSWORD);
    reactionsFail = false;
    await waitFor(() => reacting.settled(), { what: 'the reaction to settle' });
    expect(reacting.error()).to.be.instanceOf(XFChatError).and.include({ code: 'UNAUTHORIZED' });
    // Longer than the client's retry delays: no retry goes out afterwards either.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const [stored] = (await client.messages.after(groupId, 0)).messages;
    expect(stored!.reactions).to.deep.equal([]);
  });

  it('ends a list waiting out RATE_LIMITED at the switch instead of reading it as bob', async () => {
    let limited = true;
    const limiting: typeof fetch = (input, init) => {
      if (limited && urlOf(input).endsWith('/friends')) {
        limited = false;
        const body = { error: { code: 'RATE_LIMITED', message: 'Too many requests.' } };
        const headers = { 'content-type': 'application/json', 'retry-after': '2' };
        return Promise.resolve(new Response(JSON.stringify(body), { status: 429, headers }));
      }
      return fetch(input, init);
    };
    const { client, bob } = await aliceAndBob({ fetch: limiting });
    const listing = track(client.friends.list());
    await waitFor(() => !limited, { what: 'the list to meet RATE_LIMITED' });
    await client.login(bob.username, PASSWORD);
    // At once, not after the wait: nothing of it is read under bob's session.
    await waitFor(() => listing.settled(), { what: 'the list to settle', timeoutMs: 1000 });
    expect(listing.error()).to.be.instanceOf(XFChatError).and.include({ code: 'UNAUTHORIZED' });
  });

  it('ends alice’s calls waiting for a slow refresh at the switch, with UNAUTHORIZED', async () => {
    const { fetch: slow, state } = heldRefreshes();
    const { client, bob, groupId } = await aliceAndBob({ fetch: slow });
    state.hold = true;
    client.token = 'stale'; // the next calls are answered UNAUTHORIZED and wait for a refresh that never answers
    const reacting = track(client.react(groupId, 1, '👍'));
    const listing = track(client.friends.list());
    const reading = track(client.me());
    await waitFor(() => state.held === 1, { what: 'the refresh to start' });
    await client.login(bob.username, PASSWORD);
    await waitFor(() => reacting.settled() && listing.settled() && reading.settled(), {
      what: 'alice’s calls to settle',
      timeoutMs: 5000,
    });
    for (const call of [reacting, listing, reading])
      expect(call.error()).to.be.instanceOf(XFChatError).and.include({ code: 'UNAUTHORIZED' });
  });

  it('ends the held session at resume() of another one, but not at a login that fails', async () => {
    const proxy = await proxies.start(server.url);
    const { client, alice, bob, groupId } = await aliceAndBob({ proxy });
    await client.connect();

    // A wrong password changes nothing: alice's session, connection and sends carry on.
    expect(await failure(client.login(bob.username, 'not the password'))).to.include({
      code: 'INVALID_CREDENTIALS',
    });
    expect(client.state).to.equal('connected');
    expect((await client.send(groupId, 'still alice')).senderId).to.equal(alice.id);

    proxy.hold('upstream');
    const sends = Array.from({ length: 5 }, (_, i) => track(client.send(groupId, `alice again ${i}`)));
    const me = await client.resume(bob.stored);
    expect(me.id).to.equal(bob.id);
    proxy.release();
    await waitFor(() => sends.every((s) => s.settled()), { what: 'every send of alice to settle' });
    for (const send of sends)
      expect(send.error()).to.be.instanceOf(XFChatError).and.include({ code: 'UNAUTHORIZED' });
    await client.connect();
    expect((await client.send(groupId, 'bob now')).senderId).to.equal(bob.id);
    const bodies = (await storedMessages(server, groupId)).map((m) => m.body);
    expect([
      ['still alice', 'bob now'],
      ['still alice', 'alice again 0', 'bob now'],
    ]).to.deep.include(bodies);
  });

  it('does not connect by itself under the next login when the renewal of a refused token fails after it', async () => {
    const bobName = uniqueUsername('bob');
    await pool.open(server.url).signup({ username: bobName, password: PASSWORD });

    let failRefresh: () => void = () => undefined;
    let refreshSeen = false;
    const flakyFetch: typeof fetch = (input, init) => {
      const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
      if (url.endsWith('/auth/refresh')) {
        refreshSeen = true;
        // The network fails this refresh, once the test says.
        return new Promise((_resolve, reject) => (failRefresh = () => reject(new TypeError('fetch failed'))));
      }
      return fetch(input, init);
    };
    const a = pool.open(server.url, { fetch: flakyFetch });
    await a.signup({ username: uniqueUsername('alice'), password: PASSWORD });
    const states: ConnectionState[] = [];
    a.on('state', (s) => states.push(s));
    // The access token is refused at the handshake (as after the machine slept): the SDK renews it.
    a.token = 'not-a-valid-token';
    const connecting = a.connect().catch((err: unknown) => (err as { code?: string }).code);
    while (!refreshSeen) await new Promise((r) => setTimeout(r, 10));

    // The user logs in as someone else meanwhile: alice's session ends here and "the connection closes, so call
    // connect() again for the new session".
    await a.login(bobName, PASSWORD);
    expect(await connecting).to.equal('UNAUTHORIZED');
    expect(a.state).to.equal('disconnected');
    failRefresh();
    await new Promise((r) => setTimeout(r, 1000));
    expect(a.state, `states: ${states.join(' → ')}`).to.equal('disconnected');
  });
});
