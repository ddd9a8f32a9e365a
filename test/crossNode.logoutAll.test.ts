import { expect } from 'chai';
import jwt from 'jsonwebtoken';
import type { AuthResponse } from '../lib/protocol/index.js';
import type { RunningServer } from '../lib/server.js';
import { record } from './helpers/chat.js';
import { holdPublishes } from './helpers/adapterHold.js';
import { useTwoNodes } from './helpers/nodes.js';
import { disconnected } from './helpers/events.js';
import { request } from './helpers/http.js';
import { connectSocket } from './helpers/sockets.js';
import { uniqueUsername } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';
import { useClientPool } from './client/fixtures.js';
import type { SessionEnded } from '../lib/client/index.js';

const PASSWORD = 'correct horse battery';

/**
 * POST /auth/logout-all ends every session the user has at that moment. A session started after it (the user signs
 * in again on another device) is live: its socket must not be told `session:ended` nor be cut.
 */
describe('logout-all on one node and a session started after it on another', function () {
  const nodes = useTwoNodes();
  const pool = useClientPool();

  async function auth(node: RunningServer, path: string, username: string) {
    const res = await request<AuthResponse>(node.url, 'POST', path, {
      body: { username, password: PASSWORD },
    });
    expect(res.status, res.text).to.be.oneOf([200, 201]);
    return res.body;
  }

  it('a socket of a session that began after logout-all committed is neither told session:ended nor disconnected', async () => {
    const username = uniqueUsername('lala');
    const first = await auth(nodes.a, '/auth/signup', username);
    // Node A's cross-node notices arrive late at node B (a busy adapter pool, a loaded node: the docs say
    // "milliseconds to tens of milliseconds"); held here so the order is certain.
    const hold = holdPublishes(nodes.a);
    try {
      const out = await request(nodes.a.url, 'POST', '/auth/logout-all', { token: first.token });
      expect(out.status).to.equal(204);
      await waitFor(() => hold.held() > 0);
      // The user signs in again, on node B, after the logout-all's 204, and connects there.
      const second = await auth(nodes.b, '/auth/login', username);
      const socket = await connectSocket(nodes.b.url, second.token);
      nodes.pool.track(socket);
      const reasons = record(socket, 'session:ended');
      const gone = disconnected(socket);
      let cut: string | undefined;
      void gone.then((r) => (cut = r));
      hold.release();
      await new Promise((r) => setTimeout(r, 1500));
      // The new session is live: its token works on both nodes.
      for (const node of [nodes.a, nodes.b]) {
        expect((await request(node.url, 'GET', '/auth/me', { token: second.token })).status).to.equal(200);
      }
      const sid = (jwt.decode(second.token) as { sid: string }).sid;
      expect(sid).to.be.a('string');
      expect(reasons, 'the live session’s socket was told its session ended').to.deep.equal([]);
      expect(cut, 'the live session’s socket was disconnected').to.equal(undefined);
    } finally {
      hold.release();
    }
  });

  it('the SDK of a device that signed in after another device logged out everywhere stays signed in', async () => {
    const username = uniqueUsername('lalb');
    const first = await auth(nodes.a, '/auth/signup', username);
    const hold = holdPublishes(nodes.a);
    try {
      expect(
        (await request(nodes.a.url, 'POST', '/auth/logout-all', { token: first.token })).status,
      ).to.equal(204);
      await waitFor(() => hold.held() > 0);
      const client = pool.open(nodes.b.url, { transports: ['websocket'] });
      const ended: SessionEnded[] = [];
      client.on('sessionEnded', (e) => ended.push(e));
      await client.login(username, PASSWORD);
      await client.connect();
      hold.release();
      await new Promise((r) => setTimeout(r, 1500));
      expect(ended, 'the new device was told its (live) session ended, and dropped its tokens').to.deep.equal(
        [],
      );
      expect(client.state).to.equal('connected');
    } finally {
      hold.release();
    }
  });
});
