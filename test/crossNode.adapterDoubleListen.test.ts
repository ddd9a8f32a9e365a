import { expect } from 'chai';
import { friendRequestFromAToB } from './helpers/adapterHold.js';
import { useTwoNodes } from './helpers/nodes.js';
import { adminQuery } from './helpers/postgres.js';
import type { RunningServer } from '../lib/server.js';
import { waitFor } from './helpers/waitFor.js';

/**
 * Node B's Socket.IO-adapter LISTEN connection ends (a restart, an operator's pg_terminate_backend) and the
 * connection the adapter takes to replace it ends too while its LISTEN is in flight. The adapter's initClient()
 * then scheduled a reconnection twice, once from the client's 'end' handler and once from its catch, and both ran:
 * node B ended up with two LISTEN connections, each handing every adapter message to the node, so each broadcast
 * was delivered twice to B's sockets, and two of the adapter pool's four connections stayed checked out for good.
 * One reconnection is scheduled at a time now (lib/realtime/adapterPool.ts, reconnectingOnce).
 */
interface PgClient {
  processID: number;
  query: (...args: unknown[]) => Promise<unknown>;
}
interface PubSub {
  client?: PgClient;
  pool: { connect: (...args: unknown[]) => Promise<PgClient>; totalCount: number; idleCount: number };
}
const pubsubOf = (node: RunningServer): PubSub =>
  (node.services.io.of('/').adapter as unknown as { client: PubSub }).client;

describe('cross-node: the adapter LISTEN connection lost again while it reconnects', function () {
  this.timeout(90_000);
  const { a, b, pool } = useTwoNodes();

  for (const secondLoss of [false, true]) {
    it(`node B still hears each broadcast once (one LISTEN connection, no leaked pool slot)${secondLoss ? '' : ' (control: a single loss)'}`, async () => {
      const pubsub = pubsubOf(b);
      const pgPool = pubsub.pool;
      const connect = pgPool.connect.bind(pgPool);
      let armed = secondLoss;
      pgPool.connect = (...args: unknown[]) => {
        // pool.query() connects with a callback: only the adapter's own (promise) connect is its LISTEN client.
        if (!armed || args.length > 0) return connect(...args);
        return connect().then(armOnce);
      };
      const armOnce = (client: PgClient): PgClient => {
        if (!armed) return client;
        armed = false;
        const query = client.query.bind(client);
        // This connection dies while its LISTEN is on its way (as a second restart, or a kill, at that moment).
        client.query = async (...qa: unknown[]) => {
          if (typeof qa[0] === 'string' && qa[0].startsWith('LISTEN ')) {
            await adminQuery('SELECT pg_terminate_backend($1)', [client.processID]);
          }
          return query(...qa);
        };
        return client;
      };
      try {
        const first = pubsub.client!.processID;
        await adminQuery('SELECT pg_terminate_backend($1)', [first]);
        if (secondLoss)
          await waitFor(() => !armed, { what: 'the adapter of node B reconnecting', timeoutMs: 10_000 });
        await waitFor(() => pubsub.client !== undefined && pubsub.client.processID !== first, {
          what: 'the adapter of node B listening again',
          timeoutMs: 15_000,
        });
        // Both scheduled reconnections (1-3 s each) have had their time.
        await new Promise((r) => setTimeout(r, 4000));
      } finally {
        pgPool.connect = connect;
      }

      const { heard, ask } = await friendRequestFromAToB({ a, b, pool });
      await ask();
      await waitFor(() => heard.length >= 1, { what: 'friend:request on node B' });
      await new Promise((r) => setTimeout(r, 1000));
      expect(heard, 'friend:request events heard on node B').to.have.length(1);
      // Only the LISTEN connection stays checked out (a publish holds one for a moment).
      await waitFor(() => pgPool.totalCount - pgPool.idleCount === 1, {
        what: 'one adapter pool connection checked out on node B (the LISTEN one)',
        timeoutMs: 3000,
      });
    });
  }
});
