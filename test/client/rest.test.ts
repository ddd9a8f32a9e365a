import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { XFChatClient } from '../../lib/client/index.js';
import { newUser, putMessage } from '../helpers/chat.js';
import { uniqueUsername } from '../helpers/users.js';
import { useNode } from '../helpers/nodes.js';
import { failure, useClientPool } from './fixtures.js';

const PASSWORD = 'correct horse battery';

describe('client SDK: REST helpers', function () {
  const { server } = useNode();
  const pool = useClientPool();

  async function signedUp(
    displayName?: string,
  ): Promise<{ client: XFChatClient; id: string; username: string }> {
    const client = pool.open(server.url);
    const username = uniqueUsername('sdk');
    const { user } = await client.signup({ username, password: PASSWORD, displayName });
    return { client, id: user.id, username };
  }

  it('signs up, logs in, reads me, and logs out of one session, then of all', async () => {
    const client = pool.open(server.url);
    const username = uniqueUsername('Sdk');
    const signup = await client.signup({ username, password: PASSWORD, displayName: 'Ada' });
    expect(signup.user).to.include({ username, displayName: 'Ada' });
    expect(client.token).to.equal(signup.token);
    expect(await client.me()).to.deep.equal(signup.user);

    const other = pool.open(server.url);
    const login = await other.login(username.toLowerCase(), PASSWORD);
    expect(login.user.id).to.equal(signup.user.id);
    expect((await other.me()).id).to.equal(signup.user.id);

    await client.logout();
    expect(client.token).to.equal(undefined);
    expect(client.refreshToken).to.equal(undefined);
    // Logout ends this session only: the other client (another session) stays signed in.
    expect((await other.me()).id).to.equal(signup.user.id);
    await other.logoutAll();
    expect(other.token).to.equal(undefined);
  });

  // TYPES hunt: these answers are never a deleted account, but were typed `username: string | null`, so the README's
  // `friends.sendRequest(b.username)` did not compile in TypeScript. The annotations below are the check (tsc runs in
  // `npm test`); the values are checked too.
  it('types the username of a signup, a login, me, a profile change, a lookup and a search as a string', async () => {
    const alice = await signedUp();
    const bob = await signedUp();
    const usernames: string[] = [
      (await alice.client.login(alice.username, PASSWORD)).user.username,
      (await alice.client.me()).username,
      (await alice.client.updateProfile({ displayName: 'Alice' })).username,
      (await alice.client.users.findByUsername(bob.username)).username,
      ...(await alice.client.users.search(bob.username)).map((user) => user.username),
    ];
    expect(usernames).to.deep.equal([
      alice.username,
      alice.username,
      alice.username,
      bob.username,
      bob.username,
    ]);
    await alice.client.friends.sendRequest((await alice.client.users.findByUsername(bob.username)).username);
  });

  it('surfaces server errors as XFChatError with code, status, message and details', async () => {
    const client = pool.open(server.url);
    const badLogin = await failure(client.login(uniqueUsername(), PASSWORD));
    expect(badLogin).to.include({ code: 'INVALID_CREDENTIALS', status: 401 });
    expect(badLogin.message).to.be.a('string').and.not.equal('');

    const invalid = await failure(client.signup({ username: 'x', password: 'short' }));
    expect(invalid).to.include({ code: 'VALIDATION_FAILED', status: 400 });
    expect(invalid.details).to.have.keys('username', 'password');

    const { username } = await signedUp();
    const taken = await failure(pool.open(server.url).signup({ username, password: PASSWORD }));
    expect(taken).to.include({ code: 'USERNAME_TAKEN', status: 409 });
  });

  it('reports an unreachable server as NETWORK_ERROR with status 0', async () => {
    const client = pool.open('http://127.0.0.1:9');
    const error = await failure(client.login('nobody', PASSWORD));
    expect(error).to.include({ code: 'NETWORK_ERROR', status: 0 });
  });

  it('finds users by username and runs the friend request flow', async () => {
    const alice = await signedUp();
    const bob = await signedUp();
    const carol = await signedUp();

    expect((await alice.client.users.findByUsername(bob.username.toUpperCase())).id).to.equal(bob.id);
    expect(await failure(alice.client.users.findByUsername(uniqueUsername()))).to.include({
      code: 'USER_NOT_FOUND',
      status: 404,
    });

    // Prefix search: by the beginning of a username, case-insensitively, never yourself.
    const prefix = bob.username.slice(0, -3).toUpperCase();
    expect((await alice.client.users.search(prefix)).map((u) => u.id)).to.deep.equal([bob.id]);
    expect(await bob.client.users.search(bob.username)).to.deep.equal([]);
    expect((await alice.client.users.search('sdk_', 1)).length).to.equal(1);

    const sent = await alice.client.friends.sendRequest(bob.username);
    expect(sent).to.deep.include({ status: 'pending' });
    expect(sent.from.id).to.equal(alice.id);
    expect((await alice.client.friends.listRequests('outgoing')).map((r) => r.id)).to.deep.equal([sent.id]);
    expect((await bob.client.friends.listRequests()).map((r) => r.id)).to.deep.equal([sent.id]);
    expect(await failure(alice.client.friends.sendRequest(bob.username))).to.include({
      code: 'REQUEST_EXISTS',
    });

    const accepted = await bob.client.friends.accept(sent.id);
    expect(accepted.status).to.equal('accepted');
    expect((await alice.client.friends.list()).map((f) => f.user.id)).to.deep.equal([bob.id]);
    expect(await failure(bob.client.friends.accept(sent.id))).to.include({ code: 'REQUEST_NOT_PENDING' });

    const toCarol = await alice.client.friends.sendRequest(carol.username);
    expect((await carol.client.friends.decline(toCarol.id)).status).to.equal('declined');
    const again = await alice.client.friends.sendRequest(carol.username);
    await alice.client.friends.cancel(again.id);
    expect(await carol.client.friends.listRequests()).to.deep.equal([]);

    await alice.client.friends.unfriend(bob.id);
    expect(await alice.client.friends.list()).to.deep.equal([]);
  });

  it('blocks and unblocks a user', async () => {
    const alice = await signedUp();
    const bob = await signedUp();
    await alice.client.blocks.block(bob.id);
    expect((await alice.client.blocks.list()).map((u) => u.id)).to.deep.equal([bob.id]);
    expect(await failure(bob.client.friends.sendRequest(alice.username))).to.include({
      code: 'BLOCKED',
      status: 403,
    });
    await alice.client.blocks.unblock(bob.id);
    expect(await alice.client.blocks.list()).to.deep.equal([]);
  });

  it('manages conversations and reads history and read markers', async () => {
    const alice = await signedUp();
    const bob = await signedUp();
    const carol = await signedUp();
    for (const friend of [bob, carol]) {
      const request = await alice.client.friends.sendRequest(friend.username);
      await friend.client.friends.accept(request.id);
    }

    const direct = await alice.client.conversations.createDirect(bob.id);
    expect(direct.type).to.equal('direct');
    expect((await bob.client.conversations.createDirect(alice.id)).id).to.equal(direct.id);

    const group = await alice.client.conversations.createGroup('Trio', [bob.id, carol.id]);
    expect(group.participants.map((p) => p.userId).sort()).to.deep.equal([alice.id, bob.id, carol.id].sort());
    expect((await alice.client.conversations.rename(group.id, 'Renamed')).title).to.equal('Renamed');
    expect(await failure(bob.client.conversations.rename(group.id, 'Nope'))).to.include({
      code: 'FORBIDDEN',
    });
    await alice.client.conversations.removeParticipant(group.id, carol.id);
    expect(await failure(carol.client.conversations.get(group.id))).to.include({
      code: 'NOT_FOUND',
      status: 404,
    });
    expect((await alice.client.conversations.addParticipant(group.id, carol.id)).userId).to.equal(carol.id);
    await carol.client.conversations.leave(group.id);
    expect(await failure(carol.client.conversations.get(group.id))).to.include({ code: 'NOT_FOUND' });
    expect((await alice.client.conversations.get(group.id)).participants).to.have.length(2);

    const sent = [];
    for (let i = 1; i <= 5; i++)
      sent.push(await alice.client.messages.put(direct.id, `m-${i}`, `hello ${i}`));
    expect(sent.map((m) => m.seq)).to.deep.equal([1, 2, 3, 4, 5]);
    // The same clientMsgId again returns the stored message: nothing new is written.
    expect((await alice.client.messages.put(direct.id, 'm-3', 'hello 3')).id).to.equal(sent[2]!.id);

    const newest = await bob.client.messages.before(direct.id, undefined, 2);
    expect(newest.messages.map((m) => m.seq)).to.deep.equal([4, 5]);
    expect(newest.hasMore).to.equal(true);
    const older = await bob.client.messages.before(direct.id, 4, 10);
    expect(older.messages.map((m) => m.seq)).to.deep.equal([1, 2, 3]);
    expect(older.hasMore).to.equal(false);
    const after = await bob.client.messages.after(direct.id, 2, 2);
    expect(after.messages.map((m) => m.seq)).to.deep.equal([3, 4]);
    expect(after.hasMore).to.equal(true);
    // With the conversation's counters, read with the page: nothing was edited, so the version is the last seq's.
    expect({ lastSeq: after.lastSeq, version: after.version }).to.deep.equal({ lastSeq: 5, version: 5 });

    let summary = (await bob.client.conversations.list()).find((c) => c.id === direct.id)!;
    expect(summary.unreadCount).to.equal(5);
    expect(summary.lastMessage?.seq).to.equal(5);
    await bob.client.messages.read(direct.id, 3);
    summary = (await bob.client.conversations.list()).find((c) => c.id === direct.id)!;
    expect(summary.unreadCount).to.equal(2);
  });

  it('lists every conversation of mine, also one that got a message between two pages (it moved above the cursor)', async () => {
    const me = await newUser(server);
    const { knex } = server.services.db;
    // 201 groups of one (me), the oldest activity last: pages of 200 put the oldest alone on page 2.
    const ids: string[] = [];
    for (let i = 0; i < 201; i += 1) {
      const [row] = await knex('conversations')
        .insert({
          type: 'group',
          title: `g${i}`,
          created_by: me.id,
          last_activity_at: knex.raw(`now() - make_interval(secs => ?)`, [1000 - i]),
        })
        .returning<Array<{ id: string }>>('id');
      ids.push(row!.id);
      await knex('conversation_participants').insert({
        conversation_id: row!.id,
        user_id: me.id,
        role: 'owner',
      });
    }
    const oldest = ids[0]!;
    let pages = 0;
    const fetchWithAMessageBetweenPages: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      const url = String(input instanceof Request ? input.url : input);
      if (new URL(url).pathname === '/conversations' && (init?.method ?? 'GET') === 'GET') {
        pages += 1;
        if (pages === 1) {
          // A message arrives in the oldest conversation while the first page is on its way to the client.
          const put = await putMessage(server.url, me, oldest, randomUUID(), { body: 'hello' });
          expect(put.status).to.equal(201);
        }
      }
      return response;
    };
    const client = pool.open(server.url, { token: me.token, fetch: fetchWithAMessageBetweenPages });
    const listed = await client.conversations.list();
    expect(pages).to.be.at.least(2);
    expect(listed.map((c) => c.id)).to.include(oldest);
    expect(new Set(listed.map((c) => c.id)).size).to.equal(201);
  });
});
