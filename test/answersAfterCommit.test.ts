import { expect } from 'chai';
import type { RunningServer } from '../lib/server.js';
import { friendsOf, newUser, record, rows } from './helpers/chat.js';
import { request } from './helpers/http.js';
import { createTestDatabase } from './helpers/postgres.js';
import { startTestServer } from './helpers/server.js';
import { connectSocket } from './helpers/sockets.js';
import { startTripwire, type Tripwire } from './helpers/tripwire.js';
import { uniqueUsername } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

/**
 * docs/errors.md: a DB_UNAVAILABLE means nothing was written (but by a write whose commit was under way when its
 * connection broke). A request whose statement after its commit failed answered DB_UNAVAILABLE for a change that was
 * made: the client's retry made it again. Each test loses the connection at one statement (test/helpers/tripwire.ts)
 * and checks that the request either answers its success or leaves nothing.
 */
describe('a connection lost at one statement of a REST write: its success, or nothing', function () {
  this.timeout(60_000);
  let wire: Tripwire;
  let node: RunningServer;

  before(async () => {
    const databaseUrl = await createTestDatabase();
    wire = await startTripwire(databaseUrl);
    node = await startTestServer(wire.urlThrough(databaseUrl), {
      DB_ACQUIRE_TIMEOUT_MS: '2000',
      // The login limits on, as by default (the tests' environment turns them off): a right password is recorded.
      RATE_LIMIT_AUTH_PER_MIN: '20',
    });
  });

  after(async () => {
    await node?.close();
    await wire?.close();
  });

  const sessionsOf = (userId: string) =>
    rows<{ id: string }>(node.services.db.knex, 'SELECT id FROM sessions WHERE user_id = ?', [userId]);

  it('a login whose record of the right password fails answers its session (it exists by then)', async () => {
    const username = uniqueUsername();
    const password = 'a long enough password 1';
    const signup = await request<{ user: { id: string } }>(node.url, 'POST', '/auth/signup', {
      body: { username, password },
    });
    expect(signup.status).to.equal(201);
    expect(await sessionsOf(signup.body.user.id)).to.have.length(1);

    // The statement that marks the (username, address) pair known, after the session committed.
    wire.arm('WHERE EXISTS (SELECT 1 FROM live)');
    const login = await request<{ token: string }>(node.url, 'POST', '/auth/login', {
      body: { username, password },
    });
    expect(wire.fired, 'the connection was cut at the statement').to.equal(1);
    expect(login.status, login.text).to.equal(200);
    expect(await sessionsOf(signup.body.user.id)).to.have.length(2);
    const me = await request(node.url, 'GET', '/auth/me', { token: login.body.token });
    expect(me.status).to.equal(200);
  });

  it('a group creation whose read of the new group fails creates nothing, and its retry creates one group', async () => {
    const owner = await newUser(node);
    const members = await friendsOf(node, owner, 2);
    const create = () =>
      request(node.url, 'POST', '/conversations', {
        token: owner.token,
        body: { type: 'group', title: 'cut at its read', participantIds: members.map((m) => m.id) },
      });
    // The read of the group's participants, for the answer.
    wire.arm('from "conversation_participants" where "conversation_participants"."conversation_id" in');
    const first = await create();
    expect(wire.fired, 'the connection was cut at the statement').to.equal(1);
    const groups = () =>
      rows<{ id: string }>(
        node.services.db.knex,
        "SELECT id FROM conversations WHERE created_by = ? AND type = 'group'",
        [owner.id],
      );
    expect({ status: first.status, groups: (await groups()).length }).to.deep.equal({
      status: 503,
      groups: 0,
    });
    expect((await create()).status).to.equal(201);
    expect(await groups()).to.have.length(1);
  });

  it('a direct conversation whose read for the answer fails is not created, and its retry creates it and tells it', async () => {
    const me = await newUser(node);
    const [friend] = await friendsOf(node, me, 1);
    const friendSocket = await connectSocket(node.url, friend!.token);
    const added = record(friendSocket, 'conversation:added');
    const create = () =>
      request<{ conversation: { id: string } }>(node.url, 'POST', '/conversations', {
        token: me.token,
        body: { type: 'direct', userId: friend!.id },
      });
    // The read of its participants: for the answer, and (after a commit) the node's own conversation:added.
    wire.arm('from "conversation_participants" where "conversation_participants"."conversation_id" in', 2);
    const first = await create();
    expect(wire.fired, 'the connection was cut at the statement').to.be.at.least(1);
    wire.arm('a statement no one sends', 1);
    const directs = async () =>
      (
        await rows<{ id: string }>(
          node.services.db.knex,
          "SELECT id FROM conversations WHERE created_by = ? AND type = 'direct'",
          [me.id],
        )
      ).length;
    expect({ status: first.status, stored: await directs() }).to.deep.equal({ status: 503, stored: 0 });
    // Created by the retry: 201 (an existing one is answered 200), and told to the other user from its commit.
    const retried = await create();
    expect(retried.status).to.equal(201);
    expect(await directs()).to.equal(1);
    try {
      await waitFor(() => added.length > 0, { what: 'the friend to hear conversation:added' });
      expect(added.map((c) => c.id)).to.deep.equal([retried.body.conversation.id]);
    } finally {
      friendSocket.close();
    }
  });

  it('a rename whose read of its audience fails leaves the name as it was', async () => {
    const user = await newUser(node);
    await friendsOf(node, user, 1);
    wire.arm('UNION SELECT user_low FROM friendships WHERE user_high');
    const renamed = await request(node.url, 'PATCH', '/users/me', {
      token: user.token,
      body: { displayName: 'Renamed during an outage' },
    });
    expect(wire.fired, 'the connection was cut at the statement').to.equal(1);
    const [row] = await rows<{ display_name: string }>(
      node.services.db.knex,
      'SELECT display_name FROM users WHERE id = ?',
      [user.id],
    );
    expect({ status: renamed.status, displayName: row!.display_name }).to.deep.equal({
      status: 503,
      displayName: user.username,
    });
  });

  it('a rename whose re-read after its commit fails is answered and told as renamed', async () => {
    const user = await newUser(node);
    const [friend] = await friendsOf(node, user, 1);
    const socket = await connectSocket(node.url, friend!.token);
    const updated = record(socket, 'user:updated');
    // The re-read after the commit is the second statement of this text (the first is the rename's own fetch,
    // inside its transaction): the connection is cut at the second.
    let seen = 0;
    // The statement's text ends where its NUL terminator is in the protocol message: nothing after the id.
    // eslint-disable-next-line no-control-regex -- the NUL that ends a statement in PostgreSQL's protocol
    const reRead = /from "users" where "users"\."id" = \$1\x00/;
    wire.arm({ test: (text: string) => reRead.test(text) && ++seen === 2 } as unknown as RegExp);
    try {
      const renamed = await request(node.url, 'PATCH', '/users/me', {
        token: user.token,
        body: { displayName: 'Renamed, re-read cut' },
      });
      expect(wire.fired, 'the connection was cut at the statement').to.equal(1);
      expect(renamed.status, renamed.text).to.equal(200);
      await waitFor(() => updated.length > 0, { what: 'user:updated' });
      expect(updated.map((u) => u.displayName)).to.deep.equal(['Renamed, re-read cut']);
    } finally {
      socket.close();
    }
  });
});
