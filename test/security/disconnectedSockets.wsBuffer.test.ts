import { expect } from 'chai';
import { createGroup, seedMessages } from '../helpers/chat.js';
import { useNode } from '../helpers/nodes.js';
import { startProxy, type FaultProxy } from '../helpers/proxy.js';
import { connectSocket, type ClientSocket } from '../helpers/sockets.js';
import { insertUser } from '../helpers/users.js';
import { waitFor } from '../helpers/waitFor.js';

const BIG_BODY = '💥'.repeat(4000);

interface WsLike {
  bufferedAmount: number;
  readyState: number;
}
interface EngineConn {
  readyState: string;
  writeBuffer: unknown[];
  transport: { name: string; writable: boolean; socket?: WsLike };
  on(ev: string, fn: (...a: unknown[]) => void): void;
}

/**
 * A client's disconnect of a stalled WebSocket whose queue is all in `ws` (engine.io's writeBuffer empty: the usual
 * state once a big answer went out). engine.io counts the transport closed as soon as it asks for the closing
 * handshake, which `ws` queues behind the unsent bytes: a graceful close at the disconnect left `ws` holding them
 * until its own 30 s close timeout, while the connection limits gave the user's slot back. The node now terminates
 * the WebSocket at once (lib/realtime/transportEnd.ts).
 */
describe('sockets disconnected by their client: a stalled WebSocket whose queue is all in ws', function () {
  this.timeout(120_000);
  const { server } = useNode({
    env: {
      MAX_SOCKETS_PER_USER: '1',
      SOCKET_MAX_BUFFERED_BYTES: String(16 * 1024 * 1024),
      RATE_LIMIT_READS_PER_SEC: '50',
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

  it('frees the ws buffer (terminates the websocket) promptly after the client disconnects its socket', async () => {
    const { knex } = server.services.db;
    const user = await insertUser(knex, server.services.config);
    const group = await createGroup(server.url, user, [], 'big');
    await seedMessages(knex, group.id, user.id, 200, BIG_BODY);

    proxy = await startProxy(server.url);
    const s = await connectSocket(proxy.url, user.token);
    sockets.push(s);
    proxy.connections[0]!.stall('downstream');
    const serverSocket = [...server.services.io.of('/').sockets.values()].find((x) => x.id === s.id)!;
    const conn = serverSocket.conn as unknown as EngineConn;
    let created = 0;
    conn.on('packetCreate', () => (created += 1));
    const ws = conn.transport.socket!;
    // One page at a time until the kernel's buffers are full and ws holds the rest of the last one.
    for (let i = 0; i < 40 && ws.bufferedAmount === 0; i += 1) {
      const before = created;
      s.emit('conversation:subscribe', { conversationId: group.id, limit: 200 }, () => undefined);
      await waitFor(() => created > before, { what: 'the page to be sent' });
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(ws.bufferedAmount, 'ws holds part of a page').to.be.greaterThan(0);
    expect(conn.writeBuffer.length, 'engine.io writeBuffer').to.equal(0);
    const heldBytes = ws.bufferedAmount;

    // Socket.IO's DISCONNECT of the main namespace, its transport left open (as the commit's own test does).
    (s.io.engine as unknown as { send(data: string): void }).send('1');
    await waitFor(() => serverSocket.disconnected, { what: 'the server socket to disconnect' });

    // The user's one slot is already free again...
    const other = await connectSocket(server.url, user.token).then(
      (x) => {
        sockets.push(x);
        return 'connected';
      },
      (err: Error) => err.message,
    );
    // ...while the old websocket still holds its bytes.
    await new Promise((r) => setTimeout(r, 2000));
    const state = {
      wsReadyState: ws.readyState,
      wsBufferedBytes: ws.bufferedAmount,
      heldBytes,
      otherSocketOfUser: other,
    };
    expect(state.wsReadyState, `the disconnected websocket ends at once: ${JSON.stringify(state)}`).to.equal(
      3,
    );
  });
});
