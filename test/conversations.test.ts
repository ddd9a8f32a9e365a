import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import type { ConversationListItem, PublicConversation } from '../lib/protocol/index.js';
import { createGroup, friendsOf, newUser, putMessage, record, rows } from './helpers/chat.js';
import { expectError, type ErrorResponse } from './helpers/errors.js';
import { useTwoNodes } from './helpers/nodes.js';
import { request } from './helpers/http.js';
import type { TestUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

describe('conversations over REST', function () {
  const { a: server, b: other, pool } = useTwoNodes();

  const api = <T = ErrorResponse>(method: string, path: string, user: TestUser | undefined, body?: unknown) =>
    request<T>(server.url, method, path, { token: user?.token, body });

  async function directCount(a: string, b: string): Promise<number> {
    const key = a < b ? `${a}:${b}` : `${b}:${a}`;
    const [row] = await rows<{ n: number }>(
      server.services.db.knex,
      'SELECT count(*)::int AS n FROM conversations WHERE direct_key = ?',
      [key],
    );
    return row!.n;
  }

  describe('direct conversations', () => {
    it('creates one between friends (201), tells both users, and returns it again (200) from either side', async () => {
      const alice = await newUser(server);
      const [bob] = await friendsOf(server, alice, 1);
      const aliceAdded = record(await pool.open(server.url, alice), 'conversation:added');
      const bobAdded = record(await pool.open(other.url, bob!), 'conversation:added');
      const created = await api<{ conversation: PublicConversation }>('POST', '/conversations', alice, {
        type: 'direct',
        userId: bob!.id,
      });
      expect(created.status).to.equal(201);
      const c = created.body.conversation;
      expect(c).to.include({ type: 'direct', title: null, createdBy: alice.id, lastSeq: 0 });
      expect(c.createdAt).to.match(ISO);
      expect(c.participants.map((p) => p.userId).sort()).to.deep.equal([alice.id, bob!.id].sort());
      for (const p of c.participants) {
        expect(Object.keys(p).sort()).to.deep.equal(
          ['displayName', 'joinedAt', 'lastReadSeq', 'role', 'userId', 'username'].sort(),
        );
        expect(p.role).to.equal('member');
        expect(p.lastReadSeq).to.equal(0);
      }
      await waitFor(() => aliceAdded.length === 1 && bobAdded.length === 1, {
        what: 'conversation:added to both',
      });
      expect(bobAdded[0]).to.deep.equal(c);

      const again = await api<{ conversation: PublicConversation }>('POST', '/conversations', bob, {
        type: 'direct',
        userId: alice.id,
      });
      expect(again.status).to.equal(200);
      expect(again.body.conversation.id).to.equal(c.id);
      expect(await directCount(alice.id, bob!.id)).to.equal(1);
    });

    it('makes one conversation out of concurrent creations from both sides, never a 500', async () => {
      const alice = await newUser(server);
      const [bob] = await friendsOf(server, alice, 1);
      const responses = await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          request<{ conversation: PublicConversation }>(
            i % 2 ? other.url : server.url,
            'POST',
            '/conversations',
            {
              token: i % 3 ? alice.token : bob!.token,
              body: { type: 'direct', userId: i % 3 ? bob!.id : alice.id },
            },
          ),
        ),
      );
      expect(responses.map((r) => r.status).sort()).to.deep.equal([
        200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 201,
      ]);
      expect(new Set(responses.map((r) => r.body.conversation.id)).size).to.equal(1);
      expect(await directCount(alice.id, bob!.id)).to.equal(1);
    });

    it('returns the existing one after an unfriending (200), and refuses it while either side blocks (BLOCKED)', async () => {
      const alice = await newUser(server);
      const [bob] = await friendsOf(server, alice, 1);
      const created = await api<{ conversation: PublicConversation }>('POST', '/conversations', alice, {
        type: 'direct',
        userId: bob!.id,
      });
      expect(created.status).to.equal(201);
      expect((await api('DELETE', `/friends/${bob!.id}`, alice)).status).to.equal(204);
      for (const [me, them] of [
        [alice, bob!],
        [bob!, alice],
      ] as const) {
        const again = await api<{ conversation: PublicConversation }>('POST', '/conversations', me, {
          type: 'direct',
          userId: them.id,
        });
        expect(again.status).to.equal(200);
        expect(again.body.conversation.id).to.equal(created.body.conversation.id);
      }
      expect((await api('POST', '/blocks', bob, { userId: alice.id })).status).to.equal(204);
      for (const [me, them] of [
        [alice, bob!],
        [bob!, alice],
      ] as const) {
        expectError(
          await api('POST', '/conversations', me, { type: 'direct', userId: them.id }),
          403,
          'BLOCKED',
        );
      }
      // History stays readable.
      const read = await api('GET', `/conversations/${created.body.conversation.id}`, alice);
      expect(read.status).to.equal(200);
      expect(await directCount(alice.id, bob!.id)).to.equal(1);
    });

    it('refuses a non-friend (NOT_FRIENDS), a blocked pair (BLOCKED), myself and bad input', async () => {
      const alice = await newUser(server);
      const stranger = await newUser(server);
      expectError(
        await api('POST', '/conversations', alice, { type: 'direct', userId: stranger.id }),
        403,
        'NOT_FRIENDS',
      );
      expectError(
        await api('POST', '/conversations', alice, { type: 'direct', userId: randomUUID() }),
        403,
        'NOT_FRIENDS',
      );
      const [blocker] = await friendsOf(server, alice, 1);
      await server.services.db.knex('blocks').insert({ blocker_id: blocker!.id, blocked_id: alice.id });
      expectError(
        await api('POST', '/conversations', alice, { type: 'direct', userId: blocker!.id }),
        403,
        'BLOCKED',
      );
      expectError(
        await api('POST', '/conversations', blocker, { type: 'direct', userId: alice.id }),
        403,
        'BLOCKED',
      );
      expectError(
        await api('POST', '/conversations', alice, { type: 'direct', userId: alice.id }),
        400,
        'VALIDATION_FAILED',
      );
      expectError(
        await api('POST', '/conversations', alice, { type: 'direct', userId: 'nope' }),
        400,
        'VALIDATION_FAILED',
      );
      expectError(await api('POST', '/conversations', alice, { type: 'channel' }), 400, 'VALIDATION_FAILED');
      expectError(await api('POST', '/conversations', alice, ['direct']), 400, 'VALIDATION_FAILED');
      expectError(
        await api('POST', '/conversations', undefined, { type: 'direct', userId: alice.id }),
        401,
        'UNAUTHORIZED',
      );
      expect(await directCount(alice.id, stranger.id)).to.equal(0);
    });

    it('cannot be renamed, extended or left (FORBIDDEN)', async () => {
      const alice = await newUser(server);
      const [bob, carol] = await friendsOf(server, alice, 2);
      const c = (
        await api<{ conversation: PublicConversation }>('POST', '/conversations', alice, {
          type: 'direct',
          userId: bob!.id,
        })
      ).body.conversation;
      expectError(await api('PATCH', `/conversations/${c.id}`, alice, { title: 'x' }), 403, 'FORBIDDEN');
      expectError(
        await api('POST', `/conversations/${c.id}/participants`, alice, { userId: carol!.id }),
        403,
        'FORBIDDEN',
      );
      expectError(
        await api('DELETE', `/conversations/${c.id}/participants/${alice.id}`, alice),
        403,
        'FORBIDDEN',
      );
      expectError(
        await api('DELETE', `/conversations/${c.id}/participants/${bob!.id}`, alice),
        403,
        'FORBIDDEN',
      );
    });
  });

  describe('groups', () => {
    it('creates a group with the creator as owner and tells every participant', async () => {
      const owner = await newUser(server);
      const members = await friendsOf(server, owner, 3);
      const added = await Promise.all(
        [owner, ...members].map(async (u, i) =>
          record(await pool.open(i % 2 ? other.url : server.url, u), 'conversation:added'),
        ),
      );
      const res = await api<{ conversation: PublicConversation }>('POST', '/conversations', owner, {
        type: 'group',
        title: 'Weekend 🏕️',
        participantIds: [...members.map((m) => m.id), members[0]!.id, owner.id],
      });
      expect(res.status).to.equal(201);
      const c = res.body.conversation;
      expect(c).to.include({ type: 'group', title: 'Weekend 🏕️', createdBy: owner.id, lastSeq: 0 });
      expect(c.participants).to.have.length(4);
      const roles = Object.fromEntries(c.participants.map((p) => [p.userId, p.role]));
      expect(roles).to.deep.equal({
        [owner.id]: 'owner',
        [members[0]!.id]: 'member',
        [members[1]!.id]: 'member',
        [members[2]!.id]: 'member',
      });
      await waitFor(() => added.every((a) => a.length === 1), {
        what: 'conversation:added to every participant',
      });
      expect(added.map((a) => a[0]!.id)).to.deep.equal([c.id, c.id, c.id, c.id]);
    });

    it('refuses a participant who is not my friend (NOT_FRIENDS) and bad input (400), creating nothing', async () => {
      const owner = await newUser(server);
      const [friend] = await friendsOf(server, owner, 1);
      const stranger = await newUser(server);
      const before = await api<{ conversations: unknown[] }>('GET', '/conversations', owner);
      const res = await api('POST', '/conversations', owner, {
        type: 'group',
        title: 't',
        participantIds: [friend!.id, stranger.id],
      });
      expect(expectError(res, 403, 'NOT_FRIENDS').details).to.deep.equal({ userIds: [stranger.id] });
      for (const body of [
        { type: 'group', participantIds: [] },
        { type: 'group', title: '', participantIds: [] },
        { type: 'group', title: '   ', participantIds: [] },
        { type: 'group', title: 'x'.repeat(101), participantIds: [] },
        { type: 'group', title: 't' },
        { type: 'group', title: 't', participantIds: 'all' },
        { type: 'group', title: 't', participantIds: ['not-a-uuid'] },
      ]) {
        expectError(await api('POST', '/conversations', owner, body), 400, 'VALIDATION_FAILED');
      }
      const after = await api<{ conversations: unknown[] }>('GET', '/conversations', owner);
      expect(after.body.conversations).to.have.length(before.body.conversations.length);
      // A group of one (just me) is fine.
      expect(
        (await api('POST', '/conversations', owner, { type: 'group', title: 'me', participantIds: [] }))
          .status,
      ).to.equal(201);
    });

    it('lets only the owner rename it', async () => {
      const owner = await newUser(server);
      const [member] = await friendsOf(server, owner, 1);
      const outsider = await newUser(server);
      const group = await createGroup(server.url, owner, [member!]);
      const renamed = await api<{ conversation: PublicConversation }>(
        'PATCH',
        `/conversations/${group.id}`,
        owner,
        {
          title: 'New name',
        },
      );
      expect(renamed.status).to.equal(200);
      expect(renamed.body.conversation.title).to.equal('New name');
      expectError(
        await api('PATCH', `/conversations/${group.id}`, member, { title: 'Mine now' }),
        403,
        'FORBIDDEN',
      );
      expectError(
        await api('PATCH', `/conversations/${group.id}`, outsider, { title: 'Hi' }),
        404,
        'NOT_FOUND',
      );
      expectError(
        await api('PATCH', `/conversations/${group.id}`, owner, { title: '' }),
        400,
        'VALIDATION_FAILED',
      );
      expectError(await api('PATCH', `/conversations/${group.id}`, owner, []), 400, 'VALIDATION_FAILED');
      const now = await api<{ conversation: PublicConversation }>(
        'GET',
        `/conversations/${group.id}`,
        member,
      );
      expect(now.body.conversation.title).to.equal('New name');
    });
  });

  describe('reads in one snapshot', () => {
    /** A pooled connection of node-postgres, as Knex's pg client calls it. */
    interface PgConnection {
      query: (config: { text: string }, callback: (err: Error | null, response: unknown) => void) => void;
    }

    /**
     * Holds the first statement of `server`'s matching `pattern` once PostgreSQL has answered it, before Knex hands
     * the answer back: the read it belongs to stops between that statement and the next, whether those share a
     * connection (a transaction) or not. `held` resolves then; `release()` lets the read go on; `restore()` undoes.
     */
    function holdAfter(pattern: RegExp) {
      const client = server.services.db.knex.client as { acquireConnection: () => Promise<PgConnection> };
      const acquire = client.acquireConnection;
      const wrapped = new Set<PgConnection>();
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      let heldNow!: () => void;
      const held = new Promise<void>((resolve) => (heldNow = resolve));
      let holding = false;
      client.acquireConnection = async () => {
        const connection = await acquire.call(client);
        if (!wrapped.has(connection)) {
          wrapped.add(connection);
          const query = connection.query;
          connection.query = (config, callback) => {
            if (holding || !pattern.test(config.text)) return query.call(connection, config, callback);
            holding = true;
            query.call(connection, config, (err, response) => {
              heldNow();
              void gate.then(() => callback(err, response));
            });
          };
        }
        return connection;
      };
      return {
        held,
        release,
        restore: () => {
          release();
          client.acquireConnection = acquire;
          for (const connection of wrapped) Reflect.deleteProperty(connection, 'query');
        },
      };
    }

    /** A group of a new owner and member, with one message of the member's ('first'). */
    async function groupWithOneMessage() {
      const owner = await newUser(server);
      const [member] = await friendsOf(server, owner, 1);
      const group = await createGroup(server.url, owner, [member!]);
      expect(
        (await putMessage(server.url, member!, group.id, randomUUID(), { body: 'first' })).status,
      ).to.equal(201);
      return { owner, member: member!, group };
    }

    it('GET /conversations gives an item’s lastMessage at its lastSeq when a message commits during the read', async () => {
      const { owner, member, group } = await groupWithOneMessage();
      // The member sends on the other node while the list stands between its page and its last messages.
      const hold = holdAfter(/WITH RECURSIVE ahead/);
      try {
        const listing = api<{ conversations: ConversationListItem[] }>('GET', '/conversations', owner);
        await hold.held;
        const second = await putMessage(other.url, member, group.id, randomUUID(), { body: 'second' });
        expect(second.status).to.equal(201);
        hold.release();
        const res = await listing;
        expect(res.status).to.equal(200);
        const item = res.body.conversations.find((c) => c.id === group.id)!;
        // One state: the message at lastSeq, and every marker at most lastSeq (the member's sends move theirs).
        expect(item.lastMessage?.seq, `lastSeq ${item.lastSeq}`).to.equal(item.lastSeq);
        expect(item.lastMessage?.body).to.equal(item.lastSeq === 1 ? 'first' : 'second');
        for (const p of item.participants) expect(p.lastReadSeq).to.be.at.most(item.lastSeq);
      } finally {
        hold.restore();
      }
    });

    it('GET /conversations/:id gives no lastReadSeq above lastSeq when a send commits during the read', async () => {
      const { owner, member, group } = await groupWithOneMessage();
      // The member sends on the other node (which moves their marker) while the read stands between the
      // conversation's row and its participants.
      const hold = holdAfter(
        /^select "conversations"\.\* from "conversations" where "conversations"\."id" = /,
      );
      try {
        const reading = api<{ conversation: PublicConversation }>('GET', `/conversations/${group.id}`, owner);
        await hold.held;
        const second = await putMessage(other.url, member, group.id, randomUUID(), { body: 'second' });
        expect(second.status).to.equal(201);
        hold.release();
        const res = await reading;
        expect(res.status).to.equal(200);
        const { lastSeq, participants } = res.body.conversation;
        const markers = participants.map((p) => p.lastReadSeq);
        expect(Math.max(...markers), `lastSeq ${lastSeq}, markers ${markers.join(', ')}`).to.be.at.most(
          lastSeq,
        );
      } finally {
        hold.restore();
      }
    });
  });
});
