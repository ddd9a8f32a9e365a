import { expect } from 'chai';
import type { ConnectionState, XFChatClient } from '../../lib/client/index.js';
import { useNode } from '../helpers/nodes.js';
import { insertFriendship, uniqueUsername } from '../helpers/users.js';
import { waitFor } from '../helpers/waitFor.js';
import { failure, useClientPool } from './fixtures.js';

const PASSWORD = 'correct horse battery';

/**
 * docs/client.md, "What a session takes with it": when the session ends (a login on the same client included),
 * "every send not yet acknowledged, queued or in flight ... reject at once with UNAUTHORIZED ... and none of them is
 * ever sent later, under this login or the next one on the same client."
 *
 * A send made right after the machine wakes from a sleep longer than the heartbeat (the server's pingInterval +
 * pingTimeout, 45 s) is emitted while socket.io-client still reports `connected` but finds its ping expired: the
 * library then puts the packet in its `sendBuffer` (instead of writing it) and closes the connection. Nothing in the
 * SDK clears that buffer at the session's end, so the next connection, whoever is logged in by then, emits it.
 */
describe('SDK: a send socket.io-client buffered as the machine woke does not outlive its session', function () {
  const { server } = useNode();
  const pool = useClientPool();
  const realNow = Date.now;
  afterEach(() => {
    Date.now = realNow;
  });

  async function person(): Promise<{ id: string; username: string }> {
    const client = pool.open(server.url);
    const username = uniqueUsername('wake');
    const { user } = await client.signup({ username, password: PASSWORD });
    client.close();
    return { id: user.id, username };
  }

  /** The wall clock jumps ahead by `ms`, as after the machine slept (timers do not fire for the time slept). */
  function sleepMachine(ms: number): () => void {
    Date.now = () => realNow.call(Date) + ms;
    return () => {
      Date.now = realNow;
    };
  }

  /** Alice, connected, in a group with Bob; the client reconnects after `retryMs`; its states from now on. */
  async function aliceInGroup(retryMs: number) {
    const alice = await person();
    const bob = await person();
    await insertFriendship(server.services.db.knex, alice.id, bob.id);
    const client = pool.open(server.url, { retryBaseMs: retryMs, retryMaxMs: retryMs });
    await client.login(alice.username, PASSWORD);
    const group = await client.conversations.createGroup('shared', [bob.id]);
    await client.connect();
    const states: ConnectionState[] = [];
    client.on('state', (s) => states.push(s));
    return { alice, bob, client, group, states };
  }

  async function scenario(next: (client: XFChatClient, bob: { username: string }) => Promise<void>) {
    // Slow reconnection (as when the network is not back yet after the wake-up): 2-6 s.
    const { alice, bob, client, group, states } = await aliceInGroup(4000);

    // The machine slept 46 s; alice's app sends at once on waking (an outbox, say).
    const wake = sleepMachine(46_000);
    const sending = failure(client.send(group.id, 'alice typed this, for alice only'));
    await waitFor(() => states.includes('reconnecting'), {
      what: 'the ping timeout to close the connection',
    });
    wake();

    // Not reconnected under alice's session before the switch: the send was never on the wire in her session.
    expect(states).to.deep.equal(['reconnecting']);
    await next(client, bob);
    // The send belonged to alice's session: it rejected with UNAUTHORIZED at the switch.
    expect(await sending).to.include({ code: 'UNAUTHORIZED' });

    await client.connect();
    await new Promise((r) => setTimeout(r, 1500));
    const rows = await server.services.db
      .knex('messages')
      .where({ conversation_id: group.id })
      .select<Array<{ body: string; sender_id: string }>>('body', 'sender_id');
    const names = new Map([
      [alice.id, 'alice'],
      [bob.id, 'bob'],
    ]);
    const stored = rows.map((r) => `${names.get(r.sender_id)}: ${r.body}`);
    return { group, alice, bob, stored };
  }

  it('bob logs in on the client: alice’s unacknowledged send is not stored, least of all as bob’s', async () => {
    const { stored } = await scenario(async (client, bob) => {
      await client.login(bob.username, PASSWORD);
    });
    expect(stored).to.deep.equal([]);
  });

  it('alice logs out and in again: the send rejected at the logout is never sent later', async () => {
    const { stored } = await scenario(async (client) => {
      const me = await client.me();
      await client.logout();
      await client.login(me.username, PASSWORD);
    });
    expect(stored).to.deep.equal([]);
  });

  it('the same session: the send goes out once, after the reconnect', async () => {
    const { client, group, states } = await aliceInGroup(500);
    const wake = sleepMachine(46_000);
    const sending = client.send(group.id, 'sent on waking');
    await waitFor(() => states.includes('reconnecting'), {
      what: 'the ping timeout to close the connection',
    });
    wake();
    const sent = await sending;
    expect(sent.seq).to.equal(1);
    const rows = await server.services.db
      .knex('messages')
      .where({ conversation_id: group.id })
      .select('body');
    expect(rows.map((r: { body: string }) => r.body)).to.deep.equal(['sent on waking']);
  });
});
