import { expect } from 'chai';
import {
  XFChatError,
  type PublicMessage,
  type Subscription,
  type XFChatClient,
} from '../../lib/client/index.js';
import { range } from '../helpers/chat.js';
import { asStored, counters, fullHistory, prng, storedState } from '../helpers/lifecycle.js';
import { useTwoNodes } from '../helpers/nodes.js';
import { useProxies } from '../helpers/proxy.js';
import { insertFriendship, insertUser, type TestUser } from '../helpers/users.js';
import { waitFor } from '../helpers/waitFor.js';
import { useClientPool } from './fixtures.js';

/** What an app keeps of a conversation: messages by seq, from onMessage and onUpdate. */
function mirror() {
  const bySeq = new Map<number, PublicMessage>();
  const updates: PublicMessage[] = [];
  return {
    bySeq,
    updates,
    onMessage: (message: PublicMessage) => {
      if (bySeq.has(message.seq)) throw new Error(`seq ${message.seq} delivered twice`);
      bySeq.set(message.seq, message);
    },
    onUpdate: (message: PublicMessage) => {
      updates.push(message);
      bySeq.set(message.seq, message);
    },
    list: () => [...bySeq.values()].sort((a, b) => a.seq - b.seq),
  };
}

describe('client SDK: the message lifecycle', function () {
  this.timeout(60_000);
  const { a, b } = useTwoNodes();
  const pool = useClientPool();
  const proxies = useProxies();

  const knex = () => a.services.db.knex;

  /** Bob owns a group with Alice; Alice's client talks to node a (through `aliceUrl`), Bob's to node b. */
  async function group(aliceUrl = a.url) {
    const alice = await insertUser(knex(), a.services.config);
    const bob = await insertUser(knex(), a.services.config);
    await insertFriendship(knex(), alice.id, bob.id);
    const aliceClient = pool.open(aliceUrl, { token: alice.token });
    const bobClient = pool.open(b.url, { token: bob.token });
    const { id } = await bobClient.conversations.createGroup('lifecycle', [alice.id]);
    await Promise.all([aliceClient.connect(), bobClient.connect()]);
    return { alice, bob, aliceClient, bobClient, id };
  }

  /** The app's mirror equals a fresh history read and the rows, and the subscription is at the stored version. */
  async function expectConverged(
    user: TestUser,
    id: string,
    app: ReturnType<typeof mirror>,
    subscription: Subscription,
  ): Promise<void> {
    await waitFor(
      async () => {
        expect(app.list()).to.deep.equal(await fullHistory(b.url, user, id));
        expect(subscription.version).to.equal((await counters(knex(), id)).version);
        return true;
      },
      { what: 'the client to hold exactly the server’s state', timeoutMs: 20_000 },
    );
    expect(asStored(app.list())).to.deep.equal(await storedState(knex(), id));
  }

  it('edits, deletes, reacts and unreacts; every subscriber’s onUpdate gets each new state once', async () => {
    const { alice, bob, aliceClient, bobClient, id } = await group();
    const atAlice = mirror();
    const atBob = mirror();
    const aliceSub = aliceClient.subscribe(id, atAlice.onMessage, { onUpdate: atAlice.onUpdate });
    const bobSub = bobClient.subscribe(id, atBob.onMessage, { onUpdate: atBob.onUpdate });
    await Promise.all([aliceSub.whenReady(), bobSub.whenReady()]);
    expect(aliceSub.version).to.equal(0);

    // Each state reaches both subscribers before the next change: a node reads another node's change in the
    // message's current state, so one change made there meanwhile would fold two states into one delivery.
    const bothHave = async () => {
      const { version } = await counters(knex(), id);
      await waitFor(() => [atAlice, atBob].every((app) => app.list().some((m) => m.version === version)), {
        what: `both subscribers to hold version ${version}`,
      });
    };
    const question = await aliceClient.send(id, 'lunch?');
    const answer = await bobClient.send(id, 'yes!', { replyToSeq: question.seq });
    expect(answer.replyToSeq).to.equal(1);
    await bothHave();
    const edited = await aliceClient.edit(id, 1, 'lunch at noon?');
    expect(edited).to.deep.include({ seq: 1, body: 'lunch at noon?', version: 3 });
    // Alice's own subscription has it at once, from the answer to the edit.
    expect(atAlice.bySeq.get(1)).to.deep.equal(edited);
    expect(await aliceClient.edit(id, 1, 'lunch at noon?')).to.deep.equal(edited);
    await bothHave();
    await bobClient.react(id, 1, '👍');
    await bobClient.react(id, 1, '👍');
    await bothHave();
    await aliceClient.react(id, 2, '🇮🇹');
    await bothHave();
    await aliceClient.unreact(id, 2, '🇮🇹');
    await aliceClient.unreact(id, 2, '🇮🇹');
    await bothHave();
    await bobClient.deleteMessage(id, 2);
    await bobClient.deleteMessage(id, 2);

    await expectConverged(alice, id, atAlice, aliceSub);
    await expectConverged(bob, id, atBob, bobSub);
    for (const app of [atAlice, atBob]) {
      expect(app.updates.map((m) => [m.seq, m.version])).to.deep.equal([
        [1, 3],
        [1, 4],
        [2, 5],
        [2, 6],
        [2, 7],
      ]);
    }
    expect(atBob.bySeq.get(2)).to.deep.include({ body: '', reactions: [], replyToSeq: 1 });
    expect(atBob.bySeq.get(1)!.reactions).to.deep.equal([{ emoji: '👍', userIds: [bob.id] }]);
  });

  it('rejects final errors at once: not mine, deleted, a bad reply, a bad, empty or broken emoji', async () => {
    const { aliceClient, bobClient, id } = await group();
    await bobClient.send(id, 'bob’s');
    let retries = 0;
    const onRetry = () => retries++;
    const failure = (promise: Promise<unknown>) =>
      promise.then(
        () => undefined,
        (err: unknown) => err,
      );
    expect(await failure(aliceClient.edit(id, 1, 'mine now', { onRetry })))
      .to.be.instanceOf(XFChatError)
      .and.include({
        code: 'FORBIDDEN',
        status: 403,
      });
    expect(await failure(aliceClient.deleteMessage(id, 1, { onRetry }))).to.include({ code: 'FORBIDDEN' });
    expect(await failure(aliceClient.send(id, 'to nothing', { replyToSeq: 5 }))).to.include({
      code: 'VALIDATION_FAILED',
    });
    expect(
      await failure(aliceClient.messages.put(id, 'put-reply', 'to nothing', { replyToSeq: 9 })),
    ).to.include({
      code: 'VALIDATION_FAILED',
    });
    expect(await failure(aliceClient.react(id, 1, 'two words', { onRetry }))).to.include({
      code: 'VALIDATION_FAILED',
    });
    // An empty emoji (the server's answer), and half of one (text cut inside a surrogate pair: it cannot be
    // URL-encoded, and was taken for a network failure and retried for ever).
    for (const emoji of ['', '👍'.slice(0, 1)]) {
      for (const call of [
        () => aliceClient.react(id, 1, emoji, { onRetry }),
        () => aliceClient.unreact(id, 1, emoji, { onRetry }),
      ]) {
        const error = await failure(call());
        expect(error, JSON.stringify(emoji)).to.include({ code: 'VALIDATION_FAILED' });
        expect((error as XFChatError).details).to.have.property('emoji');
      }
    }
    await bobClient.deleteMessage(id, 1);
    expect(await failure(bobClient.edit(id, 1, 'back', { onRetry }))).to.include({ code: 'MESSAGE_DELETED' });
    expect(await failure(aliceClient.react(id, 1, '👍', { onRetry }))).to.include({
      code: 'MESSAGE_DELETED',
    });
    expect(await failure(aliceClient.edit(id, 7, 'nothing', { onRetry }))).to.include({ code: 'NOT_FOUND' });
    expect(retries).to.equal(0);
    const reply = await aliceClient.messages.put(id, 'put-reply', 'to the tombstone', { replyToSeq: 1 });
    expect(reply).to.deep.include({ seq: 2, replyToSeq: 1 });
  });

  it('changes(conversationId, since) reads the feed to its end: each message once, in its current state', async () => {
    const { alice, aliceClient, bobClient, id } = await group();
    // 450 stored messages, as if sent one by one, then a few changes on top.
    await knex().raw(
      `INSERT INTO messages (conversation_id, sender_id, seq, client_msg_id, body, version)
       SELECT ?, ?, g, 'seed-' || g, 'seeded ' || g, g FROM generate_series(1, 450) AS g`,
      [id, alice.id],
    );
    await knex()('conversations').where({ id }).update({ last_seq: 450, version: 450 });
    await aliceClient.edit(id, 3, 'seeded 3, edited');
    await bobClient.react(id, 400, '🎯');
    await aliceClient.deleteMessage(id, 10);

    const all = await bobClient.changes(id, 0);
    expect(all.version).to.equal(453);
    expect(all.messages).to.have.length(450);
    expect(all.messages.map((m) => m.version)).to.deep.equal(
      [...all.messages.map((m) => m.version)].sort((x, y) => x - y),
    );
    expect([...all.messages].sort((x, y) => x.seq - y.seq)).to.deep.equal(
      await fullHistory(a.url, alice, id),
    );
    const recent = await aliceClient.changes(id, 450);
    expect(recent.messages.map((m) => [m.seq, m.version])).to.deep.equal([
      [3, 451],
      [400, 452],
      [10, 453],
    ]);
    expect(await aliceClient.changes(id, 453)).to.deep.equal({ messages: [], version: 453 });
  });

  it('ignores a state older than the one it holds, and holds an update of an undelivered message for onMessage', async () => {
    const { alice, aliceClient, bobClient, id } = await group();
    const app = mirror();
    const sub = aliceClient.subscribe(id, app.onMessage, { onUpdate: app.onUpdate });
    await sub.whenReady();
    await bobClient.send(id, 'v1');
    const second = await bobClient.edit(id, 1, 'v2');
    const third = await bobClient.edit(id, 1, 'v3');
    await waitFor(() => app.bySeq.get(1)?.version === third.version, { what: 'the third state' });
    // Alice's node reads a message or a change announced by another node in its current state: when it hears of
    // the first edit after the second committed, it gives version 3 alone, and when it reads the message itself
    // after both, the message comes in its third state, with no update.
    const heardBefore = app.updates.map((m) => m.version);
    expect([[2, 3], [3], []]).to.deep.include(heardBefore);

    // An old state and a repeat of the current one arrive (as a late or doubled event would).
    a.services.notify.messagesUpdated([second, third]);
    await bobClient.react(id, 1, '✔️');
    await waitFor(() => app.bySeq.get(1)?.version === 4, { what: 'the reaction' });
    expect(app.updates.map((m) => m.version)).to.deep.equal([...heardBefore, 4]);

    // Messages 2 and 3 are stored without their message:new (as if lost); an update of 3 arrives first.
    await knex()('messages').insert(
      [2, 3].map((seq) => ({
        conversation_id: id,
        sender_id: alice.id,
        seq,
        client_msg_id: `quiet-${seq}`,
        body: `quiet ${seq}`,
        version: 3 + seq,
      })),
    );
    await knex()('conversations').where({ id }).update({ last_seq: 3, version: 6 });
    const [quiet3] = (await fullHistory(a.url, alice, id)).filter((m) => m.seq === 3);
    a.services.notify.messagesUpdated([quiet3!]);
    await waitFor(() => app.bySeq.size === 3, { what: 'the gap filled' });
    await sub.whenReady();
    expect(app.list().map((m) => m.body)).to.deep.equal(['v3', 'quiet 2', 'quiet 3']);
    // The update of 3 was held for onMessage: no onUpdate came of it.
    expect(app.updates).to.have.length(heardBefore.length + 1);
    await expectConverged(alice, id, app, sub);
  });

  it('settles a version that stays missing (a change seen only in a later state) by reading the feed', async () => {
    const { alice, aliceClient, bobClient, id } = await group();
    const app = mirror();
    const sub = aliceClient.subscribe(id, app.onMessage, { onUpdate: app.onUpdate });
    await sub.whenReady();
    await bobClient.send(id, 'v1');
    await waitFor(() => sub.version === 1, { what: 'version 1' });

    // Message 1 was changed twice, and this node read it once, in its newer state: version 2 is gone for good.
    await knex()('messages').where({ conversation_id: id, seq: 1 }).update({ body: 'v3', version: 3 });
    await knex()('conversations').where({ id }).update({ version: 3 });
    const [third] = await fullHistory(a.url, alice, id);
    a.services.notify.messagesUpdated([third!]);
    await waitFor(() => app.bySeq.get(1)?.version === 3, { what: 'the newer state' });
    expect(sub.version, 'held back by the hole at 2').to.equal(1);

    await waitFor(() => sub.version === 3, { what: 'the hole settled by a read of the changes feed' });
    expect(app.updates.map((m) => m.version)).to.deep.equal([3]);
    await expectConverged(alice, id, app, sub);
  });

  it('converges to exactly the database’s state after being offline during 50 mixed changes by another user', async () => {
    const proxy = await proxies.start(a.url);
    const { alice, aliceClient, bobClient, id } = await group(proxy.url);
    for (const n of range(15)) await bobClient.send(id, `bob ${n}`);
    for (const n of range(5)) await aliceClient.send(id, `alice ${n}`);
    await bobClient.react(id, 16, '❤️');
    await aliceClient.react(id, 1, '👋');
    const app = mirror();
    // Small pages, so the catch-up pages through the changes feed.
    const sub = aliceClient.subscribe(id, app.onMessage, { afterSeq: 0, limit: 7, onUpdate: app.onUpdate });
    await sub.whenReady();
    await expectConverged(alice, id, app, sub);
    const versionBefore = sub.version!;

    await proxy.stop();
    await waitFor(() => aliceClient.state === 'reconnecting', { what: 'alice offline' });
    const done = await mixedChanges(bobClient, id, 50, prng(7));
    expect(done.sends).to.be.above(2);
    expect(done.edits).to.be.above(5);
    expect(done.deletes).to.be.above(3);
    expect(done.reactions).to.be.above(10);
    expect(app.updates.filter((m) => m.version > versionBefore)).to.deep.equal([]);
    await proxy.start();

    await waitFor(() => aliceClient.state === 'connected', { what: 'alice back' });
    await expectConverged(alice, id, app, sub);
    expect(sub.lastSeq).to.equal((await counters(knex(), id)).lastSeq);
  });

  it('converges when its connection is cut twice while another user keeps changing messages on the other node', async () => {
    const proxy = await proxies.start(a.url);
    const { alice, aliceClient, bobClient, id } = await group(proxy.url);
    for (const n of range(10)) await bobClient.send(id, `bob ${n}`);
    const app = mirror();
    const sub = aliceClient.subscribe(id, app.onMessage, { afterSeq: 0, limit: 5, onUpdate: app.onUpdate });
    await sub.whenReady();
    const changing = mixedChanges(bobClient, id, 60, prng(11));
    for (const at of [25, 45]) {
      await waitFor(async () => (await counters(knex(), id)).version >= at, { what: `version ${at}` });
      proxy.cut();
    }
    await changing;
    await expectConverged(alice, id, app, sub);
  });

  it('resumes a stored conversation with afterSeq and sinceVersion: new messages by onMessage, changes by onUpdate', async () => {
    const { alice, aliceClient, bobClient, id } = await group();
    for (const n of range(8)) await bobClient.send(id, `bob ${n}`);
    const app = mirror();
    const first = aliceClient.subscribe(id, app.onMessage, { onUpdate: app.onUpdate });
    await first.whenReady();
    const saved = { lastSeq: first.lastSeq!, version: first.version! };
    await first.unsubscribe();
    expect(saved).to.deep.equal({ lastSeq: 8, version: 8 });

    await mixedChanges(bobClient, id, 25, prng(3));
    const later = pool.open(a.url, { token: alice.token });
    await later.connect();
    const resumed = later.subscribe(id, app.onMessage, {
      afterSeq: saved.lastSeq,
      sinceVersion: saved.version,
      limit: 4,
      onUpdate: app.onUpdate,
    });
    await resumed.whenReady();
    await expectConverged(alice, id, app, resumed);
  });
});

interface MixedCounts {
  sends: number;
  edits: number;
  deletes: number;
  reactions: number;
}

/**
 * `count` changes by one user (the group's owner) through the SDK: sends, edits of its own messages, deletes of
 * anyone's (an owner may), reactions added and removed on live messages. Nothing it does is refused or a no-op.
 */
async function mixedChanges(
  client: XFChatClient,
  conversationId: string,
  count: number,
  random: () => number,
): Promise<MixedCounts> {
  const me = await client.me();
  const history = await client.messages.after(conversationId, 0, 200);
  const live = history.messages.filter((m) => m.deletedAt === null);
  const reacted = new Set<string>();
  for (const m of live)
    for (const r of m.reactions) if (r.userIds.includes(me.id)) reacted.add(`${m.seq}|${r.emoji}`);
  const emojis = ['👍', '🎉', '🇧🇷', '👩‍💻', '🧑🏽‍🚀'];
  const counts: MixedCounts = { sends: 0, edits: 0, deletes: 0, reactions: 0 };
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  for (let n = 0; n < count; n++) {
    const roll = random();
    const mine = live.filter((m) => m.senderId === me.id);
    if (roll < 0.12 || live.length === 0) {
      live.push(await client.send(conversationId, `new ${n}`, { replyToSeq: live.at(-1)?.seq ?? null }));
      counts.sends += 1;
    } else if (roll < 0.4 && mine.length > 0) {
      const target = pick(mine);
      const edited = await client.edit(
        conversationId,
        target.seq,
        `${target.body.split(' / ')[0]} / edit ${n}`,
      );
      live[live.indexOf(target)] = edited;
      counts.edits += 1;
    } else if (roll < 0.52 && live.length > 3) {
      const target = pick(live);
      await client.deleteMessage(conversationId, target.seq);
      live.splice(live.indexOf(target), 1);
      for (const key of [...reacted]) if (key.startsWith(`${target.seq}|`)) reacted.delete(key);
      counts.deletes += 1;
    } else {
      const target = pick(live);
      const emoji = pick(emojis);
      const key = `${target.seq}|${emoji}`;
      if (reacted.has(key)) {
        await client.unreact(conversationId, target.seq, emoji);
        reacted.delete(key);
      } else {
        await client.react(conversationId, target.seq, emoji);
        reacted.add(key);
      }
      counts.reactions += 1;
    }
  }
  return counts;
}
