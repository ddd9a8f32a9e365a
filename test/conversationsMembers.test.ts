import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import type { PublicConversation, PublicMessage, PublicParticipant } from '../lib/protocol/index.js';
import { joinedSince, recordRemoval } from '../lib/conversations/queries.js';
import { MAX_GROUP_PARTICIPANTS } from '../lib/protocol/schemas.js';
import {
  seqState,
  createGroup,
  expectOk,
  friendsOf,
  newUser,
  record,
  send,
  subscribe,
} from './helpers/chat.js';
import { expectError, type ErrorResponse } from './helpers/errors.js';
import { useTwoNodes } from './helpers/nodes.js';
import { request } from './helpers/http.js';
import { letThroughAfterAWait } from './helpers/postgres.js';
import type { TestUser } from './helpers/users.js';
import { insertFriendship } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

interface ListItem extends PublicConversation {
  lastMessage: PublicMessage | null;
  unreadCount: number;
}

describe('conversation members and reading over REST', function () {
  const { a: server, b: other, pool } = useTwoNodes();

  const api = <T = ErrorResponse>(method: string, path: string, user: TestUser | undefined, body?: unknown) =>
    request<T>(server.url, method, path, { token: user?.token, body });

  describe('members', () => {
    it('lets the owner add a friend (201), who is told and can then read; refuses the rest', async () => {
      const owner = await newUser(server);
      const [member, newcomer, another] = await friendsOf(server, owner, 3);
      const stranger = await newUser(server);
      const group = await createGroup(server.url, owner, [member!]);
      const ownerSocket = await pool.open(server.url, owner);
      expectOk(await send(ownerSocket, group.id, 'before the newcomer'));
      const newcomerAdded = record(await pool.open(other.url, newcomer!), 'conversation:added');
      // Warm the other node's membership cache with "not a participant" first.
      expectError(
        await request(other.url, 'GET', `/conversations/${group.id}/messages`, { token: newcomer!.token }),
        404,
        'NOT_FOUND',
      );
      const res = await api<{ participant: Record<string, unknown> }>(
        'POST',
        `/conversations/${group.id}/participants`,
        owner,
        { userId: newcomer!.id },
      );
      expect(res.status).to.equal(201);
      expect(res.body.participant).to.include({
        userId: newcomer!.id,
        username: newcomer!.username,
        role: 'member',
        lastReadSeq: 0,
      });
      await waitFor(() => newcomerAdded.length === 1, { what: 'conversation:added to the newcomer' });
      expect(newcomerAdded[0]!.participants.map((p) => p.userId)).to.include(newcomer!.id);
      // The other node's cache was invalidated through the control bus.
      await waitFor(
        async () =>
          (await request(other.url, 'GET', `/conversations/${group.id}/messages`, { token: newcomer!.token }))
            .status === 200,
        { what: 'the newcomer to read on the other node' },
      );

      expectError(
        await api('POST', `/conversations/${group.id}/participants`, owner, { userId: newcomer!.id }),
        409,
        'ALREADY_PARTICIPANT',
      );
      expectError(
        await api('POST', `/conversations/${group.id}/participants`, owner, { userId: stranger.id }),
        403,
        'NOT_FRIENDS',
      );
      expectError(
        await api('POST', `/conversations/${group.id}/participants`, member, { userId: another!.id }),
        403,
        'FORBIDDEN',
      );
      expectError(
        await api('POST', `/conversations/${group.id}/participants`, stranger, { userId: another!.id }),
        404,
        'NOT_FOUND',
      );
      expectError(
        await api('POST', `/conversations/${group.id}/participants`, owner, { userId: 'x' }),
        400,
        'VALIDATION_FAILED',
      );
    });

    it(`refuses an add past ${MAX_GROUP_PARTICIPANTS} participants (FORBIDDEN), also when two adds race for the last place`, async () => {
      const owner = await newUser(server);
      const [member, last1, last2] = await friendsOf(server, owner, 3);
      const group = await createGroup(server.url, owner, [member!]);
      // Fill the group to one below the cap with members written straight into the database.
      const { knex } = server.services.db;
      const fillers = MAX_GROUP_PARTICIPANTS - 3;
      const ids = (
        await knex.raw<{ rows: Array<{ id: string }> }>(
          `INSERT INTO users (username, display_name, password_hash)
         SELECT 'fill_' || substr(md5(random()::text), 1, 12) || '_' || n, 'filler', 'not-a-real-hash'
         FROM generate_series(1, ?::int) AS n RETURNING id`,
          [fillers],
        )
      ).rows;
      await knex('conversation_participants').insert(
        ids.map(({ id }) => ({ conversation_id: group.id, user_id: id, role: 'member' })),
      );
      const add = (node: typeof server, user: TestUser) =>
        request<{ participant: PublicParticipant }>(
          node.url,
          'POST',
          `/conversations/${group.id}/participants`,
          {
            token: owner.token,
            body: { userId: user.id },
          },
        );
      // One place is left: two adds on two nodes race for it, and exactly one gets it.
      const answers = await Promise.all([add(server, last1!), add(other, last2!)]);
      expect(answers.map((r) => r.status).sort()).to.deep.equal([201, 403]);
      const refused = answers.find((r) => r.status === 403)!;
      expectError(refused, 403, 'FORBIDDEN');
      expect(JSON.stringify(refused.body)).to.include(`at most ${MAX_GROUP_PARTICIPANTS} participants`);
      const count = await knex('conversation_participants')
        .where({ conversation_id: group.id })
        .count({ n: '*' });
      expect(Number(count[0]!.n)).to.equal(MAX_GROUP_PARTICIPANTS);
    });

    it('lets the owner remove a member and anyone leave; the oldest member inherits ownership', async () => {
      const owner = await newUser(server);
      const [first, second, third] = await friendsOf(server, owner, 3);
      const group = await createGroup(server.url, owner, [first!]);
      // Joined later, one at a time: first is the oldest member.
      for (const u of [second!, third!]) {
        expect(
          (await api('POST', `/conversations/${group.id}/participants`, owner, { userId: u.id })).status,
        ).to.equal(201);
      }
      const thirdSocket = await pool.open(other.url, third!);
      const removed = record(thirdSocket, 'conversation:removed');
      await subscribe(thirdSocket, group.id);

      expectError(
        await api('DELETE', `/conversations/${group.id}/participants/${third!.id}`, first),
        403,
        'FORBIDDEN',
      );
      expect(
        (await api('DELETE', `/conversations/${group.id}/participants/${third!.id}`, owner)).status,
      ).to.equal(204);
      await waitFor(() => removed.length === 1, { what: 'conversation:removed' });
      expect(removed[0]).to.deep.equal({ conversationId: group.id });
      expectError(await api('GET', `/conversations/${group.id}`, third), 404, 'NOT_FOUND');
      expectError(
        await api('DELETE', `/conversations/${group.id}/participants/${third!.id}`, owner),
        404,
        'NOT_FOUND',
      );

      // The owner leaves: the member who joined first becomes owner.
      expect(
        (await api('DELETE', `/conversations/${group.id}/participants/${owner.id}`, owner)).status,
      ).to.equal(204);
      const afterOwner = await api<{ conversation: PublicConversation }>(
        'GET',
        `/conversations/${group.id}`,
        second,
      );
      expect(afterOwner.body.conversation.participants.map((p) => [p.userId, p.role])).to.deep.equal([
        [first!.id, 'owner'],
        [second!.id, 'member'],
      ]);
      expect((await api('PATCH', `/conversations/${group.id}`, first, { title: 'Mine' })).status).to.equal(
        200,
      );

      // A member leaves; then the last one: the conversation remains, visible to nobody.
      expect(
        (await api('DELETE', `/conversations/${group.id}/participants/${second!.id}`, second)).status,
      ).to.equal(204);
      expect(
        (await api('DELETE', `/conversations/${group.id}/participants/${first!.id}`, first)).status,
      ).to.equal(204);
      for (const u of [owner, first!, second!, third!]) {
        expectError(await api('GET', `/conversations/${group.id}`, u), 404, 'NOT_FOUND');
      }
      expectError(
        await api('DELETE', `/conversations/${group.id}/participants/abc`, first),
        404,
        'NOT_FOUND',
      );
    });
  });

  describe('reading', () => {
    it('records each removal and leave with its count, for nodes that miss its event; a later removal deletes records over a day old', async () => {
      const owner = await newUser(server);
      const [removed, leaver, last] = (await friendsOf(server, owner, 3)) as [TestUser, TestUser, TestUser];
      const group = await createGroup(server.url, owner, [removed, leaver, last]);
      expect(
        (await api('DELETE', `/conversations/${group.id}/participants/${removed.id}`, owner)).status,
      ).to.equal(204);
      expect(
        (await api('DELETE', `/conversations/${group.id}/participants/${leaver.id}`, leaver)).status,
      ).to.equal(204);
      const { knex } = server.services.db;
      const records = () =>
        knex('participant_removals')
          .where('conversation_id', group.id)
          .orderBy('removals')
          .select('removals', 'user_id');
      expect(await records()).to.deep.equal([
        { removals: 1, user_id: removed.id },
        { removals: 2, user_id: leaver.id },
      ]);
      await knex('participant_removals')
        .where({ conversation_id: group.id, removals: 1 })
        .update({ removed_at: knex.raw("now() - interval '25 hours'") });
      expect(
        (await api('DELETE', `/conversations/${group.id}/participants/${last.id}`, owner)).status,
      ).to.equal(204);
      expect(await records()).to.deep.equal([
        { removals: 2, user_id: leaver.id },
        { removals: 3, user_id: last.id },
      ]);
    });

    it('dates a removal’s record when it is written, not when its transaction began (it may wait for the lock)', async () => {
      const owner = await newUser(server);
      const [member] = (await friendsOf(server, owner, 1)) as [TestUser];
      const group = await createGroup(server.url, owner, [member]);
      const { knex } = server.services.db;
      const { began, recorded } = await knex.transaction(async (trx) => {
        const [{ now }] = (await trx.raw<{ rows: Array<{ now: Date }> }>('SELECT now()')).rows as [
          { now: Date },
        ];
        // The removal's wait for the conversation's lock.
        await trx.raw('SELECT pg_sleep(0.2)');
        await recordRemoval(trx, group.id, member.id, 1);
        const [row] = (await trx('participant_removals').where('conversation_id', group.id)) as Array<{
          removed_at: Date;
        }>;
        return { began: now, recorded: row!.removed_at };
      });
      expect(recorded.getTime() - began.getTime()).to.be.at.least(200);
    });

    it('dates an addition when its row is written, not when its transaction began: one that waited for the group’s lock is among the additions since it was let through', async () => {
      const owner = await newUser(server);
      const [member, newcomer] = (await friendsOf(server, owner, 2)) as [TestUser, TestUser];
      const group = await createGroup(server.url, owner, [member]);
      const { knex } = server.services.db;
      const { released, result: added } = await letThroughAfterAWait(
        knex,
        (holder) => holder('conversations').where('id', group.id).forUpdate(),
        () => api('POST', `/conversations/${group.id}/participants`, owner, { userId: newcomer.id }),
      );
      expect(added.status).to.equal(201);
      const [row] = await knex('conversation_participants')
        .where({ conversation_id: group.id, user_id: newcomer.id })
        .select<Array<{ joined_at: Date }>>('joined_at');
      expect(row!.joined_at.getTime()).to.be.at.least(released.getTime());
      // What a node that was not listening since then looks for (lib/realtime/revalidation.ts).
      const joined = await joinedSince(knex, [newcomer.id], released, 10);
      expect(joined.map(({ conversation }) => conversation.id)).to.deep.equal([group.id]);
    });

    it('lists my conversations by most recent activity, with lastMessage and unreadCount', async () => {
      const me = await newUser(server);
      const [friend] = await friendsOf(server, me, 1);
      const older = await createGroup(server.url, me, [friend!], 'older');
      const middle = await createGroup(server.url, me, [friend!], 'middle');
      const newer = await createGroup(server.url, me, [friend!], 'newer');
      const list = async (user: TestUser) =>
        (await api<{ conversations: ListItem[] }>('GET', '/conversations', user)).body.conversations;

      expect((await list(me)).map((c) => c.title)).to.deep.equal(['newer', 'middle', 'older']);
      const friendSocket = await pool.open(other.url, friend!);
      for (let n = 1; n <= 3; n += 1) expectOk(await send(friendSocket, older.id, `hello ${n}`));
      const mine = await list(me);
      expect(mine.map((c) => c.title)).to.deep.equal(['older', 'newer', 'middle']);
      const top = mine[0]!;
      expect(top.lastSeq).to.equal(3);
      expect(top.unreadCount).to.equal(3);
      expect(top.lastMessage).to.include({ seq: 3, body: 'hello 3', senderId: friend!.id });
      expect(mine[1]!.lastMessage).to.equal(null);
      expect(mine[1]!.unreadCount).to.equal(0);
      // Sending moves the sender's own marker: the friend has nothing unread.
      expect((await list(friend!)).find((c) => c.id === older.id)!.unreadCount).to.equal(0);

      expect((await api('POST', `/conversations/${older.id}/read`, me, { seq: 2 })).status).to.equal(204);
      expect((await list(me)).find((c) => c.id === older.id)!.unreadCount).to.equal(1);
      expect((await list(me)).map((c) => c.id)).to.include.members([middle.id, newer.id]);
    });

    it('shows a conversation to its participants only: 404 for others, for unknown and for non-UUID ids', async () => {
      const owner = await newUser(server);
      const group = await createGroup(server.url, owner, await friendsOf(server, owner, 1));
      const outsider = await newUser(server);
      const mine = await api<{ conversation: PublicConversation }>(
        'GET',
        `/conversations/${group.id}`,
        owner,
      );
      expect(mine.status).to.equal(200);
      expect(mine.body.conversation).to.deep.equal(group);
      const notFound = await api('GET', `/conversations/${group.id}`, outsider);
      const unknown = await api('GET', `/conversations/${randomUUID()}`, outsider);
      expectError(notFound, 404, 'NOT_FOUND');
      expectError(unknown, 404, 'NOT_FOUND');
      expect(notFound.text).to.equal(unknown.text);
      expectError(await api('GET', '/conversations/not-a-uuid', owner), 404, 'NOT_FOUND');
      expectError(await api('GET', `/conversations/${group.id}`, undefined), 401, 'UNAUTHORIZED');
      const list = await api<{ conversations: ListItem[] }>('GET', '/conversations', outsider);
      expect(list.body.conversations).to.deep.equal([]);
    });

    it('answers a non-participant NOT_FOUND on every REST path of a conversation', async () => {
      const owner = await newUser(server);
      const [member] = await friendsOf(server, owner, 1);
      const group = await createGroup(server.url, owner, [member!]);
      const outsider = await newUser(server);
      await insertFriendship(server.services.db.knex, outsider.id, member!.id);
      const base = `/conversations/${group.id}`;
      const calls: Array<[string, string, unknown]> = [
        ['GET', base, undefined],
        ['PATCH', base, { title: 'mine' }],
        ['POST', `${base}/participants`, { userId: member!.id }],
        ['DELETE', `${base}/participants/${member!.id}`, undefined],
        ['DELETE', `${base}/participants/${outsider.id}`, undefined],
        ['PUT', `${base}/messages/${randomUUID()}`, { body: 'let me in' }],
        ['GET', `${base}/messages`, undefined],
        ['GET', `${base}/messages?after=0`, undefined],
        ['POST', `${base}/read`, { seq: 1 }],
      ];
      for (const [method, path, body] of calls) {
        const res = await api(method, path, outsider, body);
        expectError(res, 404, 'NOT_FOUND');
      }
      const stored = await seqState(server.services.db.knex, group.id);
      expect(stored).to.deep.equal({ lastSeq: 0, seqs: [] });
      const still = await api<{ conversation: PublicConversation }>('GET', base, owner);
      expect(still.body.conversation.title).to.equal(group.title);
      expect(still.body.conversation.participants).to.have.length(2);
    });
  });
});
