import { expect } from 'chai';
import type { Knex } from 'knex';
import type { PublicMessage } from '../lib/protocol/index.js';
import { PAGE_MAX_BYTES, readChanges, readHistory } from '../lib/messaging/reads.js';
import { createGroup, expectOk, friendsOf, newUser } from './helpers/chat.js';
import { request } from './helpers/http.js';
import { useNode } from './helpers/nodes.js';
import type { TestUser } from './helpers/users.js';

/**
 * A page of messages ends early, with `hasMore`, once its JSON passes PAGE_MAX_BYTES (half a socket's
 * SOCKET_MAX_BUFFERED_BYTES when that is smaller): 200 bodies of control characters, six bytes each as JSON, made a
 * page of 4.8 MB, over the socket's cap, and a reading subscriber was cut when any other packet queued beside it.
 * Every kind of page keeps its order and its cursor: paged on, each message comes once.
 */
describe('pages of messages bounded in bytes', function () {
  const { server, second, pool } = useNode({
    second: { env: { SOCKET_MAX_BUFFERED_BYTES: String(256 * 1024) } },
  });

  const BODY = 'a' + '\u0001'.repeat(3999); // 4000 code points, 23995 bytes as JSON
  const COUNT = 200;

  /** A group of `owner` and a friend whose history is COUNT such messages (seq and version 1..COUNT). */
  async function bigHistory(): Promise<{ owner: TestUser; friend: TestUser; conversationId: string }> {
    const knex: Knex = server.services.db.knex;
    const owner = await newUser(server);
    const [friend] = (await friendsOf(server, owner, 1)) as [TestUser];
    const { id } = await createGroup(server.url, owner, [friend]);
    await knex.raw(
      `INSERT INTO messages (conversation_id, sender_id, seq, version, client_msg_id, body)
       SELECT ?, ?, g, g, 'big-' || g, ? FROM generate_series(1, ?::int) AS g`,
      [id, owner.id, BODY, COUNT],
    );
    await knex('conversations').where({ id }).update({ last_seq: COUNT, version: COUNT });
    return { owner, friend, conversationId: id };
  }

  const seqs = (messages: PublicMessage[]) => messages.map((m) => m.seq);
  const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

  it('REST pages after a seq, before one and of the changes end early and page on to every message once', async () => {
    const { friend, conversationId } = await bigHistory();
    const base = `/conversations/${conversationId}`;
    type Page = { messages: PublicMessage[]; hasMore: boolean; version: number };

    const after: number[] = [];
    for (let cursor = 0, more = true; more;) {
      const page = await request<Page>(server.url, 'GET', `${base}/messages?after=${cursor}&limit=200`, {
        token: friend.token,
      });
      expect(page.status).to.equal(200);
      expect(Buffer.byteLength(page.text)).to.be.below(PAGE_MAX_BYTES + 4096);
      expect(page.body.messages.length).to.be.above(0);
      after.push(...seqs(page.body.messages));
      cursor = page.body.messages.at(-1)!.seq;
      more = page.body.hasMore;
    }
    expect(after).to.deep.equal(range(1, COUNT));

    // The newest: the page keeps the newest messages, older ones exist.
    const newest = await request<Page>(server.url, 'GET', `${base}/messages?limit=200`, {
      token: friend.token,
    });
    expect(newest.body.hasMore).to.equal(true);
    const kept = seqs(newest.body.messages);
    expect(kept.length).to.be.within(1, COUNT - 1);
    expect(kept).to.deep.equal(range(COUNT - kept.length + 1, COUNT));
    const before = await request<Page>(server.url, 'GET', `${base}/messages?before=${kept[0]}&limit=200`, {
      token: friend.token,
    });
    expect(seqs(before.body.messages).at(-1)).to.equal(kept[0]! - 1);

    const changed: number[] = [];
    for (let since = 0, more = true; more;) {
      const page = await request<Page>(server.url, 'GET', `${base}/changes?since=${since}&limit=200`, {
        token: friend.token,
      });
      expect(page.status).to.equal(200);
      expect(Buffer.byteLength(page.text)).to.be.below(PAGE_MAX_BYTES + 4096);
      changed.push(...page.body.messages.map((m) => m.version));
      more = page.body.hasMore;
      since = more ? page.body.messages.at(-1)!.version : page.body.version;
    }
    expect(changed).to.deep.equal(range(1, COUNT));
  });

  it("a subscribe's page ends within half the socket's cap, and the subscriber pages on to every message", async () => {
    const { friend, conversationId } = await bigHistory();
    for (const [node, cap] of [
      [server, PAGE_MAX_BYTES],
      [second, 128 * 1024],
    ] as const) {
      const socket = await pool.open(node.url, friend);
      const got: number[] = [];
      for (let afterSeq = 0, more = true; more;) {
        const ack = expectOk(
          await socket.emitWithAck('conversation:subscribe', { conversationId, afterSeq, limit: 200 }),
        );
        expect(Buffer.byteLength(JSON.stringify(ack.messages))).to.be.at.most(cap);
        got.push(...seqs(ack.messages));
        afterSeq = ack.messages.at(-1)!.seq;
        more = ack.hasMore;
      }
      expect(got).to.deep.equal(range(1, COUNT));
      expect(socket.connected).to.equal(true);
    }
  });

  it('a page whose first message alone is over the bound still carries that message', async () => {
    const { friend, conversationId } = await bigHistory();
    const knex = server.services.db.knex;
    // One message is about 24 kB as JSON, over a bound of 1000 bytes.
    const after = await readHistory(
      knex,
      conversationId,
      friend.id,
      { kind: 'after', seq: 0, limit: 5 },
      1000,
    );
    expect([seqs(after.messages), after.hasMore]).to.deep.equal([[1], true]);
    const newest = await readHistory(knex, conversationId, friend.id, { kind: 'newest', limit: 5 }, 1000);
    expect([seqs(newest.messages), newest.hasMore]).to.deep.equal([[COUNT], true]);
    const changes = await readChanges(knex, conversationId, friend.id, COUNT - 1, 5, 1000);
    expect([changes.messages.map((m) => m.version), changes.hasMore]).to.deep.equal([[COUNT], false]);
  });
});
