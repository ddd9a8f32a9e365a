import { expect } from 'chai';
import type { Knex } from 'knex';
import { requestNoticesSince } from '../lib/social/friendRequests.js';
import type { PublicFriendRequest } from '../lib/protocol/index.js';
import type { PublicUser } from '../lib/protocol/index.js';
import { expectError } from './helpers/errors.js';
import { collectEvents } from './helpers/events.js';
import { request } from './helpers/http.js';
import { useNode } from './helpers/nodes.js';
import { letThroughAfterAWait } from './helpers/postgres.js';
import { insertFriendship, insertUser, type TestUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

interface Body {
  request: PublicFriendRequest;
  requests: PublicFriendRequest[];
  friends: Array<{ user: PublicUser; since: string }>;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('friends: requests and friendships', function () {
  const { server, pool } = useNode();

  const knex = () => server.services.db.knex;
  const newUser = () => insertUser(knex(), server.services.config);
  const call = (user: TestUser, method: string, path: string, body?: unknown) =>
    request<Body>(server.url, method, path, { token: user.token, body });
  const ask = (from: TestUser, toUsername: string) =>
    call(from, 'POST', '/friends/requests', { username: toUsername });
  const socketOf = (user: TestUser) => pool.open(server.url, user);
  async function friendRows(a: string, b: string): Promise<number> {
    const [low, high] = a < b ? [a, b] : [b, a];
    const rows = (await knex()('friendships').where({ user_low: low, user_high: high })) as unknown[];
    return rows.length;
  }

  it('runs the whole workflow: request, events, lists, accept, friends on both sides', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const aliceRequests = collectEvents(await socketOf(alice), 'friend:request');
    const aliceAccepted = collectEvents(await socketOf(alice), 'friend:accepted');
    const bobRequests = collectEvents(await socketOf(bob), 'friend:request');

    // The username matches case-insensitively.
    const sent = await ask(alice, bob.username.toUpperCase());
    expect(sent.status).to.equal(201);
    const req = sent.body.request;
    expect(req.id).to.match(UUID);
    expect(req.status).to.equal('pending');
    expect(req.respondedAt).to.equal(null);
    expect(req.from.id).to.equal(alice.id);
    expect(req.to.id).to.equal(bob.id);
    expect(Object.keys(req.from).sort()).to.deep.equal(['createdAt', 'displayName', 'id', 'username']);
    expect(Object.keys(req).sort()).to.deep.equal(['createdAt', 'from', 'id', 'respondedAt', 'status', 'to']);

    await waitFor(() => bobRequests.length === 1, { what: 'friend:request at the recipient' });
    expect(bobRequests[0]).to.deep.equal(req);

    expect((await call(bob, 'GET', '/friends/requests')).body.requests).to.deep.equal([req]);
    expect((await call(bob, 'GET', '/friends/requests?direction=incoming')).body.requests).to.deep.equal([
      req,
    ]);
    expect((await call(bob, 'GET', '/friends/requests?direction=outgoing')).body.requests).to.deep.equal([]);
    expect((await call(alice, 'GET', '/friends/requests?direction=outgoing')).body.requests).to.deep.equal([
      req,
    ]);
    expect((await call(alice, 'GET', '/friends/requests')).body.requests).to.deep.equal([]);

    const accepted = await call(bob, 'POST', `/friends/requests/${req.id}/accept`);
    expect(accepted.status).to.equal(200);
    expect(accepted.body.request.status).to.equal('accepted');
    expect(accepted.body.request.id).to.equal(req.id);
    expect(new Date(accepted.body.request.respondedAt!).getTime()).to.be.at.least(
      new Date(req.createdAt).getTime(),
    );
    await waitFor(() => aliceAccepted.length === 1, { what: 'friend:accepted at the sender' });
    expect(aliceAccepted[0]).to.deep.equal(accepted.body.request);
    expect(aliceRequests).to.deep.equal([]);

    const aliceFriends = (await call(alice, 'GET', '/friends')).body.friends;
    const bobFriends = (await call(bob, 'GET', '/friends')).body.friends;
    expect(aliceFriends.map((f) => f.user)).to.deep.equal([req.to]);
    expect(bobFriends.map((f) => f.user)).to.deep.equal([req.from]);
    expect(aliceFriends[0]!.since).to.equal(bobFriends[0]!.since);
    expect(new Date(aliceFriends[0]!.since).toISOString()).to.equal(aliceFriends[0]!.since);
    expect((await call(bob, 'GET', '/friends/requests')).body.requests).to.deep.equal([]);
    expect(await friendRows(alice.id, bob.id)).to.equal(1);
  });

  it('answers USER_NOT_FOUND, CANNOT_FRIEND_SELF, ALREADY_FRIENDS, REQUEST_EXISTS and VALIDATION_FAILED', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const carol = await newUser();
    await insertFriendship(knex(), alice.id, carol.id);
    expectError(await ask(alice, 'nobody_here_at_all'), 404, 'USER_NOT_FOUND');
    expectError(await ask(alice, alice.username.toUpperCase()), 400, 'CANNOT_FRIEND_SELF');
    expectError(await ask(alice, carol.username), 409, 'ALREADY_FRIENDS');
    expectError(await ask(carol, alice.username), 409, 'ALREADY_FRIENDS');
    expect((await ask(alice, bob.username)).status).to.equal(201);
    expectError(await ask(alice, bob.username), 409, 'REQUEST_EXISTS');
    const bad = expectError(await ask(alice, 'no spaces'), 400, 'VALIDATION_FAILED');
    expect(bad.details).to.have.keys(['username']);
    const missing = expectError(await call(alice, 'POST', '/friends/requests', {}), 400, 'VALIDATION_FAILED');
    expect(missing.details).to.have.keys(['username']);
    const direction = expectError(
      await call(alice, 'GET', '/friends/requests?direction=sideways'),
      400,
      'VALIDATION_FAILED',
    );
    expect(direction.details).to.have.keys(['direction']);
    // Only one pending row for the pair.
    const rows = (await knex()('friend_requests').where({
      from_user_id: alice.id,
      to_user_id: bob.id,
    })) as unknown[];
    expect(rows).to.have.length(1);
  });

  it("accepts the other side's pending request instead of making a second one (200)", async () => {
    const alice = await newUser();
    const bob = await newUser();
    const aliceAccepted = collectEvents(await socketOf(alice), 'friend:accepted');
    const bobRequests = collectEvents(await socketOf(bob), 'friend:request');
    const first = await ask(alice, bob.username);
    expect(first.status).to.equal(201);
    await waitFor(() => bobRequests.length === 1, { what: 'the first friend:request' });

    const second = await ask(bob, alice.username);
    expect(second.status).to.equal(200);
    expect(second.body.request.id).to.equal(first.body.request.id);
    expect(second.body.request.status).to.equal('accepted');
    expect(second.body.request.from.id).to.equal(alice.id);
    await waitFor(() => aliceAccepted.length === 1, { what: 'friend:accepted at the original sender' });
    expect(aliceAccepted[0]).to.deep.equal(second.body.request);
    expect(await friendRows(alice.id, bob.id)).to.equal(1);
    const all = (await knex()('friend_requests').whereIn('from_user_id', [alice.id, bob.id])) as unknown[];
    expect(all).to.have.length(1);
    expect(bobRequests).to.have.length(1);
  });

  it('lets only the recipient accept or decline, and only the sender cancel (404 NOT_FOUND otherwise)', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const mallory = await newUser();
    const { id } = (await ask(alice, bob.username)).body.request;
    for (const [user, method, path] of [
      [alice, 'POST', `/friends/requests/${id}/accept`],
      [alice, 'POST', `/friends/requests/${id}/decline`],
      [mallory, 'POST', `/friends/requests/${id}/accept`],
      [mallory, 'POST', `/friends/requests/${id}/decline`],
      [mallory, 'DELETE', `/friends/requests/${id}`],
      [bob, 'DELETE', `/friends/requests/${id}`],
      [bob, 'POST', '/friends/requests/not-a-uuid/accept'],
      [bob, 'POST', '/friends/requests/00000000-0000-4000-8000-000000000000/accept'],
      [bob, 'POST', '/friends/requests/1/decline'],
      [alice, 'DELETE', '/friends/requests/zzz'],
    ] as const) {
      const res = await call(user, method, path);
      expectError(res, 404, 'NOT_FOUND', `${method} ${path}`);
    }
    // Still pending after all those refusals.
    expect((await call(bob, 'GET', '/friends/requests')).body.requests.map((r) => r.id)).to.deep.equal([id]);
  });

  it('declines (200), then refuses to accept or decline again with 409 REQUEST_NOT_PENDING; a new request works', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const { id } = (await ask(alice, bob.username)).body.request;
    const declined = await call(bob, 'POST', `/friends/requests/${id}/decline`);
    expect(declined.status).to.equal(200);
    expect(declined.body.request.status).to.equal('declined');
    expect(declined.body.request.respondedAt).to.be.a('string');
    for (const action of ['accept', 'decline']) {
      const res = await call(bob, 'POST', `/friends/requests/${id}/${action}`);
      expectError(res, 409, 'REQUEST_NOT_PENDING');
    }
    expectError(await call(alice, 'DELETE', `/friends/requests/${id}`), 409, 'REQUEST_NOT_PENDING');
    expect(await friendRows(alice.id, bob.id)).to.equal(0);
    expect((await call(alice, 'GET', '/friends')).body.friends).to.deep.equal([]);
    const again = await ask(alice, bob.username);
    expect(again.status).to.equal(201);
    expect(again.body.request.id).not.to.equal(id);
  });

  // Answered requests were kept for ever: a pair asking and cancelling (or declining) in a loop left a row a round
  // (DATA hunt). A new request deletes the pair's older answers: the newest stays (a late answer to it still gets
  // 409), and a pair never holds more than it and its pending request.
  it('keeps a pair’s newest answered request only, however often they ask again', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const rowsOfPair = async () =>
      (
        (await knex()('friend_requests').whereIn(
          ['from_user_id', 'to_user_id'],
          [
            [alice.id, bob.id],
            [bob.id, alice.id],
          ],
        )) as unknown[]
      ).length;
    let last = '';
    let lastTo = bob;
    for (let round = 0; round < 6; round++) {
      const [from, to] = round % 3 === 2 ? [bob, alice] : [alice, bob];
      const sent = await ask(from, to.username);
      expect(sent.status, sent.text).to.equal(201);
      expect(await rowsOfPair()).to.be.at.most(2);
      last = sent.body.request.id;
      lastTo = to;
      if (round % 2 === 0)
        expect((await call(from, 'DELETE', `/friends/requests/${last}`)).status).to.equal(204);
      else expect((await call(to, 'POST', `/friends/requests/${last}/decline`)).status).to.equal(200);
    }
    expect(await rowsOfPair()).to.be.at.most(2);
    // The newest answer is kept when they ask again: a late accept of it is still told it was answered.
    const again = await ask(alice, bob.username);
    expect(again.status).to.equal(201);
    expectError(await call(lastTo, 'POST', `/friends/requests/${last}/accept`), 409, 'REQUEST_NOT_PENDING');
    expect(await rowsOfPair()).to.equal(2);
    // An acceptance whose friendship ended, then a new request: nothing of the pair is left but that request.
    expect((await call(bob, 'POST', `/friends/requests/${again.body.request.id}/accept`)).status).to.equal(
      200,
    );
    expect((await call(alice, 'DELETE', `/friends/${bob.id}`)).status).to.equal(204);
    const after = await ask(bob, alice.username);
    expect(after.status).to.equal(201);
    expect(await rowsOfPair()).to.equal(2);
  });

  it('cancels with 204 (status cancelled); the recipient can then neither accept nor see it', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const { id } = (await ask(alice, bob.username)).body.request;
    const cancelled = await call(alice, 'DELETE', `/friends/requests/${id}`);
    expect(cancelled.status).to.equal(204);
    expect(cancelled.text).to.equal('');
    const row = (await knex()('friend_requests').where({ id }).first()) as {
      status: string;
      responded_at: Date;
    };
    expect(row.status).to.equal('cancelled');
    expect(row.responded_at).to.be.instanceOf(Date);
    expect((await call(bob, 'GET', '/friends/requests')).body.requests).to.deep.equal([]);
    const accept = await call(bob, 'POST', `/friends/requests/${id}/accept`);
    expectError(accept, 409, 'REQUEST_NOT_PENDING');
    expect((await call(alice, 'DELETE', `/friends/requests/${id}`)).status).to.equal(409);
  });

  it('removes a friend with 204 on both sides; 404 NOT_FOUND when not friends or for a bad id', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const carol = await newUser();
    await insertFriendship(knex(), alice.id, bob.id);
    await insertFriendship(knex(), alice.id, carol.id);
    expect((await call(alice, 'GET', '/friends')).body.friends).to.have.length(2);
    expect((await call(bob, 'DELETE', `/friends/${alice.id}`)).status).to.equal(204);
    expect((await call(alice, 'GET', '/friends')).body.friends.map((f) => f.user.id)).to.deep.equal([
      carol.id,
    ]);
    expect((await call(bob, 'GET', '/friends')).body.friends).to.deep.equal([]);
    for (const path of [
      `/friends/${alice.id}`,
      `/friends/${bob.id}`,
      '/friends/not-a-uuid',
      `/friends/${carol.id}`,
    ]) {
      const res = await call(bob, 'DELETE', path);
      expectError(res, 404, 'NOT_FOUND', path);
    }
    // They can become friends again.
    const { id } = (await ask(bob, alice.username)).body.request;
    expect((await call(alice, 'POST', `/friends/requests/${id}/accept`)).status).to.equal(200);
    expect(await friendRows(alice.id, bob.id)).to.equal(1);
  });

  it('dates a request and its acceptance when they are written, not when their transactions began: ones that waited for the pair’s lock are among the notices since they were let through', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const lockBob = (holder: Knex.Transaction) => holder('users').where('id', bob.id).forUpdate();
    const asked = await letThroughAfterAWait(knex(), lockBob, () => ask(alice, bob.username));
    expect(asked.result.status).to.equal(201);
    const id = asked.result.body.request.id;
    // What a node that was not listening since then looks for (lib/realtime/revalidation.ts).
    const incoming = (await requestNoticesSince(knex(), [bob.id], asked.released, 10)).incoming;
    expect(incoming.map((r) => r.id)).to.deep.equal([id]);

    const accepted = await letThroughAfterAWait(knex(), lockBob, () =>
      call(bob, 'POST', `/friends/requests/${id}/accept`),
    );
    expect(accepted.result.status).to.equal(200);
    const told = (await requestNoticesSince(knex(), [alice.id], accepted.released, 10)).accepted;
    expect(told.map((r) => r.id)).to.deep.equal([id]);
  });

  it('lists friends ordered by username, each with since', async () => {
    const me = await newUser();
    const names = ['zed', 'Amy', 'bob'].map((n) => `${n}_${me.username.slice(-6)}`);
    const friends = await Promise.all(names.map((n) => insertUser(knex(), server.services.config, n)));
    for (const f of friends) await insertFriendship(knex(), me.id, f.id);
    const listed = (await call(me, 'GET', '/friends')).body.friends;
    expect(listed.map((f) => f.user.username)).to.deep.equal([names[1], names[2], names[0]]);
    for (const f of listed) expect(f.since).to.be.a('string');
  });
});
