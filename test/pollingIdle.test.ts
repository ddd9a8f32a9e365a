import { expect } from 'chai';
import { io as connect } from 'socket.io-client';
import { newUser } from './helpers/chat.js';
import { captureLogs } from './helpers/logCapture.js';
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

/**
 * With pings every half HTTP_IDLE_TIMEOUT_MS, a client answers several before its CONNECT when that waits (an `auth`
 * callback that fetches its token): its pongs do not count among the packets a transport may send before it
 * (lib/realtime/transportGuard.ts), or it was cut within the connect timeout it was promised.
 */
describe('pongs before a CONNECT', function () {
  this.timeout(30_000);
  const logs = captureLogs('warn');
  const { server } = useNode({ env: { HTTP_IDLE_TIMEOUT_MS: '1000' }, logger: logs.logger });

  it('a client whose CONNECT comes 6 s after its transport opened (within the 10 s connect timeout) connects', async () => {
    const user = await newUser(server);
    const socket = connect(server.url, {
      // The token comes 6 s later (an application fetching it); the transport answers pings meanwhile.
      auth: (cb: (data: object) => void) => setTimeout(() => cb({ token: user.token }), 6000),
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
    });
    try {
      const outcome = await new Promise<string>((resolve) => {
        socket.once('connect', () => resolve('connected'));
        socket.once('connect_error', (err) => resolve(`connect_error: ${err.message}`));
        socket.io.once('close', (reason) => resolve(`transport closed: ${reason}`));
      });
      const reasons = logs
        .entries()
        .filter((e) => e.msg === 'closing a transport')
        .map((e) => e.reason);
      expect(outcome, `transports closed: ${JSON.stringify(reasons)}`).to.equal('connected');
    } finally {
      socket.close();
    }
  });
});
