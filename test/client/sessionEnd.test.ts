import { expect } from 'chai';
import type { RunningServer } from '../../lib/server.js';
import { XFChatError, type PublicMessage, type XFChatClient } from '../../lib/client/index.js';
import { useNode } from '../helpers/nodes.js';
import { useProxies, type FaultProxy } from '../helpers/proxy.js';
import { insertFriendship, uniqueUsername } from '../helpers/users.js';
import { waitFor } from '../helpers/waitFor.js';
import { storedMessages, useClientPool } from './fixtures.js';

const PASSWORD = 'correct horse battery';

/** A promise's outcome as it happens, for checks that it settled (and how) without awaiting a hang. */
function track<T>(promise: Promise<T>): { settled: () => boolean; error: () => XFChatError | undefined } {
  let settled = false;
  let error: XFChatError | undefined;
  promise.then(
    () => (settled = true),
    (err: unknown) => {
      settled = true;
      expect(err).to.be.instanceOf(XFChatError);
      error = err as XFChatError;
    },
  );
  return { settled: () => settled, error: () => error };
}

describe('client SDK: what a session leaves behind when it ends', function () {
  const { server } = useNode();
  const pool = useClientPool();
  const proxies = useProxies();

  /** Signs up a new user on a fresh client; with `proxy`, the socket goes through it while REST goes straight. */
  async function person(proxy?: FaultProxy): Promise<{ client: XFChatClient; id: string; username: string }> {
    const options = proxy
      ? {
          fetch: (input: string | URL | Request, init?: RequestInit) => {
            const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
            return fetch(url.replace(proxy.url, server.url), init);
          },
        }
      : {};
    const client = pool.open(proxy ? proxy.url : server.url, options);
    const username = uniqueUsername('sdke');
    const { user } = await client.signup({ username, password: PASSWORD });
    return { client, id: user.id, username };
  }

  async function friends(
    node: RunningServer,
    a: { client: XFChatClient; id: string },
    b: { id: string },
  ): Promise<string> {
    await insertFriendship(node.services.db.knex, a.id, b.id);
    return (await a.client.conversations.createDirect(b.id)).id;
  }

  it('settles sends in flight and queued at logout(), and never sends them under the next login', async () => {
    const proxy = await proxies.start(server.url);
    const alice = await person(proxy);
    const bob = await person();
    const conversationId = await friends(server, alice, bob);
    await alice.client.connect();

    // The first send is on its way (held between client and node), the second waits for its turn.
    proxy.hold('upstream');
    const inFlight = track(alice.client.send(conversationId, 'typed by alice'));
    const queued = track(alice.client.send(conversationId, 'also typed by alice'));
    await alice.client.logout();
    await waitFor(() => inFlight.settled() && queued.settled(), { what: 'both sends to settle' });
    expect(inFlight.error()).to.include({ code: 'UNAUTHORIZED' });
    expect(queued.error()).to.include({ code: 'UNAUTHORIZED' });
    expect(await alice.client.send(conversationId, 'after logout').catch((err: unknown) => err))
      .to.be.instanceOf(XFChatError)
      .and.include({ code: 'NOT_CONNECTED' });

    // Bob signs in on the same client: only what he sends goes out, as his.
    proxy.release();
    await alice.client.login(bob.username, PASSWORD);
    await alice.client.connect();
    const mine: PublicMessage = await alice.client.send(conversationId, 'typed by bob');
    expect(mine.senderId).to.equal(bob.id);
    const stored = await storedMessages(server, conversationId);
    expect(stored.map((m) => m.body)).to.deep.equal(['typed by bob']);
  });

  it('settles a pending connect() and a send waiting for the connection when logout() comes first', async () => {
    const proxy = await proxies.start(server.url);
    const alice = await person(proxy);
    const bob = await person();
    const conversationId = await friends(server, alice, bob);
    await proxy.stop(); // the realtime path is down; REST still works
    const connecting = track(alice.client.connect());
    const sending = track(alice.client.send(conversationId, 'waiting for the connection'));
    expect(alice.client.state).to.equal('connecting');
    await alice.client.logout();
    await waitFor(() => connecting.settled() && sending.settled(), {
      what: 'connect() and send() to settle',
    });
    expect(connecting.error()).to.include({ code: 'UNAUTHORIZED' });
    expect(sending.error()).to.include({ code: 'UNAUTHORIZED' });
    expect(alice.client.state).to.equal('disconnected');
    await proxy.start();
    expect(await storedMessages(server, conversationId)).to.deep.equal([]);
  });

  it('logs out locally when the server cannot be reached, and says the server was not told', async () => {
    const proxy = await proxies.start(server.url);
    const client = pool.open(proxy.url);
    await client.signup({ username: uniqueUsername('sdke'), password: PASSWORD });
    await client.connect();
    await proxy.stop();
    const error = await client.logout().catch((err: unknown) => err);
    expect(error).to.be.instanceOf(XFChatError).and.include({ code: 'NETWORK_ERROR' });
    expect(client.token).to.equal(undefined);
    expect(client.refreshToken).to.equal(undefined);
    expect(client.state).to.equal('disconnected');
  });

  /** Signs `username` out everywhere but on a client of its own, as from another device. */
  async function revokeFromAnotherDevice(username: string): Promise<void> {
    const other = pool.open(server.url);
    await other.login(username, PASSWORD);
    for (const session of await other.sessions.list())
      if (!session.current) await other.sessions.revoke(session.id);
  }

  it('rejects a pending whenReady() with CLIENT_CLOSED when the session is found over at connect(), as its subscription ended', async () => {
    const alice = await person();
    const bob = await person();
    const conversationId = await friends(server, alice, bob);
    const ended: string[] = [];
    alice.client.on('sessionEnded', ({ reason }) => ended.push(reason));
    const errors: string[] = [];
    // Made before connect() (allowed): its whenReady() waits for the connection.
    const subscription = alice.client.subscribe(conversationId, () => undefined, {
      onError: (err) => errors.push(err.code),
    });
    const ready = track(subscription.whenReady());
    await revokeFromAnotherDevice(alice.username);

    // The handshake refuses the revoked token, and so does the refresh: the session is over.
    expect(await alice.client.connect().catch((err: unknown) => err))
      .to.be.instanceOf(XFChatError)
      .and.include({ code: 'UNAUTHORIZED' });
    expect(ended).to.deep.equal(['expired']);
    await waitFor(() => ready.settled(), { what: 'whenReady() to settle' });
    expect(subscription.isActive).to.equal(false);
    expect(ready.error()).to.include({ code: 'CLIENT_CLOSED' });
    expect(errors).to.deep.equal([]);
  });

  it('rejects a pending whenReady() with CLIENT_CLOSED when the server ends the session on the live socket', async () => {
    let releaseChanges: (() => void) | undefined;
    const holdingChanges: typeof fetch = async (input, init) => {
      const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
      // The subscription's catch-up read of the changes feed waits: it is not ready while connected.
      if (url.includes('/changes?')) await new Promise<void>((resolve) => (releaseChanges = resolve));
      return fetch(input, init);
    };
    const client = pool.open(server.url, { fetch: holdingChanges });
    const username = uniqueUsername('sdke');
    const { user } = await client.signup({ username, password: PASSWORD });
    const alice = { client, id: user.id, username };
    const bob = await person();
    const conversationId = await friends(server, alice, bob);
    await client.messages.put(conversationId, 'e1', 'one');
    const ended: string[] = [];
    client.on('sessionEnded', ({ reason }) => ended.push(reason));
    await client.connect();
    const subscription = client.subscribe(conversationId, () => undefined, { afterSeq: 0, sinceVersion: 0 });
    const ready = track(subscription.whenReady());
    await waitFor(() => releaseChanges, { what: 'the catch-up to be on its way' });

    await revokeFromAnotherDevice(username);
    await waitFor(() => ready.settled(), { what: 'whenReady() to settle' });
    expect(ended).to.deep.equal(['revoked']);
    expect(subscription.isActive).to.equal(false);
    expect(ready.error()).to.include({ code: 'CLIENT_CLOSED' });
    releaseChanges!();
  });

  it('fires neither unauthorized nor sessionEnded for its own logout(), logoutAll() or deleteAccount()', async () => {
    for (const how of ['logout', 'logoutAll', 'deleteAccount'] as const) {
      for (let round = 0; round < 3; round++) {
        const { client } = await person();
        const events: string[] = [];
        client.on('unauthorized', () => events.push('unauthorized'));
        client.on('sessionEnded', ({ reason }) => events.push(`sessionEnded ${reason}`));
        await client.connect();
        if (how === 'deleteAccount') await client.deleteAccount(PASSWORD);
        else await client[how]();
        expect(client.state).to.equal('disconnected');
        expect(events, how).to.deep.equal([]);
      }
    }
  });

  it('fires sessionEnded when deleteAccount() fails after the server deleted the account (its answer lost)', async () => {
    // The deletion reaches the server, which does it; its answer is lost once the live socket has heard the end.
    const losingDeletion: typeof fetch = async (input, init) => {
      const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
      const response = await fetch(input, init);
      if (init?.method !== 'DELETE' || !url.endsWith('/users/me')) return response;
      await waitFor(() => client.state === 'disconnected', { what: 'the socket to hear the end' });
      throw new TypeError('fetch failed');
    };
    const client = pool.open(server.url, { fetch: losingDeletion });
    await client.signup({ username: uniqueUsername('sdke'), password: PASSWORD });
    const events: string[] = [];
    client.on('unauthorized', () => events.push('unauthorized'));
    client.on('sessionEnded', ({ reason }) => events.push(`sessionEnded ${reason}`));
    await client.connect();

    const error = await client.deleteAccount(PASSWORD).catch((err: unknown) => err);
    expect(error).to.be.instanceOf(XFChatError).and.include({ code: 'NETWORK_ERROR' });
    // The session is gone here, and the application hears why.
    expect(client.token).to.equal(undefined);
    expect(client.refreshToken).to.equal(undefined);
    expect(events).to.deep.equal(['sessionEnded deleted']);
  });
});
