import { expect } from 'chai';
import { LINGER_MS } from '../../lib/realtime/transportEnd.js';
import { createGroup, seedMessages } from '../helpers/chat.js';
import { useNode } from '../helpers/nodes.js';
import { startProxy, type FaultProxy } from '../helpers/proxy.js';
import { connectSocket, type ClientSocket } from '../helpers/sockets.js';
import { insertUser, type TestUser } from '../helpers/users.js';
import { waitFor } from '../helpers/waitFor.js';

const MAX_BUFFERED = 4 * 1024 * 1024;
/** 4000 astral emoji: 16 KB a message, so a page of 200 is cut at the 1 MiB page bound. */
const BIG_BODY = '💥'.repeat(4000);

interface EngineConn {
  readyState: string;
  writeBuffer: Array<{ data?: unknown }>;
  transport: { name: string; socket?: { bufferedAmount?: number } };
}

/** What the node holds over its engine.io connections: packets not flushed, plus ws's unsent bytes. */
function held(clients: Record<string, EngineConn>): { bytes: number; transports: number } {
  let bytes = 0;
  let transports = 0;
  for (const conn of Object.values(clients)) {
    transports += 1;
    for (const p of conn.writeBuffer) if (typeof p.data === 'string') bytes += Buffer.byteLength(p.data);
    bytes += conn.transport.socket?.bufferedAmount ?? 0;
  }
  return { bytes, transports };
}

/**
 * A socket disconnected (by its client, or by the node: a session ended, a token expired) keeps its transport until
 * what it queues has gone to the client. A client that stopped reading never takes it: the node ends such a
 * transport at once when the client disconnected, within LINGER_MS otherwise, and the connection limits count the
 * socket until then (lib/realtime/transportEnd.ts, limits.ts). Before, the limits let the socket go at its
 * disconnect while its transport, and megabytes of queue, stayed until engine.io's ping timeout (45 s): one user
 * disconnecting stalled sockets one after the other held the node's memory past MAX_SOCKETS_PER_USER x
 * SOCKET_MAX_BUFFERED_BYTES.
 */
describe('sockets disconnected with a queue their client does not read', function () {
  this.timeout(120_000);
  const { server } = useNode({
    env: {
      MAX_SOCKETS_PER_USER: '1',
      SOCKET_MAX_BUFFERED_BYTES: String(MAX_BUFFERED),
      RATE_LIMIT_READS_PER_SEC: '20',
      SOCKET_EVENTS_PER_SEC: '50',
    },
  });
  let proxy: FaultProxy | undefined;
  const sockets: ClientSocket[] = [];
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.close();
    await proxy?.close();
    proxy = undefined;
  });

  const engineClients = () =>
    (server.services.io.engine as unknown as { clients: Record<string, EngineConn> }).clients;

  /** A user with a group of 200 messages of 16 KB. */
  async function userWithBigHistory(): Promise<{ user: TestUser; groupId: string }> {
    const { knex } = server.services.db;
    const user = await insertUser(knex, server.services.config);
    const group = await createGroup(server.url, user, [], 'big');
    await seedMessages(knex, group.id, user.id, 200, BIG_BODY);
    return { user, groupId: group.id };
  }

  /** A socket of `user` through the proxy that stops reading, with 2 MiB or more queued for it in the node. */
  async function stalledSocket(user: TestUser, groupId: string, index: number) {
    proxy ??= await startProxy(server.url);
    const s = await connectSocket(proxy.url, user.token);
    sockets.push(s);
    proxy.connections[index]!.stall('downstream');
    const serverSocket = [...server.services.io.of('/').sockets.values()].find((x) => x.id === s.id)!;
    for (let i = 0; i < 9; i += 1)
      s.emit('conversation:subscribe', { conversationId: groupId, limit: 200 }, () => undefined);
    const conn = serverSocket.conn as unknown as EngineConn;
    await waitFor(() => held({ x: conn }).bytes >= 2 * 1024 * 1024, {
      what: 'the stalled socket to have 2 MiB queued in the node',
      timeoutMs: 20_000,
    });
    expect(serverSocket.disconnected, 'not cut: under the cap').to.equal(false);
    return { client: s, serverSocket };
  }

  it('ends the transport at once when the client disconnects it: one user cannot pile up stalled queues', async () => {
    const { user, groupId } = await userWithBigHistory();
    for (let round = 0; round < 3; round += 1) {
      const { client, serverSocket } = await stalledSocket(user, groupId, round);
      // Socket.IO's DISCONNECT of the main namespace ("41"), its transport left open.
      (client.io.engine as unknown as { send(data: string): void }).send('1');
      await waitFor(() => serverSocket.disconnected, { what: 'the server socket to disconnect' });
      // Its slot (one a user) is free again only once the transport is gone: the next round connects.
      await waitFor(() => held(engineClients()).transports === 0, {
        what: 'the disconnected socket’s transport to end',
        timeoutMs: 2000,
      });
    }
    expect(held(engineClients())).to.deep.equal({ bytes: 0, transports: 0 });
  });

  it('counts a socket the node disconnected until its transport ends, LINGER_MS at the latest', async () => {
    const { user, groupId } = await userWithBigHistory();
    const { serverSocket } = await stalledSocket(user, groupId, 0);
    // As for a session ended or a token expired.
    const disconnectedAt = Date.now();
    serverSocket.disconnect(true);
    // Its transport holds the queue and the user's one slot: another socket of the user is refused meanwhile.
    const refused = await connectSocket(server.url, user.token).then(
      (s) => {
        sockets.push(s);
        return 'connected';
      },
      (err: Error) => err.message,
    );
    expect(refused, 'another socket of the user while the transport lingers').to.equal('RATE_LIMITED');
    const conn = serverSocket.conn as unknown as EngineConn;
    expect(conn.readyState, 'its transport, while it holds the queue').to.equal('closing');
    await waitFor(() => conn.readyState === 'closed', {
      what: 'the transport to end',
      timeoutMs: LINGER_MS + 5000,
    });
    expect(Date.now() - disconnectedAt).to.be.at.least(LINGER_MS - 500);
    sockets.push(await connectSocket(server.url, user.token));
  });
});
