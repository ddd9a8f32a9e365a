import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { LIST_PARTICIPANTS_BUDGET } from '../lib/conversations/queries.js';
import type { ConversationListItem } from '../lib/protocol/index.js';
import { MAX_GROUP_PARTICIPANTS } from '../lib/protocol/schemas.js';
import { newUser, rows } from './helpers/chat.js';
import { request } from './helpers/http.js';
import { useNode } from './helpers/nodes.js';
import { uniqueUsername, type TestUser } from './helpers/users.js';
import { useClientPool } from './client/fixtures.js';

/**
 * GET /conversations bounds a page by the participants it carries: it takes conversations in order until the
 * next would bring it above LIST_PARTICIPANTS_BUDGET (always at least one), then ends with a nextCursor. Big
 * groups are built with SQL (the API would take a request per member).
 */
describe('conversation list pages within the participants budget', function () {
  this.timeout(60_000);
  const { server } = useNode();
  /** Users to fill groups with, more than any group here needs. */
  let crowd: string[] = [];
  const knex = (): Knex => server.services.db.knex;

  before(async function () {
    const prefix = `crowd_${randomBytes(4).toString('hex')}`;
    crowd = (
      await rows<{ id: string }>(
        knex(),
        `INSERT INTO users (username, display_name, password_hash)
         SELECT ? || '_' || g, 'crowd ' || g, 'not-a-real-hash' FROM generate_series(1, ?::int) g
         RETURNING id`,
        [prefix, LIST_PARTICIPANTS_BUDGET + 600],
      )
    ).map((r) => r.id);
  });

  /**
   * Groups of `me` with these participant counts (me included), the first the most recently active: their ids
   * in the list's order.
   */
  async function groupsOf(me: TestUser, sizes: readonly number[]): Promise<string[]> {
    const ids: string[] = [];
    for (const [i, size] of sizes.entries()) {
      const [row] = await rows<{ id: string }>(
        knex(),
        `INSERT INTO conversations (type, title, created_by, last_activity_at)
         VALUES ('group', ?, ?, now() - ?::int * interval '1 minute') RETURNING id`,
        [`size ${size} #${i}`, me.id, i],
      );
      const id = row!.id;
      await knex().raw(
        `INSERT INTO conversation_participants (conversation_id, user_id, role)
         SELECT ?::uuid, ?::uuid, 'owner'
         UNION ALL SELECT ?::uuid, u, 'member' FROM unnest(?::uuid[]) u`,
        [id, me.id, id, crowd.slice(0, size - 1)],
      );
      ids.push(id);
    }
    return ids;
  }

  interface Page {
    ids: string[];
    participants: number;
    nextCursor: string | null;
  }

  /** Every page of my list, following nextCursor from the first page to the one that answers null. */
  async function walk(me: TestUser, limit?: number): Promise<Page[]> {
    const pages: Page[] = [];
    let cursor: string | null = null;
    do {
      const query = new URLSearchParams();
      if (limit !== undefined) query.set('limit', String(limit));
      if (cursor !== null) query.set('cursor', cursor);
      const res = await request<{ conversations: ConversationListItem[]; nextCursor: string | null }>(
        server.url,
        'GET',
        `/conversations?${query.toString()}`,
        { token: me.token },
      );
      expect(res.status, res.text).to.equal(200);
      const { conversations, nextCursor } = res.body;
      pages.push({
        ids: conversations.map((c) => c.id),
        participants: conversations.reduce((sum, c) => sum + c.participants.length, 0),
        nextCursor,
      });
      cursor = nextCursor;
      expect(pages.length, 'a walk that does not end').to.be.below(100);
    } while (cursor !== null);
    return pages;
  }

  /** Each page within the budget (or a lone conversation), every conversation once, in order. */
  function expectWalk(pages: readonly Page[], ids: readonly string[], lengths: readonly number[]): void {
    expect(pages.map((p) => p.ids.length)).to.deep.equal(lengths);
    expect(pages.flatMap((p) => p.ids)).to.deep.equal(ids);
    for (const page of pages) {
      if (page.ids.length > 1) expect(page.participants).to.be.at.most(LIST_PARTICIPANTS_BUDGET);
    }
    expect(pages.slice(0, -1).every((p) => p.nextCursor !== null)).to.equal(true);
    expect(pages.at(-1)?.nextCursor).to.equal(null);
  }

  it('ends a page before the group that would pass the budget; walking the cursor lists each conversation once, in order', async () => {
    const me = await newUser(server);
    // 900 + 900 fit, + 300 would be 2100; 300 + 1000 + 50 fit, + 999 would be 2349; then the limit ends a page.
    const ids = await groupsOf(me, [900, 900, 300, 1000, 50, 999, ...Array<number>(55).fill(3)]);
    expectWalk(await walk(me, 50), ids, [2, 3, 50, 6]);
    // The default limit (50) is a maximum too.
    expectWalk(await walk(me), ids, [2, 3, 50, 6]);
    // limit=200, the largest, no more.
    expectWalk(await walk(me, 200), ids, [2, 3, 56]);
  });

  it('keeps a page exactly at the budget, and ends it one participant above', async () => {
    const atBudget = await newUser(server);
    const half = LIST_PARTICIPANTS_BUDGET / 2;
    const exact = await groupsOf(atBudget, [half, half, 1]);
    expectWalk(await walk(atBudget, 50), exact, [2, 1]);
    // A page ended by its limit right where the budget would end it still says more follow.
    expectWalk(await walk(atBudget, 2), exact, [2, 1]);

    const oneOver = await newUser(server);
    const over = await groupsOf(oneOver, [half, half - 1, 2]);
    expectWalk(await walk(oneOver, 50), over, [2, 1]);
  });

  it('carries a group bigger than the whole budget alone on its page, wherever it comes', async () => {
    // Through the API a group has at most MAX_GROUP_PARTICIPANTS; an older or migrated one may have more.
    const big = LIST_PARTICIPANTS_BUDGET + 500;
    expect(big).to.be.above(MAX_GROUP_PARTICIPANTS);
    const me = await newUser(server);
    const ids = await groupsOf(me, [big, 2, big, 1500, 1000]);
    expectWalk(await walk(me, 50), ids, [1, 1, 1, 1, 1]);
  });
});

describe('the SDK walks a list longer than the read budget', function () {
  this.timeout(60_000);
  // One read a second, bursts of two: a list of five pages runs over it.
  const { server } = useNode({ env: { RATE_LIMIT_READS_PER_SEC: '1' } });
  const pool = useClientPool();

  it('waits out RATE_LIMITED between pages and returns every conversation once, in order', async () => {
    const knex = server.services.db.knex;
    const client = pool.open(server.url);
    const username = uniqueUsername('walker');
    const { user } = await client.signup({ username, password: 'correct horse battery' });
    const crowd = (
      await rows<{ id: string }>(
        knex,
        `INSERT INTO users (username, display_name, password_hash)
         SELECT ? || '_' || g, 'crowd', 'not-a-real-hash' FROM generate_series(1, ?::int) g RETURNING id`,
        [`walk_${randomBytes(4).toString('hex')}`, MAX_GROUP_PARTICIPANTS - 1],
      )
    ).map((r) => r.id);
    // Five full groups, two to a page (the participants budget): three pages, each a read.
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const [row] = await rows<{ id: string }>(
        knex,
        `INSERT INTO conversations (type, title, created_by, last_activity_at)
         VALUES ('group', ?, ?, now() - ?::int * interval '1 minute') RETURNING id`,
        [`full #${i}`, user.id, i],
      );
      await knex.raw(
        `INSERT INTO conversation_participants (conversation_id, user_id, role)
         SELECT ?::uuid, ?::uuid, 'owner' UNION ALL SELECT ?::uuid, u, 'member' FROM unnest(?::uuid[]) u`,
        [row!.id, user.id, row!.id, crowd],
      );
      ids.push(row!.id);
    }
    // Spend the burst first, so the walk meets the limit.
    while (
      (await request(server.url, 'GET', '/conversations?limit=1', { token: client.token })).status !== 429
    );
    const listed = await client.conversations.list();
    expect(listed.map((c) => c.id)).to.deep.equal(ids);
  });
});
