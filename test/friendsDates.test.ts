import { expect } from 'chai';
import type { Knex } from 'knex';
import type { PublicFriendRequest, PublicUser } from '../lib/protocol/index.js';
import { request } from './helpers/http.js';
import { useNode } from './helpers/nodes.js';
import {
  letThroughAfterAWait,
  statementsWaitingForALock,
  untilAStatementWaitsForALock,
} from './helpers/postgres.js';
import { insertUser, type TestUser } from './helpers/users.js';

interface Body {
  request: PublicFriendRequest;
  friends: Array<{ user: PublicUser; since: string }>;
}

/**
 * `GET /friends` answers `since`, "when the friendship began" (docs/api-auth-friends.md): the time of the statement
 * that made it, not the start of its transaction (the column's default), which an acceptance that waited for the
 * pair's lock would date before it was accepted, even before it was asked for.
 */
describe('friends: a friendship is dated when it is made', function () {
  const { server } = useNode();
  const knex = () => server.services.db.knex;
  const newUser = () => insertUser(knex(), server.services.config);
  const call = (user: TestUser, method: string, path: string, body?: unknown) =>
    request<Body>(server.url, method, path, { token: user.token, body });

  it('an accept that waited for the pair’s lock: since is not before respondedAt', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const asked = await call(alice, 'POST', '/friends/requests', { username: bob.username });
    expect(asked.status).to.equal(201);
    const lockBob = (holder: Knex.Transaction) => holder('users').where('id', bob.id).forUpdate();
    const accepted = await letThroughAfterAWait(knex(), lockBob, () =>
      call(bob, 'POST', `/friends/requests/${asked.body.request.id}/accept`),
    );
    expect(accepted.result.status).to.equal(200);
    const respondedAt = new Date(accepted.result.body.request.respondedAt!).getTime();
    const [friend] = (await call(alice, 'GET', '/friends')).body.friends;
    const since = new Date(friend!.since).getTime();
    expect(
      since,
      `since ${friend!.since}, accepted at ${accepted.result.body.request.respondedAt}`,
    ).to.be.at.least(respondedAt);
  });

  it('crossed requests: the friendship does not begin before the request it accepted was made', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const holder = await knex().transaction();
    let aliceAsks: Promise<{ status: number; body: Body }> | undefined;
    let bobAsks: Promise<{ status: number; body: Body }> | undefined;
    try {
      await holder('users').whereIn('id', [alice.id, bob.id]).forUpdate();
      // Alice asks first and waits for the pair's lock; then Bob's ask starts (its transaction begins) and waits.
      aliceAsks = call(alice, 'POST', '/friends/requests', { username: bob.username });
      await untilAStatementWaitsForALock(knex(), "alice's ask waiting");
      await new Promise((resolve) => setTimeout(resolve, 100));
      bobAsks = call(bob, 'POST', '/friends/requests', { username: alice.username });
      await waitForWaiters(knex(), 2);
      await new Promise((resolve) => setTimeout(resolve, 200));
    } finally {
      await holder.commit();
    }
    const [a, b] = await Promise.all([aliceAsks, bobAsks]);
    expect([a.status, b.status]).to.deep.equal([201, 200]);
    const createdAt = new Date(b.body.request.createdAt).getTime();
    const [friend] = (await call(bob, 'GET', '/friends')).body.friends;
    expect(
      new Date(friend!.since).getTime(),
      `friends since ${friend!.since}, but the request was made at ${b.body.request.createdAt}`,
    ).to.be.at.least(createdAt);
  });
});

async function waitForWaiters(knex: Knex, n: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if ((await statementsWaitingForALock(knex)) >= n) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`fewer than ${n} statements waiting for a lock`);
}
