import { expect } from 'chai';
import { friendsOf, newUser, record } from '../helpers/chat.js';
import { request } from '../helpers/http.js';
import { useTwoNodes } from '../helpers/nodes.js';
import type { RunningServer } from '../../lib/server.js';
import { waitFor } from '../helpers/waitFor.js';

/** The postgres adapter's client, as far as these tests reach into it (its pool and its publish step). */
interface AdapterClient {
  publish(message: { type: number }): Promise<void>;
  pool: { query: (...args: unknown[]) => Promise<unknown> };
}

const adapterClient = (node: RunningServer): AdapterClient =>
  (node.services.io.of('/').adapter as unknown as { client: AdapterClient }).client;

/** socket.io-adapter's MessageType.BROADCAST. */
const BROADCAST = 3;

/** The size in bytes of each broadcast of `event` that `node` sends to the other nodes, while `body` runs. */
async function broadcastSizes<T>(node: RunningServer, event: string, body: (sizes: number[]) => Promise<T>) {
  const client = adapterClient(node);
  const publish = client.publish.bind(client);
  const sizes: number[] = [];
  client.publish = (message) => {
    const json = JSON.stringify(message);
    if (message.type === BROADCAST && json.includes(`"${event}"`)) sizes.push(Buffer.byteLength(json));
    return publish(message);
  };
  try {
    return await body(sizes);
  } finally {
    client.publish = publish;
  }
}

/**
 * Broadcasts between nodes through @socket.io/postgres-adapter: by NOTIFY up to its payload threshold, above it
 * through the socket_io_attachments table, which the receiving node reads before it delivers.
 */
describe('cluster: broadcasts through the postgres adapter', function () {
  this.timeout(90_000);
  const { a, b, pool } = useTwoNodes();

  it('delivers a broadcast of exactly 8000 bytes on the other node (PostgreSQL refuses such a NOTIFY)', async () => {
    const listener = await newUser(a);
    const onB = await pool.open(b.url, listener);
    const heard = record(onB, 'user:updated');
    const emit = (padding: string) =>
      a.services.io.to(`user:${listener.id}`).emit('user:updated', {
        id: listener.id,
        username: null,
        displayName: padding,
        createdAt: new Date(0).toISOString(),
      });
    await broadcastSizes(a, 'user:updated', async (sizes) => {
      emit('p');
      await waitFor(() => heard.length === 1, { what: 'the first broadcast on node B' });
      // The padding is ASCII: one more character is one more byte.
      emit('p'.repeat(1 + 8000 - sizes[0]!));
      // Published once the one before it was sent (in order), not within emit().
      await waitFor(() => sizes.length === 2, { what: 'the second broadcast published' });
      expect(sizes[1], 'the second broadcast, in bytes').to.equal(8000);
      await waitFor(() => heard.length === 2, { what: 'the 8000-byte broadcast on node B', timeoutMs: 5000 });
      expect(heard[1]!.displayName).to.have.length(1 + 8000 - sizes[0]!);
    });
  });

  it('tells a big audience of a rename by NOTIFY: a later rename is never undone by a late attachment', async () => {
    const me = await newUser(a);
    // 250 rooms in one broadcast (44 bytes each) would be over 8000 bytes.
    const friends = await friendsOf(a, me, 250);
    const onB = await pool.open(b.url, friends[0]!);
    const heard = record(onB, 'user:updated');
    const rename = (displayName: string) =>
      request(a.url, 'PATCH', '/users/me', { token: me.token, body: { displayName } });

    // Node B reads an attachment only once the next notice has been heard there (as when its adapter pool is busy).
    const poolB = adapterClient(b).pool;
    const query = poolB.query.bind(poolB);
    let releaseReads: () => void = () => undefined;
    const readsHeld = new Promise<void>((resolve) => (releaseReads = resolve));
    poolB.query = (...args: unknown[]) =>
      typeof args[0] === 'string' && args[0].startsWith('SELECT payload FROM')
        ? readsHeld.then(() => query(...args))
        : query(...args);
    try {
      const long = 'L'.repeat(64);
      await broadcastSizes(a, 'user:updated', async (sizes) => {
        expect((await rename(long)).status).to.equal(200);
        expect((await rename('S')).status).to.equal(200);
        await waitFor(() => heard.some((u) => u.displayName === 'S'), {
          what: 'the second rename on node B',
        });
        // Every broadcast went by NOTIFY; those of a rename together name every room once.
        expect(sizes.length).to.be.above(2);
        for (const size of sizes) expect(size).to.be.below(8000);
      });
      releaseReads();
      // A late notice would arrive meanwhile.
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(heard.map((u) => u.displayName)).to.deep.equal([long, 'S']);
    } finally {
      releaseReads();
      poolB.query = query;
    }
  });
});
