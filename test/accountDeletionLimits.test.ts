import { expect } from 'chai';
import type { AuthResponse } from '../lib/protocol/index.js';
import type { RunningServer } from '../lib/server.js';
import { expectError } from './helpers/errors.js';
import { request } from './helpers/http.js';
import { useNode } from './helpers/nodes.js';
import { uniqueUsername } from './helpers/users.js';

const PASSWORD = 'correct horse battery';
const NEW_PASSWORD = 'another horse, new owner';
const WRONG = 'wrong password!';

let nextIp = 1;
const freshIp = () => `10.77.${Math.floor(nextIp / 250) % 250}.${(nextIp++ % 250) + 1}`;

function post(server: RunningServer, path: string, ip: string, body: unknown, token?: string) {
  return request<AuthResponse>(server.url, 'POST', path, {
    body,
    headers: { 'x-forwarded-for': ip },
    ...(token === undefined ? {} : { token }),
  });
}

/**
 * The contract: after DELETE /users/me "the username is free again". docs/api-auth-friends.md (abuse limits): the
 * per-username ceiling (10N failed logins an hour from all IPs) "holds only for addresses the username has not signed
 * in from: where the owner signed in before (within 30 days), its logins skip the ceiling". The addresses a deleted
 * account signed in from are not where the new owner of the name signed in: they must not skip the new account's
 * ceiling. The known pairs are keyed by the username, and the deletion leaves them.
 */
describe('a username freed by an account deletion, and the login limits of its former owner', function () {
  const N = 3;
  const { server } = useNode({ env: { RATE_LIMIT_AUTH_PER_MIN: String(N), TRUST_PROXY_HOPS: '1' } });

  it('the former owner’s addresses do not skip the new account’s username ceiling (10N an hour)', async () => {
    const name = uniqueUsername('Reb');
    // The first owner signs up, then signs in from 11 places (each becomes a known pair of the name).
    const first = await post(server, '/auth/signup', freshIp(), { username: name, password: PASSWORD });
    expect(first.status).to.equal(201);
    const oldPlaces: string[] = [];
    for (let i = 0; i < 11; i++) {
      const ip = freshIp();
      expect((await post(server, '/auth/login', ip, { username: name, password: PASSWORD })).status).to.equal(
        200,
      );
      oldPlaces.push(ip);
    }
    const del = await request(server.url, 'DELETE', '/users/me', {
      token: first.body.token,
      body: { password: PASSWORD },
      headers: { 'x-forwarded-for': oldPlaces[0]! },
    });
    expect(del.status).to.equal(204);

    // Someone else takes the free name, from an address of their own.
    const newOwnersPlace = freshIp();
    const second = await post(server, '/auth/signup', newOwnersPlace, {
      username: name,
      password: NEW_PASSWORD,
    });
    expect(second.status).to.equal(201);
    expect(second.body.user.id).not.to.equal(first.body.user.id);

    // A guesser at the former owner's places: each stays under its pair's limit (N a minute); together 11 x N = 33
    // failures, past the new account's ceiling of 10N = 30.
    const statuses: number[] = [];
    for (const ip of oldPlaces) {
      for (let i = 0; i < N; i++) {
        statuses.push((await post(server, '/auth/login', ip, { username: name, password: WRONG })).status);
      }
    }
    const checked = statuses.filter((s) => s === 401).length;
    // At most 10N of them were checked against the new owner's password; the rest were refused.
    expect(
      checked,
      `password checks of the new account from the former owner's addresses: ${statuses.join(',')}`,
    ).to.be.at.most(10 * N);
    // And past the ceiling, a guess from anywhere the new owner never signed in is refused.
    expectError(
      await post(server, '/auth/login', freshIp(), { username: name, password: WRONG }),
      429,
      'RATE_LIMITED',
    );
  });
  /**
   * An account signed up from an address, a check of its password taken there (found right, its acceptance not yet
   * landed), then the account deleted: the acceptance lands after the deletion.
   */
  async function deletedWithAttemptUnderWay(prefix: string) {
    const name = uniqueUsername(prefix);
    const ip = freshIp();
    const first = await post(server, '/auth/signup', ip, { username: name, password: PASSWORD });
    expect(first.status).to.equal(201);
    const limits = server.services.auth.limits;
    const attempt = await limits.takePasswordAttempt(name, ip);
    const del = await request(server.url, 'DELETE', '/users/me', {
      token: first.body.token,
      body: { password: PASSWORD },
      headers: { 'x-forwarded-for': ip },
    });
    expect(del.status).to.equal(204);
    return { name, ip, first, limits, attempt };
  }

  it('a password accepted just before the deletion (a login, a password change, another device) does not make an address known again after it', async () => {
    const { name, ip, first, limits, attempt } = await deletedWithAttemptUnderWay('Rac');
    await limits.passwordAccepted(attempt, first.body.user.id);
    // Nor does a signup's own remembering that lands after its account was deleted (from another client).
    await limits.signedUp(name, ip, first.body.user.id);
    const known = await server.services.db
      .knex('auth_rate_limits')
      .whereRaw('starts_with(key, ?)', [`login_known_pair:${name.toLowerCase()}|`])
      .select('key');
    expect(known).to.deep.equal([]);

    // While the account is live, a right password makes its address known, as before.
    const other = uniqueUsername('Rac');
    expect(
      (await post(server, '/auth/signup', freshIp(), { username: other, password: PASSWORD })).status,
    ).to.equal(201);
    const place = freshIp();
    expect(
      (await post(server, '/auth/login', place, { username: other, password: PASSWORD })).status,
    ).to.equal(200);
    const knownOther = await server.services.db
      .knex('auth_rate_limits')
      .whereRaw('starts_with(key, ?)', [`login_known_pair:${other.toLowerCase()}|`])
      .select('key');
    expect(knownOther.map((r: { key: string }) => r.key)).to.include(
      `login_known_pair:${other.toLowerCase()}|${place}`,
    );
  });
  it("a password accepted after the freed name was taken again does not make the former owner's address known to the new account", async () => {
    const { name, ip, first, limits, attempt } = await deletedWithAttemptUnderWay('Rtk');
    // Someone else takes the name, elsewhere, before the former owner's acceptance lands.
    expect(
      (await post(server, '/auth/signup', freshIp(), { username: name, password: NEW_PASSWORD })).status,
    ).to.equal(201);
    await limits.passwordAccepted(attempt, first.body.user.id);
    const known = await server.services.db
      .knex('auth_rate_limits')
      .where('key', `login_known_pair:${name.toLowerCase()}|${ip}`)
      .select('key');
    expect(known).to.deep.equal([]);
  });
});
