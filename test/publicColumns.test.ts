import { expect } from 'chai';
import { createGroup, friendsOf, newUser } from './helpers/chat.js';
import { request } from './helpers/http.js';
import { useNode } from './helpers/nodes.js';
import { captureQueries } from './helpers/queries.js';
import type { TestUser } from './helpers/users.js';

/**
 * Password hashes never leave lib/auth: what reads users for social lists, searches, conversations and their
 * notices selects the public columns only (User's `public` modifier), not `users.*`.
 */
describe('users outside lib/auth: public columns only', function () {
  const { server } = useNode();

  /** The SQL the node runs while `action` does, as the driver sees it. */
  async function statementsOf(action: () => Promise<unknown>): Promise<string[]> {
    const { knex } = server.services.db;
    return (await captureQueries(knex, action, { transactionControl: true })).map((query) => query.sql);
  }

  const call = async (user: TestUser, method: string, path: string, body?: unknown) => {
    const res = await request(server.url, method, path, { token: user.token, body });
    expect(res.status, `${method} ${path}: ${JSON.stringify(res.body)}`).to.be.within(200, 299);
    return res;
  };

  it('friends, requests, blocks, user lookups and conversations read no password hash', async () => {
    const me = await newUser(server);
    const [friend, member] = await friendsOf(server, me, 2);
    const asker = await newUser(server);
    const blocked = await newUser(server);
    const statements = await statementsOf(async () => {
      await call(asker, 'POST', '/friends/requests', { username: me.username });
      await call(me, 'GET', '/friends/requests?direction=incoming');
      await call(asker, 'GET', '/friends/requests?direction=outgoing');
      await call(me, 'GET', '/friends');
      await call(me, 'POST', '/blocks', { userId: blocked.id });
      await call(me, 'GET', '/blocks');
      await call(me, 'GET', `/users?q=${encodeURIComponent(friend!.username.slice(0, 4))}`);
      await call(me, 'GET', `/users/${friend!.id}`);
      const group = await createGroup(server.url, me, [friend!]);
      await call(me, 'POST', `/conversations/${group.id}/participants`, { userId: member!.id });
      await call(me, 'POST', '/conversations', { type: 'direct', userId: friend!.id });
      await call(me, 'GET', `/conversations/${group.id}`);
      await call(me, 'GET', '/conversations');
    });
    const readingUsers = statements.filter((sql) => /from "users"|join "users"/i.test(sql));
    expect(readingUsers.length, 'statements reading users').to.be.greaterThan(5);
    const leaking = readingUsers.filter((sql) => /"users"\.\*|password_hash|select \*/i.test(sql));
    expect(leaking).to.deep.equal([]);
  });
});
