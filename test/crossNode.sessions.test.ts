import { expect } from 'chai';
import jwt from 'jsonwebtoken';
import type { AuthResponse, AuthTokens, PublicSession, PublicUser } from '../lib/protocol/index.js';
import type { RunningServer } from '../lib/server.js';
import { createGroup, expectOk, record, rows, send } from './helpers/chat.js';
import { expectAckError, expectError } from './helpers/errors.js';
import { useTwoNodes } from './helpers/nodes.js';
import { disconnected } from './helpers/events.js';
import { request } from './helpers/http.js';
import { TEST_JWT_SECRET } from './helpers/server.js';
import { connectSocket } from './helpers/sockets.js';
import { insertFriendship, uniqueUsername, type TestUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';
import { statementsWaitingForALock } from './helpers/postgres.js';

const PASSWORD = 'correct horse battery';

interface Device extends AuthResponse {
  username: string;
  sessionId: string;
}

/** Sessions across two nodes: what one node ends must reach the other's sockets at once. */
describe('sessions across two nodes', function () {
  const nodes = useTwoNodes();

  async function signup(node: RunningServer): Promise<Device> {
    const username = uniqueUsername('xs');
    const res = await request<AuthResponse>(node.url, 'POST', '/auth/signup', {
      body: { username, password: PASSWORD },
    });
    expect(res.status).to.equal(201);
    return { username, ...res.body, sessionId: sessionIdOf(res.body.token) };
  }

  async function login(node: RunningServer, username: string): Promise<Device> {
    const res = await request<AuthResponse>(node.url, 'POST', '/auth/login', {
      body: { username, password: PASSWORD },
    });
    expect(res.status).to.equal(200);
    return { username, ...res.body, sessionId: sessionIdOf(res.body.token) };
  }

  const sessionIdOf = (token: string) => (jwt.decode(token) as { sid: string }).sid;
  const me = (node: RunningServer, token: string) => request(node.url, 'GET', '/auth/me', { token });
  const refresh = (node: RunningServer, refreshToken: string) =>
    request<AuthTokens>(node.url, 'POST', '/auth/refresh', { body: { refreshToken } });
  const asTestUser = (d: Device): TestUser => ({
    id: d.user.id,
    username: d.username,
    token: d.token,
    sessionId: d.sessionId,
  });

  /** A socket with the session:ended reasons it hears. */
  async function watch(node: RunningServer, token: string) {
    const socket = await connectSocket(node.url, token);
    nodes.pool.track(socket);
    const reasons = record(socket, 'session:ended');
    const gone = disconnected(socket);
    return { socket, reasons, gone, ended: gone.then((reason) => ({ reason, at: Date.now() })) };
  }

  /**
   * The ms from `since` (the moment the request that ended the session was answered: what its caller knows) to the
   * moment the socket heard its disconnect; negative when it heard it before the answer came.
   */
  async function timeToDisconnect(
    ended: Promise<{ reason: string; at: number }>,
    since: number,
  ): Promise<number> {
    const { reason, at } = await ended;
    expect(reason).to.equal('io server disconnect');
    return at - since;
  }

  it('rotation and reuse detection hold across nodes, and reuse reaches the session’s sockets on the other node', async () => {
    const alice = await signup(nodes.a);
    const onB = await watch(nodes.b, alice.token);
    const rotated = await refresh(nodes.b, alice.refreshToken);
    expect(rotated.status).to.equal(200);
    expect((await me(nodes.a, rotated.body.token)).status).to.equal(200);
    const twice = await refresh(nodes.b, rotated.body.refreshToken);
    expect(twice.status).to.equal(200);

    expectError(await refresh(nodes.a, alice.refreshToken), 401, 'UNAUTHORIZED');
    expect(await timeToDisconnect(onB.ended, Date.now())).to.be.below(1000);
    expect(onB.reasons).to.deep.equal([{ reason: 'reused' }]);
    for (const node of [nodes.a, nodes.b]) {
      expectError(await me(node, twice.body.token), 401, 'UNAUTHORIZED');
      expectError(await refresh(node, twice.body.refreshToken), 401, 'UNAUTHORIZED');
    }
  });

  it('revoking a device on node A disconnects its sockets on node B within a second; other devices stay', async () => {
    const laptop = await signup(nodes.a);
    const phone = await login(nodes.b, laptop.username);
    const phoneOnB = await watch(nodes.b, phone.token);
    const phoneOnA = await watch(nodes.a, phone.token);
    const laptopOnB = await watch(nodes.b, laptop.token);

    const res = await request(nodes.a.url, 'DELETE', `/auth/sessions/${phone.sessionId}`, {
      token: laptop.token,
    });
    const answered = Date.now();
    expect(res.status).to.equal(204);
    expect(await timeToDisconnect(phoneOnB.ended, answered)).to.be.below(1000);
    expect(await timeToDisconnect(phoneOnA.ended, answered)).to.be.below(1000);
    expect(phoneOnB.reasons).to.deep.equal([{ reason: 'revoked' }]);
    expect(phoneOnA.reasons).to.deep.equal([{ reason: 'revoked' }]);
    expect(laptopOnB.socket.connected).to.equal(true);
    expect(laptopOnB.reasons).to.deep.equal([]);

    // The revoked session's token is refused by the handshake on both nodes.
    for (const node of [nodes.a, nodes.b]) {
      const error = await connectSocket(node.url, phone.token).then(
        (s) => {
          nodes.pool.track(s);
          return 'connected';
        },
        (err: Error) => err.message,
      );
      expect(error).to.equal('UNAUTHORIZED');
    }
  });

  it('logout of one device leaves the others signed in and connected; logout-all ends them all', async () => {
    const one = await signup(nodes.a);
    const two = await login(nodes.a, one.username);
    const three = await login(nodes.b, one.username);
    const oneOnB = await watch(nodes.b, one.token);
    const twoOnB = await watch(nodes.b, two.token);
    const threeOnA = await watch(nodes.a, three.token);

    expect((await request(nodes.a.url, 'POST', '/auth/logout', { token: one.token })).status).to.equal(204);
    await oneOnB.gone;
    expect(oneOnB.reasons).to.deep.equal([{ reason: 'logged_out' }]);
    expect((await me(nodes.b, two.token)).status).to.equal(200);
    expect((await me(nodes.a, three.token)).status).to.equal(200);
    expect(twoOnB.socket.connected && threeOnA.socket.connected).to.equal(true);

    expect((await request(nodes.b.url, 'POST', '/auth/logout-all', { token: two.token })).status).to.equal(
      204,
    );
    await Promise.all([twoOnB.gone, threeOnA.gone]);
    expect(twoOnB.reasons).to.deep.equal([{ reason: 'logged_out' }]);
    expect(threeOnA.reasons).to.deep.equal([{ reason: 'logged_out' }]);
    for (const token of [two.token, three.token]) expectError(await me(nodes.a, token), 401, 'UNAUTHORIZED');
  });

  it('a password change on node A ends the other sessions’ sockets on node B and keeps this one', async () => {
    const here = await signup(nodes.a);
    const there = await login(nodes.b, here.username);
    const hereOnB = await watch(nodes.b, here.token);
    const thereOnB = await watch(nodes.b, there.token);
    const res = await request(nodes.a.url, 'POST', '/auth/password', {
      token: here.token,
      body: { currentPassword: PASSWORD, newPassword: 'another password' },
    });
    expect(res.status).to.equal(204);
    await thereOnB.gone;
    expect(thereOnB.reasons).to.deep.equal([{ reason: 'password_changed' }]);
    expect(hereOnB.socket.connected).to.equal(true);
    expect((await me(nodes.b, here.token)).status).to.equal(200);
    expectError(await me(nodes.b, there.token), 401, 'UNAUTHORIZED');
  });

  it('a display-name change reaches a friend and a co-participant on the other node, and nobody else', async () => {
    const alice = await signup(nodes.a);
    const friend = await signup(nodes.b);
    const owner = await signup(nodes.b);
    const stranger = await signup(nodes.b);
    const { knex } = nodes.a.services.db;
    await insertFriendship(knex, alice.user.id, friend.user.id);
    // The co-participant is not alice's friend: the group's owner is a friend of both.
    await insertFriendship(knex, owner.user.id, alice.user.id);
    await insertFriendship(knex, owner.user.id, friend.user.id);
    const coParticipant = await signup(nodes.b);
    await insertFriendship(knex, owner.user.id, coParticipant.user.id);
    await createGroup(nodes.b.url, asTestUser(owner), [asTestUser(alice), asTestUser(coParticipant)]);

    const heard = await Promise.all(
      [friend, coParticipant, owner, stranger, alice].map(async (d) => {
        const socket = await connectSocket(nodes.b.url, d.token);
        nodes.pool.track(socket);
        return record(socket, 'user:updated');
      }),
    );
    const [friendHeard, coHeard, ownerHeard, strangerHeard, selfHeard] = heard as [
      PublicUser[],
      PublicUser[],
      PublicUser[],
      PublicUser[],
      PublicUser[],
    ];
    const res = await request<{ user: PublicUser }>(nodes.a.url, 'PATCH', '/users/me', {
      token: alice.token,
      body: { displayName: 'Alice Renamed' },
    });
    expect(res.status).to.equal(200);
    const expected = { ...alice.user, displayName: 'Alice Renamed' };
    expect(res.body.user).to.deep.equal(expected);
    await waitFor(
      () => friendHeard.length > 0 && coHeard.length > 0 && ownerHeard.length > 0 && selfHeard.length > 0,
      { what: 'user:updated on node B' },
    );
    for (const list of [friendHeard, coHeard, ownerHeard, selfHeard]) expect(list).to.deep.equal([expected]);
    expect(strangerHeard).to.deep.equal([]);
  });

  describe('auth:refresh on a live socket', () => {
    /** An access token of `device`'s session that expires in `seconds`. */
    function shortToken(device: Device, seconds: number): { token: string; exp: number } {
      const exp = Math.floor(Date.now() / 1000) + seconds;
      const token = jwt.sign({ sid: device.sessionId, exp }, TEST_JWT_SECRET, {
        algorithm: 'HS256',
        subject: device.user.id,
        issuer: 'xfchat',
        audience: 'xfchat',
      });
      return { token, exp };
    }

    it('moves the socket’s expiry to the new token’s: it outlives the old expiry', async () => {
      const alice = await signup(nodes.a);
      const short = shortToken(alice, 2);
      const { socket } = await watch(nodes.b, short.token);
      const rotated = await refresh(nodes.a, alice.refreshToken);
      expectOk(await socket.emitWithAck('auth:refresh', { token: rotated.body.token }));
      await waitFor(() => Date.now() > short.exp * 1000 + 1500, { what: 'the old expiry to pass' });
      expect(socket.connected).to.equal(true);
      // And it still works: the server answers events.
      expect(await socket.emitWithAck('auth:refresh', { token: rotated.body.token })).to.deep.equal({
        ok: true,
      });
    });

    it('takes a token of another session of the user: the socket then ends with that session, not with its first, and writes as it', async () => {
      const alice = await signup(nodes.a);
      const friend = await signup(nodes.a);
      await insertFriendship(nodes.a.services.db.knex, alice.user.id, friend.user.id);
      const group = await createGroup(nodes.a.url, asTestUser(alice), [asTestUser(friend)]);
      const second = await login(nodes.a, alice.username);
      const moved = await watch(nodes.b, alice.token);
      const stays = await watch(nodes.b, alice.token);
      expectOk(await moved.socket.emitWithAck('auth:refresh', { token: second.token }));
      // The first session ends: its other socket goes, the moved one stays (node b told both at once).
      const revoked = await request(nodes.a.url, 'DELETE', `/auth/sessions/${alice.sessionId}`, {
        token: second.token,
      });
      expect(revoked.status).to.equal(204);
      await stays.gone;
      expect(stays.reasons).to.deep.equal([{ reason: 'revoked' }]);
      expect(moved.socket.connected).to.equal(true);
      expectOk(await moved.socket.emitWithAck('auth:refresh', { token: second.token }));
      // Its writes are the second session's now: the first one's end does not refuse them.
      const sent = expectOk(await send(moved.socket, group.id, 'after the move'));
      expect(sent.message.body).to.equal('after the move');
      expectOk(
        await moved.socket.emitWithAck('message:edit', {
          conversationId: group.id,
          seq: sent.message.seq,
          body: 'edited after the move',
        }),
      );
      // The second session's end ends it.
      expect((await request(nodes.a.url, 'POST', '/auth/logout', { token: second.token })).status).to.equal(
        204,
      );
      await moved.gone;
      expect(moved.reasons).to.have.length(1);
    });

    it('a move to another session whose re-check the database fails changes nothing: the first session’s end still ends the socket', async () => {
      const { knex } = nodes.a.services.db;
      /** This database's backends waiting for a lock, running a statement like `like`. */
      const waiting = async (like: string) =>
        (
          await rows<{ n: number }>(
            knex,
            `SELECT count(*)::int AS n FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE ?`,
            [like],
          )
        )[0]!.n;
      const alice = await signup(nodes.a);
      const second = await login(nodes.a, alice.username);
      const moved = await watch(nodes.b, alice.token);
      // The refresh's token check waits at the sessions table, and a second holder queues behind it: once the
      // check has read, the second holder has the table, and the re-check after the join waits for it.
      const first = await knex.transaction();
      const behind = await knex.transaction();
      let answer;
      try {
        await first.raw('LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE');
        const refreshing = moved.socket.emitWithAck('auth:refresh', { token: second.token });
        await waitFor(async () => (await waiting('%sessions%')) >= 1, { what: 'the token check to wait' });
        const queued = behind.raw('LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE').then(() => undefined);
        await waitFor(async () => (await waiting('LOCK TABLE%')) >= 1, {
          what: 'the second holder to queue',
        });
        await first.commit();
        await queued;
        await waitFor(async () => (await waiting('%unnest%')) >= 1, { what: 'the re-check to wait' });
        // The re-check fails, as a statement timeout fails it.
        await knex.raw(
          `SELECT pg_cancel_backend(pid) FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%unnest%'`,
        );
        answer = await refreshing;
      } finally {
        if (!first.isCompleted()) await first.rollback();
        if (!behind.isCompleted()) await behind.rollback();
      }
      expectAckError(answer, 'DB_UNAVAILABLE');
      // The socket is still the first session's: that session's end ends it (it stayed on the second one, which
      // lives on, and kept going).
      const revoked = await request(nodes.a.url, 'DELETE', `/auth/sessions/${alice.sessionId}`, {
        token: second.token,
      });
      expect(revoked.status).to.equal(204);
      await waitFor(() => moved.socket.disconnected, {
        what: 'the socket to end with its first session',
        timeoutMs: 5000,
      });
      expect(moved.reasons).to.deep.equal([{ reason: 'revoked' }]);
    });

    it('refuses another user’s, an expired, a garbage, an empty or an over-long token with UNAUTHORIZED; the old expiry stands', async () => {
      const alice = await signup(nodes.a);
      const bob = await signup(nodes.a);
      const short = shortToken(alice, 3);
      const { socket, gone } = await watch(nodes.b, short.token);
      const expired = jwt.sign(
        {
          sid: alice.sessionId,
          exp: Math.floor(Date.now() / 1000) - 10,
          iat: Math.floor(Date.now() / 1000) - 60,
        },
        TEST_JWT_SECRET,
        { algorithm: 'HS256', subject: alice.user.id, issuer: 'xfchat', audience: 'xfchat' },
      );
      // An empty or over-long string too: it is a token that does not verify, as at the handshake.
      for (const token of [bob.token, expired, 'garbage', '', 'x'.repeat(5000)]) {
        expectAckError(await socket.emitWithAck('auth:refresh', { token }), 'UNAUTHORIZED');
      }
      expectAckError(await socket.emitWithAck('auth:refresh', { token: 42 } as never), 'VALIDATION_FAILED');
      // Nothing changed: the socket still ends at the old token's expiry, by the clock node b counts expiries by
      // (PostgreSQL's, as b measures it: this machine's clock may differ from it by a millisecond of rounding).
      await gone;
      const at = nodes.b.services.clock.now();
      expect(at).to.be.at.least(short.exp * 1000);
      expect(at).to.be.below(short.exp * 1000 + 3000);
    });

    it('refuses a valid token of the socket’s own session once that session has ended', async () => {
      const alice = await signup(nodes.a);
      const keep = await login(nodes.a, alice.username);
      const { socket, gone } = await watch(nodes.b, alice.token);
      const fresh = await refresh(nodes.a, alice.refreshToken);
      await request(nodes.a.url, 'DELETE', `/auth/sessions/${alice.sessionId}`, { token: keep.token });
      await gone;
      expect(socket.connected).to.equal(false);
      expectError(await me(nodes.b, fresh.body.token), 401, 'UNAUTHORIZED');
      const sessions = await request<{ sessions: PublicSession[] }>(nodes.b.url, 'GET', '/auth/sessions', {
        token: keep.token,
      });
      expect(sessions.body.sessions.map((s) => s.id)).to.deep.equal([keep.sessionId]);
    });
  });

  describe('a session ended on one node while its refresh token is used on the other', () => {
    type Answer = { status: number; text: string; body: unknown };
    const lockWaiters = () => statementsWaitingForALock(nodes.a.services.db.knex);

    /**
     * Holds the session's row (shared) while `first` and then `second` queue for it, so they meet there in that
     * order; then lets them through.
     */
    async function meetAtSession(
      sessionId: string,
      first: () => Promise<Answer>,
      second: () => Promise<Answer>,
    ): Promise<[Answer, Answer]> {
      const hold = await nodes.a.services.db.knex.transaction();
      let a: Promise<Answer> | undefined;
      let b: Promise<Answer> | undefined;
      try {
        await hold.raw('SELECT id FROM sessions WHERE id = ? FOR SHARE', [sessionId]);
        a = first();
        await waitFor(async () => (await lockWaiters()) >= 1, { what: 'the first request waiting' });
        b = second();
        await waitFor(async () => (await lockWaiters()) >= 2, { what: 'the second request waiting' });
      } finally {
        await hold.commit();
      }
      return Promise.all([a, b]);
    }

    const ends = {
      'POST /auth/logout': (d: Device) => request(nodes.a.url, 'POST', '/auth/logout', { token: d.token }),
      'DELETE /auth/sessions/:id': (d: Device, other: Device) =>
        request(nodes.a.url, 'DELETE', `/auth/sessions/${d.sessionId}`, { token: other.token }),
      'POST /auth/password': (_: Device, other: Device) =>
        request(nodes.a.url, 'POST', '/auth/password', {
          token: other.token,
          body: { currentPassword: PASSWORD, newPassword: 'another password' },
        }),
      'POST /auth/logout-all': (_: Device, other: Device) =>
        request(nodes.a.url, 'POST', '/auth/logout-all', { token: other.token }),
      'DELETE /users/me': (_: Device, other: Device) =>
        request(nodes.a.url, 'DELETE', '/users/me', { token: other.token, body: { password: PASSWORD } }),
    };
    for (const [how, end] of Object.entries(ends)) {
      it(`${how} on node A, then a refresh on node B: the session ends (204), the refresh is refused, no deadlock`, async () => {
        const alice = await signup(nodes.a);
        const other = await login(nodes.a, alice.username);
        const [ended, refreshed] = await meetAtSession(
          alice.sessionId,
          () => end(alice, other),
          () => refresh(nodes.b, alice.refreshToken),
        );
        expect(ended.status, ended.text).to.equal(204);
        expectError(refreshed, 401, 'UNAUTHORIZED');
        expectError(await me(nodes.b, alice.token), 401, 'UNAUTHORIZED');
      });
    }

    it('a used refresh token on node A, then the current one on node B: the session ends, neither answers 500', async () => {
      const alice = await signup(nodes.a);
      const rotated = await refresh(nodes.a, alice.refreshToken);
      expect(rotated.status).to.equal(200);
      const [reused, current] = await meetAtSession(
        alice.sessionId,
        () => refresh(nodes.a, alice.refreshToken),
        () => refresh(nodes.b, rotated.body.refreshToken),
      );
      expectError(reused, 401, 'UNAUTHORIZED');
      // Refused, or rotated just before the reuse ended the session: then its tokens stopped working with it.
      expect(current.status, current.text).to.be.oneOf([200, 401]);
      if (current.status === 200) {
        expectError(await me(nodes.b, (current.body as AuthTokens).token), 401, 'UNAUTHORIZED');
      }
      const left = await rows(nodes.a.services.db.knex, 'SELECT 1 FROM sessions WHERE id = ?', [
        alice.sessionId,
      ]);
      expect(left, 'the session after its token was reused').to.have.length(0);
    });
  });
});
