import { expect } from 'chai';
import type { PublicUser } from '../lib/protocol/index.js';
import { expectError } from './helpers/errors.js';
import { request } from './helpers/http.js';
import { useNode } from './helpers/nodes.js';
import { insertUser, uniqueUsername } from './helpers/users.js';

interface AuthBody {
  user: PublicUser;
  token: string;
  refreshToken: string;
  expiresIn: number;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const PASSWORD = 'correct horse battery';

describe('accounts: signup, login, me, logout', function () {
  const { server } = useNode();

  const signup = (body: unknown) => request<AuthBody>(server.url, 'POST', '/auth/signup', { body });
  const login = (body: unknown) => request<AuthBody>(server.url, 'POST', '/auth/login', { body });
  const me = (token: string) => request<{ user: PublicUser }>(server.url, 'GET', '/auth/me', { token });

  it('signs up, logs in and answers /auth/me with the public user only', async () => {
    const username = uniqueUsername('Sign');
    const created = await signup({ username, password: PASSWORD, displayName: 'Signe' });
    expect(created.status).to.equal(201);
    expect(Object.keys(created.body.user).sort()).to.deep.equal([
      'createdAt',
      'displayName',
      'id',
      'username',
    ]);
    expect(created.body.user.id).to.match(UUID);
    expect(created.body.user.username).to.equal(username);
    expect(created.body.user.displayName).to.equal('Signe');
    expect(new Date(created.body.user.createdAt).toISOString()).to.equal(created.body.user.createdAt);
    expect(created.text).not.to.match(/argon2|password|tokenVersion|token_version/i);

    // Login matches the username case-insensitively and answers the name as it was typed at signup.
    const loggedIn = await login({ username: username.toUpperCase(), password: PASSWORD });
    expect(loggedIn.status).to.equal(200);
    expect(loggedIn.body.user).to.deep.equal(created.body.user);
    expect(loggedIn.body.token).to.be.a('string');
    for (const body of [created.body, loggedIn.body]) {
      expect(Object.keys(body).sort()).to.deep.equal(['expiresIn', 'refreshToken', 'token', 'user']);
      expect(body.expiresIn).to.equal(900);
      // Opaque: 32 random bytes, base64url, not a JWT.
      expect(body.refreshToken).to.match(/^[A-Za-z0-9_-]{43}$/);
    }
    expect(created.body.refreshToken).not.to.equal(loggedIn.body.refreshToken);

    for (const token of [created.body.token, loggedIn.body.token]) {
      const res = await me(token);
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.equal({ user: created.body.user });
    }
  });

  it('defaults displayName to the username', async () => {
    const username = uniqueUsername();
    const res = await signup({ username, password: PASSWORD });
    expect(res.status).to.equal(201);
    expect(res.body.user.displayName).to.equal(username);
  });

  it('refuses invalid fields with 400 VALIDATION_FAILED naming every field', async () => {
    const cases: Array<[unknown, string[]]> = [
      [{ username: 'ab', password: PASSWORD }, ['username']],
      [{ username: 'x'.repeat(33), password: PASSWORD }, ['username']],
      [{ username: 'has space', password: PASSWORD }, ['username']],
      [{ username: 'émile', password: PASSWORD }, ['username']],
      [{ username: uniqueUsername(), password: 'short77' }, ['password']],
      [{ username: uniqueUsername(), password: 'p'.repeat(129) }, ['password']],
      [{ username: uniqueUsername(), password: 12345678 }, ['password']],
      [{ username: uniqueUsername(), password: PASSWORD, displayName: '' }, ['displayName']],
      [{ username: uniqueUsername(), password: PASSWORD, displayName: 'd'.repeat(65) }, ['displayName']],
      [{ username: uniqueUsername(), password: PASSWORD, displayName: '   ' }, ['displayName']],
      [{}, ['password', 'username']],
      [{ username: 'a', password: 'b', displayName: 7 }, ['displayName', 'password', 'username']],
    ];
    for (const [body, fields] of cases) {
      const res = await signup(body);
      const { details } = expectError(res, 400, 'VALIDATION_FAILED', JSON.stringify(body));
      expect(Object.keys(details ?? {}).sort(), JSON.stringify(body)).to.deep.equal(fields);
    }
    const notObject = await signup([1, 2]);
    expectError(notObject, 400, 'VALIDATION_FAILED');
  });

  it('accepts the boundary lengths: username 3 and 32, password 8 and 128, displayName 64 code points', async () => {
    const short = `a${uniqueUsername().slice(-2)}`;
    expect((await signup({ username: short, password: 'p'.repeat(8) })).status).to.equal(201);
    const long = `${uniqueUsername()}`.padEnd(32, 'x');
    const res = await signup({ username: long, password: 'p'.repeat(128), displayName: '😀'.repeat(64) });
    expect(res.status).to.equal(201);
    expect(res.body.user.displayName).to.equal('😀'.repeat(64));
    expect((await login({ username: long, password: 'p'.repeat(128) })).status).to.equal(200);
  });

  it('answers 409 USERNAME_TAKEN for a taken username in any case', async () => {
    const username = uniqueUsername('Taken');
    expect((await signup({ username, password: PASSWORD })).status).to.equal(201);
    for (const variant of [username, username.toLowerCase(), username.toUpperCase()]) {
      const res = await signup({ username: variant, password: PASSWORD });
      expectError(res, 409, 'USERNAME_TAKEN');
    }
  });

  it('lets exactly one of several concurrent signups of one name (different cases) win', async () => {
    const base = uniqueUsername('race');
    const variants = [base, base.toUpperCase(), `R${base.slice(1)}`, base, base.toLowerCase()];
    const results = await Promise.all(variants.map((username) => signup({ username, password: PASSWORD })));
    const statuses = results.map((r) => r.status).sort();
    expect(statuses).to.deep.equal([201, 409, 409, 409, 409]);
    for (const r of results.filter((x) => x.status === 409)) expectError(r, 409, 'USERNAME_TAKEN');
    const rows = await server.services.db.knex('users').whereRaw('lower(username) = ?', [base.toLowerCase()]);
    expect(rows).to.have.length(1);
  });

  it('answers an unknown user and a wrong password with byte-identical 401 INVALID_CREDENTIALS', async () => {
    const username = uniqueUsername();
    expect((await signup({ username, password: PASSWORD })).status).to.equal(201);
    const wrong = await login({ username, password: 'wrong password' });
    const unknown = await login({ username: uniqueUsername(), password: 'wrong password' });
    const unknownOtherPassword = await login({ username: uniqueUsername(), password: PASSWORD });
    expectError(wrong, 401, 'INVALID_CREDENTIALS');
    expect(unknown.status).to.equal(401);
    expect(unknown.text).to.equal(wrong.text);
    expect(unknownOtherPassword.text).to.equal(wrong.text);
    expect(unknown.headers.get('content-type')).to.equal(wrong.headers.get('content-type'));
    expect(unknown.headers.get('content-length')).to.equal(wrong.headers.get('content-length'));
    expect(wrong.headers.get('www-authenticate')).to.equal(null);
  });

  it('validates login fields (400) and refuses a wrong short password with INVALID_CREDENTIALS', async () => {
    const missing = await login({ username: uniqueUsername() });
    expect(expectError(missing, 400, 'VALIDATION_FAILED').details).to.deep.equal({ password: 'is required' });
    const badName = await login({ username: 'no spaces allowed', password: PASSWORD });
    expect(expectError(badName, 400, 'VALIDATION_FAILED').details).to.have.keys(['username']);
    const short = await login({ username: uniqueUsername(), password: 'x' });
    expectError(short, 401, 'INVALID_CREDENTIALS');
  });

  it('a user inserted without a real hash cannot log in (401, not 500)', async () => {
    const user = await insertUser(server.services.db.knex, server.services.config);
    const res = await login({ username: user.username, password: 'not-a-real-hash' });
    expectError(res, 401, 'INVALID_CREDENTIALS');
  });

  it('answers 401 UNAUTHORIZED on /auth/me and /auth/logout without a valid bearer token', async () => {
    const variants: Array<Record<string, string>> = [
      {},
      { authorization: 'Bearer' },
      { authorization: 'Basic abc' },
      { authorization: 'Bearer x.y.z' },
      { authorization: `Bearer ${'a'.repeat(5000)}` },
    ];
    for (const headers of variants) {
      for (const [method, path] of [
        ['GET', '/auth/me'],
        ['POST', '/auth/logout'],
        ['POST', '/auth/logout-all'],
        ['GET', '/auth/sessions'],
        ['POST', '/auth/password'],
        ['PATCH', '/users/me'],
        ['DELETE', '/users/me'],
      ] as const) {
        const res = await request(server.url, method, path, { headers });
        expectError(res, 401, 'UNAUTHORIZED', `${method} ${path} ${JSON.stringify(headers)}`);
      }
    }
  });

  it('logout answers 204 and ends the calling session only; logout-all ends every session', async () => {
    const username = uniqueUsername();
    const first = await signup({ username, password: PASSWORD });
    const second = await login({ username, password: PASSWORD });
    const third = await login({ username, password: PASSWORD });
    const other = await signup({ username: uniqueUsername(), password: PASSWORD });
    const out = await request(server.url, 'POST', '/auth/logout', { token: second.body.token });
    expect(out.status).to.equal(204);
    expect(out.text).to.equal('');
    expectError(await me(second.body.token), 401, 'UNAUTHORIZED');
    expect((await me(first.body.token)).status).to.equal(200);
    expect((await me(third.body.token)).status).to.equal(200);
    expect((await request(server.url, 'POST', '/auth/logout', { token: second.body.token })).status).to.equal(
      401,
    );

    const all = await request(server.url, 'POST', '/auth/logout-all', { token: third.body.token });
    expect(all.status).to.equal(204);
    for (const token of [first.body.token, third.body.token]) expect((await me(token)).status).to.equal(401);
    expect((await me(other.body.token)).status).to.equal(200);
    // A fresh login works again.
    const again = await login({ username, password: PASSWORD });
    expect(again.status).to.equal(200);
    expect((await me(again.body.token)).status).to.equal(200);
  });

  describe('GET /users?username=', () => {
    it('finds a user case-insensitively, 404 USER_NOT_FOUND otherwise, 400 for a bad name, 401 without token', async () => {
      const target = await signup({ username: uniqueUsername('Find'), password: PASSWORD });
      const caller = await insertUser(server.services.db.knex, server.services.config);
      const path = (u: string) => `/users?username=${encodeURIComponent(u)}`;
      const found = await request<{ user: PublicUser }>(
        server.url,
        'GET',
        path(target.body.user.username!.toLowerCase()),
        {
          token: caller.token,
        },
      );
      expect(found.status).to.equal(200);
      expect(found.body).to.deep.equal({ user: target.body.user });

      const missing = await request(server.url, 'GET', path(uniqueUsername()), {
        token: caller.token,
      });
      expectError(missing, 404, 'USER_NOT_FOUND');

      const bad = await request(server.url, 'GET', '/users', { token: caller.token });
      expect(expectError(bad, 400, 'VALIDATION_FAILED').details).to.have.keys(['username']);

      const anonymous = await request(server.url, 'GET', path(target.body.user.username!));
      expect(anonymous.status).to.equal(401);
    });
  });
});
