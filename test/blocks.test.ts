import { expect } from 'chai';
import type { PublicFriendRequest } from '../lib/protocol/index.js';
import type { PublicUser } from '../lib/protocol/index.js';
import { expectError } from './helpers/errors.js';
import { request } from './helpers/http.js';
import { useNode } from './helpers/nodes.js';
import { insertFriendship, insertUser, type TestUser } from './helpers/users.js';

interface Body {
  request: PublicFriendRequest;
  requests: PublicFriendRequest[];
  friends: Array<{ user: PublicUser; since: string }>;
  blocked: PublicUser[];
}

describe('blocks', function () {
  const { server } = useNode();

  const knex = () => server.services.db.knex;
  const newUser = () => insertUser(knex(), server.services.config);
  const call = (user: TestUser, method: string, path: string, body?: unknown) =>
    request<Body>(server.url, method, path, { token: user.token, body });
  const ask = (from: TestUser, to: TestUser) =>
    call(from, 'POST', '/friends/requests', { username: to.username });
  const block = (user: TestUser, target: string) => call(user, 'POST', '/blocks', { userId: target });
  async function friendRows(a: string, b: string): Promise<number> {
    const [low, high] = a < b ? [a, b] : [b, a];
    return ((await knex()('friendships').where({ user_low: low, user_high: high })) as unknown[]).length;
  }
  async function requestStatus(id: string): Promise<string> {
    return ((await knex()('friend_requests').where({ id }).first()) as { status: string }).status;
  }

  it('blocking ends the friendship on both sides and lists the blocked user for the blocker only', async () => {
    const alice = await newUser();
    const bob = await newUser();
    await insertFriendship(knex(), alice.id, bob.id);
    const res = await block(alice, bob.id);
    expect(res.status).to.equal(204);
    expect(res.text).to.equal('');
    expect(await friendRows(alice.id, bob.id)).to.equal(0);
    expect((await call(alice, 'GET', '/friends')).body.friends).to.deep.equal([]);
    expect((await call(bob, 'GET', '/friends')).body.friends).to.deep.equal([]);
    const listed = (await call(alice, 'GET', '/blocks')).body.blocked;
    expect(listed.map((u) => u.id)).to.deep.equal([bob.id]);
    expect(Object.keys(listed[0]!).sort()).to.deep.equal(['createdAt', 'displayName', 'id', 'username']);
    expect((await call(bob, 'GET', '/blocks')).body.blocked).to.deep.equal([]);
  });

  it('blocking ends pending requests both ways (own: cancelled, received: declined)', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const carol = await newUser();
    const outgoing = (await ask(alice, bob)).body.request.id;
    const incoming = (await ask(carol, alice)).body.request.id;
    expect((await block(alice, bob.id)).status).to.equal(204);
    expect((await block(alice, carol.id)).status).to.equal(204);
    expect(await requestStatus(outgoing)).to.equal('cancelled');
    expect(await requestStatus(incoming)).to.equal('declined');
    expect((await call(bob, 'GET', '/friends/requests')).body.requests).to.deep.equal([]);
    expect((await call(alice, 'GET', '/friends/requests')).body.requests).to.deep.equal([]);
    expect((await call(alice, 'GET', '/friends/requests?direction=outgoing')).body.requests).to.deep.equal(
      [],
    );
    // The ended request cannot be accepted any more.
    const accept = await call(alice, 'POST', `/friends/requests/${incoming}/accept`);
    expectError(accept, 409, 'REQUEST_NOT_PENDING');
  });

  it('refuses friend requests either way with 403 BLOCKED, until the blocker unblocks', async () => {
    const alice = await newUser();
    const bob = await newUser();
    expect((await block(alice, bob.id)).status).to.equal(204);
    for (const [from, to] of [
      [bob, alice],
      [alice, bob],
    ] as const) {
      const res = await ask(from, to);
      expectError(res, 403, 'BLOCKED');
    }
    // The blocked user cannot lift the block.
    expect((await call(bob, 'DELETE', `/blocks/${alice.id}`)).status).to.equal(204);
    expectError(await ask(bob, alice), 403, 'BLOCKED');

    expect((await call(alice, 'DELETE', `/blocks/${bob.id}`)).status).to.equal(204);
    expect((await call(alice, 'GET', '/blocks')).body.blocked).to.deep.equal([]);
    expect((await ask(bob, alice)).status).to.equal(201);
  });

  it('is idempotent: blocking twice keeps one row, unblocking twice is 204', async () => {
    const alice = await newUser();
    const bob = await newUser();
    expect((await block(alice, bob.id)).status).to.equal(204);
    expect((await block(alice, bob.id.toUpperCase())).status).to.equal(204);
    const rows = (await knex()('blocks').where({ blocker_id: alice.id })) as unknown[];
    expect(rows).to.have.length(1);
    expect((await call(alice, 'DELETE', `/blocks/${bob.id}`)).status).to.equal(204);
    expect((await call(alice, 'DELETE', `/blocks/${bob.id}`)).status).to.equal(204);
    expect((await knex()('blocks').where({ blocker_id: alice.id })) as unknown[]).to.have.length(0);
  });

  it('keeps the pair blocked while either side still blocks', async () => {
    const alice = await newUser();
    const bob = await newUser();
    expect((await block(alice, bob.id)).status).to.equal(204);
    expect((await block(bob, alice.id)).status).to.equal(204);
    expect((await call(alice, 'DELETE', `/blocks/${bob.id}`)).status).to.equal(204);
    expectError(await ask(alice, bob), 403, 'BLOCKED');
    expect((await call(bob, 'DELETE', `/blocks/${alice.id}`)).status).to.equal(204);
    expect((await ask(alice, bob)).status).to.equal(201);
  });

  it('validates: a body userId that is not a UUID or is yourself is 400; an unknown user 404; a bad path id 404', async () => {
    const alice = await newUser();
    for (const body of [{ userId: 'nope' }, {}, { userId: 42 }]) {
      const res = await call(alice, 'POST', '/blocks', body);
      expect(expectError(res, 400, 'VALIDATION_FAILED', JSON.stringify(body)).details).to.have.keys([
        'userId',
      ]);
    }
    const self = await block(alice, alice.id);
    expect(expectError(self, 400, 'VALIDATION_FAILED').details).to.have.keys(['userId']);
    const unknown = await block(alice, '00000000-0000-4000-8000-000000000000');
    expectError(unknown, 404, 'USER_NOT_FOUND');
    const badPath = await call(alice, 'DELETE', '/blocks/not-a-uuid');
    expectError(badPath, 404, 'NOT_FOUND');
    expect((await request(server.url, 'GET', '/blocks')).status).to.equal(401);
  });

  it('never leaves a friendship beside a block when a block races an accept (many pairs)', async () => {
    const PAIRS = 10;
    const pairs = await Promise.all(
      Array.from({ length: PAIRS }, async () => [await newUser(), await newUser()] as const),
    );
    const ids = await Promise.all(pairs.map(async ([a, b]) => (await ask(a, b)).body.request.id));
    const results = await Promise.all(
      pairs.map(([a, b], i) =>
        Promise.all([call(b, 'POST', `/friends/requests/${ids[i]}/accept`), block(a, b.id)]),
      ),
    );
    for (const [i, [accept, blocked]] of results.entries()) {
      const [a, b] = pairs[i]!;
      expect(blocked.status).to.equal(204);
      // Either the accept went first (and the block then ended the friendship) or the block did (409).
      expect([200, 409]).to.include(accept.status);
      expect(await friendRows(a.id, b.id)).to.equal(0);
      expect(await requestStatus(ids[i]!)).to.equal(accept.status === 200 ? 'accepted' : 'cancelled');
    }
  });
});

// Blocking oneself spent the lookups budget before it was refused, and then searches were refused too (SEARCH hunt):
// a refused VALIDATION_FAILED costs nothing (docs/api.md).
describe('blocks: blocking oneself', function () {
  const { server } = useNode({ env: { RATE_LIMIT_LOOKUPS_PER_MIN: '3' } });

  it('is refused VALIDATION_FAILED without spending the lookups budget', async () => {
    const me = await insertUser(server.services.db.knex, server.services.config);
    for (let i = 0; i < 5; i++) {
      const res = await request(server.url, 'POST', '/blocks', { token: me.token, body: { userId: me.id } });
      expectError(res, 400, 'VALIDATION_FAILED');
      expect(res.body).to.have.nested.property('error.details.userId', 'cannot block yourself');
    }
    const search = await request(server.url, 'GET', '/users?q=zz', { token: me.token });
    expect(search.status).to.equal(200);
  });
});
