import { expect } from 'chai';
import type { AuthResponse, PublicUser } from '../lib/protocol/index.js';
import { record } from './helpers/chat.js';
import { useTwoNodes } from './helpers/nodes.js';
import { request } from './helpers/http.js';
import { insertFriendship, uniqueUsername, insertUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

const PASSWORD = 'correct horse battery';

/**
 * A node's broadcasts reach the other nodes in the order it made them (lib/realtime/localFirstAdapter.ts). The
 * Socket.IO postgres adapter publishes each with `pool.query("SELECT pg_notify(...)")` on a pool of several
 * connections (lib/realtime/adapterPool.ts): one whose connection is slower (one being opened, a busy backend) was
 * overtaken by a later one. Here the first notice's NOTIFY is 300 ms slow, as a newly opened adapter connection can
 * be.
 */
describe('broadcasts between nodes, in the order the node made them', function () {
  const nodes = useTwoNodes();

  /** Delays node A's adapter NOTIFYs whose payload contains `marker`. */
  function slowNotifies(marker: string, ms: number): () => void {
    const client = (
      nodes.a.services.io.of('/').adapter as unknown as {
        client: { pool: { query: (...a: unknown[]) => Promise<unknown> } };
      }
    ).client;
    const pool = client.pool;
    const query = pool.query.bind(pool);
    pool.query = async (...args: unknown[]) => {
      const payload = (args[1] as unknown[] | undefined)?.[1];
      if (
        typeof args[0] === 'string' &&
        args[0].includes('pg_notify') &&
        typeof payload === 'string' &&
        payload.includes(marker)
      ) {
        await new Promise((r) => setTimeout(r, ms));
      }
      return query(...args);
    };
    return () => {
      pool.query = query;
    };
  }

  it('a friend on the other node ends with the deleted shape, not the rename sent just before the deletion', async () => {
    const username = uniqueUsername('ren');
    const signup = await request<AuthResponse>(nodes.a.url, 'POST', '/auth/signup', {
      body: { username, password: PASSWORD },
    });
    const alice = signup.body;
    const bob = await insertUser(nodes.a.services.db.knex, nodes.a.services.config);
    await insertFriendship(nodes.a.services.db.knex, alice.user.id, bob.id);
    const bobOnB = await nodes.pool.open(nodes.b.url, bob);
    const heard = record(bobOnB, 'user:updated');
    const restore = slowNotifies('Still Here', 300);
    try {
      const renamed = await request(nodes.a.url, 'PATCH', '/users/me', {
        token: alice.token,
        body: { displayName: 'Still Here' },
      });
      expect(renamed.status).to.equal(200);
      const deleted = await request(nodes.a.url, 'DELETE', '/users/me', {
        token: alice.token,
        body: { password: PASSWORD },
      });
      expect(deleted.status).to.equal(204);
      await waitFor(() => heard.length >= 2, { what: 'both notices on node B' });
    } finally {
      restore();
    }
    const now = await request<{ user: PublicUser }>(nodes.b.url, 'GET', `/users/${alice.user.id}`, {
      token: bob.token,
    });
    expect(now.body.user).to.include({ username: null, displayName: 'Deleted user' });
    expect(heard.map((u) => u.displayName)).to.deep.equal(['Still Here', 'Deleted user']);
  });

  it('two renames in a row: a friend on the other node ends with the second', async () => {
    const alice = await insertUser(nodes.a.services.db.knex, nodes.a.services.config);
    const bob = await insertUser(nodes.a.services.db.knex, nodes.a.services.config);
    await insertFriendship(nodes.a.services.db.knex, alice.id, bob.id);
    const bobOnB = await nodes.pool.open(nodes.b.url, bob);
    const heard = record(bobOnB, 'user:updated');
    const restore = slowNotifies('Typo Nmae', 300);
    try {
      for (const displayName of ['Typo Nmae', 'Typo Name']) {
        const res = await request(nodes.a.url, 'PATCH', '/users/me', {
          token: alice.token,
          body: { displayName },
        });
        expect(res.status).to.equal(200);
      }
      await waitFor(() => heard.length >= 2, { what: 'both notices on node B' });
    } finally {
      restore();
    }
    expect(heard.map((u) => u.displayName)).to.deep.equal(['Typo Nmae', 'Typo Name']);
  });
});
