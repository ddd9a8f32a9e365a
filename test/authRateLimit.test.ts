import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import type { AuthResponse, AuthTokens } from '../lib/protocol/index.js';
import type { RunningServer } from '../lib/server.js';
import { LimitReached, clusterLimiter } from '../lib/clusterLimits.js';
import { expectError } from './helpers/errors.js';
import { request, type JsonResponse } from './helpers/http.js';
import { useNode, useTwoNodes } from './helpers/nodes.js';
import { uniqueUsername } from './helpers/users.js';

const PASSWORD = 'correct horse battery';
const WRONG = 'wrong password!';

let nextIp = 1;
/** A client address no other test uses (one proxy hop is trusted, so X-Forwarded-For names it). */
const freshIp = () =>
  `10.${Math.floor(nextIp / 62500) % 250}.${Math.floor(nextIp / 250) % 250}.${(nextIp++ % 250) + 1}`;

function post(server: RunningServer, path: string, ip: string, body: unknown) {
  return request<AuthResponse>(server.url, 'POST', path, {
    body,
    headers: { 'x-forwarded-for': ip },
  });
}

function expectLimited(res: JsonResponse, maxRetryAfter: number): number {
  expectError(res, 429, 'RATE_LIMITED');
  const retryAfter = res.headers.get('retry-after');
  expect(retryAfter).to.match(/^[1-9]\d*$/);
  expect(Number(retryAfter)).to.be.within(1, maxRetryAfter);
  return Number(retryAfter);
}

/** Lets the minute of `ip`'s failed logins (any usernames) run out without waiting for it: its counter goes. */
async function minutePasses(server: RunningServer, ip: string): Promise<void> {
  await server.services.db.knex('auth_rate_limits').where('key', `login_ip_minute:${ip}`).delete();
}

/** An account made over REST (so it has a real password), from an IP of its own. */
async function account(server: RunningServer, prefix = 'lim'): Promise<string> {
  const username = uniqueUsername(prefix);
  expect((await post(server, '/auth/signup', freshIp(), { username, password: PASSWORD })).status).to.equal(
    201,
  );
  return username;
}

describe('accounts: abuse limits (RATE_LIMIT_AUTH_PER_MIN = N, counted in PostgreSQL)', function () {
  describe('with the default N = 20', () => {
    const { server } = useNode({ env: { RATE_LIMIT_AUTH_PER_MIN: '20', TRUST_PROXY_HOPS: '1' } });

    it('20 failed logins from IP A lock A out for that username; the right password from IP B still logs in', async () => {
      const victim = await account(server);
      const attacker = freshIp();
      for (let i = 0; i < 20; i++) {
        const res = await post(server, '/auth/login', attacker, { username: victim, password: WRONG });
        expect(res.status, `attempt ${i + 1}`).to.equal(401);
      }
      expectLimited(await post(server, '/auth/login', attacker, { username: victim, password: WRONG }), 60);
      // Locked out is locked out: even the right password from A waits.
      expectLimited(
        await post(server, '/auth/login', attacker, { username: victim, password: PASSWORD }),
        60,
      );
      // The owner, elsewhere, is not affected.
      const owner = await post(server, '/auth/login', freshIp(), { username: victim, password: PASSWORD });
      expect(owner.status).to.equal(200);
      // A also spent its address's N failures of the minute: a username new there waits for the minute too.
      const other = await account(server);
      expectLimited(await post(server, '/auth/login', attacker, { username: other, password: PASSWORD }), 60);
      // Once the minute is over, A is only locked out of that username.
      await minutePasses(server, attacker);
      expect(
        (await post(server, '/auth/login', attacker, { username: other, password: PASSWORD })).status,
      ).to.equal(200);
    });
  });

  describe('with N = 3 and one password check at a time, none waiting', () => {
    const N = 3;
    const { server } = useNode({
      env: { RATE_LIMIT_AUTH_PER_MIN: String(N), TRUST_PROXY_HOPS: '1' },
      passwordChecks: { running: 1, waiting: 0 },
    });

    /**
     * A stored hash that takes seconds to check (argon2id with 120 passes; its salt and digest are made up, so
     * nothing matches it): a login of its user holds the node's one place of password checks that long.
     */
    const SLOW_HASH = `$argon2id$v=19$m=19456,t=120,p=1$${randomBytes(16).toString('base64').replace(/=+$/, '')}$${randomBytes(32).toString('base64').replace(/=+$/, '')}`;

    /**
     * Runs `attempt` (a password check that would succeed) N + 1 times while a slow check holds the node's one
     * place, expecting each to be refused `503 OVERLOADED` unchecked.
     */
    async function refusedNPlusOneTimes(attempt: () => Promise<JsonResponse>): Promise<void> {
      const slow = await account(server, 'slow');
      await server.services.db.knex('users').where({ username: slow }).update({ password_hash: SLOW_HASH });
      const holdThePlace = () => post(server, '/auth/login', freshIp(), { username: slow, password: WRONG });
      let holder = holdThePlace();
      // A probe (an unknown user, from an address of its own) refused means the holder has the place; a probe
      // that got it first may have turned the holder away, which then tries again.
      for (;;) {
        const probe = await post(server, '/auth/login', freshIp(), {
          username: uniqueUsername('nobody'),
          password: WRONG,
        });
        if (probe.status === 503) break;
        expect(probe.status).to.equal(401);
        const settled = await Promise.race([holder, Promise.resolve(undefined)]);
        if (settled !== undefined) {
          expectError(settled, 503, 'OVERLOADED');
          holder = holdThePlace();
        }
      }
      for (let i = 0; i < N + 1; i++) {
        const res = await attempt();
        expectError(res, 503, 'OVERLOADED');
        expect(res.headers.get('retry-after')).to.equal('1');
      }
      expect((await holder).status).to.equal(401);
    }

    it('gives back the attempts of logins refused OVERLOADED (never checked): a client retrying while the password checks are full is not locked out', async () => {
      const victim = await account(server);
      const ip = freshIp();
      const login = () => post(server, '/auth/login', ip, { username: victim, password: PASSWORD });
      await refusedNPlusOneTimes(login);
      // With the flood over, the victim logs in from the same address: the refused attempts did not count.
      const res = await login();
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
    });

    it('likewise for a password change refused OVERLOADED', async () => {
      const username = await account(server);
      const ip = freshIp();
      const { token } = (await post(server, '/auth/login', ip, { username, password: PASSWORD })).body;
      // The same password as the new one: a change that gets through leaves the account as it was.
      const change = () =>
        request(server.url, 'POST', '/auth/password', {
          token,
          body: { currentPassword: PASSWORD, newPassword: PASSWORD },
          headers: { 'x-forwarded-for': ip },
        });
      await refusedNPlusOneTimes(change);
      const res = await change();
      expect(res.status, JSON.stringify(res.body)).to.equal(204);
    });
  });

  describe('with N = 3 and a 500 ms statement timeout', () => {
    const N = 3;
    const { server } = useNode({
      env: { RATE_LIMIT_AUTH_PER_MIN: String(N), TRUST_PROXY_HOPS: '1', DB_STATEMENT_TIMEOUT_MS: '500' },
    });

    it('does not count a login that failed in the database before its password check among the right passwords', async () => {
      const username = uniqueUsername('dberr');
      expect(
        (await post(server, '/auth/signup', freshIp(), { username, password: PASSWORD })).status,
      ).to.equal(201);
      const ip = freshIp();
      for (let i = 0; i < N - 1; i++) {
        expect((await post(server, '/auth/login', ip, { username, password: PASSWORD })).status).to.equal(
          200,
        );
      }
      // The user's lookup times out while the table is locked (the limits' counters are another table).
      const { knex } = server.services.db;
      const trx = await knex.transaction();
      let failed;
      try {
        await trx.raw('LOCK TABLE users IN ACCESS EXCLUSIVE MODE');
        failed = await post(server, '/auth/login', ip, { username, password: PASSWORD });
      } finally {
        await trx.rollback();
      }
      expect(failed.status, JSON.stringify(failed.body)).to.equal(503);
      const row = await knex('auth_rate_limits')
        .where('key', `login_pair_ok:${username.toLowerCase()}|${ip}`)
        .first<{ points: number } | undefined>('points');
      expect(row?.points, 'right passwords counted').to.equal(N - 1);
      expect((await post(server, '/auth/login', ip, { username, password: PASSWORD })).status).to.equal(200);
    });
  });

  describe('a signup whose address cannot be remembered', () => {
    const { server } = useNode({ env: { RATE_LIMIT_AUTH_PER_MIN: '20', TRUST_PROXY_HOPS: '1' } });

    it('still succeeds: the account exists, and a retry would find its name taken', async () => {
      const { knex } = server.services.db;
      // Every write of a known pair fails from here on; the signup's own counter still works.
      await knex.raw(`CREATE FUNCTION refuse_known_pairs() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.key LIKE 'login_known_pair%' THEN RAISE EXCEPTION 'known pairs refused'; END IF;
          RETURN NEW;
        END $$`);
      await knex.raw(`CREATE TRIGGER refuse_known_pairs BEFORE INSERT OR UPDATE ON auth_rate_limits
        FOR EACH ROW EXECUTE FUNCTION refuse_known_pairs()`);
      try {
        const username = uniqueUsername('lim');
        const res = await post(server, '/auth/signup', freshIp(), { username, password: PASSWORD });
        expect(res.status, res.text).to.equal(201);
        // It was tried, and refused.
        const known = await knex('auth_rate_limits').where('key', 'like', `%${username}%`).count({ n: '*' });
        expect(Number(known[0]!.n)).to.equal(0);
      } finally {
        await knex.raw('DROP TRIGGER refuse_known_pairs ON auth_rate_limits');
        await knex.raw('DROP FUNCTION refuse_known_pairs()');
      }
    });
  });

  describe('with N = 3', () => {
    const N = 3;
    const { a, b } = useTwoNodes({ env: { RATE_LIMIT_AUTH_PER_MIN: String(N), TRUST_PROXY_HOPS: '1' } });

    it('limits signups per IP: N per minute, with Retry-After; another IP is unaffected', async () => {
      const ip = freshIp();
      for (let i = 0; i < N; i++) {
        expect(
          (await post(a, '/auth/signup', ip, { username: uniqueUsername(), password: PASSWORD })).status,
        ).to.equal(201);
      }
      const username = uniqueUsername();
      expectLimited(await post(b, '/auth/signup', ip, { username, password: PASSWORD }), 60);
      expect(await a.services.db.knex('users').where({ username }).first()).to.equal(undefined);
      expect((await post(a, '/auth/signup', freshIp(), { username, password: PASSWORD })).status).to.equal(
        201,
      );
    });

    it('holds across two nodes: failures on A and B add up', async () => {
      const victim = await account(a);
      const ip = freshIp();
      for (const node of [a, b, a]) {
        expect((await post(node, '/auth/login', ip, { username: victim, password: WRONG })).status).to.equal(
          401,
        );
      }
      expectLimited(
        await post(b, '/auth/login', ip, { username: victim.toUpperCase(), password: WRONG }),
        60,
      );
      expectLimited(await post(a, '/auth/login', ip, { username: victim, password: PASSWORD }), 60);
    });

    it('locks a pair out for longer each time it runs over again (growing delays)', async () => {
      const victim = await account(a);
      const ip = freshIp();
      const knex = a.services.db.knex;
      const lockouts: number[] = [];
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < N; i++) {
          expect((await post(a, '/auth/login', ip, { username: victim, password: WRONG })).status).to.equal(
            401,
          );
        }
        lockouts.push(
          expectLimited(await post(b, '/auth/login', ip, { username: victim, password: WRONG }), 3600),
        );
        // Let the lockout run out without waiting for it: its counter expires now, and so does the minute of
        // the address's failures.
        await knex('auth_rate_limits')
          .whereIn('key', [`login_pair:${victim.toLowerCase()}|${ip}`, `login_ip_minute:${ip}`])
          .update({ expire: Date.now() - 1 });
      }
      expect(lockouts).to.deep.equal([60, 120, 240]);
      // A success clears the pair's history.
      expect((await post(a, '/auth/login', ip, { username: victim, password: PASSWORD })).status).to.equal(
        200,
      );
      for (let i = 0; i < N; i++) {
        expect((await post(a, '/auth/login', ip, { username: victim, password: WRONG })).status).to.equal(
          401,
        );
      }
      expect(
        expectLimited(await post(a, '/auth/login', ip, { username: victim, password: WRONG }), 60),
      ).to.equal(60);
    });

    it('the per-username ceiling (10N per hour from all IPs) stops a distributed guesser, not the owner where it signed in before', async () => {
      const victim = await account(a);
      const ownersPlace = freshIp();
      // Each IP stays under its own pair limit; together they reach the ceiling.
      for (let ip = 0; ip < 10; ip++) {
        const address = freshIp();
        for (let i = 0; i < N; i++) {
          const node = (ip + i) % 2 === 0 ? a : b;
          expect(
            (await post(node, '/auth/login', address, { username: victim, password: WRONG })).status,
          ).to.equal(401);
        }
        if (ip === 8) {
          // Just below the ceiling the owner still gets in from a new place, and that costs the ceiling nothing.
          expect(
            (await post(b, '/auth/login', ownersPlace, { username: victim, password: PASSWORD })).status,
          ).to.equal(200);
        }
      }
      expectLimited(await post(a, '/auth/login', freshIp(), { username: victim, password: PASSWORD }), 3600);
      expectLimited(await post(b, '/auth/login', freshIp(), { username: victim, password: WRONG }), 3600);
      // Where the owner signed in before, the guessers' failures elsewhere do not hold it: its own pair's limits do.
      expect(
        (await post(a, '/auth/login', ownersPlace, { username: victim, password: PASSWORD })).status,
      ).to.equal(200);
      // Other accounts are not affected.
      const other = await account(a);
      expect(
        (await post(b, '/auth/login', freshIp(), { username: other, password: PASSWORD })).status,
      ).to.equal(200);
    });

    it('counts an IPv6 client by its /64, and an IPv4 address written as IPv6 as itself', async () => {
      const victim = await account(a);
      for (let i = 1; i <= N; i++) {
        const address = `2001:db8:77:${nextIp}::${i.toString(16)}`;
        expect(
          (await post(a, '/auth/login', address, { username: victim, password: WRONG })).status,
        ).to.equal(401);
      }
      // Another address of the same /64 is the same client: its pair is locked out.
      expectLimited(
        await post(b, '/auth/login', `2001:db8:77:${nextIp}:ffff::1`, { username: victim, password: WRONG }),
        60,
      );
      // Another /64 is another client.
      expect(
        (await post(b, '/auth/login', `2001:db8:77:${nextIp + 1}::1`, { username: victim, password: WRONG }))
          .status,
      ).to.equal(401);
      nextIp += 2;
      const ipv4 = freshIp();
      for (let i = 0; i < N; i++)
        expect((await post(a, '/auth/login', ipv4, { username: victim, password: WRONG })).status).to.equal(
          401,
        );
      expectLimited(
        await post(b, '/auth/login', `::ffff:${ipv4}`, { username: victim, password: WRONG }),
        60,
      );
    });

    it('one IP spreading its failures below the lockout (N a minute) stops at 5N an hour, under the username ceiling', async () => {
      const victim = await account(a);
      const attacker = freshIp();
      const minuteCounter = `login_pair:${victim.toLowerCase()}|${attacker}`;
      for (let minute = 0; minute < 5; minute++) {
        for (let i = 0; i < N; i++) {
          const res = await post(i % 2 ? a : b, '/auth/login', attacker, {
            username: victim,
            password: WRONG,
          });
          expect(res.status, `minute ${minute}, attempt ${i + 1}`).to.equal(401);
        }
        // The minute passes without a lockout: its counters end (the pair's and the address's), the hour's go on.
        expect(await a.services.db.knex('auth_rate_limits').where('key', minuteCounter).delete()).to.equal(1);
        await minutePasses(a, attacker);
      }
      expectLimited(await post(a, '/auth/login', attacker, { username: victim, password: WRONG }), 3600);
      // 5N failures reached the username's counter, half its ceiling: the owner and others still get through.
      expect(
        (await post(b, '/auth/login', freshIp(), { username: victim, password: PASSWORD })).status,
      ).to.equal(200);
      expect(
        (await post(a, '/auth/login', freshIp(), { username: victim, password: WRONG })).status,
      ).to.equal(401);
    });

    it('lets people who signed in from a shared address before log in there after another client spent its failures', async () => {
      const office = freshIp();
      const regular = await account(a, 'nat');
      expect(
        (await post(a, '/auth/login', office, { username: regular, password: PASSWORD })).status,
      ).to.equal(200);
      // One client at the office sprays failures over many usernames, minute after minute (N each): the
      // address's 10N an hour.
      for (let i = 0; i < 10 * N; i++) {
        const res = await post(b, '/auth/login', office, { username: uniqueUsername(), password: WRONG });
        expect(res.status, `attempt ${i + 1}`).to.equal(401);
        if ((i + 1) % N === 0) await minutePasses(a, office);
      }
      expect(
        expectLimited(
          await post(a, '/auth/login', office, { username: uniqueUsername(), password: WRONG }),
          3600,
        ),
      ).to.be.greaterThan(60);
      // Who signed in from there before (on node a) still does, on node b too, and still has the pair's limits.
      expect(
        (await post(b, '/auth/login', office, { username: regular, password: PASSWORD })).status,
      ).to.equal(200);
      for (let i = 0; i < N; i++) {
        expect(
          (await post(a, '/auth/login', office, { username: regular, password: WRONG })).status,
        ).to.equal(401);
      }
      expectLimited(await post(a, '/auth/login', office, { username: regular, password: PASSWORD }), 60);
      // Someone who never signed in from there waits for the hour.
      const newcomer = await account(a, 'nat');
      expect(
        expectLimited(await post(b, '/auth/login', office, { username: newcomer, password: PASSWORD }), 3600),
      ).to.be.greaterThan(60);
      // Who signed up from there counts as having signed in there.
      const signedUpThere = uniqueUsername('nat');
      expect(
        (await post(a, '/auth/signup', office, { username: signedUpThere, password: PASSWORD })).status,
      ).to.equal(201);
      expect(
        (await post(b, '/auth/login', office, { username: signedUpThere, password: PASSWORD })).status,
      ).to.equal(200);
    });

    it('caps failed logins per IP across usernames (N a minute, 10N an hour), but not successful ones (a shared NAT)', async () => {
      const stuffer = freshIp();
      for (let i = 0; i < 10 * N; i++) {
        const res = await post(a, '/auth/login', stuffer, { username: uniqueUsername(), password: WRONG });
        expect(res.status, `attempt ${i + 1}`).to.equal(401);
        if ((i + 1) % N === 0) await minutePasses(a, stuffer);
      }
      const known = await account(a);
      expect(
        expectLimited(await post(b, '/auth/login', stuffer, { username: known, password: PASSWORD }), 3600),
      ).to.be.greaterThan(60);
      expect(
        (await post(b, '/auth/login', freshIp(), { username: known, password: PASSWORD })).status,
      ).to.equal(200);

      // Behind one NAT address, many people logging in successfully are never refused: 12 people N times each,
      // more than the address's N failures a minute and 10N an hour.
      const office = freshIp();
      const people = await Promise.all(Array.from({ length: 12 }, () => account(a, 'nat')));
      for (let round = 0; round < N; round++) {
        for (const username of people) {
          const res = await post(round % 2 === 0 ? a : b, '/auth/login', office, {
            username,
            password: PASSWORD,
          });
          expect(res.status, `${username} round ${round}`).to.equal(200);
        }
      }
    });

    it('gives one IP N failed logins a minute over any usernames, on any node, then waits for the minute; usernames known there do not', async () => {
      const ip = freshIp();
      const regular = await account(a, 'nat');
      expect((await post(a, '/auth/login', ip, { username: regular, password: PASSWORD })).status).to.equal(
        200,
      );
      for (let i = 0; i < N; i++) {
        const res = await post(i % 2 ? a : b, '/auth/login', ip, {
          username: uniqueUsername('stuff'),
          password: WRONG,
        });
        expect(res.status, `attempt ${i + 1}`).to.equal(401);
      }
      expectLimited(
        await post(a, '/auth/login', ip, { username: uniqueUsername('stuff'), password: WRONG }),
        60,
      );
      // Refused before its password is checked, even a right one of a username new there.
      const newcomer = await account(a);
      expectLimited(await post(b, '/auth/login', ip, { username: newcomer, password: PASSWORD }), 60);
      // A username that signed in there before is not held to the address's limits (a NAT), nor is another
      // address.
      expect((await post(b, '/auth/login', ip, { username: regular, password: PASSWORD })).status).to.equal(
        200,
      );
      expect(
        (await post(a, '/auth/login', freshIp(), { username: newcomer, password: PASSWORD })).status,
      ).to.equal(200);
      // The next minute, the address may fail again.
      await minutePasses(a, ip);
      expect(
        (await post(b, '/auth/login', ip, { username: uniqueUsername('stuff'), password: WRONG })).status,
      ).to.equal(401);
    });

    it('allows N right passwords a minute per username and IP, on any node, then refuses before checking', async () => {
      const username = await account(a);
      const ip = freshIp();
      for (let i = 0; i < N; i++) {
        const node = i % 2 === 0 ? a : b;
        const res = await post(node, '/auth/login', ip, { username, password: PASSWORD });
        expect(res.status, `login ${i + 1}`).to.equal(200);
      }
      expectLimited(await post(b, '/auth/login', ip, { username, password: PASSWORD }), 60);
      // Other addresses, and other usernames from this one, are not held.
      expect((await post(a, '/auth/login', freshIp(), { username, password: PASSWORD })).status).to.equal(
        200,
      );
      const other = await account(a);
      expect((await post(a, '/auth/login', ip, { username: other, password: PASSWORD })).status).to.equal(
        200,
      );
    });

    it('counts right passwords before checking them: N + 1 logins at once over both nodes after N - 1 let one more through', async () => {
      const username = await account(a);
      const ip = freshIp();
      for (let i = 0; i < N - 1; i++) {
        expect((await post(a, '/auth/login', ip, { username, password: PASSWORD })).status).to.equal(200);
      }
      // Checks in flight at once all saw the count before any of them ended, and each was let through.
      const burst = await Promise.all(
        Array.from({ length: N + 1 }, (_, i) =>
          post(i % 2 === 0 ? a : b, '/auth/login', ip, { username, password: PASSWORD }),
        ),
      );
      const statuses = burst.map((res) => res.status);
      expect(
        statuses.filter((status) => status === 200),
        JSON.stringify(statuses),
      ).to.have.length(1);
      for (const res of burst.filter((r) => r.status !== 200)) expectLimited(res, 60);
      expectLimited(await post(b, '/auth/login', ip, { username, password: PASSWORD }), 60);
    });

    it('does not count wrong passwords, nor refused logins, among the right ones', async () => {
      const username = await account(a);
      const ip = freshIp();
      // N - 1 failures at once: each took a point of the right passwords before its check, and gives it back.
      const wrong = await Promise.all(
        Array.from({ length: N - 1 }, (_, i) =>
          post(i % 2 === 0 ? a : b, '/auth/login', ip, { username, password: WRONG }),
        ),
      );
      for (const res of wrong) expectError(res, 401, 'INVALID_CREDENTIALS');
      for (let i = 0; i < N; i++) {
        const res = await post(i % 2 === 0 ? b : a, '/auth/login', ip, { username, password: PASSWORD });
        expect(res.status, `login ${i + 1}`).to.equal(200);
      }
      // Refused logins past the N leave the count where it was: N, not more.
      for (let i = 0; i < 2; i++) {
        expectLimited(await post(a, '/auth/login', ip, { username, password: PASSWORD }), 60);
      }
      const row = await a.services.db
        .knex('auth_rate_limits')
        .where('key', `login_pair_ok:${username.toLowerCase()}|${ip}`)
        .first<{ points: number } | undefined>('points');
      expect(row?.points).to.equal(N);
    });

    it('never gives a counter a point below zero: a reward on a missing or ended window leaves the limit as it was', async () => {
      const { knex } = a.services.db;
      const counter = clusterLimiter(knex, { keyPrefix: 'test_reward', points: 2, durationSeconds: 60 });
      const expectLimit = async (key: string) => {
        await counter.consume(key);
        await counter.consume(key);
        let refused: unknown;
        await counter.consume(key).catch((err: unknown) => (refused = err));
        expect(refused, `the third point of ${key}`).to.be.instanceOf(LimitReached);
      };
      // A key with no row (a pair a concurrent success deleted, say).
      const missing = `missing-${freshIp()}`;
      expect((await counter.reward(missing)).consumedPoints).to.equal(0);
      await expectLimit(missing);
      // A key whose window ended.
      const ended = `ended-${freshIp()}`;
      await knex('auth_rate_limits').insert({
        key: `test_reward:${ended}`,
        points: 2,
        expire: Date.now() - 1000,
      });
      await counter.reward(ended);
      await expectLimit(ended);
      // In a live window it gives the point back, but no further than zero.
      const live = `live-${freshIp()}`;
      await counter.consume(live);
      expect((await counter.reward(live, 3)).consumedPoints).to.equal(0);
      await expectLimit(live);
    });

    it("gives a point back to its own window only: a check that ends after its minute leaves the next minute's limits whole", async () => {
      const { knex } = a.services.db;
      const { limits } = a.services.auth;
      const ip = freshIp();
      /** Ends the current windows of `keys`, by PostgreSQL's clock (as a minute passing would). */
      const windowsEnd = (keys: string[]) =>
        knex.raw(
          `UPDATE auth_rate_limits SET expire = (extract(epoch FROM clock_timestamp()) * 1000)::bigint - 1000
            WHERE key = ANY(?)`,
          [keys],
        );

      // A wrong password whose check outlives its minute.
      const username = await account(a);
      const pair = `${username.toLowerCase()}|${ip}`;
      const slowWrong = await limits.takePasswordAttempt(username, ip);
      await windowsEnd([`login_pair_ok:${pair}`]);
      for (let i = 0; i < N; i++) {
        const res = await post(i % 2 === 0 ? a : b, '/auth/login', ip, { username, password: PASSWORD });
        expect(res.status, `login ${i + 1}`).to.equal(200);
      }
      await limits.passwordRejected(slowWrong);
      // The new minute counted N right passwords: the old minute's point does not come off it.
      expectLimited(await post(b, '/auth/login', ip, { username, password: PASSWORD }), 60);

      // A right password whose check outlives the address's minute of failures.
      const other = await account(a);
      const slowRight = await limits.takePasswordAttempt(other, ip);
      await windowsEnd([`login_ip_minute:${ip}`]);
      for (let i = 0; i < N; i++) {
        const res = await post(i % 2 === 0 ? a : b, '/auth/login', ip, {
          username: uniqueUsername('stuff'),
          password: WRONG,
        });
        expectError(res, 401, 'INVALID_CREDENTIALS');
      }
      const [owner] = await a.services.db
        .knex('users')
        .whereRaw('lower(username) = lower(?)', [other])
        .select<Array<{ id: string }>>('id');
      await limits.passwordAccepted(slowRight, owner!.id);
      // The new minute holds N failures: the success gives back no point of it.
      expectLimited(
        await post(a, '/auth/login', ip, { username: uniqueUsername('stuff'), password: WRONG }),
        60,
      );
    });

    it('refuses an address N refused made-up refreshes a minute on a node, before any query; real tokens refresh there', async () => {
      // Shaped as a token (its last character as the server writes it), without the mark.
      const madeUp = () => `${'x'.repeat(41)}${nextIp % 10}A`;
      const ip = freshIp();
      // Not even shaped like a token: refused without a query, and counted for nothing.
      for (let i = 0; i < N + 2; i++) {
        expectError(await post(a, '/auth/refresh', ip, { refreshToken: 'junk' }), 401, 'UNAUTHORIZED');
      }
      for (let i = 0; i < N; i++) {
        expectError(await post(a, '/auth/refresh', ip, { refreshToken: madeUp() }), 401, 'UNAUTHORIZED');
      }
      expectLimited(await post(a, '/auth/refresh', ip, { refreshToken: madeUp() }), 60);
      // A token this cluster issued is never refused for its address: users behind that NAT address refresh.
      const username = await account(a);
      const login = await post(a, '/auth/login', freshIp(), { username, password: PASSWORD });
      const refreshed = await post(a, '/auth/refresh', ip, { refreshToken: login.body.refreshToken });
      expect(refreshed.status).to.equal(200);
      expect((await post(a, '/auth/refresh', freshIp(), { refreshToken: madeUp() })).status).to.equal(401);
    });

    it('counts made-up refreshes sent at once as they are sent: N reach the database, the rest are refused before it', async () => {
      const ip = freshIp();
      const answers = await Promise.all(
        Array.from({ length: 8 * N }, (_, i) =>
          post(a, '/auth/refresh', ip, { refreshToken: `${'y'.repeat(39)}${String(i).padStart(3, '0')}A` }),
        ),
      );
      const codes = answers.map((r) => (r.body as { error?: { code: string } }).error?.code);
      expect(codes.filter((c) => c === 'UNAUTHORIZED')).to.have.length(N);
      expect(codes.filter((c) => c === 'RATE_LIMITED')).to.have.length(7 * N);
    });

    it('refuses a real token sent again and again after N refusals, and only that token', async () => {
      const username = await account(a);
      const ip = freshIp();
      const login = await post(a, '/auth/login', ip, { username, password: PASSWORD });
      const spent = login.body.refreshToken;
      const next = await post(a, '/auth/refresh', ip, { refreshToken: spent });
      expect(next.status).to.equal(200);
      // Its reuse ends the session; each later try is refused too, and counted against that token.
      for (let i = 0; i < N; i++) {
        expectError(await post(a, '/auth/refresh', ip, { refreshToken: spent }), 401, 'UNAUTHORIZED');
      }
      expectLimited(await post(a, '/auth/refresh', ip, { refreshToken: spent }), 60);
      // The same address refreshes another session's token.
      const other = await post(a, '/auth/login', ip, { username, password: PASSWORD });
      expect((await post(a, '/auth/refresh', ip, { refreshToken: other.body.refreshToken })).status).to.equal(
        200,
      );
    });

    it("holds a session's successful refreshes to N a minute on each node, bursts of 3N (each stores a row); a reuse still ends it at once", async () => {
      const username = await account(a);
      const ip = freshIp();
      const login = await post(a, '/auth/login', ip, { username, password: PASSWORD });
      const first = login.body.refreshToken;
      let current = first;
      for (let i = 0; i < 3 * N; i++) {
        const res = await post(a, '/auth/refresh', ip, { refreshToken: current });
        expect(res.status, res.text).to.equal(200);
        current = (res.body as AuthTokens).refreshToken;
      }
      // Refused before the rotation: the token is still unused, and works where the session has budget left.
      expectLimited(await post(a, '/auth/refresh', ip, { refreshToken: current }), 60 / N);
      const stored = await a.services.db
        .knex('refresh_tokens')
        .join('sessions', 'sessions.id', 'refresh_tokens.session_id')
        .where('sessions.user_id', login.body.user.id)
        .count<Array<{ n: string }>>({ n: '*' });
      expect(
        Number(stored[0]!.n),
        "the user's token rows: the signup's, the login's and 3N refreshes",
      ).to.equal(3 * N + 2);
      // Another session of the same user, and the same session on the other node, are not held by it.
      const other = await post(a, '/auth/login', ip, { username, password: PASSWORD });
      expect((await post(a, '/auth/refresh', ip, { refreshToken: other.body.refreshToken })).status).to.equal(
        200,
      );
      const onB = await post(b, '/auth/refresh', ip, { refreshToken: current });
      expect(onB.status, onB.text).to.equal(200);
      // A spent token is not held by the budget: its reuse ends the session on the node that spent its budget.
      expectError(await post(a, '/auth/refresh', ip, { refreshToken: first }), 401, 'UNAUTHORIZED');
      const after = await post(b, '/auth/refresh', ip, {
        refreshToken: (onB.body as AuthTokens).refreshToken,
      });
      expectError(after, 401, 'UNAUTHORIZED');
    });

    it('counts a wrong current password (password change) like a failed login', async () => {
      const username = await account(a);
      const ip = freshIp();
      const login = await post(a, '/auth/login', ip, { username, password: PASSWORD });
      const change = (currentPassword: string) =>
        request(b.url, 'POST', '/auth/password', {
          token: login.body.token,
          body: { currentPassword, newPassword: 'brand new password' },
          headers: { 'x-forwarded-for': ip },
        });
      for (let i = 0; i < N; i++) expect((await change(WRONG)).status).to.equal(401);
      expectLimited(await change(PASSWORD), 60);
      // The owner's other device, elsewhere, can.
      const other = await post(a, '/auth/login', freshIp(), { username, password: PASSWORD });
      const fromElsewhere = await request(b.url, 'POST', '/auth/password', {
        token: other.body.token,
        body: { currentPassword: PASSWORD, newPassword: 'brand new password' },
        headers: { 'x-forwarded-for': freshIp() },
      });
      expect(fromElsewhere.status).to.equal(204);
    });

    it('does not limit other routes, and keeps its counters in the table the migration made', async () => {
      const ip = freshIp();
      for (let i = 0; i < N + 2; i++) {
        const res = await request(a.url, 'GET', '/healthz', { headers: { 'x-forwarded-for': ip } });
        expect(res.status).to.equal(200);
      }
      const counters = await a.services.db.knex('auth_rate_limits').count({ n: '*' });
      expect(Number(counters[0]!.n)).to.be.greaterThan(0);
    });

    it('does not count logins the address refused (never checked) as the pair’s failures', async () => {
      // A newcomer behind a NAT whose other client spent the address's minute: refused, and each refusal took a
      // failure point of the newcomer's own pair, so that N + 1 of them locked the newcomer out past the minute.
      const office = freshIp();
      const newcomer = await account(a);
      for (let i = 0; i < N; i++) {
        const res = await post(a, '/auth/login', office, { username: uniqueUsername('x'), password: WRONG });
        expectError(res, 401, 'INVALID_CREDENTIALS');
      }
      for (let i = 0; i < N + 2; i++) {
        expectLimited(await post(a, '/auth/login', office, { username: newcomer, password: PASSWORD }), 60);
      }
      await minutePasses(a, office);
      const res = await post(b, '/auth/login', office, { username: newcomer, password: PASSWORD });
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
    });

    it('does not count logins the username refused (never checked) as the address’s failures', async () => {
      // A guesser spread over ten addresses spends the victim's username ceiling; the victim, new at an office,
      // retries its right password there, refused by the username's counter: those refusals took the office's
      // points, and turned its other newcomers away.
      const victim = await account(a);
      for (let i = 0; i < 10; i++) {
        const address = freshIp();
        for (let j = 0; j < N; j++) {
          const res = await post(a, '/auth/login', address, { username: victim, password: WRONG });
          expectError(res, 401, 'INVALID_CREDENTIALS');
        }
      }
      const office = freshIp();
      for (let i = 0; i < N; i++) {
        expectLimited(await post(a, '/auth/login', office, { username: victim, password: PASSWORD }), 3600);
      }
      const colleague = await account(a);
      const res = await post(b, '/auth/login', office, { username: colleague, password: PASSWORD });
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
    });
  });
});

describe('accounts: a forwarded address that is no address (TRUST_PROXY_HOPS one too many)', function () {
  const { server } = useNode({ env: { TRUST_PROXY_HOPS: '1', RATE_LIMIT_AUTH_PER_MIN: '20' } });

  it('counts a long X-Forwarded-For entry by a digest: signup and login answer, never 500', async () => {
    // Its key did not fit the limits' column (varchar 255): PostgreSQL refused it and both answered 500 INTERNAL.
    const username = uniqueUsername('xff');
    const forwardedFor = { 'x-forwarded-for': 'a'.repeat(300) };
    const signup = await request(server.url, 'POST', '/auth/signup', {
      body: { username, password: 'correct horse battery' },
      headers: forwardedFor,
    });
    expect(signup.status, JSON.stringify(signup.body)).to.equal(201);
    const login = await request(server.url, 'POST', '/auth/login', {
      body: { username, password: 'correct horse battery' },
      headers: forwardedFor,
    });
    expect(login.status, JSON.stringify(login.body)).to.equal(200);
    const wrong = await request(server.url, 'POST', '/auth/login', {
      body: { username, password: 'not the password' },
      headers: forwardedFor,
    });
    expectError(wrong, 401, 'INVALID_CREDENTIALS');
  });
});
