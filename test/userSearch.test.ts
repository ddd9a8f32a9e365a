import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import pg from 'pg';
import type { PublicUser } from '../lib/protocol/index.js';
import { searchUsersByPrefix } from '../lib/social/relations.js';
import { expectError } from './helpers/errors.js';
import { request } from './helpers/http.js';
import { useNode } from './helpers/nodes.js';
import { captureQueries } from './helpers/queries.js';
import { insertUser, type TestUser } from './helpers/users.js';

interface Body {
  users: PublicUser[];
  user: PublicUser;
}

describe('GET /users?q= (prefix search)', function () {
  const node = useNode();
  const { server } = node;

  const knex = () => server.services.db.knex;
  const newUser = (username: string) => insertUser(knex(), server.services.config, username);
  const search = (user: TestUser, query: string) =>
    request<Body>(server.url, 'GET', `/users?${query}`, { token: user.token });
  const names = (body: Body) => body.users.map((u) => u.username);
  /** A prefix no other test's users share. */
  const freshPrefix = () => `p${randomBytes(3).toString('hex')}`;

  it('finds users whose username starts with the prefix, case-insensitively, in username order, never me', async () => {
    const p = freshPrefix();
    const me = await newUser(`${p}_me`);
    await newUser(`${p}Carol`);
    await newUser(`${p}alice`);
    await newUser(`${p}Bob`);
    await newUser(`x${p}`); // contains the prefix, does not start with it
    const res = await search(me, `q=${p.toUpperCase()}`);
    expect(res.status).to.equal(200);
    expect(names(res.body)).to.deep.equal([`${p}alice`, `${p}Bob`, `${p}Carol`]);
    expect(Object.keys(res.body.users[0]!).sort()).to.deep.equal([
      'createdAt',
      'displayName',
      'id',
      'username',
    ]);
    // A full username is a prefix too.
    expect(names((await search(me, `q=${p}bob`)).body)).to.deep.equal([`${p}Bob`]);
    expect((await search(me, `q=${p}zzz`)).body.users).to.deep.equal([]);
  });

  it('takes _ literally, not as a LIKE wildcard', async () => {
    const p = freshPrefix();
    const me = await newUser(`${p}me`);
    await newUser(`${p}_x1`);
    await newUser(`${p}ax1`);
    expect(names((await search(me, `q=${p}_`)).body)).to.deep.equal([`${p}_x1`]);
    expect(names((await search(me, `q=${p}.`)).body)).to.deep.equal([]);
  });

  it('leaves out users I blocked and users who blocked me; lifting the block brings them back', async () => {
    const p = freshPrefix();
    const me = await newUser(`${p}_me`);
    const blockedByMe = await newUser(`${p}_blocked`);
    const blocker = await newUser(`${p}_blocker`);
    await newUser(`${p}_other`);
    const call = (user: TestUser, method: string, path: string, body?: unknown) =>
      request(server.url, method, path, { token: user.token, body });
    expect((await call(me, 'POST', '/blocks', { userId: blockedByMe.id })).status).to.equal(204);
    expect((await call(blocker, 'POST', '/blocks', { userId: me.id })).status).to.equal(204);
    expect(names((await search(me, `q=${p}`)).body)).to.deep.equal([`${p}_other`]);
    // The blocked user does not find me either.
    expect(names((await search(blockedByMe, `q=${p}_m`)).body)).to.deep.equal([]);
    expect((await call(me, 'DELETE', `/blocks/${blockedByMe.id}`)).status).to.equal(204);
    expect(names((await search(me, `q=${p}`)).body)).to.deep.equal([`${p}_blocked`, `${p}_other`]);
  });

  it('answers at most 20 users; limit asks for fewer, a larger limit is clamped', async () => {
    const p = freshPrefix();
    const me = await newUser(`${p}me`);
    const made: string[] = [];
    for (let i = 10; i < 35; i++) made.push((await newUser(`${p}_${i}`)).username);
    expect(names((await search(me, `q=${p}_`)).body)).to.deep.equal(made.slice(0, 20));
    expect(names((await search(me, `q=${p}_&limit=5`)).body)).to.deep.equal(made.slice(0, 5));
    expect(names((await search(me, `q=${p}_&limit=500`)).body)).to.have.length(20);
  });

  it('refuses a bad prefix or limit with VALIDATION_FAILED naming the field, and anonymous callers', async () => {
    const me = await newUser(`${freshPrefix()}me`);
    for (const [query, field] of [
      ['q=', 'q'],
      ['q=a%25', 'q'],
      ['q=a%20b', 'q'],
      [`q=${'a'.repeat(33)}`, 'q'],
      ['q=a&q=b', 'q'],
      ['q=ab&limit=0', 'limit'],
      ['q=ab&limit=x', 'limit'],
    ] as const) {
      const res = await search(me, query);
      expect(expectError(res, 400, 'VALIDATION_FAILED', query).details).to.have.property(field);
    }
    const anonymous = await request<Body>(server.url, 'GET', '/users?q=ab');
    expectError(anonymous, 401, 'UNAUTHORIZED');
  });

  it('keeps ?username= as an exact, case-insensitive lookup', async () => {
    const p = freshPrefix();
    const me = await newUser(`${p}me`);
    const bob = await newUser(`${p}Bob`);
    await newUser(`${p}Bobby`);
    const found = await search(me, `username=${p}BOB`);
    expect(found.status).to.equal(200);
    expect(found.body.user.id).to.equal(bob.id);
    const missing = await search(me, `username=${p}Bo`);
    expectError(missing, 404, 'USER_NOT_FOUND');
  });

  it('reads the prefix range of the username index, in its order, on a big users table', async () => {
    await knex().raw(
      `INSERT INTO users (username, display_name, password_hash)
       SELECT 'seed_' || g, 'seed_' || g, ? FROM generate_series(1, 20000) g`,
      ['not-a-real-hash'],
    );
    await knex().raw('ANALYZE users');
    const me = await newUser(`${freshPrefix()}me`);
    const statements = await captureQueries(knex(), async () => {
      expect(await searchUsersByPrefix(knex(), me.id, 'seed_1', 20)).to.have.length(20);
    });
    expect(statements).to.have.length(1);
    const client = new pg.Client({ connectionString: node.databaseUrl });
    await client.connect();
    try {
      const result = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${statements[0]!.sql}`, [
        ...statements[0]!.bindings,
      ]);
      const plan = result.rows.map((r) => r['QUERY PLAN']).join('\n');
      expect(plan, plan).to.contain('users_username_ascii_unique');
      expect(plan, plan).not.to.match(/Seq Scan on users|Sort/);
    } finally {
      await client.end();
    }
  });

  // The exclusions of blocked users were NOT EXISTS: with statistics that put two blocks on each user, PostgreSQL
  // chose an anti join that read the searcher's whole block list again for each match, and a user who had blocked
  // 5000 accounts waited 1.5 s for each search (SEARCH hunt). Each side's block list is read once now.
  it('reads the block lists of a user with thousands of blocks once a search, not once a match', async () => {
    // The seeded users of the test above, two blocks each, analyzed: a table as autovacuum leaves it.
    await knex().raw(
      `WITH u AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM users WHERE username LIKE 'seed\\_%')
       INSERT INTO blocks (blocker_id, blocked_id)
       SELECT a.id, b.id FROM u a JOIN u b ON b.n = a.n + 1
       UNION ALL SELECT a.id, b.id FROM u a JOIN u b ON b.n = a.n + 2`,
    );
    await knex().raw('ANALYZE blocks');
    // Then one user blocks 5000 of them: too few rows for autovacuum to analyze the table again.
    const me = await newUser(`${freshPrefix()}blocker`);
    await knex().raw(
      `INSERT INTO blocks (blocker_id, blocked_id)
       SELECT ?, id FROM users WHERE username LIKE 'seed\\_1%' ORDER BY username LIMIT 5000`,
      [me.id],
    );
    const statements = await captureQueries(knex(), async () => {
      expect(await searchUsersByPrefix(knex(), me.id, 'seed_1', 20)).to.have.length(20);
    });
    const client = new pg.Client({ connectionString: node.databaseUrl });
    await client.connect();
    try {
      const result = await client.query<{ 'QUERY PLAN': string }>(
        `EXPLAIN (ANALYZE, COSTS OFF) ${statements[0]!.sql}`,
        [...statements[0]!.bindings],
      );
      const plan = result.rows.map((r) => r['QUERY PLAN']).join('\n');
      const removed = [...plan.matchAll(/Rows Removed by (?:Join )?Filter: (\d+)/g)].map((m) => Number(m[1]));
      expect(Math.max(0, ...removed), plan).to.be.below(50_000);
    } finally {
      await client.end();
    }
  });
});
