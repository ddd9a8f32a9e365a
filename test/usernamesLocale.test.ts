import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import type { RunningServer } from '../lib/server.js';
import { request } from './helpers/http.js';
import { adminQuery, urlFor } from './helpers/postgres.js';
import { startTestServer } from './helpers/server.js';
import * as asciiUnique from '../migrations/20261206100000_usernames_folded_as_ascii.js';

/**
 * The contract: usernames (only A-Z a-z 0-9 _ . -) are "unique and matched case-insensitively (signup and login)".
 * The server folds case with PostgreSQL's lower(), which follows the database's default locale: in a database
 * created with a Turkish locale (ICU tr-TR here; glibc's tr_TR.UTF-8 does the same), lower('I') is 'ı' (dotless i),
 * so "IVAN" and "ivan" are two different keys of users_username_lower_unique. Nothing in the docs asks for a
 * particular database locale.
 */
describe('usernames: case folded as ASCII whatever the database locale', function () {
  this.timeout(60_000);
  const name = `xfchat_locale_tr_${randomBytes(4).toString('hex')}`;
  let server: RunningServer;

  before(async () => {
    await adminQuery(
      `CREATE DATABASE "${name}" TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'tr-TR' LOCALE 'C.UTF-8'`,
    );
    server = await startTestServer(urlFor(name));
  });

  after(async () => {
    await server?.close();
    await adminQuery(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  });

  const PASSWORD = 'correct horse battery';
  const tag = () => randomBytes(3).toString('hex');

  it('refuses a second signup of the same name in another case (USERNAME_TAKEN)', async () => {
    const upper = `IVAN_${tag()}`;
    const first = await request(server.url, 'POST', '/auth/signup', {
      body: { username: upper, password: PASSWORD },
    });
    expect(first.status, first.text).to.equal(201);
    const second = await request(server.url, 'POST', '/auth/signup', {
      body: { username: upper.toLowerCase(), password: PASSWORD },
    });
    expect(second.status, `${upper.toLowerCase()} after ${upper}: ${second.text}`).to.equal(409);
    expect((second.body as { error: { code: string } }).error.code).to.equal('USERNAME_TAKEN');
  });

  it('logs in with the name typed in another case', async () => {
    const upper = `LIZ_${tag()}`;
    const created = await request(server.url, 'POST', '/auth/signup', {
      body: { username: upper, password: PASSWORD },
    });
    expect(created.status, created.text).to.equal(201);
    const login = await request(server.url, 'POST', '/auth/login', {
      body: { username: upper.toLowerCase(), password: PASSWORD },
    });
    expect(login.status, login.text).to.equal(200);
  });

  it('finds the user by prefix search and by exact lookup in another case', async () => {
    const upper = `IRIS_${tag()}`;
    const created = await request(server.url, 'POST', '/auth/signup', {
      body: { username: upper, password: PASSWORD },
    });
    expect(created.status, created.text).to.equal(201);
    const other = await request<{ token: string }>(server.url, 'POST', '/auth/signup', {
      body: { username: `seeker_${tag()}`, password: PASSWORD },
    });
    const token = other.body.token;
    const search = await request<{ users: Array<{ username: string }> }>(
      server.url,
      'GET',
      `/users?q=${upper}`,
      { token },
    );
    expect(search.status, search.text).to.equal(200);
    expect(
      search.body.users.map((u) => u.username),
      'search by the exact name',
    ).to.deep.equal([upper]);
    const lookup = await request(server.url, 'GET', `/users?username=${upper.toLowerCase()}`, { token });
    expect(lookup.status, lookup.text).to.equal(200);
  });
  it('the migration names the accounts whose usernames differ only in case, and goes on once one is renamed', async () => {
    // What a database made with a Turkish locale may hold from before: IVAN and ivan, two accounts.
    const { knex } = server.services.db;
    const upper = `IVAN_${tag()}`;
    await knex.transaction((trx) => asciiUnique.down(trx));
    try {
      await knex('users').insert([
        { username: upper, display_name: 'a', password_hash: 'x' },
        { username: upper.toLowerCase(), display_name: 'b', password_hash: 'x' },
      ]);
      const refused = await knex
        .transaction((trx) => asciiUnique.up(trx))
        .then(
          () => undefined,
          (err: unknown) => err as Error,
        );
      expect(refused?.message)
        .to.include(`${upper} / ${upper.toLowerCase()}`)
        .and.include('rename all but one');
      await knex('users')
        .where({ username: upper.toLowerCase() })
        .update({ username: `${upper.toLowerCase()}2` });
    } finally {
      await knex.transaction((trx) => asciiUnique.up(trx));
    }
    const again = await request(server.url, 'POST', '/auth/signup', {
      body: { username: upper.toLowerCase(), password: PASSWORD },
    });
    expect(again.status, again.text).to.equal(409);
  });
  it('orders GET /friends and GET /blocks by the username folded as ASCII (ivan_ before Ivy_)', async () => {
    // By lower(username) in the database's locale, "Ivy" folded to "ıvy" and came first.
    const t = tag();
    const signup = async (username: string) => {
      const r = await request<{ token: string; user: { id: string } }>(server.url, 'POST', '/auth/signup', {
        body: { username, password: PASSWORD },
      });
      expect(r.status, r.text).to.equal(201);
      return { username, ...r.body };
    };
    const me = await signup(`me_${t}`);
    const named = [await signup(`ivan_${t}`), await signup(`Ivy_${t}`)];
    for (const friend of named) {
      const sent = await request<{ request: { id: string } }>(server.url, 'POST', '/friends/requests', {
        token: me.token,
        body: { username: friend.username },
      });
      expect(sent.status, sent.text).to.equal(201);
      const accepted = await request(server.url, 'POST', `/friends/requests/${sent.body.request.id}/accept`, {
        token: friend.token,
      });
      expect(accepted.status, accepted.text).to.equal(200);
    }
    const friends = await request<{ friends: Array<{ user: { username: string } }> }>(
      server.url,
      'GET',
      '/friends',
      {
        token: me.token,
      },
    );
    const blocker = await signup(`blk_${t}`);
    for (const target of named) {
      const blocked = await request(server.url, 'POST', '/blocks', {
        token: blocker.token,
        body: { userId: target.user.id },
      });
      expect(blocked.status, blocked.text).to.equal(204);
    }
    const blocks = await request<{ blocked: Array<{ username: string }> }>(server.url, 'GET', '/blocks', {
      token: blocker.token,
    });
    expect({
      friends: friends.body.friends.map((f) => f.user.username),
      blocks: blocks.body.blocked.map((u) => u.username),
    }).to.deep.equal({ friends: [`ivan_${t}`, `Ivy_${t}`], blocks: [`ivan_${t}`, `Ivy_${t}`] });
  });
});
