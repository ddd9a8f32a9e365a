import { expect } from 'chai';
import { newUser, record } from './helpers/chat.js';
import { request } from './helpers/http.js';
import { useTwoNodes } from './helpers/nodes.js';
import type { RunningServer } from '../lib/server.js';
import { waitFor } from './helpers/waitFor.js';

/**
 * Node B's Socket.IO-adapter LISTEN connection goes silent without closing (a half-open TCP link: a NAT or
 * firewall idle timeout, a failover behind a proxy): nothing arrives on it any more, and no 'end' is emitted. Before,
 * with TCP keepalive at the OS default (2 h), the node stayed deaf to every adapter broadcast (friend requests,
 * typing, read markers, user updates, session ends) without noticing. Now it asks the connection a `SELECT 1` every
 * LISTEN_CHECK_MS and reconnects when no answer comes (lib/realtime/adapterPool.ts); what it missed is told.
 */
interface PgStream {
  pause(): void;
  resume(): void;
}
const listenStream = (node: RunningServer): PgStream => {
  const pubsub = (
    node.services.io.of('/').adapter as unknown as {
      client: { client?: { connection: { stream: PgStream } } };
    }
  ).client;
  const client = pubsub.client;
  if (client === undefined) throw new Error('the adapter has no LISTEN client');
  return client.connection.stream;
};

describe('cross-node: a node whose adapter LISTEN connection went silent (half-open) notices it', function () {
  this.timeout(90_000);
  const { a, b, pool } = useTwoNodes();

  it('(control) with the connection healthy, a friend request made on node A reaches the recipient on node B', async () => {
    const sender = await newUser(a);
    const recipient = await newUser(a);
    const onB = await pool.open(b.url, recipient);
    const heard = record(onB, 'friend:request');
    const res = await request(a.url, 'POST', '/friends/requests', {
      token: sender.token,
      body: { username: recipient.username },
    });
    expect(res.status).to.equal(201);
    await waitFor(() => heard.length === 1, { what: 'friend:request on node B' });
  });

  it('a friend request made on node A reaches the recipient on node B within 40 s', async () => {
    const sender = await newUser(a);
    const recipient = await newUser(a);
    const onB = await pool.open(b.url, recipient);
    const heard = record(onB, 'friend:request');

    const stream = listenStream(b);
    // Nothing reaches node B on that connection from now on; the connection itself is not closed.
    stream.pause();
    try {
      const res = await request(a.url, 'POST', '/friends/requests', {
        token: sender.token,
        body: { username: recipient.username },
      });
      expect(res.status).to.equal(201);
      // The control bus gives up a silent connection within ~10 s + the query timeout; allow the adapter 40 s.
      await waitFor(() => heard.length === 1, {
        what: 'friend:request on node B',
        timeoutMs: 40_000,
      });
    } finally {
      stream.resume();
    }
  });
});
