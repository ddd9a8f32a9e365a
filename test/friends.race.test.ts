import { expect } from 'chai';
import type { ErrorCode } from '../lib/protocol/index.js';
import type { ErrorResponse } from './helpers/errors.js';
import { request } from './helpers/http.js';
import { useNode } from './helpers/nodes.js';
import { insertUser, type TestUser } from './helpers/users.js';

/**
 * Two users asking each other at the same moment, on many pairs at once: exactly one friendship per pair, no
 * pending request left, never a 500 (the pair lock in lib/social serializes them).
 */
describe('friends: concurrent mutual requests', function () {
  const { server } = useNode();

  const knex = () => server.services.db.knex;
  const newUser = () => insertUser(knex(), server.services.config);
  const ask = (from: TestUser, toUsername: string) =>
    request<ErrorResponse>(server.url, 'POST', '/friends/requests', {
      token: from.token,
      body: { username: toUsername },
    });
  async function friendRows(a: string, b: string): Promise<number> {
    const [low, high] = a < b ? [a, b] : [b, a];
    const rows = (await knex()('friendships').where({ user_low: low, user_high: high })) as unknown[];
    return rows.length;
  }

  it('makes exactly one friendship when two users ask each other at the same moment (many pairs)', async () => {
    const PAIRS = 12;
    for (let round = 0; round < 2; round++) {
      const pairs = await Promise.all(
        Array.from({ length: PAIRS }, async () => [await newUser(), await newUser()] as const),
      );
      const results = await Promise.all(
        pairs.map(([a, b]) => Promise.all([ask(a, b.username), ask(b, a.username)])),
      );
      for (const [i, [ra, rb]] of results.entries()) {
        const [a, b] = pairs[i]!;
        expect([ra.status, rb.status].sort(), `pair ${i}: ${ra.text} ${rb.text}`).to.deep.equal([200, 201]);
        expect(await friendRows(a.id, b.id)).to.equal(1);
        const requests: Array<{ status: string }> = await knex()('friend_requests')
          .whereIn('from_user_id', [a.id, b.id])
          .select('status');
        expect(requests.map((r) => r.status)).to.deep.equal(['accepted']);
      }
    }
  });

  it('stays consistent when both sides send twice at once: one friendship, no 500', async () => {
    const PAIRS = 6;
    const pairs = await Promise.all(
      Array.from({ length: PAIRS }, async () => [await newUser(), await newUser()] as const),
    );
    const results = await Promise.all(
      pairs.map(([a, b]) =>
        Promise.all([ask(a, b.username), ask(b, a.username), ask(a, b.username), ask(b, a.username)]),
      ),
    );
    for (const [i, responses] of results.entries()) {
      const [a, b] = pairs[i]!;
      const statuses = responses.map((r) => r.status).sort();
      // The first through the pair lock creates (201), the first from the other side accepts (200), the rest
      // find a request of their own (REQUEST_EXISTS) or the friendship (ALREADY_FRIENDS).
      expect(statuses, responses.map((r) => r.text).join('\n')).to.deep.equal([200, 201, 409, 409]);
      for (const r of responses.filter((x) => x.status === 409)) {
        expect(['REQUEST_EXISTS', 'ALREADY_FRIENDS'] satisfies ErrorCode[]).to.include(r.body.error.code);
      }
      expect(await friendRows(a.id, b.id)).to.equal(1);
      const pending = (await knex()('friend_requests')
        .whereIn('from_user_id', [a.id, b.id])
        .where({ status: 'pending' })) as unknown[];
      expect(pending).to.have.length(0);
    }
  });
});
