import { expect } from 'chai';
import argon2 from 'argon2';
import jwt from 'jsonwebtoken';
import type { AuthResponse, AuthTokens, PublicSession, PublicUser } from '../lib/protocol/index.js';
import { expectError } from './helpers/errors.js';
import { request } from './helpers/http.js';
import { rawRequest } from './helpers/rawHttp.js';
import { useNode } from './helpers/nodes.js';
import { waitFor } from './helpers/waitFor.js';
import { insertSession, uniqueUsername } from './helpers/users.js';
import { MAX_SESSIONS_PER_USER } from '../lib/auth/sessions.js';
import { record, rows } from './helpers/chat.js';
import { disconnected } from './helpers/events.js';
import { connectSocket } from './helpers/sockets.js';
import { captureQueries } from './helpers/queries.js';
import { io as connect } from 'socket.io-client';

const PASSWORD = 'correct horse battery';

/** Sessions on one node: rotation, reuse, devices, logout, password change, profile, refresh lifetime. */
describe('sessions: refresh tokens, devices, password and profile', function () {
  const { server } = useNode();

  const post = <T>(path: string, body?: unknown, token?: string, headers?: Record<string, string>) =>
    request<T>(server.url, 'POST', path, { body, token, headers });
  const me = (token: string) => request<{ user: PublicUser }>(server.url, 'GET', '/auth/me', { token });
  const refresh = (refreshToken: unknown) => post<AuthTokens>('/auth/refresh', { refreshToken });
  /** The user's sessions in the database. */
  const sessionCount = async (userId: string) =>
    (
      await rows<{ n: number }>(
        server.services.db.knex,
        'SELECT count(*)::int AS n FROM sessions WHERE user_id = ?',
        [userId],
      )
    )[0]?.n;
  const sessionsOf = (token: string) =>
    request<{ sessions: PublicSession[] }>(server.url, 'GET', '/auth/sessions', { token });

  async function account(userAgent = 'test-agent/1.0'): Promise<{ username: string } & AuthResponse> {
    const username = uniqueUsername('sess');
    const res = await post<AuthResponse>('/auth/signup', { username, password: PASSWORD }, undefined, {
      'user-agent': userAgent,
    });
    expect(res.status).to.equal(201);
    return { username, ...res.body };
  }

  async function login(username: string, userAgent = 'second-device/2.0', password = PASSWORD) {
    const res = await post<AuthResponse>('/auth/login', { username, password }, undefined, {
      'user-agent': userAgent,
    });
    expect(res.status, res.text).to.equal(200);
    return res.body;
  }

  it('refresh rotates: new tokens, each refresh token works once, the old access token keeps its session', async () => {
    const alice = await account();
    const first = await refresh(alice.refreshToken);
    expect(first.status).to.equal(200);
    expect(Object.keys(first.body).sort()).to.deep.equal(['expiresIn', 'refreshToken', 'token']);
    expect(first.body.expiresIn).to.equal(900);
    expect(first.body.refreshToken).to.match(/^[A-Za-z0-9_-]{43}$/);
    expect(first.body.refreshToken).not.to.equal(alice.refreshToken);
    expect((await me(first.body.token)).body.user.id).to.equal(alice.user.id);
    const second = await refresh(first.body.refreshToken);
    expect(second.status).to.equal(200);
    expect((await me(second.body.token)).status).to.equal(200);
    // The refresh token is stored only as a 32-byte hash, never as sent.
    const stored = await rows<{ token_hash: Buffer }>(
      server.services.db.knex,
      `SELECT token_hash FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE s.user_id = ?`,
      [alice.user.id],
    );
    expect(stored).to.have.length(3);
    for (const row of stored) {
      expect(row.token_hash).to.have.length(32);
      for (const token of [alice.refreshToken, first.body.refreshToken, second.body.refreshToken]) {
        expect(row.token_hash.toString('base64url')).not.to.equal(token);
        expect(row.token_hash.equals(Buffer.from(token, 'base64url'))).to.equal(false);
      }
    }
  });

  it('a reused refresh token ends the whole session: 401, and its newest tokens stop working too', async () => {
    const alice = await account();
    const other = await login(alice.username);
    const rotated = await refresh(alice.refreshToken);
    expect(rotated.status).to.equal(200);
    const reuse = await refresh(alice.refreshToken);
    expectError(reuse, 401, 'UNAUTHORIZED');
    expectError(await me(rotated.body.token), 401, 'UNAUTHORIZED');
    expectError(await refresh(rotated.body.refreshToken), 401, 'UNAUTHORIZED');
    // Only that session: the other device stays signed in.
    expect((await me(other.token)).status).to.equal(200);
  });

  it('refuses unknown, malformed and missing refresh tokens with 401 (400 only for a non-string)', async () => {
    // Any string is a token that is not live: too long for one too (no length limit makes it a 400).
    for (const value of [
      'A'.repeat(43),
      'short',
      'not base64url !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!',
      '',
      'A'.repeat(5000),
    ]) {
      expectError(await refresh(value), 401, 'UNAUTHORIZED');
    }
    expectError(await refresh(42), 400, 'VALIDATION_FAILED');
    expectError(await post('/auth/refresh', {}), 400, 'VALIDATION_FAILED');
    // An access token is not a refresh token.
    const alice = await account();
    expectError(await refresh(alice.token), 401, 'UNAUTHORIZED');
  });

  it('two concurrent refreshes with the same token: at most one succeeds', async () => {
    for (let round = 0; round < 5; round++) {
      const alice = await account();
      const results = await Promise.all([refresh(alice.refreshToken), refresh(alice.refreshToken)]);
      const statuses = results.map((r) => r.status).sort();
      // The loser presented a token the winner had just used: reuse, so the session ends too.
      expect(statuses).to.deep.equal([200, 401]);
      const winner = results.find((r) => r.status === 200)!;
      expectError(await me(winner.body.token), 401, 'UNAUTHORIZED');
      expect(await sessionCount(alice.user.id)).to.equal(0);
    }
  });

  // A session whose device went away, of a user who never came back, kept its row and every used refresh token for
  // ever: expired sessions were deleted only at their user's next login or a refresh presenting their token (DATA
  // hunt). Each node sweeps them (lib/auth/accounts.ts, every 10 minutes).
  it('the sweep deletes sessions unused for REFRESH_TTL_DAYS, with their refresh tokens, and keeps live ones', async () => {
    const gone = await account();
    let token = gone.refreshToken;
    for (let i = 0; i < 3; i++) token = (await refresh(token)).body.refreshToken;
    const kept = await account();
    const { knex } = server.services.db;
    const tokensOf = async (userId: string) =>
      (
        await rows<{ n: number }>(
          knex,
          'SELECT count(*)::int AS n FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE s.user_id = ?',
          [userId],
        )
      )[0]?.n;
    expect(await tokensOf(gone.user.id)).to.equal(4);
    const ttlDays = server.services.config.auth.refreshTtlDays;
    // The last use a moment past the TTL ago, and one a day short of it (still live).
    await knex.raw(
      'UPDATE sessions SET last_used_at = now() - make_interval(days => ?, secs => 1) WHERE user_id = ?',
      [ttlDays, gone.user.id],
    );
    await knex.raw('UPDATE sessions SET last_used_at = now() - make_interval(days => ?) WHERE user_id = ?', [
      ttlDays - 1,
      kept.user.id,
    ]);
    const { sessions } = server.services.auth;
    let swept = 0;
    for (let n = await sessions.sweepExpired(1); n > 0; n = await sessions.sweepExpired(1)) swept += n;
    expect(swept).to.be.at.least(1);
    expect(await sessionCount(gone.user.id)).to.equal(0);
    expect(
      await rows(
        knex,
        'SELECT 1 FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE user_id = ?)',
        [gone.user.id],
      ),
    ).to.have.length(0);
    expect(
      await rows(
        knex,
        'SELECT 1 FROM refresh_tokens WHERE token_hash IS NOT NULL AND session_id NOT IN (SELECT id FROM sessions)',
      ),
      'no token outlives its session',
    ).to.have.length(0);
    expect(await sessionCount(kept.user.id)).to.equal(1);
    expect((await refresh(kept.refreshToken)).status).to.equal(200);
    expectError(await refresh(token), 401, 'UNAUTHORIZED');
  });

  it('a refresh whose caller has gone before the commit is rolled back: the token it presented still works once', async () => {
    const alice = await account();
    const { sessions } = server.services.auth;
    expect(await sessions.refresh(alice.refreshToken, () => true)).to.equal(undefined);
    // Not a reuse: the rolled-back rotation never used the token.
    const next = await refresh(alice.refreshToken);
    expect(next.status, next.text).to.equal(200);
    expect((await me(next.body.token)).status).to.equal(200);
    // A caller still there gets its pair as without the question; the token is then spent.
    const kept = await sessions.refresh(next.body.refreshToken, () => false);
    expect(kept?.refreshToken).to.be.a('string');
    expectError(await refresh(next.body.refreshToken), 401, 'UNAUTHORIZED');
    expect(await sessionCount(alice.user.id)).to.equal(0);
  });

  it('an HTTP client that goes away during its refresh (a page reloaded) keeps a token that still works', async () => {
    const alice = await account();
    const { knex } = server.services.db;
    // Hold the session's row, so the rotation waits for it while the client goes away.
    const holder = await knex.transaction();
    try {
      await holder.raw('SELECT 1 FROM sessions WHERE user_id = ? FOR UPDATE', [alice.user.id]);
      const controller = new AbortController();
      const sent = fetch(`${server.url}/auth/refresh`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ refreshToken: alice.refreshToken }),
        signal: controller.signal,
      }).catch((err: unknown) => err);
      await waitFor(
        async () =>
          (
            await rows<{ n: number }>(
              knex,
              `SELECT count(*)::int AS n FROM pg_stat_activity
               WHERE wait_event_type = 'Lock' AND query LIKE '%FOR NO KEY UPDATE OF s%'`,
            )
          )[0]?.n === 1,
        { what: 'the rotation to wait for the held session row' },
      );
      controller.abort();
      expect(await sent).to.have.property('name', 'AbortError');
      // The node sees the connection close before the rotation can commit.
      await new Promise((resolve) => setTimeout(resolve, 200));
    } finally {
      await holder.commit();
    }
    const again = await refresh(alice.refreshToken);
    expect(again.status, again.text).to.equal(200);
    expect(await sessionCount(alice.user.id)).to.equal(1);
  });

  it('a week-old login still refreshes; a session unused for 31 days does not', async () => {
    const knex = server.services.db.knex;
    const age = (sessionOf: string, days: number) =>
      knex.raw(
        `UPDATE sessions SET last_used_at = now() - make_interval(days => ?),
                created_at = now() - make_interval(days => ?) WHERE user_id = ?`,
        [days, days, sessionOf],
      );
    const weekOld = await account();
    await age(weekOld.user.id, 6);
    const ok = await refresh(weekOld.refreshToken);
    expect(ok.status).to.equal(200);
    expect((await me(ok.body.token)).status).to.equal(200);
    // Using it moved last_used_at to now: the 30 days start again.
    const [session] = (await sessionsOf(ok.body.token)).body.sessions;
    expect(Date.now() - new Date(session!.lastUsedAt).getTime()).to.be.lessThan(60_000);

    const monthOld = await account();
    await age(monthOld.user.id, 31);
    expectError(await refresh(monthOld.refreshToken), 401, 'UNAUTHORIZED');
    const left = await rows(knex, 'SELECT id FROM sessions WHERE user_id = ?', [monthOld.user.id]);
    expect(left).to.deep.equal([]);
  });

  it('lists my sessions (current marked, user agent, times) and revokes one; another user’s is 404', async () => {
    const alice = await account('Browser A');
    const phone = await login(alice.username, 'Phone B');
    const list = await sessionsOf(phone.token);
    expect(list.status).to.equal(200);
    expect(list.body.sessions).to.have.length(2);
    for (const s of list.body.sessions) {
      expect(Object.keys(s).sort()).to.deep.equal(['createdAt', 'current', 'id', 'lastUsedAt', 'userAgent']);
      expect(new Date(s.createdAt).toISOString()).to.equal(s.createdAt);
    }
    const current = list.body.sessions.find((s) => s.current)!;
    const browser = list.body.sessions.find((s) => !s.current)!;
    expect(current.userAgent).to.equal('Phone B');
    expect(browser.userAgent).to.equal('Browser A');
    // Most recently used first.
    expect(list.body.sessions[0]!.id).to.equal(current.id);

    const mallory = await account();
    expectError(
      await request(server.url, 'DELETE', `/auth/sessions/${browser.id}`, { token: mallory.token }),
      404,
      'NOT_FOUND',
    );
    expect((await me(alice.token)).status).to.equal(200);
    expectError(
      await request(server.url, 'DELETE', '/auth/sessions/not-a-uuid', { token: phone.token }),
      404,
      'NOT_FOUND',
    );

    const revoked = await request(server.url, 'DELETE', `/auth/sessions/${browser.id}`, {
      token: phone.token,
    });
    expect(revoked.status).to.equal(204);
    expectError(await me(alice.token), 401, 'UNAUTHORIZED');
    expectError(await refresh(alice.refreshToken), 401, 'UNAUTHORIZED');
    expect((await me(phone.token)).status).to.equal(200);
    expect((await sessionsOf(phone.token)).body.sessions.map((s) => s.id)).to.deep.equal([current.id]);
    expectError(
      await request(server.url, 'DELETE', `/auth/sessions/${browser.id}`, { token: phone.token }),
      404,
      'NOT_FOUND',
    );
  });

  it('DELETE /auth/sessions/:id of a session already ended by inactivity is 404, as one not listed; its row goes', async () => {
    const alice = await account();
    const { knex } = server.services.db;
    const stale = await insertSession(knex, alice.user.id, new Date(Date.now() - 31 * 86_400_000));
    expect((await sessionsOf(alice.token)).body.sessions.map((s) => s.id)).not.to.include(stale);
    expectError(
      await request(server.url, 'DELETE', `/auth/sessions/${stale}`, { token: alice.token }),
      404,
      'NOT_FOUND',
    );
    expect(await rows(knex, 'SELECT id FROM sessions WHERE id = ?', [stale])).to.deep.equal([]);
    // A live one still ends with 204.
    const phone = await login(alice.username);
    const [live] = (await sessionsOf(phone.token)).body.sessions.filter((s) => s.current);
    const revoked = await request(server.url, 'DELETE', `/auth/sessions/${live!.id}`, { token: alice.token });
    expect(revoked.status).to.equal(204);
  });

  it('stores a printable, bounded user agent, and none when absent', async () => {
    const odd = await account(`Evil\u0085Agent\u00ad ${'x'.repeat(600)}`);
    const [session] = (await sessionsOf(odd.token)).body.sessions;
    expect(session!.userAgent).to.match(/^EvilAgent\u00ad x+$/);
    expect([...session!.userAgent!]).to.have.length(512);
    const bare = await request<AuthResponse>(server.url, 'POST', '/auth/login', {
      body: { username: odd.username, password: PASSWORD },
      headers: { 'user-agent': '' },
    });
    const listed = (await sessionsOf(bare.body.token)).body.sessions.find((s) => s.current);
    expect(listed!.userAgent).to.equal(null);
  });

  it('logout ends the calling session only; logout-all ends every one', async () => {
    const alice = await account();
    const b = await login(alice.username);
    const c = await login(alice.username);
    expect((await post('/auth/logout', undefined, b.token)).status).to.equal(204);
    expectError(await me(b.token), 401, 'UNAUTHORIZED');
    expectError(await refresh(b.refreshToken), 401, 'UNAUTHORIZED');
    for (const token of [alice.token, c.token]) expect((await me(token)).status).to.equal(200);
    expect((await refresh(c.refreshToken)).status).to.equal(200);

    expect((await post('/auth/logout-all', undefined, alice.token)).status).to.equal(204);
    expectError(await me(alice.token), 401, 'UNAUTHORIZED');
    expectError(await refresh(alice.refreshToken), 401, 'UNAUTHORIZED');
    expect(await sessionCount(alice.user.id)).to.equal(0);
  });

  it('changing the password ends every other session, keeps this one, and needs the current password', async () => {
    const alice = await account();
    const other = await login(alice.username);
    const wrong = await post(
      '/auth/password',
      { currentPassword: 'wrong password', newPassword: 'new password 1' },
      alice.token,
    );
    expectError(wrong, 401, 'INVALID_CREDENTIALS');
    expect((await me(other.token)).status).to.equal(200);
    expectError(
      await post('/auth/password', { currentPassword: PASSWORD, newPassword: 'short' }, alice.token),
      400,
      'VALIDATION_FAILED',
    );

    const changed = await post(
      '/auth/password',
      { currentPassword: PASSWORD, newPassword: 'new password 1' },
      alice.token,
    );
    expect(changed.status).to.equal(204);
    expect((await me(alice.token)).status).to.equal(200);
    expect((await refresh(alice.refreshToken)).status).to.equal(200);
    expectError(await me(other.token), 401, 'UNAUTHORIZED');
    expectError(await refresh(other.refreshToken), 401, 'UNAUTHORIZED');
    expectError(
      await post('/auth/login', { username: alice.username, password: PASSWORD }),
      401,
      'INVALID_CREDENTIALS',
    );
    expect(
      (await post('/auth/login', { username: alice.username, password: 'new password 1' })).status,
    ).to.equal(200);
  });

  describe('a login that races a password change or an account deletion', () => {
    const auth = () => server.services.auth;
    const knex = () => server.services.db.knex;
    /** A login's password checked (as POST /auth/login does first), its session not yet started. */
    async function checked(username: string) {
      const user = await auth().checkCredentials(username, PASSWORD);
      if (!user) throw new Error('the password was refused');
      return user;
    }
    /** The error code its session start is refused with (undefined when it started). */
    const startRefusal = (started: Promise<unknown>) =>
      started.then(
        () => undefined,
        (err: unknown) => (err as { code?: string }).code,
      );
    /** Waits until a statement matching `like` waits for a row lock. */
    const waitingForLock = (like: string, what: string) =>
      waitFor(
        async () =>
          (
            await rows<{ n: number }>(
              knex(),
              `SELECT count(*)::int AS n FROM pg_stat_activity
               WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE ?`,
              [like],
            )
          )[0]?.n === 1,
        { what, timeoutMs: 10_000 },
      );
    /** The user's password stored as an argon2id hash of weaker parameters than today's (to be upgraded at login). */
    async function weakHash(userId: string): Promise<string> {
      const weak = await argon2.hash(PASSWORD, { type: argon2.argon2id, memoryCost: 8192, timeCost: 1 });
      await knex()('users').where({ id: userId }).update({ password_hash: weak });
      return weak;
    }

    it('gets no session when the password changed after it was checked: INVALID_CREDENTIALS', async () => {
      const alice = await account();
      const user = await checked(alice.username);
      const changed = await post(
        '/auth/password',
        { currentPassword: PASSWORD, newPassword: 'new password 2' },
        alice.token,
      );
      expect(changed.status).to.equal(204);
      expect(await startRefusal(auth().startLogin(user, 'late-device'))).to.equal('INVALID_CREDENTIALS');
      expect(await sessionCount(alice.user.id), 'only the session that changed it').to.equal(1);
    });

    it('gets no session when the account was deleted after the check', async () => {
      const bob = await account();
      const user = await checked(bob.username);
      const deleted = await request(server.url, 'DELETE', '/users/me', {
        token: bob.token,
        body: { password: PASSWORD },
      });
      expect(deleted.status).to.equal(204);
      expect(await startRefusal(auth().startLogin(user, 'late-device'))).to.equal('INVALID_CREDENTIALS');
      expect(await sessionCount(bob.user.id)).to.equal(0);
    });

    it('waits for a password change in progress, then gets no session', async () => {
      const carol = await account();
      const user = await checked(carol.username);
      const changer = await knex().transaction();
      try {
        await changer.raw(`UPDATE users SET password_hash = 'changed' WHERE id = ?`, [carol.user.id]);
        let settled = false;
        const refusal = startRefusal(auth().startLogin(user, 'late-device')).finally(() => (settled = true));
        await waitingForLock('%FOR NO KEY UPDATE%', 'the session start waiting for the change');
        expect(settled).to.equal(false);
        await changer.commit();
        expect(await refusal).to.equal('INVALID_CREDENTIALS');
      } finally {
        if (!changer.isCompleted()) await changer.rollback();
      }
      expect(await sessionCount(carol.user.id)).to.equal(1);
    });

    it('upgrades a hash made with old parameters, and the session starts under the new one', async () => {
      const dave = await account();
      const weak = await weakHash(dave.user.id);
      const user = await checked(dave.username);
      const stored = await rows<{ password_hash: string }>(
        knex(),
        'SELECT password_hash FROM users WHERE id = ?',
        [dave.user.id],
      );
      expect(stored[0]?.password_hash).to.not.equal(weak);
      const session = await auth().startLogin(user, 'upgraded-device');
      expect((await me(session.token)).status).to.equal(200);
    });

    it('does not put an old password back when it changed while the hash was upgraded', async () => {
      const erin = await account();
      await weakHash(erin.user.id);
      // The change lands between the login's read of the weak hash and its upgrade: hold the row while the login
      // checks, then change the password before letting the upgrade through.
      const changer = await knex().transaction();
      let login: Promise<unknown> | undefined;
      try {
        await changer.raw('SELECT 1 FROM users WHERE id = ? FOR UPDATE', [erin.user.id]);
        login = auth().checkCredentials(erin.username, PASSWORD);
        await waitingForLock('update%', 'the upgrade waiting for the row');
        const newHash = await argon2.hash('new password 3', { type: argon2.argon2id });
        await changer.raw('UPDATE users SET password_hash = ? WHERE id = ?', [newHash, erin.user.id]);
        await changer.commit();
      } finally {
        if (!changer.isCompleted()) await changer.rollback();
      }
      await login;
      expectError(
        await post('/auth/login', { username: erin.username, password: PASSWORD }),
        401,
        'INVALID_CREDENTIALS',
      );
      expect(
        (await post('/auth/login', { username: erin.username, password: 'new password 3' })).status,
      ).to.equal(200);
    });
  });

  describe('a password change whose session or password changed while it ran', () => {
    const knex = () => server.services.db.knex;
    const changePassword = (token: string, newPassword: string) =>
      post('/auth/password', { currentPassword: PASSWORD, newPassword }, token);
    const currentSession = async (token: string) =>
      (await sessionsOf(token)).body.sessions.find((s) => s.current)!.id;
    /**
     * Holds the user's row while `start` sends its changes, until `n` of them wait for it just before their write
     * (their password checked and the new one hashed), then runs `meanwhile` and lets them go.
     */
    async function heldAtTheirWrite<T>(
      userId: string,
      n: number,
      start: () => Promise<T>,
      meanwhile: () => Promise<void> = () => Promise.resolve(),
    ): Promise<T> {
      const holder = await knex().transaction();
      let started: Promise<T>;
      try {
        await holder.raw('SELECT 1 FROM users WHERE id = ? FOR UPDATE', [userId]);
        started = start();
        await waitFor(
          async () =>
            (
              await rows<{ n: number }>(
                knex(),
                `SELECT count(*)::int AS n FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event <> 'object'
                   AND (query ILIKE 'update "users"%' OR query ILIKE 'select%from "users"%for update')`,
              )
            )[0]?.n === n,
          { what: `${n} password change(s) waiting for the user's row`, timeoutMs: 20_000 },
        );
        await meanwhile();
      } finally {
        await holder.commit();
      }
      return await started;
    }

    it('is refused UNAUTHORIZED when its session was revoked meanwhile: nothing changes, the revoker stays', async () => {
      const alice = await account();
      const thief = await login(alice.username);
      const thiefSession = await currentSession(thief.token);
      const answered = await heldAtTheirWrite(
        alice.user.id,
        1,
        () => changePassword(thief.token, 'thief password 1'),
        async () => {
          const revoked = await request(server.url, 'DELETE', `/auth/sessions/${thiefSession}`, {
            token: alice.token,
          });
          expect(revoked.status).to.equal(204);
        },
      );
      expectError(answered, 401, 'UNAUTHORIZED');
      expect((await me(alice.token)).status, 'the owner, who revoked it, is still signed in').to.equal(200);
      expect((await post('/auth/login', { username: alice.username, password: PASSWORD })).status).to.equal(
        200,
      );
    });

    it('two devices changing it at once: exactly one 204, whose caller stays signed in, and its password holds', async () => {
      const alice = await account();
      const other = await login(alice.username);
      const answers = await heldAtTheirWrite(alice.user.id, 2, () =>
        Promise.all([
          changePassword(alice.token, 'new password A'),
          changePassword(other.token, 'new password B'),
        ]),
      );
      expect(answers.map((a) => a.status).sort()).to.deep.equal([204, 401]);
      const winner = answers[0].status === 204 ? 0 : 1;
      expectError(answers[1 - winner]!, 401, 'UNAUTHORIZED');
      const tokens = [alice.token, other.token];
      expect((await me(tokens[winner]!)).status, 'the caller answered 204').to.equal(200);
      expectError(await me(tokens[1 - winner]!), 401, 'UNAUTHORIZED');
      const passwords = ['new password A', 'new password B'];
      expect(
        (await post('/auth/login', { username: alice.username, password: passwords[winner] })).status,
      ).to.equal(200);
      expectError(
        await post('/auth/login', { username: alice.username, password: passwords[1 - winner] }),
        401,
        'INVALID_CREDENTIALS',
      );
    });

    it('the same sent together with no lock held: at most one 204, and every caller answered 204 stays signed in', async () => {
      const alice = await account();
      const other = await login(alice.username);
      const tokens = [alice.token, other.token];
      const answers = await Promise.all(tokens.map((token, i) => changePassword(token, `new password ${i}`)));
      expect(answers.filter((a) => a.status === 204)).to.have.length(1);
      for (const [i, answer] of answers.entries()) {
        if (answer.status === 204) expect((await me(tokens[i]!)).status, `caller ${i}`).to.equal(200);
      }
    });

    it('one session sending two at once: the one whose current password was no longer current is INVALID_CREDENTIALS', async () => {
      const alice = await account();
      const answers = await heldAtTheirWrite(alice.user.id, 2, () =>
        Promise.all([
          changePassword(alice.token, 'new password A'),
          changePassword(alice.token, 'new password B'),
        ]),
      );
      expect(answers.map((a) => a.status).sort()).to.deep.equal([204, 401]);
      const winner = answers[0].status === 204 ? 0 : 1;
      expectError(answers[1 - winner]!, 401, 'INVALID_CREDENTIALS');
      expect((await me(alice.token)).status).to.equal(200);
      const passwords = ['new password A', 'new password B'];
      expect(
        (await post('/auth/login', { username: alice.username, password: passwords[winner] })).status,
      ).to.equal(200);
    });
  });

  it('PATCH /users/me changes the display name; control and bidi characters are refused', async () => {
    const alice = await account();
    const patch = (body: unknown) =>
      request<{ user: PublicUser }>(server.url, 'PATCH', '/users/me', { token: alice.token, body });
    const ok = await patch({ displayName: 'Alice 🌷 Liddell' });
    expect(ok.status).to.equal(200);
    expect(ok.body.user).to.deep.equal({ ...alice.user, displayName: 'Alice 🌷 Liddell' });
    expect((await me(alice.token)).body.user.displayName).to.equal('Alice 🌷 Liddell');
    expect((await request(server.url, 'GET', '/users/me', { token: alice.token })).body).to.deep.equal({
      user: ok.body.user,
    });

    for (const displayName of [
      'evil\u202eecil',
      'left\u2066isolate',
      'mark\u200fhere',
      'ltr\u200emark',
      'arabic\u061cmark',
      'line\u2028separator',
      'paragraph\u2029separator',
      'tab\there',
      'new\nline',
      'bell\u0007',
      'c1\u0085',
      'del\u007f',
      '',
      '   ',
      'x'.repeat(65),
      42,
      null,
    ]) {
      const res = await patch({ displayName });
      expect(expectError(res, 400, 'VALIDATION_FAILED').details).to.have.keys(['displayName']);
    }
    expectError(await patch({}), 400, 'VALIDATION_FAILED');
    expect((await me(alice.token)).body.user.displayName).to.equal('Alice 🌷 Liddell');
  });

  it(`a user has at most ${MAX_SESSIONS_PER_USER} sessions: a login past that ends the least recently used`, async () => {
    const alice = await account();
    const { knex } = server.services.db;
    // The signup's session is the oldest; then MAX - 2 more, each used a minute later than the one before.
    await knex('sessions')
      .where({ id: (jwt.decode(alice.token) as { sid: string }).sid })
      .update({ last_used_at: knex.raw("now() - interval '1 day'") });
    const others = await Promise.all(
      Array.from({ length: MAX_SESSIONS_PER_USER - 2 }, (_, i) =>
        insertSession(knex, alice.user.id, new Date(Date.now() - (MAX_SESSIONS_PER_USER - i) * 60_000)),
      ),
    );
    const oldestSocket = await connectSocket(server.url, alice.token);
    const ended = record(oldestSocket, 'session:ended');
    const gone = disconnected(oldestSocket);
    try {
      // The MAX-th session fits.
      await login(alice.username);
      expect(await sessionCount(alice.user.id)).to.equal(MAX_SESSIONS_PER_USER);
      expect(oldestSocket.connected).to.equal(true);
      // One more ends the least recently used: the signup's, whose socket hears why.
      const latest = await login(alice.username);
      expect(await sessionCount(alice.user.id)).to.equal(MAX_SESSIONS_PER_USER);
      expect(await gone).to.equal('io server disconnect');
      expect(ended).to.deep.equal([{ reason: 'revoked' }]);
      expectError(await me(alice.token), 401, 'UNAUTHORIZED');
      expect((await me(latest.token)).status).to.equal(200);
      // And then the next least recently used.
      await login(alice.username);
      const live = await rows<{ id: string }>(knex, 'SELECT id FROM sessions WHERE id = ANY(?::uuid[])', [
        others.slice(0, 2),
      ]);
      expect(live.map((r) => r.id)).to.deep.equal([others[1]]);
    } finally {
      oldestSocket.close();
    }
  });

  it('a login past the cap does not end a least recently used session refreshed while it waited for it, and ends the next instead', async () => {
    const alice = await account();
    const { knex } = server.services.db;
    const lru = (jwt.decode(alice.token) as { sid: string }).sid;
    await knex('sessions')
      .where({ id: lru })
      .update({ last_used_at: knex.raw("now() - interval '1 day'") });
    await Promise.all(
      Array.from({ length: MAX_SESSIONS_PER_USER - 1 }, (_, i) =>
        insertSession(knex, alice.user.id, new Date(Date.now() - (MAX_SESSIONS_PER_USER - i) * 60_000)),
      ),
    );
    // A refresh of the least recently used session holds its row (as /auth/refresh does until it commits) while the
    // login picks the session to end: the login waits for it, and then finds that session the most recently used.
    const refreshing = await knex.transaction();
    try {
      await refreshing.raw('UPDATE sessions SET last_used_at = now() WHERE id = ?', [lru]);
      const loggingIn = login(alice.username);
      await waitFor(
        async () =>
          (
            await rows<{ n: number }>(
              knex,
              "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%evicted AS%'",
            )
          )[0]!.n === 1,
        { what: 'the login waiting for the refreshed session' },
      );
      await refreshing.commit();
      await loggingIn;
    } catch (err) {
      await refreshing.rollback();
      throw err;
    }
    expect((await me(alice.token)).status, 'the refreshed session').to.equal(200);
    // The cap holds all the same: the next least recently used session went instead.
    expect(await sessionCount(alice.user.id)).to.equal(MAX_SESSIONS_PER_USER);
  });

  it('a login that ended the least recently used session tells it, and answers its session when what follows fails', async () => {
    const alice = await account();
    const { knex } = server.services.db;
    await knex('sessions')
      .where({ id: (jwt.decode(alice.token) as { sid: string }).sid })
      .update({ last_used_at: knex.raw("now() - interval '1 day'") });
    await Promise.all(
      Array.from({ length: MAX_SESSIONS_PER_USER - 1 }, (_, i) =>
        insertSession(knex, alice.user.id, new Date(Date.now() - (MAX_SESSIONS_PER_USER - i) * 60_000)),
      ),
    );
    const oldestSocket = await connectSocket(server.url, alice.token);
    const ended = record(oldestSocket, 'session:ended');
    const gone = disconnected(oldestSocket);
    const { limits } = server.services.auth;
    const accepted = limits.passwordAccepted.bind(limits);
    // The login's session began (and ended the oldest); what follows it fails: the session is answered all the same
    // (test/answersAfterCommit.test.ts).
    limits.passwordAccepted = () => Promise.reject(new Error('the limits table is away'));
    try {
      const res = await post('/auth/login', { username: alice.username, password: PASSWORD });
      expect(res.status).to.equal(200);
      // Told at once, not at the sockets' periodic re-check of their sessions (a minute).
      await waitFor(() => ended.length > 0, { what: 'the ended session told', timeoutMs: 10_000 });
      expect(await gone).to.equal('io server disconnect');
      expect(ended).to.deep.equal([{ reason: 'revoked' }]);
    } finally {
      limits.passwordAccepted = accepted;
      oldestSocket.close();
    }
  });

  it('checks the user and its session in ONE statement per authenticated request', async () => {
    const alice = await account();
    const knex = server.services.db.knex;
    const seen = (
      await captureQueries(knex, async () => expect((await me(alice.token)).status).to.equal(200))
    ).map((query) => query.sql);
    const touching = seen.filter((sql) => /"?(users|sessions)"?/.test(sql));
    expect(touching, seen.join('\n')).to.have.length(1);
    expect(touching[0])
      .to.match(/sessions/)
      .and.to.match(/users/);
  });
});

describe('sessions: the races of a session start and of a handshake', function () {
  // Twenty password checks at once, so that twenty logins can reach their session statements together.
  const { server } = useNode({ passwordChecks: { running: 20, waiting: 64 } });

  async function account(): Promise<{ username: string } & AuthResponse> {
    const username = uniqueUsername('srace');
    const res = await request<AuthResponse>(server.url, 'POST', '/auth/signup', {
      body: { username, password: PASSWORD },
    });
    expect(res.status, res.text).to.equal(201);
    return { username, ...res.body };
  }

  it('a session ended between the handshake check and the room join: the socket hears session:ended, then goes', async () => {
    const alice = await account();
    const sessionId = (jwt.decode(alice.token) as { sid: string }).sid;
    let armed = true;
    // The window held open: the session ends (a logout from another request) after the handshake's token check
    // passed and before the socket joins its rooms, so the logout's disconnect reaches no socket.
    server.services.io.use((socket, next) => {
      if (!armed || socket.data.sessionId !== sessionId) return next();
      armed = false;
      request(server.url, 'POST', '/auth/logout', { token: alice.token }).then(
        (res) => next(res.status === 204 ? undefined : new Error(`logout answered ${res.status}`)),
        (err: Error) => next(err),
      );
    });
    const socket = connect(server.url, {
      auth: { token: alice.token },
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
    });
    // Listening before the connection opens: nothing the server says can be missed.
    const ended = record(socket, 'session:ended');
    const gone = new Promise<string>((resolve) => socket.once('disconnect', resolve));
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', () => resolve());
        socket.once('connect_error', reject);
      });
      expect(armed, 'the logout ran inside the handshake').to.equal(false);
      expect(await gone).to.equal('io server disconnect');
      // Told once, by whichever comes first: the node's look at the session once the socket is in its rooms
      // ("revoked"), or, on a loaded machine, the logout's own notice heard by the node after the socket joined
      // ("logged_out"). Either way the socket heard why, then went.
      expect(ended).to.have.length(1);
      expect(['revoked', 'logged_out']).to.include((ended[0] as { reason: string }).reason);
    } finally {
      socket.close();
    }
  });

  it(`concurrent logins never leave more than ${MAX_SESSIONS_PER_USER} live sessions`, async () => {
    const alice = await account();
    const { knex } = server.services.db;
    await Promise.all(
      Array.from({ length: MAX_SESSIONS_PER_USER - 2 }, (_, i) =>
        insertSession(knex, alice.user.id, new Date(Date.now() - (MAX_SESSIONS_PER_USER - i) * 60_000)),
      ),
    );
    // The user's row is busy for a moment (as under a display-name change): the logins' session starts wait for
    // it, then all run at once, each from a snapshot taken before the others' sessions committed.
    const trx = await knex.transaction();
    try {
      await trx('users').where({ id: alice.user.id }).update({ display_name: 'busy for a moment' });
      const pending = Promise.all(
        Array.from({ length: 20 }, () =>
          request<AuthResponse>(server.url, 'POST', '/auth/login', {
            body: { username: alice.username, password: PASSWORD },
          }),
        ),
      );
      // Every login past its password check waits for a lock (the row, or another login's session start).
      await waitFor(
        async () => {
          const [waiting] = await rows<{ n: number }>(
            knex,
            `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE datname = current_database() AND cardinality(pg_blocking_pids(pid)) > 0`,
          );
          return waiting!.n >= 20;
        },
        { what: 'twenty logins waiting for the user row', timeoutMs: 30_000 },
      );
      await trx.commit();
      const logins = await pending;
      for (const res of logins) expect(res.status, res.text).to.equal(200);
      const [count] = await rows<{ n: number }>(
        knex,
        'SELECT count(*)::int AS n FROM sessions WHERE user_id = ?',
        [alice.user.id],
      );
      expect(count!.n, 'sessions in the database').to.equal(MAX_SESSIONS_PER_USER);
      const listed = await request<{ sessions: unknown[] }>(server.url, 'GET', '/auth/sessions', {
        token: logins[0]!.body.token,
      });
      expect(listed.body.sessions).to.have.length(MAX_SESSIONS_PER_USER);
    } finally {
      if (!trx.isCompleted()) await trx.rollback();
    }
  });
});

describe('sessions: a User-Agent beyond ASCII', function () {
  const { server } = useNode();

  /** Signs up with `userAgent` written in the head as latin1 characters (bytes), and answers the sessions' agents. */
  async function agentsAfterSignup(headBytes: string): Promise<Array<string | null>> {
    const body = JSON.stringify({ username: uniqueUsername('ua'), password: 'correct horse battery' });
    const res = await rawRequest(server.url, {
      method: 'POST',
      target: '/auth/signup',
      headers: [
        ['content-type', 'application/json'],
        ['content-length', String(Buffer.byteLength(body))],
        ['user-agent', headBytes],
      ],
      body,
    });
    expect(res.status, res.body).to.equal(201);
    const { token } = JSON.parse(res.body) as AuthResponse;
    const sessions = await request<{ sessions: PublicSession[] }>(server.url, 'GET', '/auth/sessions', {
      token,
    });
    return sessions.body.sessions.map((s) => s.userAgent);
  }

  for (const userAgent of ['Zürich-Tram/2.1 (Android 14)', 'ChatApp/1.0 (Pixel; 红米) 😀']) {
    it(`keeps ${JSON.stringify(userAgent)}, sent as UTF-8, as it was sent`, async () => {
      // Node reads a head's bytes as latin1: it came back as "ZÃ¼rich", less the bytes taken for C1 controls.
      const utf8Bytes = Buffer.from(userAgent, 'utf8').toString('latin1');
      expect(await agentsAfterSignup(utf8Bytes)).to.deep.equal([userAgent]);
    });
  }

  it('keeps a User-Agent in latin1 (not valid UTF-8) as latin1 reads it', async () => {
    expect(await agentsAfterSignup('Caf\u00e9-Client/1.0')).to.deep.equal(['Café-Client/1.0']);
  });
});
