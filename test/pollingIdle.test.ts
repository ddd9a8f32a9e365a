import { expect } from 'chai';
import { io as connect } from 'socket.io-client';
import { newUser } from './helpers/chat.js';
import { useNode } from './helpers/nodes.js';

/**
 * A Socket.IO long-poll is silent until the server's next ping; a connection silent both ways for
 * HTTP_IDLE_TIMEOUT_MS is closed (lib/server.ts). The ping comes at most every half of it: with a ping every 25 s
 * and a shorter idle timeout, every idle long-polling client (the transport behind proxies that refuse WebSocket)
 * lost its poll and reconnected, over and over.
 */
describe('an idle long-polling client and HTTP_IDLE_TIMEOUT_MS', function () {
  this.timeout(30_000);
  const { server } = useNode({ env: { HTTP_IDLE_TIMEOUT_MS: '2000' } });

  it('stays connected for three times the idle timeout', async () => {
    const user = await newUser(server);
    const socket = connect(server.url, {
      auth: { token: user.token },
      transports: ['polling'],
      reconnection: false,
      forceNew: true,
    });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('connect_error', reject);
      });
      const reasons: string[] = [];
      socket.on('disconnect', (reason) => reasons.push(reason));
      await new Promise((resolve) => setTimeout(resolve, 6000));
      expect(reasons, 'disconnects of an idle polling client').to.deep.equal([]);
      expect(socket.connected).to.equal(true);
    } finally {
      socket.close();
    }
  });
});
