import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import jwt from 'jsonwebtoken';
import type {
  AuthResponse,
  PublicConversation,
  PublicFriend,
  PublicMessage,
  PublicUser,
} from '../lib/protocol/index.js';
import { createGroup, friendsOf, newUser, putMessage, record, rows } from './helpers/chat.js';
import { expectError } from './helpers/errors.js';
import { useTwoNodes } from './helpers/nodes.js';
import { disconnected } from './helpers/events.js';
import { request } from './helpers/http.js';
import { connectSocket } from './helpers/sockets.js';
import { uniqueUsername, type TestUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

const PASSWORD = 'correct horse battery';
const DELETED = { username: null, displayName: 'Deleted user' };

/** DELETE /users/me: what goes, what stays, and what everyone else sees afterwards (two nodes). */
describe('account deletion', function () {
  const nodes = useTwoNodes();

  async function signup(username = uniqueUsername('Del')): Promise<TestUser & AuthResponse> {
    const res = await request<AuthResponse>(nodes.a.url, 'POST', '/auth/signup', {
      body: { username, password: PASSWORD, displayName: 'Alice Doomed' },
    });
    expect(res.status).to.equal(201);
    const sessionId = (jwt.decode(res.body.token) as { sid: string }).sid;
    return { ...res.body, id: res.body.user.id, username, sessionId };
  }

  const get = <T>(user: TestUser, path: string) =>
    request<T>(nodes.b.url, 'GET', path, { token: user.token });

  it('refuses a wrong or missing password and changes nothing', async () => {
    const alice = await signup();
    const del = (body: unknown) => request(nodes.a.url, 'DELETE', '/users/me', { token: alice.token, body });
    expectError(await del({ password: 'wrong password' }), 401, 'INVALID_CREDENTIALS');
    expectError(await del({}), 400, 'VALIDATION_FAILED');
    expectError(await del(undefined), 400, 'VALIDATION_FAILED');
    expect((await get(alice, '/auth/me')).status).to.equal(200);
  });

  it('ends every session, leaves groups, drops relations, frees the username, keeps history as "Deleted user"', async () => {
    const alice = await signup();
    const secondDevice = await request<AuthResponse>(nodes.b.url, 'POST', '/auth/login', {
      body: { username: alice.username, password: PASSWORD },
    });
    const [bob, carol, dave] = (await friendsOf(nodes.a, alice, 3)) as [TestUser, TestUser, TestUser];
    const eve = await newUser(nodes.a);
    const frank = await newUser(nodes.a);
    const { knex } = nodes.a.services.db;

    // A direct conversation with bob and a group alice owns, both with her messages.
    const direct = await request<{ conversation: PublicConversation }>(
      nodes.a.url,
      'POST',
      '/conversations',
      {
        token: alice.token,
        body: { type: 'direct', userId: bob.id },
      },
    );
    const directId = direct.body.conversation.id;
    const group = await createGroup(nodes.a.url, alice, [carol, dave], 'doomed group');
    for (const conversationId of [directId, group.id]) {
      expect(
        (await putMessage(nodes.a.url, alice, conversationId, randomUUID(), { body: 'hi from alice' }))
          .status,
      ).to.equal(201);
    }
    expect(
      (await putMessage(nodes.a.url, bob, directId, randomUUID(), { body: 'hi alice' })).status,
    ).to.equal(201);
    // A pending request to eve, and a block of frank.
    expect(
      (
        await request(nodes.a.url, 'POST', '/friends/requests', {
          token: alice.token,
          body: { username: eve.username },
        })
      ).status,
    ).to.equal(201);
    expect(
      (await request(nodes.a.url, 'POST', '/blocks', { token: alice.token, body: { userId: frank.id } }))
        .status,
    ).to.equal(204);

    // A group of dave's with alice and a friend of his who is not hers: he hears of it as a co-participant.
    const [hank] = await friendsOf(nodes.a, dave, 1);
    await createGroup(nodes.a.url, dave, [alice, hank!], "dave's group");
    const hankSocket = nodes.pool.track(await connectSocket(nodes.a.url, hank!.token));
    const hankHeard = record(hankSocket, 'user:updated');

    const aliceSocket = nodes.pool.track(await connectSocket(nodes.b.url, secondDevice.body.token));
    const aliceEnded = record(aliceSocket, 'session:ended');
    const aliceGone = disconnected(aliceSocket);
    const bobSocket = nodes.pool.track(await connectSocket(nodes.b.url, bob.token));
    const bobHeard = record(bobSocket, 'user:updated');
    const carolSocket = nodes.pool.track(await connectSocket(nodes.b.url, carol.token));
    const carolUpdates = record(carolSocket, 'conversation:updated');

    const res = await request(nodes.a.url, 'DELETE', '/users/me', {
      token: alice.token,
      body: { password: PASSWORD },
    });
    expect(res.status).to.equal(204);

    // Every session ends, on every node; the sockets hear why.
    expect(await aliceGone).to.equal('io server disconnect');
    expect(aliceEnded).to.deep.equal([{ reason: 'deleted' }]);
    for (const token of [alice.token, secondDevice.body.token]) {
      expectError(await request(nodes.b.url, 'GET', '/auth/me', { token }), 401, 'UNAUTHORIZED');
    }
    for (const refreshToken of [alice.refreshToken, secondDevice.body.refreshToken]) {
      expectError(
        await request(nodes.b.url, 'POST', '/auth/refresh', { body: { refreshToken } }),
        401,
        'UNAUTHORIZED',
      );
    }
    expectError(
      await request(nodes.b.url, 'POST', '/auth/login', {
        body: { username: alice.username, password: PASSWORD },
      }),
      401,
      'INVALID_CREDENTIALS',
    );

    // Friends hear of it, and no longer list her.
    const shown = { id: alice.id, createdAt: alice.user.createdAt, ...DELETED };
    await waitFor(() => bobHeard.length === 1, { what: 'user:updated to bob on node B' });
    expect(bobHeard[0]).to.deep.equal(shown);
    await waitFor(() => hankHeard.length === 1, {
      what: 'user:updated to a groupmate who is not her friend',
    });
    expect(hankHeard[0]).to.deep.equal(shown);
    const bobFriends = await get<{ friends: PublicFriend[] }>(bob, '/friends');
    expect(bobFriends.body.friends.map((f) => f.user.id)).not.to.include(alice.id);
    expect(bobFriends.body.friends).to.deep.equal([]);

    // The direct conversation stays, with "Deleted user" as the other participant, and her messages.
    const directNow = await get<{ conversation: PublicConversation }>(bob, `/conversations/${directId}`);
    const her = directNow.body.conversation.participants.find((p) => p.userId === alice.id);
    expect(her).to.include(DELETED);
    const directHistory = await get<{ messages: PublicMessage[] }>(
      bob,
      `/conversations/${directId}/messages?after=0`,
    );
    expect(directHistory.body.messages.map((m) => [m.senderId, m.body])).to.deep.equal([
      [alice.id, 'hi from alice'],
      [bob.id, 'hi alice'],
    ]);
    // A sender id still names a user: the deleted one.
    expect((await get<{ user: PublicUser }>(bob, `/users/${alice.id}`)).body.user).to.deep.equal(shown);

    // She left the group; its ownership passed on; her message stays.
    const groupNow = await get<{ conversation: PublicConversation }>(carol, `/conversations/${group.id}`);
    const participants = groupNow.body.conversation.participants;
    expect(participants.map((p) => p.userId).sort()).to.deep.equal([carol.id, dave.id].sort());
    expect(participants.filter((p) => p.role === 'owner')).to.have.length(1);
    await waitFor(() => carolUpdates.some((c) => c.participants.every((p) => p.userId !== alice.id)), {
      what: 'conversation:updated to carol',
    });
    const groupHistory = await get<{ messages: PublicMessage[] }>(
      carol,
      `/conversations/${group.id}/messages?after=0`,
    );
    expect(groupHistory.body.messages.map((m) => m.senderId)).to.deep.equal([alice.id]);
    // The list (participants and last message) shows her the same way.
    const bobList = await get<{ conversations: Array<PublicConversation & { lastMessage: PublicMessage }> }>(
      bob,
      '/conversations',
    );
    const listed = bobList.body.conversations.find((c) => c.id === directId)!;
    expect(listed.participants.find((p) => p.userId === alice.id)).to.include(DELETED);

    // Requests and blocks are gone; the row stays without name or password hash.
    const [eveRequests, relations, [row]] = await Promise.all([
      get<{ requests: unknown[] }>(eve, '/friends/requests'),
      rows<{ n: number }>(
        knex,
        `SELECT (SELECT count(*) FROM friend_requests WHERE from_user_id = ? OR to_user_id = ?)
              + (SELECT count(*) FROM blocks WHERE blocker_id = ? OR blocked_id = ?)
              + (SELECT count(*) FROM friendships WHERE user_low = ? OR user_high = ?)
              + (SELECT count(*) FROM sessions WHERE user_id = ?) AS n`,
        [alice.id, alice.id, alice.id, alice.id, alice.id, alice.id, alice.id],
      ),
      rows<{
        username: string | null;
        password_hash: string | null;
        display_name: string;
        deleted_at: Date | null;
      }>(knex, 'SELECT username, password_hash, display_name, deleted_at FROM users WHERE id = ?', [
        alice.id,
      ]),
    ]);
    expect(eveRequests.body.requests).to.deep.equal([]);
    expect(Number(relations[0]!.n)).to.equal(0);
    expect(row).to.include({ username: null, password_hash: null, display_name: 'Deleted user' });
    expect(row!.deleted_at).to.be.instanceOf(Date);

    // Nobody finds her by name, and the name is free again (in any case).
    expectError(await get(bob, `/users?username=${alice.username}`), 404, 'USER_NOT_FOUND');
    const reborn = await request<AuthResponse>(nodes.b.url, 'POST', '/auth/signup', {
      body: { username: alice.username.toLowerCase(), password: PASSWORD },
    });
    expect(reborn.status).to.equal(201);
    expect(reborn.body.user.id).not.to.equal(alice.id);
    expect((await get<{ user: PublicUser }>(bob, `/users?username=${alice.username}`)).body.user.id).to.equal(
      reborn.body.user.id,
    );
    // The newcomer inherits nothing: no friends, no conversations.
    const newcomer = { ...reborn.body, id: reborn.body.user.id, username: alice.username, sessionId: '' };
    expect((await get<{ friends: unknown[] }>(newcomer, '/friends')).body.friends).to.deep.equal([]);
    expect(
      (await get<{ conversations: unknown[] }>(newcomer, '/conversations')).body.conversations,
    ).to.deep.equal([]);
  });

  it('a deleted account cannot be deleted twice nor renamed, and GET /users/:id answers 404 for nobody', async () => {
    const alice = await signup();
    const keep = await request<AuthResponse>(nodes.a.url, 'POST', '/auth/login', {
      body: { username: alice.username, password: PASSWORD },
    });
    const [a, b] = await Promise.all([
      request(nodes.a.url, 'DELETE', '/users/me', { token: alice.token, body: { password: PASSWORD } }),
      request(nodes.b.url, 'DELETE', '/users/me', { token: keep.body.token, body: { password: PASSWORD } }),
    ]);
    // Both were authenticated before either committed; each answers 204 or, once the other won, 401.
    expect([a.status, b.status]).to.include(204);
    for (const r of [a, b]) expect(r.status).to.be.oneOf([204, 401]);
    expectError(
      await request(nodes.a.url, 'PATCH', '/users/me', { token: alice.token, body: { displayName: 'back' } }),
      401,
      'UNAUTHORIZED',
    );
    const other = await newUser(nodes.a);
    expectError(await get(other, `/users/${randomUUID()}`), 404, 'USER_NOT_FOUND');
    expectError(await get(other, '/users/not-a-uuid'), 404, 'NOT_FOUND');
  });
});
