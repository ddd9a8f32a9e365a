import { friendRequestFromAToB } from './helpers/adapterHold.js';
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
    const { heard, ask } = await friendRequestFromAToB({ a, b, pool });
    await ask();
    await waitFor(() => heard.length === 1, { what: 'friend:request on node B' });
  });

  it('a friend request made on node A reaches the recipient on node B within 40 s', async () => {
    const { heard, ask } = await friendRequestFromAToB({ a, b, pool });
    const stream = listenStream(b);
    // Nothing reaches node B on that connection from now on; the connection itself is not closed.
    stream.pause();
    try {
      await ask();
      // The node gives up a silent LISTEN connection within LISTEN_SILENT_AT_MOST_MS (15 s) and listens again.
      await waitFor(() => heard.length === 1, {
        what: 'friend:request on node B',
        timeoutMs: 40_000,
      });
    } finally {
      stream.resume();
    }
  });
});
