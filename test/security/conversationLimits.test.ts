import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import type { ConversationListItem, PublicConversation } from '../../lib/protocol/index.js';
import type { RunningServer } from '../../lib/server.js';
import { createGroup, friendsOf, newUser, record, rows } from '../helpers/chat.js';
import { expectError } from '../helpers/errors.js';
import { useTwoNodes } from '../helpers/nodes.js';
import { waitFor } from '../helpers/waitFor.js';
import { request } from '../helpers/http.js';

describe('conversations under abuse: creation budget, compact fan-out, paged lists', function () {
  this.timeout(60_000);
  const { a, b, pool } = useTwoNodes({ env: { RATE_LIMIT_CONVERSATIONS_PER_MIN: '5' } });

  it('counts conversation creations and participant adds per user on every node together', async () => {
    const owner = await newUser(a);
    const friends = await friendsOf(a, owner, 6);
    const make = (node: RunningServer, title: string) =>
      request<{ conversation: PublicConversation }>(node.url, 'POST', '/conversations', {
        token: owner.token,
        body: { type: 'group', title, participantIds: [] },
      });
    // Three on one node, two on the other: five in all, the budget.
    for (const [i, node] of [a, a, a, b, b].entries())
      expect((await make(node, `g${i}`)).status).to.equal(201);
    const sixth = await make(b, 'one too many');
    expectError(sixth, 429, 'RATE_LIMITED');
    expect(Number(sixth.headers.get('retry-after'))).to.be.within(1, 60);
    // Adding participants takes from the same budget.
    const [group] = await rows<{ id: string }>(
      a.services.db.knex,
      "SELECT id FROM conversations WHERE created_by = ? AND title = 'g0'",
      [owner.id],
    );
    const add = await request(a.url, 'POST', `/conversations/${group!.id}/participants`, {
      token: owner.token,
      body: { userId: friends[0]!.id },
    });
    expectError(add, 429, 'RATE_LIMITED');
    // Another user has a budget of their own.
    const other = await newUser(b);
    const theirs = await request(b.url, 'POST', '/conversations', {
      token: other.token,
      body: { type: 'group', title: 'mine', participantIds: [] },
    });
    expect(theirs.status).to.equal(201);
  });

  it('takes the budget at once, then gives one back every 12 s (60 s / 5): no minute’s end lets twice it through', async () => {
    const owner = await newUser(a);
    const make = (node: RunningServer) =>
      request(node.url, 'POST', '/conversations', {
        token: owner.token,
        body: { type: 'group', title: 'g', participantIds: [] },
      });
    /** As if `ms` had passed for the user's budget (its row's times moved back). */
    const timePasses = (ms: number) =>
      a.services.db.knex.raw(
        "UPDATE auth_rate_limits SET expire = expire - ?::bigint WHERE key LIKE 'conversation\\_writes%' AND key LIKE ?",
        [ms, `%:${owner.id}`],
      );
    const statuses = async (count: number) => {
      const seen: number[] = [];
      for (let i = 0; i < count; i++) seen.push((await make(i % 2 === 0 ? a : b)).status);
      return seen;
    };
    expect(await statuses(5)).to.deep.equal([201, 201, 201, 201, 201]);
    const refused = await make(a);
    expectError(refused, 429, 'RATE_LIMITED');
    expect(Number(refused.headers.get('retry-after'))).to.be.within(1, 12);
    // One interval later: one more, not a whole new budget.
    await timePasses(12_000);
    expect(await statuses(2)).to.deep.equal([201, 429]);
    // A minute with nothing taken: the whole budget again, and no more.
    await timePasses(60_000);
    expect(await statuses(6)).to.deep.equal([201, 201, 201, 201, 201, 429]);
  });

  it('spends nothing on opening an existing direct conversation again, and counts refused attempts', async () => {
    const me = await newUser(a);
    const [friend] = await friendsOf(a, me, 1);
    const stranger = await newUser(a);
    const openDirect = (node: RunningServer, userId: string) =>
      request<{ conversation: PublicConversation }>(node.url, 'POST', '/conversations', {
        token: me.token,
        body: { type: 'direct', userId },
      });
    expect((await openDirect(a, friend!.id)).status).to.equal(201);
    // A client opens a chat by this call each time: twice the budget, from both nodes, all answered.
    for (let i = 0; i < 10; i += 1)
      expect((await openDirect(i % 2 ? a : b, friend!.id)).status).to.equal(200);
    // Refused attempts count: the budget is four after the creation above.
    for (let i = 0; i < 4; i += 1) expectError(await openDirect(b, stranger.id), 403, 'NOT_FRIENDS');
    expectError(await openDirect(a, stranger.id), 429, 'RATE_LIMITED');
    // The existing conversation still opens with the budget spent.
    expect((await openDirect(b, friend!.id)).status).to.equal(200);
  });

  it('counts group renames against the same budget: each tells every member the whole group', async () => {
    const owner = await newUser(a);
    const [member] = await friendsOf(a, owner, 1);
    const group = await createGroup(a.url, owner, [member!]);
    const rename = (node: RunningServer, title: string) =>
      request(node.url, 'PATCH', `/conversations/${group.id}`, { token: owner.token, body: { title } });
    // The creation took one point of five.
    for (const [i, node] of [a, b, a, b].entries())
      expect((await rename(node, `t${i}`)).status).to.equal(200);
    const refused = await rename(a, 'one too many');
    expectError(refused, 429, 'RATE_LIMITED');
    expect(Number(refused.headers.get('retry-after'))).to.be.within(1, 60);
  });

  it('makes a group of 1000 from 999 friends listed with the creator’s own id and a duplicate', async () => {
    const owner = await newUser(a);
    const friends = await friendsOf(a, owner, 999);
    const ids = friends.map((f) => f.id);
    const res = await request<{ conversation: PublicConversation }>(a.url, 'POST', '/conversations', {
      token: owner.token,
      body: { type: 'group', title: 'all of us', participantIds: [owner.id, ...ids, ids[0]] },
    });
    expect(res.status).to.equal(201);
    expect(res.body.conversation.participants).to.have.length(1000);
    // One more is past the size: refused once the duplicates and the creator's id are dropped.
    const [extra] = await friendsOf(a, owner, 1);
    expectError(
      await request(a.url, 'POST', '/conversations', {
        token: owner.token,
        body: { type: 'group', title: 'too many', participantIds: [...ids, extra!.id] },
      }),
      400,
      'VALIDATION_FAILED',
    );
  });

  it('announces a new group of 150 with one broadcast, not one per member', async () => {
    const owner = await newUser(a);
    const members = await friendsOf(a, owner, 149);
    const [{ n: before }] = (await rows<{ n: number }>(
      a.services.db.knex,
      'SELECT count(*)::int AS n FROM socket_io_attachments',
    )) as [{ n: number }];
    // The first and the last member listen: once both have heard, every broadcast of the creation went out.
    const ears = await Promise.all([members[0]!, members.at(-1)!].map((m) => pool.open(b.url, m)));
    const heard = ears.map((socket) => record(socket, 'conversation:added'));
    // Node A's broadcasts to the other nodes, counted as it makes them: it makes them all at once, in the tell of
    // the creation it hears on the control bus, which may come after node B told its own sockets.
    const adapter = a.services.io.of('/').adapter;
    const broadcast = adapter.broadcast.bind(adapter);
    const added: unknown[] = [];
    adapter.broadcast = (packet, opts) => {
      const { data } = packet as { data?: unknown };
      if (!opts.flags?.local && Array.isArray(data) && data[0] === 'conversation:added') added.push(data[1]);
      broadcast(packet, opts);
    };
    try {
      await createGroup(a.url, owner, members, 'a big one');
      await waitFor(() => heard.every((events) => events.length === 1), { what: 'both members to hear' });
      const attachments = async () => {
        const [{ n }] = (await rows<{ n: number }>(
          a.services.db.knex,
          'SELECT count(*)::int AS n FROM socket_io_attachments',
        )) as [{ n: number }];
        return n - before;
      };
      // The conversation (with its 150 participants) is over NOTIFY's 8000 bytes: one attachment, for everyone.
      // Stored after its broadcast was made, so every broadcast of the creation has been made once it is there.
      await waitFor(async () => (await attachments()) > 0, { what: "node A's broadcast of the creation" });
      expect(added).to.have.length(1);
      expect(await attachments()).to.equal(1);
    } finally {
      adapter.broadcast = broadcast;
    }
  });

  it('pages GET /conversations with nextCursor, newest activity first, each conversation once', async () => {
    const owner = await newUser(a);
    for (let i = 0; i < 5; i += 1) await createGroup(b.url, owner, [], `page ${i}`);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`;
      const res = await request<{ conversations: ConversationListItem[]; nextCursor: string | null }>(
        a.url,
        'GET',
        `/conversations?limit=2${query}`,
        { token: owner.token },
      );
      expect(res.status).to.equal(200);
      expect(res.body.conversations.length).to.be.at.most(2);
      seen.push(...res.body.conversations.map((c) => c.title ?? ''));
      cursor = res.body.nextCursor;
      pages += 1;
    } while (cursor !== null);
    expect(pages).to.equal(3);
    expect(seen).to.deep.equal(['page 4', 'page 3', 'page 2', 'page 1', 'page 0']);
    const forged = (activity: string) => Buffer.from(`${activity}.${randomUUID()}`).toString('base64url');
    // Past the year 10000 a cursor's time overflows PostgreSQL's arithmetic: refused before it gets there.
    for (const bad of [
      'nonsense',
      Buffer.from('1.2.3').toString('base64url'),
      forged('99999999999999999999'),
      forged('9223372036854775807'),
      forged('253402300800000001'),
    ]) {
      expectError(
        await request(a.url, 'GET', `/conversations?cursor=${bad}`, { token: owner.token }),
        400,
        'VALIDATION_FAILED',
      );
    }
    expectError(
      await request(a.url, 'GET', '/conversations?limit=0', { token: owner.token }),
      400,
      'VALIDATION_FAILED',
    );
  });
});
