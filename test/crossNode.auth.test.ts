import { expect } from 'chai';
import type { PublicFriendRequest } from '../lib/protocol/index.js';
import type { RunningServer } from '../lib/server.js';
import { collectEvents, disconnected } from './helpers/events.js';
import { request } from './helpers/http.js';
import { expectError } from './helpers/errors.js';
import { useTwoNodes } from './helpers/nodes.js';
import { connectSocket, type ClientSocket } from './helpers/sockets.js';
import { insertUser, type TestUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

interface Body {
  request: PublicFriendRequest;
  token: string;
}

/** Two nodes on one database: what one node does must reach the other through PostgreSQL alone. */
describe('accounts and friends across two nodes', function () {
  const { a: nodeA, b: nodeB, pool } = useTwoNodes();

  const newUser = () => insertUser(nodeA.services.db.knex, nodeA.services.config);
  const call = (node: RunningServer, user: TestUser | string, method: string, path: string, body?: unknown) =>
    request<Body>(node.url, method, path, { token: typeof user === 'string' ? user : user.token, body });
  const socketOn = async (node: RunningServer, token: string): Promise<ClientSocket> =>
    pool.track(await connectSocket(node.url, token));

  it('logout on node A disconnects the user on node B (and A) and revokes the token on both', async () => {
    const password = 'cross node password';
    const username = `x_${Date.now().toString(36)}`;
    const signup = await request<Body>(nodeA.url, 'POST', '/auth/signup', { body: { username, password } });
    expect(signup.status).to.equal(201);
    const { token } = signup.body;
    const other = await newUser();

    const onB = await socketOn(nodeB, token);
    const onA = await socketOn(nodeA, token);
    const otherOnB = await socketOn(nodeB, other.token);
    expect((await call(nodeB, token, 'GET', '/auth/me')).status).to.equal(200);

    const goneB = disconnected(onB);
    const goneA = disconnected(onA);
    expect((await call(nodeA, token, 'POST', '/auth/logout')).status).to.equal(204);
    expect(await goneB).to.equal('io server disconnect');
    expect(await goneA).to.equal('io server disconnect');

    for (const node of [nodeA, nodeB]) {
      const res = await call(node, token, 'GET', '/auth/me');
      expectError(res, 401, 'UNAUTHORIZED');
      const refused = await connectSocket(node.url, token).then(
        (socket) => {
          pool.track(socket);
          return 'connected';
        },
        (err: Error) => err.message,
      );
      expect(refused).to.equal('UNAUTHORIZED');
    }
    // Someone else's socket on B is untouched.
    expect(otherOnB.connected).to.equal(true);

    // A new login on B works (same secret, same database).
    const login = await request<Body>(nodeB.url, 'POST', '/auth/login', { body: { username, password } });
    expect(login.status).to.equal(200);
    expect((await call(nodeA, login.body.token, 'GET', '/auth/me')).status).to.equal(200);
  });

  it('a request made on node A reaches the recipient on node B; accepting on B reaches the sender on A', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const aliceOnA = await socketOn(nodeA, alice.token);
    const bobOnB = await socketOn(nodeB, bob.token);
    const bobRequests = collectEvents(bobOnB, 'friend:request');
    const aliceAccepted = collectEvents(aliceOnA, 'friend:accepted');

    const sent = await call(nodeA, alice, 'POST', '/friends/requests', { username: bob.username });
    expect(sent.status).to.equal(201);
    await waitFor(() => bobRequests.length === 1, { what: 'friend:request on node B' });
    expect(bobRequests[0]).to.deep.equal(sent.body.request);

    const accepted = await call(nodeB, bob, 'POST', `/friends/requests/${sent.body.request.id}/accept`);
    expect(accepted.status).to.equal(200);
    await waitFor(() => aliceAccepted.length === 1, { what: 'friend:accepted on node A' });
    expect(aliceAccepted[0]).to.deep.equal(accepted.body.request);
    expect(aliceAccepted[0]!.status).to.equal('accepted');
  });

  it('the cross-request shortcut on node B notifies the original sender on node A', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const aliceAccepted = collectEvents(await socketOn(nodeA, alice.token), 'friend:accepted');
    const bobRequests = collectEvents(await socketOn(nodeB, bob.token), 'friend:request');
    expect(
      (await call(nodeA, alice, 'POST', '/friends/requests', { username: bob.username })).status,
    ).to.equal(201);
    const back = await call(nodeB, bob, 'POST', '/friends/requests', { username: alice.username });
    expect(back.status).to.equal(200);
    await waitFor(() => aliceAccepted.length === 1, { what: 'friend:accepted on node A' });
    expect(aliceAccepted[0]).to.deep.equal(back.body.request);
    await waitFor(() => bobRequests.length === 1, { what: 'the first friend:request on node B' });
  });
});
