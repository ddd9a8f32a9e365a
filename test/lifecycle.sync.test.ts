import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import type { Ack, PublicMessage } from '../lib/protocol/index.js';
import {
  createGroup,
  expectOk,
  friendsOf,
  newUser,
  putMessage,
  range,
  record,
  send,
  subscribe,
} from './helpers/chat.js';
import { expectError } from './helpers/errors.js';
import { useTwoNodes } from './helpers/nodes.js';
import {
  asStored,
  changes,
  counters,
  deleteMessage,
  editMessage,
  fullHistory,
  prng,
  reaction,
  storedState,
} from './helpers/lifecycle.js';
import type { ClientSocket } from './helpers/sockets.js';
import type { TestUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

/** Every message the feed has after `since`, paged with `limit`, and the version to continue from. */
async function drainChanges(
  url: string,
  user: TestUser,
  conversationId: string,
  since: number,
  limit: number,
): Promise<{ messages: PublicMessage[]; version: number; pages: number }> {
  const messages: PublicMessage[] = [];
  let cursor = since;
  for (let pages = 1; ; pages++) {
    const res = await changes(url, user, conversationId, cursor, limit);
    expect(res.status, res.text).to.equal(200);
    const page = res.body;
    expect(page.messages.length).to.be.at.most(limit);
    for (const m of page.messages) expect(m.version).to.be.above(cursor);
    messages.push(...page.messages);
    if (!page.hasMore) return { messages, version: page.version, pages };
    expect(page.messages).to.have.length(limit);
    cursor = page.messages.at(-1)!.version;
  }
}

describe('message lifecycle: message:updated, the changes feed and versions across nodes', function () {
  this.timeout(60_000);
  const { a, b, pool } = useTwoNodes();

  const knex = () => a.services.db.knex;

  async function group(members = 2) {
    const owner = await newUser(a);
    const users = await friendsOf(a, owner, members);
    const { id } = await createGroup(a.url, owner, users);
    return { owner, users, id };
  }

  async function put(user: TestUser, conversationId: string, body: string, url = a.url) {
    const res = await putMessage(url, user, conversationId, randomUUID(), { body });
    if (res.status !== 201) throw new Error(`send: ${res.status} ${res.text}`);
    return res.body.message;
  }

  describe('message:updated', () => {
    it('reaches the subscribers on both nodes, the writer’s own sockets included, with the current state', async () => {
      const { owner, users, id } = await group();
      const [alice, bob] = users as [TestUser, TestUser];
      await put(alice, id, 'first');
      await put(bob, id, 'second');
      const watchers: Array<[string, ClientSocket]> = [
        ['owner on a', await pool.open(a.url, owner)],
        ['alice on a', await pool.open(a.url, alice)],
        ['alice on b', await pool.open(b.url, alice)],
        ['bob on b', await pool.open(b.url, bob)],
      ];
      const seen = watchers.map(([, socket]) => record(socket, 'message:updated'));
      for (const [, socket] of watchers) await subscribe(socket, id);
      // A participant's socket that did not subscribe hears nothing.
      const unsubscribed = record(await pool.open(b.url, owner), 'message:updated');
      const aliceOnB = watchers[2]![1];

      const steps: Array<[string, () => Promise<unknown>]> = [
        ['edit over REST on a', () => editMessage(a.url, alice, id, 1, 'first, edited')],
        [
          'edit over the socket on b',
          () => aliceOnB.emitWithAck('message:edit', { conversationId: id, seq: 1, body: 'first, again' }),
        ],
        ['reaction over REST on b', () => reaction(b.url, owner, 'PUT', id, 1, '🇯🇵')],
        [
          'reaction over the socket on b',
          () => aliceOnB.emitWithAck('reaction:add', { conversationId: id, seq: 2, emoji: '👀' }),
        ],
        ['reaction removed over REST on a', () => reaction(a.url, owner, 'DELETE', id, 1, '🇯🇵')],
        ['delete over REST on a', () => deleteMessage(a.url, bob, id, 2)],
        [
          'delete over the socket on b',
          () => aliceOnB.emitWithAck('message:delete', { conversationId: id, seq: 1 }),
        ],
      ];
      const expected: PublicMessage[] = [];
      for (const [what, step] of steps) {
        await step();
        const history = await fullHistory(b.url, owner, id);
        const changed = history.reduce((latest, m) => (m.version > latest.version ? m : latest));
        expected.push(changed);
        await waitFor(() => seen.every((events) => events.length === expected.length), {
          what: `every subscriber to hear: ${what}`,
        });
        for (const [i, events] of seen.entries()) {
          expect(events.at(-1), `${watchers[i]![0]}: ${what}`).to.deep.equal(changed);
        }
      }
      expect(expected.map((m) => m.version)).to.deep.equal(range(7).map((n) => n + 2));
      expect(unsubscribed).to.deep.equal([]);
    });

    it('says nothing for a change that changes nothing or fails', async () => {
      const { owner, users, id } = await group();
      const [alice] = users as [TestUser];
      const watchers = [await pool.open(a.url, owner), await pool.open(b.url, alice)];
      const seen = watchers.map((socket) => record(socket, 'message:updated'));
      for (const socket of watchers) await subscribe(socket, id);
      await put(alice, id, 'stable');
      await put(owner, id, 'to delete');
      await deleteMessage(a.url, owner, id, 2);
      await waitFor(() => seen.every((events) => events.length === 1), { what: 'the delete' });
      for (const events of seen) events.splice(0);

      await editMessage(a.url, alice, id, 1, 'stable');
      await editMessage(b.url, owner, id, 1, 'not mine');
      await deleteMessage(b.url, owner, id, 2);
      await reaction(a.url, owner, 'DELETE', id, 1, '👍');
      await reaction(a.url, owner, 'PUT', id, 2, '👍');
      await editMessage(a.url, owner, id, 2, 'deleted');
      // The one real change: each subscriber hears it, and it is the first thing each hears.
      await reaction(b.url, owner, 'PUT', id, 1, '👍');
      await waitFor(() => seen.every((events) => events.length >= 1), { what: 'the real change' });
      // One more round trip each, so anything else in flight has arrived.
      for (const socket of watchers) await subscribe(socket, id);
      for (const events of seen) {
        expect(events.map((m) => [m.seq, m.version])).to.deep.equal([[1, 4]]);
      }
    });
  });

  describe('GET /conversations/:id/changes', () => {
    it('answers {messages, version, hasMore}: every message changed after `since`, once, in its current state, by version', async () => {
      const { owner, users, id } = await group();
      const [alice] = users as [TestUser];
      for (const n of range(5)) await put(n % 2 === 0 ? owner : alice, id, `m${n}`);
      const all = await changes(b.url, alice, id, 0);
      expect(all.status).to.equal(200);
      expect(Object.keys(all.body).sort()).to.deep.equal(['hasMore', 'messages', 'version']);
      expect(all.body).to.deep.include({ version: 5, hasMore: false });
      expect(all.body.messages).to.deep.equal(await fullHistory(a.url, owner, id));

      await editMessage(a.url, alice, id, 1, 'm1, edited'); // 6
      await reaction(a.url, owner, 'PUT', id, 3, '👍'); // 7
      await editMessage(b.url, alice, id, 1, 'm1, edited twice'); // 8
      await deleteMessage(a.url, owner, id, 2); // 9
      await put(owner, id, 'm6'); // 10
      await reaction(b.url, alice, 'PUT', id, 3, '👍'); // 11

      const since5 = await changes(a.url, owner, id, 5);
      expect(since5.body.version).to.equal(11);
      expect(since5.body.hasMore).to.equal(false);
      expect(since5.body.messages.map((m) => [m.seq, m.version])).to.deep.equal([
        [1, 8],
        [2, 9],
        [6, 10],
        [3, 11],
      ]);
      const history = await fullHistory(a.url, owner, id);
      for (const m of since5.body.messages) expect(m).to.deep.equal(history[m.seq - 1]);
      expect(since5.body.messages[1]).to.deep.include({ body: '', reactions: [] });
      expect(since5.body.messages[3]!.reactions).to.deep.equal([
        { emoji: '👍', userIds: [owner.id, alice.id] },
      ]);

      const since8 = await changes(b.url, alice, id, 8);
      expect(since8.body.messages.map((m) => m.seq)).to.deep.equal([2, 6, 3]);
      for (const since of [11, 12, 1000]) {
        expect((await changes(b.url, alice, id, since)).body).to.deep.equal({
          messages: [],
          version: 11,
          hasMore: false,
        });
      }
      // The feed agrees with the rows.
      const fromFeed = (await changes(a.url, owner, id, 0)).body.messages.sort((x, y) => x.seq - y.seq);
      expect(asStored(fromFeed)).to.deep.equal(await storedState(knex(), id));
    });

    it('pages by version with `limit`: the last version of a page is the next `since`; hasMore until the end', async () => {
      const { owner, users, id } = await group();
      const [alice] = users as [TestUser];
      for (const n of range(12)) await put(owner, id, `m${n}`);
      for (const seq of [2, 5, 7, 11]) await editMessage(a.url, owner, id, seq, `m${seq}, edited`);
      for (const seq of [1, 5, 12]) await reaction(b.url, alice, 'PUT', id, seq, '✨');
      await deleteMessage(a.url, owner, id, 7);
      const version = (await counters(knex(), id)).version;
      expect(version).to.equal(20);

      const whole = (await changes(a.url, alice, id, 0, 200)).body;
      expect(whole.hasMore).to.equal(false);
      const versions = whole.messages.map((m) => m.version);
      expect(versions).to.deep.equal([...versions].sort((x, y) => x - y));
      expect(new Set(whole.messages.map((m) => m.seq)).size).to.equal(12);
      for (const limit of [1, 3, 5, 11, 12]) {
        const paged = await drainChanges(b.url, alice, id, 0, limit);
        expect(paged.messages, `limit ${limit}`).to.deep.equal(whole.messages);
        expect(paged.version).to.equal(version);
        expect(paged.pages).to.equal(Math.ceil(12 / limit));
      }
      const fromMiddle = await drainChanges(a.url, owner, id, 14, 2);
      expect(fromMiddle.messages.map((m) => m.version)).to.deep.equal(versions.filter((v) => v > 14));
    });

    it('defaults `limit` to 50, clamps it to 200, and validates `since` and `limit` (400)', async () => {
      const { owner, id } = await group(1);
      // 260 stored messages, versions 1..260 (as if sent one by one).
      await knex().raw(
        `INSERT INTO messages (conversation_id, sender_id, seq, client_msg_id, body, version)
         SELECT ?, ?, g, 'seed-' || g, 'message ' || g, g FROM generate_series(1, 260) AS g`,
        [id, owner.id],
      );
      await knex()('conversations').where({ id }).update({ last_seq: 260, version: 260 });
      const byDefault = (await changes(a.url, owner, id, '?since=0')).body;
      expect(byDefault.messages.map((m) => m.version)).to.deep.equal(range(50));
      expect(byDefault).to.deep.include({ hasMore: true, version: 260 });
      const clamped = (await changes(a.url, owner, id, 0, 5000)).body;
      expect(clamped.messages).to.have.length(200);
      expect(clamped.hasMore).to.equal(true);
      const rest = (await changes(a.url, owner, id, 200, 200)).body;
      expect(rest.messages.map((m) => m.version)).to.deep.equal(range(60).map((n) => n + 200));
      expect(rest.hasMore).to.equal(false);

      for (const query of [
        '',
        '?since=',
        '?since=-1',
        '?since=1.5',
        '?since=abc',
        '?since=0&limit=0',
        '?since=0&limit=x',
        '?limit=5',
      ]) {
        expectError(await changes(b.url, owner, id, query), 400, 'VALIDATION_FAILED');
      }
    });
  });

  describe('conversation:subscribe', () => {
    it('acks carry the conversation’s version, read in the same snapshot as the page', async () => {
      const { owner, users, id } = await group();
      const [alice] = users as [TestUser];
      const socket = await pool.open(b.url, alice);
      expect(await subscribe(socket, id)).to.deep.equal({
        ok: true,
        messages: [],
        hasMore: false,
        lastSeq: 0,
        version: 0,
      });
      await put(owner, id, 'one');
      await put(owner, id, 'two');
      await editMessage(a.url, owner, id, 1, 'one, edited');
      await reaction(a.url, alice, 'PUT', id, 2, '👍');
      const newest = await subscribe(socket, id);
      expect(newest).to.deep.include({ lastSeq: 2, version: 4, hasMore: false });
      expect(newest.messages).to.deep.equal(await fullHistory(a.url, owner, id));
      const after = await subscribe(socket, id, { afterSeq: 2 });
      expect(after).to.deep.equal({ ok: true, messages: [], hasMore: false, lastSeq: 2, version: 4 });
      const onA = await pool.open(a.url, owner);
      expect(await subscribe(onA, id, { afterSeq: 1, limit: 1 })).to.deep.include({ lastSeq: 2, version: 4 });
    });

    it('a socket that was away catches up with `changes since` its version and ends with the server’s state', async () => {
      const { owner, users, id } = await group();
      const [alice] = users as [TestUser];
      for (const n of range(6)) await put(n % 2 ? owner : alice, id, `before ${n}`);
      const first = await pool.open(a.url, alice);
      const live = record(first, 'message:updated');
      const ack = await subscribe(first, id, { afterSeq: 0 });
      const state = new Map(ack.messages.map((m) => [m.seq, m]));
      let version = ack.version;
      first.close();

      // While alice is away: edits, deletes, reactions and new messages, on both nodes.
      await editMessage(a.url, owner, id, 1, 'edited while away');
      await reaction(b.url, owner, 'PUT', id, 1, '🧡');
      await deleteMessage(b.url, owner, id, 4);
      await put(owner, id, 'new while away', b.url);
      await reaction(a.url, owner, 'PUT', id, 3, '🧡');
      await reaction(a.url, owner, 'DELETE', id, 1, '🧡');
      expect(live).to.deep.equal([]);

      const second = await pool.open(b.url, alice);
      const resumed = await subscribe(second, id, { afterSeq: Math.max(...state.keys()) });
      for (const m of resumed.messages) state.set(m.seq, m);
      const caughtUp = await drainChanges(b.url, alice, id, version, 2);
      for (const m of caughtUp.messages) {
        const known = state.get(m.seq);
        if (!known || known.version < m.version) state.set(m.seq, m);
      }
      version = caughtUp.version;
      expect(version).to.equal(resumed.version);
      expect([...state.values()].sort((x, y) => x.seq - y.seq)).to.deep.equal(
        await fullHistory(a.url, owner, id),
      );
    });
  });

  it('interleaved sends, edits, deletes and reactions from two nodes keep seq gap-free and versions one per change', async function () {
    this.timeout(120_000);
    const { owner, users, id } = await group(5);
    const people = [owner, ...users];
    const sockets = await Promise.all(people.map((u, i) => pool.open(i % 2 ? b.url : a.url, u)));
    const watchers = [await pool.open(a.url, owner), await pool.open(b.url, owner)];
    const heard = watchers.map((w) => ({
      news: record(w, 'message:new'),
      updates: record(w, 'message:updated'),
    }));
    for (const w of watchers) await subscribe(w, id);

    /** Seqs anyone has been told about, for others to react to. */
    const known: number[] = [];
    let effective = 0;
    const refusals: string[] = [];
    const emojis = ['👍', '🎉', '🇧🇷', '👩‍💻'];

    async function actor(user: TestUser, socket: ClientSocket, index: number): Promise<void> {
      const url = index % 2 ? b.url : a.url;
      const random = prng(20261130 + index);
      const mine: number[] = [];
      const deleted = new Set<number>();
      const reacted = new Set<string>();
      const count = (ack: Ack) => {
        if (ack.ok) effective += 1;
        else refusals.push(ack.error.code);
      };
      for (let op = 0; op < 24; op++) {
        const roll = random();
        const viaRest = op % 4 === 3;
        const live = mine.filter((seq) => !deleted.has(seq));
        if (roll < 0.35 || known.length === 0) {
          const body = `${user.username} #${op}`;
          const message = viaRest
            ? await put(user, id, body, url)
            : expectOk(await send(socket, id, body)).message;
          effective += 1;
          mine.push(message.seq);
          known.push(message.seq);
        } else if (roll < 0.6 && live.length > 0) {
          const seq = live[Math.floor(random() * live.length)]!;
          const body = `${user.username} edit ${op}`;
          if (viaRest) {
            const res = await editMessage(url, user, id, seq, body);
            expect(res.status).to.equal(200);
            effective += 1;
          } else count(await socket.emitWithAck('message:edit', { conversationId: id, seq, body }));
        } else if (roll < 0.68 && live.length > 0) {
          const seq = live[Math.floor(random() * live.length)]!;
          deleted.add(seq);
          if (viaRest) {
            expect((await deleteMessage(url, user, id, seq)).status).to.equal(204);
            effective += 1;
          } else count(await socket.emitWithAck('message:delete', { conversationId: id, seq }));
        } else {
          const seq = known[Math.floor(random() * known.length)]!;
          const emoji = emojis[Math.floor(random() * emojis.length)]!;
          const key = `${seq}|${emoji}`;
          const adding = !reacted.has(key);
          if (adding) reacted.add(key);
          else reacted.delete(key);
          if (viaRest) {
            const res = await reaction(url, user, adding ? 'PUT' : 'DELETE', id, seq, emoji);
            if (res.status === 204) effective += 1;
            else {
              expectError(res, 409, 'MESSAGE_DELETED');
              refusals.push('MESSAGE_DELETED');
            }
          } else {
            count(
              await socket.emitWithAck(adding ? 'reaction:add' : 'reaction:remove', {
                conversationId: id,
                seq,
                emoji,
              }),
            );
          }
        }
      }
    }

    await Promise.all(people.map((user, i) => actor(user, sockets[i]!, i)));
    // Only changes that raced a delete of their message were refused, and they took nothing.
    expect(new Set(refusals)).to.satisfy((codes: Set<string>) =>
      [...codes].every((c) => c === 'MESSAGE_DELETED'),
    );

    const stored = await storedState(knex(), id);
    const { lastSeq, version } = await counters(knex(), id);
    expect(
      stored.map((m) => m.seq),
      'seq runs 1..n',
    ).to.deep.equal(range(stored.length));
    expect(lastSeq).to.equal(stored.length);
    expect(version, 'one version per change that changed something').to.equal(effective);
    // The mix did happen: new messages, edits, deletes and reactions all took part.
    expect(stored.length).to.be.above(30);
    expect(stored.filter((m) => m.edited && !m.deleted).length).to.be.above(3);
    expect(stored.filter((m) => m.deleted).length).to.be.above(3);
    expect(stored.filter((m) => m.reactions.length > 0).length).to.be.above(3);
    expect(version - stored.length).to.be.above(50);

    // The writing node tells its own subscribers of every commit's changes, each message in its newest state of the
    // commit, with that state's version: across both watchers, each message's stored state is heard (its last
    // event shows what is stored), and no version belongs to two messages.
    const history = await fullHistory(b.url, owner, id);
    const latestHeard = () => {
      const latest = new Map<number, PublicMessage>();
      for (const m of heard.flatMap((h) => [...h.news, ...h.updates])) {
        const before = latest.get(m.seq);
        if (!before || before.version < m.version) latest.set(m.seq, m);
      }
      return latest;
    };
    await waitFor(
      () => {
        const latest = latestHeard();
        return history.every((message) => isDeepStrictEqual(latest.get(message.seq), message));
      },
      { what: "every message's stored state at one watcher or the other", timeoutMs: 20_000 },
    );
    const seqOfVersion = new Map<number, number>();
    for (const m of heard.flatMap((h) => [...h.news, ...h.updates])) {
      const holder = seqOfVersion.get(m.version);
      expect(holder === undefined || holder === m.seq, `version ${m.version} of one message`).to.equal(true);
      seqOfVersion.set(m.version, m.seq);
    }
    expect(Math.max(...seqOfVersion.keys())).to.equal(version);
    expect(asStored(history)).to.deep.equal(stored);
    expect(stored.filter((m) => m.deleted).every((m) => m.body === '' && m.reactions.length === 0)).to.equal(
      true,
    );
  });
});
