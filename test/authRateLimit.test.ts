import { expect } from 'chai';
import type { RunningServer } from '../lib/server.js';
import { request, type JsonResponse } from './helpers/http.js';
import { createTestDatabase } from './helpers/postgres.js';
import { startTestServer } from './helpers/server.js';
import { uniqueUsername } from './helpers/users.js';

interface ErrorBody {
  error: { code: string; message: string };
}

const LIMIT = 3;
const PASSWORD = 'correct horse battery';

/**
 * RATE_LIMIT_AUTH_PER_MIN=3: three attempts per minute per IP (signup and login) and per username (login).
 * One proxy hop is trusted, so each test picks its client IP with X-Forwarded-For.
 */
describe('accounts: abuse limits', function () {
  let server: RunningServer;
  let nextIp = 1;
  const freshIp = () => `10.0.${Math.floor(nextIp / 250)}.${(nextIp++ % 250) + 1}`;

  before(async () => {
    server = await startTestServer(await createTestDatabase(), {
      RATE_LIMIT_AUTH_PER_MIN: String(LIMIT),
      TRUST_PROXY_HOPS: '1',
    });
  });

  after(async () => {
    await server.close();
  });

  const post = (path: string, ip: string, body: unknown) =>
    request<ErrorBody>(server.url, 'POST', path, { body, headers: { 'x-forwarded-for': ip } });

  function expectLimited(res: JsonResponse<ErrorBody>): void {
    expect(res.status).to.equal(429);
    expect(res.body.error.code).to.equal('RATE_LIMITED');
    const retryAfter = res.headers.get('retry-after');
    expect(retryAfter).to.match(/^[1-9]\d*$/);
    // 3 per minute refills one attempt every 20 s.
    expect(Number(retryAfter)).to.be.within(1, 20);
  }

  it('limits signups per IP with 429 RATE_LIMITED and Retry-After; another IP is unaffected', async () => {
    const ip = freshIp();
    for (let i = 0; i < LIMIT; i++) {
      const res = await post('/auth/signup', ip, { username: uniqueUsername(), password: PASSWORD });
      expect(res.status).to.equal(201);
    }
    const username = uniqueUsername();
    expectLimited(await post('/auth/signup', ip, { username, password: PASSWORD }));
    // Nothing was created by the refused attempt.
    expect(await server.services.db.knex('users').where({ username }).first()).to.equal(undefined);
    expect((await post('/auth/signup', freshIp(), { username, password: PASSWORD })).status).to.equal(201);
  });

  it('limits logins per IP, whatever the usernames, and counts invalid attempts too', async () => {
    const ip = freshIp();
    expect(
      (await post('/auth/login', ip, { username: uniqueUsername(), password: PASSWORD })).status,
    ).to.equal(401);
    expect((await post('/auth/login', ip, { username: 'x', password: PASSWORD })).status).to.equal(400);
    expect(
      (await post('/auth/login', ip, { username: uniqueUsername(), password: PASSWORD })).status,
    ).to.equal(401);
    expectLimited(await post('/auth/login', ip, { username: uniqueUsername(), password: PASSWORD }));
    // Signup shares the per-IP budget.
    expectLimited(await post('/auth/signup', ip, { username: uniqueUsername(), password: PASSWORD }));
  });

  it('limits logins per username (case-insensitively) across IPs, even with the right password', async () => {
    const username = uniqueUsername('Limit');
    expect((await post('/auth/signup', freshIp(), { username, password: PASSWORD })).status).to.equal(201);
    expect((await post('/auth/login', freshIp(), { username, password: 'wrong password' })).status).to.equal(
      401,
    );
    const upper = username.toUpperCase();
    expect(
      (await post('/auth/login', freshIp(), { username: upper, password: 'wrong pass' })).status,
    ).to.equal(401);
    expect((await post('/auth/login', freshIp(), { username, password: PASSWORD })).status).to.equal(200);
    expectLimited(
      await post('/auth/login', freshIp(), { username: username.toLowerCase(), password: PASSWORD }),
    );
    // Another username from a fresh IP still logs in.
    const other = uniqueUsername();
    expect((await post('/auth/signup', freshIp(), { username: other, password: PASSWORD })).status).to.equal(
      201,
    );
    expect((await post('/auth/login', freshIp(), { username: other, password: PASSWORD })).status).to.equal(
      200,
    );
  });

  it('does not limit other routes', async () => {
    const ip = freshIp();
    for (let i = 0; i < LIMIT + 2; i++) {
      const res = await request(server.url, 'GET', '/healthz', { headers: { 'x-forwarded-for': ip } });
      expect(res.status).to.equal(200);
    }
  });
});
