import { expect } from 'chai';
import type { Knex } from 'knex';
import { User } from '../lib/models/index.js';
import type {
  AuthResponse,
  PublicConversation,
  PublicFriendRequest,
  PublicUser,
} from '../lib/protocol/index.js';
import { newUser, record } from './helpers/chat.js';
import { expectError } from './helpers/errors.js';
import { useNode } from './helpers/nodes.js';
import { request } from './helpers/http.js';
import { CLUSTER_LIMITS_TABLE } from '../lib/clusterLimits.js';
import { statementsWaitingForALockIn } from './helpers/postgres.js';
import { insertFriendship, uniqueUsername } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

const PASSWORD = 'correct horse battery';

/**
 * DELETE /users/me against what the account's row lock orders: "friendships, requests and blocks go" and "the user
 * leaves every group" must hold for a request, a block or a group that reaches the database around the deletion,
 * not only for those made before it. A deleted account's row stays (history keeps its sender), so every such
 * writer must look at `deleted_at` on the row version it locks.
 */
describe('account deletion racing requests, blocks and groups', function () {
  // The creation budget's counter row is where test 4 holds a request after its session check.
  const node = useNode({ env: { RATE_LIMIT_CONVERSATIONS_PER_MIN: '100' } });
  const { server } = node;

  async function signup(): Promise<{ id: string; token: string; username: string }> {
    const username = uniqueUsername('Del');
    const res = await request<AuthResponse>(server.url, 'POST', '/auth/signup', {
      body: { username, password: PASSWORD },
    });
    expect(res.status).to.equal(201);
    return { id: res.body.user.id, token: res.body.token, username };
  }

  /** How many of this test database's backends wait for a lock. */
  function lockWaiters(): Promise<number> {
    return statementsWaitingForALockIn(new URL(node.databaseUrl).pathname.slice(1));
  }

  const deleteAccount = (token: string) =>
    request(server.url, 'DELETE', '/users/me', { token, body: { password: PASSWORD } });

  it('a friend request that waited for the addressee’s deletion is USER_NOT_FOUND and leaves no request', async () => {
    const { knex } = server.services.db;
    const alice = await newUser(server);
    const target = await signup();

    // Holds the target's row, so the deletion queues on it first and the request (which has already found the
    // target by username) second; then lets both go.
    const holder = await knex.transaction();
    try {
      await holder.raw('SELECT id FROM users WHERE id = ? FOR SHARE', [target.id]);
      const deletion = deleteAccount(target.token);
      await waitFor(async () => (await lockWaiters()) >= 1, { what: 'the deletion to wait for the row' });
      const sent = request<{ request: PublicFriendRequest }>(server.url, 'POST', '/friends/requests', {
        token: alice.token,
        body: { username: target.username },
      });
      await waitFor(async () => (await lockWaiters()) >= 2, { what: 'the request to wait for the row' });
      await holder.commit();
      expect((await deletion).status).to.equal(204);
      expectError(await sent, 404, 'USER_NOT_FOUND');
    } finally {
      if (!holder.isCompleted()) await holder.rollback();
    }
    expect(await knex('friend_requests').where('to_user_id', target.id)).to.deep.equal([]);
    const outgoing = await request<{ requests: PublicFriendRequest[] }>(
      server.url,
      'GET',
      '/friends/requests?direction=outgoing',
      { token: alice.token },
    );
    expect(outgoing.body.requests).to.deep.equal([]);
  });

  it('a deletion whose session was revoked while it ran is refused UNAUTHORIZED and deletes nothing', async () => {
    const { knex } = server.services.db;
    const owner = await signup();
    const login = await request<AuthResponse>(server.url, 'POST', '/auth/login', {
      body: { username: owner.username, password: PASSWORD },
    });
    expect(login.status).to.equal(200);
    const thief = login.body.token;
    const sessions = await request<{ sessions: Array<{ id: string; current: boolean }> }>(
      server.url,
      'GET',
      '/auth/sessions',
      { token: thief },
    );
    const thiefSession = sessions.body.sessions.find((s) => s.current)!.id;
    // Holds the row, so the deletion (its password checked) waits at its lock while the owner revokes it.
    const holder = await knex.transaction();
    let deletion;
    try {
      await holder.raw('SELECT id FROM users WHERE id = ? FOR SHARE', [owner.id]);
      const deleting = deleteAccount(thief);
      await waitFor(async () => (await lockWaiters()) >= 1, { what: 'the deletion to wait for the row' });
      const revoked = await request(server.url, 'DELETE', `/auth/sessions/${thiefSession}`, {
        token: owner.token,
      });
      expect(revoked.status).to.equal(204);
      await holder.commit();
      deletion = await deleting;
    } finally {
      if (!holder.isCompleted()) await holder.rollback();
    }
    expectError(deletion, 401, 'UNAUTHORIZED');
    const me = await request<{ user: PublicUser }>(server.url, 'GET', '/auth/me', { token: owner.token });
    expect(me.status, 'the owner still has an account and a session').to.equal(200);
    expect(me.body.user.username).to.equal(owner.username);
  });

  it('a password change that waited for the account’s deletion is UNAUTHORIZED (not a 500) and changes nothing', async () => {
    const { knex } = server.services.db;
    const owner = await signup();
    const phone = await request<AuthResponse>(server.url, 'POST', '/auth/login', {
      body: { username: owner.username, password: PASSWORD },
    });
    expect(phone.status).to.equal(200);
    const holder = await knex.transaction();
    let deletion;
    let change;
    try {
      await holder.raw('SELECT id FROM users WHERE id = ? FOR SHARE', [owner.id]);
      // The deletion queues on the row first, the change (its password checked) second.
      const deleting = deleteAccount(owner.token);
      await waitFor(async () => (await lockWaiters()) >= 1, { what: 'the deletion to wait for the row' });
      const changing = request(server.url, 'POST', '/auth/password', {
        token: phone.body.token,
        body: { currentPassword: PASSWORD, newPassword: 'another password' },
      });
      await waitFor(async () => (await lockWaiters()) >= 2, { what: 'the change to wait for the row' });
      await holder.commit();
      [deletion, change] = await Promise.all([deleting, changing]);
    } finally {
      if (!holder.isCompleted()) await holder.rollback();
    }
    expect(deletion.status).to.equal(204);
    expectError(change, 401, 'UNAUTHORIZED');
    const row = await knex<{ id: string; password_hash: string | null; deleted_at: Date | null }>('users')
      .where('id', owner.id)
      .first('password_hash', 'deleted_at');
    expect(row?.password_hash).to.equal(null);
    expect(row?.deleted_at).to.be.an.instanceOf(Date);
  });

  it('blocking a deleted account is USER_NOT_FOUND, and GET /blocks does not list it', async () => {
    const alice = await newUser(server);
    const target = await signup();
    expect((await deleteAccount(target.token)).status).to.equal(204);
    expectError(
      await request(server.url, 'POST', '/blocks', { token: alice.token, body: { userId: target.id } }),
      404,
      'USER_NOT_FOUND',
    );
    const list = await request<{ blocked: PublicUser[] }>(server.url, 'GET', '/blocks', {
      token: alice.token,
    });
    expect(list.body.blocked).to.deep.equal([]);
  });

  it('a group its creator is making while deleting the account does not outlive the account', async () => {
    const { knex } = server.services.db;
    const doomed = await signup();
    const friend = await newUser(server);
    await insertFriendship(knex, doomed.id, friend.id);

    // Holds the group's insert back (as a busy database would), after its checks of the participants.
    const slow = await knex.transaction();
    let created;
    try {
      await slow.raw('LOCK TABLE conversations IN SHARE MODE');
      const creating = request<{ conversation: PublicConversation }>(server.url, 'POST', '/conversations', {
        token: doomed.token,
        body: { type: 'group', title: 'made while deleting', participantIds: [friend.id] },
      });
      await waitFor(async () => (await lockWaiters()) >= 1, { what: 'the group to wait for its insert' });
      const deletion = deleteAccount(doomed.token);
      // The deletion waits for the group (the creator's row is share-locked by it).
      await waitFor(async () => (await lockWaiters()) >= 2, { what: 'the deletion to wait for the group' });
      await slow.commit();
      expect((await deletion).status).to.equal(204);
      created = await creating;
    } finally {
      if (!slow.isCompleted()) await slow.rollback();
    }
    expect(created.status, created.text).to.equal(201);
    const memberships = await knex('conversation_participants').where('user_id', doomed.id);
    expect(memberships).to.deep.equal([]);
    const friendsView = await request<{ conversations: PublicConversation[] }>(
      server.url,
      'GET',
      '/conversations',
      {
        token: friend.token,
      },
    );
    const group = friendsView.body.conversations.find((c) => c.id === created.body.conversation.id);
    expect(group?.participants.map((p) => [p.userId, p.role])).to.deep.equal([[friend.id, 'owner']]);
  });

  it('a group whose creator’s deletion committed after the request’s session check is refused UNAUTHORIZED', async () => {
    const { knex } = server.services.db;
    const friend = await newUser(server);
    for (const participantIds of [[], [friend.id]]) {
      const doomed = await signup();
      await insertFriendship(knex, doomed.id, friend.id);
      // Holds the request at its creation budget, after its session check and before its transaction, while the
      // whole deletion (both of its looks at the groups included) runs.
      const counter = `conversation_writes_bucket:${doomed.id}`;
      // A full bucket (its time long past), whose row the request updates.
      await knex(CLUSTER_LIMITS_TABLE).insert({ key: counter, points: 0, expire: 0 });
      const holder = await knex.transaction();
      let created;
      try {
        await holder(CLUSTER_LIMITS_TABLE).where('key', counter).forUpdate();
        const creating = request(server.url, 'POST', '/conversations', {
          token: doomed.token,
          body: { type: 'group', title: 'after the end', participantIds },
        });
        await waitFor(async () => (await lockWaiters()) >= 1, { what: 'the request to wait at its budget' });
        expect((await deleteAccount(doomed.token)).status).to.equal(204);
        await holder.commit();
        created = await creating;
      } finally {
        if (!holder.isCompleted()) await holder.rollback();
      }
      expectError(created, 401, 'UNAUTHORIZED');
      expect(await knex('conversation_participants').where('user_id', doomed.id)).to.deep.equal([]);
    }
  });
  it('a rename whose notice is late does not show a deleted account alive again: the friends hear the deletion last', async () => {
    const alice = await signup();
    const device2 = await request<AuthResponse>(server.url, 'POST', '/auth/login', {
      body: { username: alice.username, password: PASSWORD },
    });
    const bob = await newUser(server);
    const { knex } = server.services.db;
    await insertFriendship(knex, alice.id, bob.id);
    const bobSocket = await node.pool.open(server.url, bob);
    const heard = record(bobSocket, 'user:updated');

    // The rename has committed; its notice waits for the re-read of the user (lib/auth/profile.ts), held here until
    // the other device's deletion has committed and been heard: the notice must not show the account alive again.
    let reReadReached = false;
    let releaseReRead!: () => void;
    const reReadHeld = new Promise<void>((resolve) => (releaseReRead = resolve));
    const query = User.query.bind(User);
    const patched = (...args: Parameters<typeof User.query>) => {
      const builder = query(...args);
      const outsideTransaction = args[0] !== undefined && !(args[0] as Knex).isTransaction;
      if (outsideTransaction && (new Error().stack ?? '').includes('updateDisplayName')) {
        const findById = builder.findById.bind(builder);
        (builder as unknown as { findById: (id: string) => Promise<unknown> }).findById = async (
          id: string,
        ) => {
          reReadReached = true;
          await reReadHeld;
          return await findById(id);
        };
      }
      return builder;
    };
    const original = (User as unknown as { query: unknown }).query;
    (User as unknown as { query: unknown }).query = patched;
    try {
      const rename = request(server.url, 'PATCH', '/users/me', {
        token: alice.token,
        body: { displayName: 'Still Here' },
      });
      await waitFor(() => reReadReached, { what: 'the rename committed, its re-read on its way' });
      expect((await deleteAccount(device2.body.token)).status).to.equal(204);
      await waitFor(() => heard.some((u) => u.username === null), { what: 'the deletion’s user:updated' });
      releaseReRead();
      expect((await rename).status).to.equal(200);
    } finally {
      releaseReRead();
      (User as unknown as { query: unknown }).query = original;
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(heard.filter((u) => u.id === alice.id).at(-1)).to.include({
      username: null,
      displayName: 'Deleted user',
    });
  });
});
