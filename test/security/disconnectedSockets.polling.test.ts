import { expect } from 'chai';
import { LINGER_MS } from '../../lib/realtime/transportEnd.js';
import { useNode } from '../helpers/nodes.js';
import { insertUser } from '../helpers/users.js';
import { waitFor } from '../helpers/waitFor.js';

/**
 * Over long-polling, a transport asked to close waits for the client's next poll to say so (engine.io's
 * `shouldClose`, or its 30 s closeTimeout), and a second close does nothing. A client that disconnected its socket
 * and polls no more, or that the node disconnected and that is gone, kept its transport, and its slots, 30 s. The
 * node now ends it at once when the client disconnected, LINGER_MS after at the latest otherwise
 * (lib/realtime/transportEnd.ts).
 */
describe('sockets disconnected over long-polling, no poll after', function () {
  this.timeout(60_000);
  const { server } = useNode({ env: { MAX_SOCKETS_PER_USER: '1' } });

  it('ends the transport (and frees the user slot) at once, not after engine.io’s 30 s close timeout', async () => {
    const user = await insertUser(server.services.db.knex, server.services.config);
    const base = `${server.url}/socket.io/?EIO=4&transport=polling`;
    const open = await (await fetch(base)).text();
    const { sid } = JSON.parse(open.slice(1)) as { sid: string };
    const url = `${base}&sid=${sid}`;
    const post = async (body: string) => {
      const res = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'text/plain' } });
      expect(await res.text()).to.equal('ok');
    };
    await post(`40${JSON.stringify({ token: user.token })}`);
    const connectAck = await (await fetch(url)).text();
    expect(connectAck.startsWith('40{'), connectAck).to.equal(true);
    const serverSocket = [...server.services.io.of('/').sockets.values()].find(
      (s) => s.data.userId === user.id,
    )!;
    // The client's own disconnect() of the main namespace; it polls no more.
    await post('41');
    await waitFor(() => serverSocket.disconnected, { what: 'the server socket to disconnect' });
    const conn = serverSocket.conn as unknown as { readyState: string };
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, 2000));
    const state = { readyState: conn.readyState, after: Date.now() - t0 };
    expect(
      state.readyState,
      `transport 2 s after the client's disconnect: ${JSON.stringify(state)}`,
    ).to.equal('closed');
  });
  it('ends a polling transport the node disconnected within LINGER_MS (the docs: "10 s after the disconnect at the latest")', async () => {
    const user = await insertUser(server.services.db.knex, server.services.config);
    const base = `${server.url}/socket.io/?EIO=4&transport=polling`;
    const open = await (await fetch(base)).text();
    const { sid } = JSON.parse(open.slice(1)) as { sid: string };
    const url = `${base}&sid=${sid}`;
    const res = await fetch(url, {
      method: 'POST',
      body: `40${JSON.stringify({ token: user.token })}`,
      headers: { 'content-type': 'text/plain' },
    });
    expect(await res.text()).to.equal('ok');
    expect((await (await fetch(url)).text()).startsWith('40{')).to.equal(true);
    const serverSocket = [...server.services.io.of('/').sockets.values()].find(
      (s) => s.data.userId === user.id,
    )!;
    // A poll waits; the node disconnects the socket (as at a token's expiry); the poll takes the DISCONNECT and the
    // client (its network gone) polls no more.
    const poll = fetch(url).then((r) => r.text());
    await new Promise((r) => setTimeout(r, 200));
    const disconnectedAt = Date.now();
    serverSocket.disconnect(true);
    expect(await poll).to.contain('41');
    const conn = serverSocket.conn as unknown as { readyState: string };
    await waitFor(() => conn.readyState === 'closed', {
      what: `the transport to end within LINGER_MS (+3 s); it is ${conn.readyState}`,
      timeoutMs: LINGER_MS + 3000,
    }).catch((err: Error) => {
      throw new Error(
        `${err.message}; readyState ${conn.readyState} after ${Date.now() - disconnectedAt} ms`,
      );
    });
  });
});
