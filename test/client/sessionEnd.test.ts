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
});
